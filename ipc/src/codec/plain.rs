//! The fixed-width encoding of number sequences: one block of bytes instead
//! of one variable-length integer per item.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, DeserializeOwned, Deserializer, Visitor};
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
        let at = out.len();
        Self::place_decoded(bytes, out, at)
    }

    /// Like [`append_decoded`](PlainVec::append_decoded), but writes the
    /// items into `out` from index `at`: over the items there, growing
    /// `out` as needed, with zeros between its old end and `at` if `at` is
    /// past it. For results that arrive out of order, each placed where it
    /// belongs in one vector. `out` grows to `at` plus the items decoded:
    /// `at` is the caller's own index, never one read from the bytes (an
    /// `at` beyond memory fails the allocation as `Vec::reserve` does).
    ///
    /// # Errors
    ///
    /// As [`append_decoded`](PlainVec::append_decoded); `out` is left as
    /// it was.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::codec::{self, PlainSlice, PlainVec};
    ///
    /// let mut all: Vec<u32> = Vec::new();
    /// let later = codec::encode(&PlainSlice(&[3u32, 4])).unwrap();
    /// let first = codec::encode(&PlainSlice(&[1u32, 2])).unwrap();
    /// assert_eq!(PlainVec::place_decoded(&later, &mut all, 2).unwrap().unwrap(), 2);
    /// assert_eq!(all, [0, 0, 3, 4]);
    /// assert_eq!(PlainVec::place_decoded(&first, &mut all, 0).unwrap().unwrap(), 2);
    /// assert_eq!(all, [1, 2, 3, 4]);
    /// ```
    pub fn place_decoded(
        bytes: &[u8],
        out: &mut Vec<T>,
        at: usize,
    ) -> Option<Result<usize, CodecError>> {
        let items = match decode_plain_parts::<(), T>(bytes)? {
            Ok(((), items)) => items,
            Err(e) => return Some(Err(e)),
        };
        let placed = plain::place_from_bytes(out, at, items.bytes)?;
        Some(placed.map_err(|_| {
            CodecError::Decode(format!(
                "{} items do not fit in a vector at index {at}",
                items.len()
            ))
        }))
    }
}

/// Whether `T` is a plain number type, which a [`PlainSlice`] encodes as
/// one block of bytes.
pub fn is_plain<T: 'static>() -> bool {
    plain::is_plain::<T>()
}

/// Writes the encoding of `(head, PlainSlice(&items))` into `out` for
/// plain numbers pulled from an iterator, without collecting them first:
/// room for `n` items is laid out, up to `n` are pulled, and the encoding
/// is shortened if the iterator ends early. Returns the encoding's length
/// and the number of items it holds, or `None` if `T` is not a plain
/// number type (collect the items and encode a [`PlainSlice`] then).
/// `out` must be at least [`plain_encoded_len`]`::<H, T>(head, n)` bytes
/// long. For many encodings with one head, [`PlainHead`] encodes the head
/// once.
///
/// # Errors
///
/// [`CodecError::Encode`] if `head` does not encode or `out` is too short
/// (nothing pulled then).
///
/// # Examples
///
/// ```
/// use multiproc::codec::{self, encode_plain_from_iter, plain_encoded_len, PlainSlice};
///
/// let len = plain_encoded_len::<_, u64>(&"head", 5).unwrap().unwrap();
/// let mut out = vec![0u8; len];
/// // Five items wanted, three come: the encoding holds three.
/// let (used, n) = encode_plain_from_iter(&"head", 5, &mut (1u64..4), &mut out).unwrap().unwrap();
/// assert_eq!(n, 3);
/// assert_eq!(&out[..used], codec::encode(&("head", PlainSlice(&[1u64, 2, 3]))).unwrap());
/// ```
pub fn encode_plain_from_iter<H: Serialize + ?Sized, T: 'static>(
    head: &H,
    n: usize,
    items: &mut impl Iterator<Item = T>,
    out: &mut [u8],
) -> Option<Result<(usize, usize), CodecError>> {
    Some(PlainHead::<T>::new(head)?.and_then(|h| h.encode_from_iter(n, items, out)))
}

/// The length of the encoding of `(head, PlainSlice(&items))` for `n`
/// plain numbers of type `T` (what [`encode_plain_from_iter`] needs);
/// `None` if `T` is not plain.
///
/// # Errors
///
/// [`CodecError::Encode`] if `head` does not encode.
pub fn plain_encoded_len<H: Serialize + ?Sized, T: 'static>(
    head: &H,
    n: usize,
) -> Option<Result<usize, CodecError>> {
    Some(PlainHead::<T>::new(head)?.map(|h| h.encoded_len(n)))
}

