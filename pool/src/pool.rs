//! The pool: its builder, the parent-side state machine, the collector
//! thread (results, deaths, timeouts, dispatch) and the supervisor thread
//! (pidfds).

use std::collections::VecDeque;
use std::fmt;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multiproc_ipc::shm::{SharedMemory, ShmRegion};
use multiproc_ipc::{
    codec, Error, ErrorKind, ExitInfo, ExitStatus, FnRef, FnRef2, Result, Zygote, ZygoteChild,
};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::result::{AsyncResult, Cell, Help, IMapIter, Stream};
use crate::ring::{spin_until, Bell};
use crate::task::{self, ChunkResult, Tramp, KIND_BLOCK, KIND_EXIT, KIND_INLINE};
use crate::worker::{self, SlotView, WorkerArg};
use multiproc_ipc::park;
use std::sync::atomic::AtomicU32;
use std::sync::Weak;

/// Tasks a worker may have queued in its ring at once.
const MAX_OUTSTANDING: usize = 256;
/// How long the collector spins for results before it sleeps.
const COLLECT_SPIN: Duration = Duration::from_micros(50);
/// How long a worker spins for its next task before it sleeps.
const WORKER_SPIN: Duration = Duration::from_micros(200);
/// How long `join` and `terminate` wait for a worker to exit before killing it.
const EXIT_GRACE: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How the pool's processes are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartMethod {
    /// The default: a zygote forked from the fork server if
    /// [`multiproc::init`](multiproc_ipc::init) started one, else a zygote
    /// forked from this process at `Pool::new`. Workers and every
    /// replacement are forked by the zygote.
    #[default]
    Zygote,
    /// Require the process-wide fork server (Python's `forkserver`): the
    /// pool's zygote is forked from it, so workers never inherit this
    /// process's threads' state. `build` fails if `init()` was not called.
    ForkServer,
}

/// Configures and creates a [`Pool`] (`Pool::builder()`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc_pool::Pool;
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
/// # Ok::<(), multiproc_pool::Error>(())
/// ```
pub struct PoolBuilder {
    processes: Option<usize>,
    initializer: Option<Result<(Tramp, Vec<u8>)>>,
    max_tasks_per_child: Option<u64>,
    start_method: StartMethod,
    task_timeout: Option<Duration>,
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
    /// `initializer` and `initargs`). A worker whose initializer panics exits
    /// and is replaced.
    pub fn initializer<A>(mut self, initializer: fn(A), initargs: A) -> Self
    where
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        let body = codec::encode(&(FnRef::new(initializer), initargs)).map_err(Error::from);
        self.initializer = Some(body.map(|b| (task::tramp_one::<A, ()>(), b)));
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
            initializer,
            max_tasks: self.max_tasks_per_child,
            task_timeout: self.task_timeout,
        })
    }
}

struct Config {
    processes: usize,
    initializer: Option<(Tramp, Vec<u8>)>,
    max_tasks: Option<u64>,
    task_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Closed,
    /// `join` is stopping the workers.
    Stopping,
    Terminated,
}

/// What to do with a task's outcome bytes (or its failure), in the parent.
type Completion = Box<dyn FnOnce(Result<&[u8]>) + Send>;

/// Where the bytes of a collected outcome are.
enum Outcome {
    /// A range of [`Collected::arena`].
    Arena(std::ops::Range<usize>),
    /// A large result's block, decoded in place.
    Block(SharedMemory),
}

/// Arena capacity kept between rounds of collection.
const ARENA_KEEP: usize = 4 << 20;

/// Results collected under the state lock, whose completions run after it
/// is released. The outcome bytes of a whole round share one buffer (no
/// allocation per result).
#[derive(Default)]
struct Collected {
    arena: Vec<u8>,
    done: Vec<(Completion, Result<Outcome>)>,
}

impl Collected {
    fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    fn push_err(&mut self, complete: Completion, e: Error) {
        self.done.push((complete, Err(e)));
    }

    /// Runs the completions collected so far, then empties the arena.
    fn complete_all(&mut self) {
        let arena = &self.arena;
        for (complete, outcome) in self.done.drain(..) {
            match outcome {
                Ok(Outcome::Arena(r)) => complete(Ok(arena.get(r).unwrap_or(&[]))),
                Ok(Outcome::Block(b)) => complete(Ok(b.as_slice())),
                Err(e) => complete(Err(e)),
            }
        }
        self.arena.clear();
        if self.arena.capacity() > ARENA_KEEP {
            self.arena.shrink_to(ARENA_KEEP);
        }
    }
}

struct Pending {
    id: u64,
    record: Vec<u8>,
    /// Keeps a large argument's block alive until the task ends.
    block: Option<SharedMemory>,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    complete: Completion,
}

struct WorkerSlot {
    view: SlotView,
    child: Option<Arc<ZygoteChild>>,
    pid: i32,
    generation: u64,
    /// Tasks in its ring, in order (it runs them first to last).
    outstanding: VecDeque<Pending>,
    dispatched: u64,
    /// Runs a task with a timeout: gets nothing else meanwhile.
    timed: bool,
    /// The task it was killed for, by its timeout.
    timed_out: Option<u64>,
    staged: Option<u64>,
}

impl WorkerSlot {
    fn accepts(&self, max_tasks: Option<u64>, needs_idle: bool) -> bool {
        self.child.is_some()
            && !self.timed
            && self.timed_out.is_none()
            && self.outstanding.len() < MAX_OUTSTANDING
            && max_tasks.is_none_or(|m| self.dispatched < m)
            && (!needs_idle || self.outstanding.is_empty())
    }
}

struct Inner {
    state: State,
    workers: Vec<WorkerSlot>,
    /// Tasks waiting for a worker, in submission order.
    backlog: VecDeque<Pending>,
    zygote: Option<Zygote>,
    /// Set when the pool cannot run tasks any more (no worker can be forked).
    broken: Option<Error>,
}

impl Inner {
    /// Tasks submitted and not finished.
    fn pending(&self) -> usize {
        self.backlog.len()
            + self
                .workers
                .iter()
                .map(|w| w.outstanding.len())
                .sum::<usize>()
    }

