//! Queues, joinable queues, dicts, lists and values on Redis, behind the
//! shared object traits of `multiproc-manager`.
//!
//! Each object is a name: the Redis key that holds it (plus `NAME:…` keys for
//! its bookkeeping). Items, keys and values are stored encoded by multiproc's
//! codec. Objects are cheap to clone and `Serialize` (as backend URL and
//! name), so they can be passed to pool tasks and other processes.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use std::borrow::Borrow;

use multiproc_ipc::codec;
use multiproc_ipc::queue::{PutError, PutTimeoutError, TryPutError};
use multiproc_ipc::{Error, ErrorKind, Result};
use multiproc_manager::{SharedDict, SharedJoinableQueue, SharedList, SharedQueue, SharedValue};
use redis::{Connection, RedisResult, Script, Value};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::conn::RedisBackend;

pub(crate) fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>> {
    Ok(codec::encode(v)?)
}

pub(crate) fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    Ok(codec::decode(b)?)
}

/// Seconds for a blocking command, at least one millisecond and at most one
/// second (longer waits loop, so that no reply takes long).
fn block_secs(left: Duration) -> f64 {
    left.clamp(Duration::from_millis(1), Duration::from_secs(1))
        .as_secs_f64()
}

/// A poll interval that grows from 1 ms to 20 ms.
fn backoff(round: &mut u32) -> Duration {
    *round = (*round + 1).min(20);
    Duration::from_millis(u64::from(*round))
}

// ---------------------------------------------------------------- queue

