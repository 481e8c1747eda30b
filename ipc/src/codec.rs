//! The wire codec: the one place where values become bytes and bytes become values.
//!
//! Encoding is serde + bincode 2 (standard configuration: little endian, varint
//! integers). Everything that crosses a process boundary (task arguments,
//! results, queue items, manager requests) goes through [`encode`] and
//! [`decode`], so the format can change in exactly one file.
//!
//! # Limits
//!
//! A [`Codec`] has a maximum message size ([`DEFAULT_MAX_MESSAGE`] unless set).
//! Encoding a larger value and decoding a larger buffer are errors. Decoding
//! never trusts a length prefix: bincode's allocation budget is set from the
//! size of the input, so random, truncated or corrupted bytes produce a
//! [`CodecError`], never a panic and never an allocation much larger than the
//! input itself.
//!
//! # Examples
//!
//! ```
//! use multiproc::codec::{self, Codec};
//!
//! let bytes = codec::encode(&("hello", 42u32)).unwrap();
//! let back: (String, u32) = codec::decode(&bytes).unwrap();
//! assert_eq!(back, ("hello".to_string(), 42));
//!
//! // A small limit rejects a big message.
//! let small = Codec::with_max_message(8);
//! assert!(small.encode(&vec![0u8; 100]).is_err());
//! // Garbage is an error, not a panic.
//! assert!(codec::decode::<String>(&[0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
//! ```

use std::fmt;

use bincode::config;

mod plain;
pub use plain::{
    decode_plain_parts, encode_plain_from_iter, is_plain, plain_encoded_len, PlainHead, PlainItems,
    PlainSlice, PlainVec,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The default maximum size of one encoded message: 1 GiB.
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 30;

/// The largest maximum a [`Codec`] accepts: 8 GiB.
pub const HARD_MAX_MESSAGE: usize = 1 << 33;

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The encoded message would be, or is, larger than the limit.
    TooLarge {
        /// The size of the message in bytes (for encoding: at least this).
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// The value could not be encoded (a serde error from its `Serialize`).
    Encode(String),
    /// The bytes are not a valid encoding of the expected type.
    Decode(String),
    /// The bytes decode to a value but some bytes are left over.
    TrailingBytes {
        /// How many bytes were left.
        extra: usize,
    },
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::TooLarge { size, max } => {
                write!(
                    f,
                    "message of {size} bytes exceeds the limit of {max} bytes"
                )
            }
            CodecError::Encode(e) => write!(f, "cannot encode value: {e}"),
            CodecError::Decode(e) => write!(f, "cannot decode message: {e}"),
            CodecError::TrailingBytes { extra } => {
                write!(f, "cannot decode message: {extra} trailing bytes")
            }
        }
    }
}

impl std::error::Error for CodecError {}

/// An encoder/decoder with a maximum message size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    max_message: usize,
}

impl Default for Codec {
    fn default() -> Codec {
        Codec {
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }
}

fn base_config() -> config::Configuration {
    config::standard()
}

/// Decodes with a bincode allocation budget of `LIMIT` bytes; `borrowed`:
/// through bincode's borrowing decoder (byte strings are visited as slices
/// of `bytes`, which [`SharedBytes`](crate::shared_bytes::SharedBytes)
/// keeps in place).
fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
    borrowed: bool,
) -> Result<(T, usize), bincode::error::DecodeError> {
    let config = base_config().with_limit::<LIMIT>();
    if borrowed {
        bincode::serde::borrow_decode_from_slice(bytes, config)
    } else {
        bincode::serde::decode_from_slice(bytes, config)
    }
}

impl Codec {
    /// A codec whose messages may be at most `max_message` bytes (clamped to
    /// [`HARD_MAX_MESSAGE`]).
    pub fn with_max_message(max_message: usize) -> Codec {
        Codec {
            max_message: max_message.min(HARD_MAX_MESSAGE),
        }
    }

