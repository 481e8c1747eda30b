//! [`SharedProxy`]: a user's [`SharedObject`] in a manager.

use super::*;
use crate::SharedObject;

/// A proxy for a user's [`SharedObject`] served by a manager (the proxy
/// Python's `BaseManager.register` makes for a class): each
/// [`call`](SharedProxy::call) sends one `T::Request` and returns the
/// object's `T::Reply`.
///
/// Like every proxy it is `Clone` and `Serialize`: pass it to a `Process`
/// or a pool task and call the object from there. Wrap it in a type of your
/// own to give the object methods (`counter.add(5)` rather than
/// `counter.call(CounterOp::Add(5))`), as the `shared_counter` example does.
///
/// # Examples
///
/// ```
/// use multiproc::{Manager, SharedObject};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Names(Vec<String>);
///
/// #[derive(Serialize, Deserialize)]
/// enum NamesOp {
///     Add(String),
///     Count,
/// }
///
/// impl SharedObject for Names {
///     type Request = NamesOp;
///     type Reply = usize;
///
///     fn handle(&mut self, op: NamesOp) -> usize {
///         if let NamesOp::Add(name) = op {
///             self.0.push(name);
///         }
///         self.0.len()
///     }
/// }
///
/// let manager = Manager::start()?;
/// let names = manager.object(Names::default())?;
/// names.call(NamesOp::Add("ada".into()))?;
/// assert_eq!(names.call(NamesOp::Count)?, 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SharedProxy<T> {
    #[serde(deserialize_with = "ObjRef::de_typed::<T, _>")]
    obj: ObjRef,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}
proxy_common!(SharedProxy<T> => T);

impl<T: SharedObject> SharedProxy<T> {
    /// Sends `request` to the object and returns its reply (the object
    /// handles one request at a time, so each call is atomic).
    ///
    /// # Errors
    ///
    /// `TaskPanicked` if the object's [`handle`](SharedObject::handle)
    /// panicked, with the panic's message and location
    /// ([`Error::panic_info`]); `InvalidArgument` if the object is not a `T`
    /// (see [Type fingerprints](crate#type-fingerprints));
    /// `Serialization` if the request or the reply cannot be encoded or
    /// decoded; `Closed`/`Io` if the manager is gone.
    pub fn call(&self, request: T::Request) -> Result<T::Reply> {
        self.obj.value(Op::Call(enc(&request)?), "call")
    }
}
