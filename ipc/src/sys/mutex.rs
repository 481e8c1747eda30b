//! A robust, process-shared pthread mutex that lives in shared memory.
//!
//! If the thread holding it dies (its process killed), the next locker, and
//! one already waiting, gets [`Locked::OwnerDied`] and must call
//! [`RobustMutex::consistent`] before unlocking, else the mutex becomes
//! unusable (`ENOTRECOVERABLE`).
//!
//! Fresh shared memory is all zeroes; the mutex initialises itself on first
//! use (an init word moves 0 → 1 → 2 under compare-and-swap), so placing one
//! in a region needs no separate, easy-to-misuse init step.

use std::cell::UnsafeCell;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::shm::ShmSafe;

const UNINIT: u32 = 0;
/// `INITIALIZING | pid`: process `pid` is initialising the pthread object.
const INITIALIZING: u32 = 1 << 31;
const READY: u32 = 2;

/// The longest a locker sleeps before it looks at the mutex again (see
/// [`RobustMutex::lock`]).
pub(crate) const WAIT_SLICE: Duration = Duration::from_millis(100);

/// A robust process-shared mutex; `#[repr(C)]`, 48 bytes, 8-aligned.
#[repr(C)]
pub(crate) struct RobustMutex {
    init: AtomicU32,
    _pad: u32,
    raw: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: all-zero bytes are the valid "not yet initialised" state (init word
// 0); the pthread object is initialised process-shared exactly once, under the
// init word, and then only used through pthread calls that are safe across
// processes and threads; it contains no pointers that matter across processes
// (glibc's robust list entry is rewritten by each locker).
unsafe impl ShmSafe for RobustMutex {}
// SAFETY: pthread mutexes are designed for concurrent use from many threads.
unsafe impl Sync for RobustMutex {}

/// How a lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    /// Normally.
    Ok,
    /// The previous owner died holding it; the protected state may be
    /// inconsistent. Call `consistent` before unlocking to keep the mutex usable.
    OwnerDied,
}

impl RobustMutex {
    /// Initialises the pthread object on first use. Inlined: after the first
    /// call it is one load; the rest lives in [`init_slow`](Self::init_slow).
    #[inline]
    fn ensure_init(&self) -> io::Result<()> {
        if self.init.load(Ordering::Acquire) == READY {
            return Ok(());
        }
        self.init_slow()
    }

    #[cold]
    fn init_slow(&self) -> io::Result<()> {
        // getpid is a system call: only paid here, never on the hot path.
        let me = INITIALIZING | (std::process::id() & !INITIALIZING);
        let mut spins = 0u32;
        loop {
            match self.init.load(Ordering::Acquire) {
                READY => return Ok(()),
                UNINIT => {
                    if self
                        .init
                        .compare_exchange(UNINIT, me, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        let r = self.init_raw();
                        // On failure go back to UNINIT so a later call can retry.
                        self.init
                            .store(if r.is_ok() { READY } else { UNINIT }, Ordering::Release);
                        return r;
                    }
                }
                state => {
                    // Someone is initialising. If that process died half-way
                    // (SIGKILLed between the two stores), take over instead of
                    // waiting forever: the object was never handed out.
                    spins = spins.wrapping_add(1);
                    if spins % 64 == 0 {
                        let pid = (state & !INITIALIZING) as i32;
                        if state & INITIALIZING != 0 && !super::shm::pid_alive(pid) {
                            let _ = self.init.compare_exchange(
                                state,
                                UNINIT,
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            );
                            continue;
                        }
                    }
                    std::thread::yield_now()
                }
            }
        }
    }

    fn init_raw(&self) -> io::Result<()> {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: attr is initialised by pthread_mutexattr_init before any
        // other use and destroyed at the end; `raw` is ours alone while the
        // init word is INITIALIZING (no other process touches it until READY).
        unsafe {
            check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let a = attr.as_mut_ptr();
            let r = check(libc::pthread_mutexattr_setpshared(
                a,
                libc::PTHREAD_PROCESS_SHARED,
            ))
            .and_then(|_| {
                check(libc::pthread_mutexattr_setrobust(
                    a,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))
            })
            .and_then(|_| {
                check(libc::pthread_mutexattr_settype(
                    a,
                    libc::PTHREAD_MUTEX_ERRORCHECK,
                ))
            })
            .and_then(|_| check(libc::pthread_mutex_init(self.raw.get(), a)));
            libc::pthread_mutexattr_destroy(a);
            r
        }
    }

