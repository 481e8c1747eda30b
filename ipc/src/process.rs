//! [`Process`]: run a function in a forked child and get its result back
//! (Python's `multiprocessing.Process`).
//!
//! # How a child runs
//!
//! Without a fork server the child is a plain fork of the caller (Python's
//! `fork` start method); after [`init`](crate::init) it is forked from the
//! fork server (Python's `forkserver`), and `target` crosses as an address
//! (valid: same program image) with `args` encoded by the
//! [`codec`]. Either way the return value comes back over a
//! pipe, encoded, and the child ends with `_exit`: it never runs the parent's
//! `atexit` handlers or destructors. Children die with their parent
//! (`PR_SET_PDEATHSIG(SIGKILL)`).
//!
//! # At exit and on drop
//!
//! When the parent exits normally (returns from `main` or calls
//! `std::process::exit`), like Python: daemon children still running get
//! `SIGTERM`, then `SIGKILL` after [`DAEMON_GRACE`]; non-daemon children
//! are waited for. A `Process` dropped without `join` is not killed; it is
//! handed to a background reaper thread (started on first need) that reaps
//! it when it exits, so no zombie is left behind, and its result is
//! discarded (the pipe is closed, so a child still writing a large result
//! gets `EPIPE` and exits).

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::marker::PhantomData;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{Error, ErrorKind, ExitInfo, ExitStatus, RemotePanic, Result};
use crate::forkserver::fork_server;
use crate::sys::fd::{self, Poll};
use crate::sys::fork;
use crate::zygote::{ChildProc, FnRef, Reaped};

/// How long daemon children get between `SIGTERM` and `SIGKILL` when the
/// parent exits.
pub const DAEMON_GRACE: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------
// Panics.

thread_local! {
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, turning a panic into a [`RemotePanic`] with its message and
/// location (`file:line:column`), ready to send to another process.
///
/// Installs, once per process, a panic hook that records the location and
/// then calls the previous hook (so the panic is still printed).
///
/// # Examples
///
/// ```
/// let r = multiproc_ipc::process::catch_remote_panic(|| -> u32 { panic!("boom {}", 7) });
/// let p = r.unwrap_err();
/// assert_eq!(p.message, "boom 7");
/// assert!(p.location.unwrap().contains("src/"));
/// ```
///
/// # Errors
///
/// The panic, as a [`RemotePanic`].
pub fn catch_remote_panic<R>(f: impl FnOnce() -> R) -> std::result::Result<R, RemotePanic> {
    install_panic_hook();
    let _ = PANIC_LOCATION.try_with(|c| c.replace(None));
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| RemotePanic {
        message: panic_message(&*payload),
        location: PANIC_LOCATION.try_with(|c| c.replace(None)).ok().flatten(),
    })
}

/// Registers `hook` to run in every child that multiproc forks from this
/// process afterwards (a [`Process`], a pool worker, their own children),
/// when the child's work is done, just before it exits: Python's
/// finalizers at a child's exit. A child ends with `_exit`, which runs no
/// destructor; a library whose objects must say goodbye (a connection that
/// tells its server, at once, that it is closing) registers a hook that
/// drops them. Registering the same function again does nothing.
///
/// Hooks do not run in a child killed by a signal, nor in one that exits
/// from within its work (`std::process::exit`); a hook that panics ends
/// only itself.
///
/// # Errors
///
/// [`ErrorKind::InvalidArgument`] if 8 different hooks are registered
/// already.
///
/// # Examples
///
/// ```
/// use std::sync::OnceLock;
/// use multiproc::{Process, RawValue};
///
/// /// Shared memory made before the forks: every child counts its exit.
/// static EXITS: OnceLock<RawValue<u64>> = OnceLock::new();
///
/// fn count_my_exit() {
///     if let Some(exits) = EXITS.get() {
///         exits.fetch_add(1);
///     }
/// }
///
/// fn work(x: u64) -> u64 {
///     x + 1
/// }
///
/// EXITS.get_or_init(|| RawValue::new(0).expect("shared memory"));
/// multiproc::at_child_exit(count_my_exit)?;
/// for i in 0..3 {
///     assert_eq!(Process::spawn(work, i)?.join()?, i + 1);
/// }
/// // Each child ran the hook before it exited, and `join` waits for the exit.
/// assert_eq!(EXITS.get().unwrap().get(), 3);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn at_child_exit(hook: fn()) -> Result<()> {
    if fork::at_child_exit(hook) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidArgument,
            "at most 8 functions can run at a child's exit",
        ))
    }
}

