//! The client side: where a manager is, and this thread's connection to it.
//!
//! Proxies name their manager by an [`Endpoint`] and open connections
//! lazily, one per thread and per process: a proxy used in a forked child
//! (a `Process`, a pool worker) opens its own connection on first use and
//! never touches the one its parent had (Python's after-fork rule), and two
//! threads never wait on each other's blocking calls.

//!
//! # Secrets in serialized proxies
//!
//! A serialized local endpoint carries its manager's random token: the
//! socket is an abstract unix socket of this machine, and the token is made
//! for this one manager. A serialized remote endpoint never carries the
//! authkey (Python refuses to pickle one): it carries the address, the frame
//! limit and a key id, the first 16 bytes of SHA-256 over a fixed tag and
//! the authkey. The authkey itself stays in a process-wide registry filled
//! by `RemoteManager::connect`, which processes forked afterwards inherit
//! with the rest of their parent's memory; decoding looks the key up by id
//! and fails with a clear error where it is absent.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use multiproc_ipc::codec::Codec;
use multiproc_ipc::{Error, ErrorKind, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::protocol::{Request, Response};

/// The length of a key id in bytes.
const KEY_ID_LEN: usize = 16;

/// A non-secret name for an authkey, safe to serialize.
pub(crate) type KeyId = [u8; KEY_ID_LEN];

/// Domain separation: a key id is never the hash of the key in any other
/// protocol.
const KEY_ID_TAG: &[u8] = b"multiproc-manager authkey id v1\0";

/// The key id of `authkey`.
pub(crate) fn key_id(authkey: &[u8]) -> KeyId {
    let digest = Sha256::new()
        .chain_update(KEY_ID_TAG)
        .chain_update(authkey)
        .finalize();
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    id
}

/// The authkeys this process (or the parent it was forked from, before the
/// fork) connected with, by id. Entries are never removed.
static KEYS: Mutex<Vec<(KeyId, Arc<[u8]>)>> = Mutex::new(Vec::new());

/// Records the authkey of a remote endpoint (after it authenticated) so
/// that endpoints using it can be decoded in this process and in processes
/// forked from it later. Does nothing for a local endpoint.
pub(crate) fn register_key(ep: &Endpoint) {
    if let Endpoint::Remote {
        authkey, key_id, ..
    } = ep
    {
        let mut keys = KEYS.lock().unwrap_or_else(PoisonError::into_inner);
        if !keys.iter().any(|(k, _)| k == key_id) {
            keys.push((*key_id, Arc::clone(authkey)));
        }
    }
}

/// The registered authkey with id `id`.
fn registered_key(id: &KeyId) -> Option<Arc<[u8]>> {
    let keys = KEYS.lock().unwrap_or_else(PoisonError::into_inner);
    keys.iter()
        .find(|(k, _)| k == id)
        .map(|(_, key)| Arc::clone(key))
}

fn hex(id: &KeyId) -> String {
    id.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Where a manager listens, and the secret that lets us in.
///
/// Serializing never writes a remote authkey (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A local manager process: an abstract unix socket name, its token and
    /// the server process's pid (for error messages).
    Local {
        addr: String,
        token: [u8; 32],
        pid: i32,
    },
    /// A remote manager: a TCP address, its authkey and the key's id.
    Remote {
        addr: SocketAddr,
        authkey: Arc<[u8]>,
        key_id: KeyId,
        max_frame: usize,
    },
}

impl Endpoint {
    /// A remote endpoint (not registered: see [`register_key`]).
    pub(crate) fn remote(addr: SocketAddr, authkey: &[u8], max_frame: usize) -> Endpoint {
        Endpoint::Remote {
            addr,
            authkey: Arc::from(authkey),
            key_id: key_id(authkey),
            max_frame,
        }
    }
}

/// The serialized form of an [`Endpoint`], as written.
#[derive(Serialize)]
#[serde(rename = "Endpoint")]
enum WireRef<'a> {
    Local {
        addr: &'a str,
        token: &'a [u8; 32],
        pid: i32,
    },
    Remote {
        addr: &'a SocketAddr,
        key_id: &'a KeyId,
        max_frame: usize,
    },
}

