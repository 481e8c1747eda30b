//! `max_tasks_per_child`: workers are replaced after n tasks.

mod common;

use std::collections::HashMap;

use common::{bounded, LIMIT};
use multiproc_pool::Pool;

fn current_pid(_: u64) -> i32 {
    std::process::id() as i32
}

fn square(x: u64) -> u64 {
    x * x
}

fn init_marker(v: u64) {
    assert_eq!(v, 42, "initargs arrive");
}

#[test]
fn worker_pids_change_after_n_tasks() {
    bounded(LIMIT, || {
        let pool = Pool::builder()
            .processes(2)
            .max_tasks_per_child(3)
            .initializer(init_marker, 42)
            .build()
            .unwrap();
        let first = pool.worker_pids();
        let pids: Vec<i32> = (0..30u64)
            .map(|i| pool.apply(current_pid, i).unwrap())
            .collect();
        let mut counts: HashMap<i32, usize> = HashMap::new();
        for p in &pids {
            *counts.entry(*p).or_default() += 1;
        }
        assert!(counts.values().all(|&c| c <= 3), "{counts:?}");
        assert!(counts.len() >= 10, "{counts:?}");
        assert_ne!(pool.worker_pids(), first);
        // Async submissions beyond the limit still all complete.
        let rs: Vec<_> = (0..50u64)
            .map(|i| pool.apply_async(square, i).unwrap())
            .collect();
        for (i, r) in rs.into_iter().enumerate() {
            assert_eq!(r.get().unwrap(), (i * i) as u64);
        }
        assert_eq!(pool.map_chunksize(square, 0..40u64, 2).unwrap().len(), 40);
        pool.close();
        pool.join().unwrap();
    });
}
