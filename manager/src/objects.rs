//! One interface, several backends: traits for shared queues, joinable
//! queues, dicts, lists, values and locks.
//!
//! The manager's proxies implement them here; the Redis objects of
//! `multiproc-redis` implement them too, so code written against these traits
//! runs unchanged on a [`Manager`](crate::Manager), a
//! [`RemoteManager`](crate::RemoteManager) or a Redis server.
//!
//! # Examples
//!
//! ```
//! use multiproc_manager::{Manager, Result, SharedQueue};
//!
//! // Works with any backend's queue.
//! fn drain<Q: SharedQueue<u32>>(q: &Q) -> Result<u32> {
//!     Ok(q.get_many(100)?.into_iter().sum())
//! }
//!
//! let manager = Manager::start()?;
//! let q = manager.queue::<u32>()?;
//! q.put_many(&[1, 2, 3])?;
//! assert_eq!(drain(&q)?, 6);
//! # Ok::<(), multiproc_manager::Error>(())
//! ```

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use multiproc_ipc::{ErrorKind, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{DictProxy, JoinableQueueProxy, ListProxy, LockProxy, QueueProxy, ValueProxy};

/// A FIFO queue shared between processes (Python's `Queue` interface).
///
/// # Examples
///
/// ```
/// use multiproc_manager::{ErrorKind, Manager, SharedQueue};
///
/// let manager = Manager::start()?;
/// let q = manager.queue::<String>()?;
/// SharedQueue::put(&q, &"a".to_string())?;
/// assert_eq!(q.qsize()?, 1);
/// assert_eq!(SharedQueue::get(&q)?, "a");
/// assert_eq!(SharedQueue::try_get(&q).unwrap_err().kind(), ErrorKind::Empty);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
///
/// # Errors
///
/// Every method: `Serialization` if an item cannot be encoded or decoded,
/// `Closed`/`Io` if the backend is gone; `Empty`, `Full` and `Timeout` as
/// documented.
pub trait SharedQueue<T> {
    /// Puts `item`, waiting while a bounded queue is full.
    fn put(&self, item: &T) -> Result<()>;
    /// Puts `item` if there is room now, else fails with `Full`.
    fn try_put(&self, item: &T) -> Result<()>;
    /// Waits at most `timeout` for room; `Timeout` after that.
    fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()>;
    /// Takes the oldest item, waiting for one.
    fn get(&self) -> Result<T>;
    /// Takes the oldest item if there is one now, else fails with `Empty`.
    fn try_get(&self) -> Result<T>;
    /// Waits at most `timeout` for an item; `Timeout` after that.
    fn get_timeout(&self, timeout: Duration) -> Result<T>;
    /// The number of items queued.
    fn qsize(&self) -> Result<usize>;

    /// Puts every item, in order (backends may batch them).
    fn put_many(&self, items: &[T]) -> Result<()> {
        items.iter().try_for_each(|i| self.put(i))
    }

    /// Takes up to `max` items without waiting (fewer, or none, if fewer are
    /// queued).
    fn get_many(&self, max: usize) -> Result<Vec<T>> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.try_get() {
                Ok(v) => out.push(v),
                Err(e) if e.kind() == ErrorKind::Empty => break,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// True if no item is queued.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }
}

/// A queue whose consumers report each item done, and whose `join` waits
/// until every item put has been reported (Python's `JoinableQueue`).
///
/// # Examples
///
/// ```
/// use multiproc_manager::{Manager, SharedJoinableQueue, SharedQueue};
/// use std::time::Duration;
///
/// let manager = Manager::start()?;
/// let q = manager.joinable_queue::<u8>()?;
/// SharedQueue::put(&q, &1)?;
/// SharedQueue::get(&q)?;
/// SharedJoinableQueue::task_done(&q)?;
/// assert!(SharedJoinableQueue::join_timeout(&q, Duration::from_secs(5)).is_ok());
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
///
/// # Errors
///
/// As [`SharedQueue`]; `task_done` fails with `InvalidArgument` when called
/// more often than items were put; `join_timeout` with `Timeout`.
pub trait SharedJoinableQueue<T>: SharedQueue<T> {
    /// Reports one item taken with `get` as processed.
    fn task_done(&self) -> Result<()>;
    /// Waits until every item put has been reported done.
    fn join(&self) -> Result<()>;
    /// Like [`join`](SharedJoinableQueue::join), for at most `timeout`.
    fn join_timeout(&self, timeout: Duration) -> Result<()>;
}

/// A dictionary shared between processes.
///
/// # Examples
///
/// ```
/// use multiproc_manager::{Manager, SharedDict};
///
/// let manager = Manager::start()?;
/// let d = manager.dict::<String, i64>()?;
/// SharedDict::insert(&d, &"a".to_string(), &1)?;
/// assert_eq!(SharedDict::get(&d, &"a".to_string())?, Some(1));
/// assert_eq!(SharedDict::len(&d)?, 1);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
///
/// # Errors
///
/// Every method: `Serialization` if a key or value cannot be encoded or
/// decoded, `Closed`/`Io` if the backend is gone.
pub trait SharedDict<K, V> {
    /// The value under `key`.
    fn get(&self, key: &K) -> Result<Option<V>>;
    /// Stores `value` under `key`; returns the value it replaced.
    fn insert(&self, key: &K, value: &V) -> Result<Option<V>>;
    /// Removes `key`; returns its value.
    fn remove(&self, key: &K) -> Result<Option<V>>;
    /// True if `key` is present.
    fn contains_key(&self, key: &K) -> Result<bool>;
    /// The number of entries.
    fn len(&self) -> Result<usize>;
    /// The keys, in no particular order.
    fn keys(&self) -> Result<Vec<K>>;
    /// The entries, in no particular order.
    fn items(&self) -> Result<Vec<(K, V)>>;
    /// Removes every entry.
    fn clear(&self) -> Result<()>;

    /// True if there is no entry.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The entries as a local map.
    fn to_map(&self) -> Result<HashMap<K, V>>
    where
        K: Eq + Hash,
    {
        Ok(self.items()?.into_iter().collect())
    }
}

/// A list shared between processes. Negative indices count from the end,
/// as in Python.
///
/// # Examples
///
/// ```
/// use multiproc_manager::{Manager, SharedList};
///
/// let manager = Manager::start()?;
/// let l = manager.list::<u32>()?;
/// SharedList::extend(&l, &[1, 2, 3])?;
/// assert_eq!(SharedList::get(&l, -1)?, 3);
/// assert_eq!(SharedList::pop(&l, None)?, 3);
/// assert_eq!(SharedList::to_vec(&l)?, vec![1, 2]);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
///
/// # Errors
///
/// Every method: `Serialization`, `Closed`/`Io` as for [`SharedDict`];
/// `InvalidArgument` for an index out of range; `Empty` for `pop` on an
/// empty list.
pub trait SharedList<T> {
    /// Appends `value`.
    fn push(&self, value: &T) -> Result<()>;
    /// Appends every item, in order.
    fn extend(&self, items: &[T]) -> Result<()>;
    /// The item at `index`.
    fn get(&self, index: i64) -> Result<T>;
    /// Replaces the item at `index`.
    fn set(&self, index: i64, value: &T) -> Result<()>;
    /// Removes and returns the item at `index` (the last one for `None`).
    fn pop(&self, index: Option<i64>) -> Result<T>;
    /// The number of items.
    fn len(&self) -> Result<usize>;
    /// Every item, in order.
    fn to_vec(&self) -> Result<Vec<T>>;
    /// Removes every item.
    fn clear(&self) -> Result<()>;

    /// True if there is no item.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// One value shared between processes, with an atomic read-modify-write.
///
/// # Examples
///
/// ```
/// use multiproc_manager::{Manager, SharedValue};
///
/// let manager = Manager::start()?;
/// let v = manager.value(10i64)?;
/// assert_eq!(SharedValue::update(&v, |x| x + 1)?, 11);
/// assert_eq!(SharedValue::get(&v)?, 11);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
///
/// # Errors
///
/// As [`SharedDict`]; `update` also fails with `TaskPanicked` if `f`
/// panics inside a manager.
pub trait SharedValue<T> {
    /// The value.
    fn get(&self) -> Result<T>;
    /// Replaces the value.
    fn set(&self, value: &T) -> Result<()>;
    /// Replaces the value by `f(value)` atomically (no other update or set
    /// comes between the read and the write); returns the new value. `f` may
    /// run more than once on some backends: keep it pure.
    fn update(&self, f: fn(T) -> T) -> Result<T>;
}

/// A mutual-exclusion lock shared between processes (Python's `acquire` /
/// `release`, plus a guard).
///
/// # Examples
///
/// ```
/// use multiproc_manager::{Manager, SharedLock};
/// use std::time::Duration;
///
/// let manager = Manager::start()?;
/// let lock = manager.lock()?;
/// {
///     let _g = SharedLock::lock(&lock)?;
///     assert!(!SharedLock::try_acquire(&lock)?);
/// }
/// assert!(SharedLock::acquire_timeout(&lock, Duration::from_secs(1))?);
/// SharedLock::release(&lock)?;
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
///
/// # Errors
///
/// `Closed`/`Io` if the backend is gone; `release` fails with
/// `InvalidArgument` when this holder does not hold the lock.
pub trait SharedLock {
    /// Waits for the lock.
    fn acquire(&self) -> Result<()>;
    /// Takes the lock if it is free now; true if taken.
    fn try_acquire(&self) -> Result<bool>;
    /// Waits at most `timeout` for the lock; true if taken.
    fn acquire_timeout(&self, timeout: Duration) -> Result<bool>;
    /// Releases the lock.
    fn release(&self) -> Result<()>;

    /// Waits for the lock and returns a guard that releases it when dropped.
    fn lock(&self) -> Result<SharedLockGuard<'_, Self>> {
        self.acquire()?;
        Ok(SharedLockGuard { lock: self })
    }
}

/// Releases a [`SharedLock`] when dropped (an error on release is ignored;
/// call [`SharedLockGuard::unlock`] to see it).
#[must_use = "the lock is released when the guard is dropped"]
pub struct SharedLockGuard<'a, L: SharedLock + ?Sized> {
    lock: &'a L,
}

impl<L: SharedLock + ?Sized> SharedLockGuard<'_, L> {
    /// Releases the lock now and reports whether that worked.
    ///
    /// # Errors
    ///
    /// As [`SharedLock::release`].
    pub fn unlock(self) -> Result<()> {
        let lock = self.lock;
        std::mem::forget(self);
        lock.release()
    }
}

