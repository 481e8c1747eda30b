//! Fault injection on the manager: its server process is SIGKILLed while
//! proxies are mid-operation (a dict update running in the server, a
//! blocked queue `get`, a lock held through a proxy). Every proxy call ends
//! in an error within 1 s of the kill, later calls fail at once, a new
//! manager starts at once, and no process or shared memory is left.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use multiproc::{ErrorKind, Manager};
use multiproc_testkit::{checked, wait_until};

const LIMIT: Duration = Duration::from_secs(60);
/// How soon after the kill every call must have failed (tolerant bound for
/// a busy machine is the 1 s).
const DETECT: Duration = Duration::from_secs(1);

/// Runs in the manager: sleeps long enough for the kill to land mid-update.
fn slow_increment(v: Option<u64>) -> u64 {
    std::thread::sleep(Duration::from_secs(30));
    v.unwrap_or(0) + 1
}

#[test]
fn sigkilled_manager_fails_every_call_within_a_second() {
    checked(LIMIT, || {
        let m = Manager::start().unwrap();
        let d = m.dict::<u32, u64>().unwrap();
        let q = m.queue::<u64>().unwrap();
        let l = m.lock().unwrap();
        d.insert(&1, &1).unwrap();

        // Three operations in flight when the server dies, each on its own
        // thread, each reporting (outcome, when it ended).
        let (tx, rx) = mpsc::channel::<(&str, multiproc::Result<()>, Instant)>();
        let (d1, tx1) = (d.clone(), tx.clone());
        std::thread::spawn(move || {
            let r = d1.update_with(&1, slow_increment).map(drop);
            let _ = tx1.send(("dict update", r, Instant::now()));
        });
        let (q1, tx2) = (q.clone(), tx.clone());
        std::thread::spawn(move || {
            let r = q1.get().map(drop);
            let _ = tx2.send(("queue get", r, Instant::now()));
        });
        let (l1, tx3) = (l.clone(), tx);
        let (held_tx, held_rx) = mpsc::channel();
        let (killed_tx, killed_rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let r = l1.lock().and_then(|g| {
                let _ = held_tx.send(());
                // Hold the lock across the kill, then use the proxy.
                let _ = killed_rx.recv_timeout(Duration::from_secs(20));
                let r = l1.is_locked().map(drop);
                drop(g);
                r
            });
            let _ = tx3.send(("lock held", r, Instant::now()));
        });
        held_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // Let the update reach the server and the get block there.
        std::thread::sleep(Duration::from_millis(200));

        let killed = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(m.pid()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let _ = killed_tx.send(());
        let mut worst = Duration::ZERO;
        for _ in 0..3 {
            let (what, r, at) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            let e = r.expect_err(what);
            let after = at.saturating_duration_since(killed);
            eprintln!("{what}: {e} ({after:?} after the kill)");
            assert!(
                after < DETECT,
                "{what} failed only {after:?} after the kill"
            );
            worst = worst.max(after);
        }
        // Later calls fail at once, whatever the proxy.
        let t = Instant::now();
        assert!(d.get(&1).is_err());
        assert!(q.put(1).is_err());
        assert!(l.try_lock().is_err());
        assert!(t.elapsed() < DETECT, "later calls took {:?}", t.elapsed());
        eprintln!("every in-flight call failed within {worst:?}");

        // A new manager can be started at once and serves.
        let t = Instant::now();
        let m2 = Manager::start().unwrap();
        let d2 = m2.dict::<u32, u64>().unwrap();
        d2.insert(&1, &5).unwrap();
        assert_eq!(d2.update_with(&1, |v| v.unwrap_or(0) + 1).unwrap(), 6);
        eprintln!("a new manager served after {:?}", t.elapsed());
        let _ = m.shutdown();
        m2.shutdown().unwrap();
        drop((m, m2));
        assert!(wait_until(Duration::from_secs(5), || {
            multiproc_testkit::descendants().is_empty()
        }));
    });
}

/// A killed manager fails a proxy used in another process (a forked child
/// holding the proxy) too.
#[test]
fn sigkilled_manager_fails_calls_in_a_child_process() {
    fn use_after_kill(q: multiproc::QueueProxy<u64>) -> String {
        // The parent kills the manager once this child is blocked in get.
        match q.get() {
            Ok(v) => format!("got {v}"),
            Err(e) => format!("{:?}", e.kind()),
        }
    }
    checked(LIMIT, || {
        let m = Manager::start().unwrap();
        let q = m.queue::<u64>().unwrap();
        let kid = multiproc_testkit::Kid::spawn(use_after_kill, q.clone());
        std::thread::sleep(Duration::from_millis(300));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(m.pid()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let t = Instant::now();
        let out = kid.join();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_ne!(out, format!("{:?}", ErrorKind::Timeout));
        assert!(!out.starts_with("got"), "{out}");
        let _ = m.shutdown();
    });
}
