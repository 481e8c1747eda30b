//! `RedisQueue`: a FIFO queue on a Redis list.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use multiproc_ipc::queue::{PutError, PutTimeoutError, TryPutError};
use multiproc_ipc::{Error, ErrorKind, Result};
use multiproc_manager::SharedQueue;
use redis::Script;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::conn::RedisBackend;

use super::{backoff, block_secs, dec, enc};

static BOUNDED_PUSH: &str = r"
local n = redis.call('LLEN', KEYS[1])
if n + #ARGV - 1 > tonumber(ARGV[1]) then return -1 end
for i = 2, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
if KEYS[2] then redis.call('INCRBY', KEYS[2], #ARGV - 1) end
return n + #ARGV - 1
";

/// A FIFO queue in a Redis list (Python's `Queue`), optionally bounded.
///
/// # Examples
///
/// ```
/// use multiproc::redis::{RedisBackend, SharedQueue};
///
/// # let server = multiproc_testkit::RedisServer::start();
/// # let url = server.url();
/// let backend = RedisBackend::open(&url)?; // e.g. "redis://127.0.0.1:6379"
/// let q = backend.queue::<u32>("numbers");
/// q.put_many(vec![1, 2, 3])?;
/// assert_eq!(q.get()?, 1);
/// assert_eq!(q.get_many(10)?, vec![2, 3]);
/// # Ok::<(), multiproc::redis::Error>(())
/// ```
///
/// # Caveats
///
/// An item taken by a process that then dies is lost, as with any queue;
/// the distributed pool is the at-least-once
/// alternative. Waiting for room in a full bounded queue polls (1 to 20 ms).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RedisQueue<T> {
    pub(super) backend: RedisBackend,
    pub(super) key: String,
    maxsize: Option<usize>,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}

keyed_object!(RedisQueue<T>, maxsize);

impl<T: Serialize + DeserializeOwned> RedisQueue<T> {
    pub(crate) fn new(backend: RedisBackend, key: &str, maxsize: Option<usize>) -> Self {
        RedisQueue {
            backend,
            key: key.to_owned(),
            maxsize,
            _t: PhantomData,
        }
    }

    /// The Redis key of the list.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Deletes the queue and its bookkeeping keys.
    ///
    /// # Errors
    ///
    /// `Io` if the server cannot be reached.
    pub fn delete(&self) -> Result<()> {
        let unfinished = format!("{}:unfinished", self.key);
        self.backend.run("DEL", |c| {
            redis::cmd("DEL")
                .arg(&self.key)
                .arg(&unfinished)
                .query::<i64>(c)
        })?;
        Ok(())
    }

    /// Pushes `items`; `Ok(false)` if a bounded queue has no room for all.
    fn push(&self, items: &[Vec<u8>], counter: Option<&str>) -> Result<bool> {
        if items.is_empty() {
            return Ok(true);
        }
        match self.maxsize {
            None => {
                self.backend.run_once("RPUSH", |c| {
                    let mut p = redis::pipe();
                    p.atomic();
                    p.cmd("RPUSH").arg(&self.key).arg(items).ignore();
                    if let Some(k) = counter {
                        p.cmd("INCRBY").arg(k).arg(items.len()).ignore();
                    }
                    p.query::<()>(c)
                })?;
                Ok(true)
            }
            Some(max) => {
                let script = Script::new(BOUNDED_PUSH);
                let n: i64 = self.backend.run_once("bounded push", |c| {
                    let mut inv = script.key(&self.key);
                    if let Some(k) = counter {
                        inv.key(k);
                    }
                    inv.arg(max);
                    for i in items {
                        inv.arg(i.as_slice());
                    }
                    inv.invoke(c)
                })?;
                Ok(n >= 0)
            }
        }
    }

