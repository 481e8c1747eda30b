//! [`Executor`]: Python's `concurrent.futures.ProcessPoolExecutor` over the
//! pool's workers and supervision.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_ipc::{Error, ErrorKind, Result, StarFn};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::builder::{PoolBuilder, StartMethod};
use crate::future::Future;
use crate::imap::{IMapIter, IMapOptions};
use crate::options::ApplyOptions;
use crate::pool::Pool;
use crate::task::InitResult;

/// Tasks an executor's worker may have queued at once (in its ring, so that
/// it never waits for the parent between two tasks); the rest wait in the
/// executor. A task queued at a worker can still be cancelled until the
/// worker starts it: a claim word in shared memory, moved by
/// compare-and-swap, decides between the worker and
/// [`Future::cancel`](crate::Future::cancel), so a cancelled task never
/// runs. (Python's executor cannot cancel the calls it has handed to its
/// processes.)
pub const EXECUTOR_QUEUE_PER_WORKER: usize = 64;
const _: () = assert!(EXECUTOR_QUEUE_PER_WORKER < crate::worker::CLAIM_SLOTS);

/// Python's `concurrent.futures.ProcessPoolExecutor`: `submit` returns a
/// [`Future`], `map` streams results in order, `shutdown` stops it.
///
/// It runs on the same workers and supervision as [`Pool`]: a worker that
/// dies (SIGKILL, abort, segfault, out of memory) fails only the task it was
/// running, with [`ErrorKind::WorkerLost`], and is replaced; the executor
/// stays usable (Python's executor instead becomes a `BrokenProcessPool`
/// and fails everything).
///
/// Dropping an `Executor` waits for the submitted work to finish, as
/// Python's `with ProcessPoolExecutor() as ex:` block does on exit (a
/// [`Pool`], by contrast, terminates its workers when dropped). Call
/// [`shutdown(false, true)`](Executor::shutdown) first to cancel what has
/// not started.
///
/// # Examples
///
/// ```
/// use multiproc::{as_completed, Executor};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let ex = Executor::new(2)?;
/// let futures: Vec<_> = (0..10u64).map(|i| ex.submit(square, i)).collect::<Result<_, _>>()?;
/// let total: u64 = as_completed(futures, None).map(|f| f?.result()).sum::<Result<_, _>>()?;
/// assert_eq!(total, 285);
/// let squares: Vec<u64> = ex.map(square, 0..4u64)?.collect::<Result<_, _>>()?;
/// assert_eq!(squares, vec![0, 1, 4, 9]);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Executor {
    pub(crate) pool: Pool,
    shut_down: AtomicBool,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("max_workers", &self.max_workers())
            .field("shut_down", &self.shut_down.load(Ordering::Relaxed))
            .finish()
    }
}

/// Configures and creates an [`Executor`] (`Executor::builder()`), with
/// Python's `ProcessPoolExecutor` arguments.
///
/// # Examples
///
/// ```
/// use multiproc::Executor;
///
/// fn setup(level: u32) { let _ = level; }
/// fn square(x: u64) -> u64 { x * x }
///
/// let ex = Executor::builder()
///     .max_workers(2)
///     .initializer(setup, 3)
///     .max_tasks_per_child(1_000)
///     .build()?;
/// assert_eq!(ex.submit(square, 5)?.result()?, 25);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct ExecutorBuilder {
    pool: PoolBuilder,
}

impl fmt::Debug for ExecutorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorBuilder")
            .field("pool", &self.pool)
            .finish()
    }
}

impl ExecutorBuilder {
    /// The number of worker processes (default: the number of CPUs).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.pool = self.pool.processes(n);
        self
    }

    /// Runs `initializer(initargs)` in each worker when it starts; as
    /// [`PoolBuilder::initializer`], an initializer that keeps failing
    /// breaks the executor (every task fails with its message).
    pub fn initializer<A, R>(mut self, initializer: fn(A) -> R, initargs: A) -> Self
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: InitResult,
    {
        self.pool = self.pool.initializer(initializer, initargs);
        self
    }

    /// Replaces each worker after `n` tasks (Python's `max_tasks_per_child`);
    /// a task cancelled while queued at the worker counts as one of them.
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.pool = self.pool.max_tasks_per_child(n);
        self
    }

    /// How the worker processes are forked.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.pool = self.pool.start_method(method);
        self
    }

    /// The default timeout of every task: one running longer is killed with
    /// its worker and fails with [`ErrorKind::Timeout`].
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.pool = self.pool.task_timeout(timeout);
        self
    }

    /// Forks the workers.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn build(self) -> Result<Executor> {
        let mut pool = self.pool;
        pool.queue_per_worker = EXECUTOR_QUEUE_PER_WORKER;
        Ok(Executor {
            pool: pool.build()?,
            shut_down: AtomicBool::new(false),
        })
    }
}

impl Executor {
    /// An executor of `max_workers` processes with default settings.
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new(max_workers: usize) -> Result<Executor> {
        Executor::builder().max_workers(max_workers).build()
    }

    /// A builder with every option at its default.
    pub fn builder() -> ExecutorBuilder {
        ExecutorBuilder {
            pool: Pool::builder(),
        }
    }

    /// The number of worker processes.
    pub fn max_workers(&self) -> usize {
        self.pool.processes()
    }

    /// The pids of the current workers.
    pub fn worker_pids(&self) -> Vec<i32> {
        self.pool.worker_pids()
    }

    fn check_open(&self) -> Result<()> {
        if self.shut_down.load(Ordering::Acquire) {
            return Err(Error::new(
                ErrorKind::NotRunning,
                "cannot schedule new tasks after shutdown",
            ));
        }
        Ok(())
    }

