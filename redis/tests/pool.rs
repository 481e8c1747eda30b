//! The distributed pool on a real server: workers are forked processes
//! (each with its own local pool), killed with real signals.

use std::time::{Duration, Instant};

use multiproc_ipc::ErrorKind;
use multiproc_redis::{
    Priority, RedisBackend, RedisPool, Registry, SharedDict, SharedList, SharedQueue, TaskFn,
    TaskOptions, Worker,
};
use multiproc_testkit::{serial_clean, wait_until, Kid, RedisServer};
use serde::{Deserialize, Serialize};

fn square(x: u64) -> u64 {
    x * x
}

fn boom(x: u32) -> u32 {
    panic!("boom {x}")
}

/// Records (in the list `key`) that this attempt ran, sleeps, returns `x`.
fn logged((url, key, sleep_ms, x): (String, String, u64, u64)) -> u64 {
    let b = RedisBackend::open(&url).unwrap();
    b.list::<u64>(&key).push(&x).unwrap();
    std::thread::sleep(Duration::from_millis(sleep_ms));
    x
}

/// Records its start in the queue `key` (pid, then waits), returns its pid.
fn announced((url, key, sleep_ms): (String, String, u64)) -> u32 {
    let b = RedisBackend::open(&url).unwrap();
    b.queue::<u32>(&key).put(std::process::id()).unwrap();
    std::thread::sleep(Duration::from_millis(sleep_ms));
    std::process::id()
}

/// Aborts the local process that runs it (SIGABRT).
fn crash(_: u32) -> u32 {
    std::process::abort()
}

fn sleepy(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("square", square);
    r.register("boom", boom);
    r.register("logged", logged);
    r.register("announced", announced);
    r.register("sleepy", sleepy);
    r.register("crash", crash);
    r
}

#[derive(Serialize, Deserialize, Clone)]
struct WorkerArgs {
    url: String,
    processes: usize,
    /// Stop when idle this long (0: only on shutdown).
    idle_ms: u64,
    /// Tasks taken beyond the running ones (None: the default).
    prefetch: Option<usize>,
}

/// (completed, reaped, fenced) of the worker's report.
fn run_worker(a: WorkerArgs) -> (u64, u64, u64) {
    let b = RedisBackend::open(&a.url).unwrap();
    let mut w = Worker::builder(b, registry())
        .processes(a.processes)
        .grace(Duration::from_secs(10));
    if a.idle_ms > 0 {
        w = w.stop_when_idle(Duration::from_millis(a.idle_ms));
    }
    if let Some(n) = a.prefetch {
        w = w.prefetch(n);
    }
    let r = w.run().unwrap();
    (r.completed, r.reaped, r.fenced)
}

fn worker(url: &str, processes: usize, idle_ms: u64) -> Kid<(u64, u64, u64)> {
    Kid::spawn(
        run_worker,
        WorkerArgs {
            url: url.to_owned(),
            processes,
            idle_ms,
            prefetch: None,
        },
    )
}

fn pool(server: &RedisServer) -> RedisPool {
    let b = RedisBackend::open(&server.url()).unwrap();
    RedisPool::builder(b)
        .backoff(Duration::from_millis(20))
        .build()
        .unwrap()
}

