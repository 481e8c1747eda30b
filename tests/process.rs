//! `Process` and `Zygote`: results, panics, signals, timeouts, reaping, and
//! children dying with their parent.
//!
//! Forks directly from this (threaded) test binary; the fork-server variants
//! live in `fork_threads.rs`.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use multiproc::{ErrorKind, ExitStatus, Process};
use multiproc_ipc::Zygote;
use multiproc_testkit::{
    assert_no_zombie_children, gone, kill_survivors, printed_pids, reaped, wait_until, Reexec,
};

const LIMIT: Duration = Duration::from_secs(30);

fn square(x: u64) -> u64 {
    x * x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn boom(msg: String) -> u32 {
    panic!("boom: {msg}");
}

#[test]
fn child_returns_value() {
    let mut p = Process::spawn(square, 9).unwrap();
    assert!(p.pid() > 0);
    assert!(p.name().starts_with("Process-"));
    assert_eq!(p.join_timeout(LIMIT).unwrap(), 81);
    assert_eq!(p.exit_status(), Some(ExitStatus::Code(0)));
    // A second join is an error, not a hang.
    assert_eq!(
        p.join_timeout(LIMIT).unwrap_err().kind(),
        ErrorKind::NotRunning
    );
}

#[test]
fn large_result_crosses_the_pipe() {
    fn big(n: usize) -> Vec<u8> {
        vec![7u8; n]
    }
    let mut p = Process::spawn(big, 3 << 20).unwrap();
    let v = p.join_timeout(LIMIT).unwrap();
    assert_eq!(v.len(), 3 << 20);
    assert!(v.iter().all(|&b| b == 7));
}

/// A child builds a small outcome's frame on the stack and a larger one on
/// the heap: results of every size around the boundary (256 bytes, length
/// included) arrive whole, and the parent reads them whatever the size of
/// its first read.
#[test]
fn results_around_the_stack_frame_boundary_arrive_whole() {
    fn text(n: usize) -> String {
        (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect()
    }
    for n in [
        0, 1, 200, 245, 246, 247, 248, 249, 250, 300, 511, 512, 513, 70_000,
    ] {
        let mut p = Process::spawn(text, n).unwrap();
        assert_eq!(p.join_timeout(LIMIT).unwrap(), text(n), "length {n}");
    }
}

#[test]
fn child_panic_carries_message_and_location() {
    let mut p = Process::builder()
        .name("panicky")
        .spawn(boom, "x1".to_string())
        .unwrap();
    assert_eq!(p.name(), "panicky");
    let err = p.join_timeout(LIMIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TaskPanicked);
    let info = err.panic_info().unwrap();
    assert_eq!(info.message, "boom: x1");
    let loc = info.location.as_deref().unwrap();
    assert!(loc.starts_with("tests/process.rs:"), "{loc}");
    assert_eq!(p.exit_status(), Some(ExitStatus::Code(1)));
}

#[test]
fn child_killed_by_sigkill_is_worker_lost() {
    let mut p = Process::spawn(sleep_ms, 60_000).unwrap();
    assert!(p.is_alive());
    p.kill().unwrap();
    let err = p.join_timeout(LIMIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WorkerLost);
    assert_eq!(
        err.exit_info().unwrap().status,
        ExitStatus::Signal(libc::SIGKILL)
    );
    assert!(err.to_string().contains("SIGKILL"), "{err}");
    assert_eq!(p.exit_status(), Some(ExitStatus::Signal(9)));
    assert!(!p.is_alive());
    // Signalling a dead, reaped child is harmless.
    p.kill().unwrap();
}

#[test]
fn terminate_sends_sigterm() {
    let mut p = Process::spawn(sleep_ms, 60_000).unwrap();
    p.terminate().unwrap();
    let err = p.join_timeout(LIMIT).unwrap_err();
    assert_eq!(
        err.exit_info().unwrap().status,
        ExitStatus::Signal(libc::SIGTERM)
    );
}

#[test]
fn join_timeout_times_out_then_join_succeeds() {
    let mut p = Process::spawn(sleep_ms, 300).unwrap();
    let t = Instant::now();
    let err = p.join_timeout(Duration::from_millis(50)).unwrap_err();
    let waited = t.elapsed();
    assert!(err.is_timeout());
    assert!(
        waited >= Duration::from_millis(30) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert!(p.exit_status().is_none());
    assert_eq!(p.join_timeout(LIMIT).unwrap(), 300);
}

#[test]
fn exit_without_result_is_worker_lost_with_code() {
    fn quit(code: i32) {
        std::process::exit(code)
    }
    let mut p = Process::spawn(quit, 3).unwrap();
    let err = p.join_timeout(LIMIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WorkerLost);
    assert_eq!(err.exit_info().unwrap().status, ExitStatus::Code(3));
}

#[test]
fn unencodable_result_is_serialization_error() {
    #[derive(Debug, serde::Deserialize)]
    struct Bad;
    impl serde::Serialize for Bad {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refuses to encode"))
        }
    }
    fn make(_: ()) -> Bad {
        Bad
    }
    let mut p = Process::spawn(make, ()).unwrap();
    let err = p.join_timeout(LIMIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Serialization);
    assert!(err.to_string().contains("refuses to encode"), "{err}");
}

#[test]
fn thousand_processes_leave_no_zombie() {
    let mut procs = Vec::new();
    for i in 0..1000u64 {
        procs.push(Process::spawn(square, i).unwrap());
        if procs.len() == 50 {
            for (j, mut p) in procs.drain(..).enumerate() {
                let _ = j;
                p.join_timeout(LIMIT).unwrap();
            }
        }
    }
    for mut p in procs {
        p.join_timeout(LIMIT).unwrap();
    }
    assert_no_zombie_children();
}

#[test]
fn dropped_process_is_reaped_in_background() {
    let p = Process::spawn(sleep_ms, 100).unwrap();
    let pid = p.pid();
    drop(p);
    // Reaped means the pid disappears entirely (a zombie would stay).
    assert!(
        wait_until(LIMIT, || reaped(pid)),
        "child {pid} never reaped"
    );
}

#[test]
fn init_refuses_when_threads_run() {
    // The test harness runs tests on threads: init must say so.
    let other = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(200)));
    let err = multiproc::init().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(multiproc_ipc::fork_server().is_none());
    other.join().unwrap();
}

