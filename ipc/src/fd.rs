//! [`Fd<T>`]: a socket, file or pipe as a process argument, a pool task
//! argument or a pipe message (Python's `multiprocessing.reduction`
//! `send_handle` / `recv_handle`).
//!
//! A descriptor number means nothing in another process: the descriptor
//! itself must be passed by the kernel (`SCM_RIGHTS` over a unix socket).
//! multiproc does that wherever it sends a value to another process through
//! a transport that can carry descriptors:
//!
//! - [`Process::spawn`](crate::Process::spawn) arguments (plain fork and the
//!   fork server of [`init`](crate::init));
//! - pool and executor task arguments (with either start method);
//! - [`Pipe`](crate::pipe::Pipe) / [`Connection`](crate::pipe::Connection)
//!   and [`channel`](crate::channel) messages.
//!
//! # How it works
//!
//! While such a transport encodes a value it opens an *attachment scope*
//! ([`FdScope`]): each `Fd` in the value serializes as an index into a table
//! of descriptors collected on the side, and the transport sends the table's
//! descriptors with the bytes. The receiver decodes with the descriptors it
//! received installed as the table ([`with_received`]); each `Fd` takes its
//! descriptor out of it. An `Fd` encoded with no scope open (a shared-memory
//! queue, a manager) fails to encode, and one decoded with no table, or with
//! an index the table does not hold, fails to decode: both are
//! [`ErrorKind::Serialization`](crate::ErrorKind::Serialization) errors that
//! say so. Descriptors that arrived but that no `Fd` took are closed.
//!
//! # Examples
//!
//! ```
//! use std::io::{Read, Write};
//! use std::os::unix::net::UnixStream;
//! use multiproc_ipc::{Fd, Process};
//!
//! /// Answers on the socket it was given.
//! fn serve(sock: Fd<UnixStream>) -> usize {
//!     let mut sock = sock.into_inner();
//!     let mut buf = [0u8; 4];
//!     sock.read_exact(&mut buf).unwrap();
//!     sock.write_all(b"pong").unwrap();
//!     buf.len()
//! }
//!
//! let (mut mine, theirs) = UnixStream::pair()?;
//! // `theirs` moves to the child; the parent's copy is closed by `spawn`.
//! let p = Process::spawn(serve, Fd::new(theirs))?;
//! mine.write_all(b"ping")?;
//! let mut answer = [0u8; 4];
//! mine.read_exact(&mut answer)?;
//! assert_eq!(&answer, b"pong");
//! assert_eq!(p.join()?, 4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::CodecError;
use crate::sys::fd as sysfd;

/// A descriptor-owning value (`TcpStream`, `TcpListener`, `UnixStream`,
/// `File`, `OwnedFd`...) that travels to another process as the descriptor
/// itself.
///
/// `Fd<T>` is `Serialize` / `Deserialize` for any `T: AsFd` /
/// `T: From<OwnedFd>`; see [the module documentation](self) for where it can
/// travel. The receiving process owns the descriptor it gets (a duplicate
/// made by the kernel, sharing the open file, the socket's connection and
/// its offset); the sender keeps its own copy until the value is dropped.
///
/// # Examples
///
/// ```
/// use std::fs::File;
/// use std::io::Read;
/// use multiproc_ipc::{Fd, Process};
///
/// fn read_all(file: Fd<File>) -> String {
///     let mut s = String::new();
///     file.into_inner().read_to_string(&mut s).unwrap();
///     s
/// }
///
/// let path = std::env::temp_dir().join(format!("fd-doc-{}", std::process::id()));
/// std::fs::write(&path, "hello")?;
/// let file = File::open(&path)?;
/// std::fs::remove_file(&path)?;
/// // Keep a copy here: pass a clone and keep `file`.
/// let p = Process::spawn(read_all, Fd::new(file.try_clone()?))?;
/// assert_eq!(p.join()?, "hello");
/// # drop(file);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// Encoding fails (an [`ErrorKind::Serialization`](crate::ErrorKind)
/// error) outside an attachment scope (a transport that cannot carry
/// descriptors) and when the descriptor is not open (`EBADF` when it is
/// duplicated for sending); decoding fails when the descriptor did not
/// arrive with the message.
///
/// # Caveats
///
/// - Whoever holds a copy of a socket keeps the connection open: a peer
///   sees end of file only when every process has closed its copy (or one
///   calls `shutdown`). Pass the value by move (the sender's copy is closed
///   when the transport is done with it), or keep a clone on purpose.
/// - Children forked directly (no fork server) get the argument by `fork`,
///   not by serialization: the descriptor is inherited as it is and an
///   already-closed one is not detected.
/// - A pool keeps its own copy of a task's descriptors until the task has
///   finished (so that a task requeued after its worker died can be sent
///   again).
pub struct Fd<T> {
    inner: T,
}

