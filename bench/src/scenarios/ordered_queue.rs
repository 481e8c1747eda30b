//! `lifo_queue_throughput`, `priority_queue_throughput`: a producer process
//! and the main process on either side of a `LifoQueue` / `PriorityQueue`,
//! in the shape of `queue_throughput`.

use std::time::Instant;

use multiproc::{LifoQueue, PriorityQueue, Process};

use crate::record::Record;
use crate::registry::{BenchError, Params};

fn produce_lifo((queue, count): (LifoQueue<u64>, u64)) -> Result<(), String> {
    for i in 0..count {
        queue.put(i).map_err(|e| format!("put {i}: {e}"))?;
    }
    Ok(())
}

/// Puts the priorities of `0..count` in a scrambled order (a fixed
/// permutation), so that the heap really reorders.
fn produce_priority((queue, count): (PriorityQueue<u64>, u64)) -> Result<(), String> {
    for i in 0..count {
        let p = scramble(i, count);
        queue.put(p).map_err(|e| format!("put {p}: {e}"))?;
    }
    Ok(())
}

/// A permutation of `0..n`: multiplication by a large odd constant modulo a
/// power of two above `n`, skipping what falls outside (cycle walking).
fn scramble(i: u64, n: u64) -> u64 {
    let m = n.next_power_of_two().max(2);
    let mut x = i;
    loop {
        x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15 | 1) & (m - 1);
        if x < n {
            return x;
        }
    }
}

fn joined(result: multiproc::Result<Result<(), String>>) -> Result<(), BenchError> {
    result?.map_err(BenchError)
}

fn check_sum(total: u64, items: u64) -> Result<(), BenchError> {
    if total != items * items.saturating_sub(1) / 2 {
        return Err(BenchError(format!("wrong sum of items: {total}")));
    }
    Ok(())
}

/// A producer `Process` puts `0..items` on a `LifoQueue`; main gets them all.
/// Timed from starting the producer to the last get.
pub fn lifo_queue_throughput(params: &Params) -> Result<Record, BenchError> {
    let items = params.get("items")?;
    let queue = LifoQueue::<u64>::new()?;
    let start = Instant::now();
    let producer = Process::spawn(produce_lifo, (queue.clone(), items))?;
    let mut total = 0u64;
    for _ in 0..items {
        total += queue.get().map_err(multiproc::Error::from)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    joined(producer.join())?;
    check_sum(total, items)?;
    Ok(Record::timed("lifo_queue_throughput", items, seconds))
}

/// A producer `Process` puts a scrambled `0..items` on a `PriorityQueue`;
/// main gets them all. Timed from starting the producer to the last get.
pub fn priority_queue_throughput(params: &Params) -> Result<Record, BenchError> {
    let items = params.get("items")?;
    let queue = PriorityQueue::<u64>::new()?;
    let start = Instant::now();
    let producer = Process::spawn(produce_priority, (queue.clone(), items))?;
    let mut total = 0u64;
    for _ in 0..items {
        total += queue.get().map_err(multiproc::Error::from)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    joined(producer.join())?;
    check_sum(total, items)?;
    Ok(Record::timed("priority_queue_throughput", items, seconds))
}

#[cfg(test)]
mod tests {
    use super::scramble;

    #[test]
    fn scramble_is_a_permutation() {
        for n in [1u64, 2, 5, 1000, 4096] {
            let mut seen: Vec<u64> = (0..n).map(|i| scramble(i, n)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
        // The Python side's permutation (priority_queue_throughput.py).
        let first: Vec<u64> = (0..5).map(|i| scramble(i, 50_000)).collect();
        assert_eq!(first, [0, 31765, 45938, 29759, 26340]);
    }
}
