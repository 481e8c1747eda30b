//! Single-producer single-consumer byte rings in shared memory, and the
//! doorbells that consumers park on.
//!
//! A ring carries length-prefixed records (`[u32 len][bytes]`), wrapping
//! around its data area. The producer writes the bytes, then publishes the
//! new tail with a release store; the consumer reads up to the tail, then
//! publishes the new head. Records never exceed half the ring (larger
//! payloads travel in their own shared-memory blocks), so a producer never
//! waits in the middle of a record.
//!
//! Waiting is adaptive: spin for a budget (a blocking wake-up costs ~25 µs on
//! a VM, so spinning for about that long is cheaper whenever the peer answers
//! within it), then park on a shared futex [`Bell`]. A consumer announces
//! that it sleeps (store 1, full fence), re-checks the ring, and sleeps while
//! the bell still holds 1; a producer publishes, fences, and wakes only if
//! the bell is 1. Either the consumer sees the data or the producer sees the
//! announcement: no lost wake-up, and no system call while both are busy.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use multiproc_ipc::park;
use multiproc_ipc::shm::ShmRegion;

/// Bytes of a record's length prefix.
const LEN: usize = 4;

/// A futex word consumers park on and producers ring.
#[derive(Clone)]
pub(crate) struct Bell {
    region: ShmRegion,
    offset: usize,
}

impl Bell {
    pub(crate) fn new(region: ShmRegion, offset: usize) -> Bell {
        Bell { region, offset }
    }

    fn word(&self) -> &AtomicU32 {
        self.region.atomic_u32(self.offset)
    }

    /// Wakes the sleeper, if one announced itself. Call after publishing.
    #[inline]
    pub(crate) fn ring(&self) {
        fence(Ordering::SeqCst);
        let w = self.word();
        if w.load(Ordering::Relaxed) != 0 {
            w.store(0, Ordering::SeqCst);
            park::wake_all_u32(w);
        }
    }

    /// True if the consumer announced that it sleeps (a ring would cost a
    /// wake-up).
    #[inline]
    pub(crate) fn sleeping(&self) -> bool {
        self.word().load(Ordering::Relaxed) != 0
    }

    /// Wakes the sleeper unconditionally (for in-process events).
    pub(crate) fn ring_always(&self) {
        let w = self.word();
        w.store(0, Ordering::SeqCst);
        park::wake_all_u32(w);
    }

    /// Sleeps until rung, `timeout` passes, or `ready()` turns true; the
    /// announce-then-recheck protocol makes a ring between the check and the
    /// sleep impossible to miss.
    pub(crate) fn sleep(&self, timeout: Option<Duration>, ready: impl Fn() -> bool) {
        let w = self.word();
        w.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !ready() {
            park::wait_u32(w, 1, timeout);
        }
        w.store(0, Ordering::Relaxed);
    }
}

/// Spins for up to `budget` until `ready()` holds (less when the machine is
/// busy: see `multiproc_ipc::spin`); true if it did.
#[inline]
pub(crate) fn spin_until(budget: Duration, ready: impl Fn() -> bool) -> bool {
    multiproc_ipc::spin::spin_until(budget, None, ready)
}

/// Offsets of a ring's control words relative to its header.
const HEAD: usize = 0;
const TAIL: usize = 64;
/// Bytes a ring header occupies (one cache line per word).
pub(crate) const RING_HEADER: usize = 128;

/// One SPSC ring: a header (head, tail) and a data area, both in `region`.
#[derive(Clone)]
pub(crate) struct Ring {
    region: ShmRegion,
    header: usize,
    data: usize,
    cap: usize,
    /// The producer's last view of the consumer's head (in this process's
    /// memory). The head only grows, so a stale value only underestimates
    /// the free space: the producer re-reads the shared head (a cache line
    /// the consumer writes on every record) only when the cached one says
    /// the ring is full.
    cached_head: Arc<AtomicU64>,
}

impl Ring {
    /// A ring whose header is at `header` and whose `cap` data bytes start at
    /// `data` (`cap` a power of two).
    pub(crate) fn new(region: ShmRegion, header: usize, data: usize, cap: usize) -> Ring {
        debug_assert!(cap.is_power_of_two());
        Ring {
            region,
            header,
            data,
            cap,
            cached_head: Arc::new(AtomicU64::new(0)),
        }
    }

