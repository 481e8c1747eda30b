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

/// The size of a transparent huge page (x86-64 and arm64 with 4 KiB pages).
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back the whole 2 MiB pages inside `buf` with huge
/// pages when they are first touched (`MADV_HUGEPAGE`): one fault and one
/// clear of 2 MiB instead of 512 faults. Contents are unchanged; false if
/// `buf` holds no whole huge page or the kernel refused (transparent huge
/// pages off or unsupported: pages then fault in as before).
pub(crate) fn advise_huge<T>(buf: &mut [std::mem::MaybeUninit<T>]) -> bool {
    let start = buf.as_mut_ptr() as usize;
    let end = start + std::mem::size_of_val(buf);
    let first = start.next_multiple_of(HUGE_PAGE);
    let last = end - end % HUGE_PAGE;
    if last <= first {
        return false;
    }
    // SAFETY: [first, last) lies inside `buf`, memory this call borrows
    // mutably, and is page-aligned; MADV_HUGEPAGE only changes how the
    // range's pages are backed when they fault in, never their contents,
    // and reads or writes no memory.
    unsafe {
        libc::madvise(
            first as *mut libc::c_void,
            last - first,
            libc::MADV_HUGEPAGE,
        ) == 0
    }
}
