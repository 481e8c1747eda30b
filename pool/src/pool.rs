//! [`Pool`]: creation, `apply` and its async forms, and the lifecycle
//! (`close`, `terminate`, `join`, `Drop`).

use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multiproc_ipc::shm::ShmRegion;
use multiproc_ipc::{latency, Error, ErrorKind, FnRef, Result, StarFn, Zygote, ZygoteChild};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::builder::{Config, PoolBuilder, StartMethod};
use crate::collector::{collector_loop, dispatch_new};
use crate::options::{run_guarded, ApplyOptions};
use crate::result::{AsyncResult, Cell, Help};
use crate::shared::{
    check_state, lock, terminated, Completion, Counters, Encoded, Inner, Shared, State, WorkerSlot,
    EXIT_GRACE, MAX_OUTSTANDING,
};
use crate::supervisor::{reap, spawn_workers, supervisor_loop};
use crate::task::{self, KIND_EXIT};
use crate::worker::{self, SlotView};

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
/// use multiproc::Pool;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = Pool::new(2)?;
/// assert_eq!(pool.apply(square, 7)?, 49);
/// assert_eq!(pool.map(square, 0..5u64)?, vec![0, 1, 4, 9, 16]);
/// pool.close();
/// pool.join()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Pool {
    pub(crate) shared: Arc<Shared>,
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
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

