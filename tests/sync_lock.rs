//! `Lock` and `RLock` across processes: exclusion, timeouts, re-entrance,
//! ownership errors, and a holder killed with SIGKILL.

use std::time::{Duration, Instant};

use multiproc::sync::{Event, Lock, LockError, RLock};
use multiproc::value::RawValue;
use multiproc::ErrorKind;
use multiproc_testkit::{assert_lasted, serial_shm_checked, settle, Kid, LIMIT};

const N: u64 = 20_000;

fn add_under_lock((lock, total): (Lock, RawValue<u64>)) -> u64 {
    for _ in 0..N {
        let _g = lock.lock().unwrap();
        // A deliberately non-atomic read-modify-write: only the lock keeps it exact.
        total.set(total.get() + 1);
    }
    N
}

#[test]
fn lock_excludes_other_processes() {
    let _s = serial_shm_checked();
    let lock = Lock::new().unwrap();
    let total = RawValue::new(0u64).unwrap();
    let kids: Vec<_> = (0..2)
        .map(|_| Kid::spawn(add_under_lock, (lock.clone(), total.clone())))
        .collect();
    for k in kids {
        assert_eq!(k.join(), N);
    }
    assert_eq!(total.get(), 2 * N);
}

fn hold_until((lock, locked, release): (Lock, Event, Event)) -> bool {
    let g = lock.lock().unwrap();
    locked.set();
    let ok = release.wait_timeout(LIMIT);
    drop(g);
    ok
}

fn hold_forever((lock, locked): (Lock, Event)) {
    let _g = lock.lock().unwrap();
    locked.set();
    std::thread::sleep(LIMIT * 2);
}

#[test]
fn try_lock_and_timeout_while_another_process_holds() {
    let _s = serial_shm_checked();
    let lock = Lock::new().unwrap();
    let (locked, release) = (Event::new().unwrap(), Event::new().unwrap());
    let kid = Kid::spawn(hold_until, (lock.clone(), locked.clone(), release.clone()));
    assert!(locked.wait_timeout(LIMIT));
    assert!(lock.is_locked());
    assert!(matches!(lock.try_lock(), Err(LockError::WouldBlock)));
    let t = Instant::now();
    let e = lock.lock_timeout(Duration::from_millis(200)).unwrap_err();
    assert_lasted(t, Duration::from_millis(200));
    assert!(matches!(e, LockError::Timeout));
    assert_eq!(multiproc::Error::from(e).kind(), ErrorKind::Timeout);
    release.set();
    assert!(kid.join());
    // Released by the other process: free now.
    drop(lock.lock_timeout(LIMIT).unwrap());
}

