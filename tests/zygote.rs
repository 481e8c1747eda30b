//! `Zygote` edge cases: buffered stdout across forks, an ignored `SIGCHLD`,
//! a zygote that cannot be supervised, a zygote that dies while a stray
//! process keeps its socket open.
//!
//! The scenarios that change process-wide state (stdout contents, signal
//! dispositions, descriptor limits) run in a re-executed copy of this binary
//! (`MP_ROLE` set), with a bounded wait and its children killed on failure.

use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use multiproc::{ErrorKind, ExitStatus};
use multiproc_ipc::Zygote;
use multiproc_testkit::{
    assert_no_zombie_children, gone, kill_pid, printed_pids, reaped, wait_until, Reexec,
};

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

/// Runs this binary as helper `test` with `MP_ROLE=role`, waits up to
/// `LIMIT` for it to exit (SIGKILLing it and the `CHILD <pid>`s it printed
/// otherwise), checks those children are gone, that it succeeded and that
/// it printed `done` (it ran to its end), and returns its stdout.
fn run_helper(role: &str, test: &str, done: &str) -> String {
    let (status, out) = Reexec::test(test)
        .env("MP_ROLE", role)
        .spawn()
        .output(LIMIT);
    for pid in printed_pids(&out, "CHILD ") {
        assert!(gone(pid), "{pid} left running by {test}");
    }
    assert!(status.success(), "{status}\n{out}");
    assert!(out.contains(done), "{test} ran to its end: {out}");
    out
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
    let out = run_helper("partial_line", "helper_partial_line", "\nEND");
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
    run_helper("sigchld_ignored", "helper_sigchld_ignored", "SIGCHLD-OK");
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
    wait_until(Duration::from_secs(5), || reaped(zpid));
    assert_no_zombie_children();
}

fn abort_child(_: (), _fds: Vec<OwnedFd>) -> i32 {
    std::process::abort()
}

#[test]
fn a_child_reports_its_exit_code_or_its_signal() {
    let zygote = Zygote::start().expect("zygote");
    let mut child = zygote.spawn(exit_with, &7, &[]).expect("spawn");
    assert!(child.pid() > 0);
    assert_eq!(child.wait().expect("wait"), ExitStatus::Code(7));
    let mut child = zygote.spawn(abort_child, &(), &[]).expect("spawn");
    assert_eq!(
        child.wait().expect("wait"),
        ExitStatus::Signal(libc::SIGABRT)
    );
    assert_no_zombie_children();
}

fn code_plus_fds(code: i32, fds: Vec<OwnedFd>) -> i32 {
    code + fds.len() as i32
}

/// Several requests sent before the first answer is read: each child gets
/// its own argument and descriptors, the answers come back in order, and a
/// request that cannot be sent fails it and the ones after it while the
/// socket stays in step for the next spawn.
#[test]
fn spawn_many_forks_each_child_with_its_own_argument_and_descriptors() {
    use std::os::fd::{AsFd, BorrowedFd};
    let zygote = Zygote::start().expect("zygote");
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let one: Vec<BorrowedFd<'_>> = vec![file.as_fd()];
    let three = [file.as_fd(); 3];
    let args = [(&10, &[][..]), (&20, &one[..]), (&30, &three[..])];
    let children = zygote.spawn_many(code_plus_fds, &args);
    let codes: Vec<ExitStatus> = children
        .into_iter()
        .map(|c| c.expect("spawn").wait_timeout(LIMIT).expect("wait"))
        .collect();
    assert_eq!(
        codes,
        [
            ExitStatus::Code(10),
            ExitStatus::Code(21),
            ExitStatus::Code(33)
        ]
    );

    // `Zygote::spawn` takes at most 253 descriptors per child.
    let too_many = vec![file.as_fd(); 254];
    let args = [(&1, &[][..]), (&2, &too_many[..]), (&3, &one[..])];
    let mut children = zygote.spawn_many(code_plus_fds, &args).into_iter();
    let mut first = children.next().unwrap().expect("the first is sent");
    assert_eq!(first.wait_timeout(LIMIT).unwrap(), ExitStatus::Code(1));
    let rest: Vec<ErrorKind> = children.map(|c| c.unwrap_err().kind()).collect();
    assert_eq!(
        rest,
        [ErrorKind::InvalidArgument, ErrorKind::InvalidArgument]
    );
    let mut after = zygote.spawn(code_plus_fds, &5, &[]).expect("in step");
    assert_eq!(after.wait_timeout(LIMIT).unwrap(), ExitStatus::Code(5));
    drop(zygote);
    assert_no_zombie_children();
}

