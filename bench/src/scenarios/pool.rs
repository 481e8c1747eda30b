//! The pool scenarios: `pool_*` and `worker_killed_pool`,
//! with the sizes and timed sections of the Python counterparts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use multiproc::{ApplyOptions, Pool, SharedBytes};

use crate::record::{median, round, Record};
use crate::registry::{BenchError, Params};
use crate::scenarios::killed::{kill_a_worker, report_pid_then_sleep};

const POOL_SIZE: usize = 2;

fn identity(x: u64) -> u64 {
    x
}

fn square(x: u64) -> u64 {
    x * x
}

fn fail(what: impl Into<String>) -> BenchError {
    BenchError(what.into())
}

fn check(ok: bool, what: &str) -> Result<(), BenchError> {
    if ok {
        Ok(())
    } else {
        Err(fail(format!("wrong result: {what}")))
    }
}

fn warm_pool() -> Result<Pool, BenchError> {
    let pool = Pool::new(POOL_SIZE)?;
    pool.map(square, 0..100u64)?;
    Ok(pool)
}

/// 20 cycles of `Pool(2)` + `close` + `join`, no tasks.
pub fn startup(params: &Params) -> Result<Record, BenchError> {
    let cycles = params.count("cycles")?;
    let mut samples = Vec::with_capacity(cycles);
    for _ in 0..cycles {
        let start = Instant::now();
        let pool = Pool::new(POOL_SIZE)?;
        pool.close();
        pool.join()?;
        samples.push(start.elapsed().as_secs_f64());
    }
    let total: f64 = samples.iter().sum();
    let med = median(&samples).ok_or_else(|| fail("no cycles"))?;
    let min = samples.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = samples.iter().cloned().fold(0.0, f64::max);
    Ok(Record::timed("pool_startup", cycles as u64, total)
        .with("pool_size", POOL_SIZE)
        .with("median_cycle_seconds", round(med, 6))
        .with("min_cycle_seconds", round(min, 6))
        .with("max_cycle_seconds", round(max, 6)))
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let k = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[k.min(sorted.len() - 1)] as f64
}

/// 20,000 sequential `apply(identity, i)`, each timed, after 1,000 warm-up calls.
pub fn apply_latency(params: &Params) -> Result<Record, BenchError> {
    let calls = params.count("calls")?;
    let warmup = params.count("warmup")?;
    let pool = Pool::new(POOL_SIZE)?;
    for i in 0..warmup as u64 {
        pool.apply(identity, i)?;
    }
    let mut lat = Vec::with_capacity(calls);
    let total_start = Instant::now();
    for i in 0..calls as u64 {
        let start = Instant::now();
        let r = pool.apply(identity, i)?;
        lat.push(start.elapsed().as_nanos() as u64);
        check(r == i, "apply(identity, i) == i")?;
    }
    let total = total_start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let mean = lat.iter().sum::<u64>() as f64 / lat.len().max(1) as f64;
    Ok(Record::timed("pool_apply_latency", calls as u64, total)
        .with("pool_size", POOL_SIZE)
        .with("p50_us", round(percentile(&lat, 0.50) / 1000.0, 2))
        .with("p99_us", round(percentile(&lat, 0.99) / 1000.0, 2))
        .with("mean_us", round(mean / 1000.0, 2)))
}

/// 100,000 `apply_async(identity, i)`, then `get` on all in order.
pub fn apply_async_tiny(params: &Params) -> Result<Record, BenchError> {
    submit_then_get(params, "pool_apply_async_tiny", "tasks", "pool_size")
}