    /// Takes every unfinished task (terminate, or a broken pool).
    fn take_all(&mut self) -> Vec<Pending> {
        let mut all: Vec<Pending> = self.backlog.drain(..).collect();
        for w in &mut self.workers {
            all.extend(w.outstanding.drain(..));
            w.timed = false;
        }
        all
    }
}

enum Event {
    Died { slot: usize, generation: u64 },
}

struct Shared {
    inner: Mutex<Inner>,
    /// Notified when `tasks` becomes empty.
    idle: Condvar,
    region: ShmRegion,
    parent_bell: Bell,
    result_rings: Vec<crate::ring::Ring>,
    events: Mutex<Vec<Event>>,
    event_flag: AtomicBool,
    watch: Mutex<Vec<(usize, u64, Arc<ZygoteChild>)>>,
    wake_tx: UnixStream,
    shutdown: AtomicBool,
    callback_panics: Arc<AtomicU64>,
    /// The next task id.
    next_id: AtomicU64,
    /// Large-payload blocks kept for reuse.
    spare_blocks: Mutex<Vec<SharedMemory>>,
    /// Threads collecting results while they wait (see [`Help`]); the
    /// result thread stays asleep while there are any.
    helpers: AtomicU32,
    config: Config,
}

thread_local! {
    static HELP_BUF: std::cell::RefCell<Collected> = std::cell::RefCell::new(Collected::default());
}

impl Help for Shared {
    fn enter(&self) {
        self.helpers.fetch_add(1, Ordering::SeqCst);
    }

    fn help(&self) {
        let Ok(mut g) = self.inner.try_lock() else {
            return;
        };
        // Taken out of the thread-local while completions run: a callback
        // that waits for another result helps on this thread too.
        let mut col = HELP_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
        pump(self, &mut g, &mut col);
        if g.pending() == 0 && g.state != State::Running {
            self.idle.notify_all();
        }
        drop(g);
        col.complete_all();
        HELP_BUF.with(|b| *b.borrow_mut() = col);
    }

    fn leave(&self, going_to_sleep: bool) {
        // A helper that got its result does not wake the result thread (it
        // re-checks within a millisecond): waking it after every `get` would
        // put a third thread on two CPUs in exactly the ping-pong that
        // spinning keeps fast. One that is about to sleep must wake it, or
        // nobody would collect its result.
        if self.helpers.fetch_sub(1, Ordering::SeqCst) == 1 && going_to_sleep {
            park::wake_all_u32(&self.helpers);
        }
    }
}

/// A pool of worker processes, Python's `multiprocessing.Pool`.
///
/// Tasks are plain functions `fn(A) -> R` (non-capturing closures coerce to
/// them) whose argument and result are serde types; a task that returns a
/// `Result<T, E>` hands its error back as a value. Every result ends as a
/// value or an error: a worker that dies fails exactly the task it ran with
/// [`ErrorKind::WorkerLost`] and is replaced; a panic fails its task with
/// [`ErrorKind::TaskPanicked`] and the worker goes on.
///
/// Dropping the pool terminates it (kills the workers, fails what is pending).
///
/// # Examples
///
/// ```
/// use multiproc_pool::Pool;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = Pool::new(2)?;
/// assert_eq!(pool.apply(square, 7)?, 49);
/// assert_eq!(pool.map(square, 0..5u64)?, vec![0, 1, 4, 9, 16]);
/// pool.close();
/// pool.join()?;
/// # Ok::<(), multiproc_pool::Error>(())
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = lock(&self.shared.inner);
        f.debug_struct("Pool")
            .field("processes", &self.shared.config.processes)
            .field("state", &g.state)
            .field("pending_tasks", &g.pending())
            .finish()
    }
}

type Callback<R> = Box<dyn FnOnce(&R) + Send>;
type ErrorCallback = Box<dyn FnOnce(&Error) + Send>;

/// Options of one asynchronous submission: callbacks and a timeout.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc_pool::{ApplyOptions, Pool};
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
/// # Ok::<(), multiproc_pool::Error>(())
/// ```
pub struct ApplyOptions<R> {
    callback: Option<Callback<R>>,
    error_callback: Option<ErrorCallback>,
    timeout: Option<Duration>,
}

impl<R> Default for ApplyOptions<R> {
    fn default() -> Self {
        ApplyOptions {
            callback: None,
            error_callback: None,
            timeout: None,
        }
    }
}

impl<R> fmt::Debug for ApplyOptions<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplyOptions")
            .field("callback", &self.callback.is_some())
            .field("error_callback", &self.error_callback.is_some())
            .field("timeout", &self.timeout)
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
    /// callback is reported on stderr and counted
    /// ([`Pool::callback_panics`]); the pool goes on.
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
}

fn run_guarded(panics: &AtomicU64, f: impl FnOnce()) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
        panics.fetch_add(1, Ordering::Relaxed);
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "Box<dyn Any>".to_owned());
        eprintln!("multiproc: a pool callback panicked: {msg}");
    }
}

/// Python's automatic chunksize for `map`: `ceil(len / (4 * processes))`.
fn auto_chunksize(len: usize, processes: usize) -> usize {
    if len == 0 {
        return 1;
    }
    len.div_ceil(processes * 4).max(1)
}