static BOUNDED_PUSH: &str = r"
local n = redis.call('LLEN', KEYS[1])
if n + #ARGV - 1 > tonumber(ARGV[1]) then return -1 end
for i = 2, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
if KEYS[2] then redis.call('INCRBY', KEYS[2], #ARGV - 1) end
return n + #ARGV - 1
";

static TASK_DONE: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n <= 0 then return -1 end
return redis.call('DECR', KEYS[1])
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
    backend: RedisBackend,
    key: String,
    maxsize: Option<usize>,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for RedisQueue<T> {
    fn clone(&self) -> Self {
        RedisQueue {
            backend: self.backend.clone(),
            key: self.key.clone(),
            maxsize: self.maxsize,
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for RedisQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("key", &self.key)
            .field("maxsize", &self.maxsize)
            .finish()
    }
}

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

    fn put_forever(&self, item: T, counter: Option<&str>) -> std::result::Result<(), PutError<T>> {
        // Without a deadline `full` is never called: the put waits for room.
        let full = |item| {
            let e = Error::new(ErrorKind::Full, format!("queue {} is full", self.key));
            PutError::Failed(item, e)
        };
        self.put_counted(item, None, counter, full, PutError::Failed)
    }

    fn put_now(&self, item: T, counter: Option<&str>) -> std::result::Result<(), TryPutError<T>> {
        let deadline = Some(Instant::now());
        self.put_counted(
            item,
            deadline,
            counter,
            TryPutError::Full,
            TryPutError::Failed,
        )
    }

    fn put_until(
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

    fn put_many_counted(
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

// ------------------------------------------------------- joinable queue

/// A [`RedisQueue`] with Python's `JoinableQueue` accounting: a counter of
/// unfinished items (`NAME:unfinished`) raised by every put, lowered by
/// [`task_done`](SharedJoinableQueue::task_done).
///
/// # Examples
///
/// ```
/// use multiproc::redis::{RedisBackend, SharedJoinableQueue, SharedQueue};
///
/// # let server = multiproc_testkit::RedisServer::start();
/// # let url = server.url();
/// let backend = RedisBackend::open(&url)?; // e.g. "redis://127.0.0.1:6379"
/// let q = backend.joinable_queue::<String>("laundry");
/// q.put("shirt".to_string())?;
/// let item = q.get()?;
/// q.task_done()?;
/// q.join()?; // nothing unfinished
/// # Ok::<(), multiproc::redis::Error>(())
/// ```
///
/// # Caveats
///
/// `join` polls the counter (1 to 20 ms). An item taken by a consumer that
/// dies is never reported done, so `join` waits for it: use `join_timeout`.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RedisJoinableQueue<T> {
    queue: RedisQueue<T>,
    counter: String,
}

impl<T> Clone for RedisJoinableQueue<T> {
    fn clone(&self) -> Self {
        RedisJoinableQueue {
            queue: self.queue.clone(),
            counter: self.counter.clone(),
        }
    }
}

impl<T> std::fmt::Debug for RedisJoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisJoinableQueue")
            .field("key", &self.queue.key)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> RedisJoinableQueue<T> {
    pub(crate) fn new(backend: RedisBackend, key: &str, maxsize: Option<usize>) -> Self {
        RedisJoinableQueue {
            queue: RedisQueue::new(backend, key, maxsize),
            counter: format!("{key}:unfinished"),
        }
    }

    /// The queue without the accounting.
    pub fn queue(&self) -> &RedisQueue<T> {
        &self.queue
    }

    /// The number of items put and not yet reported done.
    ///
    /// # Errors
    ///
    /// `Io` if the server cannot be reached.
    pub fn unfinished(&self) -> Result<u64> {
        let n: Option<u64> = self
            .queue
            .backend
            .run("GET", |c| redis::cmd("GET").arg(&self.counter).query(c))?;
        Ok(n.unwrap_or(0))
    }

    /// Deletes the queue and its counter.
    ///
    /// # Errors
    ///
    /// `Io` if the server cannot be reached.
    pub fn delete(&self) -> Result<()> {
        self.queue.delete()
    }

    fn wait_done(&self, deadline: Option<Instant>) -> Result<()> {
        let mut round = 0;
        loop {
            if self.unfinished()? == 0 {
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::timeout(format!(
                    "items of queue {} are still unfinished",
                    self.queue.key
                )));
            }
            std::thread::sleep(backoff(&mut round));
        }
    }
}

impl<T: Serialize + DeserializeOwned> SharedQueue<T> for RedisJoinableQueue<T> {
    fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        self.queue.put_forever(item, Some(&self.counter))
    }
    fn try_put(&self, item: T) -> std::result::Result<(), TryPutError<T>> {
        self.queue.put_now(item, Some(&self.counter))
    }
    fn put_timeout(
        &self,
        item: T,
        timeout: Duration,
    ) -> std::result::Result<(), PutTimeoutError<T>> {
        self.queue.put_until(item, timeout, Some(&self.counter))
    }
    fn get(&self) -> Result<T> {
        self.queue.get()
    }
    fn try_get(&self) -> Result<T> {
        self.queue.try_get()
    }
    fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.queue.get_timeout(timeout)
    }
    fn qsize(&self) -> Result<usize> {
        self.queue.qsize()
    }
    fn full(&self) -> Result<bool> {
        self.queue.full()
    }
    fn put_many(&self, items: Vec<T>) -> std::result::Result<(), PutError<Vec<T>>> {
        self.queue.put_many_counted(items, Some(&self.counter))
    }
    fn get_many(&self, max: usize) -> Result<Vec<T>> {
        self.queue.get_many(max)
    }
}

impl<T: Serialize + DeserializeOwned> SharedJoinableQueue<T> for RedisJoinableQueue<T> {
    fn task_done(&self) -> Result<()> {
        let script = Script::new(TASK_DONE);
        let n: i64 = self
            .queue
            .backend
            .run_once("task_done", |c| script.key(&self.counter).invoke(c))?;
        if n < 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "task_done() called too many times",
            ));
        }
        Ok(())
    }
    fn join(&self) -> Result<()> {
        self.wait_done(None)
    }
    fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_done(Some(Instant::now() + timeout))
    }
}

// ----------------------------------------------------------------- dict

