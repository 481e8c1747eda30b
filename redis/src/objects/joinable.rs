//! `RedisJoinableQueue`: a queue whose consumers mark items done.

use std::time::{Duration, Instant};

use multiproc_ipc::queue::{PutError, PutTimeoutError, TryPutError};
use multiproc_ipc::{Error, ErrorKind, Result};
use multiproc_manager::{SharedJoinableQueue, SharedQueue};
use redis::Script;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::conn::RedisBackend;

use super::backoff;
use super::queue::RedisQueue;

static TASK_DONE: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n <= 0 then return -1 end
return redis.call('DECR', KEYS[1])
";

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