    /// Locks, waiting at most `timeout` (forever if `None`).
    ///
    /// The wait sleeps in slices of at most [`WAIT_SLICE`]. An unlock wakes
    /// one sleeper; if that one is SIGKILLed before it takes the mutex, the
    /// kernel does not pass the wake-up on in every window, and the other
    /// sleepers would sleep on beside a free mutex until their own timeout,
    /// or for ever. Sliced, such a lost wake-up costs at most one slice.
    ///
    /// Errors: `TimedOut` when the time ran out; `EDEADLK` if this thread
    /// already holds it; `ENOTRECOVERABLE` if an owner died and nobody made it
    /// consistent.
    pub(crate) fn lock(&self, timeout: Option<Duration>) -> io::Result<Locked> {
        self.ensure_init()?;
        // None: no timeout, or one too far to count.
        let deadline = timeout.and_then(|d| Instant::now().checked_add(d));
        loop {
            let (slice, last) = match deadline {
                None => (WAIT_SLICE, false),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    (left.min(WAIT_SLICE), left <= WAIT_SLICE)
                }
            };
            let abs = monotonic_deadline(slice)?;
            // SAFETY: `raw` is an initialised process-shared mutex; `abs` is
            // a valid absolute CLOCK_MONOTONIC time, so wall-clock steps do
            // not stretch or cut the wait. A time already past still makes
            // one attempt to take it.
            let r = unsafe { pthread_mutex_clocklock(self.raw.get(), libc::CLOCK_MONOTONIC, &abs) };
            if r == libc::ETIMEDOUT && !last {
                continue;
            }
            return outcome(r);
        }
    }

    /// Locks if free right now; `Ok(None)` if someone holds it.
    pub(crate) fn try_lock(&self) -> io::Result<Option<Locked>> {
        self.ensure_init()?;
        // SAFETY: `raw` is an initialised process-shared mutex.
        let r = unsafe { libc::pthread_mutex_trylock(self.raw.get()) };
        if r == libc::EBUSY {
            return Ok(None);
        }
        outcome(r).map(Some)
    }

    /// Marks the state protected by a mutex obtained with `OwnerDied` as repaired.
    pub(crate) fn consistent(&self) -> io::Result<()> {
        // SAFETY: `raw` is initialised (we hold it, so lock ran ensure_init).
        check(unsafe { libc::pthread_mutex_consistent(self.raw.get()) })
    }

    /// True if the calling thread holds the mutex.
    ///
    /// glibc keeps the owner's thread id in the low 30 bits of the mutex's
    /// first word (the futex word) while it is held, for robust mutexes too.
    pub(crate) fn held_by_caller(&self) -> bool {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        self.owner() == Some(tid)
    }

    /// The thread id of the holder, from any thread or process (a
    /// snapshot); `None` while free, or when its holder died and nobody
    /// has locked it since.
    ///
    /// glibc keeps the owner's thread id in the low 30 bits of the mutex's
    /// first word (the futex word) while it is held, for robust mutexes too.
    pub(crate) fn owner(&self) -> Option<u32> {
        if self.init.load(Ordering::Acquire) != READY {
            return None;
        }
        const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
        // Set by the kernel when the owner died: then nobody holds it, even a
        // new thread that happens to reuse the dead owner's id.
        const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
        // SAFETY: pthread_mutex_t is at least 4 bytes, 4-aligned (it is
        // 8-aligned at offset 8 of this repr(C) struct), and glibc accesses its
        // first word only atomically, so an atomic load of it is not a data race.
        let word = unsafe { &*(self.raw.get() as *const AtomicU32) }.load(Ordering::Acquire);
        let tid = word & FUTEX_TID_MASK;
        (word & FUTEX_OWNER_DIED == 0 && tid != 0).then_some(tid)
    }