/// The serialized form of an [`Endpoint`], as read.
#[derive(Deserialize)]
#[serde(rename = "Endpoint")]
enum Wire {
    Local {
        addr: String,
        token: [u8; 32],
        pid: i32,
    },
    Remote {
        addr: SocketAddr,
        key_id: KeyId,
        max_frame: usize,
    },
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Endpoint::Local { addr, token, pid } => WireRef::Local {
                addr,
                token,
                pid: *pid,
            },
            Endpoint::Remote {
                addr,
                key_id,
                max_frame,
                ..
            } => WireRef::Remote {
                addr,
                key_id,
                max_frame: *max_frame,
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Wire::deserialize(d)? {
            Wire::Local { addr, token, pid } => Ok(Endpoint::Local { addr, token, pid }),
            Wire::Remote {
                addr,
                key_id,
                max_frame,
            } => match registered_key(&key_id) {
                Some(authkey) => Ok(Endpoint::Remote {
                    addr,
                    authkey,
                    key_id,
                    max_frame,
                }),
                None => Err(serde::de::Error::custom(format_args!(
                    "a proxy for the remote manager at {addr} needs its authkey \
                     (key id {}), which this process does not have: call \
                     RemoteManager::connect with the authkey in this process first \
                     (processes forked after a connect inherit its key)",
                    hex(&key_id)
                ))),
            },
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Endpoint::Local { pid, .. } => write!(f, "manager (pid {pid})"),
            Endpoint::Remote { addr, .. } => write!(f, "manager at {addr}"),
        }
    }
}

/// One open connection to a manager.
pub(crate) trait Conn {
    /// Sends a request and waits for its response. An `Err` after the
    /// request started out leaves the connection unusable.
    fn call(&mut self, req: &Request) -> Result<Response>;

    /// False once the connection cannot carry another request: a request
    /// failed half-way, or (remote connections) the manager closed it.
    /// Called before every request, so it must be cheap.
    fn usable(&mut self) -> bool;
}

struct Cached {
    ep: Endpoint,
    pid: u32,
    conn: Box<dyn Conn>,
    /// Unique to this connection in this process: a lock guard remembers
    /// the connection it locked through.
    serial: u64,
    /// Lock acquisitions through this connection not yet released through
    /// it: the manager releases them if the connection is lost.
    held: u64,
}

thread_local! {
    static CONNS: RefCell<Vec<Cached>> = const { RefCell::new(Vec::new()) };
}

static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

fn connect(ep: &Endpoint) -> Result<Box<dyn Conn>> {
    match ep {
        Endpoint::Local { addr, token, pid } => Ok(Box::new(crate::local::LocalConn::connect(
            addr, token, *pid,
        )?)),
        Endpoint::Remote {
            addr,
            authkey,
            max_frame,
            ..
        } => Ok(Box::new(crate::remote::TcpConn::connect(
            *addr, authkey, *max_frame,
        )?)),
    }
}

/// Opens (or checks) this thread's connection to `ep` now, to report
/// connection and authentication errors early: on `Ok` the connection has
/// just answered a request. A cached connection that fails the check (its
/// server went away, perhaps replaced by a new one on the same address) is
/// replaced by a new one.
pub(crate) fn ensure_connected(ep: &Endpoint) -> Result<()> {
    let reused = CONNS.with(|cell| {
        cell.borrow()
            .iter()
            .any(|c| c.ep == *ep && c.pid == std::process::id())
    });
    match call(ep, &Request::Ping) {
        Ok(_) => Ok(()),
        // A ping changes nothing, so it can be sent again on a new connection.
        Err(_) if reused => call(ep, &Request::Ping).map(drop),
        Err(e) => Err(e),
    }
}

/// The error for a call that found its connection lost while the thread
/// held locks through it.
fn locks_lost(ep: &Endpoint, held: u64) -> Error {
    Error::new(
        ErrorKind::Closed,
        format!(
            "the connection to the {ep:?} was lost while this thread held {held} lock \
             acquisition(s) through it, which the manager has released; the call was \
             not sent (the next call opens a new connection)"
        ),
    )
}

