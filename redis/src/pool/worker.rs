//! The worker side: fetch entries, run them in a local pool, commit fenced.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multiproc_ipc::{Error, ErrorKind, Result};
use multiproc_pool::Pool;
use redis::{Connection, RedisResult, Value};

use super::registry::{encode_outcome, Done, Outcome, Registry};
use super::{ensure_groups, scripts, streams, GROUP};
use crate::conn::{random_hex, RedisBackend};

/// Heartbeat refresh period.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// Heartbeat time to live: a worker silent this long is dead.
const HEARTBEAT_TTL: Duration = Duration::from_secs(3);
/// How often the reaper looks for dead consumers.
const REAP_EVERY: Duration = Duration::from_millis(250);
/// The reaper's lease: a few ticks, so that a reaper that dies is replaced
/// quickly.
const REAPER_LEASE: Duration = Duration::from_millis(750);
/// How often due delayed tasks are moved to their streams.
const MOVE_EVERY: Duration = Duration::from_millis(100);
/// How often the shutdown counter is read.
const SHUTDOWN_EVERY: Duration = Duration::from_millis(200);
/// How often a worker looks for entries it owns but does not know about.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// How long such an entry must have been idle before it is handed back.
const ORPHAN_IDLE: Duration = Duration::from_secs(2);
/// Longest retry backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Builds and runs a [`Worker`].
#[derive(Debug)]
pub struct WorkerBuilder {
    backend: RedisBackend,
    registry: Registry,
    namespace: String,
    queue: String,
    processes: usize,
    prefetch: usize,
    grace: Duration,
    idle_stop: Option<Duration>,
}

/// What a worker did, returned when it stops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// The consumer name this incarnation read as.
    pub consumer: String,
    /// Results this worker committed (successes and final failures).
    pub completed: u64,
    /// Of those, final failures (dead letters).
    pub failed: u64,
    /// Failed attempts this worker queued again.
    pub retried: u64,
    /// Completions refused because the task had been handed to another
    /// worker meanwhile.
    pub fenced: u64,
    /// Tasks it handed back at shutdown.
    pub handed_back: u64,
    /// Tasks of dead workers its reaper handed back.
    pub reaped: u64,
}

/// The worker entry point of a distributed pool: the user's binary
/// registers its task functions and runs a worker; it runs tasks in a local
/// [`Pool`] (so a task that crashes its process is isolated) until told to
/// shut down ([`RedisPool::shutdown_workers`](crate::RedisPool::shutdown_workers))
/// or, if asked, until idle.
///
/// # Examples
///
/// See the [module documentation](crate::pool).
///
/// # Caveats
///
/// The local pool is created (it forks) before the worker starts its
/// heartbeat and housekeeping (reaper, delayed tasks) threads; do not start
/// threads of your own before calling [`WorkerBuilder::run`], or call
/// `multiproc::init()` first in `main`.
///
/// Every worker of a queue must register every task function submitted to
/// that queue: a worker that does not know a task's name fails it for good
/// (`InvalidArgument`, a dead letter). Use a queue per set of functions.
#[derive(Debug)]
pub struct Worker;

impl Worker {
    /// A builder for a worker on `backend` that runs the functions of
    /// `registry`.
    pub fn builder(backend: RedisBackend, registry: Registry) -> WorkerBuilder {
        WorkerBuilder {
            backend,
            registry,
            namespace: "mp".into(),
            queue: "default".into(),
            processes: 2,
            prefetch: 4,
            grace: Duration::from_secs(30),
            idle_stop: None,
        }
    }
}

/// One entry this worker holds.
struct Held {
    stream: usize,
    entry: String,
    id: String,
    f: String,
    n: u32,
    m: u32,
    reply: String,
    backoff_ms: u64,
}

/// What to do with a finished entry.
enum Finish {
    Commit {
        outcome: Vec<u8>,
        dead: bool,
        error: String,
    },
    Retry {
        delay_ms: u64,
    },
}

