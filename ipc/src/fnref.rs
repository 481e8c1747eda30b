//! [`FnRef`]: a function pointer that can cross to a forked process.

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::sys::fork::FnAddr;

/// A function pointer that can be sent to processes forked from this one.
///
/// A pool sends its tasks to workers as `FnRef`s. It encodes as the
/// function's address plus a secret of this fork tree and a tag of its type;
/// [`get`](FnRef::get) gives the function back only in a process forked
/// (without exec) from the same program, where the address means the same
/// function. Bytes from anywhere else (another program, a forger without the
/// secret, a different `A`/`R`) give an error instead.
///
/// # Examples
///
/// ```
/// use multiproc::{codec, FnRef};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let bytes = codec::encode(&FnRef::new(square)).unwrap();
/// let f: FnRef<u64, u64> = codec::decode(&bytes).unwrap();
/// assert_eq!(f.call(7).unwrap(), 49);
/// // The same address read as another type is refused.
/// let g: FnRef<u32, u64> = codec::decode(&bytes).unwrap();
/// assert!(g.get().is_err());
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct FnRef<A: 'static, R: 'static> {
    addr: FnAddr,
    #[serde(skip)]
    _f: PhantomData<fn(A) -> R>,
}

impl<A: 'static, R: 'static> Clone for FnRef<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A: 'static, R: 'static> Copy for FnRef<A, R> {}

impl<A: 'static, R: 'static> fmt::Debug for FnRef<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnRef(")?;
        f.write_str(std::any::type_name::<fn(A) -> R>())?;
        f.write_str(")")
    }
}

impl<A: 'static, R: 'static> FnRef<A, R> {
    /// Captures `f` (a `fn` item or a non-capturing closure coerced to `fn`).
    pub fn new(f: fn(A) -> R) -> FnRef<A, R> {
        FnRef {
            addr: FnAddr::of(f),
            _f: PhantomData,
        }
    }

    /// The function.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] if this reference was not made by
    /// [`FnRef::new`] with the same types in this process or one it was
    /// forked from.
    pub fn get(&self) -> Result<fn(A) -> R> {
        self.addr.get().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument,
                "function reference is not from this program's fork tree",
            )
        })
    }

    /// Calls the function with `arg`.
    ///
    /// # Errors
    ///
    /// As [`get`](FnRef::get).
    pub fn call(&self, arg: A) -> Result<R> {
        Ok(self.get()?(arg))
    }
}
