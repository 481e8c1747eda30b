//! What a zygote and its requester send each other: frames of
//! `[u32 msg len][u32 payload len][u32 fd count] msg payload`, with the
//! descriptors attached to the header's first byte, whose message is a
//! [`Request`] or a [`Reply`].

use std::collections::VecDeque;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::ExitStatus;
use crate::sys::fd::{self, Poll};
use crate::sys::fork::FnAddr;

const HEADER: usize = 12;
const MAX_FRAME: usize = codec::DEFAULT_MAX_MESSAGE;

pub(super) fn frame_bytes(msg: &[u8], payload: &[u8], nfds: usize) -> io::Result<Vec<u8>> {
    let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "frame too large");
    if msg.len() + payload.len() > MAX_FRAME || nfds > fd::MAX_FDS {
        return Err(too_big());
    }
    let mut out = Vec::with_capacity(HEADER + msg.len() + payload.len());
    for n in [msg.len(), payload.len(), nfds] {
        out.extend_from_slice(&u32::try_from(n).map_err(|_| too_big())?.to_le_bytes());
    }
    out.extend_from_slice(msg);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Sends one frame to the zygote whose pidfd is `zygote`, blocking until
/// all of it is written, or until the zygote is dead (`BrokenPipe`, even if
/// a stray copy of its end of the socket keeps the connection open).
pub(super) fn send_frame(
    sock: BorrowedFd<'_>,
    zygote: BorrowedFd<'_>,
    msg: &[u8],
    payload: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let bytes = frame_bytes(msg, payload, fds.len())?;
    let mut sent = 0;
    while sent < bytes.len() {
        let attach = if sent == 0 { fds } else { &[] };
        match fd::send_with_fds(sock, &bytes[sent..], attach, true) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let revents =
                    fd::poll_until(&[(sock, Poll::POLLOUT), (zygote, Poll::POLLIN)], None)?;
                if revents.get(1).is_some_and(|r| !r.is_empty()) {
                    return Err(io::Error::from(io::ErrorKind::BrokenPipe));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Word `i` of a frame header (`[msg len u32][payload len u32][fds u32]`);
/// `head` holds at least the header.
fn header_word(head: &[u8], i: usize) -> usize {
    let mut w = [0u8; 4];
    w.copy_from_slice(&head[i * 4..i * 4 + 4]);
    u32::from_le_bytes(w) as usize
}

pub(super) struct Frame {
    pub(super) msg: Vec<u8>,
    pub(super) payload: Vec<u8>,
    pub(super) fds: Vec<OwnedFd>,
}

/// Accumulates bytes and descriptors from a socket and cuts them into frames.
#[derive(Default)]
pub(super) struct FrameReader {
    buf: Vec<u8>,
    fds: VecDeque<OwnedFd>,
}

impl FrameReader {
    /// Reads what is available (blocking only if `!nonblocking` and nothing
    /// is). `Ok(0)` is end of file.
    ///
    /// It reads as much as the frame at hand still lacks (at least 4 KiB):
    /// see [`fd::read_lacking`].
    pub(super) fn fill(&mut self, sock: BorrowedFd<'_>, nonblocking: bool) -> io::Result<usize> {
        const MIN_READ: usize = 4 * 1024;
        let whole = self
            .buf
            .get(..HEADER)
            .map(|head| HEADER + header_word(head, 0).saturating_add(header_word(head, 1)));
        let fds = &mut self.fds;
        fd::read_lacking(&mut self.buf, whole, MIN_READ, |room| {
            let mut got = Vec::new();
            let r = fd::recv_with_fds(sock, room, &mut got, nonblocking);
            fds.extend(got);
            r
        })
    }

    pub(super) fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let word = |i: usize| header_word(&self.buf, i);
        let (msg_len, payload_len, nfds) = (word(0), word(1), word(2));
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
        if msg_len.saturating_add(payload_len) > MAX_FRAME || nfds > fd::MAX_FDS {
            return Err(bad("oversized frame"));
        }
        if self.buf.len() < HEADER + msg_len + payload_len {
            return Ok(None);
        }
        if self.fds.len() < nfds {
            return Err(bad("frame announces descriptors that did not arrive"));
        }
        let payload = self.buf[HEADER + msg_len..HEADER + msg_len + payload_len].to_vec();
        let msg = self.buf[HEADER..HEADER + msg_len].to_vec();
        self.buf.drain(..HEADER + msg_len + payload_len);
        let fds = self.fds.drain(..nfds).collect();
        Ok(Some(Frame { msg, payload, fds }))
    }
}

#[derive(Serialize, Deserialize)]
pub(super) enum Request {
    /// Fork a child running `trampoline(main, payload, fds)`.
    Spawn { trampoline: FnAddr, main: FnAddr },
    /// Fork nothing more; exit once every child is reaped and reported.
    Retire,
}

#[derive(Serialize, Deserialize)]
pub(super) enum Reply {
    /// The zygote is ready for requests: its first message. A requester
    /// that runs other threads waits for it (see
    /// [`Zygote::start_forked`](super::Zygote::start_forked)); others read it with the first answer.
    Ready,
    /// The child runs; its pidfd is attached.
    Spawned { id: u64, pid: i32 },
    /// The fork (or the request) failed.
    SpawnFailed { message: String },
    /// Child `id` was reaped.
    Exited { id: u64, status: Reaped },
}

/// How a child ended, as far as its parent can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Reaped {
    /// It exited or was killed: its status.
    Status(ExitStatus),
    /// It is gone but its status is lost: the kernel reaped it (its parent
    /// ignored `SIGCHLD`) or `waitid` failed.
    Unavailable,
}
