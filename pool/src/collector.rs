//! The result thread: collects results, dispatches queued tasks, enforces
//! timeouts and handles the deaths the supervisor reports.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use multiproc_ipc::shm::SharedMemory;
use multiproc_ipc::{codec, fd, park, Error, ErrorKind, Result, WireError};

use crate::record::Record;
use crate::ring::spin_until;
use crate::shared::{
    attached_fds, lock, Completion, Encoded, Inner, Pending, Shared, State, WorkerSlot,
    COLLECT_SPIN,
};
use crate::supervisor::{handle_death, Event};
use crate::task::{KIND_BLOCK, KIND_INIT_FAILED, KIND_IN_ARG, KIND_READY, KIND_SKIPPED};
use crate::worker::{SlotView, KIND_KEPT};

/// Where the bytes of a collected outcome are.
pub(crate) enum Outcome {
    /// A range of [`Collected::arena`].
    Arena(std::ops::Range<usize>),
    /// A large result's block, decoded in place.
    Block(SharedMemory),
    /// The first bytes of the task's own argument block, given back for
    /// reuse once decoded.
    InArg(SharedMemory, usize),
}

/// Arena capacity kept between rounds of collection.
pub(crate) const ARENA_KEEP: usize = 4 << 20;

/// Results collected under the state lock, whose completions run after it
/// is released. The outcome bytes of a whole round share one buffer (no
/// allocation per result).
#[derive(Default)]
pub(crate) struct Collected {
    pub(crate) arena: Vec<u8>,
    pub(crate) done: Vec<(Completion, Result<Outcome>)>,
}

impl Collected {
    pub(crate) fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    pub(crate) fn push_err(&mut self, complete: Completion, e: Error) {
        self.done.push((complete, Err(e)));
    }

    /// Runs the completions collected so far, then empties the arena.
    pub(crate) fn complete_all(&mut self, shared: &Shared) {
        let stats = &shared.counters;
        let arena = &self.arena;
        for (complete, outcome) in self.done.drain(..) {
            match outcome {
                Ok(Outcome::Arena(r)) => complete.complete(Ok(arena.get(r).unwrap_or(&[])), stats),
                Ok(Outcome::Block(b)) => {
                    // Decoded whole: one call maps it, not a fault per page
                    // (here, outside the state lock: it takes time).
                    b.populate(false);
                    complete.complete(Ok(b.as_slice()), stats)
                }
                Ok(Outcome::InArg(b, len)) => {
                    complete.complete(Ok(b.as_slice().get(..len).unwrap_or(&[])), stats);
                    shared.recycle(b);
                }
                Err(e) => complete.complete(Err(e), stats),
            }
        }
        self.arena.clear();
        if self.arena.capacity() > ARENA_KEEP {
            self.arena.shrink_to(ARENA_KEEP);
        }
    }
}

/// Moves backlog tasks into worker rings: least-loaded worker first (an
/// awake one of equally loaded ones), tasks with a timeout only to idle
/// workers; publishes each ring once (batching).
pub(crate) fn dispatch(shared: &Shared, g: &mut Inner) {
    let new_deadline = move_backlog(shared, g);
    publish(shared, g, new_deadline);
}

/// The moves of [`dispatch`], unpublished; true if a task with a deadline
/// was queued.
fn move_backlog(shared: &Shared, g: &mut Inner) -> bool {
    let mut new_deadline = false;
    let Inner {
        backlog, workers, ..
    } = g;
    while let Some(task) = backlog.pop_front() {
        let Some((wi, staged)) = stage(shared, workers, &task) else {
            // No worker can take it now: it stays first in line.
            backlog.push_front(task);
            break;
        };
        new_deadline |= queue(&mut workers[wi], staged, task);
    }
    new_deadline
}

/// Dispatches `tasks`, new ones given by their parts, in order, counting
/// each as submitted: each straight into a ring while nothing waits before
/// it (no trip through the backlog), else after the backlog, whose order it
/// keeps; then publishes each ring once.
pub(crate) fn dispatch_new(
    shared: &Shared,
    g: &mut Inner,
    timeout: Option<Duration>,
    tasks: impl IntoIterator<Item = (Encoded, Completion)>,
) {
    // Tasks that waited already: a worker may have room for them now.
    let mut new_deadline = move_backlog(shared, g);
    for (encoded, complete) in tasks {
        new_deadline |= place_new(shared, g, encoded, timeout, complete);
    }
    publish(shared, g, new_deadline);
}

