//! Socket calls that the safe wrappers of `nix` cannot express: receiving
//! straight into the uninitialized spare capacity of a `Vec`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::cvt;

/// Receives at most `max` bytes from the stream socket `fd` without blocking
/// (`MSG_DONTWAIT`), appending them to `buf`'s spare capacity; returns how
/// many bytes were received (0 at end of stream, or when `buf` has no spare
/// capacity or `max` is 0).
///
/// The caller reserves capacity beforehand; this never reallocates, so a
/// large message is received without first zeroing its buffer.
///
/// # Errors
///
/// The `recv(2)` error: `WouldBlock` when no data is queued, `Interrupted`,
/// `ConnectionReset`, and so on.
pub(crate) fn recv_spare(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let len = spare.len().min(max);
    if len == 0 {
        return Ok(0);
    }
    // SAFETY: `spare` is writable memory of at least `len` bytes owned by `buf`
    // (uninitialized bytes may be written through a raw pointer); `fd` is a
    // live descriptor borrowed for the call. `recv` writes at most `len` bytes.
    let n = cvt(unsafe {
        libc::recv(
            fd.as_raw_fd(),
            spare.as_mut_ptr().cast::<libc::c_void>(),
            len,
            libc::MSG_DONTWAIT,
        )
    })?;
    // `cvt` rejected -1; any other value is a byte count in 0..=len.
    let n = usize::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    debug_assert!(n <= len);
    // SAFETY: the kernel initialized the first `n <= len` bytes of the spare
    // capacity, so `buf.len() + n` bytes are initialized and within capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn receives_into_spare_capacity() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut buf = Vec::with_capacity(4);
        let e = recv_spare(b.as_fd(), &mut buf, usize::MAX).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        a.write_all(b"hello world").unwrap();
        assert_eq!(recv_spare(b.as_fd(), &mut buf, 3).unwrap(), 3);
        assert_eq!(buf, b"hel");
        assert_eq!(recv_spare(b.as_fd(), &mut buf, usize::MAX).unwrap(), 1);
        assert_eq!(buf, b"hell");
        assert_eq!(
            recv_spare(b.as_fd(), &mut buf, usize::MAX).unwrap(),
            0,
            "no spare room"
        );
        buf.reserve(100);
        assert_eq!(recv_spare(b.as_fd(), &mut buf, usize::MAX).unwrap(), 7);
        assert_eq!(buf, b"hello world");
        drop(a);
        assert_eq!(
            recv_spare(b.as_fd(), &mut buf, usize::MAX).unwrap(),
            0,
            "eof"
        );
    }
}
