//! `RedisLock`: a lease lock with a fencing counter.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multiproc_ipc::{Error, ErrorKind, Result};
use multiproc_manager::SharedLock;
use redis::Script;
use serde::{Deserialize, Serialize};

use crate::conn::{random_hex, RedisBackend};

/// The lease when none is given: 10 s, renewed every third of it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

static ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
";

static RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

static EXTEND: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// A lock on a Redis server: `SET key token NX PX lease`, released and
/// extended by compare-and-delete (compare-and-expire) scripts, with a
/// fencing number (`key:fence`, incremented by every acquisition) and
/// automatic lease renewal while held.
///
/// # What a lease lock promises, and what it cannot
///
/// * While the holder runs normally and reaches Redis, nobody else holds
///   the lock: a renewal thread extends the lease every third of it.
/// * A holder that dies (even by SIGKILL) frees the lock when its lease
///   runs out: nobody waits forever on a dead holder.
/// * It cannot promise that a holder *knows* it still holds the lock. A
///   holder paused longer than the lease (SIGSTOP, swap, a network partition)
///   loses it silently, and another process may take it before the paused
///   one resumes and goes on writing. The fence is the defence: every
///   acquisition returns a strictly larger number
///   ([`RedisLockGuard::fence`]); pass it along with every write to the
///   protected resource and have the resource refuse a fence lower than the
///   highest it has seen.
/// * It is a single-server lock: if the server loses its data (a restart
///   without persistence, a failover to a replica that missed the write),
///   two holders are possible. The fence counter survives a restart only as
///   far as the server's persistence (AOF) does.
///
/// # Examples
///
/// ```
/// use multiproc::redis::RedisBackend;
///
/// # let server = multiproc_testkit::RedisServer::start();
/// # let url = server.url();
/// let backend = RedisBackend::open(&url)?; // e.g. "redis://127.0.0.1:6379"
/// let lock = backend.lock("reports");
/// let guard = lock.lock_fenced()?;
/// println!("writing with fence {}", guard.fence());
/// guard.unlock()?;
/// # Ok::<(), multiproc::redis::Error>(())
/// ```
///
/// # Caveats
///
/// Waiting for a taken lock polls (1 to 20 ms). The renewal thread starts at
/// each acquisition and stops at release: do not fork while holding the lock
/// (a forked child does not hold it, and cannot release it).
#[derive(Serialize, Deserialize)]
pub struct RedisLock {
    backend: RedisBackend,
    key: String,
    fence_key: String,
    lease: Duration,
    #[serde(skip)]
    held: Arc<Mutex<Option<Held>>>,
}

impl Clone for RedisLock {
    /// A handle on the same lock; clones in one process share who holds it.
    fn clone(&self) -> Self {
        RedisLock {
            backend: self.backend.clone(),
            key: self.key.clone(),
            fence_key: self.fence_key.clone(),
            lease: self.lease,
            held: Arc::clone(&self.held),
        }
    }
}

impl fmt::Debug for RedisLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLock")
            .field("key", &self.key)
            .field("lease", &self.lease)
            .finish()
    }
}

/// One acquisition: its token, fence and renewal thread.
struct Held {
    pid: u32,
    token: String,
    fence: u64,
    lost: Arc<AtomicBool>,
    stop: mpsc::Sender<()>,
    renewer: Option<JoinHandle<()>>,
}

/// Holds a [`RedisLock`]; releases it when dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct RedisLockGuard<'a> {
    lock: &'a RedisLock,
    fence: u64,
}

impl fmt::Debug for RedisLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLockGuard")
            .field("key", &self.lock.key)
            .field("fence", &self.fence)
            .finish()
    }
}

impl RedisLockGuard<'_> {
    /// This acquisition's fencing number: larger than every earlier one.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// Releases the lock now.
    ///
    /// # Errors
    ///
    /// As [`SharedLock::release`] on [`RedisLock`]: `InvalidArgument` if the
    /// lease had expired and the lock was lost meanwhile.
    pub fn unlock(self) -> Result<()> {
        let lock = self.lock;
        std::mem::forget(self);
        lock.release()
    }
}

impl Drop for RedisLockGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.lock.release() {
            tracing::warn!(error = %e, "a redis lock could not be released when its guard was dropped");
        }
    }
}

static TOKENS: AtomicU64 = AtomicU64::new(0);

impl RedisLock {
    pub(crate) fn new(backend: RedisBackend, key: &str, lease: Duration) -> RedisLock {
        RedisLock {
            backend,
            key: key.to_owned(),
            fence_key: format!("{key}:fence"),
            lease: lease.max(Duration::from_millis(30)),
            held: Arc::new(Mutex::new(None)),
        }
    }

