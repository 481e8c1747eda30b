//! `Process` basics: spawn, join a result, a panic, a kill, a timeout, and the
//! same through the fork server.
//!
//! Run with `cargo run --example process_basics`.

use std::time::Duration;

use multiproc::{ErrorKind, ExitStatus, Process};

fn square(x: u64) -> u64 {
    x * x
}

fn fail(msg: String) {
    panic!("{msg}");
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn main() -> multiproc::Result<()> {
    // The fork server: first thing in main, before any thread.
    multiproc::init()?;

    let p = Process::spawn(square, 12)?;
    println!("{} (pid {}) running square(12)", p.name(), p.pid());
    println!("joined: {}", p.join()?);

    let err = Process::builder()
        .name("failing")
        .spawn(fail, "bad input".to_string())?
        .join()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TaskPanicked);
    println!("panic came back: {err}");

    let p = Process::spawn(sleep_ms, 60_000)?;
    p.kill()?;
    let err = p.join().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WorkerLost);
    assert_eq!(
        err.exit_info().map(|i| i.status),
        Some(ExitStatus::Signal(9))
    );
    println!("killed child: {err}");

    let mut p = Process::spawn(sleep_ms, 200)?;
    let err = p.join_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(err.is_timeout());
    println!("join_timeout(10 ms): {err}");
    println!("then join: {}", p.join_timeout(Duration::from_secs(10))?);

    let procs: Vec<Process<u64>> = (0..8)
        .map(|i| Process::spawn(square, i))
        .collect::<Result<_, _>>()?;
    let results: Vec<u64> = procs
        .into_iter()
        .map(|p| p.join())
        .collect::<Result<_, _>>()?;
    println!("8 processes: {results:?}");
    Ok(())
}
