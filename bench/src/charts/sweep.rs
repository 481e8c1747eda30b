//! The measurements behind the charts: each sweeps one knob and returns one
//! point per setting.

use std::time::Instant;

use multiproc::{Manager, Pool, Process, Queue, SharedBytes};

use crate::registry::BenchError;
use crate::scenarios::pool::byte_len;
use crate::scenarios::queue::produce_bytes;

/// Measured points (x, y) of one series.
pub type Points = Vec<(f64, f64)>;

fn identity(x: u64) -> u64 {
    x
}

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

fn fail(what: &str) -> BenchError {
    BenchError(what.to_owned())
}

/// Sizes of one sweep run: full, or `--quick` (seconds, for CI).
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    quick: bool,
}

impl Scale {
    /// Full sizes unless `quick`.
    pub fn new(quick: bool) -> Scale {
        Scale { quick }
    }

    fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// Pool sizes of the scaling charts.
pub fn pool_sizes(scale: Scale) -> Vec<usize> {
    scale.pick(vec![1, 2, 3, 4, 6, 8], vec![1, 2])
}

/// Tasks/s of `apply_async` + `get` and items/s of `map` for each pool size.
pub fn pool_scaling(scale: Scale) -> Result<(Points, Points), BenchError> {
    let tasks = scale.pick(20_000u64, 500);
    let items = scale.pick(400_000u64, 5_000);
    let (mut apply, mut map) = (Vec::new(), Vec::new());
    for n in pool_sizes(scale) {
        let pool = Pool::new(n)?;
        pool.map(square, 0..100u64)?;
        let start = Instant::now();
        let rs = (0..tasks)
            .map(|i| pool.apply_async(identity, i))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, r) in rs.into_iter().enumerate() {
            if r.get()? != i as u64 {
                return Err(fail("apply_async result out of order"));
            }
        }
        apply.push((n as f64, tasks as f64 / start.elapsed().as_secs_f64()));
        let start = Instant::now();
        let out = pool.map(square, 0..items)?;
        map.push((n as f64, items as f64 / start.elapsed().as_secs_f64()));
        if out.len() as u64 != items {
            return Err(fail("map lost items"));
        }
    }
    Ok((apply, map))
}

/// Payload sizes of the throughput chart, 8 B to 64 MiB.
fn payload_sizes(scale: Scale) -> Vec<usize> {
    let all = [8usize, 1 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20];
    all.into_iter()
        .filter(|&s| s <= scale.pick(64 << 20, 1 << 20))
        .collect()
}

/// Calls (or items) per payload size: about `budget` bytes in all, between
/// 3 and `most`.
fn repeats(size: usize, budget: usize, most: usize) -> usize {
    (budget / size).clamp(3, most)
}

/// Bytes/s moved by `apply(len, payload)` (a pool of 2) and through a
/// `Queue` (a producer process to this one), for each payload size.
pub fn payload_throughput(scale: Scale) -> Result<(Points, Points), BenchError> {
    let budget = scale.pick(512 << 20, 8 << 20);
    let most = scale.pick(5_000, 200);
    let pool = Pool::new(2)?;
    pool.map(square, 0..100u64)?;
    let (mut apply, mut queue) = (Vec::new(), Vec::new());
    for size in payload_sizes(scale) {
        let calls = repeats(size, budget, most);
        let payload = SharedBytes::from(vec![7u8; size]);
        pool.apply(byte_len, payload.clone())?;
        let start = Instant::now();
        for _ in 0..calls {
            if pool.apply(byte_len, payload.clone())? != size as u64 {
                return Err(fail("apply saw another length"));
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        apply.push((size as f64, (size * calls) as f64 / seconds));

        let q = Queue::<Vec<u8>>::new()?;
        let start = Instant::now();
        let producer = Process::spawn(produce_bytes, (q.clone(), calls as u64, size))?;
        for _ in 0..calls {
            let item = q.get().map_err(multiproc::Error::from)?;
            if item.len() != size {
                return Err(fail("queue item of another length"));
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        producer.join()?.map_err(BenchError)?;
        queue.push((size as f64, (size * calls) as f64 / seconds));
    }
    Ok((apply, queue))
}

/// One client process: `ops` inserts and `ops` gets of its own key.
fn dict_client(
    (d, client, ops): (multiproc::DictProxy<String, u64>, usize, u64),
) -> Result<(), String> {
    let key = format!("client{client}");
    for i in 0..ops {
        d.insert(&key, &i).map_err(|e| e.to_string())?;
        if d.get(&key).map_err(|e| e.to_string())? != Some(i) {
            return Err(format!("{key} lost its value {i}"));
        }
    }
    Ok(())
}

/// Dict operations/s of one manager for each number of client processes.
pub fn manager_clients(scale: Scale) -> Result<Points, BenchError> {
    let counts = scale.pick(vec![1usize, 2, 4, 8, 16, 32], vec![1, 2, 4]);
    let ops = scale.pick(2_000u64, 100);
    let manager = Manager::start()?;
    let mut points = Vec::new();
    for clients in counts {
        let d = manager.dict::<String, u64>()?;
        let start = Instant::now();
        let procs = (0..clients)
            .map(|c| Process::spawn(dict_client, (d.clone(), c, ops)))
            .collect::<Result<Vec<_>, _>>()?;
        for p in procs {
            p.join()?.map_err(BenchError)?;
        }
        let seconds = start.elapsed().as_secs_f64();
        points.push((clients as f64, (2 * ops * clients as u64) as f64 / seconds));
    }
    manager.shutdown()?;
    Ok(points)
}

/// A `kB` field of `/proc/PID/smaps_rollup`.
fn smaps_kb(pid: i32, field: &str) -> Result<f64, BenchError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map_err(|e| BenchError(format!("smaps_rollup of {pid}: {e}")))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .ok_or_else(|| BenchError(format!("no {field} in smaps_rollup of {pid}")))
}

/// Mean RSS and PSS (KiB) of a warmed-up worker, for each pool size. PSS
/// charges each shared (copy-on-write) page to its sharers in equal parts,
/// so it is what a worker really adds.
pub fn worker_memory(scale: Scale) -> Result<(Points, Points), BenchError> {
    let (mut rss, mut pss) = (Vec::new(), Vec::new());
    for n in pool_sizes(scale) {
        let pool = Pool::new(n)?;
        pool.map(square, 0..1000u64)?;
        let pids = pool.worker_pids();
        if pids.len() != n {
            return Err(fail("a worker is missing"));
        }
        let (mut r, mut p) = (0.0, 0.0);
        for &pid in &pids {
            r += smaps_kb(pid, "Rss:")?;
            p += smaps_kb(pid, "Pss:")?;
        }
        rss.push((n as f64, r / n as f64));
        pss.push((n as f64, p / n as f64));
    }
    Ok((rss, pss))
}
