//! The manager process's side of a local manager: its main and its
//! connection threads (the protocol is in the module docs of `local`).

use std::cell::Cell;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc_ipc::codec::Codec;
use multiproc_ipc::fd;
use multiproc_ipc::shmchan::{spin_budget, ShmChannel};
use multiproc_ipc::Error;
use serde::{Deserialize, Serialize};

use super::wire::{
    abstract_addr, ct_eq, peer_gone, read_frame, CHANNEL_CAPACITY, CHANNEL_TAG, FIRST_REQUEST_MAX,
    HANDSHAKE_TIMEOUT, SERVER_SPIN, TOKEN, WAITING,
};
use super::READY;
use crate::protocol::{Request, Response};
use crate::store::{Peer, Store};

#[derive(Serialize, Deserialize)]
pub(super) struct ServerArgs {
    pub(super) token: [u8; TOKEN],
    pub(super) addr: String,
    /// The scheduler slice the server's threads ask for (0: none).
    pub(super) slice_ns: u64,
}

/// Shared by the manager's threads.
struct ServerState {
    store: Store,
    token: [u8; TOKEN],
    listener: UnixListener,
    /// Told when a client asks for shutdown.
    stop: Mutex<std::sync::mpsc::Sender<()>>,
    /// Set once shutting down: a handler that accepts a client then ends.
    stopping: AtomicBool,
    /// Handler threads waiting in `accept`.
    idle: AtomicUsize,
    next_id: AtomicU64,
}

/// Handler threads kept ready (spawning a thread costs more than the rest
/// of a connection's set-up): this many at start, and a new one whenever a
/// client takes one and fewer are left waiting.
const SPARE_HANDLERS: usize = 2;

/// A handler whose client has gone waits for the next one unless this many
/// already wait: short-lived clients (a `Process` per task) then reuse the
/// same threads instead of costing a thread start and exit each.
const MAX_IDLE_HANDLERS: usize = 4;

struct LocalPeer<'a> {
    id: u64,
    sock: &'a UnixStream,
    state: &'a Arc<ServerState>,
    /// The request is the connection's first, made on the socket: the
    /// client bounds its wait for the manager's first word, so a request
    /// that waits must say so first ([`WAITING`]).
    first: Cell<bool>,
    /// Too few handlers were left waiting when this one took its client: it
    /// starts another once it has answered the first request, or before it
    /// waits in a request (a queue's `get` that never ends must not leave
    /// the next client without a handler to accept it).
    owes_spare: Cell<bool>,
}

impl LocalPeer<'_> {
    /// Starts the handler this one owes, if any.
    fn pay_spare(&self) {
        if self.owes_spare.replace(false) {
            spawn_handler(self.state);
        }
    }
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
    fn waiting(&self) {
        if self.first.replace(false) {
            // A failed write is seen by the response's.
            let _ = (&*self.sock).write_all(&WAITING.to_le_bytes());
        }
        self.pay_spare();
    }
}

