//! Queues between processes: [`Queue`], [`JoinableQueue`] and [`SimpleQueue`]
//! (Python's `multiprocessing.Queue`, `JoinableQueue` and `SimpleQueue`), and
//! [`LifoQueue`] and [`PriorityQueue`] (Python's `queue.LifoQueue` and
//! `queue.PriorityQueue`, here shared between processes).
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
//! [`LifoQueue`] and [`PriorityQueue`] keep their items in a shared store of
//! fixed-size cells ordered as a stack or a binary heap instead of a ring,
//! behind one robust lock with the same redo journal, waiting, large-item
//! segments and operation families as the FIFO queues.
//!
//! # Examples
//!
//! ```
//! use multiproc::queue::Queue;
//! use multiproc::Process;
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
//! # Ok::<(), multiproc::Error>(())
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
mod entry;
mod error;
mod ops;
mod ordered;
mod ring;
mod store;
mod wait;

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use error::{GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError};
pub use ordered::{LifoQueue, LifoQueueBuilder, PriorityQueue, PriorityQueueBuilder};
#[doc(hidden)]
pub use ring::fault;

use crate::error::{Error, ErrorKind, Result};
use crate::shm::ShmRegion;
use ops::{get_impl, put_impl, Mode};
use ring::{Flavor, Ring, Stop};

/// The default size of a queue's ring: 8 MiB (shared memory pages are only
/// allocated as the ring is used).
pub const DEFAULT_CAPACITY: usize = 8 << 20;

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

/// A live registry entry: any queue type's process-local core.
type AnyCore = Weak<dyn Any + Send + Sync>;

/// Queues this process has open (of every type), by region name, so that a
/// handle deserialized here shares the core of the handles already here.
fn cores() -> &'static Mutex<Vec<(String, AnyCore)>> {
    static CORES: Mutex<Vec<(String, AnyCore)>> = Mutex::new(Vec::new());
    &CORES
}

/// The registry of open queues, held across a fork (see `prefork`).
pub(crate) fn cores_lock() -> impl Sized {
    cores().lock().unwrap_or_else(|p| p.into_inner())
}

/// Records `core` (named `name`) as open in this process.
fn register<C: Any + Send + Sync>(name: &str, core: &Arc<C>) {
    let mut all = cores().lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|(_, w)| w.strong_count() > 0);
    let core: Arc<dyn Any + Send + Sync> = core.clone();
    all.push((name.to_owned(), Arc::downgrade(&core)));
}

/// The open core of type `C` named `name` for which `fits` holds, if any.
fn find_core<C: Any + Send + Sync>(name: &str, fits: impl Fn(&C) -> bool) -> Option<Arc<C>> {
    let all = cores().lock().unwrap_or_else(|p| p.into_inner());
    all.iter()
        .filter(|(n, _)| n == name)
        .filter_map(|(_, w)| w.upgrade()?.downcast::<C>().ok())
        .find(|c| fits(c))
}

fn type_hash<T>() -> u64 {
    ring::stable_hash(std::any::type_name::<T>())
}

fn create_core<T>(flavor: Flavor, capacity: usize, maxsize: usize) -> Result<Arc<Core>> {
    let core = Arc::new(Core {
        ring: Ring::create(flavor, capacity, maxsize, type_hash::<T>())?,
    });
    register(core.ring.name(), &core);
    Ok(core)
}

fn attach_core<T>(region: ShmRegion, flavor: Flavor) -> Result<Arc<Core>> {
    if let Some(name) = region.name() {
        let found = find_core::<Core>(name, |c| {
            c.ring.flavor() == flavor && c.ring.type_hash() == type_hash::<T>()
        });
        if let Some(core) = found {
            return Ok(core);
        }
    }
    let core = Arc::new(Core {
        ring: Ring::attach(region, flavor, type_hash::<T>())?,
    });
    register(core.ring.name(), &core);
    Ok(core)
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
/// use multiproc::queue::{Queue, TryPutError};
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
/// # Ok::<(), multiproc::Error>(())
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
/// use multiproc::queue::Queue;
///
/// let q: Queue<Vec<u8>> = Queue::builder().maxsize(100).capacity_bytes(1 << 16).build()?;
/// assert_eq!(q.maxsize(), Some(100));
/// assert_eq!(q.capacity_bytes(), 1 << 16);
/// # Ok::<(), multiproc::Error>(())
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
        put_impl(&self.core.ring, item, Mode::Until(None)).map_err(ops::put_error)
    }

    /// Puts `item` if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    ///
    /// [`TryPutError::Full`] if the queue is full, otherwise as
    /// [`put`](Queue::put). The item is given back.
    pub fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
        put_impl(&self.core.ring, item, Mode::Try).map_err(ops::try_put_error)
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
        put_impl(&self.core.ring, item, Mode::timeout(timeout)).map_err(ops::put_timeout_error)
    }

    /// Takes the next item, waiting for one.
    ///
    /// # Errors
    ///
    /// [`GetError::Closed`] once the queue is closed and drained;
    /// [`GetError::Failed`] if the item cannot be decoded as a `T` (it is
    /// consumed) or the system fails.
    pub fn get(&self) -> std::result::Result<T, GetError> {
        get_impl(&self.core.ring, Mode::Until(None)).map_err(ops::get_error)
    }

    /// Takes the next item if there is one now (Python's `get_nowait`).
    ///
    /// # Errors
    ///
    /// [`TryGetError::Empty`] if the queue is empty, otherwise as
    /// [`get`](Queue::get).
    pub fn try_get(&self) -> std::result::Result<T, TryGetError> {
        get_impl(&self.core.ring, Mode::Try).map_err(ops::try_get_error)
    }

    /// Takes the next item, waiting at most `timeout` for one.
    ///
    /// # Errors
    ///
    /// [`GetTimeoutError::Timeout`] if none arrived, otherwise as
    /// [`get`](Queue::get).
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
        get_impl(&self.core.ring, Mode::timeout(timeout)).map_err(ops::get_timeout_error)
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
/// use multiproc::queue::JoinableQueue;
/// use multiproc::Process;
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
/// # Ok::<(), multiproc::Error>(())
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
/// use multiproc::queue::SimpleQueue;
///
/// let q = SimpleQueue::new()?;
/// q.put((1, "one".to_string())).unwrap();
/// assert!(!q.empty());
/// assert_eq!(q.get().unwrap(), (1, "one".to_string()));
/// q.close();
/// assert!(q.get().is_err());
/// # Ok::<(), multiproc::Error>(())
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
    use crate::codec::Codec;

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
