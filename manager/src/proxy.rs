//! Typed proxies: handles on objects that live in a manager.
//!
//! A proxy is an object id plus the address of its manager. It is cheap to
//! clone, and it is `Serialize`, so it can be passed to a `Process` or a pool
//! task; in another process it opens its own connection on first use. Every
//! method is one request to the manager. Values are encoded with the
//! [`codec`](multiproc_ipc::codec) on the client; a stored value that does not
//! decode as the proxy's type is a [`Serialization`](ErrorKind::Serialization)
//! error, an object id the manager does not know is an
//! [`InvalidArgument`](ErrorKind::InvalidArgument) error, and a manager that
//! has gone away is a [`Closed`](ErrorKind::Closed) (or `Io`) error.
//!
//! # Secrets in serialized proxies
//!
//! A serialized proxy of a local [`Manager`](crate::Manager) carries that
//! manager's random token: it names an abstract unix socket of this
//! machine, and the token opens nothing else. A serialized proxy of a
//! [`RemoteManager`](crate::RemoteManager) never carries the authkey (as
//! Python refuses to pickle one): it carries the server's address and a
//! non-secret key id (a truncated SHA-256 of the key). Decoding it looks the
//! authkey up in this process, which has it when this process, or the
//! parent it was forked from before the fork, called
//! [`RemoteManager::connect`](crate::RemoteManager::connect) with it;
//! otherwise decoding fails with a [`Serialization`](ErrorKind::Serialization)
//! error saying to call `RemoteManager::connect` first.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::ops::Deref;
use std::time::Duration;

use indexmap::IndexMap;
use multiproc_ipc::{codec, Error, ErrorKind, FnRef, Result, WireError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::client::{self, unexpected, Endpoint};
use crate::protocol::{Block, Bytes, Kind, Op, Request, Response, Updater};

/// An object in a manager: where it is and its id.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ObjRef {
    pub(crate) ep: Endpoint,
    pub(crate) id: u64,
}

impl ObjRef {
    fn call(&self, op: Op) -> Result<Response> {
        client::call(&self.ep, &Request::Op(self.id, op))
    }

    fn unit(&self, op: Op, what: &str) -> Result<()> {
        match self.call(op)? {
            Response::Unit => Ok(()),
            _ => Err(unexpected(what)),
        }
    }

    fn boolean(&self, op: Op, what: &str) -> Result<bool> {
        match self.call(op)? {
            Response::Bool(b) => Ok(b),
            _ => Err(unexpected(what)),
        }
    }

    fn len(&self, what: &str) -> Result<usize> {
        match self.call(Op::Len)? {
            Response::Len(n) => usize::try_from(n).map_err(|_| unexpected(what)),
            _ => Err(unexpected(what)),
        }
    }

    fn value<T: DeserializeOwned>(&self, op: Op, what: &str) -> Result<T> {
        match self.call(op)? {
            Response::Value(b) => dec(&b),
            _ => Err(unexpected(what)),
        }
    }

    fn maybe<T: DeserializeOwned>(&self, op: Op, what: &str) -> Result<Option<T>> {
        match self.call(op)? {
            Response::Maybe(b) => b.map(|b| dec(&b)).transpose(),
            _ => Err(unexpected(what)),
        }
    }

    fn values<T: DeserializeOwned>(&self, op: Op, what: &str) -> Result<Vec<T>> {
        match self.call(op)? {
            Response::Values(vs) => vs.iter().map(|b| dec(b)).collect(),
            _ => Err(unexpected(what)),
        }
    }
}

impl fmt::Debug for ObjRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} on {:?}", self.id, self.ep)
    }
}

fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Bytes> {
    Ok(codec::encode(v)?)
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    codec::decode(b).map_err(|e| {
        Error::with_source(
            ErrorKind::Serialization,
            format!(
                "a value stored in the manager does not decode as {}",
                std::any::type_name::<T>()
            ),
            e,
        )
    })
}

fn block(timeout: Option<Duration>) -> Block {
    match timeout {
        Some(d) => Block::For(d),
        None => Block::Forever,
    }
}

/// Checks the kind of a new or looked-up object.
pub(crate) fn expect_kind(resp: Response, want: &[Kind], what: &str) -> Result<u64> {
    match resp {
        Response::Object(id, kind) if want.contains(&kind) => Ok(id),
        Response::Object(_, kind) => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("{what} is a {}, not a {}", kind.name(), want[0].name()),
        )),
        _ => Err(unexpected(what)),
    }
}

fn wire_of(kind: ErrorKind, message: String) -> WireError {
    Error::new(kind, message).to_wire()
}

