//! The one error type of multiproc's public API.
//!
//! Low layers use `io::Result` (`sys`) or small per-operation errors (channels,
//! queues); everything a user calls on a [`Process`](crate::Process), a pool or a
//! manager returns [`Result<T>`] with an [`Error`] whose [`kind`](Error::kind)
//! says what went wrong, and whose accessors carry the details (the exit status
//! of a lost worker, the message and location of a remote panic).

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};

/// `Result` with multiproc's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is.
///
/// New kinds may be added; match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument was out of range (zero processes, zero chunksize, a bad name...).
    InvalidArgument,
    /// The object is closed, terminated or not started (Python's `ValueError: Pool not running`).
    NotRunning,
    /// A timed operation ran out of time.
    Timeout,
    /// The process running the operation died (signal or exit code in [`Error::exit_info`]).
    WorkerLost,
    /// The task panicked; message and location in [`Error::panic_info`].
    TaskPanicked,
    /// A value could not be encoded or decoded.
    Serialization,
    /// An operating-system call failed.
    Io,
    /// The other end is closed or gone.
    Closed,
    /// Nothing to take (a queue's `get` without blocking).
    Empty,
    /// No room (a bounded queue's `put` without blocking).
    Full,
    /// A lock's previous owner died while holding it.
    OwnerDied,
    /// A barrier was broken by a timeout, an abort or a reset.
    BrokenBarrier,
    /// The peer failed the authkey challenge.
    Authentication,
    /// The remote side reported an error.
    Remote,
    /// The task was cancelled before it started (Python's `CancelledError`).
    Cancelled,
}

impl ErrorKind {
    /// A short lowercase description, as used at the start of [`Error`]'s `Display`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::NotRunning => "not running",
            ErrorKind::Timeout => "timed out",
            ErrorKind::WorkerLost => "worker lost",
            ErrorKind::TaskPanicked => "task panicked",
            ErrorKind::Serialization => "serialization failed",
            ErrorKind::Io => "i/o error",
            ErrorKind::Closed => "closed",
            ErrorKind::Empty => "empty",
            ErrorKind::Full => "full",
            ErrorKind::OwnerDied => "lock owner died",
            ErrorKind::BrokenBarrier => "broken barrier",
            ErrorKind::Authentication => "authentication failed",
            ErrorKind::Remote => "remote error",
            ErrorKind::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExitStatus {
    /// It called `exit` (or `_exit`) with this code.
    Code(i32),
    /// It was killed by this signal number.
    Signal(i32),
}

impl ExitStatus {
    /// True for `Code(0)`.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The exit code, if the process exited normally.
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Code(c) => Some(c),
            ExitStatus::Signal(_) => None,
        }
    }

    /// The signal number, if the process was killed by a signal.
    pub fn signal(self) -> Option<i32> {
        match self {
            ExitStatus::Signal(s) => Some(s),
            ExitStatus::Code(_) => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Code(c) => write!(f, "exited with code {c}"),
            ExitStatus::Signal(s) => write!(f, "was killed by {}", signal_name(s)),
        }
    }
}

/// The conventional name of a signal number (`SIGKILL`), or `signal N`.
pub fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_owned(),
        Err(_) => format!("signal {sig}"),
    }
}

/// Which process died, how, and what it was doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The process id of the dead process.
    pub pid: i32,
    /// How it ended.
    pub status: ExitStatus,
    /// The task it was running, if it was running one.
    pub task: Option<u64>,
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process {} {}", self.pid, self.status)?;
        if let Some(t) = self.task {
            write!(f, " while running task {t}")?;
        }
        Ok(())
    }
}

/// A panic that happened in another process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemotePanic {
    /// The panic message (the payload if it was a string, else a placeholder).
    pub message: String,
    /// `file:line:column` of the panic, when the panic hook saw it.
    pub location: Option<String>,
}

