//! This test binary, run again as an unrelated process in a role.
//!
//! The role is passed in an environment variable that the test binary's
//! entry test reads; in a normal test run that variable is unset and the
//! entry test does nothing. Every helper process is waited for with a
//! deadline and killed (with the children it reported) on failure or drop.

use std::ffi::OsStr;
use std::io::{BufRead, Read};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::procs::{kill_pid, reaped};

/// What a helper prints, one line each, to name a child it started: the
/// harness kills those if the helper has to be killed.
const CHILD_PREFIX: &str = "CHILD ";

/// The pids printed after `prefix` (e.g. `"CHILD "`) in `out`, one a line.
///
/// # Examples
///
/// ```
/// let out = "x\nCHILD 12\ntest entry ... CHILD 13\n";
/// assert_eq!(multiproc_testkit::printed_pids(out, "CHILD "), vec![12, 13]);
/// ```
pub fn printed_pids(out: &str, prefix: &str) -> Vec<i32> {
    out.lines()
        .filter_map(|l| l.split_once(prefix).map(|(_, p)| p.trim()))
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// How to run this test binary again; [`Reexec::spawn`] starts it.
pub struct Reexec {
    cmd: Command,
}

impl Reexec {
    /// This test binary, running only the test `test` (exact name, output
    /// not captured, one thread); stdout piped, stderr inherited.
    pub fn test(test: &str) -> Reexec {
        let mut r = Reexec::program();
        r.cmd
            .args(["--exact", test, "--nocapture", "--test-threads=1"]);
        r
    }

    /// This binary with no arguments (for a `harness = false` test);
    /// stdout piped, stderr inherited.
    pub fn program() -> Reexec {
        let mut cmd = Command::new(std::env::current_exe().expect("test binary path"));
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        Reexec { cmd }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Reexec {
        self.cmd.arg(arg);
        self
    }

    /// Sets an environment variable (the role, and its parameters).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Reexec {
        self.cmd.env(key, value);
        self
    }

    /// Sets the helper's stdin (e.g. `Stdio::from(fd)` to hand it one
    /// descriptor: the parent's copy is closed as soon as it is spawned).
    pub fn stdin(mut self, stdin: Stdio) -> Reexec {
        self.cmd.stdin(stdin);
        self
    }

    /// Makes the helper the leader of a new process group (its pgid is its
    /// pid), so that a signal sent to that group (a terminal's Ctrl-C)
    /// reaches the helper and its children but not the test runner.
    pub fn process_group(mut self) -> Reexec {
        use std::os::unix::process::CommandExt;
        self.cmd.process_group(0);
        self
    }

    /// Sets the helper's stdout (piped by default).
    pub fn stdout(mut self, stdout: Stdio) -> Reexec {
        self.cmd.stdout(stdout);
        self
    }

    /// Sets the helper's stderr (inherited by default).
    pub fn stderr(mut self, stderr: Stdio) -> Reexec {
        self.cmd.stderr(stderr);
        self
    }

    /// Starts the helper.
    ///
    /// # Panics
    ///
    /// If it cannot be spawned.
    pub fn spawn(mut self) -> Helper {
        let child = self.cmd.spawn().expect("spawn helper");
        // The command owns the parent's copies of any descriptors it was
        // given: close them now (dropped with `self`), or the parent would
        // keep the helper's end open and never see it die.
        drop(self);
        Helper {
            pid: child.id(),
            child: Some(child),
            strays: Vec::new(),
        }
    }
}

/// A running helper process: SIGKILLed and reaped if dropped unwaited,
/// with the processes it reported.
pub struct Helper {
    child: Option<Child>,
    pid: u32,
    strays: Vec<i32>,
}

impl Helper {
    /// The helper's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Pids to SIGKILL too if the helper has to be killed, or is dropped,
    /// before it was waited for (processes it started and reported).
    pub fn adopt(&mut self, pids: &[i32]) {
        self.strays.extend_from_slice(pids);
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("helper already waited for")
    }

    /// Takes the helper's stdout.
    ///
    /// # Panics
    ///
    /// If it was not piped, or was taken already.
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.child().stdout.take().expect("helper stdout piped")
    }

    /// Kills the helper, if it was not waited for, and the pids it reported
    /// (on a failure path; once the helper is reaped, they are left alone).
    fn abort(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            self.strays.drain(..).for_each(kill_pid);
        }
    }

    /// Waits up to `limit` for a line of the helper's stdout that contains
    /// `prefix`, and returns what follows `prefix` on it (the rest of stdout
    /// is read, and dropped, in the background).
    ///
    /// # Panics
    ///
    /// If no such line comes in time or the helper closes its stdout
    /// first; the helper is killed.
    pub fn read_line(&mut self, prefix: &str, limit: Duration) -> String {
        let out = self.take_stdout();
        let (tx, rx) = mpsc::channel();
        let wanted = prefix.to_owned();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Some((_, rest)) = line.split_once(wanted.as_str()) {
                    let _ = tx.send(rest.to_owned());
                }
            }
        });
        match rx.recv_timeout(limit) {
            Ok(line) => line,
            Err(e) => {
                self.abort();
                panic!("helper printed no {prefix:?} line ({e})");
            }
        }
    }

    /// Waits up to `limit` for a line containing `prefix` followed by
    /// whitespace-separated pids (`PIDS 12 13`), returns those pids and
    /// [adopts](Helper::adopt) them.
    ///
    /// # Panics
    ///
    /// As [`Helper::read_line`], or if a pid does not parse.
    pub fn read_pids(&mut self, prefix: &str, limit: Duration) -> Vec<i32> {
        let line = self.read_line(prefix, limit);
        let pids: Vec<i32> = line
            .split_whitespace()
            .map(|s| s.parse().expect("a pid"))
            .collect();
        self.adopt(&pids);
        pids
    }

    /// Waits up to `limit` for the helper to exit; returns its status and
    /// checks that it is reaped.
    ///
    /// # Panics
    ///
    /// If it does not exit in time; it is killed with the pids it reported.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child().try_wait().expect("try_wait") {
                self.child = None;
                assert!(
                    reaped(self.pid as i32),
                    "helper {} left a zombie or stray process",
                    self.pid
                );
                return status;
            }
            if Instant::now() > deadline {
                self.abort();
                panic!("helper {} did not exit within {limit:?}", self.pid);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits up to `limit` for the helper to exit while reading all of its
    /// stdout; returns its status and its output.
    ///
    /// # Panics
    ///
    /// If it does not exit in time: it is killed, with the pids it reported
    /// and those it printed as `CHILD <pid>` lines, and the panic message
    /// shows its output.
    pub fn output(mut self, limit: Duration) -> (ExitStatus, String) {
        let mut out = self.take_stdout();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child().try_wait().expect("try_wait") {
                self.child = None;
                break status;
            }
            if Instant::now() > deadline {
                self.abort();
                let out = reader.join().unwrap_or_default();
                printed_pids(&out, CHILD_PREFIX)
                    .into_iter()
                    .for_each(kill_pid);
                panic!("helper did not exit within {limit:?}; its output:\n{out}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        (status, reader.join().unwrap_or_default())
    }

    /// SIGKILLs the helper and reaps it; returns its status.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
        self.wait(crate::LIMIT)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.abort();
    }
}
