//! multiproc's manager process, typed proxies and remote manager.
//!
//! * [`Manager`]: a forked server process owning shared objects (dicts,
//!   lists, queues, locks, events, semaphores, values, namespaces), used
//!   through typed proxies such as [`DictProxy`] and [`ListProxy`] from this
//!   process, its `Process` children and pool workers. Local proxies talk to
//!   the manager through shared memory, and can run a function on a stored
//!   value inside the manager atomically ([`DictProxy::update_with`]).
//! * [`ManagerServer`] / [`RemoteManager`]: the same objects served over TCP
//!   to clients on other machines, authenticated by an authkey
//!   (HMAC-SHA256 challenge-response both ways), with callables registered by
//!   name on the server (Python's `BaseManager`).
//!
//! # Examples
//!
//! ```
//! use multiproc_manager::Manager;
//!
//! let manager = Manager::start()?;
//! let d = manager.dict_from([("count".to_string(), 100i64)])?;
//! let v = d.update_with(&"count".to_string(), |c| c.unwrap_or(0) - 1)?;
//! assert_eq!(v, 99);
//! # Ok::<(), multiproc_manager::Error>(())
//! ```
#![forbid(unsafe_code)]

mod client;
mod local;
mod protocol;
mod proxy;
mod remote;
mod store;

pub use local::Manager;
pub use multiproc_ipc::{Error, ErrorKind, Result};
pub use proxy::{
    CallableProxy, DictProxy, EventProxy, JoinableQueueProxy, ListProxy, LockProxy, NamespaceProxy,
    ProxyGuard, QueueProxy, RLockProxy, SemaphoreProxy, ValueProxy,
};
pub use remote::{ManagerServer, ManagerServerBuilder, RemoteManager, DEFAULT_MAX_FRAME};
