//! Stress tests of the futex-based primitives for lost wake-ups: many waiter
//! processes, many rounds, a handshake per round so that each round proves
//! that every waiter was released, and bounded waits whose failure fails the
//! test (the children are killed by their `Kid` guards).

use std::time::{Duration, Instant};

use multiproc::queue::Queue;
use multiproc::sync::{Barrier, Condition, Event, Semaphore};
use multiproc::value::{RawArray, RawValue};
use multiproc_testkit::{serial_clean, Kid};

/// Waiter processes per test.
const WAITERS: usize = 8;
/// How long a round may take before the test calls a waiter stuck: far
/// beyond any wake-up on a busy machine, far below a hang.
const ROUND: Duration = Duration::from_secs(20);

/// The scheduler state (`R`, `S`, ...) in a `/proc/.../stat` file.
fn state_in(stat_path: &str) -> char {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .unwrap_or('?')
}

/// The `stat` file of process `pid`.
fn proc_stat(pid: i32) -> String {
    format!("/proc/{pid}/stat")
}

/// Waits until every process of `pids` sleeps (state `S`).
fn until_asleep(pids: &[i32]) {
    let paths: Vec<String> = pids.iter().map(|&p| proc_stat(p)).collect();
    until_all_asleep(&paths);
}

/// Waits until every task whose `stat` file is in `paths` sleeps.
fn until_all_asleep(paths: &[String]) {
    let deadline = Instant::now() + ROUND;
    while !paths.iter().all(|p| state_in(p) == 'S') {
        assert!(
            Instant::now() < deadline,
            "waiters never fell asleep: {:?}",
            paths.iter().map(|p| state_in(p)).collect::<String>()
        );
        std::thread::yield_now();
    }
}

/// Takes `n` units of `sem`, each within [`ROUND`].
fn take(sem: &Semaphore, n: usize, what: &str, round: u32) {
    for i in 0..n {
        match sem.acquire_timeout(ROUND) {
            Some(g) => g.forget(),
            None => panic!("round {round}: only {i} of {n} {what} (a waiter is stuck)"),
        }
    }
}

/// In a waiter: waits (busy, never asleep, so that [`until_asleep`] sees only
/// the primitive under test) until the main process opens round `r`.
fn enter_round(round: &RawValue<u32>, r: u32) -> Result<(), String> {
    let deadline = Instant::now() + multiproc_testkit::LIMIT;
    while round.get() != r {
        if Instant::now() >= deadline {
            return Err(format!("round {r} never opened"));
        }
        std::thread::yield_now();
    }
    Ok(())
}

type RoundArgs<P> = (P, Semaphore, RawValue<u32>, u32);

fn event_waiter((ev, done, round, rounds): RoundArgs<Event>) -> Result<u32, String> {
    for r in 0..rounds {
        enter_round(&round, r)?;
        if !ev.wait_timeout(multiproc_testkit::LIMIT) {
            return Err(format!("round {r}: wait timed out"));
        }
        done.release().map_err(|e| e.to_string())?;
    }
    Ok(rounds)
}

/// `rounds` rounds in which `processes` waiter processes and `threads`
/// waiter threads of this process all sleep in `wait()`, then `set()` at
/// once followed by `clear()` must release every one of them.
fn event_rounds(processes: usize, threads: usize, rounds: u32) {
    let ev = Event::new().unwrap();
    let done = Semaphore::new(0).unwrap();
    let round = RawValue::new(u32::MAX).unwrap();
    let args = || (ev.clone(), done.clone(), round.clone(), rounds);
    let kids: Vec<_> = (0..processes)
        .map(|_| Kid::spawn(event_waiter, args()))
        .collect();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let waiting: Vec<_> = (0..threads)
        .map(|_| {
            let (args, tid_tx) = (args(), tid_tx.clone());
            std::thread::spawn(move || {
                tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
                event_waiter(args)
            })
        })
        .collect();
    let mut paths: Vec<String> = kids.iter().map(|k| proc_stat(k.pid())).collect();
    for _ in 0..threads {
        let tid = tid_rx.recv_timeout(ROUND).expect("a waiter thread started");
        paths.push(format!("/proc/self/task/{tid}/stat"));
    }
    for r in 0..rounds {
        round.set(r);
        until_all_asleep(&paths);
        ev.set();
        ev.clear();
        take(&done, processes + threads, "waiters released", r);
    }
    for t in waiting {
        assert_eq!(t.join().unwrap(), Ok(rounds));
    }
    for k in kids {
        assert_eq!(k.join(), Ok(rounds));
    }
}

/// Issue 8, item 3: `set()` at once followed by `clear()` releases every
/// process blocked in `wait()`, with `true`.
#[test]
fn event_set_then_clear_releases_every_waiter() {
    let _s = serial_clean();
    event_rounds(WAITERS, 0, 10_000);
}

/// Item 3 for threads too: waiter threads of this process and waiter
/// processes, blocked in `wait()` together, are all released by `set()`
/// at once followed by `clear()`.
#[test]
fn event_set_then_clear_releases_waiting_threads_and_processes() {
    let _s = serial_clean();
    event_rounds(WAITERS / 2, WAITERS / 2, 2_000);
}

type CondArgs = (Condition, Semaphore, RawValue<u32>, u32);

fn condition_waiter((cond, arrived, notified_round, rounds): CondArgs) -> Result<u32, String> {
    for r in 0..rounds {
        let g = cond.lock().map_err(|e| e.to_string())?;
        arrived.release().map_err(|e| e.to_string())?;
        let (g, notified) = cond
            .wait_timeout(g, multiproc_testkit::LIMIT)
            .map_err(|e| e.to_string())?;
        if !notified {
            return Err(format!("round {r}: wait timed out"));
        }
        let n = notified_round.get();
        if n != r {
            return Err(format!(
                "round {r}: woken, but the last notify was round {n}"
            ));
        }
        drop(g);
    }
    Ok(rounds)
}

