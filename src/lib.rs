//! # multiproc
//!
//! Python's `multiprocessing`, done right, for Rust on Linux.
#![forbid(unsafe_code)]

pub use multiproc_ipc::{codec, shm};
pub use multiproc_ipc::{init, Process, ProcessBuilder};
pub use multiproc_ipc::{Error, ErrorKind, ExitInfo, ExitStatus, RemotePanic, Result};

// Cross-process synchronization and shared values.
pub use multiproc_ipc::sync::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, LockError, LockResult, RLock, Semaphore,
};
pub use multiproc_ipc::value::{Array, RawArray, RawValue, Value};
pub use multiproc_ipc::{sync, value};
pub use multiproc_pool::{ApplyOptions, AsyncResult, IMapIter, Pool, PoolBuilder, StartMethod};

/// The names most programs need, in one `use multiproc::prelude::*;`.
pub mod prelude {
    pub use crate::shm::SharedMemory;
    pub use crate::{AsyncResult, Pool};
    pub use crate::{Error, ErrorKind, Result};

    // Cross-process synchronization and shared values.
    pub use crate::{Array, RawArray, RawValue, Value};
    pub use crate::{
        Barrier, BoundedSemaphore, Condition, Event, Lock, LockError, RLock, Semaphore,
    };
}
pub use multiproc_manager::{
    CallableProxy, DictProxy, EventProxy, JoinableQueueProxy, ListProxy, LockProxy, Manager,
    ManagerServer, ManagerServerBuilder, NamespaceProxy, ProxyGuard, QueueProxy, RLockProxy,
    RemoteManager, SemaphoreProxy, ValueProxy,
};
