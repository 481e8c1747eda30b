//! The shared ring behind every queue: layout, commit protocol, waiting.
//!
//! # Layout
//!
//! One [`ShmRegion`]: a header (fixed offsets below, grouped so that what
//! producers write, what consumers write and what both read sit on separate
//! 128-byte pairs of cache lines, the unit the adjacent-line prefetcher
//! moves), then the ring of `capacity` bytes.
//!
//! # Records
//!
//! A record is an 8-byte header (`len: u32`, `kind: u32`, little endian) and
//! `len` payload bytes, padded to 8. Positions (`head`, `tail`) grow forever;
//! a record's physical offset is its position modulo the capacity, and its
//! payload may wrap (copied in two parts). Kinds: an inline item (the codec's
//! bytes) or a *blob* reference (an item too large for the ring, carried in
//! its own named segment; see [`super::blob`]).
//!
//! # Locking and crash safety
//!
//! Producers serialise on the *put lock*, consumers on the *get lock*: both
//! are robust process-shared mutexes, so a producer never waits for a
//! consumer's lock or the other way round. Each operation writes what it needs
//! first and publishes at the very end through a small redo journal beside its
//! lock: the new position and count are written to the journal, the journal is
//! marked valid, the two published words are stored, the journal is cleared.
//! If the holder is killed, the next locker gets `OwnerDied` and repairs: a
//! valid journal is re-applied (the operation happened), anything else is
//! discarded (it did not). A consumer killed before its commit leaves its item
//! in the queue for the next consumer; one killed after its commit took the
//! item with it.
//!
//! # Waiting
//!
//! Spin, then park on shared futex event words: see [`super::wait`].

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

pub(crate) use super::wait::Stop;
use super::wait::{self, RobustGuard, Waiter};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::ShmRegion;
use crate::sys::mutex::RobustMutex;
use crate::sys::shm_ref::ShmRef;

/// "mpqueue1", little endian.
pub(crate) const MAGIC: u64 = 0x3165_7565_7571_706d;
pub(crate) const VERSION: u32 = 1;

// Header, read-mostly (written once by the creator, `closed` once by close).
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_KIND: usize = 12;
const OFF_CAPACITY: usize = 16;
const OFF_MAXSIZE: usize = 24;
const OFF_TYPE_HASH: usize = 32;
const OFF_CREATOR: usize = 40;
const OFF_CLOSED: usize = 44;
const OFF_BLOBS_USED: usize = 48;
// Producers' private lines: the put lock, its journal, their caches.
const OFF_PUT_LOCK: usize = 128;
const OFF_PUT_JOURNAL: usize = 176;
const OFF_PUT_J_TAIL: usize = 184;
const OFF_PUT_J_COUNT: usize = 192;
const OFF_PUT_HEAD_CACHE: usize = 200;
const OFF_PUT_GOT_CACHE: usize = 208;
// Published by producers.
const OFF_TAIL: usize = 256;
const OFF_PUT_COUNT: usize = 264;
// Consumers' private lines.
const OFF_GET_LOCK: usize = 384;
const OFF_GET_JOURNAL: usize = 432;
const OFF_GET_J_HEAD: usize = 440;
const OFF_GET_J_COUNT: usize = 448;
const OFF_GET_TAIL_CACHE: usize = 456;
// Published by consumers.
const OFF_HEAD: usize = 512;
const OFF_GET_COUNT: usize = 520;
// Waiting (written only around parking).
// Event words: bit 0 = someone is parked on it, bits 1.. = a sequence bumped
// by every notification that found the bit set.
const OFF_ITEMS_EVENT: usize = 640;
const OFF_SPACE_EVENT: usize = 644;
const OFF_JOIN_EVENT: usize = 648;
// JoinableQueue: task_done calls so far.
const OFF_DONE_COUNT: usize = 768;
/// Where the ring starts (page aligned).
pub(crate) const RING_START: usize = 4096;

/// Size of a record header.
pub(crate) const RECORD_HEADER: usize = 8;
pub(crate) const KIND_INLINE: u32 = 1;
pub(crate) const KIND_BLOB: u32 = 2;

