//! `PriorityQueue` across processes: least-first order with ties in insertion
//! order, exactly-once delivery, attaching by name from an unrelated process,
//! bounds and timeouts giving items back, tiny and huge items, close, and
//! processes killed in the middle of a get or a put.
//!
//! Every child is a `Kid` (killed and reaped if the test fails); every test
//! holds `serial_clean`, which checks that no child, zombie or `/dev/shm`
//! entry is left.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use multiproc::queue::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError,
};
use multiproc::shm::ShmRegion;
use multiproc::PriorityQueue;
use multiproc_testkit::{alive, assert_lasted, serial_clean, shm_names, Kid};

#[macro_use]
mod queue_children;
use queue_children::{pattern, wait_stalled};

const LIMIT: Duration = Duration::from_secs(60);

// -- children ---------------------------------------------------------------

queue_children!(PriorityQueue);

// An unrelated process attaches by name (items in the type's order).
attach_by_name!(PriorityQueue, vec![1, 2, 3, 3 << 20]);

// -- tests ------------------------------------------------------------------

/// An item whose order looks only at its priority, so that equal items can
/// still be told apart (by their tag).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Job {
    priority: u8,
    tag: u32,
}

impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Job {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.priority.cmp(&other.priority)
    }
}

fn put_jobs((q, lo, hi): (PriorityQueue<Job>, u32, u32)) {
    for tag in lo..hi {
        let priority = (tag.wrapping_mul(7919) % 5) as u8;
        q.put(Job { priority, tag }).unwrap();
    }
}

#[test]
fn items_come_out_least_first_and_ties_in_insertion_order() {
    let _c = serial_clean();
    let q: PriorityQueue<u64> = PriorityQueue::new().unwrap();
    // A scrambled permutation of 0..1000, put by another process.
    fn scrambled(q: PriorityQueue<u64>) {
        for i in 0..1000u64 {
            q.put(i * 617 % 1000).unwrap();
        }
    }
    Kid::spawn(scrambled, q.clone()).join();
    assert_eq!(q.qsize(), 1000);
    let got: Vec<u64> = (0..1000).map(|_| q.get().unwrap()).collect();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    // Interleaved: each get takes the least of what is there.
    q.put(5).unwrap();
    q.put(3).unwrap();
    assert_eq!(q.get().unwrap(), 3);
    q.put(4).unwrap();
    q.put(9).unwrap();
    assert_eq!(q.get().unwrap(), 4);
    assert_eq!(q.get().unwrap(), 5);
    assert_eq!(q.get().unwrap(), 9);

    // Equal priorities come out in insertion order, also when two processes
    // put them one after the other.
    let jobs: PriorityQueue<Job> = PriorityQueue::new().unwrap();
    Kid::spawn(put_jobs, (jobs.clone(), 0, 500)).join();
    Kid::spawn(put_jobs, (jobs.clone(), 500, 1000)).join();
    let mut last: Option<Job> = None;
    for _ in 0..1000 {
        let j = jobs.get().unwrap();
        if let Some(l) = &last {
            assert!(
                l.priority < j.priority || (l.priority == j.priority && l.tag < j.tag),
                "{l:?} came before {j:?}"
            );
        }
        last = Some(j);
    }
    assert!(jobs.empty());
}

#[test]
fn four_producers_four_consumers_deliver_every_item_exactly_once() {
    let _c = serial_clean();
    const N: u64 = 40_000;
    // A small store so that producers also wait for space.
    let q: PriorityQueue<u64> = PriorityQueue::builder()
        .capacity_bytes(64 << 10)
        .build()
        .unwrap();
    let consumers: Vec<_> = (0..4).map(|_| Kid::spawn(consume_all, q.clone())).collect();
    let producers: Vec<_> = (0..4)
        .map(|k| Kid::spawn(produce, (q.clone(), k * N / 4, (k + 1) * N / 4)))
        .collect();
    for p in producers {
        p.join();
    }
    q.close();
    let mut seen = HashSet::new();
    let mut total = 0;
    for c in consumers {
        let got: Vec<u64> = c
            .join()
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        total += got.len();
        for x in got {
            assert!(seen.insert(x), "item {x} delivered twice");
        }
    }
    assert_eq!(total as u64, N);
    assert!((0..N).all(|i| seen.contains(&i)));
    assert!(q.empty());
}

