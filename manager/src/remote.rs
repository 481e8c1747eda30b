//! The remote manager: objects served over TCP to clients that know the
//! authkey (Python's `BaseManager` with `address` and `authkey`).
//!
//! # Wire format
//!
//! Every message is a frame: a little-endian `u32` length, then that many
//! bytes. After the handshake each frame holds one request or response
//! encoded by the [`codec`](multiproc_ipc::codec). A frame longer than the
//! server's limit, a truncated frame or bytes that do not decode close that
//! connection (with a message on stderr); other clients are not affected.
//!
//! # Authentication
//!
//! Both sides prove they know the authkey without sending it, with fresh
//! random 32-byte nonces and HMAC-SHA256:
//!
//! 1. server → client: `"MPMGR1"`, nonce `s`;
//! 2. client → server: nonce `c`, `HMAC(key, "client" ‖ s ‖ c)`;
//! 3. server → client: `"WELCOME"`, `HMAC(key, "server" ‖ c ‖ s)`, or
//!    `"DENIED"` and the connection closes.
//!
//! Proofs are checked in constant time. A recorded client answer is useless
//! on a new connection (the server's nonce differs), and a server that does
//! not know the key is refused by the client. Nothing a client sends is ever
//! run as code: remote clients use objects and callables registered on the
//! server by name.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use multiproc_ipc::codec;
use multiproc_ipc::shmchan::{yield_briefly, SpinPermit};
use multiproc_ipc::{Error, ErrorKind, FnRef, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;

use crate::client::{self, Conn, Endpoint};
use crate::protocol::{Init, Kind, Request, Response};
use crate::proxy::{
    expect_kind, CallableProxy, DictProxy, EventProxy, JoinableQueueProxy, ListProxy, LockProxy,
    NamespaceProxy, ObjRef, QueueProxy, ValueProxy,
};
use crate::queues::{new_heap, HeapMaker};
use crate::store::{CallFn, Peer, Store};

/// The default largest frame a server accepts: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

const HELLO: &[u8] = b"MPMGR1";
const WELCOME: &[u8] = b"WELCOME";
const DENIED: &[u8] = b"DENIED";
const NONCE: usize = 32;
const HANDSHAKE_MAX: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the rest of a frame may take once its first bytes arrived.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// How long each side polls a socket (yielding between polls) before it
/// blocks. A blocking wake-up costs about 25 µs and a queue round trip through
/// the server takes four of them; polling this long catches the answer
/// without the wake-ups (measured: 113 µs per round trip without polling,
/// about 55 µs with it, on two vCPUs).
const SPIN: Duration = Duration::from_micros(300);

type HmacSha256 = Hmac<Sha256>;

fn nonce() -> Result<[u8; NONCE]> {
    let mut n = [0u8; NONCE];
    getrandom::getrandom(&mut n).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot read random bytes for a nonce: {e}"),
        )
    })?;
    Ok(n)
}

fn mac(key: &[u8], label: &[u8], a: &[u8], b: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; new_from_slice never fails for it.
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable_hmac(),
    };
    m.update(label);
    m.update(a);
    m.update(b);
    m
}

#[cold]
fn unreachable_hmac() -> ! {
    // HMAC is defined for keys of every length.
    std::process::abort()
}

/// A random first object id for a new server, below 2^62.
fn first_object_id() -> u64 {
    let mut b = [0u8; 8];
    let r = match getrandom::getrandom(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        // No randomness: the clock still differs between two servers.
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    };
    (r >> 2).max(1)
}

fn auth_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Authentication, message)
}

// ---------------------------------------------------------------------------
// Framing.

/// Reads and writes length-prefixed frames, polling briefly before blocking.
struct FrameIo {
    stream: TcpStream,
    /// Read buffer; bytes `start..end` are unread. Its length only grows, so
    /// reads never re-zero it.
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    nonblocking: bool,
    read_timeout: Option<Duration>,
    /// The read timeout between frames (`None`: wait forever).
    idle_timeout: Option<Duration>,
}

