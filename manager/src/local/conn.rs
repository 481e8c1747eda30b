//! A client's connection to a local manager (the protocol is in the module
//! docs of `local`).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use multiproc_ipc::codec::Codec;
use multiproc_ipc::fd;
use multiproc_ipc::shmchan::{spin_budget, ShmChannel};
use multiproc_ipc::{Error, ErrorKind, Result};

use super::wire::{
    abstract_addr, peek, peer_gone, push_frame, read_body, read_len, Peek, CHANNEL_TAG,
    CLIENT_SPIN, FIRST_REQUEST_MAX, HANDSHAKE_TIMEOUT, SOCKET_REQUESTS, TOKEN, WAITING,
};
use crate::client::Conn;
use crate::protocol::{Request, Response};

/// A client's connection to a local manager.
pub(crate) struct LocalConn {
    pub(super) chan: Channel,
    sock: UnixStream,
    buf: Vec<u8>,
    /// The frames of a request sent on the socket.
    out: Vec<u8>,
    codec: Codec,
    /// A request failed after it started out: the connection is out of
    /// step.
    broken: bool,
    /// The manager process's pid, for error messages.
    pid: i32,
    /// The manager's address.
    addr: String,
}

/// Where a connection's requests go.
#[derive(Debug)]
pub(super) enum Channel {
    /// Connected; the token goes with the first request.
    Pending([u8; TOKEN]),
    /// On the socket; this many requests were answered there.
    Socket(u32),
    /// On a shared-memory channel.
    Ready(ShmChannel),
}

/// The error for a manager process that has gone away.
fn manager_gone(pid: i32) -> Error {
    Error::new(ErrorKind::Closed, gone_message(pid))
}

fn gone_message(pid: i32) -> String {
    format!("the manager (pid {pid}) is gone")
}

/// A failed request: a closed channel means the manager is gone; anything
/// else is said to come from the manager (the channel's own error stays the
/// source).
fn request_failed(pid: i32, e: Error) -> Error {
    if e.kind() == ErrorKind::Closed {
        Error::with_source(ErrorKind::Closed, gone_message(pid), e)
    } else {
        Error::with_source(
            e.kind(),
            format!(
                "a request to the manager (pid {pid}) failed: {}",
                e.message()
            ),
            e,
        )
    }
}

impl LocalConn {
    /// Connects; the token goes with the first request.
    pub(crate) fn connect(addr: &str, token: &[u8; TOKEN], pid: i32) -> Result<LocalConn> {
        let sock = UnixStream::connect_addr(&abstract_addr(addr)?).map_err(|e| {
            if e.kind() == io::ErrorKind::ConnectionRefused {
                manager_gone(pid)
            } else {
                Error::io(format!("cannot connect to the manager (pid {pid})"), e)
            }
        })?;
        // Bounds the wait for the manager's first word (see `Patient`).
        sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        Ok(LocalConn {
            chan: Channel::Pending(*token),
            sock,
            buf: Vec::with_capacity(256),
            out: Vec::with_capacity(256),
            codec: Codec::default(),
            broken: false,
            pid,
            addr: addr.to_owned(),
        })
    }

    /// The error for an answer on the socket that failed; `heard`: whether
    /// the manager had said anything on the connection before.
    fn answer_failed(&self, heard: bool, e: io::Error) -> Error {
        let pid = self.pid;
        match e.kind() {
            // Closed before a word: the token was refused (a reset: the
            // request was left unread), unless the manager is gone (it died
            // with the connection still waiting to be accepted).
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                if !heard && listening(&self.addr) =>
            {
                Error::new(
                    ErrorKind::Authentication,
                    format!("the manager (pid {pid}) refused the connection"),
                )
            }
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe => manager_gone(pid),
            io::ErrorKind::InvalidData => Error::with_source(
                ErrorKind::Remote,
                format!("malformed answer from the manager (pid {pid})"),
                e,
            ),
            _ => Error::io(
                format!("no answer from the manager (pid {pid}) on the connection"),
                e,
            ),
        }
    }