fn field_str(fields: &HashMap<String, Vec<u8>>, k: &str) -> String {
    fields
        .get(k)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

fn field_num(fields: &HashMap<String, Vec<u8>>, k: &str) -> u64 {
    field_str(fields, k).parse().unwrap_or(0)
}

fn bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b.clone(),
        Value::SimpleString(s) => s.clone().into_bytes(),
        Value::Int(i) => i.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

/// Parses an `XREADGROUP` reply: (stream, entry id, fields) triples.
fn parse_read(v: Value) -> Vec<(String, String, HashMap<String, Vec<u8>>)> {
    let mut out = Vec::new();
    let streams = match v {
        Value::Array(a) => a,
        Value::Map(m) => m
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        _ => return out,
    };
    for s in streams {
        let Value::Array(mut pair) = s else { continue };
        if pair.len() < 2 {
            continue;
        }
        let entries = pair.pop().unwrap_or(Value::Nil);
        let name = String::from_utf8_lossy(&bytes(&pair[0])).into_owned();
        let Value::Array(entries) = entries else {
            continue;
        };
        for e in entries {
            let Value::Array(e) = e else { continue };
            let (Some(id), Some(Value::Array(kv))) = (e.first(), e.get(1)) else {
                continue;
            };
            let mut fields = HashMap::new();
            for chunk in kv.chunks(2) {
                if let [k, v] = chunk {
                    fields.insert(String::from_utf8_lossy(&bytes(k)).into_owned(), bytes(v));
                }
            }
            out.push((
                name.clone(),
                String::from_utf8_lossy(&bytes(id)).into_owned(),
                fields,
            ));
        }
    }
    out
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "host".into())
}

impl WorkerBuilder {
    /// The key prefix shared with the master (default `"mp"`).
    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = ns.to_owned();
        self
    }

    /// The queue to read (default `"default"`).
    pub fn queue(mut self, queue: &str) -> Self {
        self.queue = queue.to_owned();
        self
    }

    /// Local pool processes (default 2).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = n.max(1);
        self
    }

    /// Tasks fetched beyond the running ones (default 4).
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n;
        self
    }

    /// How long a shutdown waits for running tasks before handing them
    /// back (default 30 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Stop once nothing has arrived and nothing has run for `idle`.
    pub fn stop_when_idle(mut self, idle: Duration) -> Self {
        self.idle_stop = Some(idle);
        self
    }

    /// Runs the worker until shutdown (or idle, if asked); returns what it
    /// did.
    ///
    /// # Errors
    ///
    /// As `Pool::build` if the local pool cannot start; `Io` if the server
    /// is unreachable for longer than the retry window, or if the heartbeat
    /// or housekeeping thread cannot be started; `InvalidArgument` if it
    /// runs a Redis older than 6.2.
    pub fn run(self) -> Result<WorkerReport> {
        // Fork the local pool before this worker starts any thread.
        let pool = Pool::builder().processes(self.processes).build()?;
        let consumer = format!("{}-{}-{}", hostname(), std::process::id(), random_hex(4));
        let streams = streams(&self.namespace, &self.queue);
        ensure_groups(&self.backend, &streams)?;
        let hb_key = format!("{}:hb:{consumer}", self.namespace);
        beat(&self.backend, &hb_key)?;
        // A worker without either thread would look dead to the others, or
        // never reap nor move delayed tasks: refuse to run.
        let heartbeat = Heartbeat::start(self.backend.clone(), hb_key.clone())?;
        let housekeeper = match Housekeeper::start(
            self.backend.clone(),
            self.namespace.clone(),
            consumer.clone(),
            streams.clone(),
        ) {
            Ok(h) => h,
            Err(e) => {
                heartbeat.stop();
                return Err(e.into());
            }
        };
        let (tx, rx) = mpsc::channel();
        let mut w = Running {
            b: &self,
            pool,
            consumer: consumer.clone(),
            streams,
            held: HashMap::new(),
            next_slot: 0,
            tx,
            rx,
            report: WorkerReport {
                consumer,
                ..WorkerReport::default()
            },
        };
        let r = w.run_loop();
        w.report.reaped += housekeeper.stop();
        heartbeat.stop();
        if let Err(e) = w.finish(&hb_key) {
            tracing::debug!(error = %e, "a redis pool worker could not remove its heartbeat key (it expires by itself)");
        }
        r.map(|()| w.report)
    }
}

