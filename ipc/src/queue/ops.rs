//! The operations every queue type shares, over any [`Backend`] (the FIFO
//! ring, the LIFO/priority store): encoding into reusable buffers, large items
//! as blobs, the put and get loops (try, wait, retry), and mapping why an
//! operation stopped to its per-operation error, which gives the item back.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::blob;
use super::error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError,
};
use super::ring::{self, GetStep, PutStep, Record, Sink, Stop};
use crate::codec::Codec;
use crate::error::{Error, ErrorKind};

/// A queue region that items can be published to and taken from.
pub(crate) trait Backend {
    /// The region's name (blob names are derived from it).
    fn name(&self) -> &str;
    /// The largest payload carried inline; larger items travel as blobs.
    fn inline_max(&self) -> usize;
    fn is_closed(&self) -> bool;
    /// Notes that blobs were used, so the creator sweeps them at the end.
    fn mark_blobs_used(&self);
    /// One attempt to publish `rec`; waits only for the lock.
    fn try_put(&self, rec: &Record<'_>, deadline: Option<Instant>) -> Result<PutStep, Stop>;
    /// Waits until a record of `len` payload bytes may fit.
    fn wait_space(&self, len: usize, deadline: Option<Instant>) -> Result<(), Stop>;
    /// One attempt to take an item into `sink`; waits only for the lock.
    fn try_get(&self, sink: &mut Sink<'_>, deadline: Option<Instant>) -> Result<GetStep, Stop>;
    /// Waits until an item may be available.
    fn wait_items(&self, deadline: Option<Instant>) -> Result<(), Stop>;
}

/// Thread-local buffers kept at most this large between operations.
const KEEP_BUFFER: usize = 4 << 20;

thread_local! {
    pub(crate) static ENCODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    pub(crate) static DECODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a reusable thread-local buffer (a fresh one if re-entered).
pub(crate) fn with_buffer<R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<u8>>>,
    f: impl FnOnce(&mut Vec<u8>) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            let r = f(&mut buf);
            if buf.capacity() > KEEP_BUFFER {
                *buf = Vec::new();
            }
            r
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// How long an operation may wait.
#[derive(Clone, Copy)]
pub(crate) enum Mode {
    /// Not at all (except for the queue's lock, held only briefly).
    Try,
    /// Until the deadline, or forever.
    Until(Option<Instant>),
}

impl Mode {
    pub(crate) fn timeout(d: Duration) -> Mode {
        // A timeout too large to represent waits forever.
        Mode::Until(Instant::now().checked_add(d))
    }

    fn lock_deadline(self) -> Option<Instant> {
        match self {
            Mode::Try => None,
            Mode::Until(d) => d,
        }
    }
}

/// Why a put or get did not happen, before mapping to a per-operation error.
pub(crate) enum Why {
    Full,
    Empty,
    Timeout,
    Closed,
    Failed(Box<Error>),
}

impl Why {
    pub(crate) fn failed(e: Error) -> Why {
        Why::Failed(Box::new(e))
    }
}

/// True if `T` is `Vec<u8>`: such items skip the codec's byte-by-byte path
/// and are copied as one block. Their bytes in the ring are exactly the
/// codec's encoding (its length prefix, then the bytes), so either side may
/// use the general path.
pub(crate) fn is_byte_vec<T: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<Vec<u8>>()
}

pub(crate) fn put_impl<T: Serialize + 'static, B: Backend>(
    backend: &B,
    item: T,
    mode: Mode,
) -> std::result::Result<(), (T, Why)> {
    let codec = Codec::default();
    if let Some(bytes) = (&item as &dyn Any).downcast_ref::<Vec<u8>>() {
        let mut prefix = Vec::with_capacity(10);
        if let Err(e) = codec.encode_into(&(bytes.len() as u64), &mut prefix) {
            return Err((item, Why::failed(e.into())));
        }
        return publish(backend, [&prefix, bytes], mode).map_err(|why| (item, why));
    }
    with_buffer(&ENCODE_BUF, |buf| {
        buf.clear();
        if let Err(e) = codec.encode_into(&item, buf) {
            return Err((item, Why::failed(e.into())));
        }
        publish(backend, [buf, &[]], mode).map_err(|why| (item, why))
    })
}

pub(crate) fn publish<B: Backend>(
    ring: &B,
    parts: [&[u8]; 2],
    mode: Mode,
) -> std::result::Result<(), Why> {
    let deadline = mode.lock_deadline();
    let len = parts[0].len() + parts[1].len();
    let mut blob_name = None;
    let reference;
    let rec = if len <= ring.inline_max() {
        Record {
            kind: ring::KIND_INLINE,
            parts,
        }
    } else {
        if ring.is_closed() {
            return Err(Why::Closed);
        }
        ring.mark_blobs_used();
        let name = blob::create(ring.name(), parts).map_err(Why::failed)?;
        reference = blob::encode_ref(&name, len);
        blob_name = Some(name);
        Record {
            kind: ring::KIND_BLOB,
            parts: [&reference, &[]],
        }
    };
    let outcome = loop {
        match ring.try_put(&rec, deadline) {
            Ok(PutStep::Done) => break Ok(()),
            Ok(PutStep::Closed) => break Err(Why::Closed),
            Ok(PutStep::Full) => {
                if let Mode::Try = mode {
                    break Err(Why::Full);
                }
                match ring.wait_space(rec.len(), deadline) {
                    Ok(()) => {}
                    Err(Stop::TimedOut) => break Err(Why::Timeout),
                    Err(Stop::Failed(e)) => break Err(Why::Failed(e)),
                }
            }
            Err(Stop::TimedOut) => break Err(Why::Timeout),
            Err(Stop::Failed(e)) => break Err(Why::Failed(e)),
        }
    };
    if let (Err(_), Some(name)) = (&outcome, &blob_name) {
        blob::discard(name);
    }
    outcome
}

/// Turns a `Vec<u8>` into the `T` it is (see [`is_byte_vec`]).
fn from_byte_vec<T: 'static>(v: Vec<u8>) -> std::result::Result<T, Why> {
    let any: Box<dyn Any> = Box::new(v);
    any.downcast::<T>()
        .map(|b| *b)
        .map_err(|_| Why::failed(Error::new(ErrorKind::Serialization, "item type mismatch")))
}

