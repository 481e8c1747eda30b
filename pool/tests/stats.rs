//! `Pool::stats` and `Executor::stats`.

use std::time::Duration;

use multiproc_pool::{Executor, Pool};
use multiproc_testkit::{checked, kill_pid, wait_until, LIMIT};

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn pid(_: ()) -> i32 {
    std::process::id() as i32
}

#[test]
fn stats_follow_queued_running_done_failed_and_respawns() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let s = pool.stats();
        assert_eq!((s.queued, s.running, s.completed, s.failed), (0, 0, 0, 0));
        assert_eq!((s.workers_alive, s.workers_respawned), (2, 0));
        let rs: Vec<_> = (0..600)
            .map(|_| pool.apply_async(sleep_ms, 1).unwrap())
            .collect();
        let s = pool.stats();
        assert!(s.queued > 0, "600 tasks cannot all be at 2 workers: {s:?}");
        // Workers hold at most 512 (their rings); `running` also counts the
        // tasks whose results are being delivered, so that every task is in
        // exactly one place: the sum is exact at any instant.
        assert!(s.running > 0, "{s:?}");
        assert_eq!(s.queued + s.running + s.completed as usize, 600, "{s:?}");
        for _ in 0..200 {
            let s = pool.stats();
            assert_eq!(s.queued + s.running + s.completed as usize, 600, "{s:?}");
        }
        for r in rs {
            r.get().unwrap();
        }
        let s = pool.stats();
        assert_eq!((s.queued, s.running, s.completed), (0, 0, 600));
        // Killed workers are replaced and counted; the task they ran fails
        // (or, if neither had started it yet, runs on a replacement).
        let r = pool.apply_async(sleep_ms, 300).unwrap();
        assert!(wait_until(Duration::from_secs(10), || pool.stats().running == 1));
        for p in pool.worker_pids() {
            kill_pid(p);
        }
        let failed = u64::from(r.get().is_err());
        assert!(wait_until(Duration::from_secs(10), || {
            let s = pool.stats();
            s.workers_alive == 2 && s.workers_respawned == 2
        }));
        assert_eq!(pool.stats().failed, failed);
        assert_ne!(pool.apply(pid, ()).unwrap(), 0);
    });
}

#[test]
fn executor_stats_count_cancellations_as_failures() {
    checked(LIMIT, || {
        let ex = Executor::new(1).unwrap();
        let fs: Vec<_> = (0..20).map(|_| ex.submit(sleep_ms, 10).unwrap()).collect();
        let cancelled = fs.iter().rev().filter(|f| f.cancel()).count();
        assert!(cancelled > 0);
        ex.shutdown(true, false).unwrap();
        let s = ex.stats();
        assert_eq!(s.completed as usize + cancelled, 20, "{s:?}");
        assert_eq!(s.failed as usize, cancelled, "{s:?}");
    });
}