// The layout, pinned at compile time: aligned words, the locks and their
// journals apart, producers' and consumers' words on different cache lines.
const _: () = {
    let lock = std::mem::size_of::<RobustMutex>();
    assert!(lock == 48 && std::mem::align_of::<RobustMutex>() == 8);
    assert!(OFF_PUT_LOCK % 8 == 0 && OFF_GET_LOCK % 8 == 0);
    assert!(OFF_PUT_LOCK + lock <= OFF_PUT_JOURNAL);
    assert!(OFF_GET_LOCK + lock <= OFF_GET_JOURNAL);
    assert!(OFF_PUT_J_TAIL % 8 == 0 && OFF_GET_J_HEAD % 8 == 0);
    assert!(OFF_PUT_GOT_CACHE + 8 <= OFF_TAIL && OFF_GET_TAIL_CACHE + 8 <= OFF_HEAD);
    assert!(OFF_PUT_GOT_CACHE / 128 == OFF_PUT_LOCK / 128);
    assert!(OFF_GET_TAIL_CACHE / 128 == OFF_GET_LOCK / 128);
    assert!(OFF_TAIL / 128 != OFF_PUT_LOCK / 128 && OFF_TAIL / 128 != OFF_HEAD / 128);
    assert!(OFF_HEAD / 128 != OFF_GET_LOCK / 128 && OFF_ITEMS_EVENT / 128 != OFF_HEAD / 128);
    assert!(OFF_DONE_COUNT / 128 != OFF_ITEMS_EVENT / 128);
    assert!(OFF_JOIN_EVENT + 4 <= OFF_DONE_COUNT && OFF_DONE_COUNT + 8 <= RING_START);
    assert!(RING_START % 4096 == 0 && OFF_MAGIC == 0 && OFF_BLOBS_USED < OFF_PUT_LOCK);
};

/// The smallest ring.
pub(crate) const MIN_CAPACITY: usize = 4096;
/// The largest ring (positions and lengths stay far from overflow).
pub(crate) const MAX_CAPACITY: usize = 1 << 32;

/// What a queue region holds; checked when a handle re-attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Flavor {
    Queue = 1,
    Joinable = 2,
    Simple = 3,
    /// A LIFO queue (an ordered store, not a ring).
    Lifo = 4,
    /// A priority queue (an ordered store, not a ring).
    Priority = 5,
}

impl Flavor {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Flavor::Queue => "Queue",
            Flavor::Joinable => "JoinableQueue",
            Flavor::Simple => "SimpleQueue",
            Flavor::Lifo => "LifoQueue",
            Flavor::Priority => "PriorityQueue",
        }
    }
}

fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

/// Space a record with `len` payload bytes takes in the ring.
pub(crate) fn record_size(len: usize) -> u64 {
    RECORD_HEADER as u64 + align8(len as u64)
}

/// A 64-bit FNV-1a hash: stable across processes and builds.
pub(crate) fn stable_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Decodes the codec's length prefix of a byte vector whose encoding is
/// `total` bytes long; returns (byte count, prefix length).
pub(crate) fn bytes_prefix(head: &[u8], total: usize) -> Result<(usize, usize)> {
    let (n, used) = crate::codec::Codec::default().decode_prefix::<u64>(head)?;
    if (used as u64).checked_add(n) != Some(total as u64) {
        return Err(Error::new(
            ErrorKind::Serialization,
            format!("queue item of {total} bytes does not hold a byte vector of {n}"),
        ));
    }
    Ok((n as usize, used))
}

/// Records up to this size (header included) are copied in and out whole.
const SMALL: usize = 64;

/// Puts an item already copied out of the ring into `sink`.
fn fill_sink(item: &[u8], sink: &mut Sink<'_>) -> Result<usize> {
    match sink {
        Sink::Encoded(buf) => {
            if buf.len() < item.len() {
                buf.resize(item.len(), 0);
            }
            buf[..item.len()].copy_from_slice(item);
            Ok(item.len())
        }
        Sink::Bytes(out) => {
            let (n, used) = bytes_prefix(&item[..item.len().min(10)], item.len())?;
            out.clear();
            out.extend_from_slice(&item[used..]);
            Ok(n)
        }
    }
}

/// Outcome of one non-blocking put attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PutStep {
    Done,
    Full,
    Closed,
}

/// Outcome of one non-blocking get attempt.
#[derive(Debug)]
pub(crate) enum GetStep {
    /// An inline item: its bytes are in the caller's buffer, `..len`.
    Inline(usize),
    /// A blob item: the segment, already taken over (unlinked) by us.
    Blob(super::blob::TakenBlob),
    Empty,
    Closed,
}

