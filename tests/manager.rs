//! Manager proxies used from pool workers and processes, through the facade.

use std::time::Duration;

use multiproc::RemoteManager;
use multiproc::{codec, DictProxy, ErrorKind, Manager, ManagerServer, Pool, QueueProxy};
use multiproc::{IndexMap, ListIter, ListProxy};
use multiproc_testkit::{checked, Kid};

/// Runs `f` on a thread and fails the test if it does not finish in time.
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).expect("test step timed out")
}

fn record((d, q, i): (DictProxy<u32, u32>, QueueProxy<u32>, u32)) -> u32 {
    d.update_with(&0, |c| c.unwrap_or(0) + 1).unwrap();
    d.insert(&(i + 1), &std::process::id()).unwrap();
    q.put(i).unwrap();
    i
}

#[test]
fn proxies_work_in_pool_tasks() {
    let _serial = multiproc_testkit::serial();
    let manager = Manager::start().unwrap();
    let d = manager.dict::<u32, u32>().unwrap();
    let q = manager.queue::<u32>().unwrap();
    let (d2, q2) = (d.clone(), q.clone());
    let results = bounded(Duration::from_secs(60), move || {
        let pool = Pool::new(2).unwrap();
        let r: Vec<u32> = (0..50)
            .map(|i| pool.apply(record, (d2.clone(), q2.clone(), i)).unwrap())
            .collect();
        drop(pool);
        r
    });
    assert_eq!(results, (0..50).collect::<Vec<_>>());
    assert_eq!(d.get(&0).unwrap(), Some(50));
    assert_eq!(d.len().unwrap(), 51);
    // Tasks ran in the workers, not here.
    let me = std::process::id();
    for i in 1..=50 {
        assert_ne!(d.get(&i).unwrap(), Some(me), "task {i} ran in the parent");
    }
    let mut got: Vec<u32> = (0..50).map(|_| q.get().unwrap()).collect();
    got.sort();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    manager.shutdown().unwrap();
}

/// A key no other test registers in this process.
fn unique_key(tag: &str) -> Vec<u8> {
    format!("{tag} authkey of {} for this test", std::process::id()).into_bytes()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn remote_server(key: &[u8]) -> ManagerServer {
    ManagerServer::builder(key)
        .dict("d")
        .queue("q")
        .quiet(true)
        .bind("127.0.0.1:0")
        .unwrap()
}

#[test]
fn encoded_remote_proxies_do_not_hold_the_authkey() {
    let key = unique_key("encoded");
    let server = remote_server(&key);
    let remote = RemoteManager::connect(server.local_addr(), &key).unwrap();
    let d = remote.dict::<u32, u32>("d").unwrap();
    let q = remote.queue::<u32>("q").unwrap();
    for bytes in [codec::encode(&d).unwrap(), codec::encode(&q).unwrap()] {
        assert!(!contains(&bytes, &key), "the authkey is in {bytes:?}");
    }
    assert!(!format!("{d:?} {q:?} {remote:?}").contains("authkey of"));
    // This process connected, so it decodes them.
    let d2: DictProxy<u32, u32> = codec::decode(&codec::encode(&d).unwrap()).unwrap();
    d2.insert(&1, &1).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(1));
    server.shutdown();
}

fn use_remote((d, encoded, i): (DictProxy<u32, u32>, Vec<u8>, u32)) -> u32 {
    d.insert(&i, &std::process::id()).unwrap();
    let q: QueueProxy<u32> = codec::decode(&encoded).unwrap();
    q.put(i).unwrap();
    i
}

#[test]
fn remote_proxies_work_in_children_forked_after_connect() {
    checked(Duration::from_secs(120), || {
        let key = unique_key("forked after");
        let server = remote_server(&key);
        let remote = RemoteManager::connect(server.local_addr(), &key).unwrap();
        let d = remote.dict::<u32, u32>("d").unwrap();
        let q = remote.queue::<u32>("q").unwrap();
        let encoded = codec::encode(&q).unwrap();

        let kid = Kid::spawn(use_remote, (d.clone(), encoded.clone(), 1));
        let child = kid.pid();
        assert_eq!(kid.join(), 1);
        assert_eq!(d.get(&1).unwrap(), Some(child as u32));
        assert_eq!(q.get().unwrap(), 1);

        // A pool created after the connect: its workers inherit the key.
        let pool = Pool::new(2).unwrap();
        for i in 2..6 {
            let r = pool.apply(use_remote, (d.clone(), encoded.clone(), i));
            assert_eq!(r.unwrap(), i);
        }
        drop(pool);
        let mut got: Vec<u32> = (2..6).map(|_| q.get().unwrap()).collect();
        got.sort();
        assert_eq!(got, vec![2, 3, 4, 5]);
        server.shutdown();
    });
}

