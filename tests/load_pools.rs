//! Load: ten pools of four workers at once on a two-core machine, each
//! driven by its own thread with `map`, `imap_unordered` and `apply_async`;
//! every result exact, nothing hangs, nothing is left.

use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc::Pool;
use multiproc_testkit::checked;

const POOLS: usize = 10;
const WORKERS: usize = 4;
const TASKS: u64 = 10_000;

fn square(x: u64) -> u64 {
    x * x
}

fn drive(pool: Arc<Pool>, seed: u64) -> u64 {
    let want: u64 = (0..TASKS).map(|x| (x + seed) * (x + seed)).sum();
    let m: u64 = pool
        .map(square, (0..TASKS).map(|x| x + seed))
        .unwrap()
        .into_iter()
        .sum();
    assert_eq!(m, want, "map of pool {seed}");
    let u: u64 = pool
        .imap_unordered(square, (0..TASKS).map(|x| x + seed))
        .unwrap()
        .map(Result::unwrap)
        .sum();
    assert_eq!(u, want, "imap_unordered of pool {seed}");
    let rs: Vec<_> = (0..200u64)
        .map(|x| pool.apply_async(square, x + seed).unwrap())
        .collect();
    let a: u64 = rs
        .into_iter()
        .map(|r| r.get_timeout(Duration::from_secs(30)).unwrap())
        .sum();
    assert_eq!(a, (0..200u64).map(|x| (x + seed) * (x + seed)).sum::<u64>());
    2 * TASKS + 200
}

#[test]
fn ten_pools_of_four_at_once() {
    checked(Duration::from_secs(120), || {
        let t = Instant::now();
        let pools: Vec<Arc<Pool>> = (0..POOLS)
            .map(|_| Arc::new(Pool::new(WORKERS).unwrap()))
            .collect();
        let started = t.elapsed();
        let handles: Vec<_> = pools
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let p = Arc::clone(p);
                std::thread::spawn(move || drive(p, i as u64 * 1_000))
            })
            .collect();
        let done: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let ran = t.elapsed();
        for p in &pools {
            assert_eq!(p.worker_pids().len(), WORKERS);
        }
        drop(pools);
        eprintln!(
            "{POOLS} pools of {WORKERS}: started in {started:?}, {done} tasks in {ran:?}, torn down in {:?}",
            t.elapsed() - ran
        );
        assert_eq!(done, POOLS as u64 * (2 * TASKS + 200));
    });
}
