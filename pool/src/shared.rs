//! The parent-side state of a pool, shared by the caller's threads, the
//! result thread and the supervisor: tasks, workers, and task records.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use multiproc_ipc::fd::FdScope;
use multiproc_ipc::shared_bytes::EncodeScope;
use multiproc_ipc::shm::{SharedMemory, ShmRegion};
use multiproc_ipc::{codec, park, Error, ErrorKind, Result, Zygote, ZygoteChild};
use serde::Serialize;

use crate::builder::Config;
use crate::collector::{pump, Collected};
use crate::map::Deliver;
use crate::record::Record;
use crate::result::Help;
use crate::ring::Bell;
use crate::supervisor::Event;
use crate::task::{KIND_BLOCK, KIND_INLINE};
use crate::worker::{self, SlotView, KIND_FDS, KIND_IN_PLACE};

/// Tasks a worker may have queued in its ring at once, by default.
pub(crate) const MAX_OUTSTANDING: usize = 256;
/// How long the collector spins for results before it sleeps.
pub(crate) const COLLECT_SPIN: Duration = Duration::from_micros(50);
/// How long a worker spins for its next task before it sleeps.
pub(crate) const WORKER_SPIN: Duration = Duration::from_micros(200);
/// How long `join` and `terminate` wait for a worker to exit before killing it.
pub(crate) const EXIT_GRACE: Duration = Duration::from_secs(10);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Running,
    Closed,
    /// `join` is stopping the workers.
    Stopping,
    Terminated,
}

/// What to do with a task's outcome bytes (or its failure), in the parent.
///
/// It runs exactly once. One that is dropped without having run (a task
/// discarded on any path: terminate, a broken pool, a pool dropped while a
/// map was still being submitted) runs with a [`ErrorKind::NotRunning`]
/// error, so that no result can be left waiting for ever.
pub(crate) struct Completion(Option<OnOutcome>);

/// Runs on a task's outcome, and counts it in the pool's totals before it
/// resolves anything (a caller woken by the result sees it counted).
enum OnOutcome {
    /// Any work: callbacks, progress, a map's gathering.
    Run(RunOutcome),
    /// Only decode the outcome into a result cell, the commonest case (a
    /// plain `apply_async`): the cell is the completion, so the task needs
    /// no allocation of its own for it.
    Resolve(Arc<dyn Resolve>),
    /// Hand a map chunk's outcome to its map: `deliver(first, n, ..)` for
    /// the chunk of `n` items from index `first` (no allocation per chunk).
    Chunk(Arc<Deliver>, usize, usize),
}

type RunOutcome = Box<dyn FnOnce(Result<&[u8]>, &Counters) + Send>;

/// A result cell that decodes a task's outcome bytes itself.
pub(crate) trait Resolve: Send + Sync {
    /// Decodes `outcome`, counts it in `stats`, and resolves the cell.
    fn resolve_outcome(&self, outcome: Result<&[u8]>, stats: &Counters);
}

impl OnOutcome {
    fn run(self, outcome: Result<&[u8]>, stats: &Counters) {
        match self {
            OnOutcome::Run(f) => f(outcome, stats),
            OnOutcome::Resolve(cell) => cell.resolve_outcome(outcome, stats),
            OnOutcome::Chunk(deliver, first, n) => deliver(first, n, outcome, stats),
        }
    }
}

impl Completion {
    pub(crate) fn new(f: impl FnOnce(Result<&[u8]>, &Counters) + Send + 'static) -> Completion {
        Completion(Some(OnOutcome::Run(Box::new(f))))
    }

    /// A completion that only resolves `cell` with the decoded outcome.
    pub(crate) fn resolve(cell: Arc<dyn Resolve>) -> Completion {
        Completion(Some(OnOutcome::Resolve(cell)))
    }

    /// A completion that hands a map chunk's outcome to `deliver`.
    pub(crate) fn chunk(deliver: Arc<Deliver>, first: usize, n: usize) -> Completion {
        Completion(Some(OnOutcome::Chunk(deliver, first, n)))
    }

    /// A completion that does nothing (left behind by one already run).
    pub(crate) fn done() -> Completion {
        Completion(None)
    }