/// `notify_all` wakes every process that waits, even when the first woken
/// ones wait again at once (they must not take the others' wake-ups).
#[test]
fn condition_notify_all_wakes_every_waiter_each_round() {
    let _s = serial_clean();
    let rounds = 2_000;
    let cond = Condition::new().unwrap();
    let arrived = Semaphore::new(0).unwrap();
    let notified_round = RawValue::new(u32::MAX).unwrap();
    let kids: Vec<_> = (0..WAITERS)
        .map(|_| {
            let args = (
                cond.clone(),
                arrived.clone(),
                notified_round.clone(),
                rounds,
            );
            Kid::spawn(condition_waiter, args)
        })
        .collect();
    for r in 0..rounds {
        // Each arrival is made under the lock, which its waiter gives up
        // only inside `wait`: once we hold the lock, all of them wait.
        take(&arrived, WAITERS, "waiters arrived", r);
        let g = cond.lock().unwrap();
        notified_round.set(r);
        cond.notify_all(&g).unwrap();
        drop(g);
    }
    for k in kids {
        assert_eq!(k.join(), Ok(rounds));
    }
}

fn barrier_party(
    (b, arrived, me, rounds): (Barrier, RawArray<u32>, usize, u32),
) -> Result<u32, String> {
    for r in 1..=rounds {
        arrived.set(me, r).map_err(|e| e.to_string())?;
        b.wait_timeout(multiproc_testkit::LIMIT)
            .map_err(|e| format!("round {r}: {e}"))?;
        // Nobody passes before everyone arrived.
        if let Some(j) = (0..arrived.len()).find(|&j| arrived.get(j).unwrap_or(0) < r) {
            return Err(format!("round {r}: passed before party {j} arrived"));
        }
    }
    Ok(rounds)
}

/// A barrier passed many times in a row by many processes never loses a
/// party, and never lets one through early.
#[test]
fn barrier_rounds_release_every_party() {
    let _s = serial_clean();
    let rounds = 2_000;
    let b = Barrier::new(WAITERS as u32).unwrap();
    let arrived = RawArray::<u32>::new(WAITERS).unwrap();
    let kids: Vec<_> = (0..WAITERS)
        .map(|me| Kid::spawn(barrier_party, (b.clone(), arrived.clone(), me, rounds)))
        .collect();
    for k in kids {
        assert_eq!(k.join(), Ok(rounds));
    }
    assert!(!b.broken());
}

fn semaphore_taker((gate, done, round, rounds): RoundArgs<Semaphore>) -> Result<u32, String> {
    for r in 0..rounds {
        enter_round(&round, r)?;
        match gate.acquire_timeout(multiproc_testkit::LIMIT) {
            Some(g) => g.forget(),
            None => return Err(format!("round {r}: acquire timed out")),
        }
        done.release().map_err(|e| e.to_string())?;
    }
    Ok(rounds)
}

/// Units released one after the other while every taker sleeps each reach
/// a taker: no release is lost.
#[test]
fn semaphore_releases_reach_every_sleeping_taker() {
    let _s = serial_clean();
    let rounds = 2_000;
    let gate = Semaphore::new(0).unwrap();
    let done = Semaphore::new(0).unwrap();
    let round = RawValue::new(u32::MAX).unwrap();
    let kids: Vec<_> = (0..WAITERS)
        .map(|_| {
            let args = (gate.clone(), done.clone(), round.clone(), rounds);
            Kid::spawn(semaphore_taker, args)
        })
        .collect();
    let pids: Vec<i32> = kids.iter().map(Kid::pid).collect();
    for r in 0..rounds {
        round.set(r);
        until_asleep(&pids);
        for _ in 0..WAITERS {
            gate.release().unwrap();
        }
        take(&done, WAITERS, "units taken", r);
    }
    for k in kids {
        assert_eq!(k.join(), Ok(rounds));
    }
    assert_eq!(gate.get_value(), 0);
}

fn queue_consumer((q, done, round, rounds): RoundArgs<Queue<u32>>) -> Result<u32, String> {
    for r in 0..rounds {
        enter_round(&round, r)?;
        q.get_timeout(multiproc_testkit::LIMIT)
            .map_err(|e| format!("round {r}: {e}"))?;
        done.release().map_err(|e| e.to_string())?;
    }
    Ok(rounds)
}

/// Items put one after the other while every consumer sleeps on the queue's
/// doorbell each reach a consumer.
#[test]
fn queue_puts_reach_every_sleeping_consumer() {
    let _s = serial_clean();
    let rounds = 1_000;
    let q = Queue::<u32>::new().unwrap();
    let done = Semaphore::new(0).unwrap();
    let round = RawValue::new(u32::MAX).unwrap();
    let kids: Vec<_> = (0..WAITERS)
        .map(|_| {
            let args = (q.clone(), done.clone(), round.clone(), rounds);
            Kid::spawn(queue_consumer, args)
        })
        .collect();
    let pids: Vec<i32> = kids.iter().map(Kid::pid).collect();
    for r in 0..rounds {
        round.set(r);
        until_asleep(&pids);
        for i in 0..WAITERS as u32 {
            q.put(i).unwrap();
        }
        take(&done, WAITERS, "items taken", r);
    }
    for k in kids {
        assert_eq!(k.join(), Ok(rounds));
    }
}
