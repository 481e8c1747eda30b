//! Queues between processes: [`Queue`], [`JoinableQueue`] and [`SimpleQueue`]
//! (Python's `multiprocessing.Queue`, `JoinableQueue` and `SimpleQueue`).
//!
//! A queue is a ring buffer in shared memory. Items are encoded with the
//! [`codec`](crate::codec) and copied in and out of the ring; an item too
//! large for the ring (more than a quarter of it) travels in its own shared
//! memory segment, which the consumer takes over. Handles are cheap to clone,
//! are inherited by processes forked after the queue was made, and serialize
//! to the queue's name, so they can be passed to pool tasks or to unrelated
//! processes, which re-attach.
//!
//! Any number of processes may put and get at once; every item is delivered
//! exactly once. Blocking calls spin for a few microseconds and then sleep on
//! a futex, and a process never calls into the kernel to wake the other side
//! unless that side is actually asleep.
//!
//! # Examples
//!
//! ```
//! use multiproc_ipc::queue::Queue;
//! use multiproc_ipc::Process;
//!
//! fn produce(q: Queue<String>) {
//!     for i in 0..3 {
//!         q.put(format!("item {i}")).unwrap();
//!     }
//! }
//!
//! let q = Queue::new()?;
//! let p = Process::spawn(produce, q.clone())?;
//! for i in 0..3 {
//!     assert_eq!(q.get()?, format!("item {i}"));
//! }
//! p.join()?;
//! # Ok::<(), multiproc_ipc::Error>(())
//! ```
//!
//! # Crashes
//!
//! Each side's state is guarded by a robust mutex and every operation
//! publishes its effect in one final commit, so a process killed in the
//! middle of a `put` or `get` (even holding the lock) never corrupts the
//! queue for the others: its operation either happened or did not. The one
//! exception is the item a consumer was taking when it was killed: if it died
//! before its commit the item stays in the queue for the next consumer; if it
//! died after the commit (or, for a large item, after taking over its
//! segment), the item is lost with it. Nothing is left in `/dev/shm`.
//!
//! # Caveats
//!
//! The queue's creator must keep a handle while other processes use it: when
//! its last handle in the creating process is dropped, the queue's name and
//! any large items still queued are removed (processes that already have it
//! mapped may go on using it, but can no longer pass it on).

mod blob;
mod error;
mod ring;
mod wait;

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use error::{GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError};
#[doc(hidden)]
pub use ring::fault;

use crate::codec::Codec;
use crate::error::{Error, ErrorKind, Result};
use crate::shm::ShmRegion;
use ring::{record_size, Flavor, GetStep, PutStep, Record, Ring, Sink, Stop};

/// The default size of a queue's ring: 8 MiB (shared memory pages are only
/// allocated as the ring is used).
pub const DEFAULT_CAPACITY: usize = 8 << 20;

/// Thread-local buffers kept at most this large between operations.
const KEEP_BUFFER: usize = 4 << 20;

thread_local! {
    static ENCODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static DECODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a reusable thread-local buffer (a fresh one if re-entered).
fn with_buffer<R>(
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

/// The process-local state of one queue, shared by all its handles here.
struct Core {
    ring: Ring,
}

impl Drop for Core {
    fn drop(&mut self) {
        // The creator's last handle: large items nobody took are removed with
        // the queue (its own region is removed by the region itself).
        if self.ring.creator_pid() == std::process::id() && self.ring.blobs_used() {
            blob::sweep(self.ring.name());
        }
    }
}

/// Queues this process has open, by region name, so that a handle
/// deserialized here shares the `Core` of the handles already here.
fn cores() -> &'static Mutex<Vec<(String, Weak<Core>)>> {
    static CORES: Mutex<Vec<(String, Weak<Core>)>> = Mutex::new(Vec::new());
    &CORES
}

fn register(core: &Arc<Core>) {
    let mut all = cores().lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|(_, w)| w.strong_count() > 0);
    all.push((core.ring.name().to_owned(), Arc::downgrade(core)));
}

