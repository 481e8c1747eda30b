//! [`LifoQueue`] and [`PriorityQueue`]: Python's `queue.LifoQueue` and
//! `queue.PriorityQueue`, shared between processes like [`Queue`](super::Queue).
//!
//! Both live in one shared store (see `store.rs`) and go through the same
//! put and get loops as `Queue`: the same operation families, the same
//! `Full`/`Empty` errors giving the item back, the same large-item segments
//! and the same crash safety (a process killed mid-operation loses at most
//! the item it was taking; the others never wedge).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError,
};
use super::ops::{self, get_impl, publish, put_impl, with_buffer, Mode, Why, ENCODE_BUF};
use super::ring::Flavor;
use super::store::{Keys, NoKeys, Ordered, Store};
use super::{blob, find_core, register, type_hash, DEFAULT_CAPACITY};
use crate::codec::Codec;
use crate::error::Result;
use crate::shm::ShmRegion;

/// The process-local state of one ordered queue, shared by its handles here.
struct OrderedCore {
    store: Store,
}

impl Drop for OrderedCore {
    fn drop(&mut self) {
        // The creator's last handle: large items nobody took go with the queue.
        if self.store.creator_pid() == std::process::id() && self.store.blobs_used() {
            blob::sweep(self.store.region().name().unwrap_or_default());
        }
    }
}

fn create_core<T>(flavor: Flavor, capacity: usize, maxsize: usize) -> Result<Arc<OrderedCore>> {
    let store = Store::create(flavor, capacity, maxsize, type_hash::<T>())?;
    let name = store.region().name().unwrap_or_default().to_owned();
    let core = Arc::new(OrderedCore { store });
    register(&name, &core);
    Ok(core)
}

fn attach_core<T>(region: ShmRegion, flavor: Flavor) -> Result<Arc<OrderedCore>> {
    if let Some(name) = region.name() {
        let found = find_core::<OrderedCore>(name, |c| {
            c.store.flavor() == flavor && c.store.type_hash() == type_hash::<T>()
        });
        if let Some(core) = found {
            return Ok(core);
        }
    }
    let store = Store::attach(region, flavor, type_hash::<T>())?;
    let name = store.region().name().unwrap_or_default().to_owned();
    let core = Arc::new(OrderedCore { store });
    register(&name, &core);
    Ok(core)
}

/// A priority queue's order: its items' own `Ord`, decoded from the store.
struct ByItem<T>(PhantomData<fn() -> T>);

impl<T: DeserializeOwned + Ord> Keys for ByItem<T> {
    type Key = T;
    fn key(&self, bytes: &[u8]) -> Result<T> {
        Ok(Codec::default().decode(bytes)?)
    }
}

fn lifo(store: &Store) -> Ordered<'_, NoKeys> {
    Ordered {
        store,
        keys: &NoKeys,
        key: Some(&()),
    }
}

/// Puts into a priority queue: the item's key is decoded from its own
/// encoding (outside the lock) for the heap's comparisons.
fn put_by_item<T: Serialize + DeserializeOwned + Ord + 'static>(
    store: &Store,
    item: T,
    mode: Mode,
) -> std::result::Result<(), (T, Why)> {
    let keys = ByItem::<T>(PhantomData);
    with_buffer(&ENCODE_BUF, |buf| {
        buf.clear();
        if let Err(e) = Codec::default().encode_into(&item, buf) {
            return Err((item, Why::failed(e.into())));
        }
        let key = match keys.key(buf) {
            Ok(k) => k,
            Err(e) => return Err((item, Why::failed(e))),
        };
        let backend = Ordered {
            store,
            keys: &keys,
            key: Some(&key),
        };
        publish(&backend, [buf, &[]], mode).map_err(|why| (item, why))
    })
}

fn get_by_item<T: DeserializeOwned + Ord + 'static>(
    store: &Store,
    mode: Mode,
) -> std::result::Result<T, Why> {
    let keys = ByItem::<T>(PhantomData);
    let backend = Ordered {
        store,
        keys: &keys,
        key: None,
    };
    get_impl(&backend, mode)
}

fn debug_fields(f: &mut fmt::Formatter<'_>, what: &str, store: &Store) -> fmt::Result {
    let mut d = f.debug_struct(what);
    d.field("name", &store.region().name().unwrap_or_default())
        .field("qsize", &store.len());
    if store.maxsize() != 0 {
        d.field("maxsize", &store.maxsize());
    }
    d.field("closed", &store.is_closed()).finish()
}