/// Sets the heartbeat key `key` for [`HEARTBEAT_TTL`].
fn beat_cmd(key: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key)
        .arg(1)
        .arg("PX")
        .arg(HEARTBEAT_TTL.as_millis() as u64);
    cmd
}

fn beat(backend: &RedisBackend, key: &str) -> Result<()> {
    backend.run("heartbeat", |c| beat_cmd(key).query::<()>(c))
}

/// The heartbeat thread: refreshes the key every second.
struct Heartbeat {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    fn start(backend: RedisBackend, key: String) -> std::io::Result<Heartbeat> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("redis-heartbeat".into())
            .spawn(move || loop {
                match stopped.recv_timeout(HEARTBEAT_EVERY) {
                    Err(RecvTimeoutError::Timeout) => {
                        let beat = backend.run_once("heartbeat", |c| beat_cmd(&key).query::<()>(c));
                        if let Err(e) = beat {
                            tracing::warn!(
                                error = %e,
                                "a redis pool worker's heartbeat failed: if it stays down past \
                                 its TTL, the worker's tasks are handed to other workers"
                            );
                        }
                    }
                    _ => return,
                }
            })?;
        Ok(Heartbeat {
            stop,
            thread: Some(thread),
        })
    }

    fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Running<'a> {
    b: &'a WorkerBuilder,
    pool: Pool,
    consumer: String,
    streams: Vec<String>,
    held: HashMap<u64, Held>,
    next_slot: u64,
    tx: Sender<Done>,
    rx: Receiver<Done>,
    report: WorkerReport,
}