/// The encoded head of many encodings of `(head, PlainSlice(&items))`
/// with one head and plain numbers of type `T` pulled from an iterator (a
/// map's chunks: the function, then the items): the head is encoded once,
/// each encoding copies it.
///
/// # Examples
///
/// ```
/// use multiproc::codec::{self, PlainHead, PlainSlice};
///
/// let head = PlainHead::<u32>::new(&("f", 7u8)).unwrap().unwrap();
/// let mut items = 0u32..10;
/// let mut chunks = Vec::new();
/// // Chunks of four: the last one holds the two items left.
/// for _ in 0..3 {
///     let mut out = vec![0u8; head.encoded_len(4)];
///     let (used, n) = head.encode_from_iter(4, &mut items, &mut out).unwrap();
///     assert_eq!(&out[..used], codec::encode(&(("f", 7u8), PlainSlice(&(0..10u32).skip(4 * chunks.len()).take(n).collect::<Vec<_>>()))).unwrap());
///     chunks.push(n);
/// }
/// assert_eq!(chunks, [4, 4, 2]);
/// assert!(PlainHead::<String>::new(&"f").is_none());
/// ```
pub struct PlainHead<T> {
    head: Vec<u8>,
    _items: PhantomData<fn() -> T>,
}

impl<T: 'static> PlainHead<T> {
    /// Encodes `head`; `None` if `T` is not a plain number type.
    ///
    /// # Errors
    ///
    /// [`CodecError::Encode`] if `head` does not encode.
    pub fn new<H: Serialize + ?Sized>(head: &H) -> Option<Result<PlainHead<T>, CodecError>> {
        if !plain::is_plain::<T>() {
            return None;
        }
        let mut bytes = Vec::with_capacity(32);
        Some(
            super::Codec::default()
                .encode_into(head, &mut bytes)
                .map(|_| PlainHead {
                    head: bytes,
                    _items: PhantomData,
                }),
        )
    }

    /// The length of the encoding with `n` items.
    pub fn encoded_len(&self, n: usize) -> usize {
        let (_, len_len) = Self::len_prefix(n);
        self.head.len() + len_len + n.saturating_mul(std::mem::size_of::<T>())
    }

    /// The items of an encoding of `n` items laid out in `out` by
    /// [`encode_from_iter`](PlainHead::encode_from_iter), as far as `out`
    /// holds them: for a caller whose iterator stopped part way (a panic),
    /// the items pulled before it are the first ones here.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::codec::PlainHead;
    ///
    /// let head = PlainHead::<u16>::new(&()).unwrap().unwrap();
    /// let mut out = vec![0u8; head.encoded_len(3)];
    /// head.encode_from_iter(3, &mut [7u16, 8, 9].into_iter(), &mut out).unwrap();
    /// assert_eq!(head.laid_out(&out, 3).iter().collect::<Vec<_>>(), [7, 8, 9]);
    /// assert_eq!(head.laid_out(&out[..4], 3).len(), 1, "as far as out goes");
    /// ```
    pub fn laid_out<'o>(&self, out: &'o [u8], n: usize) -> PlainItems<'o, T> {
        let size = std::mem::size_of::<T>();
        let (_, len_len) = Self::len_prefix(n);
        let block = out.get(self.head.len() + len_len..).unwrap_or(&[]);
        let whole = block.len().min(n.saturating_mul(size)) / size * size;
        PlainItems {
            bytes: &block[..whole],
            _items: PhantomData,
        }
    }

    /// The block length of `n` items as bincode prefixes a byte string (a
    /// `u64` varint), in at most 9 bytes.
    fn len_prefix(n: usize) -> ([u8; 9], usize) {
        let bytes = n.saturating_mul(std::mem::size_of::<T>()) as u64;
        let mut buf = [0u8; 9];
        // A u64 varint takes at most 9 bytes: this cannot fail.
        let used = bincode::serde::encode_into_slice(bytes, &mut buf, base_config()).unwrap_or(0);
        (buf, used)
    }

    /// As [`encode_plain_from_iter`], with this head: writes up to `n`
    /// items pulled from `items` into `out`, which must be at least
    /// [`encoded_len`](PlainHead::encoded_len)`(n)` bytes long; returns the
    /// encoding's length and the number of items it holds.
    ///
    /// # Errors
    ///
    /// [`CodecError::Encode`] if `out` is too short (nothing pulled then).
    pub fn encode_from_iter(
        &self,
        n: usize,
        items: &mut impl Iterator<Item = T>,
        out: &mut [u8],
    ) -> Result<(usize, usize), CodecError> {
        let size = std::mem::size_of::<T>();
        let (len, len_len) = Self::len_prefix(n);
        let prefix = self.head.len() + len_len;
        let end = prefix + n.saturating_mul(size);
        let Some(room) = out.get_mut(..end) else {
            return Err(CodecError::Encode(format!(
                "{} bytes of room for a {end}-byte encoding",
                out.len()
            )));
        };
        room[..self.head.len()].copy_from_slice(&self.head);
        room[self.head.len()..prefix].copy_from_slice(&len[..len_len]);
        let got = plain::write_from_iter(&mut room[prefix..], items)
            .ok_or_else(|| CodecError::Encode("the items are not plain numbers".to_string()))?;
        if got == n {
            return Ok((end, n));
        }
        // Fewer items: a shorter length, and the items moved up behind it.
        let (short, short_len) = Self::len_prefix(got);
        let bytes = got * size;
        let at = self.head.len() + short_len;
        room.copy_within(prefix..prefix + bytes, at);
        room[self.head.len()..at].copy_from_slice(&short[..short_len]);
        Ok((at + bytes, got))
    }
}