#[test]
fn apply_map_and_imap_unordered_round_trip() {
    let _g = serial_clean();
    let server = RedisServer::start();
    let p = pool(&server);
    let w = worker(&server.url(), 2, 0);
    let sq = TaskFn::<u64, u64>::named("square");
    assert_eq!(p.apply_async(&sq, 12).unwrap().get().unwrap(), 144);
    assert_eq!(
        p.map(&sq, 0..200u64).unwrap(),
        (0..200u64).map(|x| x * x).collect::<Vec<_>>()
    );
    let mut un: Vec<u64> = p
        .imap_unordered(&sq, 0..50u64)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    un.sort();
    assert_eq!(un, (0..50u64).map(|x| x * x).collect::<Vec<_>>());
    let h = p
        .apply_async(&TaskFn::<u64, u64>::named("sleepy"), 300)
        .unwrap();
    assert_eq!(
        h.get_timeout(Duration::from_millis(20)).unwrap_err().kind(),
        ErrorKind::Timeout
    );
    assert_eq!(h.get_timeout(Duration::from_secs(10)).unwrap(), 300);
    let s = p.stats().unwrap();
    assert_eq!(s.completed, 252);
    assert_eq!((s.queued, s.running, s.dead_letters), (0, 0, 0));
    assert_eq!(s.workers, 1);
    p.shutdown_workers().unwrap();
    let (completed, _, fenced) = w.join();
    assert_eq!((completed, fenced), (252, 0));
    assert_eq!(p.stats().unwrap().workers, 0);
}

#[test]
fn failures_are_retried_then_dead_lettered_and_unknown_names_fail() {
    let _g = serial_clean();
    let server = RedisServer::start();
    let p = pool(&server);
    let w = worker(&server.url(), 1, 0);
    let boom = TaskFn::<u32, u32>::named("boom");
    let h = p
        .apply_async_with(&boom, 7, TaskOptions::new().max_attempts(3))
        .unwrap();
    let e = h.get_timeout(Duration::from_secs(20)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TaskPanicked, "{e}");
    assert!(e.to_string().contains("boom 7"), "{e}");
    let missing = TaskFn::<u32, u32>::named("nobody-registered-this");
    let e = p.apply_async(&missing, 1).unwrap().get().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let s = p.stats().unwrap();
    assert_eq!((s.retries, s.dead_letters, s.completed), (2, 2, 2));
    // A per-task timeout kills the process running it: a failed attempt.
    let sleepy = TaskFn::<u64, u64>::named("sleepy");
    let e = p
        .apply_async_with(
            &sleepy,
            10_000,
            TaskOptions::new()
                .timeout(Duration::from_millis(200))
                .max_attempts(1),
        )
        .unwrap()
        .get_timeout(Duration::from_secs(20))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    p.shutdown_workers().unwrap();
    w.join();
}

/// A task that kills the local process running it fails that attempt with
/// `WorkerLost` (retried, then dead-lettered), and the worker goes on.
#[test]
fn a_task_that_aborts_its_process_is_retried_then_fails_and_the_worker_goes_on() {
    let _g = serial_clean();
    let server = RedisServer::start();
    let p = pool(&server);
    let w = worker(&server.url(), 1, 0);
    let crash = TaskFn::<u32, u32>::named("crash");
    let e = p
        .apply_async_with(&crash, 1, TaskOptions::new().max_attempts(2))
        .unwrap()
        .get_timeout(Duration::from_secs(20))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WorkerLost, "{e}");
    assert!(e.to_string().contains("SIGABRT"), "{e}");
    let s = p.stats().unwrap();
    assert_eq!((s.retries, s.dead_letters), (1, 1));
    let square = TaskFn::<u64, u64>::named("square");
    let got = p.apply_async(&square, 12).unwrap();
    assert_eq!(got.get_timeout(Duration::from_secs(20)).unwrap(), 144);
    p.shutdown_workers().unwrap();
    w.join();
}

#[test]
fn submission_is_idempotent_by_task_id() {
    let _g = serial_clean();
    let server = RedisServer::start();
    let p = pool(&server);
    let log = "runs";
    let logged = TaskFn::<(String, String, u64, u64), u64>::named("logged");
    let arg = (server.url(), log.to_string(), 0, 5);
    let a = p
        .apply_async_with(&logged, arg.clone(), TaskOptions::new().id("job-1"))
        .unwrap();
    // A master that retries (or another master) submits the same id again.
    let b = p
        .apply_async_with(&logged, arg, TaskOptions::new().id("job-1"))
        .unwrap();
    let w = worker(&server.url(), 1, 0);
    assert_eq!(a.get().unwrap(), 5);
    assert_eq!(b.get_timeout(Duration::from_secs(10)).unwrap(), 5);
    assert_eq!(p.result_of::<u64>("job-1").unwrap(), Some(5));
    let back = RedisBackend::open(&server.url()).unwrap();
    assert_eq!(back.list::<u64>(log).to_vec().unwrap(), vec![5]);
    p.shutdown_workers().unwrap();
    w.join();
}

