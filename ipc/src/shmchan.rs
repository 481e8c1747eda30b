//! A request/response channel between two processes through shared memory.
//!
//! A blocking round trip over a socket or a pipe costs two cross-CPU wake-ups
//! (about 50 µs on our machines); a hand-off through shared memory, with the
//! other side spinning briefly before it sleeps on a futex, costs well under a
//! microsecond. [`ShmChannel`] is that hand-off for strictly alternating
//! conversations (a client sends a request, the server answers), as used by
//! the manager's local proxies.
//!
//! # Protocol
//!
//! One shared mapping holds a small header and a data buffer. Two sequence words
//! carry the turns: the client bumps `to_server` when the buffer holds a
//! message (or a chunk) for the server, the server bumps `to_client`. A
//! message larger than the buffer goes in chunks, each acknowledged by an
//! empty turn the other way. Each side spins on the word it receives on for a
//! short budget, then announces that it is parked and sleeps on the word
//! (shared futex); the sender wakes it only if it announced itself.
//!
//! Either side marks the channel closed when its handle is dropped in the
//! process that opened it; a side whose peer died without closing notices
//! through the `peer_gone` probe it passes to [`ShmChannel::recv`], called
//! whenever it has waited for a while.
//!
//! # No names
//!
//! The channel lives in an unnamed memory file (`memfd_create`): the server
//! sends its descriptor to the client (`SCM_RIGHTS`, over the socket the
//! client connected with), and the client maps it. Nothing is ever named in
//! `/dev/shm`, so nothing can leak there, whoever crashes when.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::sys::futex;
use crate::sys::shm::Mapping;

const MAGIC: u32 = 0x6d70_6368; // "mpch"
const VERSION: u32 = 1;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_CAPACITY: usize = 8;
const OFF_TO_SERVER: usize = 64;
const OFF_TO_CLIENT: usize = 128;
const OFF_SERVER_PARKED: usize = 192;
const OFF_CLIENT_PARKED: usize = 196;
const OFF_CLOSED: usize = 200;
const OFF_LEN: usize = 208;
const OFF_MORE: usize = 216;
const HEADER: usize = 256;

const CLIENT_CLOSED: u32 = 1;
const SERVER_CLOSED: u32 = 2;

/// How long a waiter spins without yielding its CPU; the rest of its budget
/// it polls between `sched_yield`s.
const PURE_SPIN: Duration = Duration::from_micros(5);

/// How long a parked side sleeps before it probes its peer again.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// Which end of a [`ShmChannel`] a handle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The end that created the channel and answers requests.
    Server,
    /// The end that mapped it from the server's descriptor and sends
    /// requests.
    Client,
}

/// One end of a shared-memory request/response channel; see the
/// [module documentation](self).
pub struct ShmChannel {
    map: Mapping,
    /// The memory file's descriptor (the server's, to send to its client).
    fd: Option<OwnedFd>,
    side: Side,
    opener: u32,
    last_in: u32,
}

impl fmt::Debug for ShmChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmChannel")
            .field("side", &self.side)
            .field("capacity", &self.capacity())
            .finish()
    }
}

fn io_err(context: &str, e: std::io::Error) -> Error {
    Error::io(context.to_owned(), e)
}

/// Marks one thread of this process as spinning while it lives.
///
/// Spinning pays only while the spinner has a CPU of its own: with more
/// spinners than CPUs they steal time from the very peers they wait for.
/// [`SpinPermit::acquire`] grants a permit only while fewer threads of this
/// process than there are CPUs hold one; without a permit, wait by sleeping.
#[derive(Debug)]
pub struct SpinPermit {
    /// The holder is one of the program's spinners while it polls.
    _counted: crate::spin::Spinning,
}

static SPINNERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

use crate::spin::cpus;