    fn head(&self) -> &AtomicU64 {
        self.region.atomic_u64(self.header + HEAD)
    }

    fn tail(&self) -> &AtomicU64 {
        self.region.atomic_u64(self.header + TAIL)
    }

    /// The largest record this ring takes.
    pub(crate) fn max_record(&self) -> usize {
        self.cap / 2 - LEN
    }

    /// Empties the ring. Only when neither side is using it (a dead peer).
    pub(crate) fn reset(&self) {
        self.head().store(0, Ordering::SeqCst);
        self.tail().store(0, Ordering::SeqCst);
        self.cached_head.store(0, Ordering::Relaxed);
    }

    /// True if the consumer has something to read.
    #[inline]
    pub(crate) fn has_data(&self) -> bool {
        self.tail().load(Ordering::Acquire) != self.head().load(Ordering::Relaxed)
    }

    /// Bytes the producer may write now.
    #[inline]
    pub(crate) fn free(&self) -> usize {
        let used = self
            .tail()
            .load(Ordering::Relaxed)
            .wrapping_sub(self.head().load(Ordering::Acquire));
        self.cap.saturating_sub(used as usize)
    }

    fn write_wrapped(&self, pos: u64, bytes: &[u8]) {
        let at = (pos as usize) & (self.cap - 1);
        let first = bytes.len().min(self.cap - at);
        // Offsets are inside the region by construction; a failure here would
        // be a layout bug, and it is reported as lost bytes, never UB.
        let _ = self.region.write_at(self.data + at, &bytes[..first]);
        if first < bytes.len() {
            let _ = self.region.write_at(self.data, &bytes[first..]);
        }
    }

    fn read_wrapped(&self, pos: u64, out: &mut [u8]) {
        let at = (pos as usize) & (self.cap - 1);
        let first = out.len().min(self.cap - at);
        let _ = self.region.read_at(self.data + at, &mut out[..first]);
        if first < out.len() {
            let _ = self.region.read_at(self.data, &mut out[first..]);
        }
    }

    /// Writes the record made of `parts` (concatenated) without publishing
    /// it; false if there is no room. Follow with [`publish`](Ring::publish).
    /// `staged` is the producer's private tail (start it at [`tail_pos`]).
    pub(crate) fn stage(&self, staged: &mut u64, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.max_record() {
            return false;
        }
        let fits = |head: u64| {
            let used = staged.wrapping_sub(head) as usize;
            used <= self.cap && self.cap - used >= len + LEN
        };
        if !fits(self.cached_head.load(Ordering::Relaxed)) {
            let head = self.head().load(Ordering::Acquire);
            self.cached_head.store(head, Ordering::Relaxed);
            if !fits(head) {
                return false;
            }
        }
        self.write_wrapped(*staged, &(len as u32).to_le_bytes());
        let mut pos = staged.wrapping_add(LEN as u64);
        for p in parts {
            self.write_wrapped(pos, p);
            pos = pos.wrapping_add(p.len() as u64);
        }
        *staged = pos;
        true
    }

    /// The published tail, the starting point for [`stage`](Ring::stage).
    pub(crate) fn tail_pos(&self) -> u64 {
        self.tail().load(Ordering::Relaxed)
    }

    /// Makes everything staged up to `staged` visible to the consumer.
    #[inline]
    pub(crate) fn publish(&self, staged: u64) {
        self.tail().store(staged, Ordering::Release);
    }

    /// Reads the next record into `buf` (replacing its contents); false if
    /// the ring is empty. A corrupt length (a peer that died mid-write cannot
    /// cause one: records are published whole) empties the ring.
    pub(crate) fn pop(&self, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        self.pop_append(buf).is_some()
    }

