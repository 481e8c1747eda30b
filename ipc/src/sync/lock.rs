//! `Lock`: a robust, non-re-entrant cross-process mutex, and the raw
//! operations on a [`LockCell`] that `RLock`, `Condition` and values share.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    check, create_region, deadline_after, magic, shm_ref, spin_budget, LockError, LockResult,
    RawLockError, RawLocked, Wait,
};
use crate::shm::ShmRegion;
use crate::sys::layout::LockCell;
use crate::sys::mutex::Locked;
use crate::sys::shm_ref::ShmRef;

/// Locks the robust mutex of `c`: try, spin while it looks held, then block.
/// A dead owner's mutex is made consistent at once, so it stays usable
/// whatever the caller does next.
pub(crate) fn raw_lock(c: &LockCell, wait: Wait) -> Result<RawLocked, RawLockError> {
    let first = try_once(c);
    let deadline = match (first, wait) {
        (Err(RawLockError::WouldBlock), Wait::Until(deadline)) => deadline,
        (r, _) => return r,
    };
    if let Some(r) = spin_for(c, deadline) {
        return r;
    }
    let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    match c.mutex.lock(timeout) {
        Ok(l) => finish(c, l),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(RawLockError::Timeout),
        Err(e) => Err(os_error(e)),
    }
}

/// Past this much spinning a waiter yields between looks: a holder that
/// waits for a CPU (more processes than CPUs want the lock) runs first.
const YIELD_AFTER: Duration = Duration::from_micros(10);

/// The longest pause between two looks at a held lock, in spin-loop hints.
const MAX_PAUSES: u32 = 64;

/// Spins for the lock (see [`spin_budget`]) with exponential backoff between
/// looks: a waiter that reads the lock's line at every turn, and grabs it at
/// every release, turns two busy processes into a hand-off per operation,
/// each a cache-line transfer; backing off lets a holder run several
/// critical sections in a row from its own cache. Past [`YIELD_AFTER`] it
/// yields between looks (`manager_decrement_seed`, a hundred processes
/// taking one lock on two CPUs: 5–9% faster; two processes that hold the
/// lock briefly wait less than that). `None` if the spin ran out.
fn spin_for(c: &LockCell, deadline: Option<Instant>) -> Option<Result<RawLocked, RawLockError>> {
    let budget = spin_budget();
    if budget.is_zero() {
        return None;
    }
    let start = Instant::now();
    let mut end = start + budget;
    if let Some(d) = deadline {
        end = end.min(d);
    }
    let mut pauses = 1u32;
    loop {
        if c.held.load(Ordering::Relaxed) == 0 {
            match try_once(c) {
                Err(RawLockError::WouldBlock) => {}
                r => return Some(r),
            }
        }
        for _ in 0..pauses {
            std::hint::spin_loop();
        }
        pauses = (pauses * 2).min(MAX_PAUSES);
        let now = Instant::now();
        if now >= end {
            return None;
        }
        if now - start >= YIELD_AFTER {
            std::thread::yield_now();
        }
    }
}

fn try_once(c: &LockCell) -> Result<RawLocked, RawLockError> {
    match c.mutex.try_lock() {
        Ok(Some(l)) => finish(c, l),
        Ok(None) => Err(RawLockError::WouldBlock),
        Err(e) => Err(os_error(e)),
    }
}

fn os_error(e: io::Error) -> RawLockError {
    if e.raw_os_error() == Some(libc::EDEADLK) {
        RawLockError::AlreadyHeld
    } else {
        RawLockError::Os(e)
    }
}

fn finish(c: &LockCell, l: Locked) -> Result<RawLocked, RawLockError> {
    c.held.store(1, Ordering::Relaxed);
    match l {
        Locked::Ok => Ok(RawLocked::Fresh),
        Locked::OwnerDied => match c.mutex.consistent() {
            Ok(()) => Ok(RawLocked::OwnerDied),
            Err(e) => {
                c.held.store(0, Ordering::Relaxed);
                let _ = c.mutex.unlock();
                Err(RawLockError::Os(e))
            }
        },
    }
}

/// Unlocks the robust mutex of `c` (held by the calling thread).
pub(crate) fn raw_unlock(c: &LockCell) -> io::Result<()> {
    c.held.store(0, Ordering::Relaxed);
    c.mutex.unlock()
}

/// A cross-process lock, Python's `multiprocessing.Lock`.
///
/// [`lock`](Lock::lock) returns a [`LockGuard`]; the lock is released when the
/// guard is dropped. Handles are cheap to [`Clone`] and all refer to the same
/// lock; processes forked after creation inherit it, and a handle passed to
/// another process (it serializes to the name of its shared memory)
/// re-attaches there.
///
/// The lock is robust: if a process dies holding it, the next locker gets
/// [`LockError::OwnerDied`] with the guard instead of waiting forever.
///
/// # Examples
///
/// ```
/// use multiproc::sync::Lock;
/// use std::time::Duration;
///
/// let lock = Lock::new()?;
/// let guard = lock.lock()?;
/// assert!(lock.try_lock().is_err()); // held (by this thread: not re-entrant)
/// drop(guard);
/// let _again = lock.lock_timeout(Duration::from_secs(1))?;
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Caveats
///
/// Unlike Python's `Lock`, it is owned by the thread that locked it: the
/// guard is not `Send`, and only its thread can release it. Locking it again
/// from the thread that holds it is an `InvalidArgument` error, not a
/// deadlock. Fork while holding it and the child does not hold it.
#[derive(Clone)]
pub struct Lock {
    cell: ShmRef<LockCell>,
    offset: usize,
}