impl Running<'_> {
    fn ns(&self) -> &str {
        &self.b.namespace
    }

    fn shutdown_counter(&self) -> Result<i64> {
        let key = format!("{}:shutdown", self.ns());
        let v: Option<i64> = self
            .b
            .backend
            .run("GET", |c| redis::cmd("GET").arg(&key).query(c))?;
        Ok(v.unwrap_or(0))
    }

    fn run_loop(&mut self) -> Result<()> {
        let capacity = self.b.processes + self.b.prefetch;
        let baseline = self.shutdown_counter()?;
        let mut last_shutdown = Instant::now();
        let mut last_reconcile = Instant::now();
        let mut idle_since = Instant::now();
        loop {
            let mut done: Vec<Done> = self.rx.try_iter().collect();
            if !done.is_empty() {
                self.commit(std::mem::take(&mut done))?;
                idle_since = Instant::now();
            }
            let now = Instant::now();
            if now.duration_since(last_reconcile) >= RECONCILE_EVERY {
                last_reconcile = now;
                self.reconcile()?;
            }
            if now.duration_since(last_shutdown) >= SHUTDOWN_EVERY {
                last_shutdown = now;
                if self.shutdown_counter()? != baseline {
                    return self.drain();
                }
            }
            if let Some(idle) = self.b.idle_stop {
                if self.held.is_empty() && idle_since.elapsed() >= idle {
                    return Ok(());
                }
            }
            let want = capacity.saturating_sub(self.held.len());
            if want == 0 {
                self.wait_done(Duration::from_millis(50))?;
                continue;
            }
            let block = self.held.is_empty().then_some(Duration::from_millis(100));
            let got = self.read(want, block)?;
            if got > 0 {
                idle_since = Instant::now();
            } else if !self.held.is_empty() {
                self.wait_done(Duration::from_millis(2))?;
            }
        }
    }

    /// Waits up to `d` for one completion, then commits all there are.
    fn wait_done(&mut self, d: Duration) -> Result<()> {
        match self.rx.recv_timeout(d) {
            Ok(first) => {
                let mut done = vec![first];
                done.extend(self.rx.try_iter());
                self.commit(done)
            }
            Err(_) => Ok(()),
        }
    }

    /// Reads up to `want` entries (all levels at once, highest first) and
    /// starts them; returns how many.
    fn read(&mut self, want: usize, block: Option<Duration>) -> Result<usize> {
        let reply: Value = self.b.backend.run("XREADGROUP", |c| {
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(GROUP)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(want);
            if let Some(b) = block {
                cmd.arg("BLOCK").arg(b.as_millis() as u64);
            }
            cmd.arg("STREAMS").arg(&self.streams);
            for _ in &self.streams {
                cmd.arg(">");
            }
            cmd.query(c)
        })?;
        let mut entries = parse_read(reply);
        let level = |s: &str| self.streams.iter().position(|x| x == s).unwrap_or(0);
        entries.sort_by_key(|(s, _, _)| level(s));
        let n = entries.len();
        let mut failed_at_start = Vec::new();
        for (stream, entry, fields) in entries {
            let slot = self.next_slot;
            self.next_slot += 1;
            let held = Held {
                stream: level(&stream),
                entry,
                id: field_str(&fields, "id"),
                f: field_str(&fields, "f"),
                n: field_num(&fields, "n").max(1) as u32,
                m: field_num(&fields, "m").max(1) as u32,
                reply: field_str(&fields, "r"),
                backoff_ms: field_num(&fields, "b"),
            };
            let timeout = match field_num(&fields, "t") {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            };
            let args = fields.get("a").map(Vec::as_slice).unwrap_or(&[]);
            let started =
                self.b
                    .registry
                    .start(&held.f, &self.pool, args, timeout, slot, self.tx.clone());
            self.held.insert(slot, held);
            if let Err(e) = started {
                // Cannot run here at all (unknown name, bad argument): final.
                failed_at_start.push((slot, Err(e)));
            }
        }
        if !failed_at_start.is_empty() {
            self.commit(failed_at_start)?;
        }
        Ok(n)
    }

    fn finish_of(&self, h: &Held, outcome: Outcome, final_now: bool) -> Finish {
        match outcome {
            Ok(bytes) => Finish::Commit {
                outcome: encode_outcome(&Ok(bytes)),
                dead: false,
                error: String::new(),
            },
            Err(e) if !final_now && h.n < h.m => {
                let exp = h.n.saturating_sub(1).min(20);
                let delay = Duration::from_millis(h.backoff_ms)
                    .saturating_mul(1 << exp)
                    .min(MAX_BACKOFF);
                tracing::debug!(
                    task = %h.id,
                    function = %h.f,
                    attempt = h.n,
                    of = h.m,
                    delay_ms = delay.as_millis() as u64,
                    error = %e,
                    "a redis pool task failed and will be retried"
                );
                Finish::Retry {
                    delay_ms: (delay.as_millis() as u64).max(1),
                }
            }
            Err(e) => {
                tracing::warn!(
                    task = %h.id,
                    function = %h.f,
                    attempts = h.n,
                    error = %e,
                    "a redis pool task failed for the last time: dead-lettered"
                );
                Finish::Commit {
                    error: e.to_string(),
                    outcome: encode_outcome(&Err(e)),
                    dead: true,
                }
            }
        }
    }

    /// Commits (or queues again) finished entries, fenced, in one pipeline.
    fn commit(&mut self, done: Vec<Done>) -> Result<()> {
        let mut work = Vec::new();
        for (slot, outcome) in done {
            let Some(h) = self.held.remove(&slot) else {
                continue;
            };
            // A failure to start (InvalidArgument, Serialization) is final.
            let final_now = matches!(
                &outcome,
                Err(e) if matches!(e.kind(), ErrorKind::InvalidArgument | ErrorKind::Serialization)
            );
            let f = self.finish_of(&h, outcome, final_now);
            work.push((h, f));
        }
        if work.is_empty() {
            return Ok(());
        }
        let ns = self.b.namespace.clone();
        let replies: Vec<i64> = self
            .b
            .backend
            .run_scripts("complete", &scripts::all(), |c| {
                let mut p = redis::pipe();
                let mut commits = redis::cmd("EVALSHA");
                commits
                    .arg(scripts::complete().get_hash())
                    .arg(0)
                    .arg(&ns)
                    .arg(GROUP)
                    .arg(&self.consumer);
                let mut any_commit = false;
                for (h, f) in &work {
                    match f {
                        Finish::Commit {
                            outcome,
                            dead,
                            error,
                        } => {
                            any_commit = true;
                            commits
                                .arg(&self.streams[h.stream])
                                .arg(&h.entry)
                                .arg(&h.id)
                                .arg(outcome.as_slice())
                                .arg(&h.reply)
                                .arg(if *dead { "1" } else { "0" })
                                .arg(&h.f)
                                .arg(h.n)
                                .arg(error);
                        }
                        Finish::Retry { delay_ms } => {
                            p.cmd("EVALSHA")
                                .arg(scripts::requeue().get_hash())
                                .arg(1)
                                .arg(&self.streams[h.stream])
                                .arg(&ns)
                                .arg(GROUP)
                                .arg(&self.consumer)
                                .arg(&h.entry)
                                .arg(1)
                                .arg(*delay_ms)
                                .arg("")
                                .arg("")
                                .arg("retries");
                        }
                    }
                }
                // Replies in the order of `work`: the commits' codes first
                // (one array), then one code per retry.
                let (codes, retries): (Vec<i64>, Vec<i64>) = if any_commit {
                    p.add_command(commits);
                    let mut all: Vec<Value> = p.query(c)?;
                    let codes = match all.pop() {
                        Some(Value::Array(a)) => a
                            .iter()
                            .map(|v| if let Value::Int(i) = v { *i } else { 0 })
                            .collect(),
                        _ => Vec::new(),
                    };
                    let retries = all
                        .iter()
                        .map(|v| if let Value::Int(i) = v { *i } else { 0 })
                        .collect();
                    (codes, retries)
                } else {
                    (Vec::new(), p.query(c)?)
                };
                let (mut codes, mut retries) = (codes.into_iter(), retries.into_iter());
                Ok(work
                    .iter()
                    .map(|(_, f)| match f {
                        Finish::Commit { .. } => codes.next().unwrap_or(0),
                        Finish::Retry { .. } => retries.next().unwrap_or(0),
                    })
                    .collect())
            })?;
        for ((_, f), r) in work.iter().zip(replies) {
            match (f, r) {
                (_, 0) => self.report.fenced += 1,
                (Finish::Commit { dead, .. }, 1) => {
                    self.report.completed += 1;
                    if *dead {
                        self.report.failed += 1;
                    }
                }
                (Finish::Retry { .. }, 1) => self.report.retried += 1,
                _ => {}
            }
        }
        Ok(())
    }

    /// Hands back entries this consumer owns on the server but does not
    /// hold: after a server restart that lost its last writes (a commit, or
    /// the reply to a read), such an entry would otherwise stay pending for
    /// a live worker forever.
    fn reconcile(&mut self) -> Result<()> {
        let ns = self.ns().to_owned();
        let me = self.consumer.clone();
        let streams = self.streams.clone();
        let known: std::collections::HashSet<String> =
            self.held.values().map(|h| h.entry.clone()).collect();
        let n = self
            .b
            .backend
            .run_scripts("reconcile", &scripts::all(), |c| {
                let mut n = 0;
                for s in &streams {
                    let pending: Value = redis::cmd("XPENDING")
                        .arg(s)
                        .arg(GROUP)
                        .arg("IDLE")
                        .arg(ORPHAN_IDLE.as_millis() as u64)
                        .arg("-")
                        .arg("+")
                        .arg(100)
                        .arg(&me)
                        .query(c)?;
                    let Value::Array(list) = pending else {
                        continue;
                    };
                    let orphans: Vec<String> = list
                        .iter()
                        .filter_map(|e| match e {
                            Value::Array(f) => f
                                .first()
                                .map(|id| String::from_utf8_lossy(&bytes(id)).into_owned()),
                            _ => None,
                        })
                        .filter(|id| !known.contains(id))
                        .collect();
                    n += requeue(c, &ns, s, &me, &orphans, false)?;
                }
                Ok(n)
            })?;
        self.report.handed_back += n;
        Ok(())
    }

    /// Graceful shutdown: no more fetching; wait for the held tasks up to
    /// the grace period, then hand back what is left.
    fn drain(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.b.grace;
        while !self.held.is_empty() && Instant::now() < deadline {
            self.wait_done(Duration::from_millis(50))?;
        }
        if !self.held.is_empty() {
            let ns = self.ns().to_owned();
            let me = self.consumer.clone();
            let streams = self.streams.clone();
            let n = self
                .b
                .backend
                .run_scripts("hand back", &scripts::all(), |c| {
                    let mut n = 0;
                    for s in &streams {
                        n += hand_back(c, &ns, s, &me, false)?;
                    }
                    Ok(n)
                })?;
            self.report.handed_back += n;
            self.held.clear();
        }
        Ok(())
    }

    /// After the loop: stop the pool, drop the heartbeat, leave the group.
    fn finish(&mut self, hb_key: &str) -> Result<()> {
        if self.held.is_empty() {
            self.pool.close();
            let _ = self.pool.join();
        } else {
            self.pool.terminate();
        }
        let me = self.consumer.clone();
        let streams = self.streams.clone();
        // Leaves the group only where it holds nothing: entries it still
        // holds (a failed hand-back) go to the reaper once the heartbeat
        // is gone.
        self.b.backend.run_scripts("leave", &scripts::all(), |c| {
            redis::cmd("DEL").arg(hb_key).query::<i64>(c)?;
            for s in &streams {
                scripts::forget()
                    .key(s)
                    .arg(GROUP)
                    .arg(&me)
                    .invoke::<i64>(c)?;
            }
            Ok(())
        })
    }
}

