//! The Rust peer column of `--compare`: procspawn (a process pool that
//! re-executes the program and talks over ipc-channel) on the scenarios
//! both libraries can express, with the same shapes and sizes as ours.

use std::time::Instant;

use crate::record::{median, round, Record};
use crate::registry::{BenchError, Params, RunFn};

/// The `impl` field of the peer's lines.
pub const PEER_IMPL: &str = "procspawn";

const POOL_SIZE: usize = 2;

fn identity(x: u64) -> u64 {
    x
}

fn noop(_: ()) {}

fn spawn_error(e: procspawn::SpawnError) -> BenchError {
    BenchError(format!("procspawn: {e}"))
}

/// The peer's implementation of the scenario `name`, if it has one.
pub fn find(name: &str) -> Option<RunFn> {
    match name {
        "process_spawn_join" => Some(spawn_join),
        "pool_apply_latency" => Some(apply_latency),
        "pool_apply_async_tiny" => Some(apply_async_tiny),
        _ => None,
    }
}

/// Marks a line as the peer's: its own `impl`, and procspawn's way of
/// starting a child (the program executed again, not a fork).
fn named(mut record: Record) -> Record {
    record.set("impl", PEER_IMPL);
    record.set("start_method", "exec");
    record
}

/// `procspawn::spawn(noop)` + `join`, as `process_spawn_join`.
fn spawn_join(params: &Params) -> Result<Record, BenchError> {
    let warmup = params.count("warmup")?;
    let cycles = params.count("cycles")?;
    for _ in 0..warmup {
        procspawn::spawn((), noop).join().map_err(spawn_error)?;
    }
    let mut samples = Vec::with_capacity(cycles);
    let total_start = Instant::now();
    for _ in 0..cycles {
        let start = Instant::now();
        procspawn::spawn((), noop).join().map_err(spawn_error)?;
        samples.push(start.elapsed().as_secs_f64());
    }
    let total = total_start.elapsed().as_secs_f64();
    let per_process = median(&samples).ok_or_else(|| BenchError("no cycles".to_owned()))?;
    Ok(named(
        Record::timed("process_spawn_join", cycles as u64, total)
            .with("per_process_us", round(per_process * 1e6, 1)),
    ))
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => sorted[((n - 1) as f64 * q).round() as usize] as f64,
    }
}

/// Sequential `pool.spawn(identity, i)` + `join`, as `pool_apply_latency`.
fn apply_latency(params: &Params) -> Result<Record, BenchError> {
    let calls = params.count("calls")?;
    let warmup = params.count("warmup")?;
    let pool = procspawn::Pool::new(POOL_SIZE).map_err(spawn_error)?;
    for i in 0..warmup as u64 {
        pool.spawn(i, identity).join().map_err(spawn_error)?;
    }
    let mut lat = Vec::with_capacity(calls);
    let total_start = Instant::now();
    for i in 0..calls as u64 {
        let start = Instant::now();
        let r = pool.spawn(i, identity).join().map_err(spawn_error)?;
        lat.push(start.elapsed().as_nanos() as u64);
        if r != i {
            return Err(BenchError(format!("identity({i}) gave {r}")));
        }
    }
    let total = total_start.elapsed().as_secs_f64();
    pool.shutdown();
    lat.sort_unstable();
    let mean = lat.iter().sum::<u64>() as f64 / lat.len().max(1) as f64;
    Ok(named(
        Record::timed("pool_apply_latency", calls as u64, total)
            .with("pool_size", POOL_SIZE)
            .with("p50_us", round(percentile(&lat, 0.50) / 1000.0, 2))
            .with("p99_us", round(percentile(&lat, 0.99) / 1000.0, 2))
            .with("mean_us", round(mean / 1000.0, 2)),
    ))
}

/// Tasks procspawn may have queued at once: each queued task holds its own
/// ipc-channel pair (four descriptors), so queueing all 100,000 first, as
/// the scenario does, runs out of descriptors (EMFILE inside procspawn).
const PEER_WINDOW: usize = 1_000;

/// `pool.spawn(identity, i)` with at most [`PEER_WINDOW`] queued, joined in
/// order, as `pool_apply_async_tiny` (which queues all of them first).
fn apply_async_tiny(params: &Params) -> Result<Record, BenchError> {
    let tasks = params.count("tasks")?;
    let pool = procspawn::Pool::new(POOL_SIZE).map_err(spawn_error)?;
    pool.spawn(0u64, identity).join().map_err(spawn_error)?;
    let start = Instant::now();
    let mut queued = std::collections::VecDeque::with_capacity(PEER_WINDOW);
    let mut next = 0u64;
    for i in 0..tasks as u64 {
        if queued.len() == PEER_WINDOW {
            let h: procspawn::JoinHandle<u64> = queued.pop_front().expect("a full window");
            if h.join().map_err(spawn_error)? != next {
                return Err(BenchError("results out of order".to_owned()));
            }
            next += 1;
        }
        queued.push_back(pool.spawn(i, identity));
    }
    for h in queued {
        if h.join().map_err(spawn_error)? != next {
            return Err(BenchError("results out of order".to_owned()));
        }
        next += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    pool.shutdown();
    Ok(named(
        Record::timed("pool_apply_async_tiny", tasks as u64, seconds)
            .with("pool_size", POOL_SIZE)
            .with("window", PEER_WINDOW),
    ))
}