/// The methods both ordered queues share that need no bound on `T`.
macro_rules! common {
    ($name:ident, $builder:ident, $flavor:expr) => {
        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                $name {
                    core: self.core.clone(),
                    _t: PhantomData,
                }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                debug_fields(f, stringify!($name), &self.core.store)
            }
        }

        impl<T> $name<T> {
            /// The number of items in the queue (a snapshot: other processes
            /// may change it at any moment).
            pub fn qsize(&self) -> usize {
                self.core.store.len() as usize
            }

            /// True if the queue holds no items (a snapshot).
            pub fn empty(&self) -> bool {
                self.core.store.len() == 0
            }

            /// True if the queue holds `maxsize` items (a snapshot); always
            /// false without an item bound.
            pub fn full(&self) -> bool {
                let max = self.core.store.maxsize();
                max != 0 && self.core.store.len() >= max
            }

            /// The item bound, `None` if there is none.
            pub fn maxsize(&self) -> Option<usize> {
                match self.core.store.maxsize() {
                    0 => None,
                    n => Some(n as usize),
                }
            }

            /// The size of the item store in bytes.
            pub fn capacity_bytes(&self) -> usize {
                self.core.store.capacity()
            }

            /// Closes the queue for every process: puts fail from now on,
            /// gets take what is left and then fail with `Closed`; blocked
            /// callers wake up.
            pub fn close(&self) {
                self.core.store.close();
            }

            /// True once `close` was called in any process.
            pub fn is_closed(&self) -> bool {
                self.core.store.is_closed()
            }

            /// The name of the queue's shared memory region.
            pub fn name(&self) -> &str {
                self.core.store.region().name().unwrap_or_default()
            }
        }

        impl<T> Serialize for $name<T> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.core.store.region().serialize(s)
            }
        }

        impl<'de, T> Deserialize<'de> for $name<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<$name<T>, D::Error> {
                let region = ShmRegion::deserialize(d)?;
                let core = attach_core::<T>(region, $flavor).map_err(serde::de::Error::custom)?;
                Ok($name {
                    core,
                    _t: PhantomData,
                })
            }
        }

        impl<T> fmt::Debug for $builder<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($builder))
                    .field("maxsize", &self.maxsize)
                    .field("capacity", &self.capacity)
                    .finish()
            }
        }

        impl<T> $builder<T> {
            /// At most `maxsize` items in the queue; 0 (the default) for no
            /// item bound (Python's `maxsize <= 0`).
            pub fn maxsize(mut self, maxsize: usize) -> Self {
                self.maxsize = maxsize;
                self
            }

            /// The size of the item store in bytes (default
            /// [`DEFAULT_CAPACITY`], at least 4 KiB, at most 4 GiB), in cells
            /// of 64 bytes; the queue holds at most one item per cell (an item
            /// of up to 16 encoded bytes takes no cell). Items larger than a
            /// quarter of it travel in their own shared memory segment.
            pub fn capacity_bytes(mut self, bytes: usize) -> Self {
                self.capacity = bytes;
                self
            }
        }
    };
}

// ---------------------------------------------------------------------------

/// A last-in, first-out queue between processes (Python's `queue.LifoQueue`,
/// shared like [`Queue`](super::Queue)): `get` takes the item put last.
///
/// Bounded by item count ([`with_maxsize`](LifoQueue::with_maxsize)) and
/// always by the size of its store ([`DEFAULT_CAPACITY`] unless set with
/// [`builder`](LifoQueue::builder)): a `put` waits while either bound is
/// reached. A failed put gives the item back.
///
/// # Examples
///
/// ```
/// use multiproc_ipc::queue::{LifoQueue, TryGetError, TryPutError};
/// use multiproc_ipc::Process;
///
/// fn produce(q: LifoQueue<u32>) {
///     for i in 1..=3 {
///         q.put(i).unwrap();
///     }
/// }
///
/// let q = LifoQueue::with_maxsize(3)?;
/// Process::spawn(produce, q.clone())?.join()?;
/// assert!(q.full());
/// match q.try_put(4) {
///     Err(TryPutError::Full(item)) => assert_eq!(item, 4), // given back
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(q.get().unwrap(), 3); // the newest first
/// assert_eq!(q.get().unwrap(), 2);
/// assert_eq!(q.try_get().unwrap(), 1);
/// assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
/// # Ok::<(), multiproc_ipc::Error>(())
/// ```
///
/// # Caveats
///
/// As for [`Queue`](super::Queue), the creating process must keep a handle
/// while others use the queue.
pub struct LifoQueue<T> {
    core: Arc<OrderedCore>,
    _t: PhantomData<fn(T) -> T>,
}

