//! The local manager: a forked server process that owns shared objects.
//!
//! [`Manager::start`] forks the server (through the fork server when
//! [`multiproc::init`](multiproc_ipc::init) ran, else itself when the caller runs a single
//! thread, else through a fresh single-threaded zygote)
//! and hands it a listening unix socket in the abstract namespace. A client
//! connects and sends the manager's random token together with its first
//! request (a large one follows on the channel instead); the manager answers
//! with a [`ShmChannel`] made for it (its memory file) and puts the response
//! in it. A connection thus costs its first request one round trip, not two:
//! a process that connects inside a critical section (a `Process` child's
//! `with lock: d[k] -= 1`) holds its lock that much shorter. From then on
//! every request and response is a shared-memory hand-off (a short spin,
//! then a futex sleep), not a socket round trip. The socket stays open only
//! so that each side notices when the other dies.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc_ipc::codec::Codec;
use multiproc_ipc::fd;
use multiproc_ipc::shmchan::{spin_budget, ShmChannel};
use multiproc_ipc::{Error, ErrorKind, FnRef, Result, Zygote, ZygoteChild};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::client::{self, Conn, Endpoint};
use crate::protocol::{Init, Kind, Request, Response};
use crate::proxy::{
    expect_kind, DictProxy, EventProxy, JoinableQueueProxy, ListProxy, LockProxy, NamespaceProxy,
    ObjRef, QueueProxy, RLockProxy, SemaphoreProxy, ValueProxy,
};
use crate::queues::{new_heap, HeapMaker};
use crate::store::{Peer, Store};
use crate::typetag::TypeTag;

/// Size of each connection's shared-memory buffer; larger messages go in chunks.
const CHANNEL_CAPACITY: usize = 64 * 1024;
/// How long the client polls for a response before it sleeps.
const CLIENT_SPIN: Duration = Duration::from_micros(30);
/// How long a server thread polls for the next request before it sleeps.
const SERVER_SPIN: Duration = Duration::from_micros(50);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest first request sent with the handshake (see
/// `LocalConn::handshake`); a larger one follows on the channel.
const FIRST_REQUEST_MAX: usize = 16 * 1024;
const TOKEN: usize = 32;
/// The tag of the handshake's answer, which carries the channel's memory
/// file.
const CHANNEL_TAG: u64 = 0x6d70_6368_616e_6e6c; // "mpchannl"
const READY: &[u8] = b"ready";
/// The longest time `shutdown` waits for the server to exit before killing it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Reads one handshake frame (a little-endian `u32` length, then that
/// many bytes) of at most `max` bytes.
fn read_frame(s: &mut impl Read, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "oversized handshake frame",
        ));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// True if the peer closed the (non-blocking) socket.
fn peer_gone(s: &UnixStream) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 1];
    match recv(
        s.as_raw_fd(),
        &mut b,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e != nix::errno::Errno::EAGAIN && e != nix::errno::Errno::EINTR,
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn abstract_addr(name: &str) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(name.as_bytes())
}

// ---------------------------------------------------------------------------
// Client side.

/// A client's connection to a local manager.
pub(crate) struct LocalConn {
    chan: Channel,
    sock: UnixStream,
    buf: Vec<u8>,
    codec: Codec,
    /// A request failed after it started out: the channel is out of step.
    broken: bool,
    /// The manager process's pid, for error messages.
    pid: i32,
}

/// A connection's channel to its manager.
enum Channel {
    /// Connected; the token is sent with the first request.
    Pending([u8; TOKEN]),
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
    /// Connects; the handshake goes with the first request (see
    /// [`handshake`](LocalConn::handshake)).
    pub(crate) fn connect(addr: &str, token: &[u8; TOKEN], pid: i32) -> Result<LocalConn> {
        let sock = UnixStream::connect_addr(&abstract_addr(addr)?).map_err(|e| {
            if e.kind() == io::ErrorKind::ConnectionRefused {
                manager_gone(pid)
            } else {
                Error::io(format!("cannot connect to the manager (pid {pid})"), e)
            }
        })?;
        sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        Ok(LocalConn {
            chan: Channel::Pending(*token),
            sock,
            buf: Vec::with_capacity(256),
            codec: Codec::default(),
            broken: false,
            pid,
        })
    }

