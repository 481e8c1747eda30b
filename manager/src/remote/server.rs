//! The server side: [`ManagerServer`], its builder and its connection threads.

use std::collections::HashMap;
use std::fmt;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hmac::Mac;
use multiproc_ipc::codec;
use multiproc_ipc::{Error, ErrorKind, FnRef, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client;
use crate::protocol::{Init, Kind, Request, Response};
use crate::proxy::{CallableProxy, QueueProxy, ValueProxy};
use crate::queues::{new_heap, HeapMaker};
use crate::shared::Served;
use crate::store::{CallFn, Peer, Store};
use crate::typetag::{TypeDesc, TypeTag};

use super::{
    first_object_id, mac, nonce, read_error_to_error, shm_spin, FrameIo, ReadError,
    DEFAULT_MAX_FRAME, DENIED, HANDSHAKE_MAX, HANDSHAKE_TIMEOUT, HELLO, NONCE, WELCOME,
};

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
    fn add(self, name: &str, kind: Kind, init: Init) -> Self {
        self.add_typed(name, kind, init, None)
    }

    /// Registers an object whose types are known here.
    fn add_typed(mut self, name: &str, kind: Kind, init: Init, ty: Option<TypeTag>) -> Self {
        if self.error.is_none() {
            let ty = ty.as_ref().map(TypeTag::desc);
            if let Err(e) = self.store.register(name, kind, init, ty) {
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
    /// that is not a `T` fails with `Serialization`, and a client asking for
    /// the queue with another item type is refused (see
    /// [Type fingerprints](crate#type-fingerprints)).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ManagerServer, RemoteManager};
    ///
    /// let server = ManagerServer::builder(b"key")
    ///     .priority_queue::<u32>("jobs")
    ///     .bind("127.0.0.1:0")?;
    /// let remote = RemoteManager::connect(server.local_addr(), b"key")?;
    /// let jobs = remote.priority_queue::<u32>("jobs")?;
    /// for x in [5, 1, 3] {
    ///     jobs.put(x)?;
    /// }
    /// assert_eq!(jobs.get()?, 1);
    /// # Ok::<(), multiproc::Error>(())
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
        self.add_typed(
            name,
            Kind::PriorityQueue,
            Init::PriorityQueue { maxsize, make },
            Some(QueueProxy::<T>::tag()),
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

    /// Serves a value, initially `initial`, as `name`. Its type is `T`: a
    /// client asking for it as another type is refused (see
    /// [Type fingerprints](crate#type-fingerprints)).
    pub fn value<T: Serialize>(mut self, name: &str, initial: &T) -> Self {
        match codec::encode(initial) {
            Ok(b) => self.add_typed(
                name,
                Kind::Value,
                Init::Value(b),
                Some(ValueProxy::<T>::tag()),
            ),
            Err(e) => {
                self.error.get_or_insert(Error::from(e));
                self
            }
        }
    }

    /// Serves the function `f` as `name`: clients call it with an encoded
    /// `A` and get its `R` back. A client asking for it with other types
    /// is refused (see [Type fingerprints](crate#type-fingerprints)). It runs on the server, on the calling
    /// client's connection thread, so it may run concurrently with itself.
    /// If it panics, the caller gets a `TaskPanicked` error carrying the
    /// panic's message and location, and the server goes on serving (the
    /// panic is still printed by the process's panic hook, as any panic).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ErrorKind, ManagerServer, RemoteManager};
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
    /// # Ok::<(), multiproc::Error>(())
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
            let ty = CallableProxy::<A, R>::tag().desc();
            if let Err(e) = self.store.register_callable(name, call, ty) {
                self.error = Some(e);
            }
        }
        self
    }

    /// Registers a served object of the types `ty` as `name`.
    pub(crate) fn add_served(mut self, name: &str, obj: Box<dyn Served>, ty: TypeDesc) -> Self {
        if self.error.is_none() {
            if let Err(e) = self.store.register_shared(name, obj, ty) {
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

    /// Stops reporting rejected connections (failed authentication, bad
    /// frames) as `tracing` WARN events.
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
                Some(p) => tracing::warn!(peer = %p, "manager server: {message}"),
                None => tracing::warn!("manager server: {message}"),
            }
        }
    }
}

/// A server that serves registered objects to
/// [`RemoteManager`](crate::RemoteManager) clients over TCP, Python's
/// `BaseManager(address, authkey).get_server()`.
///
/// It runs on background threads of the calling process (one per client)
/// until [`shutdown`](ManagerServer::shutdown) or drop.
///
/// # Examples
///
/// ```
/// use multiproc::{ErrorKind, ManagerServer, RemoteManager};
///
/// let server = ManagerServer::builder(b"key").dict("config").bind("127.0.0.1:0")?;
/// let addr = server.local_addr();
/// assert_ne!(addr.port(), 0);
/// let wrong = RemoteManager::connect(addr, b"not the key").unwrap_err();
/// assert_eq!(wrong.kind(), ErrorKind::Authentication);
/// # Ok::<(), multiproc::Error>(())
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
    // The whole answer must come within the bound: a client that trickles
    // its bytes in must not hold a connection thread for longer.
    io.deadline = Some(Instant::now() + HANDSHAKE_TIMEOUT);
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
    io.deadline = None;
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
    serve_requests(&mut io, peer, id, shared, &mut out);
}

/// Serves one authenticated client until it leaves or breaks the protocol.
fn serve_requests(
    io: &mut FrameIo,
    peer: SocketAddr,
    id: u64,
    shared: &ServerShared,
    out: &mut Vec<u8>,
) {
    let codec = client::codec(shared.max_frame);
    let mut buf = Vec::new();
    let mut resp_buf = Vec::new();
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        // Asked for each request, as a busy machine turns spinning off.
        match io.read_frame(&mut buf, shared.max_frame, shm_spin()) {
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
        if let Err(e) = io.write_frame(&resp_buf, out) {
            return shared.log(
                Some(peer),
                &format!("cannot send a response ({e}); connection closed"),
            );
        }
    }
}

/// Starts configuring a server whose object ids count up from `first`
/// instead of a random id (fuzzing: inputs that name objects by id stay
/// reproducible).
pub(super) fn builder_with_first_id(authkey: &[u8], first: u64) -> ManagerServerBuilder {
    ManagerServerBuilder {
        store: Store::with_first_id(first),
        ..ManagerServer::builder(authkey)
    }
}

/// Serves one connection on the calling thread as the accept loop's thread
/// would, with the handshake or, if `authenticated`, straight from the
/// request loop (fuzzing: a fuzzer cannot answer the random challenge).
///
/// # Errors
///
/// As [`ManagerServerBuilder::bind`] for the builder's own errors, and `Io`
/// if the stream's peer address cannot be read.
pub(super) fn serve_one(
    builder: ManagerServerBuilder,
    stream: TcpStream,
    authenticated: bool,
) -> Result<()> {
    if let Some(e) = builder.error {
        return Err(e);
    }
    let peer = stream.peer_addr()?;
    let shared = ServerShared {
        store: builder.store,
        authkey: builder.authkey,
        max_frame: builder.max_frame,
        quiet: builder.quiet,
        stopping: AtomicBool::new(false),
        conns: Mutex::new(HashMap::new()),
        next_conn: AtomicU64::new(2),
    };
    let id = 1;
    if authenticated {
        let mut io = FrameIo::new(stream)?;
        let mut out = Vec::new();
        serve_requests(&mut io, peer, id, &shared, &mut out);
    } else {
        serve_client(stream, peer, id, &shared);
    }
    shared.store.release_owned(id);
    Ok(())
}
