//! Shared values and arrays: Python's `multiprocessing.Value`, `Array`,
//! `RawValue` and `RawArray`, for plain data ([`Plain`]: integers, floats,
//! `bool`).
//!
//! A [`Value<T>`] is one `T` in shared memory with a [`Lock`] next to it; a
//! [`RawValue<T>`] has no lock (Python's `lock=False`). Single reads and
//! writes ([`get`](Value::get), [`set`](Value::set)) are atomic on their own
//! and never torn; a read-modify-write (`v.value += 1`) needs the lock, or one
//! of the atomic integer operations ([`fetch_add`](Value::fetch_add),
//! [`compare_exchange`](Value::compare_exchange)...), which Python lacks.
//! [`Array<T>`] and [`RawArray<T>`] are the same for a fixed-length sequence.
//!
//! Handles are [`Clone`] (handles to the same data), inherited by processes
//! forked after creation, and serialize to the name of their shared memory,
//! so they can be passed to pool tasks; the other side re-attaches.
//!
//! # Examples
//!
//! ```
//! use multiproc_ipc::value::{Array, Value};
//!
//! let counter = Value::new(0i64)?;
//! *counter.lock()? += 1; // Python: with v.get_lock(): v.value += 1
//! counter.fetch_add(1);  // the same, lock-free
//! assert_eq!(counter.get(), 2);
//!
//! let arr = Array::from_slice(&[1.5f64, 2.5])?;
//! arr.set(1, 4.0)?;
//! assert_eq!(arr.to_vec(), [1.5, 4.0]);
//! # Ok::<(), multiproc_ipc::Error>(())
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicI16, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
use crate::shm::ShmRegion;
use crate::sync::{self, Lock, LockGuard, LockResult};
use crate::sys::layout::{LockCell, ValueHeader};

/// Where the lock of a locked value or array lives in its region.
const LOCK_OFFSET: usize = 64;
/// Where the data starts (after the header and the lock, cache-line aligned).
const DATA_OFFSET: usize = 128;

mod sealed {
    use super::*;

