//! `RawValue` and `Value`: one element in shared memory.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Plain, PlainInt, Store, ValueLock};
use crate::error::Result;
use crate::sync::{Lock, LockResult, Wait};

/// One `T` in shared memory without a lock: Python's `RawValue` (or `Value`
/// with `lock=False`).
///
/// Reads and writes are atomic; read-modify-write sequences by several
/// processes lose updates unless they use the atomic integer operations.
///
/// # Examples
///
/// ```
/// use multiproc::value::RawValue;
///
/// let v = RawValue::new(1.5f32)?;
/// v.set(v.get() * 2.0);
/// assert_eq!(v.get(), 3.0);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize)]
pub struct RawValue<T> {
    store: Store<T>,
}

impl<T: Plain> RawValue<T> {
    /// Creates a shared value holding `init`.
    ///
    /// # Errors
    ///
    /// `Io` if shared memory cannot be created.
    pub fn new(init: T) -> Result<RawValue<T>> {
        let v = RawValue {
            store: Store::create(1, false)?,
        };
        v.set(init);
        Ok(v)
    }

    /// The value (Python's `v.value`).
    pub fn get(&self) -> T {
        T::load(self.store.slot(0))
    }

    /// Replaces the value (Python's `v.value = x`).
    pub fn set(&self, v: T) {
        T::store(self.store.slot(0), v)
    }
}

impl<T: PlainInt> RawValue<T> {
    /// Adds `v` atomically (wrapping); returns the previous value.
    pub fn fetch_add(&self, v: T) -> T {
        T::fetch_add(self.store.slot(0), v)
    }

    /// Subtracts `v` atomically (wrapping); returns the previous value.
    pub fn fetch_sub(&self, v: T) -> T {
        T::fetch_sub(self.store.slot(0), v)
    }

    /// Stores `v` atomically; returns the previous value.
    pub fn swap(&self, v: T) -> T {
        T::swap(self.store.slot(0), v)
    }

    /// Stores `new` if the value is `current`, atomically.
    ///
    /// # Errors
    ///
    /// `Err(actual)` if the value was not `current`.
    pub fn compare_exchange(&self, current: T, new: T) -> std::result::Result<T, T> {
        T::compare_exchange(self.store.slot(0), current, new)
    }
}

impl<'de, T: Plain> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<RawValue<T>, D::Error> {
        let store = Store::<T>::deserialize(d)?
            .scalar()
            .map_err(serde::de::Error::custom)?;
        Ok(RawValue { store })
    }
}

impl<T: Plain> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

/// One `T` in shared memory with a lock: Python's `multiprocessing.Value`.
///
/// The lock is the value's own [`Lock`] ([`new`](Value::new)), or a
/// caller's [`Lock`] or [`RLock`](crate::sync::RLock) shared with other
/// objects ([`using_lock`](Value::using_lock), Python's `lock=` argument);
/// `L` is its type.
///
/// [`lock`](Value::lock) returns a [`ValueGuard`] that dereferences to the
/// value, for read-modify-write sequences that other processes must not
/// interleave with. Python's `with v.get_lock(): v.value += 1` is
/// `*v.lock()? += 1`.
///
/// # Examples
///
/// ```
/// use multiproc::value::Value;
///
/// let v = Value::new(10u32)?;
/// {
///     let mut guard = v.lock()?;
///     *guard = *guard * 2 + 1;
/// }
/// assert_eq!(v.get(), 21);
/// assert_eq!(v.with_lock(|x| { *x -= 1; *x })?, 20);
///
/// // A handle crosses processes as the name of its shared memory.
/// let bytes = multiproc::codec::encode(&v)?;
/// let again: Value<u32> = multiproc::codec::decode(&bytes)?;
/// assert_eq!(again.get(), 20);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Caveats
///
/// For the primitive types, [`get`](Value::get) and [`set`](Value::set) do
/// not take the lock (each is atomic on its own); like Python's `v.value`,
/// `v.set(v.get() + 1)` without the lock loses updates when processes race.
/// For a [`Structure`](super::Structure), which no single instruction reads
/// whole, they take the lock, as Python's synchronized `value` does.
#[derive(Clone)]
pub struct Value<T, L = Lock> {
    raw: RawValue<T>,
    lock: L,
}

impl<T: Plain> Value<T> {
    /// Creates a shared value holding `init`, with its own lock.
    ///
    /// # Errors
    ///
    /// `Io` if shared memory cannot be created.
    pub fn new(init: T) -> Result<Value<T>> {
        let store = Store::create(1, true)?;
        let lock = store.lock()?;
        let v = Value {
            raw: RawValue { store },
            lock,
        };
        v.raw.set(init);
        Ok(v)
    }

    /// Creates a shared value without a lock (Python's `Value(..., lock=False)`).
    ///
    /// # Errors
    ///
    /// `Io` if shared memory cannot be created.
    pub fn raw(init: T) -> Result<RawValue<T>> {
        RawValue::new(init)
    }
}

impl<T: Plain, L: ValueLock> Value<T, L> {
    /// Creates a shared value holding `init`, guarded by `lock`, a handle to
    /// the caller's [`Lock`] or [`RLock`](crate::sync::RLock) (Python's
    /// `Value(typecode, init, lock=lock)`), which may guard other objects
    /// too.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::sync::RLock;
    /// use multiproc::value::Value;
    ///
    /// let rlock = RLock::new()?;
    /// let v = Value::using_lock(5i64, rlock.clone())?;
    /// let outer = rlock.lock()?;
    /// *v.lock()? += 1; // re-enters the RLock this thread holds
    /// drop(outer);
    /// assert_eq!(v.get(), 6);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Io` if shared memory cannot be created.
    pub fn using_lock(init: T, lock: L) -> Result<Value<T, L>> {
        let v = Value {
            raw: RawValue {
                store: Store::create(1, false)?,
            },
            lock,
        };
        v.raw.set(init);
        Ok(v)
    }