impl Pool {
    /// A pool of `processes` workers with default settings.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.processes(), 2);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A builder with every option at its default.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// let pool = Pool::builder().processes(1).build()?;
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            initializer: None,
            max_tasks_per_child: None,
            start_method: StartMethod::Zygote,
            task_timeout: None,
        }
    }

    fn start(config: Config) -> Result<Pool> {
        let n = config.processes;
        // The region first, then the zygote (which inherits its mapping),
        // then workers, and only then our own threads.
        let region = ShmRegion::create(worker::region_len(n))?;
        let name = region
            .name()
            .ok_or_else(|| Error::new(ErrorKind::Io, "the pool's region has no name"))?
            .to_owned();
        let zygote = Zygote::start()?;
        let (wake_tx, wake_rx) =
            UnixStream::pair().map_err(|e| Error::io("cannot create the pool's wake socket", e))?;
        let _ = wake_tx.set_nonblocking(true);
        let _ = wake_rx.set_nonblocking(true);
        let mut workers = Vec::with_capacity(n);
        let mut watch = Vec::with_capacity(n);
        for slot in 0..n {
            let view = SlotView::new(&region, slot);
            let child = Arc::new(spawn_worker(&zygote, &name, slot, &config)?);
            watch.push((slot, 0, Arc::clone(&child)));
            workers.push(WorkerSlot {
                view,
                pid: child.pid(),
                child: Some(child),
                generation: 0,
                outstanding: VecDeque::new(),
                dispatched: 0,
                timed: false,
                timed_out: None,
                staged: None,
            });
        }
        let result_rings = workers.iter().map(|w| w.view.results.clone()).collect();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                state: State::Running,
                workers,
                backlog: VecDeque::new(),
                zygote: Some(zygote),
                broken: None,
            }),
            idle: Condvar::new(),
            parent_bell: worker::parent_bell(&region),
            region,
            result_rings,
            events: Mutex::new(Vec::new()),
            event_flag: AtomicBool::new(false),
            watch: Mutex::new(watch),
            wake_tx,
            shutdown: AtomicBool::new(false),
            callback_panics: Arc::new(AtomicU64::new(0)),
            helpers: AtomicU32::new(0),
            spare_blocks: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            config,
        });
        let mut threads = Vec::new();
        let s = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name(crate::result::RESULT_THREAD.into())
                .spawn(move || collector_loop(&s))
                .map_err(|e| Error::io("cannot start the pool's result thread", e))?,
        );
        let s = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("multiproc-pool-supervisor".into())
                .spawn(move || supervisor_loop(&s, wake_rx))
                .map_err(|e| Error::io("cannot start the pool's supervisor thread", e))?,
        );
        Ok(Pool {
            shared,
            threads: Mutex::new(threads),
        })
    }

    fn helper(&self) -> Weak<dyn Help> {
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        weak
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.shared.config.processes
    }

    /// The pids of the current workers (changes as workers are replaced).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.worker_pids().len(), 2);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    pub fn worker_pids(&self) -> Vec<i32> {
        let g = lock(&self.shared.inner);
        g.workers
            .iter()
            .filter(|w| w.child.is_some())
            .map(|w| w.pid)
            .collect()
    }

    /// How many callbacks have panicked so far.
    pub fn callback_panics(&self) -> u64 {
        self.shared.callback_panics.load(Ordering::Relaxed)
    }

    /// Runs `f(arg)` in a worker and waits for the result (Python's `apply`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// fn pid(_: ()) -> u32 { std::process::id() }
    /// let pool = Pool::new(1)?;
    /// assert_ne!(pool.apply(pid, ())?, std::process::id());
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotRunning`] after `close`/`terminate`;
    /// [`ErrorKind::Serialization`] if `arg` cannot be encoded; otherwise the
    /// task's error as in [`AsyncResult::get`].
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async(f, arg)?.get()
    }

    /// Submits `f(arg)` and returns at once with an [`AsyncResult`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let rs: Vec<_> = (0..10u64).map(|i| pool.apply_async(square, i)).collect::<Result<_, _>>()?;
    /// let total: u64 = rs.into_iter().map(|r| r.get()).sum::<Result<u64, _>>()?;
    /// assert_eq!(total, 285);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotRunning`] after `close`/`terminate`;
    /// [`ErrorKind::Serialization`] if `arg` cannot be encoded.
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async_with(f, arg, ApplyOptions::new())
    }

    /// [`apply_async`](Pool::apply_async) with callbacks and a timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::mpsc;
    /// # use multiproc_pool::{ApplyOptions, Pool};
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(1)?;
    /// let (tx, rx) = mpsc::channel();
    /// pool.apply_async_with(square, 5, ApplyOptions::new().callback(move |v: &u64| tx.send(*v).unwrap()))?;
    /// assert_eq!(rx.recv().unwrap(), 25); // nobody called get
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Pool::apply_async); `InvalidArgument` for a zero timeout.
    pub fn apply_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        arg: A,
        options: ApplyOptions<R>,
    ) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        if options.timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the timeout must be positive",
            ));
        }
        let template = task::one_template::<A, R>()?;
        let encoded = self.shared.build_record(&template, &(FnRef::new(f), arg))?;
        let cell = Cell::<R>::new(Some(self.helper()));
        let c = Arc::clone(&cell);
        let ApplyOptions {
            callback,
            error_callback,
            timeout,
        } = options;
        // Only a task with a callback needs the counter: cloning it for
        // every task would bounce its reference count between the
        // submitting thread and the result thread.
        let panics = (callback.is_some() || error_callback.is_some())
            .then(|| Arc::clone(&self.shared.callback_panics));
        let complete: Completion = Box::new(move |outcome: Result<&[u8]>| {
            let res = outcome.and_then(task::decode_one::<R>);
            if let Some(panics) = &panics {
                match &res {
                    Ok(v) => {
                        if let Some(cb) = callback {
                            run_guarded(panics, || cb(v));
                        }
                    }
                    Err(e) => {
                        if let Some(cb) = error_callback {
                            run_guarded(panics, || cb(e));
                        }
                    }
                }
            }
            c.resolve(res);
        });
        self.submit(encoded, timeout, complete)?;
        Ok(AsyncResult::from_cell(cell))
    }

    fn check_running(&self) -> Result<()> {
        let g = lock(&self.shared.inner);
        check_state(&g)
    }

    /// Queues one encoded task and dispatches what can be dispatched.
    fn submit(
        &self,
        (id, record, block): Encoded,
        timeout: Option<Duration>,
        complete: Completion,
    ) -> Result<()> {
        let timeout = timeout.or(self.shared.config.task_timeout);
        let mut g = lock(&self.shared.inner);
        if let Err(e) = check_state(&g) {
            drop(g);
            return Err(e);
        }
        g.backlog.push_back(Pending {
            id,
            record,
            block,
            timeout,
            deadline: None,
            complete,
        });
        dispatch(&self.shared, &mut g);
        Ok(())
    }

    /// Submits a batch of the chunks of a map; `deliver(first_index,
    /// results)` receives each chunk's item results in the parent. A pool
    /// that stopped running fails the submission, or, for a `later` batch
    /// (the map's first chunks are already running), fails its chunks.
    fn submit_chunks<T>(
        &self,
        chunks: Vec<(usize, Result<Encoded>, usize)>,
        timeout: Option<Duration>,
        deliver: &Arc<dyn Fn(usize, ChunkResult<T>) + Send + Sync>,
        later: bool,
    ) -> Result<()>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let timeout = timeout.or(self.shared.config.task_timeout);
        let mut failed = Vec::new();
        {
            let mut g = lock(&self.shared.inner);
            if let Err(e) = check_state(&g) {
                drop(g);
                if !later {
                    return Err(e);
                }
                for (first, _, n) in chunks {
                    deliver(first, ChunkResult::failed(n, &e));
                }
                return Ok(());
            }
            for (first, body, n) in chunks {
                let d = Arc::clone(deliver);
                let (id, record, block) = match body {
                    Ok(b) => b,
                    Err(e) => {
                        failed.push((first, n, e));
                        continue;
                    }
                };
                let complete: Completion = Box::new(move |outcome: Result<&[u8]>| {
                    let items = match outcome {
                        Ok(bytes) => task::decode_chunk::<T>(bytes, n),
                        Err(e) => ChunkResult::failed(n, &e),
                    };
                    d(first, items);
                });
                g.backlog.push_back(Pending {
                    id,
                    record,
                    block,
                    timeout,
                    deadline: None,
                    complete,
                });
            }
            dispatch(&self.shared, &mut g);
        }
        for (first, n, e) in failed {
            deliver(first, ChunkResult::failed(n, &e));
        }
        Ok(())
    }

    /// Encodes `items` in chunks of `chunksize` as records for `tramp` and
    /// submits them in batches as they are encoded, so that the workers
    /// start on the first chunks while the parent encodes the rest.
    fn submit_chunked<F, A, T>(
        &self,
        tramp: &Tramp,
        f: F,
        items: &[A],
        chunksize: usize,
        timeout: Option<Duration>,
        deliver: Arc<dyn Fn(usize, ChunkResult<T>) + Send + Sync>,
    ) -> Result<()>
    where
        F: Serialize + Copy,
        A: Serialize,
        T: DeserializeOwned + Send + 'static,
    {
        let template = task::head_template(tramp)?;
        let chunksize = chunksize.max(1);
        let per_batch = BATCH_CHUNKS.min(items.len().div_ceil(chunksize));
        let mut batch = Vec::with_capacity(per_batch);
        let (mut first, mut batch_items, mut later) = (0, 0, false);
        for chunk in items.chunks(chunksize) {
            // A slice encodes exactly like the `Vec<A>` the worker decodes.
            let n = chunk.len();
            batch.push((first, self.shared.build_record(&template, &(f, chunk)), n));
            first += n;
            batch_items += n;
            if batch_items >= BATCH_ITEMS || batch.len() >= BATCH_CHUNKS {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(per_batch));
                self.submit_chunks(full, timeout, &deliver, later)?;
                later = true;
                batch_items = 0;
            }
        }
        if !batch.is_empty() {
            self.submit_chunks(batch, timeout, &deliver, later)?;
        }
        Ok(())
    }

    fn check_chunksize(chunksize: usize) -> Result<()> {
        if chunksize == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "chunksize must be at least 1",
            ));
        }
        Ok(())
    }

    /// Applies `f` to every item in parallel and returns the results in
    /// order (Python's `map`, with its automatic chunksize).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.map(square, vec![1u64, 2, 3])?, vec![1, 4, 9]);
    /// assert!(pool.map(square, Vec::<u64>::new())?.is_empty());
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotRunning`] after `close`/`terminate`; otherwise the
    /// error of the first failed item (in input order).
    pub fn map<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items)?.get()
    }

    /// [`map`](Pool::map) with an explicit chunksize.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.map_chunksize(square, 0..4u64, 1)?, vec![0, 1, 4, 9]);
    /// assert!(pool.map_chunksize(square, 0..4u64, 0).is_err());
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for `chunksize == 0`; otherwise as [`map`](Pool::map).
    pub fn map_chunksize<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        Pool::check_chunksize(chunksize)?;
        self.map_async_with(f, items, Some(chunksize), ApplyOptions::new())?
            .get()
    }

    /// Submits a `map` and returns at once; the [`AsyncResult`] resolves to
    /// all results in order, or to the first error.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let r = pool.map_async(square, 0..100u64)?;
    /// assert_eq!(r.get()?.len(), 100);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map), for submission.
    pub fn map_async<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_with(f, items, None, ApplyOptions::new())
    }

    /// [`map_async`](Pool::map_async) with a chunksize (`None`: automatic),
    /// callbacks (on the whole result list) and a per-chunk timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::{ApplyOptions, Pool};
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let r = pool.map_async_with(square, 0..10u64, Some(3),
    ///     ApplyOptions::new().callback(|v: &Vec<u64>| assert_eq!(v.len(), 10)))?;
    /// assert_eq!(r.get()?[9], 81);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for a zero chunksize; as [`map`](Pool::map).
    pub fn map_async_with<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: Option<usize>,
        options: ApplyOptions<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.check_running()?;
        let items: Vec<A> = items.into_iter().collect();
        let cs = chunksize.unwrap_or_else(|| auto_chunksize(items.len(), self.processes()));
        Pool::check_chunksize(cs)?;
        let total = items.len();
        self.gather(total, options, |deliver, timeout| {
            self.submit_chunked(
                &task::tramp_chunk::<A, R>(),
                FnRef::new(f),
                &items,
                cs,
                timeout,
                deliver,
            )
        })
    }

    /// Applies `f(a, b)` to every pair (Python's `starmap`), in order.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// fn add(a: u64, b: u64) -> u64 { a + b }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.starmap(add, vec![(1u64, 2u64), (3, 4)])?, vec![3, 7]);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn starmap<A, B, R, I>(&self, f: fn(A, B) -> R, items: I) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        B: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = (A, B)>,
    {
        self.starmap_async(f, items, None)?.get()
    }

    /// Submits a `starmap` with an optional chunksize and returns at once.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// fn add(a: u64, b: u64) -> u64 { a + b }
    /// let pool = Pool::new(2)?;
    /// let r = pool.starmap_async(add, vec![(1u64, 2u64), (3, 4)], Some(1))?;
    /// assert_eq!(r.get()?, vec![3, 7]);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map_async_with`](Pool::map_async_with).
    pub fn starmap_async<A, B, R, I>(
        &self,
        f: fn(A, B) -> R,
        items: I,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        B: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = (A, B)>,
    {
        self.check_running()?;
        let items: Vec<(A, B)> = items.into_iter().collect();
        let cs = chunksize.unwrap_or_else(|| auto_chunksize(items.len(), self.processes()));
        Pool::check_chunksize(cs)?;
        let total = items.len();
        self.gather(total, ApplyOptions::new(), |deliver, timeout| {
            self.submit_chunked(
                &task::tramp_star::<A, B, R>(),
                FnRef2::new(f),
                &items,
                cs,
                timeout,
                deliver,
            )
        })
    }

    /// Gathers the results of `total` items, submitted in chunks by
    /// `submit(deliver, timeout)`, into one ordered list.
    fn gather<R>(
        &self,
        total: usize,
        options: ApplyOptions<Vec<R>>,
        submit: impl FnOnce(Arc<Deliver<R>>, Option<Duration>) -> Result<()>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let cell = Cell::<Vec<R>>::new(Some(self.helper()));
        let ApplyOptions {
            callback,
            error_callback,
            timeout,
        } = options;
        let panics = Arc::clone(&self.shared.callback_panics);
        let finish = {
            let cell = Arc::clone(&cell);
            move |res: Result<Vec<R>>| {
                match &res {
                    Ok(v) => {
                        if let Some(cb) = callback {
                            run_guarded(&panics, || cb(v));
                        }
                    }
                    Err(e) => {
                        if let Some(cb) = error_callback {
                            run_guarded(&panics, || cb(e));
                        }
                    }
                }
                cell.resolve(res);
            }
        };
        if total == 0 {
            finish(Ok(Vec::new()));
            return Ok(AsyncResult::from_cell(cell));
        }
        struct Gather<R> {
            chunks: Vec<(usize, Vec<R>)>,
            first_error: Option<(usize, Error)>,
            remaining: usize,
        }
        let state = Mutex::new(Gather::<R> {
            chunks: Vec::new(),
            first_error: None,
            remaining: total,
        });
        let finish = Mutex::new(Some(finish));
        let deliver = Arc::new(move |first: usize, result: ChunkResult<R>| {
            let done = {
                let mut g = lock(&state);
                match result {
                    ChunkResult::All(v) => {
                        g.remaining = g.remaining.saturating_sub(v.len());
                        g.chunks.push((first, v));
                    }
                    ChunkResult::Mixed(items) => {
                        g.remaining = g.remaining.saturating_sub(items.len());
                        let mut ok = Vec::with_capacity(items.len());
                        for (i, r) in items.into_iter().enumerate() {
                            match r {
                                Ok(v) => ok.push(v),
                                Err(e) => {
                                    if g.first_error.as_ref().is_none_or(|(j, _)| first + i < *j) {
                                        g.first_error = Some((first + i, e));
                                    }
                                }
                            }
                        }
                        g.chunks.push((first, ok));
                    }
                }
                if g.remaining == 0 {
                    Some(match g.first_error.take() {
                        Some((_, e)) => Err(e),
                        None => {
                            let mut chunks = std::mem::take(&mut g.chunks);
                            chunks.sort_unstable_by_key(|c| c.0);
                            let mut all = Vec::with_capacity(total);
                            for (_, v) in chunks {
                                all.extend(v);
                            }
                            Ok(all)
                        }
                    })
                } else {
                    None
                }
            };
            if let Some(res) = done {
                if let Some(f) = lock(&finish).take() {
                    f(res);
                }
            }
        });
        submit(deliver, timeout)?;
        Ok(AsyncResult::from_cell(cell))
    }

    /// Lazily ordered results of `f` over `items` (Python's `imap`, chunksize 1).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let mut it = pool.imap(square, 0..3u64)?;
    /// assert_eq!(it.next().unwrap()?, 0);
    /// assert_eq!(it.next().unwrap()?, 1);
    /// assert_eq!(it.next().unwrap()?, 4);
    /// assert!(it.next().is_none());
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotRunning`] after `close`/`terminate`.
    pub fn imap<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<IMapIter<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_chunksize(f, items, 1)
    }

    /// [`imap`](Pool::imap) with an explicit chunksize.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let v: Vec<u64> = pool.imap_chunksize(square, 0..100u64, 10)?.map(|r| r.unwrap()).collect();
    /// assert_eq!(v[99], 9801);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for `chunksize == 0`; as [`imap`](Pool::imap).
    pub fn imap_chunksize<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<IMapIter<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.stream(f, items, chunksize, true)
    }

    /// Results of `f` over `items` in completion order (Python's
    /// `imap_unordered`, chunksize 1); every input yields exactly once.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let mut v: Vec<u64> = pool.imap_unordered(square, 0..5u64)?.map(|r| r.unwrap()).collect();
    /// v.sort();
    /// assert_eq!(v, vec![0, 1, 4, 9, 16]);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotRunning`] after `close`/`terminate`.
    pub fn imap_unordered<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<IMapIter<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.imap_unordered_chunksize(f, items, 1)
    }

    /// [`imap_unordered`](Pool::imap_unordered) with an explicit chunksize.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.imap_unordered_chunksize(square, 0..50u64, 7)?.count(), 50);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for `chunksize == 0`; as [`imap`](Pool::imap).
    pub fn imap_unordered_chunksize<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Result<IMapIter<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.stream(f, items, chunksize, false)
    }

    fn stream<A, R, I>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
        ordered: bool,
    ) -> Result<IMapIter<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        Pool::check_chunksize(chunksize)?;
        self.check_running()?;
        let items: Vec<A> = items.into_iter().collect();
        let total = items.len();
        let stream = Stream::<R>::new(ordered, Some(self.helper()));
        let s = Arc::clone(&stream);
        let deliver: Arc<Deliver<R>> =
            Arc::new(move |first: usize, v: ChunkResult<R>| s.deliver(first, v.into_items()));
        self.submit_chunked(
            &task::tramp_chunk::<A, R>(),
            FnRef::new(f),
            &items,
            chunksize,
            None,
            deliver,
        )?;
        Ok(IMapIter::new(stream, total))
    }

    /// Stops accepting tasks; the submitted ones still run. Then call
    /// [`join`](Pool::join).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::{ErrorKind, Pool};
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(square, 3)?;
    /// pool.close();
    /// assert_eq!(pool.apply_async(square, 3).unwrap_err().kind(), ErrorKind::NotRunning);
    /// pool.join()?;
    /// assert_eq!(r.get()?, 9);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    pub fn close(&self) {
        let mut g = lock(&self.shared.inner);
        if g.state == State::Running {
            g.state = State::Closed;
        }
    }

    /// Kills the workers now; every pending result resolves to a
    /// [`ErrorKind::NotRunning`] error. Returns once the workers are reaped.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use multiproc_pool::{ErrorKind, Pool};
    /// fn slow(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(slow, 10_000)?;
    /// pool.terminate();
    /// assert_eq!(r.get().unwrap_err().kind(), ErrorKind::NotRunning);
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    pub fn terminate(&self) {
        let (completions, children) = {
            let mut g = lock(&self.shared.inner);
            if g.state == State::Terminated && g.zygote.is_none() {
                return;
            }
            g.state = State::Terminated;
            g.backlog.clear();
            let completions: Vec<Completion> =
                g.take_all().into_iter().map(|p| p.complete).collect();
            let mut children = Vec::new();
            for w in &mut g.workers {
                w.outstanding.clear();
                if let Some(c) = w.child.take() {
                    let _ = c.kill();
                    children.push(c);
                }
            }
            (completions, children)
        };
        for c in completions {
            c(Err(Error::new(
                ErrorKind::NotRunning,
                "the pool was terminated",
            )));
        }
        self.shared.idle.notify_all();
        reap(&children, Instant::now() + EXIT_GRACE);
        self.stop_threads();
        let zygote = lock(&self.shared.inner).zygote.take();
        drop(zygote);
    }

    /// Waits for the workers to finish every submitted task and exit
    /// (after [`close`](Pool::close)), or to be reaped (after
    /// [`terminate`](Pool::terminate)).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc_pool::{ErrorKind, Pool};
    /// let pool = Pool::new(1)?;
    /// assert_eq!(pool.join().unwrap_err().kind(), ErrorKind::InvalidArgument);
    /// pool.close();
    /// pool.join()?;
    /// # Ok::<(), multiproc_pool::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if the pool is still running (call
    /// `close` or `terminate` first), like Python's `ValueError`.
    pub fn join(&self) -> Result<()> {
        let mut g = lock(&self.shared.inner);
        match g.state {
            State::Running => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "join() needs close() or terminate() first",
                ))
            }
            State::Terminated => {
                drop(g);
                self.terminate();
                return Ok(());
            }
            State::Closed | State::Stopping => {}
        }
        while g.pending() != 0 && g.state != State::Terminated {
            g = self
                .shared
                .idle
                .wait_timeout(g, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if g.state == State::Terminated {
            drop(g);
            self.terminate();
            return Ok(());
        }
        g.state = State::Stopping;
        let mut children = Vec::new();
        for w in &mut g.workers {
            if let Some(c) = w.child.take() {
                let mut t = w.view.tasks.tail_pos();
                let rec = [&[KIND_EXIT][..], &0u64.to_le_bytes()[..]].concat();
                if w.view.tasks.stage(&mut t, &[&rec]) {
                    w.view.tasks.publish(t);
                    w.view.bell.ring();
                } else {
                    let _ = c.kill();
                }
                children.push(c);
            }
        }
        drop(g);
        reap(&children, Instant::now() + EXIT_GRACE);
        lock(&self.shared.inner).state = State::Terminated;
        self.terminate();
        Ok(())
    }

    fn stop_threads(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        let _ = (&self.shared.wake_tx).write(&[1]);
        self.shared.parent_bell.ring_always();
        let me = std::thread::current().id();
        let threads: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn check_state(g: &Inner) -> Result<()> {
    if let Some(e) = &g.broken {
        return Err(Error::new(
            ErrorKind::NotRunning,
            format!("the pool cannot start workers: {e}"),
        ));
    }
    match g.state {
        State::Running => Ok(()),
        State::Closed | State::Stopping => {
            Err(Error::new(ErrorKind::NotRunning, "the pool is closed"))
        }
        State::Terminated => Err(Error::new(ErrorKind::NotRunning, "the pool was terminated")),
    }
}

/// Receives the item results of a chunk that starts at the given index.
type Deliver<T> = dyn Fn(usize, ChunkResult<T>) + Send + Sync;

/// A map submits its chunks in batches of this many chunks...
const BATCH_CHUNKS: usize = 256;
/// ...or of this many items, whichever comes first.
const BATCH_ITEMS: usize = 16 * 1024;

/// The most bytes of task body that travel inline in a ring record.
const INLINE_MAX: usize = worker::RING_CAP / 2 - 256;
/// How many large-payload blocks the pool keeps for reuse (their pages stay
/// mapped in the parent and in the workers: no page faults on reuse).
const SPARE_BLOCKS: usize = 4;

/// A task record ready to queue: its id, its bytes, and the block that
/// holds its body when it is large.
type Encoded = (u64, Vec<u8>, Option<SharedMemory>);

impl Shared {
    /// Builds the record of a new task from `template` (see
    /// [`task::head_template`]) and its body `value`: inline when small,
    /// else with the body encoded straight into a (reused) shared-memory
    /// block. Needs no lock: ids come from an atomic counter.
    fn build_record<T: Serialize + ?Sized>(&self, template: &[u8], value: &T) -> Result<Encoded> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let c = codec::Codec::default();
        let len = c.encoded_len(value)?;
        if len <= INLINE_MAX {
            let mut rec = Vec::with_capacity(template.len() + len);
            rec.extend_from_slice(template);
            task::set_head(&mut rec, KIND_INLINE, id);
            c.encode_into(value, &mut rec)?;
            return Ok((id, rec, None));
        }
        let mut block = self.take_block(len)?;
        // Straight into the mapping (a slice writer: each primitive is a
        // short inlined copy).
        let mut w: &mut [u8] = block.as_mut_slice();
        c.encode_to_writer(value, &mut w)?;
        let mut rec = Vec::with_capacity(template.len() + 8 + block.name().len());
        rec.extend_from_slice(template);
        task::set_head(&mut rec, KIND_BLOCK, id);
        rec.extend_from_slice(&(len as u64).to_le_bytes());
        rec.extend_from_slice(block.name().as_bytes());
        Ok((id, rec, Some(block)))
    }

    /// A spare block of at least `len` bytes, or a new one.
    fn take_block(&self, len: usize) -> Result<SharedMemory> {
        {
            let mut spare = lock(&self.spare_blocks);
            if let Some(i) = spare
                .iter()
                .enumerate()
                .filter(|(_, b)| b.size() >= len)
                .min_by_key(|(_, b)| b.size())
                .map(|(i, _)| i)
            {
                return Ok(spare.swap_remove(i));
            }
        }
        SharedMemory::create(&worker::block_name(), len.next_multiple_of(1 << 20))
    }

    /// Keeps a block whose task has finished for the next large payload.
    fn recycle(&self, block: SharedMemory) {
        let mut spare = lock(&self.spare_blocks);
        if spare.len() < SPARE_BLOCKS {
            spare.push(block);
        }
    }
}

/// Forks one worker for `slot` through the zygote.
fn spawn_worker(
    zygote: &Zygote,
    region: &str,
    slot: usize,
    config: &Config,
) -> Result<ZygoteChild> {
    let arg = WorkerArg {
        region: region.to_owned(),
        slot,
        max_tasks: config.max_tasks,
        initializer: config.initializer.clone(),
        spin_ns: WORKER_SPIN.as_nanos() as u64,
    };
    zygote.spawn(worker::worker_main, &arg, &[])
}

/// Waits until every child is reaped or `deadline` passes, then kills and
/// reaps the rest.
fn reap(children: &[Arc<ZygoteChild>], deadline: Instant) {
    for c in children {
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => {}
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let until = Instant::now() + Duration::from_secs(5);
                while !matches!(c.try_wait(), Ok(Some(_)) | Err(_)) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
                break;
            }
            let fd = c.as_fd();
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut fds, PollTimeout::from(50u16));
        }
    }
}