    /// The maximum message size in bytes.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Encodes `value` into a new buffer.
    ///
    /// # Errors
    ///
    /// [`CodecError::Encode`] if the value's `Serialize` fails,
    /// [`CodecError::TooLarge`] if the result exceeds the limit.
    pub fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        let mut buf = Vec::new();
        self.encode_into(value, &mut buf)?;
        Ok(buf)
    }

    /// Appends the encoding of `value` to `buf`; on error `buf` is left as it was.
    ///
    /// # Errors
    ///
    /// As [`encode`](Codec::encode).
    pub fn encode_into<T: Serialize + ?Sized>(
        &self,
        value: &T,
        buf: &mut Vec<u8>,
    ) -> Result<usize, CodecError> {
        let start = buf.len();
        match bincode::serde::encode_into_std_write(value, buf, base_config()) {
            Ok(n) if n <= self.max_message => Ok(n),
            Ok(n) => {
                buf.truncate(start);
                Err(CodecError::TooLarge {
                    size: n,
                    max: self.max_message,
                })
            }
            Err(e) => {
                buf.truncate(start);
                Err(CodecError::Encode(e.to_string()))
            }
        }
    }

    /// Encodes `value` into the start of `out`, returning the number of
    /// bytes written (size `out` with [`encoded_len`](Codec::encoded_len)).
    ///
    /// # Errors
    ///
    /// [`CodecError::Encode`] if the value's `Serialize` fails or `out` is
    /// too short (`out` may then hold part of the message),
    /// [`CodecError::TooLarge`] if the message exceeds the limit.
    pub fn encode_into_slice<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut [u8],
    ) -> Result<usize, CodecError> {
        match bincode::serde::encode_into_slice(value, out, base_config()) {
            Ok(n) if n <= self.max_message => Ok(n),
            Ok(n) => Err(CodecError::TooLarge {
                size: n,
                max: self.max_message,
            }),
            Err(e) => Err(CodecError::Encode(e.to_string())),
        }
    }

    /// Encodes `value` straight into `writer` (a shared-memory block, a
    /// socket...), returning the number of bytes written.
    ///
    /// # Errors
    ///
    /// [`CodecError::Encode`] if the value's `Serialize` or the writer fails
    /// (the writer may then hold part of the message),
    /// [`CodecError::TooLarge`] if the message exceeds the limit.
    pub fn encode_to_writer<T: Serialize + ?Sized, W: std::io::Write>(
        &self,
        value: &T,
        writer: &mut W,
    ) -> Result<usize, CodecError> {
        let n = self.encoded_len(value)?;
        if n > self.max_message {
            return Err(CodecError::TooLarge {
                size: n,
                max: self.max_message,
            });
        }
        bincode::serde::encode_into_std_write(value, writer, base_config())
            .map_err(|e| CodecError::Encode(e.to_string()))
    }

    /// The exact encoded size of `value`, without allocating.
    ///
    /// # Errors
    ///
    /// [`CodecError::Encode`] if the value's `Serialize` fails.
    pub fn encoded_len<T: Serialize + ?Sized>(&self, value: &T) -> Result<usize, CodecError> {
        let mut counter = ByteCounter(0);
        bincode::serde::encode_into_std_write(value, &mut counter, base_config())
            .map_err(|e| CodecError::Encode(e.to_string()))?;
        Ok(counter.0)
    }

    /// Decodes one value that must fill `bytes` exactly.
    ///
    /// # Errors
    ///
    /// [`CodecError::TooLarge`] if `bytes` exceeds the limit,
    /// [`CodecError::Decode`] if they are not a valid encoding of `T`,
    /// [`CodecError::TrailingBytes`] if bytes remain after the value.
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let (value, used) = self.decode_prefix(bytes)?;
        if used != bytes.len() {
            return Err(CodecError::TrailingBytes {
                extra: bytes.len() - used,
            });
        }
        Ok(value)
    }

    /// Decodes one value from the start of `bytes`, returning it and the
    /// number of bytes it used.
    ///
    /// # Errors
    ///
    /// As [`decode`](Codec::decode), except that trailing bytes are allowed.
    pub fn decode_prefix<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> Result<(T, usize), CodecError> {
        self.decode_prefix_with(bytes, false)
    }

    /// Decodes one value that must fill the first `len` bytes of `block`
    /// exactly, with the [`SharedBytes`](crate::shared_bytes::SharedBytes)
    /// in it reading the block in place instead of copying their bytes
    /// (they keep the block mapped while they live).
    ///
    /// # Errors
    ///
    /// As [`decode`](Codec::decode); [`CodecError::Decode`] if `len` is
    /// beyond the block.
    pub fn decode_in_place<T: DeserializeOwned>(
        &self,
        block: &std::sync::Arc<crate::shm::SharedMemory>,
        len: usize,
    ) -> Result<T, CodecError> {
        let bytes = block.as_slice().get(..len).ok_or_else(|| {
            CodecError::Decode(format!(
                "a {len}-byte message in a {}-byte block",
                block.size()
            ))
        })?;
        let _in_place = crate::shared_bytes::InPlace::begin(block);
        let (value, used) = self.decode_prefix_with(bytes, true)?;
        if used != len {
            return Err(CodecError::TrailingBytes { extra: len - used });
        }
        Ok(value)
    }

    fn decode_prefix_with<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
        borrowed: bool,
    ) -> Result<(T, usize), CodecError> {
        let n = bytes.len();
        if n > self.max_message {
            return Err(CodecError::TooLarge {
                size: n,
                max: self.max_message,
            });
        }
        // bincode charges the budget with the decoded size of every primitive
        // (8 bytes for a u64 that took 1 varint byte), so a valid message can
        // claim up to 16x its encoded size (a Vec<u128> of small numbers).
        let n = n.saturating_mul(16);
        // Through serde, bincode allocates up front only for strings and byte
        // buffers, and it charges exactly their length to the budget; a valid
        // message never claims more than its own size. The budget is the next
        // step of a ladder at or above the input size, so a lying length
        // prefix can cost at most 8x the input (at least 4 KiB), never more.
        let r = if n <= 1 << 12 {
            decode_limited::<T, { 1 << 12 }>(bytes, borrowed)
        } else if n <= 1 << 15 {
            decode_limited::<T, { 1 << 15 }>(bytes, borrowed)
        } else if n <= 1 << 18 {
            decode_limited::<T, { 1 << 18 }>(bytes, borrowed)
        } else if n <= 1 << 21 {
            decode_limited::<T, { 1 << 21 }>(bytes, borrowed)
        } else if n <= 1 << 24 {
            decode_limited::<T, { 1 << 24 }>(bytes, borrowed)
        } else if n <= 1 << 27 {
            decode_limited::<T, { 1 << 27 }>(bytes, borrowed)
        } else if n <= 1 << 30 {
            decode_limited::<T, { 1 << 30 }>(bytes, borrowed)
        } else {
            decode_limited::<T, HARD_MAX_MESSAGE>(bytes, borrowed)
        };
        r.map_err(|e| CodecError::Decode(e.to_string()))
    }
}

struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Encodes `value` with the default [`Codec`].
///
/// # Errors
///
/// See [`Codec::encode`].
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Codec::default().encode(value)
}

/// Decodes a `T` that fills `bytes` exactly, with the default [`Codec`].
///
/// # Errors
///
/// See [`Codec::decode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Codec::default().decode(bytes)
}

/// Encodes `value` with the default [`Codec`] in an attachment scope
/// ([`FdScope`](crate::fd::FdScope)): returns the bytes and duplicates of
/// the descriptors of the [`Fd`](crate::Fd)s in it, to send together
/// (`SCM_RIGHTS`).
///
/// # Examples
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use multiproc::{codec, Fd};
///
/// let (a, _b) = UnixStream::pair()?;
/// let (bytes, fds) = codec::encode_with_fds(&Fd::new(a))?;
/// assert_eq!(fds.len(), 1);
/// let back: Fd<UnixStream> = codec::decode_with_fds(&bytes, fds)?;
/// # drop(back);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// As [`Codec::encode`], and [`CodecError::Encode`] for a descriptor that
/// cannot be duplicated (not open).
pub fn encode_with_fds<T: Serialize + ?Sized>(
    value: &T,
) -> Result<(Vec<u8>, Vec<std::os::fd::OwnedFd>), CodecError> {
    let scope = crate::fd::FdScope::begin();
    let bytes = encode(value)?;
    Ok((bytes, scope.finish()?))
}