impl Pool {
    /// A pool of `processes` workers with default settings.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.processes(), 2);
    /// # Ok::<(), multiproc::Error>(())
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
    /// # use multiproc::Pool;
    /// let pool = Pool::builder().processes(1).build()?;
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            initializer: None,
            max_tasks_per_child: None,
            start_method: StartMethod::Zygote,
            task_timeout: None,
            queue_per_worker: MAX_OUTSTANDING,
        }
    }

    pub(crate) fn start(config: Config) -> Result<Pool> {
        let n = config.processes;
        // The region first, then the zygote (which inherits its mapping),
        // then workers, and only then our own threads.
        // A memory file, sent to each worker: nothing in `/dev/shm`, and
        // only the pages the rings touch are ever allocated.
        let region = ShmRegion::memfd(worker::region_len(n))?;
        // Ours, and mostly waiting: the short slice, from its fork on, which
        // the workers it forks inherit (on a busy machine each of them would
        // otherwise wait for a CPU-bound process to end its slice before
        // its first run). A zygote from the fork server inherits the
        // server's, which is short too.
        let zygote = latency::starting_owned(Zygote::start)?;
        let mut workers = Vec::with_capacity(n);
        let mut watch = Vec::with_capacity(n);
        let mut started = Vec::with_capacity(n);
        let mut failure = None;
        // This thread forks the workers itself if it may (a zygote forked
        // from this process, which runs no other thread), or the fork server
        // forks them (a zygote forked from it), while the zygote starts;
        // otherwise the zygote forks them, every request sent at once. With
        // the short slice, as the zygote's.
        let spawned = latency::starting_owned(|| spawn_workers(&zygote, &region, 0..n, n, &config));
        for spawned in spawned {
            match spawned {
                Ok((c, fd_tx)) => started.push((Arc::new(c), fd_tx)),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        // Made after the workers: one forked by this thread would keep it.
        let wake = match failure {
            None => {
                UnixStream::pair().map_err(|e| Error::io("cannot create the pool's wake socket", e))
            }
            Some(e) => Err(e),
        };
        let (wake_tx, wake_rx) = match wake {
            Ok(pair) => pair,
            Err(e) => {
                // Leave nothing behind: kill and reap the workers that did
                // start (the zygote and region go on drop).
                let started: Vec<Arc<ZygoteChild>> = started.into_iter().map(|(c, _)| c).collect();
                for c in &started {
                    let _ = c.kill();
                }
                reap(&started, Instant::now() + EXIT_GRACE);
                return Err(e);
            }
        };
        let _ = wake_tx.set_nonblocking(true);
        let _ = wake_rx.set_nonblocking(true);
        for (slot, (child, fd_tx)) in started.into_iter().enumerate() {
            let view = SlotView::new(&region, slot);
            watch.push((slot, 0, Arc::clone(&child)));
            workers.push(WorkerSlot {
                view,
                fd_tx,
                pid: child.pid(),
                child: Some(child),
                generation: 0,
                outstanding: VecDeque::new(),
                dispatched: 0,
                seen_finished: 0,
                timed: false,
                timed_out: None,
                staged: None,
                ready: config.initializer.is_none(),
                init_error: None,
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
                init_failures: 0,
            }),
            idle: Condvar::new(),
            parent_bell: worker::parent_bell(&region),
            region,
            result_rings,
            events: Mutex::new(Vec::new()),
            event_flag: AtomicBool::new(false),
            deadlines: AtomicU64::new(0),
            watch: Mutex::new(watch),
            wake_tx,
            shutdown: AtomicBool::new(false),
            callback_panics: Arc::new(AtomicU64::new(0)),
            helpers: AtomicU32::new(0),
            spare_blocks: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            config,
            counters: Counters::default(),
        });
        let mut threads = Vec::new();
        let s = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name(crate::result::RESULT_THREAD.into())
                .spawn(move || {
                    latency::apply();
                    collector_loop(&s)
                })
                .map_err(|e| Error::io("cannot start the pool's result thread", e))?,
        );
        let s = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("multiproc-pool-supervisor".into())
                .spawn(move || {
                    latency::apply();
                    supervisor_loop(&s, wake_rx)
                })
                .map_err(|e| Error::io("cannot start the pool's supervisor thread", e))?,
        );
        Ok(Pool {
            shared,
            threads: Mutex::new(threads),
        })
    }

    pub(crate) fn helper(&self) -> Weak<dyn Help> {
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
    /// # use multiproc::Pool;
    /// let pool = Pool::new(2)?;
    /// assert_eq!(pool.worker_pids().len(), 2);
    /// # Ok::<(), multiproc::Error>(())
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
    /// # use multiproc::Pool;
    /// fn pid(_: ()) -> u32 { std::process::id() }
    /// let pool = Pool::new(1)?;
    /// assert_ne!(pool.apply(pid, ())?, std::process::id());
    /// # Ok::<(), multiproc::Error>(())
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
    /// # use multiproc::Pool;
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(2)?;
    /// let rs: Vec<_> = (0..10u64).map(|i| pool.apply_async(square, i)).collect::<Result<_, _>>()?;
    /// let total: u64 = rs.into_iter().map(|r| r.get()).sum::<Result<u64, _>>()?;
    /// assert_eq!(total, 285);
    /// # Ok::<(), multiproc::Error>(())
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
    /// # use multiproc::{ApplyOptions, Pool};
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(1)?;
    /// let (tx, rx) = mpsc::channel();
    /// pool.apply_async_with(square, 5, ApplyOptions::new().callback(move |v: &u64| tx.send(*v).unwrap()))?;
    /// assert_eq!(rx.recv().unwrap(), 25); // nobody called get
    /// # Ok::<(), multiproc::Error>(())
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
        self.apply_ref(FnRef::new(f), arg, options)
    }

    /// Runs `f` with the tuple `args` spread over its arguments, and waits
    /// for the result (Python's `apply(f, (a, b, c))`): `f` is a fn item or
    /// non-capturing closure of one to six arguments.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Pool;
    /// fn volume(l: u64, w: u64, h: u64) -> u64 { l * w * h }
    /// let pool = Pool::new(1)?;
    /// assert_eq!(pool.starapply(volume, (2, 3, 4))?, 24);
    /// assert_eq!(pool.starapply(|a: String, n: usize| a.repeat(n), ("ab".to_string(), 3))?, "ababab");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`apply`](Pool::apply).
    pub fn starapply<F, Args>(&self, f: F, args: Args) -> Result<F::Output>
    where
        F: StarFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        self.starapply_async(f, args, ApplyOptions::new())?.get()
    }

    /// [`starapply`](Pool::starapply) that returns at once, with callbacks
    /// and a timeout as [`apply_async_with`](Pool::apply_async_with).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::{ApplyOptions, Pool};
    /// fn add(a: u64, b: u64) -> u64 { a + b }
    /// let pool = Pool::new(1)?;
    /// let r = pool.starapply_async(add, (2, 3), ApplyOptions::new())?;
    /// assert_eq!(r.get()?, 5);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`apply_async_with`](Pool::apply_async_with).
    pub fn starapply_async<F, Args>(
        &self,
        f: F,
        args: Args,
        options: ApplyOptions<F::Output>,
    ) -> Result<AsyncResult<F::Output>>
    where
        F: StarFn<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_ref(f.into_fn_ref(), args, options)
    }

    pub(crate) fn apply_ref<A, R>(
        &self,
        f: FnRef<A, R>,
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
        let encoded = self.shared.build_record(&template, &(f, arg))?;
        let cell = Cell::<R>::new(Some(self.helper()));
        let c = Arc::clone(&cell);
        let ApplyOptions {
            callback,
            error_callback,
            timeout,
            progress,
        } = options;
        progress.start(1);
        let id = encoded.0;
        if callback.is_none() && error_callback.is_none() && !progress.is_on() {
            // Only decoding and resolving: the cell itself completes the task.
            self.submit(encoded, timeout, Completion::resolve(c))?;
            return Ok(AsyncResult::from_cell(cell, Some(id)));
        }
        // Only a task with a callback needs the counter: cloning it for
        // every task would bounce its reference count between the
        // submitting thread and the result thread.
        let panics = (callback.is_some() || error_callback.is_some())
            .then(|| Arc::clone(&self.shared.callback_panics));
        let complete = Completion::new(move |outcome: Result<&[u8]>, stats: &Counters| {
            let res = task::decode_counted::<R>(outcome, stats);
            progress.advance(1);
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
        Ok(AsyncResult::from_cell(cell, Some(id)))
    }

    pub(crate) fn check_running(&self) -> Result<()> {
        let g = lock(&self.shared.inner);
        check_state(&g)
    }

    /// Queues one encoded task and dispatches what can be dispatched.
    pub(crate) fn submit(
        &self,
        encoded: Encoded,
        timeout: Option<Duration>,
        complete: Completion,
    ) -> Result<()> {
        let timeout = timeout.or(self.shared.config.task_timeout);
        let mut g = lock(&self.shared.inner);
        if let Err(e) = check_state(&g) {
            drop(g);
            return Err(e);
        }
        dispatch_new(&self.shared, &mut g, timeout, [(encoded, complete)]);
        Ok(())
    }

    /// Stops accepting tasks; the submitted ones still run. Then call
    /// [`join`](Pool::join).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::{ErrorKind, Pool};
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(square, 3)?;
    /// pool.close();
    /// assert_eq!(pool.apply_async(square, 3).unwrap_err().kind(), ErrorKind::NotRunning);
    /// pool.join()?;
    /// assert_eq!(r.get()?, 9);
    /// # Ok::<(), multiproc::Error>(())
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
    /// # use multiproc::{ErrorKind, Pool};
    /// fn slow(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    /// let pool = Pool::new(1)?;
    /// let r = pool.apply_async(slow, 10_000)?;
    /// pool.terminate();
    /// assert_eq!(r.get().unwrap_err().kind(), ErrorKind::NotRunning);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn terminate(&self) {
        let (completions, children) = {
            let mut g = lock(&self.shared.inner);
            if g.state == State::Terminated && g.zygote.is_none() {
                return;
            }
            g.state = State::Terminated;
            // Every unfinished task, queued or in a worker, whatever the
            // backlog's depth: each resolves below, outside the lock.
            let completions: Vec<Completion> =
                g.take_all().into_iter().map(|p| p.complete).collect();
            let mut children = Vec::new();
            for w in &mut g.workers {
                if let Some(c) = w.child.take() {
                    let _ = c.kill();
                    children.push(c);
                }
            }
            (completions, children)
        };
        for c in completions {
            c.complete(Err(terminated()), &self.shared.counters);
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
    /// # use multiproc::{ErrorKind, Pool};
    /// let pool = Pool::new(1)?;
    /// assert_eq!(pool.join().unwrap_err().kind(), ErrorKind::InvalidArgument);
    /// pool.close();
    /// pool.join()?;
    /// # Ok::<(), multiproc::Error>(())
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
        // No worker is forked from now on: the zygote exits as soon as it
        // has reaped them, while this thread stops the pool's threads.
        let zygote = g.zygote.clone();
        drop(g);
        if let Some(z) = zygote {
            let _ = z.retire();
        }
        // Every task has finished and the workers are leaving: the pool's
        // threads stop while they exit, not after (waking a sleeping
        // thread and the exit of a process both take a while: they
        // overlap).
        self.signal_threads();
        reap(&children, Instant::now() + EXIT_GRACE);
        self.stop_threads();
        lock(&self.shared.inner).state = State::Terminated;
        self.terminate();
        Ok(())
    }

    /// Tells the pool's threads to stop, without waiting for them.
    fn signal_threads(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        let _ = (&self.shared.wake_tx).write(&[1]);
        self.shared.parent_bell.ring_always();
    }

    /// Stops the pool's threads and waits for them to end.
    pub(crate) fn stop_threads(&self) {
        self.signal_threads();
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
