//! Primitive numbers as raw bytes: the casts behind the codec's fixed-width
//! encoding of number sequences ([`PlainSlice`](crate::codec::PlainSlice),
//! [`PlainVec`](crate::codec::PlainVec)).
//!
//! A type is *plain* here if it is one of Rust's primitive integer or
//! floating-point types: no padding, and every bit pattern is a valid
//! value (`bool` and `char` are not plain). Bytes are in the machine's own
//! order: they only travel between processes of one machine.

use std::any::TypeId;

/// Whether `T` is a primitive integer or floating-point type.
pub(crate) fn is_plain<T: 'static>() -> bool {
    let id = TypeId::of::<T>();
    macro_rules! one_of {
        ($($t:ty),*) => { false $(|| id == TypeId::of::<$t>())* };
    }
    one_of!(u8, i8, u16, i16, u32, i32, u64, i64, u128, i128, usize, isize, f32, f64)
}

/// The bytes of `items` if `T` is plain.
pub(crate) fn as_bytes<T: 'static>(items: &[T]) -> Option<&[u8]> {
    if !is_plain::<T>() {
        return None;
    }
    // SAFETY: `T` is a primitive number type, which has no padding: all
    // `size_of_val(items)` bytes behind the slice are initialized, borrowed
    // for the slice's lifetime, and `u8` has alignment 1.
    Some(unsafe {
        std::slice::from_raw_parts(items.as_ptr().cast::<u8>(), std::mem::size_of_val(items))
    })
}

/// The `T`s whose bytes are `bytes` if `T` is plain: `None` if it is not,
/// `Some(Err(len))` if `len`, the length of `bytes`, is not a multiple of
/// `T`'s size.
pub(crate) fn vec_from_bytes<T: 'static>(bytes: &[u8]) -> Option<Result<Vec<T>, usize>> {
    let mut items = Vec::new();
    extend_from_bytes(&mut items, bytes).map(|r| r.map(|_| items))
}

/// Appends the `T`s whose bytes are `bytes` to `items` if `T` is plain;
/// returns how many (or as [`vec_from_bytes`], appending nothing).
pub(crate) fn extend_from_bytes<T: 'static>(
    items: &mut Vec<T>,
    bytes: &[u8],
) -> Option<Result<usize, usize>> {
    let at = items.len();
    place_from_bytes(items, at, bytes)
}

/// Writes the `T`s whose bytes are `bytes` into `items` from index `at` if
/// `T` is plain, overwriting the items there and growing `items` as
/// needed; the items between its old length and `at`, if `at` is past it,
/// are zero. Returns how many (or as [`vec_from_bytes`], writing nothing).
pub(crate) fn place_from_bytes<T: 'static>(
    items: &mut Vec<T>,
    at: usize,
    bytes: &[u8],
) -> Option<Result<usize, usize>> {
    if !is_plain::<T>() {
        return None;
    }
    let size = std::mem::size_of::<T>();
    if bytes.len() % size != 0 {
        return Some(Err(bytes.len()));
    }
    let n = bytes.len() / size;
    let Some(end) = at.checked_add(n) else {
        return Some(Err(bytes.len()));
    };
    let len = items.len();
    if end > len {
        items.reserve(end - len);
    }
    // SAFETY: after `reserve`, the allocation has room for `end` elements,
    // so the `at - len` elements of the gap past `len` (if any) and the `n`
    // elements from `at` are inside it; `bytes` is a borrowed slice, which
    // cannot alias the vector's buffer. `T` is a primitive number type, for
    // which every bit pattern (all zeros included) is a valid value, so all
    // elements up to `max(len, end)` are initialized and valid once written.
    unsafe {
        let base = items.as_mut_ptr();
        if at > len {
            std::ptr::write_bytes(base.add(len), 0, at - len);
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(at).cast::<u8>(), bytes.len());
        if end > len {
            items.set_len(end);
        }
    }
    Some(Ok(n))
}

/// Writes items pulled from `items` into `dst` as their bytes, as many as
/// fit (`dst.len() / size_of::<T>()`), if `T` is plain; returns how many it
/// wrote (fewer only when the iterator ended).
pub(crate) fn write_from_iter<T: 'static>(
    dst: &mut [u8],
    items: &mut impl Iterator<Item = T>,
) -> Option<usize> {
    if !is_plain::<T>() {
        return None;
    }
    let size = std::mem::size_of::<T>();
    let mut n = 0;
    for slot in dst.chunks_exact_mut(size) {
        let Some(item) = items.next() else { break };
        // SAFETY: `slot` is `size == size_of::<T>()` writable bytes of
        // `dst`, borrowed mutably here; `write_unaligned` needs no
        // alignment; `T` is a primitive number type (no padding, no drop),
        // so its bytes are a valid encoding of it.
        unsafe { std::ptr::write_unaligned(slot.as_mut_ptr().cast::<T>(), item) };
        n += 1;
    }
    Some(n)
}

