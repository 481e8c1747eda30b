//! The shared-memory layout of a pool and the worker process's main loop.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_ipc::shm::{SharedMemory, ShmRegion, PAYLOAD_BLOCK_PREFIX};
use multiproc_ipc::{fd, heap, latency, WireError};
use serde::{Deserialize, Serialize};

use crate::ring::{spin_until, Bell, Ring, RING_HEADER};
use crate::task::{
    self, TaskBody, Tramp, KIND_BLOCK, KIND_EXIT, KIND_INIT_FAILED, KIND_INLINE, KIND_IN_ARG,
    KIND_READY, KIND_SKIPPED,
};

/// Bytes of each ring's data area.
pub(crate) const RING_CAP: usize = 1 << 20;
/// Bytes of the region header.
const REGION_HEADER: usize = 4096;
/// Offset of the parent's doorbell (rung by every worker's result ring).
const PARENT_BELL: usize = 64;
/// Bytes of one worker's slot: control words, then its two rings' data.
const SLOT: usize = 4096 + 2 * RING_CAP;

const CURRENT: usize = 0;
/// Next to `CURRENT`: one cache line the worker writes on every task.
const FINISHED: usize = 8;
const WORKER_BELL: usize = 64;
const LARGE_ACK: usize = 128;
const TASK_RING: usize = 256;
const RESULT_RING: usize = 256 + 2 * RING_HEADER;
/// The claim words: one per position of the task ring, modulo [`CLAIM_SLOTS`].
const CLAIMS: usize = 2048;
/// Claim words per worker: more than a cancellable worker ever has queued
/// (the executor's cap), so a word is not reused while its task waits.
pub(crate) const CLAIM_SLOTS: usize = 128;
const _: () = assert!(CLAIMS + CLAIM_SLOTS * 8 <= 4096 && RESULT_RING + RING_HEADER <= CLAIMS);

/// A claim word's states (its low two bits; the task id is above them).
const STARTED: u64 = 2;
const CANCELLED: u64 = 3;

/// Whether claim word `word` says task `id` has started or was cancelled
/// (anything else: it waits, whatever an earlier task left there).
fn settled(word: u64, id: u64) -> bool {
    word == id << 2 | STARTED || word == id << 2 | CANCELLED
}

/// Bytes of the region for `n` workers.
pub(crate) fn region_len(n: usize) -> usize {
    REGION_HEADER + n * SLOT
}

/// The parent's doorbell.
pub(crate) fn parent_bell(region: &ShmRegion) -> Bell {
    Bell::new(region.clone(), PARENT_BELL)
}

/// One worker's slot in the region.
#[derive(Clone)]
pub(crate) struct SlotView {
    region: ShmRegion,
    base: usize,
    pub(crate) tasks: Ring,
    pub(crate) results: Ring,
    pub(crate) bell: Bell,
}

impl SlotView {
    pub(crate) fn new(region: &ShmRegion, index: usize) -> SlotView {
        let base = REGION_HEADER + index * SLOT;
        SlotView {
            region: region.clone(),
            base,
            tasks: Ring::new(region.clone(), base + TASK_RING, base + 4096, RING_CAP),
            results: Ring::new(
                region.clone(),
                base + RESULT_RING,
                base + 4096 + RING_CAP,
                RING_CAP,
            ),
            bell: Bell::new(region.clone(), base + WORKER_BELL),
        }
    }

    /// The id of the task the worker is running (0: none).
    pub(crate) fn current(&self) -> &AtomicU64 {
        self.region.atomic_u64(self.base + CURRENT)
    }

    /// How many tasks the worker has finished (run or skipped), stored
    /// just before each one's result goes into the result ring (so whoever
    /// reads the result sees the count). With the parent's `dispatched`
    /// count, it tells how many of the worker's tasks are still to run,
    /// results not yet collected excluded.
    pub(crate) fn finished(&self) -> &AtomicU64 {
        self.region.atomic_u64(self.base + FINISHED)
    }

