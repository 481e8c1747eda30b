//! `Barrier` across processes: indices, reuse, and breaking by timeout,
//! abort and reset for every waiter.

mod sync_support;

use std::time::{Duration, Instant};

use multiproc::sync::Barrier;
use multiproc::ErrorKind;
use sync_support::{assert_lasted, eventually, serial, Kid, LIMIT};

fn pass_rounds(b: Barrier) -> Vec<usize> {
    (0..50).map(|_| b.wait_timeout(LIMIT).unwrap()).collect()
}

#[test]
fn parties_pass_together_with_distinct_indices_round_after_round() {
    let _s = serial();
    let b = Barrier::new(3).unwrap();
    assert_eq!(b.parties(), 3);
    let kids: Vec<_> = (0..2).map(|_| Kid::spawn(pass_rounds, b.clone())).collect();
    let mine = pass_rounds(b.clone());
    let theirs: Vec<Vec<usize>> = kids.into_iter().map(Kid::join).collect();
    for round in 0..50 {
        let mut idx = vec![mine[round], theirs[0][round], theirs[1][round]];
        idx.sort();
        assert_eq!(idx, [0, 1, 2], "round {round}");
    }
    assert!(!b.broken());
    assert_eq!(b.n_waiting(), 0);
}

fn wait_report((b, timeout_ms): (Barrier, u64)) -> String {
    match b.wait_timeout(Duration::from_millis(timeout_ms)) {
        Ok(i) => format!("passed {i}"),
        Err(e) => e.kind().to_string(),
    }
}

fn broken() -> String {
    ErrorKind::BrokenBarrier.to_string()
}

#[test]
fn a_timeout_breaks_the_barrier_for_every_waiter() {
    let _s = serial();
    let b = Barrier::new(3).unwrap();
    let patient = Kid::spawn(wait_report, (b.clone(), LIMIT.as_millis() as u64));
    eventually(|| b.n_waiting() == 1);
    let t = Instant::now();
    let e = b.wait_timeout(Duration::from_millis(200)).unwrap_err();
    assert_lasted(t, Duration::from_millis(200));
    assert_eq!(e.kind(), ErrorKind::BrokenBarrier);
    assert_eq!(patient.join(), broken());
    assert!(b.broken());
    assert_eq!(b.wait().unwrap_err().kind(), ErrorKind::BrokenBarrier);
    b.reset().unwrap();
    assert!(!b.broken());
    assert_eq!(b.n_waiting(), 0);
}

#[test]
fn abort_and_reset_break_current_waiters() {
    let _s = serial();
    let b = Barrier::new(3).unwrap();
    let limit = LIMIT.as_millis() as u64;
    let kids: Vec<_> = (0..2)
        .map(|_| Kid::spawn(wait_report, (b.clone(), limit)))
        .collect();
    eventually(|| b.n_waiting() == 2);
    b.abort().unwrap();
    for k in kids {
        assert_eq!(k.join(), broken());
    }
    b.reset().unwrap();

    let kids: Vec<_> = (0..2)
        .map(|_| Kid::spawn(wait_report, (b.clone(), limit)))
        .collect();
    eventually(|| b.n_waiting() == 2);
    b.reset().unwrap();
    for k in kids {
        assert_eq!(k.join(), broken());
    }
    assert!(!b.broken(), "reset leaves it usable");
    let kids: Vec<_> = (0..2)
        .map(|_| Kid::spawn(wait_report, (b.clone(), limit)))
        .collect();
    let mine = b.wait_timeout(LIMIT).unwrap();
    let mut all = vec![mine];
    for k in kids {
        let s = k.join();
        all.push(s.strip_prefix("passed ").unwrap().parse().unwrap());
    }
    all.sort();
    assert_eq!(all, [0, 1, 2]);
}
