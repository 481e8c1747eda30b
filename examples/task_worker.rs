//! The task worker of Python's distributed-manager example: connects to a
//! task master over TCP with the authkey, squares each task, puts
//! "n * n = m" on the result queue, and exits once the task queue has stayed
//! empty for a second.
//!
//! ```text
//! cargo run --example task_worker -- --connect 127.0.0.1:5000 --authkey abc
//! ```
//!
//! With `--backend redis://127.0.0.1:PORT` (and the `redis` feature) it runs
//! a distributed-pool worker instead (two local processes) until the master
//! asks the workers to shut down (or nothing arrives for 60 s).
//!
//! ```text
//! cargo run --features redis --example task_worker -- --backend redis://127.0.0.1:6379
//! ```

use std::time::{Duration, Instant};

mod common;

use common::arg;
use multiproc::{ErrorKind, RemoteManager};

/// Connects, retrying for a while: the master may still be starting.
fn connect(addr: &str, authkey: &[u8]) -> multiproc::Result<RemoteManager> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match RemoteManager::connect(addr, authkey) {
            Ok(m) => return Ok(m),
            Err(e) if e.kind() != ErrorKind::Authentication && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A worker of the Redis pool.
#[cfg(feature = "redis")]
fn redis_worker(url: &str) -> multiproc::Result<()> {
    use multiproc::{RedisBackend, Worker};

    println!("worker on {url}...");
    let backend = RedisBackend::open(url)?;
    let report = Worker::builder(backend, common::redis_tasks::registry())
        .namespace("task_example")
        .processes(2)
        .stop_when_idle(Duration::from_secs(60))
        .run()?;
    println!(
        "worker {} committed {} results; exit.",
        report.consumer, report.completed
    );
    Ok(())
}

#[cfg(not(feature = "redis"))]
fn redis_worker(_url: &str) -> multiproc::Result<()> {
    Err(multiproc::Error::new(
        multiproc::ErrorKind::InvalidArgument,
        "--backend redis://... needs the example built with --features redis",
    ))
}

fn main() -> multiproc::Result<()> {
    if let Some(url) = common::redis_backend_arg() {
        return redis_worker(&url);
    }
    let addr = arg("--connect", "127.0.0.1:5000");
    let authkey = arg("--authkey", "abc");
    println!("Connect to server {addr}...");
    let manager = connect(&addr, authkey.as_bytes())?;
    let tasks = manager.queue::<i64>("task_queue")?;
    let results = manager.queue::<String>("result_queue")?;
    loop {
        match tasks.get_timeout(Duration::from_secs(1)) {
            Ok(n) => {
                println!("run task {n} * {n}...");
                let put = results.put(format!("{n} * {n} = {}", n * n));
                match put.map_err(multiproc::Error::from) {
                    Ok(()) => {}
                    // The master took this last result and stopped before
                    // its reply reached us.
                    Err(e) if matches!(e.kind(), ErrorKind::Closed | ErrorKind::Io) => {
                        println!("the master has gone.");
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) if e.kind() == ErrorKind::Timeout => {
                println!("task queue is empty.");
                break;
            }
            // The master has everything it wanted and stopped serving.
            Err(e) if matches!(e.kind(), ErrorKind::Closed | ErrorKind::Io) => {
                println!("the master has gone.");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    println!("worker exit.");
    Ok(())
}