#[test]
fn priorities_and_delays_order_the_work() {
    let _g = serial_clean();
    let server = RedisServer::start();
    let p = pool(&server);
    let logged = TaskFn::<(String, String, u64, u64), u64>::named("logged");
    let url = server.url();
    let arg = |x: u64| (url.clone(), "order".to_string(), 0, x);
    let delayed = p
        .apply_async_with(
            &logged,
            arg(99),
            TaskOptions::new().delay(Duration::from_millis(600)),
        )
        .unwrap();
    let mut hs = Vec::new();
    for x in 0..3 {
        hs.push(
            p.apply_async_with(&logged, arg(x), TaskOptions::new().priority(Priority::Low))
                .unwrap(),
        );
    }
    for x in 10..13 {
        hs.push(
            p.apply_async_with(&logged, arg(x), TaskOptions::new().priority(Priority::High))
                .unwrap(),
        );
    }
    assert_eq!(p.stats().unwrap().delayed, 1);
    let t = Instant::now();
    // One process, no prefetch race: a worker started after the submissions.
    let w = worker(&server.url(), 1, 0);
    for h in hs {
        h.get().unwrap();
    }
    assert_eq!(delayed.get().unwrap(), 99);
    assert!(t.elapsed() >= Duration::from_millis(400));
    let order = RedisBackend::open(&url)
        .unwrap()
        .list::<u64>("order")
        .to_vec()
        .unwrap();
    assert_eq!(order, vec![10, 11, 12, 0, 1, 2, 99]);
    p.shutdown_workers().unwrap();
    w.join();
}

#[test]
fn a_sigkilled_worker_s_task_is_redone_elsewhere_with_one_result() {
    let _g = serial_clean();
    let server = RedisServer::start();
    let url = server.url();
    let p = pool(&server);
    let victim = worker(&url, 1, 0);
    let announced = TaskFn::<(String, String, u64), u32>::named("announced");
    let h = p
        .apply_async(&announced, (url.clone(), "started".to_string(), 1500))
        .unwrap();
    let back = RedisBackend::open(&url).unwrap();
    let started = back.queue::<u32>("started");
    let first = started.get_timeout(Duration::from_secs(10)).unwrap();
    victim.kill();
    let killed_at = Instant::now();
    let rescuer = worker(&url, 1, 0);
    let second = started.get_timeout(Duration::from_secs(10)).unwrap();
    let redelivery = killed_at.elapsed();
    assert_ne!(first, second);
    assert!(
        redelivery < Duration::from_secs(5),
        "redelivered after {redelivery:?}"
    );
    assert_eq!(h.get().unwrap(), second);
    let s = p.stats().unwrap();
    assert_eq!((s.completed, s.redelivered), (1, 1));
    p.shutdown_workers().unwrap();
    let (completed, _, fenced) = rescuer.join();
    assert_eq!((completed, fenced), (1, 0));
    assert_eq!(
        back.dict::<String, Vec<u8>>("mp:results").len().unwrap(),
        1,
        "exactly one committed result"
    );
}

/// The length of every stream of the default queue, and their counts of
/// acknowledged entries that a trim has not removed yet.
fn stream_lengths(url: &str) -> (u64, u64) {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let (mut len, mut stale) = (0, 0);
    for level in 0..3 {
        let s = format!("mp:q:default:{level}");
        len += redis::cmd("XLEN").arg(&s).query::<u64>(&mut c).unwrap();
        let n: Option<u64> = redis::cmd("GET")
            .arg(format!("{s}:stale"))
            .query(&mut c)
            .unwrap();
        stale += n.unwrap_or(0);
    }
    (len, stale)
}