/// Runs in the manager: decodes the stored value, calls the user's function.
fn dict_updater<V>((f, old): (Bytes, Option<Bytes>)) -> std::result::Result<Bytes, WireError>
where
    V: Serialize + DeserializeOwned + 'static,
{
    let f: FnRef<Option<V>, V> = codec::decode(&f).map_err(|e| {
        wire_of(
            ErrorKind::Serialization,
            format!("bad function reference: {e}"),
        )
    })?;
    let old: Option<V> = old
        .map(|b| dec::<V>(&b))
        .transpose()
        .map_err(|e| e.to_wire())?;
    let new = f.call(old).map_err(|e| e.to_wire())?;
    codec::encode(&new).map_err(|e| wire_of(ErrorKind::Serialization, e.to_string()))
}

fn value_updater<T>((f, old): (Bytes, Option<Bytes>)) -> std::result::Result<Bytes, WireError>
where
    T: Serialize + DeserializeOwned + 'static,
{
    let f: FnRef<T, T> = codec::decode(&f).map_err(|e| {
        wire_of(
            ErrorKind::Serialization,
            format!("bad function reference: {e}"),
        )
    })?;
    let old = old.ok_or_else(|| wire_of(ErrorKind::Remote, "no value".to_owned()))?;
    let old: T = dec(&old).map_err(|e| e.to_wire())?;
    let new = f.call(old).map_err(|e| e.to_wire())?;
    codec::encode(&new).map_err(|e| wire_of(ErrorKind::Serialization, e.to_string()))
}

/// The impls every proxy has. `Name<T, ..>` (a proxy with a `_t` marker):
/// `Clone`, `Debug`, `PartialEq` and `from_obj`; `Name` (a plain proxy that
/// derives `Clone` and `PartialEq`): `Debug` and `from_obj`.
macro_rules! proxy_common {
    ($name:ident) => {
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.obj)
            }
        }
        impl $name {
            pub(crate) fn from_obj(obj: ObjRef) -> Self {
                $name { obj }
            }
        }
    };
    ($name:ident < $($p:ident),* >) => {
        impl<$($p),*> Clone for $name<$($p),*> {
            fn clone(&self) -> Self {
                $name { obj: self.obj.clone(), _t: PhantomData }
            }
        }
        impl<$($p),*> fmt::Debug for $name<$($p),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.obj)
            }
        }
        impl<$($p),*> PartialEq for $name<$($p),*> {
            /// Two proxies are equal when they refer to the same object.
            fn eq(&self, other: &Self) -> bool {
                self.obj == other.obj
            }
        }
        impl<$($p),*> $name<$($p),*> {
            pub(crate) fn from_obj(obj: ObjRef) -> Self {
                $name { obj, _t: PhantomData }
            }
        }
    };
}

// ---------------------------------------------------------------------------

