//! The process-wide locks a fork must not catch half-way.
//!
//! `fork` copies only the calling thread: a lock another thread holds at
//! that instant stays held for ever in the child. A zygote or `Process`
//! forked from a threaded program (no [`init`](crate::init)) would then
//! block on its first shared-memory region, queue or child process. So
//! every fork takes this crate's global locks first, in one fixed order,
//! and releases them on both sides once the fork has returned: the child
//! inherits them free, and in a consistent state.

/// Takes every lock of this crate a forked child may need, in the order
/// code that nests them takes them, and returns them held (dropping the
/// value releases them). The caller must hold none of them.
pub(crate) fn hold() -> impl Sized {
    (
        crate::process::live_lock(),
        crate::process::reaper_lock(),
        crate::shm::registry_lock(),
        crate::queue::cores_lock(),
        crate::sys::shm::tracker_lock(),
    )
}
