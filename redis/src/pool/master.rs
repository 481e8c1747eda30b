//! The master side: submitting tasks and collecting their results.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multiproc_ipc::{Error, ErrorKind, Result};
use redis::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::registry::{decode_outcome_bytes, Outcome, TaskFn};
use super::{ensure_groups, scripts, streams};
use crate::conn::{random_hex, RedisBackend};
use crate::objects::{dec, enc};

/// How many submissions go in one script call.
const BATCH: usize = 512;
/// How often a waiting master also looks up its result directly (in case
/// a notification was lost, e.g. with a server restart).
const LOOKUP_EVERY: Duration = Duration::from_millis(500);

/// A task's priority: a stream per level; workers take higher levels first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    /// Taken before every other level.
    High,
    /// The default.
    #[default]
    Normal,
    /// Taken when nothing else waits.
    Low,
}

impl Priority {
    fn level(self) -> usize {
        match self {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Low => 2,
        }
    }
}

/// Options of one submission ([`RedisPool::apply_async_with`]).
///
/// # Examples
///
/// ```
/// use multiproc::redis::{Priority, TaskOptions};
/// use std::time::Duration;
///
/// let o = TaskOptions::new()
///     .id("invoice-42")
///     .priority(Priority::High)
///     .delay(Duration::from_secs(1))
///     .timeout(Duration::from_secs(30))
///     .max_attempts(5);
/// # let _ = o;
/// ```
#[derive(Debug, Clone, Default)]
pub struct TaskOptions {
    id: Option<String>,
    priority: Priority,
    delay: Option<Duration>,
    timeout: Option<Duration>,
    max_attempts: Option<u32>,
    backoff: Option<Duration>,
}

impl TaskOptions {
    /// The pool's defaults.
    pub fn new() -> TaskOptions {
        TaskOptions::default()
    }

    /// The client task id: a second submission with the same id (by any
    /// master of the namespace) does nothing and waits for the first one's
    /// result.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The priority level.
    pub fn priority(mut self, p: Priority) -> Self {
        self.priority = p;
        self
    }

    /// Queue the task only after `delay`.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Kill the process running the task after `timeout` (a failed attempt).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How many times the task may run before its failure is final.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n.max(1));
        self
    }

    /// The first retry's delay (doubled at each further retry, at most 60 s).
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = Some(backoff);
        self
    }
}

/// Builds a [`RedisPool`].
#[derive(Debug)]
pub struct RedisPoolBuilder {
    backend: RedisBackend,
    namespace: String,
    queue: String,
    max_attempts: u32,
    backoff: Duration,
}

impl RedisPoolBuilder {
    /// The key prefix of everything the pool stores (default `"mp"`).
    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = ns.to_owned();
        self
    }

    /// The queue tasks go to (default `"default"`); workers read one queue.
    pub fn queue(mut self, queue: &str) -> Self {
        self.queue = queue.to_owned();
        self
    }

    /// Default attempts per task (3).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Default first retry delay (100 ms).
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// Connects, checks the server's version, creates the queue's streams
    /// and group if missing.
    ///
    /// # Errors
    ///
    /// `Io` if the server cannot be reached; `InvalidArgument` if it runs a
    /// Redis older than 6.2.
    pub fn build(self) -> Result<RedisPool> {
        let streams = streams(&self.namespace, &self.queue);
        ensure_groups(&self.backend, &streams)?;
        let master = random_hex(8);
        Ok(RedisPool {
            shared: Arc::new(Shared {
                reply: format!("{}:reply:{master}", self.namespace),
                backend: self.backend,
                ns: self.namespace,
                queue: self.queue,
                streams,
                master,
                next: AtomicU64::new(0),
                max_attempts: self.max_attempts,
                backoff: self.backoff,
                collected: Mutex::new(HashMap::new()),
                reader: Mutex::new(()),
            }),
        })
    }
}

/// The master of a distributed pool on Redis: submits named tasks and
/// collects their results (Python's task_master, with delivery guarantees).
/// See the [module documentation](crate::pool) for how delivery works.
///
/// # Examples
///
/// See the [module documentation](crate::pool).
///
/// # Caveats
///
/// Results stay stored (`NS:results`) until [`purge`](RedisPool::purge), so
/// that a task id submitted again finds its result. A result that arrives
/// for a handle dropped without `get` stays in this master's memory until
/// the pool is dropped.
#[derive(Clone)]
pub struct RedisPool {
    shared: Arc<Shared>,
}

