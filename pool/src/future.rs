//! [`Future`], the handle of a task submitted to an
//! [`Executor`](crate::Executor), and the free functions [`as_completed`]
//! and [`wait`] over several of them (Python's `concurrent.futures`).

use std::fmt;
use std::pin::Pin;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Weak;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use multiproc_ipc::{Error, ErrorKind, Result};

use crate::result::AsyncResult;
use crate::shared::Shared;

/// The pending result of a task submitted with
/// [`Executor::submit`](crate::Executor::submit), Python's
/// `concurrent.futures.Future`.
///
/// It resolves exactly once: to the task's value, to its error (a panic, a
/// lost worker, a timeout), or to [`ErrorKind::Cancelled`] if it was
/// cancelled before it started. It is also a [`std::future::Future`], so it
/// can be `.await`ed.
///
/// A task counts as *running* from the moment a worker starts it; until
/// then, whether it waits in the executor or already in a worker's queue
/// (at most [`EXECUTOR_QUEUE_PER_WORKER`](crate::EXECUTOR_QUEUE_PER_WORKER)
/// per worker), [`cancel`](Future::cancel) stops it for good.
///
/// # Examples
///
/// ```
/// use multiproc::Executor;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let ex = Executor::new(2)?;
/// let f = ex.submit(square, 7)?;
/// f.add_done_callback(|r| assert_eq!(r.ok(), Some(&49)));
/// assert_eq!(f.result()?, 49);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Future<R> {
    result: AsyncResult<R>,
    pool: Weak<Shared>,
    id: u64,
}

impl<R> fmt::Debug for Future<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Future")
            .field("id", &self.id)
            .field("done", &self.done())
            .field("cancelled", &self.cancelled())
            .finish()
    }
}

impl<R> Future<R> {
    pub(crate) fn new(result: AsyncResult<R>, pool: Weak<Shared>, id: u64) -> Future<R> {
        Future { result, pool, id }
    }

    /// The task id that error messages name ("task 17").
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Blocks until the task is done and returns its value.
    ///
    /// # Errors
    ///
    /// The task's error ([`ErrorKind::TaskPanicked`], [`ErrorKind::WorkerLost`],
    /// [`ErrorKind::Timeout`], [`ErrorKind::Serialization`]),
    /// [`ErrorKind::Cancelled`] if it was cancelled, [`ErrorKind::NotRunning`]
    /// if the executor was torn down first, or [`ErrorKind::InvalidArgument`]
    /// if an earlier `result_timeout` already took the value.
    pub fn result(self) -> Result<R> {
        self.result.get()
    }

    /// Waits up to `timeout` and returns the value (it is taken: a later
    /// call reports [`ErrorKind::InvalidArgument`]). After a timeout the
    /// task goes on and a later call can still succeed.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use multiproc::Executor;
    /// fn slow(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// let ex = Executor::new(1)?;
    /// let f = ex.submit(slow, 300)?;
    /// assert!(f.result_timeout(Duration::from_millis(1)).unwrap_err().is_timeout());
    /// assert_eq!(f.result_timeout(Duration::from_secs(10))?, 300);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if the task is not done in time; otherwise as
    /// [`result`](Future::result).
    pub fn result_timeout(&self, timeout: Duration) -> Result<R> {
        self.result.get_timeout(timeout)
    }