/// A child that starts a thread of its own: exit code 0 if it could.
fn start_a_thread(_: (), _fds: Vec<OwnedFd>) -> i32 {
    match std::thread::spawn(|| 7).join() {
        Ok(7) => 0,
        _ => 1,
    }
}

/// Started from a thread other than the main one, a zygote runs a lifeline
/// thread (which kills it when this process exits), and forks nothing
/// before that thread runs: a fork while the thread starts could leave the
/// standard library's thread-registration lock held in the child, and
/// every thread the child started (a manager's connection threads) would
/// wait for it forever. With the lifeline's start delayed by the test hook,
/// the zygote's first answer comes no sooner; its child starts a thread. A
/// `Process` forked by such a thread runs the caller's code and does not
/// wait (a thread start on every spawn): its result comes long before.
#[test]
fn helper_lifeline_first() {
    if role().as_deref() != Some("lifeline_first") {
        return;
    }
    const DELAY: Duration = Duration::from_millis(300);
    multiproc::test_hooks::delay_lifeline_start(DELAY);
    let (zygote_waited, process_took) = std::thread::spawn(|| {
        let start = Instant::now();
        let zygote = Zygote::start().expect("zygote");
        println!("CHILD {}", zygote.pid());
        let mut child = zygote.spawn(start_a_thread, &(), &[]).expect("spawn");
        let waited = start.elapsed();
        let status = child.wait_timeout(LIMIT).expect("the child ends");
        assert_eq!(status, ExitStatus::Code(0), "a child starts a thread");
        let start = Instant::now();
        let p = multiproc::Process::spawn(square, 12).expect("spawn a process");
        assert_eq!(p.join().expect("its result"), 144);
        (waited, start.elapsed())
    })
    .join()
    .expect("the zygote's round");
    assert!(
        zygote_waited >= DELAY,
        "the zygote answered after {zygote_waited:?}"
    );
    assert!(
        process_took < DELAY,
        "a Process waited for its lifeline: {process_took:?}"
    );
    println!("LIFELINE FIRST");
}

#[test]
fn a_zygote_from_another_thread_forks_only_once_its_lifeline_runs() {
    run_helper("lifeline_first", "helper_lifeline_first", "LIFELINE FIRST");
}

/// A zygote whose lifeline thread cannot start (another thread of this
/// process was starting or ending one at the fork, and the lock the
/// standard library takes for that stayed held in the copy) exits within
/// milliseconds, and `Zygote::start` forks it again: twice stuck, then a
/// zygote whose child starts a thread. Five stuck forks in a row give an
/// error that says why. The hook makes the thread sleep as a stuck one does.
#[test]
fn helper_lifeline_stalls() {
    if role().as_deref() != Some("lifeline_stalls") {
        return;
    }
    use multiproc::test_hooks::{lifeline_stalls_left, stall_lifeline_starts};
    std::thread::spawn(|| {
        stall_lifeline_starts(2);
        let zygote = Zygote::start().expect("a zygote after two stuck ones");
        println!("CHILD {}", zygote.pid());
        assert_eq!(lifeline_stalls_left(), 0);
        let mut child = zygote.spawn(start_a_thread, &(), &[]).expect("spawn");
        let status = child.wait_timeout(LIMIT).expect("the child ends");
        assert_eq!(status, ExitStatus::Code(0), "a child starts a thread");
        drop(zygote);
        stall_lifeline_starts(5);
        let refused = Zygote::start().expect_err("five stuck zygotes");
        assert_eq!(refused.kind(), ErrorKind::Io, "{refused}");
        assert!(
            refused
                .to_string()
                .contains("could not start a thread in 5 forks"),
            "{refused}"
        );
        assert_eq!(lifeline_stalls_left(), 0);
    })
    .join()
    .expect("the zygotes' round");
    assert_no_zombie_children();
    println!("LIFELINE STALLS");
}