struct Shared {
    backend: RedisBackend,
    ns: String,
    queue: String,
    streams: Vec<String>,
    master: String,
    reply: String,
    next: AtomicU64,
    max_attempts: u32,
    backoff: Duration,
    /// Outcomes fetched for tasks nobody has asked for yet.
    collected: Mutex<HashMap<String, Outcome>>,
    /// Held by the one waiter that reads the reply list.
    reader: Mutex<()>,
}

impl fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPool")
            .field("namespace", &self.shared.ns)
            .field("queue", &self.shared.queue)
            .finish()
    }
}

/// A submitted task's result, to come.
#[must_use = "the handle is the only way to the result"]
pub struct TaskHandle<R> {
    shared: Arc<Shared>,
    id: String,
    _t: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for TaskHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle").field("id", &self.id).finish()
    }
}

impl<R: DeserializeOwned> TaskHandle<R> {
    /// The task's client id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits for the result.
    ///
    /// # Errors
    ///
    /// The task's final error (after its last attempt): `TaskPanicked`,
    /// `WorkerLost`, `Timeout`, or `InvalidArgument` for a name no worker
    /// registered; `Serialization` if the result is not an `R`; `Io` if the
    /// server is unreachable for longer than the retry window.
    pub fn get(self) -> Result<R> {
        decode_outcome(self.shared.wait(&self.id, None)?)
    }

    /// Waits at most `timeout` for the result.
    ///
    /// # Errors
    ///
    /// `Timeout` if it did not arrive; else as [`get`](TaskHandle::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        decode_outcome(self.shared.wait(&self.id, Some(Instant::now() + timeout))?)
    }
}

fn decode_outcome<R: DeserializeOwned>(o: Outcome) -> Result<R> {
    dec(&o?)
}

/// One encoded submission.
struct Submission {
    stream: usize,
    id: String,
    name: String,
    args: Vec<u8>,
    max_attempts: u32,
    timeout_ms: u64,
    backoff_ms: u64,
    delay_ms: u64,
}

impl Shared {
    fn submission<A: Serialize>(&self, name: &str, arg: &A, o: &TaskOptions) -> Result<Submission> {
        let id = match &o.id {
            Some(id) => id.clone(),
            None => format!(
                "{}-{}",
                self.master,
                self.next.fetch_add(1, Ordering::Relaxed)
            ),
        };
        Ok(Submission {
            stream: o.priority.level(),
            id,
            name: name.to_owned(),
            args: enc(arg)?,
            max_attempts: o.max_attempts.unwrap_or(self.max_attempts),
            timeout_ms: o.timeout.map_or(0, |t| t.as_millis().max(1) as u64),
            backoff_ms: o.backoff.unwrap_or(self.backoff).as_millis() as u64,
            delay_ms: o.delay.map_or(0, |d| d.as_millis() as u64),
        })
    }

    /// Submits in script calls of [`BATCH`] tasks (idempotent: safe to
    /// repeat).
    fn submit(&self, subs: &[Submission]) -> Result<()> {
        for chunk in subs.chunks(BATCH) {
            self.backend.run_scripts("submit", &scripts::all(), |c| {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(scripts::submit().get_hash()).arg(0).arg(&self.ns);
                for s in chunk {
                    cmd.arg(&self.streams[s.stream])
                        .arg(&s.id)
                        .arg(&s.name)
                        .arg(s.args.as_slice())
                        .arg(s.max_attempts)
                        .arg(&self.reply)
                        .arg(s.timeout_ms)
                        .arg(s.backoff_ms)
                        .arg(s.delay_ms);
                }
                cmd.query::<Vec<i64>>(c)
            })?;
        }
        Ok(())
    }

    /// Moves notified outcomes into `collected`; waits at most `wait` for
    /// the first notification.
    fn collect(&self, wait: Duration) -> Result<()> {
        let secs = wait.clamp(Duration::from_millis(1), Duration::from_secs(1));
        let first: Option<(String, String)> = self.backend.run("BLPOP", |c| {
            redis::cmd("BLPOP")
                .arg(&self.reply)
                .arg(secs.as_secs_f64())
                .query(c)
        })?;
        let Some((_, first)) = first else {
            return Ok(());
        };
        let mut ids = vec![first];
        let more: Option<Vec<String>> = self.backend.run("LPOP", |c| {
            redis::cmd("LPOP").arg(&self.reply).arg(4096).query(c)
        })?;
        ids.extend(more.unwrap_or_default());
        let outcomes = self.fetch(&ids)?;
        let mut got = self.collected.lock().unwrap_or_else(|p| p.into_inner());
        for (id, o) in ids.into_iter().zip(outcomes) {
            if let Some(o) = o {
                got.insert(id, o);
            }
        }
        Ok(())
    }

