//! The shared-memory layouts of the synchronization primitives and shared
//! values (`crate::sync`, `crate::value`).
//!
//! Plain data only: every field is an atomic or a [`RobustMutex`], so each
//! struct is valid for every bit pattern (all zeroes is "fresh"), and the
//! algorithms that use them live in safe code elsewhere. Each object starts
//! with a [`Header`] (magic + layout version) checked when a handle attaches.

use std::sync::atomic::{AtomicI16, AtomicU16, AtomicU32, AtomicU64};

use super::mutex::RobustMutex;
use super::shm::ShmSafe;

/// Version of every layout in this file; bump on any change.
pub(crate) const LAYOUT_VERSION: u32 = 2;

/// The first 8 bytes of every object: what it is, and in which layout.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) magic: AtomicU32,
    pub(crate) version: AtomicU32,
}

/// A `Lock` or `RLock` (also embedded in values and arrays); 64 bytes.
#[repr(C)]
pub(crate) struct LockCell {
    pub(crate) header: Header,
    /// 1 while held (a hint for spinners; may stay 1 after a holder died).
    pub(crate) held: AtomicU32,
    /// Re-entrance depth of an `RLock`, touched only by its owner.
    pub(crate) count: AtomicU32,
    pub(crate) mutex: RobustMutex,
}

/// A `Semaphore` or `BoundedSemaphore`; 24 bytes.
#[repr(C)]
pub(crate) struct SemaphoreCell {
    pub(crate) header: Header,
    /// The counter, and the futex word waiters sleep on.
    pub(crate) value: AtomicU32,
    /// Processes announced as (about to be) asleep on `value`.
    pub(crate) sleepers: AtomicU32,
    /// The bound of a `BoundedSemaphore`; `u32::MAX` when unbounded.
    pub(crate) max: AtomicU32,
    pub(crate) _pad: AtomicU32,
}

/// An `Event`; 16 bytes.
#[repr(C)]
pub(crate) struct EventCell {
    pub(crate) header: Header,
    /// Bit 0: 1 while set. Bits 1..: the generation, bumped by each set of
    /// a clear flag (wrapping). The futex word.
    pub(crate) flag: AtomicU32,
    pub(crate) sleepers: AtomicU32,
}

/// The state of a `Condition` (its lock lives in its own `LockCell`); 24 bytes.
#[repr(C)]
pub(crate) struct ConditionCell {
    pub(crate) header: Header,
    /// The next waiter's ticket (changed under the lock).
    pub(crate) tail: AtomicU32,
    /// Tickets before this one are released (notified); the futex word.
    /// Changed under the lock, read by sleepers.
    pub(crate) head: AtomicU32,
    pub(crate) sleepers: AtomicU32,
    /// At least as many as the unreleased tickets of waiters that timed out
    /// (changed under the lock).
    pub(crate) holes: AtomicU32,
}

/// A `Barrier`; 120 bytes.
#[repr(C)]
pub(crate) struct BarrierCell {
    pub(crate) header: Header,
    pub(crate) mutex: RobustMutex,
    pub(crate) parties: AtomicU32,
    /// Waiters arrived in the current generation (under `mutex`).
    pub(crate) count: AtomicU32,
    /// The generation number; bumped by a release or a reset.
    pub(crate) generation: AtomicU32,
    /// 1 while broken (by a timeout or `abort`) until `reset`.
    pub(crate) broken: AtomicU32,
    /// Bumped on every change waiters must see; the futex word.
    pub(crate) seq: AtomicU32,
    pub(crate) sleepers: AtomicU32,
    /// Bit `g % 64` is 1 if generation `g` ended broken (reset), 0 if released.
    pub(crate) outcomes: AtomicU64,
    /// The default timeout of `wait`, in nanoseconds; `u64::MAX`: none.
    /// Written once at creation.
    pub(crate) timeout_ns: AtomicU64,
    /// The action, as the words of a function address (all 0: none).
    /// Written once at creation.
    pub(crate) action: [AtomicU64; 3],
}

/// The head of a `Value`/`Array`/`RawValue`/`RawArray` region; 24 bytes.
#[repr(C)]
pub(crate) struct ValueHeader {
    pub(crate) header: Header,
    /// Which element type the data holds.
    pub(crate) type_code: AtomicU32,
    /// 1 if a `LockCell` follows at `value::LOCK_OFFSET`.
    pub(crate) has_lock: AtomicU32,
    /// Number of elements.
    pub(crate) len: AtomicU64,
}

// The layouts above are #[repr(C)], made only of
// atomics and RobustMutex (itself ShmSafe), so they hold no pointers or fds,
// accept every bit pattern including all zeroes, and mutate only through
// atomics or the process-shared mutex.
// SAFETY: see above.
unsafe impl ShmSafe for Header {}
// SAFETY: see above.
unsafe impl ShmSafe for LockCell {}
// SAFETY: see above.
unsafe impl ShmSafe for SemaphoreCell {}
// SAFETY: see above.
unsafe impl ShmSafe for EventCell {}
// SAFETY: see above.
unsafe impl ShmSafe for ConditionCell {}
// SAFETY: see above.
unsafe impl ShmSafe for BarrierCell {}
// SAFETY: see above.
unsafe impl ShmSafe for ValueHeader {}
// SAFETY: 16-bit atomics are plain integers, valid for every bit pattern, with
// lock-free operations that work across processes on a shared mapping.
unsafe impl ShmSafe for AtomicU16 {}
// SAFETY: as for AtomicU16.
unsafe impl ShmSafe for AtomicI16 {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, size_of};

    #[test]
    fn layouts_are_pinned() {
        assert_eq!((size_of::<Header>(), align_of::<Header>()), (8, 4));
        assert_eq!((size_of::<LockCell>(), align_of::<LockCell>()), (64, 8));
        assert_eq!(
            (size_of::<SemaphoreCell>(), align_of::<SemaphoreCell>()),
            (24, 4)
        );
        assert_eq!((size_of::<EventCell>(), align_of::<EventCell>()), (16, 4));
        assert_eq!(
            (size_of::<ConditionCell>(), align_of::<ConditionCell>()),
            (24, 4)
        );
        assert_eq!(
            (size_of::<BarrierCell>(), align_of::<BarrierCell>()),
            (120, 8)
        );
        assert_eq!(
            (size_of::<ValueHeader>(), align_of::<ValueHeader>()),
            (24, 8)
        );
        assert_eq!(std::mem::offset_of!(LockCell, mutex), 16);
        assert_eq!(std::mem::offset_of!(BarrierCell, mutex), 8);
        assert_eq!(std::mem::offset_of!(BarrierCell, outcomes), 80);
    }
}