impl<T> Fd<T> {
    /// Wraps `inner` for sending.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use multiproc_ipc::Fd;
    ///
    /// let (a, _b) = UnixStream::pair()?;
    /// let fd = Fd::new(a);
    /// fd.set_nonblocking(true)?; // derefs to the wrapped value
    /// let a: UnixStream = fd.into_inner();
    /// # drop(a);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(inner: T) -> Fd<T> {
        Fd { inner }
    }

    /// The wrapped value.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// A reference to the wrapped value.
    pub fn get(&self) -> &T {
        &self.inner
    }

    /// A mutable reference to the wrapped value.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: AsFd + From<OwnedFd>> Fd<T> {
    /// A new `Fd` on a duplicate of the same descriptor (to pass one copy
    /// and keep the other).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::fs::File;
    /// use multiproc_ipc::{Fd, Process};
    ///
    /// fn size(f: Fd<File>) -> u64 {
    ///     f.metadata().map(|m| m.len()).unwrap_or(0)
    /// }
    ///
    /// let mine = Fd::new(File::open("/proc/self/exe")?);
    /// let p = Process::spawn(size, mine.try_clone()?)?;
    /// assert_eq!(p.join()?, mine.metadata()?.len()); // still open here
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The `dup` error (out of descriptors, or `EBADF`).
    pub fn try_clone(&self) -> io::Result<Fd<T>> {
        Ok(Fd::new(T::from(self.inner.as_fd().try_clone_to_owned()?)))
    }
}

impl<T> From<T> for Fd<T> {
    fn from(inner: T) -> Fd<T> {
        Fd::new(inner)
    }
}

impl<T> Deref for Fd<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> DerefMut for Fd<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: AsFd> AsFd for Fd<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl<T: AsFd> fmt::Debug for Fd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Fd")
            .field(&self.inner.as_fd().as_raw_fd())
            .finish()
    }
}

impl<T: AsFd> Serialize for Fd<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = attach(self.inner.as_fd().as_raw_fd()).map_err(S::Error::custom)?;
        serializer.serialize_newtype_struct("Fd", &index)
    }
}

impl<'de, T: From<OwnedFd>> Deserialize<'de> for Fd<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename = "Fd")]
        struct Index(u32);
        let Index(i) = Index::deserialize(deserializer)?;
        let fd = take(i).map_err(D::Error::custom)?;
        Ok(Fd::new(T::from(fd)))
    }
}

// ---------------------------------------------------------------------------
// The attachment scopes (per thread).

/// No scope is open on this thread.
const CLOSED: u8 = 0;
/// A scope is open and nothing has been attached.
const OPEN: u8 = 1;
/// A scope is open and holds descriptors.
const ATTACHED: u8 = 2;

