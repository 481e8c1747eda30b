//! Handles on results that arrive later: [`AsyncResult`] (the iterators of
//! `imap` and `imap_unordered` read theirs from a `stream::Stream`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use multiproc_ipc::{Error, ErrorKind, Result};
use serde::de::DeserializeOwned;

use crate::ring::spin_until;
use crate::shared::{lock, Counters, Resolve};
use crate::task;

/// How long a blocking wait spins (collecting results) before it sleeps:
/// a few wake-ups' worth, so that a worker that has just gone to sleep can
/// be woken and answer before the caller gives up and sleeps too (otherwise
/// both sides settle into paying a wake-up on every hand-off).
pub(crate) const GET_SPIN: Duration = Duration::from_micros(100);

/// A pool that a waiting thread can help: while a caller waits for a result
/// it collects results itself instead of waiting for the result thread to
/// do it and wake it (one cross-CPU hop fewer, and no third spinner).
pub(crate) trait Help: Send + Sync {
    /// A thread starts helping.
    fn enter(&self);
    /// Collects what has arrived, if no other thread is collecting.
    fn help(&self);
    /// The thread stops helping; `going_to_sleep` if it will now block
    /// (then the result thread must take over at once).
    fn leave(&self, going_to_sleep: bool);
}

/// Spins up to `budget` until `ready()`, helping `helper` meanwhile.
pub(crate) fn spin_helping(helper: &Option<Weak<dyn Help>>, ready: impl Fn() -> bool) -> bool {
    match helper.as_ref().and_then(Weak::upgrade) {
        Some(h) => {
            h.enter();
            let r = spin_until(GET_SPIN, || {
                ready() || {
                    h.help();
                    ready()
                }
            });
            h.leave(!r);
            r
        }
        None => spin_until(GET_SPIN, ready),
    }
}

/// The name of the pool's result thread, which runs callbacks.
pub(crate) const RESULT_THREAD: &str = "multiproc-pool-results";

pub(crate) fn on_result_thread() -> bool {
    std::thread::current().name() == Some(RESULT_THREAD)
}

