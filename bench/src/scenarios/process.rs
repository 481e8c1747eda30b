//! `process_spawn_join`: start a trivial child process and join it.

use std::time::Instant;

use multiproc::Process;

use crate::record::{median, round, Record};
use crate::registry::{BenchError, Params};

fn noop(_: ()) {}

/// `warmup` untimed cycles, then `cycles` sequential
/// `Process::spawn(noop, ())` + `join()`, each timed; the headline
/// `per_process_us` is the median cycle in microseconds.
pub fn spawn_join(params: &Params) -> Result<Record, BenchError> {
    let warmup = params.count("warmup")?;
    let cycles = params.count("cycles")?;
    for _ in 0..warmup {
        Process::spawn(noop, ())?.join()?;
    }
    let mut samples = Vec::with_capacity(cycles);
    let total_start = Instant::now();
    for _ in 0..cycles {
        let start = Instant::now();
        let child = Process::spawn(noop, ())?;
        child.join()?;
        samples.push(start.elapsed().as_secs_f64());
    }
    let total = total_start.elapsed().as_secs_f64();
    let per_process = median(&samples).ok_or_else(|| BenchError("no cycles".to_owned()))?;
    Ok(Record::timed("process_spawn_join", cycles as u64, total)
        .with("per_process_us", round(per_process * 1e6, 1)))
}
