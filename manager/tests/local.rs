//! The local manager: proxy semantics, proxies in other processes, failures.

use std::time::{Duration, Instant};

use multiproc_ipc::{codec, Process};
use multiproc_manager::{
    DictProxy, ErrorKind, IndexMap, LockProxy, Manager, QueueProxy, ValueProxy,
};

/// A type named like std's `String`: the same type fingerprint, another
/// encoding.
mod lookalike {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize)]
    pub struct String(pub Vec<u8>);
}

/// Runs `f` on a thread and fails the test if it does not finish in time.
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).expect("test step timed out")
}

/// True while `pid` is a live (not zombie) process.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

fn wait_dead(pid: i32, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// No named channel of the manager is left in /dev/shm (after a crash the
/// shared memory tracker removes them, within a few seconds).
fn no_shm_left(manager_pid: i32) {
    let prefix = format!("mp-{manager_pid}-");
    let left = || -> Vec<_> {
        std::fs::read_dir("/dev/shm")
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.file_name())
            .collect()
    };
    let t = Instant::now();
    while !left().is_empty() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(left().is_empty(), "left in /dev/shm: {:?}", left());
}

/// After a clean shutdown nothing is left, at once.
fn no_shm_left_now(manager_pid: i32) {
    let prefix = format!("mp-{manager_pid}-");
    let left: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}