/// A dictionary in a Redis hash; keys and values encoded by the codec.
///
/// # Examples
///
/// ```
/// use multiproc::redis::{RedisBackend, SharedDict};
///
/// # let server = multiproc_testkit::RedisServer::start();
/// # let url = server.url();
/// let backend = RedisBackend::open(&url)?; // e.g. "redis://127.0.0.1:6379"
/// let d = backend.dict::<String, i64>("scores");
/// d.insert(&"ann".to_string(), &3)?;
/// assert_eq!(d.get(&"ann".to_string())?, Some(3));
/// # Ok::<(), multiproc::redis::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RedisDict<K, V> {
    backend: RedisBackend,
    key: String,
    #[serde(skip)]
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for RedisDict<K, V> {
    fn clone(&self) -> Self {
        RedisDict {
            backend: self.backend.clone(),
            key: self.key.clone(),
            _t: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for RedisDict<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDict").field("key", &self.key).finish()
    }
}

/// Sets ARGV[1] to ARGV[2] unless present; returns the value there now.
static HASH_SETDEFAULT: &str = r"
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
";

static HASH_SWAP: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else redis.call('HDEL', KEYS[1], ARGV[1]) end
return old
";

impl<K, V> RedisDict<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    pub(crate) fn new(backend: RedisBackend, key: &str) -> Self {
        RedisDict {
            backend,
            key: key.to_owned(),
            _t: PhantomData,
        }
    }

    /// The Redis key of the hash.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn swap<Q: ?Sized + Serialize>(&self, key: &Q, value: Option<&V>) -> Result<Option<V>> {
        let k = enc(key)?;
        let v = value.map(enc).transpose()?;
        let script = Script::new(HASH_SWAP);
        let old: Option<Vec<u8>> = self.backend.run_once("dict write", |c| {
            let mut inv = script.key(&self.key);
            inv.arg(k.as_slice());
            if let Some(v) = &v {
                inv.arg(v.as_slice());
            }
            inv.invoke(c)
        })?;
        old.map(|b| dec(&b)).transpose()
    }
}

impl<K, V> SharedDict<K, V> for RedisDict<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn get<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
    {
        let k = enc(key)?;
        let v: Option<Vec<u8>> = self.backend.run("HGET", |c| {
            redis::cmd("HGET").arg(&self.key).arg(k.as_slice()).query(c)
        })?;
        v.map(|b| dec(&b)).transpose()
    }
    fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        self.swap(key, Some(value))
    }
    fn remove<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
    {
        self.swap(key, None)
    }
    fn contains_key<Q>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
    {
        let k = enc(key)?;
        self.backend.run("HEXISTS", |c| {
            redis::cmd("HEXISTS")
                .arg(&self.key)
                .arg(k.as_slice())
                .query(c)
        })
    }
    /// One script: `HSETNX`, then `HGET`.
    fn setdefault(&self, key: &K, default: &V) -> Result<V> {
        let k = enc(key)?;
        let v = enc(default)?;
        let script = Script::new(HASH_SETDEFAULT);
        let now: Vec<u8> = self.backend.run("setdefault", |c| {
            script
                .key(&self.key)
                .arg(k.as_slice())
                .arg(v.as_slice())
                .invoke(c)
        })?;
        dec(&now)
    }
    /// Optimistic: `WATCH` the hash, `HGET`, apply `f` here,
    /// `MULTI`/`HSET`/`EXEC`, again if another writer came between.
    fn update_with<Q>(&self, key: &Q, f: fn(Option<V>) -> V) -> Result<V>
    where
        K: Borrow<Q>,
        Q: ?Sized + Serialize,
        V: 'static,
    {
        let field = enc(key)?;
        loop {
            let done = self.backend.run_once("update_with", |c| {
                try_optimistic(c, &self.key, Some(&field), |old| {
                    enc(&f(old.map(|b| dec::<V>(&b)).transpose()?))
                })
            })??;
            match done {
                Some(bytes) => return dec(&bytes),
                None => std::thread::yield_now(),
            }
        }
    }
    /// One `HSET` for all pairs.
    fn update<I: IntoIterator<Item = (K, V)>>(&self, pairs: I) -> Result<()> {
        let mut fields = Vec::new();
        for (k, v) in pairs {
            fields.push(enc(&k)?);
            fields.push(enc(&v)?);
        }
        if fields.is_empty() {
            return Ok(());
        }
        self.backend
            .run("HSET", |c| {
                redis::cmd("HSET")
                    .arg(&self.key)
                    .arg(&fields)
                    .query::<i64>(c)
            })
            .map(drop)
    }
    fn len(&self) -> Result<usize> {
        self.backend
            .run("HLEN", |c| redis::cmd("HLEN").arg(&self.key).query(c))
    }
    fn keys(&self) -> Result<Vec<K>> {
        let ks: Vec<Vec<u8>> = self
            .backend
            .run("HKEYS", |c| redis::cmd("HKEYS").arg(&self.key).query(c))?;
        ks.iter().map(|b| dec(b)).collect()
    }
    fn values(&self) -> Result<Vec<V>> {
        let vs: Vec<Vec<u8>> = self
            .backend
            .run("HVALS", |c| redis::cmd("HVALS").arg(&self.key).query(c))?;
        vs.iter().map(|b| dec(b)).collect()
    }
    fn items(&self) -> Result<Vec<(K, V)>> {
        let kv: Vec<(Vec<u8>, Vec<u8>)> = self
            .backend
            .run("HGETALL", |c| redis::cmd("HGETALL").arg(&self.key).query(c))?;
        kv.iter().map(|(k, v)| Ok((dec(k)?, dec(v)?))).collect()
    }
    fn clear(&self) -> Result<()> {
        self.backend
            .run("DEL", |c| redis::cmd("DEL").arg(&self.key).query::<i64>(c))
            .map(drop)
    }
}

