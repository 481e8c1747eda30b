//! Shared-memory mappings and the segment tracker.
//!
//! Three things live here because they need `unsafe`:
//!
//! * [`Mapping`]: a named segment (through the `shared_memory` crate) or an
//!   anonymous `MAP_SHARED` region, with typed views ([`ShmSafe`]) and byte copies.
//! * [`ShmSafe`]: the marker for types that may be viewed in shared memory.
//! * The tracker: a small detached process per creating process that unlinks the
//!   named segments it was told about when every process holding its pipe is
//!   gone, so a crashed owner never leaves a segment in `/dev/shm`.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
};
use std::sync::Mutex;

use nix::sys::mman::{MapFlags, ProtFlags};
use shared_memory::{Shmem, ShmemConf, ShmemError};

use super::cvt;

/// Types that may be viewed (`&T`) inside a shared mapping.
///
/// # Safety
///
/// Implementors are `#[repr(C)]` or primitive, contain no pointers, references
/// or file descriptors, accept every bit pattern (in particular all zeroes, the
/// state of fresh shared memory), and mutate only through interior mutability
/// that is valid across processes (atomics, or a pthread object initialised as
/// process-shared).
pub(crate) unsafe trait ShmSafe: Sync {}

// SAFETY: atomics of these widths are plain integers in memory, valid for every
// bit pattern, and their operations are lock-free instructions that work across
// processes on a shared mapping.
unsafe impl ShmSafe for AtomicU8 {}
// SAFETY: as above.
unsafe impl ShmSafe for AtomicBool {}
// SAFETY: as above.
unsafe impl ShmSafe for AtomicU32 {}
// SAFETY: as above.
unsafe impl ShmSafe for AtomicI32 {}
// SAFETY: as above.
unsafe impl ShmSafe for AtomicU64 {}
// SAFETY: as above.
unsafe impl ShmSafe for AtomicI64 {}
// SAFETY: as above.
unsafe impl ShmSafe for AtomicUsize {}
// SAFETY: an array of ShmSafe elements has no padding and each element is ShmSafe.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

enum Kind {
    /// Held for its drop, which unmaps and closes (never unlinks: not the owner).
    #[allow(dead_code)]
    Named(Shmem),
    /// Unmapped on drop: an anonymous mapping, or one of a memory file.
    Anonymous,
}

/// A shared mapping: named (attachable by name) or anonymous (inherited by fork).
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    kind: Kind,
}

// SAFETY: the mapping is a plain region of shared memory, valid until drop; the
// raw pointer (the only reason Shmem is not Send/Sync) is never handed out
// except through `view` (ShmSafe types, which are Sync) and explicit copies.
unsafe impl Send for Mapping {}
// SAFETY: as above; all access through &self is by atomics or byte copies the
// callers synchronise.
unsafe impl Sync for Mapping {}

fn shmem_error(name: &str, e: ShmemError) -> io::Error {
    match e {
        ShmemError::MappingIdExists => io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("shared memory block '{name}' already exists"),
        ),
        ShmemError::MapOpenFailed(errno) if errno as i32 == libc::ENOENT => io::Error::new(
            io::ErrorKind::NotFound,
            format!("shared memory block '{name}' does not exist"),
        ),
        ShmemError::MapSizeZero => io::Error::new(
            io::ErrorKind::InvalidInput,
            "shared memory size must be at least 1 byte",
        ),
        ShmemError::MapCreateFailed(errno)
        | ShmemError::MapOpenFailed(errno)
        | ShmemError::UnknownOsError(errno) => {
            let os = io::Error::from_raw_os_error(errno as i32);
            io::Error::new(os.kind(), format!("shared memory block '{name}': {os}"))
        }
        other => io::Error::other(format!("shared memory block '{name}': {other}")),
    }
}

