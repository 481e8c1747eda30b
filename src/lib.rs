//! # multiproc
//!
//! Python's `multiprocessing`, done right, for Rust on Linux.
//!
//! # What fork shares
//!
//! Every child is a `fork` of some process of this program, never an `exec`:
//! it starts with a copy of *that* process as it was at *that* instant. Which
//! process and which instant depends on how the child is made:
//!
//! | child | forked from | sees the program's state as of |
//! |---|---|---|
//! | [`Process::spawn`], no [`init`] | the caller | the `spawn` call |
//! | [`Pool`] / [`Executor`] worker, no [`init`] | the pool's zygote | [`Pool::new`] (also for every replacement worker) |
//! | anything after [`init`] | the fork server (through a zygote for pools) | the [`init`] call, first thing in `main` |
//!
//! What the child gets from that snapshot:
//!
//! - **Memory** (heap, stack, `static`s, thread-locals of the forking
//!   thread): a private copy-on-write copy. Later writes on either side are
//!   not seen by the other; a `static` set, a `OnceLock` filled or a config
//!   loaded after the snapshot is absent in the child. Pass such data as the
//!   child's argument (it is encoded and decoded with the function, so it is
//!   always current), or share it explicitly: [`Value`], [`Array`],
//!   [`SharedMemory`](shm::SharedMemory), queues, a [`Manager`].
//! - **File descriptors** open at the snapshot (files, sockets, pipes,
//!   close-on-exec or not: there is no `exec`) are inherited, and each copy
//!   keeps its file or connection open: a peer sees end of file only when
//!   every process holding a copy has closed it. That is how
//!   [`Inherited`] pipe ends reach a child made without [`init`], and why
//!   [`Pipe`] documents a drop-the-ends-you-don't-own rule.
//! - **Descriptors opened after the snapshot** (a socket accepted after
//!   [`init`] or after [`Pool::new`], a file opened later) are *not* in the
//!   child. Send them as [`Fd`] arguments or messages: `Fd<T>` wraps a
//!   `TcpStream`, `TcpListener`, `UnixStream`, `File`, `OwnedFd` or pipe end
//!   and travels by `SCM_RIGHTS` ([Python's `send_handle`](fd)) in
//!   [`Process::spawn`] arguments, pool and executor task arguments and
//!   [`Pipe`] / channel messages, with or without [`init`].
//! - **Threads**: only the forking thread exists in the child. Without
//!   [`init`], a lock another thread held at the snapshot (stdout, the
//!   allocator, a runtime's) stays held in the child forever; the fork
//!   server and zygotes are single-threaded, so after [`init`] children
//!   never inherit such a lock. Call [`init`] first in `main` in programs
//!   that run threads (tokio, rayon).
//! - **Shared mappings** (`MAP_SHARED`) made before the snapshot are shared,
//!   not copied; multiproc's own shared objects use named segments, so they
//!   work whichever way the child was made.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//! use multiproc::{Fd, Process};
//!
//! /// Accepts one connection on the listener it was given and greets it.
//! fn greet_one(listener: Fd<TcpListener>) -> std::io::Result<()> {
//!     let (mut conn, _) = listener.accept()?;
//!     conn.write_all(b"hello")
//! }
//!
//! // Opened after any init(): it reaches the child only as an Fd.
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let addr = listener.local_addr()?;
//! let p = Process::spawn(
//!     |l: Fd<TcpListener>| greet_one(l).is_ok(),
//!     Fd::new(listener),
//! )?;
//! let mut s = String::new();
//! TcpStream::connect(addr)?.read_to_string(&mut s)?;
//! assert_eq!(s, "hello");
//! assert!(p.join()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
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