#[test]
fn acknowledged_entries_leave_the_streams_and_queued_stays_exact() {
    let _g = serial_clean();
    let server = RedisServer::start();
    let url = server.url();
    let p = pool(&server);
    // The oldest entry stays pending, held by a worker that takes nothing
    // else, while another commits 300 newer ones: those cannot be trimmed
    // yet, and must not count as queued.
    let holder = Kid::spawn(
        run_worker,
        WorkerArgs {
            url: url.clone(),
            processes: 1,
            idle_ms: 0,
            prefetch: Some(0),
        },
    );
    let slow = p
        .apply_async(&TaskFn::<u64, u64>::named("sleepy"), 3000)
        .unwrap();
    let t = std::time::Instant::now();
    while p.stats().unwrap().running == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the slow task never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let w = worker(&url, 2, 0);
    let sq = TaskFn::<u64, u64>::named("square");
    assert_eq!(p.map(&sq, 0..300u64).unwrap().len(), 300);
    let s = p.stats().unwrap();
    assert_eq!((s.queued, s.running), (0, 1), "{s:?}");
    let (len, stale) = stream_lengths(&url);
    assert_eq!(
        (len, stale),
        (301, 300),
        "the slow task and the 300 stale entries"
    );
    assert_eq!(slow.get_timeout(Duration::from_secs(20)).unwrap(), 3000);
    // Once the slow entry is acknowledged, the next trim (a trim runs
    // every 64 acknowledgements) removes it and the 300: what stays is
    // newer, acknowledged, and counted as stale.
    assert_eq!(p.map(&sq, 0..128u64).unwrap().len(), 128);
    let (len, stale) = stream_lengths(&url);
    assert!(len == stale && len <= 128, "{len} entries, {stale} stale");
    let s = p.stats().unwrap();
    assert_eq!((s.queued, s.running, s.completed), (0, 0, 429), "{s:?}");
    p.shutdown_workers().unwrap();
    w.join();
    holder.join();
}

#[test]
fn a_long_task_with_a_live_heartbeat_is_not_redelivered() {
    let _g = serial_clean();
    let server = RedisServer::start();
    let url = server.url();
    let p = pool(&server);
    let a = worker(&url, 1, 0);
    let b = worker(&url, 1, 0);
    let logged = TaskFn::<(String, String, u64, u64), u64>::named("logged");
    // Twice the heartbeat's time to live (reduced from 20 s for CI;
    // MULTIPROC_REDIS_PROOFS=full runs the 20 s task).
    let ms = if std::env::var("MULTIPROC_REDIS_PROOFS").is_ok_and(|v| v == "full") {
        20_000
    } else {
        6000
    };
    let h = p
        .apply_async(&logged, (url.clone(), "long".into(), ms, 1))
        .unwrap();
    assert_eq!(h.get_timeout(Duration::from_secs(30)).unwrap(), 1);
    let back = RedisBackend::open(&url).unwrap();
    assert_eq!(
        back.list::<u64>("long").len().unwrap(),
        1,
        "ran exactly once"
    );
    assert_eq!(p.stats().unwrap().redelivered, 0);
    p.shutdown_workers().unwrap();
    a.join();
    b.join();
}

#[test]
fn graceful_shutdown_finishes_running_work() {
    let _g = serial_clean();
    let server = RedisServer::start();
    let url = server.url();
    let p = pool(&server);
    let w = worker(&url, 2, 0);
    let sleepy = TaskFn::<u64, u64>::named("sleepy");
    let hs = p.submit_many(&sleepy, [400u64, 400]).unwrap();
    assert!(wait_until(Duration::from_secs(10), || p
        .stats()
        .unwrap()
        .running
        == 2));
    p.shutdown_workers().unwrap();
    let (completed, _, _) = w.join();
    assert_eq!(completed, 2);
    for h in hs {
        assert_eq!(h.get_timeout(Duration::from_secs(1)).unwrap(), 400);
    }
}