fn submit_then_get(
    params: &Params,
    bench: &str,
    size: &str,
    size_field: &str,
) -> Result<Record, BenchError> {
    let tasks = params.count(size)?;
    let pool = warm_pool()?;
    let start = Instant::now();
    let rs = (0..tasks as u64)
        .map(|i| pool.apply_async(identity, i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ok = true;
    for (i, r) in rs.into_iter().enumerate() {
        ok &= r.get()? == i as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    check(ok, "results in order")?;
    Ok(Record::timed(bench, tasks as u64, seconds).with(size_field, POOL_SIZE))
}

/// `map(square, range(1_000_000))` with the automatic chunksize.
pub fn map_tiny(params: &Params) -> Result<Record, BenchError> {
    let items = params.count("items")?;
    let pool = warm_pool()?;
    let start = Instant::now();
    let out = pool.map(square, 0..items as u64)?;
    let seconds = start.elapsed().as_secs_f64();
    check(
        out.len() == items && out.iter().enumerate().all(|(i, &v)| v == (i * i) as u64),
        "map squares",
    )?;
    let chunksize = items.div_ceil(POOL_SIZE * 4);
    Ok(Record::timed("pool_map_tiny", items as u64, seconds)
        .with("pool_size", POOL_SIZE)
        .with("chunksize", chunksize))
}

/// `map(square, range(100_000), chunksize=1)`.
pub fn map_chunksize1(params: &Params) -> Result<Record, BenchError> {
    let items = params.count("items")?;
    let pool = warm_pool()?;
    let start = Instant::now();
    let out = pool.map_chunksize(square, 0..items as u64, 1)?;
    let seconds = start.elapsed().as_secs_f64();
    check(
        out.len() == items && out.iter().enumerate().all(|(i, &v)| v == (i * i) as u64),
        "map squares",
    )?;
    Ok(Record::timed("pool_map_chunksize1", items as u64, seconds)
        .with("pool_size", POOL_SIZE)
        .with("chunksize", 1))
}

/// Iterates `imap_unordered(square, range(100_000), chunksize=1)` to the end.
pub fn imap_unordered(params: &Params) -> Result<Record, BenchError> {
    let items = params.count("items")?;
    let pool = warm_pool()?;
    let start = Instant::now();
    let (mut count, mut total) = (0usize, 0u128);
    for v in pool.imap_unordered(square, 0..items as u64)? {
        count += 1;
        total += u128::from(v?);
    }
    let seconds = start.elapsed().as_secs_f64();
    let expect: u128 = (0..items as u128).map(|i| i * i).sum();
    check(count == items && total == expect, "count and sum")?;
    Ok(Record::timed("pool_imap_unordered", items as u64, seconds)
        .with("pool_size", POOL_SIZE)
        .with("chunksize", 1))
}

/// 100,000 `apply_async(identity, i, callback)`; the clock stops when the
/// last callback has run.
pub fn callback(params: &Params) -> Result<Record, BenchError> {
    let tasks = params.count("tasks")?;
    let pool = warm_pool()?;
    let count = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(0));
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    let start = Instant::now();
    for i in 0..tasks as u64 {
        let (count, total, done) = (count.clone(), total.clone(), done.clone());
        let n = tasks as u64;
        pool.apply_async_with(
            identity,
            i,
            ApplyOptions::new().callback(move |v: &u64| {
                total.fetch_add(*v, Ordering::Relaxed);
                if count.fetch_add(1, Ordering::AcqRel) + 1 == n {
                    let (m, c) = &*done;
                    *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
                    c.notify_all();
                }
            }),
        )?;
    }
    {
        let (m, c) = &*done;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        while !*g {
            g = c.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let n = tasks as u64;
    check(
        count.load(Ordering::SeqCst) == n
            && total.load(Ordering::SeqCst) == n * n.saturating_sub(1) / 2,
        "callback count and sum",
    )?;
    Ok(Record::timed("pool_callback", n, seconds).with("pool_size", POOL_SIZE))
}

/// Python's `len(payload)`: the worker gets the bytes where they arrived.
pub(crate) fn byte_len(b: SharedBytes) -> u64 {
    b.len() as u64
}

/// 10 sequential `apply(len, payload)` with a 64 MiB payload, after one warm-up.
pub fn large_payload(params: &Params) -> Result<Record, BenchError> {
    let size = params.count("payload_bytes")?;
    let calls = params.count("calls")?;
    let pool = Pool::new(POOL_SIZE)?;
    // Python's `bytes`: made once, passed to every call (a clone is a
    // reference count; each call still copies the bytes into shared memory).
    let payload = SharedBytes::from(vec![0u8; size]);
    check(
        pool.apply(byte_len, payload.clone())? == size as u64,
        "warm-up len",
    )?;
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let arg = payload.clone();
        let start = Instant::now();
        let n = pool.apply(byte_len, arg)?;
        samples.push(start.elapsed().as_secs_f64());
        check(n == size as u64, "len(payload)")?;
    }
    let total: f64 = samples.iter().sum();
    let med = median(&samples).ok_or_else(|| fail("no calls"))?;
    Ok(Record::timed("pool_large_payload", calls as u64, total)
        .with("pool_size", POOL_SIZE)
        .with("payload_bytes", size)
        .with("gb_per_sec", round((size * calls) as f64 / total / 1e9, 3))
        .with("median_call_seconds", round(med, 6)))
}

/// A task records its worker's pid then sleeps; the parent SIGKILLs that
/// worker mid-task and waits for the outcome with a 5 s timeout.
pub fn worker_killed(params: &Params) -> Result<Record, BenchError> {
    let pool = Pool::new(POOL_SIZE)?;
    let killed = kill_a_worker(
        params,
        |arg| pool.apply_async(report_pid_then_sleep, arg),
        |r, t| r.get_timeout(t),
    )?;
    let usable = pool.apply(identity, 7).map(|v| v == 7).unwrap_or(false);
    Ok(killed
        .record("worker_killed_pool")
        .with("pool_size", POOL_SIZE)
        .with("pool_usable_after", usable))
}