/// A dictionary in a manager, Python's `DictProxy`.
///
/// Keys are compared by their encoding, so use key types whose encoding is
/// canonical (integers, strings, tuples of them...; not hash maps).
///
/// Like a Python dict, the dictionary remembers insertion order:
/// [`keys`](DictProxy::keys), [`values`](DictProxy::values),
/// [`items`](DictProxy::items) and [`to_map`](DictProxy::to_map) list the
/// entries in the order their keys were first inserted. Setting the value of
/// a present key keeps its place; removing a key and inserting it again
/// moves it to the end. The dictionary is never iterated live: each of these
/// methods copies the whole dictionary here in one round trip.
///
/// # Examples
///
/// ```
/// use multiproc_manager::Manager;
///
/// let manager = Manager::start()?;
/// let d = manager.dict_from([("count".to_string(), 100i64)])?;
/// d.insert(&"count".to_string(), &99)?;
/// assert_eq!(d.get(&"count".to_string())?, Some(99));
/// // Atomically, in the manager, in one round trip:
/// let v = d.update_with(&"count".to_string(), |v| v.unwrap_or(0) - 1)?;
/// assert_eq!(v, 98);
/// // Insertion order, as in Python.
/// d.insert(&"b".to_string(), &2)?;
/// d.insert(&"a".to_string(), &1)?;
/// assert_eq!(d.keys()?, ["count", "b", "a"]);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct DictProxy<K, V> {
    obj: ObjRef,
    #[serde(skip)]
    _t: PhantomData<fn() -> (K, V)>,
}
proxy_common!(DictProxy<K, V>);

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// The value for `key`, Python's `d.get(key)`.
    ///
    /// # Errors
    ///
    /// `Serialization` if the stored value is not a `V`; `Closed`/`Io` if the
    /// manager is gone (as for every method below).
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.obj.maybe(Op::DictGet(enc(key)?), "get")
    }

    /// Sets `d[key] = value`, returning the previous value. A present key
    /// keeps its place in the order; a new one goes last.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        self.obj
            .maybe(Op::DictInsert(enc(key)?, enc(value)?), "insert")
    }

    /// Removes `key`, returning its value (`del d[key]`).
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        self.obj.maybe(Op::DictRemove(enc(key)?), "remove")
    }

    /// Python's `d.pop(key)`: removes `key` and returns its value.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` (Python's `KeyError`) if the key is absent; else as
    /// [`get`](DictProxy::get).
    pub fn pop(&self, key: &K) -> Result<V> {
        self.remove(key)?
            .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "key not found"))
    }

    /// `key in d`.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        self.obj
            .boolean(Op::DictContains(enc(key)?), "contains_key")
    }

    /// `len(d)`.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn len(&self) -> Result<usize> {
        self.obj.len("len")
    }

    /// `len(d) == 0`.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order (Python's `list(d.keys())`).
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn keys(&self) -> Result<Vec<K>> {
        self.obj.values(Op::DictKeys, "keys")
    }

    /// The values, in insertion order (Python's `list(d.values())`).
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn values(&self) -> Result<Vec<V>> {
        self.obj.values(Op::DictValues, "values")
    }

    /// The `(key, value)` pairs, in insertion order (Python's `list(d.items())`).
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.obj.call(Op::DictItems)? {
            Response::Pairs(ps) => ps.iter().map(|(k, v)| Ok((dec(k)?, dec(v)?))).collect(),
            _ => Err(unexpected("items")),
        }
    }

    /// Inserts every pair, Python's `d.update(pairs)`: present keys keep
    /// their place, new ones are added last, in the order given.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn update<I: IntoIterator<Item = (K, V)>>(&self, pairs: I) -> Result<()> {
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| Ok((enc(&k)?, enc(&v)?)))
            .collect::<Result<Vec<_>>>()?;
        self.obj.unit(Op::DictUpdate(pairs), "update")
    }

    /// Removes everything.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn clear(&self) -> Result<()> {
        self.obj.unit(Op::Clear, "clear")
    }

    /// Python's `d.setdefault(key, default)`: the value for `key`, inserting
    /// `default` (last in the order) first if the key is absent.
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn setdefault(&self, key: &K, default: &V) -> Result<V> {
        self.obj
            .value(Op::DictSetDefault(enc(key)?, enc(default)?), "setdefault")
    }

    /// The whole dictionary, copied here, as an [`IndexMap`]: a hash map
    /// that keeps the manager's insertion order (Python's `d.copy()`).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc_manager::Manager;
    ///
    /// let manager = Manager::start()?;
    /// let d = manager.dict_from([('z', 1), ('y', 2), ('x', 3)])?;
    /// let map = d.to_map()?;
    /// assert_eq!(map[&'y'], 2);
    /// assert_eq!(map.keys().copied().collect::<String>(), "zyx");
    /// # Ok::<(), multiproc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    ///
    /// # Caveats
    ///
    /// `IndexMap`'s `==` compares contents only, not order (as Python's
    /// dicts do); compare `keys()` or `items()` to check order.
    pub fn to_map(&self) -> Result<IndexMap<K, V>>
    where
        K: Eq + Hash,
    {
        Ok(self.items()?.into_iter().collect())
    }
}

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned + 'static,
{
    /// Replaces `d[key]` by `f(d.get(key))` inside the manager, atomically
    /// (no other request on this dict runs in between), in one round trip and
    /// without a lock; returns the new value.
    ///
    /// `f` is a function pointer (a `fn` item or a non-capturing closure): it
    /// runs in the manager process, a fork of this program.
    ///
    /// # Errors
    ///
    /// `TaskPanicked` if `f` panics (the entry is left unchanged), with the
    /// panic's message and location ([`Error::panic_info`]);
    /// `InvalidArgument` on a remote manager, which never runs code sent by a
    /// client; else as [`get`](DictProxy::get).
    pub fn update_with(&self, key: &K, f: fn(Option<V>) -> V) -> Result<V> {
        let updater: Updater = FnRef::new(dict_updater::<V>);
        let f = enc(&FnRef::new(f))?;
        self.obj
            .value(Op::DictUpdateWith(enc(key)?, updater, f), "update_with")
    }
}

// ---------------------------------------------------------------------------

/// A list in a manager, Python's `ListProxy`. Indexes may be negative
/// (counting from the end), as in Python.
///
/// # Examples
///
/// ```
/// use multiproc_manager::Manager;
///
/// let manager = Manager::start()?;
/// let l = manager.list::<u32>()?;
/// l.extend([1, 2, 3])?;
/// l.push(&4)?;
/// assert_eq!(l.get(-1)?, 4);
/// assert_eq!(l.to_vec()?, vec![1, 2, 3, 4]);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ListProxy<T> {
    obj: ObjRef,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}
