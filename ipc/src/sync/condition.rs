//! `Condition`: a cross-process condition variable over a `Lock` or `RLock`.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lock::{raw_lock, raw_unlock};
use super::rlock::RLockGuard;
use super::{
    cell, check, create_region, deadline_after, magic, park, unpark, Lock, LockError, LockGuard,
    LockResult, Parked, RLock, RawLockError, RawLocked, Wait,
};
use crate::error::{Error, ErrorKind};
use crate::shm::ShmRegion;
use crate::sys::layout::ConditionCell;

/// The lock under a [`Condition`].
#[derive(Clone, Debug, Serialize, Deserialize)]
enum CondLock {
    Lock(Lock),
    RLock(RLock),
}

/// A cross-process condition variable, Python's `multiprocessing.Condition`.
///
/// A condition owns (a handle to) a [`Lock`] or an [`RLock`] (a new `RLock`
/// by default, as in Python). Lock it with [`lock`](Condition::lock); while
/// holding the [`ConditionGuard`], [`wait`](Condition::wait) releases the
/// lock, sleeps until [`notify`](Condition::notify)d, and re-acquires it.
///
/// Handles are [`Clone`], inherited by forked processes and serializable.
///
/// # Examples
///
/// ```
/// use multiproc::sync::Condition;
/// use std::time::Duration;
///
/// let cond = Condition::new()?;
/// let guard = cond.lock()?;
/// // Nobody will notify: the wait times out, and we hold the lock again.
/// let (guard, notified) = cond.wait_timeout(guard, Duration::from_millis(10))?;
/// assert!(!notified);
/// cond.notify_all(&guard)?;
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// Waiters are woken in the order they started waiting: `notify(n)` wakes
/// the `n` longest-waiting, and [`notify_all`](Condition::notify_all) every
/// process and thread waiting at the time of the call. A waiter that starts
/// waiting after a notify never takes a wake-up meant for an earlier one,
/// even if it waits again at once after being woken.
///
/// # Caveats
///
/// After a timed-out wait, a `notify(n)` may wake a few more than `n`
/// waiters (never fewer), which they see as a notification; and a process
/// that dies while waiting keeps its place in line, so a later `notify` may
/// spend a wake-up on it. Loop on the predicate, or use
/// [`wait_for`](Condition::wait_for).
#[derive(Clone)]
pub struct Condition {
    lock: CondLock,
    region: ShmRegion,
}

impl Condition {
    /// Creates a condition over a new [`RLock`] (Python's default).
    ///
    /// # Errors
    ///
    /// `Io` if shared memory cannot be created.
    pub fn new() -> crate::Result<Condition> {
        Condition::build(CondLock::RLock(RLock::new()?))
    }

    /// Creates a condition over (a handle to) an existing [`Lock`].
    ///
    /// # Errors
    ///
    /// `Io` if shared memory cannot be created.
    pub fn with_lock(lock: Lock) -> crate::Result<Condition> {
        Condition::build(CondLock::Lock(lock))
    }

    /// Creates a condition over (a handle to) an existing [`RLock`].
    ///
    /// # Errors
    ///
    /// `Io` if shared memory cannot be created.
    pub fn with_rlock(rlock: RLock) -> crate::Result<Condition> {
        Condition::build(CondLock::RLock(rlock))
    }

    fn build(lock: CondLock) -> crate::Result<Condition> {
        let region = create_region::<ConditionCell>(magic::CONDITION, 0)?;
        Ok(Condition { lock, region })
    }

    fn cell(&self) -> &ConditionCell {
        cell(&self.region, 0)
    }

    fn guard<'a>(&'a self, inner: Inner<'a>) -> ConditionGuard<'a> {
        ConditionGuard { cond: self, inner }
    }