/// A record to publish: its kind and its payload, in up to two parts (the
/// codec's length prefix and the raw bytes, for byte-vector items).
pub(crate) struct Record<'a> {
    pub(crate) kind: u32,
    pub(crate) parts: [&'a [u8]; 2],
}

impl Record<'_> {
    pub(crate) fn len(&self) -> usize {
        self.parts[0].len() + self.parts[1].len()
    }
}

/// Where a get puts an inline item.
pub(crate) enum Sink<'a> {
    /// The codec's bytes, into a reusable buffer (grown as needed, never
    /// shrunk): `GetStep::Inline(n)` means `buf[..n]`.
    Encoded(&'a mut Vec<u8>),
    /// For byte-vector items: just the bytes after the codec's length
    /// prefix, into this vector, which ends up exactly that long.
    Bytes(&'a mut Vec<u8>),
}

/// The process-local handle on one queue region.
pub(crate) struct Ring {
    region: ShmRegion,
    /// The header as 64-bit and as 32-bit words, and the two locks, resolved
    /// once: the hot paths index them with constant offsets, no checks.
    words64: ShmRef<[AtomicU64; RING_START / 8]>,
    words32: ShmRef<[AtomicU32; RING_START / 4]>,
    put_lock: ShmRef<RobustMutex>,
    get_lock: ShmRef<RobustMutex>,
    name: String,
    flavor: Flavor,
    capacity: u64,
    maxsize: u64,
    waiter: Waiter,
}

/// Which lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Put,
    Get,
}