proxy_common!(ListProxy<T>);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// Appends `value` (Python's `append`).
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone (as for every method below).
    pub fn push(&self, value: &T) -> Result<()> {
        self.obj.unit(Op::ListPush(enc(value)?), "push")
    }

    /// Appends every item.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    pub fn extend<I: IntoIterator<Item = T>>(&self, items: I) -> Result<()> {
        let items = items
            .into_iter()
            .map(|v| enc(&v))
            .collect::<Result<Vec<_>>>()?;
        self.obj.unit(Op::ListExtend(items), "extend")
    }

    /// `l[index]`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` (Python's `IndexError`) out of range;
    /// `Serialization` if the item is not a `T`.
    pub fn get(&self, index: i64) -> Result<T> {
        self.obj.value(Op::ListGet(index), "get")
    }

    /// `l[index] = value`.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` out of range.
    pub fn set(&self, index: i64, value: &T) -> Result<()> {
        self.obj.unit(Op::ListSet(index, enc(value)?), "set")
    }

    /// Inserts `value` before `index` (clamped, as in Python).
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    pub fn insert(&self, index: i64, value: &T) -> Result<()> {
        self.obj.unit(Op::ListInsert(index, enc(value)?), "insert")
    }

    /// Removes and returns the item at `index` (the last one for `None`).
    ///
    /// # Errors
    ///
    /// `Empty` if the list is empty or the index is out of range.
    pub fn pop(&self, index: Option<i64>) -> Result<T> {
        self.obj.value(Op::ListPop(index), "pop")
    }

    /// Removes the first item equal to `value`; returns whether one was found.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    pub fn remove(&self, value: &T) -> Result<bool> {
        self.obj.boolean(Op::ListRemove(enc(value)?), "remove")
    }

    /// `len(l)`.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    pub fn len(&self) -> Result<usize> {
        self.obj.len("len")
    }

    /// `len(l) == 0`.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Removes everything.
    ///
    /// # Errors
    ///
    /// As [`push`](ListProxy::push).
    pub fn clear(&self) -> Result<()> {
        self.obj.unit(Op::Clear, "clear")
    }

    /// The whole list, copied here in one round trip: a snapshot, where
    /// [`iter`](ListProxy::iter) reads the list live.
    ///
    /// # Errors
    ///
    /// `Serialization` if an item is not a `T`.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.obj.values(Op::ListToVec, "to_vec")
    }

    /// Iterates over the list as it is at each step, as Python iterates a
    /// list proxy (`for x in l`): step `i` asks the manager for the item at
    /// index `i` then, and the iteration ends at the first index past the
    /// end. Changes made meanwhile, by anyone, show: items appended before
    /// the end is reached are yielded; removing an item before the current
    /// position makes the next one be skipped, as in Python.
    ///
    /// Each step is one round trip; [`to_vec`](ListProxy::to_vec) copies the
    /// whole list in one.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc_manager::Manager;
    ///
    /// let manager = Manager::start()?;
    /// let l = manager.list_from([1u32, 2, 3])?;
    /// let mut it = l.iter();
    /// assert_eq!(it.next().transpose()?, Some(1));
    /// l.push(&4)?; // seen by the iteration under way
    /// let rest = it.collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(rest, [2, 3, 4]);
    /// let mut sum = 0;
    /// for x in &l {
    ///     sum += x?;
    /// }
    /// assert_eq!(sum, 10);
    /// # Ok::<(), multiproc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Each step yields `Err` if the item is not a `T`
    /// (`Serialization`) or the manager is gone (`Closed`/`Io`); the
    /// iteration ends after an error.
    pub fn iter(&self) -> ListIter<'_, T> {
        ListIter {
            list: self,
            next: 0,
            done: false,
        }
    }
}

/// A live iteration over a [`ListProxy`], made by [`ListProxy::iter`]:
/// each step reads the item at the next index from the manager. It yields
/// `Result<T>`, ends at the first index past the end of the list (then stays
/// ended), and ends after an error.
///
/// # Examples
///
/// ```
/// use multiproc_manager::Manager;
///
/// let manager = Manager::start()?;
/// let l = manager.list_from(["a".to_string(), "b".to_string()])?;
/// let joined = l.iter().collect::<Result<Vec<_>, _>>()?.join("");
/// assert_eq!(joined, "ab");
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
pub struct ListIter<'a, T> {
    list: &'a ListProxy<T>,
    next: u64,
    done: bool,
}