/// Moves backlog tasks into worker rings: least-loaded worker first, tasks
/// with a timeout only to idle workers; publishes each ring once (batching).
fn dispatch(shared: &Shared, g: &mut Inner) {
    let max_tasks = shared.config.max_tasks;
    let mut new_deadline = false;
    let Inner {
        backlog, workers, ..
    } = g;
    while let Some(task) = backlog.front() {
        let needs_idle = task.timeout.is_some();
        let best = workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.accepts(max_tasks, needs_idle))
            .min_by_key(|(_, w)| w.outstanding.len())
            .map(|(i, _)| i);
        let Some(wi) = best else { break };
        let w = &mut workers[wi];
        let mut t = w.staged.unwrap_or_else(|| w.view.tasks.tail_pos());
        if !w.view.tasks.stage(&mut t, &[&task.record]) {
            // Ring full: publish what is staged and let results drain it.
            break;
        }
        let Some(mut task) = backlog.pop_front() else {
            break;
        };
        w.staged = Some(t);
        w.dispatched += 1;
        if let Some(to) = task.timeout {
            w.timed = true;
            new_deadline = true;
            task.deadline = Some(Instant::now() + to);
        }
        w.outstanding.push_back(task);
    }
    if new_deadline {
        // The result thread may be asleep without a deadline: let it see this
        // one (the flag covers a thread that is just about to sleep).
        shared.event_flag.store(true, Ordering::SeqCst);
        shared.parent_bell.ring_always();
    }
    for w in &mut g.workers {
        if let Some(t) = w.staged.take() {
            w.view.tasks.publish(t);
            w.view.bell.ring();
        }
    }
}

