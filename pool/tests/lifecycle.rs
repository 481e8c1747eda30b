//! Pool lifecycle: creation, apply, close/join, terminate, drop, panics and
//! serialization failures.

use std::time::{Duration, Instant};

use std::sync::mpsc;

use multiproc_pool::{ApplyOptions, ErrorKind, Pool};
use multiproc_testkit::{checked, wait_gone, LIMIT};
use serde::{Deserialize, Serialize, Serializer};

fn square(x: u64) -> u64 {
    x * x
}

fn pid(_: ()) -> i32 {
    std::process::id() as i32
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn boom(x: u64) -> u64 {
    if x == 13 {
        panic!("unlucky {x}");
    }
    x
}

fn checked_div(x: (i64, i64)) -> Result<i64, String> {
    if x.1 == 0 {
        Err("division by zero".to_string())
    } else {
        Ok(x.0 / x.1)
    }
}

/// Fails to serialize when it holds an odd number.
#[derive(Debug, Deserialize)]
struct Picky(u64);

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 2 == 1 {
            Err(serde::ser::Error::custom("odd values refuse to serialize"))
        } else {
            s.serialize_u64(self.0)
        }
    }
}

fn make_picky(x: u64) -> Picky {
    Picky(x)
}

fn take_picky(p: Picky) -> u64 {
    p.0
}

#[test]
fn invalid_arguments_are_rejected() {
    checked(LIMIT, || {
        assert_eq!(Pool::new(0).unwrap_err().kind(), ErrorKind::InvalidArgument);
        let e = Pool::builder().max_tasks_per_child(0).build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = Pool::builder()
            .processes(1)
            .task_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    });
}

#[test]
fn default_size_is_the_cpu_count() {
    checked(LIMIT, || {
        let pool = Pool::builder().build().unwrap();
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(pool.processes(), cpus);
        assert_eq!(pool.worker_pids().len(), cpus);
    });
}

#[test]
fn apply_runs_in_another_process() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.apply(square, 12).unwrap(), 144);
        let p = pool.apply(pid, ()).unwrap();
        assert_ne!(p, std::process::id() as i32);
        assert!(pool.worker_pids().contains(&p));
        let r = pool.apply_async(square, 3).unwrap();
        assert_eq!(r.get().unwrap(), 9);
    });
}

#[test]
fn task_errors_pass_through_as_values() {
    checked(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        assert_eq!(pool.apply(checked_div, (7, 2)).unwrap(), Ok(3));
        assert_eq!(
            pool.apply(checked_div, (7, 0)).unwrap(),
            Err("division by zero".to_string())
        );
    });
}

#[test]
fn submitting_after_close_or_terminate_is_not_running() {
    checked(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        pool.close();
        assert_eq!(
            pool.apply(square, 1).unwrap_err().kind(),
            ErrorKind::NotRunning
        );
        assert_eq!(
            pool.map(square, vec![1u64]).unwrap_err().kind(),
            ErrorKind::NotRunning
        );
        pool.join().unwrap();
        let pool = Pool::new(1).unwrap();
        pool.terminate();
        assert_eq!(
            pool.apply_async(square, 1).unwrap_err().kind(),
            ErrorKind::NotRunning
        );
        assert_eq!(
            pool.imap(square, vec![1u64]).unwrap_err().kind(),
            ErrorKind::NotRunning
        );
    });
}

#[test]
fn join_before_close_is_an_error_and_close_join_finishes_the_work() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.join().unwrap_err().kind(), ErrorKind::InvalidArgument);
        let rs: Vec<_> = (0..20u64)
            .map(|i| pool.apply_async(sleep_ms, i % 3).unwrap())
            .collect();
        let pids = pool.worker_pids();
        pool.close();
        pool.join().unwrap();
        for (i, r) in rs.into_iter().enumerate() {
            assert!(r.ready(), "join returned before task {i} finished");
            assert_eq!(r.get().unwrap(), i as u64 % 3);
        }
        for p in pids {
            assert!(wait_gone(p), "worker {p} still alive after join");
        }
        pool.join().unwrap(); // idempotent
    });
}

#[test]
fn terminate_with_tasks_in_flight_is_prompt_and_fails_everything() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let rs: Vec<_> = (0..10)
            .map(|_| pool.apply_async(sleep_ms, 30_000).unwrap())
            .collect();
        let m = pool.map_async(sleep_ms, vec![30_000u64; 4]).unwrap();
        let pids = pool.worker_pids();
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        pool.terminate();
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "terminate took {:?}",
            t.elapsed()
        );
        for r in rs {
            assert_eq!(r.get().unwrap_err().kind(), ErrorKind::NotRunning);
        }
        assert_eq!(m.get().unwrap_err().kind(), ErrorKind::NotRunning);
        for p in pids {
            assert!(wait_gone(p), "worker {p} survived terminate");
        }
        pool.join().unwrap();
    });
}

