//! Manager proxies used from pool workers and processes, through the facade.

use std::time::Duration;

use multiproc::{DictProxy, Manager, Pool, QueueProxy};

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
    q.put(&i).unwrap();
    i
}

#[test]
fn proxies_work_in_pool_tasks() {
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
