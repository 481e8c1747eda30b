//! [`PoolBuilder`] and [`StartMethod`]: how a pool is configured.

use std::fmt;
use std::time::Duration;

use multiproc_ipc::{codec, Error, ErrorKind, FnRef, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::pool::Pool;
use crate::task::{self, InitResult, Tramp};

/// How the pool's processes are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartMethod {
    /// The default: a zygote forked from the fork server if
    /// [`multiproc::init`](multiproc_ipc::init) started one, else a zygote
    /// forked from this process at `Pool::new`. Every replacement is forked
    /// by the zygote. The first workers are forked by the fork server if
    /// there is one, else by this process itself if it runs a single thread
    /// (and leaves `SIGCHLD` at its default), else by the zygote: they see
    /// the same memory either way.
    #[default]
    Zygote,
    /// Require the process-wide fork server (Python's `forkserver`): the
    /// first workers and the pool's zygote, which forks their replacements,
    /// are forked from it, so workers never inherit this process's threads'
    /// state. `build` fails if `init()` was not called.
    ForkServer,
}

/// Configures and creates a [`Pool`] (`Pool::builder()`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::Pool;
///
/// fn init_worker(greeting: String) { let _ = greeting; }
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = Pool::builder()
///     .processes(2)
///     .max_tasks_per_child(100)
///     .initializer(init_worker, "hello".to_string())
///     .task_timeout(Duration::from_secs(30))
///     .build()?;
/// assert_eq!(pool.apply(square, 7)?, 49);
/// pool.close();
/// pool.join()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct PoolBuilder {
    pub(crate) processes: Option<usize>,
    pub(crate) initializer: Option<Result<(Tramp, Vec<u8>)>>,
    pub(crate) max_tasks_per_child: Option<u64>,
    pub(crate) start_method: StartMethod,
    pub(crate) task_timeout: Option<Duration>,
    /// Tasks a worker may have queued at once (the executor queues fewer,
    /// so that queued work stays cancellable).
    pub(crate) queue_per_worker: usize,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("initializer", &self.initializer.is_some())
            .field("max_tasks_per_child", &self.max_tasks_per_child)
            .field("start_method", &self.start_method)
            .field("task_timeout", &self.task_timeout)
            .finish()
    }
}

impl PoolBuilder {
    /// The number of worker processes (default: the number of CPUs).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// Runs `initializer(initargs)` in each worker when it starts (Python's
    /// `initializer` and `initargs`). The initializer returns `()` or a
    /// `Result<(), E>` with `E: Display`.
    ///
    /// A worker whose initializer panics or returns an error exits and is
    /// replaced; when the initializer has failed on
    /// [`INIT_FAILURE_LIMIT`](crate::INIT_FAILURE_LIMIT) fresh workers in a
    /// row, with no task finishing in between, the pool is *broken*
    /// (Python's `BrokenProcessPool`): every pending and later task fails at
    /// once with [`ErrorKind::NotRunning`], whose message carries the
    /// initializer's panic message or error, and no more workers are forked.
    /// A broken pool still closes, joins, terminates and drops cleanly.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, Pool};
    ///
    /// fn open_db(path: String) -> Result<(), String> {
    ///     Err(format!("cannot open {path}"))
    /// }
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = Pool::builder()
    ///     .processes(1)
    ///     .initializer(open_db, "/nonexistent".to_string())
    ///     .build()?;
    /// let e = pool.apply(square, 3).unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::NotRunning);
    /// assert!(e.to_string().contains("cannot open /nonexistent"));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn initializer<A, R>(mut self, initializer: fn(A) -> R, initargs: A) -> Self
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: InitResult,
    {
        let body = codec::encode(&(FnRef::new(initializer), initargs)).map_err(Error::from);
        self.initializer = Some(body.map(|b| (task::tramp_init::<A, R>(), b)));
        self
    }

    /// Replaces each worker after it has run `n` tasks (a chunk of a `map`
    /// counts as one task), Python's `maxtasksperchild`.
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// How the pool's processes are forked.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.start_method = method;
        self
    }

    /// The default timeout of every task (a `map` chunk is one task): a task
    /// running longer is killed with its worker and fails with
    /// [`ErrorKind::Timeout`]; the worker is replaced.
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.task_timeout = Some(timeout);
        self
    }

    /// Forks the zygote and the workers.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for `processes(0)`,
    /// `max_tasks_per_child(0)`, a zero timeout, or `ForkServer` without a
    /// running fork server; [`ErrorKind::Serialization`] if the initializer's
    /// arguments cannot be encoded; [`ErrorKind::Io`] if a fork or the shared
    /// memory fails.
    pub fn build(self) -> Result<Pool> {
        let n = match self.processes {
            Some(0) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "processes must be at least 1",
                ))
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if self.max_tasks_per_child == Some(0) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "max_tasks_per_child must be at least 1",
            ));
        }
        if self.task_timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the task timeout must be positive",
            ));
        }
        if self.start_method == StartMethod::ForkServer && multiproc_ipc::fork_server().is_none() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "StartMethod::ForkServer needs multiproc::init() to be called first in main",
            ));
        }
        let initializer = self.initializer.transpose()?;
        Pool::start(Config {
            processes: n,
            queue_per_worker: self.queue_per_worker,
            initializer,
            max_tasks: self.max_tasks_per_child,
            task_timeout: self.task_timeout,
        })
    }
}

pub(crate) struct Config {
    pub(crate) processes: usize,
    /// Tasks a worker may have queued in its ring at once.
    pub(crate) queue_per_worker: usize,
    pub(crate) initializer: Option<(Tramp, Vec<u8>)>,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) task_timeout: Option<Duration>,
}