/// Why a frame could not be read.
enum ReadError {
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
    fn new(stream: TcpStream) -> io::Result<FrameIo> {
        stream.set_nodelay(true)?;
        Ok(FrameIo {
            stream,
            rbuf: vec![0; 16 * 1024],
            start: 0,
            end: 0,
            nonblocking: false,
            read_timeout: None,
            idle_timeout: None,
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
    fn write_frame(&mut self, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
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
        let timeout = if partial {
            Some(FRAME_TIMEOUT)
        } else {
            self.idle_timeout
        };
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
    fn read_frame(
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
    fn peer_gone(stream: &TcpStream) -> bool {
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

fn read_error_to_error(e: ReadError, what: &str) -> Error {
    match e {
        ReadError::Eof => Error::new(ErrorKind::Closed, format!("{what} closed the connection")),
        ReadError::TooLarge(n) => Error::new(
            ErrorKind::Io,
            format!("{what} sent a frame of {n} bytes, over the limit"),
        ),
        ReadError::Io(e) => Error::from(e),
    }
}

// ---------------------------------------------------------------------------
// Client.

/// A client's TCP connection to a [`ManagerServer`].
pub(crate) struct TcpConn {
    io: FrameIo,
    buf: Vec<u8>,
    out: Vec<u8>,
    max_frame: usize,
    addr: SocketAddr,
    /// A request failed after it started out: the connection is out of step.
    broken: bool,
}

impl TcpConn {
    pub(crate) fn connect(addr: SocketAddr, authkey: &[u8], max_frame: usize) -> Result<TcpConn> {
        let stream = TcpStream::connect(addr)
            .map_err(|e| Error::io(format!("cannot connect to the manager at {addr}"), e))?;
        let mut io = FrameIo::new(stream)?;
        io.idle_timeout = Some(HANDSHAKE_TIMEOUT);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let fail = |e: ReadError| read_error_to_error(e, &format!("the manager at {addr}"));
        // 1. The server's challenge.
        io.read_frame(&mut buf, HANDSHAKE_MAX, Duration::ZERO)
            .map_err(fail)?;
        if buf.len() != HELLO.len() + NONCE || !buf.starts_with(HELLO) {
            return Err(Error::new(
                ErrorKind::Remote,
                format!("{addr} is not a multiproc manager"),
            ));
        }
        let s = buf[HELLO.len()..].to_vec();
        // 2. Our proof and our challenge.
        let c = nonce()?;
        let proof = mac(authkey, b"client", &s, &c).finalize().into_bytes();
        let mut msg = c.to_vec();
        msg.extend_from_slice(&proof);
        io.write_frame(&msg, &mut out)?;
        // 3. The verdict and the server's proof.
        match io.read_frame(&mut buf, HANDSHAKE_MAX, Duration::ZERO) {
            Ok(()) => {}
            Err(ReadError::Eof) | Err(ReadError::Io(_)) => {
                return Err(auth_error(format!(
                    "the manager at {addr} closed the connection during authentication"
                )))
            }
            Err(e) => return Err(fail(e)),
        }
        if buf == DENIED {
            return Err(auth_error(format!(
                "the manager at {addr} refused the authkey"
            )));
        }
        if !buf.starts_with(WELCOME)
            || mac(authkey, b"server", &c, &s)
                .verify_slice(&buf[WELCOME.len()..])
                .is_err()
        {
            return Err(auth_error(format!(
                "the manager at {addr} could not prove it knows the authkey"
            )));
        }
        io.idle_timeout = None;
        Ok(TcpConn {
            io,
            buf,
            out,
            max_frame,
            addr,
            broken: false,
        })
    }

    /// The error for a request that failed after it started out: it is not
    /// sent again, since the manager may have run it.
    fn in_flight(&mut self, kind: ErrorKind, cause: &dyn fmt::Display) -> Error {
        self.broken = true;
        Error::new(
            kind,
            format!(
                "the connection to the manager at {} was lost while a request was in \
                 flight ({cause}); the request was not retried, as the manager may have \
                 run it (the next call opens a new connection)",
                self.addr
            ),
        )
    }
}

/// The error kind of a connection that failed with `e`.
fn lost_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => ErrorKind::Closed,
        _ => ErrorKind::Io,
    }
}

impl Conn for TcpConn {
    fn call(&mut self, req: &Request) -> Result<Response> {
        let c = client::codec(self.max_frame);
        self.buf.clear();
        c.encode_into(req, &mut self.buf)?;
        let payload = std::mem::take(&mut self.buf);
        let w = self.io.write_frame(&payload, &mut self.out);
        self.buf = payload;
        if let Err(e) = w {
            return Err(self.in_flight(lost_kind(&e), &e));
        }
        match self
            .io
            .read_frame(&mut self.buf, self.max_frame, shm_spin())
        {
            Ok(()) => {}
            Err(ReadError::Eof) => {
                return Err(self.in_flight(ErrorKind::Closed, &"the manager closed it"))
            }
            Err(ReadError::TooLarge(n)) => {
                let why = format!("a response of {n} bytes is over this client's limit");
                return Err(self.in_flight(ErrorKind::Io, &why));
            }
            Err(ReadError::Io(e)) => return Err(self.in_flight(lost_kind(&e), &e)),
        }
        c.decode(&self.buf).map_err(|e| {
            Error::with_source(
                ErrorKind::Remote,
                format!("malformed response from the manager at {}", self.addr),
                e,
            )
        })
    }

    fn usable(&mut self) -> bool {
        // Between requests the manager sends nothing: end of stream, an
        // error or stray bytes all mean the connection cannot be used.
        !self.broken && self.io.start == self.io.end && !peer_closed(&self.io.stream)
    }
}

/// True unless `stream` is open with nothing to read (never blocks).
fn peer_closed(stream: &TcpStream) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 1];
    match recv(
        stream.as_raw_fd(),
        &mut b,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Err(nix::errno::Errno::EAGAIN) => false,
        Err(nix::errno::Errno::EINTR) => peer_closed(stream),
        Ok(_) | Err(_) => true,
    }
}

fn shm_spin() -> Duration {
    multiproc_ipc::shmchan::spin_budget(SPIN)
}

/// A connection to a remote manager, Python's `BaseManager(address,
/// authkey).connect()`: it hands out proxies for the objects the server
/// registered by name.
///
/// Each thread (and each process) that uses the proxies opens its own TCP
/// connection, authenticated the same way.
///
/// # Lost connections and restarted servers
///
/// * A connection lost between two requests (the server shut down, was
///   restarted, or the network dropped it) is replaced on the next call of
///   any proxy that uses it: no request of it was in flight, so nothing can
///   run twice.
/// * A request in flight when its connection is lost fails with a
///   [`Closed`](ErrorKind::Closed) error naming the server's address, and is
///   not retried, since the server may have run it; the call after it opens a
///   new connection.
/// * Locks taken through a lost connection were released by the server (it
///   releases a disconnected client's locks). The next call of that thread
///   fails with a `Closed` error saying so, rather than run unprotected, and
///   dropping the stale [`ProxyGuard`](crate::ProxyGuard) sends nothing.
/// * A restarted server does not know the objects of the one before it
///   (object ids differ between servers): a proxy of the old server fails
///   with [`InvalidArgument`](ErrorKind::InvalidArgument); look the object up
///   again by name.
///
/// # Examples
///
/// ```
/// use multiproc_manager::{ManagerServer, RemoteManager};
///
/// let server = ManagerServer::builder(b"secret")
///     .queue("jobs")
///     .callable("square", |x: u64| x * x)
///     .bind("127.0.0.1:0")?;
/// let remote = RemoteManager::connect(server.local_addr(), b"secret")?;
/// let jobs = remote.queue::<u64>("jobs")?;
/// jobs.put(&7)?;
/// assert_eq!(jobs.get()?, 7);
/// assert_eq!(remote.callable::<u64, u64>("square")?.call(&9)?, 81);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
#[derive(Clone)]
pub struct RemoteManager {
    ep: Endpoint,
}

impl fmt::Debug for RemoteManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteManager({:?})", self.ep)
    }
}

impl RemoteManager {
    /// Connects to the server at `addr` and authenticates with `authkey`.
    ///
    /// It returns once this thread's connection to the server has answered a
    /// request: a connection this thread kept from an earlier `connect` to
    /// the same address, whose server has gone since (perhaps replaced by a
    /// new server on the same address), is replaced by a new one.
    ///
    /// On success the authkey is recorded in this process, so that proxies
    /// from this manager can be passed to processes forked afterwards (a
    /// `Process`, a pool created later): their serialized form names the key
    /// only by a non-secret id. A process that has no record of the key (one
    /// forked before this call, or an unrelated one) must call `connect`
    /// with the authkey itself before it can decode such a proxy.
    ///
    /// # Examples
    ///
    /// A server restarted on the same address:
    ///
    /// ```
    /// use multiproc_manager::{ManagerServer, RemoteManager};
    ///
    /// let server = ManagerServer::builder(b"key").dict("d").bind("127.0.0.1:0")?;
    /// let addr = server.local_addr();
    /// let remote = RemoteManager::connect(addr, b"key")?;
    /// remote.dict::<u8, u8>("d")?.insert(&1, &1)?;
    /// drop(server); // shuts it down
    ///
    /// let _server = ManagerServer::builder(b"key").dict("d").bind(addr)?;
    /// let remote = RemoteManager::connect(addr, b"key")?;
    /// assert_eq!(remote.dict::<u8, u8>("d")?.get(&1)?, None); // a new dict
    /// # Ok::<(), multiproc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Authentication` if the key is wrong (or the server cannot prove it
    /// knows it); `Io` if the address cannot be resolved or reached;
    /// `Closed` if the server closed the connection.
    pub fn connect<A: ToSocketAddrs>(addr: A, authkey: &[u8]) -> Result<RemoteManager> {
        RemoteManager::connect_with_max_frame(addr, authkey, DEFAULT_MAX_FRAME)
    }

