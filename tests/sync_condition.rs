//! `Condition` across processes: notify(n) wakes exactly n waiters,
//! notify_all wakes all, wait_for and timeouts, and a SIGKILLed lock holder.

mod sync_support;

use std::time::{Duration, Instant};

use multiproc::sync::{Condition, Event, Lock, LockError};
use multiproc::value::RawValue;
use multiproc::ErrorKind;
use sync_support::{assert_lasted, eventually, serial, settle, Kid, LIMIT};

/// Waits once (up to LIMIT); counts itself in `woken` when notified.
fn wait_once((cond, woken): (Condition, RawValue<u32>)) -> bool {
    let g = cond.lock().unwrap();
    let (g, notified) = cond.wait_timeout(g, LIMIT).unwrap();
    if notified {
        woken.fetch_add(1);
    }
    drop(g);
    notified
}

fn waiting(cond: &Condition) -> usize {
    // Debug shows the number of registered waiters.
    let s = format!("{cond:?}");
    s.rsplit("waiters: ")
        .next()
        .and_then(|r| r.trim_end_matches(" }").parse().ok())
        .unwrap()
}

#[test]
fn notify_wakes_exactly_n_and_notify_all_the_rest() {
    let _s = serial();
    for cond in [
        Condition::new().unwrap(),
        Condition::with_lock(Lock::new().unwrap()).unwrap(),
    ] {
        let woken = RawValue::new(0u32).unwrap();
        let kids: Vec<_> = (0..3)
            .map(|_| Kid::spawn(wait_once, (cond.clone(), woken.clone())))
            .collect();
        eventually(|| waiting(&cond) == 3);
        {
            let g = cond.lock().unwrap();
            cond.notify(&g, 1).unwrap();
        }
        eventually(|| woken.get() == 1);
        settle();
        assert_eq!(woken.get(), 1, "notify(1) must wake exactly one waiter");
        {
            let g = cond.lock().unwrap();
            cond.notify_all(&g).unwrap();
        }
        for k in kids {
            assert!(k.join());
        }
        assert_eq!(woken.get(), 3);
    }
}

fn wait_for_value((cond, v): (Condition, RawValue<u32>)) -> u32 {
    let g = cond.lock().unwrap();
    let g = cond.wait_for(g, || v.get() >= 3).unwrap();
    drop(g);
    v.get()
}

#[test]
fn wait_for_rechecks_the_predicate_and_times_out() {
    let _s = serial();
    let cond = Condition::new().unwrap();
    let v = RawValue::new(0u32).unwrap();
    let kid = Kid::spawn(wait_for_value, (cond.clone(), v.clone()));
    for _ in 0..3 {
        eventually(|| waiting(&cond) == 1);
        let g = cond.lock().unwrap();
        v.fetch_add(1);
        cond.notify_all(&g).unwrap();
    }
    assert_eq!(kid.join(), 3);

    let g = cond.lock().unwrap();
    let t = Instant::now();
    let (g, ok) = cond
        .wait_for_timeout(g, Duration::from_millis(200), || v.get() > 10)
        .unwrap();
    assert_lasted(t, Duration::from_millis(200));
    assert!(!ok);
    let t = Instant::now();
    let (g, notified) = cond.wait_timeout(g, Duration::from_millis(200)).unwrap();
    assert_lasted(t, Duration::from_millis(200));
    assert!(!notified);
    assert_eq!(waiting(&cond), 0, "a timed-out waiter withdraws");
    // A guard of another condition is refused.
    let other = Condition::new().unwrap();
    assert_eq!(
        other.notify(&g, 1).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
}

fn hold_forever((cond, locked): (Condition, Event)) {
    let _g = cond.lock().unwrap();
    locked.set();
    std::thread::sleep(LIMIT * 2);
}

/// Waits with a short timeout; its re-acquire then blocks on the holder.
fn wait_then_report((cond, started): (Condition, Event)) -> String {
    let g = cond.lock().unwrap();
    started.set();
    match cond.wait_timeout(g, Duration::from_millis(50)) {
        Ok((_g, n)) => format!("ok {n}"),
        Err(LockError::OwnerDied((_g, n))) => format!("owner-died {n}"),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn killed_holder_of_the_condition_lock_gives_owner_died() {
    let _s = serial();
    let cond = Condition::new().unwrap();
    let (started, locked) = (Event::new().unwrap(), Event::new().unwrap());
    // The waiter is inside wait() (lock released) when the holder takes the
    // lock; its timeout passes and it blocks re-acquiring.
    let waiter = Kid::spawn(wait_then_report, (cond.clone(), started.clone()));
    assert!(started.wait_timeout(LIMIT));
    eventually(|| waiting(&cond) == 1);
    let holder = Kid::spawn(hold_forever, (cond.clone(), locked.clone()));
    assert!(locked.wait_timeout(LIMIT));
    settle();
    holder.kill();
    assert_eq!(waiter.join(), "owner-died false");

    // Next locker after another death, and recovery.
    locked.clear();
    let holder = Kid::spawn(hold_forever, (cond.clone(), locked.clone()));
    assert!(locked.wait_timeout(LIMIT));
    holder.kill();
    let e = cond.lock().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OwnerDied);
    let g = e.recover().unwrap();
    cond.notify_all(&g).unwrap();
    drop(g);
    drop(cond.lock().unwrap());
}