    /// One element's place in a region (only this crate can make one).
    pub struct Slot<'a> {
        pub(super) region: &'a ShmRegion,
        pub(super) offset: usize,
    }

    impl Slot<'_> {
        pub(super) fn cell<C: crate::sys::shm::ShmSafe>(&self) -> &C {
            sync::cell(self.region, self.offset)
        }
    }

    /// The sealed half of [`Plain`](super::Plain): how an element is stored.
    pub trait Sealed: Sized {
        /// The type's code in a region's header.
        const CODE: u32;
        /// Size (and alignment) of one element.
        const SIZE: usize;
        fn load(slot: Slot<'_>) -> Self;
        fn store(slot: Slot<'_>, v: Self);
    }

    /// The sealed half of [`PlainInt`](super::PlainInt).
    pub trait SealedInt: Sealed {
        fn fetch_add(slot: Slot<'_>, v: Self) -> Self;
        fn fetch_sub(slot: Slot<'_>, v: Self) -> Self;
        fn swap(slot: Slot<'_>, v: Self) -> Self;
        fn compare_exchange(
            slot: Slot<'_>,
            current: Self,
            new: Self,
        ) -> std::result::Result<Self, Self>;
    }
}

use sealed::{Sealed, SealedInt, Slot};

/// Plain data that may live in a [`Value`] or an [`Array`]: the primitive
/// integers, `f32`, `f64` and `bool` (Python's ctypes typecodes).
///
/// Sealed: every element is read and written with one atomic instruction of
/// its width, so a value is never torn and needs no `unsafe`.
pub trait Plain: Copy + Default + PartialEq + fmt::Debug + Send + Sync + 'static + Sealed {}

/// The integer [`Plain`] types, which also get atomic read-modify-write
/// operations (`fetch_add`, `fetch_sub`, `swap`, `compare_exchange`), all
/// wrapping on overflow.
pub trait PlainInt: Plain + SealedInt {}

macro_rules! plain {
    ($($t:ty => $atomic:ty, $bits:ty, $code:literal, $to:expr, $from:expr;)*) => {$(
        impl Sealed for $t {
            const CODE: u32 = $code;
            const SIZE: usize = std::mem::size_of::<$t>();
            fn load(slot: Slot<'_>) -> $t {
                let from: fn($bits) -> $t = $from;
                from(slot.cell::<$atomic>().load(Ordering::Acquire))
            }
            fn store(slot: Slot<'_>, v: $t) {
                let to: fn($t) -> $bits = $to;
                slot.cell::<$atomic>().store(to(v), Ordering::Release)
            }
        }
        impl Plain for $t {}
    )*};
}

macro_rules! plain_int {
    ($($t:ty => $atomic:ty, $bits:ty;)*) => {$(
        impl SealedInt for $t {
            fn fetch_add(slot: Slot<'_>, v: $t) -> $t {
                slot.cell::<$atomic>().fetch_add(v as $bits, Ordering::AcqRel) as $t
            }
            fn fetch_sub(slot: Slot<'_>, v: $t) -> $t {
                slot.cell::<$atomic>().fetch_sub(v as $bits, Ordering::AcqRel) as $t
            }
            fn swap(slot: Slot<'_>, v: $t) -> $t {
                slot.cell::<$atomic>().swap(v as $bits, Ordering::AcqRel) as $t
            }
            fn compare_exchange(slot: Slot<'_>, current: $t, new: $t) -> std::result::Result<$t, $t> {
                slot.cell::<$atomic>()
                    .compare_exchange(current as $bits, new as $bits, Ordering::AcqRel, Ordering::Acquire)
                    .map(|b| b as $t)
                    .map_err(|b| b as $t)
            }
        }
        impl PlainInt for $t {}
    )*};
}

plain! {
    u8 => AtomicU8, u8, 1, |v| v, |b| b;
    i8 => AtomicU8, u8, 2, |v| v as u8, |b| b as i8;
    bool => AtomicU8, u8, 3, u8::from, |b| b != 0;
    u16 => AtomicU16, u16, 4, |v| v, |b| b;
    i16 => AtomicI16, i16, 5, |v| v, |b| b;
    u32 => AtomicU32, u32, 6, |v| v, |b| b;
    i32 => AtomicU32, u32, 7, |v| v as u32, |b| b as i32;
    f32 => AtomicU32, u32, 8, f32::to_bits, f32::from_bits;
    u64 => AtomicU64, u64, 9, |v| v, |b| b;
    i64 => AtomicU64, u64, 10, |v| v as u64, |b| b as i64;
    f64 => AtomicU64, u64, 11, f64::to_bits, f64::from_bits;
    usize => AtomicU64, u64, 12, |v| v as u64, |b| b as usize;
    isize => AtomicU64, u64, 13, |v| v as u64, |b| b as isize;
}

plain_int! {
    u8 => AtomicU8, u8;
    i8 => AtomicU8, u8;
    u16 => AtomicU16, u16;
    i16 => AtomicI16, i16;
    u32 => AtomicU32, u32;
    i32 => AtomicU32, u32;
    u64 => AtomicU64, u64;
    i64 => AtomicU64, u64;
    usize => AtomicU64, u64;
    isize => AtomicU64, u64;
}

/// The shared storage of `len` elements of `T`, optionally with a lock.
struct Store<T> {
    region: ShmRegion,
    len: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Store<T> {
    fn clone(&self) -> Self {
        Store {
            region: self.region.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Plain> Store<T> {
    fn create(len: usize, with_lock: bool) -> Result<Store<T>> {
        let bytes = len
            .checked_mul(T::SIZE)
            .and_then(|b| b.checked_add(DATA_OFFSET))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("{len} elements do not fit in memory"),
                )
            })?;
        let region = ShmRegion::create(bytes)?;
        let h = sync::view::<ValueHeader>(&region, 0)?;
        h.type_code.store(T::CODE, Ordering::Relaxed);
        h.len.store(len as u64, Ordering::Relaxed);
        if with_lock {
            sync::view::<LockCell>(&region, LOCK_OFFSET)?;
            sync::stamp(&region, LOCK_OFFSET, sync::magic::LOCK)?;
            h.has_lock.store(1, Ordering::Relaxed);
        }
        sync::stamp(&region, 0, sync::magic::VALUE)?;
        Ok(Store {
            region,
            len,
            _t: PhantomData,
        })
    }

    fn attach(region: ShmRegion) -> Result<Store<T>> {
        sync::check::<ValueHeader>(&region, 0, sync::magic::VALUE)?;
        let h = sync::view::<ValueHeader>(&region, 0)?;
        let code = h.type_code.load(Ordering::Relaxed);
        if code != T::CODE {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "shared value holds type code {code}, not {} ({})",
                    T::CODE,
                    std::any::type_name::<T>()
                ),
            ));
        }
        let len = usize::try_from(h.len.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        let fits = len
            .checked_mul(T::SIZE)
            .and_then(|b| b.checked_add(DATA_OFFSET))
            .is_some_and(|end| end <= region.len());
        if !fits {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("a shared array of {len} elements does not fit its region"),
            ));
        }
        Ok(Store {
            region,
            len,
            _t: PhantomData,
        })
    }

    fn lock(&self) -> Result<Lock> {
        let h = sync::cell::<ValueHeader>(&self.region, 0);
        if h.has_lock.load(Ordering::Relaxed) != 1 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "this shared value was created without a lock (a RawValue or RawArray)",
            ));
        }
        Lock::at(self.region.clone(), LOCK_OFFSET)
    }

    /// The slot of element `i < len`.
    fn slot(&self, i: usize) -> Slot<'_> {
        Slot {
            region: &self.region,
            offset: DATA_OFFSET + i * T::SIZE,
        }
    }

    fn index_error(&self, i: usize) -> Error {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "index {i} is out of range for a shared array of length {}",
                self.len
            ),
        )
    }

    fn get(&self, i: usize) -> Result<T> {
        if i < self.len {
            Ok(T::load(self.slot(i)))
        } else {
            Err(self.index_error(i))
        }
    }

    fn set(&self, i: usize, v: T) -> Result<()> {
        if i < self.len {
            T::store(self.slot(i), v);
            Ok(())
        } else {
            Err(self.index_error(i))
        }
    }

    fn to_vec(&self) -> Vec<T> {
        (0..self.len).map(|i| T::load(self.slot(i))).collect()
    }

    fn copy_from_slice(&self, src: &[T]) -> Result<()> {
        if src.len() != self.len {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "cannot copy {} elements into a shared array of length {}",
                    src.len(),
                    self.len
                ),
            ));
        }
        for (i, v) in src.iter().enumerate() {
            T::store(self.slot(i), *v);
        }
        Ok(())
    }
}

