//! glibc's malloc tuning: how much freed memory a process keeps.

/// Makes glibc's malloc in this process serve requests below `below` bytes
/// from its heap (not a mapping of their own, made and unmapped each time)
/// and keep up to `keep` bytes of freed memory at the top of the heap
/// instead of giving it back to the system; false where malloc is not
/// glibc's or refuses a value. Only system calls and malloc's own lock:
/// safe in a forked child.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn keep_freed(below: usize, keep: usize) -> bool {
    let (Ok(below), Ok(keep)) = (libc::c_int::try_from(below), libc::c_int::try_from(keep)) else {
        return false;
    };
    // SAFETY: mallopt only sets two of malloc's parameters under malloc's
    // own lock; it reads and writes no memory of ours. It returns 1 on
    // success, 0 for a value out of range.
    let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, below) };
    // SAFETY: as above.
    let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, keep) };
    mmap == 1 && trim == 1
}

/// Elsewhere malloc is not glibc's: nothing to tune.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn keep_freed(_below: usize, _keep: usize) -> bool {
    false
}
