//! `Semaphore` and `BoundedSemaphore`: counting semaphores across processes.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{cell, create_region, deadline_after, magic, park, unpark, Parked};
use crate::error::{Error, ErrorKind};
use crate::shm::ShmRegion;
use crate::sys::layout::SemaphoreCell;

/// The largest value a semaphore may hold (POSIX `SEM_VALUE_MAX`).
pub const SEM_VALUE_MAX: u32 = i32::MAX as u32;

/// A cross-process counting semaphore, Python's `multiprocessing.Semaphore`.
///
/// [`acquire`](Semaphore::acquire) takes one unit, waiting while the value is
/// 0, and returns a [`SemaphoreGuard`] that gives it back when dropped (or
/// [`forget`](SemaphoreGuard::forget) it and [`release`](Semaphore::release)
/// later, from any process, as in Python). Handles are [`Clone`], inherited by
/// forked processes and serializable.
///
/// # Examples
///
/// ```
/// use multiproc::sync::Semaphore;
/// use std::time::Duration;
///
/// let sem = Semaphore::new(2)?;
/// let a = sem.acquire();
/// let b = sem.try_acquire().expect("one unit left");
/// assert_eq!(sem.get_value(), 0);
/// assert!(sem.acquire_timeout(Duration::from_millis(5)).is_none());
/// drop((a, b));
/// assert_eq!(sem.get_value(), 2);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Caveats
///
/// A semaphore does not know who holds its units: if a process dies holding
/// one, it is not given back. An untimed [`acquire`](Semaphore::acquire) then
/// waits until someone releases, as in Python; the timed forms never wait
/// longer than their timeout.
#[derive(Clone)]
pub struct Semaphore {
    region: ShmRegion,
}

impl Semaphore {
    /// Creates a semaphore with initial `value`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `value` exceeds [`SEM_VALUE_MAX`]; `Io` if shared
    /// memory cannot be created.
    pub fn new(value: u32) -> crate::Result<Semaphore> {
        Semaphore::create(value, SEM_VALUE_MAX)
    }

    fn create(value: u32, max: u32) -> crate::Result<Semaphore> {
        if value > SEM_VALUE_MAX {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("semaphore value {value} exceeds the maximum {SEM_VALUE_MAX}"),
            ));
        }
        let region = create_region::<SemaphoreCell>(magic::SEMAPHORE, 0)?;
        let sem = Semaphore { region };
        let c = sem.cell();
        c.max.store(max, Ordering::Relaxed);
        c.value.store(value, Ordering::Release);
        Ok(sem)
    }

    fn cell(&self) -> &SemaphoreCell {
        cell(&self.region, 0)
    }

    fn take(&self) -> bool {
        self.cell()
            .value
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1))
            .is_ok()
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> bool {
        let c = self.cell();
        loop {
            if self.take() {
                return true;
            }
            if park(&c.value, 0, &c.sleepers, deadline) == Parked::TimedOut {
                return self.take();
            }
        }
    }

    /// Takes one unit, waiting as long as it takes.
    pub fn acquire(&self) -> SemaphoreGuard<'_> {
        self.acquire_until(None);
        SemaphoreGuard { sem: self }
    }

    /// Takes one unit if one is available now.
    pub fn try_acquire(&self) -> Option<SemaphoreGuard<'_>> {
        self.take().then(|| SemaphoreGuard { sem: self })
    }

    /// Takes one unit, waiting at most `timeout`; `None` if the time ran out.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_>> {
        self.acquire_until(deadline_after(timeout))
            .then(|| SemaphoreGuard { sem: self })
    }

    /// Gives one unit back (wakes one waiter).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if the value would exceed the bound (a
    /// [`BoundedSemaphore`]'s initial value, else [`SEM_VALUE_MAX`]): Python's
    /// `ValueError: semaphore or lock released too many times`.
    pub fn release(&self) -> crate::Result<()> {
        let c = self.cell();
        let max = c.max.load(Ordering::Relaxed);
        let r = c
            .value
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                if v < max {
                    Some(v + 1)
                } else {
                    None
                }
            });
        if r.is_err() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "semaphore or lock released too many times",
            ));
        }
        unpark(&c.value, &c.sleepers, 1);
        Ok(())
    }

    /// The current value (a snapshot; Python's `get_value`).
    pub fn get_value(&self) -> u32 {
        self.cell().value.load(Ordering::Acquire)
    }

    /// True if both handles refer to the same semaphore.
    pub fn same_semaphore(&self, other: &Semaphore) -> bool {
        self.region.same_region(&other.region)
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("region", &self.region.name())
            .field("value", &self.get_value())
            .finish()
    }
}

region_serde!(Semaphore, SemaphoreCell, magic::SEMAPHORE);

/// One unit of a [`Semaphore`]; dropping it gives the unit back.
#[must_use = "the unit is released when the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
}

impl SemaphoreGuard<'_> {
    /// Keeps the unit taken; give it back later with [`Semaphore::release`]
    /// (from any thread or process).
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // Only fails if units were released by hand meanwhile (over-release of
        // a bounded semaphore): then the bound already holds.
        let _ = self.sem.release();
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard")
            .field("sem", &self.sem)
            .finish()
    }
}

/// A semaphore whose value may never exceed its initial value, Python's
/// `multiprocessing.BoundedSemaphore`.
///
/// # Examples
///
/// ```
/// use multiproc::{sync::BoundedSemaphore, ErrorKind};
///
/// let sem = BoundedSemaphore::new(1)?;
/// sem.acquire().forget();
/// sem.release()?;
/// assert_eq!(sem.release().unwrap_err().kind(), ErrorKind::InvalidArgument);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BoundedSemaphore {
    sem: Semaphore,
}

impl BoundedSemaphore {
    /// Creates a bounded semaphore with initial (and maximum) `value`.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::new`].
    pub fn new(value: u32) -> crate::Result<BoundedSemaphore> {
        Ok(BoundedSemaphore {
            sem: Semaphore::create(value, value)?,
        })
    }

    /// Takes one unit, waiting as long as it takes.
    pub fn acquire(&self) -> SemaphoreGuard<'_> {
        self.sem.acquire()
    }

    /// Takes one unit if one is available now.
    pub fn try_acquire(&self) -> Option<SemaphoreGuard<'_>> {
        self.sem.try_acquire()
    }

    /// Takes one unit, waiting at most `timeout`; `None` if the time ran out.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_>> {
        self.sem.acquire_timeout(timeout)
    }

    /// Gives one unit back.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if the value is already at its bound (Python's
    /// `ValueError`).
    pub fn release(&self) -> crate::Result<()> {
        self.sem.release()
    }

    /// The current value.
    pub fn get_value(&self) -> u32 {
        self.sem.get_value()
    }

    /// The bound (the initial value).
    pub fn max_value(&self) -> u32 {
        self.sem.cell().max.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiter_is_woken_by_release_from_another_thread() {
        let sem = Semaphore::new(0).unwrap();
        std::thread::scope(|s| {
            let h = s.spawn(|| sem.acquire().forget());
            std::thread::sleep(Duration::from_millis(20));
            sem.release().unwrap();
            h.join().unwrap();
        });
        assert_eq!(sem.get_value(), 0);
        // Failed attempts leave the value alone.
        assert!(sem.try_acquire().is_none());
        assert!(sem.acquire_timeout(Duration::from_millis(1)).is_none());
        assert_eq!(sem.get_value(), 0);
        assert!(Semaphore::new(SEM_VALUE_MAX + 1).is_err());
    }
}
