//! multiproc's distributed tier on a real Redis server (≥ 6.2).
//!
//! * [`RedisPool`] and [`Worker`]: a distributed task pool (see [`pool`]):
//!   named task functions, at-least-once execution with each result committed
//!   exactly once, redelivery within seconds of a worker's death, retries,
//!   dead letters, priorities, delayed tasks, graceful shutdown.
//! * [`RedisBackend`]: a server, by URL; connections are per process, opened
//!   on first use and rebuilt after a fork.
//! * Shared objects behind the same traits as the manager's proxies
//!   ([`SharedQueue`], [`SharedJoinableQueue`], [`SharedDict`], [`SharedList`],
//!   [`SharedValue`], [`SharedLock`]): [`RedisQueue`], [`RedisJoinableQueue`],
//!   [`RedisDict`], [`RedisList`], [`RedisValue`] and [`RedisLock`] (a lease
//!   lock with a fencing counter). Code written against the traits runs
//!   unchanged on a manager or on Redis.
//!
//! # Events
//!
//! The crate prints nothing; what happens in the background goes to
//! [`tracing`](https://docs.rs/tracing) (install a subscriber to see it):
//! at `warn`, a failed heartbeat, a task dead-lettered after its last
//! attempt, a housekeeping pass (delayed tasks, dead workers' tasks) that
//! could not reach the server, a lock guard that could not release its
//! lease; at `info`, tasks of dead workers handed back; at `debug`, each
//! retry with its attempt, delay and error.
//!
//! # Examples
//!
//! ```
//! use multiproc::redis::{RedisBackend, SharedQueue};
//!
//! fn produce<Q: SharedQueue<u64>>(q: &Q) -> multiproc::redis::Result<()> {
//!     q.put_many(vec![1, 2, 3])?; // a failed put gives the items back
//!     Ok(())
//! }
//!
//! # let server = multiproc_testkit::RedisServer::start();
//! # let url = server.url();
//! let backend = RedisBackend::open(&url)?; // e.g. "redis://127.0.0.1:6379"
//! let q = backend.queue::<u64>("numbers");
//! produce(&q)?;
//! assert_eq!(q.get()?, 1);
//! # Ok::<(), multiproc::redis::Error>(())
//! ```
#![forbid(unsafe_code)]

mod conn;
mod lock;
mod objects;
pub mod pool;

use std::time::Duration;

pub use conn::RedisBackend;
pub use lock::{RedisLock, RedisLockGuard, DEFAULT_LEASE};
pub use multiproc_ipc::queue::{PutError, PutTimeoutError, TryPutError};
pub use multiproc_ipc::{Error, ErrorKind, Result};
pub use multiproc_manager::{
    SharedDict, SharedJoinableQueue, SharedList, SharedLock, SharedLockGuard, SharedQueue,
    SharedValue,
};
pub use objects::{RedisDict, RedisJoinableQueue, RedisList, RedisQueue, RedisValue};
pub use pool::{
    Priority, RedisPool, RedisPoolBuilder, RedisPoolStats, Registry, RunningTask, TaskFn,
    TaskHandle, TaskOptions, Unordered, Worker, WorkerBuilder, WorkerReport,
};

use serde::de::DeserializeOwned;
use serde::Serialize;

impl RedisBackend {
    /// An unbounded queue in the list under `key`.
    pub fn queue<T: Serialize + DeserializeOwned>(&self, key: &str) -> RedisQueue<T> {
        RedisQueue::new(self.clone(), key, None)
    }

    /// A queue under `key` that holds at most `maxsize` items.
    pub fn bounded_queue<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        maxsize: usize,
    ) -> RedisQueue<T> {
        RedisQueue::new(self.clone(), key, Some(maxsize))
    }

    /// A joinable queue under `key` (and `key:unfinished`).
    pub fn joinable_queue<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
    ) -> RedisJoinableQueue<T> {
        RedisJoinableQueue::new(self.clone(), key, None)
    }

    /// A dict in the hash under `key`.
    pub fn dict<K, V>(&self, key: &str) -> RedisDict<K, V>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        RedisDict::new(self.clone(), key)
    }

    /// A list under `key`.
    pub fn list<T: Serialize + DeserializeOwned>(&self, key: &str) -> RedisList<T> {
        RedisList::new(self.clone(), key)
    }

    /// The value under `key`, set to `initial` unless it exists already.
    ///
    /// # Errors
    ///
    /// `Serialization` if `initial` cannot be encoded; `Io` if the server
    /// cannot be reached.
    pub fn value<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        initial: T,
    ) -> Result<RedisValue<T>> {
        RedisValue::new(self.clone(), key, &initial)
    }

    /// A lock under `key` with the [default lease](DEFAULT_LEASE).
    pub fn lock(&self, key: &str) -> RedisLock {
        RedisLock::new(self.clone(), key, DEFAULT_LEASE)
    }

    /// A lock under `key` whose lease is `lease` (at least 30 ms).
    pub fn lock_with_lease(&self, key: &str, lease: Duration) -> RedisLock {
        RedisLock::new(self.clone(), key, lease)
    }
}
