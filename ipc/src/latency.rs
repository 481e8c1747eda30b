//! A short scheduler slice for multiproc's own waiting threads.
//!
//! The threads and processes multiproc runs for you (a pool's result
//! thread, supervisor, zygote and workers, a manager's server, the fork
//! server of [`init`](crate::init)) spend their lives
//! waiting for a peer and then doing a few microseconds of work. On an
//! idle machine they spin ([`crate::spin`]); on a busy one every hand-off
//! is a wake-up, and a thread that wakes behind a CPU-bound process waits
//! for that process's slice to end (1–3 ms by default) before it runs.
//! Since Linux 6.12 a thread can ask the fair scheduler for a shorter
//! slice, and a woken thread with a short slice preempts the CPU-bound one
//! at once. It gets no more CPU time than before, only sooner. So those
//! threads ask for one ([`apply`]), and those processes have it from their
//! fork on ([`starting_owned`]); threads that run your code in your process
//! are never changed. A `Process` is forked with the short slice too, so
//! that beside busy processes it gets a CPU at once (with the default one,
//! a `Process::spawn` + `join` beside two busy loops took 4.0 ms in some
//! runs instead of 0.1), and keeps it while it runs your code, as a pool's
//! workers do: a child that took your thread's slice back first thing was
//! preempted right there, in some runs, by a busy process with an earlier
//! deadline, and waited out that process's slice (3.5 ms). Your thread has
//! its own back as soon as the fork returns.
//!
//! The knob is the environment variable `MULTIPROC_SLICE_US`, read once per
//! process: the slice in microseconds (default 100, the kernel's minimum;
//! values are clamped by the kernel to 100–100,000), or `0` / `off` to leave
//! the kernel's default slice alone. Kernels before 6.12 ignore the hint.
//! Pool workers and `Process` children inherit their slice from the
//! process that forked them, so a task or target that starts processes of
//! its own passes the hint on; call [`reset`] there (in the worker's task
//! or the child's target) for the default slice.
//!
//! A thread of your own that mostly waits on multiproc (a loop collecting
//! results, say) can ask for the same slice:
//!
//! ```
//! use multiproc::{latency, Pool};
//!
//! fn square(x: u64) -> u64 { x * x }
//!
//! let pool = Pool::new(2)?;
//! let collector = std::thread::spawn(move || {
//!     latency::apply(); // this thread only, and the ones it starts
//!     pool.map(square, 0..100u64)
//! });
//! let squares = collector.join().unwrap()?;
//! assert_eq!(squares[9], 81);
//! // A pool worker asks for the short slice itself (0: a kernel before 6.12
//! // reports no slice; `MULTIPROC_SLICE_US=off` leaves the default).
//! fn slice_here(_: ()) -> Option<u64> { latency::current() }
//! let worker = Pool::new(1)?.apply(slice_here, ())?;
//! let short = latency::granted_ns();
//! assert!(matches!(worker, Some(0)) || short == 0 || worker == Some(short));
//! # Ok::<(), multiproc::Error>(())
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

/// The default slice asked for, in microseconds.
pub const DEFAULT_SLICE_US: u64 = 100;

/// `u64::MAX` until read; then the slice in nanoseconds, 0 for "leave alone".
static SLICE_NS: AtomicU64 = AtomicU64::new(u64::MAX);

/// Parses a `MULTIPROC_SLICE_US` value into nanoseconds (0: off).
pub fn parse(value: Option<&str>) -> u64 {
    match value.map(str::trim) {
        None | Some("") => DEFAULT_SLICE_US * 1000,
        Some("off") | Some("never") => 0,
        Some(v) => v
            .parse::<u64>()
            .map_or(DEFAULT_SLICE_US * 1000, |us| us.saturating_mul(1000)),
    }
}

/// The slice multiproc's threads ask for, in nanoseconds; 0 when
/// `MULTIPROC_SLICE_US` turns the hint off. Read once per process (call it
/// before forking, so that a child never reads the environment).
pub fn slice_ns() -> u64 {
    match SLICE_NS.load(Ordering::Relaxed) {
        u64::MAX => {
            let ns = parse(std::env::var("MULTIPROC_SLICE_US").ok().as_deref());
            SLICE_NS.store(ns, Ordering::Relaxed);
            ns
        }
        ns => ns,
    }
}

/// The slice a thread gets from [`apply`] on Linux 6.12 and later, in
/// nanoseconds: [`slice_ns`] as the kernel clamps it (0.1–100 ms), or 0
/// when the hint is off.
pub fn granted_ns() -> u64 {
    match slice_ns() {
        0 => 0,
        ns => ns.clamp(100_000, 100_000_000),
    }
}

/// Asks for the short slice for the calling thread (and what it starts).
/// Best effort: a thread under a real-time policy, or a kernel that
/// refuses, keeps its slice. Only for threads multiproc owns.
pub fn apply() {
    apply_slice(slice_ns());
}

/// Asks for a slice of `ns` nanoseconds for the calling thread, if `ns` is
/// not 0 (a [`slice_ns`] the parent read and passed on). A forked child
/// calls this rather than [`apply`], which may read the environment: only
/// system calls are safe there.
pub fn apply_slice(ns: u64) {
    if ns != 0 {
        let _ = crate::sys::sched::set_slice(0, ns);
    }
}