/// Moves due delayed tasks (and retries) to their streams.
fn move_due(backend: &RedisBackend, ns: &str) -> Result<()> {
    backend
        .run_scripts("move delayed", &scripts::all(), |c| {
            scripts::move_due().arg(ns).arg(100).invoke::<i64>(c)
        })
        .map(drop)
}

/// If `me` holds (or takes) the reaper lease: hands back the entries of
/// consumers without a heartbeat, and forgets idle dead consumers. Returns
/// how many entries it handed back.
fn reap(backend: &RedisBackend, ns: &str, me: &str, streams: &[String]) -> Result<u64> {
    let lease_key = format!("{ns}:reaper");
    let mine: i64 = backend.run_scripts("reaper lease", &scripts::all(), |c| {
        scripts::lease()
            .key(&lease_key)
            .arg(me)
            .arg(REAPER_LEASE.as_millis() as u64)
            .invoke(c)
    })?;
    if mine == 0 {
        return Ok(0);
    }
    backend.run_scripts("reap", &scripts::all(), |c| {
        let mut reaped = 0u64;
        for s in streams {
            for (name, pending, idle_ms) in consumers(c, s)? {
                if name == me {
                    continue;
                }
                let alive: bool = redis::cmd("EXISTS")
                    .arg(format!("{ns}:hb:{name}"))
                    .query(c)?;
                if alive {
                    continue;
                }
                if pending == 0 {
                    if idle_ms > 10_000 {
                        scripts::forget()
                            .key(s)
                            .arg(GROUP)
                            .arg(&name)
                            .invoke::<i64>(c)?;
                    }
                    continue;
                }
                reaped += hand_back(c, ns, s, &name, true)?;
            }
        }
        Ok(reaped)
    })
}

