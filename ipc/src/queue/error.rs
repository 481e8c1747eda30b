//! One small error type per queue operation. A failed put gives the item back.
//!
//! Each converts into the crate's [`Error`](crate::Error) (with the matching
//! [`ErrorKind`]) for `?` in code that does not care about the item.

use std::fmt;

use crate::error::{Error, ErrorKind};

/// Why [`put`](super::Queue::put) failed; the item is given back.
pub enum PutError<T> {
    /// The queue was closed.
    Closed(T),
    /// The item could not be encoded, or the system failed (see the error).
    Failed(T, Error),
}

/// Why [`try_put`](super::Queue::try_put) failed; the item is given back.
pub enum TryPutError<T> {
    /// The queue is full (Python's `queue.Full`).
    Full(T),
    /// The queue was closed.
    Closed(T),
    /// The item could not be encoded, or the system failed.
    Failed(T, Error),
}

/// Why [`put_timeout`](super::Queue::put_timeout) failed; the item is given back.
pub enum PutTimeoutError<T> {
    /// The queue stayed full for the whole timeout (Python's `queue.Full`).
    Timeout(T),
    /// The queue was closed.
    Closed(T),
    /// The item could not be encoded, or the system failed.
    Failed(T, Error),
}

/// Why [`get`](super::Queue::get) failed.
#[derive(Debug)]
pub enum GetError {
    /// The queue is closed and has no items left.
    Closed,
    /// An item could not be decoded, or the system failed.
    Failed(Error),
}

/// Why [`try_get`](super::Queue::try_get) failed.
#[derive(Debug)]
pub enum TryGetError {
    /// The queue is empty (Python's `queue.Empty`).
    Empty,
    /// The queue is closed and has no items left.
    Closed,
    /// An item could not be decoded, or the system failed.
    Failed(Error),
}

/// Why [`get_timeout`](super::Queue::get_timeout) failed.
#[derive(Debug)]
pub enum GetTimeoutError {
    /// No item arrived within the timeout (Python's `queue.Empty`).
    Timeout,
    /// The queue is closed and has no items left.
    Closed,
    /// An item could not be decoded, or the system failed.
    Failed(Error),
}

macro_rules! put_error {
    ($name:ident { $($variant:ident => $kind:expr, $text:expr;)* }) => {
        impl<T> $name<T> {
            /// The item that was not put.
            pub fn into_inner(self) -> T {
                match self {
                    $($name::$variant(t) => t,)*
                    $name::Failed(t, _) => t,
                }
            }

            /// The [`ErrorKind`] this failure maps to.
            pub fn kind(&self) -> ErrorKind {
                match self {
                    $($name::$variant(_) => $kind,)*
                    $name::Failed(_, e) => e.kind(),
                }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$variant(_) => write!(f, "{}(..)", stringify!($variant)),)*
                    $name::Failed(_, e) => f.debug_tuple("Failed").field(&"..").field(e).finish(),
                }
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$variant(_) => f.write_str($text),)*
                    $name::Failed(_, e) => write!(f, "put failed: {e}"),
                }
            }
        }

        impl<T> std::error::Error for $name<T> {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $name::Failed(_, e) => Some(e),
                    _ => None,
                }
            }
        }

        impl<T> From<$name<T>> for Error {
            fn from(e: $name<T>) -> Error {
                match e {
                    $name::Failed(_, e) => e,
                    other => Error::new(other.kind(), other.to_string()),
                }
            }
        }
    };
}

put_error!(PutError {
    Closed => ErrorKind::Closed, "put on a closed queue";
});
put_error!(TryPutError {
    Full => ErrorKind::Full, "queue is full";
    Closed => ErrorKind::Closed, "put on a closed queue";
});
put_error!(PutTimeoutError {
    Timeout => ErrorKind::Timeout, "queue stayed full until the timeout";
    Closed => ErrorKind::Closed, "put on a closed queue";
});

macro_rules! get_error {
    ($name:ident { $($variant:ident => $kind:expr, $text:expr;)* }) => {
        impl $name {
            /// The [`ErrorKind`] this failure maps to.
            pub fn kind(&self) -> ErrorKind {
                match self {
                    $($name::$variant => $kind,)*
                    $name::Failed(e) => e.kind(),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $($name::$variant => f.write_str($text),)*
                    $name::Failed(e) => write!(f, "get failed: {e}"),
                }
            }
        }

        impl std::error::Error for $name {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $name::Failed(e) => Some(e),
                    _ => None,
                }
            }
        }

        impl From<$name> for Error {
            fn from(e: $name) -> Error {
                match e {
                    $name::Failed(e) => e,
                    other => Error::new(other.kind(), other.to_string()),
                }
            }
        }
    };
}

get_error!(GetError {
    Closed => ErrorKind::Closed, "queue is closed and empty";
});
get_error!(TryGetError {
    Empty => ErrorKind::Empty, "queue is empty";
    Closed => ErrorKind::Closed, "queue is closed and empty";
});
get_error!(GetTimeoutError {
    Timeout => ErrorKind::Timeout, "no item arrived before the timeout";
    Closed => ErrorKind::Closed, "queue is closed and empty";
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_back_and_kinds_map() {
        let e = TryPutError::Full(vec![1u8]);
        assert_eq!(e.kind(), ErrorKind::Full);
        assert_eq!(format!("{e:?}"), "Full(..)");
        assert_eq!(e.to_string(), "queue is full");
        assert_eq!(e.into_inner(), vec![1]);
        let e: Error = PutTimeoutError::Timeout(3).into();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        let e: Error = TryGetError::Empty.into();
        assert_eq!(e.kind(), ErrorKind::Empty);
        let inner = Error::new(ErrorKind::Serialization, "bad");
        let e = PutError::Failed(5, inner);
        assert_eq!(e.kind(), ErrorKind::Serialization);
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(e.into_inner(), 5);
    }
}
