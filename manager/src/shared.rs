//! Custom shared objects: a user type served by a manager (Python's
//! `BaseManager.register(typeid, callable)` with a class).
//!
//! The object lives in the manager process; clients hold a
//! [`SharedProxy<T>`](crate::SharedProxy) and send it `T::Request`s, which
//! the manager decodes and hands to [`SharedObject::handle`]. No code
//! crosses the wire: a local manager is a fork of its client and receives a
//! function pointer to the decoder of `T` (as for `update_with`), and a
//! [`ManagerServer`](crate::ManagerServer) is given the object itself when
//! it is built.

use multiproc_ipc::process::catch_remote_panic;
use multiproc_ipc::{codec, Error, ErrorKind, FnRef, Result, WireError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::protocol::{Bytes, Init, Kind};
use crate::proxy::lookup;
use crate::{Manager, ManagerServerBuilder, RemoteManager, SharedProxy};

/// A type whose values a manager can serve to other processes, called
/// through a typed [`SharedProxy`](crate::SharedProxy) (Python's
/// `BaseManager.register(typeid, callable)` with a class).
///
/// The methods of the type become the variants of its
/// [`Request`](SharedObject::Request), so that every call is checked at
/// compile time: a client can only send a `Request` and gets a `Reply`.
/// The manager runs [`handle`](SharedObject::handle) for one request at a
/// time per object, so each call is atomic.
///
/// # Examples
///
/// ```
/// use multiproc::{Manager, SharedObject};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Counter {
///     n: i64,
/// }
///
/// #[derive(Serialize, Deserialize)]
/// enum CounterOp {
///     Add(i64),
///     Get,
///     Reset,
/// }
///
/// impl SharedObject for Counter {
///     type Request = CounterOp;
///     type Reply = i64;
///
///     fn handle(&mut self, op: CounterOp) -> i64 {
///         match op {
///             CounterOp::Add(k) => self.n += k,
///             CounterOp::Get => {}
///             CounterOp::Reset => self.n = 0,
///         }
///         self.n
///     }
/// }
///
/// let manager = Manager::start()?;
/// let counter = manager.register("counter", Counter::default())?;
/// assert_eq!(counter.call(CounterOp::Add(5))?, 5);
/// assert_eq!(manager.shared::<Counter>("counter")?.call(CounterOp::Get)?, 5);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// # Caveats
///
/// `handle` runs in the manager process while the object is locked: calls
/// of other clients on the same object wait for it, so it should not block
/// for long. If it panics, the caller gets a `TaskPanicked` error and the
/// object keeps whatever state the panic left it in.
pub trait SharedObject: Send + 'static {
    /// What a client sends: typically an enum with a variant per method.
    type Request: Serialize + DeserializeOwned;
    /// What the object answers (an enum, when methods answer different
    /// types).
    type Reply: Serialize + DeserializeOwned;

    /// Handles one request, in the manager process.
    fn handle(&mut self, request: Self::Request) -> Self::Reply;
}

/// A served object with its types erased: encoded requests in, encoded
/// replies out.
pub(crate) trait Served: Send {
    /// Decodes `request`, handles it and encodes the reply; a panic in the
    /// handler is a `TaskPanicked` error.
    fn call(&mut self, request: &[u8]) -> std::result::Result<Bytes, WireError>;
}

/// The [`Served`] form of a `T`.
pub(crate) struct ServedObject<T>(pub(crate) T);

impl<T: SharedObject> Served for ServedObject<T> {
    fn call(&mut self, request: &[u8]) -> std::result::Result<Bytes, WireError> {
        let req: T::Request = codec::decode(request).map_err(|e| {
            Error::with_source(
                ErrorKind::Serialization,
                format!(
                    "the request is not a {}",
                    std::any::type_name::<T::Request>()
                ),
                e,
            )
            .to_wire()
        })?;
        let reply =
            catch_remote_panic(|| self.0.handle(req)).map_err(|p| Error::panicked(p).to_wire())?;
        codec::encode(&reply).map_err(|e| Error::from(e).to_wire())
    }
}

/// Makes a served object in a local manager from its encoded state.
pub(crate) type ServedMaker = FnRef<Bytes, std::result::Result<Box<dyn Served>, WireError>>;

