//! # multiproc
//!
//! Python's `multiprocessing`, done right, for Rust on Linux.
#![forbid(unsafe_code)]

// One re-export per line, so that features land without merge conflicts.
pub use multiproc_ipc::channel;
pub use multiproc_ipc::codec;
pub use multiproc_ipc::fd;
pub use multiproc_ipc::pipe;
pub use multiproc_ipc::pipe::{Connection, Inherited, Pipe, RecvConnection, SendConnection};
pub use multiproc_ipc::shm;
pub use multiproc_ipc::Fd;
pub use multiproc_ipc::{init, Process, ProcessBuilder};
pub use multiproc_ipc::{Error, ErrorKind, ExitInfo, ExitStatus, RemotePanic, Result};

// Cross-process synchronization and shared values.
pub use multiproc_ipc::sync::BarrierBuilder;
pub use multiproc_ipc::sync::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, LockError, LockResult, RLock, Semaphore,
};
pub use multiproc_ipc::value::Structure;
pub use multiproc_ipc::value::ValueLock;
pub use multiproc_ipc::value::{Array, RawArray, RawValue, Value};
pub use multiproc_ipc::{sync, value};
pub use multiproc_pool::{
    as_completed, wait, AsCompleted, Executor, ExecutorBuilder, ExecutorMap, Future, ReturnWhen,
    Waited,
};
pub use multiproc_pool::{ApplyOptions, AsyncResult, IMapIter, Pool, PoolBuilder, StartMethod};
pub use multiproc_pool::{IMapOptions, InitResult};

// Queues.
pub use multiproc_ipc::queue::{self, JoinableQueue, Queue, SimpleQueue};

/// The names most programs need, in one `use multiproc::prelude::*;`.
pub mod prelude {
    pub use crate::shm::SharedMemory;
    pub use crate::Fd;
    pub use crate::{AsyncResult, Executor, Pool};
    pub use crate::{Connection, Inherited, Pipe, RecvConnection, SendConnection};
    pub use crate::{Error, ErrorKind, Result};

    // Cross-process synchronization and shared values.
    pub use crate::Structure;
    pub use crate::{Array, RawArray, RawValue, Value};
    pub use crate::{
        Barrier, BoundedSemaphore, Condition, Event, Lock, LockError, RLock, Semaphore,
    };

    // Queues.
    pub use crate::{JoinableQueue, Queue, SimpleQueue};
}
pub use multiproc_manager::IndexMap;
pub use multiproc_manager::ListIter;
pub use multiproc_manager::{
    CallableProxy, DictProxy, EventProxy, JoinableQueueProxy, ListProxy, LockProxy, Manager,
    ManagerServer, ManagerServerBuilder, NamespaceProxy, ProxyGuard, QueueProxy, RLockProxy,
    RemoteManager, SemaphoreProxy, ValueProxy,
};