    /// Puts `item`, waiting for room until `deadline` (forever for `None`).
    /// On failure the item comes back, wrapped by `full` (no room until the
    /// deadline) or `failed` (encoding or the server failed).
    fn put_counted<E>(
        &self,
        item: T,
        deadline: Option<Instant>,
        counter: Option<&str>,
        full: impl FnOnce(T) -> E,
        failed: impl FnOnce(T, Error) -> E,
    ) -> std::result::Result<(), E> {
        let bytes = match enc(&item) {
            Ok(b) => [b],
            Err(e) => return Err(failed(item, e)),
        };
        let mut round = 0;
        loop {
            match self.push(&bytes, counter) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => return Err(failed(item, e)),
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(full(item));
            }
            std::thread::sleep(backoff(&mut round));
        }
    }

    pub(super) fn put_forever(
        &self,
        item: T,
        counter: Option<&str>,
    ) -> std::result::Result<(), PutError<T>> {
        // Without a deadline `full` is never called: the put waits for room.
        let full = |item| {
            let e = Error::new(ErrorKind::Full, format!("queue {} is full", self.key));
            PutError::Failed(item, e)
        };
        self.put_counted(item, None, counter, full, PutError::Failed)
    }

    pub(super) fn put_now(
        &self,
        item: T,
        counter: Option<&str>,
    ) -> std::result::Result<(), TryPutError<T>> {
        let deadline = Some(Instant::now());
        self.put_counted(
            item,
            deadline,
            counter,
            TryPutError::Full,
            TryPutError::Failed,
        )
    }

    pub(super) fn put_until(
        &self,
        item: T,
        timeout: Duration,
        counter: Option<&str>,
    ) -> std::result::Result<(), PutTimeoutError<T>> {
        let deadline = Some(Instant::now() + timeout);
        self.put_counted(
            item,
            deadline,
            counter,
            PutTimeoutError::Timeout,
            PutTimeoutError::Failed,
        )
    }

    fn pop_blocking(&self, deadline: Option<Instant>) -> Result<T> {
        loop {
            let left = deadline.map_or(Duration::from_secs(1), |d| {
                d.saturating_duration_since(Instant::now())
            });
            let got: Option<(Vec<u8>, Vec<u8>)> = self.backend.run_once("BLPOP", |c| {
                redis::cmd("BLPOP")
                    .arg(&self.key)
                    .arg(block_secs(left))
                    .query(c)
            })?;
            if let Some((_, v)) = got {
                return dec(&v);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::timeout(format!(
                    "no item arrived in queue {}",
                    self.key
                )));
            }
        }
    }

    pub(super) fn put_many_counted(
        &self,
        items: Vec<T>,
        counter: Option<&str>,
    ) -> std::result::Result<(), PutError<Vec<T>>> {
        let bytes = match items.iter().map(enc).collect::<Result<Vec<_>>>() {
            Ok(b) => b,
            Err(e) => return Err(PutError::Failed(items, e)),
        };
        let mut round = 0;
        loop {
            match self.push(&bytes, counter) {
                Ok(true) => return Ok(()),
                Ok(false) => std::thread::sleep(backoff(&mut round)),
                Err(e) => return Err(PutError::Failed(items, e)),
            }
        }
    }

    fn is_full(&self) -> Result<bool> {
        match self.maxsize {
            None => Ok(false),
            Some(max) => Ok(self.qsize_now()? >= max),
        }
    }

    fn qsize_now(&self) -> Result<usize> {
        self.backend
            .run("LLEN", |c| redis::cmd("LLEN").arg(&self.key).query(c))
    }
}

impl<T: Serialize + DeserializeOwned> SharedQueue<T> for RedisQueue<T> {
    fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.put_forever(item, None)
    }
    fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
        self.put_now(item, None)
    }
    fn put_timeout(
        &self,
        item: T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<T>> {
        self.put_until(item, timeout, None)
    }
    fn get(&self) -> Result<T> {
        self.pop_blocking(None)
    }
    fn try_get(&self) -> Result<T> {
        let got: Option<Vec<u8>> = self
            .backend
            .run_once("LPOP", |c| redis::cmd("LPOP").arg(&self.key).query(c))?;
        match got {
            Some(v) => dec(&v),
            None => Err(Error::new(
                ErrorKind::Empty,
                format!("queue {} is empty", self.key),
            )),
        }
    }
    fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.pop_blocking(Some(Instant::now() + timeout))
    }
    fn qsize(&self) -> Result<usize> {
        self.qsize_now()
    }
    fn full(&self) -> Result<bool> {
        self.is_full()
    }
    /// One `RPUSH` for all items (a bounded queue waits until all fit).
    fn put_many(&self, items: Vec<T>) -> std::result::Result<(), PutError<Vec<T>>> {
        self.put_many_counted(items, None)
    }
    /// One `LPOP key count`.
    fn get_many(&self, max: usize) -> Result<Vec<T>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let got: Option<Vec<Vec<u8>>> = self.backend.run_once("LPOP", |c| {
            redis::cmd("LPOP").arg(&self.key).arg(max).query(c)
        })?;
        got.unwrap_or_default().iter().map(|b| dec(b)).collect()
    }
}