    /// As [`connect`](RemoteManager::connect), accepting responses of at most
    /// `max_frame` bytes.
    ///
    /// # Errors
    ///
    /// As [`connect`](RemoteManager::connect).
    pub fn connect_with_max_frame<A: ToSocketAddrs>(
        addr: A,
        authkey: &[u8],
        max_frame: usize,
    ) -> Result<RemoteManager> {
        let addr = addr
            .to_socket_addrs()
            .map_err(|e| Error::io("cannot resolve the manager's address", e))?
            .next()
            .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "no address to connect to"))?;
        let ep = Endpoint::remote(addr, authkey, max_frame);
        client::ensure_connected(&ep)?;
        client::register_key(&ep);
        Ok(RemoteManager { ep })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        match &self.ep {
            Endpoint::Remote { addr, .. } => *addr,
            Endpoint::Local { .. } => SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }

    fn lookup(&self, name: &str, kinds: &[Kind]) -> Result<ObjRef> {
        let r = client::call(&self.ep, &Request::Lookup(name.to_owned()))?;
        let id = expect_kind(r, kinds, &format!("the object {name:?}"))?;
        Ok(ObjRef {
            ep: self.ep.clone(),
            id,
        })
    }

    /// The queue registered as `name`: a FIFO queue, or any other queue
    /// (joinable, LIFO, priority), each served in its own order.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if nothing (or not a queue) is registered under
    /// `name`; `Closed`/`Io` if the server is gone.
    pub fn queue<T>(&self, name: &str) -> Result<QueueProxy<T>> {
        Ok(QueueProxy::from_obj(self.lookup(
            name,
            &[
                Kind::Queue,
                Kind::JoinableQueue,
                Kind::LifoQueue,
                Kind::PriorityQueue,
            ],
        )?))
    }

