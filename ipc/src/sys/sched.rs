//! The scheduler's slice for the calling thread (`sched_setattr`).
//!
//! Since Linux 6.12 the fair scheduler (EEVDF) reads `sched_runtime` of a
//! `SCHED_OTHER` or `SCHED_BATCH` thread as the slice it asks for (clamped
//! to 0.1–100 ms). A short slice gives an earlier virtual deadline: a
//! thread that wakes with one preempts a CPU-bound task instead of
//! queueing behind it for a whole default slice, and it still gets only
//! its fair share of CPU time. Older kernels ignore the field for these
//! policies, so setting it is harmless there.

use std::io;

use super::cvt;

/// `struct sched_attr` up to `sched_period` (`SCHED_ATTR_SIZE_VER0`).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;

/// The attributes of thread `pid` (0: the calling thread).
fn get(pid: i32) -> io::Result<SchedAttr> {
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as libc::c_uint;
    // SAFETY: `attr` is a writable `sched_attr` of `size` bytes that
    // outlives the call; `pid` names a thread (0: the calling one); flags
    // must be 0.
    cvt(unsafe { libc::syscall(libc::SYS_sched_getattr, pid, &mut attr, size, 0) })?;
    Ok(attr)
}

/// Asks for a slice of `ns` nanoseconds for thread `pid` (0: the calling
/// thread; a process's pid names its main thread), keeping its policy and
/// nice value. Threads it creates and processes it forks inherit the
/// slice. Returns false (and changes nothing) for a thread under a
/// real-time or deadline policy.
pub(crate) fn set_slice(pid: i32, ns: u64) -> io::Result<bool> {
    let mut attr = get(pid)?;
    if attr.policy != SCHED_OTHER && attr.policy != SCHED_BATCH {
        return Ok(false);
    }
    attr.size = std::mem::size_of::<SchedAttr>() as u32;
    attr.flags = 0;
    attr.runtime = ns;
    attr.deadline = 0;
    attr.period = 0;
    // SAFETY: `attr` is a valid `sched_attr` whose `size` field matches its
    // layout and which outlives the call; `pid` names a thread (0: the
    // calling one); flags must be 0.
    cvt(unsafe { libc::syscall(libc::SYS_sched_setattr, pid, &attr, 0) })?;
    Ok(true)
}

/// The slice the calling thread asks for, in nanoseconds (0 before Linux
/// 6.12 has been asked for one, or where the kernel reports none).
pub(crate) fn slice() -> io::Result<u64> {
    get(0).map(|a| a.runtime)
}