/// Collects results on this thread until `ready()` or `deadline`.
pub(crate) fn help_until(
    helper: &Option<Weak<dyn Help>>,
    deadline: Option<Instant>,
    ready: impl Fn() -> bool,
) -> bool {
    loop {
        if let Some(h) = helper.as_ref().and_then(Weak::upgrade) {
            h.help();
        }
        if ready() {
            return true;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Sleeps once on `cond` (until notified, or until `deadline`), counted in
/// the sleepers of the state `g` guards, so that a notifier can skip the
/// notification (a system call even with no waiter) when there are none;
/// `None` if `deadline` had passed (nothing counted then).
pub(crate) fn sleep_counted<'a, T, S: Asleep>(
    cond: &Condvar,
    mut g: MutexGuard<'a, T>,
    sleepers: impl Fn(&mut T) -> &mut S,
    deadline: Option<Instant>,
) -> Option<MutexGuard<'a, T>> {
    let wait = match deadline {
        None => None,
        Some(d) => Some(
            d.checked_duration_since(Instant::now())
                .filter(|w| !w.is_zero())?,
        ),
    };
    let since = sleepers(&mut g).fell_asleep();
    let mut g = match wait {
        None => cond.wait(g).unwrap_or_else(|p| p.into_inner()),
        Some(w) => cond.wait_timeout(g, w).unwrap_or_else(|p| p.into_inner()).0,
    };
    sleepers(&mut g).woke(since);
    Some(g)
}

/// A count of the threads asleep in [`sleep_counted`], kept under the lock
/// it sleeps with.
pub(crate) trait Asleep {
    /// Counts one more sleeper; returns what [`woke`](Asleep::woke) is to
    /// be given when it wakes.
    fn fell_asleep(&mut self) -> u32;
    /// Counts off a sleeper that woke, given what `fell_asleep` returned.
    fn woke(&mut self, since: u32);
}

/// For a state notified once (a result resolves once): each sleeper counts
/// itself off when it wakes.
impl Asleep for u32 {
    fn fell_asleep(&mut self) -> u32 {
        *self += 1;
        0
    }

    fn woke(&mut self, _: u32) {
        *self -= 1;
    }
}

/// Sleepers of a state notified again and again (an `imap`'s stream, at
/// each delivery): a notification counts off every sleeper at once, so
/// that the next one is sent only to a thread that went to sleep after it.
/// Counted off by a sleeper's own wake-up instead, a thread woken but not
/// yet running (behind busy processes, for milliseconds) still counted,
/// and the result thread notified it again at every delivery until then:
/// ten system calls per sleep in a slow run beside two busy loops.
#[derive(Debug, Default)]
pub(crate) struct Sleepers {
    /// Threads asleep that no notification has counted off yet.
    asleep: u32,
    /// Notifications sent so far: a sleeper that wakes after one was sent
    /// has been counted off by it.
    sent: u32,
}

impl Sleepers {
    /// True if a notification is due (a thread sleeps that none has been
    /// sent to); the sleepers count as notified from now on.
    pub(crate) fn notify(&mut self) -> bool {
        if self.asleep == 0 {
            return false;
        }
        self.asleep = 0;
        self.sent = self.sent.wrapping_add(1);
        true
    }

    /// Threads asleep that no notification has counted off yet.
    #[cfg(test)]
    pub(crate) fn asleep(&self) -> u32 {
        self.asleep
    }
}

impl Asleep for Sleepers {
    fn fell_asleep(&mut self) -> u32 {
        self.asleep += 1;
        self.sent
    }

    fn woke(&mut self, since: u32) {
        // Woken by its deadline (or spuriously) before any notification:
        // still counted, it counts itself off.
        if self.sent == since {
            self.asleep -= 1;
        }
    }
}

/// Runs a done callback on `value` (a value already taken by `get` reads
/// as an error); a panic in it is contained.
fn run_done_callback<R>(f: DoneCallback<R>, value: Option<std::result::Result<&R, &Error>>) {
    let taken;
    let arg = match value {
        Some(v) => v,
        None => {
            taken = Error::new(
                ErrorKind::InvalidArgument,
                "the result was already taken when the callback was added",
            );
            Err(&taken)
        }
    };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(arg)));
}

/// A function run once when a result resolves, with the value or the error.
pub(crate) type DoneCallback<R> = Box<dyn FnOnce(std::result::Result<&R, &Error>) + Send>;

struct Slot<R> {
    /// The outcome, its error boxed: a pending cell of a small value stays
    /// small (a pool holds one per task in flight, and a burst of
    /// submissions touches fresh memory for each).
    value: Option<std::result::Result<R, Box<Error>>>,
    successful: Option<bool>,
    /// The kind of the error it resolved to.
    failure: Option<ErrorKind>,
    /// Threads blocked on the condition variable (notify only if any).
    sleepers: u32,
    /// Done callbacks and an async waker, which few results have.
    waiting: Option<Box<Waiting<R>>>,
}

/// Who else waits for a result: done callbacks and an async task's waker.
struct Waiting<R> {
    callbacks: Vec<DoneCallback<R>>,
    waker: Option<Waker>,
}

impl<R> Slot<R> {
    fn waiting(&mut self) -> &mut Waiting<R> {
        self.waiting.get_or_insert_with(|| {
            Box::new(Waiting {
                callbacks: Vec::new(),
                waker: None,
            })
        })
    }

    /// The outcome, as `Result<&R>` with the error unboxed.
    fn outcome(&self) -> Option<std::result::Result<&R, &Error>> {
        self.value.as_ref().map(|v| v.as_ref().map_err(|e| &**e))
    }
}

/// The shared state behind an [`AsyncResult`].
pub(crate) struct Cell<R> {
    helper: Option<Weak<dyn Help>>,
    ready: AtomicBool,
    slot: Mutex<Slot<R>>,
    cond: Condvar,
}

