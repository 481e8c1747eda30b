//! The client side: [`RemoteManager`] and its TCP connections.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use hmac::Mac;
use multiproc_ipc::{Error, ErrorKind, Result};

use crate::client::{self, Conn, Endpoint};
use crate::protocol::{Kind, Request, Response};
use crate::proxy::{
    lookup, CallableProxy, DictProxy, EventProxy, JoinableQueueProxy, ListProxy, LockProxy,
    NamespaceProxy, ObjRef, QueueProxy, ValueProxy,
};
use crate::typetag::TypeTag;

use super::{
    auth_error, mac, nonce, read_error_to_error, shm_spin, FrameIo, ReadError, DEFAULT_MAX_FRAME,
    DENIED, HANDSHAKE_MAX, HANDSHAKE_TIMEOUT, HELLO, NONCE, WELCOME,
};

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
        let stream = TcpStream::connect(addr).map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused => Error::io(
                format!("the manager at {addr} is gone (nothing listens there)"),
                e,
            ),
            _ => Error::io(format!("cannot connect to the manager at {addr}"), e),
        })?;
        let mut io = FrameIo::new(stream)?;
        io.idle_timeout = Some(HANDSHAKE_TIMEOUT);
        // A server that trickles its handshake must not hold the caller for
        // longer than the bound either.
        io.deadline = Some(Instant::now() + HANDSHAKE_TIMEOUT);
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
        io.deadline = None;
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
                "the manager at {} is gone: the connection was lost while a request \
                 was in flight ({cause}); the request was not retried, as the manager may have \
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
/// use multiproc::{ManagerServer, RemoteManager};
///
/// let server = ManagerServer::builder(b"secret")
///     .queue("jobs")
///     .callable("square", |x: u64| x * x)
///     .bind("127.0.0.1:0")?;
/// let remote = RemoteManager::connect(server.local_addr(), b"secret")?;
/// let jobs = remote.queue::<u64>("jobs")?;
/// jobs.put(7)?;
/// assert_eq!(jobs.get()?, 7);
/// assert_eq!(remote.callable::<u64, u64>("square")?.call(&9)?, 81);
/// # Ok::<(), multiproc::Error>(())
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
    /// use multiproc::{ManagerServer, RemoteManager};
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
    /// # Ok::<(), multiproc::Error>(())
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

    /// The object registered as `name`, of one of `kinds`, for a proxy of
    /// the types `ty` (typed kinds).
    pub(crate) fn lookup_typed(
        &self,
        name: &str,
        kinds: &[Kind],
        ty: Option<TypeTag>,
    ) -> Result<ObjRef> {
        lookup(&self.ep, name, kinds, ty)
    }

    fn lookup(&self, name: &str, kinds: &[Kind]) -> Result<ObjRef> {
        self.lookup_typed(name, kinds, None)
    }

    /// The queue registered as `name`: a FIFO queue, or any other queue
    /// (joinable, LIFO, priority), each served in its own order.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if nothing (or not a queue) is registered under
    /// `name`; `Closed`/`Io` if the server is gone.
    pub fn queue<T>(&self, name: &str) -> Result<QueueProxy<T>> {
        Ok(QueueProxy::from_obj(self.lookup_typed(
            name,
            &[
                Kind::Queue,
                Kind::JoinableQueue,
                Kind::LifoQueue,
                Kind::PriorityQueue,
            ],
            Some(QueueProxy::<T>::tag()),
        )?))
    }

    /// The LIFO queue registered as `name`.
    ///
    /// # Errors
    ///
    /// As [`queue`](RemoteManager::queue), also if the queue registered
    /// under `name` is not a LIFO queue.
    pub fn lifo_queue<T>(&self, name: &str) -> Result<QueueProxy<T>> {
        Ok(QueueProxy::from_obj(self.lookup_typed(
            name,
            &[Kind::LifoQueue],
            Some(QueueProxy::<T>::tag()),
        )?))
    }

    /// The priority queue registered as `name`; `T` should be the type it
    /// was registered with (a proxy of another type is refused, see
    /// [Type fingerprints](crate#type-fingerprints)).
    ///
    /// # Errors
    ///
    /// As [`queue`](RemoteManager::queue), also if the queue registered
    /// under `name` is not a priority queue.
    pub fn priority_queue<T>(&self, name: &str) -> Result<QueueProxy<T>> {
        Ok(QueueProxy::from_obj(self.lookup_typed(
            name,
            &[Kind::PriorityQueue],
            Some(QueueProxy::<T>::tag()),
        )?))
    }

    /// The joinable queue registered as `name`.
    ///
    /// # Errors
    ///
    /// As [`queue`](RemoteManager::queue).
    pub fn joinable_queue<T>(&self, name: &str) -> Result<JoinableQueueProxy<T>> {
        Ok(JoinableQueueProxy::from_obj(self.lookup_typed(
            name,
            &[Kind::JoinableQueue],
            Some(QueueProxy::<T>::tag()),
        )?))
    }

    /// The dict registered as `name`.
    ///
    /// # Errors
    ///
    /// As [`queue`](RemoteManager::queue).
    pub fn dict<K, V>(&self, name: &str) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::from_obj(self.lookup_typed(
            name,
            &[Kind::Dict],
            Some(DictProxy::<K, V>::tag()),
        )?))
    }

    /// The list registered as `name`.
    ///
    /// # Errors
    ///
    /// As [`queue`](RemoteManager::queue).
    pub fn list<T>(&self, name: &str) -> Result<ListProxy<T>> {
        Ok(ListProxy::from_obj(self.lookup_typed(
            name,
            &[Kind::List],
            Some(ListProxy::<T>::tag()),
        )?))
    }

    /// The value registered as `name`.
    ///
    /// # Errors
    ///
    /// As [`queue`](RemoteManager::queue).
    pub fn value<T>(&self, name: &str) -> Result<ValueProxy<T>> {
        Ok(ValueProxy::from_obj(self.lookup_typed(
            name,
            &[Kind::Value],
            Some(ValueProxy::<T>::tag()),
        )?))
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
        Ok(CallableProxy::from_obj(self.lookup_typed(
            name,
            &[Kind::Callable],
            Some(CallableProxy::<A, R>::tag()),
        )?))
    }
}