#[test]
fn dict_semantics() {
    let m = Manager::start().unwrap();
    let d = m.dict::<String, i64>().unwrap();
    let k = |s: &str| s.to_string();
    assert!(d.is_empty().unwrap());
    assert_eq!(d.insert(&k("a"), &1).unwrap(), None);
    assert_eq!(d.insert(&k("a"), &2).unwrap(), Some(1));
    assert_eq!(d.get(&k("a")).unwrap(), Some(2));
    assert_eq!(d.get(&k("zz")).unwrap(), None);
    assert!(d.contains_key(&k("a")).unwrap());
    d.update([(k("b"), 3), (k("c"), 4)]).unwrap();
    assert_eq!(d.len().unwrap(), 3);
    let mut keys = d.keys().unwrap();
    keys.sort();
    assert_eq!(keys, vec!["a", "b", "c"]);
    let mut values = d.values().unwrap();
    values.sort();
    assert_eq!(values, vec![2, 3, 4]);
    let mut items = d.items().unwrap();
    items.sort();
    assert_eq!(items, vec![(k("a"), 2), (k("b"), 3), (k("c"), 4)]);
    assert_eq!(d.setdefault(&k("a"), &100).unwrap(), 2);
    assert_eq!(d.setdefault(&k("d"), &5).unwrap(), 5);
    assert_eq!(d.pop(&k("d")).unwrap(), 5);
    assert_eq!(
        d.pop(&k("d")).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(d.remove(&k("c")).unwrap(), Some(4));
    assert_eq!(d.remove(&k("c")).unwrap(), None);
    let map = d.to_map().unwrap();
    assert_eq!(map, IndexMap::from([(k("a"), 2), (k("b"), 3)]));
    assert_eq!(d.update_with(&k("a"), |v| v.unwrap_or(0) * 10).unwrap(), 20);
    assert_eq!(d.update_with(&k("new"), |v| v.unwrap_or(7)).unwrap(), 7);
    // A panicking function leaves the entry as it was.
    let e = d.update_with(&k("a"), |_| panic!("no thanks")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TaskPanicked);
    assert!(e.to_string().contains("no thanks"), "{e}");
    let at = e.panic_info().and_then(|p| p.location.clone());
    assert!(
        at.as_deref().is_some_and(|l| l.contains("tests/local.rs:")),
        "{at:?}"
    );
    assert_eq!(d.get(&k("a")).unwrap(), Some(20));
    d.clear().unwrap();
    assert_eq!(d.len().unwrap(), 0);
    let from = m.dict_from([(1u8, "x".to_string())]).unwrap();
    assert_eq!(from.get(&1).unwrap().as_deref(), Some("x"));
}

#[test]
fn dict_keeps_insertion_order_like_python() {
    let m = Manager::start().unwrap();
    // Keys in an order no hash map would keep.
    let order: Vec<u32> = (0..64u32).map(|i| (i * 37 + 11) % 64).collect();
    let d = m.dict::<u32, String>().unwrap();
    for k in &order {
        d.insert(k, &format!("v{k}")).unwrap();
    }
    let items =
        |o: &[u32]| -> Vec<(u32, String)> { o.iter().map(|k| (*k, format!("v{k}"))).collect() };
    assert_eq!(d.keys().unwrap(), order);
    assert_eq!(
        d.values().unwrap(),
        order.iter().map(|k| format!("v{k}")).collect::<Vec<_>>()
    );
    assert_eq!(d.items().unwrap(), items(&order));
    let map: Vec<(u32, String)> = d.to_map().unwrap().into_iter().collect();
    assert_eq!(map, items(&order));

    // Re-inserting a present key keeps its place.
    let first = order[0];
    d.insert(&first, &format!("v{first}")).unwrap();
    assert_eq!(d.keys().unwrap(), order);
    // Removing and inserting again moves it to the end.
    let mut expect = order.clone();
    for k in [order[0], order[10], order[63]] {
        d.remove(&k).unwrap();
        d.insert(&k, &format!("v{k}")).unwrap();
        expect.retain(|x| *x != k);
        expect.push(k);
    }
    assert_eq!(d.keys().unwrap(), expect);
    // update: present keys keep their place, new ones follow in order;
    // setdefault and update_with add new keys last.
    d.update([
        (expect[5], "v".into()),
        (100, "v100".into()),
        (99, "v99".into()),
    ])
    .unwrap();
    d.setdefault(&98, &"v98".into()).unwrap();
    d.setdefault(&expect[1], &"ignored".into()).unwrap();
    d.update_with(&97, |_| "v97".into()).unwrap();
    d.update_with(&expect[2], |v| v.unwrap_or_default())
        .unwrap();
    expect.extend([100, 99, 98, 97]);
    assert_eq!(d.keys().unwrap(), expect);
    // Many removals (holes squeezed out on the server) keep the order.
    for k in &order[..50] {
        d.remove(k).unwrap();
    }
    expect.retain(|k| !order[..50].contains(k));
    assert_eq!(d.keys().unwrap(), expect);
    let map: Vec<u32> = d.to_map().unwrap().into_keys().collect();
    assert_eq!(map, expect);

    // A dict made from pairs keeps their order; a repeated key keeps its
    // first place and its last value, as in `dict([...])`.
    let from = m
        .dict_from([(3u8, 'a'), (1, 'b'), (2, 'c'), (1, 'd')])
        .unwrap();
    assert_eq!(from.items().unwrap(), vec![(3, 'a'), (1, 'd'), (2, 'c')]);
}

#[test]
fn list_semantics() {
    let m = Manager::start().unwrap();
    let l = m.list_from([1i32, 2, 3]).unwrap();
    l.push(&4).unwrap();
    l.extend([5, 6]).unwrap();
    assert_eq!(l.len().unwrap(), 6);
    assert_eq!(l.get(0).unwrap(), 1);
    assert_eq!(l.get(-1).unwrap(), 6);
    assert_eq!(l.get(6).unwrap_err().kind(), ErrorKind::InvalidArgument);
    l.set(1, &20).unwrap();
    l.insert(0, &0).unwrap();
    l.insert(-100, &-1).unwrap();
    assert_eq!(l.to_vec().unwrap(), vec![-1, 0, 1, 20, 3, 4, 5, 6]);
    assert_eq!(l.pop(None).unwrap(), 6);
    assert_eq!(l.pop(Some(0)).unwrap(), -1);
    assert!(l.remove(&20).unwrap());
    assert!(!l.remove(&20).unwrap());
    assert_eq!(l.to_vec().unwrap(), vec![0, 1, 3, 4, 5]);
    l.clear().unwrap();
    assert_eq!(l.pop(None).unwrap_err().kind(), ErrorKind::Empty);
    // Big items travel in chunks through the shared-memory channel.
    let big = m.list::<Vec<u8>>().unwrap();
    let item: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
    big.push(&item).unwrap();
    assert_eq!(big.get(0).unwrap(), item);
}

#[test]
fn list_iterates_live_like_python() {
    let m = Manager::start().unwrap();
    let l = m.list_from([1u32, 2, 3]).unwrap();
    let other = l.clone();
    let mut it = l.iter();
    assert_eq!(it.next().unwrap().unwrap(), 1);
    // Python: removing an item before the position skips the next one...
    assert_eq!(other.pop(Some(0)).unwrap(), 1);
    assert_eq!(it.next().unwrap().unwrap(), 3);
    // ...and items appended before the end is reached are yielded.
    other.push(&4).unwrap();
    other.push(&5).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 4);
    other.set(-1, &50).unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 50);
    assert!(it.next().is_none());
    // Once ended it stays ended, as a Python list iterator does.
    other.push(&6).unwrap();
    assert!(it.next().is_none());
    // to_vec stays a snapshot.
    let snapshot = l.to_vec().unwrap();
    other.push(&7).unwrap();
    assert_eq!(snapshot, vec![2, 3, 4, 50, 6]);
    let mut seen = Vec::new();
    for x in &l {
        seen.push(x.unwrap());
    }
    assert_eq!(seen, vec![2, 3, 4, 50, 6, 7]);
    assert_eq!(m.list::<u8>().unwrap().iter().count(), 0);

    // An item that does not decode ends the iteration with an error. (A
    // proxy of other types is refused; a type of the same name in another
    // module has the same fingerprint, and gets the bad bytes in.)
    let mixed = m.list::<String>().unwrap();
    mixed.push(&"ok".to_string()).unwrap();
    let encoded = codec::encode(&mixed).unwrap();
    let refused: multiproc_manager::ListProxy<Vec<u8>> = codec::decode(&encoded).unwrap();
    let e = refused.push(&vec![0xff, 0xfe]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let wrong: multiproc_manager::ListProxy<lookalike::String> = codec::decode(&encoded).unwrap();
    wrong.push(&lookalike::String(vec![0xff, 0xfe])).unwrap();
    let got: Vec<_> = mixed.iter().collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].as_deref().unwrap(), "ok");
    assert_eq!(
        got[1].as_ref().unwrap_err().kind(),
        ErrorKind::Serialization
    );

    // A manager gone mid-iteration: an error, then the end.
    let mut it = l.iter();
    assert_eq!(it.next().unwrap().unwrap(), 2);
    m.shutdown().unwrap();
    let e = it.next().unwrap().unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Closed | ErrorKind::Io), "{e}");
    assert!(it.next().is_none());
}