impl<R> Cell<R> {
    pub(crate) fn new(helper: Option<Weak<dyn Help>>) -> Arc<Cell<R>> {
        Arc::new(Cell {
            helper,
            ready: AtomicBool::new(false),
            slot: Mutex::new(Slot {
                value: None,
                successful: None,
                failure: None,
                sleepers: 0,
                waiting: None,
            }),
            cond: Condvar::new(),
        })
    }

    /// Stores the outcome and wakes every waiter; later calls are ignored.
    pub(crate) fn resolve(&self, value: Result<R>) {
        let (waker, sleepers) = {
            let mut s = lock(&self.slot);
            if s.successful.is_some() {
                return;
            }
            s.successful = Some(value.is_ok());
            s.failure = value.as_ref().err().map(Error::kind);
            s.value = Some(value.map_err(Box::new));
            self.ready.store(true, Ordering::Release);
            // Done callbacks run before any waiter can take the value.
            let waiting = s.waiting.take();
            let (callbacks, waker) = waiting.map_or((Vec::new(), None), |w| (w.callbacks, w.waker));
            for f in callbacks {
                run_done_callback(f, s.outcome());
            }
            (waker, s.sleepers)
        };
        if sleepers > 0 {
            self.cond.notify_all();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Runs `f` when the result resolves, or at once if it has.
    pub(crate) fn on_done(&self, f: DoneCallback<R>) {
        let mut s = lock(&self.slot);
        if s.successful.is_some() {
            run_done_callback(f, s.outcome());
        } else {
            s.waiting().callbacks.push(f);
        }
    }

    /// The kind of the error it resolved to; `None` while pending or after success.
    pub(crate) fn failure(&self) -> Option<ErrorKind> {
        lock(&self.slot).failure
    }

    /// A copy of the error it resolved to, if it failed and the error was
    /// not taken.
    pub(crate) fn error(&self) -> Option<Error> {
        match &lock(&self.slot).value {
            Some(Err(e)) => Some(Error::clone(e)),
            _ => None,
        }
    }

    /// Waits until ready or `deadline`; true if ready.
    pub(crate) fn wait_until(&self, deadline: Option<Instant>) -> bool {
        if self.is_ready() || spin_helping(&self.helper, || self.is_ready()) {
            return true;
        }
        if on_result_thread() {
            // A callback is waiting for another result: nobody else may be
            // collecting, so keep collecting here instead of sleeping.
            return help_until(&self.helper, deadline, || self.is_ready());
        }
        let mut s = lock(&self.slot);
        while s.successful.is_none() {
            match sleep_counted(&self.cond, s, |s| &mut s.sleepers, deadline) {
                Some(g) => s = g,
                None => return false,
            }
        }
        true
    }

    pub(crate) fn take(&self) -> Result<R> {
        match lock(&self.slot).value.take() {
            Some(v) => v.map_err(|e| *e),
            None => Err(Error::new(
                ErrorKind::InvalidArgument,
                "the result was already taken by an earlier get",
            )),
        }
    }
}

impl<R: DeserializeOwned + Send> Resolve for Cell<R> {
    fn resolve_outcome(&self, outcome: Result<&[u8]>, stats: &Counters) {
        self.resolve(task::decode_counted(outcome, stats));
    }
}

/// The result of a task submitted with [`Pool::apply_async`](crate::Pool::apply_async)
/// (or of a whole `map_async`), Python's `AsyncResult`.
///
/// It resolves exactly once, to the value or to an error; every path ends
/// (a lost worker, a timeout, `terminate` all resolve it with an error).
/// It is also a [`Future`], so it can be `.await`ed under any executor.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::Pool;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = Pool::new(2)?;
/// let r = pool.apply_async(square, 7)?;
/// r.wait();
/// assert!(r.ready());
/// assert_eq!(r.successful(), Some(true));
/// assert_eq!(r.get_timeout(Duration::from_secs(5))?, 49);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct AsyncResult<R> {
    cell: Arc<Cell<R>>,
    id: Option<u64>,
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("id", &self.id)
            .field("ready", &self.ready())
            .finish()
    }
}

