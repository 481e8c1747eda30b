//! Hooks that let tests provoke failures and orderings that are hard to
//! cause for real.
//!
//! They are process-wide, cost one relaxed atomic load on the paths they
//! guard, and do nothing unless a test arms them.

use std::sync::atomic::{AtomicUsize, Ordering};

pub use multiproc_ipc::test_hooks::{
    before_next_fork, delay_lifeline_start, lifeline_stalls_left, stall_lifeline_starts,
};

/// Spawns left before the armed one fails; 0 when disarmed.
static FAIL_SPAWN_IN: AtomicUsize = AtomicUsize::new(0);

/// Makes the `n`th worker spawn from now on (counting from 1, over every
/// pool of this process, replacements included) fail with an
/// [`ErrorKind::Io`](crate::ErrorKind::Io) error, as a failed `fork` would;
/// `0` disarms the hook. Only that one spawn fails.
///
/// A pool whose start fails this way kills and reaps the workers it had
/// already started and returns the error from
/// [`build`](crate::PoolBuilder::build); a failed replacement leaves the
/// slot empty, and a pool left with no worker at all is broken (its tasks
/// fail with [`ErrorKind::NotRunning`](crate::ErrorKind::NotRunning)).
///
/// # Examples
///
/// ```
/// use multiproc::{test_hooks, ErrorKind, Pool};
///
/// test_hooks::fail_worker_spawn(2);
/// let e = Pool::new(3).unwrap_err(); // the second worker fails to start
/// assert_eq!(e.kind(), ErrorKind::Io);
/// assert!(Pool::new(3).is_ok()); // the hook fired once
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn fail_worker_spawn(n: usize) {
    FAIL_SPAWN_IN.store(n, Ordering::SeqCst);
}

/// True if this spawn is the one the hook was armed for.
pub(crate) fn spawn_fails() -> bool {
    if FAIL_SPAWN_IN.load(Ordering::Relaxed) == 0 {
        return false;
    }
    FAIL_SPAWN_IN
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok_and(|before| before == 1)
}