/// The manager process's main: bind the socket, report readiness on the
/// descriptor it was given, and accept clients until told to shut down.
///
/// The socket is made here, in the manager, so that no other process (a
/// zygote or child forked from the caller meanwhile) can hold a copy of it.
pub(super) fn manager_main(args: ServerArgs, mut fds: Vec<OwnedFd>) -> i32 {
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
        stopping: AtomicBool::new(false),
        idle: AtomicUsize::new(0),
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
    state.stopping.store(true, Ordering::SeqCst);
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

/// A connection thread: accepts the next client, serves it, and starts
/// over while spares are needed.
fn handler(state: &Arc<ServerState>) {
    loop {
        state.idle.fetch_add(1, Ordering::SeqCst);
        let accepted = loop {
            match state.listener.accept() {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
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
        if state.stopping.load(Ordering::SeqCst) {
            return;
        }
        let id = state.next_id.fetch_add(1, Ordering::Relaxed);
        serve_local(stream, state, id, idle < SPARE_HANDLERS);
        state.store.release_owned(id);
        if state.idle.load(Ordering::SeqCst) >= MAX_IDLE_HANDLERS {
            return;
        }
    }
}

/// Decodes and handles the request in `req`, and appends the encoded
/// response to `out`. `None`: the request is malformed (the connection is
/// closed); else whether it asked for shutdown.
fn respond(
    codec: &Codec,
    store: &Store,
    req: &[u8],
    peer: &LocalPeer,
    out: &mut Vec<u8>,
) -> Option<bool> {
    let req: Request = match codec.decode(req) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "the manager closed a connection after a malformed request");
            return None;
        }
    };
    let shutdown = matches!(req, Request::Shutdown);
    let resp = if shutdown {
        Response::Unit
    } else {
        store.handle(req, peer)
    };
    let start = out.len();
    if let Err(e) = codec.encode_into(&resp, out) {
        out.truncate(start);
        let fallback = Response::Error(Error::from(e).to_wire());
        codec.encode_into(&fallback, out).ok()?;
    }
    Some(shutdown)
}

fn serve_local(mut sock: UnixStream, state: &Arc<ServerState>, id: u64, need_spare: bool) {
    if sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).is_err() {
        return;
    }
    let mut buf = Vec::with_capacity(256);
    match read_frame(&mut sock, TOKEN, &mut buf) {
        Ok(()) if ct_eq(&buf, &state.token) => {}
        _ => return, // wrong token or a broken client: just close
    }
    // The client's first request, sent with the token (empty: it asks for
    // the channel).
    if read_frame(&mut sock, FIRST_REQUEST_MAX, &mut buf).is_err() {
        return;
    }
    // From here on the client takes as long as it likes between requests.
    if sock.set_read_timeout(None).is_err() {
        return;
    }
    let peer = LocalPeer {
        id,
        sock: &sock,
        state,
        first: Cell::new(true),
        owes_spare: Cell::new(need_spare),
    };
    let codec = Codec::default();
    let mut out = Vec::with_capacity(256);
    // On the socket, until the client asks for the channel.
    while !buf.is_empty() {
        out.clear();
        out.extend_from_slice(&[0; 4]);
        let Some(shutdown) = respond(&codec, &state.store, &buf, &peer, &mut out) else {
            return;
        };
        peer.first.set(false);
        let Ok(len) = u32::try_from(out.len() - 4) else {
            // Beyond any codec's limit.
            return;
        };
        out[..4].copy_from_slice(&len.to_le_bytes());
        if (&sock).write_all(&out).is_err() {
            return;
        }
        if shutdown {
            stop(state);
            return;
        }
        // While the client reads its answer.
        peer.pay_spare();
        if read_frame(&mut &sock, FIRST_REQUEST_MAX, &mut buf).is_err() {
            return;
        }
    }
    peer.first.set(false);
    let mut chan = match ShmChannel::create(CHANNEL_CAPACITY) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the manager cannot create a channel");
            return;
        }
    };
    let Some(chan_fd) = chan.fd() else {
        return;
    };
    if fd::send_handles(sock.as_fd(), CHANNEL_TAG, &[chan_fd], false).is_err() {
        return;
    }
    // While the client attaches to the channel.
    peer.pay_spare();
    let gone = || peer_gone(&sock);
    loop {
        // Asked for each request: a busy machine seen since the last one
        // turns spinning off for a while (see multiproc_ipc::spin).
        if chan
            .recv(&mut buf, spin_budget(SERVER_SPIN), &gone)
            .is_err()
        {
            return;
        }
        out.clear();
        let Some(shutdown) = respond(&codec, &state.store, &buf, &peer, &mut out) else {
            return;
        };
        if chan.send(&out, &gone).is_err() {
            return;
        }
        if shutdown {
            stop(state);
            return;
        }
    }
}

/// Tells the manager's main thread to end the process.
fn stop(state: &ServerState) {
    let _ = state
        .stop
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(());
}