/// This process's id, without a system call on most calls: cached per
/// thread together with the fork count of the C library's `fork` (a child
/// forked by anyone through it reads its own id again).
///
/// For code that must tell a process from its forked children at every
/// call (a manager's client keeps one connection per process).
///
/// ```
/// use multiproc::{current_pid, Process};
///
/// fn ids(_: ()) -> (u32, u32) {
///     (current_pid(), std::process::id())
/// }
///
/// let me = current_pid();
/// assert_eq!(me, std::process::id());
/// let (cached, real) = Process::spawn(ids, ())?.join()?;
/// assert_eq!(cached, real);
/// assert_ne!(cached, me);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn current_pid() -> u32 {
    thread_local! {
        /// The fork count and the id read with it (`u64::MAX`: none yet).
        static PID: std::cell::Cell<(u64, u32)> = const { std::cell::Cell::new((u64::MAX, 0)) };
    }
    let Some(generation) = fork::fork_generation() else {
        return std::process::id();
    };
    PID.with(|cached| {
        let (seen, pid) = cached.get();
        if seen == generation {
            pid
        } else {
            let pid = std::process::id();
            cached.set((generation, pid));
            pid
        }
    })
}

static QUIET_PANICS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stops the panics that [`catch_remote_panic`] catches in this process from
/// being printed by the previous panic hook (a pool worker's task panics
/// travel to the parent as errors, as in Python's Pool, and print nothing).
/// Inherited by processes forked afterwards.
pub fn quiet_caught_panics() {
    install_panic_hook();
    QUIET_PANICS.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Installs (once per process; inherited across fork) the hook that records
/// panic locations for [`catch_remote_panic`].
pub(crate) fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let loc = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            let _ = PANIC_LOCATION.try_with(|c| {
                if let Ok(mut c) = c.try_borrow_mut() {
                    *c = loc;
                }
            });
            if !QUIET_PANICS.load(std::sync::atomic::Ordering::Relaxed) {
                previous(info);
            }
        }));
    });
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

// ---------------------------------------------------------------------------
// The child side.

/// What the child sends back.
#[derive(Serialize, Deserialize)]
enum Outcome<T> {
    Returned(T),
    Panicked(RemotePanic),
    Unencodable(String),
    /// The argument (sent through the fork server) did not decode.
    Undecodable(String),
}

/// Runs `target(args)` in the child and writes the outcome to `out`.
fn child_run<A, T: Serialize>(target: fn(A) -> T, args: A, out: OwnedFd) -> i32 {
    let (outcome, code) = match catch_remote_panic(|| target(args)) {
        Ok(v) => (Outcome::Returned(v), 0),
        Err(p) => (Outcome::Panicked(p), 1),
    };
    send_outcome(outcome, code, out)
}

/// Writes `outcome` to `out`; returns the child's exit code.
///
/// The frame (length, then encoding) is built in one buffer and written
/// with one call; a small outcome is built on the stack. Every heap page
/// a fresh child writes costs it a copy-on-write fault, which is most of
/// what a short-lived child costs.
fn send_outcome<T: Serialize>(outcome: Outcome<T>, code: i32, out: OwnedFd) -> i32 {
    const SMALL: usize = 256;
    let mut small = [0u8; SMALL];
    let mut large = Vec::new();
    let codec = codec::Codec::default();
    let (frame, code): (&[u8], i32) = match codec.encoded_len(&outcome) {
        Ok(n) if n + 8 <= SMALL => {
            let (head, body) = small.split_at_mut(8);
            head.copy_from_slice(&(n as u64).to_le_bytes());
            match codec.encode_to_writer(&outcome, &mut &mut body[..n]) {
                Ok(_) => (&small[..8 + n], code),
                Err(e) => (unencodable_frame::<T>(&mut large, e), 1),
            }
        }
        _ => match frame_into(&outcome, &mut large) {
            Ok(()) => (&large[..], code),
            Err(e) => (unencodable_frame::<T>(&mut large, e), 1),
        },
    };
    drop(outcome);
    let mut file = File::from(out);
    if file.write_all(frame).is_err() {
        // The parent is gone or dropped its handle: nobody wants the result.
        return code.max(1);
    }
    code
}