/// What a request does to the locks its connection holds.
#[derive(Clone, Copy)]
enum Hold {
    Nothing,
    /// A lock acquire: counts on success.
    Acquire,
    /// A lock release, through the connection with this serial when the
    /// lock was taken by a guard (anything else: not sent).
    Release(Option<u64>),
}

fn with_conn<R>(
    ep: &Endpoint,
    hold: Hold,
    f: impl FnOnce(&mut dyn Conn) -> Result<R>,
) -> Result<(R, u64)> {
    // Cached: a request must not pay a system call to tell this process
    // from a child forked since the connection was made.
    let pid = multiproc_ipc::process::current_pid();
    CONNS.with(|cell| {
        let mut conns = cell.borrow_mut();
        // Connections inherited from a parent process belong to the parent.
        if conns.iter().any(|c| c.pid != pid) {
            conns.retain(|c| c.pid == pid);
        }
        let mut found = conns.iter().position(|c| c.ep == *ep);
        if let Some(i) = found {
            if !conns[i].conn.usable() {
                // Lost between two requests: no request was in flight, so a
                // new connection is safe, unless locks went with the old one.
                let dead = conns.swap_remove(i);
                found = None;
                if dead.held > 0 {
                    return Err(locks_lost(ep, dead.held));
                }
            }
        }
        if let Hold::Release(Some(serial)) = hold {
            // A guard's lock lives and dies with the connection that took it.
            if found.is_none_or(|i| conns[i].serial != serial) {
                return Err(Error::new(
                    ErrorKind::Closed,
                    format!(
                        "the lock was released by the {ep:?} when the connection \
                         that took it was lost"
                    ),
                ));
            }
        }
        let i = match found {
            Some(i) => i,
            None => {
                // A forked child of this process closes its connections as
                // it exits (once registered, inherited by every fork).
                let _ = multiproc_ipc::process::at_child_exit(close_connections);
                let conn = connect(ep)?;
                conns.push(Cached {
                    ep: ep.clone(),
                    pid,
                    conn,
                    serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
                    held: 0,
                });
                conns.len() - 1
            }
        };
        let c = &mut conns[i];
        let r = f(c.conn.as_mut());
        if r.is_err() && !c.conn.usable() {
            let dead = conns.swap_remove(i);
            return Err(match r {
                Err(e) if dead.held > 0 => Error::new(
                    e.kind(),
                    format!(
                        "{e}; the {} lock acquisition(s) this thread held through the \
                         connection were released by the manager",
                        dead.held
                    ),
                ),
                Err(e) => e,
                Ok(_) => unexpected("a request"),
            });
        }
        Ok((r?, c.serial))
    })
}

/// Closes this thread's connections of this process: run by a forked child
/// as it exits (`at_child_exit`; a child ends with `_exit`, which runs no
/// destructor), so that the manager sees each connection close at once
/// instead of at its next look at the socket, and frees its handler.
fn close_connections() {
    let pid = std::process::id();
    let _ = CONNS.try_with(|cell| {
        if let Ok(mut conns) = cell.try_borrow_mut() {
            conns.retain(|c| c.pid != pid);
        }
    });
}

/// Forgets this thread's connection to `ep` (after a shutdown).
pub(crate) fn forget(ep: &Endpoint) {
    let _ = CONNS.try_with(|cell| {
        if let Ok(mut conns) = cell.try_borrow_mut() {
            conns.retain(|c| c.ep != *ep);
        }
    });
}

fn counted(ep: &Endpoint, serial: u64, delta: i8) {
    let _ = CONNS.try_with(|cell| {
        if let Ok(mut conns) = cell.try_borrow_mut() {
            if let Some(c) = conns.iter_mut().find(|c| c.ep == *ep && c.serial == serial) {
                c.held = match delta {
                    1 => c.held.saturating_add(1),
                    _ => c.held.saturating_sub(1),
                };
            }
        }
    });
}

fn call_with(ep: &Endpoint, req: &Request, hold: Hold) -> Result<(Response, u64)> {
    match with_conn(ep, hold, |c| c.call(req))? {
        (Response::Error(w), _) => Err(Error::from(w)),
        (r, serial) => {
            match (hold, &r) {
                (Hold::Acquire, Response::Bool(true)) => counted(ep, serial, 1),
                (Hold::Release(_), Response::Unit) => counted(ep, serial, -1),
                _ => {}
            }
            Ok((r, serial))
        }
    }
}

