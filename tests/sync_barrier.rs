//! `Barrier` across processes: indices, reuse, and breaking by timeout,
//! abort and reset for every waiter.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use multiproc::sync::Barrier;
use multiproc::value::{RawArray, RawValue};
use multiproc::ErrorKind;
use multiproc_testkit::{assert_lasted, eventually, serial_shm_checked, Kid, LIMIT};

fn pass_rounds(b: Barrier) -> Vec<usize> {
    (0..50).map(|_| b.wait_timeout(LIMIT).unwrap()).collect()
}

#[test]
fn parties_pass_together_with_distinct_indices_round_after_round() {
    let _s = serial_shm_checked();
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
    let _s = serial_shm_checked();
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
    let _s = serial_shm_checked();
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

/// What the barrier's action sees: (passages so far, arrivals of each
/// party, set to 1 if the action ever ran before every party arrived).
type ActionState = (RawValue<u32>, RawArray<u32>, RawValue<u32>);

/// The action's shared state, inherited by the forked parties; taken (and
/// its shared memory freed) at the end of the test.
static ACTION_STATE: Mutex<Option<ActionState>> = Mutex::new(None);

fn action_state() -> ActionState {
    let state = ACTION_STATE.lock().unwrap_or_else(|p| p.into_inner());
    state
        .clone()
        .expect("action state set before the parties start")
}

/// The action: counts passages, and checks that every party has arrived.
fn count_passage() {
    let (passages, arrivals, early) = action_state();
    let round = passages.get() + 1;
    if (0..arrivals.len()).any(|i| arrivals.get(i).unwrap_or(0) != round) {
        early.set(1);
    }
    passages.set(round);
}

/// A party: for each round, arrive, wait, and check that the action of
/// this passage ran before the release.
fn party_with_action((b, me, rounds): (Barrier, usize, u32)) -> Result<u32, String> {
    let (passages, arrivals, _) = action_state();
    for r in 1..=rounds {
        arrivals.set(me, r).map_err(|e| e.to_string())?;
        b.wait_timeout(LIMIT)
            .map_err(|e| format!("round {r}: {e}"))?;
        let seen = passages.get();
        if seen < r {
            return Err(format!(
                "round {r}: released before the action ran ({seen})"
            ));
        }
    }
    Ok(rounds)
}

/// Issue 8, item 10: the action runs exactly once per passage, after every
/// party arrived and before any is released, in whichever process came last.
#[test]
fn action_runs_once_per_passage_before_the_release() {
    let _s = serial_shm_checked();
    let parties = 4;
    let rounds = 200;
    let state = (
        RawValue::new(0u32).unwrap(),
        RawArray::<u32>::new(parties).unwrap(),
        RawValue::new(0u32).unwrap(),
    );
    *ACTION_STATE.lock().unwrap() = Some(state.clone());
    let b = Barrier::builder(parties as u32)
        .action(count_passage)
        .build()
        .unwrap();
    let kids: Vec<_> = (1..parties)
        .map(|me| Kid::spawn(party_with_action, (b.clone(), me, rounds)))
        .collect();
    let mine = party_with_action((b.clone(), 0, rounds));
    for k in kids {
        assert_eq!(k.join(), Ok(rounds));
    }
    assert_eq!(mine, Ok(rounds));
    assert_eq!(state.0.get(), rounds, "one action per passage");
    assert_eq!(
        state.2.get(),
        0,
        "the action ran before every party arrived"
    );
    ACTION_STATE.lock().unwrap().take();
}

fn action_panics() {
    panic!("the action failed");
}

/// A panicking action breaks the barrier: the party that ran it gets the
/// panic, every other party `BrokenBarrier`.
#[test]
fn a_panicking_action_breaks_the_barrier_for_everyone() {
    let _s = serial_shm_checked();
    let b = Barrier::builder(3).action(action_panics).build().unwrap();
    let kids: Vec<_> = (0..2)
        .map(|_| Kid::spawn(wait_report, (b.clone(), LIMIT.as_millis() as u64)))
        .collect();
    eventually(|| b.n_waiting() == 2);
    let e = b.wait_timeout(LIMIT).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TaskPanicked, "{e}");
    assert_eq!(e.panic_info().unwrap().message, "the action failed");
    for k in kids {
        assert_eq!(k.join(), broken());
    }
    assert!(b.broken());
    assert_eq!(b.n_waiting(), 0);
    b.reset().unwrap();
    assert!(!b.broken());
}

/// `wait()` uses the barrier's default timeout, and breaks it when it runs out.
#[test]
fn wait_uses_the_default_timeout() {
    let _s = serial_shm_checked();
    let b = Barrier::builder(2)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert_eq!(b.timeout(), Some(Duration::from_millis(200)));
    let t = Instant::now();
    let e = b.wait().unwrap_err();
    assert_lasted(t, Duration::from_millis(200));
    assert_eq!(e.kind(), ErrorKind::BrokenBarrier);
    assert!(b.broken());
    // The default travels with the barrier to other processes.
    b.reset().unwrap();
    let other = Kid::spawn(wait_default, b.clone());
    assert_eq!(other.join(), broken());
    assert_eq!(Barrier::new(2).unwrap().timeout(), None);
}

fn wait_default(b: Barrier) -> String {
    match b.wait() {
        Ok(i) => format!("passed {i}"),
        Err(e) => e.kind().to_string(),
    }
}