/// Makes `buf` the frame of `value`: its length (`u64`, little endian),
/// then its encoding.
fn frame_into<V: Serialize>(value: &V, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    buf.extend_from_slice(&[0; 8]);
    let n = codec::Codec::default().encode_into(value, buf)?;
    buf[..8].copy_from_slice(&(n as u64).to_le_bytes());
    Ok(())
}

/// The frame of [`Outcome::Unencodable`] quoting `error`, built in `buf`
/// (an empty frame if even that does not encode).
fn unencodable_frame<T: Serialize>(buf: &mut Vec<u8>, error: impl fmt::Display) -> &[u8] {
    let fallback: Outcome<T> = Outcome::Unencodable(error.to_string());
    if frame_into(&fallback, buf).is_err() {
        buf.clear();
        buf.extend_from_slice(&[0; 8]);
    }
    buf
}

/// What a child spawned through the fork server receives. The argument
/// travels encoded on its own, so that a child whose argument does not
/// decode can still report why through its result pipe.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct ServerArgs<A: 'static, T: 'static> {
    target: FnRef<A, T>,
    args: Vec<u8>,
}

/// The zygote entry of a process spawned through the fork server.
fn server_main<A, T>(arg: ServerArgs<A, T>, mut fds: Vec<OwnedFd>) -> i32
where
    A: Serialize + DeserializeOwned + 'static,
    T: Serialize + DeserializeOwned + 'static,
{
    // The child keeps the fork server's short slice, as a directly forked
    // one keeps the one it is forked with (see `ProcessBuilder::spawn`).
    let (Ok(target), Some(out)) = (arg.target.get(), fds.pop()) else {
        return 127;
    };
    // The rest are the argument's descriptors (its `Fd`s), in index order.
    match codec::decode_with_fds::<A>(&arg.args, fds) {
        Ok(args) => child_run(target, args, out),
        Err(e) => send_outcome::<T>(Outcome::Undecodable(e.to_string()), 1, out),
    }
}

// ---------------------------------------------------------------------------
// Bookkeeping: children to wait for or terminate at exit, and the reaper.

struct Live {
    child: Arc<ChildProc>,
    daemon: bool,
    owner: i32,
}

static LIVE: Mutex<Vec<Live>> = Mutex::new(Vec::new());
static AT_EXIT: Once = Once::new();

fn live() -> std::sync::MutexGuard<'static, Vec<Live>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The registry of live children, held across a fork (see `prefork`).
pub(crate) fn live_lock() -> impl Sized {
    live()
}

/// The background reaper, held across a fork (see `prefork`).
pub(crate) fn reaper_lock() -> impl Sized {
    REAPER.lock().unwrap_or_else(|p| p.into_inner())
}

fn register(child: &Arc<ChildProc>, daemon: bool) {
    AT_EXIT.call_once(|| {
        if let Err(e) = fork::at_exit(at_exit_handler) {
            tracing::error!(error = %e, "cannot register the exit handler that joins child processes");
        }
    });
    live().push(Live {
        child: Arc::clone(child),
        daemon,
        owner: fork::getpid(),
    });
}

fn unregister(child: &Arc<ChildProc>) {
    live().retain(|l| !Arc::ptr_eq(&l.child, child));
}

extern "C" fn at_exit_handler() {
    let me = fork::getpid();
    let mine: Vec<Live> = {
        let mut all = live();
        let (mine, others): (Vec<Live>, Vec<Live>) = std::mem::take(&mut *all)
            .into_iter()
            .partition(|l| l.owner == me);
        *all = others;
        mine
    };
    let daemons: Vec<&Live> = mine.iter().filter(|l| l.daemon).collect();
    for d in &daemons {
        let _ = d.child.signal(libc::SIGTERM);
    }
    let grace = Instant::now() + DAEMON_GRACE;
    for d in &daemons {
        if d.child.wait_status(Some(grace)).is_err() {
            let _ = d.child.signal(libc::SIGKILL);
            let _ = d
                .child
                .wait_status(Some(Instant::now() + Duration::from_secs(5)));
        }
    }
    for l in mine.iter().filter(|l| !l.daemon) {
        let _ = l.child.wait_status(None);
    }
}