/// Configures a [`LifoQueue`]: [`maxsize`](LifoQueueBuilder::maxsize) and
/// [`capacity_bytes`](LifoQueueBuilder::capacity_bytes).
///
/// # Examples
///
/// ```
/// use multiproc_ipc::queue::LifoQueue;
///
/// let q: LifoQueue<String> = LifoQueue::builder().maxsize(10).capacity_bytes(1 << 16).build()?;
/// assert_eq!(q.maxsize(), Some(10));
/// assert_eq!(q.capacity_bytes(), 1 << 16);
/// # Ok::<(), multiproc_ipc::Error>(())
/// ```
pub struct LifoQueueBuilder<T> {
    maxsize: usize,
    capacity: usize,
    _t: PhantomData<fn(T) -> T>,
}

common!(LifoQueue, LifoQueueBuilder, Flavor::Lifo);

impl<T: Serialize + DeserializeOwned + 'static> LifoQueueBuilder<T> {
    /// Creates the queue.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a capacity out of range; `Io` if the shared
    /// memory cannot be created.
    pub fn build(self) -> Result<LifoQueue<T>> {
        Ok(LifoQueue {
            core: create_core::<T>(Flavor::Lifo, self.capacity, self.maxsize)?,
            _t: PhantomData,
        })
    }
}

impl<T: Serialize + DeserializeOwned + 'static> LifoQueue<T> {
    /// Creates a LIFO queue with no item bound (only the store's size).
    ///
    /// # Errors
    ///
    /// `Io` if the shared memory cannot be created.
    pub fn new() -> Result<LifoQueue<T>> {
        LifoQueue::builder().build()
    }

    /// Creates a LIFO queue holding at most `maxsize` items (0: no bound).
    ///
    /// # Errors
    ///
    /// As [`new`](LifoQueue::new).
    pub fn with_maxsize(maxsize: usize) -> Result<LifoQueue<T>> {
        LifoQueue::builder().maxsize(maxsize).build()
    }

    /// A builder for more settings.
    pub fn builder() -> LifoQueueBuilder<T> {
        LifoQueueBuilder {
            maxsize: 0,
            capacity: DEFAULT_CAPACITY,
            _t: PhantomData,
        }
    }

    /// Puts `item` on top, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`] if the queue is closed; [`PutError::Failed`] if
    /// the item cannot be encoded or the system fails. The item is given back.
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        put_impl(&lifo(&self.core.store), item, Mode::Until(None)).map_err(ops::put_error)
    }

    /// Puts `item` if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    ///
    /// [`TryPutError::Full`] if the queue is full, otherwise as
    /// [`put`](LifoQueue::put). The item is given back.
    pub fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
        put_impl(&lifo(&self.core.store), item, Mode::Try).map_err(ops::try_put_error)
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`PutTimeoutError::Timeout`] if the queue stayed full, otherwise as
    /// [`put`](LifoQueue::put). The item is given back.
    pub fn put_timeout(
        &self,
        item: T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<T>> {
        put_impl(&lifo(&self.core.store), item, Mode::timeout(timeout))
            .map_err(ops::put_timeout_error)
    }

    /// Takes the newest item, waiting for one.
    ///
    /// # Errors
    ///
    /// [`GetError::Closed`] once the queue is closed and drained;
    /// [`GetError::Failed`] if the item cannot be decoded as a `T` (it is
    /// consumed) or the system fails.
    pub fn get(&self) -> std::result::Result<T, GetError> {
        get_impl(&lifo(&self.core.store), Mode::Until(None)).map_err(ops::get_error)
    }

    /// Takes the newest item if there is one now (Python's `get_nowait`).
    ///
    /// # Errors
    ///
    /// [`TryGetError::Empty`] if the queue is empty, otherwise as
    /// [`get`](LifoQueue::get).
    pub fn try_get(&self) -> std::result::Result<T, TryGetError> {
        get_impl(&lifo(&self.core.store), Mode::Try).map_err(ops::try_get_error)
    }

    /// Takes the newest item, waiting at most `timeout` for one.
    ///
    /// # Errors
    ///
    /// [`GetTimeoutError::Timeout`] if none arrived, otherwise as
    /// [`get`](LifoQueue::get).
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
        get_impl(&lifo(&self.core.store), Mode::timeout(timeout)).map_err(ops::get_timeout_error)
    }
}

