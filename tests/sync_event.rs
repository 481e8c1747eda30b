//! `Event` across processes.

mod sync_support;

use std::time::{Duration, Instant};

use multiproc::sync::Event;
use sync_support::{assert_lasted, serial, settle, Kid, LIMIT};

fn wait_for_it((ev, started): (Event, Event)) -> bool {
    started.set();
    ev.wait_timeout(LIMIT)
}

fn set_it(ev: Event) {
    ev.set();
}

#[test]
fn set_wakes_every_waiting_process() {
    let _s = serial();
    let ev = Event::new().unwrap();
    let started: Vec<Event> = (0..3).map(|_| Event::new().unwrap()).collect();
    let kids: Vec<_> = started
        .iter()
        .map(|s| Kid::spawn(wait_for_it, (ev.clone(), s.clone())))
        .collect();
    for s in &started {
        assert!(s.wait_timeout(LIMIT));
    }
    settle();
    assert!(!ev.is_set());
    Kid::spawn(set_it, ev.clone()).join();
    assert!(ev.is_set());
    for k in kids {
        assert!(k.join());
    }
    // A set event lets waiters through at once, until cleared.
    ev.wait();
    assert!(ev.wait_timeout(Duration::ZERO));
    ev.clear();
    assert!(!ev.is_set());
    let t = Instant::now();
    assert!(!ev.wait_timeout(Duration::from_millis(200)));
    assert_lasted(t, Duration::from_millis(200));
}