    /// The claim word of the task at position `pos` of this worker's ring:
    /// the worker and `cancel` race to mark it started or cancelled (task id
    /// and state), by compare-and-swap, so that exactly one of them wins:
    /// the task starts, or it is cancelled. Until then it holds whatever an
    /// earlier task left there: the parent writes nothing when it dispatches
    /// a task, so the words stay in the worker's cache (a mark per dispatch
    /// moved a cache line to the parent and back for every task).
    fn claim(&self, pos: u64) -> &AtomicU64 {
        let i = (pos % CLAIM_SLOTS as u64) as usize;
        self.region.atomic_u64(self.base + CLAIMS + i * 8)
    }

    /// Moves the word of task `id` at `pos` to `state` (started or
    /// cancelled) unless the task is settled already; whether it did.
    fn settle(&self, pos: u64, id: u64, state: u64) -> bool {
        let word = self.claim(pos);
        let mut cur = word.load(Ordering::Acquire);
        loop {
            if settled(cur, id) {
                return false;
            }
            match word.compare_exchange_weak(
                cur,
                id << 2 | state,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Parent: cancels task `id` at `pos` if the worker has not started it.
    pub(crate) fn try_cancel(&self, pos: u64, id: u64) -> bool {
        self.settle(pos, id, CANCELLED)
    }

    /// Parent: true while task `id` at `pos` waits in the ring, unstarted.
    pub(crate) fn is_unstarted(&self, pos: u64, id: u64) -> bool {
        !settled(self.claim(pos).load(Ordering::Acquire), id)
    }

    /// Worker: claims task `id` at `pos` to run it; false if it was
    /// cancelled. Only an executor's tasks are ever cancelled, and it keeps
    /// fewer than [`CLAIM_SLOTS`] of them queued at a worker: no word is
    /// shared by two tasks that wait.
    fn start(&self, pos: u64, id: u64) -> bool {
        self.settle(pos, id, STARTED)
    }

    /// The sequence number of the last large result the parent has read.
    pub(crate) fn large_ack(&self) -> &AtomicU64 {
        self.region.atomic_u64(self.base + LARGE_ACK)
    }

    /// Clears the slot for a new worker (the old one is dead).
    pub(crate) fn reset(&self) {
        self.tasks.reset();
        self.results.reset();
        self.current().store(0, Ordering::SeqCst);
        self.finished().store(0, Ordering::SeqCst);
        self.large_ack().store(0, Ordering::SeqCst);
        for pos in 0..CLAIM_SLOTS as u64 {
            self.claim(pos).store(0, Ordering::SeqCst);
        }
    }
}

/// What a worker is told when it is forked.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerArg {
    pub(crate) slot: usize,
    pub(crate) max_tasks: Option<u64>,
    pub(crate) initializer: Option<(Tramp, Vec<u8>)>,
    pub(crate) spin_ns: u64,
    /// The scheduler slice to ask for (`multiproc_ipc::latency`; 0: none).
    pub(crate) slice_ns: u64,
    /// The freed memory to keep for later tasks (`multiproc_ipc::heap`; 0:
    /// malloc's defaults).
    pub(crate) heap_keep: usize,
    /// The pool's process: the owner of the blocks this worker makes.
    pub(crate) pool_pid: u32,
}

/// Exit code of a worker that could not open the pool's shared memory.
pub(crate) const EXIT_NO_REGION: i32 = 70;
/// Exit code of a worker whose initializer failed.
pub(crate) const EXIT_INIT_FAILED: i32 = 71;

/// Flag bit of a task record's kind: the task's argument holds `Fd`s, whose
/// descriptors the parent sent on the worker's descriptor socket just
/// before it published the record.
pub(crate) const KIND_FDS: u8 = 0x80;

/// Flag bit of a task record's kind: the argument, in a block, holds
/// [`SharedBytes`](multiproc_ipc::SharedBytes), which the worker decodes
/// in place (pointing into the block).
pub(crate) const KIND_IN_PLACE: u8 = 0x40;

/// Flag bit of a result record's kind: the task kept `SharedBytes` of its
/// argument's block beyond its end (in a static, say); the parent must not
/// reuse that block for another argument.
pub(crate) const KIND_KEPT: u8 = 0x40;

/// Receives the descriptors of task `id` (already queued on `sock`).
fn task_fds(sock: Option<&OwnedFd>, id: u64) -> multiproc_ipc::Result<Vec<OwnedFd>> {
    let lost = |why: String| {
        multiproc_ipc::Error::new(
            multiproc_ipc::ErrorKind::Io,
            format!("the file descriptors of task {id} did not arrive: {why}"),
        )
    };
    let sock = sock.ok_or_else(|| lost("the worker has no descriptor socket".into()))?;
    match fd::recv_handles(sock.as_fd(), true) {
        Ok((tag, fds)) if tag == id => Ok(fds),
        Ok((tag, _)) => Err(lost(format!("got those of task {tag}"))),
        Err(e) => Err(lost(e.to_string())),
    }
}

/// The worker process: run tasks from the task ring until told to exit.
/// `fds` holds the descriptor of the pool's memory file, then the socket on
/// which the tasks' descriptors arrive.
pub(crate) fn worker_main(arg: WorkerArg, mut fds: Vec<OwnedFd>) -> i32 {
    let fd_rx = fds.pop();
    let region_fd = fds.pop();
    BLOCK_OWNER.store(arg.pool_pid, Ordering::Relaxed);
    latency::apply_slice(arg.slice_ns);
    heap::apply(arg.heap_keep);
    task::install_panic_hook();
    let region = match region_fd.map(ShmRegion::from_fd) {
        Some(Ok(r)) => r,
        None => {
            tracing::error!("a pool worker started without the pool's memory");
            return EXIT_NO_REGION;
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "a pool worker cannot open the pool's memory");
            return EXIT_NO_REGION;
        }
    };
    let slot = SlotView::new(&region, arg.slot);
    let parent = parent_bell(&region);
    if let Some((tramp, body)) = arg.initializer {
        let outcome = tramp
            .call(TaskBody::Inline(body))
            .map_err(|e| e.to_wire())
            .and_then(|out| match task::decode_outcomes::<()>(&out, 1).pop() {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(e.to_wire()),
                None => Err(multiproc_ipc::Error::new(
                    multiproc_ipc::ErrorKind::Serialization,
                    "the initializer sent no outcome",
                )
                .to_wire()),
            });
        match outcome {
            // The parent counts workers that die before this as initializer failures.
            Ok(()) => push_result(&slot, &parent, KIND_READY, 0, &[]),
            Err(e) => {
                // The parent reports this error on every task of a broken pool.
                let payload = multiproc_ipc::codec::encode(&shortened(e)).unwrap_or_default();
                push_result(&slot, &parent, KIND_INIT_FAILED, 0, &payload);
                return EXIT_INIT_FAILED;
            }
        }
    }
    let spin = Duration::from_nanos(arg.spin_ns);
    let mut buf = Vec::new();
    // The buffer of the last large outcome, for the next one (see
    // `TaskBody::Shared`).
    let mut spare = Vec::new();
    let mut done = 0u64;
    let mut blocks: VecDeque<(u64, SharedMemory)> = VecDeque::new();
    let mut block_seq = 0u64;
    let mut attached: VecDeque<Arc<SharedMemory>> = VecDeque::new();
    let mut tramps = task::TrampCache::default();
    // The position of the next task in this worker's ring (the parent counts
    // the same: `WorkerSlot::dispatched`).
    let mut pos = 0u64;
    loop {
        if !slot.tasks.pop(&mut buf) {
            // No spin before the first task: a worker just forked would
            // take a CPU from the zygote forking the next one and from the
            // caller (`pool_startup`: 7% less CPU per cycle).
            if pos == 0 || !spin_until(spin, || slot.tasks.has_data()) {
                slot.bell.sleep(None, || slot.tasks.has_data());
            }
            continue;
        }
        let Some(rec) = task::parse_task_with(&buf, &mut tramps) else {
            // (Never from our parent; counted, to stay in step with it.)
            pos += 1;
            continue;
        };
        if rec.kind == KIND_EXIT {
            release_blocks(&slot, &mut blocks, true);
            return 0;
        }
        let id = rec.id;
        let tramp = rec.tramp;
        let kind = rec.kind;
        // The one test the hot path pays for descriptor passing.
        let received = if kind & KIND_FDS != 0 {
            Some(task_fds(fd_rx.as_ref(), id))
        } else {
            None
        };
        let at = pos;
        pos += 1;
        if slot.start(at, id) {
            // Read by the parent only after this process has died (its exit
            // orders every store): no fence needed on the hot path.
            slot.current().store(id, Ordering::Release);
            let body = match kind & !(KIND_FDS | KIND_IN_PLACE) {
                // The record buffer itself: no copy of the body.
                KIND_INLINE => {
                    let offset = buf.len() - rec.body.len();
                    Ok(TaskBody::Record(std::mem::take(&mut buf), offset))
                }
                _ => open_block(
                    rec.body,
                    kind & KIND_IN_PLACE != 0,
                    &mut attached,
                    &mut spare,
                ),
            };
            // The block of an argument decoded in place, to see afterwards
            // whether the task kept part of it.
            let in_place = match &body {
                Ok(TaskBody::InPlace(block, ..)) => Some(Arc::clone(block)),
                _ => None,
            };
            // The block of an argument copied out of: a large outcome goes
            // back into it.
            let arg_block = match &body {
                Ok(TaskBody::Shared(block, ..)) => Some(Arc::clone(block)),
                _ => None,
            };
            // A body in a block took `spare` as its outcome buffer, and the
            // record buffer `buf` still holds the record.
            let out_is_spare = matches!(&body, Ok(TaskBody::Shared(..) | TaskBody::InPlace(..)));
            let out = match (tramp, body) {
                (Some(t), Ok(body)) => match received {
                    None => t.call(body).unwrap_or_else(error_outcome),
                    // The task's `Fd`s take their descriptors while it decodes.
                    Some(Ok(fds)) => {
                        fd::with_received(fds, || t.call(body)).unwrap_or_else(error_outcome)
                    }
                    Some(Err(e)) => error_outcome(e),
                },
                (_, Err(e)) => error_outcome(e),
                (None, _) => error_outcome(multiproc_ipc::Error::new(
                    multiproc_ipc::ErrorKind::Serialization,
                    "malformed task record",
                )),
            };
            release_blocks(&slot, &mut blocks, false);
            let kept = in_place.is_some_and(|block| kept_beyond_task(block, &mut attached));
            let flag = if kept { KIND_KEPT } else { 0 };
            let large = out.len() + 9 > slot.results.max_record();
            // Every branch pushes the task's outcome, exactly once.
            if large && arg_block.is_some_and(|b| write_in_arg(b, &out, &mut attached)) {
                let len = out.len() as u64;
                push_outcome(
                    &slot,
                    &parent,
                    &mut done,
                    KIND_IN_ARG | flag,
                    id,
                    &len.to_le_bytes(),
                );
            } else if large {
                block_seq += 1;
                match write_block(&out, block_seq) {
                    Ok(shm) => {
                        let mut payload = block_seq.to_le_bytes().to_vec();
                        payload.extend_from_slice(shm.name().as_bytes());
                        blocks.push_back((block_seq, shm));
                        push_outcome(&slot, &parent, &mut done, KIND_BLOCK | flag, id, &payload);
                    }
                    Err(e) => {
                        let e = error_outcome(e);
                        push_outcome(&slot, &parent, &mut done, KIND_INLINE | flag, id, &e);
                    }
                }
            } else {
                push_outcome(&slot, &parent, &mut done, KIND_INLINE | flag, id, &out);
            }
            keep_outcome(out, out_is_spare, &mut buf, &mut spare);
            slot.current().store(0, Ordering::Release);
        } else {
            // Cancelled while it waited here: its descriptors (taken above,
            // to keep the socket in step) close; the parent, which already
            // resolved the task, only learns that its place is free.
            drop(received);
            // A skipped task counts too, as the parent counts every task it
            // dispatched here: else a worker due to retire would wait for a
            // task never sent.
            push_outcome(&slot, &parent, &mut done, KIND_SKIPPED, id, &[]);
        }
        if arg.max_tasks.is_some_and(|m| done >= m) {
            release_blocks(&slot, &mut blocks, true);
            return 0;
        }
    }
}

/// Keeps the buffer of a finished task's outcome for the next task. One
/// that came from `spare` (the body was in a block) goes back there, even
/// if it would fit a record: kept in `buf`, the record buffer, it would
/// leave the next chunk of a map to fault in a fresh outcome buffer (a
/// million-item `map` faulted in three 1 MB buffers per worker instead of
/// one). Otherwise the trampoline wrote the outcome into the buffer it got
/// the body in, and the next record reuses it, unless it grew past a
/// record's size. Larger than [`SPARE_MAX`], it is dropped.
fn keep_outcome(out: Vec<u8>, from_spare: bool, buf: &mut Vec<u8>, spare: &mut Vec<u8>) {
    if !from_spare && out.capacity() <= RING_CAP {
        *buf = out;
    } else if out.capacity() <= SPARE_MAX {
        *spare = out;
    }
}

/// The largest outcome buffer a worker keeps for the next large outcome
/// (see `TaskBody::Shared`): a map's chunk of a million `u64`s takes 8 MB.
const SPARE_MAX: usize = 8 << 20;

/// The longest initializer error message sent to the parent (it must fit
/// in one ring record).
const INIT_ERROR_MAX: usize = 8 * 1024;

/// `e` with its messages cut to [`INIT_ERROR_MAX`] bytes.
fn shortened(mut e: WireError) -> WireError {
    fn cut(s: &mut String) {
        if s.len() > INIT_ERROR_MAX {
            let mut end = INIT_ERROR_MAX;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
    }
    cut(&mut e.message);
    if let Some(p) = &mut e.panic {
        cut(&mut p.message);
    }
    e
}

fn error_outcome(e: multiproc_ipc::Error) -> Vec<u8> {
    let err: task::ItemOutcome<()> = Err(e.to_wire());
    multiproc_ipc::codec::encode(&err).unwrap_or_default()
}

/// Whether `block`, the block of an argument decoded in place, is still
/// referenced by `SharedBytes` the finished task kept; if so, this worker
/// forgets it (the parent will not reuse it).
fn kept_beyond_task(block: Arc<SharedMemory>, attached: &mut VecDeque<Arc<SharedMemory>>) -> bool {
    let cached = attached.iter().filter(|b| Arc::ptr_eq(b, &block)).count();
    if Arc::strong_count(&block) <= 1 + cached {
        return false;
    }
    attached.retain(|b| !Arc::ptr_eq(b, &block));
    true
}

/// Writes the outcome `out` of a finished task into `block`, the block its
/// argument was copied out of, if it fits and nothing else holds the block
/// (this worker's cache of mapped blocks aside); false if not written.
fn write_in_arg(
    mut block: Arc<SharedMemory>,
    out: &[u8],
    attached: &mut VecDeque<Arc<SharedMemory>>,
) -> bool {
    if out.len() > block.size() {
        return false;
    }
    let at = attached.iter().position(|b| Arc::ptr_eq(b, &block));
    drop(at.and_then(|i| attached.remove(i)));
    let written = Arc::get_mut(&mut block).is_some_and(|shm| shm.write_at(0, out).is_ok());
    if let Some(i) = at {
        attached.insert(i, block);
    }
    written
}

/// Opens the block of a large task body (`[len u64][name]`), reusing this
/// worker's mapping when the parent reuses a block; `in_place`: the body is
/// to be decoded in place. The body takes `spare`, the worker's buffer for
/// large outcomes.
fn open_block(
    rec: &[u8],
    in_place: bool,
    attached: &mut VecDeque<Arc<SharedMemory>>,
    spare: &mut Vec<u8>,
) -> multiproc_ipc::Result<TaskBody> {
    let bad = || {
        multiproc_ipc::Error::new(
            multiproc_ipc::ErrorKind::Serialization,
            "malformed large-task record",
        )
    };
    let len = rec
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(bad)? as usize;
    let name = rec
        .get(8..)
        .and_then(|n| std::str::from_utf8(n).ok())
        .ok_or_else(bad)?;
    let shm = match attached
        .iter()
        .find(|s| s.name().trim_start_matches('/') == name.trim_start_matches('/'))
    {
        Some(s) => s.clone(),
        None => {
            let s = Arc::new(SharedMemory::attach(name)?);
            // Read next (and kept for the next ones): one call maps it,
            // not a fault per page; writable too unless decoded in place
            // (the outcome goes back into it: see `write_in_arg`).
            s.populate(!in_place);
            if attached.len() >= 4 {
                attached.pop_front();
            }
            attached.push_back(s.clone());
            s
        }
    };
    if len > shm.size() {
        return Err(bad());
    }
    let out = std::mem::take(spare);
    Ok(if in_place {
        TaskBody::InPlace(shm, len, out)
    } else {
        TaskBody::Shared(shm, len, out)
    })
}

static BLOCK_NAMES: AtomicU64 = AtomicU64::new(0);

/// The pool process whose blocks this process makes: set in a worker to its
/// pool's pid; 0 (this process) elsewhere.
static BLOCK_OWNER: AtomicU32 = AtomicU32::new(0);

/// A fresh name for a payload block made by this process:
/// `mpp-<pool pid>-<this pid>-<n>`. The pool's pid comes first because a
/// block lives as long as its pool reads it, not as long as its maker (a
/// dead worker's result block is still read); the next run's sweep of
/// stale segments keys on it ([`PAYLOAD_BLOCK_PREFIX`]).
pub(crate) fn block_name() -> String {
    let n = BLOCK_NAMES.fetch_add(1, Ordering::Relaxed);
    let me = std::process::id();
    let owner = match BLOCK_OWNER.load(Ordering::Relaxed) {
        0 => me,
        pool => pool,
    };
    format!("{PAYLOAD_BLOCK_PREFIX}{owner}-{me}-{n}")
}

/// Copies `bytes` into a new shared-memory block.
pub(crate) fn write_block(bytes: &[u8], _seq: u64) -> multiproc_ipc::Result<SharedMemory> {
    let mut shm = SharedMemory::create(&block_name(), bytes.len().max(1))?;
    // Written whole just below: one call maps it, not a fault per page.
    shm.populate(true);
    shm.write_at(0, bytes)?;
    Ok(shm)
}

/// Drops result blocks the parent has read; with `all`, first waits (10 s
/// at most) for the parent to read them all.
fn release_blocks(slot: &SlotView, blocks: &mut VecDeque<(u64, SharedMemory)>, all: bool) {
    if all {
        if let Some(&(last, _)) = blocks.back() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while slot.large_ack().load(Ordering::Acquire) < last && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
    let ack = slot.large_ack().load(Ordering::Acquire);
    while blocks.front().is_some_and(|(s, _)| *s <= ack) {
        blocks.pop_front();
    }
}

/// Publishes one result record, waiting for room if the ring is full.
/// Pushes the outcome of a task (run or skipped), counting the task in the
/// worker's finished count (`done`) first: whoever reads the result then
/// sees the worker done with the task, so a task chosen right after comes
/// here rather than behind a busy worker.
fn push_outcome(slot: &SlotView, parent: &Bell, done: &mut u64, kind: u8, id: u64, payload: &[u8]) {
    *done += 1;
    slot.finished().store(*done, Ordering::Release);
    push_result(slot, parent, kind, id, payload);
}

fn push_result(slot: &SlotView, parent: &Bell, kind: u8, id: u64, payload: &[u8]) {
    let id = id.to_le_bytes();
    loop {
        let mut t = slot.results.tail_pos();
        if slot.results.stage(&mut t, &[&[kind], &id, payload]) {
            slot.results.publish(t);
            parent.ring();
            return;
        }
        // The parent drains continuously; wait a little for room.
        parent.ring();
        if !spin_until(Duration::from_micros(20), || {
            slot.results.free() > payload.len() + 16
        }) {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_buffer_goes_back_where_it_came_from() {
        // A map chunk's outcome, built in the spare buffer: back to spare,
        // though a record would take it; the record buffer stays.
        let (mut buf, mut spare) = (vec![7u8; 16], Vec::new());
        let out = Vec::<u8>::with_capacity(1 << 20);
        let at = out.as_ptr();
        keep_outcome(out, true, &mut buf, &mut spare);
        assert_eq!(spare.as_ptr(), at);
        assert_eq!(buf, vec![7u8; 16]);

        // A small task's outcome, built in the record buffer: back to it.
        let out = Vec::<u8>::with_capacity(64);
        let at = out.as_ptr();
        keep_outcome(out, false, &mut buf, &mut spare);
        assert_eq!(buf.as_ptr(), at);

        // Grown past a record: kept as spare; past SPARE_MAX: dropped.
        let out = Vec::<u8>::with_capacity(RING_CAP + 1);
        let at = out.as_ptr();
        keep_outcome(out, false, &mut buf, &mut spare);
        assert_eq!(spare.as_ptr(), at);
        keep_outcome(
            Vec::with_capacity(SPARE_MAX + 1),
            true,
            &mut buf,
            &mut spare,
        );
        assert_eq!(spare.as_ptr(), at);
    }
}