    /// The LIFO queue registered as `name`.
    ///
    /// # Errors
    ///
    /// As [`queue`](RemoteManager::queue), also if the queue registered
    /// under `name` is not a LIFO queue.
    pub fn lifo_queue<T>(&self, name: &str) -> Result<QueueProxy<T>> {
        Ok(QueueProxy::from_obj(self.lookup(name, &[Kind::LifoQueue])?))
    }

    /// The priority queue registered as `name`; `T` should be the type it
    /// was registered with (a put of another type fails).
    ///
    /// # Errors
    ///
    /// As [`queue`](RemoteManager::queue), also if the queue registered
    /// under `name` is not a priority queue.
    pub fn priority_queue<T>(&self, name: &str) -> Result<QueueProxy<T>> {
        Ok(QueueProxy::from_obj(
            self.lookup(name, &[Kind::PriorityQueue])?,
        ))
    }

    /// The joinable queue registered as `name`.
    ///
    /// # Errors
    ///
    /// As [`queue`](RemoteManager::queue).
    pub fn joinable_queue<T>(&self, name: &str) -> Result<JoinableQueueProxy<T>> {
        Ok(JoinableQueueProxy::from_obj(
            self.lookup(name, &[Kind::JoinableQueue])?,
        ))
    }

    /// The dict registered as `name`.
    ///
    /// # Errors
    ///
    /// As [`queue`](RemoteManager::queue).
    pub fn dict<K, V>(&self, name: &str) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::from_obj(self.lookup(name, &[Kind::Dict])?))
    }

    /// The list registered as `name`.
    ///
    /// # Errors
    ///
    /// As [`queue`](RemoteManager::queue).
    pub fn list<T>(&self, name: &str) -> Result<ListProxy<T>> {
        Ok(ListProxy::from_obj(self.lookup(name, &[Kind::List])?))
    }

    /// The value registered as `name`.
    ///
    /// # Errors
    ///
    /// As [`queue`](RemoteManager::queue).
    pub fn value<T>(&self, name: &str) -> Result<ValueProxy<T>> {
        Ok(ValueProxy::from_obj(self.lookup(name, &[Kind::Value])?))
    }

    /// The lock registered as `name`.
    ///
    /// # Errors
    ///
    /// As [`queue`](RemoteManager::queue).
    pub fn lock(&self, name: &str) -> Result<LockProxy> {
        Ok(LockProxy::from_obj(self.lookup(name, &[Kind::Lock])?))
    }

    /// The event registered as `name`.
    ///
    /// # Errors
    ///
    /// As [`queue`](RemoteManager::queue).
    pub fn event(&self, name: &str) -> Result<EventProxy> {
        Ok(EventProxy::from_obj(self.lookup(name, &[Kind::Event])?))
    }

    /// The namespace registered as `name`.
    ///
    /// # Errors
    ///
    /// As [`queue`](RemoteManager::queue).
    pub fn namespace(&self, name: &str) -> Result<NamespaceProxy> {
        Ok(NamespaceProxy::from_obj(
            self.lookup(name, &[Kind::Namespace])?,
        ))
    }

    /// The callable registered as `name`; `A` and `R` must match the types
    /// it was registered with.
    ///
    /// # Errors
    ///
    /// As [`queue`](RemoteManager::queue).
    pub fn callable<A, R>(&self, name: &str) -> Result<CallableProxy<A, R>> {
        Ok(CallableProxy::from_obj(
            self.lookup(name, &[Kind::Callable])?,
        ))
    }
}