thread_local! {
    static SEND_STATE: Cell<u8> = const { Cell::new(CLOSED) };
    /// The descriptors attached in the open scope: each one's number in
    /// the value (to give a descriptor met twice one index) and a duplicate
    /// (valid whatever happens to the value before the scope finishes).
    static SEND_FDS: RefCell<Vec<(RawFd, OwnedFd)>> = const { RefCell::new(Vec::new()) };
    static RECEIVED: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Records a duplicate of `raw` in the open scope; returns its index.
fn attach(raw: RawFd) -> Result<u32, String> {
    if SEND_STATE.with(Cell::get) == CLOSED {
        return Err(
            "a file descriptor (Fd) cannot travel this way: only Process::spawn \
                    arguments, pool and executor task arguments and Pipe/channel messages \
                    carry descriptors"
                .to_owned(),
        );
    }
    let index = SEND_FDS.with(|v| {
        let mut v = v.borrow_mut();
        // The same descriptor twice (or one value encoded twice, to size it
        // first) gets one index.
        if let Some(i) = v.iter().position(|(r, _)| *r == raw) {
            return Ok(i);
        }
        if v.len() >= sysfd::MAX_FDS {
            return Err("too many file descriptors (Fd) in one message (at most 253)".to_owned());
        }
        let dup =
            sysfd::dup_raw(raw).map_err(|e| format!("cannot pass file descriptor {raw}: {e}"))?;
        v.push((raw, dup));
        Ok(v.len() - 1)
    })?;
    SEND_STATE.with(|s| s.set(ATTACHED));
    Ok(index as u32)
}

/// Takes descriptor `i` of the received table.
fn take(i: u32) -> Result<OwnedFd, String> {
    RECEIVED.with(|t| match t.borrow_mut().as_mut() {
        None => Err(
            "a file descriptor (Fd) did not arrive with this message: it was sent \
                     through a transport that does not carry descriptors, or decoded in a \
                     process that did not receive it"
                .to_owned(),
        ),
        Some(table) => {
            let n = table.len();
            match table.get_mut(i as usize) {
                None => Err(format!(
                    "the message refers to file descriptor #{i}, but {n} arrived with it"
                )),
                Some(slot) => slot.take().ok_or_else(|| {
                    format!("file descriptor #{i} of this message was already taken")
                }),
            }
        }
    })
}

/// An attachment scope on the sending side: while it is open, every
/// [`Fd`] encoded on this thread is collected (as a duplicate, made when
/// it is encoded); [`finish`](FdScope::finish) returns them, in index
/// order, for the transport to send with the bytes.
///
/// Scopes nest (an inner scope collects apart from the outer one). Opening
/// and finishing a scope in which nothing was attached costs a few
/// thread-local reads and writes: no allocation, no system call.
///
/// # Examples
///
/// ```
/// use std::os::unix::net::UnixStream;
/// use multiproc_ipc::codec;
/// use multiproc_ipc::fd::{with_received, Fd, FdScope};
///
/// let (a, _b) = UnixStream::pair()?;
/// let scope = FdScope::begin();
/// let bytes = codec::encode(&("tag", Fd::new(a)))?;
/// let fds = scope.finish()?;
/// assert_eq!(fds.len(), 1);
/// // ... the bytes and `fds` cross to another process, then:
/// let (tag, sock): (String, Fd<UnixStream>) = with_received(fds, || codec::decode(&bytes))?;
/// assert_eq!(tag, "tag");
/// # drop(sock);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a scope collects descriptors until it is finished or dropped"]
pub struct FdScope {
    prev: u8,
    saved: Vec<(RawFd, OwnedFd)>,
}

impl fmt::Debug for FdScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FdScope").finish_non_exhaustive()
    }
}

impl FdScope {
    /// Opens a scope on this thread.
    pub fn begin() -> FdScope {
        let prev = SEND_STATE.with(|s| s.replace(OPEN));
        let saved = if prev == ATTACHED {
            SEND_FDS.with(|v| std::mem::take(&mut *v.borrow_mut()))
        } else {
            Vec::new()
        };
        FdScope { prev, saved }
    }