impl Ring {
    /// Creates a queue region with a ring of `capacity` bytes.
    pub(crate) fn create(
        flavor: Flavor,
        capacity: usize,
        maxsize: usize,
        type_hash: u64,
    ) -> Result<Ring> {
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "queue capacity must be between {MIN_CAPACITY} and {MAX_CAPACITY} bytes, \
                     not {capacity}"
                ),
            ));
        }
        let capacity = align8(capacity as u64);
        let region = ShmRegion::create(RING_START + capacity as usize)?;
        let name = match region.name() {
            Some(n) => n.to_owned(),
            None => return Err(Error::new(ErrorKind::Io, "queue region has no name")),
        };
        region
            .atomic_u32(OFF_VERSION)
            .store(VERSION, Ordering::Relaxed);
        region
            .atomic_u32(OFF_KIND)
            .store(flavor as u32, Ordering::Relaxed);
        region
            .atomic_u64(OFF_CAPACITY)
            .store(capacity, Ordering::Relaxed);
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
        Ring::from_parts(region, name, flavor)
    }

    /// Attaches to an existing queue region, checking what it holds.
    pub(crate) fn attach(region: ShmRegion, flavor: Flavor, type_hash: u64) -> Result<Ring> {
        let bad = |what: String| Error::new(ErrorKind::InvalidArgument, what);
        let name = region
            .name()
            .ok_or_else(|| bad("queue region has no name".into()))?
            .to_owned();
        if region.len() < RING_START + MIN_CAPACITY {
            return Err(bad(format!("{name} is too small to be a queue")));
        }
        if region.atomic_u64(OFF_MAGIC).load(Ordering::Acquire) != MAGIC
            || region.atomic_u32(OFF_VERSION).load(Ordering::Relaxed) != VERSION
        {
            return Err(bad(format!("{name} is not a queue of this version")));
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
        let capacity = region.atomic_u64(OFF_CAPACITY).load(Ordering::Relaxed);
        if capacity < MIN_CAPACITY as u64
            || capacity % 8 != 0
            || RING_START as u64 + capacity > region.len() as u64
        {
            return Err(bad(format!("{name} has a corrupt header")));
        }
        Ring::from_parts(region, name, flavor)
    }

    fn from_parts(region: ShmRegion, name: String, flavor: Flavor) -> Result<Ring> {
        let capacity = region.atomic_u64(OFF_CAPACITY).load(Ordering::Relaxed);
        let maxsize = region.atomic_u64(OFF_MAXSIZE).load(Ordering::Relaxed);
        let short = || Error::new(ErrorKind::InvalidArgument, format!("{name} is too small"));
        Ok(Ring {
            words64: ShmRef::new(region.clone(), 0).ok_or_else(short)?,
            words32: ShmRef::new(region.clone(), 0).ok_or_else(short)?,
            put_lock: ShmRef::new(region.clone(), OFF_PUT_LOCK).ok_or_else(short)?,
            get_lock: ShmRef::new(region.clone(), OFF_GET_LOCK).ok_or_else(short)?,
            region,
            name,
            flavor,
            capacity,
            maxsize,
            waiter: Waiter::new(),
        })
    }

    pub(crate) fn region(&self) -> &ShmRegion {
        &self.region
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn flavor(&self) -> Flavor {
        self.flavor
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The item-count bound, 0 for none.
    pub(crate) fn maxsize(&self) -> u64 {
        self.maxsize
    }

    pub(crate) fn type_hash(&self) -> u64 {
        self.a64(OFF_TYPE_HASH).load(Ordering::Relaxed)
    }

    pub(crate) fn creator_pid(&self) -> u32 {
        self.a32(OFF_CREATOR).load(Ordering::Relaxed)
    }

    /// The largest payload carried inline; larger items travel as blobs.
    pub(crate) fn inline_max(&self) -> usize {
        (self.capacity / 4) as usize - RECORD_HEADER
    }

    /// The header's 32-bit word at byte offset `off` (a constant below
    /// `RING_START`, so the index check folds away).
    #[inline]
    fn a32(&self, off: usize) -> &AtomicU32 {
        &self.words32[off / 4]
    }

    /// The header's 64-bit word at byte offset `off` (as [`a32`](Ring::a32)).
    #[inline]
    fn a64(&self, off: usize) -> &AtomicU64 {
        &self.words64[off / 8]
    }

    fn mutex(&self, side: Side) -> &RobustMutex {
        match side {
            Side::Put => &self.put_lock,
            Side::Get => &self.get_lock,
        }
    }

    /// Locks one side, repairing it if the previous holder died.
    fn lock(
        &self,
        side: Side,
        deadline: Option<Instant>,
    ) -> std::result::Result<RobustGuard<'_>, Stop> {
        wait::lock_robust(self.mutex(side), deadline, || self.repair(side))
    }

    /// Re-applies a valid journal of a holder that died, or discards its work.
    fn repair(&self, side: Side) {
        let (journal, j_pos, j_count, pos, count) = journal_offsets(side);
        if self.a32(journal).load(Ordering::Acquire) == 1 {
            let p = self.a64(j_pos).load(Ordering::Relaxed);
            let c = self.a64(j_count).load(Ordering::Relaxed);
            self.a64(count).store(c, Ordering::Release);
            self.a64(pos).store(p, Ordering::Release);
            self.a32(journal).store(0, Ordering::Release);
        }
        // Whoever waited for the dead holder's publish may have missed it.
        self.wake_all_waiters();
    }

    /// Publishes a new position and count through the journal (see module docs).
    fn commit(&self, side: Side, new_pos: u64, new_count: u64) {
        let (journal, j_pos, j_count, pos, count) = journal_offsets(side);
        self.a64(j_pos).store(new_pos, Ordering::Relaxed);
        self.a64(j_count).store(new_count, Ordering::Relaxed);
        self.a32(journal).store(1, Ordering::Release);
        fault::hit(fault::Point::Committing);
        // The count first: an item is never visible (through `tail`) before it
        // is counted, so `task_done` after a `get` always finds it counted.
        self.a64(count).store(new_count, Ordering::Release);
        self.a64(pos).store(new_pos, Ordering::Release);
        self.a32(journal).store(0, Ordering::Release);
    }

    fn write_ring(&self, pos: u64, data: &[u8]) -> Result<()> {
        let phys = (pos % self.capacity) as usize;
        let first = data.len().min(self.capacity as usize - phys);
        self.region.write_at(RING_START + phys, &data[..first])?;
        if first < data.len() {
            self.region.write_at(RING_START, &data[first..])?;
        }
        Ok(())
    }

    fn read_ring(&self, pos: u64, out: &mut [u8]) -> Result<()> {
        let phys = (pos % self.capacity) as usize;
        let first = out.len().min(self.capacity as usize - phys);
        let (a, b) = out.split_at_mut(first);
        self.region.read_at(RING_START + phys, a)?;
        if !b.is_empty() {
            self.region.read_at(RING_START, b)?;
        }
        Ok(())
    }

    // -- state -------------------------------------------------------------

    pub(crate) fn is_closed(&self) -> bool {
        self.a32(OFF_CLOSED).load(Ordering::Acquire) != 0
    }

    /// Items put and not yet taken.
    pub(crate) fn len(&self) -> u64 {
        let got = self.a64(OFF_GET_COUNT).load(Ordering::Acquire);
        let put = self.a64(OFF_PUT_COUNT).load(Ordering::Acquire);
        put.saturating_sub(got)
    }

    /// True if a record is published and not taken (a hint without the lock).
    ///
    /// Consults the consumers' cached tail first, so a consumer working
    /// through a backlog does not touch the producers' cache line.
    fn has_items(&self) -> bool {
        let head = self.a64(OFF_HEAD).load(Ordering::Acquire);
        self.a64(OFF_GET_TAIL_CACHE).load(Ordering::Relaxed) != head
            || self.a64(OFF_TAIL).load(Ordering::Acquire) != head
    }

    /// True if a record of `size` bytes would fit now (a hint without the lock).
    fn has_space(&self, size: u64) -> bool {
        let tail = self.a64(OFF_TAIL).load(Ordering::Acquire);
        let head = self.a64(OFF_HEAD).load(Ordering::Acquire);
        let count_ok = self.maxsize == 0 || self.len() < self.maxsize;
        count_ok && tail.wrapping_sub(head) + size <= self.capacity
    }

    pub(crate) fn close(&self) {
        self.a32(OFF_CLOSED).store(1, Ordering::SeqCst);
        self.wake_all_waiters();
    }

    pub(crate) fn mark_blobs_used(&self) {
        if self.a32(OFF_BLOBS_USED).load(Ordering::Relaxed) == 0 {
            self.a32(OFF_BLOBS_USED).store(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn blobs_used(&self) -> bool {
        self.a32(OFF_BLOBS_USED).load(Ordering::Relaxed) != 0
    }

    fn wake_all_waiters(&self) {
        for event in [OFF_ITEMS_EVENT, OFF_SPACE_EVENT, OFF_JOIN_EVENT] {
            wait::wake_all(self.a32(event));
        }
    }

    // -- put ---------------------------------------------------------------

    /// One attempt to publish `rec`. Waits only for the put lock (bounded by
    /// `deadline`).
    pub(crate) fn try_put(
        &self,
        rec: &Record<'_>,
        deadline: Option<Instant>,
    ) -> std::result::Result<PutStep, Stop> {
        if self.is_closed() {
            return Ok(PutStep::Closed);
        }
        let len = rec.len();
        let size = record_size(len);
        let guard = self.lock(Side::Put, deadline)?;
        let tail = self.a64(OFF_TAIL).load(Ordering::Relaxed);
        let mut head = self.a64(OFF_PUT_HEAD_CACHE).load(Ordering::Relaxed);
        if tail.wrapping_sub(head) + size > self.capacity {
            head = self.a64(OFF_HEAD).load(Ordering::Acquire);
            self.a64(OFF_PUT_HEAD_CACHE).store(head, Ordering::Relaxed);
            if tail.wrapping_sub(head) + size > self.capacity {
                return Ok(PutStep::Full);
            }
        }
        let put = self.a64(OFF_PUT_COUNT).load(Ordering::Relaxed);
        if self.maxsize != 0 {
            let mut got = self.a64(OFF_PUT_GOT_CACHE).load(Ordering::Relaxed);
            if put.wrapping_sub(got) >= self.maxsize {
                got = self.a64(OFF_GET_COUNT).load(Ordering::Acquire);
                self.a64(OFF_PUT_GOT_CACHE).store(got, Ordering::Relaxed);
                if put.wrapping_sub(got) >= self.maxsize {
                    return Ok(PutStep::Full);
                }
            }
        }
        let mut header = [0u8; RECORD_HEADER];
        header[..4].copy_from_slice(&(len as u32).to_le_bytes());
        header[4..].copy_from_slice(&rec.kind.to_le_bytes());
        let body = tail + RECORD_HEADER as u64;
        let written = if RECORD_HEADER + len <= SMALL {
            // A small record goes in with one copy.
            let mut b = [0u8; SMALL];
            let p0 = rec.parts[0].len();
            b[..RECORD_HEADER].copy_from_slice(&header);
            b[RECORD_HEADER..RECORD_HEADER + p0].copy_from_slice(rec.parts[0]);
            b[RECORD_HEADER + p0..RECORD_HEADER + len].copy_from_slice(rec.parts[1]);
            self.write_ring(tail, &b[..RECORD_HEADER + len])
        } else {
            self.write_ring(tail, &header)
                .and_then(|()| self.write_ring(body, rec.parts[0]))
                .and_then(|()| self.write_ring(body + rec.parts[0].len() as u64, rec.parts[1]))
        };
        written.map_err(Stop::failed)?;
        fault::hit(fault::Point::PutWritten);
        self.commit(Side::Put, tail + size, put + 1);
        drop(guard);
        self.notify(OFF_ITEMS_EVENT);
        Ok(PutStep::Done)
    }

    /// Waits until a record of `size` bytes may fit, the queue closes, or the
    /// deadline passes.
    pub(crate) fn wait_space(
        &self,
        size: u64,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), Stop> {
        self.wait_for(
            || self.is_closed() || self.has_space(size),
            OFF_SPACE_EVENT,
            deadline,
        )
    }

    // -- get ---------------------------------------------------------------

    /// One attempt to take a record. Inline items are copied into `sink`.
    pub(crate) fn try_get(
        &self,
        sink: &mut Sink<'_>,
        deadline: Option<Instant>,
    ) -> std::result::Result<GetStep, Stop> {
        loop {
            let closed = self.is_closed();
            if !self.has_items() {
                return Ok(if closed {
                    GetStep::Closed
                } else {
                    GetStep::Empty
                });
            }
            let guard = self.lock(Side::Get, deadline)?;
            let head = self.a64(OFF_HEAD).load(Ordering::Relaxed);
            let mut tail = self.a64(OFF_GET_TAIL_CACHE).load(Ordering::Relaxed);
            if tail.wrapping_sub(head) as i64 <= 0 {
                tail = self.a64(OFF_TAIL).load(Ordering::Acquire);
                self.a64(OFF_GET_TAIL_CACHE).store(tail, Ordering::Relaxed);
                if tail == head {
                    drop(guard);
                    continue;
                }
            }
            // The header and, for a small record, all of it in one copy.
            let mut first = [0u8; SMALL];
            let k = tail.wrapping_sub(head).min(SMALL as u64) as usize;
            self.read_ring(head, &mut first[..k])
                .map_err(Stop::failed)?;
            let header = &first[..RECORD_HEADER];
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let kind = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let size = record_size(len);
            if size > tail.wrapping_sub(head) || (kind != KIND_INLINE && kind != KIND_BLOB) {
                return Err(Stop::failed(Error::new(
                    ErrorKind::Io,
                    format!(
                        "queue {} is corrupt: record of {len} bytes, kind {kind} at {head}",
                        self.name
                    ),
                )));
            }
            let got = self.a64(OFF_GET_COUNT).load(Ordering::Relaxed);
            let step = if kind == KIND_INLINE && RECORD_HEADER + len <= k {
                let n = fill_sink(&first[RECORD_HEADER..RECORD_HEADER + len], sink)
                    .map_err(Stop::failed)?;
                Some(GetStep::Inline(n))
            } else if kind == KIND_INLINE {
                let n = self
                    .read_item(head + RECORD_HEADER as u64, len, sink)
                    .map_err(Stop::failed)?;
                Some(GetStep::Inline(n))
            } else {
                let mut reference = vec![0u8; len];
                self.read_ring(head + RECORD_HEADER as u64, &mut reference)
                    .map_err(Stop::failed)?;
                // Taking a blob over unlinks its name: from here the segment
                // lives exactly as long as our mapping, whatever happens to us.
                super::blob::take(&reference)
                    .map_err(Stop::failed)?
                    .map(GetStep::Blob)
            };
            fault::hit(fault::Point::GetRead);
            self.commit(Side::Get, head + size, got + 1);
            drop(guard);
            fault::hit(fault::Point::GetCommitted);
            // One fence for both checks.
            fence(Ordering::SeqCst);
            self.notify_fenced(OFF_SPACE_EVENT);
            if self.a32(OFF_ITEMS_EVENT).load(Ordering::Relaxed) & 1 != 0 && self.has_items() {
                // Pass the baton: a getter woken for an earlier item may have
                // left (timed out) without taking it.
                self.notify_fenced(OFF_ITEMS_EVENT);
            }
            match step {
                Some(s) => return Ok(s),
                // The blob is gone: a consumer killed while taking it had
                // already unlinked it. That item is lost with that consumer;
                // its record is now skipped and counts as done.
                None => self.count_lost_item(),
            }
        }
    }

    /// Copies the inline item of `len` bytes at `pos` into `sink`.
    fn read_item(&self, pos: u64, len: usize, sink: &mut Sink<'_>) -> Result<usize> {
        match sink {
            Sink::Encoded(buf) => {
                if buf.len() < len {
                    buf.resize(len, 0);
                }
                self.read_ring(pos, &mut buf[..len])?;
                Ok(len)
            }
            Sink::Bytes(out) => {
                let mut prefix = [0u8; 10];
                let k = len.min(prefix.len());
                self.read_ring(pos, &mut prefix[..k])?;
                let (n, used) = bytes_prefix(&prefix[..k], len)?;
                out.clear();
                out.resize(n, 0);
                self.read_ring(pos + used as u64, out)?;
                Ok(n)
            }
        }
    }

    /// Waits until an item may be available, the queue closes, or the deadline passes.
    pub(crate) fn wait_items(&self, deadline: Option<Instant>) -> std::result::Result<(), Stop> {
        self.wait_for(
            || self.is_closed() || self.has_items(),
            OFF_ITEMS_EVENT,
            deadline,
        )
    }

    // -- joinable ----------------------------------------------------------

    /// Items put and not yet marked done.
    pub(crate) fn unfinished(&self) -> u64 {
        let done = self.a64(OFF_DONE_COUNT).load(Ordering::Acquire);
        let put = self.a64(OFF_PUT_COUNT).load(Ordering::Acquire);
        put.saturating_sub(done)
    }

    /// Marks one item done; false if every item put is already done.
    pub(crate) fn task_done(&self) -> bool {
        let done = self.a64(OFF_DONE_COUNT);
        let mut d = done.load(Ordering::Acquire);
        loop {
            // Items taken never exceed items put: below the (consumers'
            // own) get count there is no need to read the producers' line.
            if d >= self.a64(OFF_GET_COUNT).load(Ordering::Acquire)
                && d >= self.a64(OFF_PUT_COUNT).load(Ordering::Acquire)
            {
                return false;
            }
            match done.compare_exchange_weak(d, d + 1, Ordering::SeqCst, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => d = now,
            }
        }
        // The SeqCst read-modify-write above is the full barrier of the
        // waiting protocol: a joiner that parks after it sees the new count.
        if self.a32(OFF_JOIN_EVENT).load(Ordering::SeqCst) & 1 != 0 && self.unfinished() == 0 {
            self.notify_fenced(OFF_JOIN_EVENT);
        }
        true
    }

    fn count_lost_item(&self) {
        if self.flavor == Flavor::Joinable {
            self.task_done();
        }
    }

    /// Waits until every item put has been marked done, or the deadline passes.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> std::result::Result<(), Stop> {
        loop {
            if self.unfinished() == 0 {
                return Ok(());
            }
            self.wait_for(|| self.unfinished() == 0, OFF_JOIN_EVENT, deadline)?;
        }
    }

    // -- waiting -----------------------------------------------------------

    /// Wakes whoever is parked on `event`, if anyone (see [`wait::notify`]).
    fn notify(&self, event: usize) {
        wait::notify(self.a32(event));
    }

    /// [`notify`](Ring::notify) for a caller that has just fenced.
    fn notify_fenced(&self, event: usize) {
        wait::notify_fenced(self.a32(event));
    }

    /// Spins, then parks on `event`, until `ready()` holds (or spuriously:
    /// callers re-try their operation).
    fn wait_for(
        &self,
        ready: impl Fn() -> bool,
        event: usize,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), Stop> {
        self.waiter
            .wait_for(self.a32(event), ready, deadline, || self.housekeeping())
    }

    /// Repairs a lock whose holder died while nobody else was using it.
    fn housekeeping(&self) {
        for side in [Side::Put, Side::Get] {
            wait::repair_if_abandoned(self.mutex(side), || self.repair(side));
        }
    }
}

impl super::ops::Backend for Ring {
    fn name(&self) -> &str {
        Ring::name(self)
    }
    fn inline_max(&self) -> usize {
        Ring::inline_max(self)
    }
    fn is_closed(&self) -> bool {
        Ring::is_closed(self)
    }
    fn mark_blobs_used(&self) {
        Ring::mark_blobs_used(self)
    }
    fn try_put(
        &self,
        rec: &Record<'_>,
        deadline: Option<Instant>,
    ) -> std::result::Result<PutStep, Stop> {
        Ring::try_put(self, rec, deadline)
    }
    fn wait_space(&self, len: usize, deadline: Option<Instant>) -> std::result::Result<(), Stop> {
        Ring::wait_space(self, record_size(len), deadline)
    }
    fn try_get(
        &self,
        sink: &mut Sink<'_>,
        deadline: Option<Instant>,
    ) -> std::result::Result<GetStep, Stop> {
        Ring::try_get(self, sink, deadline)
    }
    fn wait_items(&self, deadline: Option<Instant>) -> std::result::Result<(), Stop> {
        Ring::wait_items(self, deadline)
    }
}

/// Fault injection for crash tests: run a hook at a point of an operation.
#[doc(hidden)]
pub mod fault {
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::OnceLock;

    /// Where the hook runs.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u8)]
    pub enum Point {
        /// Put: record written, not committed (put lock held).
        PutWritten = 1,
        /// Put or get: journal valid, published words not yet stored (lock held).
        Committing = 2,
        /// Get: item copied (or blob taken over), not committed (get lock held).
        GetRead = 3,
        /// Get: committed and unlocked, item not yet returned.
        GetCommitted = 4,
    }

    static POINT: AtomicU8 = AtomicU8::new(0);
    static HOOK: OnceLock<fn()> = OnceLock::new();

    /// Runs `hook` (once per process it may be set) every time `point` is
    /// reached in this process. For tests that kill a process mid-operation.
    pub fn inject(point: Point, hook: fn()) {
        let _ = HOOK.set(hook);
        POINT.store(point as u8, Ordering::SeqCst);
    }

    #[inline]
    pub(crate) fn hit(point: Point) {
        if POINT.load(Ordering::Relaxed) == point as u8 {
            if let Some(h) = HOOK.get() {
                h();
            }
        }
    }
}

/// A side's journal words and the words its commit publishes: (journal
/// flag, journaled position, journaled count, position, count).
const fn journal_offsets(side: Side) -> (usize, usize, usize, usize, usize) {
    match side {
        Side::Put => (
            OFF_PUT_JOURNAL,
            OFF_PUT_J_TAIL,
            OFF_PUT_J_COUNT,
            OFF_TAIL,
            OFF_PUT_COUNT,
        ),
        Side::Get => (
            OFF_GET_JOURNAL,
            OFF_GET_J_HEAD,
            OFF_GET_J_COUNT,
            OFF_HEAD,
            OFF_GET_COUNT,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_padded() {
        assert_eq!(record_size(0), 8);
        assert_eq!(record_size(1), 16);
        assert_eq!(record_size(8), 16);
        assert_eq!(record_size(9), 24);
    }

    #[test]
    fn journal_repair_replays_or_discards() {
        let r = Ring::create(Flavor::Queue, MIN_CAPACITY, 0, 1).unwrap();
        // A put that died after writing its journal: replayed.
        r.a64(OFF_PUT_J_TAIL).store(16, Ordering::Relaxed);
        r.a64(OFF_PUT_J_COUNT).store(1, Ordering::Relaxed);
        r.a32(OFF_PUT_JOURNAL).store(1, Ordering::Relaxed);
        r.repair(Side::Put);
        assert_eq!(r.a64(OFF_TAIL).load(Ordering::Relaxed), 16);
        assert_eq!(r.len(), 1);
        assert_eq!(r.a32(OFF_PUT_JOURNAL).load(Ordering::Relaxed), 0);
        // A get that died before its journal: nothing changes.
        r.a64(OFF_GET_J_HEAD).store(16, Ordering::Relaxed);
        r.repair(Side::Get);
        assert_eq!(r.a64(OFF_HEAD).load(Ordering::Relaxed), 0);
    }
}
