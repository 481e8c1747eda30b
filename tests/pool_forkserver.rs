//! `Pool` with `StartMethod::ForkServer`: the first workers are the fork
//! server's children and a replacement its zygote's, results are right, a
//! SIGKILLed worker fails its task with `WorkerLost` and the pool recovers,
//! and nothing is left behind.
//!
//! `harness = false`: `multiproc::init()` must run before any thread exists.

use std::time::{Duration, Instant};

use multiproc::{ErrorKind, ExitStatus, Pool, StartMethod, Value};
use multiproc_testkit::{
    alive, gone, kill_pid, leftovers, parent_of, sched_slice, shm_names, wait_until,
    zombie_children, Cases,
};

/// The bound of the whole binary.
const WATCHDOG: Duration = Duration::from_secs(60);
/// How long a killed worker's task may take to fail.
const DETECT: Duration = Duration::from_secs(5);

fn square(x: u64) -> u64 {
    x * x
}

fn slice_here(_: ()) -> Option<u64> {
    multiproc::latency::current()
}

fn current_pid(_: ()) -> i32 {
    std::process::id() as i32
}

/// Publishes this worker's pid, then sleeps far longer than the test.
fn record_pid_then_sleep(slot: Value<i32>) -> i32 {
    slot.set(std::process::id() as i32);
    std::thread::sleep(Duration::from_secs(120));
    0
}

/// Pids whose parent is `parent` (running or zombie).
fn children_of(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if parent_of(pid) == Some(parent) {
            out.push(pid);
        }
    }
    out
}

fn server_pid() -> i32 {
    multiproc_ipc::fork_server().expect("init ran").pid()
}

/// Each worker is the fork server's child (the first ones) or its
/// zygote's (a replacement), never this process's.
fn workers_descend_from_the_fork_server(pool: &Pool) {
    let me = std::process::id() as i32;
    let server = server_pid();
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 2, "{pids:?}");
    for &w in &pids {
        let parent = parent_of(w).expect("worker is alive");
        assert_ne!(parent, me, "worker {w} was forked by this process");
        assert!(
            parent == server || parent_of(parent) == Some(server),
            "worker {w}'s parent {parent}"
        );
    }
    assert_eq!(
        children_of(me),
        vec![server],
        "only the fork server is a child of this process"
    );
}

/// The first workers are forked by the fork server itself, not by the
/// pool's zygote, which has only just been forked when they are needed.
fn first_workers_are_the_servers_children(pool: &Pool) {
    let server = server_pid();
    for w in pool.worker_pids() {
        assert_eq!(parent_of(w), Some(server), "worker {w}");
    }
}

fn apply_returns_the_value(pool: &Pool) {
    assert_eq!(pool.apply(square, 12).unwrap(), 144);
    let pid = pool.apply(current_pid, ()).unwrap();
    assert!(pool.worker_pids().contains(&pid), "{pid}");
}

fn map_over_a_thousand_items(pool: &Pool) {
    let got = pool.map(square, 0..1_000u64).unwrap();
    let want: Vec<u64> = (0..1_000u64).map(|x| x * x).collect();
    assert_eq!(got, want);
}

fn sigkilled_worker_fails_its_task_and_the_pool_recovers(pool: &Pool) {
    let before = pool.worker_pids();
    let slot = Value::new(0i32).unwrap();
    let victim = pool
        .apply_async(record_pid_then_sleep, slot.clone())
        .unwrap();
    assert!(
        wait_until(DETECT, || slot.get() != 0),
        "the task never started"
    );
    let pid = slot.get();
    assert!(pool.worker_pids().contains(&pid), "{pid}");
    let t = Instant::now();
    kill_pid(pid);
    let e = victim.get_timeout(DETECT).unwrap_err();
    eprintln!("SIGKILL detected in {:?}", t.elapsed());
    assert_eq!(e.kind(), ErrorKind::WorkerLost, "{e}");
    let info = e.exit_info().expect("exit info");
    assert_eq!(info.pid, pid);
    assert_eq!(info.status, ExitStatus::Signal(9));
    assert!(wait_until(DETECT, || gone(pid)));
    // The replacement comes from the pool's zygote, the fork server's child.
    assert!(wait_until(Duration::from_secs(10), || {
        let pids = pool.worker_pids();
        pids.len() == 2 && !pids.contains(&pid) && pids.iter().all(|&p| alive(p))
    }));
    let new = *pool
        .worker_pids()
        .iter()
        .find(|p| !before.contains(p))
        .expect("a replacement");
    let zygote = parent_of(new).expect("the replacement runs");
    assert_ne!(
        zygote,
        server_pid(),
        "the replacement is the zygote's child"
    );
    assert_eq!(parent_of(zygote), Some(server_pid()), "the zygote {zygote}");
    assert_eq!(pool.apply(square, 9).unwrap(), 81);
    workers_descend_from_the_fork_server(pool);
}

