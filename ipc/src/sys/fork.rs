//! `fork`, the child's first steps, `_exit`, `atexit`, and turning function
//! addresses received from a forked relative back into function pointers.

use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use super::cvt;

/// A process id.
pub(crate) type Pid = i32;

/// Exit code of a forked child whose closure panicked (as Rust's own).
pub(crate) const PANIC_EXIT_CODE: i32 = 101;

/// Forks the calling process and runs `child` in the new one.
///
/// Before the fork, stdout and stderr are flushed (so text buffered in the
/// parent is not printed again by the child), unless this process was itself
/// forked while another thread may have held their lock (a zygote forked
/// from a threaded program): there the lock may be held for ever, and a
/// flush would wait for ever (such a process prints nothing of its own, and
/// its children never flush what it inherited). In the child: the descriptors
/// of `close_in_child` are closed first (they belong to the parent: the child
/// never runs destructors, so a descriptor it inherits but does not own stays
/// open until it exits unless closed here); `PR_SET_PDEATHSIG(SIGKILL)` is
/// set if the caller is the main thread (the signal fires when the forking
/// *thread* exits; from other threads a small watcher thread in the child
/// polls a pidfd of the parent process and kills the child when it exits
/// instead, and a [`Lifeline::Settled`] child of a threaded process starts
/// one too, see [`watch_parent`]); if the parent is already gone, the child
/// exits at once. Then
/// `child` runs with panics caught, and the process ends with `_exit(code)`;
/// it never returns into the caller's frames and never runs the parent's
/// `atexit` handlers. A panic escaping `child` exits with [`PANIC_EXIT_CODE`].
/// In the parent, returns the child's pid (and `child` is dropped there, so
/// descriptors it owns are closed in the parent).
///
/// The child flushes stdout and stderr before `_exit` only with
/// [`ChildStdio::Flush`], and records that choice for its own children.
///
/// Unless `alone` (no other thread of the process can hold a lock: it has
/// one thread, or its others take none), this crate's global locks are
/// held across the fork ([`crate::prefork`]).
///
/// # Safety
///
/// The caller is single-threaded, or accepts that `child` runs in a copy of a
/// threaded process where locks held by other threads at the fork stay locked
/// forever (POSIX allows only async-signal-safe calls there).
unsafe fn fork_with(
    close_in_child: &[BorrowedFd<'_>],
    stdio: ChildStdio,
    alone: bool,
    lifeline: Lifeline,
    child: impl FnOnce() -> i32,
) -> io::Result<Pid> {
    let close: Vec<RawFd> = close_in_child.iter().map(|f| f.as_raw_fd()).collect();
    // The fork tree's key must exist before the first fork, or parent and
    // child would each draw their own. Our constructor normally draws it, but
    // a user's constructor can fork (`init()`) before ours runs.
    let _ = tree_key();
    crate::spin::prime();
    if STDIO_FREE.load(Ordering::Relaxed) {
        let _ = io::stdout().flush();
        let _ = io::stderr().flush();
    }
    crate::test_hooks::run_before_fork();
    // SAFETY: getpid and gettid have no preconditions.
    let (parent, from_main_thread) = unsafe { (libc::getpid(), libc::gettid() == libc::getpid()) };
    // A child forked by a thread other than the main one needs a lifeline;
    // a settled child of a threaded process starts one too, to learn that
    // it can start threads at all (see `watch_parent`).
    let watch = !from_main_thread || (lifeline == Lifeline::Settled && !alone);
    let stall = watch && lifeline == Lifeline::Settled && crate::test_hooks::take_lifeline_stall();
    // No other thread of ours is half-way through the registries a child
    // uses: they are held across the fork and released on both sides;
    // `alone`, no other thread can be (and taking and releasing them would
    // cost a copy-on-write fault per lock on each side).
    let held = (!alone).then(crate::prefork::hold);
    // SAFETY: the caller accepts the consequences of forking (see # Safety);
    // the child never returns from this function.
    let pid = unsafe { libc::fork() };
    drop(held);
    let pid = cvt(pid)?;
    if pid != 0 {
        return Ok(pid);
    }
    // In the child from here on.
    let flush = stdio == ChildStdio::Flush;
    STDIO_FREE.store(flush, Ordering::Relaxed);
    for &fd in &close {
        // SAFETY: `fd` was open in the parent, hence here; the `OwnedFd` or
        // `BorrowedFd` naming it in the parent's frames is never used nor
        // dropped in this process (it leaves with `_exit`).
        unsafe { libc::close(fd) };
    }
    if from_main_thread {
        // PDEATHSIG fires when the forking *thread* exits; the main thread
        // lives as long as the process.
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number; no memory.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            // The parent died before prctl took effect: die with it.
            exit_child(1, false);
        }
    }
    if watch {
        // Forked from a thread that may exit long before the process: watch
        // the parent process itself instead (as well, for a settled child
        // of a threaded process).
        watch_parent(parent, lifeline, stall);
    }
    let code = catch_unwind(AssertUnwindSafe(child)).unwrap_or(PANIC_EXIT_CODE);
    run_exit_hooks();
    exit_child(code, flush)
}

