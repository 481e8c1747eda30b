//! `RawArray` and `Array`: a fixed-length sequence in shared memory.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Plain, PlainInt, Store, ValueLock};
use crate::error::Result;
use crate::sync::{Lock, LockResult, Wait};

/// A fixed-length array of `T` in shared memory without a lock: Python's
/// `RawArray` (or `Array` with `lock=False`).
///
/// # Examples
///
/// ```
/// use multiproc::value::RawArray;
///
/// let a = RawArray::<i32>::new(3)?;
/// a.set(2, -7)?;
/// assert_eq!(a.to_vec(), [0, 0, -7]);
/// assert!(a.get(3).is_err()); // out of range
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound(deserialize = "T: Plain"))]
pub struct RawArray<T> {
    store: Store<T>,
}

impl<T: Plain> RawArray<T> {
    /// Creates an array of `len` default (zero) elements.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if it cannot fit in memory; `Io` if shared memory
    /// cannot be created.
    pub fn new(len: usize) -> Result<RawArray<T>> {
        Ok(RawArray {
            store: Store::create(len, false)?,
        })
    }

    /// Creates an array holding a copy of `items`.
    ///
    /// # Errors
    ///
    /// As [`new`](RawArray::new).
    pub fn from_slice(items: &[T]) -> Result<RawArray<T>> {
        let a = RawArray::new(items.len())?;
        a.store.copy_from_slice(items)?;
        Ok(a)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.store.len
    }

    /// True if the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.store.len == 0
    }

    /// Element `i` (Python's `a[i]`).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `i >= len` (Python's `IndexError`).
    pub fn get(&self, i: usize) -> Result<T> {
        self.store.get(i)
    }

    /// Sets element `i` (Python's `a[i] = v`).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `i >= len`.
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        self.store.set(i, v)
    }

    /// A copy of all elements (Python's `a[:]`), each read atomically; a
    /// consistent snapshot only while writers are excluded (by a lock).
    pub fn to_vec(&self) -> Vec<T> {
        self.store.to_vec()
    }

    /// Overwrites all elements (Python's `a[:] = src`).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `src.len() != len`.
    pub fn copy_from_slice(&self, src: &[T]) -> Result<()> {
        self.store.copy_from_slice(src)
    }
}

impl<T: PlainInt> RawArray<T> {
    /// Adds `v` to element `i` atomically (wrapping); returns its previous value.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `i >= len`.
    pub fn fetch_add(&self, i: usize, v: T) -> Result<T> {
        if i < self.store.len {
            Ok(T::fetch_add(self.store.slot(i), v))
        } else {
            Err(self.store.index_error(i))
        }
    }
}

impl<T: Plain> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawArray")
            .field("len", &self.len())
            .finish()
    }
}

/// A fixed-length array of `T` in shared memory with a lock: Python's
/// `multiprocessing.Array`.
///
/// The lock is the array's own [`Lock`] ([`new`](Array::new)), or a
/// caller's [`Lock`] or [`RLock`](crate::sync::RLock)
/// ([`using_lock`](Array::using_lock), Python's `lock=` argument).
///
/// Element reads and writes of the primitive types are atomic without the
/// lock (those of a [`Structure`](super::Structure) take it); hold
/// [`lock`](Array::lock)'s guard to make several of them one step for other
/// processes (a consistent [`to_vec`](ArrayGuard::to_vec), a swap of two
/// elements...).
///
/// # Examples
///
/// ```
/// use multiproc::value::Array;
///
/// let a = Array::from_slice(&[1u64, 2, 3])?;
/// {
///     let g = a.lock()?;
///     let (x, y) = (g.get(0)?, g.get(2)?);
///     g.set(0, y)?;
///     g.set(2, x)?;
/// }
/// assert_eq!(a.to_vec(), [3, 2, 1]);
/// assert_eq!(a.len(), 3);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct Array<T, L = Lock> {
    raw: RawArray<T>,
    lock: L,
}

impl<T: Plain> Array<T> {
    /// Creates an array of `len` default (zero) elements, with its own lock.
    ///
    /// # Errors
    ///
    /// As [`RawArray::new`].
    pub fn new(len: usize) -> Result<Array<T>> {
        let store = Store::create(len, true)?;
        let lock = store.lock()?;
        Ok(Array {
            raw: RawArray { store },
            lock,
        })
    }

    /// Creates an array holding a copy of `items`, with its own lock.
    ///
    /// # Errors
    ///
    /// As [`RawArray::new`].
    pub fn from_slice(items: &[T]) -> Result<Array<T>> {
        let a = Array::new(items.len())?;
        a.raw.copy_from_slice(items)?;
        Ok(a)
    }

    /// Creates an array without a lock (Python's `Array(..., lock=False)`).
    ///
    /// # Errors
    ///
    /// As [`RawArray::new`].
    pub fn raw(len: usize) -> Result<RawArray<T>> {
        RawArray::new(len)
    }
}