#[test]
fn queue_lock_event_semaphore_value_namespace() {
    let m = Manager::start().unwrap();
    let q = m.bounded_queue::<u32>(2).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert!(q.full().unwrap());
    assert_eq!(q.try_put(3).unwrap_err().kind(), ErrorKind::Full);
    let t = Instant::now();
    assert_eq!(
        q.put_timeout(3, Duration::from_millis(100))
            .unwrap_err()
            .kind(),
        ErrorKind::Timeout
    );
    assert!(t.elapsed() >= Duration::from_millis(80));
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.qsize().unwrap(), 1);
    assert_eq!(q.get_timeout(Duration::from_secs(1)).unwrap(), 2);
    assert!(q.empty().unwrap());
    assert_eq!(q.try_get().unwrap_err().kind(), ErrorKind::Empty);

    let jq = m.joinable_queue::<u8>().unwrap();
    jq.put(1).unwrap();
    assert_eq!(
        jq.join_timeout(Duration::from_millis(50))
            .unwrap_err()
            .kind(),
        ErrorKind::Timeout
    );
    jq.get().unwrap();
    jq.task_done().unwrap();
    jq.join().unwrap();
    assert_eq!(
        jq.task_done().unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );

    let lock = m.lock().unwrap();
    {
        let _g = lock.lock().unwrap();
        assert!(lock.is_locked().unwrap());
        assert!(lock
            .lock_timeout(Duration::from_millis(30))
            .unwrap()
            .is_none());
    }
    assert!(!lock.is_locked().unwrap());
    assert_eq!(
        lock.release().unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );

    let r = m.rlock().unwrap();
    let g1 = r.lock().unwrap();
    let g2 = r.try_lock().unwrap();
    assert!(g2.is_some());
    drop(g2);
    assert!(r.is_locked().unwrap());
    drop(g1);
    assert!(!r.is_locked().unwrap());

    let e = m.event().unwrap();
    assert!(!e.is_set().unwrap());
    assert!(!e.wait_timeout(Duration::from_millis(20)).unwrap());
    e.set().unwrap();
    assert!(e.wait_timeout(Duration::from_millis(20)).unwrap());
    e.clear().unwrap();
    assert!(!e.is_set().unwrap());

    let s = m.bounded_semaphore(2).unwrap();
    s.acquire().unwrap();
    assert!(s.try_acquire().unwrap());
    assert!(!s.acquire_timeout(Duration::from_millis(20)).unwrap());
    s.release().unwrap();
    s.release().unwrap();
    assert_eq!(s.release().unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(s.value().unwrap(), 2);

    let v = m.value(1.5f64).unwrap();
    assert_eq!(v.get().unwrap(), 1.5);
    v.set(&2.5).unwrap();
    assert_eq!(v.update_with(|x| x * 2.0).unwrap(), 5.0);

    let ns = m.namespace().unwrap();
    ns.set("a", &vec![1u8]).unwrap();
    assert_eq!(ns.get::<Vec<u8>>("a").unwrap(), Some(vec![1]));
    assert_eq!(ns.get::<u8>("b").unwrap(), None);
    assert!(ns.remove("a").unwrap());
    assert!(ns.names().unwrap().is_empty());
}