fn type_hash<T>() -> u64 {
    ring::stable_hash(std::any::type_name::<T>())
}

fn create_core<T>(flavor: Flavor, capacity: usize, maxsize: usize) -> Result<Arc<Core>> {
    let core = Arc::new(Core {
        ring: Ring::create(flavor, capacity, maxsize, type_hash::<T>())?,
    });
    register(&core);
    Ok(core)
}

fn attach_core<T>(region: ShmRegion, flavor: Flavor) -> Result<Arc<Core>> {
    if let Some(name) = region.name() {
        let all = cores().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(core) = all
            .iter()
            .filter(|(n, _)| n == name)
            .find_map(|(_, w)| w.upgrade())
        {
            if core.ring.flavor() == flavor && core.ring.type_hash() == type_hash::<T>() {
                return Ok(core);
            }
        }
    }
    let core = Arc::new(Core {
        ring: Ring::attach(region, flavor, type_hash::<T>())?,
    });
    register(&core);
    Ok(core)
}

/// How long an operation may wait.
#[derive(Clone, Copy)]
enum Mode {
    /// Not at all (except for the queue's lock, held only briefly).
    Try,
    /// Until the deadline, or forever.
    Until(Option<Instant>),
}

impl Mode {
    fn timeout(d: Duration) -> Mode {
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
enum Why {
    Full,
    Empty,
    Timeout,
    Closed,
    Failed(Box<Error>),
}

impl Why {
    fn failed(e: Error) -> Why {
        Why::Failed(Box::new(e))
    }
}

/// True if `T` is `Vec<u8>`: such items skip the codec's byte-by-byte path
/// and are copied as one block. Their bytes in the ring are exactly the
/// codec's encoding (its length prefix, then the bytes), so either side may
/// use the general path.
fn is_byte_vec<T: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<Vec<u8>>()
}

fn put_impl<T: Serialize + 'static>(
    core: &Core,
    item: T,
    mode: Mode,
) -> std::result::Result<(), (T, Why)> {
    let codec = Codec::default();
    if let Some(bytes) = (&item as &dyn Any).downcast_ref::<Vec<u8>>() {
        let mut prefix = Vec::with_capacity(10);
        if let Err(e) = codec.encode_into(&(bytes.len() as u64), &mut prefix) {
            return Err((item, Why::failed(e.into())));
        }
        return publish(&core.ring, [&prefix, bytes], mode).map_err(|why| (item, why));
    }
    with_buffer(&ENCODE_BUF, |buf| {
        buf.clear();
        if let Err(e) = codec.encode_into(&item, buf) {
            return Err((item, Why::failed(e.into())));
        }
        publish(&core.ring, [buf, &[]], mode).map_err(|why| (item, why))
    })
}