    /// Closes the scope and returns the duplicates (close-on-exec) of the
    /// descriptors attached in it, in index order.
    ///
    /// A descriptor that could not be duplicated (not open: `EBADF`, or
    /// the process is out of descriptors) already failed the encoding of
    /// its value, with a [`CodecError::Encode`] that says so.
    ///
    /// # Errors
    ///
    /// None today; the `Result` leaves room for checks at the end of a scope.
    pub fn finish(self) -> Result<Vec<OwnedFd>, CodecError> {
        if SEND_STATE.with(Cell::get) != ATTACHED {
            return Ok(Vec::new());
        }
        let attached = SEND_FDS.with(|v| std::mem::take(&mut *v.borrow_mut()));
        Ok(attached.into_iter().map(|(_, fd)| fd).collect())
    }
}

impl Drop for FdScope {
    fn drop(&mut self) {
        if SEND_STATE.with(Cell::get) == ATTACHED {
            SEND_FDS.with(|v| v.borrow_mut().clear());
        }
        SEND_STATE.with(|s| s.set(self.prev));
        if self.prev == ATTACHED {
            let saved = std::mem::take(&mut self.saved);
            SEND_FDS.with(|v| *v.borrow_mut() = saved);
        }
    }
}

/// Runs `f` (which decodes a message) with `fds`, the descriptors that
/// arrived with the message, installed as this thread's table: each [`Fd`]
/// decoded inside takes its own. Those that no `Fd` took are closed when
/// `f` returns. The previous table (if any) is restored afterwards.
///
/// # Examples
///
/// See [`FdScope`].
pub fn with_received<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Vec<Option<OwnedFd>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            // The table being replaced holds the descriptors nobody took:
            // dropping it closes them.
            let _ = RECEIVED.try_with(|t| t.replace(prev));
        }
    }
    let table: Vec<Option<OwnedFd>> = fds.into_iter().map(Some).collect();
    let _restore = Restore(RECEIVED.with(|t| t.replace(Some(table))));
    f()
}

// ---------------------------------------------------------------------------
// Descriptors on their own (Python's `send_handle` / `recv_handle`).

/// Bytes of a [`send_handles`] message: a tag (u64) and a count (u32).
const HANDLES_MSG: usize = 12;

/// Sends `fds` with a `tag` on the unix stream socket `sock`, as one small
/// message (Python's `reduction.send_handle`); the receiver gets duplicates
/// with [`recv_handles`]. The caller keeps its own descriptors.
///
/// With `nonblocking`, a full socket gives [`io::ErrorKind::WouldBlock`]
/// and sends nothing.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// use std::os::unix::net::UnixStream;
/// use multiproc_ipc::fd::{recv_handles, send_handles};
///
/// let (a, b) = UnixStream::pair()?;
/// let file = std::fs::File::open("/dev/null")?;
/// send_handles(a.as_fd(), 7, &[file.as_fd()], false)?;
/// let (tag, fds) = recv_handles(b.as_fd(), true)?;
/// assert_eq!((tag, fds.len()), (7, 1));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The `sendmsg` error (`EPIPE` when the peer is gone, `EBADF` for a
/// descriptor that is not open...); [`io::ErrorKind::InvalidInput`] for more
/// than 253 descriptors.
pub fn send_handles(
    sock: BorrowedFd<'_>,
    tag: u64,
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> io::Result<()> {
    if fds.len() > sysfd::MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "at most 253 descriptors per message",
        ));
    }
    let mut msg = [0u8; HANDLES_MSG];
    msg[..8].copy_from_slice(&tag.to_le_bytes());
    msg[8..].copy_from_slice(&(fds.len() as u32).to_le_bytes());
    let n = sysfd::send_with_fds(sock, &msg, fds, nonblocking)?;
    if n != HANDLES_MSG {
        // A 12-byte message is queued whole or not at all on a unix socket.
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "descriptor message cut short",
        ));
    }
    Ok(())
}