/// Reads every result available in worker `wi`'s ring.
fn drain_worker(shared: &Shared, g: &mut Inner, wi: usize, col: &mut Collected) -> bool {
    let mut any = false;
    let w = &mut g.workers[wi];
    while let Some(len) = w.view.results.pop_append(&mut col.arena) {
        any = true;
        let start = col.arena.len() - len;
        let rec = &col.arena[start..];
        if rec.len() < 9 {
            col.arena.truncate(start);
            continue;
        }
        let kind = rec[0];
        let mut idb = [0u8; 8];
        idb.copy_from_slice(&rec[1..9]);
        let id = u64::from_le_bytes(idb);
        let outcome = if kind == KIND_BLOCK {
            let o = read_result_block(&w.view, &rec[9..]).map(Outcome::Block);
            col.arena.truncate(start);
            o
        } else {
            Ok(Outcome::Arena(start + 9..start + len))
        };
        // Results come back in dispatch order: the task is at the front.
        let pos = if w.outstanding.front().is_some_and(|p| p.id == id) {
            Some(0)
        } else {
            w.outstanding.iter().position(|p| p.id == id)
        };
        w.timed = false;
        if let Some(p) = pos.and_then(|i| w.outstanding.remove(i)) {
            if let Some(b) = p.block {
                shared.recycle(b);
            }
            col.done.push((p.complete, outcome));
        }
    }
    any
}

