//! The task worker of Python's distributed-manager example: connects to a
//! task master over TCP with the authkey, squares each task, puts
//! "n * n = m" on the result queue, and exits once the task queue has stayed
//! empty for a second.
//!
//! ```text
//! cargo run --example task_worker -- --connect 127.0.0.1:5000 --authkey abc
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

fn main() -> multiproc::Result<()> {
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
                results.put(format!("{n} * {n} = {}", n * n))?;
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
