//! Memory shared by a program's processes: the process that made it and
//! every process forked from it afterwards (a pool's workers, its fork
//! server, a manager, each `Process`).
//!
//! It lives in an anonymous `MAP_SHARED` mapping made once, before the
//! first fork, and never unmapped: each child inherits it at the same
//! address. Processes not forked from the program (a remote manager's
//! clients) have their own.
//!
//! What it holds: one [`SpinCell`] per process that spins (up to
//! [`CELLS`]), counting that process's threads spinning right now, so that
//! any process of the program can tell how many of the machine's runnable
//! tasks are its own spinners (see `crate::spin`).

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use super::shm::{Mapping, ShmSafe};

/// How many processes of a program can count their spinners; a process
/// that finds none free is not counted. The cells are pages of a shared
/// mapping, allocated as they are first touched.
pub(crate) const CELLS: usize = 1024;

/// One process's count of its threads spinning now, and the process: one
/// word, so that a cell changes hands and is counted in one atomic step
/// (the process id in the high 32 bits, the count in the low 32; 0 when
/// free).
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct SpinCell {
    pub(crate) word: AtomicU64,
}

/// The program's cells.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SpinCells {
    pub(crate) cells: [SpinCell; CELLS],
}

// SAFETY: `SpinCells` is `repr(C)`, made only of atomic integers (valid
// for every bit pattern, all zeroes included), mutated only through them.
unsafe impl ShmSafe for SpinCells {}

/// The program's cells, or null until [`cells_or_make`] makes them here
/// or in a parent before the fork.
static SHARED: AtomicPtr<SpinCells> = AtomicPtr::new(ptr::null_mut());

/// The program's cells, made now if this process has none yet (call it
/// before forking: a child forked before they exist makes its own); `None`
/// if no mapping could be made. Allocates nothing (it may run in a child
/// just forked).
pub(crate) fn cells_or_make() -> Option<&'static SpinCells> {
    if let Some(c) = cells() {
        return Some(c);
    }
    let map = Mapping::anonymous(std::mem::size_of::<SpinCells>()).ok()?;
    let fresh = ptr::from_ref(map.view::<SpinCells>(0)?).cast_mut();
    // Never unmapped: the cells live as long as the process.
    std::mem::forget(map);
    // Another thread may have made one first: then this one stays mapped,
    // unused (once per process at most).
    let _ = SHARED.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire);
    cells()
}

/// The program's cells, if made (here, or in a parent before the fork).
pub(crate) fn cells() -> Option<&'static SpinCells> {
    let p = SHARED.load(Ordering::Acquire);
    // SAFETY: a non-null value was stored only by `cells_or_make`, from a
    // view into a mapping forgotten there: it is never unmapped, so the reference stays
    // valid for the rest of the process, and in each child, which inherits
    // the mapping at the same address.
    unsafe { p.cast_const().as_ref() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cells_are_made_once() {
        let first = cells_or_make().expect("made");
        assert!(std::ptr::eq(first, cells().expect("kept")));
        assert!(std::ptr::eq(
            first,
            cells_or_make().expect("not made again")
        ));
        assert_eq!(std::mem::size_of::<SpinCells>(), 64 * CELLS);
    }
}
