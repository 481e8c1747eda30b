//! The objects a manager serves, and the engine that runs requests on them.
//!
//! Both the local manager process and the remote [`ManagerServer`](crate::ManagerServer)
//! run a [`Store`]: one thread per connection calls [`Store::handle`]. Each
//! object has its own mutex and condition variable, so a client blocked in a
//! queue `get` or a lock `acquire` holds up nobody else.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant};

use multiproc_ipc::process::catch_remote_panic;
use multiproc_ipc::shmchan::{spin_budget, yield_briefly, SpinPermit};
use multiproc_ipc::{Error, ErrorKind, WireError};

use crate::ordmap::OrderedMap;
use crate::protocol::{Block, Bytes, Init, Kind, Op, Request, Response, Updater};
use crate::queues::Items;
use crate::shared::Served;
use crate::typetag::TypeDesc;

/// A callable registered on a server: decodes its argument, runs, encodes.
pub(crate) type CallFn = Arc<dyn Fn(&[u8]) -> Result<Bytes, WireError> + Send + Sync>;

/// How long a blocked operation polls before it sleeps.
const WAIT_SPIN: Duration = Duration::from_micros(50);

/// How often a blocked operation checks that its client is still there.
const PEER_PROBE: Duration = Duration::from_millis(100);

enum State {
    Dict(OrderedMap),
    List(Vec<Bytes>),
    Queue {
        items: Items,
        maxsize: usize,
        unfinished: u64,
    },
    Lock {
        owner: Option<u64>,
    },
    RLock {
        owner: Option<u64>,
        count: u64,
    },
    Event(bool),
    Semaphore {
        value: u64,
        bound: Option<u64>,
    },
    Value(Bytes),
    Namespace(HashMap<String, Bytes>),
    Callable(CallFn),
    Shared(Box<dyn Served>),
}

struct Object {
    kind: Kind,
    state: Mutex<State>,
    cond: Condvar,
    /// Bumped on every change that may let a waiter go on: pollers watch it
    /// without taking the mutex.
    version: AtomicU64,
    /// Threads asleep on `cond` (a notification without sleepers is skipped).
    sleepers: AtomicU64,
    /// The types the object was made or first looked up with (typed kinds).
    ty: OnceLock<TypeDesc>,
}

impl Object {
    /// Fixes the object's types if it has none yet; `Err` with a
    /// `WrongType` response if they differ from `fp`.
    fn check_type(&self, want: Option<&TypeDesc>, fp: Option<u64>) -> Result<(), Response> {
        let held = match want {
            Some(w) => Some(self.ty.get_or_init(|| w.clone())),
            None => self.ty.get(),
        };
        match (held, fp.or(want.map(|w| w.fp))) {
            (Some(held), Some(fp)) if held.fp != fp => {
                Err(Response::WrongType(self.kind, held.name.clone()))
            }
            _ => Ok(()),
        }
    }
}

impl Object {
    /// Call with the state locked, after a change waiters may care about.
    fn changed(&self) {
        self.version.fetch_add(1, Ordering::Release);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.cond.notify_all();
        }
    }
}

/// The connection a request came from.
pub(crate) trait Peer {
    /// A number unique to the connection (lock ownership).
    fn id(&self) -> u64;
    /// True for clients of a local manager: they may create objects, run
    /// functions (`update_with`) and shut the server down.
    fn trusted(&self) -> bool;
    /// True once the client has disconnected or died.
    fn gone(&self) -> bool;
    /// Told before the request may take long: before it waits (a queue's
    /// `get`, a lock) or runs the client's function (`update_with`).
    fn waiting(&self) {}
}

/// All objects of one server.
pub(crate) struct Store {
    objects: RwLock<HashMap<u64, Arc<Object>>>,
    names: RwLock<HashMap<String, u64>>,
    next: AtomicU64,
}

fn err(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error(Error::new(kind, message).to_wire())
}

fn wire(e: &Error) -> Response {
    Response::Error(e.to_wire())
}

/// A Python-style index (negative counts from the end) into a list of `len`.
fn index(i: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let j = if i < 0 { i.checked_add(len)? } else { i };
    if (0..len).contains(&j) {
        usize::try_from(j).ok()
    } else {
        None
    }
}

