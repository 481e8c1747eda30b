//! A worker that cannot be forked (through `test_hooks::fail_worker_spawn`).

use std::time::Duration;

use multiproc_pool::{test_hooks, ErrorKind, Pool};
use multiproc_testkit::{checked, descendants, kill_pid, wait_until, LIMIT, SETTLE};

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn a_failed_spawn_at_start_cleans_up_the_started_workers() {
    checked(LIMIT, || {
        for n in 1..=4 {
            test_hooks::fail_worker_spawn(n);
            let e = Pool::new(4).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Io, "{e}");
            assert!(e.to_string().contains("test hook"), "{e}");
            // Workers, zygote: nothing of the failed pool is left.
            assert!(
                wait_until(SETTLE, || descendants().is_empty()),
                "left behind after spawn {n} failed: {:?}",
                descendants()
            );
        }
        // The hook fires once; pools start again.
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.apply(square, 9).unwrap(), 81);
    });
}

#[test]
fn a_failed_replacement_of_the_last_worker_breaks_the_pool() {
    checked(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        assert_eq!(pool.apply(square, 2).unwrap(), 4);
        test_hooks::fail_worker_spawn(1);
        kill_pid(pool.worker_pids()[0]);
        let e = pool.apply(square, 3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotRunning, "{e}");
        assert!(e.to_string().contains("cannot start a worker"), "{e}");
        assert!(pool.worker_pids().is_empty());
        pool.close();
        pool.join().unwrap();
        drop(pool);
        assert!(wait_until(Duration::from_secs(5), || descendants().is_empty()));
    });
}