/// One task of [`dispatch_new`]: its record staged first, its entry made
/// once its place is known. An entry is about 200 bytes and each move of
/// one is a call to `memcpy`: made first and handed on, a plain
/// `apply_async`'s entry and encoded record took nine copies. True if it
/// was queued at a worker with a deadline.
#[inline(always)]
fn place_new(
    shared: &Shared,
    g: &mut Inner,
    (id, record, block): Encoded,
    timeout: Option<Duration>,
    complete: Completion,
) -> bool {
    shared.counters.submitted.fetch_add(1, Ordering::Relaxed);
    let staged = if g.backlog.is_empty() {
        let fds = attached_fds(&block);
        stage_record(shared, &mut g.workers, id, &record, fds, timeout.is_some())
    } else {
        None
    };
    let task = Pending::new(id, record, block, timeout, complete);
    match staged {
        Some((wi, t)) => queue(&mut g.workers[wi], t, task),
        None => {
            g.backlog.push_back(task);
            false
        }
    }
}

/// Stages `task`'s record in the ring of the worker that should run it
/// (see [`dispatch`]); that worker and the ring position after the record,
/// or `None` if no worker can take it now.
fn stage(shared: &Shared, workers: &mut [WorkerSlot], task: &Pending) -> Option<(usize, u64)> {
    let fds = attached_fds(&task.block);
    stage_record(
        shared,
        workers,
        task.id,
        &task.record,
        fds,
        task.timeout.is_some(),
    )
}

/// [`stage`] of a task given by its parts: `record`, the descriptors its
/// argument carries, and whether it has a timeout.
fn stage_record(
    shared: &Shared,
    workers: &mut [WorkerSlot],
    id: u64,
    record: &Record,
    fds: &[OwnedFd],
    timed: bool,
) -> Option<(usize, u64)> {
    let wi = choose(shared, workers, timed)?;
    let w = &workers[wi];
    let mut t = w.staged.unwrap_or_else(|| w.view.tasks.tail_pos());
    if !w.view.tasks.stage(&mut t, &[record]) {
        // Ring full: publish what is staged and let results drain it.
        return None;
    }
    if !fds.is_empty() && !send_fds(w, id, fds) {
        // Its socket is full (or the worker is dying): the task stays
        // first in line, its staged copy is dropped (`t` is not kept),
        // and a later round (on the next result) tries again.
        return None;
    }
    Some((wi, t))
}

/// The worker that should run the next task, of those that accept it:
/// the fewest tasks still to run (a finished task whose result is not
/// collected yet does not count) and, of equally loaded workers, one that is
/// awake: waking a sleeping one costs the submitting thread a system call
/// and the worker a wake-up, while an awake one that has run all its tasks
/// takes the next at once.
///
/// A worker idle and awake is the best there can be, and one that the last
/// look at its finished count showed idle still is: it is taken without a
/// new look. Each worker writes its count at every task, so each look at
/// one it changed waits for that cache line to come from the worker's CPU
/// (about 145 ns on a 2-vCPU VM, where a submission took about 450 ns).
fn choose(shared: &Shared, workers: &mut [WorkerSlot], needs_idle: bool) -> Option<usize> {
    let accepts = |w: &WorkerSlot| w.accepts(&shared.config, needs_idle);
    if let Some(i) = workers
        .iter()
        .position(|w| accepts(w) && w.seen_idle() && !w.view.bell.sleeping())
    {
        return Some(i);
    }
    let mut best: Option<(usize, (u64, bool))> = None;
    for (i, w) in workers.iter_mut().enumerate() {
        if !accepts(w) {
            continue;
        }
        let key = (w.unfinished(), w.view.bell.sleeping());
        if best.is_none_or(|(_, k)| key < k) {
            best = Some((i, key));
        }
    }
    best.map(|(i, _)| i)
}

/// Queues `task`, whose record [`stage_record`] put in `w`'s ring up to `staged`,
/// at that worker; true if it has a deadline.
#[inline(always)]
fn queue(w: &mut WorkerSlot, staged: u64, mut task: Pending) -> bool {
    task.pos = w.dispatched;
    w.staged = Some(staged);
    w.dispatched += 1;
    let deadline = match task.timeout {
        Some(to) => {
            w.timed = true;
            // A timeout too long to represent is no timeout.
            task.deadline = Instant::now().checked_add(to);
            true
        }
        None => false,
    };
    w.outstanding.push_back(task);
    deadline
}

