//! Length-prefixed frames over TCP, read with a short poll before blocking.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use multiproc_ipc::shmchan::{yield_briefly, SpinPermit};
use multiproc_ipc::{Error, ErrorKind, Result};

use super::FRAME_TIMEOUT;

/// Reads and writes length-prefixed frames, polling briefly before blocking.
pub(super) struct FrameIo {
    pub(super) stream: TcpStream,
    /// Read buffer; bytes `start..end` are unread. Its length only grows, so
    /// reads never re-zero it.
    rbuf: Vec<u8>,
    pub(super) start: usize,
    pub(super) end: usize,
    nonblocking: bool,
    read_timeout: Option<Duration>,
    /// The read timeout between frames (`None`: wait forever).
    pub(super) idle_timeout: Option<Duration>,
    /// When set, reads fail with `TimedOut` from this instant on, however
    /// the bytes trickle in (the handshake's overall bound).
    pub(super) deadline: Option<Instant>,
}

/// Why a frame could not be read.
pub(super) enum ReadError {
    /// The peer closed the connection between frames.
    Eof,
    /// A frame header announced more than the limit.
    TooLarge(usize),
    /// The connection ended inside a frame, or another I/O error.
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Eof => f.write_str("connection closed"),
            ReadError::TooLarge(n) => write!(f, "oversized frame of {n} bytes"),
            ReadError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl FrameIo {
    pub(super) fn new(stream: TcpStream) -> io::Result<FrameIo> {
        stream.set_nodelay(true)?;
        Ok(FrameIo {
            stream,
            rbuf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
            nonblocking: false,
            read_timeout: None,
            idle_timeout: None,
            deadline: None,
        })
    }

    fn set_nonblocking(&mut self, on: bool) -> io::Result<()> {
        if self.nonblocking != on {
            self.stream.set_nonblocking(on)?;
            self.nonblocking = on;
        }
        Ok(())
    }

    /// Writes one frame.
    pub(super) fn write_frame(&mut self, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let len = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        out.clear();
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(payload);
        let mut done = 0;
        while done < out.len() {
            match self.stream.write(&out[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The socket buffer is full: wait for room.
                    self.set_nonblocking(false)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads more bytes, polling for `spin` before blocking.
    fn fill(&mut self, spin: Duration, partial: bool) -> io::Result<usize> {
        // The rest of a started frame must come within FRAME_TIMEOUT; between
        // frames a connection may stay idle for as long as it likes.
        let mut timeout = if partial {
            Some(FRAME_TIMEOUT)
        } else {
            self.idle_timeout
        };
        if let Some(dl) = self.deadline {
            let left = dl.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
            }
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        if self.read_timeout != timeout {
            self.stream.set_read_timeout(timeout)?;
            self.read_timeout = timeout;
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.rbuf.len() - self.end < 4096 {
            self.rbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.rbuf.len() - self.end < 4096 {
            let grown = (self.rbuf.len() * 2).max(16 * 1024);
            self.rbuf.resize(grown, 0);
        }
        let old = self.end;
        let mut began: Option<Instant> = None;
        let mut permit: Option<SpinPermit> = None;
        let mut busy = false;
        let r = loop {
            match self.stream.read(&mut self.rbuf[old..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.nonblocking => {
                    // A read timeout expired.
                    break Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if began.is_none() {
                        permit = SpinPermit::acquire();
                    }
                    let t = *began.get_or_insert_with(Instant::now);
                    if permit.is_none() || t.elapsed() >= spin || busy {
                        permit = None;
                        if let Err(e) = self.set_nonblocking(false) {
                            break Err(e);
                        }
                    } else {
                        // Poll between yields: on loopback the peer (and the
                        // server's other threads) may need this very CPU.
                        busy = !yield_briefly();
                    }
                }
                other => break other,
            }
        };
        self.end += *r.as_ref().unwrap_or(&0);
        r
    }

    /// Reads one frame into `out`, accepting at most `max` bytes of payload.
    /// Leaves the socket non-blocking (for peeking at the peer's liveness).
    pub(super) fn read_frame(
        &mut self,
        out: &mut Vec<u8>,
        max: usize,
        spin: Duration,
    ) -> Result<(), ReadError> {
        self.set_nonblocking(!spin.is_zero())
            .map_err(ReadError::Io)?;
        let r = self.read_frame_inner(out, max, spin);
        self.set_nonblocking(true).map_err(ReadError::Io)?;
        r
    }

    fn read_frame_inner(
        &mut self,
        out: &mut Vec<u8>,
        max: usize,
        spin: Duration,
    ) -> Result<(), ReadError> {
        loop {
            let avail = &self.rbuf[self.start..self.end];
            if avail.len() >= 4 {
                let mut w = [0u8; 4];
                w.copy_from_slice(&avail[..4]);
                let len = u32::from_le_bytes(w) as usize;
                if len > max {
                    return Err(ReadError::TooLarge(len));
                }
                if avail.len() >= 4 + len {
                    out.clear();
                    out.extend_from_slice(&avail[4..4 + len]);
                    self.start += 4 + len;
                    return Ok(());
                }
            }
            let had = self.end - self.start;
            match self.fill(spin, had > 0) {
                Ok(0) if had == 0 => return Err(ReadError::Eof),
                Ok(0) => {
                    return Err(ReadError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a frame",
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// True if the peer has closed the connection (the socket must be
    /// non-blocking).
    pub(super) fn peer_gone(stream: &TcpStream) -> bool {
        let mut b = [0u8; 1];
        match stream.peek(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => {
                e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::Interrupted
            }
        }
    }
}

pub(super) fn read_error_to_error(e: ReadError, what: &str) -> Error {
    match e {
        ReadError::Eof => Error::new(ErrorKind::Closed, format!("{what} closed the connection")),
        ReadError::TooLarge(n) => Error::new(
            ErrorKind::Io,
            format!("{what} sent a frame of {n} bytes, over the limit"),
        ),
        ReadError::Io(e) => Error::from(e),
    }
}
