//! A real `redis-server` for a test: on a free loopback port, in its own
//! temporary directory, stopped (SIGKILL and reaped) and its directory removed
//! when dropped.
//!
//! The server runs under `setpriv --pdeathsig KILL` when `setpriv` is there,
//! so it dies with the thread that started it even if the test process is
//! killed. Its directory (the server's working directory) is named
//! [`DIR_PREFIX`]`…`, which lets CI find (and fail on) a server that outlived
//! its test.
//!
//! A test that finds no `redis-server` fails with [`INSTALL_HINT`]; it is never
//! skipped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What to install when `redis-server` is missing.
pub const INSTALL_HINT: &str = "redis-server (Redis >= 6.2) was not found: install Debian's \
     package with `apt-get install redis-server` (or run `scripts/test`, which installs it), \
     or set MULTIPROC_REDIS_SERVER to the path of a redis-server binary";

/// The start of every test server's directory name (under the system's
/// temporary directory); the server runs in that directory.
pub const DIR_PREFIX: &str = "multiproc-redis-test-";

/// How long a server may take to answer its first `PING`.
const START_LIMIT: Duration = Duration::from_secs(10);

/// Options for [`RedisServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Turn on the append-only file with `appendfsync everysec`, so that a
    /// server restarted on the same directory ([`RedisServer::restart`])
    /// finds its data again.
    pub aof: bool,
}

/// A `redis-server` child process for one test.
///
/// # Examples
///
/// ```no_run
/// let server = multiproc_testkit::RedisServer::start();
/// println!("{}", server.url()); // redis://127.0.0.1:PORT
/// // dropped: killed, reaped, directory removed
/// ```
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    options: RedisOptions,
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("pid", &self.pid())
            .finish()
    }
}

/// The `redis-server` binary: `MULTIPROC_REDIS_SERVER`, else the first on
/// `PATH` or in `/usr/bin`, `/usr/sbin`, `/usr/local/bin`.
///
/// # Panics
///
/// With [`INSTALL_HINT`] when there is none, or when it is older than 6.2.
pub fn redis_server_path() -> PathBuf {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PATH.get_or_init(find_server) {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn find_server() -> Result<PathBuf, String> {
    check_server(std::env::var_os("MULTIPROC_REDIS_SERVER").map(PathBuf::from))
}

/// `given`, or the first `redis-server` on the search path, if it runs and
/// is at least 6.2.
fn check_server(given: Option<PathBuf>) -> Result<PathBuf, String> {
    let candidate = given
        .or_else(|| {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from))
                .map(|d| d.join("redis-server"))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| INSTALL_HINT.to_owned())?;
    if !candidate.is_file() {
        return Err(format!(
            "{} does not exist: {INSTALL_HINT}",
            candidate.display()
        ));
    }
    let out = Command::new(&candidate)
        .arg("--version")
        .output()
        .map_err(|e| format!("{INSTALL_HINT} ({} failed: {e})", candidate.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "Redis server v=7.0.15 sha=..."
    let version = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .unwrap_or("0.0");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (6, 2) {
        return Err(format!(
            "{} is Redis {version}, older than 6.2: {INSTALL_HINT}",
            candidate.display()
        ));
    }
    Ok(candidate)
}

fn setpriv() -> Option<&'static Path> {
    static SETPRIV: OnceLock<Option<PathBuf>> = OnceLock::new();
    SETPRIV
        .get_or_init(|| {
            ["/usr/bin/setpriv", "/bin/setpriv"]
                .map(PathBuf::from)
                .into_iter()
                .find(|p| p.is_file())
        })
        .as_deref()
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

fn new_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{DIR_PREFIX}{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the server's directory");
    dir
}

/// Sends `PING` to `port` and reads the reply; true on `+PONG`.
fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl RedisServer {
    /// Starts a server without persistence.
    ///
    /// # Panics
    ///
    /// If `redis-server` is missing ([`INSTALL_HINT`]) or does not answer
    /// `PING` within 10 s (its log is in the panic message).
    pub fn start() -> RedisServer {
        RedisServer::start_with(RedisOptions::default())
    }

    /// Starts a server with `options`.
    ///
    /// # Panics
    ///
    /// As [`start`](RedisServer::start).
    pub fn start_with(options: RedisOptions) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir: new_dir(),
            options,
        };
        // A port found free may be taken before the server binds it: try again.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let server = redis_server_path();
        let mut cmd = match setpriv() {
            Some(sp) => {
                let mut c = Command::new(sp);
                c.args(["--pdeathsig", "KILL"]).arg(&server);
                c
            }
            None => Command::new(&server),
        };
        let port = self.port.to_string();
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--logfile", "redis.log", "--daemonize", "no"])
            .args(["--protected-mode", "yes"]);
        if self.options.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "everysec"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{} failed to start: {e}", server.display()))?;
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if ping(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("it exited ({status}); log:\n{}", self.log()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no PONG within {START_LIMIT:?}; log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (its AOF lives there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILLs the server and reaps it (a crash: nothing is flushed).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and directory (after
    /// [`kill`](RedisServer::kill); kills it first if it still runs).
    ///
    /// # Panics
    ///
    /// If it does not come back within 10 s.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_LIMIT;
        loop {
            // The old socket may linger for a moment.
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("redis-server did not restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_server_says_what_to_install() {
        let e = check_server(Some(PathBuf::from("/nonexistent/redis-server"))).unwrap_err();
        assert!(e.contains("apt-get install redis-server"), "{e}");
        // /bin/true prints no version: taken as too old, with the same hint.
        let e = check_server(Some(PathBuf::from("/bin/true"))).unwrap_err();
        assert!(
            e.contains("older than 6.2") && e.contains("apt-get install"),
            "{e}"
        );
        assert!(check_server(None).is_ok(), "this machine has redis-server");
    }

    #[test]
    fn starts_answers_and_goes_away() {
        let mut s = RedisServer::start();
        assert!(ping(s.port()));
        let pid = s.pid().expect("running");
        assert!(s.url().starts_with("redis://127.0.0.1:"));
        let dir = s.dir().to_path_buf();
        s.restart();
        assert!(ping(s.port()));
        assert_ne!(s.pid(), Some(pid));
        let pid = s.pid().expect("running");
        drop(s);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        assert!(!dir.exists());
    }
}