struct ReaperThread {
    owner: i32,
    wake: OwnedFd,
    list: Arc<Mutex<Vec<Arc<ChildProc>>>>,
}

static REAPER: Mutex<Option<ReaperThread>> = Mutex::new(None);

/// Hands a running child to the background reaper.
fn adopt(child: Arc<ChildProc>) {
    let mut guard = REAPER.lock().unwrap_or_else(|p| p.into_inner());
    if guard.as_ref().is_none_or(|r| r.owner != fork::getpid()) {
        // (Re)start the reaper: none yet, or we are a fork of its owner.
        let Ok((r, w)) = fd::pipe() else {
            return;
        };
        let list = Arc::new(Mutex::new(Vec::new()));
        let thread_list = Arc::clone(&list);
        let started = std::thread::Builder::new()
            .name("multiproc-reaper".into())
            .spawn(move || reaper_loop(r, thread_list));
        if started.is_err() {
            return;
        }
        *guard = Some(ReaperThread {
            owner: fork::getpid(),
            wake: w,
            list,
        });
    }
    if let Some(r) = guard.as_ref() {
        r.list.lock().unwrap_or_else(|p| p.into_inner()).push(child);
        let _ = nix::unistd::write(&r.wake, &[1]);
    }
}

fn reaper_loop(wake: OwnedFd, list: Arc<Mutex<Vec<Arc<ChildProc>>>>) {
    loop {
        let children: Vec<Arc<ChildProc>> = list.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut set = vec![(wake.as_fd(), Poll::POLLIN)];
        set.extend(children.iter().map(|c| (c.pidfd.as_fd(), Poll::POLLIN)));
        let Ok(revents) = fd::poll_until(&set, None) else {
            return;
        };
        if revents.first().is_some_and(|r| !r.is_empty()) {
            let mut buf = [0u8; 64];
            let _ = nix::unistd::read(&wake, &mut buf);
        }
        for (c, r) in children.iter().zip(revents.iter().skip(1)) {
            // Reaped, or beyond reaping (its status is lost, or the zygote
            // failed): either way, stop polling it.
            let done = || match c.wait_reaped(Some(Instant::now())) {
                Err(e) => !e.is_timeout(),
                Ok(_) => true,
            };
            if !r.is_empty() && done() {
                list.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|x| !Arc::ptr_eq(x, c));
                unregister(c);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The parent side.

static COUNTER: AtomicUsize = AtomicUsize::new(1);

/// The capacity asked for a child's result pipe: a result frame up to this
/// size is written without waiting for the parent to read (the system's
/// default limit for an unprivileged process, `/proc/sys/fs/pipe-max-size`).
const RESULT_PIPE: i32 = 1 << 20;

/// How long `join` first waits for a child's exit alone before it watches
/// the result pipe too (see `join_until`).
const EXIT_FIRST: Duration = Duration::from_millis(2);

/// A function running in a child process (Python's `Process`).
///
/// # Examples
///
/// ```
/// use multiproc::{ErrorKind, Process};
///
/// fn add(pair: (i64, i64)) -> i64 {
///     pair.0 + pair.1
/// }
///
/// let p = Process::spawn(add, (40, 2))?;
/// assert!(p.pid() > 0);
/// assert_eq!(p.join()?, 42);
///
/// fn fail(_: ()) {
///     panic!("no luck");
/// }
/// let err = Process::builder().name("failing").spawn(fail, ())?.join().unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::TaskPanicked);
/// assert_eq!(err.panic_info().unwrap().message, "no luck");
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Caveats
///
/// Without [`init`](crate::init), the child is a plain fork of the calling
/// process: in a program running other threads, a lock one of them holds at
/// that instant (stdout, the environment, a runtime's) stays held in the
/// child forever, as with Python's `fork` start method; such a child does not
/// flush stdout when it exits (the lock may be held), so a last line it
/// prints without a newline is lost unless it flushes it itself
/// (`std::io::stdout().flush()`), or runs from the fork server. Children die with
/// the parent process (`PR_SET_PDEATHSIG` when spawned from the main thread,
/// a pidfd watcher thread in the child otherwise), not with the spawning
/// thread.
#[must_use = "dropping a Process neither kills nor waits for it: join() it for its result (a daemon process need not be joined)"]
pub struct Process<T> {
    child: Arc<ChildProc>,
    name: String,
    daemon: bool,
    result: Option<File>,
    buf: Vec<u8>,
    joined: bool,
    _t: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Process<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.child.pid)
            .field("daemon", &self.daemon)
            .field("exit_status", &self.child.known_status())
            .finish()
    }
}

/// Configures a [`Process`] before spawning it: [`name`](ProcessBuilder::name)
/// and [`daemon`](ProcessBuilder::daemon).
///
/// # Examples
///
/// ```
/// use multiproc::Process;
///
/// fn hello(who: String) -> String {
///     format!("hello {who}")
/// }
///
/// let p = Process::builder().name("greeter").daemon(true).spawn(hello, "you".to_string())?;
/// assert_eq!(p.name(), "greeter");
/// assert!(p.is_daemon());
/// assert_eq!(p.join()?, "hello you");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProcessBuilder {
    name: Option<String>,
    daemon: bool,
}