// ---------------------------------------------------------------------------
// Server.

/// Configures a [`ManagerServer`]: its authkey, frame limit and the objects
/// it serves by name.
pub struct ManagerServerBuilder {
    authkey: Vec<u8>,
    max_frame: usize,
    store: Store,
    error: Option<Error>,
    quiet: bool,
}

impl fmt::Debug for ManagerServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerServerBuilder")
            .field("max_frame", &self.max_frame)
            .finish_non_exhaustive()
    }
}

impl ManagerServerBuilder {
    fn add(mut self, name: &str, kind: Kind, init: Init) -> Self {
        if self.error.is_none() {
            if let Err(e) = self.store.register(name, kind, init) {
                self.error = Some(e);
            }
        }
        self
    }

    /// Serves an unbounded queue as `name`.
    pub fn queue(self, name: &str) -> Self {
        self.add(name, Kind::Queue, Init::Queue { maxsize: 0 })
    }

    /// Serves a queue holding at most `maxsize` items as `name`.
    pub fn bounded_queue(self, name: &str, maxsize: usize) -> Self {
        self.add(name, Kind::Queue, Init::Queue { maxsize })
    }

    /// Serves an unbounded LIFO queue as `name` (see
    /// [`Manager::lifo_queue`](crate::Manager::lifo_queue)).
    pub fn lifo_queue(self, name: &str) -> Self {
        self.bounded_lifo_queue(name, 0)
    }

    /// Serves a LIFO queue holding at most `maxsize` items as `name`.
    pub fn bounded_lifo_queue(self, name: &str, maxsize: usize) -> Self {
        self.add(name, Kind::LifoQueue, Init::Queue { maxsize })
    }