/// Runs a lock (or rlock) acquire; returns the response and the serial of
/// the connection that carried it, for a guard to release through.
pub(crate) fn acquire_lock(ep: &Endpoint, req: &Request) -> Result<(Response, u64)> {
    call_with(ep, req, Hold::Acquire)
}

/// Runs a lock (or rlock) release; `through` is the serial a guard got from
/// [`acquire_lock`] (the release is not sent if that connection is gone).
pub(crate) fn release_lock(ep: &Endpoint, req: &Request, through: Option<u64>) -> Result<Response> {
    call_with(ep, req, Hold::Release(through)).map(|(r, _)| r)
}

/// Runs `req` on the manager at `ep`; a `Response::Error` becomes an `Err`.
pub(crate) fn call(ep: &Endpoint, req: &Request) -> Result<Response> {
    call_with(ep, req, Hold::Nothing).map(|(r, _)| r)
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

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use multiproc_ipc::codec;

    use super::*;
    use crate::{ManagerServer, RemoteManager};

    /// A key no other test (nor any earlier run) registers.
    fn fresh_key(tag: &str) -> Vec<u8> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{tag} {} {nanos} key material", std::process::id()).into_bytes()
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn remote_endpoint_bytes_hold_the_key_id_not_the_key() {
        let key = fresh_key("bytes");
        let ep = Endpoint::remote(SocketAddr::from(([127, 0, 0, 1], 9)), &key, 4096);
        let bytes = codec::encode(&ep).unwrap();
        assert!(!contains(&bytes, &key));
        assert!(contains(&bytes, &key_id(&key)));
        assert!(!format!("{ep:?}").contains("key material"));
        // Registered, it decodes to the same endpoint, authkey included.
        register_key(&ep);
        assert_eq!(codec::decode::<Endpoint>(&bytes).unwrap(), ep);
    }

    #[test]
    fn key_ids_differ_by_key_and_are_not_a_prefix_of_the_key_hash() {
        assert_ne!(key_id(b"a"), key_id(b"b"));
        let plain = Sha256::digest(b"a");
        assert_ne!(key_id(b"a")[..], plain[..KEY_ID_LEN]);
    }

    #[test]
    fn unknown_key_fails_to_decode_until_connect_registers_it() {
        let key = fresh_key("unknown");
        let server = ManagerServer::builder(&key)
            .dict("d")
            .quiet(true)
            .bind("127.0.0.1:0")
            .unwrap();
        // Crafted here, as another process holding the key would send it;
        // nothing in this process has connected with this key yet.
        let ep = Endpoint::remote(server.local_addr(), &key, crate::DEFAULT_MAX_FRAME);
        let obj = crate::proxy::ObjRef {
            ep,
            id: 0,
            ty: None,
        };
        let bytes = codec::encode(&obj).unwrap();
        let err = codec::decode::<crate::proxy::ObjRef>(&bytes).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("RemoteManager::connect"), "{msg}");
        assert!(msg.contains(&server.local_addr().to_string()), "{msg}");
        let err = Error::from(err);
        assert_eq!(err.kind(), ErrorKind::Serialization);

        // A failed connect (wrong key) registers nothing.
        let wrong = fresh_key("wrong");
        let e = RemoteManager::connect(server.local_addr(), &wrong).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Authentication);
        let other = Endpoint::remote(server.local_addr(), &wrong, 4096);
        let other = codec::encode(&other).unwrap();
        assert!(codec::decode::<Endpoint>(&other).is_err());

        let remote = RemoteManager::connect(server.local_addr(), &key).unwrap();
        let d = remote.dict::<u32, u32>("d").unwrap();
        d.insert(&1, &2).unwrap();
        let d2: crate::DictProxy<u32, u32> = codec::decode(&codec::encode(&d).unwrap()).unwrap();
        assert_eq!(d2, d);
        assert_eq!(d2.get(&1).unwrap(), Some(2));
        assert!(codec::decode::<crate::proxy::ObjRef>(&bytes).is_ok());
        server.shutdown();
    }
}