    /// Schedules `f(arg)` and returns its [`Future`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Executor;
    /// fn square(x: u64) -> u64 { x * x }
    /// let ex = Executor::new(1)?;
    /// assert_eq!(ex.submit(square, 9)?.result()?, 81);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotRunning`] after [`shutdown`](Executor::shutdown) (or
    /// for an executor broken by its initializer);
    /// [`ErrorKind::Serialization`] if `arg` cannot be encoded.
    pub fn submit<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<Future<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.check_open()?;
        let r = self.pool.apply_async_with(f, arg, ApplyOptions::new())?;
        let id = r.id().unwrap_or_default();
        Ok(Future::new(r, Arc::downgrade(&self.pool.shared), id))
    }

    /// [`submit`](Executor::submit) for a function of one to six
    /// arguments, called with the tuple `args` (Python's
    /// `submit(fn, *args)`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Executor;
    /// fn volume(l: u64, w: u64, h: u64) -> u64 { l * w * h }
    /// let ex = Executor::new(1)?;
    /// assert_eq!(ex.starsubmit(volume, (2, 3, 4))?.result()?, 24);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`submit`](Executor::submit).
    pub fn starsubmit<F, Args>(&self, f: F, args: Args) -> Result<Future<F::Output>>
    where
        F: StarFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        self.check_open()?;
        let r = self.pool.starapply_async(f, args, ApplyOptions::new())?;
        let id = r.id().unwrap_or_default();
        Ok(Future::new(r, Arc::downgrade(&self.pool.shared), id))
    }

    /// `f` over `items`, results in input order, read lazily (Python's
    /// `Executor.map`); each item is `Ok` or that input's error.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Executor;
    /// fn square(x: u64) -> u64 { x * x }
    /// let ex = Executor::new(2)?;
    /// let v: Vec<u64> = ex.map(square, 0..5u64)?.collect::<Result<_, _>>()?;
    /// assert_eq!(v, vec![0, 1, 4, 9, 16]);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotRunning`] after [`shutdown`](Executor::shutdown).
    pub fn map<'a, A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<ExecutorMap<'a, R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        self.map_with(f, items, IMapOptions::new(), None)
    }

    /// [`map`](Executor::map) with a chunksize and buffer
    /// ([`IMapOptions`]) and a `timeout` counted from this call: a result
    /// not there by then yields one `Err(Timeout)` and ends the iteration,
    /// as Python's `map(timeout=)` raises `TimeoutError`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use multiproc::{ErrorKind, Executor, IMapOptions};
    /// fn sleep_ms(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// let ex = Executor::new(1)?;
    /// let out: Vec<_> = ex
    ///     .map_with(sleep_ms, vec![1, 5_000, 1], IMapOptions::new(), Some(Duration::from_millis(500)))?
    ///     .collect();
    /// assert_eq!(out.len(), 2);
    /// assert_eq!(*out[0].as_ref().unwrap(), 1);
    /// assert_eq!(out[1].as_ref().unwrap_err().kind(), ErrorKind::Timeout);
    /// ex.shutdown(false, true)?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map`](Executor::map); [`ErrorKind::InvalidArgument`] for a zero
    /// chunksize or buffersize.
    pub fn map_with<'a, A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        options: IMapOptions,
        timeout: Option<Duration>,
    ) -> Result<ExecutorMap<'a, R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        self.check_open()?;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        Ok(ExecutorMap {
            inner: Some(self.pool.imap_with(f, items, options)?),
            deadline,
        })
    }

    /// Stops accepting tasks (Python's `shutdown`). With `cancel_futures`,
    /// every task that has not started is cancelled (its future resolves to
    /// [`ErrorKind::Cancelled`]); with `wait`, returns once every running
    /// task is done and the workers have exited. Calling it again is
    /// harmless.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::{ErrorKind, Executor};
    /// fn square(x: u64) -> u64 { x * x }
    /// let ex = Executor::new(1)?;
    /// let f = ex.submit(square, 3)?;
    /// ex.shutdown(true, false)?;
    /// assert_eq!(f.result()?, 9);
    /// assert_eq!(ex.submit(square, 4).unwrap_err().kind(), ErrorKind::NotRunning);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for a failed teardown.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) -> Result<()> {
        self.shut_down.store(true, Ordering::Release);
        if cancel_futures {
            self.pool.shared.cancel_queued();
        }
        self.pool.close();
        if wait {
            self.pool.join()?;
        }
        Ok(())
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Python's `with` block: wait for the submitted work.
        let _ = self.shutdown(true, false);
    }
}

/// The iterator of [`Executor::map`]: results in input order.
#[must_use = "the input is read and tasks run only as the iterator is consumed"]
pub struct ExecutorMap<'a, R> {
    inner: Option<IMapIter<'a, R>>,
    deadline: Option<Instant>,
}

impl<R> fmt::Debug for ExecutorMap<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorMap")
            .field("inner", &self.inner)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl<R> Iterator for ExecutorMap<'_, R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        let it = self.inner.as_mut()?;
        let next = match self.deadline {
            None => it.next(),
            Some(d) => it.next_timeout(d.saturating_duration_since(Instant::now())),
        };
        if matches!(&next, Some(Err(e)) if e.is_timeout() && self.deadline.is_some_and(|d| Instant::now() >= d))
        {
            // The map's deadline passed: Python raises and the generator ends.
            self.inner = None;
        }
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner
            .as_ref()
            .map_or((0, Some(0)), |it| it.size_hint())
    }
}
