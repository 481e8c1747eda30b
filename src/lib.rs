//! # multiproc
//!
//! Python's `multiprocessing`, done right, for Rust on Linux: processes, a
//! supervised process [`Pool`], an [`Executor`] (`concurrent.futures`), a
//! [`Manager`] process that hosts shared dicts, lists and queues, remote
//! managers over TCP, cross-process locks, queues, shared values and shared
//! memory, under the names a Python programmer already knows.
//!
//! It is for programs that need **processes, not threads**: work that must
//! survive a crash or an abort in one task, code that is not thread-safe,
//! per-task memory limits or kill-on-timeout, copy-on-write sharing, or a
//! Python `multiprocessing` program being ported.
//!
//! ```
//! use multiproc::prelude::*;
//!
//! fn square(x: u64) -> u64 { x * x }
//!
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..5u64)?, vec![0, 1, 4, 9, 16]);
//! let p = Process::spawn(square, 7)?;
//! assert_eq!(p.join()?, 49);
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! # How work reaches a child
//!
//! Linux only, `fork` only (never `exec`). A task is a plain function pointer
//! (`fn(A) -> R`; a non-capturing closure coerces to one) and an argument
//! encoded with serde: the pointer is valid in the child because the child is
//! a fork of the same program image. Nothing else crosses: a closure cannot
//! capture state, and arguments and results must be `Serialize` +
//! `Deserialize`. Tasks of several arguments go through
//! [`Pool::starmap`]/[`Pool::starapply`] ([`StarFn`]).
//!
//! # Start methods: plain fork, or [`init()`] first
//!
//! By default a [`Pool`] forks the calling program once, into a
//! single-threaded *zygote*, and the zygote forks every worker and every
//! replacement; [`Process::spawn`] forks the program directly. A child then
//! sees the program's memory as it was at that fork, copy-on-write, as with
//! Python's `fork` start method. If the program runs other threads at that
//! moment (tokio, rayon, a logger), whatever they hold (a lock inside
//! `malloc`, stdout, a runtime) is inherited held.
//!
//! [`init()`], called first thing in `main` while the program has one
//! thread, starts a *fork server* (Python's `forkserver`): from then on every
//! pool, process and manager is forked from it. Children never inherit a
//! thread's state, but they see the program **as it was when `init()` ran**:
//! statics set later, files opened later and sockets accepted later are not
//! in the child. Pass what a child needs as the task's argument (sockets and
//! files included, when fd passing is available), or create it in the child.
//! [`StartMethod::ForkServer`] makes a pool insist on the fork server.
//!
//! # Lifecycle rules
//!
//! - Dropping a [`Process`] handle neither kills nor waits for the child (it
//!   is reaped in the background). At the program's exit, daemon processes
//!   are terminated and non-daemon ones are joined, as in Python.
//! - [`Pool`]'s `Drop` terminates it: workers are killed and every pending
//!   result resolves to [`ErrorKind::NotRunning`]. Call `close()` then
//!   `join()` to let submitted work finish; `join` also waits for the
//!   callbacks of those tasks.
//! - [`Executor`]'s `Drop` waits for submitted work, like Python's `with`
//!   block; `shutdown(false, true)` cancels what has not started.
//! - A task timeout counts from the moment the task starts running in a
//!   worker, not from its submission; a task past it is killed with its
//!   worker and fails with [`ErrorKind::Timeout`].
//! - Nothing hangs: a worker that dies fails exactly the task it was running
//!   with [`ErrorKind::WorkerLost`] (naming the signal or exit code) and is
//!   replaced; a lock whose holder died gives the next locker
//!   [`LockError::OwnerDied`], which can be recovered; a manager that died
//!   fails its proxies' calls with an error.
//!
//! # Events
//!
//! The library prints nothing. What happens behind the caller's back is
//! reported as `tracing` events (silent unless the program installs a
//! subscriber): a pool worker died (WARN: `pid`, `slot`, `status`, `task`),
//! was forked to replace a dead one (INFO), retired after
//! `max_tasks_per_child` (DEBUG); an initializer failed (WARN) and the pool
//! broke (ERROR); a replacement could not be forked (ERROR); a pool callback
//! panicked (WARN).
//!
//! # Feature flags
//!
//! - `progress`: `IMapIter::progress` and `ExecutorMap::progress` draw
//!   a progress bar (indicatif) as results stream in.
#![forbid(unsafe_code)]

// One re-export per line, so that features land without merge conflicts.
pub use multiproc_ipc::channel;
pub use multiproc_ipc::codec;
pub use multiproc_ipc::pipe;
pub use multiproc_ipc::pipe::{Connection, Inherited, Pipe, RecvConnection, SendConnection};
pub use multiproc_ipc::shm;
pub use multiproc_ipc::{init, Process, ProcessBuilder};
pub use multiproc_ipc::{Error, ErrorKind, ExitInfo, ExitStatus, RemotePanic, Result};
pub use multiproc_ipc::{FnRef, FnRef2};

// Cross-process synchronization and shared values.
pub use multiproc_ipc::sync::BarrierBuilder;
pub use multiproc_ipc::sync::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, LockError, LockResult, RLock, Semaphore,
};
pub use multiproc_ipc::value::Structure;
pub use multiproc_ipc::value::ValueLock;
pub use multiproc_ipc::value::{Array, RawArray, RawValue, Value};
pub use multiproc_ipc::{sync, value};
#[cfg(feature = "progress")]
pub use multiproc_pool::Progress;
pub use multiproc_pool::{
    as_completed, wait, AsCompleted, Executor, ExecutorBuilder, ExecutorMap, Future, ReturnWhen,
    Waited,
};
pub use multiproc_pool::{test_hooks, INIT_FAILURE_LIMIT};
pub use multiproc_pool::{ApplyOptions, AsyncResult, IMapIter, Pool, PoolBuilder, StartMethod};
pub use multiproc_pool::{IMapOptions, InitResult, PoolStats, StarFn};

// Queues.
pub use multiproc_ipc::queue::{self, JoinableQueue, Queue, SimpleQueue};
pub use multiproc_ipc::queue::{LifoQueue, PriorityQueue};

/// The names most programs need, in one `use multiproc::prelude::*;`.
pub mod prelude {
    pub use crate::shm::SharedMemory;
    pub use crate::{init, Manager, Process};
    pub use crate::{ApplyOptions, AsyncResult, Executor, Pool};
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
    pub use crate::{LifoQueue, PriorityQueue};
}
pub use multiproc_manager::IndexMap;
pub use multiproc_manager::ListIter;
pub use multiproc_manager::SharedObject;
pub use multiproc_manager::SharedProxy;
pub use multiproc_manager::{
    CallableProxy, DictProxy, EventProxy, JoinableQueueProxy, ListProxy, LockProxy, Manager,
    ManagerServer, ManagerServerBuilder, NamespaceProxy, ProxyGuard, QueueProxy, RLockProxy,
    RemoteManager, SemaphoreProxy, ValueProxy,
};