/// Asks for the short slice for process `pid`'s main thread, and the
/// processes it forks from then on. Best effort, as [`apply`]. A process
/// already queued for its first run keeps the slice it was forked with
/// until then: multiproc starts its own processes with
/// [`starting_owned`] instead.
pub fn apply_to(pid: i32) {
    let ns = slice_ns();
    if ns != 0 && pid > 0 {
        let _ = crate::sys::sched::set_slice(pid, ns);
    }
}

/// Runs `start`, which forks a process multiproc owns (a pool's or a
/// manager's zygote, a `Process` child), with the short slice on the
/// calling thread, and gives the thread its own slice back before
/// returning.
///
/// A forked process inherits its parent's slice, and the kernel places it
/// on a CPU with the slice it has at the fork: one given the short slice
/// only afterwards ([`apply_to`]) still waits, on a busy machine, until a
/// CPU-bound process ends its slice (measured: 3.6 ms for a pool's zygote
/// beside two busy loops). Only `start` runs while the thread has the short
/// slice; your code on it never does. Nothing changes when the hint is off, when
/// the thread already has the short slice, under a real-time policy, or on
/// a kernel before 6.12.
///
/// # Examples
///
/// ```
/// use multiproc::latency;
///
/// let before = latency::current();
/// let inside = latency::starting_owned(latency::current);
/// assert_eq!(latency::current(), before); // given back
/// if before.is_some_and(|b| b != 0) && latency::granted_ns() != 0 {
///     assert_eq!(inside, Some(latency::granted_ns())); // what a fork here inherits
/// }
/// ```
pub fn starting_owned<T>(start: impl FnOnce() -> T) -> T {
    let Some(before) = lend() else {
        return start();
    };
    let out = start();
    give_back(before);
    out
}

/// Gives the calling thread the short slice for a fork, unless the hint is
/// off, the thread already has the short slice, or the kernel ignores the
/// hint; the slice it had before, if this changed it.
fn lend() -> Option<u64> {
    let ns = slice_ns();
    let before = match crate::sys::sched::slice() {
        // 0: a kernel that reports no slice ignores the hint too.
        Ok(b) if ns != 0 && b != 0 && b != granted_ns() => b,
        _ => return None,
    };
    matches!(crate::sys::sched::set_slice(0, ns), Ok(true)).then_some(before)
}

/// Gives the calling thread the slice `before` again: the kernel's default
/// (asked for with 0) if that is what it had, else its own.
fn give_back(before: u64) {
    let default_is_it = crate::sys::sched::set_slice(0, 0).is_ok()
        && crate::sys::sched::slice().is_ok_and(|now| now == before);
    if !default_is_it {
        let _ = crate::sys::sched::set_slice(0, before);
    }
}

/// Gives the calling thread the kernel's default slice again (0 asks for
/// the default).
pub fn reset() {
    let _ = crate::sys::sched::set_slice(0, 0);
}

/// The slice the calling thread asks for, in nanoseconds, as the kernel
/// reports it (`None` where `sched_getattr` fails).
pub fn current() -> Option<u64> {
    crate::sys::sched::slice().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_to_nanoseconds_and_off_is_zero() {
        assert_eq!(parse(None), 100_000);
        assert_eq!(parse(Some("")), 100_000);
        assert_eq!(parse(Some(" 250 ")), 250_000);
        assert_eq!(parse(Some("0")), 0);
        assert_eq!(parse(Some("off")), 0);
        assert_eq!(parse(Some("fast")), 100_000);
    }

    #[test]
    fn starting_owned_lends_the_short_slice_and_gives_the_threads_own_back() {
        std::thread::spawn(|| {
            let before = current().expect("sched_getattr works");
            if before == 0 || granted_ns() == 0 {
                // A kernel before 6.12, or the hint is off: nothing to lend.
                return;
            }
            let (inside, started) =
                starting_owned(|| (current(), std::thread::spawn(current).join().unwrap()));
            assert_eq!(inside, Some(granted_ns()));
            assert_eq!(
                started,
                Some(granted_ns()),
                "what starts inside inherits the short slice"
            );
            assert_eq!(current(), Some(before), "the default slice is back");
            // A slice of the thread's own comes back as it was.
            crate::sys::sched::set_slice(0, 2_000_000).expect("sched_setattr works");
            let own = current().expect("sched_getattr works");
            assert_eq!(starting_owned(current), Some(granted_ns()));
            assert_eq!(current(), Some(own), "the thread's own slice is back");
            // A thread that has the short slice already keeps it.
            apply();
            assert_eq!(starting_owned(current), Some(granted_ns()));
            assert_eq!(current(), Some(granted_ns()));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_gets_the_slice_its_threads_inherit_it_and_reset_undoes_it() {
        std::thread::spawn(|| {
            let before = current().expect("sched_getattr works");
            if before == 0 {
                // A kernel before 6.12 reports no slice for fair threads.
                return;
            }
            apply();
            let now = current().expect("sched_getattr works");
            let wanted = if granted_ns() == 0 {
                before
            } else {
                granted_ns()
            };
            assert_eq!(now, wanted);
            let child = std::thread::spawn(current).join().unwrap();
            assert_eq!(child, Some(now), "threads inherit the slice");
            reset();
            let after = current().expect("sched_getattr works");
            assert!(after > 100_000, "the default slice is back: {after} ns");
        })
        .join()
        .unwrap();
    }
}