    /// The handshake, sent with the first request: the token and the
    /// request (or, for a large one, an empty frame: it follows on the
    /// channel) in one write; the manager answers with the channel's memory
    /// file and then puts its response in the channel: one round trip to
    /// the manager's connection thread, which may have to be woken, instead
    /// of two (see the module docs). The answer is polled for, yielding the
    /// CPU between looks, while spinning pays ([`poll_answer`]): the woken
    /// connection thread often runs on this very CPU, and a client asleep
    /// would add a wake-up of its own. `self.buf` holds the encoded
    /// request. Returns the channel, and whether the request went with the
    /// handshake.
    fn handshake(&mut self, token: &[u8; TOKEN]) -> Result<(ShmChannel, bool)> {
        let pid = self.pid;
        let inline = self.buf.len() <= FIRST_REQUEST_MAX;
        let body = if inline { &self.buf[..] } else { &[] };
        let mut out = Vec::with_capacity(8 + TOKEN + body.len());
        for frame in [&token[..], body] {
            out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            out.extend_from_slice(frame);
        }
        (&self.sock)
            .write_all(&out)
            .map_err(|_| manager_gone(pid))?;
        // The answer: the channel's memory file, or the socket closed.
        let answer = match poll_answer(&self.sock) {
            Some(a) => a,
            None => fd::recv_handles(self.sock.as_fd(), false),
        };
        let (tag, mut fds) = answer.map_err(|e| match e.kind() {
            // Closed without an answer (a reset: the request was left
            // unread when the token was refused).
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => Error::new(
                ErrorKind::Authentication,
                format!("the manager (pid {pid}) refused the connection"),
            ),
            _ => Error::io(format!("handshake with the manager (pid {pid}) failed"), e),
        })?;
        let chan_fd = match (tag, fds.pop()) {
            (CHANNEL_TAG, Some(chan_fd)) if fds.is_empty() => chan_fd,
            _ => {
                return Err(Error::new(
                    ErrorKind::Remote,
                    format!("bad channel from the manager (pid {pid})"),
                ))
            }
        };
        // The socket's read timeout stays: from now on it is only peeked at
        // without waiting (`peer_gone`).
        Ok((ShmChannel::attach(chan_fd)?, inline))
    }
}

/// One request's turn on `chan`: sends `buf` (unless it went with the
/// handshake) and receives the response into it.
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

/// The handshake's answer if it comes while polling pays (see
/// [`multiproc_ipc::spin::poll_yielding`]); `None`: wait for it asleep.
fn poll_answer(sock: &UnixStream) -> Option<io::Result<(u64, Vec<OwnedFd>)>> {
    let mut answer = None;
    multiproc_ipc::spin::poll_yielding(CLIENT_SPIN, || {
        match fd::recv_handles(sock.as_fd(), true) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            other => {
                answer = Some(other);
                true
            }
        }
    });
    answer
}