/// Attaches (and unlinks) the block of a large result; the mapping stays
/// valid after the acknowledgement lets the worker drop its own.
fn read_result_block(view: &SlotView, payload: &[u8]) -> Result<SharedMemory> {
    if payload.len() < 8 {
        return Err(Error::new(
            ErrorKind::Serialization,
            "malformed result record",
        ));
    }
    let mut sb = [0u8; 8];
    sb.copy_from_slice(&payload[..8]);
    let seq = u64::from_le_bytes(sb);
    let name = std::str::from_utf8(&payload[8..])
        .map_err(|e| Error::new(ErrorKind::Serialization, e.to_string()));
    let out = name.and_then(|n| {
        let shm = SharedMemory::attach(n)?;
        let _ = shm.unlink();
        Ok(shm)
    });
    view.large_ack().store(seq, Ordering::Release);
    out
}

/// Handles the death of the worker in `slot` (generation `generation`).
fn handle_death(shared: &Shared, g: &mut Inner, slot: usize, generation: u64, col: &mut Collected) {
    if g.workers[slot].generation != generation {
        return;
    }
    // Results it published before dying are valid.
    drain_worker(shared, g, slot, col);
    let w = &mut g.workers[slot];
    let Some(child) = w.child.take() else { return };
    let status = match child.try_wait() {
        Ok(Some(s)) => s,
        _ => ExitStatus::Signal(libc_sigkill()),
    };
    let current = w.view.current().load(Ordering::SeqCst);
    let timed_out = w.timed_out.take();
    let outstanding: Vec<Pending> = w.outstanding.drain(..).collect();
    let pid = w.pid;
    w.timed = false;
    w.view.reset();
    w.dispatched = 0;
    let mut requeue = Vec::new();
    for mut p in outstanding {
        let id = p.id;
        let ran = id == current || Some(id) == timed_out;
        if ran {
            {
                let err = if Some(id) == timed_out {
                    Error::timeout(format!(
                        "task {id} exceeded its timeout of {:?}; worker {pid} was killed",
                        p.timeout.unwrap_or_default()
                    ))
                } else {
                    Error::worker_lost(ExitInfo {
                        pid,
                        status,
                        task: Some(id),
                    })
                };
                col.push_err(p.complete, err);
            }
        } else {
            p.deadline = None;
            requeue.push(p);
        }
    }
    for p in requeue.into_iter().rev() {
        g.backlog.push_front(p);
    }
    if matches!(g.state, State::Running | State::Closed) {
        respawn(shared, g, slot);
    }
}

