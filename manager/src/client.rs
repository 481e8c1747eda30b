//! The client side: where a manager is, and this thread's connection to it.
//!
//! Proxies name their manager by an [`Endpoint`] and open connections
//! lazily, one per thread and per process: a proxy used in a forked child
//! (a `Process`, a pool worker) opens its own connection on first use and
//! never touches the one its parent had (Python's after-fork rule), and two
//! threads never wait on each other's blocking calls.

use std::cell::RefCell;
use std::net::SocketAddr;

use multiproc_ipc::codec::Codec;
use multiproc_ipc::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use crate::protocol::{Request, Response};

/// Where a manager listens, and the secret that lets us in.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Endpoint {
    /// A local manager process: an abstract unix socket name and its token.
    Local { addr: String, token: [u8; 32] },
    /// A remote manager: a TCP address and its authkey.
    Remote {
        addr: SocketAddr,
        authkey: Vec<u8>,
        max_frame: usize,
    },
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Endpoint::Local { addr, .. } => write!(f, "local manager @{addr}"),
            Endpoint::Remote { addr, .. } => write!(f, "remote manager {addr}"),
        }
    }
}

/// One open connection to a manager.
pub(crate) trait Conn {
    /// Sends a request and waits for its response. An `Err` is a transport
    /// failure: the connection is dropped and the next call reconnects.
    fn call(&mut self, req: &Request) -> Result<Response>;
}

struct Cached {
    ep: Endpoint,
    pid: u32,
    conn: Box<dyn Conn>,
}

thread_local! {
    static CONNS: RefCell<Vec<Cached>> = const { RefCell::new(Vec::new()) };
}

fn connect(ep: &Endpoint) -> Result<Box<dyn Conn>> {
    match ep {
        Endpoint::Local { addr, token } => {
            Ok(Box::new(crate::local::LocalConn::connect(addr, token)?))
        }
        Endpoint::Remote {
            addr,
            authkey,
            max_frame,
        } => Ok(Box::new(crate::remote::TcpConn::connect(
            *addr, authkey, *max_frame,
        )?)),
    }
}

/// Opens (or reuses) this thread's connection to `ep` now, to report
/// connection and authentication errors early.
pub(crate) fn ensure_connected(ep: &Endpoint) -> Result<()> {
    with_conn(ep, |_| Ok(()))
}

fn with_conn<R>(ep: &Endpoint, f: impl FnOnce(&mut dyn Conn) -> Result<R>) -> Result<R> {
    let pid = std::process::id();
    CONNS.with(|cell| {
        let mut conns = cell.borrow_mut();
        // Connections inherited from a parent process belong to the parent.
        if conns.iter().any(|c| c.pid != pid) {
            conns.retain(|c| c.pid == pid);
        }
        let i = match conns.iter().position(|c| c.ep == *ep) {
            Some(i) => i,
            None => {
                let conn = connect(ep)?;
                conns.push(Cached {
                    ep: ep.clone(),
                    pid,
                    conn,
                });
                conns.len() - 1
            }
        };
        let r = f(conns[i].conn.as_mut());
        if r.is_err() {
            conns.swap_remove(i);
        }
        r
    })
}

/// Forgets this thread's connection to `ep` (after a shutdown).
pub(crate) fn forget(ep: &Endpoint) {
    let _ = CONNS.try_with(|cell| {
        if let Ok(mut conns) = cell.try_borrow_mut() {
            conns.retain(|c| c.ep != *ep);
        }
    });
}

/// Runs `req` on the manager at `ep`; a `Response::Error` becomes an `Err`.
pub(crate) fn call(ep: &Endpoint, req: &Request) -> Result<Response> {
    match with_conn(ep, |c| c.call(req))? {
        Response::Error(w) => Err(Error::from(w)),
        r => Ok(r),
    }
}

/// The codec of manager messages with a frame limit.
pub(crate) fn codec(max: usize) -> Codec {
    Codec::with_max_message(max)
}

/// The error for a response of the wrong shape.
pub(crate) fn unexpected(what: &str) -> Error {
    Error::new(
        ErrorKind::Remote,
        format!("unexpected response from the manager to {what}"),
    )
}