impl<L: SharedLock + ?Sized> std::fmt::Debug for SharedLockGuard<'_, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedLockGuard")
    }
}

impl<L: SharedLock + ?Sized> Drop for SharedLockGuard<'_, L> {
    fn drop(&mut self) {
        let _ = self.lock.release();
    }
}

// ----- the manager proxies -----

impl<T: Serialize + DeserializeOwned> SharedQueue<T> for QueueProxy<T> {
    fn put(&self, item: &T) -> Result<()> {
        QueueProxy::put(self, item)
    }
    fn try_put(&self, item: &T) -> Result<()> {
        QueueProxy::try_put(self, item)
    }
    fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        QueueProxy::put_timeout(self, item, timeout)
    }
    fn get(&self) -> Result<T> {
        QueueProxy::get(self)
    }
    fn try_get(&self) -> Result<T> {
        QueueProxy::try_get(self)
    }
    fn get_timeout(&self, timeout: Duration) -> Result<T> {
        QueueProxy::get_timeout(self, timeout)
    }
    fn qsize(&self) -> Result<usize> {
        QueueProxy::len(self)
    }
}

impl<T: Serialize + DeserializeOwned> SharedQueue<T> for JoinableQueueProxy<T> {
    fn put(&self, item: &T) -> Result<()> {
        QueueProxy::put(self, item)
    }
    fn try_put(&self, item: &T) -> Result<()> {
        QueueProxy::try_put(self, item)
    }
    fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        QueueProxy::put_timeout(self, item, timeout)
    }
    fn get(&self) -> Result<T> {
        QueueProxy::get(self)
    }
    fn try_get(&self) -> Result<T> {
        QueueProxy::try_get(self)
    }
    fn get_timeout(&self, timeout: Duration) -> Result<T> {
        QueueProxy::get_timeout(self, timeout)
    }
    fn qsize(&self) -> Result<usize> {
        QueueProxy::len(self)
    }
}