fn lock_and_report(lock: Lock) -> String {
    match lock.lock_timeout(LIMIT) {
        Ok(_) => "ok".into(),
        Err(LockError::OwnerDied(_guard)) => "owner-died".into(),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn killed_lock_holder_gives_owner_died_to_a_waiting_locker() {
    let _s = serial_shm_checked();
    let lock = Lock::new().unwrap();
    let locked = Event::new().unwrap();
    let holder = Kid::spawn(hold_forever, (lock.clone(), locked.clone()));
    assert!(locked.wait_timeout(LIMIT));
    let waiter = Kid::spawn(lock_and_report, lock.clone());
    settle(); // the waiter is now blocked on the lock
    holder.kill();
    assert_eq!(waiter.join(), "owner-died");
    // Only that locker was told; the lock works normally again.
    drop(lock.lock_timeout(LIMIT).unwrap());
}

#[test]
fn killed_lock_holder_gives_owner_died_to_the_next_locker_who_recovers() {
    let _s = serial_shm_checked();
    let lock = Lock::new().unwrap();
    let locked = Event::new().unwrap();
    let holder = Kid::spawn(hold_forever, (lock.clone(), locked.clone()));
    assert!(locked.wait_timeout(LIMIT));
    holder.kill();
    let e = lock.lock().unwrap_err();
    assert!(e.is_owner_died());
    assert_eq!(e.kind(), ErrorKind::OwnerDied);
    let guard = e.recover().unwrap(); // we hold it: repair, then release
    assert!(lock.is_locked());
    drop(guard);
    assert!(!lock.is_locked());
    drop(lock.lock().unwrap());
    // And as a multiproc::Error:
    let err: multiproc::Error = LockError::OwnerDied(()).into();
    assert_eq!(err.kind(), ErrorKind::OwnerDied);
}

fn rlock_twice_until((rlock, locked, release): (RLock, Event, Event)) -> u32 {
    let a = rlock.lock().unwrap();
    let b = rlock.lock().unwrap();
    let depth = rlock.count();
    locked.set();
    release.wait_timeout(LIMIT);
    drop(b);
    drop(a);
    depth
}

fn rlock_release_not_owned(rlock: RLock) -> String {
    rlock.release().unwrap_err().kind().to_string()
}

fn rlock_hold_forever((rlock, locked): (RLock, Event)) {
    rlock.lock().unwrap().leak();
    rlock.lock().unwrap().leak();
    locked.set();
    std::thread::sleep(LIMIT * 2);
}

fn rlock_lock_and_report(rlock: RLock) -> String {
    match rlock.lock_timeout(LIMIT) {
        Ok(_) => "ok".into(),
        Err(LockError::OwnerDied(_g)) => format!("owner-died at depth {}", rlock.count()),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn rlock_is_reentrant_per_process_and_checks_the_owner() {
    let _s = serial_shm_checked();
    let rlock = RLock::new().unwrap();
    let (locked, release) = (Event::new().unwrap(), Event::new().unwrap());
    let kid = Kid::spawn(
        rlock_twice_until,
        (rlock.clone(), locked.clone(), release.clone()),
    );
    assert!(locked.wait_timeout(LIMIT));
    // Held (twice) by the other process: not ours to take or release.
    assert!(!rlock.is_owned());
    assert!(matches!(rlock.try_lock(), Err(LockError::WouldBlock)));
    assert_eq!(
        rlock.release().unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    release.set();
    assert_eq!(kid.join(), 2);
    // Free once the other process dropped both levels.
    let g = rlock.lock_timeout(LIMIT).unwrap();
    assert_eq!(rlock.count(), 1);
    // Another process cannot release our lock.
    let other = Kid::spawn(rlock_release_not_owned, rlock.clone());
    assert_eq!(other.join(), ErrorKind::InvalidArgument.to_string());
    drop(g);
}

#[test]
fn killed_rlock_holder_gives_owner_died_to_waiting_and_next_lockers() {
    let _s = serial_shm_checked();
    let rlock = RLock::new().unwrap();
    let locked = Event::new().unwrap();
    let holder = Kid::spawn(rlock_hold_forever, (rlock.clone(), locked.clone()));
    assert!(locked.wait_timeout(LIMIT));
    let waiter = Kid::spawn(rlock_lock_and_report, rlock.clone());
    settle();
    holder.kill();
    // The dead holder's depth (2) is forgotten: the new owner is at depth 1.
    assert_eq!(waiter.join(), "owner-died at depth 1");

    // With nobody waiting, the next locker is told.
    locked.clear();
    let holder = Kid::spawn(rlock_hold_forever, (rlock.clone(), locked.clone()));
    assert!(locked.wait_timeout(LIMIT));
    holder.kill();
    let g = rlock.lock().unwrap_err().recover().unwrap();
    let again = rlock.lock().unwrap(); // still re-entrant
    assert_eq!(rlock.count(), 2);
    drop(again);
    drop(g);
    assert!(!rlock.is_owned());
}

/// What another process sees of an `RLock`: (locked, owned by it, count).
fn rlock_seen_from_here(rlock: RLock) -> (bool, bool, u32) {
    (rlock.is_locked(), rlock.is_owned(), rlock.count())
}

/// Issue 8, item 13: an `RLock`'s state is readable from any thread or
/// process, also after its holder died.
#[test]
fn rlock_state_is_readable_from_other_threads_and_processes() {
    let _s = serial_shm_checked();
    let rlock = RLock::new().unwrap();
    assert_eq!(
        Kid::spawn(rlock_seen_from_here, rlock.clone()).join(),
        (false, false, 0)
    );
    let a = rlock.lock().unwrap();
    let b = rlock.lock().unwrap();
    let c = rlock.lock().unwrap();
    assert_eq!(
        (rlock.is_locked(), rlock.is_owned(), rlock.count()),
        (true, true, 3)
    );
    assert_eq!(rlock.owner_tid(), Some(nix::unistd::gettid().as_raw()));
    // Another process and another thread see it held, at depth 3, not theirs.
    assert_eq!(
        Kid::spawn(rlock_seen_from_here, rlock.clone()).join(),
        (true, false, 3)
    );
    let seen = std::thread::scope(|s| s.spawn(|| rlock_seen_from_here(rlock.clone())).join());
    assert_eq!(seen.unwrap(), (true, false, 3));
    drop(c);
    assert_eq!(
        Kid::spawn(rlock_seen_from_here, rlock.clone()).join(),
        (true, false, 2)
    );
    drop((b, a));
    assert_eq!(
        Kid::spawn(rlock_seen_from_here, rlock.clone()).join(),
        (false, false, 0)
    );
    assert_eq!(rlock.owner_tid(), None);

    // A holder that died holds nothing.
    let locked = Event::new().unwrap();
    let holder = Kid::spawn(rlock_hold_forever, (rlock.clone(), locked.clone()));
    assert!(locked.wait_timeout(LIMIT));
    assert_eq!(rlock_seen_from_here(rlock.clone()), (true, false, 2));
    assert_eq!(rlock.owner_tid(), Some(holder.pid()));
    holder.kill();
    assert_eq!(rlock_seen_from_here(rlock.clone()), (false, false, 0));
    drop(rlock.lock().unwrap_err().recover().unwrap());
}