    /// The committed outcomes of `ids` (None where none is committed).
    fn fetch(&self, ids: &[String]) -> Result<Vec<Option<Outcome>>> {
        let raw: Vec<Option<Vec<u8>>> = self.backend.run("HMGET", |c| {
            redis::cmd("HMGET")
                .arg(format!("{}:results", self.ns))
                .arg(ids)
                .query(c)
        })?;
        raw.into_iter()
            .map(|r| r.map(|b| decode_outcome_bytes(&b)).transpose())
            .collect()
    }

    fn wait(&self, id: &str, deadline: Option<Instant>) -> Result<Outcome> {
        let mut next_lookup = Instant::now() + LOOKUP_EVERY;
        loop {
            if let Some(o) = self
                .collected
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id)
            {
                return Ok(o);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::timeout(format!("task {id} has no result yet")));
            }
            if now >= next_lookup {
                next_lookup = now + LOOKUP_EVERY;
                if let Some(Some(o)) = self.fetch(&[id.to_owned()])?.pop() {
                    return Ok(o);
                }
            }
            let left = deadline.map_or(LOOKUP_EVERY, |d| d.saturating_duration_since(now));
            let left = left.min(next_lookup.saturating_duration_since(now));
            match self.reader.try_lock() {
                Ok(_reading) => self.collect(left)?,
                // Another thread reads the replies: give it a moment.
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
}

impl RedisPool {
    /// A builder for a pool on `backend`.
    pub fn builder(backend: RedisBackend) -> RedisPoolBuilder {
        RedisPoolBuilder {
            backend,
            namespace: "mp".into(),
            queue: "default".into(),
            max_attempts: 3,
            backoff: Duration::from_millis(100),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &RedisBackend {
        &self.shared.backend
    }

    /// The key prefix.
    pub fn namespace(&self) -> &str {
        &self.shared.ns
    }

    /// The queue tasks go to.
    pub fn queue(&self) -> &str {
        &self.shared.queue
    }

    fn handle<R>(&self, id: String) -> TaskHandle<R> {
        TaskHandle {
            shared: Arc::clone(&self.shared),
            id,
            _t: PhantomData,
        }
    }

    /// Submits `task(arg)`.
    ///
    /// # Errors
    ///
    /// `Serialization` if `arg` cannot be encoded; `Io` if the server is
    /// unreachable for longer than the retry window.
    pub fn apply_async<A: Serialize, R: DeserializeOwned>(
        &self,
        task: &TaskFn<A, R>,
        arg: A,
    ) -> Result<TaskHandle<R>> {
        self.apply_async_with(task, arg, TaskOptions::new())
    }

    /// Submits `task(arg)` with `options` (id, priority, delay, timeout,
    /// attempts).
    ///
    /// # Errors
    ///
    /// As [`apply_async`](RedisPool::apply_async).
    pub fn apply_async_with<A: Serialize, R: DeserializeOwned>(
        &self,
        task: &TaskFn<A, R>,
        arg: A,
        options: TaskOptions,
    ) -> Result<TaskHandle<R>> {
        let s = self.shared.submission(task.name(), &arg, &options)?;
        let id = s.id.clone();
        self.shared.submit(&[s])?;
        Ok(self.handle(id))
    }

    /// Submits one task per item, 512 per script call; returns their
    /// handles in order.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](RedisPool::apply_async).
    pub fn submit_many<A, R, I>(&self, task: &TaskFn<A, R>, items: I) -> Result<Vec<TaskHandle<R>>>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let o = TaskOptions::new();
        let subs = items
            .into_iter()
            .map(|a| self.shared.submission(task.name(), &a, &o))
            .collect::<Result<Vec<_>>>()?;
        self.shared.submit(&subs)?;
        Ok(subs.into_iter().map(|s| self.handle(s.id)).collect())
    }

    /// Runs `task` on every item and returns the results in order.
    ///
    /// # Errors
    ///
    /// The first failed task's error, else as
    /// [`apply_async`](RedisPool::apply_async).
    pub fn map<A, R, I>(&self, task: &TaskFn<A, R>, items: I) -> Result<Vec<R>>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        self.submit_many(task, items)?
            .into_iter()
            .map(TaskHandle::get)
            .collect()
    }