// ---------------------------------------------------------------------------

/// A priority queue between processes (Python's `queue.PriorityQueue`,
/// shared like [`Queue`](super::Queue)): `get` takes the least item by `T`'s
/// `Ord`; equal items come out in the order they were put.
///
/// Use a tuple `(priority, payload)` as Python programs do (mind that the
/// payload then breaks ties between equal priorities before insertion order
/// does, as in Python). Bounds and failed puts as for [`LifoQueue`].
///
/// # Examples
///
/// ```
/// use multiproc_ipc::queue::PriorityQueue;
/// use multiproc_ipc::Process;
///
/// fn produce(q: PriorityQueue<(u8, String)>) {
///     q.put((2, "low".into())).unwrap();
///     q.put((0, "urgent".into())).unwrap();
///     q.put((1, "normal".into())).unwrap();
/// }
///
/// let q = PriorityQueue::new()?;
/// Process::spawn(produce, q.clone())?.join()?;
/// assert_eq!(q.get().unwrap(), (0, "urgent".to_string()));
/// assert_eq!(q.get().unwrap(), (1, "normal".to_string()));
/// assert_eq!(q.get().unwrap(), (2, "low".to_string()));
/// # Ok::<(), multiproc_ipc::Error>(())
/// ```
///
/// # Caveats
///
/// Comparisons decode the stored items (O(log n) per put and get), so keep
/// compared items small: a large payload is best kept elsewhere and referred
/// to. As for [`Queue`](super::Queue), the creating process must keep a
/// handle while others use the queue.
pub struct PriorityQueue<T> {
    core: Arc<OrderedCore>,
    _t: PhantomData<fn(T) -> T>,
}

/// Configures a [`PriorityQueue`]: [`maxsize`](PriorityQueueBuilder::maxsize)
/// and [`capacity_bytes`](PriorityQueueBuilder::capacity_bytes).
///
/// # Examples
///
/// ```
/// use multiproc_ipc::queue::PriorityQueue;
///
/// let q: PriorityQueue<u64> = PriorityQueue::builder().maxsize(10).build()?;
/// assert_eq!(q.maxsize(), Some(10));
/// # Ok::<(), multiproc_ipc::Error>(())
/// ```
pub struct PriorityQueueBuilder<T> {
    maxsize: usize,
    capacity: usize,
    _t: PhantomData<fn(T) -> T>,
}

common!(PriorityQueue, PriorityQueueBuilder, Flavor::Priority);

impl<T: Serialize + DeserializeOwned + Ord + 'static> PriorityQueueBuilder<T> {
    /// Creates the queue.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a capacity out of range; `Io` if the shared
    /// memory cannot be created.
    pub fn build(self) -> Result<PriorityQueue<T>> {
        Ok(PriorityQueue {
            core: create_core::<T>(Flavor::Priority, self.capacity, self.maxsize)?,
            _t: PhantomData,
        })
    }
}

