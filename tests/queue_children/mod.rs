//! The children the queue test files share: producers, consumers, blocked
//! and stalled gets and puts, for any of `Queue`, `LifoQueue` and
//! `PriorityQueue` (`queue_children!(Type)` writes them for one type), and
//! the fault-point plumbing they stall with.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;

use multiproc::queue::fault::Point;
use multiproc::shm::ShmRegion;
use multiproc_testkit::wait_until;

/// How long a test waits for a child to reach a fault point.
pub const STALL_LIMIT: Duration = Duration::from_secs(60);

/// The item of `len` bytes every test puts (and checks) byte for byte.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The shared flag a stalled child raises, and the hook that stalls it.
pub static STALL: OnceLock<ShmRegion> = OnceLock::new();

/// The fault hook: raises the child's flag, then never returns.
pub fn stall_forever() {
    if let Some(r) = STALL.get() {
        r.atomic_u32(0).store(1, Ordering::SeqCst);
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The fault point numbered `p` (numbers travel to children more simply).
pub fn point_from(p: u8) -> Point {
    match p {
        1 => Point::PutWritten,
        2 => Point::Committing,
        3 => Point::GetRead,
        _ => Point::GetCommitted,
    }
}

/// Waits until a stalled child raised `flag`.
pub fn wait_stalled(flag: &ShmRegion) {
    assert!(
        wait_until(STALL_LIMIT, || flag.atomic_u32(0).load(Ordering::SeqCst)
            != 0),
        "child never reached the fault point"
    );
}

/// Writes the children functions for the queue type `$q`.
macro_rules! queue_children {
    ($q:ident) => {
        fn produce((q, lo, hi): ($q<u64>, u64, u64)) {
            for i in lo..hi {
                q.put(i).unwrap();
            }
        }

        /// Takes items until the queue is closed; returns them packed as LE
        /// bytes (a compact result for the trip back to the parent).
        fn consume_all(q: $q<u64>) -> Vec<u8> {
            let mut got = Vec::new();
            loop {
                match q.get() {
                    Ok(x) => got.extend_from_slice(&x.to_le_bytes()),
                    Err(multiproc::queue::GetError::Closed) => return got,
                    Err(e) => panic!("{e}"),
                }
            }
        }

        fn put_bytes((q, items): ($q<Vec<u8>>, Vec<usize>)) {
            for len in items {
                q.put(queue_children::pattern(len)).unwrap();
            }
        }

        fn blocked_put((q, x): ($q<u64>, u64)) -> bool {
            q.put(x).is_ok()
        }

        fn blocked_get(q: $q<u64>) -> String {
            match q.get() {
                Ok(x) => format!("item {x}"),
                Err(multiproc::queue::GetError::Closed) => "closed".into(),
                Err(e) => format!("error {e}"),
            }
        }

        fn stalled_get((q, flag, point): ($q<Vec<u8>>, multiproc::shm::ShmRegion, u8)) {
            let _ = queue_children::STALL.set(flag);
            multiproc::queue::fault::inject(
                queue_children::point_from(point),
                queue_children::stall_forever,
            );
            let _ = q.get();
        }

        fn stalled_put(
            (q, flag, point, item): ($q<Vec<u8>>, multiproc::shm::ShmRegion, u8, Vec<u8>),
        ) {
            let _ = queue_children::STALL.set(flag);
            multiproc::queue::fault::inject(
                queue_children::point_from(point),
                queue_children::stall_forever,
            );
            let _ = q.put(item);
        }
    };
}
