//! File-descriptor helpers: pipes, fd passing with `SCM_RIGHTS`, and `poll`
//! with a deadline.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};

/// The most descriptors one message may carry (the kernel's `SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

/// A close-on-exec duplicate of the descriptor numbered `raw`, which the
/// caller does not own (`EBADF` if it is not open).
pub(crate) fn dup_raw(raw: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: `fcntl(F_DUPFD_CLOEXEC)` only reads its integer arguments; an
    // invalid `raw` is reported as EBADF.
    let new = super::cvt(unsafe { libc::fcntl(raw, libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: the kernel just created `new` for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// A pipe `(read end, write end)`, both close-on-exec.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// Sends `bytes` on the unix socket `sock`, attaching `fds` to the first byte.
///
/// Returns how many bytes were sent (the rest must be sent with plain writes;
/// the descriptors have gone with the first chunk). With `nonblocking`, a full
/// socket gives `WouldBlock`.
pub(crate) fn send_with_fds(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<usize> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs: Vec<ControlMessage<'_>> = if raw.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    let mut flags = MsgFlags::MSG_NOSIGNAL;
    if nonblocking {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    loop {
        match socket::sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(bytes)],
            &cmsgs,
            flags,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// Receives into `buf` from the unix socket `sock`; descriptors that arrive
/// are appended to `fds` (close-on-exec). `Ok(0)` is end of file.
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
) -> io::Result<usize> {
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if nonblocking {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match socket::recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
            Ok(m) => m,
        };
        let n = msg.bytes;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(received) = c {
                    for raw in received {
                        // SAFETY: the kernel just installed `raw` in our table
                        // for this message; nothing else refers to it, so we
                        // are its only owner.
                        fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                    }
                }
            }
        }
        return Ok(n);
    }
}

/// Polls `fds` with their `events` until one is ready or `deadline` passes
/// (`None`: no deadline). Returns the `revents` of each (empty on timeout).
/// `EINTR` restarts the wait with the remaining time.
pub(crate) fn poll_until(
    fds: &[(BorrowedFd<'_>, PollFlags)],
    deadline: Option<Instant>,
) -> io::Result<Vec<PollFlags>> {
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so that a sub-millisecond remainder still waits.
                let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128 - 1);
                PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut pfds: Vec<PollFd<'_>> = fds.iter().map(|(f, e)| PollFd::new(*f, *e)).collect();
        match nix::poll::poll(&mut pfds, timeout) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
            Ok(0) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(Vec::new());
                }
            }
            Ok(_) => {
                return Ok(pfds
                    .iter()
                    .map(|p| p.revents().unwrap_or(PollFlags::empty()))
                    .collect())
            }
        }
    }
}

/// Waits until `fd` is readable (or hung up) or `deadline` passes; true if ready.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    Ok(!poll_until(&[(fd, PollFlags::POLLIN)], deadline)?.is_empty())
}

/// Blocks until `fd` is readable (or hung up, or in error), with no
/// deadline, without allocating or taking any lock (safe to run in a thread
/// of a process that forks).
pub(crate) fn wait_readable_forever(fd: BorrowedFd<'_>) {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid `pollfd` on the stack, count 1, no timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, -1) };
        if n > 0 || (n == -1 && Errno::last() != Errno::EINTR) {
            return;
        }
    }
}

/// True if `fd` is readable (or hung up) right now.
pub(crate) fn is_readable(fd: impl AsFd) -> io::Result<bool> {
    let now = Some(Instant::now());
    wait_readable(fd.as_fd(), now)
}

/// Appends to `buf` what one `read` gives, reading as much as the frame in
/// `buf` still lacks to be `whole` bytes long (`min` while its length is
/// unknown; at least `min`, at most 1 MiB at a time). `read` fills the
/// slice it is given and returns how much it wrote; `buf` keeps exactly
/// that. The zeroed room is only what the frame needs: a large scratch
/// buffer written after every fork would cost a copy-on-write fault per
/// page.
pub(crate) fn read_lacking(
    buf: &mut Vec<u8>,
    whole: Option<usize>,
    min: usize,
    read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
) -> io::Result<usize> {
    const MAX_READ: usize = 1 << 20;
    let old = buf.len();
    let want = whole
        .map_or(0, |w| w.saturating_sub(old))
        .clamp(min, MAX_READ);
    buf.resize(old + want, 0);
    let r = read(&mut buf[old..]);
    buf.truncate(old + *r.as_ref().unwrap_or(&0));
    r
}

/// Re-exported poll flags for callers of [`poll_until`].
pub(crate) use nix::poll::PollFlags as Poll;

#[cfg(test)]
mod tests {
    #[test]
    fn read_lacking_asks_for_what_the_frame_lacks_and_keeps_what_was_read() {
        let mut buf = vec![1u8; 10];
        // Unknown length: `min` bytes of room.
        let n = super::read_lacking(&mut buf, None, 512, |room| {
            assert_eq!(room.len(), 512);
            room[..3].copy_from_slice(b"abc");
            Ok(3)
        })
        .unwrap();
        assert_eq!((n, buf.len(), &buf[10..]), (3, 13, &b"abc"[..]));
        // A frame of 10,013 bytes lacks 10,000.
        super::read_lacking(&mut buf, Some(10_013), 512, |room| {
            assert_eq!(room.len(), 10_000);
            Ok(0)
        })
        .unwrap();
        assert_eq!(buf.len(), 13, "nothing read, nothing kept");
        // Nearly whole: still `min`; huge: at most 1 MiB.
        super::read_lacking(&mut buf, Some(14), 512, |room| {
            assert_eq!(room.len(), 512);
            Ok(1)
        })
        .unwrap();
        super::read_lacking(&mut buf, Some(usize::MAX), 512, |room| {
            assert_eq!(room.len(), 1 << 20);
            Err(std::io::ErrorKind::Interrupted.into())
        })
        .unwrap_err();
        assert_eq!(buf.len(), 14, "an error keeps nothing");
    }
}