impl<T: Plain, L: ValueLock> Array<T, L> {
    /// Creates an array of `len` default (zero) elements guarded by `lock`,
    /// a handle to the caller's [`Lock`] or [`RLock`](crate::sync::RLock)
    /// (Python's `Array(typecode, n, lock=lock)`). To name the element
    /// type, leave the lock's to inference: `Array::<u64, _>::using_lock`
    /// (`Array::<u64>` means `Array<u64, Lock>`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::sync::Lock;
    /// use multiproc::value::Array;
    ///
    /// let lock = Lock::new()?;
    /// let a = Array::<u8>::using_lock(3, lock.clone())?;
    /// let g = a.lock()?;
    /// assert!(lock.is_locked()); // the array's lock is the caller's
    /// g.fill(9);
    /// drop(g);
    /// assert_eq!(a.to_vec(), [9, 9, 9]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`RawArray::new`].
    pub fn using_lock(len: usize, lock: L) -> Result<Array<T, L>> {
        Ok(Array {
            raw: RawArray {
                store: Store::create(len, false)?,
            },
            lock,
        })
    }

    /// Creates an array holding a copy of `items`, guarded by `lock` (see
    /// [`using_lock`](Array::using_lock)).
    ///
    /// # Errors
    ///
    /// As [`RawArray::new`].
    pub fn from_slice_using_lock(items: &[T], lock: L) -> Result<Array<T, L>> {
        let a = Array::using_lock(items.len(), lock)?;
        a.raw.copy_from_slice(items)?;
        Ok(a)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// True if the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Element `i` (atomically without the lock for the primitive types).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `i >= len` (Python's `IndexError`).
    pub fn get(&self, i: usize) -> Result<T> {
        let _held = T::TEARS.then(|| self.lock.hold());
        self.raw.get(i)
    }

    /// Sets element `i` (atomically without the lock for the primitive
    /// types).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `i >= len`.
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        let _held = T::TEARS.then(|| self.lock.hold());
        self.raw.set(i, v)
    }

    /// A copy of all elements, without the lock for the primitive types
    /// (see [`RawArray::to_vec`]; `a.lock()?.to_vec()` for a consistent
    /// snapshot).
    pub fn to_vec(&self) -> Vec<T> {
        let _held = T::TEARS.then(|| self.lock.hold());
        self.raw.to_vec()
    }

    /// The array's lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &L {
        &self.lock
    }

    /// The array without its lock (Python's `get_obj()`).
    pub fn get_obj(&self) -> &RawArray<T> {
        &self.raw
    }

    fn wrap<'a>(&'a self, r: LockResult<L::Guard<'a>>) -> LockResult<ArrayGuard<'a, T, L>> {
        let make = |g| ArrayGuard {
            array: &self.raw,
            _lock: g,
        };
        match r {
            Ok(g) => Ok(make(g)),
            Err(e) => Err(e.map(make)),
        }
    }

    /// Locks the array.
    ///
    /// # Errors
    ///
    /// As [`Lock::lock`] ([`LockError::OwnerDied`](crate::sync::LockError::OwnerDied) if a process died holding it).
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T, L>> {
        self.wrap(self.lock.acquire_value_lock(Wait::Until(None)))
    }

    /// Locks the array if the lock is free now.
    ///
    /// # Errors
    ///
    /// As [`Lock::try_lock`].
    pub fn try_lock(&self) -> LockResult<ArrayGuard<'_, T, L>> {
        self.wrap(self.lock.acquire_value_lock(Wait::Try))
    }

    /// Locks the array, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Lock::lock_timeout`].
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<ArrayGuard<'_, T, L>> {
        let deadline = crate::sync::deadline_after(timeout);
        self.wrap(self.lock.acquire_value_lock(Wait::Until(deadline)))
    }
}

impl<T: PlainInt, L> Array<T, L> {
    /// Adds `v` to element `i` atomically (wrapping), without the lock;
    /// returns its previous value.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `i >= len`.
    pub fn fetch_add(&self, i: usize, v: T) -> Result<T> {
        self.raw.fetch_add(i, v)
    }
}

impl<T: Plain, L: ValueLock> fmt::Debug for Array<T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("len", &self.raw.len())
            .field("lock", &self.lock)
            .finish()
    }
}

/// An array travels as its shared memory and its lock (each by name).
impl<T, L: Serialize> Serialize for Array<T, L> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.raw.store, &self.lock).serialize(s)
    }
}

impl<'de, T: Plain, L: ValueLock> Deserialize<'de> for Array<T, L> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Array<T, L>, D::Error> {
        let (store, lock) = <(Store<T>, L)>::deserialize(d)?;
        Ok(Array {
            raw: RawArray { store },
            lock,
        })
    }
}

/// A locked [`Array`]; dropping it releases the lock.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ArrayGuard<'a, T, L: ValueLock = Lock> {
    array: &'a RawArray<T>,
    _lock: L::Guard<'a>,
}

impl<T: Plain, L: ValueLock> ArrayGuard<'_, T, L> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.array.len()
    }

    /// True if the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.array.is_empty()
    }

    /// Element `i`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `i >= len`.
    pub fn get(&self, i: usize) -> Result<T> {
        self.array.get(i)
    }

    /// Sets element `i`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `i >= len`.
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        self.array.set(i, v)
    }

    /// A consistent copy of all elements (writers that take the lock are
    /// excluded).
    pub fn to_vec(&self) -> Vec<T> {
        self.array.to_vec()
    }

    /// Overwrites all elements.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `src.len() != len`.
    pub fn copy_from_slice(&self, src: &[T]) -> Result<()> {
        self.array.copy_from_slice(src)
    }

    /// Sets every element to `v`.
    pub fn fill(&self, v: T) {
        for i in 0..self.array.len() {
            T::store(self.array.store.slot(i), v);
        }
    }
}

impl<T: Plain, L: ValueLock> fmt::Debug for ArrayGuard<'_, T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("len", &self.len())
            .finish()
    }
}
