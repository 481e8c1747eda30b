//! Cross-process synchronization primitives: Python's `multiprocessing`
//! `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition` and
//! `Barrier`.
//!
//! Every primitive lives in a [`ShmRegion`]: a handle is
//! usable in the process that made it and in every process forked after that
//! (which inherit the mapping), it is [`Clone`] (clones are handles to the same
//! object), and it serializes to its region's name, so it can be passed to a
//! pool task or another process, which re-attaches on deserialization.
//!
//! Locks are robust: if a process dies holding a [`Lock`], an [`RLock`] or a
//! [`Condition`]'s lock, the next locker (also one already waiting) gets
//! [`LockError::OwnerDied`] carrying the guard, like a poisoned
//! `std::sync::Mutex`, instead of waiting forever.
//!
//! Blocking calls spin briefly (about one cross-CPU wake-up's cost, ~20 µs;
//! not at all on a single CPU) and then sleep on a shared futex.
//!
//! # Examples
//!
//! ```
//! use multiproc::sync::{Event, Lock};
//!
//! let lock = Lock::new()?;
//! let event = Event::new()?;
//! {
//!     let _guard = lock.lock()?;
//!     event.set();
//! }
//! assert!(event.is_set());
//! # Ok::<(), multiproc::Error>(())
//! ```

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind};
use crate::shm::ShmRegion;
use crate::sys::futex::{self, Wake};
use crate::sys::layout::{Header, LAYOUT_VERSION};
use crate::sys::shm::ShmSafe;
use crate::sys::shm_ref::ShmRef;

/// `Serialize` and `Deserialize` for an object that is one whole region with
/// its cell at offset 0 (`$ty { region }`): it travels as its region, and a
/// decoded region must hold a `$cell` with the `$magic` number.
macro_rules! region_serde {
    ($ty:ident, $cell:ty, $magic:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serde::Serialize::serialize(&self.region, s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                let region = <crate::shm::ShmRegion as serde::Deserialize>::deserialize(d)?;
                super::check::<$cell>(&region, 0, $magic).map_err(serde::de::Error::custom)?;
                Ok($ty { region })
            }
        }
    };
}

mod barrier;
mod condition;
mod event;
mod lock;
mod rlock;
mod semaphore;

pub use barrier::{Barrier, BarrierBuilder};
pub use condition::{Condition, ConditionGuard};
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use rlock::{RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard, SEM_VALUE_MAX};

/// How long a blocking call spins before it sleeps, when more than one CPU
/// is available: about the cost of one cross-CPU wake-up.
const SPIN_BUDGET: Duration = Duration::from_micros(20);

/// The spin budget for this machine: [`SPIN_BUDGET`], or zero on one CPU.
pub(crate) fn spin_budget() -> Duration {
    static CPUS: OnceLock<usize> = OnceLock::new();
    let cpus = *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if cpus > 1 {
        SPIN_BUDGET
    } else {
        Duration::ZERO
    }
}

/// Spins until `done()` or the spin budget (or `deadline`) runs out; returns
/// whether `done()` became true.
pub(crate) fn spin_until(deadline: Option<Instant>, mut done: impl FnMut() -> bool) -> bool {
    let budget = spin_budget();
    if budget.is_zero() {
        return false;
    }
    let start = Instant::now();
    let mut end = start + budget;
    if let Some(d) = deadline {
        end = end.min(d);
    }
    loop {
        for _ in 0..64 {
            if done() {
                return true;
            }
            std::hint::spin_loop();
        }
        if Instant::now() >= end {
            return done();
        }
    }
}

/// Why [`park`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parked {
    /// The word changed, or a (possibly spurious) wake-up: look again.
    Again,
    /// The deadline has passed.
    TimedOut,
}

/// Waits for `word` to differ from `observed`: spins, then sleeps on the
/// futex, announcing itself in `sleepers` so wakers can skip the system call
/// when nobody sleeps. Callers re-check their condition after every return.
pub(crate) fn park(
    word: &AtomicU32,
    observed: u32,
    sleepers: &AtomicU32,
    deadline: Option<Instant>,
) -> Parked {
    if spin_until(deadline, || word.load(Ordering::Acquire) != observed) {
        return Parked::Again;
    }
    let timeout = match deadline {
        None => None,
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => return Parked::TimedOut,
        },
    };
    // The announce is a SeqCst read-modify-write, as is every publish by a
    // waker, and the waker reads `sleepers` after publishing: either it sees
    // us, or the futex sees its new value and does not sleep.
    sleepers.fetch_add(1, Ordering::SeqCst);
    let r = futex::wait(word, observed, timeout);
    sleepers.fetch_sub(1, Ordering::SeqCst);
    match r {
        Wake::TimedOut if word.load(Ordering::Acquire) == observed => Parked::TimedOut,
        _ => Parked::Again,
    }
}