fn libc_sigkill() -> i32 {
    nix::sys::signal::Signal::SIGKILL as i32
}

fn respawn(shared: &Shared, g: &mut Inner, slot: usize) {
    let Some(zygote) = g.zygote.as_ref() else {
        return;
    };
    let name = shared.region.name().unwrap_or_default().to_owned();
    match spawn_worker(zygote, &name, slot, &shared.config) {
        Ok(child) => {
            let child = Arc::new(child);
            let w = &mut g.workers[slot];
            w.generation += 1;
            w.pid = child.pid();
            w.child = Some(Arc::clone(&child));
            lock(&shared.watch).push((slot, w.generation, child));
            let _ = (&shared.wake_tx).write(&[1]);
        }
        Err(e) => {
            if g.workers.iter().all(|w| w.child.is_none()) {
                // Nothing can run the remaining tasks: fail them now.
                g.broken = Some(e);
            }
        }
    }
}

/// Kills workers whose timed task is past its deadline; returns the next deadline.
fn check_timeouts(g: &mut Inner) -> Option<Instant> {
    let now = Instant::now();
    let mut next: Option<Instant> = None;
    for wi in 0..g.workers.len() {
        let w = &g.workers[wi];
        if !w.timed || w.timed_out.is_some() {
            continue;
        }
        let Some((id, Some(deadline))) = w.outstanding.front().map(|p| (p.id, p.deadline)) else {
            continue;
        };
        if deadline <= now {
            let w = &mut g.workers[wi];
            w.timed_out = Some(id);
            if let Some(c) = &w.child {
                let _ = c.kill();
            }
        } else {
            next = Some(next.map_or(deadline, |n| n.min(deadline)));
        }
    }
    next
}