#[test]
fn bounded_queue_gives_items_back_and_times_out() {
    let _c = serial_clean();
    let q: PriorityQueue<u64> = PriorityQueue::with_maxsize(2).unwrap();
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
    let p = Kid::spawn(blocked_put, (q.clone(), 5));
    std::thread::sleep(Duration::from_millis(100));
    assert!(alive(p.pid()), "the put must wait for room");
    assert_eq!(q.get().unwrap(), 1);
    assert!(p.join());
    assert_eq!(q.get().unwrap(), 2);
    assert_eq!(q.get().unwrap(), 5);

    let t = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(500)),
        Err(GetTimeoutError::Timeout)
    ));
    assert_lasted(t, Duration::from_millis(500));
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    // The byte bound: a store of 4 KiB holds 64 one-cell items.
    let small: PriorityQueue<u64> = PriorityQueue::builder()
        .capacity_bytes(4096)
        .build()
        .unwrap();
    for i in 0..64 {
        small.try_put(i).unwrap();
    }
    assert!(matches!(small.try_put(64), Err(TryPutError::Full(64))));
    assert_eq!(small.get().unwrap(), 0);
    small.try_put(64).unwrap();
}

#[test]
fn one_byte_and_4_mib_items_cross_processes() {
    let _c = serial_clean();
    let q: PriorityQueue<Vec<u8>> = PriorityQueue::new().unwrap();
    // Each pattern is a prefix of the longer ones: they sort by length, and
    // comparing reads the large ones in place from their segments (and
    // decodes them: kept to a few MiB, as the type's docs advise).
    let sizes = vec![1, 0, 4 << 20, 1, 3 << 20, 100];
    Kid::spawn(put_bytes, (q.clone(), sizes.clone())).join();
    let mut sorted = sizes.clone();
    sorted.sort();
    for len in &sorted {
        let item = q.get_timeout(LIMIT).unwrap();
        assert_eq!(item.len(), *len);
        assert!(item == pattern(*len), "item of {len} bytes corrupted");
    }
    // Same with u8 items: one encoded byte each.
    let small: PriorityQueue<u8> = PriorityQueue::new().unwrap();
    small.put(7).unwrap();
    assert_eq!(small.get().unwrap(), 7);
    // Large items left in a dropped queue are removed with it.
    Kid::spawn(put_bytes, (q.clone(), vec![4 << 20, 4 << 20])).join();
    assert_eq!(q.qsize(), 2);
    assert_eq!(
        shm_names(q.name()).len(),
        3,
        "the region and two item segments"
    );
}

#[test]
fn close_fails_puts_drains_gets_and_wakes_waiters() {
    let _c = serial_clean();
    let q: PriorityQueue<u64> = PriorityQueue::new().unwrap();
    let waiter = Kid::spawn(blocked_get, q.clone());
    std::thread::sleep(Duration::from_millis(100));
    q.close();
    assert_eq!(waiter.join(), "closed");
    assert!(q.is_closed());
    match q.put(1) {
        Err(PutError::Closed(x)) => assert_eq!(x, 1),
        other => panic!("{other:?}"),
    }
    // Items put before the close are still delivered; a waiting getter is
    // woken by a put from another process.
    let q: PriorityQueue<u64> = PriorityQueue::new().unwrap();
    let waiter = Kid::spawn(blocked_get, q.clone());
    std::thread::sleep(Duration::from_millis(100));
    q.put(9).unwrap();
    assert_eq!(waiter.join(), "item 9");
    q.put(1).unwrap();
    q.put(2).unwrap();
    q.close();
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.try_get().unwrap(), 2);
    assert!(matches!(q.try_get(), Err(TryGetError::Closed)));
    assert!(matches!(q.get(), Err(GetError::Closed)));
}

