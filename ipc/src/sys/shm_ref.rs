//! [`ShmRef`]: a checked, pre-resolved reference into a shared region.

use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;

use super::shm::ShmSafe;
use crate::shm::ShmRegion;

/// A `&T` at a fixed offset of a region, resolved once, that keeps the region
/// mapped: hot paths (lock, unlock) skip the bounds and alignment checks of
/// [`ShmRegion::view`] after construction.
pub(crate) struct ShmRef<T> {
    region: ShmRegion,
    ptr: NonNull<T>,
}

impl<T: ShmSafe> ShmRef<T> {
    /// The `T` at `offset`, or `None` if it does not fit (or is misaligned).
    pub(crate) fn new(region: ShmRegion, offset: usize) -> Option<ShmRef<T>> {
        let ptr = NonNull::from(region.view::<T>(offset)?);
        Some(ShmRef { region, ptr })
    }
}

impl<T> ShmRef<T> {
    /// The region the reference points into.
    pub(crate) fn region(&self) -> &ShmRegion {
        &self.region
    }
}

impl<T: ShmSafe> Deref for ShmRef<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: `ptr` came from `ShmRegion::view` (in bounds, aligned, a
        // valid ShmSafe T); the mapping behind it stays mapped at the same
        // address while any handle to the region lives, and we hold one.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> Clone for ShmRef<T> {
    fn clone(&self) -> Self {
        ShmRef {
            region: self.region.clone(),
            ptr: self.ptr,
        }
    }
}

// SAFETY: a ShmRef is a shared reference to a ShmSafe (hence Sync) T plus a
// region handle (Send and Sync); sending or sharing it shares only `&T`.
unsafe impl<T: ShmSafe> Send for ShmRef<T> {}
// SAFETY: as above.
unsafe impl<T: ShmSafe> Sync for ShmRef<T> {}

impl<T> fmt::Debug for ShmRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmRef")
            .field("region", &self.region)
            .finish()
    }
}