    /// The Redis key of the lock.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lease (renewed every third of it while held).
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The fence of the current acquisition, if this process holds the lock.
    pub fn fence(&self) -> Option<u64> {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|h| h.pid == std::process::id())
            .map(|h| h.fence)
    }

    /// True if the lease was lost while held (the renewal found another
    /// token, or none): the protected work may overlap another holder's.
    pub fn lease_lost(&self) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|h| h.lost.load(Ordering::Relaxed))
    }

    /// One attempt; the fence on success.
    fn try_once(&self) -> Result<Option<u64>> {
        let token = format!(
            "{}-{}-{}",
            std::process::id(),
            TOKENS.fetch_add(1, Ordering::Relaxed),
            random_hex(8)
        );
        let script = Script::new(ACQUIRE);
        let lease_ms = self.lease.as_millis() as u64;
        let fence: u64 = self.backend.run_once("lock acquire", |c| {
            script
                .key(&self.key)
                .key(&self.fence_key)
                .arg(&token)
                .arg(lease_ms)
                .invoke(c)
        })?;
        if fence == 0 {
            return Ok(None);
        }
        self.start_renewal(token, fence);
        Ok(Some(fence))
    }

    fn start_renewal(&self, token: String, fence: u64) {
        let (stop, stopped) = mpsc::channel::<()>();
        let lost = Arc::new(AtomicBool::new(false));
        let backend = self.backend.clone();
        let key = self.key.clone();
        let lease = self.lease;
        let t = token.clone();
        let l = Arc::clone(&lost);
        let renewer = std::thread::Builder::new()
            .name("redis-lock-renew".into())
            .spawn(move || {
                let script = Script::new(EXTEND);
                let lease_ms = lease.as_millis() as u64;
                loop {
                    match stopped.recv_timeout(lease / 3) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    let r: Result<i64> = backend.run_once("lock extend", |c| {
                        script.key(&key).arg(&t).arg(lease_ms).invoke(c)
                    });
                    if let Ok(0) = r {
                        l.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            })
            .ok();
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(Held {
            pid: std::process::id(),
            token,
            fence,
            lost,
            stop,
            renewer,
        });
    }

    fn acquire_until(&self, deadline: Option<Instant>) -> Result<Option<u64>> {
        let mut round = 0u32;
        loop {
            if let Some(f) = self.try_once()? {
                return Ok(Some(f));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            round = (round + 1).min(20);
            std::thread::sleep(Duration::from_millis(u64::from(round)));
        }
    }

    /// Waits for the lock; the guard carries the fence.
    ///
    /// # Errors
    ///
    /// `Io` if the server cannot be reached.
    pub fn lock_fenced(&self) -> Result<RedisLockGuard<'_>> {
        let fence = self.acquire_until(None)?.unwrap_or(0);
        Ok(RedisLockGuard { lock: self, fence })
    }

    /// Takes the lock if it is free now.
    ///
    /// # Errors
    ///
    /// As [`lock_fenced`](RedisLock::lock_fenced).
    pub fn try_lock_fenced(&self) -> Result<Option<RedisLockGuard<'_>>> {
        Ok(self
            .try_once()?
            .map(|fence| RedisLockGuard { lock: self, fence }))
    }

    /// Waits at most `timeout` for the lock.
    ///
    /// # Errors
    ///
    /// As [`lock_fenced`](RedisLock::lock_fenced).
    pub fn lock_fenced_timeout(&self, timeout: Duration) -> Result<Option<RedisLockGuard<'_>>> {
        Ok(self
            .acquire_until(Some(Instant::now() + timeout))?
            .map(|fence| RedisLockGuard { lock: self, fence }))
    }
}

impl SharedLock for RedisLock {
    fn acquire(&self) -> Result<()> {
        self.acquire_until(None).map(drop)
    }
    fn try_acquire(&self) -> Result<bool> {
        Ok(self.try_once()?.is_some())
    }
    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self
            .acquire_until(Some(Instant::now() + timeout))?
            .is_some())
    }
    /// Stops the renewal and deletes the key if it still holds this
    /// acquisition's token.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` if this process does not hold the lock, or if the
    /// lease had expired (the lock was lost); `Io` if the server cannot be
    /// reached.
    fn release(&self) -> Result<()> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut held) = held.filter(|h| h.pid == std::process::id()) else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("lock {} is not held by this process", self.key),
            ));
        };
        let _ = held.stop.send(());
        if let Some(t) = held.renewer.take() {
            let _ = t.join();
        }
        let script = Script::new(RELEASE);
        let deleted: i64 = self.backend.run("lock release", |c| {
            script.key(&self.key).arg(&held.token).invoke(c)
        })?;
        if deleted == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("the lease of lock {} had expired: it was lost", self.key),
            ));
        }
        Ok(())
    }
}