#[test]
fn workers_forked_before_connect_cannot_decode_remote_proxies() {
    checked(Duration::from_secs(120), || {
        let key = unique_key("forked before");
        let server = remote_server(&key);
        let pool = Pool::new(1).unwrap();
        let remote = RemoteManager::connect(server.local_addr(), &key).unwrap();
        let d = remote.dict::<u32, u32>("d").unwrap();
        let encoded = codec::encode(&remote.queue::<u32>("q").unwrap()).unwrap();
        let e = pool.apply(use_remote, (d.clone(), encoded, 1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Serialization, "{e}");
        let msg = format!("{e} {:?}", e);
        assert!(msg.contains("RemoteManager::connect"), "{msg}");
        assert!(!msg.contains("authkey of"), "{msg}");
        assert_eq!(d.len().unwrap(), 0, "the task ran");
        drop(pool);
        server.shutdown();
    });
}

fn sum_live((l, q, i): (ListProxy<u32>, QueueProxy<(u32, u32)>, u32)) -> u32 {
    let it: ListIter<'_, u32> = l.iter();
    let sum = it.map(|x| x.unwrap()).sum();
    q.put((sum, i)).unwrap();
    sum
}

#[test]
fn ordered_dicts_live_lists_and_priority_queues_through_the_facade() {
    checked(Duration::from_secs(120), || {
        let manager = Manager::start().unwrap();
        let d = manager.dict_from([('z', 1u8), ('a', 2), ('m', 3)]).unwrap();
        let map: IndexMap<char, u8> = d.to_map().unwrap();
        assert_eq!(map.keys().collect::<String>(), "zam");

        let l = manager.list_from([1u32, 2, 3]).unwrap();
        let q = manager.priority_queue::<(u32, u32)>().unwrap();
        let pool = Pool::new(2).unwrap();
        for i in (0..4).rev() {
            assert_eq!(pool.apply(sum_live, (l.clone(), q.clone(), i)).unwrap(), 6);
        }
        drop(pool);
        let got: Vec<(u32, u32)> = (0..4).map(|_| q.get().unwrap()).collect();
        assert_eq!(got, vec![(6, 0), (6, 1), (6, 2), (6, 3)]);
        manager.shutdown().unwrap();
    });
}

/// A shared object for the pool test: a sum and the pids that added to it.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Sum {
    total: u64,
    pids: Vec<u32>,
}

impl multiproc::SharedObject for Sum {
    type Request = Option<u64>;
    type Reply = (u64, usize);

    fn handle(&mut self, add: Option<u64>) -> (u64, usize) {
        if let Some(k) = add {
            self.total += k;
            self.pids.push(std::process::id());
        }
        (self.total, self.pids.len())
    }
}

fn add_to_sum((s, k): (multiproc::SharedProxy<Sum>, u64)) -> u32 {
    s.call(Some(k)).unwrap();
    std::process::id()
}

#[test]
fn shared_objects_work_in_pool_tasks_through_the_facade() {
    checked(Duration::from_secs(120), || {
        let manager = Manager::start().unwrap();
        let s = manager.register("sum", Sum::default()).unwrap();
        let pool = Pool::new(2).unwrap();
        let pids = pool
            .map(add_to_sum, (1..=30).map(|k| (s.clone(), k)))
            .unwrap();
        pool.close();
        pool.join().unwrap();
        assert!(pids.iter().all(|p| *p != std::process::id()));
        assert_eq!(s.call(None).unwrap(), (465, 30));
        let by_name = manager.shared::<Sum>("sum").unwrap();
        assert_eq!(by_name.call(None).unwrap(), (465, 30));
        manager.shutdown().unwrap();
    });
}

fn one_increment(d: DictProxy<u32, u32>) -> u32 {
    d.update_with(&0, |c| c.unwrap_or(0) + 1).unwrap()
}

fn manager_threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// A `Process` child closes its manager connection as it exits (its
/// `at_child_exit` hook), so the manager's handler thread is free for the
/// next client at once: a stream of short-lived clients reuses a few
/// threads. (Before, each handler noticed its client's death only at its
/// next 50 ms look at the socket, and every new client got a new thread:
/// after 40 clients, about 40 threads.)
#[test]
fn short_lived_clients_reuse_the_managers_handler_threads() {
    checked(Duration::from_secs(60), || {
        let manager = Manager::start().unwrap();
        let d = manager.dict::<u32, u32>().unwrap();
        for i in 1..=40u32 {
            let p = multiproc::Process::spawn(one_increment, d.clone()).unwrap();
            assert_eq!(p.join().unwrap(), i);
        }
        let threads = manager_threads(manager.pid());
        // The manager's main thread, two spare handlers, at most four idle
        // ones, and one or two between a close and their next accept.
        assert!(threads <= 9, "the manager runs {threads} threads");
        manager.shutdown().unwrap();
    });
}