/// The `i`th `T` of `bytes`, read as its bytes, if `T` is plain and the
/// item is whole inside `bytes`.
pub(crate) fn read_at<T: 'static>(bytes: &[u8], i: usize) -> Option<T> {
    if !is_plain::<T>() {
        return None;
    }
    let size = std::mem::size_of::<T>();
    let start = i.checked_mul(size)?;
    let item = bytes.get(start..start.checked_add(size)?)?;
    // SAFETY: `item` is `size == size_of::<T>()` readable bytes borrowed
    // here; `read_unaligned` needs no alignment; `T` is a primitive number
    // type, for which every bit pattern is a valid value.
    Some(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<T>()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_plain_and_nothing_else_is() {
        assert!(is_plain::<u64>() && is_plain::<f32>() && is_plain::<i128>());
        assert!(!is_plain::<bool>() && !is_plain::<char>() && !is_plain::<(u8, u8)>());
        assert!(!is_plain::<String>());
        assert_eq!(as_bytes(&[true]), None);
        assert_eq!(vec_from_bytes::<char>(&[0; 4]), None);
    }

    #[test]
    fn bytes_round_trip_and_bad_lengths_are_refused() {
        let items = [1u32, 0xdead_beef, u32::MAX];
        let bytes = as_bytes(&items).unwrap();
        assert_eq!(bytes.len(), 12);
        assert_eq!(&bytes[..4], &1u32.to_ne_bytes());
        assert_eq!(vec_from_bytes::<u32>(bytes), Some(Ok(items.to_vec())));
        let mut more = vec![7u32];
        assert_eq!(extend_from_bytes(&mut more, bytes), Some(Ok(3)));
        assert_eq!(more, [7, 1, 0xdead_beef, u32::MAX]);
        assert_eq!(extend_from_bytes(&mut more, &bytes[..5]), Some(Err(5)));
        assert_eq!(more.len(), 4);
        assert_eq!(extend_from_bytes(&mut vec!['a'], &[0; 4]), None);
        // Placed past the end (zeros in the gap), then into the gap, then
        // over items already there.
        let mut placed = vec![9u32];
        assert_eq!(place_from_bytes(&mut placed, 3, &bytes[..8]), Some(Ok(2)));
        assert_eq!(placed, [9, 0, 0, 1, 0xdead_beef]);
        assert_eq!(place_from_bytes(&mut placed, 1, &bytes[8..]), Some(Ok(1)));
        assert_eq!(placed, [9, u32::MAX, 0, 1, 0xdead_beef]);
        assert_eq!(place_from_bytes(&mut placed, 0, bytes), Some(Ok(3)));
        assert_eq!(placed, [1, 0xdead_beef, u32::MAX, 1, 0xdead_beef]);
        assert_eq!(place_from_bytes(&mut placed, 9, &bytes[..3]), Some(Err(3)));
        assert_eq!(
            place_from_bytes(&mut placed, usize::MAX, bytes),
            Some(Err(12))
        );
        assert_eq!(placed.len(), 5, "a refused placement writes nothing");
        assert_eq!(place_from_bytes(&mut vec!['a'], 0, &[0; 4]), None);
        let mut dst = [0u8; 14];
        let mut it = [5u32, 6, 7, 8].into_iter();
        assert_eq!(
            write_from_iter(&mut dst, &mut it),
            Some(3),
            "three whole items fit"
        );
        assert_eq!(&dst[..12], as_bytes(&[5u32, 6, 7]).unwrap());
        assert_eq!(it.next(), Some(8), "the fourth was not pulled");
        assert_eq!(write_from_iter(&mut dst, &mut [1u32].into_iter()), Some(1));
        assert_eq!(write_from_iter(&mut dst, &mut "ab".chars()), None);
        assert_eq!(vec_from_bytes::<u32>(&bytes[..11]), Some(Err(11)));
        assert_eq!(vec_from_bytes::<f64>(&[]), Some(Ok(Vec::new())));
    }

    #[test]
    fn items_are_read_whole_at_any_alignment_or_not_at_all() {
        let mut bytes = vec![0xffu8];
        bytes.extend_from_slice(as_bytes(&[3u64, u64::MAX]).unwrap());
        // Unaligned: the items start at offset 1.
        assert_eq!(read_at::<u64>(&bytes[1..], 0), Some(3));
        assert_eq!(read_at::<u64>(&bytes[1..], 1), Some(u64::MAX));
        assert_eq!(read_at::<u64>(&bytes[1..], 2), None, "past the end");
        assert_eq!(read_at::<u64>(&bytes[1..16], 1), None, "a torn item");
        assert_eq!(
            read_at::<u64>(&bytes, usize::MAX),
            None,
            "an overflowing index"
        );
        assert_eq!(read_at::<char>(&bytes, 0), None, "not plain");
    }
}
