//! A spinner that shares its CPU with a peer working in short turns (as
//! a pool's result thread and workers do) does not read it as a busy
//! machine; one that shares it with a CPU-bound thread does. A poller that
//! cannot tell whether its peer delivered (one `yield_probe` at a time)
//! stops at any yield that ran a turn of other work.
//!
//! Both threads are pinned to one CPU. The contention mark is process-wide,
//! so this file holds one test: it is the only thing that spins in its
//! process.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_ipc::{latency, spin};
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Attempts per case: a VM's CPU can itself be taken away for a while,
/// which looks like contention to any spinner.
const ATTEMPTS: usize = 5;

/// The first CPU this thread may run on.
fn some_cpu() -> usize {
    let set = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
    (0..CpuSet::count())
        .find(|&c| set.is_set(c).unwrap_or(false))
        .expect("a CPU")
}

fn pin_to(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu).expect("CpuSet::set");
    sched_setaffinity(Pid::from_raw(0), &set).expect("sched_setaffinity");
}

/// A thread pinned to `cpu` until dropped: CPU-bound, or (`turns`)
/// working 100 µs at a time and yielding between turns, as a pool's own
/// threads do while they spin for each other; counts its loops.
///
/// The peer never sleeps: a peer woken from a sleep may preempt the
/// spinner at once (the kernel decides), and a preemption of 40 µs or more
/// reads as a busy machine by design ([`spin::PREEMPTED`]). What this file
/// checks is the yield rule: a turn taken while the spinner yields.
struct Burner {
    stop: Arc<AtomicBool>,
    loops: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Burner {
    fn start(cpu: usize, turns: bool) -> Burner {
        let stop = Arc::new(AtomicBool::new(false));
        let loops = Arc::new(AtomicU64::new(0));
        let (s, l) = (Arc::clone(&stop), Arc::clone(&loops));
        let thread = std::thread::spawn(move || {
            pin_to(cpu);
            // Woken, a peer with the short slice runs at once.
            latency::apply();
            let mut turn = Instant::now();
            while !s.load(Ordering::Relaxed) {
                l.fetch_add(1, Ordering::Relaxed);
                if turns && turn.elapsed() >= Duration::from_micros(100) {
                    std::thread::yield_now();
                    turn = Instant::now();
                }
            }
        });
        Burner {
            stop,
            loops,
            thread: Some(thread),
        }
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until the contention mark of an earlier spin has expired; false
/// if it did not within 20 quiet periods: a quiet period is renewed while
/// every CPU of the machine is busy (the pinned threads here take one), and
/// then there is nothing to measure.
fn wait_out_quiet() -> bool {
    (0..20).any(|_| {
        std::thread::sleep(spin::QUIET + Duration::from_millis(1));
        !spin::contended()
    })
}

/// Spins 3 ms on a condition that never holds, after the mark of an
/// earlier spin has expired; whether contention was noted (`None`: the
/// machine stayed busy, nothing was spun).
fn spin_once() -> Option<bool> {
    if !wait_out_quiet() {
        return None;
    }
    spin::spin_until(Duration::from_millis(3), None, || false);
    Some(spin::contended())
}

/// Polls with `yield_probe` for 3 ms at most, after the mark of an
/// earlier spin has expired; whether a probe saw other work run (`None`:
/// the machine stayed busy).
fn probe_once() -> Option<bool> {
    if !wait_out_quiet() {
        return None;
    }
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(3) {
        if !spin::yield_probe() {
            assert!(spin::contended(), "a slow probe notes contention");
            return Some(true);
        }
    }
    Some(false)
}

/// Spins beside a burner on the same CPU, `ATTEMPTS` times at most, until
/// contention is noted or not as `wanted`; returns the outcome of each
/// attempt in which the burner ran during the spin, or `None` if the
/// machine stayed busy.
fn attempts(cpu: usize, turns: bool, wanted: bool) -> Option<Vec<bool>> {
    let burner = Burner::start(cpu, turns);
    let mut seen = Vec::new();
    for _ in 0..ATTEMPTS {
        let before = burner.loops.load(Ordering::Relaxed);
        let t = Instant::now();
        let contended = spin_once()?;
        let ran = burner.loops.load(Ordering::Relaxed) > before;
        eprintln!(
            "turns {turns}: spun {:?}, burner ran {ran}, contention noted {contended}",
            t.elapsed()
        );
        if ran {
            seen.push(contended);
            if contended == wanted {
                break;
            }
        }
    }
    Some(seen)
}

const BUSY: &str = "skipped: something else keeps this machine busy";

#[test]
fn a_peer_taking_turns_is_not_a_busy_machine_but_a_cpu_bound_thread_is() {
    if spin::cpus() < 2 || spin::policy() != spin::Policy::Adaptive {
        eprintln!("skipped: spinning is not adaptive here");
        return;
    }
    let cpu = some_cpu();
    pin_to(cpu);
    // This thread is one of ours too, as a pool's workers and result
    // thread are.
    latency::apply();
    if (0..ATTEMPTS).all(|_| spin_once() != Some(false)) {
        eprintln!("{BUSY}");
        return;
    }

    // A CPU-bound thread: contention is noted.
    let Some(busy) = attempts(cpu, false, true) else {
        eprintln!("{BUSY}");
        return;
    };
    assert!(
        busy.contains(&true),
        "a CPU-bound thread on the spinner's CPU was never noted: {busy:?}"
    );
    // A peer taking turns: not noted (in at least one attempt in which it
    // ran; a 25 µs threshold noted every one).
    let Some(peer) = attempts(cpu, true, false) else {
        eprintln!("{BUSY}");
        return;
    };
    assert!(
        peer.contains(&false),
        "a peer taking 100 µs turns on the spinner's CPU was noted as a busy machine every time: {peer:?}"
    );

    // A probe, which does not know whether the peer delivered, stops at a
    // 100 µs turn (with 0.4 ms, a manager's client under load polled on
    // and took the CPU from the manager: dict operations fell to a third).
    let peer = Burner::start(cpu, true);
    let probed: Option<Vec<bool>> = (0..ATTEMPTS).map(|_| probe_once()).collect();
    drop(peer);
    let Some(probed) = probed else {
        eprintln!("{BUSY}");
        return;
    };
    eprintln!("probes beside a peer taking turns saw other work: {probed:?}");
    assert!(
        probed.contains(&true),
        "no probe saw a peer's 100 µs turn on its CPU: {probed:?}"
    );
}