    /// Blocks until the task is done and returns its error, or `None` if it
    /// succeeded (Python's `exception()`). A cancelled task's error is
    /// [`ErrorKind::Cancelled`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::{ErrorKind, Executor};
    /// fn fails(_: ()) -> u32 { panic!("no") }
    /// let ex = Executor::new(1)?;
    /// let f = ex.submit(fails, ())?;
    /// assert_eq!(f.exception().unwrap().kind(), ErrorKind::TaskPanicked);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn exception(&self) -> Option<Error> {
        self.result.wait();
        self.result.cell().error()
    }

    /// As [`exception`](Future::exception), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if the task is not done in time.
    pub fn exception_timeout(&self, timeout: Duration) -> Result<Option<Error>> {
        if !self.result.wait_timeout(timeout) {
            return Err(Error::timeout(format!(
                "task {} was not done within {timeout:?}",
                self.id
            )));
        }
        Ok(self.result.cell().error())
    }

    /// True once the task finished, failed or was cancelled.
    pub fn done(&self) -> bool {
        self.result.ready()
    }

    /// True while a worker runs the task (started, not finished).
    pub fn running(&self) -> bool {
        if self.done() {
            return false;
        }
        self.pool
            .upgrade()
            .is_some_and(|pool| !pool.is_queued(self.id))
    }

    /// True if the task was cancelled.
    pub fn cancelled(&self) -> bool {
        self.result.cell().failure() == Some(ErrorKind::Cancelled)
    }

    /// Cancels the task if no worker has started it (it waits in the
    /// executor or in a worker's queue): it then never runs, resolves to
    /// [`ErrorKind::Cancelled`], and its done callbacks run. True if the
    /// task is cancelled (now or before); false if it is running or done.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use multiproc::Executor;
    /// fn slow(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// let ex = Executor::new(1)?;
    /// let running = ex.submit(slow, 200)?;
    /// let queued: Vec<_> = (0..20).map(|_| ex.submit(slow, 200)).collect::<Result<_, _>>()?;
    /// let last = queued.last().unwrap();
    /// assert!(last.cancel());
    /// assert!(last.cancelled() && last.done());
    /// assert!(!running.cancel() || running.cancelled());
    /// ex.shutdown(false, true)?; // cancel the rest too
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn cancel(&self) -> bool {
        if self.cancelled() {
            return true;
        }
        if self.done() {
            return false;
        }
        self.pool.upgrade().is_some_and(|pool| pool.cancel(self.id))
    }

    /// Runs `f` with the outcome when the task is done, or at once if it
    /// already is (Python's `add_done_callback`). Callbacks run in the
    /// parent, on the executor's result thread or on the thread that adds
    /// them; a panicking callback is contained. If the value was already
    /// taken by [`result_timeout`](Future::result_timeout), `f` gets an
    /// [`ErrorKind::InvalidArgument`] error saying so.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::mpsc;
    /// # use multiproc::Executor;
    /// fn square(x: u64) -> u64 { x * x }
    /// let ex = Executor::new(1)?;
    /// let (tx, rx) = mpsc::channel();
    /// let f = ex.submit(square, 6)?;
    /// f.add_done_callback(move |r| tx.send(*r.unwrap()).unwrap());
    /// assert_eq!(rx.recv().unwrap(), 36);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn add_done_callback(
        &self,
        f: impl FnOnce(std::result::Result<&R, &Error>) + Send + 'static,
    ) {
        self.result.cell().on_done(Box::new(f));
    }
}

impl<R> std::future::Future for Future<R> {
    type Output = Result<R>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        Pin::new(&mut self.result).poll(cx)
    }
}

/// Tells a channel the index of each future as it completes.
fn completions<R>(futures: &[Future<R>]) -> Receiver<usize> {
    let (tx, rx) = mpsc::channel();
    for (i, f) in futures.iter().enumerate() {
        let tx = tx.clone();
        f.add_done_callback(move |_| {
            let _ = tx.send(i);
        });
    }
    rx
}

/// The iterator of [`as_completed`].
pub struct AsCompleted<R> {
    futures: Vec<Option<Future<R>>>,
    done: Receiver<usize>,
    deadline: Option<Instant>,
    remaining: usize,
}

impl<R> fmt::Debug for AsCompleted<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl<R> AsCompleted<R> {
    /// The futures not yielded yet (after a timeout, say).
    pub fn into_remaining(self) -> Vec<Future<R>> {
        self.futures.into_iter().flatten().collect()
    }
}

impl<R> Iterator for AsCompleted<R> {
    type Item = Result<Future<R>>;

