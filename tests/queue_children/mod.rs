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

/// Writes the test that a process which shares no memory with the creator
/// (this test binary run again) attaches to a `$q<String>` by name from its
/// encoded handle, takes the item the creator put, and puts four of its own
/// (the last of 3 MiB, in its own segment); the creator then takes them and
/// sees their lengths in `$order`, the queue type's order.
macro_rules! attach_by_name {
    ($q:ident, $order:expr) => {
        /// Where the re-executed child finds the encoded handle.
        const ATTACH_HANDLE: &str = "MP_QUEUE_ATTACH_HANDLE";

        /// The re-executed child's body; a no-op in a normal test run.
        #[test]
        fn attach_child_entry() {
            let Ok(path) = std::env::var(ATTACH_HANDLE) else {
                return;
            };
            let bytes = std::fs::read(path).unwrap();
            let q: $q<String> = multiproc::codec::decode(&bytes).unwrap();
            assert_eq!(
                q.get_timeout(queue_children::STALL_LIMIT).unwrap(),
                "from the creator"
            );
            for w in ["a", "bb", "ccc"] {
                q.put(w.to_string()).unwrap();
            }
            q.put("x".repeat(3 << 20)).unwrap();
            println!("put four");
        }

        #[test]
        fn an_unrelated_process_attaches_by_name() {
            let _c = multiproc_testkit::serial_clean();
            let q: $q<String> = $q::new().unwrap();
            q.put("from the creator".to_string()).unwrap();
            let path = std::env::temp_dir().join(format!(
                "mp-attach-{}-{}",
                stringify!($q),
                std::process::id()
            ));
            std::fs::write(&path, multiproc::codec::encode(&q).unwrap()).unwrap();
            let child = multiproc_testkit::Reexec::test("attach_child_entry")
                .env(ATTACH_HANDLE, &path)
                .spawn();
            let (status, out) = child.output(queue_children::STALL_LIMIT);
            let _ = std::fs::remove_file(&path);
            assert!(
                status.success() && out.contains("put four"),
                "{status:?}\n{out}"
            );
            let got: Vec<usize> = (0..4)
                .map(|_| q.get_timeout(queue_children::STALL_LIMIT).unwrap().len())
                .collect();
            assert_eq!(got, $order);
            assert!(q.empty());
        }
    };
}