impl Lock {
    /// Creates a new, unlocked lock in its own shared memory.
    ///
    /// # Errors
    ///
    /// `Io` if shared memory cannot be created.
    pub fn new() -> crate::Result<Lock> {
        let region = create_region::<LockCell>(magic::LOCK, 0)?;
        Ok(Lock {
            cell: shm_ref(region, 0)?,
            offset: 0,
        })
    }

    /// A handle to the lock stamped at `offset` of `region`.
    pub(crate) fn at(region: ShmRegion, offset: usize) -> crate::Result<Lock> {
        check::<LockCell>(&region, offset, magic::LOCK)?;
        Ok(Lock {
            cell: shm_ref(region, offset)?,
            offset,
        })
    }

    pub(crate) fn cell(&self) -> &LockCell {
        &self.cell
    }

    pub(crate) fn acquire(&self, wait: Wait) -> LockResult<LockGuard<'_>> {
        match raw_lock(self.cell(), wait) {
            Ok(RawLocked::Fresh) => Ok(LockGuard::new(self)),
            Ok(RawLocked::OwnerDied) => Err(LockError::OwnerDied(LockGuard::new(self))),
            Err(e) => Err(e.into_lock_error("Lock")),
        }
    }

    /// Acquires the lock, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (you hold the lock) if its previous holder
    /// died holding it; [`LockError::Failed`] with `InvalidArgument` if this
    /// thread already holds it, or `Io` if the system call fails.
    pub fn lock(&self) -> LockResult<LockGuard<'_>> {
        self.acquire(Wait::Until(None))
    }

    /// Acquires the lock if it is free now (Python's `acquire(block=False)`).
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] if it is held; otherwise as [`lock`](Lock::lock).
    pub fn try_lock(&self) -> LockResult<LockGuard<'_>> {
        self.acquire(Wait::Try)
    }

    /// Acquires the lock, waiting at most `timeout` (Python's `acquire(timeout=)`).
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`] if the time ran out; otherwise as [`lock`](Lock::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<LockGuard<'_>> {
        self.acquire(Wait::Until(deadline_after(timeout)))
    }

    /// True if some thread of some process holds the lock (a snapshot: it
    /// may change at once). A holder that died no longer counts.
    pub fn is_locked(&self) -> bool {
        self.cell().mutex.owner().is_some()
    }

    /// True if both handles refer to the same lock.
    pub fn same_lock(&self, other: &Lock) -> bool {
        self.offset == other.offset && self.cell.region().same_region(other.cell.region())
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("region", &self.cell.region().name())
            .field("offset", &self.offset)
            .field("locked", &self.is_locked())
            .finish()
    }
}

impl Serialize for Lock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.cell.region(), self.offset as u64).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Lock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Lock, D::Error> {
        let (region, offset) = <(ShmRegion, u64)>::deserialize(d)?;
        let offset = usize::try_from(offset).map_err(serde::de::Error::custom)?;
        Lock::at(region, offset).map_err(serde::de::Error::custom)
    }
}

/// Proof that this thread holds a [`Lock`]; dropping it releases the lock.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    /// Not `Send`: the mutex belongs to the thread that locked it.
    _not_send: PhantomData<*const ()>,
}

impl<'a> LockGuard<'a> {
    fn new(lock: &'a Lock) -> LockGuard<'a> {
        LockGuard {
            lock,
            _not_send: PhantomData,
        }
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> &'a Lock {
        self.lock
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Cannot fail: this thread holds it (the guard is not Send).
        let _ = raw_unlock(self.lock.cell());
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", &self.lock)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn lock_try_timeout_and_reentry() {
        let lock = Lock::new().unwrap();
        let g = lock.lock().unwrap();
        assert!(lock.is_locked());
        let e = lock.lock().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        drop(g);
        assert!(!lock.is_locked());
        let l2 = lock.clone();
        let g = lock.lock().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(matches!(l2.try_lock(), Err(LockError::WouldBlock)));
                let t = Instant::now();
                let r = l2.lock_timeout(Duration::from_millis(50));
                assert!(matches!(r, Err(LockError::Timeout)));
                assert!(t.elapsed() >= Duration::from_millis(30));
            });
        });
        drop(g);
    }

    #[test]
    fn serializes_and_reattaches() {
        let lock = Lock::new().unwrap();
        let bytes = crate::codec::encode(&lock).unwrap();
        let again: Lock = crate::codec::decode(&bytes).unwrap();
        assert!(again.same_lock(&lock));
        let _g = again.lock().unwrap();
        assert!(lock.is_locked());
    }
}