impl<T> Serialize for Store<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.region.serialize(s)
    }
}

impl<'de, T: Plain> Deserialize<'de> for Store<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Store<T>, D::Error> {
        Store::attach(ShmRegion::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------

/// One `T` in shared memory without a lock: Python's `RawValue` (or `Value`
/// with `lock=False`).
///
/// Reads and writes are atomic; read-modify-write sequences by several
/// processes lose updates unless they use the atomic integer operations.
///
/// # Examples
///
/// ```
/// use multiproc_ipc::value::RawValue;
///
/// let v = RawValue::new(1.5f32)?;
/// v.set(v.get() * 2.0);
/// assert_eq!(v.get(), 3.0);
/// # Ok::<(), multiproc_ipc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound(deserialize = "T: Plain"))]
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

impl<T: Plain> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

/// One `T` in shared memory with a [`Lock`]: Python's `multiprocessing.Value`.
///
/// [`lock`](Value::lock) returns a [`ValueGuard`] that dereferences to the
/// value, for read-modify-write sequences that other processes must not
/// interleave with. Python's `with v.get_lock(): v.value += 1` is
/// `*v.lock()? += 1`.
///
/// # Examples
///
/// ```
/// use multiproc_ipc::value::Value;
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
/// let bytes = multiproc_ipc::codec::encode(&v)?;
/// let again: Value<u32> = multiproc_ipc::codec::decode(&bytes)?;
/// assert_eq!(again.get(), 20);
/// # Ok::<(), multiproc_ipc::Error>(())
/// ```
///
/// # Caveats
///
/// [`get`](Value::get) and [`set`](Value::set) do not take the lock (each is
/// atomic on its own); like Python's `v.value`, `v.set(v.get() + 1)` without
/// the lock loses updates when processes race.
#[derive(Clone)]
pub struct Value<T> {
    raw: RawValue<T>,
    lock: Lock,
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
        v.set(init);
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

    /// The value (Python's `v.value`), read atomically without the lock.
    pub fn get(&self) -> T {
        self.raw.get()
    }

    /// Replaces the value atomically, without the lock.
    pub fn set(&self, v: T) {
        self.raw.set(v)
    }

    /// The value's lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// The value without its lock (Python's `get_obj()`).
    pub fn get_obj(&self) -> &RawValue<T> {
        &self.raw
    }

    fn guard<'a>(&'a self, lock: LockGuard<'a>) -> ValueGuard<'a, T> {
        ValueGuard {
            local: self.get(),
            dirty: false,
            value: self,
            _lock: lock,
        }
    }

    fn wrap<'a>(&'a self, r: LockResult<LockGuard<'a>>) -> LockResult<ValueGuard<'a, T>> {
        match r {
            Ok(g) => Ok(self.guard(g)),
            Err(e) => Err(e.map(|g| self.guard(g))),
        }
    }

    /// Locks the value; the guard dereferences to it.
    ///
    /// # Errors
    ///
    /// As [`Lock::lock`]: [`LockError::OwnerDied`](crate::sync::LockError::OwnerDied) with the guard if a process
    /// died holding the lock (the value is whatever it last stored).
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        self.wrap(self.lock.lock())
    }

    /// Locks the value if the lock is free now.
    ///
    /// # Errors
    ///
    /// As [`Lock::try_lock`].
    pub fn try_lock(&self) -> LockResult<ValueGuard<'_, T>> {
        self.wrap(self.lock.try_lock())
    }

