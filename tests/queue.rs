//! Queues across processes: exactly-once delivery, bounds and timeouts,
//! tiny and huge items, JoinableQueue, close, and processes killed in the
//! middle of a get or a put.
//!
//! Every child is a `Process` joined with a deadline and killed on failure;
//! each test ends by checking for zombies and `/dev/shm` leftovers.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use multiproc::queue::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError,
};
use multiproc::shm::ShmRegion;
use multiproc::{ErrorKind, JoinableQueue, Process, Queue, SimpleQueue};
use multiproc_testkit::{
    assert_lasted, assert_no_zombie_children, assert_shm_removed, kill_and_reap, serial, shm_names,
    Reexec,
};

#[macro_use]
mod queue_children;
use queue_children::{pattern, wait_stalled};

const LIMIT: Duration = Duration::from_secs(60);

/// Drops the queue (by name) and checks nothing of it is left behind.
fn assert_clean(name: String) {
    assert_shm_removed(&name);
    assert_no_zombie_children();
}

/// Joins `p` within `LIMIT`, killing it on timeout.
fn join<T: serde::Serialize + serde::de::DeserializeOwned + 'static>(p: Process<T>) -> T {
    multiproc_testkit::join_or_kill(p, LIMIT)
}

// -- children ---------------------------------------------------------------

queue_children!(Queue);

// An unrelated process attaches by name (items in the type's order).
attach_by_name!(Queue, vec![1, 2, 3, 3 << 20]);

fn work((q, pause_ms): (JoinableQueue<u64>, u64)) -> u64 {
    let mut n = 0;
    while let Ok(_x) = q.get() {
        std::thread::sleep(Duration::from_millis(pause_ms));
        n += 1;
        q.task_done().unwrap();
    }
    n
}

fn simple_echo((inq, outq): (SimpleQueue<String>, SimpleQueue<String>)) {
    while let Ok(s) = inq.get() {
        outq.put(s.to_uppercase()).unwrap();
    }
}

// -- tests ------------------------------------------------------------------

#[test]
fn four_producers_four_consumers_deliver_every_item_exactly_once() {
    let _s = serial();
    const N: u64 = 100_000;
    // A small ring so that producers also wait for space.
    let q: Queue<u64> = Queue::builder().capacity_bytes(64 << 10).build().unwrap();
    let consumers: Vec<_> = (0..4)
        .map(|_| Process::spawn(consume_all, q.clone()).unwrap())
        .collect();
    let producers: Vec<_> = (0..4)
        .map(|k| Process::spawn(produce, (q.clone(), k * N / 4, (k + 1) * N / 4)).unwrap())
        .collect();
    for p in producers {
        join(p);
    }
    q.close();
    let mut seen = HashSet::new();
    let mut total = 0;
    for c in consumers {
        let got: Vec<u64> = join(c)
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        total += got.len();
        for x in got {
            assert!(seen.insert(x), "item {x} delivered twice");
        }
    }
    assert_eq!(total as u64, N);
    assert_eq!(seen.len() as u64, N);
    assert!((0..N).all(|i| seen.contains(&i)));
    assert!(q.empty());
    let name = q.name().to_owned();
    drop(q);
    assert_clean(name);
}

#[test]
fn bounded_queue_gives_items_back_and_times_out() {
    let _s = serial();
    let q: Queue<u64> = Queue::with_maxsize(2).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert!(q.full());
    assert_eq!(q.qsize(), 2);
    match q.try_put(3) {
        Err(TryPutError::Full(x)) => assert_eq!(x, 3),
        other => panic!("{other:?}"),
    }
    let t = Instant::now();
    match q.put_timeout(4, Duration::from_millis(500)) {
        Err(PutTimeoutError::Timeout(x)) => assert_eq!(x, 4),
        other => panic!("{other:?}"),
    }
    assert_lasted(t, Duration::from_millis(500));

    // A child blocked on the full queue is released by a get here.
    let p = Process::spawn(blocked_put, (q.clone(), 5)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(p.is_alive(), "the put must wait for room");
    assert_eq!(q.get().unwrap(), 1);
    assert!(join(p));
    assert_eq!(q.get().unwrap(), 2);
    assert_eq!(q.get().unwrap(), 5);

    let t = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(500)),
        Err(GetTimeoutError::Timeout)
    ));
    assert_lasted(t, Duration::from_millis(500));
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    let name = q.name().to_owned();
    drop(q);
    assert_clean(name);
}

