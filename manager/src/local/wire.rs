//! What both sides of a local manager connection agree on: the bounds, the
//! frames on the socket and how each side looks at the socket.
//!
//! A frame is a little-endian `u32` length, then that many bytes. The
//! client's frames are at most [`FIRST_REQUEST_MAX`] bytes (the token, a
//! request, or an empty frame that asks for the channel); a response frame
//! is bounded by the client's codec, and the length [`WAITING`] is a frame
//! of its own, with no bytes, that says the manager is serving the
//! connection's first request and waits (see the module docs of `local`).

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::time::Duration;

/// Size of each connection's shared-memory buffer; larger messages go in chunks.
pub(super) const CHANNEL_CAPACITY: usize = 64 * 1024;
/// How long the client polls for a response before it sleeps.
pub(super) const CLIENT_SPIN: Duration = Duration::from_micros(30);
/// How long a server thread polls the channel for the next request before
/// it sleeps.
pub(super) const SERVER_SPIN: Duration = Duration::from_micros(50);
/// How long the manager waits for a new connection's token and first
/// request, and a client for the manager's first word on a connection.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request sent on the socket; a larger one goes on the
/// channel.
pub(super) const FIRST_REQUEST_MAX: usize = 16 * 1024;
/// Requests a connection makes on its socket before it asks for a channel:
/// a channel costs both sides more to set up and tear down (a memory file
/// made, passed, mapped and unmapped) than a few round trips on the socket,
/// so a short-lived client (a `Process` that makes one or two requests)
/// never has one; a client that keeps going soon has its requests spun on
/// instead of woken for. Eight is where the two cost the same on the
/// machine this was measured on (a channel about 140 µs to make and tear
/// down, a request about 20 µs on the socket and 4 µs on a channel): a
/// client never pays much more than twice what the better choice for its
/// number of requests would have cost.
pub(super) const SOCKET_REQUESTS: u32 = 8;
pub(super) const TOKEN: usize = 32;
/// The tag of the message that carries the channel's memory file.
pub(super) const CHANNEL_TAG: u64 = 0x6d70_6368_616e_6e6c; // "mpchannl"
/// The length that is no response but says the manager has begun to serve
/// the connection's first request and waits (a queue's `get`, a lock): the
/// client, which bounds its wait for the manager's first word by
/// [`HANDSHAKE_TIMEOUT`], waits as long as it takes from then on.
pub(super) const WAITING: u32 = u32::MAX;

/// Reads one frame of at most `max` bytes into `buf` (replacing what it
/// held).
pub(super) fn read_frame(s: &mut impl Read, max: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    let len = read_len(s)?;
    read_body(s, len, max, buf)
}

/// Reads a frame's length.
pub(super) fn read_len(s: &mut impl Read) -> io::Result<u32> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    Ok(u32::from_le_bytes(len))
}

/// Reads the `len` bytes of a frame of at most `max` bytes into `buf`
/// (replacing what it held).
pub(super) fn read_body(
    s: &mut impl Read,
    len: u32,
    max: usize,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    let len = len as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes, over the bound of {max}"),
        ));
    }
    buf.clear();
    buf.resize(len, 0);
    s.read_exact(buf)
}

/// Appends a frame holding `body` to `out`.
pub(super) fn push_frame(out: &mut Vec<u8>, body: &[u8]) {
    // Callers bound their frames far below 4 GiB.
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
}

/// What a look at a socket without waiting finds.
pub(super) enum Peek {
    /// Bytes wait to be read.
    Data,
    /// Nothing yet.
    Empty,
    /// The peer closed its end, or the socket failed.
    Closed,
}

/// Looks at `s` without waiting and without taking a byte.
pub(super) fn peek(s: &UnixStream) -> Peek {
    use nix::sys::socket::{recv, MsgFlags};
    let mut b = [0u8; 1];
    match recv(
        s.as_raw_fd(),
        &mut b,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(0) => Peek::Closed,
        Ok(_) => Peek::Data,
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => Peek::Empty,
        Err(_) => Peek::Closed,
    }
}

/// True if the peer closed the socket.
pub(super) fn peer_gone(s: &UnixStream) -> bool {
    matches!(peek(s), Peek::Closed)
}

pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) fn abstract_addr(name: &str) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(name.as_bytes())
}