/// Allocates the `len` bytes of the new segment `name` now: a segment is
/// only sized by `ftruncate`, so on a full `/dev/shm` the first write to a
/// page would kill the writer with SIGBUS; this turns that into an error.
fn reserve(name: &str, len: usize) -> io::Result<()> {
    let fd = nix::sys::mman::shm_open(
        name,
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("shared memory block '{name}': {e}"),
        )
    })?;
    let len = i64::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    nix::fcntl::posix_fallocate(&fd, 0, len).map_err(|e| {
        let os = io::Error::from(e);
        io::Error::new(
            os.kind(),
            format!("shared memory block '{name}': cannot allocate {len} bytes: {os}"),
        )
    })?;
    Ok(())
}

/// `len` as the size of a mapping: at least one byte.
fn nonzero_size(len: usize) -> io::Result<NonZeroUsize> {
    NonZeroUsize::new(len).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "shared memory size must be at least 1 byte",
        )
    })
}

impl Mapping {
    /// Creates the named segment `name` (with its leading `/`) of `len` bytes,
    /// zero-filled. The caller owns the name: nothing here unlinks it.
    pub(crate) fn create_named(name: &str, len: usize) -> io::Result<Mapping> {
        let mut shm = ShmemConf::new()
            .os_id(name)
            .size(len)
            .create()
            .map_err(|e| shmem_error(name, e))?;
        // Ownership (who unlinks) is ours to manage, not the crate's: its owner
        // unlinks on drop in whatever process drops it, forked children included.
        shm.set_owner(false);
        if let Err(e) = reserve(name, len) {
            drop(shm);
            let _ = unlink(name);
            return Err(e);
        }
        Mapping::from_shmem(shm)
    }

    /// Maps the existing named segment `name`.
    pub(crate) fn attach_named(name: &str) -> io::Result<Mapping> {
        let mut shm = ShmemConf::new()
            .os_id(name)
            .open()
            .map_err(|e| shmem_error(name, e))?;
        shm.set_owner(false);
        Mapping::from_shmem(shm)
    }

    fn from_shmem(shm: Shmem) -> io::Result<Mapping> {
        let ptr = NonNull::new(shm.as_ptr())
            .ok_or_else(|| io::Error::other("shared memory mapping returned a null pointer"))?;
        Ok(Mapping {
            ptr,
            len: shm.len(),
            kind: Kind::Named(shm),
        })
    }

