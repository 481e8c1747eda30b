//! Once a quiet period is over, spinning comes back only if the machine has
//! a CPU to spare. CPU-bound threads on every CPU keep it off; the same
//! threads counted as the program's spinners, in this process or in a child
//! it forked, do not.
//!
//! The contention mark is process-wide, so this file holds one test: it is
//! the only thing that notes contention in its process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use multiproc_ipc::{spin, Process};

/// Quiet periods to wait, at most, for spinning to come back: on a shared
/// machine a look may find its CPUs taken for a moment.
const LOOKS: usize = 40;

/// `n` threads in a busy loop until dropped, each counted as one of the
/// program's spinners if `counted`.
struct Burners {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Burners {
    fn start(n: usize, counted: bool) -> Burners {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let _counted = counted.then(spin::Spinning::start);
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Burners { stop, threads }
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Notes contention, then whether spinning is back within [`LOOKS`] quiet
/// periods.
fn comes_back() -> bool {
    spin::note_contention();
    (0..LOOKS).any(|_| {
        std::thread::sleep(spin::QUIET + Duration::from_millis(1));
        !spin::contended()
    })
}

/// Notes contention, then whether spinning stays off through `periods`
/// quiet periods.
fn stays_off(periods: usize) -> bool {
    spin::note_contention();
    (0..periods).all(|_| {
        std::thread::sleep(spin::QUIET + Duration::from_millis(1));
        spin::contended()
    })
}

/// In a child: counted busy threads on every CPU for `ms` milliseconds.
fn burn_counted(ms: u64) -> u64 {
    let burners = Burners::start(spin::online_cpus(), true);
    std::thread::sleep(Duration::from_millis(ms));
    drop(burners);
    ms
}

/// Waits (2 s at most) until the program's spinner count satisfies `ok`.
fn wait_for_spinners(ok: impl Fn(u64) -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        if ok(spin::program_spinners()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// Spinning came back (`back`), or, if not, the machine itself is busy now
/// (no burner of ours runs, and spinning still does not come back): then
/// this run can tell nothing, and the test ends here.
fn back_or_busy(back: bool) -> bool {
    if back {
        return true;
    }
    if !comes_back() {
        eprintln!("skipped: something else started keeping every CPU busy");
        std::process::exit(0);
    }
    false
}

#[test]
fn a_busy_machine_keeps_spinning_off_but_the_programs_own_spinners_do_not() {
    let readable = std::fs::read("/proc/loadavg").is_ok();
    if spin::cpus() < 2 || spin::policy() != spin::Policy::Adaptive || !readable {
        eprintln!("skipped: spinning is not adaptive here, or the load is unknown");
        return;
    }
    if !comes_back() {
        eprintln!("skipped: something else keeps every CPU of the machine busy");
        return;
    }
    let online = spin::online_cpus();
    let n = online as u64;

    // A CPU-bound thread on every CPU: the quiet period is renewed.
    {
        let _burners = Burners::start(online, false);
        std::thread::sleep(Duration::from_millis(10));
        assert!(
            stays_off(4),
            "spinning came back while {online} CPU-bound threads kept every CPU busy"
        );
    }

    // The same threads, counted as the program's spinners: they would give
    // their CPUs up, so spinning comes back.
    let back = {
        let _burners = Burners::start(online, true);
        assert!(wait_for_spinners(|c| c >= n), "the spinners are counted");
        comes_back()
    };
    assert!(
        back_or_busy(back),
        "the program's own {online} spinners kept spinning off"
    );
    assert!(
        wait_for_spinners(|c| c == 0),
        "stopped spinners still count"
    );

    // Counted in a child: the count is the program's, shared across a fork,
    // and the child's own (killed while its threads spin, it leaves no
    // count behind once it is gone).
    let child = Process::spawn(burn_counted, 3_000u64).expect("spawn");
    let counted = wait_for_spinners(|c| c >= n);
    let back = counted && comes_back();
    let _ = child.kill();
    let _ = child.join();
    assert!(counted, "a child's spinners are not counted in its parent");
    assert!(
        back_or_busy(back),
        "a child's {online} spinners kept its parent's spinning off"
    );
    assert!(
        wait_for_spinners(|c| c == 0),
        "a child killed while it spun left its count behind: {}",
        spin::program_spinners()
    );
}