    /// Appends the next record to `buf` (keeping what it holds) and returns
    /// its length; `None` if the ring is empty (or corrupt, as in
    /// [`pop`](Ring::pop)). Lets a consumer gather many records in one
    /// buffer without an allocation per record.
    pub(crate) fn pop_append(&self, buf: &mut Vec<u8>) -> Option<usize> {
        let head = self.head().load(Ordering::Relaxed);
        let tail = self.tail().load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let mut len = [0u8; LEN];
        self.read_wrapped(head, &mut len);
        let len = u32::from_le_bytes(len) as usize;
        let avail = tail.wrapping_sub(head) as usize;
        if len + LEN > avail || len > self.max_record() {
            self.head().store(tail, Ordering::Release);
            return None;
        }
        let start = buf.len();
        buf.resize(start + len, 0);
        self.read_wrapped(head.wrapping_add(LEN as u64), &mut buf[start..]);
        self.head()
            .store(head.wrapping_add((len + LEN) as u64), Ordering::Release);
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(cap: usize) -> (ShmRegion, Ring) {
        let region = ShmRegion::anonymous(RING_HEADER + cap + 64).unwrap();
        let r = Ring::new(region.clone(), 0, RING_HEADER, cap);
        (region, r)
    }

    #[test]
    fn records_round_trip_and_wrap() {
        let (_region, r) = ring(256);
        let mut buf = Vec::new();
        for i in 0..1000u32 {
            let rec: Vec<u8> = (0..(i % 90) as u8).collect();
            let mut t = r.tail_pos();
            assert!(r.stage(&mut t, &[&i.to_le_bytes(), &rec]));
            r.publish(t);
            assert!(r.pop(&mut buf));
            assert_eq!(&buf[..4], &i.to_le_bytes());
            assert_eq!(&buf[4..], &rec[..]);
        }
        assert!(!r.pop(&mut buf));
    }

    #[test]
    fn full_ring_refuses_and_oversized_records_are_refused() {
        let (_region, r) = ring(256);
        let mut t = r.tail_pos();
        assert!(!r.stage(&mut t, &[&[0u8; 200]]));
        let mut n = 0;
        while r.stage(&mut t, &[&[7u8; 60]]) {
            n += 1;
        }
        assert_eq!(n, 4);
        r.publish(t);
        let mut buf = Vec::new();
        assert!(r.pop(&mut buf));
        assert_eq!(buf, vec![7u8; 60]);
        let mut t = r.tail_pos();
        assert!(r.stage(&mut t, &[&[1u8; 60]]));
    }

    #[test]
    fn pop_append_gathers_records_and_reset_forgets_the_cached_head() {
        let (_region, r) = ring(256);
        let mut t = r.tail_pos();
        assert!(r.stage(&mut t, &[&[1u8; 3]]));
        assert!(r.stage(&mut t, &[&[2u8; 5]]));
        r.publish(t);
        let mut buf = vec![9u8];
        assert_eq!(r.pop_append(&mut buf), Some(3));
        assert_eq!(r.pop_append(&mut buf), Some(5));
        assert_eq!(r.pop_append(&mut buf), None);
        assert_eq!(buf, [9, 1, 1, 1, 2, 2, 2, 2, 2]);
        // Move far along the ring, then reset it (a dead peer): the producer
        // must not judge the free space by a head from before the reset.
        for _ in 0..100 {
            let mut t = r.tail_pos();
            assert!(r.stage(&mut t, &[&[3u8; 50]]));
            r.publish(t);
            assert!(r.pop(&mut buf));
        }
        r.reset();
        let mut t = r.tail_pos();
        assert_eq!(t, 0);
        let mut n = 0;
        while r.stage(&mut t, &[&[4u8; 60]]) {
            n += 1;
        }
        assert_eq!(n, 4);
    }

    #[test]
    fn bell_wakes_a_sleeping_consumer_across_threads() {
        let (region, r) = ring(1024);
        let bell = Bell::new(region.clone(), RING_HEADER + 1024);
        let (r2, bell2) = (r.clone(), bell.clone());
        let h = std::thread::spawn(move || {
            let mut got = 0u64;
            let mut buf = Vec::new();
            while got < 10_000 {
                if r2.pop(&mut buf) {
                    assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), got);
                    got += 1;
                    continue;
                }
                if !spin_until(Duration::from_micros(2), || r2.has_data()) {
                    bell2.sleep(Some(Duration::from_secs(5)), || r2.has_data());
                }
            }
            got
        });
        let mut i = 0u64;
        while i < 10_000 {
            let mut t = r.tail_pos();
            if r.stage(&mut t, &[&i.to_le_bytes()]) {
                r.publish(t);
                bell.ring();
                i += 1;
            } else {
                std::thread::yield_now();
            }
        }
        assert_eq!(h.join().unwrap(), 10_000);
    }
}