/// The [`ServedMaker`] target for a `T`.
pub(crate) fn make_served<T>(state: Bytes) -> std::result::Result<Box<dyn Served>, WireError>
where
    T: SharedObject + DeserializeOwned,
{
    let value: T = codec::decode(&state).map_err(|e| {
        Error::with_source(
            ErrorKind::Serialization,
            format!("the initial state is not a {}", std::any::type_name::<T>()),
            e,
        )
        .to_wire()
    })?;
    Ok(Box::new(ServedObject(value)))
}

impl Manager {
    /// A new object served by the manager, made from `initial` (Python's
    /// `manager.Counter()` after `register("Counter", Counter)`): `initial`
    /// is encoded here and decoded as a `T` in the manager, which then owns
    /// it.
    ///
    /// # Examples
    ///
    /// See [`SharedProxy`].
    ///
    /// # Errors
    ///
    /// `Serialization` if `initial` cannot be encoded; `Closed`/`Io` if the
    /// manager is gone.
    pub fn object<T>(&self, initial: T) -> Result<SharedProxy<T>>
    where
        T: SharedObject + Serialize + DeserializeOwned,
    {
        self.make_object(initial, None)
    }

    /// As [`object`](Manager::object), also registered as `name`, so that
    /// [`shared`](Manager::shared) finds it.
    ///
    /// # Examples
    ///
    /// See [`SharedObject`].
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `name` is already registered; else as
    /// [`object`](Manager::object).
    pub fn register<T>(&self, name: &str, initial: T) -> Result<SharedProxy<T>>
    where
        T: SharedObject + Serialize + DeserializeOwned,
    {
        self.make_object(initial, Some(name.to_owned()))
    }

    fn make_object<T>(&self, initial: T, name: Option<String>) -> Result<SharedProxy<T>>
    where
        T: SharedObject + Serialize + DeserializeOwned,
    {
        let make: ServedMaker = FnRef::new(make_served::<T>);
        let state = codec::encode(&initial)?;
        let init = Init::Shared { make, state, name };
        let obj = self.create_typed(Kind::Shared, init, Some(SharedProxy::<T>::tag()))?;
        Ok(SharedProxy::from_obj(obj))
    }

    /// The shared object registered as `name` by
    /// [`register`](Manager::register).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if nothing is registered as `name`, or not a
    /// shared object of type `T`; `Closed`/`Io` if the manager is gone.
    pub fn shared<T: SharedObject>(&self, name: &str) -> Result<SharedProxy<T>> {
        let obj = lookup(
            self.endpoint(),
            name,
            &[Kind::Shared],
            Some(SharedProxy::<T>::tag()),
        )?;
        Ok(SharedProxy::from_obj(obj))
    }
}

impl ManagerServerBuilder {
    /// Serves `object` as `name`: clients get a [`SharedProxy<T>`] for it
    /// from [`RemoteManager::shared`] and call it with `T::Request`s. The
    /// object is handled on the calling client's connection thread, one
    /// request at a time.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::{ManagerServer, RemoteManager, SharedObject};
    ///
    /// /// Remembers the largest number it was shown.
    /// struct Max(u64);
    ///
    /// impl SharedObject for Max {
    ///     type Request = u64;
    ///     type Reply = u64;
    ///
    ///     fn handle(&mut self, x: u64) -> u64 {
    ///         self.0 = self.0.max(x);
    ///         self.0
    ///     }
    /// }
    ///
    /// let server = ManagerServer::builder(b"key")
    ///     .register("max", Max(0))
    ///     .bind("127.0.0.1:0")?;
    /// let remote = RemoteManager::connect(server.local_addr(), b"key")?;
    /// let max = remote.shared::<Max>("max")?;
    /// max.call(7)?;
    /// assert_eq!(max.call(3)?, 7);
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn register<T: SharedObject>(self, name: &str, object: T) -> Self {
        let ty = SharedProxy::<T>::tag().desc();
        self.add_served(name, Box::new(ServedObject(object)), ty)
    }
}

impl RemoteManager {
    /// The shared object registered as `name` on the server (see
    /// [`ManagerServerBuilder::register`]); `T` must be the type it was
    /// registered with (see [Type fingerprints](crate#type-fingerprints)).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if nothing is registered as `name`, or not a
    /// shared object of type `T`; `Closed`/`Io` if the server is gone.
    pub fn shared<T: SharedObject>(&self, name: &str) -> Result<SharedProxy<T>> {
        let obj = self.lookup_typed(name, &[Kind::Shared], Some(SharedProxy::<T>::tag()))?;
        Ok(SharedProxy::from_obj(obj))
    }
}
