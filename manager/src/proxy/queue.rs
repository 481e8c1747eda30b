//! [`QueueProxy`] and [`JoinableQueueProxy`].

use multiproc_ipc::queue::{PutError, PutTimeoutError, TryPutError};

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
/// It speaks the local [`Queue`](multiproc_ipc::queue::Queue)'s vocabulary,
/// which is Python's: `put(item)` takes the item by value and gives it back
/// in the error when it fails ([`PutError`], [`TryPutError`],
/// [`PutTimeoutError`]), and the sizes are [`qsize`](QueueProxy::qsize),
/// [`empty`](QueueProxy::empty) and [`full`](QueueProxy::full). Unlike the
/// local queue's, its sizes and gets return a `Result`, since each is a
/// request to the manager.
///
/// # Examples
///
/// ```
/// use multiproc::{ErrorKind, Manager};
///
/// let manager = Manager::start()?;
/// let q = manager.queue::<String>()?;
/// q.put("job".to_string())?;
/// assert_eq!(q.get()?, "job");
/// assert_eq!(q.try_get().unwrap_err().kind(), ErrorKind::Empty);
/// # Ok::<(), multiproc::Error>(())
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
    /// Sends `item` with `b`; on failure the item comes back with the error.
    fn put_with(&self, item: T, b: Block) -> std::result::Result<(), (T, Error)> {
        let bytes = match enc(&item) {
            Ok(bytes) => bytes,
            Err(e) => return Err((item, e)),
        };
        match self.obj.unit(Op::QueuePut(bytes, b), "put") {
            Ok(()) => Ok(()),
            Err(e) => Err((item, e)),
        }
    }

    fn get_with(&self, b: Block) -> Result<T> {
        self.obj.value(Op::QueueGet(b), "get")
    }

    /// Puts `item`, waiting while a bounded queue is full (the local
    /// [`Queue::put`](multiproc_ipc::queue::Queue::put)'s signature).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Manager;
    ///
    /// let manager = Manager::start()?;
    /// let q = manager.queue::<String>()?;
    /// q.put("job".to_string())?;
    /// assert_eq!(q.qsize()?, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The item comes back in the error ([`PutError::into_inner`]), whose
    /// [`kind`](PutError::kind) is `Serialization` if `item` cannot be
    /// encoded (or, for a priority queue, is not of the queue's type),
    /// `InvalidArgument` if the queue holds another type (see
    /// [Type fingerprints](crate#type-fingerprints), as for every typed
    /// proxy), `Closed`/`Io` if the manager is gone. These are all
    /// [`PutError::Failed`], which keeps the manager's error.
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.put_with(item, Block::Forever)
            .map_err(|(item, e)| PutError::Failed(item, e))
    }

    /// Puts `item` if there is room now.
    ///
    /// # Errors
    ///
    /// [`TryPutError::Full`] (kind `Full`) if the queue is full; else
    /// [`TryPutError::Failed`] as for [`put`](QueueProxy::put). The item
    /// comes back in either.
    pub fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
        self.put_with(item, Block::No).map_err(|(item, e)| {
            if e.kind() == ErrorKind::Full {
                TryPutError::Full(item)
            } else {
                TryPutError::Failed(item, e)
            }
        })
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`PutTimeoutError::Timeout`] (kind `Timeout`) if the queue stayed
    /// full; else [`PutTimeoutError::Failed`] as for
    /// [`put`](QueueProxy::put). The item comes back in either.
    pub fn put_timeout(
        &self,
        item: T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<T>> {
        self.put_with(item, block(Some(timeout)))
            .map_err(|(item, e)| {
                if e.kind() == ErrorKind::Timeout {
                    PutTimeoutError::Timeout(item)
                } else {
                    PutTimeoutError::Failed(item, e)
                }
            })
    }

    /// Takes the next item (the oldest; the newest of a LIFO queue, the
    /// smallest of a priority queue), waiting for one.
    ///
    /// # Errors
    ///
    /// `Serialization` if the item is not a `T`; `InvalidArgument` if the
    /// queue holds another type (nothing is taken); `Closed`/`Io` if the
    /// manager is gone.
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

    /// The number of items (Python's `qsize()`, as the local
    /// [`Queue::qsize`](multiproc_ipc::queue::Queue::qsize)).
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone.
    pub fn qsize(&self) -> Result<usize> {
        self.obj.len("qsize")
    }

    /// True if the queue holds no item (Python's `empty()`).
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone.
    pub fn empty(&self) -> Result<bool> {
        self.obj.boolean(Op::QueueEmpty, "empty")
    }

    /// True if a bounded queue is full (Python's `full()`).
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone.
    pub fn full(&self) -> Result<bool> {
        self.obj.boolean(Op::QueueFull, "full")
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
/// use multiproc::Manager;
///
/// let manager = Manager::start()?;
/// let q = manager.joinable_queue::<u8>()?;
/// q.put(1)?;
/// let _ = q.get()?;
/// q.task_done()?;
/// q.join()?; // every item was acknowledged
/// # Ok::<(), multiproc::Error>(())
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