fn publish(ring: &Ring, parts: [&[u8]; 2], mode: Mode) -> std::result::Result<(), Why> {
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
    let size = record_size(rec.len());
    let outcome = loop {
        match ring.try_put(&rec, deadline) {
            Ok(PutStep::Done) => break Ok(()),
            Ok(PutStep::Closed) => break Err(Why::Closed),
            Ok(PutStep::Full) => {
                if let Mode::Try = mode {
                    break Err(Why::Full);
                }
                match ring.wait_space(size, deadline) {
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

fn get_impl<T: DeserializeOwned + 'static>(core: &Core, mode: Mode) -> std::result::Result<T, Why> {
    let ring = &core.ring;
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

fn debug_fields(f: &mut fmt::Formatter<'_>, what: &str, core: &Core) -> fmt::Result {
    let ring = &core.ring;
    let mut d = f.debug_struct(what);
    d.field("name", &ring.name()).field("qsize", &ring.len());
    if ring.maxsize() != 0 {
        d.field("maxsize", &ring.maxsize());
    }
    d.field("closed", &ring.is_closed()).finish()
}

// ---------------------------------------------------------------------------

/// A multi-producer, multi-consumer queue between processes (Python's
/// `multiprocessing.Queue`).
///
/// Bounded by item count ([`with_maxsize`](Queue::with_maxsize)) and always by
/// the byte size of its ring ([`DEFAULT_CAPACITY`] unless set with
/// [`builder`](Queue::builder)): a `put` waits while either bound is reached.
/// Items are any serde type; a failed put gives the item back.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc_ipc::queue::{Queue, TryPutError};
///
/// let q = Queue::with_maxsize(2)?;
/// q.put(1u32).unwrap();
/// q.put(2).unwrap();
/// assert!(q.full());
/// match q.try_put(3) {
///     Err(TryPutError::Full(item)) => assert_eq!(item, 3), // given back
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(q.qsize(), 2);
/// assert_eq!(q.get().unwrap(), 1);
/// assert_eq!(q.get_timeout(Duration::from_secs(1)).unwrap(), 2);
/// assert!(q.empty());
///
/// q.close();
/// assert!(q.put(4).is_err());
/// # Ok::<(), multiproc_ipc::Error>(())
/// ```
pub struct Queue<T> {
    core: Arc<Core>,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            core: self.core.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_fields(f, "Queue", &self.core)
    }
}

/// Configures a [`Queue`] or [`JoinableQueue`]: [`maxsize`](QueueBuilder::maxsize)
/// and [`capacity_bytes`](QueueBuilder::capacity_bytes).
///
/// # Examples
///
/// ```
/// use multiproc_ipc::queue::Queue;
///
/// let q: Queue<Vec<u8>> = Queue::builder().maxsize(100).capacity_bytes(1 << 16).build()?;
/// assert_eq!(q.maxsize(), Some(100));
/// assert_eq!(q.capacity_bytes(), 1 << 16);
/// # Ok::<(), multiproc_ipc::Error>(())
/// ```
pub struct QueueBuilder<T> {
    maxsize: usize,
    capacity: usize,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for QueueBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueBuilder")
            .field("maxsize", &self.maxsize)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned + 'static> QueueBuilder<T> {
    /// At most `maxsize` items in the queue; 0 (the default) for no item bound
    /// (Python's `maxsize <= 0`).
    pub fn maxsize(mut self, maxsize: usize) -> Self {
        self.maxsize = maxsize;
        self
    }

    /// The size of the ring in bytes (default [`DEFAULT_CAPACITY`], at least
    /// 4 KiB, at most 4 GiB). Items larger than a quarter of it travel in
    /// their own shared memory segment.
    pub fn capacity_bytes(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// Creates the queue.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a capacity out of range; `Io` if the shared
    /// memory cannot be created.
    pub fn build(self) -> Result<Queue<T>> {
        Ok(Queue::from_core(create_core::<T>(
            Flavor::Queue,
            self.capacity,
            self.maxsize,
        )?))
    }

    /// Creates a [`JoinableQueue`] with these settings.
    ///
    /// # Errors
    ///
    /// As [`build`](QueueBuilder::build).
    pub fn build_joinable(self) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue {
            queue: Queue::from_core(create_core::<T>(
                Flavor::Joinable,
                self.capacity,
                self.maxsize,
            )?),
        })
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Queue<T> {
    /// Creates a queue with no item bound (only the ring's byte capacity).
    ///
    /// # Errors
    ///
    /// `Io` if the shared memory cannot be created.
    pub fn new() -> Result<Queue<T>> {
        Queue::builder().build()
    }

    /// Creates a queue holding at most `maxsize` items (0: no item bound).
    ///
    /// # Errors
    ///
    /// As [`new`](Queue::new).
    pub fn with_maxsize(maxsize: usize) -> Result<Queue<T>> {
        Queue::builder().maxsize(maxsize).build()
    }

    /// A builder for more settings.
    pub fn builder() -> QueueBuilder<T> {
        QueueBuilder {
            maxsize: 0,
            capacity: DEFAULT_CAPACITY,
            _t: PhantomData,
        }
    }

    fn from_core(core: Arc<Core>) -> Queue<T> {
        Queue {
            core,
            _t: PhantomData,
        }
    }

    /// Puts `item`, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`] if the queue is closed; [`PutError::Failed`] if
    /// the item cannot be encoded or the system fails. The item is given back.
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        put_impl(&self.core, item, Mode::Until(None)).map_err(|(t, why)| match why {
            Why::Closed => PutError::Closed(t),
            Why::Failed(e) => PutError::Failed(t, *e),
            _ => PutError::Failed(t, Error::new(ErrorKind::Io, "put stopped unexpectedly")),
        })
    }

    /// Puts `item` if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    ///
    /// [`TryPutError::Full`] if the queue is full, otherwise as
    /// [`put`](Queue::put). The item is given back.
    pub fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
        put_impl(&self.core, item, Mode::Try).map_err(|(t, why)| match why {
            Why::Full | Why::Timeout => TryPutError::Full(t),
            Why::Closed => TryPutError::Closed(t),
            Why::Failed(e) => TryPutError::Failed(t, *e),
            Why::Empty => {
                TryPutError::Failed(t, Error::new(ErrorKind::Io, "put stopped unexpectedly"))
            }
        })
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`PutTimeoutError::Timeout`] if the queue stayed full, otherwise as
    /// [`put`](Queue::put). The item is given back.
    pub fn put_timeout(
        &self,
        item: T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<T>> {
        put_impl(&self.core, item, Mode::timeout(timeout)).map_err(|(t, why)| match why {
            Why::Full | Why::Timeout => PutTimeoutError::Timeout(t),
            Why::Closed => PutTimeoutError::Closed(t),
            Why::Failed(e) => PutTimeoutError::Failed(t, *e),
            Why::Empty => {
                PutTimeoutError::Failed(t, Error::new(ErrorKind::Io, "put stopped unexpectedly"))
            }
        })
    }

    /// Takes the next item, waiting for one.
    ///
    /// # Errors
    ///
    /// [`GetError::Closed`] once the queue is closed and drained;
    /// [`GetError::Failed`] if the item cannot be decoded as a `T` (it is
    /// consumed) or the system fails.
    pub fn get(&self) -> std::result::Result<T, GetError> {
        get_impl(&self.core, Mode::Until(None)).map_err(|why| match why {
            Why::Closed => GetError::Closed,
            Why::Failed(e) => GetError::Failed(*e),
            _ => GetError::Failed(Error::new(ErrorKind::Io, "get stopped unexpectedly")),
        })
    }

    /// Takes the next item if there is one now (Python's `get_nowait`).
    ///
    /// # Errors
    ///
    /// [`TryGetError::Empty`] if the queue is empty, otherwise as
    /// [`get`](Queue::get).
    pub fn try_get(&self) -> std::result::Result<T, TryGetError> {
        get_impl(&self.core, Mode::Try).map_err(|why| match why {
            Why::Empty | Why::Timeout | Why::Full => TryGetError::Empty,
            Why::Closed => TryGetError::Closed,
            Why::Failed(e) => TryGetError::Failed(*e),
        })
    }

    /// Takes the next item, waiting at most `timeout` for one.
    ///
    /// # Errors
    ///
    /// [`GetTimeoutError::Timeout`] if none arrived, otherwise as
    /// [`get`](Queue::get).
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
        get_impl(&self.core, Mode::timeout(timeout)).map_err(|why| match why {
            Why::Empty | Why::Timeout | Why::Full => GetTimeoutError::Timeout,
            Why::Closed => GetTimeoutError::Closed,
            Why::Failed(e) => GetTimeoutError::Failed(*e),
        })
    }
}

impl<T> Queue<T> {
    /// The number of items in the queue (a snapshot: other processes may
    /// change it at any moment).
    pub fn qsize(&self) -> usize {
        self.core.ring.len() as usize
    }

    /// True if the queue holds no items (a snapshot).
    pub fn empty(&self) -> bool {
        self.core.ring.len() == 0
    }

    /// True if the queue holds `maxsize` items (a snapshot); always false
    /// without an item bound.
    pub fn full(&self) -> bool {
        let max = self.core.ring.maxsize();
        max != 0 && self.core.ring.len() >= max
    }

    /// The item bound, `None` if there is none.
    pub fn maxsize(&self) -> Option<usize> {
        match self.core.ring.maxsize() {
            0 => None,
            n => Some(n as usize),
        }
    }

    /// The size of the ring in bytes.
    pub fn capacity_bytes(&self) -> usize {
        self.core.ring.capacity()
    }

    /// Closes the queue for every process: puts fail from now on, gets take
    /// what is left and then fail with `Closed`; blocked callers wake up.
    pub fn close(&self) {
        self.core.ring.close();
    }

    /// True once [`close`](Queue::close) was called in any process.
    pub fn is_closed(&self) -> bool {
        self.core.ring.is_closed()
    }

    /// The name of the queue's shared memory region.
    pub fn name(&self) -> &str {
        self.core.ring.name()
    }
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.core.ring.region().serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Queue<T>, D::Error> {
        let region = ShmRegion::deserialize(d)?;
        let core = attach_core::<T>(region, Flavor::Queue).map_err(serde::de::Error::custom)?;
        Ok(Queue {
            core,
            _t: PhantomData,
        })
    }
}

// ---------------------------------------------------------------------------

/// A [`Queue`] that also counts unfinished tasks (Python's
/// `multiprocessing.JoinableQueue`): every `put` adds one, every
/// [`task_done`](JoinableQueue::task_done) removes one, and
/// [`join`](JoinableQueue::join) waits until none is left.
///
/// # Examples
///
/// ```
/// use multiproc_ipc::queue::JoinableQueue;
/// use multiproc_ipc::Process;
///
/// fn worker(q: JoinableQueue<u64>) -> u64 {
///     let mut sum = 0;
///     while let Ok(x) = q.get() {
///         sum += x;
///         q.task_done().unwrap();
///     }
///     sum
/// }
///
/// let q = JoinableQueue::new()?;
/// let p = Process::spawn(worker, q.clone())?;
/// for i in 1..=10 {
///     q.put(i).unwrap();
/// }
/// q.join(); // every item was taken and marked done
/// q.close(); // the worker's get now fails with Closed
/// assert_eq!(p.join()?, 55);
/// assert!(q.task_done().is_err()); // one too many
/// # Ok::<(), multiproc_ipc::Error>(())
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_fields(f, "JoinableQueue", &self.queue.core)
    }
}

impl<T: Serialize + DeserializeOwned + 'static> JoinableQueue<T> {
    /// Creates a joinable queue with no item bound.
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    pub fn new() -> Result<JoinableQueue<T>> {
        Queue::builder().build_joinable()
    }

    /// Creates a joinable queue holding at most `maxsize` items (0: no bound).
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    pub fn with_maxsize(maxsize: usize) -> Result<JoinableQueue<T>> {
        Queue::builder().maxsize(maxsize).build_joinable()
    }

    /// See [`Queue::put`].
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.queue.put(item)
    }

    /// See [`Queue::try_put`].
    ///
    /// # Errors
    ///
    /// As [`Queue::try_put`].
    pub fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
        self.queue.try_put(item)
    }

    /// See [`Queue::put_timeout`].
    ///
    /// # Errors
    ///
    /// As [`Queue::put_timeout`].
    pub fn put_timeout(
        &self,
        item: T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<T>> {
        self.queue.put_timeout(item, timeout)
    }

    /// See [`Queue::get`].
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub fn get(&self) -> std::result::Result<T, GetError> {
        self.queue.get()
    }

    /// See [`Queue::try_get`].
    ///
    /// # Errors
    ///
    /// As [`Queue::try_get`].
    pub fn try_get(&self) -> std::result::Result<T, TryGetError> {
        self.queue.try_get()
    }

    /// See [`Queue::get_timeout`].
    ///
    /// # Errors
    ///
    /// As [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
        self.queue.get_timeout(timeout)
    }
}

