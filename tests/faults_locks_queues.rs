//! Fault injection on locks and queues: a holder SIGKILLed for each lock
//! type, queue consumers SIGKILLed mid-`get` (of a `Queue`, a `LifoQueue`
//! and a `PriorityQueue`), a producer SIGKILLed mid-`put` of a 64 MiB item. The others go on, no item is delivered twice, no
//! partial item is ever delivered, nothing hangs and nothing leaks.

use std::time::{Duration, Instant};

use multiproc::sync::{BoundedSemaphore, Condition, Event, Lock, LockError, RLock};
use multiproc::value::{RawArray, RawValue};
use multiproc::{LifoQueue, PriorityQueue, Queue, Value};
use multiproc_testkit::{checked, Kid};
use serde::{Deserialize, Serialize};

const LIMIT: Duration = Duration::from_secs(60);

/// One primitive of each lock type, shared by the test and its children.
#[derive(Clone, Serialize, Deserialize)]
struct Locks {
    lock: Lock,
    rlock: RLock,
    cond: Condition,
    value: Value<u64>,
    sem: BoundedSemaphore,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum Which {
    Lock,
    RLock,
    Condition,
    ValueLock,
    Semaphore,
}

/// Takes `which`, says so, and holds it until killed.
fn hold((locks, which, held): (Locks, Which, Event)) {
    let sleep = || std::thread::sleep(LIMIT * 2);
    match which {
        Which::Lock => {
            let _g = locks.lock.lock().unwrap();
            held.set();
            sleep();
        }
        Which::RLock => {
            let _g1 = locks.rlock.lock().unwrap();
            let _g2 = locks.rlock.lock().unwrap();
            held.set();
            sleep();
        }
        Which::Condition => {
            let _g = locks.cond.lock().unwrap();
            held.set();
            sleep();
        }
        Which::ValueLock => {
            let mut g = locks.value.lock().unwrap();
            *g = 7;
            held.set();
            sleep();
        }
        Which::Semaphore => {
            let _g = locks.sem.acquire();
            held.set();
            sleep();
        }
    }
}

/// Tries to take `which` (waiting up to 30 s); names the outcome.
fn take((locks, which): (Locks, Which)) -> String {
    fn name<G>(r: Result<G, LockError<G>>) -> String {
        match r {
            Ok(_) => "ok".into(),
            Err(LockError::OwnerDied(_g)) => "owner-died".into(),
            Err(e) => format!("{e}"),
        }
    }
    let t = Duration::from_secs(30);
    match which {
        Which::Lock => name(locks.lock.lock_timeout(t)),
        Which::RLock => name(locks.rlock.lock_timeout(t)),
        Which::Condition => name(locks.cond.lock_timeout(t)),
        Which::ValueLock => match locks.value.lock() {
            Ok(g) => format!("ok {}", *g),
            Err(LockError::OwnerDied(g)) => format!("owner-died {}", *g),
            Err(e) => format!("{e}"),
        },
        Which::Semaphore => match locks.sem.acquire_timeout(t) {
            Some(_) => "ok".into(),
            None => "timeout".into(),
        },
    }
}

#[test]
fn a_killed_holder_of_each_lock_type_does_not_block_the_others() {
    checked(LIMIT, || {
        let locks = Locks {
            lock: Lock::new().unwrap(),
            rlock: RLock::new().unwrap(),
            cond: Condition::new().unwrap(),
            value: Value::new(0u64).unwrap(),
            sem: BoundedSemaphore::new(2).unwrap(),
        };
        for which in [
            Which::Lock,
            Which::RLock,
            Which::Condition,
            Which::ValueLock,
            Which::Semaphore,
        ] {
            let held = Event::new().unwrap();
            let holder = Kid::spawn(hold, (locks.clone(), which, held.clone()));
            assert!(held.wait_timeout(Duration::from_secs(10)), "{which:?}");
            // A second process is already waiting when the holder dies.
            let waiter = Kid::spawn(take, (locks.clone(), which));
            std::thread::sleep(Duration::from_millis(100));
            let t = Instant::now();
            holder.kill();
            let got = waiter.join();
            let took = t.elapsed();
            eprintln!("{which:?}: the waiter got {got:?} {took:?} after the kill");
            match which {
                // A semaphore has no owner (as in Python): the killed
                // holder's permit is gone, the other permit serves.
                Which::Semaphore => assert_eq!(got, "ok"),
                // A guard stores its value when released: the killed
                // holder's unfinished update is not seen, half or whole.
                Which::ValueLock => assert_eq!(got, "owner-died 0"),
                _ => assert_eq!(got, "owner-died"),
            }
            assert!(took < Duration::from_secs(5), "{which:?}: {took:?}");
            // Recovered: the next taker gets it plainly.
            let again = take((locks.clone(), which));
            assert!(again.starts_with("ok"), "{which:?}: {again}");
        }
    });
}

/// An item whose every byte is derived from its id: a partial or mixed
/// item is detected.
#[derive(Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    id: u32,
    bytes: Vec<u8>,
}

