//! The machinery every queue region shares: the robust lock with its
//! owner-died repair, and the spin-then-park waiting protocol on event words.
//!
//! # Waiting
//!
//! Spin first (adaptive, 2-20 µs with backoff between looks; none on a
//! single CPU), then park on a shared futex *event word*: bit 0 says someone
//! is parked, the other bits are a sequence. A parker sets the bit (a full
//! barrier) and re-checks its condition before sleeping; the other side, after
//! publishing, fences and reads the word, and only if the bit is set does it
//! clear it, bump the sequence and call into the kernel. So one of the two
//! always sees the other, and nobody pays a system call while nobody sleeps.
//! Parking is sliced (at most [`PARK_SLICE`]) so a wake-up lost to a killed
//! peer costs a delay, never a hang, and each slice runs the caller's
//! housekeeping (repairing a lock whose owner died).
//!
//! # Locking
//!
//! [`lock_robust`] takes a robust process-shared mutex within a deadline; if
//! the previous holder died, it runs the caller's repair (replaying or
//! discarding that holder's redo journal) and marks the mutex consistent
//! before handing over the guard.

use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
use crate::sys::futex;
use crate::sys::mutex::{Locked, RobustMutex};

/// The longest a parked waiter sleeps before looking again.
pub(crate) const PARK_SLICE: Duration = Duration::from_millis(100);
const MAX_SPIN_NS: u32 = 20_000;
const MIN_SPIN_NS: u32 = 2_000;

/// True on a machine (or affinity mask) with one CPU: spinning is useless there.
fn single_cpu() -> bool {
    static ONE: OnceLock<bool> = OnceLock::new();
    *ONE.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() == 1))
}

/// Why a blocking step stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The deadline passed.
    TimedOut,
    /// A real failure (a lock that cannot be recovered, a corrupt queue);
    /// boxed to keep the hot paths' results small.
    Failed(Box<Error>),
}

impl Stop {
    pub(crate) fn failed(e: Error) -> Stop {
        Stop::Failed(Box::new(e))
    }
}

/// Holds a robust lock; unlocks on drop.
pub(crate) struct RobustGuard<'a> {
    lock: &'a RobustMutex,
}

impl Drop for RobustGuard<'_> {
    fn drop(&mut self) {
        // Only fails if this thread does not hold it, which cannot happen here.
        let _ = self.lock.unlock();
    }
}

pub(crate) fn lock_error(e: std::io::Error) -> Error {
    Error::with_source(
        ErrorKind::Io,
        format!("queue lock failed: {e} (the queue cannot be used any more)"),
        e,
    )
}

/// How long a locker spins on a held queue lock before sleeping in the
/// kernel: holders keep it for about a microsecond, a futex sleep and wake
/// costs about 25.
const LOCK_SPIN: Duration = Duration::from_micros(10);

/// Tries to take `m` while spinning briefly (none on a single CPU); `None`
/// if it stayed held.
fn spin_lock(m: &RobustMutex) -> Option<std::io::Result<Locked>> {
    if single_cpu() {
        return None;
    }
    let start = Instant::now();
    let mut pauses = 1u32;
    let mut i = 0u32;
    loop {
        // Look before trying: a failed try is a write to the holder's line.
        if m.owner().is_none() {
            match m.try_lock() {
                Ok(Some(l)) => return Some(Ok(l)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
        for _ in 0..pauses {
            std::hint::spin_loop();
        }
        pauses = (pauses * 2).min(16);
        i = i.wrapping_add(1);
        if i % 8 == 0 && start.elapsed() >= LOCK_SPIN {
            return None;
        }
    }
}

/// Locks `m` (waiting at most until `deadline`), running `repair` first if
/// the previous holder died holding it.
pub(crate) fn lock_robust<'a>(
    m: &'a RobustMutex,
    deadline: Option<Instant>,
    repair: impl FnOnce(),
) -> Result<RobustGuard<'a>, Stop> {
    let spun = match m.try_lock() {
        Ok(Some(l)) => Some(Ok(l)),
        Ok(None) => spin_lock(m),
        Err(e) => Some(Err(e)),
    };
    let locked = match spun {
        Some(l) => l,
        None => lock_blocking(m, deadline),
    };
    let locked = match locked {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Err(Stop::TimedOut),
        Err(e) => return Err(Stop::failed(lock_error(e))),
    };
    let guard = RobustGuard { lock: m };
    if locked == Locked::OwnerDied {
        repair();
        m.consistent().map_err(|e| Stop::failed(lock_error(e)))?;
    }
    Ok(guard)
}

/// Sleeps in the kernel until `m` is ours or the deadline passes.
fn lock_blocking(m: &RobustMutex, deadline: Option<Instant>) -> std::io::Result<Locked> {
    match deadline {
        None => m.lock(None),
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => m.lock(Some(left)),
            _ => Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        },
    }
}