/// Where `insert(i, x)` puts `x` in a list of `len` (Python clamps).
fn insert_index(i: i64, len: usize) -> usize {
    let l = i64::try_from(len).unwrap_or(i64::MAX);
    let j = if i < 0 {
        (i.saturating_add(l)).max(0)
    } else {
        i.min(l)
    };
    usize::try_from(j).unwrap_or(len)
}

fn run_updater(updater: &Updater, f: Bytes, old: Option<Bytes>) -> Result<Bytes, Error> {
    let tramp = updater.get()?;
    match catch_remote_panic(|| tramp((f, old))) {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(w)) => Err(Error::from(w)),
        Err(panic) => Err(Error::panicked(panic)),
    }
}

/// Runs a registered callable; a panic becomes a `TaskPanicked` response
/// with its message and location, as a pool task's does, and the
/// connection thread goes on serving.
fn run_callable(f: &CallFn, arg: &[u8]) -> Response {
    match catch_remote_panic(|| f(arg)) {
        Ok(Ok(bytes)) => Response::Value(bytes),
        Ok(Err(w)) => Response::Error(w),
        Err(panic) => wire(&Error::panicked(panic)),
    }
}

enum WaitEnd {
    Timeout,
    NoWait,
    Gone,
}

/// Waits on `obj` until `ready` holds, within `block`; returns the guard.
fn wait_until<'a>(
    obj: &'a Object,
    mut guard: MutexGuard<'a, State>,
    block: Block,
    peer: &dyn Peer,
    mut ready: impl FnMut(&mut State) -> bool,
) -> Result<MutexGuard<'a, State>, WaitEnd> {
    let deadline = match block {
        // A wait too long to reach (a client's `Duration::MAX`) is a wait
        // forever; `Instant + Duration` would panic on it.
        Block::For(d) => Instant::now().checked_add(d),
        _ => None,
    };
    if ready(&mut guard) {
        return Ok(guard);
    }
    if matches!(block, Block::No) {
        return Err(WaitEnd::NoWait);
    }
    // A short poll first: the other party is often a request away, and a
    // condition-variable sleep costs a blocking wake-up (about 25 µs).
    // The budget first: a permit counts its holder among the program's
    // spinners, which the budget's look at the machine leaves aside.
    let spin = spin_budget(WAIT_SPIN);
    if let Some(_permit) = SpinPermit::acquire() {
        let start = Instant::now();
        while start.elapsed() < spin {
            let seen = obj.version.load(Ordering::Acquire);
            drop(guard);
            let mut busy = false;
            while obj.version.load(Ordering::Acquire) == seen && start.elapsed() < spin {
                // The party we wait for may need this CPU: poll between yields.
                if !yield_briefly() {
                    busy = true;
                    break;
                }
            }
            guard = obj.state.lock().unwrap_or_else(|p| p.into_inner());
            if ready(&mut guard) {
                return Ok(guard);
            }
            if busy {
                break;
            }
        }
    }
    loop {
        if ready(&mut guard) {
            return Ok(guard);
        }
        let slice = match (block, deadline) {
            (Block::No, _) => return Err(WaitEnd::NoWait),
            (_, Some(dl)) => {
                let now = Instant::now();
                if now >= dl {
                    return Err(WaitEnd::Timeout);
                }
                (dl - now).min(PEER_PROBE)
            }
            _ => PEER_PROBE,
        };
        peer.waiting();
        obj.sleepers.fetch_add(1, Ordering::SeqCst);
        let (g, res) = obj
            .cond
            .wait_timeout(guard, slice)
            .unwrap_or_else(|p| p.into_inner());
        obj.sleepers.fetch_sub(1, Ordering::SeqCst);
        guard = g;
        // Checked after every wake-up, not only on timeouts: a client that
        // died while waiting must not take an item or a lock it can never use.
        let _ = res;
        if peer.gone() {
            return Err(WaitEnd::Gone);
        }
    }
}

fn wait_error(end: WaitEnd, what: &str, no_wait: ErrorKind) -> Response {
    match end {
        WaitEnd::NoWait => err(no_wait, what.to_owned()),
        WaitEnd::Timeout => err(ErrorKind::Timeout, format!("{what} (timed out)")),
        WaitEnd::Gone => err(ErrorKind::Closed, "the client disconnected"),
    }
}