    /// Serves an unbounded priority queue of `T` as `name`: `get` takes the
    /// smallest item, and of equal items the one put first (see
    /// [`Manager::priority_queue`](crate::Manager::priority_queue)). The
    /// server compares items as `T`, the type given here; a put of an item
    /// that is not a `T` fails with `Serialization`.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc_manager::{ManagerServer, RemoteManager};
    ///
    /// let server = ManagerServer::builder(b"key")
    ///     .priority_queue::<u32>("jobs")
    ///     .bind("127.0.0.1:0")?;
    /// let remote = RemoteManager::connect(server.local_addr(), b"key")?;
    /// let jobs = remote.priority_queue::<u32>("jobs")?;
    /// for x in [5, 1, 3] {
    ///     jobs.put(&x)?;
    /// }
    /// assert_eq!(jobs.get()?, 1);
    /// # Ok::<(), multiproc_manager::Error>(())
    /// ```
    pub fn priority_queue<T>(self, name: &str) -> Self
    where
        T: Ord + DeserializeOwned + Send + 'static,
    {
        self.bounded_priority_queue::<T>(name, 0)
    }

    /// Serves a priority queue of `T` holding at most `maxsize` items as
    /// `name`.
    pub fn bounded_priority_queue<T>(self, name: &str, maxsize: usize) -> Self
    where
        T: Ord + DeserializeOwned + Send + 'static,
    {
        let make: HeapMaker = FnRef::new(new_heap::<T>);
        self.add(
            name,
            Kind::PriorityQueue,
            Init::PriorityQueue { maxsize, make },
        )
    }

    /// Serves a joinable queue as `name`.
    pub fn joinable_queue(self, name: &str) -> Self {
        self.add(name, Kind::JoinableQueue, Init::Queue { maxsize: 0 })
    }

    /// Serves an empty dict as `name`.
    pub fn dict(self, name: &str) -> Self {
        self.add(name, Kind::Dict, Init::Empty)
    }

    /// Serves an empty list as `name`.
    pub fn list(self, name: &str) -> Self {
        self.add(name, Kind::List, Init::Empty)
    }

    /// Serves a lock as `name`.
    pub fn lock(self, name: &str) -> Self {
        self.add(name, Kind::Lock, Init::Empty)
    }

    /// Serves an event as `name`.
    pub fn event(self, name: &str) -> Self {
        self.add(name, Kind::Event, Init::Empty)
    }

    /// Serves a namespace as `name`.
    pub fn namespace(self, name: &str) -> Self {
        self.add(name, Kind::Namespace, Init::Empty)
    }

    /// Serves a value, initially `initial`, as `name`.
    pub fn value<T: Serialize>(mut self, name: &str, initial: &T) -> Self {
        match codec::encode(initial) {
            Ok(b) => self.add(name, Kind::Value, Init::Value(b)),
            Err(e) => {
                self.error.get_or_insert(Error::from(e));
                self
            }
        }
    }

    /// Serves the function `f` as `name`: clients call it with an encoded
    /// `A` and get its `R` back. It runs on the server, on the calling
    /// client's connection thread, so it may run concurrently with itself.
    /// If it panics, the caller gets a `TaskPanicked` error carrying the
    /// panic's message and location, and the server goes on serving (the
    /// panic is still printed by the process's panic hook, as any panic).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc_manager::{ErrorKind, ManagerServer, RemoteManager};
    ///
    /// fn checked_sqrt(x: f64) -> f64 {
    ///     assert!(x >= 0.0, "negative input {x}");
    ///     x.sqrt()
    /// }
    ///
    /// let server = ManagerServer::builder(b"key")
    ///     .callable("sqrt", checked_sqrt)
    ///     .bind("127.0.0.1:0")?;
    /// let remote = RemoteManager::connect(server.local_addr(), b"key")?;
    /// let sqrt = remote.callable::<f64, f64>("sqrt")?;
    /// assert_eq!(sqrt.call(&9.0)?, 3.0);
    /// let e = sqrt.call(&-1.0).unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::TaskPanicked);
    /// assert_eq!(e.panic_info().unwrap().message, "negative input -1");
    /// assert_eq!(sqrt.call(&4.0)?, 2.0); // still serving
    /// # Ok::<(), multiproc_manager::Error>(())
    /// ```
    pub fn callable<A, R>(mut self, name: &str, f: fn(A) -> R) -> Self
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        let max = self.max_frame;
        let call: CallFn = Arc::new(move |arg: &[u8]| {
            let a: A = codec::Codec::with_max_message(max)
                .decode(arg)
                .map_err(|e| {
                    Error::with_source(
                        ErrorKind::Serialization,
                        format!("argument is not a {}", std::any::type_name::<A>()),
                        e,
                    )
                    .to_wire()
                })?;
            let r = f(a);
            codec::encode(&r).map_err(|e| Error::from(e).to_wire())
        });
        if self.error.is_none() {
            if let Err(e) = self.store.register_callable(name, call) {
                self.error = Some(e);
            }
        }
        self
    }

    /// The largest frame (request) accepted, in bytes; larger ones close the
    /// connection. Default [`DEFAULT_MAX_FRAME`].
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes.max(HANDSHAKE_MAX);
        self
    }

    /// Stops logging rejected connections to stderr.
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// Binds `addr` (port 0 picks a free port; see
    /// [`local_addr`](ManagerServer::local_addr)) and starts serving on a
    /// background thread.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for an empty authkey or a name registered twice;
    /// `Io` if the address cannot be bound.
    pub fn bind<A: ToSocketAddrs>(self, addr: A) -> Result<ManagerServer> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.authkey.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "a manager server needs a non-empty authkey",
            ));
        }
        let listener =
            TcpListener::bind(addr).map_err(|e| Error::io("cannot bind the manager server", e))?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(ServerShared {
            store: self.store,
            authkey: self.authkey,
            max_frame: self.max_frame,
            quiet: self.quiet,
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
        });
        let s2 = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("manager-accept".into())
            .spawn(move || accept_loop(listener, s2))
            .map_err(|e| Error::io("cannot start the manager server thread", e))?;
        Ok(ManagerServer {
            shared,
            local_addr,
            accept: Mutex::new(Some(accept)),
        })
    }
}

