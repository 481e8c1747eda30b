//! Waiting with deadlines, and tolerant timing bounds.

use std::time::{Duration, Instant};

use crate::LIMIT;

/// Polls `cond` every `every` until it holds or `limit` has passed; returns
/// its last value.
pub(crate) fn poll_until(limit: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(every);
    }
    cond()
}

/// Polls `cond` every 5 ms for up to `limit`; returns whether it came true.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// let start = Instant::now();
/// assert!(multiproc_testkit::wait_until(Duration::from_secs(5), || {
///     start.elapsed() > Duration::from_millis(20)
/// }));
/// ```
pub fn wait_until(limit: Duration, cond: impl FnMut() -> bool) -> bool {
    poll_until(limit, Duration::from_millis(5), cond)
}

/// Polls `cond` every millisecond for up to [`LIMIT`].
///
/// # Panics
///
/// If `cond` is still false after [`LIMIT`].
pub fn eventually(cond: impl FnMut() -> bool) {
    assert!(
        poll_until(LIMIT, Duration::from_millis(1), cond),
        "condition not reached in {LIMIT:?}"
    );
}

/// Runs `f` on another thread and returns its result.
///
/// # Panics
///
/// If `f` does not finish within `limit` (so that a receive that would hang
/// fails the test instead), or if `f` panics.
pub fn bounded<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(e) => std::panic::resume_unwind(e),
            Ok(()) => panic!("the operation ended without a result"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("operation did not finish within {limit:?}")
        }
    }
}

/// Asserts that a wait meant to last `timeout`, started at `start`, lasted
/// between 0.6x and 10x `timeout` (a bound for semantics, not speed).
///
/// # Panics
///
/// If the time elapsed since `start` is outside those bounds.
pub fn assert_lasted(start: Instant, timeout: Duration) {
    let took = start.elapsed();
    assert!(
        took >= timeout.mul_f64(0.6) && took < timeout * 10,
        "a {timeout:?} wait took {took:?}"
    );
}

/// Gives a child time (100 ms) to block in a wait it has announced it is
/// entering.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(100));
}