#[test]
fn a_zygote_that_cannot_start_a_thread_is_forked_again() {
    run_helper(
        "lifeline_stalls",
        "helper_lifeline_stalls",
        "LIFELINE STALLS",
    );
}

/// A zygote forked while another thread of the program held stdout's lock
/// (a test harness printing a result line, say) inherits that lock held
/// for ever. It prints nothing of its own and must never wait for it: it
/// used to flush stdout before forking each worker, and a pool's start then
/// hung until it was killed (`pool/tests/executor.rs` failed so, in about
/// one run in ten). The test hook has a thread take the lock right before
/// the zygote's fork, after the forking thread's own flush.
#[test]
fn helper_stdout_held_at_the_fork() {
    if role().as_deref() != Some("stdout_held") {
        return;
    }
    let (take_tx, take_rx) = mpsc::channel::<()>();
    let (held_tx, held_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        take_rx.recv().expect("asked to take the lock");
        let out = std::io::stdout().lock();
        held_tx.send(()).expect("the fork waits");
        let _ = release_rx.recv();
        drop(out);
    });
    multiproc::test_hooks::before_next_fork(move || {
        take_tx.send(()).expect("the holder waits");
        held_rx.recv().expect("the holder holds stdout");
    });
    let start = Instant::now();
    let pool = multiproc::Pool::new(1);
    let took = start.elapsed();
    release_tx.send(()).expect("the holder waits");
    holder.join().expect("the holder");
    let pool = pool.expect("the pool starts");
    assert!(took < LIMIT / 2, "the pool took {took:?} to start");
    assert_eq!(pool.apply(square, 3).expect("a task runs"), 9);
    pool.close();
    pool.join().expect("the pool ends");
    println!("STDOUT HELD OK");
}

#[test]
fn a_pool_starts_while_another_thread_holds_stdout_at_the_fork() {
    run_helper(
        "stdout_held",
        "helper_stdout_held_at_the_fork",
        "STDOUT HELD OK",
    );
}

/// A retiring zygote forks nothing more and exits once its last child has
/// exited and been reported, by itself: the exits it reported before it
/// went are still read, and dropping the handle then finds it gone.
#[test]
fn a_retiring_zygote_exits_after_its_last_child_and_its_reports_stay_readable() {
    let zygote = Zygote::start().expect("zygote");
    let zpid = zygote.pid();
    let mut quick = zygote.spawn(exit_with, &3, &[]).expect("spawn");
    let mut slow = zygote.spawn(sleep_child, &300u64, &[]).expect("spawn");
    zygote.retire().expect("retire");
    let refused = zygote.spawn(exit_with, &4, &[]).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Io, "{refused}");
    assert!(refused.to_string().contains("retiring"), "{refused}");
    // Still there: a child runs.
    std::thread::sleep(Duration::from_millis(50));
    assert!(zygote.is_alive(), "the zygote left before its last child");
    assert_eq!(slow.wait_timeout(LIMIT).expect("wait"), ExitStatus::Code(0));
    // Gone by itself, the handle still held.
    assert!(
        wait_until(LIMIT, || !zygote.is_alive()),
        "the zygote {zpid} did not exit after its last child"
    );
    assert_eq!(
        quick.wait_timeout(LIMIT).expect("wait"),
        ExitStatus::Code(3)
    );
    // Reaped when the last handle on it, or on a child of it, goes.
    drop((quick, slow, zygote));
    assert_no_zombie_children();

    // With no child at all, it goes at once.
    let zygote = Zygote::start().expect("zygote");
    zygote.retire().expect("retire");
    assert!(
        wait_until(LIMIT, || !zygote.is_alive()),
        "an idle zygote did not exit when retired"
    );
    drop(zygote);
    assert_no_zombie_children();
}
