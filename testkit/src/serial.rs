//! One fork-heavy test at a time, and guards that check for leaks.

use std::collections::BTreeSet;
use std::panic::resume_unwind;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::procs::{assert_no_children, kill_children};
use crate::shm::{leftovers, shm_names};
use crate::{wait_until, SETTLE};

/// The process-wide lock: one per test binary.
static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the process-wide test lock; released on drop.
///
/// Tests of one binary that fork, or that inspect process-wide state
/// (children, `/dev/shm`), take it so that they see only their own.
#[must_use = "the lock is released when the guard is dropped"]
pub struct Serial {
    _g: MutexGuard<'static, ()>,
}

/// Takes the process-wide test lock (a test that panicked while holding it
/// does not poison it for the others).
///
/// # Examples
///
/// ```
/// let _s = multiproc_testkit::serial();
/// ```
pub fn serial() -> Serial {
    Serial {
        _g: SERIAL.lock().unwrap_or_else(|p| p.into_inner()),
    }
}

/// [`Serial`], plus a check on drop that the test left none of this
/// process's shared-memory regions ([`leftovers`]) behind.
#[must_use = "the checks run when the guard is dropped"]
pub struct ShmChecked {
    _s: Serial,
}

/// Takes the process-wide test lock and checks that no shared-memory region
/// of this process exists; the guard checks it again when dropped (unless
/// the test is already failing).
///
/// # Panics
///
/// If regions exist before the test.
pub fn serial_shm_checked() -> ShmChecked {
    let s = serial();
    assert_eq!(
        leftovers(),
        Vec::<String>::new(),
        "shared memory left before the test"
    );
    ShmChecked { _s: s }
}

impl Drop for ShmChecked {
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

/// [`ShmChecked`], plus a check on drop that no child process persists.
#[must_use = "the checks run when the guard is dropped"]
pub struct Clean {
    _s: ShmChecked,
}

/// Like [`serial_shm_checked`], and also asserts before and after the test
/// (with [`assert_no_children`]'s settle time) that this process has no
/// child, running or zombie.
///
/// # Panics
///
/// If shared memory or children exist before the test.
pub fn serial_clean() -> Clean {
    let s = serial_shm_checked();
    assert_no_children();
    Clean { _s: s }
}

impl Drop for Clean {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_no_children();
        }
    }
}

/// The shared-memory entries a test can leave: this process's regions, and
/// the pool's (`mpp-…`).
fn shm_entries() -> BTreeSet<String> {
    leftovers().into_iter().chain(shm_names("mpp-")).collect()
}

/// Runs `body` under the process-wide lock, with a deadline; afterwards
/// checks that it left no child process (running or zombie) and no
/// shared-memory entry behind. On a timeout or a failure the children are
/// SIGKILLed and reaped.
///
/// # Panics
///
/// If `body` panics (its panic is passed on), does not finish within
/// `limit`, or leaves a child or a shared-memory entry behind.
pub fn checked(limit: Duration, body: impl FnOnce() + Send + 'static) {
    let _serial = serial();
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
    assert_no_children();
    let leaked = || -> Vec<String> { shm_entries().difference(&before).cloned().collect() };
    assert!(
        wait_until(SETTLE, || leaked().is_empty()),
        "shared memory left in /dev/shm: {:?}",
        leaked()
    );
}
