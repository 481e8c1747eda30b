//! `Barrier`: a cross-process barrier for a fixed number of parties.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{cell, create_region, deadline_after, magic, park, Parked};
use crate::error::{Error, ErrorKind};
use crate::process::catch_remote_panic;
use crate::shm::ShmRegion;
use crate::sys::fork::FnAddr;
use crate::sys::futex;
use crate::sys::layout::BarrierCell;
use crate::sys::mutex::Locked;

/// A cross-process barrier, Python's `multiprocessing.Barrier`.
///
/// `parties` processes (or threads) call [`wait`](Barrier::wait); all block
/// until the last one arrives, then all return, each with a distinct index in
/// `0..parties` (the arrival order). The barrier then starts over.
///
/// A waiter that times out, or an [`abort`](Barrier::abort), *breaks* the
/// barrier: every current and future waiter gets a `BrokenBarrier` error
/// until [`reset`](Barrier::reset). Handles are [`Clone`], inherited by forked
/// processes and serializable.
///
/// Python's `action` and `timeout` arguments are set with
/// [`Barrier::builder`]: the action runs in exactly one party (the last to
/// arrive) after all have arrived and before any is released; the timeout
/// is the default of [`wait`](Barrier::wait).
///
/// # Examples
///
/// ```
/// use multiproc::{sync::Barrier, ErrorKind};
/// use std::time::Duration;
///
/// let barrier = Barrier::new(1)?;
/// assert_eq!(barrier.wait()?, 0); // one party: passes at once
///
/// let pair = Barrier::new(2)?;
/// let e = pair.wait_timeout(Duration::from_millis(10)).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::BrokenBarrier); // nobody came
/// assert!(pair.broken());
/// pair.reset()?;
/// assert!(!pair.broken());
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Caveats
///
/// A party that dies before arriving is not noticed: an untimed
/// [`wait`](Barrier::wait) then waits for it forever, as in Python; give a
/// timeout (or [`abort`](Barrier::abort) from a supervisor) to be safe. A
/// party that dies inside the barrier's own short critical section (or in
/// its action) breaks it.
#[derive(Clone)]
pub struct Barrier {
    region: ShmRegion,
}

/// The barrier's internal mutex, held.
struct Held<'a>(&'a BarrierCell);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = self.0.mutex.unlock();
    }
}

fn broken_error(why: &str) -> Error {
    Error::new(ErrorKind::BrokenBarrier, why)
}

/// Builds a [`Barrier`] with Python's optional `action` and `timeout`
/// arguments; made by [`Barrier::builder`].
///
/// # Examples
///
/// ```
/// use multiproc::sync::Barrier;
/// use std::time::Duration;
///
/// fn all_arrived() {
///     println!("every party arrived");
/// }
///
/// let b = Barrier::builder(1)
///     .action(all_arrived)
///     .timeout(Duration::from_secs(5))
///     .build()?;
/// assert_eq!(b.wait()?, 0); // runs the action, then passes
/// assert_eq!(b.timeout(), Some(Duration::from_secs(5)));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct BarrierBuilder {
    parties: u32,
    action: Option<fn()>,
    timeout: Option<Duration>,
}

impl BarrierBuilder {
    /// Runs `action` once per passage, in the last party to arrive, after
    /// all have arrived and before any is released (Python's `action`).
    ///
    /// If it panics, the barrier breaks: that party's `wait` returns the
    /// panic (a [`TaskPanicked`](ErrorKind::TaskPanicked) error with
    /// [`Error::panic_info`]), every other party gets `BrokenBarrier`.
    /// The action may run in any process that waits on the barrier; it must
    /// not itself wait on, abort or reset this barrier.
    pub fn action(mut self, action: fn()) -> BarrierBuilder {
        self.action = Some(action);
        self
    }

    /// The default timeout of [`Barrier::wait`] (Python's `timeout`); an
    /// explicit [`Barrier::wait_timeout`] overrides it.
    pub fn timeout(mut self, timeout: Duration) -> BarrierBuilder {
        self.timeout = Some(timeout);
        self
    }

    /// Creates the barrier.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `parties` is 0; `Io` if shared memory cannot be
    /// created.
    pub fn build(self) -> crate::Result<Barrier> {
        if self.parties == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "a barrier needs at least 1 party",
            ));
        }
        let region = create_region::<BarrierCell>(magic::BARRIER, 0)?;
        let b = Barrier { region };
        let c = b.cell();
        let timeout_ns = self.timeout.map_or(u64::MAX, |t| {
            u64::try_from(t.as_nanos()).unwrap_or(u64::MAX - 1)
        });
        c.timeout_ns.store(timeout_ns, Ordering::Relaxed);
        if let Some(action) = self.action {
            let words = FnAddr::of(action).to_words();
            for (cell, w) in c.action.iter().zip(words) {
                cell.store(w, Ordering::Relaxed);
            }
        }
        c.parties.store(self.parties, Ordering::Release);
        Ok(b)
    }
}