    /// An anonymous `MAP_SHARED` region of `len` zeroed bytes, shared with every
    /// process forked after this call.
    pub(crate) fn anonymous(len: usize) -> io::Result<Mapping> {
        let size = nonzero_size(len)?;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choice
        // aliases nothing; it is unmapped exactly once, in Drop.
        let ptr = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .map_err(io::Error::from)?;
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
            kind: Kind::Anonymous,
        })
    }

    /// A region of `len` zeroed bytes in a new unnamed memory file
    /// (`memfd_create`), mapped shared; the file's descriptor maps it in
    /// other processes ([`Mapping::from_fd`]). Nothing appears in
    /// `/dev/shm`, nothing is left behind when the last descriptor and
    /// mapping go, and pages are allocated as they are first touched (the
    /// memory file has no size limit of its own, unlike `/dev/shm`).
    pub(crate) fn memfd(len: usize) -> io::Result<(Mapping, OwnedFd)> {
        let size = i64::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: memfd_create reads a NUL-terminated name and takes flags;
        // on success the returned descriptor is new and ours alone.
        let fd = unsafe {
            OwnedFd::from_raw_fd(cvt(libc::memfd_create(
                c"multiproc-region".as_ptr(),
                libc::MFD_CLOEXEC,
            ))?)
        };
        // SAFETY: ftruncate on a descriptor we own; no memory is involved.
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) })?;
        let map = Mapping::from_fd(&fd)?;
        Ok((map, fd))
    }

    /// Maps the whole memory file (or shared-memory segment) `fd`, shared.
    pub(crate) fn from_fd(fd: &OwnedFd) -> io::Result<Mapping> {
        let stat = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
        let len = usize::try_from(stat.st_size).unwrap_or(0);
        let size = nonzero_size(len)?;
        // SAFETY: a new shared mapping of the whole file at an address of the
        // kernel's choice aliases no Rust object; it is unmapped exactly once,
        // in Drop (kind Anonymous: unmap only). The file stays valid while
        // mapped, whatever happens to the descriptor.
        let ptr = unsafe {
            nix::sys::mman::mmap(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .map_err(io::Error::from)?;
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
            kind: Kind::Anonymous,
        })
    }

    /// Maps every page of the mapping now, in one call, instead of taking
    /// one page fault per page at its first touch (`MADV_POPULATE_WRITE`
    /// or `_READ`, Linux 5.14). Contents are unchanged. Best effort: an
    /// older kernel refuses the advice and pages fault in as before.
    pub(crate) fn populate(&self, write: bool) -> bool {
        let advice = if write {
            libc::MADV_POPULATE_WRITE
        } else {
            libc::MADV_POPULATE_READ
        };
        // SAFETY: `ptr` and `len` describe a live mapping that `self` owns;
        // the populate advice only maps pages in, changing no contents.
        unsafe { libc::madvise(self.ptr.as_ptr().cast(), self.len, advice) == 0 }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The address of the mapping in this process (for identity checks only).
    #[inline]
    pub(crate) fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// A view of a `T` at `offset`, or `None` if it is out of bounds or misaligned.
    #[inline]
    pub(crate) fn view<T: ShmSafe>(&self, offset: usize) -> Option<&T> {
        let end = offset.checked_add(std::mem::size_of::<T>())?;
        if end > self.len {
            return None;
        }
        let addr = self.addr().checked_add(offset)?;
        if addr % std::mem::align_of::<T>() != 0 {
            return None;
        }
        // SAFETY: in bounds and aligned (checked above); the mapping lives as long
        // as &self; T is ShmSafe, so any bytes there are a valid T and all
        // mutation goes through its cross-process interior mutability.
        Some(unsafe { &*(addr as *const T) })
    }

    /// Copies `dst.len()` bytes from `offset` into `dst`. Returns false if out of bounds.
    #[inline]
    pub(crate) fn read_at(&self, offset: usize, dst: &mut [u8]) -> bool {
        match offset.checked_add(dst.len()) {
            Some(end) if end <= self.len => {
                // SAFETY: the source range is inside the mapping (checked) and
                // cannot overlap `dst`, a Rust slice the caller owns exclusively.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.ptr.as_ptr().add(offset),
                        dst.as_mut_ptr(),
                        dst.len(),
                    )
                };
                true
            }
            _ => false,
        }
    }

    /// Copies `src` into the mapping at `offset`. Returns false if out of bounds.
    #[inline]
    pub(crate) fn write_at(&self, offset: usize, src: &[u8]) -> bool {
        match offset.checked_add(src.len()) {
            Some(end) if end <= self.len => {
                // SAFETY: the destination range is inside the mapping (checked);
                // shared memory is written through a raw pointer, never through a
                // Rust reference, so no `&mut` aliasing rule is broken; ordering
                // against readers is the callers' protocol (locks or atomics).
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        src.as_ptr(),
                        self.ptr.as_ptr().add(offset),
                        src.len(),
                    )
                };
                true
            }
            _ => false,
        }
    }

    /// The whole mapping as bytes.
    ///
    /// Other processes may write the memory at any time (the documented
    /// caveat of the public API); in this process, writes need `&mut` on the
    /// owning handle, so they cannot overlap this borrow.
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes for the lifetime of
        // &self. Every in-process write path to a named block's bytes takes
        // `&mut` of its unique handle (SharedMemory is not Clone), so none
        // overlaps this shared borrow. ShmRegion never hands out slices.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The whole mapping as mutable bytes.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` writable bytes for the borrow's
        // lifetime; `&mut self` on the unique handle makes this the only
        // access to the mapping in this process meanwhile. Writes by other
        // processes are the documented caveat of the public API, as with any
        // memory map.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        match self.kind {
            // Shmem unmaps and closes itself (it is not the owner: no unlink).
            Kind::Named(_) => {}
            Kind::Anonymous => {
                // SAFETY: ptr/len are exactly the mapping made in `anonymous`,
                // unmapped once here; views borrow &self, so none outlives it.
                let _ = unsafe { nix::sys::mman::munmap(self.ptr.cast(), self.len) };
            }
        }
    }
}

