//! `queue_throughput`, `joinable_queue_throughput`, `queue_large_items`: a
//! producer process and the main process on either side of a queue.

use std::time::Instant;

use multiproc::{JoinableQueue, Process, Queue};

use crate::record::{round, Record};
use crate::registry::{BenchError, Params};

fn produce((queue, count): (Queue<u64>, u64)) -> Result<(), String> {
    for i in 0..count {
        queue.put(i).map_err(|e| format!("put {i}: {e}"))?;
    }
    Ok(())
}

fn produce_and_join((queue, count): (JoinableQueue<u64>, u64)) -> Result<(), String> {
    for i in 0..count {
        queue.put(i).map_err(|e| format!("put {i}: {e}"))?;
    }
    queue.join();
    Ok(())
}

pub(crate) fn produce_bytes(
    (queue, count, item_bytes): (Queue<Vec<u8>>, u64, usize),
) -> Result<(), String> {
    let item = vec![0u8; item_bytes];
    for i in 0..count {
        queue
            .put(item.clone())
            .map_err(|e| format!("put {i}: {e}"))?;
    }
    Ok(())
}

fn joined(result: multiproc::Result<Result<(), String>>) -> Result<(), BenchError> {
    result?.map_err(BenchError)
}

/// A producer `Process` puts `0..items` on a `Queue`; main gets them all.
/// Timed from starting the producer to the last get.
pub fn queue_throughput(params: &Params) -> Result<Record, BenchError> {
    let items = params.get("items")?;
    let queue = Queue::<u64>::new()?;
    let start = Instant::now();
    let producer = Process::spawn(produce, (queue.clone(), items))?;
    let mut total = 0u64;
    for _ in 0..items {
        total += queue.get().map_err(multiproc::Error::from)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    joined(producer.join())?;
    if total != items * items.saturating_sub(1) / 2 {
        return Err(BenchError(format!("wrong sum of items: {total}")));
    }
    Ok(Record::timed("queue_throughput", items, seconds))
}

/// As `queue_throughput` with a `JoinableQueue`: main does `get` +
/// `task_done` per item, the producer `join`s after its puts; timed until the
/// producer has exited.
pub fn joinable_queue_throughput(params: &Params) -> Result<Record, BenchError> {
    let items = params.get("items")?;
    let queue = JoinableQueue::<u64>::new()?;
    let start = Instant::now();
    let producer = Process::spawn(produce_and_join, (queue.clone(), items))?;
    let mut total = 0u64;
    for _ in 0..items {
        total += queue.get().map_err(multiproc::Error::from)?;
        queue.task_done()?;
    }
    joined(producer.join())?;
    let seconds = start.elapsed().as_secs_f64();
    if total != items * items.saturating_sub(1) / 2 {
        return Err(BenchError(format!("wrong sum of items: {total}")));
    }
    Ok(Record::timed("joinable_queue_throughput", items, seconds))
}

/// A producer puts `items` byte strings of `item_bytes` each; main gets them.
pub fn queue_large_items(params: &Params) -> Result<Record, BenchError> {
    let items = params.get("items")?;
    let item_bytes = params.count("item_bytes")?;
    let queue = Queue::<Vec<u8>>::new()?;
    let start = Instant::now();
    let producer = Process::spawn(produce_bytes, (queue.clone(), items, item_bytes))?;
    let mut received = 0usize;
    for _ in 0..items {
        let item = queue.get().map_err(multiproc::Error::from)?;
        if item.len() != item_bytes {
            return Err(BenchError(format!("item of {} bytes", item.len())));
        }
        received += item.len();
    }
    let seconds = start.elapsed().as_secs_f64();
    joined(producer.join())?;
    Ok(Record::timed("queue_large_items", items, seconds)
        .with("item_bytes", item_bytes as u64)
        .with("gb_per_sec", round(received as f64 / seconds / 1e9, 3)))
}
