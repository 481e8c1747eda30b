//! multiproc's manager process, typed proxies and remote manager.
//!
//! * [`Manager`]: a forked server process owning shared objects (dicts that
//!   keep insertion order, lists, FIFO, LIFO and priority queues, locks,
//!   events, semaphores, values, namespaces), used
//!   through typed proxies such as [`DictProxy`] and [`ListProxy`] from this
//!   process, its `Process` children and pool workers. Local proxies talk to
//!   the manager through shared memory, and can run a function on a stored
//!   value inside the manager atomically ([`DictProxy::update_with`]).
//! * [`SharedObject`] / [`SharedProxy`]: a type of your own served by a
//!   manager (Python's `BaseManager.register` with a class), registered by
//!   name on a [`Manager`] or a [`ManagerServer`] and called through a typed
//!   proxy: its requests and replies are Rust types, checked at compile time.
//! * [`ManagerServer`] / [`RemoteManager`]: the same objects served over TCP
//!   to clients on other machines, authenticated by an authkey
//!   (HMAC-SHA256 challenge-response both ways), with callables registered by
//!   name on the server (Python's `BaseManager`).
//!
//! # Events
//!
//! Nothing is printed. Rejected remote connections (failed authentication,
//! malformed or oversized frames, handshake errors) are `tracing` WARN
//! events with the peer's address (unless [`ManagerServerBuilder::quiet`]);
//! a local manager's failures to accept or serve a connection are WARN or
//! ERROR events in the manager process.
//!
//! # How it works
//!
//! The manager process keeps every object as encoded bytes in a store (one
//! mutex and condition variable per object) and serves each client
//! connection on its own thread, so a client blocked in a queue `get` or a
//! lock `acquire` holds up nobody else.
//!
//! * Local clients connect through an abstract unix socket and send the
//!   manager's random token with their first request. A connection's first
//!   eight requests go on the socket (a process that makes one or two, a
//!   `Process` per task, costs the manager no more); from then on it talks
//!   through a shared-memory channel: a request is a hand-off in shared
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
//! # Type fingerprints
//!
//! The manager stores encoded bytes, so without a check a proxy of other
//! types would decode one type's bytes as another's (an `i64` -5 read
//! through a `QueueProxy<u64>` is 9). Typed objects (dicts, lists, queues,
//! values, callables) therefore carry a fingerprint of their Rust types,
//! `(K, V)` for a dict and `T` for the others: a hash of the name
//! [`std::any::type_name`] gives the types, with module paths removed
//! (`Vec<Job>`, not `alloc::vec::Vec<app::Job>`).
//!
//! * An object made by a [`Manager`] gets the fingerprint of the proxy that
//!   made it; an object registered by name on a [`ManagerServer`] gets its
//!   types when registered with them (priority queues, values, callables), else from the first
//!   client that looks it up by name with types ([`RemoteManager::dict`],
//!   [`RemoteManager::queue`]...).
//! * A lookup by name with other types fails with
//!   [`InvalidArgument`](ErrorKind::InvalidArgument) naming both; so does
//!   every call of a proxy decoded as other types (passed to a process whose
//!   code expects other types). The check runs in the manager before the
//!   operation: a refused `get` takes nothing.
//! * Locks, events, semaphores and namespaces hold no typed values and
//!   carry no fingerprint (a namespace attribute read as another type can
//!   still fail with `Serialization`).
//!
//! Limits: it compares names, not layouts. Two types of the same name in
//! different modules (or two versions of one struct) pass the check, and
//! then decode as well as their encodings allow; two types that encode alike
//! under different names (`String` and `Box<str>`) are refused. The names
//! come from `type_name`, whose output the standard library does not promise
//! to keep between compiler versions: build every program that shares a
//! server with the same toolchain.
//!
//! ```
//! use multiproc::{ErrorKind, ManagerServer, RemoteManager};
//!
//! let server = ManagerServer::builder(b"key").queue("jobs").bind("127.0.0.1:0")?;
//! let remote = RemoteManager::connect(server.local_addr(), b"key")?;
//! remote.queue::<i64>("jobs")?.put(-5)?; // the first typed lookup fixes `i64`
//! let e = remote.queue::<u64>("jobs").unwrap_err();
//! assert_eq!(e.kind(), ErrorKind::InvalidArgument);
//! assert_eq!(remote.queue::<i64>("jobs")?.get()?, -5);
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! # Examples
//!
//! ```
//! use multiproc::Manager;
//!
//! let manager = Manager::start()?;
//! let d = manager.dict_from([("count".to_string(), 100i64)])?;
//! let v = d.update_with("count", |c| c.unwrap_or(0) - 1)?;
//! assert_eq!(v, 99);
//! # Ok::<(), multiproc::Error>(())
//! ```
#![forbid(unsafe_code)]

mod client;
mod local;
mod objects;
mod ordmap;
mod protocol;
mod proxy;
mod queues;
mod remote;
mod shared;
mod store;
mod typetag;

/// The insertion-ordered map [`DictProxy::to_map`] returns (from the
/// [`indexmap`](https://docs.rs/indexmap) crate).
pub use indexmap::IndexMap;
pub use local::Manager;
pub use multiproc_ipc::{Error, ErrorKind, Result};
pub use objects::{
    SharedDict, SharedJoinableQueue, SharedList, SharedLock, SharedLockGuard, SharedQueue,
    SharedValue,
};
pub use proxy::{
    CallableProxy, DictProxy, EventProxy, JoinableQueueProxy, ListIter, ListProxy, LockProxy,
    NamespaceProxy, ProxyGuard, QueueProxy, RLockProxy, SemaphoreProxy, SharedProxy, ValueProxy,
};
#[doc(hidden)]
pub use remote::fuzzing;
pub use remote::{ManagerServer, ManagerServerBuilder, RemoteManager, DEFAULT_MAX_FRAME};
pub use shared::SharedObject;
