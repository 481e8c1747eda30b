//! [`ValueProxy`], [`NamespaceProxy`] and [`CallableProxy`].

use super::*;

/// Runs in the manager: decodes the stored value, calls the user's function.
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

/// One value in a manager (Python's `manager.Value(typecode, v)`).
///
/// # Examples
///
/// ```
/// use multiproc::Manager;
///
/// let manager = Manager::start()?;
/// let v = manager.value(10u64)?;
/// v.set(&11)?;
/// assert_eq!(v.update_with(|x| x * 2)?, 22);
/// assert_eq!(v.get()?, 22);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ValueProxy<T> {
    #[serde(deserialize_with = "ObjRef::de_typed::<T, _>")]
    obj: ObjRef,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}
proxy_common!(ValueProxy<T> => T);

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
/// use multiproc::Manager;
///
/// let manager = Manager::start()?;
/// let ns = manager.namespace()?;
/// ns.set("x", &1.5f64)?;
/// ns.set("name", &"abc")?;
/// assert_eq!(ns.get::<f64>("x")?, Some(1.5));
/// assert_eq!(ns.names()?, vec!["name", "x"]);
/// # Ok::<(), multiproc::Error>(())
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
    #[serde(deserialize_with = "ObjRef::de_typed::<(A, R), _>")]
    obj: ObjRef,
    #[serde(skip)]
    _t: PhantomData<fn(A) -> R>,
}
proxy_common!(CallableProxy<A, R> => (A, R));

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