/// The housekeeping thread: moves due delayed tasks every 100 ms and reaps
/// dead workers every 250 ms, on its own connection, so that the task loop
/// never waits for either. Errors are retried at the next tick.
struct Housekeeper {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
    reaped: Arc<AtomicU64>,
}

impl Housekeeper {
    fn start(
        backend: RedisBackend,
        ns: String,
        me: String,
        streams: Vec<String>,
    ) -> std::io::Result<Housekeeper> {
        let (stop, stopped) = mpsc::channel::<()>();
        let reaped = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&reaped);
        let thread = std::thread::Builder::new()
            .name("redis-housekeeper".into())
            .spawn(move || {
                let mut last_reap = Instant::now() - REAP_EVERY;
                loop {
                    match stopped.recv_timeout(MOVE_EVERY) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    if let Err(e) = move_due(&backend, &ns) {
                        tracing::warn!(error = %e, "a redis pool worker cannot move due delayed tasks");
                    }
                    if last_reap.elapsed() >= REAP_EVERY {
                        last_reap = Instant::now();
                        match reap(&backend, &ns, &me, &streams) {
                            Ok(0) => {}
                            Ok(n) => {
                                tracing::info!(
                                    tasks = n,
                                    "a redis pool worker handed back the tasks of dead workers"
                                );
                                count.fetch_add(n, Ordering::Relaxed);
                            }
                            Err(e) => tracing::warn!(
                                error = %e,
                                "a redis pool worker cannot look for the tasks of dead workers"
                            ),
                        }
                    }
                }
            })?;
        Ok(Housekeeper {
            stop,
            thread: Some(thread),
            reaped,
        })
    }

    /// Stops the thread; how many entries it handed back.
    fn stop(mut self) -> u64 {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.reaped.load(Ordering::Relaxed)
    }
}

