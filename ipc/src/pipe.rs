//! Python's `multiprocessing.Pipe()`: two connected [`Connection`]s.
//!
//! [`Pipe::new`] (Python's `Pipe()`, `duplex=True`) gives two ends that both
//! send and receive; [`Pipe::duplex`] is the same with a different message
//! type in each direction; [`Pipe::simplex`] (Python's `Pipe(duplex=False)`)
//! gives a [`RecvConnection`] and a [`SendConnection`], **receiving end
//! first** as in Python (the opposite of [`channel`](crate::channel::channel)'s
//! `(tx, rx)`). The direction of a simplex pipe is enforced by the types: a
//! `RecvConnection` has no `send`, a `SendConnection` no `recv`.
//!
//! Every end carries typed messages (encoded by the [`codec`](crate::codec);
//! an [`Fd`](crate::Fd) in a message carries its descriptor along, Python's
//! `send_handle`) and raw byte messages ([`send_bytes`](Connection::send_bytes),
//! [`recv_bytes`](Connection::recv_bytes)) in one stream, framed by
//! [`channel::duplex`], which this module wraps.
//! Operations return [`Error`] with kind [`Closed`](ErrorKind::Closed) when
//! the peer is gone, [`Timeout`](ErrorKind::Timeout) or
//! [`Empty`](ErrorKind::Empty) when nothing arrived in time,
//! [`Serialization`](ErrorKind::Serialization) for a message that does not
//! decode (or is above the maximum message size), and [`Io`](ErrorKind::Io)
//! otherwise; a failed [`send`](Connection::send) gives the value back in a
//! [`SendError`] (which `?` turns into an [`Error`] of the same kinds).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use multiproc_ipc::pipe::Pipe;
//! use multiproc_ipc::ErrorKind;
//!
//! let (a, b) = Pipe::new::<String>()?;
//! a.send("ping".to_string())?;
//! assert_eq!(b.recv()?, "ping");
//! b.send_bytes(b"pong")?;
//! assert_eq!(a.recv_bytes()?, b"pong");
//! assert!(!a.poll(Duration::ZERO));
//! assert_eq!(a.try_recv().unwrap_err().kind(), ErrorKind::Empty);
//!
//! b.close();
//! assert_eq!(a.recv().unwrap_err().kind(), ErrorKind::Closed);
//! # Ok::<(), multiproc_ipc::Error>(())
//! ```
//!
//! # Giving an end to a child process
//!
//! An end is a file descriptor; it reaches a child only by `fork`, never by
//! serialization (a descriptor number means nothing in another process). Make
//! the pipe before spawning, and pass the child's end as the argument of
//! [`Process::spawn`](crate::Process::spawn) wrapped by
//! [`into_inherited`](Connection::into_inherited):
//!
//! ```
//! use multiproc_ipc::pipe::{Connection, Inherited, Pipe};
//! use multiproc_ipc::Process;
//!
//! /// Doubles numbers until the parent closes; returns how many.
//! fn child(end: Inherited<Connection<u64>>) -> u64 {
//!     let Ok(end) = end.take() else { return 0 };
//!     let mut answered = 0;
//!     while let Ok(n) = end.recv() {
//!         if end.send(n * 2).is_err() {
//!             break;
//!         }
//!         answered += 1;
//!     }
//!     answered // `recv` failed with `Closed`: the parent closed its end
//! }
//!
//! let (parent, child_end) = Pipe::new::<u64>()?;
//! let p = Process::spawn(child, child_end.into_inherited())?;
//! // Here the parent's copy of `child_end` is already closed.
//! parent.send(21)?;
//! assert_eq!(parent.recv()?, 42);
//! parent.close();
//! assert_eq!(p.join()?, 1);
//! # Ok::<(), multiproc_ipc::Error>(())
//! ```
//!
//! [`Inherited`] moves the end into the forked child, where
//! [`take`](Inherited::take) returns it, and closes the parent's copy when
//! `spawn` returns (the argument is dropped in the parent). If the argument is
//! serialized instead (a child started by the fork server after
//! [`init`](crate::init), or a pool task), the end does not travel: `take`
//! fails with [`ErrorKind::Closed`]; use an [`Fd`](crate::Fd) there.
//!
//! To give an end to a child that runs from the fork server (or to a pool
//! task, or through another pipe), send it as an [`Fd`](crate::Fd): every
//! end is `AsFd` and `From<OwnedFd>`, so `Fd<Connection<S, R>>` carries the
//! socket itself (`SCM_RIGHTS`), whatever the start method:
//!
//! ```
//! use multiproc_ipc::pipe::{Connection, Pipe};
//! use multiproc_ipc::{Fd, Process};
//!
//! fn child(end: Fd<Connection<u64>>) -> u64 {
//!     let end = end.into_inner();
//!     let n = end.recv().unwrap_or(0);
//!     end.send(n + 1).ok();
//!     n
//! }
//!
//! let (parent, child_end) = Pipe::new::<u64>()?;
//! let p = Process::spawn(child, Fd::new(child_end))?;
//! parent.send(41)?;
//! assert_eq!(parent.recv()?, 42);
//! assert_eq!(p.join()?, 41);
//! # Ok::<(), multiproc_ipc::Error>(())
//! ```
//!
//! The same works by hand: put the child's end in a
//! `static Mutex<Option<Connection<T>>>` before the spawn, take it in the
//! child, and take and drop it in the parent right after the spawn.
//!
//! # The drop-the-ends-you-don't-own rule
//!
//! `recv` reports [`Closed`](ErrorKind::Closed) when every copy of the peer's
//! end is closed. After a fork the child holds a copy of every descriptor of
//! the parent, so:
//!
//! - **Parent side**: the parent must not keep the child's end. With
//!   [`Inherited`] this is automatic; then a child that exits, panics, aborts
//!   or is SIGKILLed closes its copy in the kernel, and the parent's `recv`
//!   returns `Closed` instead of hanging (a `send` fails with the value given
//!   back, never with `SIGPIPE`).
//! - **Child side**: the child also holds a copy of the parent's end (it was
//!   in the parent's memory at the fork, and a child ends with `_exit`, so it
//!   is never dropped). Dropping its end in the parent therefore does not
//!   signal the child; [`close`](Connection::close) does, because it shuts
//!   the socket down for every copy. A parent that dies kills its children
//!   anyway (`PR_SET_PDEATHSIG`).
//! - A process forked by another thread while a pipe exists also holds copies
//!   of both ends and delays `Closed` until it exits or execs (the ends are
//!   close-on-exec). Only [`close`](Connection::close) is immune to copies.
//!
//! # Caveats
//!
//! - One process per end: two processes receiving or sending on copies of one
//!   end interleave messages, as with Python's `Connection`.
//! - Sends block while the socket buffer is full: two ends that both send
//!   large messages before either receives deadlock, as with Python's `Pipe`.
//! - Python's `recv_bytes_into` (receive into a caller's buffer) is not
//!   provided: [`recv_bytes`](Connection::recv_bytes) returns an owned
//!   buffer, received without an extra copy.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{self, Shutdown};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::channel::{self, Duplex};
use crate::error::{Error, ErrorKind, Result};