impl<T: Serialize + DeserializeOwned + Ord + 'static> PriorityQueue<T> {
    /// Creates a priority queue with no item bound (only the store's size).
    ///
    /// # Errors
    ///
    /// `Io` if the shared memory cannot be created.
    pub fn new() -> Result<PriorityQueue<T>> {
        PriorityQueue::builder().build()
    }

    /// Creates a priority queue holding at most `maxsize` items (0: no bound).
    ///
    /// # Errors
    ///
    /// As [`new`](PriorityQueue::new).
    pub fn with_maxsize(maxsize: usize) -> Result<PriorityQueue<T>> {
        PriorityQueue::builder().maxsize(maxsize).build()
    }

    /// A builder for more settings.
    pub fn builder() -> PriorityQueueBuilder<T> {
        PriorityQueueBuilder {
            maxsize: 0,
            capacity: DEFAULT_CAPACITY,
            _t: PhantomData,
        }
    }

    /// Puts `item`, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`] if the queue is closed; [`PutError::Failed`] if
    /// the item cannot be encoded, an item in the queue cannot be decoded to
    /// compare, or the system fails. The item is given back.
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        put_by_item(&self.core.store, item, Mode::Until(None)).map_err(ops::put_error)
    }

    /// Puts `item` if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    ///
    /// [`TryPutError::Full`] if the queue is full, otherwise as
    /// [`put`](PriorityQueue::put). The item is given back.
    pub fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
        put_by_item(&self.core.store, item, Mode::Try).map_err(ops::try_put_error)
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`PutTimeoutError::Timeout`] if the queue stayed full, otherwise as
    /// [`put`](PriorityQueue::put). The item is given back.
    pub fn put_timeout(
        &self,
        item: T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<T>> {
        put_by_item(&self.core.store, item, Mode::timeout(timeout)).map_err(ops::put_timeout_error)
    }

    /// Takes the least item (the earliest put among equals), waiting for one.
    ///
    /// # Errors
    ///
    /// [`GetError::Closed`] once the queue is closed and drained;
    /// [`GetError::Failed`] if an item cannot be decoded as a `T` or the
    /// system fails.
    pub fn get(&self) -> std::result::Result<T, GetError> {
        get_by_item(&self.core.store, Mode::Until(None)).map_err(ops::get_error)
    }

    /// Takes the least item if there is one now (Python's `get_nowait`).
    ///
    /// # Errors
    ///
    /// [`TryGetError::Empty`] if the queue is empty, otherwise as
    /// [`get`](PriorityQueue::get).
    pub fn try_get(&self) -> std::result::Result<T, TryGetError> {
        get_by_item(&self.core.store, Mode::Try).map_err(ops::try_get_error)
    }

    /// Takes the least item, waiting at most `timeout` for one.
    ///
    /// # Errors
    ///
    /// [`GetTimeoutError::Timeout`] if none arrived, otherwise as
    /// [`get`](PriorityQueue::get).
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetTimeoutError> {
        get_by_item(&self.core.store, Mode::timeout(timeout)).map_err(ops::get_timeout_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifo_order_across_cell_sizes() {
        let q: LifoQueue<Vec<u8>> = LifoQueue::builder()
            .capacity_bytes(1 << 16)
            .build()
            .unwrap();
        for round in 0..20u8 {
            for len in [0usize, 1, 63, 64, 65, 500, 5000] {
                q.put(vec![round; len]).unwrap();
            }
            for len in [5000usize, 500, 65, 64, 63, 1, 0] {
                assert_eq!(q.try_get().unwrap(), vec![round; len]);
            }
        }
        assert!(q.empty());
        // Cells freed in any order are reused: the store is full again only
        // when every cell is in use.
        let mut n = 0;
        while q.try_put(vec![1u8; 60]).is_ok() {
            n += 1;
        }
        assert_eq!(n, (1 << 16) / 64); // 61 bytes encoded: one cell each
    }

    #[test]
    fn priority_order_and_ties_in_insertion_order() {
        let q: PriorityQueue<(u32, u32)> = PriorityQueue::new().unwrap();
        // Priorities 0..10 repeated, each tagged with its insertion number.
        let mut items = Vec::new();
        for i in 0..500u32 {
            items.push(((i * 7919) % 10, i));
        }
        for &(p, i) in &items {
            q.put((p, i)).unwrap();
        }
        let mut got = Vec::new();
        while let Ok(x) = q.try_get() {
            got.push(x);
        }
        items.sort();
        assert_eq!(got, items);
    }

    #[test]
    fn priority_ties_on_the_whole_item_keep_insertion_order() {
        // Equal items cannot be told apart by value: check with a type whose
        // Ord looks only at the priority.
        #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
        struct Job(u8, u32);
        impl PartialOrd for Job {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Job {
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                self.0.cmp(&o.0)
            }
        }
        let q: PriorityQueue<Job> = PriorityQueue::new().unwrap();
        for i in 0..300u32 {
            q.put(Job((i % 3) as u8, i)).unwrap();
        }
        for p in 0..3u8 {
            let mut last = None;
            for _ in 0..100 {
                let j = q.try_get().unwrap();
                assert_eq!(j.0, p);
                assert!(last < Some(j.1), "{last:?} then {}", j.1);
                last = Some(j.1);
            }
        }
    }

    #[test]
    fn handles_reattach_and_check_type_and_flavor() {
        let q: PriorityQueue<u32> = PriorityQueue::new().unwrap();
        let bytes = crate::codec::encode(&q).unwrap();
        let again: PriorityQueue<u32> = crate::codec::decode(&bytes).unwrap();
        again.put(5).unwrap();
        assert_eq!(q.get().unwrap(), 5);
        assert!(crate::codec::decode::<PriorityQueue<i64>>(&bytes).is_err());
        assert!(crate::codec::decode::<LifoQueue<u32>>(&bytes).is_err());
        assert!(crate::codec::decode::<super::super::Queue<u32>>(&bytes).is_err());
    }
}
