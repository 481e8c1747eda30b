//! The local manager: a forked server process that owns shared objects.
//!
//! [`Manager::start`] forks the server (through the fork server when
//! [`multiproc::init`](multiproc_ipc::init) ran, else itself when the caller runs a single
//! thread, else through a fresh single-threaded zygote)
//! and hands it a listening unix socket in the abstract namespace.
//!
//! # The protocol
//!
//! A client connects and sends the manager's random token together with
//! its first request, as two frames ([`wire`]) in one write; the manager
//! answers on the socket. A connection thus costs its first request one
//! round trip: a process that connects inside a critical section (a
//! `Process` child's `with lock: d[k] -= 1`) holds its lock no longer than
//! that. Its next requests go on the socket too, a frame each way, until it
//! has made [`SOCKET_REQUESTS`](wire::SOCKET_REQUESTS) of them or one is
//! larger than [`FIRST_REQUEST_MAX`](wire::FIRST_REQUEST_MAX): then it sends
//! an empty frame, the manager answers with a
//! [`ShmChannel`](multiproc_ipc::shmchan::ShmChannel) made for it
//! (its memory file), and from then on every request and response is a
//! shared-memory hand-off (a short spin, then a futex sleep) and the socket
//! stays open only so that each side notices when the other dies. A
//! short-lived client (a `Process` per task) never pays for a channel it
//! would use once; a busy one soon has its requests spun on instead of
//! woken for.
//!
//! The client bounds its wait for the manager's first word on a connection
//! (a manager that accepts no one must not hang it); a first request that
//! waits (a queue's `get`) or runs the client's function (`update_with`)
//! is preceded by a [`WAITING`](wire::WAITING) frame, after which the
//! client waits as long as the request takes. The manager closes a
//! connection whose token is wrong, whose frame is oversized or whose
//! request does not decode; other clients are not affected.

use std::fmt;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use multiproc_ipc::{Error, ErrorKind, FnRef, Result, Zygote, ZygoteChild};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::{self, Endpoint};
use crate::protocol::{Init, Kind, Request};
use crate::proxy::{
    expect_kind, DictProxy, EventProxy, JoinableQueueProxy, ListProxy, LockProxy, NamespaceProxy,
    ObjRef, QueueProxy, RLockProxy, SemaphoreProxy, ValueProxy,
};
use crate::queues::{new_heap, HeapMaker};
use crate::typetag::TypeTag;

mod conn;
mod server;
#[cfg(test)]
mod tests;
mod wire;

pub(crate) use conn::LocalConn;
use server::{manager_main, ServerArgs};
use wire::{HANDSHAKE_TIMEOUT, TOKEN};

const READY: &[u8] = b"ready";
/// The longest time `shutdown` waits for the server to exit before killing it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