/// Puts items 0..n (8 bytes of big-endian index, then padding).
fn numbered(q: &PriorityQueue<Vec<u8>>, n: u64, len: usize) {
    for i in 0..n {
        let mut v = i.to_be_bytes().to_vec();
        v.resize(len.max(8), 0xee);
        q.put(v).unwrap();
    }
}

fn drain_numbers(q: &PriorityQueue<Vec<u8>>) -> Vec<u64> {
    let mut out = Vec::new();
    while let Ok(v) = q.try_get() {
        out.push(u64::from_be_bytes(v[..8].try_into().unwrap()));
    }
    out
}

/// The number of the item `pattern(8)` that another process puts.
const AFTER: u64 = u64::from_be_bytes([0, 1, 2, 3, 4, 5, 6, 7]);

/// Kills a consumer stalled at `point` while taking the least of 20
/// numbered items, then lets another process put and drains the queue.
fn kill_consumer_at(point: u8, item_len: usize) -> Vec<u64> {
    let q: PriorityQueue<Vec<u8>> = PriorityQueue::builder()
        .capacity_bytes(256 << 10)
        .build()
        .unwrap();
    numbered(&q, 20, item_len);
    let flag = ShmRegion::create(8).unwrap();
    let p = Kid::spawn(stalled_get, (q.clone(), flag.clone(), point));
    wait_stalled(&flag);
    p.kill();
    // Another process and this one go on using the queue.
    Kid::spawn(put_bytes, (q.clone(), vec![8])).join();
    let got = drain_numbers(&q);
    assert!(q.empty());
    got
}

#[test]
fn consumer_killed_holding_the_lock_before_commit_loses_nothing() {
    let _c = serial_clean();
    let got = kill_consumer_at(3, 100);
    let expected: Vec<u64> = (0..20).chain([AFTER]).collect();
    assert_eq!(got, expected);
}

#[test]
fn consumer_killed_after_commit_loses_only_its_item() {
    let _c = serial_clean();
    let got = kill_consumer_at(4, 100);
    let expected: Vec<u64> = (1..20).chain([AFTER]).collect();
    assert_eq!(got, expected);
}

#[test]
fn consumer_killed_taking_a_large_item_loses_only_it_and_leaks_nothing() {
    let _c = serial_clean();
    // 256 KiB store: items of 100 KiB travel in their own segments.
    let got = kill_consumer_at(3, 100 << 10);
    let expected: Vec<u64> = (1..20).chain([AFTER]).collect();
    assert_eq!(got, expected);
}

#[test]
fn producer_killed_mid_put_either_put_or_not() {
    let _c = serial_clean();
    for (point, expect_item) in [(1u8, false), (2u8, true)] {
        let q: PriorityQueue<Vec<u8>> = PriorityQueue::new().unwrap();
        for i in 0..3u8 {
            q.put(vec![i; 8]).unwrap();
        }
        let flag = ShmRegion::create(8).unwrap();
        let p = Kid::spawn(stalled_put, (q.clone(), flag.clone(), point, vec![9; 8]));
        wait_stalled(&flag);
        p.kill();
        // The next put repairs the lock and goes on.
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
    }
}

#[test]
fn handles_pass_through_the_codec_to_other_processes() {
    let _c = serial_clean();
    let q: PriorityQueue<u64> = PriorityQueue::new().unwrap();
    let bytes = multiproc::codec::encode(&q).unwrap();
    // A process that receives only the bytes re-attaches by name.
    fn from_bytes(bytes: Vec<u8>) {
        let q: PriorityQueue<u64> = multiproc::codec::decode(&bytes).unwrap();
        q.put(41).unwrap();
        q.put(42).unwrap();
    }
    Kid::spawn(from_bytes, bytes).join();
    assert_eq!(q.get().unwrap(), 41);
    assert_eq!(q.get().unwrap(), 42);
}
