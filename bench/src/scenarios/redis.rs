//! The Redis scenarios (Rust only; their Python counterparts run the same
//! shape on a `BaseManager` for reference): `redis_pool_throughput`,
//! `redis_pool_latency`, `redis_queue_throughput` and
//! `remote_manager_queue_redis`.
//!
//! Each starts its own `redis-server` on a free loopback port (the testkit's
//! helper), or uses the one at `MULTIPROC_BENCH_REDIS` (a `redis://` URL).

use std::time::{Duration, Instant};

use multiproc::{RedisBackend, RedisPool, Registry, SharedQueue, TaskFn, TaskOptions, Worker};
use multiproc_testkit::RedisServer;

use super::kids::Kids;
use crate::record::{round, Record};
use crate::registry::{BenchError, Params};

/// `Ok` when `ok`, else a [`BenchError`] saying `what`.
pub(crate) fn check(ok: bool, what: &str) -> Result<(), BenchError> {
    if ok {
        Ok(())
    } else {
        Err(BenchError(what.to_owned()))
    }
}

fn noop(x: u64) -> u64 {
    x
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("noop", noop);
    super::redis_proofs::register_tasks(&mut r);
    r
}

fn noop_task() -> TaskFn<u64, u64> {
    TaskFn::named("noop")
}

/// The server: ours (kept alive by the returned guard) or the given one.
pub(crate) fn server() -> Result<(String, Option<RedisServer>), BenchError> {
    if let Ok(url) = std::env::var("MULTIPROC_BENCH_REDIS") {
        return Ok((url, None));
    }
    let s = std::panic::catch_unwind(RedisServer::start)
        .map_err(|_| BenchError(multiproc_testkit::redis::INSTALL_HINT.to_owned()))?;
    Ok((s.url(), Some(s)))
}

/// A worker's arguments: url, namespace, local processes, prefetch and
/// shutdown grace (ms).
pub(crate) type WorkerArgs = (String, String, usize, usize, u64);

/// A worker process serving every scenario's tasks; runs until shutdown;
/// the tasks it committed.
pub(crate) fn run_worker((url, ns, processes, prefetch, grace_ms): WorkerArgs) -> u64 {
    let Ok(b) = RedisBackend::open(&url) else {
        return 0;
    };
    Worker::builder(b, registry())
        .namespace(&ns)
        .processes(processes)
        .prefetch(prefetch)
        .grace(Duration::from_millis(grace_ms))
        .run()
        .map_or(0, |r| r.completed)
}

/// A master on namespace `ns` (emptied first) whose tasks get
/// `max_attempts` attempts (the pool's default is 3).
pub(crate) fn pool(url: &str, ns: &str, max_attempts: u32) -> Result<RedisPool, BenchError> {
    let pool = RedisPool::builder(RedisBackend::open(url)?)
        .namespace(ns)
        .max_attempts(max_attempts)
        .build()?;
    pool.purge()?;
    Ok(pool)
}

/// Waits (at most 20 s) until `n` workers beat.
pub(crate) fn wait_for_workers(pool: &RedisPool, n: usize) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pool.stats()?.workers < n as u64 {
        check(Instant::now() < deadline, "the workers did not start")?;
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Starts `n` workers and a master on namespace `ns`.
fn setup(
    url: &str,
    ns: &str,
    workers: usize,
    processes: usize,
    prefetch: usize,
) -> Result<(RedisPool, Kids<u64>), BenchError> {
    let pool = pool(url, ns, 3)?;
    // Killed and reaped on an early return.
    let mut ws = Kids::new();
    for _ in 0..workers {
        ws.spawn(
            run_worker,
            (url.to_owned(), ns.to_owned(), processes, prefetch, 5_000),
        )?;
    }
    wait_for_workers(&pool, workers)?;
    Ok((pool, ws))
}

/// Stops the workers, joins them and empties the namespace; the tasks
/// they completed in all.
pub(crate) fn teardown(pool: &RedisPool, ws: Kids<u64>) -> Result<u64, BenchError> {
    pool.shutdown_workers()?;
    let done = ws.join_all()?.into_iter().sum();
    pool.purge()?;
    Ok(done)
}

/// The `q` quantile (0 to 1) of `sorted`, nearest rank; 0 when empty.
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let k = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[k.min(sorted.len() - 1)]
}

/// No-op tasks submit → result: batched (`map`: pipelined submissions,
/// results collected in bulk) and unbatched (`apply_async` then `get`, one
/// task at a time in flight per submission call).
pub fn pool_throughput(params: &Params) -> Result<Record, BenchError> {
    let tasks = params.get("tasks")?;
    let unbatched = params.get("unbatched_tasks")?;
    let (url, _server) = server()?;
    let (pool, ws) = setup(&url, "bench_tp", 2, 1, 512)?;
    let task = noop_task();
    pool.map(&task, 0..100u64)?;
    let start = Instant::now();
    let out = pool.map(&task, 0..tasks)?;
    let seconds = start.elapsed().as_secs_f64();
    check(
        out.len() as u64 == tasks && out.iter().enumerate().all(|(i, v)| *v == i as u64),
        "map returned wrong results",
    )?;
    let start = Instant::now();
    let handles = (0..unbatched)
        .map(|i| pool.apply_async(&task, i))
        .collect::<multiproc::Result<Vec<_>>>()?;
    for (i, h) in handles.into_iter().enumerate() {
        check(h.get()? == i as u64, "apply_async returned a wrong result")?;
    }
    let unbatched_seconds = start.elapsed().as_secs_f64();
    let stats = pool.stats()?;
    let done = teardown(&pool, ws)?;
    check(
        done == tasks + unbatched + 100,
        "not every task was committed once",
    )?;
    Ok(Record::timed("redis_pool_throughput", tasks, seconds)
        .with("transport", "redis")
        .with("workers", 2)
        .with("dead_letters", stats.dead_letters)
        .with("unbatched_n", unbatched)
        .with(
            "unbatched_ops_per_sec",
            round(unbatched as f64 / unbatched_seconds, 1),
        ))
}

