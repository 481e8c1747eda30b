//! The task functions of the Redis examples, registered by name on master
//! and workers alike (no code crosses the wire).
#![allow(dead_code)] // each example uses part of it

use std::time::Duration;

use multiproc::{Registry, SharedList, TaskFn};

/// Squares a number (the task of task_master / task_worker).
pub fn square(n: i64) -> i64 {
    n * n
}

/// Appends `tag:pid` to the Redis list `log` at `url`, works `ms`, returns
/// `tag`: a log of every attempt, so that a redone task shows twice.
pub fn slow_job((url, log, tag, ms): (String, String, String, u64)) -> String {
    if let Ok(b) = multiproc::RedisBackend::open(&url) {
        let _ = b
            .list::<String>(&log)
            .push(&format!("{tag}:{}", std::process::id()));
    }
    std::thread::sleep(Duration::from_millis(ms));
    tag
}

/// Every task function of the examples.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("square", square);
    r.register("slow_job", slow_job);
    r
}

/// The typed handle on `square`.
pub fn square_task() -> TaskFn<i64, i64> {
    TaskFn::named("square")
}

/// The typed handle on `slow_job`.
pub fn slow_job_task() -> TaskFn<(String, String, String, u64), String> {
    TaskFn::named("slow_job")
}