impl<R> AsyncResult<R> {
    pub(crate) fn from_cell(cell: Arc<Cell<R>>, id: Option<u64>) -> AsyncResult<R> {
        AsyncResult { cell, id }
    }

    pub(crate) fn cell(&self) -> &Arc<Cell<R>> {
        &self.cell
    }

    /// The id of the task, as error messages name it ("task 17"): `Some`
    /// for [`apply_async`](crate::Pool::apply_async), `None` for a whole
    /// `map_async` (its chunks are tasks of their own).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// # fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(1)?;
    /// let a = pool.apply_async(square, 3)?;
    /// let b = pool.apply_async(square, 4)?;
    /// assert_ne!(a.id(), b.id());
    /// assert!(pool.map_async(square, 0..3u64)?.id().is_none());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// Blocks until the result arrives and returns it.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// # fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(1)?;
    /// assert_eq!(pool.apply_async(square, 3)?.get()?, 9);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The task's error: [`ErrorKind::TaskPanicked`], [`ErrorKind::WorkerLost`],
    /// [`ErrorKind::Timeout`] (the task's own timeout), [`ErrorKind::Serialization`],
    /// [`ErrorKind::NotRunning`] (the pool was terminated first), or
    /// [`ErrorKind::InvalidArgument`] if an earlier `get_timeout` already took it.
    pub fn get(self) -> Result<R> {
        self.cell.wait_until(None);
        self.cell.take()
    }

    /// Waits up to `timeout` for the result and returns it. After a timeout
    /// the result is still pending and a later `get` can still succeed.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use multiproc::Pool;
    /// fn slow(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(slow, 200)?;
    /// assert!(r.get_timeout(Duration::from_millis(1)).unwrap_err().is_timeout());
    /// assert_eq!(r.get()?, 200);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if the result is not there in time; otherwise
    /// as [`get`](AsyncResult::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        if !self.cell.wait_until(Instant::now().checked_add(timeout)) {
            return Err(Error::timeout(format!(
                "the result did not arrive within {timeout:?}"
            )));
        }
        self.cell.take()
    }

    /// Blocks until the result has arrived (without taking it).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// # fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(square, 3)?;
    /// r.wait();
    /// assert!(r.ready());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait(&self) {
        self.cell.wait_until(None);
    }

    /// Waits up to `timeout`; true if the result has arrived.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use multiproc::Pool;
    /// # fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(square, 3)?;
    /// assert!(r.wait_timeout(Duration::from_secs(5)));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.cell.wait_until(Instant::now().checked_add(timeout))
    }

    /// True once the result has arrived.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// # fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(square, 3)?;
    /// r.wait();
    /// assert!(r.ready());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn ready(&self) -> bool {
        self.cell.is_ready()
    }

    /// Whether the task succeeded: `None` while it is not ready (Python
    /// raises `ValueError` there).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn fails(_: ()) -> u32 { panic!("no") }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(fails, ())?;
    /// r.wait();
    /// assert_eq!(r.successful(), Some(false));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn successful(&self) -> Option<bool> {
        lock(&self.cell.slot).successful
    }
}

impl<R> Future for AsyncResult<R> {
    type Output = Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        let mut s = lock(&self.cell.slot);
        if s.successful.is_some() {
            drop(s);
            return Poll::Ready(self.cell.take());
        }
        s.waiting().waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notification counts off every sleeper there is: the next delivery
    /// notifies nobody until a thread goes to sleep again, and a thread
    /// counted off does not count off a later sleeper when it wakes; one
    /// woken by its deadline before any notification counts itself off.
    #[test]
    fn a_notification_counts_off_its_sleepers_once() {
        let mut s = Sleepers::default();
        assert!(!s.notify(), "nobody asleep");
        let a = s.fell_asleep();
        let b = s.fell_asleep();
        assert!(s.notify());
        assert_eq!(s.asleep(), 0);
        assert!(!s.notify(), "both were notified already");
        // A third goes to sleep before the first two ran.
        let c = s.fell_asleep();
        s.woke(a);
        s.woke(b);
        assert_eq!(s.asleep(), 1, "the third still sleeps");
        assert!(s.notify());
        s.woke(c);
        assert_eq!(s.asleep(), 0);
        // Woken by its deadline: nothing was sent, it counts itself off.
        let d = s.fell_asleep();
        s.woke(d);
        assert_eq!(s.asleep(), 0);
        assert!(!s.notify());
    }