pub use crate::channel::SendError;

/// Makes pipes: Python's `multiprocessing.Pipe`.
///
/// Not a value: its associated functions return the two ends.
#[derive(Debug)]
pub struct Pipe {
    _private: (),
}

impl Pipe {
    /// Creates a two-way pipe (Python's `Pipe()`): both ends send and receive
    /// `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = multiproc_ipc::pipe::Pipe::new::<Vec<u8>>()?;
    /// a.send(vec![1, 2])?;
    /// b.send(vec![3])?;
    /// assert_eq!(b.recv()?, [1, 2]);
    /// assert_eq!(a.recv()?, [3]);
    /// # Ok::<(), multiproc_ipc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the socketpair cannot be created (out of descriptors).
    // Python's `Pipe()` returns two connections, not a pipe object.
    #[allow(clippy::new_ret_no_self)]
    pub fn new<T>() -> Result<(Connection<T>, Connection<T>)> {
        Pipe::duplex::<T, T>()
    }

    /// Creates a two-way pipe whose first end sends `A` and receives `B`, and
    /// whose second end sends `B` and receives `A`.
    ///
    /// # Examples
    ///
    /// ```
    /// let (client, server) = multiproc_ipc::pipe::Pipe::duplex::<String, usize>()?;
    /// client.send("four".to_string())?;
    /// let s = server.recv()?;
    /// server.send(s.len())?;
    /// assert_eq!(client.recv()?, 4);
    /// # Ok::<(), multiproc_ipc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the socketpair cannot be created.
    pub fn duplex<A, B>() -> Result<(Connection<A, B>, Connection<B, A>)> {
        let (a, b) = channel::duplex::<A, B>()?;
        Ok((Connection { end: a }, Connection { end: b }))
    }

