//! `Semaphore` and `BoundedSemaphore` across processes.

mod sync_support;

use std::time::{Duration, Instant};

use multiproc::sync::{BoundedSemaphore, Event, Semaphore};
use multiproc::value::RawValue;
use multiproc::ErrorKind;
use sync_support::{assert_lasted, eventually, serial, settle, Kid, LIMIT};

/// Takes the semaphore 200 times, tracking how many holders are inside.
fn use_semaphore((sem, inside, most): (Semaphore, RawValue<u32>, RawValue<u32>)) -> u32 {
    for _ in 0..200 {
        let _g = sem.acquire_timeout(LIMIT).expect("acquire");
        let now = inside.fetch_add(1) + 1;
        let mut m = most.get();
        while now > m {
            match most.compare_exchange(m, now) {
                Ok(_) => break,
                Err(x) => m = x,
            }
        }
        std::hint::spin_loop();
        inside.fetch_sub(1);
    }
    200
}

#[test]
fn semaphore_admits_at_most_its_value() {
    let _s = serial();
    let sem = Semaphore::new(2).unwrap();
    let inside = RawValue::new(0u32).unwrap();
    let most = RawValue::new(0u32).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|_| Kid::spawn(use_semaphore, (sem.clone(), inside.clone(), most.clone())))
        .collect();
    for k in kids {
        assert_eq!(k.join(), 200);
    }
    assert!(most.get() <= 2, "{} holders at once", most.get());
    assert_eq!(sem.get_value(), 2);
}

fn acquire_and_report((sem, started): (Semaphore, Event)) -> bool {
    started.set();
    let got = sem.acquire_timeout(LIMIT);
    got.map(|g| g.forget()).is_some()
}

fn take_and_die((sem, taken): (Semaphore, Event)) {
    sem.acquire().forget();
    taken.set();
    std::thread::sleep(LIMIT * 2);
}

#[test]
fn release_in_one_process_wakes_a_waiter_in_another() {
    let _s = serial();
    let sem = Semaphore::new(0).unwrap();
    let started = Event::new().unwrap();
    let kid = Kid::spawn(acquire_and_report, (sem.clone(), started.clone()));
    assert!(started.wait_timeout(LIMIT));
    settle();
    sem.release().unwrap();
    assert!(kid.join());
    assert_eq!(sem.get_value(), 0);
    assert!(sem.try_acquire().is_none());
    // A failed try must not change the value.
    assert_eq!(sem.get_value(), 0);
    let t = Instant::now();
    assert!(sem.acquire_timeout(Duration::from_millis(200)).is_none());
    assert_lasted(t, Duration::from_millis(200));
}

#[test]
fn a_dead_holder_never_hangs_a_timed_acquire() {
    let _s = serial();
    let sem = Semaphore::new(1).unwrap();
    let taken = Event::new().unwrap();
    let kid = Kid::spawn(take_and_die, (sem.clone(), taken.clone()));
    assert!(taken.wait_timeout(LIMIT));
    kid.kill();
    let t = Instant::now();
    assert!(sem.acquire_timeout(Duration::from_millis(200)).is_none());
    assert_lasted(t, Duration::from_millis(200));
}

fn release_twice(sem: BoundedSemaphore) -> (bool, String) {
    let first = sem.release().is_ok();
    let second = sem.release().unwrap_err().kind().to_string();
    (first, second)
}

#[test]
fn bounded_semaphore_refuses_over_release_from_any_process() {
    let _s = serial();
    let sem = BoundedSemaphore::new(2).unwrap();
    assert_eq!(sem.max_value(), 2);
    assert_eq!(
        sem.release().unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    sem.acquire().forget();
    let kid = Kid::spawn(release_twice, sem.clone());
    assert_eq!(kid.join(), (true, ErrorKind::InvalidArgument.to_string()));
    assert_eq!(sem.get_value(), 2);
    let a = sem.try_acquire().unwrap();
    let b = sem.acquire_timeout(LIMIT).unwrap();
    assert!(sem.try_acquire().is_none());
    drop((a, b));
    eventually(|| sem.get_value() == 2);
}
