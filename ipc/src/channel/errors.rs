//! The errors of a channel's ends, and the outcome of a failed receive
//! before it becomes one of them.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use crate::codec::CodecError;
use crate::error::{Error, ErrorKind};

/// Why [`Sender::send`](super::Sender::send) (or a [`Duplex`](super::Duplex) send) failed;
/// carries the value back.
pub enum SendError<T> {
    /// Every copy of the receiving end is closed (its process died or dropped it).
    Disconnected(T),
    /// The value could not be encoded, or its encoding is too large.
    Encode(T, CodecError),
    /// The operating system refused the write for another reason.
    Io(T, io::Error),
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Disconnected(v) | SendError::Encode(v, _) | SendError::Io(v, _) => v,
        }
    }

    /// True if the peer is gone.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, SendError::Disconnected(_))
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected(_) => f.write_str("Disconnected(..)"),
            SendError::Encode(_, e) => f.debug_tuple("Encode").field(&"..").field(e).finish(),
            SendError::Io(_, e) => f.debug_tuple("Io").field(&"..").field(e).finish(),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected(_) => f.write_str("sending on a disconnected channel"),
            SendError::Encode(_, e) => write!(f, "cannot send: {e}"),
            SendError::Io(_, e) => write!(f, "cannot send: {e}"),
        }
    }
}

impl<T> std::error::Error for SendError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Disconnected(_) => None,
            SendError::Encode(_, e) => Some(e),
            SendError::Io(_, e) => Some(e),
        }
    }
}

impl<T> From<SendError<T>> for Error {
    fn from(e: SendError<T>) -> Error {
        match e {
            SendError::Disconnected(_) => {
                Error::new(ErrorKind::Closed, "sending on a disconnected channel")
            }
            SendError::Encode(_, e) => Error::from(e),
            SendError::Io(_, e) => Error::io("channel send failed", e),
        }
    }
}

/// Why [`Receiver::recv`](super::Receiver::recv) failed.
#[derive(Debug)]
pub enum RecvError {
    /// Every copy of the sending end is closed and no whole message is left.
    Disconnected,
    /// A message arrived but did not decode (the channel stays usable), or its
    /// length prefix exceeds the maximum message size (the channel is closed).
    Decode(CodecError),
    /// The operating system refused the read for another reason.
    Io(io::Error),
}

/// Why [`Receiver::try_recv`](super::Receiver::try_recv) failed.
#[derive(Debug)]
pub enum TryRecvError {
    /// No whole message is waiting.
    Empty,
    /// Every copy of the sending end is closed and no whole message is left.
    Disconnected,
    /// As [`RecvError::Decode`].
    Decode(CodecError),
    /// As [`RecvError::Io`].
    Io(io::Error),
}

/// Why [`Receiver::recv_timeout`](super::Receiver::recv_timeout) failed.
#[derive(Debug)]
pub enum RecvTimeoutError {
    /// No whole message arrived in time.
    Timeout,
    /// Every copy of the sending end is closed and no whole message is left.
    Disconnected,
    /// As [`RecvError::Decode`].
    Decode(CodecError),
    /// As [`RecvError::Io`].
    Io(io::Error),
}

macro_rules! recv_error_impls {
    ($t:ident { $($extra:ident => $kind:expr, $msg:expr;)* }) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( $t::$extra => f.write_str($msg), )*
                    $t::Disconnected => f.write_str("receiving on a disconnected channel"),
                    $t::Decode(e) => write!(f, "cannot receive: {e}"),
                    $t::Io(e) => write!(f, "cannot receive: {e}"),
                }
            }
        }

        impl std::error::Error for $t {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $t::Decode(e) => Some(e),
                    $t::Io(e) => Some(e),
                    _ => None,
                }
            }
        }

        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                match e {
                    $( $t::$extra => Error::new($kind, $msg), )*
                    $t::Disconnected => {
                        Error::new(ErrorKind::Closed, "receiving on a disconnected channel")
                    }
                    $t::Decode(e) => Error::from(e),
                    $t::Io(e) => Error::io("channel receive failed", e),
                }
            }
        }
    };
}

recv_error_impls!(RecvError {});
recv_error_impls!(TryRecvError {
    Empty => ErrorKind::Empty, "no message waiting on the channel";
});
recv_error_impls!(RecvTimeoutError {
    Timeout => ErrorKind::Timeout, "timed out waiting on the channel";
});

/// How long a receive may wait.
#[derive(Debug, Clone, Copy)]
pub(super) enum Wait {
    Try,
    Forever,
    Until(Instant),
}

impl Wait {
    pub(super) fn timeout(d: Duration) -> Wait {
        match Instant::now().checked_add(d) {
            Some(t) => Wait::Until(t),
            None => Wait::Forever,
        }
    }
}

/// The outcome of a failed receive, before it becomes a per-operation error.
pub(super) enum Fail {
    /// Nothing whole arrived within the wait (never with `Wait::Forever`).
    Empty,
    Disconnected,
    Decode(CodecError),
    Io(io::Error),
}

impl From<Fail> for RecvError {
    fn from(f: Fail) -> RecvError {
        match f {
            // `Wait::Forever` does not return `Empty`; if it ever did, the
            // caller would wait again, so report the only permanent state.
            Fail::Empty | Fail::Disconnected => RecvError::Disconnected,
            Fail::Decode(e) => RecvError::Decode(e),
            Fail::Io(e) => RecvError::Io(e),
        }
    }
}

impl From<Fail> for TryRecvError {
    fn from(f: Fail) -> TryRecvError {
        match f {
            Fail::Empty => TryRecvError::Empty,
            Fail::Disconnected => TryRecvError::Disconnected,
            Fail::Decode(e) => TryRecvError::Decode(e),
            Fail::Io(e) => TryRecvError::Io(e),
        }
    }
}

impl From<Fail> for RecvTimeoutError {
    fn from(f: Fail) -> RecvTimeoutError {
        match f {
            Fail::Empty => RecvTimeoutError::Timeout,
            Fail::Disconnected => RecvTimeoutError::Disconnected,
            Fail::Decode(e) => RecvTimeoutError::Decode(e),
            Fail::Io(e) => RecvTimeoutError::Io(e),
        }
    }
}
