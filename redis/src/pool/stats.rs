//! `RedisPool::stats`: what is queued, running, retried and dead.

use multiproc_ipc::Result;
use redis::Value;

use super::master::RedisPool;
use super::GROUP;

/// A snapshot of a pool's namespace ([`RedisPool::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisPoolStats {
    /// Tasks waiting in the queue's streams, not yet taken by a worker.
    pub queued: u64,
    /// Tasks taken by a worker and not yet completed (running or
    /// prefetched).
    pub running: u64,
    /// `running`, per worker (consumer name), busiest first.
    pub pending_per_worker: Vec<(String, u64)>,
    /// Tasks waiting for their delay or retry backoff.
    pub delayed: u64,
    /// Results committed.
    pub completed: u64,
    /// Failed attempts queued again (panics, crashes, timeouts).
    pub retries: u64,
    /// Tasks handed back from dead workers.
    pub redelivered: u64,
    /// Tasks whose last attempt failed (entries in the dead-letter stream).
    pub dead_letters: u64,
    /// Completions refused because the worker no longer owned the task.
    pub fenced: u64,
    /// Workers with a live heartbeat.
    pub workers: u64,
}

fn int(v: &Value) -> u64 {
    match v {
        Value::Int(i) => (*i).max(0) as u64,
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    }
}

/// A task a worker holds ([`RedisPool::running`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningTask {
    /// The task's client id.
    pub id: String,
    /// The consumer (worker incarnation) holding it: `HOST-PID-RANDOM`.
    pub consumer: String,
    /// Which attempt this is (1 for the first).
    pub attempt: u32,
    /// Milliseconds since it was delivered.
    pub idle_ms: u64,
}

impl RunningTask {
    /// The pid of the worker process holding the task, read from its
    /// consumer name.
    pub fn worker_pid(&self) -> Option<i32> {
        self.consumer.rsplit('-').nth(1)?.parse().ok()
    }
}

impl RedisPool {
    /// The tasks workers hold now (at most 1,000 per priority level).
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::redis::{RedisBackend, RedisPool};
    /// # let server = multiproc_testkit::RedisServer::start();
    /// # let backend = RedisBackend::open(&server.url())?;
    /// let pool = RedisPool::builder(backend).build()?;
    /// assert!(pool.running()?.is_empty());
    /// # Ok::<(), multiproc::redis::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Io` if the server cannot be reached.
    pub fn running(&self) -> Result<Vec<RunningTask>> {
        let (backend, _, streams) = self.shared_backend_ns();
        backend.run("running", |c| {
            let mut out = Vec::new();
            for s in streams {
                let pending: Value = redis::cmd("XPENDING")
                    .arg(s)
                    .arg(GROUP)
                    .arg("-")
                    .arg("+")
                    .arg(1000)
                    .query(c)?;
                let Value::Array(list) = pending else {
                    continue;
                };
                for p in list {
                    let Value::Array(p) = p else { continue };
                    let (Some(entry), Some(consumer), Some(idle)) = (p.first(), p.get(1), p.get(2))
                    else {
                        continue;
                    };
                    let entry = text(entry);
                    let fields: Value = redis::cmd("XRANGE")
                        .arg(s)
                        .arg(&entry)
                        .arg(&entry)
                        .query(c)?;
                    let (mut id, mut attempt) = (String::new(), 0u32);
                    if let Value::Array(es) = fields {
                        if let Some(Value::Array(e)) = es.first() {
                            if let Some(Value::Array(kv)) = e.get(1) {
                                for pair in kv.chunks(2) {
                                    if let [k, v] = pair {
                                        match text(k).as_str() {
                                            "id" => id = text(v),
                                            "n" => attempt = int(v) as u32,
                                            _ => {}
                                        }
                                    }
                                }
                            }
                        }
                    }
                    out.push(RunningTask {
                        id,
                        consumer: text(consumer),
                        attempt,
                        idle_ms: int(idle),
                    });
                }
            }
            Ok(out)
        })
    }

    /// Counts queued, running (per worker), delayed, completed, retried,
    /// redelivered, dead-lettered and fenced-off tasks, and live workers.
    ///
    /// # Examples
    ///
    /// ```
    /// # use multiproc::redis::{RedisBackend, RedisPool};
    /// # let server = multiproc_testkit::RedisServer::start();
    /// # let backend = RedisBackend::open(&server.url())?;
    /// let pool = RedisPool::builder(backend).build()?;
    /// let s = pool.stats()?;
    /// assert_eq!((s.queued, s.running, s.dead_letters), (0, 0, 0));
    /// # Ok::<(), multiproc::redis::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Io` if the server cannot be reached.
    pub fn stats(&self) -> Result<RedisPoolStats> {
        let (backend, ns, streams) = self.shared_backend_ns();
        backend.run("stats", |c| {
            let mut st = RedisPoolStats::default();
            let mut per: std::collections::HashMap<String, u64> = Default::default();
            for s in streams {
                let len: u64 = redis::cmd("XLEN").arg(s).query(c)?;
                // Acknowledged entries a commit left for a later trim.
                let stale: Option<u64> = redis::cmd("GET").arg(format!("{s}:stale")).query(c)?;
                let summary: Value = redis::cmd("XPENDING").arg(s).arg(GROUP).query(c)?;
                let mut pending = 0;
                if let Value::Array(parts) = &summary {
                    pending = parts.first().map_or(0, int);
                    if let Some(Value::Array(consumers)) = parts.get(3) {
                        for cons in consumers {
                            if let Value::Array(pair) = cons {
                                if let (Some(n), Some(k)) = (pair.first(), pair.get(1)) {
                                    *per.entry(text(n)).or_default() += int(k);
                                }
                            }
                        }
                    }
                }
                st.running += pending;
                st.queued += len.saturating_sub(pending + stale.unwrap_or(0));
            }
            let mut per: Vec<(String, u64)> = per.into_iter().collect();
            per.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            st.pending_per_worker = per;
            st.delayed = redis::cmd("ZCARD").arg(format!("{ns}:delayed")).query(c)?;
            st.dead_letters = redis::cmd("XLEN").arg(format!("{ns}:dead")).query(c)?;
            let counters: Vec<Option<u64>> = redis::cmd("MGET")
                .arg(format!("{ns}:stat:completed"))
                .arg(format!("{ns}:stat:retries"))
                .arg(format!("{ns}:stat:redelivered"))
                .arg(format!("{ns}:stat:fenced"))
                .query(c)?;
            let at = |i: usize| counters.get(i).copied().flatten().unwrap_or(0);
            st.completed = at(0);
            st.retries = at(1);
            st.redelivered = at(2);
            st.fenced = at(3);
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{ns}:hb:*"))
                    .arg("COUNT")
                    .arg(1000)
                    .query(c)?;
                st.workers += keys.len() as u64;
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            Ok(st)
        })
    }
}