impl<T> JoinableQueue<T> {
    /// Marks one item taken from the queue as processed.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` (Python's `ValueError`) if called more times than
    /// items were put.
    pub fn task_done(&self) -> Result<()> {
        if self.queue.core.ring.task_done() {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::InvalidArgument,
                "task_done() called too many times",
            ))
        }
    }

    /// Waits until every item ever put has been marked done.
    ///
    /// # Caveats
    ///
    /// As in Python, a consumer that dies between `get` and `task_done`
    /// leaves its item unfinished forever; use
    /// [`join_timeout`](JoinableQueue::join_timeout) if that can happen.
    pub fn join(&self) {
        // Without a deadline only a failure could stop the wait, and waiting
        // has none (the futex cannot fail); loop for robustness.
        while self.queue.core.ring.join(None).is_err() {}
    }

    /// Like [`join`](JoinableQueue::join), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if items were still unfinished when the time ran out.
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now().checked_add(timeout);
        match self.queue.core.ring.join(deadline) {
            Ok(()) => Ok(()),
            Err(Stop::TimedOut) => Err(Error::timeout(format!(
                "{} task(s) still unfinished after {timeout:?}",
                self.unfinished_tasks()
            ))),
            Err(Stop::Failed(e)) => Err(*e),
        }
    }

    /// Items put and not yet marked done (a snapshot).
    pub fn unfinished_tasks(&self) -> usize {
        self.queue.core.ring.unfinished() as usize
    }

    /// See [`Queue::qsize`].
    pub fn qsize(&self) -> usize {
        self.queue.qsize()
    }

    /// See [`Queue::empty`].
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }

    /// See [`Queue::full`].
    pub fn full(&self) -> bool {
        self.queue.full()
    }

    /// See [`Queue::maxsize`].
    pub fn maxsize(&self) -> Option<usize> {
        self.queue.maxsize()
    }

    /// See [`Queue::close`].
    pub fn close(&self) {
        self.queue.close()
    }

    /// See [`Queue::is_closed`].
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// See [`Queue::name`].
    pub fn name(&self) -> &str {
        self.queue.name()
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<JoinableQueue<T>, D::Error> {
        let region = ShmRegion::deserialize(d)?;
        let core = attach_core::<T>(region, Flavor::Joinable).map_err(serde::de::Error::custom)?;
        Ok(JoinableQueue {
            queue: Queue {
                core,
                _t: PhantomData,
            },
        })
    }
}