#[test]
fn bad_values_unknown_ids_and_dead_managers_are_errors() {
    let m = Manager::start().unwrap();
    let pid = m.pid();
    let d = m.dict::<String, Vec<u32>>().unwrap();
    d.insert(&"k".into(), &vec![300, 70000]).unwrap();
    // The same object seen with another value type.
    let bytes = codec::encode(&d).unwrap();
    let wrong: DictProxy<String, u8> = codec::decode(&bytes).unwrap();
    let e = wrong.get("k").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("dict of (String, Vec<u32>)"), "{e}");
    // An object id the manager never made (the id is the last byte).
    let mut forged = bytes.clone();
    *forged.last_mut().unwrap() = 120;
    let unknown: DictProxy<String, Vec<u32>> = codec::decode(&forged).unwrap();
    assert_eq!(
        unknown.len().unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );

    // Kill the manager while a client waits on it, and after.
    let q = m.queue::<u8>().unwrap();
    let waiter = std::thread::spawn(move || q.get());
    std::thread::sleep(Duration::from_millis(100));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    let r = bounded(Duration::from_secs(10), move || waiter.join().unwrap());
    assert!(r.is_err());
    let e = bounded(Duration::from_secs(10), move || d.len().unwrap_err());
    assert!(matches!(e.kind(), ErrorKind::Closed | ErrorKind::Io), "{e}");
    m.shutdown().unwrap();
    assert!(wait_dead(pid, Duration::from_secs(5)));
    no_shm_left(pid);
}

// ---- proxies in other processes

fn decrement_with_lock((d, lock, n): (DictProxy<String, i64>, LockProxy, u32)) -> u32 {
    for _ in 0..n {
        let _g = lock.lock().unwrap();
        let c = d.get(&"count".to_string()).unwrap().unwrap();
        d.insert(&"count".to_string(), &(c - 1)).unwrap();
    }
    n
}

fn decrement_with_update((v, n): (ValueProxy<i64>, u32)) -> u32 {
    for _ in 0..n {
        v.update_with(|c| c - 1).unwrap();
    }
    n
}

#[test]
fn proxies_work_in_child_processes() {
    let m = Manager::start().unwrap();
    let d = m.dict_from([("count".to_string(), 400i64)]).unwrap();
    let lock = m.lock().unwrap();
    let v = m.value(400i64).unwrap();
    // Use the proxies here first: children must not reuse this connection.
    assert_eq!(d.len().unwrap(), 1);
    let ps: Vec<_> = (0..4)
        .map(|_| Process::spawn(decrement_with_lock, (d.clone(), lock.clone(), 100)).unwrap())
        .collect();
    let us: Vec<_> = (0..4)
        .map(|_| Process::spawn(decrement_with_update, (v.clone(), 100)).unwrap())
        .collect();
    let done = bounded(Duration::from_secs(60), move || {
        let a: u32 = ps.into_iter().map(|p| p.join().unwrap()).sum();
        let b: u32 = us.into_iter().map(|p| p.join().unwrap()).sum();
        a + b
    });
    assert_eq!(done, 800);
    assert_eq!(d.get(&"count".to_string()).unwrap(), Some(0));
    assert_eq!(v.get().unwrap(), 0);
}

