//! The distributed task pool: a master ([`RedisPool`]) submits named tasks,
//! workers on any number of machines ([`Worker`]) run them in local process
//! pools, and Redis carries everything between them.
//!
//! # Delivery
//!
//! * Each queue is one Redis Stream per priority level
//!   (`NS:q:QUEUE:0` high, `:1` normal, `:2` low), read by the consumer group
//!   `workers`. Each worker incarnation reads as a unique consumer and keeps
//!   a heartbeat key (`NS:hb:CONSUMER`) alive: refreshed every second, it
//!   expires 3 s after the worker dies.
//! * A reaper runs in every worker, on the worker's housekeeping thread
//!   (which also moves due delayed tasks every 100 ms), so the task loop
//!   never waits for it. One reaper at a time acts, under a lease key of
//!   750 ms, so a reaper that dies is soon replaced: every 250 ms it looks
//!   for consumers that hold entries and have no heartbeat, and hands each
//!   entry back to its stream with `attempt + 1`.
//!   A task is redelivered about 3 s after its worker was SIGKILLed,
//!   whatever the task's length, and a live task is never redelivered: there
//!   is no visibility timeout.
//! * Completion is fenced: one script stores the result and acknowledges the
//!   entry only if this consumer still owns it. A task may run more than
//!   once (at-least-once), but its result is committed exactly once.
//! * Submission is idempotent: each task has a client id (given, or made
//!   from the master's random id and a counter); submitting an id again does
//!   nothing.
//! * Failures (a panic, a crash of the process running the task, a
//!   per-task timeout) are retried with exponential backoff until
//!   `max_attempts`; the last failure is committed as the task's result and
//!   added to the dead-letter stream `NS:dead` with its error.
//! * Delayed tasks (and retries) wait in the sorted set `NS:delayed`.
//!
//! # Examples
//!
//! ```
//! use multiproc::redis::{RedisBackend, RedisPool, Registry, Worker};
//! use std::time::Duration;
//!
//! fn square(x: u64) -> u64 { x * x }
//!
//! fn registry() -> Registry {
//!     let mut r = Registry::new();
//!     r.register("square", square);
//!     r
//! }
//!
//! # let server = multiproc_testkit::RedisServer::start();
//! # let url = server.url();
//! let backend = RedisBackend::open(&url)?; // e.g. "redis://127.0.0.1:6379"
//! // A worker, here in a forked process; usually another binary or machine.
//! fn work(url: String) -> u64 {
//!     let backend = RedisBackend::open(&url).unwrap();
//!     Worker::builder(backend, registry())
//!         .processes(1)
//!         .stop_when_idle(Duration::from_millis(500))
//!         .run()
//!         .unwrap()
//!         .completed
//! }
//! let worker = multiproc_ipc::Process::spawn(work, url.clone())?;
//!
//! let pool = RedisPool::builder(backend).build()?;
//! let square = registry().register("square", square);
//! assert_eq!(pool.apply_async(&square, 7)?.get()?, 49);
//! assert_eq!(pool.map(&square, 1..=3)?, vec![1, 4, 9]);
//! assert_eq!(worker.join()?, 4);
//! # Ok::<(), multiproc::redis::Error>(())
//! ```

mod master;
mod registry;
mod scripts;
mod stats;
mod worker;

pub use master::{Priority, RedisPool, RedisPoolBuilder, TaskHandle, TaskOptions, Unordered};
pub use registry::{Registry, TaskFn};
pub use stats::{RedisPoolStats, RunningTask};
pub use worker::{Worker, WorkerBuilder, WorkerReport};

/// The consumer group every queue's streams are read by.
pub(crate) const GROUP: &str = "workers";

/// Priority levels (a stream each).
pub(crate) const LEVELS: usize = 3;

/// The streams of `queue` in namespace `ns`, highest priority first.
pub(crate) fn streams(ns: &str, queue: &str) -> Vec<String> {
    (0..LEVELS).map(|l| format!("{ns}:q:{queue}:{l}")).collect()
}

/// The server's version as (major, minor), from `INFO server`.
fn server_version(c: &mut redis::Connection) -> redis::RedisResult<(u32, u32)> {
    let info: String = redis::cmd("INFO").arg("server").query(c)?;
    let v = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("0.0");
    let mut parts = v.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    Ok((parts.next().unwrap_or(0), parts.next().unwrap_or(0)))
}

/// Checks the server (Redis 6.2 or later), then creates the group on each
/// stream (and the stream), if missing.
pub(crate) fn ensure_groups(
    backend: &crate::RedisBackend,
    streams: &[String],
) -> multiproc_ipc::Result<()> {
    let version = backend.run("INFO", server_version)?;
    if version < (6, 2) {
        return Err(multiproc_ipc::Error::new(
            multiproc_ipc::ErrorKind::InvalidArgument,
            format!(
                "the distributed pool needs Redis 6.2 or later; {} runs {}.{}",
                backend.url(),
                version.0,
                version.1
            ),
        ));
    }
    backend.run("XGROUP CREATE", |c| {
        for s in streams {
            let r: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(s)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query(c);
            match r {
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                other => other?,
            }
        }
        Ok(())
    })
}
