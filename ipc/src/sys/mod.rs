//! The system-call boundary: every `unsafe` block of multiproc is in this module.

use std::io;

pub(crate) mod sock;

/// Turns a libc-style return value (`-1` and `errno` on failure) into an `io::Result`.
pub(crate) fn cvt<T: IsMinusOne>(ret: T) -> io::Result<T> {
    if ret.is_minus_one() {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Integer return types of system calls.
pub(crate) trait IsMinusOne: Copy {
    fn is_minus_one(self) -> bool;
}

macro_rules! impl_is_minus_one {
    ($($t:ty)*) => {$(
        impl IsMinusOne for $t {
            fn is_minus_one(self) -> bool { self == -1 }
        }
    )*};
}
impl_is_minus_one! { i32 i64 isize }

pub(crate) mod family;
pub(crate) mod fd;
pub(crate) mod fork;
pub(crate) mod futex;
pub(crate) mod heap;
pub(crate) mod mutex;
pub(crate) mod plain;
pub(crate) mod sched;
pub(crate) mod shm;
pub(crate) mod wait;
pub(crate) mod zst;

// Shared-memory layouts and references of the sync primitives and values.
pub(crate) mod layout;
pub(crate) mod shm_ref;