    /// Unlocks; `EPERM` if the calling thread does not hold it.
    pub(crate) fn unlock(&self) -> io::Result<()> {
        if self.init.load(Ordering::Acquire) != READY {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        // SAFETY: `raw` is initialised; an error-checking mutex reports EPERM
        // instead of misbehaving when the caller is not the owner.
        check(unsafe { libc::pthread_mutex_unlock(self.raw.get()) })
    }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

fn outcome(r: libc::c_int) -> io::Result<Locked> {
    match r {
        0 => Ok(Locked::Ok),
        libc::EOWNERDEAD => Ok(Locked::OwnerDied),
        libc::ETIMEDOUT => Err(io::Error::new(io::ErrorKind::TimedOut, "lock timed out")),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

extern "C" {
    // glibc >= 2.30; the libc crate does not declare it yet.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// Now plus `d` on CLOCK_MONOTONIC.
pub(crate) fn monotonic_deadline(d: Duration) -> io::Result<libc::timespec> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    super::cvt(unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) })?;
    let total_ns = now.tv_nsec as u128 + d.subsec_nanos() as u128;
    let secs = (now.tv_sec as u128)
        .saturating_add(d.as_secs() as u128)
        .saturating_add(total_ns / 1_000_000_000)
        .min(i64::MAX as u128 / 2);
    Ok(libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: (total_ns % 1_000_000_000) as libc::c_long,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroed() -> Box<RobustMutex> {
        Box::new(RobustMutex {
            init: AtomicU32::new(0),
            _pad: 0,
            // SAFETY: an all-zero pthread_mutex_t is a valid bit pattern (it is
            // re-initialised by ensure_init before use anyway).
            raw: UnsafeCell::new(unsafe { std::mem::zeroed() }),
        })
    }

    #[test]
    fn layout_is_pinned() {
        assert_eq!(std::mem::size_of::<RobustMutex>(), 48);
        assert_eq!(std::mem::align_of::<RobustMutex>(), 8);
    }

    #[test]
    fn lock_unlock_trylock_and_errors() {
        let m = zeroed();
        assert_eq!(m.unlock().unwrap_err().raw_os_error(), Some(libc::EPERM));
        assert_eq!(m.lock(None).unwrap(), Locked::Ok);
        assert_eq!(
            m.lock(None).unwrap_err().raw_os_error(),
            Some(libc::EDEADLK)
        );
        assert!(m.held_by_caller());
        m.unlock().unwrap();
        assert!(!m.held_by_caller());
        assert_eq!(m.try_lock().unwrap(), Some(Locked::Ok));
        let m2: &'static RobustMutex = Box::leak(m);
        let other = std::thread::spawn(move || {
            assert!(!m2.held_by_caller());
            let busy = m2.try_lock().unwrap();
            let t = std::time::Instant::now();
            let timed = m2.lock(Some(Duration::from_millis(30))).unwrap_err();
            (busy, timed.kind(), t.elapsed())
        })
        .join()
        .unwrap();
        assert_eq!(other.0, None);
        assert_eq!(other.1, io::ErrorKind::TimedOut);
        assert!(other.2 >= Duration::from_millis(18));
        m2.unlock().unwrap();
    }

    #[test]
    fn a_dead_initialiser_does_not_block_others() {
        let m = zeroed();
        // A process that no longer exists (pid far above pid_max) was
        // initialising it when it died.
        m.init.store(INITIALIZING | 0x7fff_fff0, Ordering::SeqCst);
        let t = std::time::Instant::now();
        assert_eq!(m.lock(Some(Duration::from_secs(5))).unwrap(), Locked::Ok);
        assert!(t.elapsed() < Duration::from_secs(5));
        m.unlock().unwrap();
    }

    /// The futex word (glibc keeps the owner's tid and the waiters bit in
    /// the mutex's first word).
    fn word(m: &RobustMutex) -> &AtomicU32 {
        // SAFETY: as in `owner`: the first word is 4-aligned and glibc only
        // accesses it atomically.
        unsafe { &*(m.raw.get() as *const AtomicU32) }
    }

    #[test]
    fn a_lost_wake_up_costs_a_slice_not_the_whole_wait() {
        const FUTEX_WAITERS: u32 = 0x8000_0000;
        let m: &'static RobustMutex = Box::leak(zeroed());
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            m.lock(None).unwrap();
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            // Release the way an unlocker SIGKILLed between its release and
            // its wake-up leaves it: the word cleared, no sleeper woken.
            word(m).store(0, Ordering::SeqCst);
        });
        held_rx.recv().unwrap();
        let waiter = std::thread::spawn(move || {
            let t = std::time::Instant::now();
            let r = m.lock(Some(Duration::from_secs(30)));
            let waited = t.elapsed();
            if r.is_ok() {
                m.unlock().unwrap();
            }
            (r.map_err(|e| e.kind()), waited)
        });
        // Once the waiter sleeps in the kernel (it set the waiters bit),
        // release without waking it.
        let t = std::time::Instant::now();
        while word(m).load(Ordering::SeqCst) & FUTEX_WAITERS == 0 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the waiter never slept"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        go_tx.send(()).unwrap();
        holder.join().unwrap();
        let (r, waited) = waiter.join().unwrap();
        assert_eq!(r, Ok(Locked::Ok));
        // Unsliced, it slept its whole 30 s.
        assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    }

    #[test]
    fn dead_owner_thread_is_reported_and_recoverable() {
        let m: &'static RobustMutex = Box::leak(zeroed());
        std::thread::spawn(move || {
            m.lock(None).unwrap();
            // Exits holding it.
        })
        .join()
        .unwrap();
        assert_eq!(m.lock(None).unwrap(), Locked::OwnerDied);
        m.consistent().unwrap();
        m.unlock().unwrap();
        assert_eq!(m.lock(None).unwrap(), Locked::Ok);
        m.unlock().unwrap();
    }
}
