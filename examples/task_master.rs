//! The task master of Python's distributed-manager example: serves a task
//! queue and a result queue over TCP (with an authkey), puts 10 random
//! integers as tasks, and prints each result that workers send back.
//!
//! ```text
//! cargo run --example task_master -- --bind 127.0.0.1:5000 --authkey abc
//! cargo run --example task_worker -- --connect 127.0.0.1:5000 --authkey abc
//! ```

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

mod common;

use common::arg;
use multiproc::{ManagerServer, RemoteManager};

const TASKS: usize = 10;

fn main() -> multiproc::Result<()> {
    let bind = arg("--bind", "127.0.0.1:5000");
    let authkey = arg("--authkey", "abc");
    let server = ManagerServer::builder(authkey.as_bytes())
        .queue("task_queue")
        .queue("result_queue")
        .bind(bind.as_str())?;
    println!("task master serving on {}", server.local_addr());

    // The master uses the queues through the network too, as Python's does.
    let manager = RemoteManager::connect(server.local_addr(), authkey.as_bytes())?;
    let tasks = manager.queue::<i64>("task_queue")?;
    let results = manager.queue::<String>("result_queue")?;

    let random = RandomState::new();
    for i in 0..TASKS {
        let n = (random.hash_one(i) % 10_000) as i64;
        println!("Put task {n}...");
        tasks.put(n)?;
    }
    println!("Try get results...");
    for _ in 0..TASKS {
        let r = results.get_timeout(Duration::from_secs(60))?;
        println!("Result: {r}");
    }
    server.shutdown();
    println!("master exit.");
    Ok(())
}
