//! [`FnRef2`]: a two-argument function pointer that can be sent to processes
//! forked from this one (the pool's `starmap`).

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::sys::fork::FnAddr;

/// A `fn(A, B) -> R` that can be sent to processes forked from this one; the
/// two-argument sibling of [`FnRef`](crate::FnRef), with the same checks.
///
/// # Examples
///
/// ```
/// use multiproc::{codec, FnRef2};
///
/// fn add(a: u32, b: u32) -> u32 {
///     a + b
/// }
///
/// let bytes = codec::encode(&FnRef2::new(add)).unwrap();
/// let f: FnRef2<u32, u32, u32> = codec::decode(&bytes).unwrap();
/// assert_eq!(f.call(2, 3).unwrap(), 5);
/// let g: FnRef2<u64, u32, u32> = codec::decode(&bytes).unwrap();
/// assert!(g.get().is_err());
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct FnRef2<A: 'static, B: 'static, R: 'static> {
    addr: FnAddr,
    #[serde(skip)]
    _f: PhantomData<fn(A, B) -> R>,
}

impl<A: 'static, B: 'static, R: 'static> Clone for FnRef2<A, B, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A: 'static, B: 'static, R: 'static> Copy for FnRef2<A, B, R> {}

impl<A: 'static, B: 'static, R: 'static> fmt::Debug for FnRef2<A, B, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FnRef2({})", std::any::type_name::<fn(A, B) -> R>())
    }
}

impl<A: 'static, B: 'static, R: 'static> FnRef2<A, B, R> {
    /// Captures `f`.
    pub fn new(f: fn(A, B) -> R) -> Self {
        FnRef2 {
            addr: FnAddr::of(f),
            _f: PhantomData,
        }
    }

    /// The function.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if this reference was not made by
    /// [`FnRef2::new`] with the same types in this program's fork tree.
    pub fn get(&self) -> Result<fn(A, B) -> R> {
        self.addr.get().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                "function reference is not from this program's fork tree",
            )
        })
    }

    /// Calls the function with `a` and `b`.
    ///
    /// # Errors
    ///
    /// As [`get`](FnRef2::get).
    pub fn call(&self, a: A, b: B) -> Result<R> {
        Ok(self.get()?(a, b))
    }
}
