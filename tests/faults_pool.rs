//! Fault injection on the pool: workers SIGKILLed at random during large
//! `map`s and `imap`s, a worker stopped past its task timeout, a task that
//! allocates past an `RLIMIT_AS` set by the initializer. Every submitted
//! task ends in exactly one outcome, nothing hangs, the pool ends at full
//! size, and no process or shared memory is left.
//!
//! Sizes: 20,000 tasks per stream by default; `MULTIPROC_FAULTS=full` runs
//! the 100,000.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc::{ErrorKind, IMapOptions, Pool, Value};
use multiproc_testkit::{alive, checked, gone, kill_pid, wait_until};

/// The bound of each scenario.
const LIMIT: Duration = Duration::from_secs(60);
/// How long the pool may take to be back at full size.
const REFILL: Duration = Duration::from_secs(10);
const WORKERS: usize = 3;

/// Tasks per stream: the 100,000 with `MULTIPROC_FAULTS=full`.
fn tasks() -> u64 {
    if std::env::var("MULTIPROC_FAULTS").as_deref() == Ok("full") {
        100_000
    } else {
        20_000
    }
}

/// A task that works about 20 µs and returns its input.
fn work(x: u64) -> u64 {
    let t = Instant::now();
    let mut acc = x;
    while t.elapsed() < Duration::from_micros(20) {
        acc = std::hint::black_box(acc.wrapping_mul(31).wrapping_add(7));
    }
    std::hint::black_box(acc);
    x
}

/// SIGKILLs a worker of `pool` every `every` until stopped; counts its kills.
struct Killer {
    stop: Arc<AtomicBool>,
    kills: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Killer {
    fn start(pids: impl Fn() -> Vec<i32> + Send + 'static, every: Duration) -> Killer {
        let stop = Arc::new(AtomicBool::new(false));
        let kills = Arc::new(AtomicU64::new(0));
        let (s, k) = (Arc::clone(&stop), Arc::clone(&kills));
        let handle = std::thread::spawn(move || {
            // A small xorshift: which worker dies is arbitrary, not fixed.
            let mut seed = u64::from(std::process::id()) | 1;
            while !s.load(Ordering::SeqCst) {
                std::thread::sleep(every);
                let p = pids();
                if p.is_empty() {
                    continue;
                }
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                kill_pid(p[(seed % p.len() as u64) as usize]);
                k.fetch_add(1, Ordering::SeqCst);
            }
        });
        Killer {
            stop,
            kills,
            handle: Some(handle),
        }
    }

    /// Stops killing; returns how many kills were sent.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.kills.load(Ordering::SeqCst)
    }
}

impl Drop for Killer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn killer_for(pool: &Arc<Pool>) -> Killer {
    let p = Arc::clone(pool);
    Killer::start(move || p.worker_pids(), Duration::from_millis(5))
}

/// Asserts that the pool is back at `WORKERS` live workers and still works.
fn assert_full_size(pool: &Pool) {
    assert!(
        wait_until(REFILL, || {
            let p = pool.worker_pids();
            p.len() == WORKERS && p.iter().all(|&w| alive(w))
        }),
        "the pool is not back at full size: {:?}",
        pool.worker_pids()
    );
    assert_eq!(pool.apply(work, 7).unwrap(), 7);
}

/// Checks a stream's outcomes: each value once, every error `WorkerLost`,
/// values + errors == submitted.
fn check_outcomes(n: u64, outcomes: Vec<multiproc::Result<u64>>, ordered: bool) -> (u64, u64) {
    assert_eq!(outcomes.len() as u64, n, "one outcome per task");
    let mut seen = HashSet::new();
    let mut lost = 0u64;
    for (i, o) in outcomes.into_iter().enumerate() {
        match o {
            Ok(v) => {
                assert!(v < n, "value {v} was never submitted");
                assert!(seen.insert(v), "value {v} delivered twice");
                if ordered {
                    assert_eq!(v, i as u64, "imap out of order");
                }
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WorkerLost, "{e}");
                lost += 1;
            }
        }
    }
    (seen.len() as u64, lost)
}

fn stream_under_kills(ordered: bool) {
    checked(LIMIT, move || {
        let n = tasks();
        let pool = Arc::new(Pool::new(WORKERS).unwrap());
        let killer = killer_for(&pool);
        let t = Instant::now();
        let opts = IMapOptions::new().chunksize(16);
        let it = if ordered {
            pool.imap_with(work, 0..n, opts).unwrap()
        } else {
            pool.imap_unordered_with(work, 0..n, opts).unwrap()
        };
        let outcomes: Vec<_> = it.collect();
        let took = t.elapsed();
        let kills = killer.stop();
        let (ok, lost) = check_outcomes(n, outcomes, ordered);
        eprintln!(
            "{} of {n}: {ok} values, {lost} WorkerLost, {kills} kills, {took:?}",
            if ordered { "imap" } else { "imap_unordered" }
        );
        assert!(kills > 0 && lost > 0, "no worker was killed mid-task");
        assert_full_size(&pool);
        drop(pool);
    });
}

