//! # multiproc
//!
//! Python's `multiprocessing`, done right, for Rust on Linux.
#![forbid(unsafe_code)]

pub use multiproc_ipc::{codec, shm};
pub use multiproc_ipc::{init, Process, ProcessBuilder};
pub use multiproc_ipc::{Error, ErrorKind, ExitInfo, ExitStatus, RemotePanic, Result};

/// The names most programs need, in one `use multiproc::prelude::*;`.
pub mod prelude {
    pub use crate::shm::SharedMemory;
    pub use crate::{Error, ErrorKind, Result};
}
pub use multiproc_manager::{
    CallableProxy, DictProxy, EventProxy, JoinableQueueProxy, ListProxy, LockProxy, Manager,
    ManagerServer, ManagerServerBuilder, NamespaceProxy, ProxyGuard, QueueProxy, RLockProxy,
    RemoteManager, SemaphoreProxy, ValueProxy,
};