/// Wakes up to `n` sleepers on `word` if any announced themselves. Call after
/// publishing the change with a SeqCst read-modify-write on `word`.
pub(crate) fn unpark(word: &AtomicU32, sleepers: &AtomicU32, n: u32) {
    if sleepers.load(Ordering::SeqCst) > 0 {
        futex::wake(word, n);
    }
}

/// The deadline `timeout` from now (`None`: too far to represent, i.e. never).
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Magic numbers of the objects (the first header word).
pub(crate) mod magic {
    /// "mpLK"
    pub(crate) const LOCK: u32 = u32::from_le_bytes(*b"mpLK");
    /// "mpRL"
    pub(crate) const RLOCK: u32 = u32::from_le_bytes(*b"mpRL");
    /// "mpSM"
    pub(crate) const SEMAPHORE: u32 = u32::from_le_bytes(*b"mpSM");
    /// "mpEV"
    pub(crate) const EVENT: u32 = u32::from_le_bytes(*b"mpEV");
    /// "mpCV"
    pub(crate) const CONDITION: u32 = u32::from_le_bytes(*b"mpCV");
    /// "mpBR"
    pub(crate) const BARRIER: u32 = u32::from_le_bytes(*b"mpBR");
    /// "mpVA"
    pub(crate) const VALUE: u32 = u32::from_le_bytes(*b"mpVA");
}

fn kind_name(magic: u32) -> &'static str {
    match magic {
        magic::LOCK => "Lock",
        magic::RLOCK => "RLock",
        magic::SEMAPHORE => "Semaphore",
        magic::EVENT => "Event",
        magic::CONDITION => "Condition",
        magic::BARRIER => "Barrier",
        magic::VALUE => "Value",
        _ => "unknown object",
    }
}

/// Creates a region holding one fresh `C` (plus `extra` bytes) and stamps its header.
pub(crate) fn create_region<C: ShmSafe>(magic: u32, extra: usize) -> crate::Result<ShmRegion> {
    let region = ShmRegion::create(std::mem::size_of::<C>() + extra)?;
    stamp(&region, 0, magic)?;
    Ok(region)
}

/// Writes the header (magic, layout version) at `offset`.
pub(crate) fn stamp(region: &ShmRegion, offset: usize, magic: u32) -> crate::Result<()> {
    let header = view::<Header>(region, offset)?;
    header.version.store(LAYOUT_VERSION, Ordering::Relaxed);
    header.magic.store(magic, Ordering::Release);
    Ok(())
}

/// A view of a `C` at `offset`, or an `InvalidArgument` error if it does not fit.
pub(crate) fn view<C: ShmSafe>(region: &ShmRegion, offset: usize) -> crate::Result<&C> {
    region.view::<C>(offset).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "a {}-byte object does not fit at offset {offset} of a {}-byte region",
                std::mem::size_of::<C>(),
                region.len()
            ),
        )
    })
}

/// Checks that a `C` fits at `offset` and that its header says `magic`, in
/// this layout version: what a handle checks when it re-attaches.
pub(crate) fn check<C: ShmSafe>(
    region: &ShmRegion,
    offset: usize,
    magic: u32,
) -> crate::Result<()> {
    view::<C>(region, offset)?;
    let header = view::<Header>(region, offset)?;
    let found = header.magic.load(Ordering::Acquire);
    let version = header.version.load(Ordering::Relaxed);
    if found != magic {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "shared memory at {:?}+{offset} holds a {}, not a {}",
                region.name().unwrap_or("(anonymous)"),
                kind_name(found),
                kind_name(magic)
            ),
        ));
    }
    if version != LAYOUT_VERSION {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "{} at {:?} has layout version {version}; this build uses {LAYOUT_VERSION}",
                kind_name(magic),
                region.name().unwrap_or("(anonymous)")
            ),
        ));
    }
    Ok(())
}

/// A pre-resolved reference to the `C` at `offset`, after [`check`] (or
/// [`create_region`]) validated it.
pub(crate) fn shm_ref<C: ShmSafe>(region: ShmRegion, offset: usize) -> crate::Result<ShmRef<C>> {
    let len = region.len();
    ShmRef::new(region, offset).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "a {}-byte object does not fit at offset {offset} of a {len}-byte region",
                std::mem::size_of::<C>()
            ),
        )
    })
}

/// The `C` at `offset` of a region whose layout was checked when the handle
/// was made.
pub(crate) fn cell<C: ShmSafe>(region: &ShmRegion, offset: usize) -> &C {
    match region.view::<C>(offset) {
        Some(c) => c,
        // Every handle checks its region with `check` (or made it with
        // `create_region`) before it exists, and regions never shrink.
        None => unreachable!("shared object layout was checked when its handle was made"),
    }
}

