//! Helpers shared by the sync and value integration tests: children that are
//! killed if a test fails, one test at a time, timing bounds, /dev/shm checks.
#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use multiproc::Process;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The longest any child may take.
pub const LIMIT: Duration = Duration::from_secs(30);

/// Runs tests of this binary one at a time (they fork, and check /dev/shm);
/// on return, checks that the test left no shared memory behind.
pub struct Serial {
    _g: MutexGuard<'static, ()>,
}

pub fn serial() -> Serial {
    static M: Mutex<()> = Mutex::new(());
    let g = M.lock().unwrap_or_else(|p| p.into_inner());
    assert_eq!(
        leftovers(),
        Vec::<String>::new(),
        "shared memory left before the test"
    );
    Serial { _g: g }
}

impl Drop for Serial {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_eq!(
                leftovers(),
                Vec::<String>::new(),
                "the test leaked shared memory"
            );
        }
    }
}

/// Regions created by this process that still exist.
pub fn leftovers() -> Vec<String> {
    let prefix = format!("mp-{}-", std::process::id());
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Pids of this process's children, running or zombie.
pub fn children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command: state, ppid, ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if rest.split_whitespace().nth(1) == Some(me.as_str()) {
            out.push(pid);
        }
    }
    out
}

/// A forked child that is SIGKILLed and reaped if the test fails.
pub struct Kid<T: Serialize + DeserializeOwned + 'static> {
    p: Option<Process<T>>,
}

impl<T: Serialize + DeserializeOwned + 'static> Kid<T> {
    pub fn spawn<A: Serialize + DeserializeOwned + 'static>(f: fn(A) -> T, a: A) -> Kid<T> {
        Kid {
            p: Some(Process::spawn(f, a).expect("spawn")),
        }
    }

    pub fn pid(&self) -> i32 {
        self.p.as_ref().map_or(0, |p| p.pid())
    }

    /// Joins within [`LIMIT`], panicking (after a kill) on timeout or failure.
    pub fn join(mut self) -> T {
        let mut p = self.p.take().expect("joined once");
        match p.join_timeout(LIMIT) {
            Ok(v) => v,
            Err(e) => {
                let _ = p.kill();
                let _ = p.join_timeout(LIMIT);
                panic!("child {} failed: {e}", p.pid());
            }
        }
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(mut self) {
        if let Some(mut p) = self.p.take() {
            p.kill().expect("kill");
            let Err(e) = p.join_timeout(LIMIT) else {
                panic!("a killed child has no result")
            };
            assert_eq!(e.kind(), multiproc::ErrorKind::WorkerLost, "{e}");
        }
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Drop for Kid<T> {
    fn drop(&mut self) {
        if let Some(mut p) = self.p.take() {
            let _ = p.kill();
            let _ = p.join_timeout(LIMIT);
        }
    }
}

/// Asserts that a wait meant to last `timeout` lasted between 0.6x and 10x.
pub fn assert_lasted(start: Instant, timeout: Duration) {
    let took = start.elapsed();
    assert!(
        took >= timeout.mul_f64(0.6) && took < timeout * 10,
        "a {timeout:?} wait took {took:?}"
    );
}

/// Polls `cond` every millisecond for up to [`LIMIT`].
pub fn eventually(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition not reached in {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Gives a child time to block in a wait it has announced it is entering.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(100));
}
