//! Options of one submission.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use multiproc_ipc::Error;

#[cfg(feature = "progress")]
use crate::progress;

type Callback<R> = Box<dyn FnOnce(&R) + Send>;
type ErrorCallback = Box<dyn FnOnce(&Error) + Send>;

/// Options of one asynchronous submission: callbacks and a timeout.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{ApplyOptions, Pool};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = Pool::new(1)?;
/// let r = pool.apply_async_with(
///     square,
///     4,
///     ApplyOptions::new()
///         .callback(|v: &u64| println!("got {v}"))
///         .error_callback(|e| eprintln!("failed: {e}"))
///         .timeout(Duration::from_secs(10)),
/// )?;
/// assert_eq!(r.get()?, 16);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[must_use = "options do nothing until passed to a submission"]
pub struct ApplyOptions<R> {
    pub(crate) callback: Option<Callback<R>>,
    pub(crate) error_callback: Option<ErrorCallback>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) progress: Ticker,
}

impl<R> Default for ApplyOptions<R> {
    fn default() -> Self {
        ApplyOptions {
            callback: None,
            error_callback: None,
            timeout: None,
            progress: Ticker::default(),
        }
    }
}

impl<R> fmt::Debug for ApplyOptions<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplyOptions")
            .field("callback", &self.callback.is_some())
            .field("error_callback", &self.error_callback.is_some())
            .field("timeout", &self.timeout)
            .field("progress", &self.progress.is_on())
            .finish()
    }
}

impl<R> ApplyOptions<R> {
    /// No callbacks, the pool's default timeout.
    pub fn new() -> Self {
        ApplyOptions::default()
    }

    /// Runs `f(&result)` in the parent as soon as the result arrives (before
    /// `get` returns it), whether or not anybody calls `get`. A panicking
    /// callback is reported as a `tracing` event and counted
    /// ([`Pool::callback_panics`](crate::Pool::callback_panics)); the pool goes on.
    ///
    /// Callbacks run on the pool's result thread (or on a thread waiting in
    /// `get`); keep them short. One that waits for another result of the
    /// same pool collects results itself meanwhile, so it does not deadlock.
    pub fn callback(mut self, f: impl FnOnce(&R) + Send + 'static) -> Self {
        self.callback = Some(Box::new(f));
        self
    }

    /// Runs `f(&error)` in the parent as soon as the task fails.
    pub fn error_callback(mut self, f: impl FnOnce(&Error) + Send + 'static) -> Self {
        self.error_callback = Some(Box::new(f));
        self
    }

    /// This task's timeout (for a `map`, each chunk's): overrides the pool's
    /// default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Draws a progress bar on stderr that counts finished items (feature
    /// `progress`): for a `map`, every item of the input, as its chunk
    /// comes back; for an `apply`, the one task. The eager counterpart of
    /// [`IMapIter::progress`](crate::IMapIter::progress): nobody has to
    /// consume results for the bar to move.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ApplyOptions, Pool};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = Pool::new(2)?;
    /// let squares = pool
    ///     .map_async_with(square, 0..10_000u64, Some(100), ApplyOptions::new().progress())?
    ///     .get()?;
    /// assert_eq!(squares[99], 99 * 99);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[cfg(feature = "progress")]
    pub fn progress(self) -> Self {
        self.progress_bar(progress::counting_bar())
    }

    /// As [`progress`](ApplyOptions::progress), on the caller's own bar
    /// (styled, hidden, or part of a `MultiProgress`): the submission sets
    /// its length to the number of items and moves it as they finish.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::indicatif::ProgressBar;
    /// use multiproc::{ApplyOptions, Pool};
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// let pool = Pool::new(2)?;
    /// let bar = ProgressBar::hidden();
    /// let r = pool.map_async_with(square, 0..500u64, Some(7),
    ///     ApplyOptions::new().progress_bar(bar.clone()))?;
    /// assert_eq!(r.get()?.len(), 500);
    /// assert_eq!((bar.position(), bar.length()), (500, Some(500)));
    /// assert!(bar.is_finished());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    #[cfg(feature = "progress")]
    pub fn progress_bar(mut self, bar: indicatif::ProgressBar) -> Self {
        self.progress = Ticker(Some(bar));
        self
    }
}

/// The progress bar a submission moves, if its options asked for one
/// ([`ApplyOptions::progress`]); without the `progress` feature it is
/// always off and costs nothing.
#[derive(Default)]
pub(crate) struct Ticker(#[cfg(feature = "progress")] Option<indicatif::ProgressBar>);

impl Ticker {
    pub(crate) fn is_on(&self) -> bool {
        #[cfg(feature = "progress")]
        return self.0.is_some();
        #[cfg(not(feature = "progress"))]
        false
    }

    /// Starts counting towards `total` items (a bar of none is finished
    /// at once).
    pub(crate) fn start(&self, total: usize) {
        #[cfg(feature = "progress")]
        if let Some(bar) = &self.0 {
            bar.set_length(total as u64);
            bar.reset();
        }
        #[cfg(not(feature = "progress"))]
        let _ = total;
        self.advance(0);
    }

    /// Counts `n` more finished items, finishing the bar at its length.
    pub(crate) fn advance(&self, n: usize) {
        #[cfg(feature = "progress")]
        if let Some(bar) = &self.0 {
            bar.inc(n as u64);
            if bar.length().is_some_and(|len| bar.position() >= len) {
                bar.finish();
            }
        }
        #[cfg(not(feature = "progress"))]
        let _ = n;
    }
}

pub(crate) fn run_guarded(panics: &AtomicU64, f: impl FnOnce()) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
        panics.fetch_add(1, Ordering::Relaxed);
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "Box<dyn Any>".to_owned());
        tracing::warn!(message = %msg, "a pool callback panicked");
    }
}

/// Python's automatic chunksize for `map`: `ceil(len / (4 * processes))`.
pub(crate) fn auto_chunksize(len: usize, processes: usize) -> usize {
    if len == 0 {
        return 1;
    }
    len.div_ceil(processes * 4).max(1)
}