    /// Runs the completion with the task's outcome; it counts it in `stats`.
    pub(crate) fn complete(mut self, outcome: Result<&[u8]>, stats: &Counters) {
        if let Some(f) = self.0.take() {
            f.run(outcome, stats);
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            // Only a pool being torn down drops a completion: nobody reads
            // its totals any more.
            f.run(Err(terminated()), &Counters::default());
        }
    }
}

/// The pool's running totals (see [`PoolStats`](crate::PoolStats)).
#[derive(Default)]
pub(crate) struct Counters {
    /// Tasks submitted (queued or dispatched at once), each counted once, by
    /// `collector::dispatch_new`, under the pool's lock. Every one is
    /// eventually counted `completed` or `failed`.
    pub(crate) submitted: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) respawned: AtomicU64,
}

impl Counters {
    /// Counts one finished task.
    pub(crate) fn count(&self, succeeded: bool) {
        let c = if succeeded {
            &self.completed
        } else {
            &self.failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The error of a task cancelled before it started.
pub(crate) fn cancelled(id: u64) -> Error {
    Error::new(
        ErrorKind::Cancelled,
        format!("task {id} was cancelled before it started"),
    )
}

/// The error of a task that a terminated pool will never run.
pub(crate) fn terminated() -> Error {
    Error::new(
        ErrorKind::NotRunning,
        "the pool was terminated before the task finished",
    )
}

/// What a task record keeps alive besides its bytes until the task ends.
pub(crate) struct Attached {
    /// The shared-memory block of a large argument.
    pub(crate) shm: Option<SharedMemory>,
    /// The descriptors of the argument's `Fd`s, sent to the worker that
    /// gets the task just before its record (again if it is requeued after
    /// its worker died).
    pub(crate) fds: Vec<OwnedFd>,
}

pub(crate) struct Pending {
    pub(crate) id: u64,
    pub(crate) record: Record,
    /// Keeps a large argument's block and the argument's descriptors alive
    /// until the task ends (boxed, as most tasks have neither: a task
    /// record moves from queue to queue, and a backlog of a million tiny
    /// tasks is a million of them).
    pub(crate) block: Option<Box<Attached>>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) complete: Completion,
    /// Its position in its worker's ring once dispatched (the worker's
    /// `dispatched` count then), naming its claim word.
    pub(crate) pos: u64,
    /// Cancelled while queued at a worker: already resolved, it waits for
    /// the worker to skip it and is never run again nor failed.
    pub(crate) cancelled: bool,
}

impl Pending {
    /// A new task, not dispatched yet.
    #[inline(always)]
    pub(crate) fn new(
        id: u64,
        record: Record,
        block: Option<Box<Attached>>,
        timeout: Option<Duration>,
        complete: Completion,
    ) -> Pending {
        Pending {
            id,
            record,
            block,
            timeout,
            deadline: None,
            complete,
            pos: 0,
            cancelled: false,
        }
    }

    /// Cancels this task, queued at the worker `view` shows, if that worker
    /// has not started it; returns its completion to run (a no-op one stays
    /// behind until the worker skips the task).
    fn cancel_at(&mut self, view: &SlotView) -> Option<Completion> {
        if self.cancelled || !view.try_cancel(self.pos, self.id) {
            return None;
        }
        self.cancelled = true;
        // Never run: no timeout to watch.
        self.deadline = None;
        Some(std::mem::replace(&mut self.complete, Completion::done()))
    }
}

pub(crate) struct WorkerSlot {
    pub(crate) view: SlotView,
    /// The socket on which the worker receives its tasks' descriptors.
    pub(crate) fd_tx: UnixStream,
    pub(crate) child: Option<Arc<ZygoteChild>>,
    pub(crate) pid: i32,
    pub(crate) generation: u64,
    /// Tasks in its ring, in order (it runs them first to last).
    pub(crate) outstanding: VecDeque<Pending>,
    pub(crate) dispatched: u64,
    /// The worker's finished count at the last look: it only grows, so
    /// `dispatched - seen_finished` never undercounts the tasks still to run.
    pub(crate) seen_finished: u64,
    /// Runs a task with a timeout: gets nothing else meanwhile.
    pub(crate) timed: bool,
    /// The task it was killed for, by its timeout.
    pub(crate) timed_out: Option<u64>,
    pub(crate) staged: Option<u64>,
    /// Its initializer has finished (always true without an initializer).
    pub(crate) ready: bool,
    /// The error its initializer failed with, as it reported it.
    pub(crate) init_error: Option<Error>,
}

impl WorkerSlot {
    /// Tasks dispatched to this worker that it has not finished (queued or
    /// running).
    pub(crate) fn unfinished(&mut self) -> u64 {
        self.seen_finished = self.view.finished().load(Ordering::Acquire);
        self.dispatched.saturating_sub(self.seen_finished)
    }

    /// True if the last look at its finished count showed every task
    /// dispatched to it finished: then it is idle now (no new look needed).
    /// A look from before the worker was replaced (a count above
    /// `dispatched`) shows nothing: the next choice looks again.
    pub(crate) fn seen_idle(&self) -> bool {
        self.dispatched == self.seen_finished
    }

    pub(crate) fn accepts(&self, config: &Config, needs_idle: bool) -> bool {
        self.child.is_some()
            && !self.timed
            && self.timed_out.is_none()
            && self.outstanding.len() < config.queue_per_worker
            && config.max_tasks.is_none_or(|m| self.dispatched < m)
            && (!needs_idle || self.outstanding.is_empty())
    }
}

pub(crate) struct Inner {
    pub(crate) state: State,
    pub(crate) workers: Vec<WorkerSlot>,
    /// Tasks waiting for a worker, in submission order.
    pub(crate) backlog: VecDeque<Pending>,
    pub(crate) zygote: Option<Zygote>,
    /// Set when the pool cannot run tasks any more (no worker can be
    /// forked, or the initializer keeps failing): the error every pending
    /// and later task fails with.
    pub(crate) broken: Option<Error>,
    /// Workers whose initializer failed since a task last finished.
    pub(crate) init_failures: u32,
}

impl Inner {
    /// Tasks submitted and not finished.
    pub(crate) fn pending(&self) -> usize {
        self.backlog.len()
            + self
                .workers
                .iter()
                .map(|w| w.outstanding.len())
                .sum::<usize>()
    }

    /// Takes every unfinished task (terminate, or a broken pool).
    pub(crate) fn take_all(&mut self) -> Vec<Pending> {
        let mut all: Vec<Pending> = self.backlog.drain(..).collect();
        for w in &mut self.workers {
            all.extend(w.outstanding.drain(..));
            w.timed = false;
        }
        all
    }
}

pub(crate) struct Shared {
    pub(crate) inner: Mutex<Inner>,
    /// Notified when `tasks` becomes empty.
    pub(crate) idle: Condvar,
    pub(crate) region: ShmRegion,
    pub(crate) parent_bell: Bell,
    pub(crate) result_rings: Vec<crate::ring::Ring>,
    pub(crate) events: Mutex<Vec<Event>>,
    pub(crate) event_flag: AtomicBool,
    /// How many times a task with a deadline has been dispatched. The
    /// result thread enforces deadlines and sleeps until the next one; a
    /// waiting caller's pump may take in the event flag first, so the
    /// result thread compares this count with the one it last saw.
    pub(crate) deadlines: AtomicU64,
    pub(crate) watch: Mutex<Vec<(usize, u64, Arc<ZygoteChild>)>>,
    pub(crate) wake_tx: UnixStream,
    pub(crate) shutdown: AtomicBool,
    pub(crate) callback_panics: Arc<AtomicU64>,
    /// The next task id.
    pub(crate) next_id: AtomicU64,
    /// Large-payload blocks kept for reuse.
    pub(crate) spare_blocks: Mutex<Vec<SharedMemory>>,
    /// Threads collecting results while they wait (see [`Help`]); the
    /// result thread stays asleep while there are any.
    pub(crate) helpers: AtomicU32,
    pub(crate) config: Config,
    pub(crate) counters: Counters,
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
        col.complete_all(self);
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

pub(crate) fn check_state(g: &Inner) -> Result<()> {
    if let Some(e) = &g.broken {
        return Err(e.clone());
    }
    match g.state {
        State::Running => Ok(()),
        State::Closed | State::Stopping => {
            Err(Error::new(ErrorKind::NotRunning, "the pool is closed"))
        }
        State::Terminated => Err(Error::new(ErrorKind::NotRunning, "the pool was terminated")),
    }
}

/// The record of a task whose body is the first `len` bytes of `block`:
/// `[len u64][block name]` after the head.
fn block_record(template: &[u8], id: u64, len: usize, block: &SharedMemory) -> Result<Record> {
    let name = block.name().as_bytes();
    Record::build(template, KIND_BLOCK, id, 8 + name.len(), |out| {
        out[..8].copy_from_slice(&(len as u64).to_le_bytes());
        out[8..8 + name.len()].copy_from_slice(name);
        Ok(8 + name.len())
    })
}

/// The most bytes of task body that travel inline in a ring record.
pub(crate) const INLINE_MAX: usize = worker::RING_CAP / 2 - 256;

/// How many large-payload blocks the pool keeps for reuse (their pages stay
/// mapped in the parent and in the workers: no page faults on reuse).
pub(crate) const SPARE_BLOCKS: usize = 4;

/// A task record ready to queue: its id, its bytes, and what they need kept
/// alive (the block that holds a large body, the descriptors of its `Fd`s),
/// boxed and only when there is any, as in [`Pending::block`]: an
/// `Attached` is about 190 bytes, and this moves from the encoder to the
/// queue.
pub(crate) type Encoded = (u64, Record, Option<Box<Attached>>);

/// The descriptors a task's argument carries (none without attachments).
pub(crate) fn attached_fds(block: &Option<Box<Attached>>) -> &[OwnedFd] {
    block.as_deref().map_or(&[], |b| &b.fds)
}

impl Shared {
    /// Cancels task `id` if no worker has started it: taken out of the
    /// queue, or, queued at a worker, claimed before the worker does (the
    /// worker then skips it). Its completion runs with
    /// [`ErrorKind::Cancelled`]. True if cancelled here.
    pub(crate) fn cancel(&self, id: u64) -> bool {
        let complete = {
            let mut g = lock(&self.inner);
            match g.backlog.iter().position(|p| p.id == id) {
                Some(i) => g.backlog.remove(i).map(|p| p.complete),
                None => g.workers.iter_mut().find_map(|w| {
                    let p = w.outstanding.iter_mut().find(|p| p.id == id)?;
                    p.cancel_at(&w.view)
                }),
            }
        };
        match complete {
            Some(c) => {
                c.complete(Err(cancelled(id)), &self.counters);
                self.idle.notify_all();
                true
            }
            None => false,
        }
    }

    /// Cancels every task no worker has started (as
    /// [`cancel`](Shared::cancel)); returns how many.
    pub(crate) fn cancel_queued(&self) -> usize {
        let removed: Vec<(u64, Completion)> = {
            let mut g = lock(&self.inner);
            let mut all: Vec<(u64, Completion)> =
                g.backlog.drain(..).map(|p| (p.id, p.complete)).collect();
            for w in &mut g.workers {
                for p in w.outstanding.iter_mut() {
                    if let Some(c) = p.cancel_at(&w.view) {
                        all.push((p.id, c));
                    }
                }
            }
            all
        };
        let n = removed.len();
        for (id, complete) in removed {
            complete.complete(Err(cancelled(id)), &self.counters);
        }
        self.idle.notify_all();
        n
    }

    /// True while task `id` waits: in the queue, or at a worker that has
    /// not started it.
    pub(crate) fn is_queued(&self, id: u64) -> bool {
        let g = lock(&self.inner);
        g.backlog.iter().any(|p| p.id == id)
            || g.workers.iter().any(|w| {
                w.outstanding
                    .iter()
                    .any(|p| p.id == id && !p.cancelled && w.view.is_unstarted(p.pos, id))
            })
    }

    /// Builds the record of a new task from `template` (see
    /// [`task::head_template`]) and its body `value`: inline when small,
    /// else with the body encoded straight into a (reused) shared-memory
    /// block. Needs no lock: ids come from an atomic counter.
    ///
    /// The descriptors of the `Fd`s in `value` are collected on the side
    /// (duplicates, kept until the task ends) and the record's kind gets
    /// the [`KIND_FDS`] flag; without any, this costs a flag test. A body in
    /// a block that holds [`SharedBytes`](multiproc_ipc::SharedBytes) gets
    /// the [`KIND_IN_PLACE`] flag.
    pub(crate) fn build_record<T: Serialize + ?Sized>(
        &self,
        template: &[u8],
        value: &T,
    ) -> Result<Encoded> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let c = codec::Codec::default();
        let scope = FdScope::begin();
        let shared_bytes = EncodeScope::begin();
        let len = c.encoded_len(value)?;
        if len <= INLINE_MAX {
            let mut rec = Record::build(template, KIND_INLINE, id, len, |out| {
                Ok(c.encode_into_slice(value, out)?)
            })?;
            let fds = scope.finish()?;
            if fds.is_empty() {
                return Ok((id, rec, None));
            }
            rec[0] |= KIND_FDS;
            return Ok((id, rec, Some(Box::new(Attached { shm: None, fds }))));
        }
        let mut block = self.take_block(len)?;
        // Straight into the mapping (a slice writer: each primitive is a
        // short inlined copy).
        let mut w: &mut [u8] = block.as_mut_slice();
        c.encode_to_writer(value, &mut w)?;
        let fds = scope.finish()?;
        let mut rec = block_record(template, id, len, &block)?;
        if !fds.is_empty() {
            rec[0] |= KIND_FDS;
        }
        if shared_bytes.finish() {
            rec[0] |= KIND_IN_PLACE;
        }
        let attached = Attached {
            shm: Some(block),
            fds,
        };
        Ok((id, rec, Some(Box::new(attached))))
    }

    /// Builds the record of a chunk of up to `n` plain numbers pulled from
    /// `items`, after `head` (the function, encoded once per map: the body
    /// [`task::chunk_body`] makes of a slice of them), writing them straight
    /// into the record or its block: no vector of the items. Returns it
    /// with how many items it holds (fewer than `n` only when the iterator
    /// ended).
    ///
    /// # Errors
    ///
    /// `Serialization` if the chunk is too large; as
    /// [`take_block`](Shared::take_block).
    pub(crate) fn build_plain_chunk<A: 'static>(
        &self,
        template: &[u8],
        head: &codec::PlainHead<A>,
        n: usize,
        items: &mut impl Iterator<Item = A>,
    ) -> Result<(Encoded, usize)> {
        let len = head.encoded_len(n);
        let max = codec::Codec::default().max_message();
        if len > max {
            return Err(codec::CodecError::TooLarge { size: len, max }.into());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if len <= INLINE_MAX {
            let mut got = 0;
            let rec = Record::build(template, KIND_INLINE, id, len, |out| {
                let (used, n) = head.encode_from_iter(n, items, out)?;
                got = n;
                Ok(used)
            })?;
            return Ok(((id, rec, None), got));
        }
        let mut block = self.take_block(len)?;
        let (used, got) = head.encode_from_iter(n, items, block.as_mut_slice())?;
        let rec = block_record(template, id, used, &block)?;
        let attached = Attached {
            shm: Some(block),
            fds: Vec::new(),
        };
        Ok(((id, rec, Some(Box::new(attached))), got))
    }

    /// A spare block of at least `len` bytes, or a new one.
    pub(crate) fn take_block(&self, len: usize) -> Result<SharedMemory> {
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
        let block = SharedMemory::create(&worker::block_name(), len.next_multiple_of(1 << 20))?;
        // Written whole next: one call maps it, not a fault per page.
        block.populate(true);
        Ok(block)
    }

    /// Keeps a block whose task has finished for the next large payload.
    pub(crate) fn recycle(&self, block: SharedMemory) {
        let mut spare = lock(&self.spare_blocks);
        if spare.len() < SPARE_BLOCKS {
            spare.push(block);
        }
    }
}