impl SpinPermit {
    /// A permit to spin, if fewer threads of this process than CPUs spin now.
    pub fn acquire() -> Option<SpinPermit> {
        let n = SPINNERS.fetch_add(1, Ordering::AcqRel);
        if n < cpus() {
            Some(SpinPermit {
                _counted: crate::spin::Spinning::start(),
            })
        } else {
            SPINNERS.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }
}

impl Drop for SpinPermit {
    fn drop(&mut self) {
        SPINNERS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Yields the CPU once (past a pure spin, a poller lets a runnable thread on
/// its CPU, often the very peer it waits for, go first). Returns false if the
/// yield took long: the CPU is busy with other work, and a poller should
/// sleep instead of coming back for more.
pub fn yield_briefly() -> bool {
    crate::spin::yield_probe()
}

/// The spin budget to use before sleeping: `wanted`, or zero on a machine
/// with a single CPU (where spinning only delays the peer) or while the
/// machine is busy (see [`crate::spin`]).
pub fn spin_budget(wanted: Duration) -> Duration {
    crate::spin::budget(wanted)
}

impl ShmChannel {
    /// Creates a channel whose buffer holds `capacity` bytes, in an unnamed
    /// memory file; this handle is the [`Side::Server`]. The client maps it
    /// from the file's descriptor ([`fd`](ShmChannel::fd), sent to it with
    /// `SCM_RIGHTS`): nothing is ever named in `/dev/shm`, and nothing is
    /// left behind when both ends are gone, however they go.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a zero capacity; `Io` if the memory file cannot
    /// be made.
    pub fn create(capacity: usize) -> Result<ShmChannel> {
        if capacity == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "channel capacity must be at least 1 byte",
            ));
        }
        let (map, fd) = Mapping::memfd(HEADER + capacity)
            .map_err(|e| io_err("cannot create a shared memory channel", e))?;
        let chan = ShmChannel {
            map,
            fd: Some(fd),
            side: Side::Server,
            opener: std::process::id(),
            last_in: 0,
        };
        chan.word(OFF_CAPACITY)
            .store(capacity as u32, Ordering::Relaxed);
        chan.word(OFF_VERSION).store(VERSION, Ordering::Relaxed);
        chan.word(OFF_MAGIC).store(MAGIC, Ordering::Release);
        Ok(chan)
    }