/// Decodes a `T` that fills `bytes` exactly, with `fds` (the descriptors
/// that came with the bytes) available to its [`Fd`](crate::Fd)s; those
/// not taken are closed.
///
/// # Examples
///
/// See [`encode_with_fds`].
///
/// # Errors
///
/// As [`Codec::decode`]; an `Fd` whose descriptor is not in `fds` is a
/// [`CodecError::Decode`].
pub fn decode_with_fds<T: DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<std::os::fd::OwnedFd>,
) -> Result<T, CodecError> {
    crate::fd::with_received(fds, || decode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use std::collections::HashMap;

    #[test]
    fn encoding_into_a_slice_gives_the_bytes_of_encode_or_a_clear_error() {
        let c = Codec::default();
        let value = (7u64, "seven".to_string(), vec![1u32, 2, 3]);
        let want = c.encode(&value).unwrap();
        let mut out = vec![0xAAu8; want.len() + 5];
        assert_eq!(c.encode_into_slice(&value, &mut out).unwrap(), want.len());
        assert_eq!(&out[..want.len()], &want[..]);
        assert!(
            out[want.len()..].iter().all(|&b| b == 0xAA),
            "wrote past the message"
        );
        let mut short = vec![0u8; want.len() - 1];
        assert!(matches!(
            c.encode_into_slice(&value, &mut short),
            Err(CodecError::Encode(_))
        ));
        let small = Codec::with_max_message(4);
        assert!(matches!(
            small.encode_into_slice(&value, &mut out),
            Err(CodecError::TooLarge { size, max: 4 }) if size == want.len()
        ));
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Task {
            id: u64,
            name: String,
            args: Vec<u8>,
        },
        Map(HashMap<String, Vec<i64>>),
        Nested(Option<Box<Msg>>),
        Unit,
    }

    #[test]
    fn round_trips() {
        let m = Msg::Task {
            id: 7,
            name: "square".into(),
            args: vec![1, 2, 3],
        };
        let b = encode(&m).unwrap();
        assert_eq!(decode::<Msg>(&b).unwrap(), m);
        assert_eq!(Codec::default().encoded_len(&m).unwrap(), b.len());
    }

    #[test]
    fn lying_length_prefix_is_an_error_not_an_allocation() {
        // A String claiming 2^62 bytes followed by nothing.
        let mut b = vec![0xfd];
        b.extend_from_slice(&(1u64 << 62).to_le_bytes());
        let e = decode::<String>(&b).unwrap_err();
        assert!(matches!(e, CodecError::Decode(_)), "{e:?}");
        let e = decode::<Vec<u8>>(&b).unwrap_err();
        assert!(matches!(e, CodecError::Decode(_)), "{e:?}");
        let e = decode::<Vec<String>>(&b).unwrap_err();
        assert!(matches!(e, CodecError::Decode(_)), "{e:?}");
    }

    #[test]
    fn limits_apply_both_ways() {
        let c = Codec::with_max_message(16);
        let big = vec![7u8; 64];
        assert!(matches!(c.encode(&big), Err(CodecError::TooLarge { .. })));
        let bytes = encode(&big).unwrap();
        assert!(matches!(
            c.decode::<Vec<u8>>(&bytes),
            Err(CodecError::TooLarge { .. })
        ));
        let mut buf = vec![1, 2, 3];
        assert!(c.encode_into(&big, &mut buf).is_err());
        assert_eq!(buf, vec![1, 2, 3], "failed encode must not leave bytes");
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut b = encode(&5u32).unwrap();
        b.push(0);
        assert_eq!(
            decode::<u32>(&b).unwrap_err(),
            CodecError::TrailingBytes { extra: 1 }
        );
        let (v, used) = Codec::default().decode_prefix::<u32>(&b).unwrap();
        assert_eq!((v, used), (5, b.len() - 1));
    }

    #[test]
    fn small_varints_decode_into_wide_integers() {
        // 5000 u64s of one varint byte each: 5 KB on the wire, 40 KB decoded.
        let v: Vec<u64> = (0..5000).map(|i| i % 100).collect();
        let b = encode(&v).unwrap();
        assert!(b.len() < 6000);
        assert_eq!(decode::<Vec<u64>>(&b).unwrap(), v);
    }

    #[test]
    fn large_message_round_trips() {
        let big = vec![3u8; 5 << 20];
        let b = encode(&big).unwrap();
        assert_eq!(decode::<Vec<u8>>(&b).unwrap(), big);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Msg>(&bytes);
            let _ = decode::<String>(&bytes);
            let _ = decode::<Vec<Vec<u64>>>(&bytes);
            let _ = decode::<(u8, HashMap<u32, String>, Option<f64>)>(&bytes);
        }

        #[test]
        fn truncated_and_corrupted_messages_are_errors_or_values(
            id in any::<u64>(),
            name in ".{0,40}",
            args in proptest::collection::vec(any::<u8>(), 0..200),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            mask in 1u8..=255,
        ) {
            let m = Msg::Task { id, name, args };
            let b = encode(&m).unwrap();
            // Every strict prefix is an error.
            let at = cut.index(b.len());
            prop_assert!(decode::<Msg>(&b[..at]).is_err());
            // A flipped byte either fails or decodes to some value; it never panics.
            let mut c = b.clone();
            let i = flip.index(c.len());
            c[i] ^= mask;
            let _ = decode::<Msg>(&c);
        }
    }
}