    fn acquire(&self, wait: Wait) -> LockResult<ConditionGuard<'_>> {
        /// Wraps the underlying lock's guard, in the `Ok` and in the
        /// `OwnerDied` result alike.
        fn wrap<G, H>(r: LockResult<G>, f: impl Fn(G) -> H + Copy) -> LockResult<H> {
            r.map(f).map_err(|e| e.map(f))
        }
        match &self.lock {
            CondLock::Lock(l) => wrap(l.acquire(wait), |g| self.guard(Inner::Lock(g))),
            CondLock::RLock(l) => wrap(l.acquire(wait), |g| self.guard(Inner::RLock(g))),
        }
    }

    /// Acquires the underlying lock (Python's `with cond:`).
    ///
    /// # Errors
    ///
    /// As [`Lock::lock`] / [`RLock::lock`]; in particular
    /// [`LockError::OwnerDied`] with the guard if the holder died.
    pub fn lock(&self) -> LockResult<ConditionGuard<'_>> {
        self.acquire(Wait::Until(None))
    }

    /// Acquires the underlying lock if it is free now.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] if it is held; otherwise as [`lock`](Condition::lock).
    pub fn try_lock(&self) -> LockResult<ConditionGuard<'_>> {
        self.acquire(Wait::Try)
    }

    /// Acquires the underlying lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] if the time ran out; otherwise as [`lock`](Condition::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<ConditionGuard<'_>> {
        self.acquire(Wait::Until(deadline_after(timeout)))
    }

    fn check_guard(&self, guard: &ConditionGuard<'_>) -> crate::Result<()> {
        if guard.cond.region.same_region(&self.region) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::InvalidArgument,
                "the guard belongs to a different Condition",
            ))
        }
    }

    /// Releases the lock fully; returns the depth to restore.
    fn release_all(&self) -> std::io::Result<u32> {
        match &self.lock {
            CondLock::Lock(l) => raw_unlock(l.cell()).map(|()| 1),
            CondLock::RLock(l) => l.release_all(),
        }
    }

    fn acquire_restore(&self, depth: u32) -> Result<RawLocked, RawLockError> {
        match &self.lock {
            CondLock::Lock(l) => raw_lock(l.cell(), Wait::Until(None)),
            CondLock::RLock(l) => l.acquire_restore(depth),
        }
    }

    /// The wait itself; returns whether we were notified.
    fn wait_inner<'a>(
        &'a self,
        guard: ConditionGuard<'a>,
        deadline: Option<Instant>,
    ) -> LockResult<(ConditionGuard<'a>, bool)> {
        if let Err(e) = self.check_guard(&guard) {
            return Err(LockError::Failed(e));
        }
        let c = self.cell();
        // Our place in line, taken under the lock.
        let ticket = c.tail.fetch_add(1, Ordering::SeqCst);
        let depth = match self.release_all() {
            Ok(d) => d,
            Err(e) => {
                withdraw(c, ticket);
                return Err(LockError::Failed(Error::io(
                    "cannot release the condition's lock",
                    e,
                )));
            }
        };
        let mut notified = false;
        loop {
            let head = c.head.load(Ordering::Acquire);
            if released(head, ticket) {
                notified = true;
                break;
            }
            if park(&c.head, head, &c.sleepers, deadline) == Parked::TimedOut {
                break;
            }
        }
        let relocked = self.acquire_restore(depth);
        let owner_died = match relocked {
            Ok(RawLocked::Fresh) => false,
            Ok(RawLocked::OwnerDied) => true,
            Err(e) => {
                // We do not hold the lock: the guard must not release it.
                std::mem::forget(guard);
                return Err(e.into_lock_error("Condition's lock"));
            }
        };
        if !notified {
            // Timed out: decide under the lock. A notify that released our
            // ticket meanwhile counts (we were notified after all);
            // otherwise we leave the line.
            if released(c.head.load(Ordering::Acquire), ticket) {
                notified = true;
            } else {
                withdraw(c, ticket);
            }
        }
        if owner_died {
            Err(LockError::OwnerDied((guard, notified)))
        } else {
            Ok((guard, notified))
        }
    }

    /// Releases the lock, waits until notified, re-acquires the lock.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] with the guard if, while we waited, a process
    /// died holding the lock; `Failed(InvalidArgument)` if `guard` belongs to
    /// another condition.
    pub fn wait<'a>(&'a self, guard: ConditionGuard<'a>) -> LockResult<ConditionGuard<'a>> {
        self.wait_inner(guard, None)
            .map(|(g, _)| g)
            .map_err(|e| e.map(|(g, _)| g))
    }

    /// As [`wait`](Condition::wait), for at most `timeout`; the `bool` is
    /// false if the time ran out (Python's `wait(timeout)` result).
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait).
    pub fn wait_timeout<'a>(
        &'a self,
        guard: ConditionGuard<'a>,
        timeout: Duration,
    ) -> LockResult<(ConditionGuard<'a>, bool)> {
        self.wait_inner(guard, deadline_after(timeout))
    }

    /// Waits until `predicate()` is true (checked first, then after every
    /// wake-up), Python's `wait_for`.
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait).
    pub fn wait_for<'a>(
        &'a self,
        guard: ConditionGuard<'a>,
        mut predicate: impl FnMut() -> bool,
    ) -> LockResult<ConditionGuard<'a>> {
        let mut guard = guard;
        while !predicate() {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// As [`wait_for`](Condition::wait_for), for at most `timeout`; returns
    /// the predicate's last value (false: timed out).
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait).
    pub fn wait_for_timeout<'a>(
        &'a self,
        guard: ConditionGuard<'a>,
        timeout: Duration,
        mut predicate: impl FnMut() -> bool,
    ) -> LockResult<(ConditionGuard<'a>, bool)> {
        let deadline = deadline_after(timeout);
        let mut guard = guard;
        loop {
            if predicate() {
                return Ok((guard, true));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok((guard, false));
            }
            guard = self.wait_inner(guard, deadline)?.0;
        }
    }

    /// Wakes up to `n` waiters. The caller holds the lock (the guard proves it).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `guard` belongs to another condition (Python's
    /// "cannot notify on un-acquired lock").
    pub fn notify(&self, guard: &ConditionGuard<'_>, n: usize) -> crate::Result<()> {
        self.check_guard(guard)?;
        let c = self.cell();
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let head = c.head.load(Ordering::Acquire);
        let waiting = c.tail.load(Ordering::Acquire).wrapping_sub(head);
        let holes = c.holes.load(Ordering::Acquire);
        // At most `holes` of the next tickets belong to waiters that left,
        // so releasing `n + holes` of them wakes at least `n` live waiters
        // (or all of them); a few more may wake, as after a spurious wake-up.
        let advance = waiting.min(n.saturating_add(holes));
        if advance == 0 || n == 0 {
            return Ok(());
        }
        if advance == waiting {
            c.holes.store(0, Ordering::Release);
        }
        c.head.fetch_add(advance, Ordering::SeqCst);
        // Sleepers cannot be woken by ticket: wake them all, and those whose
        // ticket was not released sleep again.
        unpark(&c.head, &c.sleepers, u32::MAX);
        Ok(())
    }

    /// Wakes every waiter.
    ///
    /// # Errors
    ///
    /// As [`notify`](Condition::notify).
    pub fn notify_all(&self, guard: &ConditionGuard<'_>) -> crate::Result<()> {
        self.notify(guard, usize::MAX)
    }
}

