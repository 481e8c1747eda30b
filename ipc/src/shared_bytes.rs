//! [`SharedBytes`]: a byte string that a pool worker reads in place.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

use crate::shm::SharedMemory;

/// An immutable byte string that a pool worker reads where it arrived,
/// without copying it (like ipc-channel's `IpcSharedMemory`).
///
/// A large argument (from about 512 KiB) travels to a pool worker in a
/// shared-memory block. Decoded there as a `Vec<u8>` (or Python's `bytes`)
/// it is copied into fresh memory, and every page of that memory is a page
/// fault; a `SharedBytes` instead points into the block, which the parent
/// reuses for the next large argument. Everywhere else (a small argument,
/// a result, a queue item, a manager value) it is copied like any byte
/// string, and it encodes exactly like `serde_bytes::ByteBuf`.
///
/// Cloning is cheap (a reference count). A worker that keeps a
/// `SharedBytes` beyond its task (in a static, say) keeps the block too:
/// the pool then makes a new block for the next large argument instead of
/// reusing that one, so what the worker kept never changes under it.
///
/// # Examples
///
/// ```
/// use multiproc::{Pool, SharedBytes};
///
/// fn checksum(data: SharedBytes) -> (u64, bool) {
///     let sum = data.iter().map(|&b| u64::from(b)).sum();
///     (sum, data.is_in_place())
/// }
///
/// let pool = Pool::new(2)?;
/// let data = SharedBytes::from(vec![1u8; 4 << 20]);
/// // 4 MiB travel in a block: the worker reads them there.
/// assert_eq!(pool.apply(checksum, data.clone())?, (4 << 20, true));
/// // A small one travels inline and is copied.
/// assert_eq!(pool.apply(checksum, SharedBytes::from(&b"abc"[..]))?, (294, false));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedBytes(Repr);

#[derive(Clone)]
enum Repr {
    Heap(Arc<[u8]>),
    /// `len` bytes from `start` of a block this process has mapped.
    Mapped {
        block: Arc<SharedMemory>,
        start: usize,
        len: usize,
    },
}

impl SharedBytes {
    /// An empty byte string.
    pub fn new() -> SharedBytes {
        SharedBytes(Repr::Heap(Arc::from(&[][..])))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Heap(bytes) => bytes,
            Repr::Mapped { block, start, len } => block
                .as_slice()
                .get(*start..start.saturating_add(*len))
                .unwrap_or(&[]),
        }
    }

    /// Whether these bytes are read in place in a shared-memory block (a
    /// large argument, in the pool worker that received it) rather than
    /// held in this process's own memory.
    pub fn is_in_place(&self) -> bool {
        matches!(self.0, Repr::Mapped { .. })
    }
}

impl Default for SharedBytes {
    fn default() -> SharedBytes {
        SharedBytes::new()
    }
}

impl Deref for SharedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<Vec<u8>> for SharedBytes {
    fn from(bytes: Vec<u8>) -> SharedBytes {
        SharedBytes(Repr::Heap(Arc::from(bytes)))
    }
}

impl From<&[u8]> for SharedBytes {
    fn from(bytes: &[u8]) -> SharedBytes {
        SharedBytes(Repr::Heap(Arc::from(bytes)))
    }
}

impl From<Box<[u8]>> for SharedBytes {
    fn from(bytes: Box<[u8]>) -> SharedBytes {
        SharedBytes(Repr::Heap(Arc::from(bytes)))
    }
}

impl PartialEq for SharedBytes {
    fn eq(&self, other: &SharedBytes) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SharedBytes {}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBytes")
            .field("len", &self.len())
            .field("in_place", &self.is_in_place())
            .finish()
    }
}

impl Serialize for SharedBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ENCODED.set(true);
        serializer.serialize_bytes(self.as_slice())
    }
}