    /// The value (Python's `v.value`); see the caveats on [`Value`] about
    /// the lock.
    pub fn get(&self) -> T {
        let _held = T::TEARS.then(|| self.lock.hold());
        self.raw.get()
    }

    /// Replaces the value (Python's `v.value = x`); see the caveats on
    /// [`Value`] about the lock.
    pub fn set(&self, v: T) {
        let _held = T::TEARS.then(|| self.lock.hold());
        self.raw.set(v)
    }

    /// The value's lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &L {
        &self.lock
    }

    /// The value without its lock (Python's `get_obj()`).
    pub fn get_obj(&self) -> &RawValue<T> {
        &self.raw
    }

    fn wrap<'a>(&'a self, r: LockResult<L::Guard<'a>>) -> LockResult<ValueGuard<'a, T, L>> {
        // The lock is held: read without taking it again.
        let make = |g| ValueGuard {
            local: self.raw.get(),
            dirty: false,
            value: self,
            _lock: g,
        };
        match r {
            Ok(g) => Ok(make(g)),
            Err(e) => Err(e.map(make)),
        }
    }

    /// Locks the value; the guard dereferences to it.
    ///
    /// # Errors
    ///
    /// As [`Lock::lock`]: [`LockError::OwnerDied`](crate::sync::LockError::OwnerDied) with the guard if a process
    /// died holding the lock (the value is whatever it last stored).
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T, L>> {
        self.wrap(self.lock.acquire_value_lock(Wait::Until(None)))
    }

    /// Locks the value if the lock is free now.
    ///
    /// # Errors
    ///
    /// As [`Lock::try_lock`].
    pub fn try_lock(&self) -> LockResult<ValueGuard<'_, T, L>> {
        self.wrap(self.lock.acquire_value_lock(Wait::Try))
    }

    /// Locks the value, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Lock::lock_timeout`].
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<ValueGuard<'_, T, L>> {
        let deadline = crate::sync::deadline_after(timeout);
        self.wrap(self.lock.acquire_value_lock(Wait::Until(deadline)))
    }

    /// Runs `f` on the value under the lock; returns what `f` returns.
    ///
    /// # Errors
    ///
    /// `OwnerDied` (without running `f`; the lock is released and usable) if
    /// a process died holding the lock: use [`lock`](Value::lock) to repair;
    /// otherwise as [`Lock::lock`].
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        let mut g = self.lock()?;
        Ok(f(&mut g))
    }
}

impl<T: PlainInt, L> Value<T, L> {
    /// Adds `v` atomically (wrapping), without the lock; returns the previous value.
    pub fn fetch_add(&self, v: T) -> T {
        self.raw.fetch_add(v)
    }

    /// Subtracts `v` atomically (wrapping), without the lock; returns the previous value.
    pub fn fetch_sub(&self, v: T) -> T {
        self.raw.fetch_sub(v)
    }

    /// Stores `v` atomically, without the lock; returns the previous value.
    pub fn swap(&self, v: T) -> T {
        self.raw.swap(v)
    }

    /// Stores `new` if the value is `current`, atomically, without the lock.
    ///
    /// # Errors
    ///
    /// `Err(actual)` if the value was not `current`.
    pub fn compare_exchange(&self, current: T, new: T) -> std::result::Result<T, T> {
        self.raw.compare_exchange(current, new)
    }
}

impl<T: Plain, L: ValueLock> fmt::Debug for Value<T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("value", &self.raw.get())
            .field("lock", &self.lock)
            .finish()
    }
}

/// A value travels as its shared memory and its lock (each by name).
impl<T, L: Serialize> Serialize for Value<T, L> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.raw.store, &self.lock).serialize(s)
    }
}

impl<'de, T: Plain, L: ValueLock> Deserialize<'de> for Value<T, L> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Value<T, L>, D::Error> {
        let (store, lock) = <(Store<T>, L)>::deserialize(d)?;
        let store = store.scalar().map_err(serde::de::Error::custom)?;
        Ok(Value {
            raw: RawValue { store },
            lock,
        })
    }
}

/// A locked [`Value`]: dereferences to the value; dropping it stores a
/// changed value back and releases the lock.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ValueGuard<'a, T: Plain, L: ValueLock = Lock> {
    local: T,
    dirty: bool,
    value: &'a Value<T, L>,
    // Declared last: dropped after `Drop::drop` stored the value back.
    _lock: L::Guard<'a>,
}

impl<T: Plain, L: ValueLock> Deref for ValueGuard<'_, T, L> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.local
    }
}

impl<T: Plain, L: ValueLock> DerefMut for ValueGuard<'_, T, L> {
    fn deref_mut(&mut self) -> &mut T {
        self.dirty = true;
        &mut self.local
    }
}

impl<T: Plain, L: ValueLock> Drop for ValueGuard<'_, T, L> {
    fn drop(&mut self) {
        if self.dirty {
            // The lock is held: store without taking it again.
            self.value.raw.set(self.local);
        }
    }
}

impl<T: Plain, L: ValueLock> fmt::Debug for ValueGuard<'_, T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueGuard").field(&self.local).finish()
    }
}