fn exit_with(code: i32, _fds: Vec<OwnedFd>) -> i32 {
    code
}

fn write_to_fd(msg: String, mut fds: Vec<OwnedFd>) -> i32 {
    use std::io::Write;
    let Some(fd) = fds.pop() else { return 9 };
    let mut f = std::fs::File::from(fd);
    if f.write_all(msg.as_bytes()).is_err() {
        return 8;
    }
    0
}

fn sleep_child(ms: u64, _fds: Vec<OwnedFd>) -> i32 {
    std::thread::sleep(Duration::from_millis(ms));
    0
}

#[test]
fn zygote_spawns_reports_status_and_passes_fds() {
    let z = Zygote::start().unwrap();
    assert!(z.is_alive());
    let mut c = z.spawn(exit_with, &5, &[]).unwrap();
    assert_eq!(c.wait_timeout(LIMIT).unwrap(), ExitStatus::Code(5));

    let (r, w) = nix::unistd::pipe().unwrap();
    let mut c = z
        .spawn(write_to_fd, &"through SCM_RIGHTS".to_string(), &[w.as_fd()])
        .unwrap();
    drop(w);
    assert_eq!(c.wait_timeout(LIMIT).unwrap(), ExitStatus::Code(0));
    let mut s = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut s).unwrap();
    assert_eq!(s, "through SCM_RIGHTS");

    // pidfd: poll says when it dies; the status names the signal.
    let c = z.spawn(sleep_child, &60_000, &[]).unwrap();
    assert!(c.try_wait().unwrap().is_none());
    c.kill().unwrap();
    let mut pfd = [nix::poll::PollFd::new(
        c.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    assert_eq!(nix::poll::poll(&mut pfd, 10_000u16).unwrap(), 1);
    assert_eq!(c.try_wait().unwrap(), Some(ExitStatus::Signal(9)));
}

#[test]
fn zygote_is_usable_from_many_threads() {
    let z = Zygote::start().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let z = z.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let code = (t * 25 + i) % 100;
                    let mut c = z.spawn(exit_with, &code, &[]).unwrap();
                    assert_eq!(c.wait_timeout(LIMIT).unwrap(), ExitStatus::Code(code));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let zpid = z.pid();
    drop(z);
    assert!(gone(zpid));
    assert_no_zombie_children();
}

// ---------------------------------------------------------------------------
// Re-executed helpers: this binary, run with MP_ROLE set.

/// This binary, running only the helper test `test` with `MP_ROLE=role`.
fn run_helper(role: &str, test: &str) -> multiproc_testkit::Helper {
    Reexec::test(test).env("MP_ROLE", role).spawn()
}

#[test]
fn helper_orphan_parent() {
    if std::env::var("MP_ROLE").as_deref() != Ok("orphan_parent") {
        return;
    }
    let p = Process::spawn(sleep_ms, 60_000).unwrap();
    let z = Zygote::start().unwrap();
    let c = z.spawn(sleep_child, &60_000, &[]).unwrap();
    println!("PIDS {} {} {}", p.pid(), z.pid(), c.pid());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn children_die_when_parent_is_sigkilled() {
    if std::env::var("MP_ROLE").is_ok() {
        return;
    }
    let mut helper = run_helper("orphan_parent", "helper_orphan_parent");
    let pids = helper.read_pids("PIDS ", LIMIT);
    assert_eq!(pids.len(), 3);
    for &pid in &pids {
        assert!(!gone(pid), "{pid} should run");
    }
    helper.kill();
    let alive = kill_survivors(&pids, Duration::from_secs(1));
    assert!(
        alive.is_empty(),
        "still alive 1 s after the parent died: {alive:?}"
    );
}

#[test]
fn helper_exit_semantics() {
    if std::env::var("MP_ROLE").as_deref() != Ok("exit_semantics") {
        return;
    }
    fn slow_marker(path: String) {
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(path, "done").unwrap();
    }
    let marker = std::env::var("MP_MARKER").unwrap();
    let daemon = Process::builder()
        .daemon(true)
        .spawn(sleep_ms, 60_000)
        .unwrap();
    let worker = Process::builder().spawn(slow_marker, marker).unwrap();
    println!("PIDS {} {}", daemon.pid(), worker.pid());
    // Neither is joined: at exit the daemon is terminated, the other awaited.
    std::mem::forget(daemon);
    std::mem::forget(worker);
}

#[test]
fn daemon_terminated_and_non_daemon_joined_at_exit() {
    if std::env::var("MP_ROLE").is_ok() {
        return;
    }
    let marker = std::env::temp_dir().join(format!("mp-marker-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let mut helper = Reexec::test("helper_exit_semantics")
        .env("MP_ROLE", "exit_semantics")
        .env("MP_MARKER", &marker)
        .spawn();
    let pids = helper.read_pids("PIDS ", LIMIT);
    let status = helper.wait(LIMIT);
    assert!(status.success());
    // The non-daemon child finished its work before the parent exited.
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "done");
    let _ = std::fs::remove_file(&marker);
    // The daemon was terminated.
    assert!(gone(pids[0]));
    assert!(gone(pids[1]));
}

fn one_mib(_: ()) -> Vec<u8> {
    vec![1u8; 1 << 20]
}

#[test]
fn helper_drop_large_result() {
    if std::env::var("MP_ROLE").as_deref() != Ok("drop_large_result") {
        return;
    }
    // A dropped handle closes the only read end: the child's write of its
    // 1 MiB result fails with EPIPE, it exits, and the reaper reaps it.
    let p = Process::spawn(one_mib, ()).unwrap();
    let pid = p.pid();
    println!("CHILD {pid}");
    drop(p);
    assert!(
        wait_until(Duration::from_secs(10), || reaped(pid)),
        "child {pid} still blocked on its result"
    );
    println!("REAPED {pid}");
    // Dropped again, then the program returns from main: the exit handler
    // waits for this non-daemon child, which must not block on its result.
    let p = Process::spawn(one_mib, ()).unwrap();
    println!("CHILD {}", p.pid());
    drop(p);
}

#[test]
fn dropped_process_with_large_result_exits() {
    if std::env::var("MP_ROLE").is_ok() {
        return;
    }
    let (status, out) =
        run_helper("drop_large_result", "helper_drop_large_result").output(Duration::from_secs(20));
    assert!(status.success(), "{status:?}\n{out}");
    assert!(out.contains("REAPED "), "{out}");
    let pids = printed_pids(&out, "CHILD ");
    assert_eq!(pids.len(), 2, "{out}");
    for pid in pids {
        assert!(gone(pid), "{pid} left running");
    }
}