struct ServerShared {
    store: Store,
    authkey: Vec<u8>,
    max_frame: usize,
    quiet: bool,
    stopping: AtomicBool,
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
}

impl ServerShared {
    fn log(&self, peer: Option<SocketAddr>, message: &str) {
        if !self.quiet {
            match peer {
                Some(p) => eprintln!("multiproc manager server: client {p}: {message}"),
                None => eprintln!("multiproc manager server: {message}"),
            }
        }
    }
}

/// A server that serves registered objects to [`RemoteManager`] clients
/// over TCP, Python's `BaseManager(address, authkey).get_server()`.
///
/// It runs on background threads of the calling process (one per client)
/// until [`shutdown`](ManagerServer::shutdown) or drop.
///
/// # Examples
///
/// ```
/// use multiproc_manager::{ErrorKind, ManagerServer, RemoteManager};
///
/// let server = ManagerServer::builder(b"key").dict("config").bind("127.0.0.1:0")?;
/// let addr = server.local_addr();
/// assert_ne!(addr.port(), 0);
/// let wrong = RemoteManager::connect(addr, b"not the key").unwrap_err();
/// assert_eq!(wrong.kind(), ErrorKind::Authentication);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
pub struct ManagerServer {
    shared: Arc<ServerShared>,
    local_addr: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for ManagerServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerServer")
            .field("local_addr", &self.local_addr)
            .field(
                "connections",
                &self.shared.conns.lock().map(|c| c.len()).unwrap_or(0),
            )
            .finish()
    }
}

impl ManagerServer {
    /// Starts configuring a server that requires `authkey`.
    pub fn builder(authkey: &[u8]) -> ManagerServerBuilder {
        ManagerServerBuilder {
            authkey: authkey.to_vec(),
            max_frame: DEFAULT_MAX_FRAME,
            store: Store::with_first_id(first_object_id()),
            error: None,
            quiet: false,
        }
    }

    /// The address the server is bound to (with the real port when bound to
    /// port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The number of clients connected now.
    pub fn connections(&self) -> usize {
        self.shared
            .conns
            .lock()
            .map(|c| c.len())
            .unwrap_or_else(|p| p.into_inner().len())
    }

    /// Serves until another thread calls [`shutdown`](ManagerServer::shutdown)
    /// (Python's `serve_forever`).
    ///
    /// # Errors
    ///
    /// `Io` if the accepting thread panicked.
    pub fn serve_forever(&self) -> Result<()> {
        let handle = self.accept.lock().unwrap_or_else(|p| p.into_inner()).take();
        match handle {
            Some(h) => h
                .join()
                .map_err(|_| Error::new(ErrorKind::Io, "the manager server thread panicked")),
            None => Ok(()),
        }
    }