/// The most functions [`at_child_exit`] keeps.
const EXIT_HOOKS: usize = 8;

/// The functions a forked child runs before `_exit`, as addresses (0: a
/// free slot). Atomics, not a lock: a fork can happen at any moment.
static EXIT_HOOK_SLOTS: [AtomicUsize; EXIT_HOOKS] = [const { AtomicUsize::new(0) }; EXIT_HOOKS];

/// Registers `hook` (once, however often it is passed) to run in every
/// child this process forks afterwards (and their own children), when the
/// child's body returns, just before it `_exit`s. False if all
/// [`EXIT_HOOKS`] slots are taken.
pub(crate) fn at_child_exit(hook: fn()) -> bool {
    let addr = hook as usize;
    for slot in &EXIT_HOOK_SLOTS {
        match slot.compare_exchange(0, addr, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return true,
            Err(taken) if taken == addr => return true,
            Err(_) => {}
        }
    }
    false
}

/// Runs the [`at_child_exit`] hooks, in registration order; a panic in one
/// is caught (it ends that hook only).
fn run_exit_hooks() {
    for slot in &EXIT_HOOK_SLOTS {
        let addr = slot.load(Ordering::Acquire);
        if addr == 0 {
            break;
        }
        // SAFETY: every non-zero slot holds a `fn()` stored by
        // `at_child_exit` (slots only go from 0 to such an address), and a
        // fork keeps this program image, so the address is still that
        // function.
        let hook = unsafe { std::mem::transmute::<usize, fn()>(addr) };
        let _ = catch_unwind(hook);
    }
}

/// Whether a forked child flushes stdout and stderr when it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChildStdio {
    /// No other thread can have held the stdout lock at the fork: the
    /// parent had a single thread (or one whose only other thread takes no
    /// lock), and its own stdout lock was free.
    Flush,
    /// Another thread may have held the stdout lock at the fork, and it
    /// stays locked forever in the child: exit without touching it.
    NoFlush,
}

/// False in a process forked while another thread may have held the stdout
/// lock (then it may stay locked forever here, and in our forks).
static STDIO_FREE: AtomicBool = AtomicBool::new(true);

/// [`ChildStdio::Flush`] if this process's stdout lock is known to be free
/// and `single_threaded` says no other thread can hold it at a fork.
fn child_stdio(single_threaded: bool) -> ChildStdio {
    if single_threaded && STDIO_FREE.load(Ordering::Relaxed) {
        ChildStdio::Flush
    } else {
        ChildStdio::NoFlush
    }
}

/// Ends a forked child with `code`, flushing stdout and stderr first if
/// `flush`, without running `atexit` handlers or destructors.
fn exit_child(code: i32, flush: bool) -> ! {
    if flush {
        let _ = io::stdout().flush();
        let _ = io::stderr().flush();
    }
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// What a child with a lifeline thread (see [`watch_parent`]: one forked by
/// a thread other than the main one, or a settled child of a threaded
/// process) does while that thread starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lifeline {
    /// Waits until it runs: the child forks processes of its own (a
    /// zygote), and a fork while that thread starts could leave a lock of
    /// the standard library held in them. Forked by the main thread of a
    /// process that runs other threads, it starts one too, and waits for
    /// it: whether it can start a thread at all is what its children's
    /// threads depend on.
    Settled,
    /// Goes on at once: the child runs the caller's code (a `Process`),
    /// whose own forks, if any, are the caller's business.
    Started,
}

/// How long a forked child waits for its lifeline thread to start before
/// it gives up and exits (see [`watch_parent`]): a bound for a thread that
/// is starved, not for one that is stuck (that is seen within milliseconds).
const LIFELINE_START: std::time::Duration = std::time::Duration::from_secs(5);