impl Conn for LocalConn {
    fn call(&mut self, req: &Request) -> Result<Response> {
        self.buf.clear();
        self.codec.encode_into(req, &mut self.buf)?;
        // Anything that fails from here on leaves the channel out of step.
        self.broken = true;
        let pid = self.pid;
        match &mut self.chan {
            Channel::Ready(chan) => exchange(chan, &self.sock, &mut self.buf, pid, true)?,
            Channel::Pending(token) => {
                let token = *token;
                let (mut chan, sent) = self.handshake(&token)?;
                exchange(&mut chan, &self.sock, &mut self.buf, pid, !sent)?;
                self.chan = Channel::Ready(chan);
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

// ---------------------------------------------------------------------------
// Server side (runs in the manager process).

#[derive(Serialize, Deserialize)]
struct ServerArgs {
    token: [u8; TOKEN],
    addr: String,
    /// The scheduler slice the server's threads ask for (0: none).
    slice_ns: u64,
}

/// Shared by the manager's threads.
struct ServerState {
    store: Store,
    token: [u8; TOKEN],
    listener: UnixListener,
    /// Told when a client asks for shutdown.
    stop: Mutex<std::sync::mpsc::Sender<()>>,
    /// Handler threads waiting in `accept`, channel already made.
    idle: AtomicUsize,
    /// The channels made ahead for those handlers, by handler (here, a
    /// handler finds its own again once it has accepted a client; empty
    /// once shutting down).
    spares: Mutex<std::collections::HashMap<u64, ShmChannel>>,
    next_handler: AtomicU64,
    next_id: AtomicU64,
}

/// Handler threads kept ready (spawning a thread and making a channel cost
/// more than the rest of a connection's set-up): this many at start, and a
/// new one whenever a client takes one and fewer are left waiting.
const SPARE_HANDLERS: usize = 2;

/// A handler whose client has gone waits for the next one unless this many
/// already wait: short-lived clients (a `Process` per task) then reuse the
/// same threads instead of costing a thread start and exit each.
const MAX_IDLE_HANDLERS: usize = 4;

struct LocalPeer<'a> {
    id: u64,
    sock: &'a UnixStream,
}

impl Peer for LocalPeer<'_> {
    fn id(&self) -> u64 {
        self.id
    }
    fn trusted(&self) -> bool {
        true
    }
    fn gone(&self) -> bool {
        peer_gone(self.sock)
    }
}

/// The manager process's main: bind the socket, report readiness on the
/// descriptor it was given, and accept clients until told to shut down.
///
/// The socket is made here, in the manager, so that no other process (a
/// zygote or child forked from the caller meanwhile) can hold a copy of it.
fn manager_main(args: ServerArgs, mut fds: Vec<OwnedFd>) -> i32 {
    // Its handler threads inherit the slice.
    multiproc_ipc::latency::apply_slice(args.slice_ns);
    let Some(fd) = fds.pop() else {
        tracing::error!("the manager started without its ready socket");
        return 2;
    };
    let mut ready = UnixStream::from(fd);
    let listener = match abstract_addr(&args.addr).and_then(|a| UnixListener::bind_addr(&a)) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.write_all(format!("cannot bind the manager's socket: {e}").as_bytes());
            return 2;
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let state = Arc::new(ServerState {
        store: Store::new(),
        token: args.token,
        listener,
        stop: Mutex::new(tx),
        idle: AtomicUsize::new(0),
        spares: Mutex::new(std::collections::HashMap::new()),
        next_handler: AtomicU64::new(1),
        next_id: AtomicU64::new(1),
    });
    for _ in 0..SPARE_HANDLERS {
        spawn_handler(&state);
    }
    if ready.write_all(READY).is_err() {
        return 2;
    }
    drop(ready);
    // Handler threads accept and serve; this thread waits for a shutdown
    // request. Returning ends the process (the zygote's child exits with
    // `_exit`), and with it every connection thread.
    let _ = rx.recv();
    // Handlers still waiting in `accept` find no channel: they end.
    state
        .spares
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    0
}

fn spawn_handler(state: &Arc<ServerState>) {
    let state = Arc::clone(state);
    let spawned = std::thread::Builder::new()
        .name("manager-conn".into())
        .stack_size(256 * 1024)
        .spawn(move || handler(&state));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "the manager cannot start a connection thread");
    }
}

/// A connection thread: makes a channel, accepts the next client, serves
/// it, and starts over while spares are needed.
fn handler(state: &Arc<ServerState>) {
    let me = state.next_handler.fetch_add(1, Ordering::Relaxed);
    let spares = || state.spares.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        match ShmChannel::create(CHANNEL_CAPACITY) {
            Ok(c) => {
                spares().insert(me, c);
            }
            Err(e) => {
                tracing::error!(error = %e, "the manager cannot create a channel");
                return;
            }
        }
        state.idle.fetch_add(1, Ordering::SeqCst);
        let accepted = loop {
            match state.listener.accept() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        let idle = state.idle.fetch_sub(1, Ordering::SeqCst) - 1;
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "the manager cannot accept a connection");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let Some(chan) = spares().remove(&me) else {
            return; // shutting down
        };
        let id = state.next_id.fetch_add(1, Ordering::Relaxed);
        serve_local(stream, chan, state, id, idle < SPARE_HANDLERS);
        state.store.release_owned(id);
        if state.idle.load(Ordering::SeqCst) >= MAX_IDLE_HANDLERS {
            return;
        }
    }
}

