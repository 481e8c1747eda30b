//! `RLock`: a robust, re-entrant cross-process mutex.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lock::{raw_lock, raw_unlock};
use super::{
    check, create_region, deadline_after, magic, shm_ref, LockError, LockResult, RawLockError,
    RawLocked, Wait,
};
use crate::error::{Error, ErrorKind};
use crate::shm::ShmRegion;
use crate::sys::layout::LockCell;
use crate::sys::shm_ref::ShmRef;

/// A re-entrant cross-process lock, Python's `multiprocessing.RLock`.
///
/// The thread (of a given process) that holds it may lock it again; each
/// [`RLockGuard`] releases one level, and the lock is free when the last
/// guard is dropped. Handles are [`Clone`], inherited by forked processes and
/// serializable, like [`Lock`](super::Lock)'s; it is robust in the same way:
/// when its holder dies the next locker gets [`LockError::OwnerDied`].
///
/// # Examples
///
/// ```
/// use multiproc::sync::RLock;
///
/// let rlock = RLock::new()?;
/// let outer = rlock.lock()?;
/// let inner = rlock.lock()?; // the same thread: re-entered
/// assert_eq!(rlock.count(), 2);
/// drop(inner);
/// drop(outer);
/// assert!(!rlock.is_owned());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct RLock {
    cell: ShmRef<LockCell>,
}

impl RLock {
    /// Creates a new, unlocked re-entrant lock in its own shared memory.
    ///
    /// # Errors
    ///
    /// `Io` if shared memory cannot be created.
    pub fn new() -> crate::Result<RLock> {
        let region = create_region::<LockCell>(magic::RLOCK, 0)?;
        Ok(RLock {
            cell: shm_ref(region, 0)?,
        })
    }

    pub(crate) fn cell(&self) -> &LockCell {
        &self.cell
    }

    pub(crate) fn acquire(&self, wait: Wait) -> LockResult<RLockGuard<'_>> {
        let c = self.cell();
        match raw_lock(c, wait) {
            Ok(RawLocked::Fresh) => {
                c.count.store(1, Ordering::Release);
                Ok(RLockGuard::new(self))
            }
            Ok(RawLocked::OwnerDied) => {
                // The dead owner's depth means nothing now.
                c.count.store(1, Ordering::Release);
                Err(LockError::OwnerDied(RLockGuard::new(self)))
            }
            Err(RawLockError::AlreadyHeld) => {
                let n = c.count.load(Ordering::Relaxed);
                match n.checked_add(1) {
                    Some(n) => {
                        c.count.store(n, Ordering::Release);
                        Ok(RLockGuard::new(self))
                    }
                    None => Err(LockError::Failed(Error::new(
                        ErrorKind::InvalidArgument,
                        "RLock re-entered too many times",
                    ))),
                }
            }
            Err(e) => Err(e.into_lock_error("RLock")),
        }
    }

    /// Acquires the lock (again, if this thread holds it), waiting as long as
    /// it takes.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (you hold it, at depth 1) if its previous
    /// holder died holding it; [`LockError::Failed`] if a system call fails.
    pub fn lock(&self) -> LockResult<RLockGuard<'_>> {
        self.acquire(Wait::Until(None))
    }

    /// Acquires the lock if it is free or already held by this thread.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] if another thread holds it; otherwise as
    /// [`lock`](RLock::lock).
    pub fn try_lock(&self) -> LockResult<RLockGuard<'_>> {
        self.acquire(Wait::Try)
    }

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] if the time ran out; otherwise as [`lock`](RLock::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<RLockGuard<'_>> {
        self.acquire(Wait::Until(deadline_after(timeout)))
    }

    /// True if the calling thread holds the lock (Python's `_is_owned()`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::sync::RLock;
    ///
    /// let rlock = RLock::new()?;
    /// let guard = rlock.lock()?;
    /// assert!(rlock.is_owned());
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(!rlock.is_owned())); // held, by another thread
    /// });
    /// drop(guard);
    /// assert!(!rlock.is_owned());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_owned(&self) -> bool {
        self.cell().mutex.held_by_caller()
    }

    /// True if some thread of some process holds the lock (a snapshot,
    /// readable from anywhere: Python's `RLock.locked()`).
    ///
    /// A holder that died no longer counts: its lock is free for the next
    /// locker (who is told [`LockError::OwnerDied`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::sync::RLock;
    ///
    /// let rlock = RLock::new()?;
    /// assert!(!rlock.is_locked());
    /// let guard = rlock.lock()?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert!(rlock.is_locked()));
    /// });
    /// drop(guard);
    /// assert!(!rlock.is_locked());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn is_locked(&self) -> bool {
        self.cell().mutex.owner().is_some()
    }

    /// The holder's re-entrance depth, whoever holds the lock (this or
    /// another thread or process), or 0 if it is free (a snapshot, readable
    /// from anywhere: the count in Python's `RLock` repr).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::sync::RLock;
    ///
    /// let rlock = RLock::new()?;
    /// let outer = rlock.lock()?;
    /// let inner = rlock.lock()?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| assert_eq!(rlock.count(), 2)); // seen from another thread
    /// });
    /// drop((inner, outer));
    /// assert_eq!(rlock.count(), 0);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Caveats
    ///
    /// Read from another thread or process while the holder locks or
    /// unlocks, it may lag by one level (the depth is written just after the
    /// mutex is taken and just before it is released).
    pub fn count(&self) -> u32 {
        if self.is_locked() {
            self.cell().count.load(Ordering::Acquire)
        } else {
            0
        }
    }

    /// The thread id (as `gettid` gives it) of the holder, from any thread
    /// or process; `None` while the lock is free.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::sync::RLock;
    ///
    /// let rlock = RLock::new()?;
    /// assert_eq!(rlock.owner_tid(), None);
    /// let _guard = rlock.lock()?;
    /// assert!(rlock.owner_tid().is_some());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn owner_tid(&self) -> Option<i32> {
        self.cell().mutex.owner().map(|t| t as i32)
    }

    /// Releases one level of a lock whose guard was forgotten
    /// ([`RLockGuard::leak`]), Python's `RLock.release()`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if the calling thread does not hold the lock (Python's
    /// "cannot release un-acquired lock").
    pub fn release(&self) -> crate::Result<()> {
        if !self.is_owned() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "cannot release an RLock this thread does not hold",
            ));
        }
        self.release_level()
            .map_err(|e| Error::io("cannot release the RLock", e))
    }

    /// Drops one level; unlocks at the last. The caller holds the lock.
    fn release_level(&self) -> std::io::Result<()> {
        let c = self.cell();
        let n = c.count.load(Ordering::Relaxed);
        if n > 1 {
            c.count.store(n - 1, Ordering::Release);
            Ok(())
        } else {
            c.count.store(0, Ordering::Release);
            raw_unlock(c)
        }
    }

    /// Releases every level (for a condition wait); returns the depth.
    pub(crate) fn release_all(&self) -> std::io::Result<u32> {
        let c = self.cell();
        let n = c.count.swap(0, Ordering::Relaxed);
        raw_unlock(c)?;
        Ok(n)
    }

    /// Re-acquires after [`release_all`](RLock::release_all), restoring `depth`.
    pub(crate) fn acquire_restore(&self, depth: u32) -> Result<RawLocked, RawLockError> {
        let c = self.cell();
        let r = raw_lock(c, Wait::Until(None))?;
        c.count.store(depth.max(1), Ordering::Release);
        Ok(r)
    }

    /// True if both handles refer to the same lock.
    pub fn same_lock(&self, other: &RLock) -> bool {
        self.cell.region().same_region(other.cell.region())
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("region", &self.cell.region().name())
            .field("locked", &self.is_locked())
            .field("count", &self.count())
            .finish()
    }
}

