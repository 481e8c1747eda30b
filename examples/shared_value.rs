//! `Value` and `Array` shared by several processes, with and without the lock.
//!
//! `v.set(v.get() + 1)` is a read followed by a write: two processes can read
//! the same old value and both write old + 1, losing an update. Under the
//! lock (`*v.lock()? += 1`, Python's `with v.get_lock(): v.value += 1`) the
//! read-modify-write is one step for everyone else, and the count is exact.
//!
//! Run with `cargo run --example shared_value`.

use multiproc::{Array, Process, RawValue, Value};

const WORKERS: usize = 4;
const PER_WORKER: u64 = 100_000;

fn count_unlocked(v: RawValue<u64>) {
    for _ in 0..PER_WORKER {
        v.set(v.get() + 1); // racy on purpose
    }
}

// A panic in a child comes back from `join` as a `TaskPanicked` error.
fn count_locked(v: Value<u64>) {
    for _ in 0..PER_WORKER {
        *v.lock().expect("lock") += 1;
    }
}

fn square_slice((arr, worker): (Array<f64>, usize)) {
    // Each worker owns the elements i with i % WORKERS == worker.
    for i in (worker..arr.len()).step_by(WORKERS) {
        let x = arr.get(i).expect("in range");
        arr.set(i, x * x).expect("in range");
    }
}

fn main() -> multiproc::Result<()> {
    multiproc::init()?;
    let expected = WORKERS as u64 * PER_WORKER;

    let unlocked = Value::raw(0u64)?;
    let workers = (0..WORKERS)
        .map(|_| Process::spawn(count_unlocked, unlocked.clone()))
        .collect::<multiproc::Result<Vec<_>>>()?;
    for w in workers {
        w.join()?;
    }
    let lost = expected - unlocked.get();
    println!(
        "without the lock: {} of {expected} ({lost} updates lost: two processes read the \
         same value and both wrote it plus one)",
        unlocked.get()
    );

    let locked = Value::new(0u64)?;
    let workers = (0..WORKERS)
        .map(|_| Process::spawn(count_locked, locked.clone()))
        .collect::<multiproc::Result<Vec<_>>>()?;
    for w in workers {
        w.join()?;
    }
    println!(
        "with the lock:    {} of {expected} (exact: the read-modify-write is atomic)",
        locked.get()
    );
    assert_eq!(locked.get(), expected);

    let arr = Array::from_slice(&[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])?;
    let workers = (0..WORKERS)
        .map(|w| Process::spawn(square_slice, (arr.clone(), w)))
        .collect::<multiproc::Result<Vec<_>>>()?;
    for w in workers {
        w.join()?;
    }
    println!(
        "array squared by {WORKERS} processes: {:?}",
        arr.lock()?.to_vec()
    );
    Ok(())
}