// ----------------------------------------------------------------- list

/// A list in a Redis list; negative indices count from the end.
///
/// # Examples
///
/// ```
/// use multiproc::redis::{RedisBackend, SharedList};
///
/// # let server = multiproc_testkit::RedisServer::start();
/// # let url = server.url();
/// let backend = RedisBackend::open(&url)?; // e.g. "redis://127.0.0.1:6379"
/// let l = backend.list::<u32>("xs");
/// l.extend([1, 2, 3])?;
/// assert_eq!(l.get(-1)?, 3);
/// # Ok::<(), multiproc::redis::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RedisList<T> {
    backend: RedisBackend,
    key: String,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for RedisList<T> {
    fn clone(&self) -> Self {
        RedisList {
            backend: self.backend.clone(),
            key: self.key.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for RedisList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisList").field("key", &self.key).finish()
    }
}

/// Removes the item at ARGV[1] (a list index) and returns it.
static LIST_POP_AT: &str = r"
local v = redis.call('LINDEX', KEYS[1], ARGV[1])
if not v then return false end
local mark = '__multiproc_removed__' .. ARGV[2]
redis.call('LSET', KEYS[1], ARGV[1], mark)
redis.call('LREM', KEYS[1], 1, mark)
return v
";

/// Inserts ARGV[2] before index ARGV[1], clamped as Python's `list.insert`:
/// the items from the index on are moved out and pushed back after it.
static LIST_INSERT: &str = r"
local n = redis.call('LLEN', KEYS[1])
local i = tonumber(ARGV[1])
if i < 0 then i = math.max(i + n, 0) end
if i >= n then return redis.call('RPUSH', KEYS[1], ARGV[2]) end
if i == 0 then return redis.call('LPUSH', KEYS[1], ARGV[2]) end
local tail = redis.call('LRANGE', KEYS[1], i, -1)
redis.call('LTRIM', KEYS[1], 0, i - 1)
redis.call('RPUSH', KEYS[1], ARGV[2])
for j = 1, #tail, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(tail, j, math.min(j + 999, #tail)))
end
return n + 1
";

fn out_of_range(index: i64) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("list index {index} out of range"),
    )
}

impl<T: Serialize + DeserializeOwned> RedisList<T> {
    pub(crate) fn new(backend: RedisBackend, key: &str) -> Self {
        RedisList {
            backend,
            key: key.to_owned(),
            _t: PhantomData,
        }
    }

