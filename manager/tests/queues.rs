//! LIFO and priority queues served by a manager (Python's `queue.LifoQueue`
//! and `queue.PriorityQueue`), locally and over TCP: the same operation
//! families as the FIFO `QueueProxy`.

use std::cmp::Ordering;
use std::time::{Duration, Instant};

use multiproc_ipc::codec;
use multiproc_ipc::queue::{PutTimeoutError, TryPutError};
use multiproc_manager::{ErrorKind, Manager, ManagerServer, QueueProxy, RemoteManager};
use multiproc_testkit::{assert_lasted, checked, Kid};
use serde::{Deserialize, Serialize};

const LIMIT: Duration = Duration::from_secs(120);

/// A job ordered by its priority only: equal priorities must leave in the
/// order they were put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Job {
    priority: u8,
    id: u32,
}

impl Ord for Job {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.cmp(&other.priority)
    }
}

impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn job(priority: u8, id: u32) -> Job {
    Job { priority, id }
}

/// The put/get families on a bounded queue of two, whichever its order:
/// `first` and `second` are put in this order, `out` is what `get` must
/// return first.
fn families<T>(q: &QueueProxy<T>, first: T, second: T, out: [T; 2])
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug + Clone,
{
    assert!(q.empty().unwrap());
    q.put(first.clone()).unwrap();
    q.put_timeout(second.clone(), Duration::from_secs(1))
        .unwrap();
    assert!(q.full().unwrap());
    assert_eq!(q.qsize().unwrap(), 2);
    // A failed put gives the item back, as the local queue's does.
    let e = q.try_put(first.clone()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Full, "{e}");
    assert!(matches!(e, TryPutError::Full(_)));
    assert_eq!(e.into_inner(), first);
    let t = Instant::now();
    let e = q
        .put_timeout(first.clone(), Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(matches!(e, PutTimeoutError::Timeout(_)));
    assert_eq!(e.into_inner(), first);
    assert_lasted(t, Duration::from_millis(100));
    let [a, b] = out;
    assert_eq!(q.get().unwrap(), a);
    assert_eq!(q.qsize().unwrap(), 1);
    assert!(!q.full().unwrap());
    assert_eq!(q.get_timeout(Duration::from_secs(1)).unwrap(), b);
    assert!(q.empty().unwrap());
    let e = q.try_get().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Empty, "{e}");
    let t = Instant::now();
    let e = q.get_timeout(Duration::from_millis(100)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_lasted(t, Duration::from_millis(100));
}

fn put_later((q, items): (QueueProxy<Job>, Vec<Job>)) -> usize {
    std::thread::sleep(Duration::from_millis(100));
    for j in &items {
        q.put(j.clone()).unwrap();
    }
    items.len()
}

#[test]
fn local_lifo_and_priority_queues_have_the_queue_families() {
    checked(LIMIT, || {
        let m = Manager::start().unwrap();
        let lifo = m.bounded_lifo_queue::<u32>(2).unwrap();
        families(&lifo, 1, 2, [2, 1]);
        let prio = m.bounded_priority_queue::<u32>(2).unwrap();
        families(&prio, 2, 1, [1, 2]);
        // Unbounded ones never refuse.
        let stack = m.lifo_queue::<u32>().unwrap();
        let heap = m.priority_queue::<i64>().unwrap();
        for i in 0..1000 {
            stack.try_put(i).unwrap();
            heap.try_put(i64::from(i) * 7919 % 1000).unwrap();
        }
        assert!(!stack.full().unwrap());
        assert_eq!(
            (0..1000).map(|_| stack.get().unwrap()).collect::<Vec<_>>(),
            { (0..1000).rev().collect::<Vec<_>>() }
        );
        let drained: Vec<i64> = (0..1000).map(|_| heap.get().unwrap()).collect();
        assert_eq!(drained, (0..1000).collect::<Vec<_>>());
        m.shutdown().unwrap();
    });
}

#[test]
fn local_priority_queue_takes_the_smallest_and_ties_in_insertion_order() {
    checked(LIMIT, || {
        let m = Manager::start().unwrap();
        let q = m.priority_queue::<Job>().unwrap();
        let put: Vec<Job> = (0..60).map(|i| job((i * 7 % 4) as u8, i)).collect();
        for j in &put {
            q.put(j.clone()).unwrap();
        }
        let mut expect = put.clone();
        expect.sort_by_key(|j| j.priority); // stable
        let got: Vec<Job> = (0..60).map(|_| q.get().unwrap()).collect();
        assert_eq!(got, expect);

        // An item of another type is refused and changes nothing.
        q.put(job(9, 9)).unwrap();
        let wrong: QueueProxy<String> = codec::decode(&codec::encode(&q).unwrap()).unwrap();
        let e = wrong.put("not a job".to_string()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert_eq!(q.qsize().unwrap(), 1);
        assert_eq!(q.get().unwrap(), job(9, 9));
        m.shutdown().unwrap();
    });
}

#[test]
fn a_get_blocked_on_a_priority_queue_is_woken_by_another_process() {
    checked(LIMIT, || {
        let m = Manager::start().unwrap();
        let q = m.priority_queue::<Job>().unwrap();
        let kid = Kid::spawn(put_later, (q.clone(), vec![job(3, 1), job(1, 2)]));
        // The first put wakes us; the second may or may not be in yet.
        let first = q.get_timeout(Duration::from_secs(30)).unwrap();
        assert!(first == job(3, 1) || first == job(1, 2), "{first:?}");
        assert_eq!(kid.join(), 2);
        let second = q.get_timeout(Duration::from_secs(30)).unwrap();
        assert_ne!(first, second);
        // A bounded LIFO queue: a blocked put resumes when a get makes room.
        let lifo = m.bounded_lifo_queue::<Job>(1).unwrap();
        lifo.put(job(0, 0)).unwrap();
        let kid = Kid::spawn(put_later, (lifo.clone(), vec![job(0, 1)]));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(lifo.qsize().unwrap(), 1);
        assert_eq!(lifo.get().unwrap(), job(0, 0));
        assert_eq!(kid.join(), 1);
        assert_eq!(
            lifo.get_timeout(Duration::from_secs(30)).unwrap(),
            job(0, 1)
        );
        m.shutdown().unwrap();
    });
}

#[test]
fn remote_lifo_and_priority_queues_are_served_by_name() {
    let key = b"queue orders key";
    let s = ManagerServer::builder(key)
        .bounded_lifo_queue("stack", 2)
        .bounded_priority_queue::<u32>("small", 2)
        .priority_queue::<Job>("jobs")
        .lifo_queue("pile")
        .quiet(true)
        .bind("127.0.0.1:0")
        .unwrap();
    let r = RemoteManager::connect(s.local_addr(), key).unwrap();
    families(&r.lifo_queue::<u32>("stack").unwrap(), 1, 2, [2, 1]);
    families(&r.priority_queue::<u32>("small").unwrap(), 2, 1, [1, 2]);
    // `queue` takes any queue; the specific lookups check the kind.
    let pile = r.queue::<u8>("pile").unwrap();
    pile.put(1).unwrap();
    pile.put(2).unwrap();
    assert_eq!(pile.get().unwrap(), 2);
    assert_eq!(
        r.lifo_queue::<u32>("jobs").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        r.priority_queue::<u32>("stack").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );

    let jobs = r.priority_queue::<Job>("jobs").unwrap();
    for j in [job(2, 1), job(1, 2), job(2, 3), job(1, 4)] {
        jobs.put(j).unwrap();
    }
    let got: Vec<u32> = (0..4).map(|_| jobs.get().unwrap().id).collect();
    assert_eq!(got, vec![2, 4, 1, 3]);
    // The server knows the registered type: a proxy of another is refused.
    let e = r.queue::<String>("jobs").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(
        e.to_string()
            .contains("priority queue of Job, not of String"),
        "{e}"
    );
    assert!(jobs.empty().unwrap());

    // A get blocked in one thread is woken by a put from another client.
    let waiter = {
        let jobs = jobs.clone();
        std::thread::spawn(move || jobs.get_timeout(Duration::from_secs(30)))
    };
    std::thread::sleep(Duration::from_millis(100));
    let r2 = RemoteManager::connect(s.local_addr(), key).unwrap();
    r2.priority_queue::<Job>("jobs")
        .unwrap()
        .put(job(5, 5))
        .unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), job(5, 5));
}