impl<T: Serialize + DeserializeOwned> SharedJoinableQueue<T> for JoinableQueueProxy<T> {
    fn task_done(&self) -> Result<()> {
        JoinableQueueProxy::task_done(self)
    }
    fn join(&self) -> Result<()> {
        JoinableQueueProxy::join(self)
    }
    fn join_timeout(&self, timeout: Duration) -> Result<()> {
        JoinableQueueProxy::join_timeout(self, timeout)
    }
}

impl<K, V> SharedDict<K, V> for DictProxy<K, V>
where
    K: Serialize + DeserializeOwned + Eq + Hash,
    V: Serialize + DeserializeOwned,
{
    fn get(&self, key: &K) -> Result<Option<V>> {
        DictProxy::get(self, key)
    }
    fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        DictProxy::insert(self, key, value)
    }
    fn remove(&self, key: &K) -> Result<Option<V>> {
        DictProxy::remove(self, key)
    }
    fn contains_key(&self, key: &K) -> Result<bool> {
        DictProxy::contains_key(self, key)
    }
    fn len(&self) -> Result<usize> {
        DictProxy::len(self)
    }
    fn keys(&self) -> Result<Vec<K>> {
        DictProxy::keys(self)
    }
    fn items(&self) -> Result<Vec<(K, V)>> {
        DictProxy::items(self)
    }
    fn clear(&self) -> Result<()> {
        DictProxy::clear(self)
    }
}

