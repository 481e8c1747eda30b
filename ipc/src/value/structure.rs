//! `Structure<T>`: a caller's plain-old-data struct as the element of a
//! shared value or array (Python's ctypes `Structure` in a `Value` or an
//! `Array`).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

use bytemuck::Pod;

use super::sealed::{Sealed, Slot};
use super::Plain;
use crate::sync;

/// A caller's plain-old-data type (a `#[repr(C)]` struct deriving
/// [`bytemuck::Pod`]) as the element of a [`Value`](super::Value), an
/// [`Array`](super::Array) or their raw forms: Python's ctypes `Structure`
/// in a `multiprocessing.Value` or `Array`.
///
/// `Structure` dereferences to the struct, so fields read and write as
/// usual, also through a [`ValueGuard`](super::ValueGuard).
///
/// # Examples
///
/// ```
/// use bytemuck::{Pod, Zeroable};
/// use multiproc::value::{Array, Structure, Value};
///
/// #[repr(C)]
/// #[derive(Clone, Copy, Debug, Pod, Zeroable)]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
///
/// let p = Value::new(Structure(Point { x: 1.0, y: 2.0 }))?;
/// {
///     let mut g = p.lock()?;
///     g.x += 10.0; // a field of the shared struct
/// }
/// assert_eq!(p.get().x, 11.0);
///
/// let path = Array::<Structure<Point>>::new(3)?;
/// path.set(2, Structure(Point { x: 5.0, y: 6.0 }))?;
/// assert_eq!(path.get(2)?.y, 6.0);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Caveats
///
/// A struct is copied in and out word by word, not in one atomic access:
/// a [`Value`](super::Value) or [`Array`](super::Array) takes its lock for
/// each `get` and `set` (as Python's synchronized wrappers do), but a
/// [`RawValue`](super::RawValue) or [`RawArray`](super::RawArray) read
/// while another process writes may mix old and new fields. A handle is
/// checked on attach against the struct's size only: two different structs
/// of one size are not told apart.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct Structure<T>(pub T);

impl<T> Deref for Structure<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Structure<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T> From<T> for Structure<T> {
    fn from(v: T) -> Structure<T> {
        Structure(v)
    }
}

/// All bytes zero (ctypes' default).
impl<T: Pod> Default for Structure<T> {
    fn default() -> Structure<T> {
        Structure(T::zeroed())
    }
}

/// Byte-wise equality (what shared memory holds).
impl<T: Pod> PartialEq for Structure<T> {
    fn eq(&self, other: &Structure<T>) -> bool {
        bytemuck::bytes_of(&self.0) == bytemuck::bytes_of(&other.0)
    }
}

impl<T: fmt::Debug> fmt::Debug for Structure<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Structure").field(&self.0).finish()
    }
}

/// The width of the words a `T` is copied by: as wide as its alignment
/// allows, at most 8 bytes (so every word is aligned, and the size, a
/// multiple of the alignment, is a whole number of words).
const fn word<T>() -> usize {
    let align = std::mem::align_of::<T>();
    if align >= 8 {
        8
    } else {
        align
    }
}

/// Copies the element at `slot` into `dst`, word by word.
fn load_words(slot: &Slot<'_>, dst: &mut [u8], w: usize) {
    for (k, chunk) in dst.chunks_exact_mut(w).enumerate() {
        let at = slot.offset + k * w;
        match w {
            8 => chunk.copy_from_slice(
                &sync::cell::<AtomicU64>(slot.region, at)
                    .load(Ordering::Acquire)
                    .to_ne_bytes(),
            ),
            4 => chunk.copy_from_slice(
                &sync::cell::<AtomicU32>(slot.region, at)
                    .load(Ordering::Acquire)
                    .to_ne_bytes(),
            ),
            2 => chunk.copy_from_slice(
                &sync::cell::<AtomicU16>(slot.region, at)
                    .load(Ordering::Acquire)
                    .to_ne_bytes(),
            ),
            _ => chunk[0] = sync::cell::<AtomicU8>(slot.region, at).load(Ordering::Acquire),
        }
    }
}

/// Copies `src` into the element at `slot`, word by word.
fn store_words(slot: &Slot<'_>, src: &[u8], w: usize) {
    for (k, chunk) in src.chunks_exact(w).enumerate() {
        let at = slot.offset + k * w;
        match chunk {
            [a, b, c, d, e, f, g, h] => sync::cell::<AtomicU64>(slot.region, at).store(
                u64::from_ne_bytes([*a, *b, *c, *d, *e, *f, *g, *h]),
                Ordering::Release,
            ),
            [a, b, c, d] => sync::cell::<AtomicU32>(slot.region, at)
                .store(u32::from_ne_bytes([*a, *b, *c, *d]), Ordering::Release),
            [a, b] => sync::cell::<AtomicU16>(slot.region, at)
                .store(u16::from_ne_bytes([*a, *b]), Ordering::Release),
            [a] => sync::cell::<AtomicU8>(slot.region, at).store(*a, Ordering::Release),
            _ => {}
        }
    }
}

impl<T: Pod + fmt::Debug + Send + Sync> Sealed for Structure<T> {
    // Codes of the primitive types are small; a structure's says its size.
    const CODE: u32 = 0x8000_0000 | (std::mem::size_of::<T>() as u32 & 0x7fff_ffff);
    const SIZE: usize = std::mem::size_of::<T>();
    const TEARS: bool = true;

    fn load(slot: Slot<'_>) -> Structure<T> {
        let mut v = T::zeroed();
        load_words(&slot, bytemuck::bytes_of_mut(&mut v), word::<T>());
        Structure(v)
    }

    fn store(slot: Slot<'_>, v: Structure<T>) {
        store_words(&slot, bytemuck::bytes_of(&v.0), word::<T>());
    }
}

impl<T: Pod + fmt::Debug + Send + Sync> Plain for Structure<T> {}