/// Removes the named segment `name` (with its leading `/`).
pub(crate) fn unlink(name: &str) -> io::Result<()> {
    nix::sys::mman::shm_unlink(name).map_err(io::Error::from)
}

// ---------------------------------------------------------------------------
// The tracker.

/// The longest segment name the tracker handles (Linux's NAME_MAX, leading `/` included).
pub(crate) const MAX_NAME: usize = 255;
const SLOT: usize = MAX_NAME + 1;
const SLOTS: usize = 1024;

struct Tracker {
    pid: i32,
    fd: OwnedFd,
}

static TRACKER: Mutex<Option<Tracker>> = Mutex::new(None);

/// The tracker handle, held across a fork (see `prefork`).
pub(crate) fn tracker_lock() -> impl Sized {
    TRACKER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Asks this process's tracker to unlink `name` if every process of this
/// family dies without [`untrack`]ing it. Starts the tracker on first use.
pub(crate) fn track(name: &str) -> io::Result<()> {
    send(b'R', name, true)
}

/// Tells the tracker that `name` was unlinked by its owner.
pub(crate) fn untrack(name: &str) -> io::Result<()> {
    send(b'U', name, false)
}

fn send(op: u8, name: &str, start: bool) -> io::Result<()> {
    if name.len() > MAX_NAME || name.bytes().any(|b| b == b'\n' || b == 0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "segment name not trackable",
        ));
    }
    let mut msg = Vec::with_capacity(name.len() + 2);
    msg.push(op);
    msg.extend_from_slice(name.as_bytes());
    msg.push(b'\n');
    let pid = std::process::id() as i32;
    let mut guard = TRACKER.lock().unwrap_or_else(|p| p.into_inner());
    if guard.as_ref().is_some_and(|t| t.pid != pid) {
        // Inherited from the parent across fork: this process gets its own, and
        // its copy of the parent's pipe closes so the parent's tracker is not
        // kept alive by it.
        *guard = None;
    }
    if guard.is_none() {
        if !start {
            return Ok(());
        }
        *guard = Some(spawn_tracker()?);
    }
    let fd = guard.as_ref().map(|t| t.fd.as_raw_fd()).unwrap_or(-1);
    // A message is at most PIPE_BUF (4096) bytes, so the write is atomic.
    loop {
        // SAFETY: fd is our open pipe's write end; msg is a valid buffer.
        let n = unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn spawn_tracker() -> io::Result<Tracker> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both are fresh fds that we now own.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Everything the tracker needs is allocated before the fork: after it the
    // child may be a copy of a multi-threaded process and must not allocate.
    let mut table = vec![0u8; SLOT * SLOTS];
    let table_ptr = table.as_mut_ptr();
    let read_fd = rd.as_raw_fd();
    // SAFETY: the child runs only async-signal-safe system calls (fork, setsid,
    // open, dup2, close_range, sigaction-free signal(), read, unlink, _exit) on
    // memory allocated before the fork, then exits without returning.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        // SAFETY: see above; `table_ptr` points to SLOT * SLOTS bytes owned by
        // this copy of the address space.
        unsafe { tracker_child(read_fd, table_ptr) }
    }
    drop(rd);
    drop(table);
    // Reap the intermediate child; the tracker itself is its orphan.
    let mut status = 0;
    loop {
        // SAFETY: waits for the child we just forked.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    Ok(Tracker {
        pid: std::process::id() as i32,
        fd: wr,
    })
}

