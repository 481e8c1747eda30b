//! multiproc's manager process, typed proxies and remote manager.
//!
//! * [`Manager`]: a forked server process owning shared objects (dicts that
//!   keep insertion order, lists, FIFO, LIFO and priority queues, locks,
//!   events, semaphores, values, namespaces), used
//!   through typed proxies such as [`DictProxy`] and [`ListProxy`] from this
//!   process, its `Process` children and pool workers. Local proxies talk to
//!   the manager through shared memory, and can run a function on a stored
//!   value inside the manager atomically ([`DictProxy::update_with`]).
//! * [`ManagerServer`] / [`RemoteManager`]: the same objects served over TCP
//!   to clients on other machines, authenticated by an authkey
//!   (HMAC-SHA256 challenge-response both ways), with callables registered by
//!   name on the server (Python's `BaseManager`).
//!
//! # How it works
//!
//! The manager process keeps every object as encoded bytes in a store (one
//! mutex and condition variable per object) and serves each client
//! connection on its own thread, so a client blocked in a queue `get` or a
//! lock `acquire` holds up nobody else.
//!
//! * Local clients connect through an abstract unix socket, prove they hold
//!   the manager's random token, and then talk through a shared-memory
//!   channel ([`multiproc_ipc::shmchan`]): a request is a hand-off in shared
//!   memory, with a short spin (then polling between `sched_yield`s, then a
//!   futex sleep) instead of a blocking socket round trip. The socket stays
//!   open so that each side sees the other die.
//! * Remote clients use length-prefixed frames over TCP after a mutual
//!   HMAC-SHA256 challenge-response; each side polls the socket briefly
//!   (yielding between polls) before it blocks.
//! * Connections are per thread and per process: a proxy used after a fork
//!   opens its own. A remote connection lost between two requests is
//!   replaced on the next call; a request in flight when it is lost fails
//!   and is not retried (see [`RemoteManager`]).
//! * When a client disconnects or dies, the manager releases the locks it
//!   held, and a blocked request of a dead client takes nothing from a queue.
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
mod ordmap;
mod protocol;
mod proxy;
mod queues;
mod remote;
mod store;

/// The insertion-ordered map [`DictProxy::to_map`] returns (from the
/// [`indexmap`](https://docs.rs/indexmap) crate).
pub use indexmap::IndexMap;
pub use local::Manager;
pub use multiproc_ipc::{Error, ErrorKind, Result};
pub use proxy::{
    CallableProxy, DictProxy, EventProxy, JoinableQueueProxy, ListIter, ListProxy, LockProxy,
    NamespaceProxy, ProxyGuard, QueueProxy, RLockProxy, SemaphoreProxy, ValueProxy,
};
#[doc(hidden)]
pub use remote::fuzzing;
pub use remote::{ManagerServer, ManagerServerBuilder, RemoteManager, DEFAULT_MAX_FRAME};