/// Ends a dispatch round: tells the result thread of a new deadline and
/// publishes each ring that got tasks.
fn publish(shared: &Shared, g: &mut Inner, new_deadline: bool) {
    if new_deadline {
        // The result thread may be asleep without a deadline: let it see this
        // one (the count covers a thread that is just about to sleep; unlike
        // the event flag, a waiting caller's pump cannot take it in first).
        shared.deadlines.fetch_add(1, Ordering::SeqCst);
        shared.parent_bell.ring_always();
    }
    for w in &mut g.workers {
        if let Some(t) = w.staged.take() {
            w.view.tasks.publish(t);
            w.view.bell.ring();
        }
    }
}

/// Sends `fds`, the descriptors of task `id`, to worker `w` (before its
/// record is published: the worker finds them waiting). False if they could
/// not be sent now.
fn send_fds(w: &WorkerSlot, id: u64, fds: &[OwnedFd]) -> bool {
    let fds: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    fd::send_handles(w.fd_tx.as_fd(), id, &fds, true).is_ok()
}

/// Reads every result available in worker `wi`'s ring.
pub(crate) fn drain_worker(shared: &Shared, g: &mut Inner, wi: usize, col: &mut Collected) -> bool {
    let mut any = false;
    let mut finished = false;
    let w = &mut g.workers[wi];
    while let Some(len) = w.view.results.pop_append(&mut col.arena) {
        any = true;
        let start = col.arena.len() - len;
        let rec = &col.arena[start..];
        if rec.len() < 9 {
            col.arena.truncate(start);
            continue;
        }
        // A task that kept part of its argument's block: the block is not
        // reused (dropped here, it is unlinked; the worker's mapping stays).
        let kept = rec[0] & KIND_KEPT != 0;
        let kind = rec[0] & !KIND_KEPT;
        let mut idb = [0u8; 8];
        idb.copy_from_slice(&rec[1..9]);
        let id = u64::from_le_bytes(idb);
        match kind {
            KIND_READY => {
                w.ready = true;
                col.arena.truncate(start);
                continue;
            }
            KIND_SKIPPED => {
                // A task cancelled at this worker: resolved already; its
                // place (and its block) is free now.
                col.arena.truncate(start);
                let at = w.outstanding.iter().position(|p| p.id == id);
                if let Some(p) = at.and_then(|i| w.outstanding.remove(i)) {
                    // A timed task was the worker's only one.
                    w.timed &= p.timeout.is_none();
                    if let Some(b) = p.block.and_then(|b| b.shm) {
                        shared.recycle(b);
                    }
                }
                continue;
            }
            KIND_INIT_FAILED => {
                let e = codec::decode::<WireError>(&rec[9..]).map_or_else(Error::from, Error::from);
                w.init_error = Some(e);
                col.arena.truncate(start);
                continue;
            }
            _ => finished = true,
        }
        // `None` for an outcome in the task's own argument block: its
        // length, read here, and the block, taken from the task below.
        let (outcome, in_arg) = match kind {
            KIND_BLOCK => {
                let o = read_result_block(&w.view, &rec[9..]).map(Outcome::Block);
                col.arena.truncate(start);
                (Some(o), None)
            }
            KIND_IN_ARG => {
                let len = in_arg_len(&rec[9..]);
                col.arena.truncate(start);
                (None, len)
            }
            _ => (Some(Ok(Outcome::Arena(start + 9..start + len))), None),
        };
        // Results come back in dispatch order: the task is at the front.
        let pos = if w.outstanding.front().is_some_and(|p| p.id == id) {
            Some(0)
        } else {
            w.outstanding.iter().position(|p| p.id == id)
        };
        w.timed = false;
        if let Some(p) = pos.and_then(|i| w.outstanding.remove(i)) {
            let block = p.block.and_then(|b| b.shm);
            let outcome = match outcome {
                Some(outcome) => {
                    if let Some(b) = block.filter(|_| !kept) {
                        shared.recycle(b);
                    }
                    outcome
                }
                // Recycled once decoded.
                None => in_arg_outcome(block, in_arg),
            };
            col.done.push((p.complete, outcome));
        }
    }
    if finished {
        // A task ran to its end: the initializer works.
        g.init_failures = 0;
    }
    any
}

/// The outcome length of a [`KIND_IN_ARG`] record (`None` if malformed).
fn in_arg_len(payload: &[u8]) -> Option<usize> {
    let len = u64::from_le_bytes(payload.try_into().ok()?);
    usize::try_from(len).ok()
}

