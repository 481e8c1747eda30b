//! The task master of Python's distributed-manager example: serves a task
//! queue and a result queue over TCP (with an authkey), puts 10 random
//! integers as tasks, and prints each result that workers send back.
//!
//! ```text
//! cargo run --example task_master -- --bind 127.0.0.1:5000 --authkey abc
//! cargo run --example task_worker -- --connect 127.0.0.1:5000 --authkey abc
//! ```
//!
//! With `--backend redis://127.0.0.1:PORT` (and the `redis` feature) the same
//! work runs on the distributed pool instead: the master submits 10 `square`
//! tasks to a `RedisPool`, prints each result, and asks the workers to shut
//! down.
//!
//! ```text
//! cargo run --features redis --example task_master -- --backend redis://127.0.0.1:6379
//! cargo run --features redis --example task_worker -- --backend redis://127.0.0.1:6379
//! ```

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

mod common;

use common::arg;
use multiproc::{ManagerServer, RemoteManager};

const TASKS: usize = 10;

/// The master on the Redis pool.
#[cfg(feature = "redis")]
fn redis_master(url: &str) -> multiproc::Result<()> {
    use common::redis_tasks::square_task;
    use multiproc::{RedisBackend, RedisPool};

    let backend = RedisBackend::open(url)?;
    let pool = RedisPool::builder(backend)
        .namespace("task_example")
        .build()?;
    println!("task master on {url}");
    let random = RandomState::new();
    let square = square_task();
    let mut handles = Vec::new();
    for i in 0..TASKS {
        let n = (random.hash_one(i) % 10_000) as i64;
        println!("Put task {n}...");
        handles.push((n, pool.apply_async(&square, n)?));
    }
    println!("Try get results...");
    for (n, h) in handles {
        let r = h.get_timeout(Duration::from_secs(60))?;
        println!("Result: {n} * {n} = {r}");
    }
    let stats = pool.stats()?;
    println!(
        "committed {} results, {} retries, {} dead letters",
        stats.completed, stats.retries, stats.dead_letters
    );
    pool.shutdown_workers()?;
    println!("master exit.");
    Ok(())
}

#[cfg(not(feature = "redis"))]
fn redis_master(_url: &str) -> multiproc::Result<()> {
    Err(multiproc::Error::new(
        multiproc::ErrorKind::InvalidArgument,
        "--backend redis://... needs the example built with --features redis",
    ))
}

fn main() -> multiproc::Result<()> {
    if let Some(url) = common::redis_backend_arg() {
        return redis_master(&url);
    }
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
