//! `value_lock_increment`: a shared counter guarded by its own lock.

use std::time::Instant;

use multiproc::{Process, Value};

use crate::record::Record;
use crate::registry::{BenchError, Params};

/// Increments `counter` `times` times under its lock; returns how many
/// increments it made, or why it stopped.
fn increment_many(args: (Value<i32>, u64)) -> Result<u64, String> {
    let (counter, times) = args;
    for done in 0..times {
        // Python's `with v.get_lock(): v.value += 1`, word for word: take the
        // value's lock, then read and write `value` (atomic load and store)
        // while holding it. (The guard form `*counter.lock()? += 1` does the
        // same load and store; this one keeps Python's shape. Python's lock
        // is an RLock; `Value`'s is a plain `Lock`, which is what the
        // non-reentrant use here needs.)
        let _g = counter
            .get_lock()
            .lock()
            .map_err(|e| format!("lock failed after {done} increments: {e}"))?;
        counter.set(counter.get() + 1);
    }
    Ok(times)
}

/// `Value::new(0i32)`; `processes` children each run `increments_per_process`
/// locked increments; timed from the first spawn to the last join. The line
/// has `processes`, `final_value` and `correct` (final value equals the total
/// and every child finished its increments).
pub fn value_lock_increment(params: &Params) -> Result<Record, BenchError> {
    let processes = params.count("processes")?;
    let per_process = params.get("increments_per_process")?;
    let total = processes as u64 * per_process;
    let counter = Value::new(0i32)?;

    let start = Instant::now();
    let children = (0..processes)
        .map(|_| Process::spawn(increment_many, (counter.clone(), per_process)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut all_done = true;
    for child in children {
        match child.join()? {
            Ok(n) => all_done &= n == per_process,
            Err(message) => return Err(BenchError(message)),
        }
    }
    let seconds = start.elapsed().as_secs_f64();

    let final_value = counter.get();
    let correct = all_done && i64::from(final_value) == total as i64;
    Ok(Record::timed("value_lock_increment", total, seconds)
        .with("processes", processes as u64)
        .with("final_value", final_value)
        .with("correct", correct))
}