    /// Creates a one-way pipe (Python's `Pipe(duplex=False)`): the **first**
    /// end only receives, the second only sends.
    ///
    /// # Examples
    ///
    /// ```
    /// let (rx, tx) = multiproc_ipc::pipe::Pipe::simplex::<u32>()?;
    /// tx.send(7)?;
    /// tx.send_bytes(b"raw")?;
    /// assert_eq!(rx.recv()?, 7);
    /// assert_eq!(rx.recv_bytes()?, b"raw");
    /// # Ok::<(), multiproc_ipc::Error>(())
    /// ```
    ///
    /// The direction is checked at compile time:
    ///
    /// ```compile_fail,E0599
    /// let (rx, tx) = multiproc_ipc::pipe::Pipe::simplex::<u32>()?;
    /// rx.send(7)?; // a RecvConnection cannot send
    /// # Ok::<(), multiproc_ipc::Error>(())
    /// ```
    ///
    /// ```compile_fail,E0599
    /// let (rx, tx) = multiproc_ipc::pipe::Pipe::simplex::<u32>()?;
    /// let _ = tx.recv(); // a SendConnection cannot receive
    /// # Ok::<(), multiproc_ipc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the socketpair cannot be created.
    pub fn simplex<T>() -> Result<(RecvConnection<T>, SendConnection<T>)> {
        let (r, w) = channel::duplex::<(), T>()?;
        // The unused direction is shut at the socket too, so that even a
        // descriptor reused through `AsFd` cannot carry data backwards.
        let _ = socket::shutdown(r.as_fd().as_raw_fd(), Shutdown::Write);
        Ok((RecvConnection { end: r }, SendConnection { end: w }))
    }
}

/// Shuts the socket down for every copy of the end, then closes this one.
fn shutdown_and_close(fd: BorrowedFd<'_>) {
    // Fails only on a descriptor that is not a connected socket, for which
    // there is nothing to shut down.
    let _ = socket::shutdown(fd.as_raw_fd(), Shutdown::Both);
}

/// `AsFd` (the socket, Python's `fileno()`) and `Debug` (its descriptor),
/// the same for every kind of end.
macro_rules! end_impls {
    ($name:ident < $($p:ident),* >) => {
        impl<$($p),*> AsFd for $name<$($p),*> {
            /// The socket (Python's `fileno()`), for `poll`/`epoll` with other descriptors.
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.end.as_fd()
            }
        }

        impl<$($p),*> From<OwnedFd> for $name<$($p),*> {
            /// An end on a connected unix stream socket: one received as an
            /// [`Fd`](crate::Fd) (how an end reaches a child of the fork
            /// server), or the peer of an end made by this module.
            fn from(fd: OwnedFd) -> Self {
                $name { end: Duplex::from(fd) }
            }
        }

        impl<$($p),*> fmt::Debug for $name<$($p),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("fd", &self.end.as_fd().as_raw_fd())
                    .finish()
            }
        }
    };
}

