//! `LifoQueue` across processes: newest-first order, exactly-once delivery,
//! attaching by name from an unrelated process,
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
use multiproc::LifoQueue;
use multiproc_testkit::{alive, assert_lasted, serial_clean, shm_names, Kid};

#[macro_use]
mod queue_children;
use queue_children::{pattern, wait_stalled};

const LIMIT: Duration = Duration::from_secs(60);

// -- children ---------------------------------------------------------------

queue_children!(LifoQueue);

// An unrelated process attaches by name (items in the type's order).
attach_by_name!(LifoQueue, vec![3 << 20, 3, 2, 1]);

// -- tests ------------------------------------------------------------------

#[test]
fn items_come_out_newest_first_across_processes() {
    let _c = serial_clean();
    let q: LifoQueue<u64> = LifoQueue::new().unwrap();
    Kid::spawn(produce, (q.clone(), 0, 1000)).join();
    assert_eq!(q.qsize(), 1000);
    let got: Vec<u64> = (0..1000).map(|_| q.get().unwrap()).collect();
    assert_eq!(got, (0..1000).rev().collect::<Vec<_>>());
    // Interleaved: each get takes the newest of what is there.
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert_eq!(q.get().unwrap(), 2);
    q.put(3).unwrap();
    assert_eq!(q.get().unwrap(), 3);
    assert_eq!(q.get().unwrap(), 1);
    assert!(q.empty());
}

#[test]
fn four_producers_four_consumers_deliver_every_item_exactly_once() {
    let _c = serial_clean();
    const N: u64 = 40_000;
    // A small store so that producers also wait for space.
    let q: LifoQueue<u64> = LifoQueue::builder()
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
    let q: LifoQueue<u64> = LifoQueue::with_maxsize(2).unwrap();
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
    assert_eq!(q.get().unwrap(), 2);
    assert!(p.join());
    assert_eq!(q.get().unwrap(), 5);
    assert_eq!(q.get().unwrap(), 1);

    let t = Instant::now();
    assert!(matches!(
        q.get_timeout(Duration::from_millis(500)),
        Err(GetTimeoutError::Timeout)
    ));
    assert_lasted(t, Duration::from_millis(500));
    assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    // The byte bound: a store of 4 KiB holds 64 one-cell items.
    let small: LifoQueue<u64> = LifoQueue::builder().capacity_bytes(4096).build().unwrap();
    for i in 0..64 {
        small.try_put(i).unwrap();
    }
    assert!(matches!(small.try_put(64), Err(TryPutError::Full(64))));
    assert_eq!(small.get().unwrap(), 63);
    small.try_put(64).unwrap();
}

#[test]
fn one_byte_and_64_mib_items_cross_processes() {
    let _c = serial_clean();
    let q: LifoQueue<Vec<u8>> = LifoQueue::new().unwrap();
    let sizes = vec![1, 0, 64 << 20, 1, 3 << 20, 100];
    Kid::spawn(put_bytes, (q.clone(), sizes.clone())).join();
    for len in sizes.iter().rev() {
        let item = q.get_timeout(LIMIT).unwrap();
        assert_eq!(item.len(), *len);
        assert!(item == pattern(*len), "item of {len} bytes corrupted");
    }
    // Same with u8 items: one encoded byte each.
    let small: LifoQueue<u8> = LifoQueue::new().unwrap();
    small.put(7).unwrap();
    assert_eq!(small.get().unwrap(), 7);
    // Large items left in a dropped queue are removed with it.
    Kid::spawn(put_bytes, (q.clone(), vec![16 << 20, 16 << 20])).join();
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
    let q: LifoQueue<u64> = LifoQueue::new().unwrap();
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
    let q: LifoQueue<u64> = LifoQueue::new().unwrap();
    let waiter = Kid::spawn(blocked_get, q.clone());
    std::thread::sleep(Duration::from_millis(100));
    q.put(9).unwrap();
    assert_eq!(waiter.join(), "item 9");
    q.put(1).unwrap();
    q.put(2).unwrap();
    q.close();
    assert_eq!(q.get().unwrap(), 2);
    assert_eq!(q.try_get().unwrap(), 1);
    assert!(matches!(q.try_get(), Err(TryGetError::Closed)));
    assert!(matches!(q.get(), Err(GetError::Closed)));
}

/// Puts items 0..n (8 bytes of big-endian index, then padding).
fn numbered(q: &LifoQueue<Vec<u8>>, n: u64, len: usize) {
    for i in 0..n {
        let mut v = i.to_be_bytes().to_vec();
        v.resize(len.max(8), 0xee);
        q.put(v).unwrap();
    }
}

fn drain_numbers(q: &LifoQueue<Vec<u8>>) -> Vec<u64> {
    let mut out = Vec::new();
    while let Ok(v) = q.try_get() {
        out.push(u64::from_be_bytes(v[..8].try_into().unwrap()));
    }
    out
}

/// The number of the item `pattern(8)` that another process puts.
const AFTER: u64 = u64::from_be_bytes([0, 1, 2, 3, 4, 5, 6, 7]);

/// Kills a consumer stalled at `point` while taking the newest of 20
/// numbered items, then lets another process put and drains the queue.
fn kill_consumer_at(point: u8, item_len: usize) -> Vec<u64> {
    let q: LifoQueue<Vec<u8>> = LifoQueue::builder()
        .capacity_bytes(1 << 20)
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
    let expected: Vec<u64> = [AFTER].into_iter().chain((0..20).rev()).collect();
    assert_eq!(got, expected);
}

#[test]
fn consumer_killed_after_commit_loses_only_its_item() {
    let _c = serial_clean();
    let got = kill_consumer_at(4, 100);
    let expected: Vec<u64> = [AFTER].into_iter().chain((0..19).rev()).collect();
    assert_eq!(got, expected);
}

#[test]
fn consumer_killed_taking_a_large_item_loses_only_it_and_leaks_nothing() {
    let _c = serial_clean();
    // 1 MiB store: items of 300 KiB travel in their own segments.
    let got = kill_consumer_at(3, 300 << 10);
    let expected: Vec<u64> = [AFTER].into_iter().chain((0..19).rev()).collect();
    assert_eq!(got, expected);
}

#[test]
fn producer_killed_mid_put_either_put_or_not() {
    let _c = serial_clean();
    for (point, expect_item) in [(1u8, false), (2u8, true)] {
        let q: LifoQueue<Vec<u8>> = LifoQueue::new().unwrap();
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
        let mut expected = vec![10u8];
        if expect_item {
            expected.push(9);
        }
        expected.extend([2, 1, 0]);
        assert_eq!(got, expected, "fault point {point}");
    }
}

#[test]
fn handles_pass_through_the_codec_to_other_processes() {
    let _c = serial_clean();
    let q: LifoQueue<u64> = LifoQueue::new().unwrap();
    let bytes = multiproc::codec::encode(&q).unwrap();
    // A process that receives only the bytes re-attaches by name.
    fn from_bytes(bytes: Vec<u8>) {
        let q: LifoQueue<u64> = multiproc::codec::decode(&bytes).unwrap();
        q.put(41).unwrap();
        q.put(42).unwrap();
    }
    Kid::spawn(from_bytes, bytes).join();
    assert_eq!(q.get().unwrap(), 42);
    assert_eq!(q.get().unwrap(), 41);
}