    /// Through a condition variable: a thread asleep in `sleep_counted` is
    /// woken by the one notification due, and a second delivery before it
    /// runs sends none.
    #[test]
    fn a_sleeper_is_notified_once_and_counts_off_cleanly() {
        let state = Arc::new((Mutex::new((false, Sleepers::default())), Condvar::new()));
        let s = Arc::clone(&state);
        let sleeper = std::thread::spawn(move || {
            let (m, cond) = &*s;
            let mut g = lock(m);
            let deadline = Some(Instant::now() + Duration::from_secs(30));
            while !g.0 {
                g = sleep_counted(cond, g, |g| &mut g.1, deadline)
                    .expect("woken before the deadline");
            }
        });
        let (m, cond) = &*state;
        while lock(m).1.asleep() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let notify = {
            let mut g = lock(m);
            g.0 = true;
            (g.1.notify(), g.1.notify())
        };
        assert_eq!(notify, (true, false));
        cond.notify_all();
        sleeper.join().unwrap();
        assert_eq!(lock(m).1.asleep(), 0);
    }

    #[test]
    fn a_pending_cell_of_a_small_value_stays_small() {
        // One per task in flight, each in fresh memory during a burst of
        // submissions: the error and the rare waiters are boxed.
        assert!(std::mem::size_of::<Cell<u64>>() <= 64);
    }

    #[test]
    fn a_cell_keeps_its_error_and_runs_callbacks_added_before_and_after() {
        let cell = Cell::<u64>::new(None);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        cell.on_done(Box::new(move |r| {
            lock(&s).push(r.map_err(|e| e.kind()).copied())
        }));
        cell.resolve(Err(Error::new(ErrorKind::WorkerLost, "gone")));
        cell.resolve(Ok(5));
        let s = Arc::clone(&seen);
        cell.on_done(Box::new(move |r| {
            lock(&s).push(r.map_err(|e| e.kind()).copied())
        }));
        assert_eq!(
            *lock(&seen),
            vec![Err(ErrorKind::WorkerLost), Err(ErrorKind::WorkerLost)]
        );
        assert_eq!(cell.failure(), Some(ErrorKind::WorkerLost));
        assert_eq!(cell.error().map(|e| e.kind()), Some(ErrorKind::WorkerLost));
        assert_eq!(cell.take().unwrap_err().kind(), ErrorKind::WorkerLost);
        assert_eq!(cell.take().unwrap_err().kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn the_cell_completion_decodes_counts_and_resolves() {
        let cell = Cell::<u64>::new(None);
        let stats = Counters::default();
        let bytes = multiproc_ipc::codec::encode(&task::ItemOutcome::<u64>::Ok(42)).unwrap();
        crate::shared::Completion::resolve(Arc::clone(&cell) as Arc<dyn Resolve>)
            .complete(Ok(&bytes), &stats);
        assert_eq!(cell.take().unwrap(), 42);
        assert_eq!(stats.completed.load(Ordering::Relaxed), 1);
        // Dropped without running (a pool torn down): NotRunning, not a hang.
        let cell = Cell::<u64>::new(None);
        drop(crate::shared::Completion::resolve(
            Arc::clone(&cell) as Arc<dyn Resolve>
        ));
        assert_eq!(cell.take().unwrap_err().kind(), ErrorKind::NotRunning);
    }
}