/// The untyped receive methods (`recv_bytes`, `try_recv_bytes`,
/// `recv_bytes_timeout`, `poll`) of an end that receives, the same on
/// [`Connection`] and [`RecvConnection`]; expands inside its `impl` block.
macro_rules! recv_bytes_methods {
    ($name:ident) => {
        /// Blocks until a message arrives and returns its bytes (Python's
        /// `recv_bytes`); a message sent with [`send`](Connection::send) comes
        /// back encoded.
        ///
        /// # Errors
        ///
        #[doc = concat!("As [`recv`](", stringify!($name), "::recv) (`Serialization` only for a length above")]
        /// the maximum message size).
        pub fn recv_bytes(&self) -> Result<Vec<u8>> {
            Ok(self.end.recv_bytes()?)
        }

        /// Receives a byte message if a whole one is waiting, without blocking.
        ///
        /// # Errors
        ///
        #[doc = concat!("As [`try_recv`](", stringify!($name), "::try_recv).")]
        pub fn try_recv_bytes(&self) -> Result<Vec<u8>> {
            Ok(self.end.try_recv_bytes()?)
        }

        /// Waits at most `timeout` for a byte message.
        ///
        /// # Errors
        ///
        #[doc = concat!("As [`recv_timeout`](", stringify!($name), "::recv_timeout).")]
        pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
            Ok(self.end.recv_bytes_timeout(timeout)?)
        }

        /// Waits at most `timeout` until a receive would not block (Python's
        /// `poll(timeout)`): true if a whole message is waiting or the peer is
        /// gone (the next receive reports it), false on timeout.
        /// `Duration::ZERO` checks without waiting.
        pub fn poll(&self, timeout: Duration) -> bool {
            self.end.poll(timeout)
        }
    };
}

/// One end of a two-way pipe (Python's `Connection`): sends `S`, receives
/// `R` (by default the same type), and carries raw byte messages too.
///
/// `Send` but not `Sync`: one thread uses an end at a time. Dropping the end
/// closes this process's copy of it; see [the module docs](self) for how ends
/// reach child processes and when the peer sees `Closed`.
pub struct Connection<S, R = S> {
    end: Duplex<S, R>,
}

impl<S: Serialize, R: DeserializeOwned> Connection<S, R> {
    /// Sends `value`, blocking while the socket buffer is full (Python's
    /// `send`).
    ///
    /// # Errors
    ///
    /// The value comes back in [`SendError::Disconnected`] if the peer is
    /// gone, [`SendError::Encode`] if it cannot be encoded or is above the
    /// maximum message size, [`SendError::Io`] for other OS errors. With `?`
    /// these become an [`Error`] of kind `Closed`, `Serialization` or `Io`.
    pub fn send(&self, value: S) -> std::result::Result<(), SendError<S>> {
        self.end.send(value)
    }

    /// Blocks until a message arrives (Python's `recv`).
    ///
    /// Messages sent before the peer closed are all delivered first.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] when the peer is gone (exited, killed, closed its
    /// end) and nothing is left to read, [`ErrorKind::Serialization`] if the
    /// message does not decode as `R` (the connection stays usable) or its
    /// length is above the maximum message size (the connection is closed),
    /// [`ErrorKind::Io`] for other OS errors.
    pub fn recv(&self) -> Result<R> {
        Ok(self.end.recv()?)
    }

    /// Receives a message if a whole one is waiting, without blocking.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Empty`] if no whole message is waiting; otherwise as
    /// [`recv`](Connection::recv).
    pub fn try_recv(&self) -> Result<R> {
        Ok(self.end.try_recv()?)
    }

    /// Waits at most `timeout` for a message.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use multiproc_ipc::{pipe::Pipe, ErrorKind};
    ///
    /// let (a, _b) = Pipe::new::<u8>()?;
    /// let e = a.recv_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::Timeout);
    /// # Ok::<(), multiproc_ipc::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] if no whole message arrived in time; otherwise
    /// as [`recv`](Connection::recv).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<R> {
        Ok(self.end.recv_timeout(timeout)?)
    }
}

