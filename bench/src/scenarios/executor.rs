//! The executor scenarios (`concurrent.futures`): `futures_submit` and
//! `worker_killed_executor`.

use std::time::Instant;

use multiproc::Executor;

use crate::record::Record;
use crate::registry::{BenchError, Params};
use crate::scenarios::killed::{kill_a_worker, report_pid_then_sleep};

const MAX_WORKERS: usize = 2;

fn identity(x: u64) -> u64 {
    x
}

fn warm_executor() -> Result<Executor, BenchError> {
    let ex = Executor::new(MAX_WORKERS)?;
    for r in ex.map(identity, 0..100u64)? {
        r?;
    }
    Ok(ex)
}

/// `submit(identity, i)` for every task, then `result()` on each in order.
pub fn futures_submit(params: &Params) -> Result<Record, BenchError> {
    let tasks = params.count("tasks")?;
    let ex = warm_executor()?;
    let start = Instant::now();
    let futures = (0..tasks as u64)
        .map(|i| ex.submit(identity, i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ok = true;
    for (i, f) in futures.into_iter().enumerate() {
        ok &= f.result()? == i as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    if !ok {
        return Err(BenchError("results in order".into()));
    }
    Ok(Record::timed("futures_submit", tasks as u64, seconds).with("max_workers", MAX_WORKERS))
}

/// Python's executor breaks for good when a worker dies; ours fails the
/// task with `WorkerLost` and goes on.
pub fn worker_killed(params: &Params) -> Result<Record, BenchError> {
    let ex = Executor::new(MAX_WORKERS)?;
    let killed = kill_a_worker(
        params,
        |arg| ex.submit(report_pid_then_sleep, arg),
        |f, t| f.result_timeout(t),
    )?;
    let usable = ex
        .submit(identity, 42)
        .and_then(|f| f.result())
        .map(|v| v == 42)
        .unwrap_or(false);
    ex.shutdown(true, true)?;
    Ok(killed
        .record("worker_killed_executor")
        .with("max_workers", MAX_WORKERS)
        .with("executor_usable_after", usable))
}