/// One round of the parent's work; true if anything happened.
fn pump(shared: &Shared, g: &mut Inner, col: &mut Collected) -> (bool, Option<Instant>) {
    let mut any = false;
    for wi in 0..g.workers.len() {
        any |= drain_worker(shared, g, wi, col);
    }
    if shared.event_flag.swap(false, Ordering::AcqRel) {
        let events: Vec<Event> = std::mem::take(&mut *lock(&shared.events));
        for Event::Died { slot, generation } in events {
            handle_death(shared, g, slot, generation, col);
            any = true;
        }
    }
    if g.broken.is_some() {
        let err = g
            .broken
            .clone()
            .unwrap_or_else(|| Error::new(ErrorKind::Io, "broken"));
        for p in g.take_all() {
            col.push_err(p.complete, err.clone());
        }
    }
    let next = check_timeouts(g);
    if !g.backlog.is_empty() {
        dispatch(shared, g);
    }
    (any, next)
}

fn collector_loop(shared: &Shared) {
    let mut col = Collected::default();
    loop {
        let (any, next_deadline) = {
            let mut g = lock(&shared.inner);
            let r = pump(shared, &mut g, &mut col);
            // Only `join` (after `close`) waits for the pool to go idle.
            if g.pending() == 0 && g.state != State::Running {
                shared.idle.notify_all();
            }
            r
        };
        let worked = any || !col.is_empty();
        col.complete_all();
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        if worked {
            continue;
        }
        let h = shared.helpers.load(Ordering::SeqCst);
        if h > 0 {
            // A waiting caller collects; stay off the CPUs until it leaves.
            park::wait_u32(&shared.helpers, h, Some(Duration::from_millis(1)));
            continue;
        }
        let ready = || {
            shared.event_flag.load(Ordering::Acquire)
                || shared.shutdown.load(Ordering::Acquire)
                || shared.helpers.load(Ordering::Relaxed) > 0
                || shared.result_rings.iter().any(|r| r.has_data())
        };
        if spin_until(COLLECT_SPIN, ready) {
            continue;
        }
        let timeout = next_deadline
            .map(|d| d.saturating_duration_since(Instant::now()) + Duration::from_micros(100));
        shared.parent_bell.sleep(timeout, ready);
    }
}

fn supervisor_loop(shared: &Shared, mut wake_rx: UnixStream) {
    loop {
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        let watch: Vec<(usize, u64, Arc<ZygoteChild>)> = lock(&shared.watch).clone();
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(watch.len() + 1);
            let rx: BorrowedFd<'_> = wake_rx.as_fd();
            fds.push(PollFd::new(rx, PollFlags::POLLIN));
            for (_, _, c) in &watch {
                fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
            }
            match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => fds
                    .iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect(),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        };
        if ready.first().copied().unwrap_or(false) {
            let mut b = [0u8; 64];
            while matches!(wake_rx.read(&mut b), Ok(n) if n > 0) {}
        }
        let dead: Vec<(usize, u64)> = watch
            .iter()
            .zip(ready.iter().skip(1))
            .filter(|(_, r)| **r)
            .map(|((s, gen, _), _)| (*s, *gen))
            .collect();
        if !dead.is_empty() {
            lock(&shared.watch).retain(|(s, gen, _)| !dead.contains(&(*s, *gen)));
            lock(&shared.events).extend(
                dead.into_iter()
                    .map(|(slot, generation)| Event::Died { slot, generation }),
            );
            shared.event_flag.store(true, Ordering::Release);
            shared.parent_bell.ring_always();
        }
    }
}
