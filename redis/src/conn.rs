//! Connections: a [`RedisBackend`] names one Redis server; each process opens
//! its own connections lazily and keeps the idle ones for reuse.
//!
//! Fork safety: the idle list records the pid that opened it. A process that
//! finds another pid there (a forked child) drops the inherited connections
//! without using them and opens its own, so two processes never share one
//! socket. Nothing here starts a thread.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc_ipc::{Error, ErrorKind, Result};
use redis::{Client, Connection, RedisError, Script};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest a reply may take, beyond the server-side block time of the
/// command (every blocking command we send blocks for at most a second).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two connection attempts while the server is away.
const RECONNECT_PAUSE: Duration = Duration::from_millis(25);
/// How long an idempotent call keeps trying while the server is unreachable.
const DEFAULT_RETRY_WINDOW: Duration = Duration::from_secs(10);

/// A Redis server: where the distributed pool and the Redis objects live.
///
/// Cheap to clone (an `Arc`); `Serialize`, as its URL, so that objects made
/// from it can be passed to pool tasks and processes. Connections are opened
/// on first use, one per concurrent caller, per process.
///
/// # Examples
///
/// ```
/// use multiproc::redis::{RedisBackend, SharedQueue};
///
/// # let server = multiproc_testkit::RedisServer::start();
/// # let url = server.url();
/// let backend = RedisBackend::open(&url)?; // e.g. "redis://127.0.0.1:6379"
/// backend.ping()?;
/// let q = backend.queue::<String>("jobs");
/// q.put("hello".to_string())?;
/// # Ok::<(), multiproc::redis::Error>(())
/// ```
///
/// # Caveats
///
/// A call that fails because the server went away returns an `Io` error,
/// except where the operation is safe to repeat (reads, the pool's fenced
/// and idempotent scripts): those reconnect and try again for up to 10 s
/// ([`retry_window`](RedisBackend::retry_window)).
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    client: Client,
    idle: Mutex<Idle>,
    retry_window: Duration,
}

struct Idle {
    pid: u32,
    conns: Vec<Connection>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.inner.url)
            .finish()
    }
}

impl PartialEq for RedisBackend {
    fn eq(&self, other: &Self) -> bool {
        self.inner.url == other.inner.url
    }
}

impl Serialize for RedisBackend {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.inner.url.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RedisBackend {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let url = String::deserialize(d)?;
        RedisBackend::open(&url).map_err(serde::de::Error::custom)
    }
}

/// Maps a client error to multiproc's error.
pub(crate) fn map_err(context: &str, e: RedisError) -> Error {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        ErrorKind::Io
    } else if e.code().is_some() {
        ErrorKind::Remote
    } else {
        ErrorKind::Serialization
    };
    Error::with_source(kind, format!("redis {context}"), e)
}

/// True if the error means the connection is unusable.
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

/// True for a server that is not ready yet (loading its data after a
/// restart) or briefly unable to answer: worth asking again.
fn is_transient(e: &RedisError) -> bool {
    is_connection_error(e) || matches!(e.code(), Some("LOADING" | "TRYAGAIN" | "MASTERDOWN"))
}

fn is_noscript(e: &RedisError) -> bool {
    e.code() == Some("NOSCRIPT")
}

impl RedisBackend {
    /// A backend for the server at `url` (`redis://HOST:PORT[/DB]`, with
    /// optional `user:password@`). Does not connect.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::redis::RedisBackend;
    ///
    /// assert!(RedisBackend::open("redis://127.0.0.1:6379").is_ok());
    /// assert!(RedisBackend::open("not a url").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if `url` is not a Redis URL.
    pub fn open(url: &str) -> Result<RedisBackend> {
        let client = Client::open(url).map_err(|e| {
            Error::with_source(
                ErrorKind::InvalidArgument,
                format!("not a redis url: {url}"),
                e,
            )
        })?;
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                client,
                idle: Mutex::new(Idle {
                    pid: std::process::id(),
                    conns: Vec::new(),
                }),
                retry_window: DEFAULT_RETRY_WINDOW,
            }),
        })
    }

    /// The URL this backend was opened with.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// How long a call that is safe to repeat keeps reconnecting while the
    /// server is unreachable (10 s).
    pub fn retry_window(&self) -> Duration {
        self.inner.retry_window
    }

    /// Checks that the server answers.
    ///
    /// # Errors
    ///
    /// `Io` if it cannot be reached.
    pub fn ping(&self) -> Result<()> {
        self.run_once("PING", |c| redis::cmd("PING").query::<String>(c))
            .map(drop)
    }

    fn connect(&self) -> std::result::Result<Connection, RedisError> {
        let c = self
            .inner
            .client
            .get_connection_with_timeout(CONNECT_TIMEOUT)?;
        c.set_read_timeout(Some(REPLY_TIMEOUT))?;
        c.set_write_timeout(Some(REPLY_TIMEOUT))?;
        Ok(c)
    }

    /// An idle connection of this process, or a new one.
    fn take(&self) -> std::result::Result<Connection, RedisError> {
        let reused = {
            let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
            let pid = std::process::id();
            if idle.pid != pid {
                // Inherited across fork: the parent's sockets are not ours.
                idle.conns.clear();
                idle.pid = pid;
            }
            idle.conns.pop()
        };
        match reused {
            Some(c) => Ok(c),
            None => self.connect(),
        }
    }

    fn give_back(&self, c: Connection) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.pid == std::process::id() && idle.conns.len() < 16 {
            idle.conns.push(c);
        }
    }

    /// Runs `f` once on a connection; a connection that failed is dropped.
    pub(crate) fn run_once<T>(
        &self,
        context: &str,
        mut f: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let mut c = self.take().map_err(|e| map_err(context, e))?;
        match f(&mut c) {
            Ok(v) => {
                self.give_back(c);
                Ok(v)
            }
            Err(e) => {
                if !is_connection_error(&e) {
                    self.give_back(c);
                }
                Err(map_err(context, e))
            }
        }
    }

    /// Runs `f`, which must be safe to repeat, reconnecting and repeating it
    /// while the server is unreachable (or still loading its data after a
    /// restart), for up to the retry window.
    pub(crate) fn run<T>(
        &self,
        context: &str,
        mut f: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + self.inner.retry_window;
        loop {
            let attempt = self.take().and_then(|mut c| match f(&mut c) {
                Ok(v) => {
                    self.give_back(c);
                    Ok(v)
                }
                Err(e) => {
                    if !is_connection_error(&e) {
                        self.give_back(c);
                    }
                    Err(e)
                }
            });
            match attempt {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) && Instant::now() < deadline => {
                    std::thread::sleep(RECONNECT_PAUSE);
                }
                Err(e) => return Err(map_err(context, e)),
            }
        }
    }

    /// Runs `f` (see [`run`](Self::run)); on `NOSCRIPT` (a restarted or
    /// flushed server) loads `scripts` and runs it again.
    pub(crate) fn run_scripts<T>(
        &self,
        context: &str,
        scripts: &[&Script],
        mut f: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        self.run(context, |c| match f(c) {
            Err(e) if is_noscript(&e) => {
                for s in scripts {
                    s.load(c)?;
                }
                f(c)
            }
            other => other,
        })
    }
}

/// Process-unique random hex (for tokens and consumer names).
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::getrandom(&mut buf).is_err() {
        // No entropy source: fall back on time and pid, still unique enough
        // for names (tokens additionally carry a counter).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = t ^ (u128::from(std::process::id()) << 64);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