/// Receives one [`send_handles`] message from `sock`: its tag and its
/// descriptors (close-on-exec; Python's `reduction.recv_handle`).
///
/// # Examples
///
/// See [`send_handles`].
///
/// # Errors
///
/// The `recvmsg` error ([`io::ErrorKind::WouldBlock`] with `nonblocking`
/// when no message is queued); [`io::ErrorKind::UnexpectedEof`] if the peer
/// is gone; [`io::ErrorKind::InvalidData`] for a malformed message or one
/// whose descriptors did not all arrive.
pub fn recv_handles(sock: BorrowedFd<'_>, nonblocking: bool) -> io::Result<(u64, Vec<OwnedFd>)> {
    let mut msg = [0u8; HANDLES_MSG];
    let mut fds = Vec::new();
    let mut got = 0;
    while got < HANDLES_MSG {
        // Only the rest of this message is asked for: the next message's
        // descriptors stay queued with its bytes.
        let n = sysfd::recv_with_fds(sock, &mut msg[got..], &mut fds, nonblocking && got == 0)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&msg[..8]);
    let mut count = [0u8; 4];
    count.copy_from_slice(&msg[8..]);
    if u32::from_le_bytes(count) as usize != fds.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a descriptor message announced {} descriptors and {} arrived",
                u32::from_le_bytes(count),
                fds.len()
            ),
        ));
    }
    Ok((u64::from_le_bytes(tag), fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn round_trip_in_process() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let scope = FdScope::begin();
        let bytes = codec::encode(&vec![Fd::new(a)]).unwrap();
        let fds = scope.finish().unwrap();
        assert_eq!(fds.len(), 1);
        let back: Vec<Fd<UnixStream>> = with_received(fds, || codec::decode(&bytes)).unwrap();
        let mut a2 = back.into_iter().next().unwrap().into_inner();
        a2.write_all(b"x").unwrap();
        let mut buf = [0u8; 1];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"x");
    }

    #[test]
    fn encode_without_scope_is_an_error() {
        let (a, _b) = UnixStream::pair().unwrap();
        let e = codec::encode(&Fd::new(a)).unwrap_err();
        assert!(
            matches!(&e, CodecError::Encode(m) if m.contains("cannot travel")),
            "{e}"
        );
    }

    #[test]
    fn decode_without_table_or_bad_index_is_an_error() {
        let (a, _b) = UnixStream::pair().unwrap();
        let scope = FdScope::begin();
        let bytes = codec::encode(&Fd::new(a)).unwrap();
        let fds = scope.finish().unwrap();
        let e = codec::decode::<Fd<UnixStream>>(&bytes).unwrap_err();
        assert!(e.to_string().contains("did not arrive"), "{e}");
        let e = with_received(Vec::new(), || codec::decode::<Fd<UnixStream>>(&bytes)).unwrap_err();
        assert!(e.to_string().contains("#0"), "{e}");
        let twice = codec::encode(&(0u32, 0u32)).unwrap();
        let e =
            with_received(fds, || codec::decode::<(Fd<OwnedFd>, Fd<OwnedFd>)>(&twice)).unwrap_err();
        assert!(e.to_string().contains("already taken"), "{e}");
    }

    #[test]
    fn scopes_nest_and_sizing_twice_gives_one_index() {
        let (a, b) = UnixStream::pair().unwrap();
        let outer = FdScope::begin();
        let first = codec::encode(&Fd::new(a.as_fd())).unwrap();
        let inner = FdScope::begin();
        let _ = codec::encode(&Fd::new(b.as_fd())).unwrap();
        assert_eq!(inner.finish().unwrap().len(), 1);
        let again = codec::encode(&Fd::new(a.as_fd())).unwrap();
        assert_eq!(first, again);
        assert_eq!(outer.finish().unwrap().len(), 1);
        assert_eq!(SEND_STATE.with(Cell::get), CLOSED);
    }
}