    /// Locks the value, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Lock::lock_timeout`].
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<ValueGuard<'_, T>> {
        self.wrap(self.lock.lock_timeout(timeout))
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

impl<T: PlainInt> Value<T> {
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

impl<T: Plain> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("value", &self.get())
            .field("locked", &self.lock.is_locked())
            .finish()
    }
}

impl<T> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.raw.store.serialize(s)
    }
}

impl<'de, T: Plain> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Value<T>, D::Error> {
        let store = Store::<T>::deserialize(d)?;
        let lock = store.lock().map_err(serde::de::Error::custom)?;
        Ok(Value {
            raw: RawValue { store },
            lock,
        })
    }
}

/// A locked [`Value`]: dereferences to the value; dropping it stores a
/// changed value back and releases the lock.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ValueGuard<'a, T: Plain> {
    local: T,
    dirty: bool,
    value: &'a Value<T>,
    // Declared last: dropped after `Drop::drop` stored the value back.
    _lock: LockGuard<'a>,
}

impl<T: Plain> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.local
    }
}

impl<T: Plain> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.dirty = true;
        &mut self.local
    }
}

impl<T: Plain> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        if self.dirty {
            self.value.set(self.local);
        }
    }
}

impl<T: Plain> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueGuard").field(&self.local).finish()
    }
}

// ---------------------------------------------------------------------------

/// A fixed-length array of `T` in shared memory without a lock: Python's
/// `RawArray` (or `Array` with `lock=False`).
///
/// # Examples
///
/// ```
/// use multiproc_ipc::value::RawArray;
///
/// let a = RawArray::<i32>::new(3)?;
/// a.set(2, -7)?;
/// assert_eq!(a.to_vec(), [0, 0, -7]);
/// assert!(a.get(3).is_err()); // out of range
/// # Ok::<(), multiproc_ipc::Error>(())
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

/// A fixed-length array of `T` in shared memory with a [`Lock`]: Python's
/// `multiprocessing.Array`.
///
/// Element reads and writes are atomic without the lock; hold
/// [`lock`](Array::lock)'s guard to make several of them one step for other
/// processes (a consistent [`to_vec`](ArrayGuard::to_vec), a swap of two
/// elements...).
///
/// # Examples
///
/// ```
/// use multiproc_ipc::value::Array;
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
/// # Ok::<(), multiproc_ipc::Error>(())
/// ```
#[derive(Clone)]
pub struct Array<T> {
    raw: RawArray<T>,
    lock: Lock,
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

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// True if the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Element `i`, read atomically without the lock.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `i >= len` (Python's `IndexError`).
    pub fn get(&self, i: usize) -> Result<T> {
        self.raw.get(i)
    }

    /// Sets element `i` atomically, without the lock.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `i >= len`.
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        self.raw.set(i, v)
    }

    /// A copy of all elements, without the lock (see [`RawArray::to_vec`];
    /// `a.lock()?.to_vec()` for a consistent snapshot).
    pub fn to_vec(&self) -> Vec<T> {
        self.raw.to_vec()
    }

    /// The array's lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// The array without its lock (Python's `get_obj()`).
    pub fn get_obj(&self) -> &RawArray<T> {
        &self.raw
    }

    fn wrap<'a>(&'a self, r: LockResult<LockGuard<'a>>) -> LockResult<ArrayGuard<'a, T>> {
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
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        self.wrap(self.lock.lock())
    }

    /// Locks the array if the lock is free now.
    ///
    /// # Errors
    ///
    /// As [`Lock::try_lock`].
    pub fn try_lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        self.wrap(self.lock.try_lock())
    }

    /// Locks the array, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`Lock::lock_timeout`].
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<ArrayGuard<'_, T>> {
        self.wrap(self.lock.lock_timeout(timeout))
    }
}