/// True if `head` (the line's released end) has passed `ticket`.
fn released(head: u32, ticket: u32) -> bool {
    (head.wrapping_sub(ticket) as i32) > 0
}

/// Takes an unreleased `ticket` out of the line (the lock held): the newest
/// simply shortens it; any other leaves a hole that notifies skip.
fn withdraw(c: &ConditionCell, ticket: u32) {
    let tail = c.tail.load(Ordering::Acquire);
    if ticket.wrapping_add(1) == tail {
        c.tail.store(ticket, Ordering::SeqCst);
    } else {
        c.holes.fetch_add(1, Ordering::SeqCst);
    }
    if c.tail.load(Ordering::Acquire) == c.head.load(Ordering::Acquire) {
        c.holes.store(0, Ordering::Release);
    }
}

/// The number of waiters in line (the lock held for an exact answer).
fn waiting(c: &ConditionCell) -> u32 {
    let line = c
        .tail
        .load(Ordering::Relaxed)
        .wrapping_sub(c.head.load(Ordering::Relaxed));
    line.saturating_sub(c.holes.load(Ordering::Relaxed))
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.cell();
        f.debug_struct("Condition")
            .field("lock", &self.lock)
            .field("waiters", &waiting(c))
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    lock: CondLock,
    region: ShmRegion,
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            lock: self.lock.clone(),
            region: self.region.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Condition, D::Error> {
        let w = Wire::deserialize(d)?;
        check::<ConditionCell>(&w.region, 0, magic::CONDITION).map_err(serde::de::Error::custom)?;
        Ok(Condition {
            lock: w.lock,
            region: w.region,
        })
    }
}