/// Repairs `m` if its holder died while nobody else was using it (a waiter's
/// housekeeping): takes it only if free, never waits.
pub(crate) fn repair_if_abandoned(m: &RobustMutex, repair: impl FnOnce()) {
    match m.try_lock() {
        Ok(Some(Locked::OwnerDied)) => {
            repair();
            let _ = m.consistent();
            let _ = m.unlock();
        }
        Ok(Some(Locked::Ok)) => {
            let _ = m.unlock();
        }
        _ => {}
    }
}

/// Wakes whoever is parked on `word`, if anyone: the cheap side of the
/// protocol (a fence and a load when nobody sleeps).
pub(crate) fn notify(word: &AtomicU32) {
    // Orders the caller's publish before reading the parked bit; the
    // parker's fetch_or is the matching full barrier.
    fence(Ordering::SeqCst);
    notify_fenced(word);
}

/// [`notify`] for a caller that has just fenced.
pub(crate) fn notify_fenced(word: &AtomicU32) {
    let w = word.load(Ordering::Relaxed);
    if w & 1 != 0
        && word
            .compare_exchange(
                w,
                (w & !1).wrapping_add(2),
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .is_ok()
    {
        futex::wake_all(word);
    }
}

/// Wakes every waiter on `word` unconditionally (close, repair).
pub(crate) fn wake_all(word: &AtomicU32) {
    word.fetch_add(2, Ordering::SeqCst);
    futex::wake_all(word);
}

/// The process-local side of waiting on one queue: its adaptive spin budget.
pub(crate) struct Waiter {
    /// Current spin budget in ns (adaptive); 0 on a single CPU.
    spin_ns: AtomicU32,
}

impl Waiter {
    pub(crate) fn new() -> Waiter {
        Waiter {
            spin_ns: AtomicU32::new(if single_cpu() { 0 } else { MAX_SPIN_NS }),
        }
    }

    /// Spins, then parks on `word`, until `ready()` holds (or spuriously:
    /// callers re-try their operation). `housekeeping` runs after each park
    /// slice that timed out.
    pub(crate) fn wait_for(
        &self,
        word: &AtomicU32,
        ready: impl Fn() -> bool,
        deadline: Option<Instant>,
        housekeeping: impl Fn(),
    ) -> Result<(), Stop> {
        if ready() {
            return Ok(());
        }
        let budget = self.spin_ns.load(Ordering::Relaxed);
        if budget > 0 {
            let start = Instant::now();
            let limit = Duration::from_nanos(u64::from(budget));
            // Look less often the longer we wait (up to every 16 pauses): a
            // reader hammering the other side's line slows its writer down,
            // and a short backlog lets both sides work from their caches.
            let mut pauses = 1u32;
            let mut i = 0u32;
            loop {
                for _ in 0..pauses {
                    std::hint::spin_loop();
                }
                if ready() {
                    self.spin_ns.store(MAX_SPIN_NS, Ordering::Relaxed);
                    return Ok(());
                }
                pauses = (pauses * 2).min(16);
                i = i.wrapping_add(1);
                if i % 8 == 0 && start.elapsed() >= limit {
                    break;
                }
            }
            // The other side is slow: spin less next time.
            self.spin_ns
                .store((budget / 2).max(MIN_SPIN_NS), Ordering::Relaxed);
        }
        let slice = match deadline {
            None => PARK_SLICE,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(PARK_SLICE),
                _ => return Err(Stop::TimedOut),
            },
        };
        // Announce: a notifier that publishes after this sees the bit.
        let seen = word.fetch_or(1, Ordering::SeqCst) | 1;
        if ready() {
            return Ok(());
        }
        let woke = futex::wait(word, seen, Some(slice));
        if woke == futex::Wake::TimedOut {
            housekeeping();
            if deadline.is_some_and(|d| Instant::now() >= d) && !ready() {
                return Err(Stop::TimedOut);
            }
        }
        Ok(())
    }
}