fn serve_local(
    mut sock: UnixStream,
    mut chan: ShmChannel,
    state: &Arc<ServerState>,
    id: u64,
    need_spare: bool,
) {
    if sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).is_err() {
        return;
    }
    let store = &state.store;
    match read_frame(&mut sock, TOKEN) {
        Ok(t) if ct_eq(&t, &state.token) => {}
        _ => return, // wrong token or a broken client: just close
    }
    // The client's first request, sent with the token (empty: it comes on
    // the channel).
    let Ok(first) = read_frame(&mut sock, FIRST_REQUEST_MAX) else {
        return;
    };
    let Some(chan_fd) = chan.fd() else {
        return;
    };
    if fd::send_handles(sock.as_fd(), CHANNEL_TAG, &[chan_fd], false).is_err() {
        return;
    }
    if need_spare {
        // While the client attaches to the channel.
        spawn_handler(state);
    }
    let codec = Codec::default();
    let mut have_request = !first.is_empty();
    let mut buf = first;
    buf.reserve(256);
    loop {
        let gone = || peer_gone(&sock);
        // Asked for each request: a busy machine seen since the last one
        // turns spinning off for a while (see multiproc_ipc::spin).
        if !std::mem::take(&mut have_request)
            && chan
                .recv(&mut buf, spin_budget(SERVER_SPIN), &gone)
                .is_err()
        {
            return;
        }
        let req: Request = match codec.decode(&buf) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "the manager closed a connection after a malformed request");
                return;
            }
        };
        let shutdown = matches!(req, Request::Shutdown);
        let resp = if shutdown {
            Response::Unit
        } else {
            store.handle(req, &LocalPeer { id, sock: &sock })
        };
        buf.clear();
        if let Err(e) = codec.encode_into(&resp, &mut buf) {
            let fallback = Response::Error(Error::from(e).to_wire());
            if codec.encode_into(&fallback, &mut buf).is_err() {
                return;
            }
        }
        if chan.send(&buf, &gone).is_err() {
            return;
        }
        if shutdown {
            let _ = state
                .stop
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send(());
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// The handle.

/// A manager: a server process holding shared objects, handed out as typed
/// proxies (Python's `multiprocessing.Manager()`).
///
/// The proxies work in this process, in `Process` children and in pool
/// workers (they are `Serialize`; each process opens its own connection on
/// first use). The server process is shut down by
/// [`shutdown`](Manager::shutdown) or when the `Manager` is dropped, and it
/// is killed if this process dies.
///
/// # Examples
///
/// ```
/// use multiproc::Manager;
///
/// let manager = Manager::start()?;
/// let d = manager.dict::<String, i64>()?;
/// d.insert(&"count".into(), &100)?;
/// let l = manager.list::<i64>()?;
/// l.push(&1)?;
/// assert_eq!(d.len()?, 1);
/// manager.shutdown()?;
/// assert!(d.len().is_err()); // the manager is gone: an error, not a hang
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Manager {
    ep: Endpoint,
    child: Mutex<Option<ZygoteChild>>,
    _zygote: Option<Zygote>,
    pid: i32,
    creator: u32,
    stopped: AtomicBool,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("pid", &self.pid)
            .field("stopped", &self.stopped.load(Ordering::Relaxed))
            .finish()
    }
}

