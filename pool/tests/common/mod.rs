//! Shared test helpers: a bounded runner that checks for leaks.
#![allow(dead_code)]

use std::collections::HashSet;
use std::panic::resume_unwind;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Fork-heavy tests of one binary run one at a time, so that the process
/// checks see only their own children.
static SERIAL: Mutex<()> = Mutex::new(());

fn children() -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out
}

fn shm_entries() -> HashSet<String> {
    let pid = std::process::id();
    let ours = [format!("mp-{pid}-"), format!("mpp-{pid}-")];
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| ours.iter().any(|p| n.starts_with(p)) || n.starts_with("mpp-"))
                .collect()
        })
        .unwrap_or_default()
}

fn kill_children() {
    for pid in children() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    }
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// Runs `body` with a deadline; afterwards checks that it left no child
/// process (running or zombie) and no shared-memory segment behind. On a
/// timeout the children are SIGKILLed and the test fails.
pub fn bounded(limit: Duration, body: impl FnOnce() + Send + 'static) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let before = shm_entries();
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        body();
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => {
            let _ = handle.join();
        }
        Err(RecvTimeoutError::Disconnected) => {
            let err = handle.join().err();
            kill_children();
            if let Some(e) = err {
                resume_unwind(e);
            }
        }
        Err(RecvTimeoutError::Timeout) => {
            kill_children();
            panic!("the test did not finish within {limit:?}");
        }
    }
    let left = children();
    assert!(
        wait_for(Duration::from_secs(3), || children().is_empty()),
        "child processes left behind: {left:?}"
    );
    let leaked = || -> Vec<String> { shm_entries().difference(&before).cloned().collect() };
    assert!(
        wait_for(Duration::from_secs(3), || leaked().is_empty()),
        "shared memory left in /dev/shm: {:?}",
        leaked()
    );
}

/// True if a process with this pid exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits (bounded) until `pid` is gone.
pub fn gone(pid: i32) -> bool {
    wait_for(Duration::from_secs(5), || !alive(pid))
}

pub const LIMIT: Duration = Duration::from_secs(60);