    /// Stops accepting clients and disconnects the connected ones.
    /// Idempotent.
    pub fn shutdown(&self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the accept loop.
        let wake = match self.local_addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => {
                SocketAddr::from(([127, 0, 0, 1], a.port()))
            }
            SocketAddr::V6(a) if a.ip().is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
            }
            a => a,
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        for s in self
            .shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.accept.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }
}

impl Drop for ManagerServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<ServerShared>) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) => {
                if shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                shared.log(None, &format!("accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        match stream.try_clone() {
            Ok(c) => {
                shared
                    .conns
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, c);
            }
            Err(e) => {
                shared.log(Some(peer), &format!("cannot register the connection: {e}"));
                continue;
            }
        }
        let s2 = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("manager-client".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                serve_client(stream, peer, id, &s2);
                s2.conns
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                s2.store.release_owned(id);
            });
        if let Err(e) = spawned {
            shared.log(Some(peer), &format!("cannot start a thread: {e}"));
            shared
                .conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
    }
}

struct RemotePeer<'a> {
    id: u64,
    stream: &'a TcpStream,
}

impl Peer for RemotePeer<'_> {
    fn id(&self) -> u64 {
        self.id
    }
    fn trusted(&self) -> bool {
        false
    }
    fn gone(&self) -> bool {
        FrameIo::peer_gone(self.stream)
    }
}

/// Runs the server's half of the handshake; `Ok(false)` means denied.
fn handshake(io: &mut FrameIo, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
    io.idle_timeout = Some(HANDSHAKE_TIMEOUT);
    let s = nonce()?;
    let mut hello = HELLO.to_vec();
    hello.extend_from_slice(&s);
    io.write_frame(&hello, out)?;
    let mut buf = Vec::new();
    io.read_frame(&mut buf, HANDSHAKE_MAX, Duration::ZERO)
        .map_err(|e| read_error_to_error(e, "the client"))?;
    let ok = buf.len() == NONCE + 32
        && mac(key, b"client", &s, &buf[..NONCE])
            .verify_slice(&buf[NONCE..])
            .is_ok();
    if !ok {
        let _ = io.write_frame(DENIED, out);
        return Ok(false);
    }
    let c = &buf[..NONCE];
    let proof = mac(key, b"server", c, &s).finalize().into_bytes();
    let mut welcome = WELCOME.to_vec();
    welcome.extend_from_slice(&proof);
    io.write_frame(&welcome, out)?;
    io.idle_timeout = None;
    Ok(true)
}

fn serve_client(stream: TcpStream, peer: SocketAddr, id: u64, shared: &ServerShared) {
    let mut io = match FrameIo::new(stream) {
        Ok(io) => io,
        Err(e) => return shared.log(Some(peer), &format!("socket setup failed: {e}")),
    };
    let mut out = Vec::new();
    match handshake(&mut io, &shared.authkey, &mut out) {
        Ok(true) => {}
        Ok(false) => {
            return shared.log(Some(peer), "authentication failed; connection closed");
        }
        Err(e) => {
            return shared.log(Some(peer), &format!("handshake failed: {e}"));
        }
    }
    let codec = client::codec(shared.max_frame);
    let mut buf = Vec::new();
    let mut resp_buf = Vec::new();
    let spin = shm_spin();
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        match io.read_frame(&mut buf, shared.max_frame, spin) {
            Ok(()) => {}
            Err(ReadError::Eof) => return,
            Err(e) => {
                return shared.log(Some(peer), &format!("{e}; connection closed"));
            }
        }
        let req: Request = match codec.decode(&buf) {
            Ok(r) => r,
            Err(e) => {
                return shared.log(
                    Some(peer),
                    &format!("malformed request ({e}); connection closed"),
                );
            }
        };
        let resp = {
            let p = RemotePeer {
                id,
                stream: &io.stream,
            };
            shared.store.handle(req, &p)
        };
        resp_buf.clear();
        if let Err(e) = codec.encode_into(&resp, &mut resp_buf) {
            let fallback = Response::Error(Error::from(e).to_wire());
            if codec.encode_into(&fallback, &mut resp_buf).is_err() {
                return shared.log(Some(peer), "cannot encode a response; connection closed");
            }
        }
        if let Err(e) = io.write_frame(&resp_buf, &mut out) {
            return shared.log(
                Some(peer),
                &format!("cannot send a response ({e}); connection closed"),
            );
        }
    }
}