// ---------------------------------------------------------------------------

/// The simplest queue (Python's `multiprocessing.SimpleQueue`): `put`, `get`,
/// `empty`, `close`, no item bound.
///
/// # Examples
///
/// ```
/// use multiproc_ipc::queue::SimpleQueue;
///
/// let q = SimpleQueue::new()?;
/// q.put((1, "one".to_string())).unwrap();
/// assert!(!q.empty());
/// assert_eq!(q.get().unwrap(), (1, "one".to_string()));
/// q.close();
/// assert!(q.get().is_err());
/// # Ok::<(), multiproc_ipc::Error>(())
/// ```
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_fields(f, "SimpleQueue", &self.queue.core)
    }
}

impl<T: Serialize + DeserializeOwned + 'static> SimpleQueue<T> {
    /// Creates a simple queue.
    ///
    /// # Errors
    ///
    /// As [`Queue::new`].
    pub fn new() -> Result<SimpleQueue<T>> {
        Ok(SimpleQueue {
            queue: Queue::from_core(create_core::<T>(Flavor::Simple, DEFAULT_CAPACITY, 0)?),
        })
    }

    /// Puts `item` (waiting only if the ring's bytes are all in use).
    ///
    /// # Errors
    ///
    /// As [`Queue::put`].
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.queue.put(item)
    }

    /// Takes the next item, waiting for one.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub fn get(&self) -> std::result::Result<T, GetError> {
        self.queue.get()
    }
}