/// A child's first request goes with its connection's handshake when it
/// is small (up to 16 KiB encoded), on the channel when larger.
fn first_insert((d, size): (DictProxy<String, Vec<u8>>, usize)) -> usize {
    d.insert(&format!("k{size}"), &vec![7u8; size]).unwrap();
    d.len().unwrap()
}

/// A first request whose answer is larger than the channel's buffer.
fn first_get((d, key): (DictProxy<String, Vec<u8>>, String)) -> usize {
    let v = d.get(&key).unwrap().unwrap();
    assert!(v.iter().all(|&b| b == 7));
    v.len()
}

#[test]
fn a_first_request_of_any_size_gets_its_answer() {
    let m = Manager::start().unwrap();
    let d = m.dict::<String, Vec<u8>>().unwrap();
    // Around the 16 KiB a first request may have, and far past the
    // channel's 64 KiB buffer.
    let sizes = [0usize, 1, 16_000, 16_384, 16_500, 200_000];
    for (i, &size) in sizes.iter().enumerate() {
        let p = Process::spawn(first_insert, (d.clone(), size)).unwrap();
        let len = bounded(Duration::from_secs(30), move || p.join().unwrap());
        assert_eq!(len, i + 1, "the insert of {size} bytes");
    }
    for &size in &sizes {
        let p = Process::spawn(first_get, (d.clone(), format!("k{size}"))).unwrap();
        let len = bounded(Duration::from_secs(30), move || p.join().unwrap());
        assert_eq!(len, size);
    }
}

fn hold_lock_and_wait((lock, q, jobs): (LockProxy, QueueProxy<u32>, QueueProxy<u32>)) {
    let _g = lock.lock().unwrap();
    q.put(std::process::id()).unwrap();
    // Blocked mid-call when it is killed.
    let _ = jobs.get();
}

#[test]
fn a_client_killed_mid_call_disturbs_nobody() {
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let q = m.queue::<u32>().unwrap();
    let jobs = m.queue::<u32>().unwrap();
    let p = Process::spawn(hold_lock_and_wait, (lock.clone(), q.clone(), jobs.clone())).unwrap();
    let child = bounded(Duration::from_secs(20), {
        let q = q.clone();
        move || q.get().unwrap()
    });
    assert_eq!(child as i32, p.pid());
    assert!(lock.is_locked().unwrap());
    p.kill().unwrap();
    // The manager releases the dead client's lock, and its pending get does
    // not swallow the next item.
    let got = bounded(Duration::from_secs(20), move || {
        let g = lock
            .lock_timeout(Duration::from_secs(10))
            .unwrap()
            .is_some();
        q.put(7).unwrap();
        (g, q.get_timeout(Duration::from_secs(10)).unwrap())
    });
    assert_eq!(got, (true, 7));
    assert!(p.join().is_err());
}

fn start_manager_and_report(q: QueueProxy<i32>) {
    let inner = Manager::start().unwrap();
    q.put(inner.pid()).unwrap();
    std::thread::sleep(Duration::from_secs(60));
    drop(inner);
}

#[test]
fn shutdown_and_parent_death_leave_no_manager_running() {
    let m = Manager::start().unwrap();
    let pid = m.pid();
    let q = m.queue::<i32>().unwrap();
    let p = Process::spawn(start_manager_and_report, q.clone()).unwrap();
    let inner = bounded(Duration::from_secs(20), move || q.get().unwrap());
    assert!(alive(inner));
    p.kill().unwrap();
    assert!(p.join().is_err());
    assert!(
        wait_dead(inner, Duration::from_secs(10)),
        "the orphaned manager survived"
    );

    m.shutdown().unwrap();
    assert!(!alive(pid));
    m.shutdown().unwrap(); // idempotent
    let t = Instant::now();
    drop(m);
    assert!(t.elapsed() < Duration::from_secs(5));
    no_shm_left_now(pid);
}