#[test]
fn random_worker_kills_during_imap_unordered() {
    stream_under_kills(false);
}

#[test]
fn random_worker_kills_during_imap() {
    stream_under_kills(true);
}

/// `map` ends in exactly one outcome per call (its values, or the first
/// item's `WorkerLost`), several times in a row under kills.
#[test]
fn random_worker_kills_during_map() {
    checked(LIMIT, || {
        let n = tasks();
        let pool = Arc::new(Pool::new(WORKERS).unwrap());
        let killer = killer_for(&pool);
        let (mut ok, mut lost) = (0, 0);
        for _ in 0..5 {
            match pool.map_chunksize(work, 0..n / 5, 16) {
                Ok(v) => {
                    assert_eq!(v, (0..n / 5).collect::<Vec<_>>());
                    ok += 1;
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::WorkerLost, "{e}");
                    lost += 1;
                }
            }
        }
        let kills = killer.stop();
        eprintln!("map: {ok} complete, {lost} WorkerLost, {kills} kills");
        assert_full_size(&pool);
        // Without kills every map completes.
        assert_eq!(pool.map(work, 0..1_000u64).unwrap().len(), 1_000);
        drop(pool);
    });
}

/// Publishes the worker's pid, then works for `ms` milliseconds.
fn record_pid_then_work((slot, ms): (Value<i32>, u64)) -> u64 {
    slot.set(std::process::id() as i32);
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(ms) {
        std::thread::sleep(Duration::from_millis(1));
    }
    ms
}

#[test]
fn a_stopped_worker_times_out_and_is_replaced() {
    checked(LIMIT, || {
        let timeout = Duration::from_millis(300);
        let pool = Pool::builder()
            .processes(2)
            .task_timeout(timeout)
            .build()
            .unwrap();
        let slot = Value::new(0i32).unwrap();
        let r = pool
            .apply_async(record_pid_then_work, (slot.clone(), 100))
            .unwrap();
        assert!(wait_until(Duration::from_secs(10), || slot.get() != 0));
        let pid = slot.get();
        let t = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGSTOP,
        )
        .unwrap();
        let e = r.get_timeout(Duration::from_secs(10)).unwrap_err();
        let took = t.elapsed();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        eprintln!("stopped worker: Timeout after {took:?} (task timeout {timeout:?})");
        assert!(
            wait_until(Duration::from_secs(5), || gone(pid)),
            "not killed"
        );
        assert!(wait_until(REFILL, || {
            let p = pool.worker_pids();
            p.len() == 2 && !p.contains(&pid) && p.iter().all(|&w| alive(w))
        }));
        // Other tasks go on.
        assert_eq!(pool.map(work, 0..100u64).unwrap().len(), 100);
        drop(pool);
    });
}

/// Sets `RLIMIT_AS` to this worker's current address space plus `extra` MiB.
fn limit_address_space(extra_mib: u64) -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or("no VmSize")?;
    let limit = kib * 1024 + (extra_mib << 20);
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, limit, limit)
        .map_err(|e| e.to_string())
}

/// Allocates and touches `mib` MiB; returns their sum.
fn allocate(mib: usize) -> u64 {
    let v = vec![1u8; mib << 20];
    v.iter().step_by(4096).map(|&b| u64::from(b)).sum()
}

#[test]
fn a_task_past_rlimit_as_fails_and_the_pool_goes_on() {
    checked(LIMIT, || {
        let pool = Pool::builder()
            .processes(2)
            .initializer(limit_address_space, 256)
            .build()
            .unwrap();
        assert_eq!(pool.apply(allocate, 16).unwrap(), 16 << 8);
        let e = pool.apply(allocate, 4096).unwrap_err();
        eprintln!("allocation past RLIMIT_AS: {e}");
        assert_eq!(e.kind(), ErrorKind::WorkerLost, "{e}");
        // The pool goes on, on its replacement worker too.
        let got = pool.map(allocate, vec![8usize; 20]).unwrap();
        assert_eq!(got, vec![8u64 << 8; 20]);
        assert!(wait_until(REFILL, || pool.worker_pids().len() == 2));
        drop(pool);
    });
}