impl<T> SimpleQueue<T> {
    /// True if the queue holds no items (a snapshot).
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }

    /// Closes the queue for every process (see [`Queue::close`]).
    pub fn close(&self) {
        self.queue.close()
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<SimpleQueue<T>, D::Error> {
        let region = ShmRegion::deserialize(d)?;
        let core = attach_core::<T>(region, Flavor::Simple).map_err(serde::de::Error::custom)?;
        Ok(SimpleQueue {
            queue: Queue {
                core,
                _t: PhantomData,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_in_order_across_the_wrap() {
        let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(4096).build().unwrap();
        for round in 0..50u8 {
            for len in [0usize, 1, 7, 8, 9, 500] {
                q.put(vec![round; len]).unwrap();
            }
            for len in [0usize, 1, 7, 8, 9, 500] {
                assert_eq!(q.try_get().unwrap(), vec![round; len]);
            }
        }
        assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    }

    #[test]
    fn large_items_use_segments_and_leave_nothing() {
        let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(4096).build().unwrap();
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        q.put(big.clone()).unwrap();
        q.put(big.clone()).unwrap();
        assert_eq!(q.qsize(), 2);
        assert_eq!(q.get().unwrap(), big);
        let name = q.name().to_owned();
        drop(q); // one large item still queued: removed with the queue
        let prefix = format!("{}.", name.trim_start_matches('/'));
        let left: Vec<_> = std::fs::read_dir("/dev/shm")
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn handles_reattach_and_check_type_and_flavor() {
        let q: Queue<u32> = Queue::new().unwrap();
        let bytes = crate::codec::encode(&q).unwrap();
        let again: Queue<u32> = crate::codec::decode(&bytes).unwrap();
        again.put(5).unwrap();
        assert_eq!(q.get().unwrap(), 5);
        assert!(crate::codec::decode::<Queue<String>>(&bytes).is_err());
        assert!(crate::codec::decode::<JoinableQueue<u32>>(&bytes).is_err());
    }

    #[test]
    fn byte_vectors_are_stored_as_the_codec_encodes_them() {
        for len in [0usize, 1, 127, 128, 70_000] {
            let v: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let mut prefix = Vec::new();
            Codec::default()
                .encode_into(&(len as u64), &mut prefix)
                .unwrap();
            prefix.extend_from_slice(&v);
            assert_eq!(crate::codec::encode(&v).unwrap(), prefix);
        }
        let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(64 << 10).build().unwrap();
        for len in [0usize, 1, 300, 16_000, 100_000] {
            let v: Vec<u8> = (0..len).map(|i| (i * 3) as u8).collect();
            q.put(v.clone()).unwrap();
            assert_eq!(q.get().unwrap(), v);
        }
    }

    #[test]
    fn bad_capacity_is_invalid() {
        let e = Queue::<u8>::builder()
            .capacity_bytes(10)
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn timeouts_and_close_wake_waiters() {
        let q: Queue<u8> = Queue::with_maxsize(1).unwrap();
        let t = Instant::now();
        assert!(matches!(
            q.get_timeout(Duration::from_millis(50)),
            Err(GetTimeoutError::Timeout)
        ));
        assert!(t.elapsed() >= Duration::from_millis(30));
        q.put(1).unwrap();
        assert!(matches!(
            q.put_timeout(2, Duration::from_millis(20)),
            Err(PutTimeoutError::Timeout(2))
        ));
        let q2 = q.clone();
        let h = std::thread::spawn(move || q2.put(3));
        std::thread::sleep(Duration::from_millis(30));
        q.close();
        assert!(matches!(h.join().unwrap(), Err(PutError::Closed(3))));
        assert_eq!(q.get().unwrap(), 1);
        assert!(matches!(q.get(), Err(GetError::Closed)));
    }
}
