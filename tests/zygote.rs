//! `Zygote` edge cases: buffered stdout across forks, an ignored `SIGCHLD`,
//! a zygote that cannot be supervised, a zygote that dies while a stray
//! process keeps its socket open.
//!
//! The scenarios that change process-wide state (stdout contents, signal
//! dispositions, descriptor limits) run in a re-executed copy of this binary
//! (`MP_ROLE` set), with a bounded wait and its children killed on failure.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use multiproc::{ErrorKind, ExitStatus};
use multiproc_ipc::Zygote;

const LIMIT: Duration = Duration::from_secs(20);

fn exit_with(code: i32, _fds: Vec<OwnedFd>) -> i32 {
    code
}

fn print_then_exit(text: String, _fds: Vec<OwnedFd>) -> i32 {
    print!("{text}");
    0
}

fn role() -> Option<String> {
    std::env::var("MP_ROLE").ok()
}

/// Pids of our children that are zombies.
fn zombie_children() -> Vec<i32> {
    let mut out = Vec::new();
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[1] == me && fields[0] == "Z" {
            out.push(pid);
        }
    }
    out
}

/// True if `pid` no longer exists or is a zombie.
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start().starts_with('Z'))
            .unwrap_or(true),
    }
}

fn kill_pid(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Runs this binary as helper `test` with `MP_ROLE=role`, waits up to
/// `LIMIT` for it to exit (SIGKILLing it and the `CHILD <pid>`s it printed
/// otherwise) and returns its exit status and stdout.
fn run_helper(role: &str, test: &str) -> (std::process::ExitStatus, String) {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("MP_ROLE", role)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = helper.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = helper.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = helper.kill();
            let _ = helper.wait();
            let out = reader.join().unwrap();
            for pid in child_pids(&out) {
                kill_pid(pid);
            }
            panic!("helper {test} did not exit within {LIMIT:?}; its output:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = reader.join().unwrap();
    for pid in child_pids(&out) {
        assert!(gone(pid), "{pid} left running by {test}");
    }
    (status, out)
}

fn child_pids(out: &str) -> Vec<i32> {
    out.lines()
        .filter_map(|l| l.split_once("CHILD ").map(|(_, p)| p.trim()))
        .filter_map(|p| p.parse().ok())
        .collect()
}

// ---------------------------------------------------------------------------
// Buffered stdout is printed once.

#[test]
fn helper_partial_line() {
    if role().as_deref() != Some("partial_line") {
        return;
    }
    let threads = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().to_owned()))
        .unwrap();
    println!("THREADS {threads}");
    // A partial line sits in stdout's buffer when the zygote is forked.
    print!("PARTIAL");
    let z = Zygote::start().unwrap();
    println!("\nCHILD {}", z.pid());
    for i in 0..3 {
        let mut c = z.spawn(print_then_exit, &format!("OUT{i}|"), &[]).unwrap();
        assert_eq!(c.wait_timeout(LIMIT).unwrap(), ExitStatus::Code(0));
    }
    drop(z);
    println!("\nEND");
}

#[test]
fn buffered_stdout_is_not_repeated_by_zygote_and_children() {
    if role().is_some() {
        return;
    }
    let (status, out) = run_helper("partial_line", "helper_partial_line");
    assert!(status.success(), "{status:?}\n{out}");
    assert!(out.contains("\nEND"), "{out}");
    assert_eq!(out.matches("PARTIAL").count(), 1, "{out}");
    // A zygote forked from a single-threaded process has a usable stdout
    // lock: its children flush their partial lines at exit. (Forked from a
    // threaded one, they exit without touching the lock.)
    if out.contains("THREADS 1\n") {
        for i in 0..3 {
            assert_eq!(out.matches(&format!("OUT{i}|")).count(), 1, "{out}");
        }
    }
}

// ---------------------------------------------------------------------------
// A program that ignores SIGCHLD.

fn square(x: u64) -> u64 {
    x * x
}

fn quit(code: i32) {
    std::process::exit(code)
}

