//! The manager's wire messages, shared by the local and the remote transport.
//!
//! Values travel as bytes already encoded by the [`codec`](multiproc_ipc::codec)
//! on the client: the server stores and compares bytes and never needs the
//! user's types (except for functions a local client asks it to run, and
//! callables registered on a remote server).

use std::time::Duration;

use multiproc_ipc::{FnRef, WireError};
use serde::{Deserialize, Serialize};

use crate::queues::HeapMaker;
use crate::shared::ServedMaker;
use crate::typetag::TypeDesc;

/// Bytes of one encoded value.
pub(crate) type Bytes = Vec<u8>;

/// The trampoline a local client sends with `update_with`: it decodes the
/// stored value, runs the user's function (the encoded `FnRef` in the first
/// field) and encodes the result.
pub(crate) type Updater = FnRef<(Bytes, Option<Bytes>), Result<Bytes, WireError>>;

/// What kind of object an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Dict,
    List,
    Queue,
    JoinableQueue,
    LifoQueue,
    PriorityQueue,
    Lock,
    RLock,
    Event,
    Semaphore,
    Value,
    Namespace,
    Callable,
    /// A user's [`SharedObject`](crate::SharedObject).
    Shared,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Dict => "dict",
            Kind::List => "list",
            Kind::Queue => "queue",
            Kind::JoinableQueue => "joinable queue",
            Kind::LifoQueue => "lifo queue",
            Kind::PriorityQueue => "priority queue",
            Kind::Lock => "lock",
            Kind::RLock => "rlock",
            Kind::Event => "event",
            Kind::Semaphore => "semaphore",
            Kind::Value => "value",
            Kind::Namespace => "namespace",
            Kind::Callable => "callable",
            Kind::Shared => "shared object",
        }
    }
}

/// The initial state of a new object.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Init {
    Empty,
    Dict(Vec<(Bytes, Bytes)>),
    List(Vec<Bytes>),
    Queue {
        maxsize: usize,
    },
    /// A priority queue: its bound and the maker of its typed item store.
    PriorityQueue {
        maxsize: usize,
        make: HeapMaker,
    },
    Semaphore {
        value: u64,
        bound: Option<u64>,
    },
    Value(Bytes),
    /// A shared object (local managers): the maker that decodes its state,
    /// the state, and the name to register it under, if any.
    Shared {
        make: ServedMaker,
        state: Bytes,
        name: Option<String>,
    },
}

/// How long a blocking operation may wait.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) enum Block {
    /// Fail at once (`try_*`).
    No,
    /// Wait at most this long (`*_timeout`).
    For(Duration),
    /// Wait as long as it takes.
    Forever,
}

/// One operation on one object.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    // Dict.
    DictGet(Bytes),
    DictInsert(Bytes, Bytes),
    DictRemove(Bytes),
    DictContains(Bytes),
    DictKeys,
    DictValues,
    DictItems,
    DictUpdate(Vec<(Bytes, Bytes)>),
    DictSetDefault(Bytes, Bytes),
    DictUpdateWith(Bytes, Updater, Bytes),
    // List.
    ListPush(Bytes),
    ListExtend(Vec<Bytes>),
    ListGet(i64),
    /// The item at a non-negative index, or nothing past the end (a live
    /// iteration step).
    ListGetOpt(u64),
    ListSet(i64, Bytes),
    ListInsert(i64, Bytes),
    ListPop(Option<i64>),
    ListRemove(Bytes),
    ListToVec,
    // Shared by several kinds.
    Len,
    Clear,
    // Queues.
    QueuePut(Bytes, Block),
    QueueGet(Block),
    QueueEmpty,
    QueueFull,
    TaskDone,
    QueueJoin(Block),
    // Lock, RLock, Semaphore.
    Acquire(Block),
    Release,
    Locked,
    // Event.
    EventSet,
    EventClear,
    EventIsSet,
    EventWait(Block),
    // Value.
    ValueGet,
    ValueSet(Bytes),
    ValueUpdateWith(Updater, Bytes),
    // Namespace.
    NsGet(String),
    NsSet(String, Bytes),
    NsRemove(String),
    NsNames,
    // Callable and shared object.
    Call(Bytes),
}

/// A client's request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Make a new object (local clients only), of these types (typed kinds).
    Create(Kind, Init, Option<TypeDesc>),
    /// Find the object registered under a name, for a proxy of one of these
    /// kinds and of these types (typed kinds): the first typed lookup of an
    /// object of a wanted kind made without types fixes them.
    Lookup(String, Vec<Kind>, Option<TypeDesc>),
    /// Run an operation (objects without types).
    Op(u64, Op),
    /// Run an operation through a proxy whose types have this fingerprint:
    /// refused if the object's differ.
    Typed(u64, u64, Op),
    /// Stop the server (local clients only).
    Shutdown,
    /// Check that the connection works (answered with `Unit`).
    Ping,
}

/// The server's answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    Unit,
    Bool(bool),
    Len(u64),
    Value(Bytes),
    Maybe(Option<Bytes>),
    Values(Vec<Bytes>),
    Pairs(Vec<(Bytes, Bytes)>),
    Names(Vec<String>),
    Object(u64, Kind),
    /// The object holds other types than the request's proxy: its kind and
    /// the short name of its types.
    WrongType(Kind, String),
    Error(WireError),
}