impl<S, R> Connection<S, R> {
    /// Sends `bytes` as one message, unencoded (Python's `send_bytes`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] if the peer is gone, [`ErrorKind::Serialization`]
    /// above the maximum message size, [`ErrorKind::Io`] for other OS errors.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        Ok(self.end.send_bytes(bytes)?)
    }

    recv_bytes_methods!(Connection);

    /// Closes the connection (Python's `close`): the peer's receives return
    /// [`ErrorKind::Closed`] once it has read what was sent, and its sends
    /// fail.
    ///
    /// Unlike a plain drop, which closes only this process's copy of the end,
    /// `close` shuts the socket down for every copy, including the one a
    /// forked child inherited. Close only an end this process owns: to get rid
    /// of a copy meant for another process, drop it.
    pub fn close(self) {
        shutdown_and_close(self.end.as_fd());
    }

    /// Wraps the end to be passed as a [`Process`](crate::Process) argument:
    /// the forked child gets the end with [`Inherited::take`], and the
    /// parent's copy closes when the spawn returns.
    pub fn into_inherited(self) -> Inherited<Self> {
        Inherited { end: Some(self) }
    }
}

end_impls!(Connection<S, R>);

/// The receiving end of a one-way pipe ([`Pipe::simplex`]): Python's
/// read-only `Connection`. It has no `send`.
pub struct RecvConnection<T> {
    end: Duplex<(), T>,
}

impl<T: DeserializeOwned> RecvConnection<T> {
    /// Blocks until a message arrives.
    ///
    /// # Errors
    ///
    /// As [`Connection::recv`].
    pub fn recv(&self) -> Result<T> {
        Ok(self.end.recv()?)
    }

    /// Receives a message if a whole one is waiting, without blocking.
    ///
    /// # Errors
    ///
    /// As [`Connection::try_recv`].
    pub fn try_recv(&self) -> Result<T> {
        Ok(self.end.try_recv()?)
    }

    /// Waits at most `timeout` for a message.
    ///
    /// # Errors
    ///
    /// As [`Connection::recv_timeout`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T> {
        Ok(self.end.recv_timeout(timeout)?)
    }
}

impl<T> RecvConnection<T> {
    recv_bytes_methods!(RecvConnection);

    /// As [`Connection::close`]: the sender's sends fail from now on.
    pub fn close(self) {
        shutdown_and_close(self.end.as_fd());
    }

    /// As [`Connection::into_inherited`].
    pub fn into_inherited(self) -> Inherited<Self> {
        Inherited { end: Some(self) }
    }
}

end_impls!(RecvConnection<T>);

/// The sending end of a one-way pipe ([`Pipe::simplex`]): Python's
/// write-only `Connection`. It has no `recv`.
pub struct SendConnection<T> {
    end: Duplex<T, ()>,
}

impl<T: Serialize> SendConnection<T> {
    /// Sends `value`, blocking while the socket buffer is full.
    ///
    /// # Errors
    ///
    /// As [`Connection::send`].
    pub fn send(&self, value: T) -> std::result::Result<(), SendError<T>> {
        self.end.send(value)
    }
}

impl<T> SendConnection<T> {
    /// Sends `bytes` as one message, unencoded.
    ///
    /// # Errors
    ///
    /// As [`Connection::send_bytes`].
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        Ok(self.end.send_bytes(bytes)?)
    }

    /// As [`Connection::close`]: the receiver gets `Closed` once it has read
    /// what was sent.
    pub fn close(self) {
        shutdown_and_close(self.end.as_fd());
    }

    /// As [`Connection::into_inherited`].
    pub fn into_inherited(self) -> Inherited<Self> {
        Inherited { end: Some(self) }
    }
}

end_impls!(SendConnection<T>);

/// A pipe end on its way to a forked child, as the argument of
/// [`Process::spawn`](crate::Process::spawn) (see
/// [giving an end to a child](self#giving-an-end-to-a-child-process)).
///
/// A forked child finds the end in its copy of the parent's memory; the
/// parent's copy closes when the wrapper is dropped there. The wrapper is
/// `Serialize` only so that it can be a spawn argument: serialization never
/// carries the descriptor, and a deserialized wrapper is empty.
pub struct Inherited<C> {
    end: Option<C>,
}