impl Manager {
    /// Starts the manager process.
    ///
    /// # Errors
    ///
    /// `Io` if the socket, the random token or the fork fails.
    ///
    /// # Caveats
    ///
    /// Without [`multiproc::init`](multiproc_ipc::init), the server is forked
    /// from this process as it is now (by this process itself when it runs a
    /// single thread, else through a single-threaded zygote): if another
    /// thread of the program holds a lock at that moment (stdout, the
    /// allocator, a runtime's), the manager inherits it held. Call `init`
    /// first in `main` in programs that run threads.
    pub fn start() -> Result<Manager> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let mut token = [0u8; TOKEN];
        getrandom::getrandom(&mut token)
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot read random bytes: {e}")))?;
        let tag: String = token[..6].iter().map(|b| format!("{b:02x}")).collect();
        let creator = std::process::id();
        let addr = format!(
            "multiproc-manager-{creator}-{}-{tag}",
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let (mut ours, theirs) = UnixStream::pair()
            .map_err(|e| Error::io("cannot create the manager's ready socket", e))?;
        let args = ServerArgs {
            token,
            addr: addr.clone(),
            slice_ns: multiproc_ipc::latency::slice_ns(),
        };
        let (mut child, zygote) = match multiproc_ipc::fork_server() {
            Some(server) => (server.spawn(manager_main, &args, &[theirs.as_fd()])?, None),
            // A single-threaded process forks the server itself: no zygote
            // to fork first and wait for. With the short slice from the
            // fork on, as the zygote's.
            None if Zygote::may_fork_here() => {
                let fork =
                    || Zygote::spawn_here(manager_main, &args, &[theirs.as_fd()], &[ours.as_fd()]);
                (multiproc_ipc::latency::starting_owned(fork)?, None)
            }
            None => {
                // The zygote and the server it forks are ours: the short
                // slice from the fork on (see `latency::starting_owned`).
                let z = multiproc_ipc::latency::starting_owned(Zygote::start)?;
                let c = z.spawn(manager_main, &args, &[theirs.as_fd()])?;
                (c, Some(z))
            }
        };
        drop(theirs);
        ours.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 256];
        // Read until READY arrives or the manager closes its end.
        while !answer.starts_with(READY) {
            match ours.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if !answer.starts_with(READY) {
            let _ = child.kill();
            let _ = child.wait_timeout(SHUTDOWN_GRACE);
            let why = String::from_utf8_lossy(&answer).into_owned();
            return Err(Error::new(
                ErrorKind::Io,
                if why.is_empty() {
                    "the manager process failed to start".to_owned()
                } else {
                    why
                },
            ));
        }
        let pid = child.pid();
        Ok(Manager {
            ep: Endpoint::Local { addr, token, pid },
            pid,
            child: Mutex::new(Some(child)),
            _zygote: zygote,
            creator,
            stopped: AtomicBool::new(false),
        })
    }