    /// The descriptor of the channel's memory file, for the server to send
    /// to its client; `None` on the client side.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// Maps the channel whose memory file descriptor is `fd` (sent by the
    /// server); this handle is the [`Side::Client`].
    ///
    /// The client's count of turns starts at the channel's creation, not at
    /// the attach: a message the server sent before the client mapped the
    /// channel (its answer to a request that reached it another way, as
    /// the manager's first request does) is the first one received.
    ///
    /// # Errors
    ///
    /// `Io` if `fd` cannot be mapped; `InvalidArgument` if it is not a
    /// channel.
    pub fn attach(fd: OwnedFd) -> Result<ShmChannel> {
        let map = Mapping::from_fd(&fd)
            .map_err(|e| io_err("cannot attach to a shared memory channel", e))?;
        let chan = ShmChannel {
            map,
            fd: None,
            side: Side::Client,
            opener: std::process::id(),
            last_in: 0,
        };
        let ok = chan.map.len() > HEADER
            && chan.word(OFF_MAGIC).load(Ordering::Acquire) == MAGIC
            && chan.word(OFF_VERSION).load(Ordering::Relaxed) == VERSION
            && chan.word(OFF_CAPACITY).load(Ordering::Relaxed) as usize == chan.map.len() - HEADER;
        if !ok {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the descriptor is not a shared memory channel",
            ));
        }
        Ok(chan)
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        match self.map.view::<AtomicU32>(offset) {
            Some(w) => w,
            // The header layout is fixed and the mapping is at least HEADER
            // bytes (checked at creation and attach).
            None => unreachable_layout(),
        }
    }

    fn len_word(&self) -> &AtomicU64 {
        match self.map.view::<AtomicU64>(OFF_LEN) {
            Some(w) => w,
            None => unreachable_layout(),
        }
    }

    fn in_word(&self) -> &AtomicU32 {
        match self.side {
            Side::Server => self.word(OFF_TO_SERVER),
            Side::Client => self.word(OFF_TO_CLIENT),
        }
    }

    fn out_word(&self) -> &AtomicU32 {
        match self.side {
            Side::Server => self.word(OFF_TO_CLIENT),
            Side::Client => self.word(OFF_TO_SERVER),
        }
    }

    fn my_parked(&self) -> &AtomicU32 {
        match self.side {
            Side::Server => self.word(OFF_SERVER_PARKED),
            Side::Client => self.word(OFF_CLIENT_PARKED),
        }
    }

    fn peer_parked(&self) -> &AtomicU32 {
        match self.side {
            Side::Server => self.word(OFF_CLIENT_PARKED),
            Side::Client => self.word(OFF_SERVER_PARKED),
        }
    }

    fn peer_closed_bit(&self) -> u32 {
        match self.side {
            Side::Server => CLIENT_CLOSED,
            Side::Client => SERVER_CLOSED,
        }
    }

    /// Which end this handle is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The size of the data buffer: larger messages travel in chunks.
    pub fn capacity(&self) -> usize {
        self.map.len() - HEADER
    }

    /// True once the peer has closed its end.
    pub fn peer_closed(&self) -> bool {
        self.word(OFF_CLOSED).load(Ordering::Acquire) & self.peer_closed_bit() != 0
    }

    fn closed_error(&self) -> Error {
        let who = match self.side {
            Side::Server => "the client",
            Side::Client => "the server",
        };
        Error::new(ErrorKind::Closed, format!("{who} closed the channel"))
    }

    fn publish(&self) {
        self.out_word().fetch_add(1, Ordering::SeqCst);
        if self.peer_parked().load(Ordering::SeqCst) != 0 {
            futex::wake_all(self.out_word());
        }
    }

    /// After the peer closed: the turn it handed over before closing, if any
    /// (the peer publishes before it closes, so this load sees it).
    fn last_turn(&mut self, last: u32) -> Result<()> {
        let cur = self.in_word().load(Ordering::SeqCst);
        if cur != last {
            self.last_in = cur;
            Ok(())
        } else {
            Err(self.closed_error())
        }
    }

    /// Waits until the peer hands us the buffer.
    fn wait_turn(&mut self, spin: Duration, peer_gone: &dyn Fn() -> bool) -> Result<()> {
        let last = self.last_in;
        let is_new = |c: &ShmChannel| c.in_word().load(Ordering::Acquire) != last;
        if is_new(self) {
            self.last_in = self.in_word().load(Ordering::Acquire);
            return Ok(());
        }
        let permit = if spin.is_zero() {
            None
        } else {
            SpinPermit::acquire()
        };
        if permit.is_some() {
            let start = Instant::now();
            let mut i = 0u32;
            let mut yielding = false;
            loop {
                if yielding && !yield_briefly() {
                    // Other work wants this CPU: polling no longer pays.
                    break;
                }
                for _ in 0..64 {
                    std::hint::spin_loop();
                    if is_new(self) {
                        self.last_in = self.in_word().load(Ordering::Acquire);
                        return Ok(());
                    }
                }
                i += 1;
                if i % 4 == 0 && self.peer_closed() {
                    // A message published before the close is still ours.
                    return self.last_turn(last);
                }
                let elapsed = start.elapsed();
                if elapsed >= spin {
                    break;
                }
                yielding = elapsed >= PURE_SPIN;
            }
        }
        drop(permit);
        loop {
            if self.peer_closed() {
                return self.last_turn(last);
            }
            self.my_parked().store(1, Ordering::SeqCst);
            let cur = self.in_word().load(Ordering::SeqCst);
            if cur != last {
                self.my_parked().store(0, Ordering::Relaxed);
                self.last_in = cur;
                return Ok(());
            }
            let woke = futex::wait(self.in_word(), last, Some(PROBE_INTERVAL));
            self.my_parked().store(0, Ordering::Relaxed);
            let cur = self.in_word().load(Ordering::Acquire);
            if cur != last {
                self.last_in = cur;
                return Ok(());
            }
            if woke == futex::Wake::TimedOut && peer_gone() {
                return Err(Error::new(
                    ErrorKind::Closed,
                    "the other end of the channel is gone",
                ));
            }
        }
    }

    /// Sends one message (in chunks if it exceeds the capacity, each waiting
    /// for the peer's acknowledgement).
    ///
    /// # Errors
    ///
    /// `Closed` if the peer closed its end or `peer_gone` reports it gone
    /// while a chunk waits for its acknowledgement.
    pub fn send(&mut self, msg: &[u8], peer_gone: &dyn Fn() -> bool) -> Result<()> {
        if self.peer_closed() {
            return Err(self.closed_error());
        }
        let cap = self.capacity();
        let mut rest = msg;
        loop {
            let n = rest.len().min(cap);
            let more = n < rest.len();
            if !self.map.write_at(HEADER, &rest[..n]) {
                return Err(Error::new(ErrorKind::Io, "channel buffer out of range"));
            }
            self.len_word().store(n as u64, Ordering::Relaxed);
            self.word(OFF_MORE)
                .store(u32::from(more), Ordering::Relaxed);
            self.publish();
            rest = &rest[n..];
            if !more {
                return Ok(());
            }
            // Chunks are large: the acknowledgement is worth a short spin only.
            self.wait_turn(spin_budget(Duration::from_micros(20)), peer_gone)?;
        }
    }

    /// Receives one message into `buf` (cleared first), spinning up to
    /// `spin` before sleeping.
    ///
    /// # Errors
    ///
    /// `Closed` if the peer closed its end, or if `peer_gone` (called about
    /// every 50 ms while parked) returns true; `Io` if the peer wrote an
    /// impossible chunk length.
    pub fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        spin: Duration,
        peer_gone: &dyn Fn() -> bool,
    ) -> Result<()> {
        buf.clear();
        loop {
            self.wait_turn(spin, peer_gone)?;
            let n = self.len_word().load(Ordering::Relaxed);
            let more = self.word(OFF_MORE).load(Ordering::Relaxed) != 0;
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= self.capacity())
                .ok_or_else(|| Error::new(ErrorKind::Io, "corrupt chunk length in channel"))?;
            let start = buf.len();
            buf.resize(start + n, 0);
            if !self.map.read_at(HEADER, &mut buf[start..]) {
                return Err(Error::new(ErrorKind::Io, "channel buffer out of range"));
            }
            if !more {
                return Ok(());
            }
            // Acknowledge the chunk: the buffer is the sender's again.
            self.publish();
        }
    }

    /// Marks this end closed and wakes the peer. Done by `Drop` in the
    /// process that opened the handle (never in a forked child).
    pub fn close(&self) {
        let bit = match self.side {
            Side::Server => SERVER_CLOSED,
            Side::Client => CLIENT_CLOSED,
        };
        self.word(OFF_CLOSED).fetch_or(bit, Ordering::SeqCst);
        futex::wake_all(self.word(OFF_TO_SERVER));
        futex::wake_all(self.word(OFF_TO_CLIENT));
    }
}