impl ProcessBuilder {
    /// A builder with the defaults: name `Process-N`, not a daemon.
    pub fn new() -> ProcessBuilder {
        ProcessBuilder::default()
    }

    /// The process's name (for messages; Python's `name`).
    pub fn name(mut self, name: impl Into<String>) -> ProcessBuilder {
        self.name = Some(name.into());
        self
    }

    /// A daemon child is terminated when the parent exits; a non-daemon one
    /// is waited for (default `false`).
    pub fn daemon(mut self, daemon: bool) -> ProcessBuilder {
        self.daemon = daemon;
        self
    }

    /// Runs `target(args)` in a new child process.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the pipe or the fork fails,
    /// [`ErrorKind::Serialization`] if `args` cannot be encoded (fork server
    /// only: a directly forked child gets `args` as they are, as with
    /// Python's `fork`), quoting the `Serialize` implementation's message,
    /// or if an [`Fd`](crate::Fd) in it is not an open descriptor;
    /// [`ErrorKind::InvalidArgument`] for more than 252 [`Fd`](crate::Fd)s;
    /// [`ErrorKind::Closed`] if the fork server is gone.
    ///
    /// # Caveats
    ///
    /// [`Fd`](crate::Fd)s in `args` reach the child either way (inherited
    /// by the fork, or sent with `SCM_RIGHTS` by the fork server); the
    /// parent's copies are closed when `spawn` returns, with `args`.
    pub fn spawn<A, T>(self, target: fn(A) -> T, args: A) -> Result<Process<T>>
    where
        A: Serialize + DeserializeOwned + 'static,
        T: Serialize + DeserializeOwned + 'static,
    {
        let name = self
            .name
            .unwrap_or_else(|| format!("Process-{}", COUNTER.fetch_add(1, Ordering::Relaxed)));
        let (r, w) = fd::pipe().map_err(|e| Error::io("cannot create the result pipe", e))?;
        // Best effort (the system may refuse the size): a larger pipe lets a
        // child write a larger result without waiting for `join`.
        let _ = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(RESULT_PIPE));
        let child = match fork_server() {
            Some(server) => {
                let (bytes, attached) = codec::encode_with_fds(&args)?;
                let arg = ServerArgs {
                    target: FnRef::new(target),
                    args: bytes,
                };
                let mut fds: Vec<_> = attached.iter().map(|f| f.as_fd()).collect();
                fds.push(w.as_fd());
                let child = server.spawn(server_main::<A, T>, &arg, &fds)?;
                drop(fds);
                drop(w);
                // The argument's descriptors (sent: the child has its own
                // copies) are closed here, with the argument itself.
                drop(attached);
                drop(args);
                child.into_proc()
            }
            None => {
                // Installed here, children inherit it instead of each
                // installing its own; and this thread's panic-location slot
                // is created here, so that the child inherits it instead of
                // registering its destructor (a lazily bound libc call,
                // several copy-on-write faults) in every child.
                install_panic_hook();
                let _ = PANIC_LOCATION.try_with(|_| ());
                // The child owns the write end (moved into the closure:
                // closed here when the fork returns) and must not keep the
                // read end, or a child whose reader is gone would block
                // forever on a full pipe instead of getting EPIPE.
                // Forked with the short slice, the child gets a CPU at once
                // beside busy processes, and keeps it, as a pool's workers
                // do: taking the caller's slice back would itself be a point
                // where a busy process with an earlier deadline takes the
                // CPU for its whole slice (a child that gave it back first
                // thing waited 3.5 ms there, in some runs beside two busy
                // loops). This thread has its own back as soon as the fork
                // returns.
                crate::latency::starting_owned(|| {
                    ChildProc::fork_direct(&[r.as_fd()], fork::Lifeline::Started, move || {
                        child_run(target, args, w)
                    })
                })?
            }
        };
        let child = Arc::new(child);
        register(&child, self.daemon);
        Ok(Process {
            child,
            name,
            daemon: self.daemon,
            result: Some(File::from(r)),
            buf: Vec::new(),
            joined: false,
            _t: PhantomData,
        })
    }
}

