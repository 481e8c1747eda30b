//! Workers that die mid-task: real signals, abort, segfault, exit codes.

mod common;

use std::time::{Duration, Instant};

use common::{alive, bounded, gone, LIMIT};
use multiproc_pool::{ErrorKind, ExitStatus, Pool};

fn pid_then_sleep(ms: u64) -> i32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id() as i32
}

fn square(x: u64) -> u64 {
    x * x
}

fn do_abort(_: ()) -> u64 {
    std::process::abort()
}

fn do_segfault(_: ()) -> u64 {
    // The first SIGSEGV may be swallowed by Rust's stack-overflow handler,
    // which then restores the default action: the next one is fatal.
    loop {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSEGV);
    }
}

fn do_exit(code: i32) -> u64 {
    std::process::exit(code)
}

fn current_pid(_: ()) -> i32 {
    std::process::id() as i32
}

/// Waits (bounded) until the pool is back to `n` live workers.
fn full_size(pool: &Pool, n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let pids = pool.worker_pids();
        if pids.len() == n && pids.iter().all(|&p| alive(p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// The pid of the worker that is running the only busy task right now.
fn busy_worker(pool: &Pool, before: &[i32]) -> i32 {
    // Ask the other worker(s) for their pid: the busy one cannot answer.
    let idle: Vec<i32> = (0..before.len() - 1)
        .map(|_| pool.apply(current_pid, ()).unwrap())
        .collect();
    *before.iter().find(|p| !idle.contains(p)).unwrap()
}

#[test]
fn sigkill_fails_exactly_that_task_promptly_and_the_pool_recovers() {
    bounded(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let before = pool.worker_pids();
        let victim = pool.apply_async(pid_then_sleep, 2_000).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let pid = busy_worker(&pool, &before);
        let t = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let e = victim.get_timeout(Duration::from_secs(5)).unwrap_err();
        let detect = t.elapsed();
        eprintln!("SIGKILL detected in {detect:?}");
        assert!(detect < Duration::from_secs(2), "detection took {detect:?}");
        assert_eq!(e.kind(), ErrorKind::WorkerLost, "{e}");
        let info = e.exit_info().unwrap();
        assert_eq!(info.pid, pid);
        assert_eq!(info.status, ExitStatus::Signal(9));
        assert!(info.task.is_some());
        assert!(e.to_string().contains("SIGKILL"), "{e}");
        assert!(full_size(&pool, 2));
        assert!(!pool.worker_pids().contains(&pid));
        assert!(gone(pid));
        assert_eq!(pool.map(square, 0..100u64).unwrap().len(), 100);
    });
}

#[test]
fn only_the_running_task_fails_queued_ones_are_rerun() {
    bounded(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        let [pid] = pool.worker_pids()[..] else {
            panic!()
        };
        let running = pool.apply_async(pid_then_sleep, 1_000).unwrap();
        let queued: Vec<_> = (0..10u64)
            .map(|i| pool.apply_async(square, i).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        assert_eq!(running.get().unwrap_err().kind(), ErrorKind::WorkerLost);
        for (i, r) in queued.into_iter().enumerate() {
            assert_eq!(r.get().unwrap(), (i * i) as u64);
        }
    });
}

#[test]
fn abort_segfault_and_exit_name_their_cause() {
    bounded(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let e = pool.apply(do_abort, ()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WorkerLost);
        assert_eq!(
            e.exit_info().unwrap().status,
            ExitStatus::Signal(libc::SIGABRT)
        );
        let e = pool.apply(do_segfault, ()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WorkerLost);
        assert_eq!(
            e.exit_info().unwrap().status,
            ExitStatus::Signal(libc::SIGSEGV)
        );
        assert!(e.to_string().contains("SIGSEGV"), "{e}");
        let e = pool.apply(do_exit, 3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WorkerLost);
        assert_eq!(e.exit_info().unwrap().status, ExitStatus::Code(3));
        assert!(e.to_string().contains("exited with code 3"), "{e}");
        assert!(full_size(&pool, 2));
        assert_eq!(pool.apply(square, 9).unwrap(), 81);
        // A crash inside a map chunk fails that chunk's items only.
        let out: Vec<_> = pool.imap(do_exit, vec![0i32; 0]).unwrap().collect();
        assert!(out.is_empty());
    });
}

#[test]
fn every_worker_killed_at_once_is_replaced() {
    bounded(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let rs: Vec<_> = (0..2)
            .map(|_| pool.apply_async(pid_then_sleep, 5_000).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        for p in pool.worker_pids() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        }
        for r in rs {
            assert_eq!(
                r.get_timeout(Duration::from_secs(5)).unwrap_err().kind(),
                ErrorKind::WorkerLost
            );
        }
        assert!(full_size(&pool, 2));
        assert_eq!(pool.map_chunksize(square, 0..50u64, 1).unwrap().len(), 50);
    });
}
