//! Per-task timeouts: the task fails with Timeout, its worker is replaced.

use std::time::{Duration, Instant};

use multiproc_pool::{ApplyOptions, AsyncResult, ErrorKind, Pool};
use multiproc_testkit::{checked, wait_gone, LIMIT};

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// `sleep_ms(ms)` submitted with a per-task `timeout`.
fn sleep_timed(pool: &Pool, ms: u64, timeout: Duration) -> AsyncResult<u64> {
    pool.apply_async_with(sleep_ms, ms, ApplyOptions::new().timeout(timeout))
        .unwrap()
}

fn current_pid(_: ()) -> i32 {
    std::process::id() as i32
}

#[test]
fn a_task_over_its_timeout_fails_and_its_worker_is_replaced() {
    checked(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        let [pid] = pool.worker_pids()[..] else {
            panic!()
        };
        let t = Instant::now();
        let r = sleep_timed(&pool, 30_000, Duration::from_millis(300));
        let e = r.get().unwrap_err();
        let took = t.elapsed();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(10),
            "a 300 ms timeout took {took:?}"
        );
        assert!(wait_gone(pid), "the timed-out worker must be killed");
        let new_pid = pool.apply(current_pid, ()).unwrap();
        assert_ne!(new_pid, pid);
        // Within its timeout a task succeeds.
        let r = sleep_timed(&pool, 10, Duration::from_secs(10));
        assert_eq!(r.get().unwrap(), 10);
    });
}

#[test]
fn the_builder_timeout_applies_to_every_task() {
    checked(LIMIT, || {
        let pool = Pool::builder()
            .processes(2)
            .task_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let slow = pool.apply_async(sleep_ms, 30_000).unwrap();
        let fast: Vec<_> = (0..10)
            .map(|_| pool.apply_async(sleep_ms, 1).unwrap())
            .collect();
        assert_eq!(slow.get().unwrap_err().kind(), ErrorKind::Timeout);
        for r in fast {
            assert_eq!(r.get().unwrap(), 1);
        }
        let out: Vec<_> = pool
            .imap(sleep_ms, vec![1u64, 30_000, 2])
            .unwrap()
            .collect();
        assert_eq!(*out[0].as_ref().unwrap(), 1);
        assert_eq!(out[1].as_ref().unwrap_err().kind(), ErrorKind::Timeout);
        assert_eq!(*out[2].as_ref().unwrap(), 2);
    });
}

/// A timed task submitted the moment a pool starts, and waited for at
/// once: the waiting caller collects results itself, and may take in the
/// pool's news before the result thread does; the deadline must still
/// reach the thread that enforces it (a lost one let the task run on).
#[test]
fn a_deadline_is_kept_whoever_collects_first() {
    checked(LIMIT, || {
        for round in 0..20 {
            let pool = Pool::new(1).unwrap();
            let t = Instant::now();
            let e = sleep_timed(&pool, 5_000, Duration::from_millis(20))
                .get()
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout, "round {round}: {e}");
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "round {round}: a 20 ms timeout took {:?}",
                t.elapsed()
            );
        }
    });
}