#[test]
fn helper_sigchld_ignored() {
    if role().as_deref() != Some("sigchld_ignored") {
        return;
    }
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigIgn) }.unwrap();
    let bound = Duration::from_secs(8);

    // The zygote reaps its children itself whatever the program ignores.
    let z = Zygote::start().unwrap();
    println!("CHILD {}", z.pid());
    let t = Instant::now();
    let mut c = z.spawn(exit_with, &3, &[]).unwrap();
    println!("CHILD {}", c.pid());
    assert_eq!(c.wait_timeout(bound).unwrap(), ExitStatus::Code(3));
    let c = z.spawn(exit_with, &4, &[]).unwrap();
    println!("CHILD {}", c.pid());
    let mut pfd = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(&c),
        nix::poll::PollFlags::POLLIN,
    )];
    assert_eq!(nix::poll::poll(&mut pfd, 8_000u16).unwrap(), 1);
    assert_eq!(c.try_wait().unwrap(), Some(ExitStatus::Code(4)));
    assert!(t.elapsed() < bound, "{:?}", t.elapsed());

    // A plain-forked child is reaped by the kernel: its result still comes
    // back; without one, join says the status is lost, promptly.
    // (Many: a child that exits at once must not vanish before its pidfd
    // is open.)
    for i in 0..20 {
        let mut p = multiproc::Process::spawn(square, i).unwrap();
        println!("CHILD {}", p.pid());
        assert_eq!(p.join_timeout(bound).unwrap(), i * i);
    }
    let t = Instant::now();
    let mut p = multiproc::Process::spawn(quit, 5).unwrap();
    println!("CHILD {}", p.pid());
    let err = p.join_timeout(bound).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.to_string().contains("unavailable"), "{err}");
    assert!(t.elapsed() < bound, "{:?}", t.elapsed());
    assert!(!p.is_alive());
    assert_eq!(p.exit_status(), None);

    // The zygote itself is reaped by the kernel too: dropping it returns.
    drop(z);
    println!("SIGCHLD-OK");
}

#[test]
fn ignored_sigchld_does_not_hang_zygote_waits() {
    if role().is_some() {
        return;
    }
    let (status, out) = run_helper("sigchld_ignored", "helper_sigchld_ignored");
    assert!(status.success(), "{status:?}\n{out}");
    assert!(out.contains("SIGCHLD-OK"), "{out}");
}

// ---------------------------------------------------------------------------
// A dead zygote whose socket a stray process keeps open.

fn sleep_child(ms: u64, _fds: Vec<OwnedFd>) -> i32 {
    std::thread::sleep(Duration::from_millis(ms));
    0
}

/// A copy, in this process, of the zygote's own end of its socketpair (as
/// a process forked while the zygote started could hold), via
/// `pidfd_getfd`; `None` if the kernel refuses.
fn steal_zygote_socket(zpid: i32) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    let target: i32 = std::fs::read_dir(format!("/proc/{zpid}/fd"))
        .unwrap()
        .flatten()
        .find(|e| {
            std::fs::read_link(e.path())
                .map(|l| l.to_string_lossy().starts_with("socket:"))
                .unwrap_or(false)
        })?
        .file_name()
        .to_string_lossy()
        .parse()
        .ok()?;
    // SAFETY: pidfd_open takes a pid and flags; no memory.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, zpid, 0) };
    if pidfd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    // SAFETY: a valid pidfd, a descriptor number in that process, flags 0.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_pidfd_getfd,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd),
            target,
            0,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[test]
fn dead_zygote_is_seen_despite_a_stray_socket_copy() {
    if role().is_some() {
        return;
    }
    let z = Zygote::start().unwrap();
    let zpid = z.pid();
    let child = z.spawn(sleep_child, &60_000, &[]).unwrap();
    let cpid = child.pid();
    let Some(stray) = steal_zygote_socket(zpid) else {
        eprintln!("pidfd_getfd refused: cannot stage a stray socket copy; skipped");
        return;
    };
    kill_pid(zpid);
    // Both a wait on its child and a new request must see the death
    // promptly, not wait for an end of file the stray copy prevents.
    let (tx, rx) = std::sync::mpsc::channel();
    let z2 = z.clone();
    let worker = std::thread::spawn(move || {
        let mut child = child;
        let t = Instant::now();
        let status = child.wait_timeout(LIMIT);
        let spawned = z2.spawn(exit_with, &0, &[]).map(|c| c.pid());
        let _ = tx.send((status, spawned, t.elapsed()));
    });
    let outcome = rx.recv_timeout(Duration::from_secs(10));
    // Unblocks the worker if it hangs (the end of file then arrives).
    drop(stray);
    worker.join().unwrap();
    let (status, spawned, took) = outcome.expect("hung on a dead zygote");
    assert_eq!(status.unwrap(), ExitStatus::Signal(libc::SIGKILL));
    assert_eq!(spawned.unwrap_err().kind(), ErrorKind::Closed);
    assert!(took < Duration::from_secs(8), "{took:?}");
    drop(z);
    assert!(gone(zpid) && gone(cpid));
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::metadata(format!("/proc/{zpid}")).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(zombie_children().is_empty(), "{:?}", zombie_children());
}