    /// The Redis key of the list.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn push_encoded(&self, bytes: Vec<Vec<u8>>) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.backend
            .run_once("RPUSH", |c| {
                redis::cmd("RPUSH")
                    .arg(&self.key)
                    .arg(&bytes)
                    .query::<i64>(c)
            })
            .map(drop)
    }
}

impl<T: Serialize + DeserializeOwned> SharedList<T> for RedisList<T> {
    fn push(&self, value: &T) -> Result<()> {
        self.push_encoded(vec![enc(value)?])
    }
    /// One `RPUSH` for all items.
    fn extend<I: IntoIterator<Item = T>>(&self, items: I) -> Result<()> {
        let bytes = items
            .into_iter()
            .map(|v| enc(&v))
            .collect::<Result<Vec<_>>>()?;
        self.push_encoded(bytes)
    }

    fn get(&self, index: i64) -> Result<T> {
        let v: Option<Vec<u8>> = self.backend.run("LINDEX", |c| {
            redis::cmd("LINDEX").arg(&self.key).arg(index).query(c)
        })?;
        dec(&v.ok_or_else(|| out_of_range(index))?)
    }
    fn set(&self, index: i64, value: &T) -> Result<()> {
        let v = enc(value)?;
        let r: RedisResult<()> = self.backend.run_once("LSET", |c| {
            Ok(redis::cmd("LSET")
                .arg(&self.key)
                .arg(index)
                .arg(v.as_slice())
                .query::<()>(c))
        })?;
        // The server refuses an index out of range (or a missing list).
        r.map_err(|_| out_of_range(index))
    }
    fn pop(&self, index: Option<i64>) -> Result<T> {
        let v: Option<Vec<u8>> = match index {
            None | Some(-1) => self
                .backend
                .run_once("RPOP", |c| redis::cmd("RPOP").arg(&self.key).query(c))?,
            Some(i) => {
                let script = Script::new(LIST_POP_AT);
                let mark = crate::conn::random_hex(8);
                self.backend
                    .run_once("pop", |c| script.key(&self.key).arg(i).arg(&mark).invoke(c))?
            }
        };
        match v {
            Some(b) => dec(&b),
            None if self.len()? == 0 => Err(Error::new(
                ErrorKind::Empty,
                format!("pop from empty list {}", self.key),
            )),
            None => Err(out_of_range(index.unwrap_or(-1))),
        }
    }
    /// One script; it moves the items after `index` (O(n) on the server).
    fn insert(&self, index: i64, value: &T) -> Result<()> {
        let v = enc(value)?;
        let script = Script::new(LIST_INSERT);
        self.backend
            .run_once("insert", |c| {
                script
                    .key(&self.key)
                    .arg(index)
                    .arg(v.as_slice())
                    .invoke::<i64>(c)
            })
            .map(drop)
    }
    /// `LREM key 1 value`.
    fn remove(&self, value: &T) -> Result<bool> {
        let v = enc(value)?;
        let n: i64 = self.backend.run_once("LREM", |c| {
            redis::cmd("LREM")
                .arg(&self.key)
                .arg(1)
                .arg(v.as_slice())
                .query(c)
        })?;
        Ok(n > 0)
    }
    fn len(&self) -> Result<usize> {
        self.backend
            .run("LLEN", |c| redis::cmd("LLEN").arg(&self.key).query(c))
    }
    fn to_vec(&self) -> Result<Vec<T>> {
        let all: Vec<Vec<u8>> = self.backend.run("LRANGE", |c| {
            redis::cmd("LRANGE").arg(&self.key).arg(0).arg(-1).query(c)
        })?;
        all.iter().map(|b| dec(b)).collect()
    }
    fn clear(&self) -> Result<()> {
        self.backend
            .run("DEL", |c| redis::cmd("DEL").arg(&self.key).query::<i64>(c))
            .map(drop)
    }
}

// ---------------------------------------------------------------- value