impl<T> fmt::Debug for ListIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListIter")
            .field("list", &self.list.obj)
            .field("next", &self.next)
            .field("done", &self.done)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> Iterator for ListIter<'_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.done {
            return None;
        }
        match self.list.obj.maybe(Op::ListGetOpt(self.next), "iter") {
            Ok(Some(item)) => {
                self.next += 1;
                Some(Ok(item))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<T: Serialize + DeserializeOwned> std::iter::FusedIterator for ListIter<'_, T> {}

impl<'a, T: Serialize + DeserializeOwned> IntoIterator for &'a ListProxy<T> {
    type Item = Result<T>;
    type IntoIter = ListIter<'a, T>;

    /// As [`ListProxy::iter`].
    fn into_iter(self) -> ListIter<'a, T> {
        self.iter()
    }
}

// ---------------------------------------------------------------------------

/// A queue in a manager (Python's `manager.Queue()`), also what a remote
/// manager serves to task workers.
///
/// The same proxy serves the three orders of Python's `queue` module, fixed
/// when the queue is made: FIFO ([`Manager::queue`](crate::Manager::queue):
/// `get` takes the oldest item), LIFO
/// ([`Manager::lifo_queue`](crate::Manager::lifo_queue): the newest) and
/// priority ([`Manager::priority_queue`](crate::Manager::priority_queue):
/// the smallest, the oldest of equal ones). Everything else (blocking,
/// bounds, `Full` and `Empty`) is the same for all three.
///
/// # Examples
///
/// ```
/// use multiproc_manager::{ErrorKind, Manager};
///
/// let manager = Manager::start()?;
/// let q = manager.queue::<String>()?;
/// q.put(&"job".to_string())?;
/// assert_eq!(q.get()?, "job");
/// assert_eq!(q.try_get().unwrap_err().kind(), ErrorKind::Empty);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct QueueProxy<T> {
    obj: ObjRef,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}
proxy_common!(QueueProxy<T>);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    fn put_with(&self, item: &T, b: Block) -> Result<()> {
        self.obj.unit(Op::QueuePut(enc(item)?, b), "put")
    }

    fn get_with(&self, b: Block) -> Result<T> {
        self.obj.value(Op::QueueGet(b), "get")
    }

    /// Puts `item`, waiting while a bounded queue is full.
    ///
    /// # Errors
    ///
    /// `Serialization` if `item` cannot be encoded (or, for a priority
    /// queue, is not of the queue's type); `Closed`/`Io` if the manager is
    /// gone.
    pub fn put(&self, item: &T) -> Result<()> {
        self.put_with(item, Block::Forever)
    }

    /// Puts `item` if there is room now.
    ///
    /// # Errors
    ///
    /// `Full` if the queue is full; else as [`put`](QueueProxy::put).
    pub fn try_put(&self, item: &T) -> Result<()> {
        self.put_with(item, Block::No)
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// `Timeout` if the queue stayed full; else as [`put`](QueueProxy::put).
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.put_with(item, block(Some(timeout)))
    }

    /// Takes the next item (the oldest; the newest of a LIFO queue, the
    /// smallest of a priority queue), waiting for one.
    ///
    /// # Errors
    ///
    /// `Serialization` if the item is not a `T`; `Closed`/`Io` if the manager
    /// is gone.
    pub fn get(&self) -> Result<T> {
        self.get_with(Block::Forever)
    }

    /// Takes the next item if there is one.
    ///
    /// # Errors
    ///
    /// `Empty` if there is none; else as [`get`](QueueProxy::get).
    pub fn try_get(&self) -> Result<T> {
        self.get_with(Block::No)
    }

    /// Takes the next item, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if none came; else as [`get`](QueueProxy::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_with(block(Some(timeout)))
    }

    /// The number of items (Python's `qsize`).
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone.
    pub fn len(&self) -> Result<usize> {
        self.obj.len("len")
    }

    /// True if the queue holds no item.
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone.
    pub fn is_empty(&self) -> Result<bool> {
        self.obj.boolean(Op::QueueEmpty, "is_empty")
    }

    /// True if a bounded queue is full.
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone.
    pub fn is_full(&self) -> Result<bool> {
        self.obj.boolean(Op::QueueFull, "is_full")
    }
}

/// A queue whose consumers acknowledge items, Python's `JoinableQueue`: it
/// has every [`QueueProxy`] method (through `Deref`) plus
/// [`task_done`](JoinableQueueProxy::task_done) and
/// [`join`](JoinableQueueProxy::join).
///
/// # Examples
///
/// ```
/// use multiproc_manager::Manager;
///
/// let manager = Manager::start()?;
/// let q = manager.joinable_queue::<u8>()?;
/// q.put(&1)?;
/// let _ = q.get()?;
/// q.task_done()?;
/// q.join()?; // every item was acknowledged
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct JoinableQueueProxy<T> {
    queue: QueueProxy<T>,
}

impl<T> Clone for JoinableQueueProxy<T> {
    fn clone(&self) -> Self {
        JoinableQueueProxy {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueueProxy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinableQueueProxy({:?})", self.queue.obj)
    }
}

impl<T> Deref for JoinableQueueProxy<T> {
    type Target = QueueProxy<T>;
    fn deref(&self) -> &QueueProxy<T> {
        &self.queue
    }
}

impl<T> JoinableQueueProxy<T> {
    pub(crate) fn from_obj(obj: ObjRef) -> Self {
        JoinableQueueProxy {
            queue: QueueProxy::from_obj(obj),
        }
    }