impl Item {
    fn new(id: u32) -> Item {
        let len = 1 + (id as usize * 97) % 3000;
        Item {
            id,
            bytes: (0..len).map(|i| (id as usize + i) as u8).collect(),
        }
    }
    fn whole(&self) -> bool {
        let len = 1 + (self.id as usize * 97) % 3000;
        self.bytes.len() == len
            && self
                .bytes
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (self.id as usize + i) as u8)
    }
}

/// The operations the kill storm needs, of each cross-process queue type.
trait ItemQueue: Clone + Serialize + serde::de::DeserializeOwned + 'static {
    fn bounded(maxsize: usize) -> Self;
    /// False if the item could not be put within `timeout`.
    fn put_within(&self, item: Item, timeout: Duration) -> bool;
    /// `Ok(None)` when no item came within `timeout`; `Err` for any other
    /// failure (which a kill storm must never cause).
    fn get_within(&self, timeout: Duration) -> Result<Option<Item>, String>;
    fn is_empty(&self) -> bool;
}

macro_rules! item_queue {
    ($q:ident) => {
        impl ItemQueue for $q<Item> {
            fn bounded(maxsize: usize) -> Self {
                $q::with_maxsize(maxsize).unwrap()
            }
            fn put_within(&self, item: Item, timeout: Duration) -> bool {
                self.put_timeout(item, timeout).is_ok()
            }
            fn get_within(&self, timeout: Duration) -> Result<Option<Item>, String> {
                match self.get_timeout(timeout) {
                    Ok(item) => Ok(Some(item)),
                    Err(multiproc::queue::GetTimeoutError::Timeout) => Ok(None),
                    Err(e) => Err(e.to_string()),
                }
            }
            fn is_empty(&self) -> bool {
                self.empty()
            }
        }
    };
}
item_queue!(Queue);
item_queue!(LifoQueue);
item_queue!(PriorityQueue);

/// Takes items until the queue stays empty for `idle_ms`, counting each
/// id in `seen`, and each damaged item or failed get in `bad`.
fn consume<Q: ItemQueue>((q, seen, bad, idle_ms): (Q, RawArray<u32>, RawValue<u32>, u64)) -> u32 {
    let mut n = 0;
    loop {
        match q.get_within(Duration::from_millis(idle_ms)) {
            Ok(Some(item)) => {
                if !item.whole() {
                    bad.fetch_add(1);
                }
                let _ = seen.fetch_add(item.id as usize, 1);
                n += 1;
            }
            Ok(None) => return n,
            Err(e) => {
                eprintln!("a consumer's get failed: {e}");
                bad.fetch_add(1);
                return n;
            }
        }
    }
}

#[test]
fn a_consumer_killed_while_blocked_in_get_loses_nothing() {
    checked(LIMIT, || {
        let q = Queue::<Item>::new().unwrap();
        let n = 1_000;
        let seen = RawArray::<u32>::new(n).unwrap();
        let bad = RawValue::new(0u32).unwrap();
        let blocked = Kid::spawn(
            consume::<Queue<Item>>,
            (q.clone(), seen.clone(), bad.clone(), 60_000),
        );
        std::thread::sleep(Duration::from_millis(200));
        blocked.kill();
        for id in 0..n as u32 {
            q.put(Item::new(id)).unwrap_or_else(|_| panic!("put {id}"));
        }
        let other = Kid::spawn(
            consume::<Queue<Item>>,
            (q.clone(), seen.clone(), bad.clone(), 500),
        );
        assert_eq!(other.join(), n as u32);
        assert_eq!(bad.get(), 0, "damaged items delivered, or gets failed");
        for i in 0..n {
            assert_eq!(seen.get(i).unwrap(), 1, "item {i}");
        }
    });
}