    /// Runs `task` on every item; yields each result as it is committed.
    ///
    /// # Errors
    ///
    /// Submission errors at once, as [`apply_async`](RedisPool::apply_async);
    /// each task's error as an item.
    pub fn imap_unordered<A, R, I>(&self, task: &TaskFn<A, R>, items: I) -> Result<Unordered<R>>
    where
        A: Serialize,
        R: DeserializeOwned,
        I: IntoIterator<Item = A>,
    {
        let handles = self.submit_many(task, items)?;
        Ok(Unordered {
            shared: Arc::clone(&self.shared),
            left: handles.into_iter().map(|h| h.id).collect(),
            _t: PhantomData,
        })
    }

    /// The committed result of task `id`, if there is one (from any master).
    ///
    /// # Errors
    ///
    /// As [`TaskHandle::get`].
    pub fn result_of<R: DeserializeOwned>(&self, id: &str) -> Result<Option<R>> {
        match self.shared.fetch(&[id.to_owned()])?.pop().flatten() {
            Some(o) => decode_outcome(o).map(Some),
            None => Ok(None),
        }
    }

    /// Asks every worker of the namespace to shut down gracefully: they stop
    /// fetching, finish (or, after their grace period, hand back) the tasks
    /// they hold, and exit.
    ///
    /// # Errors
    ///
    /// `Io` if the server cannot be reached.
    pub fn shutdown_workers(&self) -> Result<()> {
        let key = format!("{}:shutdown", self.shared.ns);
        self.shared
            .backend
            .run_once("INCR", |c| redis::cmd("INCR").arg(&key).query::<i64>(c))
            .map(drop)
    }

    /// Deletes everything the namespace stores (queues, results, ids,
    /// dead letters, counters). Workers should be stopped first.
    ///
    /// # Errors
    ///
    /// `Io` if the server cannot be reached.
    pub fn purge(&self) -> Result<()> {
        let pattern = format!("{}:*", self.shared.ns);
        self.shared.backend.run("purge", |c| {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(c)?;
                if !keys.is_empty() {
                    redis::cmd("DEL").arg(&keys).query::<Value>(c)?;
                }
                if next == 0 {
                    return Ok(());
                }
                cursor = next;
            }
        })?;
        ensure_groups(&self.shared.backend, &self.shared.streams)
    }

    pub(crate) fn shared_backend_ns(&self) -> (&RedisBackend, &str, &[String]) {
        (&self.shared.backend, &self.shared.ns, &self.shared.streams)
    }
}

/// The iterator of [`RedisPool::imap_unordered`]: results in commit order.
pub struct Unordered<R> {
    shared: Arc<Shared>,
    left: HashSet<String>,
    _t: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Unordered<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unordered")
            .field("left", &self.left.len())
            .finish()
    }
}

impl<R: DeserializeOwned> Iterator for Unordered<R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        if self.left.is_empty() {
            return None;
        }
        let mut rounds = 0u32;
        loop {
            {
                let mut got = self
                    .shared
                    .collected
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if let Some(id) = got.keys().find(|id| self.left.contains(*id)).cloned() {
                    self.left.remove(&id);
                    let o = got
                        .remove(&id)
                        .unwrap_or_else(|| Err(Error::new(ErrorKind::Remote, "result vanished")));
                    return Some(decode_outcome(o));
                }
            }
            rounds += 1;
            // Now and then look the oldest one up directly (a lost notification).
            if rounds % 4 == 0 {
                let first = self.left.iter().next().cloned().unwrap_or_default();
                match self.shared.fetch(std::slice::from_ref(&first)) {
                    Ok(mut v) => {
                        if let Some(Some(o)) = v.pop() {
                            self.left.remove(&first);
                            return Some(decode_outcome(o));
                        }
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
            let r = match self.shared.reader.try_lock() {
                Ok(_reading) => self.shared.collect(Duration::from_millis(250)),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(1));
                    Ok(())
                }
            };
            if let Err(e) = r {
                return Some(Err(e));
            }
        }
    }
}