/// The outcome a worker wrote into `block`, the task's argument block.
fn in_arg_outcome(block: Option<SharedMemory>, len: Option<usize>) -> Result<Outcome> {
    match (block, len) {
        (Some(b), Some(len)) if len <= b.size() => Ok(Outcome::InArg(b, len)),
        _ => Err(Error::new(
            ErrorKind::Serialization,
            "malformed result record: an outcome in an argument block the task does not have",
        )),
    }
}

/// Attaches (and unlinks) the block of a large result; the mapping stays
/// valid after the acknowledgement lets the worker drop its own.
pub(crate) fn read_result_block(view: &SlotView, payload: &[u8]) -> Result<SharedMemory> {
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

/// Kills workers whose timed task is past its deadline; returns the next deadline.
pub(crate) fn check_timeouts(g: &mut Inner) -> Option<Instant> {
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
pub(crate) fn pump(shared: &Shared, g: &mut Inner, col: &mut Collected) -> (bool, Option<Instant>) {
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
    if let Some(err) = g.broken.clone() {
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

pub(crate) fn collector_loop(shared: &Shared) {
    let mut col = Collected::default();
    // It waits first: at its start nothing has arrived, and a first look
    // under the pool's lock would only meet the caller (closing or
    // submitting) there, which then sleeps on the lock and, woken, waits
    // for a CPU behind the pool's freshly forked workers.
    let mut worked = false;
    // Whether a task's outcome has come in yet.
    let mut collected = false;
    let mut next_deadline: Option<Instant> = None;
    // The deadlines dispatched as of the last pump (none yet).
    let mut seen = 0;
    loop {
        if !worked {
            let h = shared.helpers.load(Ordering::SeqCst);
            if h > 0 {
                // A waiting caller collects; stay off the CPUs until it leaves.
                park::wait_u32(&shared.helpers, h, Some(Duration::from_millis(1)));
            } else {
                let ready = || {
                    shared.event_flag.load(Ordering::Acquire)
                        || shared.deadlines.load(Ordering::SeqCst) != seen
                        || shared.shutdown.load(Ordering::Acquire)
                        || shared.helpers.load(Ordering::Relaxed) > 0
                        || shared.result_rings.iter().any(|r| r.has_data())
                };
                // Until the first result, no spin: at the pool's start the
                // CPUs go to the workers being forked (and a pool closed
                // unused never needs one).
                if !collected || !spin_until(COLLECT_SPIN, ready) {
                    let timeout = next_deadline.map(|d| {
                        d.saturating_duration_since(Instant::now()) + Duration::from_micros(100)
                    });
                    shared.parent_bell.sleep(timeout, ready);
                }
            }
        }
        // Read before the pump: a deadline dispatched after it is new.
        seen = shared.deadlines.load(Ordering::SeqCst);
        let any;
        (any, next_deadline) = {
            let mut g = lock(&shared.inner);
            let r = pump(shared, &mut g, &mut col);
            // Only `join` (after `close`) waits for the pool to go idle.
            if g.pending() == 0 && g.state != State::Running {
                shared.idle.notify_all();
            }
            r
        };
        collected |= !col.is_empty();
        worked = any || !col.is_empty();
        col.complete_all(shared);
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::time::Duration;

    use multiproc_ipc::Fd;

    use crate::Pool;

    fn file_len(f: Fd<File>) -> u64 {
        f.metadata().map(|m| m.len()).unwrap_or(0)
    }

    fn sleep_ms(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }

    /// Microseconds since the Unix epoch, when the task starts.
    fn started_at(_: ()) -> u64 {
        now_us()
    }

    fn now_us() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    }

    /// The worker's pid and the time it ends, after `ms` milliseconds.
    fn pid_after_ms(ms: u64) -> (u32, u64) {
        std::thread::sleep(Duration::from_millis(ms));
        (std::process::id(), now_us())
    }

    /// While one worker runs a long task, every task submitted meanwhile
    /// goes to the other, idle one, also right after a result came back
    /// (the worker counts its task finished before it publishes the
    /// result). A worker judged idle without a new look at its finished
    /// count (the count only grows) is idle, and one given a task since is
    /// looked at again. The same after both workers were killed and
    /// replaced (their counts start again from zero).
    #[test]
    fn a_task_goes_to_the_idle_worker_not_behind_the_busy_one() {
        let _serial = multiproc_testkit::serial();
        let bound = Duration::from_secs(60);
        let pool = Pool::new(2).unwrap();
        let check = |round: &str| {
            let blocker = pool.apply_async(pid_after_ms, 600).unwrap();
            // Each task's submission time and where it ran.
            let ran: Vec<(u64, u32)> = (0..5)
                .map(|_| (now_us(), pool.apply(pid_after_ms, 0).unwrap().0))
                .collect();
            let (busy, end) = blocker.get_timeout(bound).unwrap();
            assert!(ran[0].0 < end, "{round}: the long task ended too soon");
            // A task submitted after the long task's end may go anywhere.
            assert!(
                ran.iter().all(|&(at, pid)| pid != busy || at >= end),
                "{round}: a task waited behind the busy worker {busy}: {ran:?}"
            );
        };
        // Both workers finish tasks first: the dispatcher has seen counts
        // well above zero when they are replaced below.
        assert_eq!(pool.map(pid_after_ms, vec![0u64; 200]).unwrap().len(), 200);
        check("first workers");
        let old = pool.worker_pids();
        for &pid in &old {
            let pid = nix::unistd::Pid::from_raw(pid);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        }
        let deadline = std::time::Instant::now() + bound;
        while pool.worker_pids().iter().any(|p| old.contains(p)) {
            assert!(std::time::Instant::now() < deadline, "workers not replaced");
            std::thread::sleep(Duration::from_millis(5));
        }
        check("replaced workers");
    }

    /// A one-worker pool busy for 300 ms, and a task with a timeout that
    /// waits in the backlog for that worker to be idle: the pool and the
    /// timed task's start, once the busy task has ended.
    fn busy_then_timed(then: impl FnOnce(&Pool)) -> (Pool, u64) {
        let pool = Pool::new(1).unwrap();
        let blocker = pool.apply_async(sleep_ms, 300).unwrap();
        let timed = pool
            .apply_async_with(
                started_at,
                (),
                crate::ApplyOptions::new().timeout(Duration::from_secs(30)),
            )
            .unwrap();
        then(&pool);
        let bound = Duration::from_secs(60);
        assert_eq!(blocker.get_timeout(bound).unwrap(), 300);
        let timed = timed.get_timeout(bound).unwrap();
        (pool, timed)
    }

    /// A new task goes straight into a worker's ring only when nothing
    /// waits before it: here a task with a timeout waits in the backlog for
    /// the busy worker to be idle, and the plain task submitted after it,
    /// which that busy worker would take at once, still starts after it.
    #[test]
    fn a_new_task_does_not_pass_the_tasks_waiting_before_it() {
        let _serial = multiproc_testkit::serial();
        let mut plain = None;
        let (_pool, timed) = busy_then_timed(|pool| {
            plain = Some(pool.apply_async(started_at, ()).unwrap());
        });
        let plain = plain.unwrap().get_timeout(Duration::from_secs(60)).unwrap();
        assert!(
            timed < plain,
            "submitted second, started first: {timed} >= {plain}"
        );
    }

    /// The same for a map's chunks, submitted in one batch: the first
    /// cannot pass the timed task, so none of them may.
    #[test]
    fn a_maps_chunks_do_not_pass_the_tasks_waiting_before_them() {
        let _serial = multiproc_testkit::serial();
        let mut chunks = None;
        let (_pool, timed) = busy_then_timed(|pool| {
            chunks = Some(pool.map_async(started_at, vec![(); 8]).unwrap());
        });
        let starts = chunks
            .unwrap()
            .get_timeout(Duration::from_secs(60))
            .unwrap();
        assert!(
            starts.iter().all(|&s| s > timed),
            "the timed task started at {timed}, the chunks at {starts:?}"
        );
    }

    /// More descriptor messages than a worker's socket buffer holds: the
    /// dispatcher stops at a full socket and sends the rest as the worker
    /// drains it (the tasks stay queued meanwhile), so every task still
    /// gets its own descriptor.
    #[test]
    fn fd_tasks_wait_for_room_in_a_full_descriptor_socket() {
        let _serial = multiproc_testkit::serial();
        let mut builder = Pool::builder().processes(1);
        // Room in the ring for all of them: only the socket can be full.
        builder.queue_per_worker = 4096;
        let pool = builder.build().unwrap();
        let blocker = pool.apply_async(sleep_ms, 300).unwrap();
        let file = File::open("/proc/self/exe").unwrap();
        let want = file.metadata().unwrap().len();
        let results: Vec<_> = (0..600)
            .map(|_| {
                let copy = Fd::new(file.try_clone().unwrap());
                pool.apply_async(file_len, copy).unwrap()
            })
            .collect();
        for r in results {
            assert_eq!(r.get_timeout(Duration::from_secs(60)).unwrap(), want);
        }
        assert_eq!(blocker.get_timeout(Duration::from_secs(60)).unwrap(), 300);
    }
}