/// Tears the pool down and checks that no process or shared memory of it
/// is left: no worker, no zygote, no zombie, no `/dev/shm` entry.
fn teardown_leaves_nothing(pool: Pool) {
    let me = std::process::id() as i32;
    let server = server_pid();
    let workers = pool.worker_pids();
    // The pool's zygote and its first workers.
    let zygotes: Vec<i32> = children_of(server);
    assert!(
        !zygotes.is_empty(),
        "the pool's zygote is the server's child"
    );
    pool.terminate();
    drop(pool);
    for &p in workers.iter().chain(&zygotes) {
        assert!(
            wait_until(Duration::from_secs(5), || gone(p)),
            "{p} survived"
        );
    }
    assert!(
        wait_until(Duration::from_secs(5), || children_of(server).is_empty()),
        "the fork server still has children: {:?}",
        children_of(server)
    );
    assert_eq!(children_of(me), vec![server]);
    assert!(zombie_children().is_empty(), "{:?}", zombie_children());
    let mut owners = vec![me, server];
    owners.extend(&workers);
    owners.extend(&zygotes);
    let shm_left = || -> Vec<String> {
        let mut v = leftovers();
        for &o in &owners[1..] {
            v.extend(shm_names(&format!("mp-{o}-")));
        }
        v
    };
    assert!(
        wait_until(Duration::from_secs(5), || shm_left().is_empty()),
        "/dev/shm entries left: {:?}",
        shm_left()
    );
}

/// The fork server and the pool's zygote have the short scheduler slice
/// (`multiproc::latency`), so that what they fork starts with it, and the
/// workers keep it, and so does a `Process` the server forks for the
/// caller, as a directly forked child does.
fn workers_and_processes_have_the_short_slice(pool: &Pool) {
    let mine = multiproc::latency::current().expect("sched_getattr works");
    if mine == 0 || multiproc::latency::slice_ns() == 0 {
        // A kernel before 6.12 (no slices), or the hint turned off.
        return;
    }
    let short = multiproc::latency::granted_ns();
    assert_ne!(mine, short, "the caller's own thread is untouched");
    let server = server_pid();
    assert_eq!(sched_slice(server, server), Some(short), "the fork server");
    let zygote = parent_of(pool.worker_pids()[0]).expect("the worker runs");
    assert_eq!(sched_slice(zygote, zygote), Some(short), "the zygote");
    assert_eq!(pool.apply(slice_here, ()).unwrap(), Some(short), "a worker");
    let child = multiproc::Process::spawn(slice_here, ()).unwrap();
    assert_eq!(child.join().unwrap(), Some(short), "a Process child");
}

fn main() {
    multiproc::init().expect("init before any thread");
    // Started after init: a thread before it would make init fail.
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        eprintln!("pool_forkserver: timed out after {WATCHDOG:?}");
        std::process::exit(1);
    });

    let pool = Pool::builder()
        .processes(2)
        .start_method(StartMethod::ForkServer)
        .build()
        .expect("a ForkServer pool after init");

    type Check = fn(&Pool);
    let checks: [(&str, Check); 6] = [
        (
            "first_workers_are_the_servers_children",
            first_workers_are_the_servers_children,
        ),
        (
            "workers_and_processes_have_the_short_slice",
            workers_and_processes_have_the_short_slice,
        ),
        (
            "workers_descend_from_the_fork_server",
            workers_descend_from_the_fork_server,
        ),
        ("apply_returns_the_value", apply_returns_the_value),
        ("map_over_a_thousand_items", map_over_a_thousand_items),
        (
            "sigkilled_worker_fails_its_task_and_the_pool_recovers",
            sigkilled_worker_fails_its_task_and_the_pool_recovers,
        ),
    ];
    let mut cases = Cases::new();
    for (name, check) in checks {
        cases.run(name, || check(&pool));
    }
    cases.run("teardown_leaves_nothing", || teardown_leaves_nothing(pool));
    cases.finish();
}
