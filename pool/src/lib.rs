//! multiproc's supervised process pool: Python's `multiprocessing.Pool`
//! without its hangs.
//!
//! * [`Pool`] / [`PoolBuilder`]: `apply`, `apply_async`, `map`, `map_async`,
//!   `imap`, `imap_unordered`, `starmap`, chunksizes, callbacks, per-task
//!   timeouts, `close`, `terminate`, `join`.
//! * [`AsyncResult`]: `get`, `get_timeout`, `wait`, `ready`, `successful`,
//!   and `Future`.
//!
//! # Design
//!
//! `Pool::new` maps one shared-memory region (an unnamed memory file, sent
//! to each worker: nothing in `/dev/shm`, pages allocated as the rings touch
//! them), forks a single-threaded zygote, and forks the workers itself
//! when the caller runs a single thread (after `init()`, the fork server
//! forks them; else the zygote); the zygote forks every replacement. Each worker
//! has two single-producer single-consumer byte rings in the region: tasks
//! in, results out. Both sides spin briefly before parking on a shared futex,
//! and the parent publishes dispatched tasks in batches. Payloads too large
//! for a ring travel in their own shared-memory block. A supervisor thread
//! polls the workers' pidfds: a death fails exactly the task the worker was
//! running (`WorkerLost`, with the signal or exit code), re-queues the tasks
//! it had not started, and forks a replacement.
//!
//! # Events
//!
//! The pool prints nothing. It reports through [`tracing`](https://docs.rs/tracing)
//! (silent unless the program installs a subscriber), with target
//! `multiproc_pool`:
//!
//! | level | event | fields |
//! |---|---|---|
//! | WARN | a pool worker died | `pid`, `slot`, `status`, `task` (0: none running) |
//! | INFO | a pool worker was forked to replace a dead one | `slot`, `pid` |
//! | DEBUG | a pool worker retired (`max_tasks_per_child`) | `pid`, `slot` |
//! | WARN | a pool worker's initializer failed | `pid`, `slot`, `error` |
//! | ERROR | the pool is broken: its initializer keeps failing | `failures` |
//! | ERROR | cannot fork a replacement pool worker | `slot`, `error` |
//! | WARN | a pool callback panicked | `message` |
//! | ERROR | a pool worker cannot open the pool's memory (in the worker) | `error` |
//!
//! # Examples
//!
//! ```
//! use multiproc::Pool;
//!
//! fn square(x: u64) -> u64 { x * x }
//!
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..10u64)?.iter().sum::<u64>(), 285);
//! # Ok::<(), multiproc::Error>(())
//! ```
#![forbid(unsafe_code)]

mod builder;
mod collector;
mod executor;
mod future;
mod imap;
mod map;
mod options;
mod pool;
#[cfg(feature = "progress")]
mod progress;
mod record;
mod result;
mod ring;
mod shared;
mod stats;
mod stream;
mod supervisor;
mod task;
pub mod test_hooks;
mod worker;

pub use builder::{PoolBuilder, StartMethod};
pub use executor::{Executor, ExecutorBuilder, ExecutorMap, EXECUTOR_QUEUE_PER_WORKER};
pub use future::{as_completed, wait, AsCompleted, Future, ReturnWhen, Waited};
pub use imap::{IMapIter, IMapOptions, DEFAULT_BUFFER_PER_PROCESS};
/// The progress-bar crate behind [`Progress`] and
/// [`ApplyOptions::progress_bar`] (feature `progress`), for styling bars.
#[cfg(feature = "progress")]
pub use indicatif;
pub use multiproc_ipc::{Error, ErrorKind, ExitInfo, ExitStatus, RemotePanic, Result, StarFn};
pub use options::ApplyOptions;
pub use pool::Pool;
#[cfg(feature = "progress")]
pub use progress::Progress;
pub use result::AsyncResult;
pub use stats::PoolStats;
pub use supervisor::INIT_FAILURE_LIMIT;
pub use task::InitResult;