    /// Marks one item taken with `get` as processed.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if called more times than items were put.
    pub fn task_done(&self) -> Result<()> {
        self.queue.obj.unit(Op::TaskDone, "task_done")
    }

    /// Waits until every item put has been marked done.
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone.
    pub fn join(&self) -> Result<()> {
        self.queue.obj.unit(Op::QueueJoin(Block::Forever), "join")
    }

    /// As [`join`](JoinableQueueProxy::join), at most `timeout`.
    ///
    /// # Errors
    ///
    /// `Timeout` if tasks remain unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.queue
            .obj
            .unit(Op::QueueJoin(Block::For(timeout)), "join")
    }
}

// ---------------------------------------------------------------------------

/// A lock in a manager (Python's `manager.Lock()`). Any client may release
/// it; if the client holding it disconnects or dies, the manager releases it.
///
/// # Examples
///
/// ```
/// use multiproc_manager::Manager;
///
/// let manager = Manager::start()?;
/// let lock = manager.lock()?;
/// {
///     let _guard = lock.lock()?;
///     assert!(lock.try_lock()?.is_none());
/// }
/// assert!(lock.try_lock()?.is_some());
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct LockProxy {
    obj: ObjRef,
}

proxy_common!(LockProxy);

/// Releases a manager lock (or rlock) when dropped.
///
/// The release goes through the connection the lock was taken through. If
/// that connection was lost meanwhile, the manager has already released the
/// lock (it does so for every client that disconnects), and dropping the
/// guard sends nothing: a release through a new connection could free a
/// lock that another client has taken since.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ProxyGuard<'a> {
    obj: &'a ObjRef,
    /// The connection the lock was taken through.
    serial: u64,
}

impl fmt::Debug for ProxyGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyGuard({:?})", self.obj)
    }
}

impl Drop for ProxyGuard<'_> {
    fn drop(&mut self) {
        let _ = lock_release(self.obj, Some(self.serial));
    }
}

/// A semaphore acquire.
fn acquire(obj: &ObjRef, b: Block) -> Result<bool> {
    obj.boolean(Op::Acquire(b), "acquire")
}

/// A lock or rlock acquire: the serial of the connection that took it, or
/// `None` if it was not taken.
fn lock_acquire(obj: &ObjRef, b: Block) -> Result<Option<u64>> {
    match client::acquire_lock(&obj.ep, &Request::Op(obj.id, Op::Acquire(b)))? {
        (Response::Bool(true), serial) => Ok(Some(serial)),
        (Response::Bool(false), _) => Ok(None),
        _ => Err(unexpected("acquire")),
    }
}

/// A lock or rlock release, through the connection `through` if given.
fn lock_release(obj: &ObjRef, through: Option<u64>) -> Result<()> {
    match client::release_lock(&obj.ep, &Request::Op(obj.id, Op::Release), through)? {
        Response::Unit => Ok(()),
        _ => Err(unexpected("release")),
    }
}

/// Acquires with `b` and wraps a success in a guard.
fn guard(obj: &ObjRef, b: Block) -> Result<Option<ProxyGuard<'_>>> {
    Ok(lock_acquire(obj, b)?.map(|serial| ProxyGuard { obj, serial }))
}

/// The guard methods `lock`, `try_lock`, `lock_timeout` and `is_locked`,
/// the same on [`LockProxy`] and [`RLockProxy`]; only the first two
/// summaries differ.
macro_rules! lock_methods {
    ($name:ident, lock: $lock_doc:literal, try_lock: $try_doc:literal) => {
        #[doc = $lock_doc]
        ///
        /// # Errors
        ///
        /// `Closed`/`Io` if the manager is gone.
        pub fn lock(&self) -> Result<ProxyGuard<'_>> {
            guard(&self.obj, Block::Forever)?.ok_or_else(|| unexpected("lock"))
        }

        #[doc = $try_doc]
        ///
        /// # Errors
        ///
        #[doc = concat!("As [`lock`](", stringify!($name), "::lock).")]
        pub fn try_lock(&self) -> Result<Option<ProxyGuard<'_>>> {
            guard(&self.obj, Block::No)
        }

        /// Waits at most `timeout` for the lock.
        ///
        /// # Errors
        ///
        #[doc = concat!("As [`lock`](", stringify!($name), "::lock).")]
        pub fn lock_timeout(&self, timeout: Duration) -> Result<Option<ProxyGuard<'_>>> {
            guard(&self.obj, Block::For(timeout))
        }

        /// True while someone holds the lock.
        ///
        /// # Errors
        ///
        #[doc = concat!("As [`lock`](", stringify!($name), "::lock).")]
        pub fn is_locked(&self) -> Result<bool> {
            self.obj.boolean(Op::Locked, "is_locked")
        }
    };
}