impl Barrier {
    /// Creates a barrier for `parties` waiters, with no action and no
    /// default timeout.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `parties` is 0; `Io` if shared memory cannot be
    /// created.
    pub fn new(parties: u32) -> crate::Result<Barrier> {
        Barrier::builder(parties).build()
    }

    /// A builder for a barrier of `parties` waiters with an action or a
    /// default timeout (see [`BarrierBuilder`]).
    pub fn builder(parties: u32) -> BarrierBuilder {
        BarrierBuilder {
            parties,
            action: None,
            timeout: None,
        }
    }

    /// The default timeout of [`wait`](Barrier::wait), if one was set.
    pub fn timeout(&self) -> Option<Duration> {
        match self.cell().timeout_ns.load(Ordering::Relaxed) {
            u64::MAX => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// Runs the action, if any (the mutex held, every other party waiting).
    fn run_action(&self) -> crate::Result<()> {
        let c = self.cell();
        let words = [0, 1, 2].map(|i| c.action[i].load(Ordering::Relaxed));
        if words == [0; 3] {
            return Ok(());
        }
        let Some(action) = FnAddr::from_words(words).get::<fn()>() else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the barrier's action is not from this program",
            ));
        };
        catch_remote_panic(action).map_err(Error::panicked)
    }

    fn cell(&self) -> &BarrierCell {
        cell(&self.region, 0)
    }

    /// Locks the internal mutex. A process that died inside it may have left
    /// the counts half-updated: the barrier is then broken.
    fn hold(&self) -> crate::Result<Held<'_>> {
        let c = self.cell();
        match c.mutex.lock(None) {
            Ok(Locked::Ok) => Ok(Held(c)),
            Ok(Locked::OwnerDied) => {
                let held = Held(c);
                c.mutex
                    .consistent()
                    .map_err(|e| Error::io("cannot recover the barrier's mutex", e))?;
                Barrier::break_locked(c);
                Ok(held)
            }
            Err(e) => Err(Error::io("cannot lock the barrier's mutex", e)),
        }
    }

    /// Marks the barrier broken and wakes every waiter (mutex held).
    fn break_locked(c: &BarrierCell) {
        c.broken.store(1, Ordering::SeqCst);
        Barrier::announce(c);
    }

    fn announce(c: &BarrierCell) {
        c.seq.fetch_add(1, Ordering::SeqCst);
        if c.sleepers.load(Ordering::SeqCst) > 0 {
            futex::wake_all(&c.seq);
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> crate::Result<usize> {
        let c = self.cell();
        let held = self.hold()?;
        if c.broken.load(Ordering::Acquire) != 0 {
            return Err(broken_error("the barrier is broken"));
        }
        let generation = c.generation.load(Ordering::Acquire);
        let index = c.count.load(Ordering::Relaxed);
        let parties = c.parties.load(Ordering::Relaxed);
        if index + 1 >= parties {
            // The last party: run the action, then release everyone; an
            // action that fails breaks the barrier instead.
            if let Err(e) = self.run_action() {
                Barrier::break_locked(c);
                return Err(e);
            }
            c.count.store(0, Ordering::Relaxed);
            c.outcomes
                .fetch_and(!(1u64 << (generation % 64)), Ordering::SeqCst);
            c.generation
                .store(generation.wrapping_add(1), Ordering::SeqCst);
            Barrier::announce(c);
            return Ok(index as usize);
        }
        c.count.store(index + 1, Ordering::Relaxed);
        drop(held);
        loop {
            let seq = c.seq.load(Ordering::Acquire);
            if let Some(r) = self.outcome(generation, index) {
                return r;
            }
            if c.broken.load(Ordering::Acquire) != 0 {
                return self.leave_broken(
                    generation,
                    "the barrier was broken while waiting (an abort, a timeout or a failed action)",
                );
            }
            if park(&c.seq, seq, &c.sleepers, deadline) == Parked::TimedOut {
                let _held = self.hold()?;
                if let Some(r) = self.outcome(generation, index) {
                    return r;
                }
                if c.broken.load(Ordering::Acquire) == 0 {
                    Barrier::break_locked(c);
                }
                c.count
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .ok();
                return Err(broken_error("timed out waiting at the barrier"));
            }
        }
    }

    /// How generation `generation` ended, once it has.
    fn outcome(&self, generation: u32, index: u32) -> Option<crate::Result<usize>> {
        let c = self.cell();
        if c.generation.load(Ordering::Acquire) == generation {
            return None;
        }
        let reset = c.outcomes.load(Ordering::Acquire) >> (generation % 64) & 1 != 0;
        Some(if reset {
            Err(broken_error("the barrier was reset"))
        } else {
            Ok(index as usize)
        })
    }

    /// Leaves a broken barrier: no longer counted as waiting.
    fn leave_broken(&self, generation: u32, why: &str) -> crate::Result<usize> {
        let c = self.cell();
        let _held = self.hold()?;
        if let Some(r) = self.outcome(generation, 0) {
            // It was reset (or released) meanwhile; that decides.
            return r.and(Err(broken_error(why)));
        }
        c.count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .ok();
        Err(broken_error(why))
    }

    /// Waits until all parties have arrived; returns this party's index
    /// (`0..parties`, in arrival order). Waits at most the barrier's default
    /// [`timeout`](Barrier::timeout), if it has one, and then breaks it as
    /// [`wait_timeout`](Barrier::wait_timeout) does.
    ///
    /// # Errors
    ///
    /// `BrokenBarrier` if the barrier is or becomes broken (a timeout of
    /// this or another waiter, [`abort`](Barrier::abort),
    /// [`reset`](Barrier::reset) while waiting, or another party's action
    /// panicked); `TaskPanicked` in the party whose action panicked; `Io` if
    /// a system call fails.
    pub fn wait(&self) -> crate::Result<usize> {
        self.wait_until(self.timeout().and_then(deadline_after))
    }

    /// As [`wait`](Barrier::wait), for at most `timeout`; if the time runs
    /// out the barrier breaks, for every waiter.
    ///
    /// # Errors
    ///
    /// `BrokenBarrier` on timeout, and as [`wait`](Barrier::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> crate::Result<usize> {
        self.wait_until(deadline_after(timeout))
    }

    /// Breaks the barrier: current and future waiters get `BrokenBarrier`
    /// until [`reset`](Barrier::reset).
    ///
    /// # Errors
    ///
    /// `Io` if the internal mutex cannot be locked.
    pub fn abort(&self) -> crate::Result<()> {
        let _held = self.hold()?;
        Barrier::break_locked(self.cell());
        Ok(())
    }

    /// Returns the barrier to its initial, unbroken state; processes waiting
    /// now get `BrokenBarrier`.
    ///
    /// # Errors
    ///
    /// `Io` if the internal mutex cannot be locked.
    pub fn reset(&self) -> crate::Result<()> {
        let c = self.cell();
        let _held = self.hold()?;
        let generation = c.generation.load(Ordering::Acquire);
        c.outcomes
            .fetch_or(1u64 << (generation % 64), Ordering::SeqCst);
        c.count.store(0, Ordering::Relaxed);
        c.broken.store(0, Ordering::SeqCst);
        c.generation
            .store(generation.wrapping_add(1), Ordering::SeqCst);
        Barrier::announce(c);
        Ok(())
    }

    /// The number of parties needed to pass.
    pub fn parties(&self) -> usize {
        self.cell().parties.load(Ordering::Relaxed) as usize
    }

    /// The number of parties waiting now.
    pub fn n_waiting(&self) -> usize {
        self.cell().count.load(Ordering::Relaxed) as usize
    }

    /// True if the barrier is broken.
    pub fn broken(&self) -> bool {
        self.cell().broken.load(Ordering::Acquire) != 0
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("timeout", &self.timeout())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish()
    }
}

region_serde!(Barrier, BarrierCell, magic::BARRIER);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_pass_with_distinct_indices_and_abort_breaks_all() {
        let b = Barrier::new(3).unwrap();
        for _round in 0..3 {
            let mut idx: Vec<usize> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..3).map(|_| s.spawn(|| b.wait().unwrap())).collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            idx.sort();
            assert_eq!(idx, [0, 1, 2]);
        }
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| s.spawn(|| b.wait_timeout(Duration::from_secs(10))))
                .collect();
            while b.n_waiting() < 2 {
                std::thread::sleep(Duration::from_millis(1));
            }
            b.abort().unwrap();
            for h in hs {
                assert_eq!(
                    h.join().unwrap().unwrap_err().kind(),
                    ErrorKind::BrokenBarrier
                );
            }
        });
        assert!(b.broken());
        assert_eq!(b.n_waiting(), 0);
        assert_eq!(b.wait().unwrap_err().kind(), ErrorKind::BrokenBarrier);
        b.reset().unwrap();
        assert!(Barrier::new(0).is_err());
    }
}
