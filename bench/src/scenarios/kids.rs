//! A guard over a scenario's child processes: the ones nobody joined (an
//! error path) are SIGKILLed and reaped when it drops, so that a failed
//! scenario leaves no process behind.

use std::time::{Duration, Instant};

use multiproc::{ErrorKind, Process};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::registry::BenchError;

/// How long a child may take to exit once killed or asked to stop.
const REAP_LIMIT: Duration = Duration::from_secs(30);
/// Child processes that are SIGKILLed and reaped when dropped unjoined (an
/// error path), so that a failed scenario leaves none behind.
pub(crate) struct Kids<T: Serialize + DeserializeOwned + 'static> {
    procs: Vec<Process<T>>,
}

impl<T: Serialize + DeserializeOwned + 'static> Kids<T> {
    /// No children yet.
    pub(crate) fn new() -> Kids<T> {
        Kids { procs: Vec::new() }
    }

    /// Forks a child running `f(a)`; its pid.
    pub(crate) fn spawn<A: Serialize + DeserializeOwned + 'static>(
        &mut self,
        f: fn(A) -> T,
        a: A,
    ) -> Result<i32, BenchError> {
        let p = Process::spawn(f, a)?;
        let pid = p.pid();
        self.procs.push(p);
        Ok(pid)
    }

    /// SIGKILLs the child at `index` and reaps it.
    pub(crate) fn kill_at(&mut self, index: usize) -> Result<(), BenchError> {
        if index >= self.procs.len() {
            return Err(BenchError(format!("no child #{index} to kill")));
        }
        let mut p = self.procs.remove(index);
        p.kill()?;
        match p.join_timeout(REAP_LIMIT) {
            Err(e) if e.kind() == ErrorKind::Timeout => Err(BenchError(format!(
                "child {} did not die of SIGKILL",
                p.pid()
            ))),
            _ => Ok(()),
        }
    }

    /// SIGKILLs the child `pid` and reaps it.
    pub(crate) fn kill_pid(&mut self, pid: i32) -> Result<(), BenchError> {
        match self.procs.iter().position(|p| p.pid() == pid) {
            Some(index) => self.kill_at(index),
            None => Err(BenchError(format!("no child with pid {pid}"))),
        }
    }

    /// Joins every child (within [`REAP_LIMIT`] in all); their results.
    pub(crate) fn join_all(mut self) -> Result<Vec<T>, BenchError> {
        let deadline = Instant::now() + REAP_LIMIT;
        let mut out = Vec::with_capacity(self.procs.len());
        while !self.procs.is_empty() {
            let mut p = self.procs.remove(0);
            match p.join_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(v) => out.push(v),
                Err(e) => {
                    let pid = p.pid();
                    reap(p);
                    return Err(BenchError(format!("child {pid} failed: {e}")));
                }
            }
        }
        Ok(out)
    }
}

/// SIGKILLs `p` and reaps it; errors mean it is gone already.
fn reap<T: Serialize + DeserializeOwned + 'static>(mut p: Process<T>) {
    let _ = p.kill();
    let _ = p.join_timeout(REAP_LIMIT);
}

impl<T: Serialize + DeserializeOwned + 'static> Drop for Kids<T> {
    /// Kills and reaps the children nobody joined.
    fn drop(&mut self) {
        for p in self.procs.drain(..) {
            reap(p);
        }
    }
}