/// Held for its drop, which releases the lock.
#[allow(dead_code)]
enum Inner<'a> {
    Lock(LockGuard<'a>),
    RLock(RLockGuard<'a>),
}

/// Proof that this thread holds a [`Condition`]'s lock; dropping it releases
/// the lock (one level of an `RLock`).
#[must_use = "the lock is released when the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    // Its drop releases the lock; it is not Send.
    inner: Inner<'a>,
}

impl<'a> ConditionGuard<'a> {
    /// The condition whose lock this guard holds.
    pub fn condition(&self) -> &'a Condition {
        self.cond
    }
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner {
            Inner::Lock(_) => "Lock",
            Inner::RLock(_) => "RLock",
        };
        f.debug_struct("ConditionGuard")
            .field("lock", &kind)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_wakes_threads_and_timeout_reports_false() {
        for cond in [
            Condition::new().unwrap(),
            Condition::with_lock(Lock::new().unwrap()).unwrap(),
        ] {
            let g = cond.lock().unwrap();
            let t = Instant::now();
            let (g, n) = cond.wait_timeout(g, Duration::from_millis(30)).unwrap();
            assert!(!n);
            assert!(t.elapsed() >= Duration::from_millis(18));
            drop(g);
            let flag = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|s| {
                let h = s.spawn(|| {
                    let g = cond.lock().unwrap();
                    let g = cond.wait_for(g, || flag.load(Ordering::SeqCst)).unwrap();
                    drop(g);
                });
                loop {
                    let g = cond.lock().unwrap();
                    if waiting(cond.cell()) == 1 {
                        flag.store(true, Ordering::SeqCst);
                        cond.notify(&g, 1).unwrap();
                        break;
                    }
                    drop(g);
                    std::thread::sleep(Duration::from_millis(1));
                }
                h.join().unwrap();
            });
            assert_eq!(waiting(cond.cell()), 0);
            let c = cond.cell();
            assert_eq!(c.tail.load(Ordering::SeqCst), c.head.load(Ordering::SeqCst));
        }
    }

    #[test]
    fn notify_after_timed_out_waiters_still_wakes_a_live_one() {
        let cond = Condition::new().unwrap();
        std::thread::scope(|s| {
            // The patient waiter takes the first ticket; three impatient ones
            // follow and time out, leaving holes behind it (and one at the end).
            let patient = s.spawn(|| {
                let g = cond.lock().unwrap();
                let (_g, notified) = cond.wait_timeout(g, Duration::from_secs(30)).unwrap();
                notified
            });
            while waiting(cond.cell()) < 1 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let impatient: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        let g = cond.lock().unwrap();
                        cond.wait_timeout(g, Duration::from_millis(20)).unwrap().1
                    })
                })
                .collect();
            for h in impatient {
                assert!(!h.join().unwrap());
            }
            assert_eq!(waiting(cond.cell()), 1);
            let g = cond.lock().unwrap();
            cond.notify(&g, 1).unwrap();
            drop(g);
            assert!(patient.join().unwrap());
        });
        let c = cond.cell();
        assert_eq!(c.tail.load(Ordering::SeqCst), c.head.load(Ordering::SeqCst));
        assert_eq!(c.holes.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn rlock_condition_waits_at_depth_and_restores_it() {
        let cond = Condition::new().unwrap();
        let CondLock::RLock(r) = &cond.lock else {
            unreachable!()
        };
        let g1 = cond.lock().unwrap();
        let g2 = cond.lock().unwrap();
        assert_eq!(r.count(), 2);
        let (g2, _) = cond.wait_timeout(g2, Duration::from_millis(5)).unwrap();
        assert_eq!(r.count(), 2);
        drop(g2);
        drop(g1);
        assert!(!r.is_owned());
    }
}