impl<T> Process<T>
where
    T: Serialize + DeserializeOwned + 'static,
{
    /// Runs `target(args)` in a new child process (Python's
    /// `Process(target=, args=).start()`).
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// let p = multiproc::Process::spawn(square, 12)?;
    /// assert_eq!(p.join()?, 144);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ProcessBuilder::spawn`].
    pub fn spawn<A>(target: fn(A) -> T, args: A) -> Result<Process<T>>
    where
        A: Serialize + DeserializeOwned + 'static,
    {
        ProcessBuilder::new().spawn(target, args)
    }

    /// Waits for the child to finish and returns `target`'s return value.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::TaskPanicked`] if `target` panicked
    ///   ([`Error::panic_info`] has the message and location);
    /// - [`ErrorKind::WorkerLost`] if the child ended without a result
    ///   (killed by a signal, or exited early; [`Error::exit_info`] says how);
    /// - [`ErrorKind::Serialization`] if the result could not be encoded in
    ///   the child or decoded here, or (through the fork server) the argument
    ///   could not be decoded in the child; the message quotes the
    ///   `Serialize` or `Deserialize` implementation's own error;
    /// - [`ErrorKind::NotRunning`] if the process was already joined;
    /// - [`ErrorKind::Io`] if the child ended without a result and its exit
    ///   status is unavailable (the kernel reaps children itself when the
    ///   program ignores `SIGCHLD`; a child that sent its result still
    ///   gives it).
    pub fn join(mut self) -> Result<T> {
        self.join_until(None)
    }

    /// Like [`join`](Process::join), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if the child is still running; the process can
    /// then be joined again. Otherwise as [`join`](Process::join).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<T> {
        self.join_until(Instant::now().checked_add(timeout))
    }

    fn frame_len(&self) -> Option<usize> {
        let head: [u8; 8] = self.buf.get(..8)?.try_into().ok()?;
        Some(u64::from_le_bytes(head) as usize)
    }

    fn frame_complete(&self) -> bool {
        self.frame_len()
            .is_some_and(|n| self.buf.len() >= 8usize.saturating_add(n))
    }

    /// Reads what the pipe has, straight into `buf`: as much as the frame
    /// still lacks, or 512 bytes while its length is unknown (see
    /// [`fd::read_lacking`]).
    fn read_some(&mut self) -> Result<()> {
        const FIRST: usize = 512;
        let whole = self.frame_len().map(|n| 8usize.saturating_add(n));
        let Some(file) = self.result.as_mut() else {
            return Ok(());
        };
        match fd::read_lacking(&mut self.buf, whole, FIRST, |room| file.read(room)) {
            Ok(0) => self.result = None,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("cannot read the result pipe", e)),
        }
        Ok(())
    }

    fn join_until(&mut self, deadline: Option<Instant>) -> Result<T> {
        if self.joined {
            return Err(Error::new(
                ErrorKind::NotRunning,
                format!("{} was already joined", self.name),
            ));
        }
        // 0. A child that ends soon: its result is in the pipe (whose
        // writer never blocks while the result fits: see `RESULT_PIPE`),
        // so waiting for its exit alone costs one wake-up instead of two
        // (one for the result, then one for the exit). A child still
        // running after `EXIT_FIRST`, or blocked on a larger result, is
        // waited for by the loop below, as before.
        if !self.frame_complete() && self.result.is_some() {
            let soon = Instant::now() + EXIT_FIRST;
            let until = deadline.map_or(soon, |d| d.min(soon));
            fd::poll_until(&[(self.child.pidfd.as_fd(), Poll::POLLIN)], Some(until))
                .map_err(|e| Error::io("poll", e))?;
        }
        // 1. The result: until a whole frame, or the child is dead and the
        // pipe drained. (End of file is not awaited: other children forked
        // meanwhile may hold copies of the write end.)
        while !self.frame_complete() {
            let Some(file) = self.result.as_ref() else {
                break;
            };
            let revents = fd::poll_until(
                &[
                    (file.as_fd(), Poll::POLLIN),
                    (self.child.pidfd.as_fd(), Poll::POLLIN),
                ],
                deadline,
            )
            .map_err(|e| Error::io("poll", e))?;
            if revents.is_empty() {
                return Err(Error::timeout(format!(
                    "{} (pid {}) is still running",
                    self.name, self.child.pid
                )));
            }
            if !revents[0].is_empty() {
                self.read_some()?;
            } else if !revents[1].is_empty() {
                // Dead: take what it wrote before dying.
                while !self.frame_complete() {
                    match self.result.as_ref() {
                        Some(f) if fd::is_readable(f).unwrap_or(false) => self.read_some()?,
                        _ => break,
                    }
                }
                break;
            }
        }
        // 2. The exit status.
        let reaped = self.child.wait_reaped(deadline)?;
        self.joined = true;
        self.result = None;
        unregister(&self.child);
        // 3. The outcome.
        let lost = || match reaped {
            Reaped::Status(status) => Error::worker_lost(ExitInfo {
                pid: self.child.pid,
                status,
                task: None,
            }),
            Reaped::Unavailable => self.child.unavailable(),
        };
        if !self.frame_complete() {
            return Err(lost());
        }
        let n = self.frame_len().unwrap_or(0);
        let bytes = std::mem::take(&mut self.buf);
        match codec::decode::<Outcome<T>>(&bytes[8..8 + n])? {
            Outcome::Returned(v) => Ok(v),
            Outcome::Panicked(p) => Err(Error::panicked(p)),
            Outcome::Unencodable(msg) => Err(Error::new(
                ErrorKind::Serialization,
                format!("the result of {} could not be encoded: {msg}", self.name),
            )),
            Outcome::Undecodable(msg) => Err(Error::new(
                ErrorKind::Serialization,
                format!("the argument of {} could not be decoded: {msg}", self.name),
            )),
        }
    }
}

