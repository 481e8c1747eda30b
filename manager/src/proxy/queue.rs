//! [`QueueProxy`] and [`JoinableQueueProxy`].

use super::*;

/// A queue in a manager (Python's `manager.Queue()`), also what a remote
/// manager serves to task workers.
///
/// The same proxy serves the three orders of Python's `queue` module, fixed
/// when the queue is made: FIFO ([`Manager::queue`](crate::Manager::queue):
/// `get` takes the oldest item), LIFO
/// ([`Manager::lifo_queue`](crate::Manager::lifo_queue): the newest) and
/// priority ([`Manager::priority_queue`](crate::Manager::priority_queue):
/// the smallest, the oldest of equal ones). Everything else (blocking,
/// bounds, `Full` and `Empty`) is the same for all three.
///
/// # Examples
///
/// ```
/// use multiproc_manager::{ErrorKind, Manager};
///
/// let manager = Manager::start()?;
/// let q = manager.queue::<String>()?;
/// q.put(&"job".to_string())?;
/// assert_eq!(q.get()?, "job");
/// assert_eq!(q.try_get().unwrap_err().kind(), ErrorKind::Empty);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct QueueProxy<T> {
    #[serde(deserialize_with = "ObjRef::de_typed::<T, _>")]
    obj: ObjRef,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}
proxy_common!(QueueProxy<T> => T);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    fn put_with(&self, item: &T, b: Block) -> Result<()> {
        self.obj.unit(Op::QueuePut(enc(item)?, b), "put")
    }

    fn get_with(&self, b: Block) -> Result<T> {
        self.obj.value(Op::QueueGet(b), "get")
    }

    /// Puts `item`, waiting while a bounded queue is full.
    ///
    /// # Errors
    ///
    /// `Serialization` if `item` cannot be encoded (or, for a priority
    /// queue, is not of the queue's type); `InvalidArgument` if the queue
    /// holds another type (see [Type fingerprints](crate#type-fingerprints),
    /// as for every typed proxy); `Closed`/`Io` if the manager is gone.
    pub fn put(&self, item: &T) -> Result<()> {
        self.put_with(item, Block::Forever)
    }

    /// Puts `item` if there is room now.
    ///
    /// # Errors
    ///
    /// `Full` if the queue is full; else as [`put`](QueueProxy::put).
    pub fn try_put(&self, item: &T) -> Result<()> {
        self.put_with(item, Block::No)
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// `Timeout` if the queue stayed full; else as [`put`](QueueProxy::put).
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.put_with(item, block(Some(timeout)))
    }

    /// Takes the next item (the oldest; the newest of a LIFO queue, the
    /// smallest of a priority queue), waiting for one.
    ///
    /// # Errors
    ///
    /// `Serialization` if the item is not a `T`; `Closed`/`Io` if the manager
    /// is gone.
    pub fn get(&self) -> Result<T> {
        self.get_with(Block::Forever)
    }

    /// Takes the next item if there is one.
    ///
    /// # Errors
    ///
    /// `Empty` if there is none; else as [`get`](QueueProxy::get).
    pub fn try_get(&self) -> Result<T> {
        self.get_with(Block::No)
    }

    /// Takes the next item, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if none came; else as [`get`](QueueProxy::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_with(block(Some(timeout)))
    }

    /// The number of items (Python's `qsize`).
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone.
    pub fn len(&self) -> Result<usize> {
        self.obj.len("len")
    }

    /// True if the queue holds no item.
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone.
    pub fn is_empty(&self) -> Result<bool> {
        self.obj.boolean(Op::QueueEmpty, "is_empty")
    }

    /// True if a bounded queue is full.
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone.
    pub fn is_full(&self) -> Result<bool> {
        self.obj.boolean(Op::QueueFull, "is_full")
    }
}

/// A queue whose consumers acknowledge items, Python's `JoinableQueue`: it
/// has every [`QueueProxy`] method (through `Deref`) plus
/// [`task_done`](JoinableQueueProxy::task_done) and
/// [`join`](JoinableQueueProxy::join).
///
/// # Examples
///
/// ```
/// use multiproc_manager::Manager;
///
/// let manager = Manager::start()?;
/// let q = manager.joinable_queue::<u8>()?;
/// q.put(&1)?;
/// let _ = q.get()?;
/// q.task_done()?;
/// q.join()?; // every item was acknowledged
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct JoinableQueueProxy<T> {
    queue: QueueProxy<T>,
}

impl<T> Clone for JoinableQueueProxy<T> {
    fn clone(&self) -> Self {
        JoinableQueueProxy {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueueProxy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinableQueueProxy({:?})", self.queue.obj)
    }
}

impl<T> Deref for JoinableQueueProxy<T> {
    type Target = QueueProxy<T>;
    fn deref(&self) -> &QueueProxy<T> {
        &self.queue
    }
}

impl<T> JoinableQueueProxy<T> {
    pub(crate) fn from_obj(obj: ObjRef) -> Self {
        JoinableQueueProxy {
            queue: QueueProxy::from_obj(obj),
        }
    }

    /// Marks one item taken with `get` as processed.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if called more times than items were put.
    pub fn task_done(&self) -> Result<()> {
        self.queue.obj.unit(Op::TaskDone, "task_done")
    }

    /// Waits until every item put has been marked done.
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone.
    pub fn join(&self) -> Result<()> {
        self.queue.obj.unit(Op::QueueJoin(Block::Forever), "join")
    }

    /// As [`join`](JoinableQueueProxy::join), at most `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if tasks remain unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.queue
            .obj
            .unit(Op::QueueJoin(Block::For(timeout)), "join")
    }
}
