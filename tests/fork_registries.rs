//! Without `init()`, a process forked while another thread of the program
//! is inside one of multiproc's process-wide registries (shared-memory
//! regions, open queues, the segment tracker, live children) gets them
//! free: its first queue never waits for a thread it does not have.
//!
//! Before `fork` took those locks itself, this test failed: about one fork
//! in twenty under this churn left the child blocked for ever in
//! `Queue::new` (14 of 300 in one run).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use multiproc::{Process, Queue};
use multiproc_testkit::assert_no_zombie_children;

/// Forks per run; each one is a chance to catch a registry mid-update.
const FORKS: u32 = 300;
const LIMIT: Duration = Duration::from_secs(10);

fn child_makes_a_queue(i: u32) -> u32 {
    let q = Queue::<u32>::new().expect("queue in the child");
    q.put(i).expect("put");
    q.get().expect("get")
}

/// Creates and drops queues (each a region, a tracker entry and a queue
/// registry entry) until `stop`.
fn churn(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut made = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let q = Queue::<u32>::new().expect("queue in the churning thread");
            let copy: Queue<u32> =
                multiproc::codec::decode(&multiproc::codec::encode(&q).expect("encode"))
                    .expect("decode");
            drop((q, copy));
            made += 1;
        }
        made
    })
}

#[test]
fn children_forked_while_threads_churn_the_registries_never_block() {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..2).map(|_| churn(Arc::clone(&stop))).collect();
    let mut stuck = Vec::new();
    for i in 0..FORKS {
        let mut p = Process::spawn(child_makes_a_queue, i).expect("spawn");
        match p.join_timeout(LIMIT) {
            Ok(v) => assert_eq!(v, i),
            Err(e) => {
                let _ = p.kill();
                let _ = p.join_timeout(LIMIT);
                stuck.push((i, e.to_string()));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let made: u64 = threads.into_iter().map(|t| t.join().expect("churn")).sum();
    assert!(made > 0, "the churning threads made no queue");
    assert!(stuck.is_empty(), "children that did not finish: {stuck:?}");
    assert_no_zombie_children();
}