/// Reads the encoding of `(head, PlainSlice(&items))` for plain numbers of
/// type `T` (what [`PlainHead::encode_from_iter`] writes) without
/// collecting the items: the decoded head, and the items read where they
/// are in `bytes`. `None` if `T` is not a plain number type (decode a
/// `(H, PlainVec<T>)` then).
///
/// # Errors
///
/// [`CodecError::Decode`] if the head does not decode or the block is not
/// a whole number of `T`s, [`CodecError::TrailingBytes`] if bytes remain
/// after the block.
///
/// # Examples
///
/// ```
/// use multiproc::codec::{self, decode_plain_parts, PlainSlice};
///
/// let bytes = codec::encode(&("f", PlainSlice(&[1u32, 2, 3]))).unwrap();
/// let (head, items) = decode_plain_parts::<String, u32>(&bytes).unwrap().unwrap();
/// assert_eq!(head, "f");
/// assert_eq!(items.len(), 3);
/// assert_eq!(items.iter().map(|x| x * 10).collect::<Vec<_>>(), [10, 20, 30]);
/// assert!(decode_plain_parts::<String, u32>(&bytes[..bytes.len() - 1]).unwrap().is_err());
/// assert!(decode_plain_parts::<String, char>(&bytes).is_none());
/// ```
pub fn decode_plain_parts<H: DeserializeOwned, T: 'static>(
    bytes: &[u8],
) -> Option<Result<(H, PlainItems<'_, T>), CodecError>> {
    if !plain::is_plain::<T>() {
        return None;
    }
    let parts = || {
        let (head, used) = super::Codec::default().decode_prefix::<H>(bytes)?;
        let rest = bytes.get(used..).unwrap_or(&[]);
        let (block, used): (&[u8], usize) =
            bincode::serde::borrow_decode_from_slice(rest, base_config())
                .map_err(|e| CodecError::Decode(e.to_string()))?;
        if used != rest.len() {
            return Err(CodecError::TrailingBytes {
                extra: rest.len() - used,
            });
        }
        PlainItems::new(block)
            .map(|items| (head, items))
            .ok_or_else(|| {
                CodecError::Decode(format!(
                    "a block of {} bytes is not a whole number of {}-byte numbers",
                    block.len(),
                    std::mem::size_of::<T>()
                ))
            })
    };
    Some(parts())
}

/// Plain numbers of type `T` read in place from a block of bytes (from
/// [`decode_plain_parts`]): no vector is made for them.
#[derive(Debug, Clone, Copy)]
pub struct PlainItems<'a, T> {
    bytes: &'a [u8],
    _items: PhantomData<fn() -> T>,
}

