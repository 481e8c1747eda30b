//! The delivery proofs of the Redis tier at full size (Rust only: no Python
//! counterpart): `redis_zero_loss`, `redis_redelivery`,
//! `redis_no_false_redelivery`, `redis_restart_aof` and
//! `redis_lock_contention`. The same proofs run at reduced sizes as the
//! tests of `redis/tests/proofs.rs` and `redis/tests/pool.rs`.
//!
//! Every child is held by a [`Kids`] guard, so that an error path SIGKILLs
//! and reaps it; the server is dropped (killed) with the scenario.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use multiproc::{
    ErrorKind, RedisBackend, RedisPool, Registry, SharedDict, SharedList, SharedQueue, SharedValue,
    TaskFn, TaskHandle, TaskOptions,
};
use multiproc_testkit::{RedisOptions, RedisServer};

use super::kids::Kids;
use super::redis::{check, percentile, pool, run_worker, server, teardown, wait_for_workers};
use crate::record::{round, Record};
use crate::registry::{BenchError, Params};

/// How long `redis_zero_loss` may take before it gives up.
const ZERO_LOSS_LIMIT: Duration = Duration::from_secs(900);

/// A task: sleeps `ms`, returns it.
fn work(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// A task: puts `tag` in the queue `key` (its start), sleeps, returns `tag`.
fn announced((url, key, sleep_ms, tag): (String, String, u64, u64)) -> u64 {
    if let Ok(b) = RedisBackend::open(&url) {
        // A failed put shows as a start that never comes.
        let _ = b.queue::<u64>(&key).put(tag);
    }
    std::thread::sleep(Duration::from_millis(sleep_ms));
    tag
}

/// Registers the task functions of the proofs (the workers of every Redis
/// scenario serve them: [`super::redis::run_worker`]).
pub(super) fn register_tasks(r: &mut Registry) {
    r.register("work", work);
    r.register("announced", announced);
}

/// Zero loss: `tasks` tasks of `task_ms` on `workers` workers (one local
/// process each), one worker SIGKILLed every `kill_every_ms` and replaced,
/// until every task is completed; each must have exactly one committed
/// result.
pub fn zero_loss(params: &Params) -> Result<Record, BenchError> {
    let n = params.get("tasks")?;
    let ms = params.get("task_ms")?;
    let workers_n = params.count("workers")?;
    let every = Duration::from_millis(params.get("kill_every_ms")?);
    let (url, _server) = server()?;
    let ns = "bench_zl";
    let pool = pool(&url, ns, 50)?;
    let args = || (url.clone(), ns.to_owned(), 1, 4, 10_000);
    let task = TaskFn::<u64, u64>::named("work");
    let start = Instant::now();
    let handles = pool.submit_many(&task, (0..n).map(|_| ms))?;
    let mut workers = Kids::new();
    for _ in 0..workers_n {
        workers.spawn(run_worker, args())?;
    }
    let mut kills = 0u64;
    let mut last_kill = Instant::now();
    let mut done = pool.stats()?.completed >= n;
    while !done && start.elapsed() < ZERO_LOSS_LIMIT {
        std::thread::sleep(Duration::from_millis(20));
        if last_kill.elapsed() >= every {
            // The oldest worker goes: each lives about workers × every.
            workers.kill_at(0)?;
            workers.spawn(run_worker, args())?;
            kills += 1;
            last_kill = Instant::now();
        }
        done = pool.stats()?.completed >= n;
    }
    let seconds = start.elapsed().as_secs_f64();
    // Every handle's result: a result comes only from the committed ones.
    let wait = Duration::from_millis(if done { 30_000 } else { 10 });
    let (mut with_result, mut wrong) = (0u64, 0u64);
    for h in &handles {
        match h.get_timeout(wait) {
            Ok(v) if v == ms => with_result += 1,
            Ok(_) => wrong += 1,
            Err(_) => {}
        }
    }
    let s = pool.stats()?;
    let committed = RedisBackend::open(&url)?
        .dict::<String, Vec<u8>>(&format!("{ns}:results"))
        .len()? as u64;
    teardown(&pool, workers)?;
    let lost = n - with_result - wrong;
    check(
        wrong == 0,
        &format!("{wrong} tasks returned a wrong result"),
    )?;
    check(
        committed == n && lost == 0,
        &format!("{committed} results committed for {n} tasks, {lost} tasks lost"),
    )?;
    Ok(Record::timed("redis_zero_loss", n, seconds)
        .with("transport", "redis")
        .with("workers", workers_n)
        .with("task_ms", ms)
        .with("kills", kills)
        .with("redelivered", s.redelivered)
        .with("fenced", s.fenced)
        .with("dead_letters", s.dead_letters)
        .with("committed", committed)
        .with("lost", lost))
}

/// Redelivery: `victims` workers each hold a long task and are SIGKILLed
/// 170 ms apart; the time from each kill to its task starting again on the
/// rescuer.
pub fn redelivery(params: &Params) -> Result<Record, BenchError> {
    let victims_n = params.count("victims")?;
    let task_ms = params.get("task_ms")?;
    let (url, _server) = server()?;
    let ns = "bench_rd";
    let pool = pool(&url, ns, 3)?;
    let key = format!("{ns}:started");
    let started = RedisBackend::open(&url)?.queue::<u64>(&key);
    // Eager workers: no prefetch, tasks handed back at once at shutdown.
    let eager = |processes| (url.clone(), ns.to_owned(), processes, 0, 0);
    let mut victims = Kids::new();
    for _ in 0..victims_n {
        victims.spawn(run_worker, eager(1))?;
    }
    let task = TaskFn::<(String, String, u64, u64), u64>::named("announced");
    let handles = (0..victims_n as u64)
        .map(|tag| pool.apply_async(&task, (url.clone(), key.clone(), task_ms, tag)))
        .collect::<multiproc::Result<Vec<_>>>()?;
    for _ in 0..victims_n {
        started.get_timeout(Duration::from_secs(20))?;
    }
    // Which worker process holds which task.
    let holder: HashMap<String, i32> = pool
        .running()?
        .into_iter()
        .filter_map(|t| Some((t.id.clone(), t.worker_pid()?)))
        .collect();
    check(holder.len() == victims_n, "a task has no known holder")?;
    // The rescuer is up (and reaping) before the kills.
    let mut rescuer = Kids::new();
    rescuer.spawn(run_worker, eager(victims_n))?;
    wait_for_workers(&pool, victims_n + 1)?;
    // Staggered kills, so that the victims' heartbeat phases differ.
    let mut killed_at: HashMap<i32, Instant> = HashMap::new();
    let first_kill = Instant::now();
    for pid in holder.values() {
        victims.kill_pid(*pid)?;
        killed_at.insert(*pid, Instant::now());
        std::thread::sleep(Duration::from_millis(170));
    }
    let mut delays = Vec::with_capacity(victims_n);
    for _ in 0..victims_n {
        let tag = started.get_timeout(Duration::from_secs(20))?;
        let at = handles
            .get(tag as usize)
            .and_then(|h| holder.get(h.id()))
            .and_then(|pid| killed_at.get(pid))
            .ok_or_else(|| BenchError(format!("task {tag} started, unknown")))?;
        delays.push(at.elapsed().as_secs_f64());
    }
    let seconds = first_kill.elapsed().as_secs_f64();
    let redelivered = pool.stats()?.redelivered;
    // The rescuer has no grace: it hands the tasks back and exits.
    teardown(&pool, rescuer)?;
    drop(victims);
    delays.sort_by(f64::total_cmp);
    Ok(Record::timed("redis_redelivery", victims_n as u64, seconds)
        .with("ops_per_sec", serde_json::Value::Null)
        .with("transport", "redis")
        .with("p50_s", round(percentile(&delays, 0.5), 3))
        .with("p99_s", round(percentile(&delays, 0.99), 3))
        .with("max_s", round(percentile(&delays, 1.0), 3))
        .with("redelivered", redelivered))
}

/// No false redelivery: one `task_ms` task, longer than the heartbeat's
/// 3 s time to live, on one of two live workers runs exactly once.
pub fn no_false_redelivery(params: &Params) -> Result<Record, BenchError> {
    let task_ms = params.get("task_ms")?;
    let (url, _server) = server()?;
    let ns = "bench_nfr";
    let pool = pool(&url, ns, 3)?;
    let key = format!("{ns}:runs");
    let mut workers = Kids::new();
    for _ in 0..2 {
        workers.spawn(run_worker, (url.clone(), ns.to_owned(), 1, 0, 10_000))?;
    }
    wait_for_workers(&pool, 2)?;
    let task = TaskFn::<(String, String, u64, u64), u64>::named("announced");
    let start = Instant::now();
    let h = pool.apply_async(&task, (url.clone(), key.clone(), task_ms, 1))?;
    let got = h.get_timeout(Duration::from_millis(task_ms) + Duration::from_secs(30))?;
    let seconds = start.elapsed().as_secs_f64();
    check(got == 1, "the task returned a wrong result")?;
    let runs = RedisBackend::open(&url)?.queue::<u64>(&key).qsize()?;
    let redelivered = pool.stats()?.redelivered;
    teardown(&pool, workers)?;
    check(runs == 1, &format!("the task ran {runs} times"))?;
    Ok(Record::timed("redis_no_false_redelivery", 1, seconds)
        .with("ops_per_sec", serde_json::Value::Null)
        .with("transport", "redis")
        .with("task_ms", task_ms)
        .with("runs", runs)
        .with("redelivered", redelivered))
}

/// What the submitter thread of `redis_restart_aof` collected: when Redis
/// took each task, and its handle.
type Submitted = Arc<Mutex<Vec<(Instant, TaskHandle<u64>)>>>;

/// Submits one task every 5 ms (ids `t0`, `t1`...) until `stop`.
fn submit_until(pool: RedisPool, stop: Arc<AtomicBool>, submitted: Submitted) {
    let task = TaskFn::<u64, u64>::named("work");
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let options = TaskOptions::new().id(format!("t{i}"));
        if let Ok(h) = pool.apply_async_with(&task, 1, options) {
            submissions(&submitted).push((Instant::now(), h));
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The submissions so far (a panicked holder does not poison them).
fn submissions(
    submitted: &Submitted,
) -> std::sync::MutexGuard<'_, Vec<(Instant, TaskHandle<u64>)>> {
    submitted.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` on `server`, turning its panic (the testkit's way to fail)
/// into a [`BenchError`].
fn on_server(server: &mut RedisServer, f: fn(&mut RedisServer)) -> Result<(), BenchError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(server)))
        .map_err(|_| BenchError("redis-server did not come back".to_owned()))
}

/// A crash and restart with AOF: tasks submitted every 5 ms for
/// `submit_ms`, then Redis is SIGKILLed and restarted on the same
/// directory; no task older than a second before the crash may be lost.
pub fn restart_aof(params: &Params) -> Result<Record, BenchError> {
    let submit_ms = params.get("submit_ms")?;
    let mut server =
        std::panic::catch_unwind(|| RedisServer::start_with(RedisOptions { aof: true }))
            .map_err(|_| BenchError(multiproc_testkit::redis::INSTALL_HINT.to_owned()))?;
    let url = server.url();
    let ns = "bench_aof";
    let pool = pool(&url, ns, 3)?;
    let mut workers = Kids::new();
    for _ in 0..2 {
        workers.spawn(run_worker, (url.clone(), ns.to_owned(), 2, 4, 10_000))?;
    }
    wait_for_workers(&pool, 2)?;
    let stop_flag = Arc::new(AtomicBool::new(false));
    let submitted: Submitted = Arc::new(Mutex::new(Vec::new()));
    let submitter = {
        let (pool, stop_flag, submitted) = (pool.clone(), stop_flag.clone(), submitted.clone());
        std::thread::spawn(move || submit_until(pool, stop_flag, submitted))
    };
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(submit_ms));
    let crash = Instant::now();
    server.kill();
    std::thread::sleep(Duration::from_millis(300));
    let restarted = on_server(&mut server, RedisServer::restart);
    let back = Instant::now();
    // A client reconnects on its own: the next submission after the restart.
    let count_at_restart = submissions(&submitted).len();
    let mut reconnect = None;
    while restarted.is_ok() && reconnect.is_none() && back.elapsed() < Duration::from_secs(10) {
        reconnect = submissions(&submitted)
            .iter()
            .skip(count_at_restart)
            .find(|(t, _)| *t > back)
            .map(|(t, _)| t.duration_since(back));
        std::thread::sleep(Duration::from_millis(5));
    }
    if reconnect.is_some() {
        std::thread::sleep(Duration::from_millis(1500));
    }
    stop_flag.store(true, Ordering::Relaxed);
    let joined = submitter.join();
    let seconds = start.elapsed().as_secs_f64();
    restarted?;
    check(joined.is_ok(), "the submitter thread panicked")?;
    let reconnect =
        reconnect.ok_or_else(|| BenchError("no submission after the restart".into()))?;
    let handles = std::mem::take(&mut *submissions(&submitted));
    // Let the workers finish what survived (orphans are handed back after 2 s).
    let drained = Instant::now();
    while drained.elapsed() < Duration::from_secs(20) {
        let s = pool.stats()?;
        if s.queued == 0 && s.running == 0 && s.delayed == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut old, mut old_lost, mut recent_lost) = (0u64, 0u64, 0u64);
    for (t, h) in &handles {
        let old_enough = *t + Duration::from_secs(1) < crash;
        let wait = Duration::from_millis(if old_enough { 10_000 } else { 10 });
        match h.get_timeout(wait) {
            Ok(v) => check(v == 1, "a task returned a wrong result")?,
            Err(e) if !old_enough && e.kind() == ErrorKind::Timeout => recent_lost += 1,
            Err(e) if !old_enough => return Err(BenchError(format!("task {}: {e}", h.id()))),
            Err(_) => old_lost += 1,
        }
        old += u64::from(old_enough);
    }
    teardown(&pool, workers)?;
    check(old > 0, "no task was submitted a second before the crash")?;
    check(
        old_lost == 0,
        &format!("{old_lost} of {old} tasks older than 1 s before the crash are lost"),
    )?;
    Ok(
        Record::timed("redis_restart_aof", handles.len() as u64, seconds)
            .with("ops_per_sec", serde_json::Value::Null)
            .with("transport", "redis")
            .with("reconnect_ms", round(reconnect.as_secs_f64() * 1e3, 1))
            .with("tasks_before_crash", old)
            .with("lost_older_than_1s", old_lost)
            .with("recent_lost", recent_lost),
    )
}

/// `n` acquisitions of the lock `NS:lk`: counts the times somebody else was
/// inside too, and appends each fence to `NS:fences` while holding the
/// lock. `None` on a Redis error.
fn contend((url, ns, n): (String, String, u64)) -> Option<u64> {
    let run = || -> multiproc::Result<u64> {
        let b = RedisBackend::open(&url)?;
        let lock = b.lock(&format!("{ns}:lk"));
        let inside = b.value(&format!("{ns}:inside"), 0i64)?;
        let fences = b.list::<u64>(&format!("{ns}:fences"));
        let mut overlaps = 0;
        for _ in 0..n {
            let g = lock.lock_fenced()?;
            if inside.update(|x| x + 1)? != 1 {
                overlaps += 1;
            }
            fences.push(&g.fence())?;
            inside.update(|x| x - 1)?;
            g.unlock()?;
        }
        Ok(overlaps)
    };
    run().ok()
}

/// Lock contention: `processes` processes take one lock
/// `acquisitions_per_process` times each; nobody may be inside together,
/// and the fences must strictly increase.
pub fn lock_contention(params: &Params) -> Result<Record, BenchError> {
    let processes = params.count("processes")?;
    let each = params.get("acquisitions_per_process")?;
    let (url, _server) = server()?;
    let ns = "bench_lock";
    let b = RedisBackend::open(&url)?;
    let fences = b.list::<u64>(&format!("{ns}:fences"));
    let inside = b.value(&format!("{ns}:inside"), 0i64)?;
    fences.clear()?;
    inside.set(&0)?;
    let start = Instant::now();
    let mut kids = Kids::new();
    for _ in 0..processes {
        kids.spawn(contend, (url.clone(), ns.to_owned(), each))?;
    }
    let results = kids.join_all()?;
    let seconds = start.elapsed().as_secs_f64();
    let overlaps = results
        .iter()
        .try_fold(0u64, |sum, r| r.map(|o| sum + o))
        .ok_or_else(|| BenchError("a contender lost the server".into()))?;
    let fences = fences.to_vec()?;
    b.list::<u64>(&format!("{ns}:fences")).clear()?;
    let total = processes as u64 * each;
    let increasing = fences.windows(2).all(|w| w[0] < w[1]);
    check(
        fences.len() as u64 == total,
        &format!("{} fences for {total} acquisitions", fences.len()),
    )?;
    check(overlaps == 0, &format!("{overlaps} overlapping holds"))?;
    check(increasing, "fences not strictly increasing")?;
    Ok(Record::timed("redis_lock_contention", total, seconds)
        .with("transport", "redis")
        .with("processes", processes)
        .with("overlaps", overlaps)
        .with("fences_increasing", increasing))
}
