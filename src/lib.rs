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
//! single-threaded *zygote*, which forks every replacement worker; the first
//! workers are forked by the program itself when it runs a single thread
//! (and leaves `SIGCHLD` at its default: neither ignored nor handled), else
//! by the zygote too.
//! [`Process::spawn`] forks the program directly. A child then sees the
//! program's memory as it was at that fork, copy-on-write, as with Python's
//! `fork` start method. If the program runs other threads at that
//! moment (tokio, rayon, a logger), whatever they hold (a lock inside
//! `malloc`, stdout, a runtime) is inherited held.
//!
//! [`init()`], called first thing in `main` while the program has one
//! thread, starts a *fork server* (Python's `forkserver`): from then on every
//! pool, process and manager is forked from it. Children never inherit a
//! thread's state, but they see the program **as it was when `init()` ran**:
//! statics set later, files opened later and sockets accepted later are not
//! in the child. Pass what a child needs as the task's argument (sockets and
//! files as [`Fd`], see below), or create it in the child.
//! [`StartMethod::ForkServer`] makes a pool insist on the fork server.
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
//! | [`Pool`] / [`Executor`] worker, no [`init`] | the caller (a single-threaded one) or the pool's zygote; replacements: the zygote | [`Pool::new`] (also for every replacement worker) |
//! | anything after [`init`] | the fork server (a pool's replacement workers through the pool's zygote, its child) | the [`init`] call, first thing in `main` |
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
//! panicked (WARN); a remote manager refused a connection (WARN); a forked
//! child could not decode its argument (ERROR, then it exits with 127).
//!
//! # Spinning and busy machines
//!
//! A blocking call (a result's `get`, a worker waiting for work, a lock, a
//! queue, a manager reply) spins for a few microseconds before it sleeps:
//! on an idle machine the answer usually comes within that time. Past the
//! first 4 µs it polls between `sched_yield`s, so that any runnable thread
//! on its CPU goes first. Once a spinner sees the machine is busy (a yield
//! kept it off the CPU for 0.4 ms or more, as a CPU-bound program does, or
//! it was preempted for 40 µs or more while it spun, and the answer still
//! had not come), its process stops spinning for 5 ms, so a busy machine is
//! not made busier. (Shorter yields are the program's own pipeline at work,
//! as in a pool with more workers than CPUs, and so is a yield after which
//! the answer is there: spinning goes on. A manager's client, which cannot
//! tell, stops at a 25 µs yield.) The environment variable
//! `MULTIPROC_SPIN` sets this per process: `adaptive` (the default),
//! `always` (spin whatever the load, for a machine reserved to the program)
//! or `never` (sleep at once, the least CPU). With one CPU nothing spins.
//!
//! When it sleeps instead, a hand-off is a wake-up, and on a busy machine
//! a thread that wakes behind a CPU-bound process used to wait for that
//! process's slice to end. So the threads multiproc owns (a pool's workers,
//! result and supervisor threads, a manager's server) ask the kernel for a
//! short scheduler slice ([`latency`], Linux 6.12 and later): they preempt
//! at once when woken, and get no more CPU time than before. Your own
//! threads keep theirs; a `Process` is forked with the short slice, so that
//! it gets a CPU at once, and keeps it while it runs your code, as a pool's
//! workers do. `MULTIPROC_SLICE_US` sets the slice in
//! microseconds (default 100), `off` leaves the kernel's default.
//!
//! # Memory that workers keep
//!
//! A pool worker asks glibc's malloc, as it starts, to keep up to 64 MiB of
//! the memory its tasks free ([`heap`]): a task with large arguments or
//! results reuses the pages of the previous one instead of faulting in
//! fresh ones. `MULTIPROC_WORKER_HEAP_MB` sets the amount, `off` leaves
//! malloc's defaults. Your own process is never changed.
//!
//! # Feature flags
//!
//! - `progress`: `IMapIter::progress` and `ExecutorMap::progress` draw
//!   a progress bar (indicatif) as results stream in; for the eager
//!   `map_async_with`/`apply_async_with`, `ApplyOptions::progress` (or
//!   `progress_bar` with a bar of your own, `multiproc::indicatif`) moves
//!   one as items finish.
//! - `redis`: the distributed tier on a Redis server (`multiproc::redis`,
//!   also re-exported here: `RedisBackend`, `RedisPool`, `RedisQueue`,
//!   `RedisDict`, `RedisLock`...). Its objects implement the same
//!   `SharedQueue`, `SharedDict`, `SharedList`, `SharedValue` and
//!   `SharedLock` traits as the manager's proxies.
#![forbid(unsafe_code)]

// One re-export per line, so that features land without merge conflicts.
pub use multiproc_ipc::channel;
pub use multiproc_ipc::codec;
pub use multiproc_ipc::fd;
pub use multiproc_ipc::heap;
pub use multiproc_ipc::latency;
pub use multiproc_ipc::pipe;
pub use multiproc_ipc::pipe::{Connection, Inherited, Pipe, RecvConnection, SendConnection};
pub use multiproc_ipc::process::at_child_exit;
pub use multiproc_ipc::process::current_pid;
pub use multiproc_ipc::shm;
pub use multiproc_ipc::Fd;
pub use multiproc_ipc::SharedBytes;
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
pub use multiproc_pool::indicatif;
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
    pub use crate::Fd;
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
pub use multiproc_redis::RedisPoolStats;
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