/// The body of the forked intermediate child: forks the tracker and exits.
///
/// # Safety
///
/// Called only in a freshly forked child; `table` points to `SLOT * SLOTS`
/// writable bytes.
unsafe fn tracker_child(read_fd: i32, table: *mut u8) -> ! {
    // SAFETY: async-signal-safe calls only (see spawn_tracker); never returns.
    unsafe {
        if libc::fork() != 0 {
            libc::_exit(0);
        }
        // The tracker: its own session, so terminal signals to the group miss it.
        libc::setsid();
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let devnull = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if libc::dup2(read_fd, 3) < 0 {
            libc::_exit(1);
        }
        if devnull >= 0 {
            libc::dup2(devnull, 0);
            libc::dup2(devnull, 1);
            libc::dup2(devnull, 2);
        }
        // Hold no other descriptor: a copy of some channel's end would hide a
        // dead peer from the process at the other end.
        libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
        let table = std::slice::from_raw_parts_mut(table, SLOT * SLOTS);
        tracker_loop(3, table);
        libc::_exit(0)
    }
}

/// Reads `R<name>\n` / `U<name>\n` records until EOF, then unlinks what is left.
/// Allocation-free: it runs in a fork of a possibly multi-threaded process.
fn tracker_loop(fd: i32, table: &mut [u8]) {
    let mut buf = [0u8; 4096];
    let mut line = [0u8; SLOT + 1];
    let mut line_len = 0usize;
    let mut overflow = false;
    loop {
        // SAFETY: fd is the pipe's read end; buf is a valid writable buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n == 0 {
            break;
        }
        if n < 0 {
            // SAFETY: reads this thread's errno.
            if unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            break;
        }
        for &b in &buf[..n as usize] {
            if b == b'\n' {
                if !overflow && line_len > 1 {
                    apply_record(table, &line[..line_len]);
                }
                line_len = 0;
                overflow = false;
            } else if line_len < line.len() {
                line[line_len] = b;
                line_len += 1;
            } else {
                overflow = true;
            }
        }
    }
    // Every holder of the write end is gone: unlink what the owners left.
    let mut path = [0u8; 9 + SLOT + 1];
    path[..9].copy_from_slice(b"/dev/shm/");
    for slot in table.chunks_exact(SLOT) {
        let len = slot.iter().position(|&b| b == 0).unwrap_or(SLOT);
        if len < 2 {
            continue;
        }
        // Names start with '/': skip it, /dev/shm/ already ends with one.
        let name = &slot[1..len];
        path[9..9 + name.len()].copy_from_slice(name);
        path[9 + name.len()] = 0;
        // SAFETY: path is NUL-terminated.
        unsafe { libc::unlink(path.as_ptr().cast()) };
    }
    unlink_items(table);
}

/// True if `entry` (a `/dev/shm` file name, no leading `/`) is an item
/// segment of a tracked segment: named `<tracked name>.<anything>`, as a
/// queue names the segments of its large items.
fn is_item_of_tracked(table: &[u8], entry: &[u8]) -> bool {
    table.chunks_exact(SLOT).any(|slot| {
        let len = slot.iter().position(|&b| b == 0).unwrap_or(SLOT);
        // Skip the tracked name's leading '/'.
        len >= 2 && {
            let base = &slot[1..len];
            entry.len() > base.len() + 1 && entry.starts_with(base) && entry[base.len()] == b'.'
        }
    })
}

