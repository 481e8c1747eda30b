//! `apply` (blocking) versus `apply_async` (returns at once), a large
//! argument the worker reads where it arrived (`SharedBytes`), then the two
//! ways to stop a pool: `close` + `join` (finish the work) and `terminate`
//! (drop it).

use std::time::{Duration, Instant};

use multiproc::{ErrorKind, Pool, SharedBytes};

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(100));
    x * x
}

/// Sums the bytes where they are: a large `SharedBytes` argument is read in
/// the shared-memory block it arrived in, not copied into the worker.
fn checksum(data: SharedBytes) -> (u64, bool) {
    let sum = data.iter().map(|&b| u64::from(b)).sum();
    (sum, data.is_in_place())
}

fn main() -> multiproc::Result<()> {
    let pool = Pool::new(4)?;

    // Synchronous: each apply waits for its result, so four calls take ~4 x 100 ms.
    let t = Instant::now();
    let sync: Vec<u64> = (1..=4)
        .map(|i| pool.apply(slow_square, i))
        .collect::<Result<_, _>>()?;
    println!(
        "apply       x4: {sync:?} in {:>4} ms",
        t.elapsed().as_millis()
    );

    // Asynchronous: submit all four, then collect; they run in parallel (~100 ms).
    let t = Instant::now();
    let pending: Vec<_> = (1..=4)
        .map(|i| pool.apply_async(slow_square, i))
        .collect::<Result<_, _>>()?;
    let asynced: Vec<u64> = pending
        .into_iter()
        .map(|r| r.get())
        .collect::<Result<_, _>>()?;
    println!(
        "apply_async x4: {asynced:?} in {:>4} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(sync, asynced);

    // A 64 MiB argument: copied once into a shared-memory block the pool
    // reuses, and read there by the worker.
    let data = SharedBytes::from(vec![1u8; 64 << 20]);
    let t = Instant::now();
    let (sum, in_place) = pool.apply(checksum, data.clone())?;
    assert_eq!((sum, in_place), (64 << 20, true));
    println!(
        "64 MiB arg   : summed in place by a worker in {:>4} ms",
        t.elapsed().as_millis()
    );

    // close + join: no new work, but what was submitted finishes.
    let last = pool.apply_async(slow_square, 5)?;
    pool.close();
    let refused = pool.apply_async(slow_square, 6).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::NotRunning);
    pool.join()?;
    println!("close + join : pending task finished with {}", last.get()?);
    println!("after close  : submitting fails with \"{refused}\"");

    // terminate: workers are killed at once, pending results fail.
    let pool = Pool::new(2)?;
    let doomed = pool.apply_async(slow_square, 7)?;
    let t = Instant::now();
    pool.terminate();
    let err = doomed.get().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotRunning);
    println!(
        "terminate    : returned in {} ms; the pending task failed with \"{err}\"",
        t.elapsed().as_millis()
    );
    Ok(())
}