impl Drop for ShmChannel {
    fn drop(&mut self) {
        if self.opener == std::process::id() {
            self.close();
        }
    }
}

#[cold]
fn unreachable_layout() -> ! {
    // Offsets are constants below HEADER and every mapping is checked to be
    // larger than HEADER before a handle exists.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the server sends its client: a copy of the channel's descriptor.
    pub(super) fn client_fd(server: &ShmChannel) -> OwnedFd {
        server.fd().unwrap().try_clone_to_owned().unwrap()
    }

    #[test]
    fn round_trips_small_and_chunked() {
        let mut s = ShmChannel::create(64).unwrap();
        let mut c = ShmChannel::attach(client_fd(&s)).unwrap();
        assert_eq!((s.side(), c.side()), (Side::Server, Side::Client));
        let t = std::thread::spawn(move || {
            let mut buf = Vec::new();
            for _ in 0..200 {
                s.recv(&mut buf, Duration::from_micros(5), &|| false)
                    .unwrap();
                let mut out = buf.clone();
                out.extend_from_slice(b"!");
                s.send(&out, &|| false).unwrap();
            }
        });
        let mut reply = Vec::new();
        for i in 0..200usize {
            let msg: Vec<u8> = (0..i * 3).map(|x| x as u8).collect();
            c.send(&msg, &|| false).unwrap();
            c.recv(&mut reply, Duration::ZERO, &|| false).unwrap();
            assert_eq!(&reply[..msg.len()], &msg[..]);
            assert_eq!(reply.len(), msg.len() + 1);
        }
        t.join().unwrap();
    }

    #[test]
    fn a_message_sent_before_the_attach_is_received() {
        let mut s = ShmChannel::create(64).unwrap();
        s.send(b"early", &|| false).unwrap();
        let mut c = ShmChannel::attach(client_fd(&s)).unwrap();
        let mut buf = Vec::new();
        // A client that missed it would wait: it gives up after a second.
        let t = Instant::now();
        let waited_too_long = || t.elapsed() > Duration::from_secs(1);
        c.recv(&mut buf, Duration::ZERO, &waited_too_long)
            .expect("the message sent before the attach");
        assert_eq!(buf, b"early");
        // And the conversation goes on in step.
        c.send(b"next", &|| false).unwrap();
        s.recv(&mut buf, Duration::ZERO, &|| false).unwrap();
        assert_eq!(buf, b"next");
        s.send(b"reply", &|| false).unwrap();
        c.recv(&mut buf, Duration::ZERO, &|| false).unwrap();
        assert_eq!(buf, b"reply");
    }

    #[test]
    fn close_and_dead_peer_end_a_wait() {
        let s = ShmChannel::create(64).unwrap();
        let mut c = ShmChannel::attach(client_fd(&s)).unwrap();
        drop(s);
        let mut buf = Vec::new();
        let e = c.recv(&mut buf, Duration::ZERO, &|| false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed);

        let mut s = ShmChannel::create(64).unwrap();
        let c = ShmChannel::attach(client_fd(&s)).unwrap();
        std::mem::forget(c); // a peer that vanishes without closing
        let t = Instant::now();
        let e = s.recv(&mut buf, Duration::ZERO, &|| true).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed);
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_message_sent_just_before_close_is_delivered() {
        for _ in 0..200 {
            let mut s = ShmChannel::create(64).unwrap();
            let mut c = ShmChannel::attach(client_fd(&s)).unwrap();
            let t = std::thread::spawn(move || {
                s.send(b"last words", &|| false).unwrap();
                drop(s);
            });
            let mut buf = Vec::new();
            c.recv(&mut buf, Duration::from_micros(50), &|| false)
                .unwrap();
            assert_eq!(buf, b"last words");
            t.join().unwrap();
            let e = c.recv(&mut buf, Duration::ZERO, &|| false).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Closed);
        }
    }

    #[test]
    fn attach_rejects_non_channels() {
        let (pipe_r, _pipe_w) = crate::sys::fd::pipe().unwrap();
        assert!(ShmChannel::attach(pipe_r).is_err());
        let region = crate::shm::ShmRegion::memfd(4096).unwrap();
        let e = ShmChannel::attach(region.fd().unwrap().try_clone_to_owned().unwrap());
        assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            ShmChannel::create(0).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        let c = ShmChannel::attach(client_fd(&ShmChannel::create(64).unwrap())).unwrap();
        assert!(c.fd().is_none() && c.side() == Side::Client);
    }
}

#[cfg(test)]
mod latency {
    use super::tests::client_fd;
    use super::*;

    #[test]
    #[ignore = "timing probe, run by hand"]
    fn probe_round_trip() {
        let mut s = ShmChannel::create(1024).unwrap();
        let mut c = ShmChannel::attach(client_fd(&s)).unwrap();
        let n = 100_000;
        let t = std::thread::spawn(move || {
            let mut buf = Vec::new();
            for _ in 0..n {
                s.recv(&mut buf, Duration::from_micros(50), &|| false)
                    .unwrap();
                s.send(&buf, &|| false).unwrap();
            }
        });
        let start = Instant::now();
        let mut reply = Vec::new();
        for _ in 0..n {
            c.send(b"0123456789", &|| false).unwrap();
            c.recv(&mut reply, Duration::from_micros(30), &|| false)
                .unwrap();
        }
        eprintln!("round trip {:?}", start.elapsed() / n);
        t.join().unwrap();
    }
}