impl<'a, T: 'static> PlainItems<'a, T> {
    /// The items whose bytes are `bytes` (for a plain `T`); `None` if
    /// `bytes` is not a whole number of `T`s.
    fn new(bytes: &'a [u8]) -> Option<PlainItems<'a, T>> {
        let size = std::mem::size_of::<T>();
        (bytes.len() % size == 0).then_some(PlainItems {
            bytes,
            _items: PhantomData,
        })
    }

    /// How many items there are.
    pub fn len(&self) -> usize {
        self.bytes.len() / std::mem::size_of::<T>()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Item `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<T> {
        plain::read_at(self.bytes, i)
    }

    /// The items in order.
    pub fn iter(&self) -> impl Iterator<Item = T> + 'a {
        let bytes = self.bytes;
        // Every index below `len` is a whole item: none is skipped.
        (0..self.len()).filter_map(move |i| plain::read_at(bytes, i))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every wanted count against every count the iterator has, across the
    /// lengths where the block's length prefix changes width (250 and
    /// 65,535 bytes): the same bytes as encoding the collected items.
    #[test]
    fn streamed_encodings_equal_encoding_the_collected_items() {
        let head = (7u8, "fn");
        for (wanted, have) in [
            (0, 0),
            (3, 3),
            (3, 1),
            (40, 40),
            (40, 20),
            (40, 0),
            (9000, 8191),
        ] {
            let items: Vec<u64> = (0..have as u64).map(|i| i * 31).collect();
            let len = plain_encoded_len::<_, u64>(&head, wanted).unwrap().unwrap();
            let mut out = vec![0xAA; len];
            let mut it = items.iter().copied();
            let (used, got) = encode_plain_from_iter(&head, wanted, &mut it, &mut out)
                .unwrap()
                .unwrap();
            assert_eq!(got, have.min(wanted));
            let want = crate::codec::encode(&(head, PlainSlice(&items[..got]))).unwrap();
            assert_eq!(&out[..used], &want[..], "{wanted} wanted, {have} there");
        }
    }

    /// Parts decode as the collected items would, and every malformed
    /// encoding is an error: a head that does not decode, a torn block,
    /// trailing bytes, a block cut short.
    #[test]
    fn parts_read_in_place_equal_the_decoded_items_or_fail_clearly() {
        let items: Vec<u64> = (0..300u64).map(|i| i * 7).collect();
        let bytes = crate::codec::encode(&((3u8, "fn"), PlainSlice(&items))).unwrap();
        let (head, got) = decode_plain_parts::<(u8, String), u64>(&bytes)
            .unwrap()
            .unwrap();
        assert_eq!(head, (3, "fn".to_string()));
        assert_eq!(got.len(), 300);
        assert_eq!(got.get(299), Some(299 * 7));
        assert_eq!(got.get(300), None);
        assert_eq!(got.iter().collect::<Vec<_>>(), items);
        let empty = crate::codec::encode(&((), PlainSlice::<u64>(&[]))).unwrap();
        let (_, none) = decode_plain_parts::<(), u64>(&empty).unwrap().unwrap();
        assert!(none.is_empty() && none.iter().next().is_none());
        let err = |b: &[u8]| {
            decode_plain_parts::<(u8, String), u64>(b)
                .unwrap()
                .unwrap_err()
        };
        assert!(
            matches!(err(&bytes[..bytes.len() - 3]), CodecError::Decode(_)),
            "cut short"
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            err(&longer),
            CodecError::TrailingBytes { extra: 1 }
        ));
        // A block of 9 bytes announced and present: not a whole number of u64s.
        let torn = crate::codec::encode(&((3u8, "fn"), serde_bytes_of(&[0u8; 9]))).unwrap();
        assert!(
            err(&torn).to_string().contains("not a whole number"),
            "{}",
            err(&torn)
        );
        assert!(
            matches!(err(&[0xff, 0xff]), CodecError::Decode(_)),
            "a bad head"
        );
    }

    /// Placing reads the block as `decode_plain_parts` does: the same
    /// errors, and an index the items cannot go to is one too.
    #[test]
    fn placing_refuses_a_torn_block_and_an_index_past_memory_and_writes_nothing() {
        let mut out = vec![1u64, 2];
        let torn = crate::codec::encode(&serde_bytes_of(&[0u8; 9])).unwrap();
        let e = PlainVec::place_decoded(&torn, &mut out, 0)
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains("not a whole number"), "{e}");
        let good = crate::codec::encode(&PlainSlice(&[5u64])).unwrap();
        let e = PlainVec::place_decoded(&good, &mut out, usize::MAX)
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains("do not fit"), "{e}");
        assert_eq!(out, [1, 2]);
        assert_eq!(
            PlainVec::place_decoded(&good, &mut out, 1)
                .unwrap()
                .unwrap(),
            1
        );
        assert_eq!(out, [1, 5]);
    }

    /// Bytes encoded as a byte string (what a `PlainSlice` of plain numbers is).
    fn serde_bytes_of(b: &[u8]) -> PlainSlice<'_, u8> {
        PlainSlice(b)
    }

    #[test]
    fn too_little_room_and_other_types_are_refused() {
        let mut out = [0u8; 8];
        let mut it = 0u64..10;
        assert!(encode_plain_from_iter(&(), 2, &mut it, &mut out)
            .unwrap()
            .is_err());
        assert_eq!(it.next(), Some(0), "nothing pulled");
        assert!(encode_plain_from_iter(&(), 1, &mut "x".chars(), &mut out).is_none());
        assert!(plain_encoded_len::<_, bool>(&(), 1).is_none());
        assert!(is_plain::<f64>() && !is_plain::<String>());
    }
}