impl<'de> Deserialize<'de> for SharedBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SharedBytes, D::Error> {
        deserializer.deserialize_bytes(BytesVisitor)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = SharedBytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, bytes: &'de [u8]) -> Result<SharedBytes, E> {
        let mapped = IN_PLACE.with(|current| {
            let current = current.borrow();
            let block = current.as_ref()?;
            let whole = block.as_slice();
            let start = (bytes.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
            (start.checked_add(bytes.len())? <= whole.len()).then(|| Repr::Mapped {
                block: Arc::clone(block),
                start,
                len: bytes.len(),
            })
        });
        Ok(SharedBytes(
            mapped.unwrap_or_else(|| Repr::Heap(Arc::from(bytes))),
        ))
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<SharedBytes, E> {
        Ok(SharedBytes::from(bytes))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<SharedBytes, E> {
        Ok(SharedBytes::from(bytes))
    }
}

thread_local! {
    /// The block that [`Codec::decode_in_place`](crate::codec::Codec::decode_in_place)
    /// is decoding on this thread.
    static IN_PLACE: RefCell<Option<Arc<SharedMemory>>> = const { RefCell::new(None) };
    /// Whether a `SharedBytes` was encoded on this thread in the current
    /// [`EncodeScope`].
    static ENCODED: Cell<bool> = const { Cell::new(false) };
}

/// While alive, `SharedBytes` decoded on this thread from slices of
/// `block` point into it.
pub(crate) struct InPlace {
    prev: Option<Arc<SharedMemory>>,
}

impl InPlace {
    pub(crate) fn begin(block: &Arc<SharedMemory>) -> InPlace {
        InPlace {
            prev: IN_PLACE.with(|c| c.replace(Some(Arc::clone(block)))),
        }
    }
}

impl Drop for InPlace {
    fn drop(&mut self) {
        let prev = self.prev.take();
        IN_PLACE.with(|c| *c.borrow_mut() = prev);
    }
}

/// Tells whether a value encoded on this thread holds a [`SharedBytes`]:
/// the pool asks, to have the worker decode such an argument in place.
#[derive(Debug)]
#[must_use = "a scope tells what was encoded when it is finished"]
pub struct EncodeScope {
    prev: bool,
}

impl EncodeScope {
    /// Opens a scope on this thread.
    pub fn begin() -> EncodeScope {
        EncodeScope {
            prev: ENCODED.replace(false),
        }
    }

    /// Closes the scope: whether a `SharedBytes` was encoded in it.
    pub fn finish(self) -> bool {
        let seen = ENCODED.get();
        ENCODED.set(self.prev || seen);
        std::mem::forget(self);
        seen
    }
}

impl Drop for EncodeScope {
    fn drop(&mut self) {
        let seen = ENCODED.get();
        ENCODED.set(self.prev || seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, Codec};

    fn block_holding(bytes: &[u8]) -> Arc<SharedMemory> {
        let name = format!("/mpt-sb-{}-{}", std::process::id(), bytes.len());
        let mut block = SharedMemory::create(&name, bytes.len().max(1)).expect("a block");
        block.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
        Arc::new(block)
    }

    #[test]
    fn decoded_in_place_it_points_into_the_block_and_keeps_it() {
        let value = (
            7u32,
            SharedBytes::from(vec![5u8; 100_000]),
            "tail".to_string(),
        );
        let bytes = codec::encode(&value).unwrap();
        let block = block_holding(&bytes);
        let (n, data, tail): (u32, SharedBytes, String) = Codec::default()
            .decode_in_place(&block, bytes.len())
            .unwrap();
        assert_eq!((n, tail.as_str()), (7, "tail"));
        assert!(data.is_in_place());
        assert_eq!(data, value.1);
        let inside = block.as_slice().as_ptr_range();
        assert!(inside.contains(&data.as_ptr()));
        assert_eq!(Arc::strong_count(&block), 2, "the bytes keep the block");
        drop(data);
        assert_eq!(Arc::strong_count(&block), 1);
        // Outside the decoding, nothing is in place any more.
        let copied: SharedBytes = codec::decode(&codec::encode(&value.1).unwrap()).unwrap();
        assert!(!copied.is_in_place());
        assert_eq!(copied, value.1);
    }

    #[test]
    fn it_encodes_like_a_byte_buffer_and_bad_input_is_an_error() {
        let data = SharedBytes::from(&b"hello"[..]);
        let bytes = codec::encode(&data).unwrap();
        assert_eq!(bytes, [5, b'h', b'e', b'l', b'l', b'o']);
        let back: SharedBytes = codec::decode(&bytes).unwrap();
        assert_eq!(&*back, b"hello");
        assert!(codec::decode::<SharedBytes>(&bytes[..3]).is_err());
        let block = block_holding(&bytes[..3]);
        assert!(Codec::default()
            .decode_in_place::<SharedBytes>(&block, 3)
            .is_err());
        assert!(Codec::default()
            .decode_in_place::<SharedBytes>(&block, block.size() + 1)
            .is_err());
        assert!(SharedBytes::new().is_empty());
    }

    #[test]
    fn a_scope_tells_whether_shared_bytes_were_encoded() {
        let scope = EncodeScope::begin();
        codec::encode(&(1u8, vec![2u8])).unwrap();
        assert!(!scope.finish());
        let outer = EncodeScope::begin();
        let inner = EncodeScope::begin();
        codec::encode(&(1u8, SharedBytes::from(vec![2u8]))).unwrap();
        assert!(inner.finish());
        assert!(
            outer.finish(),
            "an inner scope's finding reaches the outer one"
        );
    }
}