impl Serialize for RLock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.cell.region().serialize(s)
    }
}

impl<'de> Deserialize<'de> for RLock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RLock, D::Error> {
        let region = ShmRegion::deserialize(d)?;
        check::<LockCell>(&region, 0, magic::RLOCK).map_err(serde::de::Error::custom)?;
        Ok(RLock {
            cell: shm_ref(region, 0).map_err(serde::de::Error::custom)?,
        })
    }
}

/// One level of an [`RLock`] held by this thread; dropping it releases that level.
#[must_use = "the lock is released when the guard is dropped"]
pub struct RLockGuard<'a> {
    rlock: &'a RLock,
    _not_send: PhantomData<*const ()>,
}

impl<'a> RLockGuard<'a> {
    fn new(rlock: &'a RLock) -> RLockGuard<'a> {
        RLockGuard {
            rlock,
            _not_send: PhantomData,
        }
    }

    /// The lock this guard holds.
    pub fn rlock(&self) -> &'a RLock {
        self.rlock
    }

    /// Keeps this level held without a guard; release it later with
    /// [`RLock::release`] from this thread (Python's manual `acquire`/`release`).
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.rlock.release_level();
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard")
            .field("rlock", &self.rlock)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reentrance_counts_and_release_checks_owner() {
        let r = RLock::new().unwrap();
        assert_eq!(
            r.release().unwrap_err().kind(),
            ErrorKind::InvalidArgument,
            "releasing an un-acquired RLock is an error"
        );
        let a = r.lock().unwrap();
        let b = r.try_lock().unwrap();
        assert_eq!(r.count(), 2);
        let r2 = r.clone();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(!r2.is_owned());
                assert!(matches!(r2.try_lock(), Err(LockError::WouldBlock)));
                assert_eq!(r2.release().unwrap_err().kind(), ErrorKind::InvalidArgument);
            });
        });
        drop(b);
        assert_eq!(r.count(), 1);
        r.lock().unwrap().leak();
        assert_eq!(r.count(), 2);
        r.release().unwrap();
        drop(a);
        assert!(!r.is_owned());
        assert_eq!(r.count(), 0);
    }

    #[test]
    fn dead_owner_thread_gives_owner_died() {
        let r = RLock::new().unwrap();
        let r2 = r.clone();
        std::thread::spawn(move || {
            r2.lock().unwrap().leak();
            r2.lock().unwrap().leak();
        })
        .join()
        .unwrap();
        let g = r.lock().unwrap_err().into_guard().unwrap();
        assert_eq!(r.count(), 1);
        drop(g);
        assert!(r.lock().is_ok());
    }
}