    /// Where the server listens.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    /// The server process's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn create(&self, kind: Kind, init: Init) -> Result<ObjRef> {
        self.create_typed(kind, init, None)
    }

    /// Makes an object of a typed kind, recording the fingerprint of its
    /// types.
    pub(crate) fn create_typed(
        &self,
        kind: Kind,
        init: Init,
        ty: Option<TypeTag>,
    ) -> Result<ObjRef> {
        let r = client::call(
            &self.ep,
            &Request::Create(kind, init, ty.as_ref().map(TypeTag::desc)),
        )?;
        let id = expect_kind(r, &[kind], "the new object")?;
        Ok(ObjRef {
            ep: self.ep.clone(),
            id,
            ty,
        })
    }

    /// A new empty dict.
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone (as for every constructor below).
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::from_obj(self.create_typed(
            Kind::Dict,
            Init::Empty,
            Some(DictProxy::<K, V>::tag()),
        )?))
    }

    /// A new dict holding `pairs` (Python's `manager.dict({...})`).
    ///
    /// # Errors
    ///
    /// `Serialization` if a key or value cannot be encoded.
    pub fn dict_from<K, V, I>(&self, pairs: I) -> Result<DictProxy<K, V>>
    where
        K: Serialize,
        V: Serialize,
        I: IntoIterator<Item = (K, V)>,
    {
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    multiproc_ipc::codec::encode(&k)?,
                    multiproc_ipc::codec::encode(&v)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DictProxy::from_obj(self.create_typed(
            Kind::Dict,
            Init::Dict(pairs),
            Some(DictProxy::<K, V>::tag()),
        )?))
    }

    /// A new empty list.
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    pub fn list<T>(&self) -> Result<ListProxy<T>> {
        Ok(ListProxy::from_obj(self.create_typed(
            Kind::List,
            Init::Empty,
            Some(ListProxy::<T>::tag()),
        )?))
    }

    /// A new list holding `items`.
    ///
    /// # Errors
    ///
    /// `Serialization` if an item cannot be encoded.
    pub fn list_from<T: Serialize, I: IntoIterator<Item = T>>(
        &self,
        items: I,
    ) -> Result<ListProxy<T>> {
        let items = items
            .into_iter()
            .map(|v| Ok(multiproc_ipc::codec::encode(&v)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(ListProxy::from_obj(self.create_typed(
            Kind::List,
            Init::List(items),
            Some(ListProxy::<T>::tag()),
        )?))
    }

    /// A new unbounded queue.
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    pub fn queue<T>(&self) -> Result<QueueProxy<T>> {
        self.bounded_queue(0)
    }

    /// A new queue holding at most `maxsize` items (0: unbounded).
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    pub fn bounded_queue<T>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        Ok(QueueProxy::from_obj(self.create_typed(
            Kind::Queue,
            Init::Queue { maxsize },
            Some(QueueProxy::<T>::tag()),
        )?))
    }

    /// A new unbounded LIFO queue (Python's `queue.LifoQueue` served by a
    /// manager): [`get`](QueueProxy::get) takes the newest item. It has every
    /// [`QueueProxy`] method, with the same blocking, `Full` and `Empty`
    /// rules as a FIFO queue.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Manager;
    ///
    /// let manager = Manager::start()?;
    /// let stack = manager.lifo_queue::<u32>()?;
    /// for x in [1, 2, 3] {
    ///     stack.put(x)?;
    /// }
    /// assert_eq!(stack.get()?, 3);
    /// assert_eq!(stack.qsize()?, 2);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    pub fn lifo_queue<T>(&self) -> Result<QueueProxy<T>> {
        self.bounded_lifo_queue(0)
    }

    /// A new LIFO queue holding at most `maxsize` items (0: unbounded).
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    pub fn bounded_lifo_queue<T>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        Ok(QueueProxy::from_obj(self.create_typed(
            Kind::LifoQueue,
            Init::Queue { maxsize },
            Some(QueueProxy::<T>::tag()),
        )?))
    }

    /// A new unbounded priority queue (Python's `queue.PriorityQueue` served
    /// by a manager): [`get`](QueueProxy::get) takes the smallest item by
    /// `T`'s `Ord`, and of equal items the one put first. It has every
    /// [`QueueProxy`] method, with the same blocking, `Full` and `Empty`
    /// rules as a FIFO queue.
    ///
    /// The manager compares the items itself, decoded as `T` (it is a fork
    /// of this program, so it has `T`'s code): a put of an item that does
    /// not decode as a `T` fails with `Serialization` and leaves the queue
    /// unchanged (a proxy of another type is refused before that, see
    /// [Type fingerprints](crate#type-fingerprints)).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Manager;
    ///
    /// let manager = Manager::start()?;
    /// let jobs = manager.priority_queue::<(u8, String)>()?;
    /// jobs.put((2, "write the report".into()))?;
    /// jobs.put((1, "fix the outage".into()))?;
    /// jobs.put((2, "answer the mail".into()))?;
    /// assert_eq!(jobs.get()?.1, "fix the outage");
    /// assert_eq!(jobs.get()?.1, "answer the mail"); // (2, "a…") < (2, "w…")
    /// assert_eq!(jobs.get()?.1, "write the report");
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    ///
    /// # Caveats
    ///
    /// A panic in `T`'s `Ord` happens in the manager; the put or get that
    /// ran it fails with `TaskPanicked` (the item it was adding or taking
    /// may be lost).
    pub fn priority_queue<T>(&self) -> Result<QueueProxy<T>>
    where
        T: Ord + DeserializeOwned + Send + 'static,
    {
        self.bounded_priority_queue(0)
    }

    /// A new priority queue holding at most `maxsize` items (0: unbounded).
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    pub fn bounded_priority_queue<T>(&self, maxsize: usize) -> Result<QueueProxy<T>>
    where
        T: Ord + DeserializeOwned + Send + 'static,
    {
        let make: HeapMaker = FnRef::new(new_heap::<T>);
        Ok(QueueProxy::from_obj(self.create_typed(
            Kind::PriorityQueue,
            Init::PriorityQueue { maxsize, make },
            Some(QueueProxy::<T>::tag()),
        )?))
    }

    /// A new joinable queue.
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    pub fn joinable_queue<T>(&self) -> Result<JoinableQueueProxy<T>> {
        Ok(JoinableQueueProxy::from_obj(self.create_typed(
            Kind::JoinableQueue,
            Init::Queue { maxsize: 0 },
            Some(QueueProxy::<T>::tag()),
        )?))
    }

    /// A new lock.
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    pub fn lock(&self) -> Result<LockProxy> {
        Ok(LockProxy::from_obj(self.create(Kind::Lock, Init::Empty)?))
    }

    /// A new reentrant lock.
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    pub fn rlock(&self) -> Result<RLockProxy> {
        Ok(RLockProxy::from_obj(self.create(Kind::RLock, Init::Empty)?))
    }

    /// A new event, initially clear.
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    pub fn event(&self) -> Result<EventProxy> {
        Ok(EventProxy::from_obj(self.create(Kind::Event, Init::Empty)?))
    }

    /// A new semaphore with count `value`.
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    pub fn semaphore(&self, value: u64) -> Result<SemaphoreProxy> {
        Ok(SemaphoreProxy::from_obj(self.create(
            Kind::Semaphore,
            Init::Semaphore { value, bound: None },
        )?))
    }

    /// A new semaphore that may not be released above `value`.
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    pub fn bounded_semaphore(&self, value: u64) -> Result<SemaphoreProxy> {
        Ok(SemaphoreProxy::from_obj(self.create(
            Kind::Semaphore,
            Init::Semaphore {
                value,
                bound: Some(value),
            },
        )?))
    }

    /// A new value holding `initial`.
    ///
    /// # Errors
    ///
    /// `Serialization` if `initial` cannot be encoded.
    pub fn value<T: Serialize + DeserializeOwned>(&self, initial: T) -> Result<ValueProxy<T>> {
        let b = multiproc_ipc::codec::encode(&initial)?;
        Ok(ValueProxy::from_obj(self.create_typed(
            Kind::Value,
            Init::Value(b),
            Some(ValueProxy::<T>::tag()),
        )?))
    }

    /// A new empty namespace.
    ///
    /// # Errors
    ///
    /// As [`dict`](Manager::dict).
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        Ok(NamespaceProxy::from_obj(
            self.create(Kind::Namespace, Init::Empty)?,
        ))
    }

    /// Stops the server process and waits for it to exit (killing it if it
    /// does not within 5 s). Proxies fail with `Closed` afterwards.
    /// Idempotent.
    ///
    /// # Errors
    ///
    /// `Io` if the server could not be waited for.
    pub fn shutdown(&self) -> Result<()> {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let _ = client::call(&self.ep, &Request::Shutdown);
        client::forget(&self.ep);
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = child.as_mut() {
            if c.wait_timeout(SHUTDOWN_GRACE).is_err() {
                let _ = c.kill();
                c.wait()?;
            }
        }
        Ok(())
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if self.creator == std::process::id() {
            let _ = self.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(m: &Manager) -> (String, [u8; TOKEN], i32) {
        match m.endpoint() {
            Endpoint::Local { addr, token, pid } => (addr.clone(), *token, *pid),
            Endpoint::Remote { .. } => unreachable!("a local manager"),
        }
    }

    #[test]
    fn a_wrong_token_is_refused_with_the_first_request_and_others_are_served() {
        let m = Manager::start().expect("manager");
        let (addr, token, pid) = local(&m);
        let mut wrong = token;
        wrong[0] ^= 1;
        let mut intruder = LocalConn::connect(&addr, &wrong, pid).expect("the socket connects");
        let e = intruder.call(&Request::Ping).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Authentication, "{e}");
        assert!(!intruder.usable());
        let mut client = LocalConn::connect(&addr, &token, pid).expect("connect");
        client.call(&Request::Ping).expect("served");
        client
            .call(&Request::Ping)
            .expect("served again, on the channel");
    }

    #[test]
    fn an_oversized_first_request_frame_closes_that_connection_only() {
        let m = Manager::start().expect("manager");
        let (addr, token, pid) = local(&m);
        let mut raw = UnixStream::connect_addr(&abstract_addr(&addr).unwrap()).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        out.extend_from_slice(&(TOKEN as u32).to_le_bytes());
        out.extend_from_slice(&token);
        out.extend_from_slice(&(FIRST_REQUEST_MAX as u32 + 1).to_le_bytes());
        raw.write_all(&out).unwrap();
        // Closed without an answer (the length alone is refused).
        let mut b = [0u8; 16];
        assert_eq!(raw.read(&mut b).expect("closed, not timed out"), 0);
        let mut client = LocalConn::connect(&addr, &token, pid).expect("connect");
        client.call(&Request::Ping).expect("others are served");
    }
}