/// Unlinks the item segments of the tracked segments (a queue's large items
/// live in segments named after the queue's region, made by any producer):
/// they are unreachable once their region is gone. Reads `/dev/shm` with
/// `getdents64` into a stack buffer: no allocation in the tracker.
fn unlink_items(table: &[u8]) {
    // SAFETY: the path is a NUL-terminated literal.
    let dir = unsafe {
        libc::open(
            c"/dev/shm".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return;
    }
    let mut buf = [0u8; 8192];
    // Entries removed during a scan may make the directory's listing skip
    // others: scan again until a pass removes nothing (bounded).
    for _ in 0..16 {
        let mut removed = false;
        // SAFETY: rewinds the directory fd we opened.
        if unsafe { libc::lseek(dir, 0, libc::SEEK_SET) } < 0 {
            break;
        }
        loop {
            // SAFETY: getdents64 writes at most buf.len() bytes into buf.
            let n =
                unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len()) };
            if n <= 0 {
                break;
            }
            let n = n as usize;
            let mut off = 0;
            // linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8,
            // then the NUL-terminated name.
            while off + 19 < n {
                let reclen = usize::from(u16::from_ne_bytes([buf[off + 16], buf[off + 17]]));
                if reclen == 0 || off + reclen > n {
                    break;
                }
                let field = &buf[off + 19..off + reclen];
                let len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
                if len < field.len() && is_item_of_tracked(table, &field[..len]) {
                    // SAFETY: the name is NUL-terminated inside buf, and dir
                    // is our open directory fd.
                    unsafe { libc::unlinkat(dir, field.as_ptr().cast(), 0) };
                    removed = true;
                }
                off += reclen;
            }
        }
        if !removed {
            break;
        }
    }
    // SAFETY: closes the fd we opened, once.
    unsafe { libc::close(dir) };
}

fn apply_record(table: &mut [u8], record: &[u8]) {
    let (op, name) = (record[0], &record[1..]);
    if name.len() >= SLOT {
        return;
    }
    let matches = |slot: &[u8]| slot[..name.len()] == *name && slot[name.len()] == 0;
    match op {
        b'R' => {
            if table.chunks_exact(SLOT).any(matches) {
                return;
            }
            if let Some(slot) = table.chunks_exact_mut(SLOT).find(|s| s[0] == 0) {
                slot[..name.len()].copy_from_slice(name);
                slot[name.len()] = 0;
            }
        }
        b'U' => {
            for slot in table.chunks_exact_mut(SLOT) {
                if matches(slot) {
                    slot.fill(0);
                }
            }
        }
        _ => {}
    }
}

/// True if process `pid` exists (a zombie counts as existing).
pub(crate) fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_records_insert_and_remove() {
        let mut table = vec![0u8; SLOT * 4];
        apply_record(&mut table, b"R/a");
        apply_record(&mut table, b"R/bb");
        apply_record(&mut table, b"R/a");
        let used = |t: &[u8]| t.chunks_exact(SLOT).filter(|s| s[0] != 0).count();
        assert_eq!(used(&table), 2);
        apply_record(&mut table, b"U/a");
        assert_eq!(used(&table), 1);
        apply_record(&mut table, b"U/bb");
        assert_eq!(used(&table), 0);
    }

    #[test]
    fn item_segments_of_tracked_names_are_recognised() {
        let mut table = vec![0u8; SLOT * 4];
        apply_record(&mut table, b"R/mp-1-2-ab");
        assert!(is_item_of_tracked(&table, b"mp-1-2-ab.77-0"));
        assert!(!is_item_of_tracked(&table, b"mp-1-2-ab"));
        assert!(!is_item_of_tracked(&table, b"mp-1-2-ab."));
        assert!(!is_item_of_tracked(&table, b"mp-1-2-abc.77-0"));
        assert!(!is_item_of_tracked(&table, b"mp-1-2-a.77-0"));
        apply_record(&mut table, b"U/mp-1-2-ab");
        assert!(!is_item_of_tracked(&table, b"mp-1-2-ab.77-0"));
    }

    #[test]
    fn views_check_bounds_and_alignment() {
        let m = Mapping::anonymous(64).unwrap();
        assert!(m.view::<AtomicU64>(0).is_some());
        assert!(m.view::<AtomicU64>(56).is_some());
        assert!(m.view::<AtomicU64>(60).is_none());
        assert!(m.view::<AtomicU64>(4).is_none());
        assert!(m.view::<AtomicU32>(usize::MAX).is_none());
        let mut out = [0u8; 4];
        assert!(m.write_at(10, b"abcd"));
        assert!(m.read_at(10, &mut out));
        assert_eq!(&out, b"abcd");
        assert!(!m.write_at(62, b"abcd"));
    }
}
