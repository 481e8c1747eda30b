//! A single-threaded process forks its pools' first workers itself, while
//! each pool's zygote starts, and only their replacements come from the
//! zygote (`Zygote::spawn_many_beside`); it forks a manager's server itself,
//! without a zygote (`Zygote::spawn_here`). A process with a second thread,
//! or one that ignores or handles `SIGCHLD`, gets them all from a zygote,
//! forked again when it cannot start a thread.
//!
//! Each case runs in a re-executed copy of this binary (role
//! `MULTIPROC_FORK_HERE`), whose main thread is its only thread until the
//! case says otherwise; the harness waits for it with a deadline and kills
//! it and its children on failure.
//!
//! `harness = false`: the test harness runs each test on a thread of its
//! own, and a process with more than one thread takes the zygote's way.

use std::collections::BTreeSet;
use std::time::Duration;

use multiproc::{latency, test_hooks, ErrorKind, ExitStatus, Manager, Pool};
use multiproc_ipc::Zygote;
use multiproc_testkit::{
    assert_no_children, assert_no_zombie_children, parent_of, wait_gone, wait_until, Cases, Reexec,
};

const ROLE: &str = "MULTIPROC_FORK_HERE";
const LIMIT: Duration = Duration::from_secs(60);

fn square(x: u64) -> u64 {
    x * x
}

fn sleep_long(_: ()) -> u32 {
    std::thread::sleep(Duration::from_secs(60));
    0
}

fn pid_after(ms: u64) -> i32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id() as i32
}

fn exit_with(code: i32, _: Vec<std::os::fd::OwnedFd>) -> i32 {
    code
}

fn slice_here(_: ()) -> Option<u64> {
    latency::current()
}

/// What each descriptor of process `pid` names (`socket:[inode]`, a path).
fn descriptors(pid: i32) -> Vec<String> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the process is alive");
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .collect()
}

/// The sockets process `pid` holds, as `socket:[inode]` names.
fn sockets(pid: i32) -> BTreeSet<String> {
    descriptors(pid)
        .into_iter()
        .filter(|t| t.starts_with("socket:"))
        .collect()
}

/// The sockets and memory files process `pid` holds more than one
/// descriptor of.
fn held_twice(pid: i32) -> Vec<String> {
    let mut seen = BTreeSet::new();
    descriptors(pid)
        .into_iter()
        .filter(|t| t.starts_with("socket:") || t.starts_with("/memfd:"))
        .filter(|t| !seen.insert(t.clone()))
        .collect()
}

/// The role of a single-threaded process: its first workers are its own
/// children, hold none of its sockets nor each other's, and work; a killed
/// one fails its task with the signal and is replaced from the zygote.
fn single_threaded() {
    let me = std::process::id() as i32;
    let pool = Pool::new(2).expect("pool");
    let first = pool.worker_pids();
    for &w in &first {
        assert_eq!(
            parent_of(w),
            Some(me),
            "worker {w} is forked by the pool's process"
        );
    }
    // A child closes what it must not keep when it first runs: both have.
    let ran: Vec<_> = (0..2)
        .map(|_| pool.apply_async(pid_after, 100).expect("apply_async"))
        .collect();
    let mut ran: Vec<i32> = ran.into_iter().map(|r| r.get().expect("get")).collect();
    ran.sort_unstable();
    let mut both = first.clone();
    both.sort_unstable();
    assert_eq!(ran, both, "one task ran on each worker");
    let (a, b, mine) = (sockets(first[0]), sockets(first[1]), sockets(me));
    assert!(!a.is_empty() && !b.is_empty(), "{a:?} {b:?}");
    assert!(
        a.is_disjoint(&mine),
        "worker 0 keeps the pool's sockets: {a:?} {mine:?}"
    );
    assert!(
        b.is_disjoint(&mine),
        "worker 1 keeps the pool's sockets: {b:?} {mine:?}"
    );
    assert!(a.is_disjoint(&b), "the workers share sockets: {a:?} {b:?}");
    for &w in &first {
        assert_eq!(
            held_twice(w),
            Vec::<String>::new(),
            "worker {w}: one descriptor each"
        );
    }
    let want: Vec<u64> = (0..1000u64).map(square).collect();
    assert_eq!(pool.map(square, 0..1000u64).expect("map"), want);
    let slice = pool.apply(slice_here, ()).expect("apply");

    // One long task each; the first worker is killed under its task.
    let held: Vec<_> = (0..2)
        .map(|_| pool.apply_async(sleep_long, ()).expect("apply_async"))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let failed = wait_until(Duration::from_secs(5), || held.iter().any(|r| r.ready()));
    assert!(failed, "no task failed after its worker was killed");
    let e = held
        .iter()
        .find(|r| r.ready())
        .and_then(|r| r.get_timeout(Duration::ZERO).err())
        .expect("the killed worker's task failed");
    assert_eq!(e.kind(), ErrorKind::WorkerLost, "{e}");
    let info = e.exit_info().expect("exit info");
    assert_eq!(info.pid, first[0]);
    assert_eq!(
        info.status,
        ExitStatus::Signal(9),
        "its status, from waitid"
    );
    assert!(wait_gone(first[0]), "the killed worker is reaped");

    // Its replacement comes from the zygote, with the same slice.
    let replaced = wait_until(Duration::from_secs(5), || {
        pool.worker_pids().len() == 2 && !pool.worker_pids().contains(&first[0])
    });
    assert!(replaced, "no replacement: {:?}", pool.worker_pids());
    let new = *pool
        .worker_pids()
        .iter()
        .find(|p| !first.contains(p))
        .expect("a new worker");
    let zygote = parent_of(new).expect("the replacement runs");
    assert_ne!(zygote, me, "the replacement is the zygote's child");
    assert_eq!(parent_of(zygote), Some(me), "the zygote is ours");
    // The other worker still sleeps: the replacement runs this.
    assert_eq!(
        pool.apply(slice_here, ()).expect("apply"),
        slice,
        "a worker forked here has the slice of one forked by the zygote"
    );
    pool.terminate();
    drop(held);
    drop(pool);
    assert_no_zombie_children();
    assert_no_children();
    println!("ROLE OK single-threaded");
}