impl<T: PlainInt> Array<T> {
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

impl<T: Plain> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("len", &self.len())
            .field("locked", &self.lock.is_locked())
            .finish()
    }
}

impl<T> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.raw.store.serialize(s)
    }
}

impl<'de, T: Plain> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Array<T>, D::Error> {
        let store = Store::<T>::deserialize(d)?;
        let lock = store.lock().map_err(serde::de::Error::custom)?;
        Ok(Array {
            raw: RawArray { store },
            lock,
        })
    }
}

/// A locked [`Array`]; dropping it releases the lock.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ArrayGuard<'a, T> {
    array: &'a RawArray<T>,
    _lock: LockGuard<'a>,
}

impl<T: Plain> ArrayGuard<'_, T> {
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

impl<T: Plain> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayGuard")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::LockError;

    #[test]
    fn every_plain_type_round_trips() {
        fn check<T: Plain>(a: T, b: T) {
            let v = Value::new(a).unwrap();
            assert_eq!(v.get(), a);
            v.set(b);
            assert_eq!(v.get(), b);
            let bytes = crate::codec::encode(&v).unwrap();
            let again: Value<T> = crate::codec::decode(&bytes).unwrap();
            assert_eq!(again.get(), b);
        }
        check(1u8, 255);
        check(-1i8, i8::MIN);
        check(true, false);
        check(7u16, u16::MAX);
        check(-7i16, i16::MIN);
        check(1u32, u32::MAX);
        check(-1i32, i32::MIN);
        check(1.5f32, f32::MIN_POSITIVE);
        check(1u64, u64::MAX);
        check(-1i64, i64::MIN);
        check(2.25f64, -0.0);
        check(3usize, usize::MAX);
        check(-3isize, isize::MIN);
    }

    #[test]
    fn atomics_wrap_and_compare() {
        let v = Value::new(i8::MAX).unwrap();
        assert_eq!(v.fetch_add(1), i8::MAX);
        assert_eq!(v.get(), i8::MIN);
        assert_eq!(v.compare_exchange(0, 1), Err(i8::MIN));
        assert_eq!(v.compare_exchange(i8::MIN, 5), Ok(i8::MIN));
        assert_eq!(v.fetch_sub(6), 5);
        assert_eq!(v.swap(9), -1);
        assert_eq!(v.get(), 9);
    }

    #[test]
    fn wrong_type_or_kind_is_refused_on_attach() {
        let v = Value::new(1u32).unwrap();
        let bytes = crate::codec::encode(&v).unwrap();
        assert!(crate::codec::decode::<Value<i32>>(&bytes).is_err());
        assert!(crate::codec::decode::<RawValue<u32>>(&bytes).is_ok());
        let raw = RawValue::new(1u32).unwrap();
        let bytes = crate::codec::encode(&raw).unwrap();
        assert!(crate::codec::decode::<Value<u32>>(&bytes).is_err());
        let lock = Lock::new().unwrap();
        let bytes = crate::codec::encode(&lock).unwrap();
        // A Lock's wire form is (region, offset): not a value.
        assert!(crate::codec::decode::<Value<u32>>(&bytes).is_err());
    }

    #[test]
    fn guard_stores_back_only_when_changed() {
        let v = Value::new(1u64).unwrap();
        {
            let g = v.lock().unwrap();
            assert_eq!(*g, 1);
            v.set(5); // an unlocked write meanwhile is kept: the guard only read
        }
        assert_eq!(v.get(), 5);
        {
            let mut g = v.lock().unwrap();
            *g += 1;
            assert!(matches!(v.try_lock(), Err(LockError::Failed(_))));
        }
        assert_eq!(v.get(), 6);
    }

    #[test]
    fn arrays_check_bounds() {
        let a = Array::<i16>::new(2).unwrap();
        assert_eq!(a.get(2).unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(a.set(5, 1).unwrap_err().kind(), ErrorKind::InvalidArgument);
        a.fetch_add(1, 3).unwrap();
        let g = a.lock().unwrap();
        g.fill(4);
        assert!(g.copy_from_slice(&[1]).is_err());
        assert_eq!(g.to_vec(), [4, 4]);
        drop(g);
        let empty = Array::<u8>::from_slice(&[]).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.to_vec(), Vec::<u8>::new());
    }
}