/// (name, pending, idle ms) of the group's consumers on `stream`.
fn consumers(c: &mut Connection, stream: &str) -> RedisResult<Vec<(String, u64, u64)>> {
    let v: Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(GROUP)
        .query(c)?;
    let mut out = Vec::new();
    let Value::Array(list) = v else {
        return Ok(out);
    };
    for item in list {
        let pairs: Vec<(Value, Value)> = match item {
            Value::Array(kv) => {
                let mut it = kv.into_iter();
                let mut pairs = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                pairs
            }
            Value::Map(m) => m,
            _ => continue,
        };
        let (mut name, mut pending, mut idle) = (String::new(), 0u64, 0u64);
        for (k, v) in pairs {
            let num = || {
                String::from_utf8_lossy(&bytes(&v))
                    .parse::<u64>()
                    .unwrap_or(0)
            };
            match bytes(&k).as_slice() {
                b"name" => name = String::from_utf8_lossy(&bytes(&v)).into_owned(),
                b"pending" => pending = num(),
                b"idle" => idle = num(),
                _ => {}
            }
        }
        out.push((name, pending, idle));
    }
    Ok(out)
}

/// Queues again the entries `ids` that `consumer` holds on `stream` (fenced):
/// with attempt + 1 for a dead worker (`dead`), unchanged otherwise. Returns
/// how many it queued again (or dead-lettered).
fn requeue(
    c: &mut Connection,
    ns: &str,
    stream: &str,
    consumer: &str,
    ids: &[String],
    dead: bool,
) -> RedisResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let lost = Error::new(
        ErrorKind::WorkerLost,
        format!("worker {consumer} died while running the task, and no attempt was left"),
    );
    let final_outcome = encode_outcome(&Err(lost.clone()));
    let mut p = redis::pipe();
    for id in ids {
        p.cmd("EVALSHA")
            .arg(scripts::requeue().get_hash())
            .arg(1)
            .arg(stream)
            .arg(ns)
            .arg(GROUP)
            .arg(consumer)
            .arg(id)
            .arg(if dead { 1 } else { 0 })
            .arg(0)
            .arg(final_outcome.as_slice())
            .arg(lost.to_string())
            .arg(if dead { "redelivered" } else { "" });
    }
    let r: Vec<i64> = p.query(c)?;
    Ok(r.iter().filter(|&&x| x > 0).count() as u64)
}

/// Queues again every entry `consumer` holds on `stream`: with attempt + 1
/// for a dead worker (`dead`), unchanged for a graceful hand-back.
fn hand_back(
    c: &mut Connection,
    ns: &str,
    stream: &str,
    consumer: &str,
    dead: bool,
) -> RedisResult<u64> {
    let mut n = 0;
    loop {
        let pending: Value = redis::cmd("XPENDING")
            .arg(stream)
            .arg(GROUP)
            .arg("-")
            .arg("+")
            .arg(100)
            .arg(consumer)
            .query(c)?;
        let Value::Array(list) = pending else {
            return Ok(n);
        };
        if list.is_empty() {
            return Ok(n);
        }
        let ids: Vec<String> = list
            .iter()
            .filter_map(|e| match e {
                Value::Array(f) => f
                    .first()
                    .map(|id| String::from_utf8_lossy(&bytes(id)).into_owned()),
                _ => None,
            })
            .collect();
        n += requeue(c, ns, stream, consumer, &ids, dead)?;
        if ids.len() < 100 {
            return Ok(n);
        }
    }
}

impl fmt::Debug for Running<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("consumer", &self.consumer)
            .field("held", &self.held.len())
            .finish()
    }
}
