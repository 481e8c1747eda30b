//! # multiproc
//!
//! Python's `multiprocessing`, done right, for Rust on Linux.
#![forbid(unsafe_code)]

// One re-export per line, so that features land without merge conflicts.
pub use multiproc_ipc::channel;
pub use multiproc_ipc::codec;
pub use multiproc_ipc::pipe;
pub use multiproc_ipc::pipe::{Connection, Inherited, Pipe, RecvConnection, SendConnection};
pub use multiproc_ipc::shm;
pub use multiproc_ipc::{init, Process, ProcessBuilder};
pub use multiproc_ipc::{Error, ErrorKind, ExitInfo, ExitStatus, RemotePanic, Result};

// Cross-process synchronization and shared values.
pub use multiproc_ipc::sync::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, LockError, LockResult, RLock, Semaphore,
};
pub use multiproc_ipc::value::{Array, RawArray, RawValue, Value};
pub use multiproc_ipc::{sync, value};
pub use multiproc_pool::{ApplyOptions, AsyncResult, IMapIter, Pool, PoolBuilder, StartMethod};

// Queues.
pub use multiproc_ipc::queue::{self, JoinableQueue, Queue, SimpleQueue};

/// The names most programs need, in one `use multiproc::prelude::*;`.
pub mod prelude {
    pub use crate::shm::SharedMemory;
    pub use crate::{AsyncResult, Pool};
    pub use crate::{Connection, Inherited, Pipe, RecvConnection, SendConnection};
    pub use crate::{Error, ErrorKind, Result};

    // Cross-process synchronization and shared values.
    pub use crate::{Array, RawArray, RawValue, Value};
    pub use crate::{
        Barrier, BoundedSemaphore, Condition, Event, Lock, LockError, RLock, Semaphore,
    };

    // Queues.
    pub use crate::{JoinableQueue, Queue, SimpleQueue};
}
pub use multiproc_manager::{
    CallableProxy, DictProxy, EventProxy, JoinableQueueProxy, ListProxy, LockProxy, Manager,
    ManagerServer, ManagerServerBuilder, NamespaceProxy, ProxyGuard, QueueProxy, RLockProxy,
    RemoteManager, SemaphoreProxy, ValueProxy,
};

// The shared object traits: one interface for manager proxies and Redis objects.
pub use multiproc_manager::SharedDict;
pub use multiproc_manager::SharedJoinableQueue;
pub use multiproc_manager::SharedList;
pub use multiproc_manager::SharedLock;
pub use multiproc_manager::SharedLockGuard;
pub use multiproc_manager::SharedQueue;
pub use multiproc_manager::SharedValue;

// The distributed tier on Redis (feature `redis`).
#[cfg(feature = "redis")]
pub use multiproc_redis as redis;
#[cfg(feature = "redis")]
pub use multiproc_redis::PoolStats;
#[cfg(feature = "redis")]
pub use multiproc_redis::Priority;
#[cfg(feature = "redis")]
pub use multiproc_redis::RedisBackend;
#[cfg(feature = "redis")]
pub use multiproc_redis::RedisDict;
#[cfg(feature = "redis")]
pub use multiproc_redis::RedisJoinableQueue;
#[cfg(feature = "redis")]
pub use multiproc_redis::RedisList;
#[cfg(feature = "redis")]
pub use multiproc_redis::RedisLock;
#[cfg(feature = "redis")]
pub use multiproc_redis::RedisLockGuard;
#[cfg(feature = "redis")]
pub use multiproc_redis::RedisPool;
#[cfg(feature = "redis")]
pub use multiproc_redis::RedisPoolBuilder;
#[cfg(feature = "redis")]
pub use multiproc_redis::RedisQueue;
#[cfg(feature = "redis")]
pub use multiproc_redis::RedisValue;
#[cfg(feature = "redis")]
pub use multiproc_redis::Registry;
#[cfg(feature = "redis")]
pub use multiproc_redis::RunningTask;
#[cfg(feature = "redis")]
pub use multiproc_redis::TaskFn;
#[cfg(feature = "redis")]
pub use multiproc_redis::TaskHandle;
#[cfg(feature = "redis")]
pub use multiproc_redis::TaskOptions;
#[cfg(feature = "redis")]
pub use multiproc_redis::Worker;
#[cfg(feature = "redis")]
pub use multiproc_redis::WorkerBuilder;
#[cfg(feature = "redis")]
pub use multiproc_redis::WorkerReport;