impl<C> Inherited<C> {
    /// The end, in the child the wrapper was forked into.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] if the wrapper crossed by serialization instead
    /// of by fork (a fork-server child or a pool task): it holds no end.
    pub fn take(mut self) -> Result<C> {
        self.end.take().ok_or_else(|| {
            Error::new(
                ErrorKind::Closed,
                "a pipe end reaches only a child forked from its holder; \
                 this one was serialized (fork server or pool task)",
            )
        })
    }

    /// True if the wrapper holds an end (it was not serialized on the way).
    pub fn is_present(&self) -> bool {
        self.end.is_some()
    }
}

impl<C> fmt::Debug for Inherited<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inherited")
            .field("present", &self.end.is_some())
            .finish()
    }
}

impl<C> Serialize for Inherited<C> {
    /// Writes a placeholder: a descriptor does not cross serialization.
    fn serialize<Z: Serializer>(&self, serializer: Z) -> std::result::Result<Z::Ok, Z::Error> {
        serializer.serialize_unit_struct("Inherited")
    }
}

impl<'de, C> Deserialize<'de> for Inherited<C> {
    /// Reads the placeholder: the result holds no end.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        <()>::deserialize(deserializer)?;
        Ok(Inherited { end: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<X: Send>() {}

    #[test]
    fn ends_are_send() {
        assert_send::<Connection<std::rc::Rc<u8>>>();
        assert_send::<RecvConnection<u8>>();
        assert_send::<SendConnection<u8>>();
        assert_send::<Inherited<Connection<u8>>>();
    }

    #[test]
    fn serialized_wrapper_holds_no_end() {
        let (a, b) = Pipe::new::<u8>().unwrap();
        let w = b.into_inherited();
        assert!(w.is_present());
        let bytes = crate::codec::encode(&w).unwrap();
        drop(w);
        let back: Inherited<Connection<u8>> = crate::codec::decode(&bytes).unwrap();
        assert!(!back.is_present());
        assert_eq!(back.take().unwrap_err().kind(), ErrorKind::Closed);
        // The only copy of `b` is gone: `a` sees it.
        assert_eq!(a.recv().unwrap_err().kind(), ErrorKind::Closed);
    }

    #[test]
    fn undecodable_message_is_a_serialization_error_and_keeps_the_pipe() {
        let (a, b) = Pipe::duplex::<String, u8>().unwrap();
        a.send_bytes(&[0xff; 9]).unwrap();
        a.send("ok".to_string()).unwrap();
        let e = b.recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Serialization, "{e}");
        assert_eq!(b.recv_bytes().unwrap(), crate::codec::encode("ok").unwrap());
    }

    #[test]
    fn send_to_a_closed_peer_gives_the_value_back() {
        let (a, b) = Pipe::new::<String>().unwrap();
        b.close();
        let e = a.send("kept".to_string()).unwrap_err();
        assert!(e.is_disconnected());
        assert_eq!(e.into_inner(), "kept");
        assert_eq!(a.send_bytes(b"x").unwrap_err().kind(), ErrorKind::Closed);
        assert_eq!(a.recv_bytes().unwrap_err().kind(), ErrorKind::Closed);
        assert!(a.poll(Duration::ZERO));
    }

    #[test]
    fn simplex_receiver_cannot_send_at_the_socket_level() {
        let (r, w) = Pipe::simplex::<u8>().unwrap();
        // A frame written on the receiving end's socket is refused.
        let raw: Duplex<u8, u8> = Duplex::from(r.as_fd().try_clone_to_owned().unwrap());
        assert!(raw.send(1).unwrap_err().is_disconnected());
        w.send(2).unwrap();
        assert_eq!(r.recv().unwrap(), 2);
    }

    #[test]
    fn close_is_seen_through_a_surviving_copy() {
        let (r, w) = Pipe::simplex::<u8>().unwrap();
        // A copy of the sending end, as a forked child would hold.
        let copy = w.as_fd().try_clone_to_owned().unwrap();
        w.send(1).unwrap();
        w.close();
        assert_eq!(r.recv().unwrap(), 1);
        let e = r.recv_timeout(Duration::from_secs(10)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed);
        drop(copy);
    }
}