/// The exit code of a settled child whose lifeline thread cannot start: a
/// lock the standard library takes while a thread starts or ends was held
/// by another thread of the parent at the fork (`EX_TEMPFAIL`: forking
/// again will most likely do).
pub(crate) const LIFELINE_STUCK_EXIT_CODE: i32 = 75;

/// How often in a row a settled child must see its lifeline thread asleep
/// before it has run any of its own code to call it stuck.
const STUCK_LOOKS: u32 = 3;

/// The time between two looks at a lifeline thread that has not run yet.
const STUCK_LOOK_EVERY: std::time::Duration = std::time::Duration::from_millis(1);

/// The lifeline thread's progress: not started yet, running its own code,
/// and done with what the child waits for.
const LIFELINE_NOT_IN: u32 = 0;
const LIFELINE_IN: u32 = 1;
const LIFELINE_RUNS: u32 = 2;

/// Starts a thread that kills this process with `SIGKILL` when `parent`
/// exits (the parent-death signal, for children of non-main threads), and,
/// for a [`Lifeline::Settled`] child, returns only once that thread runs.
///
/// Once running, the thread only waits in `poll` on a pidfd: it takes no
/// lock and does not allocate, so the process may fork safely while it
/// runs (zygotes started from a non-main thread rely on this). Its start
/// is another matter: the standard library records every thread that
/// starts or ends under a process-wide lock, and a fork at that moment
/// leaves the lock held in the child for good, so that every thread the
/// child (a manager forked by this zygote, say) starts waits for it
/// forever. Hence the wait here, which a settled child of a threaded
/// process does even when the main thread forked it. A thread stuck so
/// sleeps before it runs any of its own code, and nothing left in this
/// process can wake it: a settled child that sees that [`STUCK_LOOKS`]
/// times in a row exits with [`LIFELINE_STUCK_EXIT_CODE`], for its parent
/// to fork it again. A thread that is merely slow to start (a busy
/// machine) is runnable, not asleep; the child gives up on it only after
/// [`LIFELINE_START`], exiting with 1. Either way an error for whoever
/// asked for the child, instead of children that hang. A
/// [`Lifeline::Started`] child does not wait (one thread start, about 75 µs
/// on our VMs, on every `Process` forked by a non-main thread).
///
/// `stall` (a test hook, [`crate::test_hooks::stall_lifeline_starts`])
/// makes the thread sleep for good before it runs any of its own code, as
/// a stuck one does.
fn watch_parent(parent: Pid, lifeline: Lifeline, stall: bool) {
    let Ok(pidfd) = super::wait::pidfd_open(parent) else {
        exit_child(1, false)
    };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != parent {
        // The parent died (the pidfd may even name a recycled pid).
        exit_child(1, false);
    }
    let progress = std::sync::Arc::new(AtomicU32::new(LIFELINE_NOT_IN));
    let flag = std::sync::Arc::clone(&progress);
    let started = std::thread::Builder::new()
        .name("multiproc-lifeline".into())
        .spawn(move || {
            if stall {
                let never = AtomicU32::new(0);
                loop {
                    crate::park::wait_u32(&never, 0, None);
                }
            }
            // The standard library's start-up of this thread is over.
            flag.store(LIFELINE_IN, Ordering::Release);
            if let Some(delay) = crate::test_hooks::lifeline_delay() {
                std::thread::sleep(delay);
            }
            flag.store(LIFELINE_RUNS, Ordering::Release);
            crate::park::wake_all_u32(&flag);
            super::fd::wait_readable_forever(std::os::fd::AsFd::as_fd(&pidfd));
            // SAFETY: kill with our own pid and a signal number.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        });
    if started.is_err() {
        exit_child(1, false);
    }
    if lifeline == Lifeline::Started {
        return;
    }
    let deadline = std::time::Instant::now() + LIFELINE_START;
    let mut asleep = 0;
    loop {
        let seen = progress.load(Ordering::Acquire);
        if seen == LIFELINE_RUNS {
            return;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            exit_child(1, false);
        }
        crate::park::wait_u32(&progress, seen, Some(left.min(STUCK_LOOK_EVERY)));
        // Asleep, and still not in its own code (looked at in this order,
        // so that a thread that got there and now waits on the pidfd is
        // not taken for a stuck one).
        if others_asleep() && progress.load(Ordering::Acquire) == LIFELINE_NOT_IN {
            asleep += 1;
            if asleep == STUCK_LOOKS {
                exit_child(LIFELINE_STUCK_EXIT_CODE, false);
            }
        } else {
            asleep = 0;
        }
    }
}

/// Whether every thread of this process but the calling one sleeps (state
/// `S` in `/proc/self/task/TID/stat`), and there is one. False if they
/// cannot be read.
fn others_asleep() -> bool {
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    let mut seen = false;
    for task in tasks.flatten() {
        let name = task.file_name();
        let Some(tid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            return false;
        };
        if tid == me {
            continue;
        }
        let Ok(stat) = std::fs::read(task.path().join("stat")) else {
            return false;
        };
        // The state follows the command name, which ends with the line's
        // last ')' (the name itself may hold one).
        let state = stat
            .iter()
            .rposition(|&b| b == b')')
            .and_then(|end| stat.get(end + 2));
        if state != Some(&b'S') {
            return false;
        }
        seen = true;
    }
    seen
}

/// Forks from a zygote, closing `close_in_child` in the child. The child
/// flushes stdout at exit unless the zygote itself was forked from a
/// threaded process.
pub(crate) fn fork_single_threaded(
    close_in_child: &[BorrowedFd<'_>],
    child: impl FnOnce() -> i32,
) -> io::Result<Pid> {
    let stdio = child_stdio(true);
    // SAFETY: callers are zygote loops. A zygote runs one thread, plus, when
    // it was started from a non-main thread or a threaded process, the
    // lifeline watcher of `watch_parent`, which only waits in a raw `poll`
    // (no lock, no allocation): no lock can be held by another thread at
    // the fork.
    unsafe { fork_with(close_in_child, stdio, true, Lifeline::Started, child) }
}

/// Forks the caller's process as it is (Python's `fork` start method),
/// closing `close_in_child` in the child.
///
/// Used by `Process::spawn` without a fork server and by `Zygote::start`
/// before any fork server exists; both are documented as meant for
/// single-threaded callers, and as hazardous (a lock held by another thread
/// stays locked in the child) otherwise, exactly like Python's `fork`. If the
/// caller runs other threads (or their number cannot be read), the child
/// exits without flushing stdout (whose lock another thread may have held at
/// the fork): such children should flush what they print themselves.
pub(crate) fn fork_plain(
    close_in_child: &[BorrowedFd<'_>],
    lifeline: Lifeline,
    child: impl FnOnce() -> i32,
) -> io::Result<Pid> {
    let alone = single_threaded();
    let stdio = child_stdio(alone);
    // SAFETY: the public entry points reaching here document the threaded
    // hazard; glibc's own atfork handlers keep malloc usable in the child,
    // and the child only runs the caller's code and `_exit`s (not touching
    // stdout's lock unless the process was single-threaded).
    unsafe { fork_with(close_in_child, stdio, alone, lifeline, child) }
}

/// The process's own pid.
pub(crate) fn getpid() -> Pid {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// Forks this process's line has seen since [`fork_generation`] was first
/// called: each child counts one more than its parent had at the fork.
static FORKS: AtomicU64 = AtomicU64::new(0);
/// 0: the counting handler is not registered; 1: being registered; 2:
/// registered; 3: its registration failed.
static COUNTING: AtomicU8 = AtomicU8::new(0);

/// Runs in every child right after a `fork` (glibc's, whoever calls it):
/// one atomic add, async-signal-safe.
extern "C" fn count_fork_in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// A number that differs in a child from what its parent had when it
/// forked, whoever forked it through the C library's `fork` (ours, a
/// user's `libc::fork`, any crate's): a value cached together with it (the
/// process id, say) is still valid while it is unchanged. The first call
/// registers the counting handler (`pthread_atfork`) before it returns, so
/// any value read after it is followed by the count. `None` if the handler
/// could not be registered.
pub(crate) fn fork_generation() -> Option<u64> {
    // Bounded: a child forked while another thread of its parent was
    // registering the handler inherits "being registered" for ever.
    for _ in 0..1000 {
        match COUNTING.load(Ordering::Acquire) {
            2 => return Some(FORKS.load(Ordering::Relaxed)),
            0 if COUNTING
                .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok() =>
            {
                // SAFETY: registers a plain `extern "C" fn()` with no
                // captured state as the child handler; it only adds to an
                // atomic, which is async-signal-safe.
                let r = unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
                COUNTING.store(if r == 0 { 2 } else { 3 }, Ordering::Release);
            }
            3 => return None,
            // Another thread registers it now.
            _ => std::thread::yield_now(),
        }
    }
    None
}

/// Runs `f` when the process exits normally (returning from `main` or
/// calling `exit`), before Rust's stdout is torn down.
pub(crate) fn at_exit(f: extern "C" fn()) -> io::Result<()> {
    // SAFETY: registers a plain `extern "C" fn()` with no captured state.
    if unsafe { libc::atexit(f) } != 0 {
        return Err(io::Error::other("atexit registration failed"));
    }
    Ok(())
}

/// The number of threads of this process: the link count of
/// `/proc/self/task` is 2 plus the number of threads (one `statx`, read on
/// every plain fork; reading `/proc/self/stat` instead costs three system
/// calls and the formatting of the whole line).
pub(crate) fn thread_count() -> io::Result<usize> {
    use std::os::unix::fs::MetadataExt;
    let links = std::fs::metadata("/proc/self/task")?.nlink();
    usize::try_from(links.saturating_sub(2))
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/self/task"))
}

/// True if this process runs a single thread (false if that cannot be
/// read): no other thread can hold a lock at a fork.
pub(crate) fn single_threaded() -> bool {
    thread_count().is_ok_and(|n| n == 1)
}

// ---------------------------------------------------------------------------
// Function pointers across fork.

/// The fork tree's secret: random, drawn once when the program image starts
/// (before `main`), and at the latest before the first fork (a constructor
/// of the program's may fork before ours runs), hence identical in every
/// process forked from it and unknown to every other process.
static TREE_KEY: AtomicU64 = AtomicU64::new(0);

extern "C" fn init_tree_key() {
    let _ = tree_key();
}

// SAFETY: placing a plain `extern "C" fn()` pointer in `.init_array` makes
// the loader call it once at start-up; it only fills an atomic.
#[used]
#[link_section = ".init_array"]
static INIT_TREE_KEY: extern "C" fn() = init_tree_key;

fn tree_key() -> u64 {
    let k = TREE_KEY.load(Ordering::Relaxed);
    if k != 0 {
        return k;
    }
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    let mut k = u64::from_ne_bytes(buf);
    if n != 8 {
        // No entropy source: fall back on the load address and the time.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        k = t ^ (tree_key as fn() -> u64 as usize as u64).rotate_left(17);
    }
    k |= 1;
    match TREE_KEY.compare_exchange(0, k, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => k,
        Err(existing) => existing,
    }
}

/// A tag of `F`'s exact type, the same in every process of the fork tree.
/// A fold of what the `TypeId` hashes, not a keyed hash: the tag tells
/// types apart (the tree key is the secret), and it is computed for every
/// task sent and received.
fn type_tag<F: 'static>() -> u64 {
    let mut h = Fold(0);
    std::any::TypeId::of::<F>().hash(&mut h);
    h.finish()
}

/// A cheap deterministic hasher: mixes in each word written.
struct Fold(u64);

impl Fold {
    fn mix(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(23) ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Hasher for Fold {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
    }

    fn write_u64(&mut self, w: u64) {
        self.mix(w);
    }

    fn write_u128(&mut self, w: u128) {
        self.mix(w as u64);
        self.mix((w >> 64) as u64);
    }
}

/// The entry of a zygote child: `(main address, encoded argument, fds) -> exit code`.
pub(crate) type Trampoline = fn(FnAddr, &[u8], Vec<OwnedFd>) -> i32;

/// Function-pointer types that may be rebuilt from an address.
///
/// Sealed: implemented only for thin `fn` pointer shapes.
pub(crate) trait FnPtr: Copy + 'static + sealed::Sealed {
    /// The pointer as an address.
    fn addr(self) -> usize;
}
mod sealed {
    pub trait Sealed {}
}
impl<R: 'static> sealed::Sealed for fn() -> R {}
impl<R: 'static> FnPtr for fn() -> R {
    fn addr(self) -> usize {
        self as usize
    }
}
impl<A: 'static, R: 'static> sealed::Sealed for fn(A) -> R {}
impl<A: 'static, R: 'static> FnPtr for fn(A) -> R {
    fn addr(self) -> usize {
        self as usize
    }
}
impl<A: 'static, B: 'static, R: 'static> sealed::Sealed for fn(A, B) -> R {}
impl<A: 'static, B: 'static, R: 'static> FnPtr for fn(A, B) -> R {
    fn addr(self) -> usize {
        self as usize
    }
}
impl<R: 'static> sealed::Sealed for for<'a> fn(FnAddr, &'a [u8], Vec<OwnedFd>) -> R {}
impl<R: 'static> FnPtr for for<'a> fn(FnAddr, &'a [u8], Vec<OwnedFd>) -> R {
    fn addr(self) -> usize {
        self as usize
    }
}

/// A function pointer as plain data, to send to a process forked (without
/// exec) from ours: its address, the fork tree's secret key, and a tag of its
/// exact type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct FnAddr {
    addr: usize,
    key: u64,
    tag: u64,
}

impl FnAddr {
    /// Captures `f`.
    pub(crate) fn of<F: FnPtr>(f: F) -> FnAddr {
        FnAddr {
            addr: f.addr(),
            key: tree_key(),
            tag: type_tag::<F>(),
        }
    }

    /// The three words to keep it in shared memory (all 0: none).
    pub(crate) fn to_words(self) -> [u64; 3] {
        [self.addr as u64, self.key, self.tag]
    }

    /// From [`to_words`](FnAddr::to_words); checked by [`get`](FnAddr::get).
    pub(crate) fn from_words(w: [u64; 3]) -> FnAddr {
        FnAddr {
            addr: usize::try_from(w[0]).unwrap_or(0),
            key: w[1],
            tag: w[2],
        }
    }

    /// Rebuilds the pointer, or `None` if this address was not made by
    /// [`FnAddr::of::<F>`](FnAddr::of) in this fork tree (another program,
    /// another type, or forged bytes).
    pub(crate) fn get<F: FnPtr>(self) -> Option<F> {
        if self.key != tree_key() || self.tag != type_tag::<F>() || self.addr == 0 {
            return None;
        }
        const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<usize>()) };
        // SAFETY: the key is a secret shared only by the processes forked
        // (without exec) from this image, so `self` was made by `FnAddr::of`
        // in one of them, from a value of type `F` (the type tag matches).
        // Fork without exec keeps the image's code at the same addresses, so
        // the address is that same function here. `F` is a thin fn pointer
        // the size of `usize` (checked above).
        Some(unsafe { std::mem::transmute_copy::<usize, F>(&self.addr) })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn type_tags_tell_fn_types_apart_and_are_stable() {
        use super::type_tag;
        let tags = [
            type_tag::<fn(u64) -> u64>(),
            type_tag::<fn(u32) -> u64>(),
            type_tag::<fn(u64) -> u32>(),
            type_tag::<fn(String) -> u64>(),
            type_tag::<fn((u64, u64)) -> u64>(),
            type_tag::<fn()>(),
        ];
        for (i, a) in tags.iter().enumerate() {
            for b in &tags[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(tags[0], type_tag::<fn(u64) -> u64>());
    }

    #[test]
    fn exit_hooks_register_once_each_and_are_bounded() {
        use std::sync::atomic::Ordering;
        fn used() -> usize {
            super::EXIT_HOOK_SLOTS
                .iter()
                .filter(|s| s.load(Ordering::SeqCst) != 0)
                .count()
        }
        // Distinct functions that do nothing (they run in every child this
        // test binary forks afterwards).
        macro_rules! hooks {
            ($($name:ident),*) => {{ $(fn $name() {})* [$($name as fn()),*] }};
        }
        let all = hooks!(h0, h1, h2, h3, h4, h5, h6, h7, h8);
        let before = used();
        assert!(super::at_child_exit(all[0]));
        assert!(super::at_child_exit(all[0]));
        assert_eq!(used(), before + 1, "the same hook twice takes one slot");
        let registered = all.iter().filter(|h| super::at_child_exit(**h)).count();
        assert_eq!(used(), super::EXIT_HOOKS);
        assert_eq!(registered, super::EXIT_HOOKS - before);
        assert!(!super::at_child_exit(all[8]), "a ninth hook finds no slot");
    }

    #[test]
    fn thread_count_counts_threads() {
        let before = super::thread_count().expect("thread count");
        assert!(before >= 1);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        // Other tests may start or end threads meanwhile: only a lower bound.
        assert!(super::thread_count().expect("thread count") >= 2);
        drop(tx);
        let _ = t.join();
    }
}