impl Store {
    pub(crate) fn new() -> Store {
        Store::with_first_id(1)
    }

    /// A store whose object ids count up from `first` (below 2^62, so they
    /// never wrap). A remote server starts at a random id, so that a proxy
    /// of a server that was restarted on the same address names no object
    /// of the new one.
    pub(crate) fn with_first_id(first: u64) -> Store {
        Store {
            objects: RwLock::new(HashMap::new()),
            names: RwLock::new(HashMap::new()),
            next: AtomicU64::new(first.clamp(1, 1 << 62)),
        }
    }

    fn insert(&self, kind: Kind, state: State) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let obj = Arc::new(Object {
            kind,
            state: Mutex::new(state),
            cond: Condvar::new(),
            version: AtomicU64::new(0),
            sleepers: AtomicU64::new(0),
            ty: OnceLock::new(),
        });
        self.objects
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, obj);
        id
    }

    fn make(&self, kind: Kind, init: Init) -> Result<u64, Error> {
        let bad = || {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("bad initial state for a {}", kind.name()),
            )
        };
        let state = match (kind, init) {
            (Kind::Dict, Init::Empty) => State::Dict(OrderedMap::new()),
            (Kind::Dict, Init::Dict(pairs)) => State::Dict(pairs.into_iter().collect()),
            (Kind::List, Init::Empty) => State::List(Vec::new()),
            (Kind::List, Init::List(items)) => State::List(items),
            (Kind::Queue | Kind::JoinableQueue, Init::Queue { maxsize }) => State::Queue {
                items: Items::Fifo(VecDeque::new()),
                maxsize,
                unfinished: 0,
            },
            (Kind::LifoQueue, Init::Queue { maxsize }) => State::Queue {
                items: Items::Lifo(Vec::new()),
                maxsize,
                unfinished: 0,
            },
            (Kind::PriorityQueue, Init::PriorityQueue { maxsize, make }) => State::Queue {
                items: Items::Priority(make.call(())?),
                maxsize,
                unfinished: 0,
            },
            (Kind::Lock, Init::Empty) => State::Lock { owner: None },
            (Kind::RLock, Init::Empty) => State::RLock {
                owner: None,
                count: 0,
            },
            (Kind::Event, Init::Empty) => State::Event(false),
            (Kind::Semaphore, Init::Semaphore { value, bound }) => {
                State::Semaphore { value, bound }
            }
            (Kind::Value, Init::Value(v)) => State::Value(v),
            (Kind::Namespace, Init::Empty) => State::Namespace(HashMap::new()),
            (Kind::Shared, Init::Shared { make, state, .. }) => {
                State::Shared(make.call(state)?.map_err(Error::from)?)
            }
            _ => return Err(bad()),
        };
        Ok(self.insert(kind, state))
    }

    /// Registers a new object under `name` (remote servers), of the types
    /// `ty` if given (else the first typed lookup fixes them).
    pub(crate) fn register(
        &self,
        name: &str,
        kind: Kind,
        init: Init,
        ty: Option<TypeDesc>,
    ) -> Result<u64, Error> {
        let id = self.make(kind, init)?;
        if let (Some(ty), Some(obj)) = (ty, self.get(id)) {
            let _ = obj.ty.set(ty);
        }
        self.bind(name, id)?;
        Ok(id)
    }

    /// Registers a shared object of the types `ty` under `name`.
    pub(crate) fn register_shared(
        &self,
        name: &str,
        obj: Box<dyn Served>,
        ty: TypeDesc,
    ) -> Result<u64, Error> {
        let id = self.insert(Kind::Shared, State::Shared(obj));
        if let Some(obj) = self.get(id) {
            let _ = obj.ty.set(ty);
        }
        self.bind(name, id)?;
        Ok(id)
    }

    /// Registers a callable of the types `ty` under `name`.
    pub(crate) fn register_callable(
        &self,
        name: &str,
        f: CallFn,
        ty: TypeDesc,
    ) -> Result<u64, Error> {
        let id = self.insert(Kind::Callable, State::Callable(f));
        if let Some(obj) = self.get(id) {
            let _ = obj.ty.set(ty);
        }
        self.bind(name, id)?;
        Ok(id)
    }

    fn bind(&self, name: &str, id: u64) -> Result<(), Error> {
        let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
        if names.contains_key(name) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("the name {name:?} is already registered"),
            ));
        }
        names.insert(name.to_owned(), id);
        Ok(())
    }

    /// The id and object registered under `name`.
    fn lookup(&self, name: &str) -> Option<(u64, Arc<Object>)> {
        let id = self
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()?;
        self.get(id).map(|o| (id, o))
    }

    /// Forgets the object `id` (one whose registration failed).
    fn remove(&self, id: u64) {
        self.objects
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    fn get(&self, id: u64) -> Option<Arc<Object>> {
        self.objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Releases the locks a disconnected client held, so that others go on.
    pub(crate) fn release_owned(&self, conn: u64) {
        let objects: Vec<Arc<Object>> = self
            .objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|o| matches!(o.kind, Kind::Lock | Kind::RLock))
            .cloned()
            .collect();
        for obj in objects {
            let mut st = obj.state.lock().unwrap_or_else(|p| p.into_inner());
            match &mut *st {
                State::Lock { owner } | State::RLock { owner, .. } if *owner == Some(conn) => {
                    *st = match obj.kind {
                        Kind::Lock => State::Lock { owner: None },
                        _ => State::RLock {
                            owner: None,
                            count: 0,
                        },
                    };
                    obj.changed();
                }
                _ => {}
            }
        }
    }

    /// Runs one request (everything but `Shutdown`, which the transport handles).
    pub(crate) fn handle(&self, req: Request, peer: &dyn Peer) -> Response {
        match req {
            Request::Create(kind, init, ty) => {
                if !peer.trusted() {
                    return err(
                        ErrorKind::InvalidArgument,
                        "remote clients can only use objects registered on the server",
                    );
                }
                if kind == Kind::Callable {
                    return err(
                        ErrorKind::InvalidArgument,
                        "callables are registered, not created",
                    );
                }
                let name = match &init {
                    Init::Shared { name, .. } => name.clone(),
                    _ => None,
                };
                if let Some(name) = &name {
                    if self.lookup(name).is_some() {
                        return err(
                            ErrorKind::InvalidArgument,
                            format!("the name {name:?} is already registered"),
                        );
                    }
                }
                match self.make(kind, init) {
                    Ok(id) => {
                        if let (Some(ty), Some(obj)) = (ty, self.get(id)) {
                            let _ = obj.ty.set(ty);
                        }
                        if let Some(name) = name {
                            if let Err(e) = self.bind(&name, id) {
                                self.remove(id);
                                return wire(&e);
                            }
                        }
                        Response::Object(id, kind)
                    }
                    Err(e) => wire(&e),
                }
            }
            Request::Lookup(name, kinds, ty) => {
                match self.lookup(&name) {
                    // An object of another kind is answered as it is: the
                    // client refuses it, and its types stay unset.
                    Some((id, obj)) if !kinds.contains(&obj.kind) => Response::Object(id, obj.kind),
                    Some((id, obj)) => match obj.check_type(ty.as_ref(), None) {
                        Ok(()) => Response::Object(id, obj.kind),
                        Err(wrong) => wrong,
                    },
                    None => err(
                        ErrorKind::InvalidArgument,
                        format!("no object is registered under the name {name:?}"),
                    ),
                }
            }
            Request::Shutdown => err(ErrorKind::InvalidArgument, "shutdown is not allowed here"),
            Request::Ping => Response::Unit,
            Request::Op(id, op) => self.op_on(id, None, op, peer),
            Request::Typed(id, fp, op) => self.op_on(id, Some(fp), op, peer),
        }
    }

    fn op_on(&self, id: u64, fp: Option<u64>, op: Op, peer: &dyn Peer) -> Response {
        match self.get(id) {
            Some(obj) => match obj.check_type(None, fp) {
                Ok(()) => self.op(&obj, op, peer),
                Err(wrong) => wrong,
            },
            None => err(
                ErrorKind::InvalidArgument,
                format!(
                    "the manager has no object with id {id}: the proxy belongs to \
                         another manager, or to a server since restarted on this address \
                         (look the object up again by name)"
                ),
            ),
        }
    }

    fn op(&self, obj: &Object, op: Op, peer: &dyn Peer) -> Response {
        if matches!(op, Op::DictUpdateWith(..) | Op::ValueUpdateWith(..)) && !peer.trusted() {
            return err(
                ErrorKind::InvalidArgument,
                "remote clients cannot run functions on the server; register a callable",
            );
        }
        if matches!(op, Op::DictUpdateWith(..) | Op::ValueUpdateWith(..)) {
            peer.waiting();
        }
        let mut guard = obj.state.lock().unwrap_or_else(|p| p.into_inner());
        let kind = obj.kind;
        let mismatch = || {
            err(
                ErrorKind::InvalidArgument,
                format!("operation not supported by a {}", kind.name()),
            )
        };
        let st = &mut *guard;
        let resp = match (st, op) {
            // ---- dict
            (State::Dict(m), Op::DictGet(k)) => Response::Maybe(m.get(&k).cloned()),
            (State::Dict(m), Op::DictInsert(k, v)) => Response::Maybe(m.insert(k, v)),
            (State::Dict(m), Op::DictRemove(k)) => Response::Maybe(m.remove(&k)),
            (State::Dict(m), Op::DictContains(k)) => Response::Bool(m.contains_key(&k)),
            (State::Dict(m), Op::Len) => Response::Len(m.len() as u64),
            (State::Dict(m), Op::DictKeys) => {
                Response::Values(m.iter().map(|(k, _)| k.clone()).collect())
            }
            (State::Dict(m), Op::DictValues) => {
                Response::Values(m.iter().map(|(_, v)| v.clone()).collect())
            }
            (State::Dict(m), Op::DictItems) => {
                Response::Pairs(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }
            (State::Dict(m), Op::DictUpdate(pairs)) => {
                m.extend(pairs);
                Response::Unit
            }
            (State::Dict(m), Op::Clear) => {
                m.clear();
                Response::Unit
            }
            (State::Dict(m), Op::DictSetDefault(k, v)) => Response::Value(m.get_or_insert(k, v)),
            (State::Dict(m), Op::DictUpdateWith(k, updater, f)) => {
                let old = m.get(&k).cloned();
                match run_updater(&updater, f, old) {
                    Ok(new) => {
                        m.insert(k, new.clone());
                        Response::Value(new)
                    }
                    Err(e) => wire(&e),
                }
            }
            // ---- list
            (State::List(l), Op::ListPush(v)) => {
                l.push(v);
                Response::Unit
            }
            (State::List(l), Op::ListExtend(vs)) => {
                l.extend(vs);
                Response::Unit
            }
            (State::List(l), Op::ListGet(i)) => match index(i, l.len()) {
                Some(j) => Response::Value(l[j].clone()),
                None => err(
                    ErrorKind::InvalidArgument,
                    format!("list index {i} out of range"),
                ),
            },
            (State::List(l), Op::ListGetOpt(i)) => {
                Response::Maybe(usize::try_from(i).ok().and_then(|i| l.get(i)).cloned())
            }
            (State::List(l), Op::ListSet(i, v)) => match index(i, l.len()) {
                Some(j) => {
                    l[j] = v;
                    Response::Unit
                }
                None => err(
                    ErrorKind::InvalidArgument,
                    format!("list index {i} out of range"),
                ),
            },
            (State::List(l), Op::ListInsert(i, v)) => {
                let j = insert_index(i, l.len());
                l.insert(j, v);
                Response::Unit
            }
            (State::List(l), Op::ListPop(i)) => {
                let at = match i {
                    None => l.len().checked_sub(1),
                    Some(i) => index(i, l.len()),
                };
                match at {
                    Some(j) => Response::Value(l.remove(j)),
                    None => err(
                        ErrorKind::Empty,
                        "pop from an empty list or index out of range",
                    ),
                }
            }
            (State::List(l), Op::ListRemove(v)) => match l.iter().position(|x| *x == v) {
                Some(j) => {
                    l.remove(j);
                    Response::Bool(true)
                }
                None => Response::Bool(false),
            },
            (State::List(l), Op::ListToVec) => Response::Values(l.clone()),
            (State::List(l), Op::Len) => Response::Len(l.len() as u64),
            (State::List(l), Op::Clear) => {
                l.clear();
                Response::Unit
            }
            // ---- queues
            (State::Queue { .. }, Op::QueuePut(item, block)) => {
                drop(guard);
                return self.queue_put(obj, item, block, peer);
            }
            (State::Queue { .. }, Op::QueueGet(block)) => {
                drop(guard);
                return self.queue_get(obj, block, peer);
            }
            (State::Queue { items, .. }, Op::Len) => Response::Len(items.len() as u64),
            (State::Queue { items, .. }, Op::QueueEmpty) => Response::Bool(items.is_empty()),
            (State::Queue { items, maxsize, .. }, Op::QueueFull) => {
                Response::Bool(*maxsize > 0 && items.len() >= *maxsize)
            }
            (State::Queue { unfinished, .. }, Op::TaskDone) if kind == Kind::JoinableQueue => {
                if *unfinished == 0 {
                    err(
                        ErrorKind::InvalidArgument,
                        "task_done() called too many times",
                    )
                } else {
                    *unfinished -= 1;
                    if *unfinished == 0 {
                        obj.changed();
                    }
                    Response::Unit
                }
            }
            (State::Queue { .. }, Op::QueueJoin(block)) if kind == Kind::JoinableQueue => {
                let r = wait_until(obj, guard, block, peer, |s| {
                    matches!(s, State::Queue { unfinished: 0, .. })
                });
                return match r {
                    Ok(_) => Response::Unit,
                    Err(e) => wait_error(e, "unfinished tasks remain", ErrorKind::Timeout),
                };
            }
            // ---- locks and semaphores
            (
                State::Lock { .. } | State::RLock { .. } | State::Semaphore { .. },
                Op::Acquire(b),
            ) => {
                drop(guard);
                return self.acquire(obj, b, peer);
            }
            (State::Lock { owner }, Op::Release) => {
                if owner.take().is_none() {
                    err(ErrorKind::InvalidArgument, "release of an unlocked lock")
                } else {
                    obj.changed();
                    Response::Unit
                }
            }
            (State::Lock { owner }, Op::Locked) => Response::Bool(owner.is_some()),
            (State::RLock { owner, count }, Op::Release) => {
                if *owner != Some(peer.id()) {
                    err(
                        ErrorKind::InvalidArgument,
                        "cannot release an rlock not owned",
                    )
                } else {
                    *count -= 1;
                    if *count == 0 {
                        *owner = None;
                        obj.changed();
                    }
                    Response::Unit
                }
            }
            (State::RLock { owner, .. }, Op::Locked) => Response::Bool(owner.is_some()),
            (State::Semaphore { value, bound }, Op::Release) => {
                if bound.is_some_and(|b| *value >= b) {
                    err(
                        ErrorKind::InvalidArgument,
                        "semaphore released too many times",
                    )
                } else {
                    *value = value.saturating_add(1);
                    obj.changed();
                    Response::Unit
                }
            }
            (State::Semaphore { value, .. }, Op::Len) => Response::Len(*value),
            // ---- event
            (State::Event(flag), Op::EventSet) => {
                *flag = true;
                obj.changed();
                Response::Unit
            }
            (State::Event(flag), Op::EventClear) => {
                *flag = false;
                Response::Unit
            }
            (State::Event(flag), Op::EventIsSet) => Response::Bool(*flag),
            (State::Event(_), Op::EventWait(block)) => {
                let r = wait_until(obj, guard, block, peer, |s| matches!(s, State::Event(true)));
                return match r {
                    Ok(_) => Response::Bool(true),
                    Err(WaitEnd::Gone) => err(ErrorKind::Closed, "the client disconnected"),
                    Err(_) => Response::Bool(false),
                };
            }
            // ---- value
            (State::Value(v), Op::ValueGet) => Response::Value(v.clone()),
            (State::Value(v), Op::ValueSet(new)) => {
                *v = new;
                Response::Unit
            }
            (State::Value(v), Op::ValueUpdateWith(updater, f)) => {
                match run_updater(&updater, f, Some(v.clone())) {
                    Ok(new) => {
                        *v = new.clone();
                        Response::Value(new)
                    }
                    Err(e) => wire(&e),
                }
            }
            // ---- namespace
            (State::Namespace(m), Op::NsGet(k)) => Response::Maybe(m.get(&k).cloned()),
            (State::Namespace(m), Op::NsSet(k, v)) => Response::Maybe(m.insert(k, v)),
            (State::Namespace(m), Op::NsRemove(k)) => Response::Maybe(m.remove(&k)),
            (State::Namespace(m), Op::NsNames) => {
                let mut names: Vec<String> = m.keys().cloned().collect();
                names.sort();
                Response::Names(names)
            }
            // ---- callable
            (State::Shared(served), Op::Call(arg)) => match served.call(&arg) {
                Ok(bytes) => Response::Value(bytes),
                Err(w) => Response::Error(w),
            },
            (State::Callable(f), Op::Call(arg)) => {
                let f = Arc::clone(f);
                drop(guard);
                return run_callable(&f, &arg);
            }
            _ => mismatch(),
        };
        resp
    }

    fn queue_put(&self, obj: &Object, item: Bytes, block: Block, peer: &dyn Peer) -> Response {
        let guard = obj.state.lock().unwrap_or_else(|p| p.into_inner());
        let r = wait_until(obj, guard, block, peer, |s| match s {
            State::Queue { items, maxsize, .. } => *maxsize == 0 || items.len() < *maxsize,
            _ => true,
        });
        match r {
            Ok(mut g) => {
                if let State::Queue {
                    items, unfinished, ..
                } = &mut *g
                {
                    if let Err(w) = items.push(item) {
                        return Response::Error(w);
                    }
                    *unfinished += 1;
                }
                obj.changed();
                Response::Unit
            }
            Err(e) => wait_error(e, "the queue is full", ErrorKind::Full),
        }
    }

    fn queue_get(&self, obj: &Object, block: Block, peer: &dyn Peer) -> Response {
        let guard = obj.state.lock().unwrap_or_else(|p| p.into_inner());
        let r = wait_until(obj, guard, block, peer, |s| match s {
            State::Queue { items, .. } => !items.is_empty(),
            _ => true,
        });
        match r {
            Ok(mut g) => {
                let item = match &mut *g {
                    State::Queue { items, .. } => items.pop(),
                    _ => Ok(None),
                };
                match item {
                    Ok(Some(item)) => {
                        obj.changed();
                        Response::Value(item)
                    }
                    Ok(None) => err(ErrorKind::Empty, "the queue is empty"),
                    Err(w) => Response::Error(w),
                }
            }
            Err(e) => wait_error(e, "the queue is empty", ErrorKind::Empty),
        }
    }

    fn acquire(&self, obj: &Object, block: Block, peer: &dyn Peer) -> Response {
        let me = peer.id();
        let guard = obj.state.lock().unwrap_or_else(|p| p.into_inner());
        let r = wait_until(obj, guard, block, peer, |s| match s {
            State::Lock { owner } => {
                if owner.is_none() {
                    *owner = Some(me);
                    true
                } else {
                    false
                }
            }
            State::RLock { owner, count } => {
                if owner.is_none() || *owner == Some(me) {
                    *owner = Some(me);
                    *count += 1;
                    true
                } else {
                    false
                }
            }
            State::Semaphore { value, .. } => {
                if *value > 0 {
                    *value -= 1;
                    true
                } else {
                    false
                }
            }
            _ => true,
        });
        match r {
            Ok(_) => Response::Bool(true),
            Err(WaitEnd::Gone) => err(ErrorKind::Closed, "the client disconnected"),
            Err(_) => Response::Bool(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_indexes() {
        assert_eq!(index(0, 3), Some(0));
        assert_eq!(index(-1, 3), Some(2));
        assert_eq!(index(-4, 3), None);
        assert_eq!(index(3, 3), None);
        assert_eq!(insert_index(-10, 3), 0);
        assert_eq!(insert_index(10, 3), 3);
        assert_eq!(insert_index(-1, 3), 2);
    }
}