impl Process<()> {
    /// A [`ProcessBuilder`], to set a name or the daemon flag
    /// (`Process::builder().name("x").spawn(target, args)`).
    pub fn builder() -> ProcessBuilder {
        ProcessBuilder::new()
    }
}

impl<T> Process<T> {
    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.child.pid
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the process is a daemon (terminated at the parent's exit).
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// True until the child has exited.
    pub fn is_alive(&self) -> bool {
        self.child.is_alive()
    }

    /// How the child ended, or `None` while it runs (Python's `exitcode`)
    /// or if its status is unavailable (the program ignores `SIGCHLD`).
    ///
    /// A child whose result is larger than the pipe's buffer (64 KiB) stays
    /// alive until [`join`](Process::join) reads it.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.child.wait_status(Some(Instant::now())).ok()
    }

    /// Sends `SIGTERM` (Python's `terminate`). An exited child is not an error.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the kernel refuses.
    pub fn terminate(&self) -> Result<()> {
        self.child.signal(libc::SIGTERM)
    }

    /// Sends `SIGKILL` (Python's `kill`). An exited child is not an error.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the kernel refuses.
    pub fn kill(&self) -> Result<()> {
        self.child.signal(libc::SIGKILL)
    }
}

impl<T> Drop for Process<T> {
    fn drop(&mut self) {
        if self.joined {
            return;
        }
        self.result = None;
        match self.child.wait_reaped(Some(Instant::now())) {
            Err(e) if e.is_timeout() => adopt(Arc::clone(&self.child)),
            _ => unregister(&self.child),
        }
    }
}