impl LockProxy {
    lock_methods!(
        LockProxy,
        lock: "Waits for the lock and returns a guard that releases it.",
        try_lock: "Takes the lock if it is free now."
    );

    /// Python's `acquire()` without a guard: pair it with
    /// [`release`](LockProxy::release).
    ///
    /// # Errors
    ///
    /// As [`lock`](LockProxy::lock).
    pub fn acquire(&self) -> Result<()> {
        lock_acquire(&self.obj, Block::Forever).map(drop)
    }

    /// Releases the lock.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if it is not locked.
    pub fn release(&self) -> Result<()> {
        lock_release(&self.obj, None)
    }
}

/// A reentrant lock in a manager (Python's `manager.RLock()`): the
/// connection that holds it may take it again; only it may release it.
///
/// # Examples
///
/// ```
/// use multiproc_manager::Manager;
///
/// let manager = Manager::start()?;
/// let r = manager.rlock()?;
/// let a = r.lock()?;
/// let b = r.lock()?; // same holder: no deadlock
/// drop((b, a));
/// assert!(!r.is_locked()?);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RLockProxy {
    obj: ObjRef,
}

proxy_common!(RLockProxy);

impl RLockProxy {
    lock_methods!(
        RLockProxy,
        lock: "Waits for the lock (or takes it again) and returns a guard.",
        try_lock: "Takes the lock if it is free (or ours) now."
    );
}

/// A semaphore in a manager (Python's `manager.Semaphore(n)` and
/// `BoundedSemaphore(n)`).
///
/// # Examples
///
/// ```
/// use multiproc_manager::Manager;
///
/// let manager = Manager::start()?;
/// let s = manager.semaphore(1)?;
/// s.acquire()?;
/// assert!(!s.try_acquire()?);
/// s.release()?;
/// assert_eq!(s.value()?, 1);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SemaphoreProxy {
    obj: ObjRef,
}

proxy_common!(SemaphoreProxy);

impl SemaphoreProxy {
    /// Waits until the count is positive and decrements it.
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone.
    pub fn acquire(&self) -> Result<()> {
        acquire(&self.obj, Block::Forever).map(drop)
    }

    /// Decrements the count if it is positive now; returns whether it did.
    ///
    /// # Errors
    ///
    /// As [`acquire`](SemaphoreProxy::acquire).
    pub fn try_acquire(&self) -> Result<bool> {
        acquire(&self.obj, Block::No)
    }

    /// Waits at most `timeout`; returns whether it decremented the count.
    ///
    /// # Errors
    ///
    /// As [`acquire`](SemaphoreProxy::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        acquire(&self.obj, Block::For(timeout))
    }

    /// Increments the count.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if a bounded semaphore would exceed its bound.
    pub fn release(&self) -> Result<()> {
        self.obj.unit(Op::Release, "release")
    }

    /// The current count.
    ///
    /// # Errors
    ///
    /// As [`acquire`](SemaphoreProxy::acquire).
    pub fn value(&self) -> Result<u64> {
        Ok(self.obj.len("value")? as u64)
    }
}

/// An event in a manager (Python's `manager.Event()`).
///
/// # Examples
///
/// ```
/// use multiproc_manager::Manager;
/// use std::time::Duration;
///
/// let manager = Manager::start()?;
/// let e = manager.event()?;
/// assert!(!e.wait_timeout(Duration::from_millis(10))?);
/// e.set()?;
/// assert!(e.is_set()?);
/// e.wait()?;
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct EventProxy {
    obj: ObjRef,
}

proxy_common!(EventProxy);

impl EventProxy {
    /// Sets the flag and wakes every waiter.
    ///
    /// # Errors
    ///
    /// `Closed`/`Io` if the manager is gone.
    pub fn set(&self) -> Result<()> {
        self.obj.unit(Op::EventSet, "set")
    }

    /// Clears the flag.
    ///
    /// # Errors
    ///
    /// As [`set`](EventProxy::set).
    pub fn clear(&self) -> Result<()> {
        self.obj.unit(Op::EventClear, "clear")
    }

    /// The flag.
    ///
    /// # Errors
    ///
    /// As [`set`](EventProxy::set).
    pub fn is_set(&self) -> Result<bool> {
        self.obj.boolean(Op::EventIsSet, "is_set")
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    ///
    /// As [`set`](EventProxy::set).
    pub fn wait(&self) -> Result<()> {
        self.obj
            .boolean(Op::EventWait(Block::Forever), "wait")
            .map(drop)
    }

    /// Waits at most `timeout`; returns the flag.
    ///
    /// # Errors
    ///
    /// As [`set`](EventProxy::set).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.obj.boolean(Op::EventWait(Block::For(timeout)), "wait")
    }
}

