//! [`DictProxy`]: a dict in a manager.

use std::borrow::Borrow;

use super::*;

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
/// use multiproc::Manager;
///
/// let manager = Manager::start()?;
/// let d = manager.dict_from([("count".to_string(), 100i64)])?;
/// d.insert(&"count".to_string(), &99)?;
/// assert_eq!(d.get("count")?, Some(99)); // a &str for a String key
/// // Atomically, in the manager, in one round trip:
/// let v = d.update_with("count", |v| v.unwrap_or(0) - 1)?;
/// assert_eq!(v, 98);
/// // Insertion order, as in Python.
/// d.insert(&"b".to_string(), &2)?;
/// d.insert(&"a".to_string(), &1)?;
/// assert_eq!(d.keys()?, ["count", "b", "a"]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct DictProxy<K, V> {
    #[serde(deserialize_with = "ObjRef::de_typed::<(K, V), _>")]
    obj: ObjRef,
    #[serde(skip)]
    _t: PhantomData<fn() -> (K, V)>,
}
proxy_common!(DictProxy<K, V> => (K, V));

impl<K, V> DictProxy<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// The value for `key`, Python's `d.get(key)`.
    ///
    /// The key may be any borrowed form of `K` that encodes as `K` does, as
    /// with [`HashMap::get`](std::collections::HashMap::get): a `&str` for a
    /// `String` key, a `&[T]` for a `Vec<T>` key (serde encodes both forms
    /// alike). The same holds for [`remove`](DictProxy::remove),
    /// [`pop`](DictProxy::pop), [`contains_key`](DictProxy::contains_key) and
    /// [`update_with`](DictProxy::update_with).
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Manager;
    ///
    /// let manager = Manager::start()?;
    /// let d = manager.dict_from([("count".to_string(), 3i64)])?;
    /// assert_eq!(d.get("count")?, Some(3));
    /// assert!(d.contains_key("count")?);
    /// assert_eq!(d.update_with("count", |c| c.unwrap_or(0) + 1)?, 4);
    /// assert_eq!(d.remove("count")?, Some(4));
    /// assert_eq!(d.get("count")?, None);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Serialization` if the stored value is not a `V`; `Closed`/`Io` if the
    /// manager is gone (as for every method below).
    ///
    /// # Caveats
    ///
    /// Keys are compared by their encoding: a `Q` whose encoding differs from
    /// the `K` it borrows from (say, a newtype with a custom `Serialize`)
    /// finds nothing.
    pub fn get<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
    {
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

    /// Removes `key` (any borrowed form of `K`, as for
    /// [`get`](DictProxy::get)), returning its value (`del d[key]`).
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn remove<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
    {
        self.obj.maybe(Op::DictRemove(enc(key)?), "remove")
    }

    /// Python's `d.pop(key)`: removes `key` and returns its value.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` (Python's `KeyError`) if the key is absent; else as
    /// [`get`](DictProxy::get).
    pub fn pop<Q>(&self, key: &Q) -> Result<V>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
    {
        self.remove(key)?
            .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "key not found"))
    }

    /// `key in d` (`key`: any borrowed form of `K`, as for
    /// [`get`](DictProxy::get)).
    ///
    /// # Errors
    ///
    /// As [`get`](DictProxy::get).
    pub fn contains_key<Q>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
    {
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
    /// use multiproc::Manager;
    ///
    /// let manager = Manager::start()?;
    /// let d = manager.dict_from([('z', 1), ('y', 2), ('x', 3)])?;
    /// let map = d.to_map()?;
    /// assert_eq!(map[&'y'], 2);
    /// assert_eq!(map.keys().copied().collect::<String>(), "zyx");
    /// # Ok::<(), multiproc::Error>(())
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
    /// runs in the manager process, a fork of this program. `key` may be any
    /// borrowed form of `K`, as for [`get`](DictProxy::get).
    ///
    /// # Errors
    ///
    /// `TaskPanicked` if `f` panics (the entry is left unchanged), with the
    /// panic's message and location ([`Error::panic_info`]);
    /// `InvalidArgument` on a remote manager, which never runs code sent by a
    /// client; else as [`get`](DictProxy::get).
    pub fn update_with<Q>(&self, key: &Q, f: fn(Option<V>) -> V) -> Result<V>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
    {
        let updater: Updater = FnRef::new(dict_updater::<V>);
        let f = enc(&FnRef::new(f))?;
        self.obj
            .value(Op::DictUpdateWith(enc(key)?, updater, f), "update_with")
    }
}
