//! The lock a `Value` or `Array` is built around: its own `Lock` by default,
//! or a caller's `Lock` or `RLock` (Python's `lock=` argument).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::sync::{Lock, LockError, LockGuard, LockResult, RLock, RLockGuard, Wait};

pub(super) mod sealed {
    use super::*;

    /// The sealed half of [`ValueLock`](super::ValueLock).
    pub trait SealedLock {
        /// The guard of one acquisition.
        type Guard<'a>
        where
            Self: 'a;

        /// Acquires the lock. (`Wait` is crate-private, and so is this
        /// method: the trait cannot be named outside the crate.)
        #[allow(private_interfaces)]
        fn acquire_value_lock(&self, wait: Wait) -> LockResult<Self::Guard<'_>>;

        /// Holds the lock for one read or write of a value that is not
        /// atomic on its own: `None` if it cannot be taken (held by this
        /// thread already, or a system error), and the access goes ahead
        /// unlocked.
        fn hold(&self) -> Option<Self::Guard<'_>> {
            match self.acquire_value_lock(Wait::Until(None)) {
                Ok(g) | Err(LockError::OwnerDied(g)) => Some(g),
                Err(_) => None,
            }
        }
    }

    impl SealedLock for Lock {
        type Guard<'a> = LockGuard<'a>;
        #[allow(private_interfaces)]
        fn acquire_value_lock(&self, wait: Wait) -> LockResult<LockGuard<'_>> {
            self.acquire(wait)
        }
    }

    impl SealedLock for RLock {
        type Guard<'a> = RLockGuard<'a>;
        #[allow(private_interfaces)]
        fn acquire_value_lock(&self, wait: Wait) -> LockResult<RLockGuard<'_>> {
            self.acquire(wait)
        }
    }
}

/// A lock that a [`Value`](super::Value) or an [`Array`](super::Array) can
/// be built around: [`Lock`] (the default, and what `new` makes) or
/// [`RLock`], both handles to the caller's lock when given to `using_lock`,
/// as with Python's `Value(typecode, init, lock=my_lock)`.
///
/// Sealed: implemented for [`Lock`] and [`RLock`] only.
///
/// # Examples
///
/// ```
/// use multiproc::sync::RLock;
/// use multiproc::value::{Array, Value};
///
/// // One lock guards two shared objects, as in Python.
/// let lock = RLock::new()?;
/// let count = Value::using_lock(0u32, lock.clone())?;
/// let items = Array::<u64, _>::using_lock(4, lock.clone())?; // `_`: the lock type
/// {
///     let mut n = count.lock()?; // holds `lock`
///     let slots = items.lock()?; // re-entered: the same RLock
///     slots.set(*n as usize, 7)?;
///     *n += 1;
/// }
/// assert_eq!((count.get(), items.get(0)?), (1, 7));
/// assert!(count.get_lock().same_lock(&lock));
/// # Ok::<(), multiproc::Error>(())
/// ```
pub trait ValueLock:
    Clone + fmt::Debug + Serialize + DeserializeOwned + 'static + sealed::SealedLock
{
}

impl ValueLock for Lock {}
impl ValueLock for RLock {}