/// One task's round trip (submit, run, commit, result), sequentially.
pub fn pool_latency(params: &Params) -> Result<Record, BenchError> {
    let calls = params.get("calls")?;
    let warmup = params.get("warmup")?;
    let (url, _server) = server()?;
    let (pool, ws) = setup(&url, "bench_lat", 1, 1, 0)?;
    let task = noop_task();
    for i in 0..warmup {
        check(pool.apply_async(&task, i)?.get()? == i, "wrong result")?;
    }
    let mut lat = Vec::with_capacity(calls as usize);
    let total = Instant::now();
    for i in 0..calls {
        let t = Instant::now();
        let r = pool.apply_async_with(&task, i, TaskOptions::new())?.get()?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        check(r == i, "wrong result")?;
    }
    let seconds = total.elapsed().as_secs_f64();
    teardown(&pool, ws)?;
    lat.sort_by(f64::total_cmp);
    Ok(Record::timed("redis_pool_latency", calls, seconds)
        .with("transport", "redis")
        .with("p50_us", round(percentile(&lat, 0.5), 1))
        .with("p99_us", round(percentile(&lat, 0.99), 1)))
}

/// Puts `n` items in batches of `batch` (1: one `put` per item).
fn produce((url, n, batch): (String, u64, u64)) -> bool {
    let Ok(b) = RedisBackend::open(&url) else {
        return false;
    };
    let q = b.queue::<u64>("bench_q");
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        let items: Vec<u64> = (i..end).collect();
        let failed = if batch == 1 {
            q.put(i).is_err()
        } else {
            q.put_many(items).is_err()
        };
        if failed {
            return false;
        }
        i = end;
    }
    true
}

/// Takes `n` items in order; the seconds it took.
fn consume(q: &multiproc::RedisQueue<u64>, n: u64, batch: u64) -> Result<(), BenchError> {
    let mut next = 0;
    while next < n {
        let got = if batch == 1 {
            vec![q.get_timeout(Duration::from_secs(30))?]
        } else {
            let got = q.get_many(batch as usize)?;
            if got.is_empty() {
                vec![q.get_timeout(Duration::from_secs(30))?]
            } else {
                got
            }
        };
        for v in got {
            check(v == next, "items out of order")?;
            next += 1;
        }
    }
    Ok(())
}

/// A producer process puts `items`, this process gets them: batched
/// (`put_many`/`get_many` of 1,000) and one by one.
pub fn queue_throughput(params: &Params) -> Result<Record, BenchError> {
    let items = params.get("items")?;
    let single = params.get("single_items")?;
    let (url, _server) = server()?;
    let q = RedisBackend::open(&url)?.queue::<u64>("bench_q");
    let run = |n: u64, batch: u64| -> Result<f64, BenchError> {
        let start = Instant::now();
        let mut producer = Kids::new();
        producer.spawn(produce, (url.clone(), n, batch))?;
        consume(&q, n, batch)?;
        check(
            producer.join_all()?.iter().all(|&ok| ok),
            "the producer failed",
        )?;
        Ok(start.elapsed().as_secs_f64())
    };
    let seconds = run(items, 1000)?;
    let single_seconds = run(single, 1)?;
    Ok(Record::timed("redis_queue_throughput", items, seconds)
        .with("transport", "redis")
        .with("batch", 1000)
        .with("single_n", single)
        .with(
            "single_ops_per_sec",
            round(single as f64 / single_seconds, 1),
        ))
}

/// The worker of `remote_manager_queue` on Redis queues.
fn square_worker(url: String) -> bool {
    let Ok(b) = RedisBackend::open(&url) else {
        return false;
    };
    let tasks = b.queue::<Option<u64>>("rmq_tasks");
    let results = b.queue::<u64>("rmq_results");
    loop {
        match tasks.get_timeout(Duration::from_secs(30)) {
            Ok(Some(i)) => {
                if results.put(i * i).is_err() {
                    return false;
                }
            }
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// `remote_manager_queue` with Redis as the server: master put, worker get
/// + put, master get.
pub fn remote_manager_queue(params: &Params) -> Result<Record, BenchError> {
    let round_trips = params.get("round_trips")?;
    let warmup = params.get("warmup")?;
    let (url, _server) = server()?;
    let b = RedisBackend::open(&url)?;
    let tasks = b.queue::<Option<u64>>("rmq_tasks");
    let results = b.queue::<u64>("rmq_results");
    let mut worker = Kids::new();
    worker.spawn(square_worker, url.clone())?;
    for i in 0..warmup {
        tasks.put(Some(i)).map_err(multiproc::Error::from)?;
        check(results.get()? == i * i, "wrong result")?;
    }
    let start = Instant::now();
    for i in 0..round_trips {
        tasks.put(Some(i)).map_err(multiproc::Error::from)?;
        check(results.get()? == i * i, "wrong result")?;
    }
    let seconds = start.elapsed().as_secs_f64();
    tasks.put(None).map_err(multiproc::Error::from)?;
    check(worker.join_all()?.iter().all(|&ok| ok), "the worker failed")?;
    Ok(
        Record::timed("remote_manager_queue_redis", round_trips, seconds)
            .with("transport", "redis")
            .with(
                "mean_round_trip_us",
                round(seconds / round_trips as f64 * 1e6, 1),
            ),
    )
}