/// One value in a Redis string, with an atomic [`update`](SharedValue::update)
/// (optimistic: `WATCH`, read, apply `f` here, `MULTI`/`SET`/`EXEC`, again if
/// another writer came between).
///
/// # Examples
///
/// ```
/// use multiproc::redis::{RedisBackend, SharedValue};
///
/// # let server = multiproc_testkit::RedisServer::start();
/// # let url = server.url();
/// let backend = RedisBackend::open(&url)?; // e.g. "redis://127.0.0.1:6379"
/// let v = backend.value("counter", 0i64)?;
/// assert_eq!(v.update(|x| x + 1)?, 1);
/// # Ok::<(), multiproc::redis::Error>(())
/// ```
///
/// # Caveats
///
/// `f` may run several times under contention (only one result is
/// stored): keep it pure.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RedisValue<T> {
    backend: RedisBackend,
    key: String,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for RedisValue<T> {
    fn clone(&self) -> Self {
        RedisValue {
            backend: self.backend.clone(),
            key: self.key.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for RedisValue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisValue")
            .field("key", &self.key)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> RedisValue<T> {
    /// The value under `key`, set to `initial` unless it exists.
    pub(crate) fn new(backend: RedisBackend, key: &str, initial: &T) -> Result<Self> {
        let v = enc(initial)?;
        backend.run("SET NX", |c| {
            redis::cmd("SET")
                .arg(key)
                .arg(v.as_slice())
                .arg("NX")
                .query::<Value>(c)
        })?;
        Ok(RedisValue {
            backend,
            key: key.to_owned(),
            _t: PhantomData,
        })
    }

    /// The Redis key of the value.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn missing(&self) -> Error {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("no value under key {}", self.key),
        )
    }
}

/// One optimistic update of the string `key` (`field` `None`) or of the
/// field `field` of the hash `key`: `WATCH`, read, `apply` here, then
/// `MULTI`/write/`EXEC`. `Ok(None)` if another writer came between; the
/// inner error is `apply`'s.
fn try_optimistic(
    c: &mut Connection,
    key: &str,
    field: Option<&[u8]>,
    apply: impl FnOnce(Option<Vec<u8>>) -> Result<Vec<u8>>,
) -> RedisResult<std::result::Result<Option<Vec<u8>>, Error>> {
    redis::cmd("WATCH").arg(key).query::<()>(c)?;
    let old: Option<Vec<u8>> = match field {
        None => redis::cmd("GET").arg(key).query(c)?,
        Some(f) => redis::cmd("HGET").arg(key).arg(f).query(c)?,
    };
    let new = match apply(old) {
        Ok(n) => n,
        Err(e) => {
            redis::cmd("UNWATCH").query::<()>(c)?;
            return Ok(Err(e));
        }
    };
    let mut pipe = redis::pipe();
    pipe.atomic();
    match field {
        None => pipe.cmd("SET").arg(key),
        Some(f) => pipe.cmd("HSET").arg(key).arg(f),
    }
    .arg(new.as_slice())
    .ignore();
    let done: Option<()> = pipe.query(c)?;
    Ok(Ok(done.map(|()| new)))
}

impl<T: Serialize + DeserializeOwned> SharedValue<T> for RedisValue<T> {
    fn get(&self) -> Result<T> {
        let v: Option<Vec<u8>> = self
            .backend
            .run("GET", |c| redis::cmd("GET").arg(&self.key).query(c))?;
        dec(&v.ok_or_else(|| self.missing())?)
    }
    fn set(&self, value: &T) -> Result<()> {
        let v = enc(value)?;
        self.backend.run("SET", |c| {
            redis::cmd("SET")
                .arg(&self.key)
                .arg(v.as_slice())
                .query::<()>(c)
        })
    }
    fn update(&self, f: fn(T) -> T) -> Result<T> {
        loop {
            match self.backend.run_once("update", |c| {
                try_optimistic(c, &self.key, None, |old| match old {
                    Some(b) => enc(&f(dec::<T>(&b)?)),
                    None => Err(self.missing()),
                })
            })?? {
                Some(bytes) => return dec(&bytes),
                None => std::thread::yield_now(),
            }
        }
    }
}
