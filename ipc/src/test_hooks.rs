//! Hooks that let tests provoke orderings that are hard to cause for real
//! (re-exported in `multiproc::test_hooks`).
//!
//! They cost one relaxed atomic load where they act, and do nothing unless
//! a test arms them. Forked processes inherit them armed or not.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The armed delay, in nanoseconds (0: disarmed).
static LIFELINE_DELAY_NS: AtomicU64 = AtomicU64::new(0);

/// Makes the lifeline thread of every process forked from then on by a
/// thread other than the main one (a zygote, a `Process`: the thread that
/// kills the child when this process exits) wait `delay` before it reports
/// that it runs; [`Duration::ZERO`] disarms the hook.
///
/// Such a child does nothing else before its lifeline thread runs (a fork
/// while that thread starts could leave a lock of the standard library
/// held in every process the child forks), so with the hook armed a
/// zygote's first answer comes at least `delay` late.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use multiproc::{test_hooks, Pool};
///
/// test_hooks::delay_lifeline_start(Duration::from_millis(50));
/// // Started from a thread other than the main one: the pool's zygote has
/// // a lifeline thread, and it forks the worker only once that runs.
/// let took = std::thread::spawn(|| {
///     let start = Instant::now();
///     let pool = Pool::new(1)?;
///     Ok::<_, multiproc::Error>((start.elapsed(), pool.apply(|x: u64| x + 1, 1)?))
/// })
/// .join()
/// .unwrap()?;
/// test_hooks::delay_lifeline_start(Duration::ZERO);
/// assert!(took.0 >= Duration::from_millis(50));
/// assert_eq!(took.1, 2);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn delay_lifeline_start(delay: Duration) {
    let ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
    LIFELINE_DELAY_NS.store(ns, Ordering::SeqCst);
}

/// The armed lifeline delay, if any.
pub(crate) fn lifeline_delay() -> Option<Duration> {
    match LIFELINE_DELAY_NS.load(Ordering::Relaxed) {
        0 => None,
        ns => Some(Duration::from_nanos(ns)),
    }
}

/// How many of the next settled children stall their lifeline thread.
static LIFELINE_STALLS: AtomicU32 = AtomicU32::new(0);

/// Makes the lifeline thread of each of the next `n` children that wait
/// for theirs (zygotes started from a process that runs more than one
/// thread, or from a thread other than the main one) sleep for good before
/// it runs any of its own code, as a thread does whose start waits for a
/// lock of the standard library that another thread of this process held
/// at the fork. Such a zygote sees that within milliseconds and exits, and
/// [`Zygote::start`](crate::Zygote::start) forks it again, a few times at
/// most; 0 disarms the hook.
///
/// # Examples
///
/// ```
/// use multiproc::{test_hooks, Pool};
///
/// // Another thread runs: a zygote started now waits for its lifeline.
/// let other = std::thread::spawn(|| std::thread::park());
/// test_hooks::stall_lifeline_starts(2);
/// let pool = Pool::new(1)?; // its zygote is forked three times
/// assert_eq!(test_hooks::lifeline_stalls_left(), 0);
/// assert_eq!(pool.apply(|x: u64| x + 1, 1)?, 2);
/// other.thread().unpark();
/// other.join().unwrap();
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn stall_lifeline_starts(n: u32) {
    LIFELINE_STALLS.store(n, Ordering::SeqCst);
}

/// How many lifeline threads [`stall_lifeline_starts`] still has to stall.
pub fn lifeline_stalls_left() -> u32 {
    LIFELINE_STALLS.load(Ordering::SeqCst)
}

/// Whether the child about to be forked stalls its lifeline thread (one
/// stall used up if so).
pub(crate) fn take_lifeline_stall() -> bool {
    LIFELINE_STALLS
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Whether a hook waits in [`BEFORE_FORK`] (checked first: a fork that
/// finds it unarmed takes no lock).
static BEFORE_FORK_ARMED: AtomicBool = AtomicBool::new(false);
/// The function to run before the next fork, if armed.
static BEFORE_FORK: Mutex<Option<Box<dyn FnOnce() + Send>>> = Mutex::new(None);

/// Runs `hook` on the forking thread right before this process's next
/// `fork` (by any of multiproc's ways of forking: a pool's zygote, a
/// `Process`, a manager), once: after the fork's own preparations (stdout
/// and stderr are flushed by then), with nothing of multiproc's held. Tests
/// use it to have another thread hold a lock at the instant of a fork.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use multiproc::{test_hooks, Process};
///
/// let ran = Arc::new(AtomicBool::new(false));
/// let r = Arc::clone(&ran);
/// test_hooks::before_next_fork(move || r.store(true, Ordering::SeqCst));
/// let p = Process::spawn(|x: u64| x + 1, 1)?;
/// assert_eq!(p.join()?, 2);
/// assert!(ran.load(Ordering::SeqCst));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn before_next_fork(hook: impl FnOnce() + Send + 'static) {
    *BEFORE_FORK.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(hook));
    BEFORE_FORK_ARMED.store(true, Ordering::SeqCst);
}

/// Runs the hook armed with [`before_next_fork`], if any (in the parent,
/// right before the fork).
pub(crate) fn run_before_fork() {
    if !BEFORE_FORK_ARMED.load(Ordering::Relaxed) {
        return;
    }
    BEFORE_FORK_ARMED.store(false, Ordering::SeqCst);
    let hook = BEFORE_FORK.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(hook) = hook {
        hook();
    }
}