    /// Makes the request in `self.buf` on the socket (after the token, for
    /// a connection's first) and reads its response into `self.buf`; or,
    /// for a request too large for the socket or once `answered` requests
    /// reach [`SOCKET_REQUESTS`], asks for the channel and makes the
    /// request on it. The answer is polled for, yielding the CPU between
    /// looks, while spinning pays ([`multiproc_ipc::spin::poll_yielding`]):
    /// the woken connection thread often runs on this very CPU, and a
    /// client asleep would add a wake-up of its own.
    fn on_socket(&mut self, token: Option<[u8; TOKEN]>, answered: u32) -> Result<()> {
        let pid = self.pid;
        let first = token.is_some();
        let upgrade = self.buf.len() > FIRST_REQUEST_MAX || answered >= SOCKET_REQUESTS;
        self.out.clear();
        if let Some(t) = token {
            push_frame(&mut self.out, &t);
        }
        push_frame(&mut self.out, if upgrade { &[] } else { &self.buf });
        (&self.sock)
            .write_all(&self.out)
            .map_err(|_| manager_gone(pid))?;
        multiproc_ipc::spin::poll_yielding(CLIENT_SPIN, || {
            !matches!(peek(&self.sock), Peek::Empty)
        });
        if upgrade {
            let mut chan = self.take_channel(!first)?;
            exchange(&mut chan, &self.sock, &mut self.buf, pid, true)?;
            self.chan = Channel::Ready(chan);
        } else {
            let mut heard = !first;
            read_answer(
                &self.sock,
                &mut self.buf,
                self.codec.max_message(),
                &mut heard,
            )
            .map_err(|e| self.answer_failed(heard, e))?;
            self.chan = Channel::Socket(answered + 1);
        }
        Ok(())
    }

    /// Receives the channel the manager made for this connection; `heard`:
    /// whether the manager had said anything on it before.
    fn take_channel(&self, heard: bool) -> Result<ShmChannel> {
        let pid = self.pid;
        let (tag, mut fds) =
            fd::recv_handles(self.sock.as_fd(), false).map_err(|e| self.answer_failed(heard, e))?;
        let chan_fd: OwnedFd = match (tag, fds.pop()) {
            (CHANNEL_TAG, Some(chan_fd)) if fds.is_empty() => chan_fd,
            _ => {
                return Err(Error::new(
                    ErrorKind::Remote,
                    format!("bad channel from the manager (pid {pid})"),
                ))
            }
        };
        ShmChannel::attach(chan_fd)
    }
}

/// Whether a manager still listens at `addr` (a connection is accepted;
/// the manager closes it at once, as it has no token).
fn listening(addr: &str) -> bool {
    abstract_addr(addr).is_ok_and(|a| UnixStream::connect_addr(&a).is_ok())
}

/// Reads a response frame into `buf`, past any [`WAITING`] frame.
fn read_answer(
    sock: &UnixStream,
    buf: &mut Vec<u8>,
    max: usize,
    heard: &mut bool,
) -> io::Result<()> {
    let mut r = Patient { sock, heard };
    loop {
        match read_len(&mut r)? {
            WAITING => continue,
            len => return read_body(&mut r, len, max, buf),
        }
    }
}

/// The socket as a client waiting for an answer reads it: until the
/// manager has said anything on the connection (`heard`, set by any byte
/// read), a silence as long as the socket's read timeout is an error; from
/// then on the answer takes as long as the request does (a queue's `get`),
/// and only a closed socket ends the wait.
struct Patient<'a> {
    sock: &'a UnixStream,
    heard: &'a mut bool,
}

impl Read for Patient<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match (&*self.sock).read(out) {
                Ok(n) => {
                    *self.heard |= n > 0;
                    return Ok(n);
                }
                Err(e)
                    if *self.heard
                        && matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// One request's turn on `chan`: sends `buf` (unless `send` is false) and
/// receives the response into it.
fn exchange(
    chan: &mut ShmChannel,
    sock: &UnixStream,
    buf: &mut Vec<u8>,
    pid: i32,
    send: bool,
) -> Result<()> {
    let gone = || peer_gone(sock);
    if send {
        chan.send(buf, &gone).map_err(|e| request_failed(pid, e))?;
    }
    chan.recv(buf, spin_budget(CLIENT_SPIN), &gone)
        .map_err(|e| request_failed(pid, e))
}

impl Conn for LocalConn {
    fn call(&mut self, req: &Request) -> Result<Response> {
        self.buf.clear();
        self.codec.encode_into(req, &mut self.buf)?;
        // Anything that fails from here on leaves the connection out of
        // step.
        self.broken = true;
        let pid = self.pid;
        match &mut self.chan {
            Channel::Ready(chan) => exchange(chan, &self.sock, &mut self.buf, pid, true)?,
            Channel::Pending(token) => {
                let token = *token;
                self.on_socket(Some(token), 0)?;
            }
            Channel::Socket(answered) => {
                let answered = *answered;
                self.on_socket(None, answered)?;
            }
        }
        self.broken = false;
        self.codec.decode(&self.buf).map_err(|e| {
            Error::with_source(
                ErrorKind::Remote,
                format!("malformed response from the manager (pid {pid})"),
                e,
            )
        })
    }

    fn usable(&mut self) -> bool {
        // No system call here: this runs before every request, and a dead
        // local manager is seen by the request itself.
        !self.broken
    }
}