/// Decodes what one get step produced.
fn finish<T: DeserializeOwned + 'static>(
    step: GetStep,
    buf: &[u8],
    bytes: &mut Vec<u8>,
) -> std::result::Result<Option<T>, Why> {
    let decode = |b: &[u8]| -> std::result::Result<T, Why> {
        Codec::default()
            .decode(b)
            .map_err(|e| Why::failed(e.into()))
    };
    match step {
        GetStep::Inline(n) if is_byte_vec::<T>() => {
            let mut v = std::mem::take(bytes);
            v.truncate(n);
            from_byte_vec(v).map(Some)
        }
        GetStep::Inline(n) => decode(&buf[..n]).map(Some),
        GetStep::Blob(b) if is_byte_vec::<T>() => {
            let all = b.bytes();
            let (_, used) =
                ring::bytes_prefix(&all[..all.len().min(10)], all.len()).map_err(Why::failed)?;
            from_byte_vec(all[used..].to_vec()).map(Some)
        }
        GetStep::Blob(b) => decode(b.bytes()).map(Some),
        GetStep::Closed => Err(Why::Closed),
        GetStep::Empty => Ok(None),
    }
}

pub(crate) fn get_impl<T: DeserializeOwned + 'static, B: Backend>(
    ring: &B,
    mode: Mode,
) -> std::result::Result<T, Why> {
    let deadline = mode.lock_deadline();
    let byte_vec = is_byte_vec::<T>();
    let mut bytes = Vec::new();
    with_buffer(&DECODE_BUF, |buf| loop {
        let step = {
            let mut sink = if byte_vec {
                Sink::Bytes(&mut bytes)
            } else {
                Sink::Encoded(buf)
            };
            ring.try_get(&mut sink, deadline)
        };
        match step {
            Ok(step) => {
                if let Some(item) = finish(step, buf, &mut bytes)? {
                    return Ok(item);
                }
            }
            Err(Stop::TimedOut) => return Err(Why::Timeout),
            Err(Stop::Failed(e)) => return Err(Why::Failed(e)),
        }
        // Empty.
        if let Mode::Try = mode {
            return Err(Why::Empty);
        }
        match ring.wait_items(deadline) {
            Ok(()) => {}
            Err(Stop::TimedOut) => {
                // One last look: an item may have arrived at the wire.
                let step = {
                    let mut sink = if byte_vec {
                        Sink::Bytes(&mut bytes)
                    } else {
                        Sink::Encoded(buf)
                    };
                    ring.try_get(&mut sink, None)
                };
                return match step {
                    Ok(step) => finish(step, buf, &mut bytes)?.ok_or(Why::Timeout),
                    Err(Stop::TimedOut) => Err(Why::Timeout),
                    Err(Stop::Failed(e)) => Err(Why::Failed(e)),
                };
            }
            Err(Stop::Failed(e)) => return Err(Why::Failed(e)),
        }
    })
}

pub(crate) fn put_error<T>((t, why): (T, Why)) -> PutError<T> {
    match why {
        Why::Closed => PutError::Closed(t),
        Why::Failed(e) => PutError::Failed(t, *e),
        _ => PutError::Failed(t, Error::new(ErrorKind::Io, "put stopped unexpectedly")),
    }
}

pub(crate) fn try_put_error<T>((t, why): (T, Why)) -> TryPutError<T> {
    match why {
        Why::Full | Why::Timeout => TryPutError::Full(t),
        Why::Closed => TryPutError::Closed(t),
        Why::Failed(e) => TryPutError::Failed(t, *e),
        Why::Empty => TryPutError::Failed(t, Error::new(ErrorKind::Io, "put stopped unexpectedly")),
    }
}

pub(crate) fn put_timeout_error<T>((t, why): (T, Why)) -> PutTimeoutError<T> {
    match why {
        Why::Full | Why::Timeout => PutTimeoutError::Timeout(t),
        Why::Closed => PutTimeoutError::Closed(t),
        Why::Failed(e) => PutTimeoutError::Failed(t, *e),
        Why::Empty => {
            PutTimeoutError::Failed(t, Error::new(ErrorKind::Io, "put stopped unexpectedly"))
        }
    }
}

pub(crate) fn get_error(why: Why) -> GetError {
    match why {
        Why::Closed => GetError::Closed,
        Why::Failed(e) => GetError::Failed(*e),
        _ => GetError::Failed(Error::new(ErrorKind::Io, "get stopped unexpectedly")),
    }
}

pub(crate) fn try_get_error(why: Why) -> TryGetError {
    match why {
        Why::Empty | Why::Timeout | Why::Full => TryGetError::Empty,
        Why::Closed => TryGetError::Closed,
        Why::Failed(e) => TryGetError::Failed(*e),
    }
}

pub(crate) fn get_timeout_error(why: Why) -> GetTimeoutError {
    match why {
        Why::Empty | Why::Timeout | Why::Full => GetTimeoutError::Timeout,
        Why::Closed => GetTimeoutError::Closed,
        Why::Failed(e) => GetTimeoutError::Failed(*e),
    }
}
