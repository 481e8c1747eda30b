//! multiproc's own waiting threads and processes (a pool's zygote and
//! workers, result and supervisor threads; a manager's server) ask the scheduler for a short
//! slice (`multiproc::latency`); the caller's threads keep theirs, a
//! `Process` child has the short slice as pool workers do, and
//! `MULTIPROC_SLICE_US=off` leaves every slice at the kernel's default.
//!
//! The `off` case runs in a re-executed copy of this test binary (role
//! `MP_SLICE_ROLE`), because the variable is read once per process.

use std::time::Duration;

use multiproc::{latency, Manager, Pool, Process};
use multiproc_testkit::{checked, parent_of, sched_slice, Reexec};

const ROLE: &str = "MP_SLICE_ROLE";
const LIMIT: Duration = Duration::from_secs(60);

fn slice_here(_: ()) -> Option<u64> {
    latency::current()
}

/// `(thread name, se.slice)` of every thread of `pid`, from `/proc`.
fn thread_slices(pid: i32) -> Vec<(String, u64)> {
    let dir = format!("/proc/{pid}/task");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the process is alive") {
        let task = entry.expect("a task entry");
        let Ok(tid) = task.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if let Some(slice) = sched_slice(pid, tid) {
            out.push((comm.trim().to_string(), slice));
        }
    }
    out
}

/// `(name, state, kernel wait channel)` of every thread of `pid`, from
/// `/proc`: what a manager that does not answer is doing.
fn thread_states(pid: i32) -> Vec<(String, String, String)> {
    let read = |path: std::path::PathBuf| std::fs::read_to_string(path).unwrap_or_default();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .map(|t| {
            let stat = read(t.path().join("stat"));
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("?")
                .to_string();
            let comm = read(t.path().join("comm")).trim().to_string();
            (comm, state, read(t.path().join("wchan")))
        })
        .collect()
}

/// The slices multiproc's threads must have: the configured one as the
/// kernel clamps it, or the caller's (the default) when the hint is off.
fn expected(default: u64) -> u64 {
    match latency::granted_ns() {
        0 => default,
        ns => ns,
    }
}

fn check_slices() {
    let mine = latency::current().expect("sched_getattr works");
    if mine == 0 {
        // A kernel before 6.12 has no slices to ask for.
        return;
    }
    let want = expected(mine);
    // A Process is forked with the short slice (so that it gets a CPU at
    // once beside busy processes) and keeps it, as workers do; the caller's
    // thread has its own back at once.
    for _ in 0..2 {
        let p = Process::spawn(slice_here, ()).unwrap();
        assert_eq!(latency::current(), Some(mine), "the caller, after a spawn");
        assert_eq!(p.join().unwrap(), Some(want), "a Process");
    }
    let pool = Pool::new(2).unwrap();
    for _ in 0..4 {
        assert_eq!(pool.apply(slice_here, ()).unwrap(), Some(want), "a worker");
    }
    // The workers' parent, the pool's zygote, has it too (its replacements
    // inherit it). Its main thread: a zygote started from a thread other
    // than the main one also runs a lifeline thread, which only polls.
    let zygote = parent_of(pool.worker_pids()[0]).expect("the worker runs");
    assert_eq!(
        sched_slice(zygote, zygote),
        Some(want),
        "the zygote {zygote}"
    );
    // The two threads name themselves and ask for the slice as they start:
    // wait (bounded) until both have.
    let pool_threads = || {
        let started = std::time::Instant::now();
        loop {
            let threads: Vec<_> = thread_slices(std::process::id() as i32)
                .into_iter()
                .filter(|(name, _)| name.starts_with("multiproc-pool"))
                .collect();
            let done = threads.len() == 2 && threads.iter().all(|&(_, s)| s == want);
            if done || started.elapsed() > Duration::from_secs(5) {
                return threads;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let threads = pool_threads();
    assert_eq!(
        threads.len(),
        2,
        "result and supervisor threads: {threads:?}"
    );
    assert!(threads.iter().all(|&(_, s)| s == want), "{threads:?}");

    let manager = Manager::start().unwrap();
    let d = manager.dict::<String, u64>().unwrap_or_else(|e| {
        panic!(
            "{e}; the manager's threads: {:?}",
            thread_states(manager.pid())
        )
    });
    d.insert(&"k".to_string(), &1).unwrap();
    let server = thread_slices(manager.pid());
    assert!(server.len() >= 2, "the server and a handler: {server:?}");
    assert!(server.iter().all(|&(_, s)| s == want), "{server:?}");

    assert_eq!(
        latency::current(),
        Some(mine),
        "the caller's thread is untouched"
    );
    manager.shutdown().unwrap();
    pool.close();
    pool.join().unwrap();
}

#[test]
fn multiprocs_threads_ask_for_the_short_slice_and_the_callers_keep_theirs() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    checked(LIMIT, check_slices);
}

#[test]
fn off_leaves_every_slice_at_the_kernels_default() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    checked(LIMIT, || {
        let (status, out) = Reexec::test("slice_role")
            .env(ROLE, "off")
            .env("MULTIPROC_SLICE_US", "off")
            .spawn()
            .output(LIMIT);
        assert!(status.success(), "{status}\n{out}");
        assert!(out.contains("slices checked"), "the role ran: {out}");
    });
}

/// The re-executed role (does nothing in a normal run).
#[test]
fn slice_role() {
    if std::env::var_os(ROLE).is_none() {
        return;
    }
    assert_eq!(latency::slice_ns(), 0);
    check_slices();
    println!("slices checked");
}