/// The error of a lock operation, carrying the guard when the lock was in
/// fact obtained.
///
/// [`OwnerDied`](LockError::OwnerDied) is the cross-process counterpart of a
/// poisoned `std::sync::Mutex`: the previous holder died while holding the
/// lock, so the data it protects may be half-updated. The caller holds the
/// lock (the guard is inside) and can repair the data and go on; the lock
/// itself is already usable again, and only this one locker is told.
///
/// Every `LockError` converts into [`Error`] (kinds `OwnerDied`, `Timeout`,
/// or the underlying error's kind), so `?` works in functions returning
/// [`crate::Result`]; that drops the guard, releasing the lock.
///
/// # Examples
///
/// ```
/// use multiproc::sync::{Lock, LockError};
///
/// let lock = Lock::new()?;
/// let guard = match lock.lock() {
///     Ok(guard) => guard,
///     // A process died holding it: repair the shared data, then go on.
///     Err(LockError::OwnerDied(guard)) => guard,
///     Err(e) => return Err(e.into()),
/// };
/// drop(guard);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub enum LockError<G> {
    /// The previous owner died holding the lock; you hold it now (the guard).
    OwnerDied(G),
    /// A `try_` call found the lock held by someone else.
    WouldBlock,
    /// A `_timeout` call ran out of time.
    Timeout,
    /// Any other failure, such as locking a non-re-entrant [`Lock`] twice
    /// from one thread (`InvalidArgument`) or a system error (`Io`).
    Failed(Error),
}

/// The result of a lock operation: the guard, or a [`LockError`].
pub type LockResult<G> = std::result::Result<G, LockError<G>>;

impl<G> LockError<G> {
    /// The [`ErrorKind`] this error converts into.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LockError::OwnerDied(_) => ErrorKind::OwnerDied,
            LockError::WouldBlock | LockError::Timeout => ErrorKind::Timeout,
            LockError::Failed(e) => e.kind(),
        }
    }

    /// True for [`OwnerDied`](LockError::OwnerDied).
    pub fn is_owner_died(&self) -> bool {
        matches!(self, LockError::OwnerDied(_))
    }

    /// The guard, if the lock was obtained (only for `OwnerDied`).
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }

    /// Accepts a dead owner: `OwnerDied(guard)` becomes `Ok(guard)`, anything
    /// else becomes an [`Error`].
    ///
    /// # Errors
    ///
    /// Every variant except `OwnerDied`, converted into [`Error`].
    pub fn recover(self) -> crate::Result<G> {
        match self {
            LockError::OwnerDied(g) => Ok(g),
            other => Err(other.into()),
        }
    }

    /// Maps the guard inside (crate-internal plumbing between guard types).
    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
            LockError::WouldBlock => LockError::WouldBlock,
            LockError::Timeout => LockError::Timeout,
            LockError::Failed(e) => LockError::Failed(e),
        }
    }

    fn message(&self) -> String {
        match self {
            LockError::OwnerDied(_) => {
                "the previous owner died while holding the lock; it is now held by this thread"
                    .to_owned()
            }
            LockError::WouldBlock => "the lock is held by another thread or process".to_owned(),
            LockError::Timeout => "timed out waiting for the lock".to_owned(),
            LockError::Failed(e) => e.to_string(),
        }
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::WouldBlock => f.write_str("WouldBlock"),
            LockError::Timeout => f.write_str("Timeout"),
            LockError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl<G> std::error::Error for LockError<G> {}

impl<G> From<LockError<G>> for Error {
    fn from(e: LockError<G>) -> Error {
        match e {
            LockError::Failed(e) => e,
            other => Error::new(other.kind(), other.message()),
        }
    }
}

/// What the raw robust-mutex layer reports (before guards exist).
pub(crate) enum RawLocked {
    Fresh,
    OwnerDied,
}

/// Failures of the raw layer.
pub(crate) enum RawLockError {
    WouldBlock,
    Timeout,
    /// The calling thread already holds it.
    AlreadyHeld,
    Os(io::Error),
}

impl RawLockError {
    /// Converts into a [`LockError`], naming `what` in messages.
    pub(crate) fn into_lock_error<G>(self, what: &str) -> LockError<G> {
        match self {
            RawLockError::WouldBlock => LockError::WouldBlock,
            RawLockError::Timeout => LockError::Timeout,
            RawLockError::AlreadyHeld => LockError::Failed(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "this thread already holds the {what}; a {what} is not re-entrant \
                     (use an RLock)"
                ),
            )),
            RawLockError::Os(e) => {
                LockError::Failed(Error::io(format!("cannot lock the {what}"), e))
            }
        }
    }
}

/// How long a raw lock may wait.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    /// Not at all.
    Try,
    /// Until the deadline (`None`: forever).
    Until(Option<Instant>),
}