#[test]
fn one_byte_and_64_mib_items_cross_processes() {
    let _s = serial();
    let q: Queue<Vec<u8>> = Queue::new().unwrap();
    let sizes = vec![1, 0, 64 << 20, 1, 3 << 20, 100];
    let p = Process::spawn(put_bytes, (q.clone(), sizes.clone())).unwrap();
    for len in &sizes {
        let item = q.get_timeout(LIMIT).unwrap();
        assert_eq!(item.len(), *len);
        assert!(item == pattern(*len), "item of {len} bytes corrupted");
    }
    join(p);
    // Same with u8 items: one encoded byte each.
    let small: Queue<u8> = Queue::new().unwrap();
    small.put(7).unwrap();
    assert_eq!(small.get().unwrap(), 7);
    // Large items left in a dropped queue are removed with it.
    let p = Process::spawn(put_bytes, (q.clone(), vec![16 << 20, 16 << 20])).unwrap();
    join(p);
    assert_eq!(q.qsize(), 2);
    assert_eq!(
        shm_names(q.name()).len(),
        3,
        "the region and two item segments"
    );
    let name = q.name().to_owned();
    drop(q);
    assert_clean(name);
}

#[test]
fn joinable_queue_join_waits_for_task_done() {
    let _s = serial();
    let q: JoinableQueue<u64> = JoinableQueue::new().unwrap();
    let workers: Vec<_> = (0..2)
        .map(|_| Process::spawn(work, (q.clone(), 5)).unwrap())
        .collect();
    for i in 0..40 {
        q.put(i).unwrap();
    }
    assert!(q.unfinished_tasks() > 0);
    let t = Instant::now();
    q.join_timeout(LIMIT).unwrap();
    // 40 items of 5 ms over two workers take at least ~100 ms.
    assert!(
        t.elapsed() >= Duration::from_millis(60),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(q.unfinished_tasks(), 0);
    assert!(q.empty());
    q.close();
    let done: u64 = workers.into_iter().map(join).sum();
    assert_eq!(done, 40);
    let e = q.task_done().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    // join_timeout reports unfinished work.
    let q2: JoinableQueue<u64> = JoinableQueue::new().unwrap();
    q2.put(1).unwrap();
    let t = Instant::now();
    let e = q2.join_timeout(Duration::from_millis(300)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(t.elapsed() >= Duration::from_millis(180));
    q2.get().unwrap();
    q2.task_done().unwrap();
    q2.join();
    let names = [q.name().to_owned(), q2.name().to_owned()];
    drop((q, q2));
    names.into_iter().for_each(assert_clean);
}

#[test]
fn close_fails_puts_drains_gets_and_wakes_waiters() {
    let _s = serial();
    let q: Queue<u64> = Queue::new().unwrap();
    let waiter = Process::spawn(blocked_get, q.clone()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    q.close();
    assert_eq!(join(waiter), "closed");
    assert!(q.is_closed());
    match q.put(1) {
        Err(PutError::Closed(x)) => assert_eq!(x, 1),
        other => panic!("{other:?}"),
    }
    // Items put before the close are still delivered.
    let q: Queue<u64> = Queue::new().unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    q.close();
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.try_get().unwrap(), 2);
    assert!(matches!(q.try_get(), Err(TryGetError::Closed)));
    assert!(matches!(q.get(), Err(GetError::Closed)));
    let name = q.name().to_owned();
    drop(q);
    assert_clean(name);
}

/// Fills a queue with items 0..n (8 bytes of index, then padding).
fn numbered(q: &Queue<Vec<u8>>, n: u64, len: usize) {
    for i in 0..n {
        let mut v = i.to_le_bytes().to_vec();
        v.resize(len.max(8), 0xee);
        q.put(v).unwrap();
    }
}

fn drain_numbers(q: &Queue<Vec<u8>>) -> Vec<u64> {
    let mut out = Vec::new();
    while let Ok(v) = q.try_get() {
        out.push(u64::from_le_bytes(v[..8].try_into().unwrap()));
    }
    out
}

fn kill_consumer_at(point: u8, item_len: usize) -> Vec<u64> {
    let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(1 << 20).build().unwrap();
    numbered(&q, 20, item_len);
    let flag = ShmRegion::create(8).unwrap();
    let p = Process::spawn(stalled_get, (q.clone(), flag.clone(), point)).unwrap();
    wait_stalled(&flag);
    kill_and_reap(p);
    // Another process and this one go on using the queue.
    let other = Process::spawn(put_bytes, (q.clone(), vec![8])).unwrap();
    join(other);
    let got = drain_numbers(&q);
    assert!(q.empty());
    let name = q.name().to_owned();
    drop(q);
    assert_clean(name);
    got
}

#[test]
fn consumer_killed_holding_the_lock_before_commit_loses_nothing() {
    let _s = serial();
    let got = kill_consumer_at(3, 100);
    // The 20 numbered items, then the one put afterwards (its first 8 bytes
    // are the pattern 0..8).
    let expected: Vec<u64> = (0..20)
        .chain([u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7])])
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn consumer_killed_after_commit_loses_only_its_item() {
    let _s = serial();
    let got = kill_consumer_at(4, 100);
    assert_eq!(&got[..19], &(1..20).collect::<Vec<_>>()[..]);
    assert_eq!(got.len(), 20);
}

#[test]
fn consumer_killed_taking_a_large_item_loses_only_it_and_leaks_nothing() {
    let _s = serial();
    // 1 MiB ring: items of 300 KiB travel in their own segments.
    let got = kill_consumer_at(3, 300 << 10);
    assert_eq!(&got[..19], &(1..20).collect::<Vec<_>>()[..]);
    assert_eq!(got.len(), 20);
}

#[test]
fn producer_killed_mid_put_either_put_or_not() {
    let _s = serial();
    for (point, expect_item) in [(1u8, false), (2u8, true)] {
        let q: Queue<Vec<u8>> = Queue::new().unwrap();
        numbered(&q, 3, 8);
        let flag = ShmRegion::create(8).unwrap();
        let p = Process::spawn(stalled_put, (q.clone(), flag.clone(), point, vec![9; 8])).unwrap();
        wait_stalled(&flag);
        kill_and_reap(p);
        // The next put repairs the put side and goes on.
        q.put(vec![10; 8]).unwrap();
        let mut got = Vec::new();
        while let Ok(v) = q.try_get() {
            got.push(v[0]);
        }
        let mut expected = vec![0u8, 1, 2];
        if expect_item {
            expected.push(9);
        }
        expected.push(10);
        assert_eq!(got, expected, "fault point {point}");
        let name = q.name().to_owned();
        drop(q);
        assert_clean(name);
    }
}

#[test]
fn simple_queue_between_processes() {
    let _s = serial();
    let inq: SimpleQueue<String> = SimpleQueue::new().unwrap();
    let outq: SimpleQueue<String> = SimpleQueue::new().unwrap();
    let p = Process::spawn(simple_echo, (inq.clone(), outq.clone())).unwrap();
    assert!(outq.empty());
    for w in ["washer", "dryer", "dish"] {
        inq.put(w.to_string()).unwrap();
    }
    for w in ["WASHER", "DRYER", "DISH"] {
        assert_eq!(outq.get().unwrap(), w);
    }
    inq.close();
    join(p);
    drop((inq, outq));
    assert_no_zombie_children();
}

#[test]
fn handles_pass_through_the_codec_to_other_processes() {
    let _s = serial();
    let q: Queue<u64> = Queue::new().unwrap();
    let bytes = multiproc::codec::encode(&q).unwrap();
    // A process that receives only the bytes re-attaches by name.
    fn from_bytes(bytes: Vec<u8>) {
        let q: Queue<u64> = multiproc::codec::decode(&bytes).unwrap();
        q.put(42).unwrap();
    }
    join(Process::spawn(from_bytes, bytes).unwrap());
    assert_eq!(q.get().unwrap(), 42);
    let name = q.name().to_owned();
    drop(q);
    assert_clean(name);
}

/// Role of this binary when re-executed as an unrelated process.
const ROLE: &str = "MP_QUEUE_TEST_ROLE";
const HANDLE: &str = "MP_QUEUE_TEST_HANDLE";

/// The body of the re-executed child; a no-op in a normal test run.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let bytes = std::fs::read(std::env::var(HANDLE).unwrap()).unwrap();
    match role.as_str() {
        "put-three" => {
            // Attaches by name: this process never shared memory with the creator.
            let q: JoinableQueue<String> = multiproc::codec::decode(&bytes).unwrap();
            for w in ["a", "bb", "ccc"] {
                q.put(w.to_string()).unwrap();
            }
            q.put("x".repeat(3 << 20)).unwrap(); // a large item, in its own segment
            q.join_timeout(LIMIT).unwrap();
            println!("joined");
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn an_unrelated_process_attaches_to_a_joinable_queue_by_name() {
    let _s = serial();
    let q: JoinableQueue<String> = JoinableQueue::new().unwrap();
    let path = std::env::temp_dir().join(format!("mp-queue-handle-{}", std::process::id()));
    std::fs::write(&path, multiproc::codec::encode(&q).unwrap()).unwrap();
    let child = Reexec::test("child_entry")
        .env(ROLE, "put-three")
        .env(HANDLE, &path)
        .spawn();
    let mut got = Vec::new();
    for _ in 0..4 {
        match q.get_timeout(LIMIT) {
            Ok(s) => got.push(s.len()),
            Err(e) => panic!("{e}"),
        }
        q.task_done().unwrap();
    }
    assert_eq!(got, vec![1, 2, 3, 3 << 20]);
    let (status, out) = child.output(LIMIT);
    assert!(
        status.success() && out.contains("joined"),
        "{status:?}\n{out}"
    );
    let _ = std::fs::remove_file(&path);
    let name = q.name().to_owned();
    drop(q);
    assert_clean(name);
}
