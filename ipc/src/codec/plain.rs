//! The fixed-width encoding of number sequences: one block of bytes instead
//! of one variable-length integer per item.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

use super::{base_config, CodecError};
use crate::sys::plain;

/// A slice that encodes as one block of bytes when its items are primitive
/// numbers (`u8` to `u128`, `i8` to `i128`, `usize`, `isize`, `f32`,
/// `f64`), and as the slice itself otherwise. Decode it as a [`PlainVec`].
///
/// The standard encoding writes each integer as a varint, one call per
/// item; this one is a length and a copy, several times faster for large
/// sequences. Bytes are in the machine's own order: use it for values that
/// stay on one machine (a pool's chunks and results), not for the remote
/// manager.
///
/// # Examples
///
/// ```
/// use multiproc::codec::{self, PlainSlice, PlainVec};
///
/// let squares: Vec<u64> = (0..1000u64).map(|x| x * x).collect();
/// let bytes = codec::encode(&PlainSlice(&squares)).unwrap();
/// assert_eq!(bytes.len(), 3 + 8 * 1000); // the length (a 3-byte varint), then the block
/// let back: PlainVec<u64> = codec::decode(&bytes).unwrap();
/// assert_eq!(back.0, squares);
///
/// // Anything else encodes as usual, and decodes the same way.
/// let words = vec!["a".to_string(), "bc".to_string()];
/// let bytes = codec::encode(&PlainSlice(&words)).unwrap();
/// assert_eq!(bytes, codec::encode(&words).unwrap());
/// let back: PlainVec<String> = codec::decode(&bytes).unwrap();
/// assert_eq!(back.0, words);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PlainSlice<'a, T>(pub &'a [T]);

impl<T: Serialize + 'static> Serialize for PlainSlice<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match plain::as_bytes(self.0) {
            Some(bytes) => serializer.serialize_bytes(bytes),
            None => self.0.serialize(serializer),
        }
    }
}

/// A `Vec` decoded from a [`PlainSlice`]'s encoding.
///
/// A block whose length is not a whole number of items is a decoding error.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlainVec<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de> + 'static> Deserialize<'de> for PlainVec<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if plain::is_plain::<T>() {
            deserializer
                .deserialize_bytes(Block(PhantomData))
                .map(PlainVec)
        } else {
            Vec::<T>::deserialize(deserializer).map(PlainVec)
        }
    }
}

impl<T: 'static> PlainVec<T> {
    /// Decodes the encoding of a [`PlainSlice`] of plain numbers, which
    /// must fill `bytes`, straight onto the end of `out` (no intermediate
    /// vector): returns how many items it appended. `None` if `T` is not a
    /// plain number type (decode a `PlainVec` then).
    ///
    /// # Errors
    ///
    /// [`CodecError::Decode`] if `bytes` are not such an encoding (a bad
    /// length, or a block that is not a whole number of items), and
    /// [`CodecError::TrailingBytes`] if bytes remain after it; `out` is
    /// left as it was.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::codec::{self, PlainSlice, PlainVec};
    ///
    /// let mut all = vec![1u32, 2];
    /// let bytes = codec::encode(&PlainSlice(&[3u32, 4, 5])).unwrap();
    /// assert_eq!(PlainVec::append_decoded(&bytes, &mut all).unwrap().unwrap(), 3);
    /// assert_eq!(all, [1, 2, 3, 4, 5]);
    /// assert!(PlainVec::append_decoded(&bytes[..bytes.len() - 1], &mut all).unwrap().is_err());
    /// assert_eq!(all.len(), 5);
    /// assert!(PlainVec::<String>::append_decoded(&bytes, &mut Vec::new()).is_none());
    /// ```
    pub fn append_decoded(bytes: &[u8], out: &mut Vec<T>) -> Option<Result<usize, CodecError>> {
        if !plain::is_plain::<T>() {
            return None;
        }
        let (block, used): (&[u8], usize) =
            match bincode::serde::borrow_decode_from_slice(bytes, base_config()) {
                Ok(v) => v,
                Err(e) => return Some(Err(CodecError::Decode(e.to_string()))),
            };
        if used != bytes.len() {
            return Some(Err(CodecError::TrailingBytes {
                extra: bytes.len() - used,
            }));
        }
        plain::extend_from_bytes(out, block).map(|r| {
            r.map_err(|len| {
                CodecError::Decode(format!(
                    "a block of {len} bytes is not a whole number of {}-byte numbers",
                    std::mem::size_of::<T>()
                ))
            })
        })
    }
}

/// Turns a block of bytes into the plain `T`s it holds.
struct Block<T>(PhantomData<T>);

impl<T: 'static> Visitor<'_> for Block<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a block of {}-byte numbers", std::mem::size_of::<T>())
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<T>, E> {
        match plain::vec_from_bytes::<T>(bytes) {
            Some(Ok(items)) => Ok(items),
            Some(Err(len)) => Err(E::invalid_length(len, &self)),
            None => Err(E::custom("not a plain number type")),
        }
    }
}
