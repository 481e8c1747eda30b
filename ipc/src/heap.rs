//! Freed memory that multiproc's worker processes keep for their next task.
//!
//! A pool worker runs task after task, and a task with large arguments or
//! results (a `map` chunk of a million numbers, say) allocates megabytes
//! and frees them at its end. By default glibc's malloc gives each such
//! buffer a mapping of its own and unmaps it when it is freed, and it gives
//! freed memory at the top of its heap back to the system: every task then
//! touches fresh pages, and a fresh page costs a page fault (1–2 µs on a
//! VM, more than copying the page). So a pool worker asks malloc, once at
//! its start ([`apply`]), to take requests below 32 MiB from its heap and to
//! keep up to [`keep_bytes`] of freed memory: later tasks reuse the pages.
//! A worker's memory then stays at its high-water mark plus at most that
//! much; malloc's settings in your own process stay as they are.
//!
//! In your process, multiproc only advises: the result vector of a large
//! `map` asks for transparent huge pages ([`prefer_huge_pages`]), so that
//! filling it takes a fault per 2 MiB instead of one per 4 KiB.
//!
//! The knob is the environment variable `MULTIPROC_WORKER_HEAP_MB`, read
//! by the process that starts the pool: megabytes a worker keeps (default
//! 64), or `0` / `off` to leave malloc's defaults alone. It only concerns
//! glibc's malloc; another global allocator is left as it is.
//!
//! ```
//! use multiproc::{heap, Pool};
//!
//! // What a worker will keep: 64 MiB unless MULTIPROC_WORKER_HEAP_MB says otherwise.
//! assert_eq!(heap::parse(None), heap::DEFAULT_KEEP_MB << 20);
//! assert_eq!(heap::parse(Some("16")), 16 << 20);
//! assert_eq!(heap::parse(Some("off")), 0);
//! let pool = Pool::new(1)?;
//! fn big(n: usize) -> usize { vec![1u8; n].iter().map(|&b| b as usize).sum() }
//! assert_eq!(pool.apply(big, 8 << 20)?, 8 << 20); // the next big task reuses the pages
//! # Ok::<(), multiproc::Error>(())
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};

/// The default memory a worker keeps freed, in MiB.
pub const DEFAULT_KEEP_MB: usize = 64;

/// Requests below this many bytes come from the heap in a tuned worker
/// (glibc's largest threshold on 64-bit systems).
const HEAP_BELOW: usize = 32 << 20;

/// `usize::MAX` until read; then the bytes a worker keeps, 0 for "leave alone".
static KEEP: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Parses a `MULTIPROC_WORKER_HEAP_MB` value into bytes (0: off).
pub fn parse(value: Option<&str>) -> usize {
    match value.map(str::trim) {
        None | Some("") => DEFAULT_KEEP_MB << 20,
        Some("off") | Some("never") => 0,
        Some(v) => v
            .parse::<usize>()
            .map_or(DEFAULT_KEEP_MB << 20, |mb| mb.saturating_mul(1 << 20)),
    }
}

/// The freed memory a worker keeps, in bytes; 0 when
/// `MULTIPROC_WORKER_HEAP_MB` turns the tuning off. Read once per process,
/// by the process that starts workers (a child never reads the
/// environment).
pub fn keep_bytes() -> usize {
    match KEEP.load(Ordering::Relaxed) {
        usize::MAX => {
            let bytes = parse(std::env::var("MULTIPROC_WORKER_HEAP_MB").ok().as_deref());
            KEEP.store(bytes, Ordering::Relaxed);
            bytes
        }
        bytes => bytes,
    }
}

/// Tunes malloc in the calling process to keep `keep` bytes of freed
/// memory (a [`keep_bytes`] the parent read and passed on), if `keep` is
/// not 0; true if malloc took the values. Meant for processes multiproc
/// owns: a pool worker calls it as it starts.
pub fn apply(keep: usize) -> bool {
    keep != 0 && crate::sys::heap::keep_freed(HEAP_BELOW.min(keep), keep)
}

/// Asks for huge pages behind the spare capacity of `v`, before `v` is
/// filled: on a VM a fresh 4 KiB
/// page costs a fault of 1–2 µs, while a 2 MiB huge page costs one fault
/// and a clear. A pool's `map` does this for its result vector, which is otherwise fresh memory
/// faulted in on the calling side's critical path (a `map` of a million
/// numbers: 7–16% faster on a 2-CPU VM).
///
/// Only whole 2 MiB pages inside the spare capacity are advised; the
/// contents and the length of `v` are unchanged. Best effort: false when
/// the spare capacity holds no whole huge page (no system call then) or
/// the kernel has no transparent huge pages; where they are set to `never` the advice is taken and changes
/// nothing, and pages fault in one by one as before.
///
/// ```
/// use multiproc::heap;
///
/// let mut v: Vec<u64> = Vec::with_capacity(1 << 20); // 8 MiB
/// let advised = heap::prefer_huge_pages(&mut v);
/// v.extend(0..1 << 20); // faults in 2 MiB at a time where advised
/// assert_eq!(v[12345], 12345);
/// let mut small: Vec<u64> = Vec::with_capacity(16);
/// assert!(!heap::prefer_huge_pages(&mut small));
/// # let _ = advised;
/// ```
pub fn prefer_huge_pages<T>(v: &mut Vec<T>) -> bool {
    crate::sys::heap::advise_huge(v.spare_capacity_mut())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's transparent huge page mode: `always`, `madvise` or
    /// `never` (the bracketed word of the sysfs file).
    fn thp_mode() -> Option<String> {
        let s = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
        let start = s.find('[')? + 1;
        let end = start + s[start..].find(']')?;
        Some(s[start..end].to_owned())
    }

    #[test]
    fn a_large_vector_is_backed_by_huge_pages_where_the_kernel_allows() {
        let mut v: Vec<u64> = Vec::with_capacity(3 << 20); // 24 MiB
        let advised = prefer_huge_pages(&mut v);
        v.extend(0..3 << 20);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
        match thp_mode().as_deref() {
            Some("always") | Some("madvise") => {
                assert!(advised, "the kernel allows huge pages but refused");
                let at = v.as_ptr() as usize + (12 << 20);
                let kib = crate::smaps::kb_at(at, "AnonHugePages:").expect("smaps");
                assert!(kib >= 2048, "no huge page behind the vector: {kib} KiB");
            }
            // `never`: the advice is taken and changes nothing; no huge
            // pages at all: refused.
            _ => {}
        }
        let mut small: Vec<u64> = Vec::with_capacity(1024);
        assert!(!prefer_huge_pages(&mut small), "8 KiB holds no huge page");
    }

    #[test]
    fn values_parse_to_bytes_and_off_is_zero() {
        assert_eq!(parse(None), 64 << 20);
        assert_eq!(parse(Some(" 16 ")), 16 << 20);
        assert_eq!(parse(Some("0")), 0);
        assert_eq!(parse(Some("off")), 0);
        assert_eq!(parse(Some("lots")), 64 << 20);
        assert!(!apply(0), "0 leaves malloc alone");
    }
}
