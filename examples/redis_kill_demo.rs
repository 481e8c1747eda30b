//! A distributed pool on Redis redoing the task of a SIGKILLed worker.
//!
//! Starts its own `redis-server` on a free loopback port (or uses
//! `--backend redis://HOST:PORT`), forks 3 worker processes, submits 6 tasks
//! of 2 s each, SIGKILLs the worker running the first task mid-task, and
//! shows that task redone by another worker, with exactly one result
//! committed. Exits non-zero if that does not hold.
//!
//! ```text
//! cargo run --features redis --example redis_kill_demo
//! ```

use std::time::{Duration, Instant};

mod common;

use common::redis_tasks::{registry, slow_job_task};
use multiproc::{Process, RedisBackend, RedisPool, SharedList, TaskOptions, Worker};

const NS: &str = "kill_demo";

/// One worker process: one local pool process, no prefetch.
fn worker(url: String) -> u64 {
    let Ok(backend) = RedisBackend::open(&url) else {
        return 0;
    };
    Worker::builder(backend, registry())
        .namespace(NS)
        .processes(1)
        .prefetch(0)
        .stop_when_idle(Duration::from_secs(60))
        .run()
        .map_or(0, |r| r.completed)
}

fn fail(msg: String) -> multiproc::Error {
    multiproc::Error::new(multiproc::ErrorKind::Remote, msg)
}

fn main() -> multiproc::Result<()> {
    // The server: given, or our own (stopped when `_server` drops).
    let (url, _server) = match common::redis_backend_arg() {
        Some(url) => (url, None),
        None => {
            let s = multiproc_testkit::RedisServer::start();
            (s.url(), Some(s))
        }
    };
    println!("redis at {url}");
    let backend = RedisBackend::open(&url)?;
    let pool = RedisPool::builder(backend.clone()).namespace(NS).build()?;
    pool.purge()?;
    let log = format!("{NS}:attempts");
    backend.list::<String>(&log).clear()?;

    let mut workers: Vec<Process<u64>> = (0..3)
        .map(|_| Process::spawn(worker, url.clone()))
        .collect::<multiproc::Result<_>>()?;
    println!(
        "3 workers: pids {:?}",
        workers.iter().map(Process::pid).collect::<Vec<_>>()
    );

    let job = slow_job_task();
    let handles = (0..6)
        .map(|i| {
            pool.apply_async_with(
                &job,
                (url.clone(), log.clone(), format!("task-{i}"), 2000),
                TaskOptions::new().id(format!("task-{i}")),
            )
        })
        .collect::<multiproc::Result<Vec<_>>>()?;

    // Wait until task-0 runs, find the worker that holds it, kill it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let attempts = backend.list::<String>(&log);
    while !attempts.to_vec()?.iter().any(|a| a.starts_with("task-0:")) {
        if Instant::now() > deadline {
            return Err(fail("task-0 never started".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300)); // mid-task
    let holder = pool
        .running()?
        .into_iter()
        .find(|t| t.id == "task-0")
        .and_then(|t| t.worker_pid())
        .ok_or_else(|| fail("nobody holds task-0".into()))?;
    let victim = workers
        .iter()
        .position(|w| w.pid() == holder)
        .ok_or_else(|| fail(format!("no worker with pid {holder}")))?;
    let victim = workers.remove(victim);
    victim.kill()?;
    let killed = Instant::now();
    println!("SIGKILLed worker {holder} while it ran task-0");
    let _ = victim.join();

    let mut ok = true;
    for h in handles {
        let id = h.id().to_owned();
        let r = h.get_timeout(Duration::from_secs(60))?;
        if id == "task-0" {
            println!(
                "task-0 redone: result {r:?} {:.1} s after the kill",
                killed.elapsed().as_secs_f64()
            );
        }
    }
    let all = attempts.to_vec()?;
    let runs0 = all.iter().filter(|a| a.starts_with("task-0:")).count();
    let stats = pool.stats()?;
    println!("attempts logged: {all:?}");
    println!(
        "task-0 ran {runs0} times; results committed: {} for 6 tasks; redelivered {}",
        stats.completed, stats.redelivered
    );
    let committed0 = pool.result_of::<String>("task-0")?;
    ok &= runs0 == 2 && stats.completed == 6 && committed0.as_deref() == Some("task-0");
    pool.shutdown_workers()?;
    for w in workers {
        println!("worker {} committed {} results", w.pid(), w.join()?);
    }
    pool.purge()?;
    if !ok {
        return Err(fail("the killed task was not redone exactly once".into()));
    }
    println!("ok: the killed worker's task was redone by another worker, one result committed");
    Ok(())
}
