//! [`PoolStats`]: a snapshot of a pool's work, cheap enough to poll.

use std::sync::atomic::Ordering;

use crate::executor::Executor;
use crate::pool::Pool;
use crate::shared::{lock, Shared};

/// What a [`Pool`] (or an [`Executor`]) is doing, at one instant.
///
/// A task is one `apply`/`submit`, or one chunk of a `map`/`imap` (a chunk
/// of `chunksize` items counts once). Totals count from the pool's start.
///
/// # Examples
///
/// ```
/// use multiproc::Pool;
///
/// fn square(x: u64) -> u64 { x * x }
/// fn boom(_: u64) -> u64 { panic!("no") }
///
/// let pool = Pool::new(2)?;
/// pool.map_chunksize(square, 0..100u64, 10)?;
/// let _ = pool.apply(boom, 1);
/// let s = pool.stats();
/// assert_eq!((s.completed, s.failed), (10, 1));
/// assert_eq!((s.queued, s.running), (0, 0));
/// assert_eq!(s.workers_alive, 2);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Tasks waiting for a worker.
    pub queued: usize,
    /// Tasks a worker has (queued at it, or running), and tasks taken out
    /// of the pool whose outcome is being delivered (a result read back, a
    /// cancellation): every task is in exactly one of `queued`, `running`,
    /// `completed` and `failed`.
    pub running: usize,
    /// Tasks that finished with a value.
    pub completed: u64,
    /// Tasks that finished with an error: a panic, a lost worker, a timeout,
    /// a cancellation or a termination (for a chunk: any of its items).
    pub failed: u64,
    /// Worker processes alive now.
    pub workers_alive: usize,
    /// Workers forked to replace one that died, was killed for a timeout, or
    /// reached `max_tasks_per_child`.
    pub workers_respawned: u64,
}

impl Shared {
    pub(crate) fn stats(&self) -> PoolStats {
        // A finished task leaves its worker (under the lock) before its
        // completion counts it (outside the lock, before its result
        // resolves): counting what a worker holds would miss it in between.
        // Under the lock nothing is submitted, dispatched or taken out of the
        // backlog, so every task submitted and not queued is running unless
        // it has been counted, whenever the counters are read.
        let g = lock(&self.inner);
        let workers_alive = g.workers.iter().filter(|w| w.child.is_some()).count();
        let queued = g.backlog.len();
        let submitted = self.counters.submitted.load(Ordering::Relaxed);
        let completed = self.counters.completed.load(Ordering::Relaxed);
        let failed = self.counters.failed.load(Ordering::Relaxed);
        drop(g);
        let counted = completed.saturating_add(failed);
        let running = submitted
            .saturating_sub(queued as u64)
            .saturating_sub(counted);
        PoolStats {
            queued,
            running: usize::try_from(running).unwrap_or(usize::MAX),
            completed,
            failed,
            workers_alive,
            workers_respawned: self.counters.respawned.load(Ordering::Relaxed),
        }
    }
}

impl Pool {
    /// A snapshot of the pool's tasks and workers (one lock, no system
    /// call).
    pub fn stats(&self) -> PoolStats {
        self.shared.stats()
    }
}

impl Executor {
    /// A snapshot of the executor's tasks and workers, as [`Pool::stats`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::Executor;
    /// fn square(x: u64) -> u64 { x * x }
    /// let ex = Executor::new(1)?;
    /// ex.submit(square, 3)?.result()?;
    /// assert_eq!(ex.stats().completed, 1);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn stats(&self) -> PoolStats {
        self.pool.shared.stats()
    }
}