/// The role of a single-threaded process that starts a manager: the server
/// is its own child, works, stops and is reaped.
fn manager_here() {
    let me = std::process::id() as i32;
    let manager = Manager::start().expect("manager");
    assert_eq!(
        parent_of(manager.pid()),
        Some(me),
        "the server is forked here"
    );
    let d = manager.dict::<String, u64>().expect("dict");
    d.insert(&"k".to_string(), &7).expect("insert");
    assert_eq!(d.get(&"k".to_string()).expect("get"), Some(7));
    drop(d);
    manager.shutdown().expect("shutdown");
    drop(manager);
    assert_no_zombie_children();
    assert_no_children();
    println!("ROLE OK manager");
}

/// True if `child` is a child of a child of this process (a zygote's).
fn grandchild(child: i32) -> bool {
    let me = std::process::id() as i32;
    let parent = parent_of(child).expect("the child runs");
    parent != me && parent_of(parent) == Some(me)
}

/// The role of a process with a second thread: every worker and the
/// manager's server are a zygote's children, and nothing is forked here.
fn threaded() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || rx.recv());
    // A zygote forked by the main thread of a threaded process starts a
    // thread first and forks again when it cannot (the hook stalls it).
    test_hooks::stall_lifeline_starts(1);
    let pool = Pool::new(2).expect("pool");
    assert_eq!(test_hooks::lifeline_stalls_left(), 0, "the pool's zygote");
    for &w in &pool.worker_pids() {
        assert!(grandchild(w), "worker {w} is the zygote's child");
    }
    assert_eq!(pool.map(square, 0..100u64).expect("map").len(), 100);
    test_hooks::stall_lifeline_starts(1);
    let manager = Manager::start().expect("manager");
    assert_eq!(
        test_hooks::lifeline_stalls_left(),
        0,
        "the manager's zygote"
    );
    assert!(grandchild(manager.pid()), "the server is a zygote's child");
    manager.shutdown().expect("shutdown");
    drop(manager);
    assert!(!Zygote::may_fork_here());
    let refused = Zygote::spawn_here(exit_with, &0, &[], &[]).expect_err("two threads");
    assert_eq!(refused.kind(), ErrorKind::InvalidArgument, "{refused}");
    pool.close();
    pool.join().expect("join");
    drop(pool);
    drop(tx);
    let _ = other.join();
    assert_no_zombie_children();
    assert_no_children();
    println!("ROLE OK threaded");
}

/// A `SIGCHLD` handler that does nothing (a program's own would reap).
extern "C" fn on_sigchld(_: std::os::raw::c_int) {}

/// The role of a process that ignores `SIGCHLD` (`ignored`) or handles it:
/// every worker is the zygote's child, whose exit status the zygote reaps
/// and reports.
fn sigchld_not_default(ignored: bool) {
    use nix::sys::signal::{signal, SigHandler, Signal};
    let disposition = if ignored {
        SigHandler::SigIgn
    } else {
        SigHandler::Handler(on_sigchld)
    };
    // SAFETY: SIG_IGN installs no handler code; `on_sigchld` does nothing
    // (async-signal-safe).
    unsafe { signal(Signal::SIGCHLD, disposition) }.expect("set SIGCHLD's disposition");
    let pool = Pool::new(2).expect("pool");
    let pids = pool.worker_pids();
    for &w in &pids {
        assert!(grandchild(w), "worker {w} is the zygote's child");
    }
    let manager = Manager::start().expect("manager");
    assert!(grandchild(manager.pid()), "the server is a zygote's child");
    manager.shutdown().expect("shutdown");
    drop(manager);
    let held = pool.apply_async(sleep_long, ()).expect("apply_async");
    std::thread::sleep(Duration::from_millis(100));
    for &w in &pids {
        multiproc_testkit::kill_pid(w);
    }
    let e = held
        .get_timeout(Duration::from_secs(5))
        .expect_err("its worker was killed");
    assert_eq!(e.kind(), ErrorKind::WorkerLost, "{e}");
    let info = e.exit_info().expect("exit info");
    assert_eq!(info.status, ExitStatus::Signal(9), "reported by the zygote");
    pool.terminate();
    drop(pool);
    assert_no_children();
    println!(
        "ROLE OK sigchld {}",
        if ignored { "ignored" } else { "handled" }
    );
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("single") => return single_threaded(),
        Ok("threaded") => return threaded(),
        Ok("sigchld") => return sigchld_not_default(true),
        Ok("sigchld_handler") => return sigchld_not_default(false),
        Ok("manager") => return manager_here(),
        Ok(role) => panic!("unknown role {role}"),
        Err(_) => {}
    }
    let cases = [
        ("single", "ROLE OK single-threaded"),
        ("threaded", "ROLE OK threaded"),
        ("sigchld", "ROLE OK sigchld ignored"),
        ("sigchld_handler", "ROLE OK sigchld handled"),
        ("manager", "ROLE OK manager"),
    ];
    let mut results = Cases::new();
    for (role, ok) in cases {
        results.run(&format!("fork_here::{role}"), || {
            let (status, out) = Reexec::program().env(ROLE, role).spawn().output(LIMIT);
            assert!(status.success(), "{status}\n{out}");
            assert!(out.contains(ok), "the role ran: {out}");
        });
    }
    results.finish();
}