// ---------------------------------------------------------------------------

/// One value in a manager (Python's `manager.Value(typecode, v)`).
///
/// # Examples
///
/// ```
/// use multiproc_manager::Manager;
///
/// let manager = Manager::start()?;
/// let v = manager.value(10u64)?;
/// v.set(&11)?;
/// assert_eq!(v.update_with(|x| x * 2)?, 22);
/// assert_eq!(v.get()?, 22);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ValueProxy<T> {
    obj: ObjRef,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}
proxy_common!(ValueProxy<T>);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// The value.
    ///
    /// # Errors
    ///
    /// `Serialization` if the stored value is not a `T`; `Closed`/`Io` if the
    /// manager is gone.
    pub fn get(&self) -> Result<T> {
        self.obj.value(Op::ValueGet, "get")
    }

    /// Replaces the value.
    ///
    /// # Errors
    ///
    /// As [`get`](ValueProxy::get).
    pub fn set(&self, value: &T) -> Result<()> {
        self.obj.unit(Op::ValueSet(enc(value)?), "set")
    }
}

impl<T: Serialize + DeserializeOwned + 'static> ValueProxy<T> {
    /// Replaces the value by `f(value)` inside the manager, atomically and in
    /// one round trip; returns the new value.
    ///
    /// # Errors
    ///
    /// `TaskPanicked` if `f` panics; `InvalidArgument` on a remote manager;
    /// else as [`get`](ValueProxy::get).
    pub fn update_with(&self, f: fn(T) -> T) -> Result<T> {
        let updater: Updater = FnRef::new(value_updater::<T>);
        let f = enc(&FnRef::new(f))?;
        self.obj
            .value(Op::ValueUpdateWith(updater, f), "update_with")
    }
}

/// A namespace in a manager (Python's `manager.Namespace()`): named
/// attributes of any serde type.
///
/// # Examples
///
/// ```
/// use multiproc_manager::Manager;
///
/// let manager = Manager::start()?;
/// let ns = manager.namespace()?;
/// ns.set("x", &1.5f64)?;
/// ns.set("name", &"abc")?;
/// assert_eq!(ns.get::<f64>("x")?, Some(1.5));
/// assert_eq!(ns.names()?, vec!["name", "x"]);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceProxy {
    obj: ObjRef,
}

proxy_common!(NamespaceProxy);

impl NamespaceProxy {
    /// The attribute `name`, if set.
    ///
    /// # Errors
    ///
    /// `Serialization` if it is not a `T`; `Closed`/`Io` if the manager is gone.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        self.obj.maybe(Op::NsGet(name.to_owned()), "get")
    }

    /// Sets the attribute `name`.
    ///
    /// # Errors
    ///
    /// `Serialization` if `value` cannot be encoded; else as
    /// [`get`](NamespaceProxy::get).
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        match self.obj.call(Op::NsSet(name.to_owned(), enc(value)?))? {
            Response::Maybe(_) => Ok(()),
            _ => Err(unexpected("set")),
        }
    }

    /// Deletes the attribute `name`; returns whether it existed.
    ///
    /// # Errors
    ///
    /// As [`get`](NamespaceProxy::get).
    pub fn remove(&self, name: &str) -> Result<bool> {
        match self.obj.call(Op::NsRemove(name.to_owned()))? {
            Response::Maybe(b) => Ok(b.is_some()),
            _ => Err(unexpected("remove")),
        }
    }

    /// The attribute names, sorted.
    ///
    /// # Errors
    ///
    /// As [`get`](NamespaceProxy::get).
    pub fn names(&self) -> Result<Vec<String>> {
        match self.obj.call(Op::NsNames)? {
            Response::Names(n) => Ok(n),
            _ => Err(unexpected("names")),
        }
    }
}

/// A callable registered on a remote server (Python's `BaseManager.register`
/// with a `callable`): [`call`](CallableProxy::call) sends the argument, the
/// server runs its own function and sends the result back.
///
/// See [`RemoteManager::callable`](crate::RemoteManager::callable).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct CallableProxy<A, R> {
    obj: ObjRef,
    #[serde(skip)]
    _t: PhantomData<fn(A) -> R>,
}
proxy_common!(CallableProxy<A, R>);

impl<A: Serialize, R: DeserializeOwned> CallableProxy<A, R> {
    /// Calls the server's function with `arg`.
    ///
    /// # Errors
    ///
    /// `Serialization` if the argument or the result does not match the
    /// registered types; `TaskPanicked` if the function panicked, carrying
    /// the panic's message and location ([`Error::panic_info`]) as a pool
    /// task's panic does (the server goes on serving); `Closed`/`Io` if the
    /// server is gone.
    pub fn call(&self, arg: &A) -> Result<R> {
        self.obj.value(Op::Call(enc(arg)?), "call")
    }
}
