//! Typed proxies: handles on objects that live in a manager.
//!
//! A proxy is an object id plus the address of its manager. It is cheap to
//! clone, and it is `Serialize`, so it can be passed to a `Process` or a pool
//! task; in another process it opens its own connection on first use. Every
//! method is one request to the manager. Values are encoded with the
//! [`codec`](multiproc_ipc::codec) on the client; a proxy of other types than
//! its object's is an [`InvalidArgument`](ErrorKind::InvalidArgument) error
//! (see the crate's "Type fingerprints"), a stored value that does not
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
use serde::{Deserialize, Deserializer, Serialize};

use crate::client::{self, unexpected, Endpoint};
use crate::protocol::{Block, Bytes, Kind, Op, Request, Response, Updater};
use crate::typetag::TypeTag;

/// An object in a manager: where it is and its id.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ObjRef {
    pub(crate) ep: Endpoint,
    pub(crate) id: u64,
    /// The types of the proxy holding this reference (typed proxies), never
    /// sent: a proxy decoded as other types gets its own.
    #[serde(skip)]
    pub(crate) ty: Option<TypeTag>,
}

/// The error for a proxy of types `ours` on an object (`what`) that holds
/// `held`.
pub(crate) fn wrong_type(what: &str, kind: Kind, held: &str, ours: Option<&TypeTag>) -> Error {
    let ours = ours.map_or_else(|| "other types".to_owned(), TypeTag::name);
    Error::new(
        ErrorKind::InvalidArgument,
        format!(
            "{what} is a {} of {held}, not of {ours}: a proxy must use the types its \
             object was made with (or first used with, for an object registered by \
             name on a server)",
            kind.name()
        ),
    )
}

impl ObjRef {
    /// Reads a reference for a proxy of types `T` (`deserialize_with`).
    pub(crate) fn de_typed<'de, T: ?Sized, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<ObjRef, D::Error> {
        let mut obj = ObjRef::deserialize(d)?;
        obj.ty = Some(TypeTag::of::<T>());
        Ok(obj)
    }

    fn call(&self, op: Op) -> Result<Response> {
        let req = match &self.ty {
            Some(t) => Request::Typed(self.id, t.fp, op),
            None => Request::Op(self.id, op),
        };
        match client::call(&self.ep, &req)? {
            Response::WrongType(kind, held) => Err(wrong_type(
                &format!("the object #{} of the {:?}", self.id, self.ep),
                kind,
                &held,
                self.ty.as_ref(),
            )),
            r => Ok(r),
        }
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

/// The object registered as `name` on the manager at `ep`, of one of
/// `kinds`, for a proxy of the types `ty` (typed kinds).
pub(crate) fn lookup(
    ep: &Endpoint,
    name: &str,
    kinds: &[Kind],
    ty: Option<TypeTag>,
) -> Result<ObjRef> {
    let what = format!("the object {name:?}");
    let req = Request::Lookup(
        name.to_owned(),
        kinds.to_vec(),
        ty.as_ref().map(TypeTag::desc),
    );
    let id = match client::call(ep, &req)? {
        Response::WrongType(kind, held) => return Err(wrong_type(&what, kind, &held, ty.as_ref())),
        r => expect_kind(r, kinds, &what)?,
    };
    Ok(ObjRef {
        ep: ep.clone(),
        id,
        ty,
    })
}

fn wire_of(kind: ErrorKind, message: String) -> WireError {
    Error::new(kind, message).to_wire()
}

/// The impls every proxy has. `Name<T, ..> => Types` (a typed proxy with a
/// `_t` marker, and the types its fingerprint is made of): `Clone`, `Debug`,
/// `PartialEq`, `from_obj` and `tag`; `Name` (a plain proxy that derives
/// `Clone` and `PartialEq`): `Debug` and `from_obj`.
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
    ($name:ident < $($p:ident),* > => $tag:ty) => {
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
            pub(crate) fn from_obj(mut obj: ObjRef) -> Self {
                obj.ty = Some(Self::tag());
                $name { obj, _t: PhantomData }
            }

            /// The fingerprint of this proxy's types.
            pub(crate) fn tag() -> TypeTag {
                TypeTag::of::<$tag>()
            }
        }
    };
}

mod dict;
mod list;
mod queue;
mod shared;
mod sync;
mod value;

pub use dict::DictProxy;
pub use list::{ListIter, ListProxy};
pub use queue::{JoinableQueueProxy, QueueProxy};
pub use shared::SharedProxy;
pub use sync::{EventProxy, LockProxy, ProxyGuard, RLockProxy, SemaphoreProxy};
pub use value::{CallableProxy, NamespaceProxy, ValueProxy};
