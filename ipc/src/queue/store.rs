//! The shared store behind [`LifoQueue`](super::LifoQueue) and
//! [`PriorityQueue`](super::PriorityQueue): items in fixed-size cells, their
//! order in an array of entries (a stack, or a binary min-heap), every change
//! published through a redo journal under one robust lock.
//!
//! # Layout
//!
//! One [`ShmRegion`]: a header (fixed offsets below), then four tables for
//! `n` cells: the *entries* (32 bytes each: the item's insertion sequence,
//! its first cell, its length and kind, and up to 16 bytes of a small item
//! itself), the cells' *next* links (4 bytes each), the *free* stack of cell
//! numbers (4 bytes each), and the *cells* ([`CELL`] bytes each). An item of
//! at most 16 encoded bytes lives in its entry alone (so a priority queue of
//! small items compares them without touching the cells); a larger one fills
//! a chain of cells. Cells come from the free stack, then from the never-used
//! ones above `fresh`, so fresh chains are contiguous and copied in one
//! piece. An item too large for the store (more than a quarter of it) travels
//! as a blob, as in the FIFO ring (see [`super::blob`]); its entry or cells
//! then hold the reference.
//!
//! # Order
//!
//! A LIFO queue pushes and pops entries at the end of the array. A priority
//! queue keeps a binary min-heap on (item, sequence), so equal items come
//! out in insertion order (Python's `heapq` with a counter). Comparing
//! decodes the stored items (a blob's segment is read in place); the item
//! being put is decoded once by its producer, outside the lock.
//!
//! # Crash safety
//!
//! The same protocol as the ring's, with one lock for both sides. An
//! operation first does everything no other process can see: it writes the
//! new item's cells (taken from above the free stack's published top or
//! `fresh`) or pushes freed cells above the published top, reads the entries
//! it needs and computes the entry writes of its sift (at most one per level
//! of the heap). Then it writes them, and the new length, free top, fresh
//! mark and sequence, to the journal, marks it valid, applies it and clears
//! it. A holder killed before the mark changed nothing visible; one killed
//! after it is completed by the next locker, which replays the journal
//! (applying it twice writes the same values). A consumer that had taken
//! over a blob and was killed before its commit leaves an entry whose segment
//! is gone: it sorts first, and the next consumer drops it (that one item is
//! lost with its consumer), as in the ring.

use std::cmp::Ordering as CmpOrdering;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use super::entry::{cells_for, Entry, Writes, MAX_WRITES};
use super::ops::Backend;
use super::ring::{bytes_prefix, fault, Flavor, GetStep, PutStep, Record, Sink, KIND_BLOB};
use super::wait::{self, RobustGuard, Stop, Waiter};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::ShmRegion;
use crate::sys::mutex::RobustMutex;
use crate::sys::shm_ref::ShmRef;

/// "mpordq01", little endian.
const MAGIC: u64 = u64::from_le_bytes(*b"mpordq01");
const VERSION: u32 = 1;

// Header, read-mostly (written once by the creator, `closed` once by close).
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_KIND: usize = 12;
const OFF_CELLS: usize = 16;
const OFF_MAXSIZE: usize = 24;
const OFF_TYPE_HASH: usize = 32;
const OFF_CREATOR: usize = 40;
const OFF_CLOSED: usize = 44;
const OFF_BLOBS_USED: usize = 48;
const OFF_LOCK: usize = 128;
// Published state: written only by commits, under the lock.
const OFF_LEN: usize = 256;
const OFF_FREE_TOP: usize = 264;
const OFF_FRESH: usize = 272;
const OFF_SEQ: usize = 280;
// The redo journal.
const OFF_JOURNAL: usize = 384;
const OFF_J_WRITES: usize = 388;
const OFF_J_LEN: usize = 392;
const OFF_J_FREE_TOP: usize = 400;
const OFF_J_FRESH: usize = 408;
const OFF_J_SEQ: usize = 416;
/// Entry writes: (position, then the entry's four words), 40 bytes each.
const OFF_J_ENTRIES: usize = 424;
/// The size of a journaled entry write.
const J_ENTRY: usize = 40;
// Waiting.
const OFF_ITEMS_EVENT: usize = 2048;
const OFF_SPACE_EVENT: usize = 2052;
/// Where the tables start (page aligned).
const TABLES: usize = 4096;