impl<T: Serialize + DeserializeOwned + Clone> SharedList<T> for ListProxy<T> {
    fn push(&self, value: &T) -> Result<()> {
        ListProxy::push(self, value)
    }
    fn extend(&self, items: &[T]) -> Result<()> {
        ListProxy::extend(self, items.iter().cloned())
    }
    fn get(&self, index: i64) -> Result<T> {
        ListProxy::get(self, index)
    }
    fn set(&self, index: i64, value: &T) -> Result<()> {
        ListProxy::set(self, index, value)
    }
    fn pop(&self, index: Option<i64>) -> Result<T> {
        ListProxy::pop(self, index)
    }
    fn len(&self) -> Result<usize> {
        ListProxy::len(self)
    }
    fn to_vec(&self) -> Result<Vec<T>> {
        ListProxy::to_vec(self)
    }
    fn clear(&self) -> Result<()> {
        ListProxy::clear(self)
    }
}

impl<T: Serialize + DeserializeOwned + 'static> SharedValue<T> for ValueProxy<T> {
    fn get(&self) -> Result<T> {
        ValueProxy::get(self)
    }
    fn set(&self, value: &T) -> Result<()> {
        ValueProxy::set(self, value)
    }
    fn update(&self, f: fn(T) -> T) -> Result<T> {
        ValueProxy::update_with(self, f)
    }
}

impl SharedLock for LockProxy {
    fn acquire(&self) -> Result<()> {
        LockProxy::acquire(self)
    }
    fn try_acquire(&self) -> Result<bool> {
        // The guard's drop would release: keep the lock for `release`.
        Ok(self.try_lock()?.map(std::mem::forget).is_some())
    }
    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self.lock_timeout(timeout)?.map(std::mem::forget).is_some())
    }
    fn release(&self) -> Result<()> {
        LockProxy::release(self)
    }
}