impl fmt::Display for RemotePanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.message)?;
        if let Some(loc) = &self.location {
            write!(f, " at {loc}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Detail {
    None,
    Exit(ExitInfo),
    Panic(RemotePanic),
}

/// multiproc's error: a [`kind`](Error::kind), a human message, and details.
///
/// # Examples
///
/// ```
/// use multiproc::{Error, ErrorKind};
///
/// let e = Error::new(ErrorKind::InvalidArgument, "processes must be at least 1");
/// assert_eq!(e.kind(), ErrorKind::InvalidArgument);
/// assert_eq!(e.to_string(), "invalid argument: processes must be at least 1");
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    detail: Detail,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with a message for humans.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            detail: Detail::None,
            source: None,
        }
    }

    /// An error of `kind` caused by `source`.
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Error {
        Error {
            source: Some(source.into()),
            ..Error::new(kind, message)
        }
    }

    /// A [`WorkerLost`](ErrorKind::WorkerLost) error for a process that died.
    pub fn worker_lost(info: ExitInfo) -> Error {
        Error {
            detail: Detail::Exit(info.clone()),
            ..Error::new(ErrorKind::WorkerLost, info.to_string())
        }
    }

    /// A [`TaskPanicked`](ErrorKind::TaskPanicked) error carrying a remote panic.
    pub fn panicked(panic: RemotePanic) -> Error {
        Error {
            detail: Detail::Panic(panic.clone()),
            ..Error::new(ErrorKind::TaskPanicked, panic.to_string())
        }
    }

    /// A [`Timeout`](ErrorKind::Timeout) error.
    pub fn timeout(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Timeout, message)
    }

    /// An [`Io`](ErrorKind::Io) error with context.
    pub fn io(context: impl Into<String>, err: io::Error) -> Error {
        Error::with_source(ErrorKind::Io, context, err)
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True for [`ErrorKind::Timeout`].
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }

    /// The dead process, for [`ErrorKind::WorkerLost`].
    pub fn exit_info(&self) -> Option<&ExitInfo> {
        match &self.detail {
            Detail::Exit(i) => Some(i),
            _ => None,
        }
    }

    /// Alias of [`exit_info`](Error::exit_info), named after the error kind.
    pub fn worker_lost_info(&self) -> Option<&ExitInfo> {
        self.exit_info()
    }

    /// The remote panic, for [`ErrorKind::TaskPanicked`].
    pub fn panic_info(&self) -> Option<&RemotePanic> {
        match &self.detail {
            Detail::Panic(p) => Some(p),
            _ => None,
        }
    }

    /// A serializable copy of this error, to send to another process.
    pub fn to_wire(&self) -> WireError {
        WireError {
            kind: self.kind,
            message: match &self.source {
                Some(s) => format!("{}: {}", self.message, s),
                None => self.message.clone(),
            },
            exit: self.exit_info().cloned(),
            panic: self.panic_info().cloned(),
        }
    }
}

/// An `Error` crosses processes (a task may return `multiproc::Result<T>`
/// and use `?` on proxy calls): it travels as its [`WireError`], so kind,
/// message, exit and panic details arrive intact and a `source` arrives as
/// text in the message.
///
/// # Examples
///
/// ```
/// use multiproc::{codec, Error, ErrorKind};
///
/// let e = Error::with_source(
///     ErrorKind::Io,
///     "cannot read the input",
///     std::io::Error::other("disk on fire"),
/// );
/// let back: Error = codec::decode(&codec::encode(&e).unwrap()).unwrap();
/// assert_eq!(back.kind(), ErrorKind::Io);
/// assert_eq!(back.message(), "cannot read the input: disk on fire");
/// ```
impl Serialize for Error {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_wire().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Error {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Error, D::Error> {
        WireError::deserialize(d).map(Error::from)
    }
}

/// An [`Error`] in a form that crosses process boundaries (the source chain is
/// flattened into the message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// The error's kind.
    pub kind: ErrorKind,
    /// The error's message.
    pub message: String,
    /// Exit details for `WorkerLost`.
    pub exit: Option<ExitInfo>,
    /// Panic details for `TaskPanicked`.
    pub panic: Option<RemotePanic>,
}

impl From<WireError> for Error {
    fn from(w: WireError) -> Error {
        let detail = match (w.exit, w.panic) {
            (Some(e), _) => Detail::Exit(e),
            (None, Some(p)) => Detail::Panic(p),
            (None, None) => Detail::None,
        };
        Error {
            kind: w.kind,
            message: w.message,
            detail,
            source: None,
        }
    }
}

impl Clone for Error {
    /// Clones the error; the source chain is flattened into the message.
    fn clone(&self) -> Error {
        Error::from(self.to_wire())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        match &self.detail {
            Detail::None => {}
            Detail::Exit(i) => {
                d.field("exit", i);
            }
            Detail::Panic(p) => {
                d.field("panic", p);
            }
        }
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.message)
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        let kind = match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorKind::Timeout,
            io::ErrorKind::InvalidInput => ErrorKind::InvalidArgument,
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof => ErrorKind::Closed,
            _ => ErrorKind::Io,
        };
        Error::with_source(kind, e.to_string(), e)
    }
}

impl From<crate::codec::CodecError> for Error {
    fn from(e: crate::codec::CodecError) -> Error {
        Error::with_source(ErrorKind::Serialization, e.to_string(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_lost_display_names_signal_and_task() {
        let e = Error::worker_lost(ExitInfo {
            pid: 4242,
            status: ExitStatus::Signal(9),
            task: Some(17),
        });
        assert_eq!(e.kind(), ErrorKind::WorkerLost);
        assert_eq!(
            e.to_string(),
            "worker lost: process 4242 was killed by SIGKILL while running task 17"
        );
        assert_eq!(e.exit_info().unwrap().status.signal(), Some(9));
    }

    #[test]
    fn wire_round_trip_keeps_details() {
        let e = Error::panicked(RemotePanic {
            message: "boom".into(),
            location: Some("src/x.rs:1:2".into()),
        });
        let back = Error::from(e.to_wire());
        assert_eq!(back.kind(), ErrorKind::TaskPanicked);
        assert_eq!(back.panic_info().unwrap().message, "boom");
        assert_eq!(back.to_string(), "task panicked: 'boom' at src/x.rs:1:2");
    }

    #[test]
    fn io_errors_map_to_kinds() {
        let e = Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(e.kind(), ErrorKind::Closed);
        assert!(std::error::Error::source(&e).is_some());
        let e = Error::from(io::Error::from_raw_os_error(libc::ENOMEM));
        assert_eq!(e.kind(), ErrorKind::Io);
    }
}