/// The size of one cell.
pub(crate) const CELL: usize = 64;
/// The smallest store (bytes of cells).
pub(crate) const MIN_CAPACITY: usize = 4096;
/// The largest store (bytes of cells): 2^26 cells.
pub(crate) const MAX_CAPACITY: usize = 1 << 32;

const _: () = {
    assert!(std::mem::size_of::<RobustMutex>() == 48);
    assert!(OFF_LOCK + 48 <= OFF_LEN && OFF_LOCK % 8 == 0);
    assert!(OFF_J_ENTRIES + J_ENTRY * MAX_WRITES <= OFF_ITEMS_EVENT);
    assert!(OFF_SPACE_EVENT + 4 <= TABLES && OFF_BLOBS_USED < OFF_LOCK);
    // ceil(log2(2^26)) + 1 levels, each at most one write.
    assert!(MAX_WRITES > 28);
};

/// How a priority queue orders its items: decodes stored bytes into a key.
pub(crate) trait Keys {
    type Key: Ord;
    /// The key of an item from its encoded bytes.
    fn key(&self, bytes: &[u8]) -> Result<Self::Key>;
}

/// The keys of a LIFO queue, which never compares.
pub(crate) struct NoKeys;

impl Keys for NoKeys {
    type Key = ();
    fn key(&self, _: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// An entry's sort key: `None` for an item whose blob is gone (it sorts
/// first, so the next get drops it), then the insertion sequence.
type SortKey<K> = (Option<K>, u64);

/// The published state a commit sets.
#[derive(Clone, Copy)]
struct State {
    len: u64,
    free_top: u64,
    fresh: u64,
    seq: u64,
}

/// The process-local handle on one ordered store.
pub(crate) struct Store {
    region: ShmRegion,
    words64: ShmRef<[AtomicU64; TABLES / 8]>,
    words32: ShmRef<[AtomicU32; TABLES / 4]>,
    lock: ShmRef<RobustMutex>,
    name: String,
    flavor: Flavor,
    /// Number of cells.
    cells: u64,
    maxsize: u64,
    next_off: usize,
    free_off: usize,
    cells_off: usize,
    waiter: Waiter,
}

/// Offsets of the tables after the header for `cells` cells: (next, free,
/// cells, region length).
fn table_offsets(cells: usize) -> (usize, usize, usize, usize) {
    let next = TABLES + 32 * cells;
    let free = next + 4 * cells;
    let cell = (free + 4 * cells).div_ceil(CELL) * CELL;
    (next, free, cell, cell + CELL * cells)
}

impl Store {
    /// Creates a store with `capacity` bytes of cells.
    pub(crate) fn create(
        flavor: Flavor,
        capacity: usize,
        maxsize: usize,
        type_hash: u64,
    ) -> Result<Store> {
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "queue capacity must be between {MIN_CAPACITY} and {MAX_CAPACITY} bytes, \
                     not {capacity}"
                ),
            ));
        }
        let cells = capacity / CELL;
        let (_, _, _, total) = table_offsets(cells);
        let region = ShmRegion::create(total)?;
        region
            .atomic_u32(OFF_VERSION)
            .store(VERSION, Ordering::Relaxed);
        region
            .atomic_u32(OFF_KIND)
            .store(flavor as u32, Ordering::Relaxed);
        region
            .atomic_u64(OFF_CELLS)
            .store(cells as u64, Ordering::Relaxed);
        region
            .atomic_u64(OFF_MAXSIZE)
            .store(maxsize as u64, Ordering::Relaxed);
        region
            .atomic_u64(OFF_TYPE_HASH)
            .store(type_hash, Ordering::Relaxed);
        region
            .atomic_u32(OFF_CREATOR)
            .store(std::process::id(), Ordering::Relaxed);
        region.atomic_u64(OFF_MAGIC).store(MAGIC, Ordering::Release);
        Store::from_region(region, flavor)
    }

    /// Attaches to an existing store, checking what it holds.
    pub(crate) fn attach(region: ShmRegion, flavor: Flavor, type_hash: u64) -> Result<Store> {
        let bad = |what: String| Error::new(ErrorKind::InvalidArgument, what);
        let name = region
            .name()
            .ok_or_else(|| bad("queue region has no name".into()))?
            .to_owned();
        if region.len() < TABLES {
            return Err(bad(format!("{name} is too small to be a queue")));
        }
        if region.atomic_u64(OFF_MAGIC).load(Ordering::Acquire) != MAGIC
            || region.atomic_u32(OFF_VERSION).load(Ordering::Relaxed) != VERSION
        {
            return Err(bad(format!(
                "{name} is not an ordered queue of this version"
            )));
        }
        let kind = region.atomic_u32(OFF_KIND).load(Ordering::Relaxed);
        if kind != flavor as u32 {
            return Err(bad(format!(
                "{name} is not a {} (kind {kind})",
                flavor.name()
            )));
        }
        if region.atomic_u64(OFF_TYPE_HASH).load(Ordering::Relaxed) != type_hash {
            return Err(bad(format!(
                "{name} holds items of another type than this handle's"
            )));
        }
        Store::from_region(region, flavor)
    }

    fn from_region(region: ShmRegion, flavor: Flavor) -> Result<Store> {
        let bad = |what: &str| Error::new(ErrorKind::InvalidArgument, what.to_owned());
        let name = region
            .name()
            .ok_or_else(|| bad("queue region has no name"))?
            .to_owned();
        let cells = region.atomic_u64(OFF_CELLS).load(Ordering::Relaxed);
        if cells < (MIN_CAPACITY / CELL) as u64 || cells > (MAX_CAPACITY / CELL) as u64 {
            return Err(bad("queue region has a corrupt header"));
        }
        let (next_off, free_off, cells_off, total) = table_offsets(cells as usize);
        if total > region.len() {
            return Err(bad("queue region is smaller than its header says"));
        }
        let short = || bad("queue region is too small");
        Ok(Store {
            words64: ShmRef::new(region.clone(), 0).ok_or_else(short)?,
            words32: ShmRef::new(region.clone(), 0).ok_or_else(short)?,
            lock: ShmRef::new(region.clone(), OFF_LOCK).ok_or_else(short)?,
            maxsize: region.atomic_u64(OFF_MAXSIZE).load(Ordering::Relaxed),
            region,
            name,
            flavor,
            cells,
            next_off,
            free_off,
            cells_off,
            waiter: Waiter::new(),
        })
    }

    pub(crate) fn region(&self) -> &ShmRegion {
        &self.region
    }

    pub(crate) fn flavor(&self) -> Flavor {
        self.flavor
    }

    pub(crate) fn type_hash(&self) -> u64 {
        self.a64(OFF_TYPE_HASH).load(Ordering::Relaxed)
    }

    pub(crate) fn creator_pid(&self) -> u32 {
        self.a32(OFF_CREATOR).load(Ordering::Relaxed)
    }

    /// The item-count bound, 0 for none.
    pub(crate) fn maxsize(&self) -> u64 {
        self.maxsize
    }

    /// Bytes of cells.
    pub(crate) fn capacity(&self) -> usize {
        self.cells as usize * CELL
    }

    /// Items in the store.
    pub(crate) fn len(&self) -> u64 {
        self.a64(OFF_LEN).load(Ordering::Acquire)
    }

    pub(crate) fn blobs_used(&self) -> bool {
        self.a32(OFF_BLOBS_USED).load(Ordering::Relaxed) != 0
    }

    pub(crate) fn close(&self) {
        self.a32(OFF_CLOSED).store(1, Ordering::SeqCst);
        self.wake_all_waiters();
    }

    #[inline]
    fn a32(&self, off: usize) -> &AtomicU32 {
        &self.words32[off / 4]
    }

    #[inline]
    fn a64(&self, off: usize) -> &AtomicU64 {
        &self.words64[off / 8]
    }

    fn corrupt(&self, what: &str) -> Error {
        Error::new(
            ErrorKind::Io,
            format!("queue {} is corrupt: {what}", self.name),
        )
    }

    /// A table word at `off` (bounds checked: a corrupt index is an error).
    fn t64(&self, off: usize) -> Result<&AtomicU64> {
        self.region
            .view::<AtomicU64>(off)
            .ok_or_else(|| self.corrupt("table index out of range"))
    }

    fn t32(&self, off: usize) -> Result<&AtomicU32> {
        self.region
            .view::<AtomicU32>(off)
            .ok_or_else(|| self.corrupt("table index out of range"))
    }

    fn check_cell(&self, c: u64) -> Result<u32> {
        if c < self.cells {
            Ok(c as u32)
        } else {
            Err(self.corrupt("cell number out of range"))
        }
    }

    fn entry(&self, pos: u64) -> Result<Entry> {
        if pos >= self.cells {
            return Err(self.corrupt("entry position out of range"));
        }
        let off = TABLES + 32 * pos as usize;
        Ok(Entry {
            seq: self.t64(off)?.load(Ordering::Relaxed),
            word: self.t64(off + 8)?.load(Ordering::Relaxed),
            data: [
                self.t64(off + 16)?.load(Ordering::Relaxed),
                self.t64(off + 24)?.load(Ordering::Relaxed),
            ],
        })
    }

    fn set_entry(&self, pos: u64, e: Entry) -> Result<()> {
        if pos >= self.cells {
            return Err(self.corrupt("entry position out of range"));
        }
        let off = TABLES + 32 * pos as usize;
        self.t64(off)?.store(e.seq, Ordering::Relaxed);
        self.t64(off + 8)?.store(e.word, Ordering::Relaxed);
        self.t64(off + 16)?.store(e.data[0], Ordering::Relaxed);
        self.t64(off + 24)?.store(e.data[1], Ordering::Relaxed);
        Ok(())
    }

    fn next(&self, c: u32) -> Result<u32> {
        let n = self
            .t32(self.next_off + 4 * c as usize)?
            .load(Ordering::Relaxed);
        self.check_cell(u64::from(n))
    }

    fn cell_off(&self, c: u32) -> usize {
        self.cells_off + CELL * c as usize
    }

    fn state(&self) -> State {
        State {
            len: self.a64(OFF_LEN).load(Ordering::Relaxed),
            free_top: self.a64(OFF_FREE_TOP).load(Ordering::Relaxed),
            fresh: self.a64(OFF_FRESH).load(Ordering::Relaxed),
            seq: self.a64(OFF_SEQ).load(Ordering::Relaxed),
        }
    }

    // -- locking and the journal --------------------------------------------

    fn lock(&self, deadline: Option<Instant>) -> std::result::Result<RobustGuard<'_>, Stop> {
        wait::lock_robust(&self.lock, deadline, || self.repair())
    }

    /// Completes a dead holder's commit if its journal is valid.
    fn repair(&self) {
        if self.a32(OFF_JOURNAL).load(Ordering::Acquire) == 1 {
            self.apply_journal();
        }
        // Whoever waited for the dead holder's publish may have missed it.
        self.wake_all_waiters();
    }

    /// Publishes `state` and the entry writes through the journal.
    fn commit(&self, state: State, writes: &Writes) {
        for (i, (pos, e)) in writes.list[..writes.n].iter().enumerate() {
            self.journal_entry(i, *pos, *e);
        }
        self.a32(OFF_J_WRITES)
            .store(writes.n as u32, Ordering::Relaxed);
        self.a64(OFF_J_LEN).store(state.len, Ordering::Relaxed);
        self.a64(OFF_J_FREE_TOP)
            .store(state.free_top, Ordering::Relaxed);
        self.a64(OFF_J_FRESH).store(state.fresh, Ordering::Relaxed);
        self.a64(OFF_J_SEQ).store(state.seq, Ordering::Relaxed);
        self.a32(OFF_JOURNAL).store(1, Ordering::Release);
        fault::hit(fault::Point::Committing);
        self.apply_journal();
    }

    /// Writes entry write `i` of the journal.
    fn journal_entry(&self, i: usize, pos: u64, e: Entry) {
        let off = OFF_J_ENTRIES + J_ENTRY * i;
        self.a64(off).store(pos, Ordering::Relaxed);
        self.a64(off + 8).store(e.seq, Ordering::Relaxed);
        self.a64(off + 16).store(e.word, Ordering::Relaxed);
        self.a64(off + 24).store(e.data[0], Ordering::Relaxed);
        self.a64(off + 32).store(e.data[1], Ordering::Relaxed);
    }

    /// Applies the valid journal (idempotent) and clears it.
    fn apply_journal(&self) {
        let n = (self.a32(OFF_J_WRITES).load(Ordering::Acquire) as usize).min(MAX_WRITES);
        for i in 0..n {
            let off = OFF_J_ENTRIES + J_ENTRY * i;
            let pos = self.a64(off).load(Ordering::Relaxed);
            let e = Entry {
                seq: self.a64(off + 8).load(Ordering::Relaxed),
                word: self.a64(off + 16).load(Ordering::Relaxed),
                data: [
                    self.a64(off + 24).load(Ordering::Relaxed),
                    self.a64(off + 32).load(Ordering::Relaxed),
                ],
            };
            // Positions were checked when the journal was written.
            let _ = self.set_entry(pos, e);
        }
        let len = self.a64(OFF_J_LEN).load(Ordering::Relaxed);
        self.a64(OFF_FREE_TOP).store(
            self.a64(OFF_J_FREE_TOP).load(Ordering::Relaxed),
            Ordering::Release,
        );
        self.a64(OFF_FRESH).store(
            self.a64(OFF_J_FRESH).load(Ordering::Relaxed),
            Ordering::Release,
        );
        self.a64(OFF_SEQ).store(
            self.a64(OFF_J_SEQ).load(Ordering::Relaxed),
            Ordering::Release,
        );
        self.a64(OFF_LEN).store(len, Ordering::Release);
        self.a32(OFF_JOURNAL).store(0, Ordering::Release);
    }

    // -- items ---------------------------------------------------------------

    /// Copies the bytes of `e` out of its cells into `out` (resized to fit),
    /// calling `each` with every cell of the chain.
    fn read_cells(&self, e: Entry, out: &mut [u8], mut each: impl FnMut(u32)) -> Result<()> {
        let len = e.len();
        if out.len() < len {
            return Err(self.corrupt("item longer than its buffer"));
        }
        if e.is_small() {
            out[..len].copy_from_slice(&e.small_bytes()[..len]);
            return Ok(());
        }
        let k = cells_for(len);
        let mut c = self.check_cell(u64::from(e.first()))?;
        // A run of consecutive cells is copied at once.
        let mut run_start = c;
        let mut run_cells = 0usize;
        let mut done = 0usize;
        for i in 0..k {
            each(c);
            run_cells += 1;
            let last = i + 1 == k;
            let next = if last { c } else { self.next(c)? };
            if last || next != c.wrapping_add(1) {
                let n = (run_cells * CELL).min(len - done);
                self.region
                    .read_at(self.cell_off(run_start), &mut out[done..done + n])?;
                done += n;
                run_start = next;
                run_cells = 0;
            }
            c = next;
        }
        Ok(())
    }

    /// The key of the item of `e`.
    fn key_of<K: Keys>(
        &self,
        keys: &K,
        e: Entry,
        scratch: &mut Vec<u8>,
    ) -> Result<SortKey<K::Key>> {
        if e.is_small() && !e.is_blob() {
            let b = e.small_bytes();
            return Ok((Some(keys.key(&b[..e.len()])?), e.seq));
        }
        scratch.clear();
        scratch.resize(e.len(), 0);
        self.read_cells(e, scratch, |_| {})?;
        if e.is_blob() {
            return Ok(match super::blob::open(scratch)? {
                Some(b) => (Some(keys.key(b.bytes())?), e.seq),
                None => (None, e.seq),
            });
        }
        Ok((Some(keys.key(scratch)?), e.seq))
    }

    /// One attempt to add `rec`, whose item has the key `key` (ignored by a
    /// LIFO queue). Waits only for the lock.
    fn try_put<K: Keys>(
        &self,
        keys: &K,
        key: &K::Key,
        rec: &Record<'_>,
        deadline: Option<Instant>,
    ) -> std::result::Result<PutStep, Stop> {
        if self.is_closed() {
            return Ok(PutStep::Closed);
        }
        let len = rec.len();
        let k = cells_for(len);
        let guard = self.lock(deadline)?;
        let st = self.state();
        if (self.maxsize != 0 && st.len >= self.maxsize)
            || st.len >= self.cells
            || st.free_top + self.cells.saturating_sub(st.fresh) < k
        {
            return Ok(PutStep::Full);
        }
        let blob = rec.kind == KIND_BLOB;
        let (entry, new_top, new_fresh) = if k == 0 {
            (Entry::small(st.seq, rec.parts, blob), st.free_top, st.fresh)
        } else {
            let (first, top, fresh) = self.fill_cells(rec, st, k).map_err(Stop::failed)?;
            (Entry::new(st.seq, first, len, blob), top, fresh)
        };
        fault::hit(fault::Point::PutWritten);
        let mut writes = Writes::new();
        let result = match self.flavor {
            Flavor::Priority => self.sift_up(keys, key, entry, st.len, &mut writes),
            _ => writes.push(st.len, entry),
        };
        result.map_err(Stop::failed)?;
        let state = State {
            len: st.len + 1,
            free_top: new_top,
            fresh: new_fresh,
            seq: st.seq + 1,
        };
        self.commit(state, &writes);
        drop(guard);
        wait::notify(self.a32(OFF_ITEMS_EVENT));
        Ok(PutStep::Done)
    }

    /// Writes `rec` into `k` unpublished cells; returns (first cell, new free
    /// top, new fresh mark).
    fn fill_cells(&self, rec: &Record<'_>, st: State, k: u64) -> Result<(u32, u64, u64)> {
        let from_free = k.min(st.free_top);
        let cell_at = |j: u64| -> Result<u32> {
            if j < from_free {
                let slot = self.free_off + 4 * (st.free_top - 1 - j) as usize;
                self.check_cell(u64::from(self.t32(slot)?.load(Ordering::Relaxed)))
            } else {
                self.check_cell(st.fresh + (j - from_free))
            }
        };
        let len = rec.len();
        let first = cell_at(0)?;
        let mut c = first;
        let mut run_start = c;
        let mut run_from = 0usize;
        for j in 0..k {
            let last = j + 1 == k;
            let next = if last { c } else { cell_at(j + 1)? };
            if !last {
                self.t32(self.next_off + 4 * c as usize)?
                    .store(next, Ordering::Relaxed);
            }
            if last || next != c.wrapping_add(1) {
                let upto = (((j + 1) as usize) * CELL).min(len);
                self.write_parts(self.cell_off(run_start), rec.parts, run_from, upto)?;
                run_start = next;
                run_from = upto;
            }
            c = next;
        }
        Ok((first, st.free_top - from_free, st.fresh + (k - from_free)))
    }

    /// Writes bytes `a..b` of the concatenated `parts` at region offset `off`.
    fn write_parts(&self, off: usize, parts: [&[u8]; 2], a: usize, b: usize) -> Result<()> {
        let p0 = parts[0].len();
        if a < p0 {
            self.region.write_at(off, &parts[0][a..b.min(p0)])?;
        }
        if b > p0 {
            let s = a.max(p0);
            self.region
                .write_at(off + (s - a), &parts[1][s - p0..b - p0])?;
        }
        Ok(())
    }

    /// The writes that place `entry` (with key `key`) at the new end `n` and
    /// move it up past every greater item.
    fn sift_up<K: Keys>(
        &self,
        keys: &K,
        key: &K::Key,
        entry: Entry,
        n: u64,
        writes: &mut Writes,
    ) -> Result<()> {
        let mut scratch = Vec::new();
        let mut i = n;
        while i > 0 {
            let p = (i - 1) / 2;
            let parent = self.entry(p)?;
            let (pk, _) = self.key_of(keys, parent, &mut scratch)?;
            // The new item has the largest sequence: it passes its parent
            // only if strictly less, so equal items keep insertion order.
            let less = match &pk {
                None => false,
                Some(pk) => key.cmp(pk) == CmpOrdering::Less,
            };
            if !less {
                break;
            }
            writes.push(i, parent)?;
            i = p;
        }
        writes.push(i, entry)
    }

    /// The writes that remove the root of a heap of `n` items: the last entry
    /// moves down from the root past every smaller child.
    fn sift_down<K: Keys>(&self, keys: &K, n: u64, writes: &mut Writes) -> Result<()> {
        let m = n - 1;
        if m == 0 {
            return Ok(());
        }
        let mut scratch = Vec::new();
        let last = self.entry(m)?;
        let lk = self.key_of(keys, last, &mut scratch)?;
        let mut i = 0u64;
        loop {
            let l = 2 * i + 1;
            if l >= m {
                break;
            }
            let mut c = l;
            let mut ce = self.entry(l)?;
            let mut ck = self.key_of(keys, ce, &mut scratch)?;
            if l + 1 < m {
                let re = self.entry(l + 1)?;
                let rk = self.key_of(keys, re, &mut scratch)?;
                if rk < ck {
                    (c, ce, ck) = (l + 1, re, rk);
                }
            }
            if ck >= lk {
                break;
            }
            writes.push(i, ce)?;
            i = c;
        }
        writes.push(i, last)
    }

    /// One attempt to take the next item (the newest for LIFO, the least for
    /// priority) into `sink`. Waits only for the lock.
    fn try_get<K: Keys>(
        &self,
        keys: &K,
        sink: &mut Sink<'_>,
        deadline: Option<Instant>,
    ) -> std::result::Result<GetStep, Stop> {
        loop {
            let closed = self.is_closed();
            if self.len() == 0 {
                return Ok(if closed {
                    GetStep::Closed
                } else {
                    GetStep::Empty
                });
            }
            let guard = self.lock(deadline)?;
            let st = self.state();
            if st.len == 0 {
                drop(guard);
                continue;
            }
            let (pos, mut writes) = (
                if self.flavor == Flavor::Priority {
                    0
                } else {
                    st.len - 1
                },
                Writes::new(),
            );
            let e = self.entry(pos).map_err(Stop::failed)?;
            if self.flavor == Flavor::Priority {
                self.sift_down(keys, st.len, &mut writes)
                    .map_err(Stop::failed)?;
            }
            let k = cells_for(e.len());
            if st.free_top + k > self.cells {
                return Err(Stop::failed(self.corrupt("free stack overflows")));
            }
            let step = self.take_item(e, st.free_top, sink).map_err(Stop::failed)?;
            fault::hit(fault::Point::GetRead);
            let state = State {
                len: st.len - 1,
                free_top: st.free_top + k,
                ..st
            };
            self.commit(state, &writes);
            drop(guard);
            fault::hit(fault::Point::GetCommitted);
            fence(Ordering::SeqCst);
            wait::notify_fenced(self.a32(OFF_SPACE_EVENT));
            if self.a32(OFF_ITEMS_EVENT).load(Ordering::Relaxed) & 1 != 0 && self.len() > 0 {
                // Pass the baton: a getter woken for an earlier item may have
                // left (timed out) without taking it.
                wait::notify_fenced(self.a32(OFF_ITEMS_EVENT));
            }
            match step {
                Some(s) => return Ok(s),
                // The blob is gone: a consumer killed while taking it. That
                // item is lost with it; its entry is dropped.
                None => continue,
            }
        }
    }

    /// Copies the item of `e` out (taking over its blob), pushing its cells
    /// above the free stack's published top `free_top`. `None` if its blob
    /// is gone.
    fn take_item(&self, e: Entry, free_top: u64, sink: &mut Sink<'_>) -> Result<Option<GetStep>> {
        let len = e.len();
        let mut j = free_top;
        let mut push = |c: u32| {
            if let Ok(slot) = self.t32(self.free_off + 4 * j as usize) {
                slot.store(c, Ordering::Relaxed);
            }
            j += 1;
        };
        if e.is_blob() {
            let mut reference = vec![0u8; len];
            self.read_cells(e, &mut reference, &mut push)?;
            // Taking a blob over unlinks its name: from here the segment
            // lives exactly as long as our mapping, whatever happens to us.
            return Ok(super::blob::take(&reference)?.map(GetStep::Blob));
        }
        match sink {
            Sink::Encoded(buf) => {
                if buf.len() < len {
                    buf.resize(len, 0);
                }
                self.read_cells(e, &mut buf[..len], &mut push)?;
                Ok(Some(GetStep::Inline(len)))
            }
            Sink::Bytes(out) => {
                out.clear();
                out.resize(len, 0);
                self.read_cells(e, out, &mut push)?;
                let (n, used) = bytes_prefix(&out[..len.min(10)], len)?;
                out.drain(..used);
                Ok(Some(GetStep::Inline(n)))
            }
        }
    }

    // -- waiting -------------------------------------------------------------

    pub(crate) fn is_closed(&self) -> bool {
        self.a32(OFF_CLOSED).load(Ordering::Acquire) != 0
    }

    fn has_space(&self, k: u64) -> bool {
        let len = self.len();
        let free = self.a64(OFF_FREE_TOP).load(Ordering::Acquire)
            + self
                .cells
                .saturating_sub(self.a64(OFF_FRESH).load(Ordering::Acquire));
        (self.maxsize == 0 || len < self.maxsize) && len < self.cells && free >= k
    }

    fn wake_all_waiters(&self) {
        for event in [OFF_ITEMS_EVENT, OFF_SPACE_EVENT] {
            wait::wake_all(self.a32(event));
        }
    }

    fn wait_for(
        &self,
        ready: impl Fn() -> bool,
        event: usize,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), Stop> {
        self.waiter.wait_for(self.a32(event), ready, deadline, || {
            wait::repair_if_abandoned(&self.lock, || self.repair())
        })
    }
}

