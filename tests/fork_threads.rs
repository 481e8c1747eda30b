//! The fork server (`multiproc::init`): children forked while other threads
//! hold the stdout lock and the environment lock do not deadlock; children
//! of the fork server die with the program.
//!
//! `harness = false`: `init()` must run before any thread exists.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc::{ErrorKind, ExitStatus, Process};
use multiproc_ipc::Zygote;

const LIMIT: Duration = Duration::from_secs(20);

fn uses_locks(i: u32) -> u32 {
    // Both locks the other threads hammer: a child forked from a threaded
    // process could inherit them locked and hang here.
    println!("child {i} says hello");
    let v = std::env::var("MP_TOGGLE").unwrap_or_default();
    std::env::set_var("MP_CHILD", "1");
    std::hint::black_box(v);
    i
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn sleep_child(ms: u64, _: Vec<std::os::fd::OwnedFd>) -> i32 {
    std::thread::sleep(Duration::from_millis(ms));
    0
}

fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start().starts_with('Z'))
            .unwrap_or(true),
    }
}

fn no_deadlock_under_lock_pressure() {
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    {
        let stop = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = std::io::stdout();
                let mut lock = out.lock();
                let _ = lock.write_all(b"");
                std::thread::sleep(Duration::from_micros(200));
                drop(lock);
            }
        }));
    }
    {
        let stop = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::env::set_var("MP_TOGGLE", i.to_string());
                i += 1;
            }
        }));
    }
    for i in 0..200u32 {
        let mut p = Process::spawn(uses_locks, i).expect("spawn");
        match p.join_timeout(LIMIT) {
            Ok(v) => assert_eq!(v, i),
            Err(e) => {
                let _ = p.kill();
                stop.store(true, Ordering::Relaxed);
                panic!("child {i} failed or hung: {e}");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    eprintln!("ok: 200 children under stdout/env lock pressure");
}

fn zygote_through_server() {
    let server_pid = multiproc_ipc::fork_server().unwrap().pid();
    let z = Zygote::start().unwrap();
    // Started through the fork server: a child of the server, not of us.
    let ppid = std::fs::read_to_string(format!("/proc/{}/stat", z.pid())).unwrap();
    let ppid: i32 = ppid
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ppid, server_pid);
    let mut c = z.spawn(sleep_child, &10, &[]).unwrap();
    assert_eq!(c.wait_timeout(LIMIT).unwrap(), ExitStatus::Code(0));
    let zpid = z.pid();
    drop(c);
    drop(z);
    let deadline = Instant::now() + LIMIT;
    while !gone(zpid) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("ok: zygote through the fork server");
}

fn server_basics() {
    // Init twice is harmless, and threads now exist.
    multiproc::init().unwrap();
    let mut p = Process::spawn(sleep_ms, 1).unwrap();
    assert_eq!(p.join_timeout(LIMIT).unwrap(), 1);
    let mut p = Process::spawn(sleep_ms, 60_000).unwrap();
    p.kill().unwrap();
    let e = p.join_timeout(LIMIT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WorkerLost);
    assert_eq!(p.exit_status(), Some(ExitStatus::Signal(9)));
    let mut p = Process::spawn(sleep_ms, 300).unwrap();
    assert!(p
        .join_timeout(Duration::from_millis(20))
        .unwrap_err()
        .is_timeout());
    assert_eq!(p.join_timeout(LIMIT).unwrap(), 300);
    eprintln!("ok: Process through the fork server");
}

/// Role of the re-executed binary: start children through the fork server,
/// print their pids, wait to be killed.
fn orphan_parent() {
    let p = Process::spawn(sleep_ms, 60_000).unwrap();
    let z = Zygote::start().unwrap();
    let c = z.spawn(sleep_child, &60_000, &[]).unwrap();
    let server = multiproc_ipc::fork_server().unwrap().pid();
    println!("PIDS {} {} {} {}", server, p.pid(), z.pid(), c.pid());
    std::thread::sleep(Duration::from_secs(60));
}

fn children_die_with_parent() {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .env("MP_ROLE", "orphan_parent")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = helper.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("PIDS ") {
                let _ = tx.send(rest.to_string());
            }
        }
    });
    let Ok(line) = rx.recv_timeout(LIMIT) else {
        let _ = helper.kill();
        let _ = helper.wait();
        panic!("helper printed nothing");
    };
    let pids: Vec<i32> = line
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(pids.iter().all(|&p| !gone(p)));
    helper.kill().unwrap();
    helper.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    while pids.iter().any(|&p| !gone(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let alive: Vec<i32> = pids.iter().copied().filter(|&p| !gone(p)).collect();
    for &p in &alive {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(
        alive.is_empty(),
        "alive 1 s after the parent died: {alive:?}"
    );
    eprintln!("ok: fork server, its children and zygotes die with the parent");
}

fn main() {
    multiproc::init().expect("init before any thread");
    if std::env::var("MP_ROLE").as_deref() == Ok("orphan_parent") {
        orphan_parent();
        return;
    }
    // A watchdog: a hung test fails instead of hanging CI.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(120));
        eprintln!("fork_threads: timed out");
        std::process::abort();
    });
    server_basics();
    zygote_through_server();
    no_deadlock_under_lock_pressure();
    children_die_with_parent();
}
