//! Socket calls that the safe wrappers of `nix` cannot express: receiving
//! straight into the uninitialized spare capacity of a `Vec`, with the
//! descriptors that come along.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;

/// Room for one `SCM_RIGHTS` message of 253 descriptors (the kernel's
/// `SCM_MAX_FD`; a read never returns the descriptors of two messages)
/// (`CMSG_SPACE(253 * 4)` = 1032 bytes), 8-byte aligned as `cmsghdr` needs.
const CMSG_WORDS: usize = 130;

/// Receives at most `max` bytes from the stream socket `fd` without blocking
/// (`MSG_DONTWAIT`), appending them to `buf`'s spare capacity; returns how
/// many bytes were received (0 at end of stream, or when `buf` has no spare
/// capacity or `max` is 0). Descriptors that arrive with the bytes
/// (`SCM_RIGHTS`, close-on-exec) are appended to `fds`.
///
/// The caller reserves capacity beforehand; this never reallocates, so a
/// large message is received without first zeroing its buffer.
///
/// # Errors
///
/// The `recvmsg(2)` error: `WouldBlock` when no data is queued,
/// `Interrupted`, `ConnectionReset`, and so on.
pub(crate) fn recv_spare_fds(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    max: usize,
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let len = spare.len().min(max);
    if len == 0 {
        return Ok(0);
    }
    let mut control = [0u64; CMSG_WORDS];
    let mut iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast::<libc::c_void>(),
        iov_len: len,
    };
    // SAFETY: an all-zero `msghdr` is valid (null name, no iovecs, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast::<libc::c_void>();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at one iovec over `len` writable bytes of `buf`'s
    // spare capacity and at `control`, both alive for the call; `fd` is a
    // live descriptor borrowed for the call.
    let n = cvt(unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        )
    })?;
    let n = usize::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    debug_assert!(n <= len);
    // SAFETY: the kernel initialized the first `n <= len` bytes of the spare
    // capacity.
    unsafe { buf.set_len(buf.len() + n) };
    // SAFETY: `msg` was filled by a successful `recvmsg`; its control area is
    // `control`, which the CMSG macros walk within `msg_controllen`.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is non-null and points inside `control`, at a header
        // the kernel wrote.
        let hdr = unsafe { &*cmsg };
        if hdr.cmsg_level == libc::SOL_SOCKET && hdr.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: `CMSG_LEN(0)` is a constant computation.
            let head = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = (hdr.cmsg_len as usize).saturating_sub(head) / std::mem::size_of::<RawFd>();
            // SAFETY: the payload of this header holds `count` descriptors.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<RawFd>();
            for i in 0..count {
                // SAFETY: `i < count`, inside the payload; it may be unaligned.
                let raw = unsafe { data.add(i).read_unaligned() };
                // SAFETY: the kernel installed `raw` in our table for this
                // message; nothing else refers to it.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: as for `CMSG_FIRSTHDR`; `cmsg` is a header of `msg`.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
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
        let mut fds = Vec::new();
        let e = recv_spare_fds(b.as_fd(), &mut buf, usize::MAX, &mut fds).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        a.write_all(b"hello world").unwrap();
        assert_eq!(recv_spare_fds(b.as_fd(), &mut buf, 3, &mut fds).unwrap(), 3);
        assert_eq!(buf, b"hel");
        assert_eq!(
            recv_spare_fds(b.as_fd(), &mut buf, usize::MAX, &mut fds).unwrap(),
            1
        );
        assert_eq!(buf, b"hell");
        assert_eq!(
            recv_spare_fds(b.as_fd(), &mut buf, usize::MAX, &mut fds).unwrap(),
            0,
            "no spare room"
        );
        buf.reserve(100);
        assert_eq!(
            recv_spare_fds(b.as_fd(), &mut buf, usize::MAX, &mut fds).unwrap(),
            7
        );
        assert_eq!(buf, b"hello world");
        drop(a);
        assert_eq!(
            recv_spare_fds(b.as_fd(), &mut buf, usize::MAX, &mut fds).unwrap(),
            0,
            "eof"
        );
        assert!(fds.is_empty());
    }

    #[test]
    fn receives_descriptors_with_the_bytes() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        crate::sys::fd::send_with_fds(a.as_fd(), b"xy", &[file.as_fd(), file.as_fd()], false)
            .unwrap();
        let mut buf = Vec::with_capacity(16);
        let mut fds = Vec::new();
        assert_eq!(
            recv_spare_fds(b.as_fd(), &mut buf, usize::MAX, &mut fds).unwrap(),
            2
        );
        assert_eq!(buf, b"xy");
        assert_eq!(fds.len(), 2);
    }
}
