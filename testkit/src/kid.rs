//! A forked child that is killed and reaped if the test fails.

use std::time::Duration;

use multiproc_ipc::{ErrorKind, Process};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::LIMIT;

/// Joins `p` within `limit`, returning its result.
///
/// # Panics
///
/// If the child fails or does not finish in time; it is SIGKILLed and
/// reaped first.
pub fn join_or_kill<T: Serialize + DeserializeOwned + 'static>(
    mut p: Process<T>,
    limit: Duration,
) -> T {
    match p.join_timeout(limit) {
        Ok(v) => v,
        Err(e) => {
            let _ = p.kill();
            let _ = p.join_timeout(Duration::from_secs(5));
            panic!("child {} failed or hung: {e}", p.pid());
        }
    }
}

/// SIGKILLs `p` and reaps it (within [`LIMIT`]).
///
/// # Panics
///
/// If the kill fails, or the join does not report the child as lost
/// ([`ErrorKind::WorkerLost`]).
pub fn kill_and_reap<T: Serialize + DeserializeOwned + 'static>(mut p: Process<T>) {
    p.kill().expect("kill");
    let Err(e) = p.join_timeout(LIMIT) else {
        panic!("a killed child has no result")
    };
    assert_eq!(e.kind(), ErrorKind::WorkerLost, "{e}");
}

/// A forked child that is SIGKILLed and reaped if dropped unjoined (when
/// the test fails).
pub struct Kid<T: Serialize + DeserializeOwned + 'static> {
    p: Option<Process<T>>,
}

impl<T: Serialize + DeserializeOwned + 'static> Kid<T> {
    /// Forks a child running `f(a)`.
    ///
    /// # Panics
    ///
    /// If the spawn fails.
    pub fn spawn<A: Serialize + DeserializeOwned + 'static>(f: fn(A) -> T, a: A) -> Kid<T> {
        Kid {
            p: Some(Process::spawn(f, a).expect("spawn")),
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.p.as_ref().map_or(0, |p| p.pid())
    }

    /// Joins within [`LIMIT`] and returns the child's result.
    ///
    /// # Panics
    ///
    /// On timeout or failure, after killing the child.
    pub fn join(mut self) -> T {
        let p = self.p.take().expect("joined once");
        join_or_kill(p, LIMIT)
    }

    /// SIGKILLs the child and reaps it.
    ///
    /// # Panics
    ///
    /// As [`kill_and_reap`].
    pub fn kill(mut self) {
        if let Some(p) = self.p.take() {
            kill_and_reap(p);
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
