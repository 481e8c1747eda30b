//! `lifo_queue_throughput`, `priority_queue_throughput`: a producer process
//! and the main process on either side of a `LifoQueue` / `PriorityQueue`,
//! in the shape of `queue_throughput`.

use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::Serialize;

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

/// Spawns `produce((queue, items))`, gets `items` items here through `get`,
/// checks their sum and times it all from starting the producer to the last
/// get.
fn time_drain<Q>(
    bench: &str,
    items: u64,
    queue: Q,
    produce: fn((Q, u64)) -> Result<(), String>,
    get: impl Fn(&Q) -> multiproc::Result<u64>,
) -> Result<Record, BenchError>
where
    Q: Clone + Serialize + DeserializeOwned + 'static,
{
    let start = Instant::now();
    let producer = Process::spawn(produce, (queue.clone(), items))?;
    let mut total = 0u64;
    for _ in 0..items {
        total += get(&queue)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    producer.join()?.map_err(BenchError)?;
    if total != items * items.saturating_sub(1) / 2 {
        return Err(BenchError(format!("wrong sum of items: {total}")));
    }
    Ok(Record::timed(bench, items, seconds))
}

/// A producer `Process` puts `0..items` on a `LifoQueue`; main gets them all.
/// Timed from starting the producer to the last get.
pub fn lifo_queue_throughput(params: &Params) -> Result<Record, BenchError> {
    let items = params.get("items")?;
    time_drain(
        "lifo_queue_throughput",
        items,
        LifoQueue::<u64>::new()?,
        produce_lifo,
        |q| Ok(q.get()?),
    )
}

/// A producer `Process` puts a scrambled `0..items` on a `PriorityQueue`;
/// main gets them all. Timed from starting the producer to the last get.
pub fn priority_queue_throughput(params: &Params) -> Result<Record, BenchError> {
    let items = params.get("items")?;
    time_drain(
        "priority_queue_throughput",
        items,
        PriorityQueue::<u64>::new()?,
        produce_priority,
        |q| Ok(q.get()?),
    )
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
