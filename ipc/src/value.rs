//! Shared values and arrays: Python's `multiprocessing.Value`, `Array`,
//! `RawValue` and `RawArray`, for plain data ([`Plain`]: integers, floats,
//! `bool`, and a caller's `#[repr(C)]` structs as [`Structure`]).
//!
//! A [`Value<T>`] is one `T` in shared memory with a [`Lock`] next to it, or
//! guarded by a caller's [`Lock`] or [`RLock`](crate::sync::RLock) shared
//! with other objects ([`Value::using_lock`], Python's `lock=` argument); a
//! [`RawValue<T>`] has no lock (Python's `lock=False`). Single reads and
//! writes ([`get`](Value::get), [`set`](Value::set)) are atomic on their own
//! and never torn (a [`Structure`] takes the lock for them); a
//! read-modify-write (`v.value += 1`) needs the lock, or one
//! of the atomic integer operations ([`fetch_add`](Value::fetch_add),
//! [`compare_exchange`](Value::compare_exchange)...), which Python lacks.
//! [`Array<T>`] and [`RawArray<T>`] are the same for a fixed-length sequence.
//!
//! Handles are [`Clone`] (handles to the same data), inherited by processes
//! forked after creation, and serialize to the name of their shared memory
//! (and of their lock), so they can be passed to pool tasks; the other side
//! re-attaches.
//!
//! # Examples
//!
//! ```
//! use multiproc::value::{Array, Value};
//!
//! let counter = Value::new(0i64)?;
//! *counter.lock()? += 1; // Python: with v.get_lock(): v.value += 1
//! counter.fetch_add(1);  // the same, lock-free
//! assert_eq!(counter.get(), 2);
//!
//! let arr = Array::from_slice(&[1.5f64, 2.5])?;
//! arr.set(1, 4.0)?;
//! assert_eq!(arr.to_vec(), [1.5, 4.0]);
//! # Ok::<(), multiproc::Error>(())
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI16, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
use crate::shm::ShmRegion;
use crate::sync::{self, Lock};
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
        /// True if a load or store is not one atomic access (it could be
        /// torn by a concurrent writer): a locked value then takes its lock.
        const TEARS: bool = false;
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
/// integers, `f32`, `f64` and `bool` (Python's ctypes typecodes), and
/// [`Structure<T>`] for a caller's [`bytemuck::Pod`] struct (Python's ctypes
/// `Structure`).
///
/// Sealed: a primitive element is read and written with one atomic
/// instruction of its width, so it is never torn; a structure is copied by
/// atomic words, under the lock where there is one. None of it needs
/// `unsafe`.
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

    /// This store as the backing of a single value: it must hold exactly one
    /// element (an `Array` handle decoded as a `Value` is refused).
    fn scalar(self) -> Result<Store<T>> {
        if self.len == 1 {
            Ok(self)
        } else {
            Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "a shared array of {} elements is not a shared value",
                    self.len
                ),
            ))
        }
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

mod array;
mod lock;
mod scalar;
mod structure;

pub use array::{Array, ArrayGuard, RawArray};
pub use lock::ValueLock;
pub use scalar::{RawValue, Value, ValueGuard};
pub use structure::Structure;

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
        // A Value travels with its lock; its raw part travels alone.
        assert!(crate::codec::decode::<RawValue<u32>>(&bytes).is_err());
        let raw_bytes = crate::codec::encode(v.get_obj()).unwrap();
        assert!(crate::codec::decode::<RawValue<u32>>(&raw_bytes).is_ok());
        let raw = RawValue::new(1u32).unwrap();
        let bytes = crate::codec::encode(&raw).unwrap();
        assert!(crate::codec::decode::<Value<u32>>(&bytes).is_err());
        let lock = Lock::new().unwrap();
        let bytes = crate::codec::encode(&lock).unwrap();
        // A Lock's wire form is (region, offset): not a value.
        assert!(crate::codec::decode::<Value<u32>>(&bytes).is_err());
    }

    #[test]
    fn an_array_is_not_a_value() {
        let empty = Array::<u64>::new(0).unwrap();
        let bytes = crate::codec::encode(&empty).unwrap();
        assert!(crate::codec::decode::<Value<u64>>(&bytes).is_err());
        assert!(crate::codec::decode::<RawValue<u64>>(&bytes).is_err());
        let raw = RawArray::<u64>::new(3).unwrap();
        let bytes = crate::codec::encode(&raw).unwrap();
        assert!(crate::codec::decode::<RawValue<u64>>(&bytes).is_err());
        assert_eq!(
            crate::codec::decode::<RawArray<u64>>(&bytes).unwrap().len(),
            3
        );
        let locked = Array::<u64>::new(10).unwrap();
        let bytes = crate::codec::encode(&locked).unwrap();
        assert_eq!(
            crate::codec::decode::<Array<u64>>(&bytes).unwrap().len(),
            10
        );
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