/// The store seen by the shared put and get loops ([`Backend`]), with the
/// keys of its order and, for a put, the key of the item being put.
pub(crate) struct Ordered<'a, K: Keys> {
    pub(crate) store: &'a Store,
    pub(crate) keys: &'a K,
    pub(crate) key: Option<&'a K::Key>,
}

impl<K: Keys> Backend for Ordered<'_, K> {
    fn name(&self) -> &str {
        &self.store.name
    }
    fn inline_max(&self) -> usize {
        self.store.capacity() / 4
    }
    fn is_closed(&self) -> bool {
        self.store.is_closed()
    }
    fn mark_blobs_used(&self) {
        let w = self.store.a32(OFF_BLOBS_USED);
        if w.load(Ordering::Relaxed) == 0 {
            w.store(1, Ordering::Relaxed);
        }
    }
    fn try_put(
        &self,
        rec: &Record<'_>,
        deadline: Option<Instant>,
    ) -> std::result::Result<PutStep, Stop> {
        match self.key {
            Some(key) => self.store.try_put(self.keys, key, rec, deadline),
            None => Err(Stop::failed(Error::new(
                ErrorKind::Io,
                "ordered put without a key",
            ))),
        }
    }
    fn wait_space(&self, len: usize, deadline: Option<Instant>) -> std::result::Result<(), Stop> {
        let k = cells_for(len);
        let s = self.store;
        s.wait_for(
            || s.is_closed() || s.has_space(k),
            OFF_SPACE_EVENT,
            deadline,
        )
    }
    fn try_get(
        &self,
        sink: &mut Sink<'_>,
        deadline: Option<Instant>,
    ) -> std::result::Result<GetStep, Stop> {
        self.store.try_get(self.keys, sink, deadline)
    }
    fn wait_items(&self, deadline: Option<Instant>) -> std::result::Result<(), Stop> {
        let s = self.store;
        s.wait_for(|| s.is_closed() || s.len() > 0, OFF_ITEMS_EVENT, deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_journal_is_replayed_and_an_invalid_one_ignored() {
        let s = Store::create(Flavor::Lifo, MIN_CAPACITY, 0, 1).unwrap();
        let mut w = Writes::new();
        w.push(0, Entry::small(0, [&[7, 8, 9], &[]], false))
            .unwrap();
        // A holder killed after marking its journal valid: replayed.
        let st = State {
            len: 1,
            free_top: 0,
            fresh: 0,
            seq: 1,
        };
        for (i, (pos, e)) in w.list[..w.n].iter().enumerate() {
            s.journal_entry(i, *pos, *e);
        }
        s.a32(OFF_J_WRITES).store(1, Ordering::Relaxed);
        s.a64(OFF_J_LEN).store(st.len, Ordering::Relaxed);
        s.a64(OFF_J_FRESH).store(st.fresh, Ordering::Relaxed);
        s.a64(OFF_J_SEQ).store(st.seq, Ordering::Relaxed);
        s.a32(OFF_JOURNAL).store(1, Ordering::Relaxed);
        s.repair();
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.entry(0).unwrap(),
            Entry::small(0, [&[7, 8, 9], &[]], false)
        );
        assert_eq!(s.a32(OFF_JOURNAL).load(Ordering::Relaxed), 0);
        // Killed before marking it: nothing changes.
        s.a64(OFF_J_LEN).store(5, Ordering::Relaxed);
        s.repair();
        assert_eq!(s.len(), 1);
    }
}