/// A producer thread puts 20,000 items into a bounded queue of 64 while
/// two consumer processes take them and one of the two is SIGKILLed (and
/// replaced) every 7 ms, wherever it is in its `get`.
fn kill_storm<Q: ItemQueue + Send>() {
    checked(LIMIT, || {
        let q = Q::bounded(64);
        let n: u32 = 20_000;
        let seen = RawArray::<u32>::new(n as usize).unwrap();
        let bad = RawValue::new(0u32).unwrap();
        let args = (q.clone(), seen.clone(), bad.clone(), 2_000);
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                for id in 0..n {
                    if !q.put_within(Item::new(id), Duration::from_secs(20)) {
                        return id;
                    }
                }
                n
            })
        };
        let mut kills = 0u32;
        let mut consumers = vec![
            Kid::spawn(consume::<Q>, args.clone()),
            Kid::spawn(consume::<Q>, args.clone()),
        ];
        let t = Instant::now();
        while !producer.is_finished() && t.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(7));
            let victim = consumers.remove(kills as usize % 2);
            victim.kill();
            kills += 1;
            consumers.insert(kills as usize % 2, Kid::spawn(consume::<Q>, args.clone()));
        }
        assert_eq!(producer.join().unwrap(), n, "the producer was stuck");
        let drained: u32 = consumers.into_iter().map(Kid::join).sum();
        let counts: Vec<u32> = (0..n as usize).map(|i| seen.get(i).unwrap()).collect();
        let delivered = counts.iter().filter(|&&c| c == 1).count() as u32;
        let twice: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] > 1).collect();
        eprintln!(
            "{}: {n} items, {kills} consumer kills: {delivered} delivered ({drained} to the survivors), {} lost",
            std::any::type_name::<Q>(),
            n - delivered
        );
        assert!(twice.is_empty(), "items delivered twice: {twice:?}");
        assert_eq!(bad.get(), 0, "damaged items delivered, or gets failed");
        // Each kill loses at most the one item its consumer was taking.
        assert!(
            n - delivered <= kills,
            "{} lost for {kills} kills",
            n - delivered
        );
        assert!(q.is_empty());
    });
}

#[test]
fn consumers_killed_at_random_mid_get_never_duplicate_or_tear_an_item() {
    kill_storm::<Queue<Item>>();
}

#[test]
fn lifo_consumers_killed_at_random_mid_get_never_duplicate_or_tear_an_item() {
    kill_storm::<LifoQueue<Item>>();
}

#[test]
fn priority_consumers_killed_at_random_mid_get_never_duplicate_or_tear_an_item() {
    kill_storm::<PriorityQueue<Item>>();
}

const BIG: usize = 64 << 20;

/// Puts 64 MiB items, item `k` filled with byte `k`, until killed.
fn put_big(q: Queue<Vec<u8>>) {
    for k in 0u8.. {
        if q.put(vec![k; BIG]).is_err() {
            return;
        }
    }
}

#[test]
fn a_producer_killed_mid_put_of_64_mib_delivers_no_partial_item() {
    checked(LIMIT, || {
        let q = Queue::<Vec<u8>>::with_maxsize(2).unwrap();
        for round in 0..3u64 {
            let producer = Kid::spawn(put_big, q.clone());
            let first = q.get_timeout(Duration::from_secs(20)).unwrap();
            assert!(first.len() == BIG && first.iter().all(|&b| b == first[0]));
            // Kill it at a varying point of its next puts.
            std::thread::sleep(Duration::from_millis(5 + 17 * round));
            producer.kill();
            let mut whole = 1;
            while let Ok(item) = q.get_timeout(Duration::from_millis(500)) {
                assert_eq!(item.len(), BIG, "a partial item was delivered");
                assert!(item.iter().all(|&b| b == item[0]), "a torn item");
                whole += 1;
            }
            eprintln!("round {round}: {whole} whole items, then the producer died");
        }
        // The queue goes on.
        q.put(vec![1, 2, 3]).unwrap();
        assert_eq!(
            q.get_timeout(Duration::from_secs(5)).unwrap(),
            vec![1, 2, 3]
        );
        drop(q);
    });
}