    fn next(&mut self) -> Option<Result<Future<R>>> {
        if self.remaining == 0 {
            return None;
        }
        loop {
            let got = match self.deadline {
                None => self.done.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(d) => self
                    .done
                    .recv_timeout(d.saturating_duration_since(Instant::now())),
            };
            match got {
                Ok(i) => {
                    if let Some(f) = self.futures.get_mut(i).and_then(Option::take) {
                        self.remaining -= 1;
                        return Some(Ok(f));
                    }
                }
                Err(_) => {
                    let n = self.remaining;
                    // Python raises TimeoutError and ends the iteration.
                    self.remaining = 0;
                    return Some(Err(Error::timeout(format!(
                        "{n} futures were not done in time"
                    ))));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

/// Yields the futures as they complete (Python's
/// `concurrent.futures.as_completed`); those already done come first. With
/// a `timeout` (counted from this call), an `Err(Timeout)` item ends the
/// iteration if the futures are not all done by then;
/// [`AsCompleted::into_remaining`] gives back the rest.
///
/// # Examples
///
/// ```
/// use multiproc::{as_completed, Executor};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let ex = Executor::new(2)?;
/// let futures: Vec<_> = (0..5u64).map(|i| ex.submit(square, i)).collect::<Result<_, _>>()?;
/// let mut total = 0;
/// for f in as_completed(futures, None) {
///     total += f?.result()?;
/// }
/// assert_eq!(total, 30);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn as_completed<R>(
    futures: impl IntoIterator<Item = Future<R>>,
    timeout: Option<Duration>,
) -> AsCompleted<R> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let futures: Vec<Future<R>> = futures.into_iter().collect();
    let done = completions(&futures);
    AsCompleted {
        remaining: futures.len(),
        futures: futures.into_iter().map(Some).collect(),
        done,
        deadline,
    }
}

/// When [`wait`] returns (Python's `FIRST_COMPLETED`, `FIRST_EXCEPTION`,
/// `ALL_COMPLETED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// When any future finishes or is cancelled.
    FirstCompleted,
    /// When any future fails (a cancellation is not a failure), or all are done.
    FirstException,
    /// When all futures are done.
    AllCompleted,
}

/// The two sets [`wait`] returns.
#[derive(Debug)]
pub struct Waited<R> {
    /// Futures that are done (in completion order).
    pub done: Vec<Future<R>>,
    /// Futures that are not.
    pub not_done: Vec<Future<R>>,
}

/// Waits until the condition `when` holds or `timeout` passes, then splits
/// the futures into done and not done (Python's `concurrent.futures.wait`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{wait, Executor, ReturnWhen};
///
/// fn sleep_ms(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
///
/// let ex = Executor::new(2)?;
/// let fs = vec![ex.submit(sleep_ms, 10)?, ex.submit(sleep_ms, 5_000)?];
/// let w = wait(fs, None, ReturnWhen::FirstCompleted);
/// assert_eq!(w.done.len(), 1);
/// assert_eq!(w.not_done.len(), 1);
/// ex.shutdown(false, true)?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn wait<R>(
    futures: impl IntoIterator<Item = Future<R>>,
    timeout: Option<Duration>,
    when: ReturnWhen,
) -> Waited<R> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let futures: Vec<Future<R>> = futures.into_iter().collect();
    let done_rx = completions(&futures);
    let mut slots: Vec<Option<Future<R>>> = futures.into_iter().map(Some).collect();
    let mut done = Vec::new();
    let mut failed = false;
    while slots.iter().any(Option::is_some) {
        let satisfied = match when {
            ReturnWhen::FirstCompleted => !done.is_empty(),
            ReturnWhen::FirstException => failed,
            ReturnWhen::AllCompleted => false,
        };
        if satisfied {
            break;
        }
        let got = match deadline {
            None => done_rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(d) => done_rx.recv_timeout(d.saturating_duration_since(Instant::now())),
        };
        let Ok(i) = got else { break };
        if let Some(f) = slots.get_mut(i).and_then(Option::take) {
            let kind = f.result.cell().failure();
            failed |= kind.is_some_and(|k| k != ErrorKind::Cancelled);
            done.push(f);
        }
    }
    Waited {
        done,
        not_done: slots.into_iter().flatten().collect(),
    }
}
