//! One interface, several backends: traits for shared queues, joinable
//! queues, dicts, lists, values and locks.
//!
//! The manager's proxies implement them here; the Redis objects of
//! `multiproc-redis` implement them too, so code written against these traits
//! runs unchanged on a [`Manager`](crate::Manager), a
//! [`RemoteManager`](crate::RemoteManager) or a Redis server. The traits
//! speak the proxies' vocabulary (which is Python's): a queue's `put` takes
//! the item by value and gives it back in the error, its sizes are `qsize`,
//! `empty` and `full`; a dict's lookups take any borrowed form of the key.
//!
//! # Examples
//!
//! ```
//! use multiproc::{Manager, Result, SharedQueue};
//!
//! // Works with any backend's queue.
//! fn drain<Q: SharedQueue<u32>>(q: &Q) -> Result<u32> {
//!     Ok(q.get_many(100)?.into_iter().sum())
//! }
//!
//! let manager = Manager::start()?;
//! let q = manager.queue::<u32>()?;
//! q.put_many(vec![1, 2, 3])?;
//! assert_eq!(drain(&q)?, 6);
//! # Ok::<(), multiproc::Error>(())
//! ```

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use multiproc_ipc::queue::{PutError, PutTimeoutError, TryPutError};
use multiproc_ipc::{ErrorKind, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{DictProxy, JoinableQueueProxy, ListProxy, LockProxy, QueueProxy, ValueProxy};

/// A queue shared between processes, with the vocabulary of Python's
/// `Queue` and of [`QueueProxy`]: `put(item)` takes the item by value and
/// gives it back when it fails ([`PutError`], [`TryPutError`],
/// [`PutTimeoutError`]); sizes are [`qsize`](SharedQueue::qsize),
/// [`empty`](SharedQueue::empty) and [`full`](SharedQueue::full).
///
/// # Examples
///
/// ```
/// use multiproc::{ErrorKind, Manager, SharedQueue};
///
/// let manager = Manager::start()?;
/// let q = manager.queue::<String>()?;
/// SharedQueue::put(&q, "a".to_string())?;
/// assert_eq!(SharedQueue::qsize(&q)?, 1);
/// assert_eq!(SharedQueue::get(&q)?, "a");
/// assert_eq!(SharedQueue::try_get(&q).unwrap_err().kind(), ErrorKind::Empty);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Errors
///
/// Every method: `Serialization` if an item cannot be encoded or decoded,
/// `Closed`/`Io` if the backend is gone; `Empty`, `Full` and `Timeout` as
/// documented. A failed put gives its item back; every put error converts
/// into [`Error`](multiproc_ipc::Error) for `?`.
///
/// A put that fails with `Io` or `Closed` because the connection broke
/// while the request was out may have been stored by the other side (a
/// manager or a Redis server cannot tell the client after the break): the
/// item comes back all the same. Code that must not put twice checks the
/// queue, or puts through something idempotent (a [`SharedDict`] keyed by
/// the item's id), before it retries.
pub trait SharedQueue<T> {
    /// Puts `item`, waiting while a bounded queue is full.
    ///
    /// # Errors
    ///
    /// [`PutError::Failed`] (with the item) as documented on the trait.
    fn put(&self, item: T) -> std::result::Result<(), PutError<T>>;
    /// Puts `item` if there is room now.
    ///
    /// # Errors
    ///
    /// [`TryPutError::Full`] (kind `Full`) if a bounded queue is full; else
    /// as [`put`](SharedQueue::put). The item comes back in either.
    fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>>;
    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`PutTimeoutError::Timeout`] (kind `Timeout`) if the queue stayed
    /// full; else as [`put`](SharedQueue::put). The item comes back in either.
    fn put_timeout(
        &self,
        item: T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<T>>;
    /// Takes the next item, waiting for one.
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn get(&self) -> Result<T>;
    /// Takes the next item if there is one now.
    ///
    /// # Errors
    ///
    /// `Empty` if there is none.
    fn try_get(&self) -> Result<T>;
    /// Takes the next item, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if none came.
    fn get_timeout(&self, timeout: Duration) -> Result<T>;
    /// The number of items queued (Python's `qsize()`).
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn qsize(&self) -> Result<usize>;
    /// True if a bounded queue is full (Python's `full()`); never for an
    /// unbounded one.
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn full(&self) -> Result<bool>;

    /// True if no item is queued (Python's `empty()`).
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    /// Puts every item, in order, waiting for room (backends may send them
    /// in one request).
    ///
    /// # Errors
    ///
    /// As [`put`](SharedQueue::put); the error gives back the items that were
    /// not put (from the first that failed on). With `Io`, a backend that
    /// sends the batch at once cannot tell whether the server stored it: the
    /// items come back, and they may have been put.
    fn put_many(&self, items: Vec<T>) -> std::result::Result<(), PutError<Vec<T>>> {
        let mut rest = items.into_iter();
        while let Some(item) = rest.next() {
            if let Err(e) = self.put(item) {
                let give_back = |first: T, rest: std::vec::IntoIter<T>| {
                    std::iter::once(first).chain(rest).collect::<Vec<T>>()
                };
                return Err(match e {
                    PutError::Closed(t) => PutError::Closed(give_back(t, rest)),
                    PutError::Failed(t, e) => PutError::Failed(give_back(t, rest), e),
                });
            }
        }
        Ok(())
    }

    /// Takes up to `max` items without waiting (fewer, or none, if fewer are
    /// queued).
    ///
    /// # Errors
    ///
    /// As [`get`](SharedQueue::get); items taken before an error are lost
    /// with it only on backends that take them one at a time.
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
}

/// A queue whose consumers report each item done, and whose `join` waits
/// until every item put has been reported (Python's `JoinableQueue`).
///
/// # Examples
///
/// ```
/// use multiproc::{Manager, SharedJoinableQueue, SharedQueue};
/// use std::time::Duration;
///
/// let manager = Manager::start()?;
/// let q = manager.joinable_queue::<u8>()?;
/// SharedQueue::put(&q, 1)?;
/// SharedQueue::get(&q)?;
/// SharedJoinableQueue::task_done(&q)?;
/// assert!(SharedJoinableQueue::join_timeout(&q, Duration::from_secs(5)).is_ok());
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Errors
///
/// As [`SharedQueue`]; `task_done` fails with `InvalidArgument` when called
/// more often than items were put; `join_timeout` with `Timeout`.
pub trait SharedJoinableQueue<T>: SharedQueue<T> {
    /// Reports one item taken with `get` as processed.
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn task_done(&self) -> Result<()>;
    /// Waits until every item put has been reported done.
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn join(&self) -> Result<()>;
    /// Like [`join`](SharedJoinableQueue::join), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if items are still unfinished then.
    fn join_timeout(&self, timeout: Duration) -> Result<()>;
}

/// A dictionary shared between processes, with [`DictProxy`]'s vocabulary.
///
/// Lookups take any borrowed form of `K` that encodes as `K` does, as with
/// [`HashMap::get`]: a `&str` for a `String` key, a `&[T]` for a `Vec<T>`
/// key. Keys are compared by their encoding, so use key types whose encoding
/// is canonical (integers, strings, tuples of them...; not hash maps).
///
/// # Examples
///
/// ```
/// use multiproc::{Manager, SharedDict};
///
/// let manager = Manager::start()?;
/// let d = manager.dict::<String, i64>()?;
/// SharedDict::insert(&d, &"a".to_string(), &1)?;
/// assert_eq!(SharedDict::get(&d, "a")?, Some(1)); // a &str for a String key
/// assert_eq!(SharedDict::len(&d)?, 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Errors
///
/// Every method: `Serialization` if a key or value cannot be encoded or
/// decoded, `Closed`/`Io` if the backend is gone.
pub trait SharedDict<K, V> {
    /// The value under `key` (Python's `d.get(key)`).
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn get<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize;
    /// Stores `value` under `key`; returns the value it replaced.
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn insert(&self, key: &K, value: &V) -> Result<Option<V>>;
    /// Removes `key`; returns its value (`del d[key]`).
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn remove<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize;
    /// True if `key` is present (`key in d`).
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn contains_key<Q>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize;
    /// The value under `key`, after inserting `default` there if the key
    /// was absent, atomically (Python's `d.setdefault(key, default)`).
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn setdefault(&self, key: &K, default: &V) -> Result<V>;
    /// Replaces the value under `key` (`None` if absent) with `f(old)`,
    /// atomically, and returns the new value: `d[key] = f(d.get(key))`
    /// without a lock. A manager runs `f` in its own process; Redis runs it
    /// here, in an optimistic transaction tried again if another writer
    /// changed the dict meanwhile (so `f` may run more than once).
    ///
    /// # Errors
    ///
    /// `TaskPanicked` if `f` panics in a manager; `InvalidArgument` on a
    /// remote manager, which never runs code sent by a client; else as
    /// documented on the trait.
    fn update_with<Q>(&self, key: &Q, f: fn(Option<V>) -> V) -> Result<V>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
        V: 'static;
    /// Stores every pair (Python's `d.update(pairs)`).
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn update<I: IntoIterator<Item = (K, V)>>(&self, pairs: I) -> Result<()>;
    /// The number of entries.
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn len(&self) -> Result<usize>;
    /// The keys (a manager's dict lists them in insertion order; a Redis
    /// hash in no particular order).
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn keys(&self) -> Result<Vec<K>>;
    /// The values, in the order of [`keys`](SharedDict::keys).
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn values(&self) -> Result<Vec<V>>;
    /// The entries, in the order of [`keys`](SharedDict::keys).
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn items(&self) -> Result<Vec<(K, V)>>;
    /// Removes every entry.
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn clear(&self) -> Result<()>;

    /// Removes `key` and returns its value (Python's `d.pop(key)`).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` (Python's `KeyError`) if the key is absent; else as
    /// documented on the trait.
    fn pop<Q>(&self, key: &Q) -> Result<V>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
    {
        self.remove(key)?
            .ok_or_else(|| multiproc_ipc::Error::new(ErrorKind::InvalidArgument, "key not found"))
    }

    /// True if there is no entry.
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The entries as a local hash map (see
    /// [`DictProxy::to_map`] for one that keeps a manager's order).
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn to_map(&self) -> Result<HashMap<K, V>>
    where
        K: Eq + Hash,
    {
        Ok(self.items()?.into_iter().collect())
    }
}

/// A list shared between processes, with [`ListProxy`]'s vocabulary.
/// Negative indices count from the end, as in Python.
///
/// # Examples
///
/// ```
/// use multiproc::{Manager, SharedList};
///
/// let manager = Manager::start()?;
/// let l = manager.list::<u32>()?;
/// SharedList::extend(&l, [1, 2, 3])?;
/// assert_eq!(SharedList::get(&l, -1)?, 3);
/// assert_eq!(SharedList::pop(&l, None)?, 3);
/// assert_eq!(SharedList::to_vec(&l)?, vec![1, 2]);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Errors
///
/// Every method: `Serialization`, `Closed`/`Io` as for [`SharedDict`];
/// `InvalidArgument` (Python's `IndexError`) for an index out of range;
/// `Empty` for `pop` on an empty list.
pub trait SharedList<T> {
    /// Appends `value` (Python's `append`).
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn push(&self, value: &T) -> Result<()>;
    /// Appends every item, in order.
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn extend<I: IntoIterator<Item = T>>(&self, items: I) -> Result<()>;
    /// The item at `index` (`l[index]`).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` out of range.
    fn get(&self, index: i64) -> Result<T>;
    /// Replaces the item at `index` (`l[index] = value`).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` out of range.
    fn set(&self, index: i64, value: &T) -> Result<()>;
    /// Inserts `value` before `index`, clamped to the list as in Python
    /// (`l.insert(index, value)`).
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn insert(&self, index: i64, value: &T) -> Result<()>;
    /// Removes and returns the item at `index` (the last one for `None`).
    ///
    /// # Errors
    ///
    /// `Empty` on an empty list; an index out of range is `InvalidArgument`
    /// on some backends, `Empty` on others.
    fn pop(&self, index: Option<i64>) -> Result<T>;
    /// Removes the first item equal to `value` (compared by encoding);
    /// returns whether one was found (Python's `remove`, without the
    /// `ValueError`).
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn remove(&self, value: &T) -> Result<bool>;
    /// The number of items.
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn len(&self) -> Result<usize>;
    /// Every item, in order.
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn to_vec(&self) -> Result<Vec<T>>;
    /// Removes every item.
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn clear(&self) -> Result<()>;

    /// True if there is no item.
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// One value shared between processes, with an atomic read-modify-write.
///
/// # Examples
///
/// ```
/// use multiproc::{Manager, SharedValue};
///
/// let manager = Manager::start()?;
/// let v = manager.value(10i64)?;
/// assert_eq!(SharedValue::update(&v, |x| x + 1)?, 11);
/// assert_eq!(SharedValue::get(&v)?, 11);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Errors
///
/// As [`SharedDict`]; `update` also fails with `TaskPanicked` if `f`
/// panics inside a manager.
pub trait SharedValue<T> {
    /// The value.
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn get(&self) -> Result<T>;
    /// Replaces the value.
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn set(&self, value: &T) -> Result<()>;
    /// Replaces the value by `f(value)` atomically (no other update or set
    /// comes between the read and the write); returns the new value. `f` may
    /// run more than once on some backends: keep it pure.
    ///
    /// # Errors
    ///
    /// As documented on the trait.
    fn update(&self, f: fn(T) -> T) -> Result<T>;
}

/// A mutual-exclusion lock shared between processes (Python's `acquire` /
/// `release`, plus a guard).
///
/// # Examples
///
/// ```
/// use multiproc::{Manager, SharedLock};
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
/// # Ok::<(), multiproc::Error>(())
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

macro_rules! queue_impl {
    ($proxy:ident) => {
        impl<T: Serialize + DeserializeOwned> SharedQueue<T> for $proxy<T> {
            fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
                QueueProxy::put(self, item)
            }
            fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
                QueueProxy::try_put(self, item)
            }
            fn put_timeout(
                &self,
                item: T,
                timeout: Duration,
            ) -> std::result::Result<(), PutTimeoutError<T>> {
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
                QueueProxy::qsize(self)
            }
            fn full(&self) -> Result<bool> {
                QueueProxy::full(self)
            }
            fn empty(&self) -> Result<bool> {
                QueueProxy::empty(self)
            }
        }
    };
}

queue_impl!(QueueProxy);
queue_impl!(JoinableQueueProxy);

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
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn get<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
    {
        DictProxy::get(self, key)
    }
    fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        DictProxy::insert(self, key, value)
    }
    fn remove<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
    {
        DictProxy::remove(self, key)
    }
    fn contains_key<Q>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
    {
        DictProxy::contains_key(self, key)
    }
    fn setdefault(&self, key: &K, default: &V) -> Result<V> {
        DictProxy::setdefault(self, key, default)
    }
    fn update_with<Q>(&self, key: &Q, f: fn(Option<V>) -> V) -> Result<V>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
        V: 'static,
    {
        DictProxy::update_with(self, key, f)
    }
    fn update<I: IntoIterator<Item = (K, V)>>(&self, pairs: I) -> Result<()> {
        DictProxy::update(self, pairs)
    }
    fn len(&self) -> Result<usize> {
        DictProxy::len(self)
    }
    fn keys(&self) -> Result<Vec<K>> {
        DictProxy::keys(self)
    }
    fn values(&self) -> Result<Vec<V>> {
        DictProxy::values(self)
    }
    fn items(&self) -> Result<Vec<(K, V)>> {
        DictProxy::items(self)
    }
    fn clear(&self) -> Result<()> {
        DictProxy::clear(self)
    }
    fn pop<Q>(&self, key: &Q) -> Result<V>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
    {
        DictProxy::pop(self, key)
    }
}

impl<T: Serialize + DeserializeOwned> SharedList<T> for ListProxy<T> {
    fn push(&self, value: &T) -> Result<()> {
        ListProxy::push(self, value)
    }
    fn extend<I: IntoIterator<Item = T>>(&self, items: I) -> Result<()> {
        ListProxy::extend(self, items)
    }
    fn get(&self, index: i64) -> Result<T> {
        ListProxy::get(self, index)
    }
    fn set(&self, index: i64, value: &T) -> Result<()> {
        ListProxy::set(self, index, value)
    }
    fn insert(&self, index: i64, value: &T) -> Result<()> {
        ListProxy::insert(self, index, value)
    }
    fn pop(&self, index: Option<i64>) -> Result<T> {
        ListProxy::pop(self, index)
    }
    fn remove(&self, value: &T) -> Result<bool> {
        ListProxy::remove(self, value)
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