/// Fills a pool of 3 workers with far more tasks than their rings hold (a
/// 10,000-item map of chunksize 1, 2,000 `apply_async` with error callbacks
/// and a 2,000-item `imap`), ends it with `end`, and checks that every
/// result resolves promptly: a value for what ran, else `NotRunning` naming
/// the termination.
fn deep_backlog_resolves(end: fn(Pool)) {
    let bound = Duration::from_secs(10);
    let pool = Pool::new(3).unwrap();
    let m = pool
        .map_async_with(sleep_ms, vec![1u64; 10_000], Some(1), ApplyOptions::new())
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let rs: Vec<_> = (0..2_000)
        .map(|_| {
            let tx = tx.clone();
            let on_error = ApplyOptions::new().error_callback(move |e| {
                let _ = tx.send(e.kind());
            });
            pool.apply_async_with(sleep_ms, 1, on_error).unwrap()
        })
        .collect();
    drop(tx);
    let mut it = pool.imap(sleep_ms, vec![1u64; 2_000]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    end(pool);
    let t = Instant::now();
    let e = m.get_timeout(bound).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotRunning, "{e}");
    assert!(e.to_string().contains("terminated"), "{e}");
    let mut failed = 0;
    for r in rs {
        match r.get_timeout(bound) {
            Ok(v) => assert_eq!(v, 1),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NotRunning, "{e}");
                failed += 1;
            }
        }
    }
    assert!(failed > 0, "the backlog cannot have run to the end");
    let callbacks: Vec<ErrorKind> = rx.iter().collect();
    assert_eq!(
        callbacks.len(),
        failed,
        "one error callback per failed task"
    );
    assert!(callbacks.iter().all(|k| *k == ErrorKind::NotRunning));
    let mut items = 0;
    while let Some(r) = it.next_timeout(bound) {
        if let Err(e) = r {
            assert_eq!(e.kind(), ErrorKind::NotRunning, "{e}");
        }
        items += 1;
    }
    assert_eq!(items, 2_000);
    assert!(t.elapsed() < bound, "results took {:?}", t.elapsed());
}

#[test]
fn terminate_with_a_deep_backlog_resolves_every_pending_result() {
    checked(LIMIT, || {
        deep_backlog_resolves(|pool| {
            pool.terminate();
            pool.join().unwrap();
        })
    });
}

#[test]
fn drop_with_a_deep_backlog_resolves_every_pending_result() {
    checked(LIMIT, || deep_backlog_resolves(drop));
}

#[test]
fn drop_terminates() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let r = pool.apply_async(sleep_ms, 30_000).unwrap();
        let pids = pool.worker_pids();
        drop(pool);
        assert_eq!(r.get().unwrap_err().kind(), ErrorKind::NotRunning);
        for p in pids {
            assert!(wait_gone(p), "worker {p} survived drop");
        }
    });
}

#[test]
fn a_panicking_task_reports_message_and_location_and_the_worker_survives() {
    checked(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        let before = pool.worker_pids();
        let e = pool.apply(boom, 13).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TaskPanicked);
        let p = e.panic_info().unwrap();
        assert_eq!(p.message, "unlucky 13");
        assert!(
            p.location.as_deref().unwrap().contains("lifecycle.rs"),
            "{p:?}"
        );
        assert_eq!(pool.apply(boom, 14).unwrap(), 14);
        assert_eq!(pool.worker_pids(), before, "the worker must keep serving");
        let e = pool.map_chunksize(boom, 10..16u64, 3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TaskPanicked);
        assert_eq!(pool.worker_pids(), before);
    });
}

#[test]
fn serialization_failures_fail_only_their_task() {
    checked(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        // The result of an odd input fails to serialize in the worker.
        let e = pool.apply(make_picky, 3).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Serialization);
        assert_eq!(pool.apply(make_picky, 4).unwrap().0, 4);
        // An argument that fails to serialize fails at submission.
        let e = pool.apply(take_picky, Picky(5)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Serialization);
        assert_eq!(pool.apply(take_picky, Picky(6)).unwrap(), 6);
        // In a map, only the bad items fail.
        let out: Vec<_> = pool.imap(make_picky, 0..4u64).unwrap().collect();
        assert_eq!(out[0].as_ref().unwrap().0, 0);
        assert_eq!(
            out[1].as_ref().unwrap_err().kind(),
            ErrorKind::Serialization
        );
        assert_eq!(out[2].as_ref().unwrap().0, 2);
    });
}

/// A task that uses `?` on our own errors.
fn parse_then_check(s: String) -> multiproc_pool::Result<u64> {
    let n: u64 = s.parse().map_err(|e: std::num::ParseIntError| {
        multiproc_pool::Error::with_source(ErrorKind::InvalidArgument, "not a number", e)
    })?;
    if n == 0 {
        return Err(multiproc_pool::Error::timeout("zero waits for ever"));
    }
    Ok(n)
}

#[test]
fn tasks_may_return_our_own_errors() {
    checked(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        assert_eq!(
            pool.apply(parse_then_check, "12".into()).unwrap().unwrap(),
            12
        );
        let e = pool
            .apply(parse_then_check, "x".into())
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(
            e.message().starts_with("not a number: invalid digit"),
            "{e}"
        );
        let e = pool
            .apply(parse_then_check, "0".into())
            .unwrap()
            .unwrap_err();
        assert!(e.is_timeout());
    });
}
