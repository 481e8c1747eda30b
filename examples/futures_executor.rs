//! Python's `concurrent.futures.ProcessPoolExecutor`, ported line for line:
//! submit 10 tasks with done callbacks, collect them with `as_completed`,
//! stream more with `map`, and shut down.
//!
//! ```python
//! with ProcessPoolExecutor(max_workers=4) as ex:
//!     futures = [ex.submit(slow_square, i) for i in range(10)]
//!     for f in futures:
//!         f.add_done_callback(lambda f: print("done:", f.result()))
//!     for f in as_completed(futures):
//!         total += f.result()
//!     print(list(ex.map(slow_square, range(5))))
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc::{as_completed, wait, ErrorKind, Executor, ReturnWhen};

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(50 + 10 * (x % 3)));
    x * x
}

fn crash(_: ()) -> u64 {
    std::process::abort()
}

fn main() -> multiproc::Result<()> {
    let ex = Executor::new(4)?;
    let t = Instant::now();

    // submit + add_done_callback: callbacks run in this process as results arrive.
    let called = Arc::new(AtomicU64::new(0));
    let futures = (0..10u64)
        .map(|i| {
            let f = ex.submit(slow_square, i)?;
            let called = Arc::clone(&called);
            f.add_done_callback(move |r| {
                if let Ok(v) = r {
                    println!("done callback: task {i} -> {v}");
                    called.fetch_add(1, Ordering::SeqCst);
                }
            });
            Ok(f)
        })
        .collect::<multiproc::Result<Vec<_>>>()?;

    // as_completed: results in completion order.
    let mut total = 0;
    for f in as_completed(futures, Some(Duration::from_secs(30))) {
        total += f?.result()?;
    }
    println!("as_completed: sum of squares 0..10 = {total}");
    assert_eq!(total, 285);
    assert_eq!(called.load(Ordering::SeqCst), 10);

    // map: lazy, in input order.
    let squares: Vec<u64> = ex.map(slow_square, 0..5u64)?.collect::<Result<_, _>>()?;
    println!("map: {squares:?}");
    assert_eq!(squares, vec![0, 1, 4, 9, 16]);

    // A crashed worker fails only its own future; the executor goes on
    // (Python's executor would be broken for good here).
    let bad = ex.submit(crash, ())?;
    let good = ex.submit(slow_square, 7)?;
    let w = wait(
        vec![bad],
        Some(Duration::from_secs(30)),
        ReturnWhen::AllCompleted,
    );
    let e = w.done[0].exception().expect("the crash is an error");
    assert_eq!(e.kind(), ErrorKind::WorkerLost);
    println!("crashed task: {e}");
    println!("still usable: 7^2 = {}", good.result()?);

    // Cancel what has not started, then shut down (dropping would wait).
    let queued: Vec<_> = (0..40)
        .map(|i| ex.submit(slow_square, i))
        .collect::<Result<_, _>>()?;
    ex.shutdown(true, true)?;
    let cancelled = queued.iter().filter(|f| f.cancelled()).count();
    println!("shutdown(wait=True, cancel_futures=True): {cancelled} of 40 queued tasks cancelled");
    assert!(cancelled > 0);
    println!("finished in {} ms", t.elapsed().as_millis());
    Ok(())
}
