//! Spinning only while it pays.
//!
//! A blocking call in multiproc (a pool result, a worker waiting for tasks,
//! a lock, a queue, a manager reply) first spins for a few microseconds:
//! on an idle machine the peer answers within that time, and a spin is
//! ten times cheaper than a sleep and a wake-up. On a busy machine the same
//! spin steals the CPU from the very process it waits for. So every spin
//! goes through [`spin_until`], which gives up as soon as the machine shows
//! it is busy, and then keeps spinning off for a while ([`QUIET`]) in the
//! whole process:
//!
//! - past a short pure spin (4 µs), it polls between `sched_yield`s, so
//!   that a runnable thread on its CPU (often the very peer it waits for,
//!   or another thread of the same pool) runs first and the spinner takes
//!   only CPU time nobody else wants; a yield that took long ([`FOREIGN`],
//!   0.4 ms) ran a CPU-bound task;
//! - a gap between two looks of the spin loop ([`PREEMPTED`], 40 µs): the
//!   spinner was preempted;
//!
//! but only when the wait was fruitless: a yield or a preemption after
//! which the awaited peer has delivered gave the CPU to our own pipeline
//! (a pool with more threads and workers than CPUs), and spinning on is
//! what keeps that pipeline fast.
//!
//! A yield is judged long only at 0.4 ms: longer than a peer's turn,
//! shorter than a CPU-bound task's. A thread of a pool's own pipeline (its
//! result thread, a worker) runs for microseconds between two waits, while
//! a CPU-bound program, once it has the CPU, keeps it until the scheduler
//! takes it away at a tick (every 1–4 ms). With 25 µs instead, a pool's own
//! pipeline on a machine with fewer CPUs than its threads read as a busy
//! machine (its threads' turns took 30–130 µs on a 2-CPU VM): spinning
//! stayed off for most of an idle run, and every hand-off became a sleep
//! and a wake-up. A preemption stays at 40 µs: a spinner preempted while
//! it spins was not offering its CPU, and once it reads the machine as
//! busy, it sleeps, and a sleeper is woken ahead of a CPU-bound task while
//! a yielder waits for that task's turn to end (with 0.4 ms there too, a
//! pool's round trip beside two busy loops took a median 2.9 to 48 µs,
//! depending on the run, instead of 2.7).
//!
//! [`yield_probe`], for pollers that yield without knowing whether their
//! peer delivered meanwhile (a manager's clients and connections), keeps
//! 25 µs: any turn of other work ends such a poll (with 0.4 ms, a manager's
//! client beside two busy loops polled on, and its dict operations fell
//! to a third).
//!
//! The knob is the environment variable `MULTIPROC_SPIN`, read once per
//! process: `adaptive` (the default, as above), `always` (spin whatever the
//! load: the fastest on a machine reserved for this program), or `never`
//! (sleep at once: the least CPU). A machine with a single CPU never spins.
//!
//! The values read once (CPU count, policy, clock origin) are kept in plain
//! atomics, never behind a `OnceLock`: a process forked while another thread
//! was inside a `OnceLock`'s initializer inherits it as "being initialized"
//! for ever, and its first spin would then wait for a thread that does not
//! exist there. Two threads racing to fill one in compute the same value.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long the first, pure spin lasts before the spinner polls between
/// yields.
const PURE: Duration = Duration::from_micros(4);
/// A fruitless yield in [`spin_until`] that took this long ran a task
/// that kept the CPU until the scheduler took it away: the CPU is
/// contended. A peer's turn (a few microseconds, at most about a hundred)
/// is shorter; the rest of a scheduler tick (1–4 ms), which a CPU-bound
/// task keeps, is mostly longer.
pub const FOREIGN: Duration = Duration::from_micros(400);
/// A gap this long between two looks of [`spin_until`] without a yield:
/// the spinner was preempted.
pub const PREEMPTED: Duration = Duration::from_micros(40);
/// A [`yield_probe`] that took this long ran other work.
pub const SLOW_YIELD: Duration = Duration::from_micros(25);
/// How long spinning stays off once contention was seen.
pub const QUIET: Duration = Duration::from_millis(5);

/// How this process spins (`MULTIPROC_SPIN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Spin while it pays (the default).
    Adaptive,
    /// Spin the full budget whatever the load.
    Always,
    /// Never spin.
    Never,
}

impl Policy {
    /// Parses a `MULTIPROC_SPIN` value (unknown values mean the default).
    pub fn parse(value: Option<&str>) -> Policy {
        match value.map(str::trim) {
            Some("always") => Policy::Always,
            Some("never") | Some("0") | Some("off") => Policy::Never,
            _ => Policy::Adaptive,
        }
    }
}

/// The number of CPUs this process may run on.
pub fn cpus() -> usize {
    /// 0 until first read.
    static CPUS: AtomicUsize = AtomicUsize::new(0);
    match CPUS.load(Ordering::Relaxed) {
        0 => {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            CPUS.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// This process's policy: `Never` on a single CPU, else `MULTIPROC_SPIN`.
pub fn policy() -> Policy {
    /// 0 until first read, then 1, 2 or 3 (adaptive, always, never).
    static POLICY: AtomicU8 = AtomicU8::new(0);
    match POLICY.load(Ordering::Relaxed) {
        1 => return Policy::Adaptive,
        2 => return Policy::Always,
        3 => return Policy::Never,
        _ => {}
    }
    let p = if cpus() < 2 {
        Policy::Never
    } else {
        Policy::parse(std::env::var("MULTIPROC_SPIN").ok().as_deref())
    };
    let code = match p {
        Policy::Adaptive => 1,
        Policy::Always => 2,
        Policy::Never => 3,
    };
    POLICY.store(code, Ordering::Relaxed);
    p
}

/// The clock the contention mark is kept in: nanoseconds of
/// `CLOCK_MONOTONIC` (an `Instant` origin would need a `OnceLock`).
fn now_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        let ns = i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec());
        u64::try_from(ns).unwrap_or(0)
    })
}

/// Until when (in [`now_ns`]) spinning is off.
static QUIET_UNTIL: AtomicU64 = AtomicU64::new(0);

/// True while spinning is off after contention was seen.
pub fn contended() -> bool {
    quiet(QUIET_UNTIL.load(Ordering::Relaxed), now_ns())
}

fn quiet(until: u64, now: u64) -> bool {
    until != 0 && now < until
}

/// Records that the CPU is contended: spinning stays off for [`QUIET`].
pub fn note_contention() {
    let until = now_ns().saturating_add(QUIET.as_nanos() as u64);
    QUIET_UNTIL.fetch_max(until, Ordering::Relaxed);
}

/// The budget to spin for now: `wanted`, or zero when this process should
/// not spin (policy `Never`, or contention seen lately).
pub fn budget(wanted: Duration) -> Duration {
    budget_for(policy(), contended(), wanted)
}

fn budget_for(policy: Policy, contended: bool, wanted: Duration) -> Duration {
    match policy {
        Policy::Never => Duration::ZERO,
        Policy::Always => wanted,
        Policy::Adaptive if contended => Duration::ZERO,
        Policy::Adaptive => wanted,
    }
}

/// Reads what spinning reads once (the CPU count and the policy) in this
/// process, so that a child forked next inherits them and never reads the
/// environment for them.
pub(crate) fn prime() {
    let _ = policy();
}

/// Yields the CPU once; true if the yield took `long` or longer (another
/// task ran meanwhile).
fn yield_took(long: Duration) -> bool {
    let t = Instant::now();
    std::thread::yield_now();
    t.elapsed() >= long
}

/// Yields the CPU once; false (and contention noted) if other work ran
/// meanwhile (the yield took [`SLOW_YIELD`] or longer).
pub fn yield_probe() -> bool {
    if yield_took(SLOW_YIELD) {
        note_contention();
        false
    } else {
        true
    }
}

/// Spins until `ready()` holds, for at most `wanted` (and not past
/// `deadline`), giving up early when the machine is busy; returns whether
/// `ready()` became true. Looks at least once.
pub fn spin_until(
    wanted: Duration,
    deadline: Option<Instant>,
    mut ready: impl FnMut() -> bool,
) -> bool {
    if ready() {
        return true;
    }
    let budget = budget(wanted);
    if budget.is_zero() {
        return false;
    }
    let adaptive = policy() == Policy::Adaptive;
    let start = Instant::now();
    let mut end = start + budget;
    if let Some(d) = deadline {
        end = end.min(d);
    }
    let mut last = start;
    loop {
        for _ in 0..64 {
            std::hint::spin_loop();
            if ready() {
                return true;
            }
        }
        let now = Instant::now();
        if now >= end {
            return ready();
        }
        if adaptive {
            // A preemption or long yield after which the peer delivered
            // gave the CPU to our own pipeline: only a fruitless one turns
            // spinning off.
            if now - last >= PREEMPTED {
                if ready() {
                    return true;
                }
                note_contention();
                return false;
            }
            if now - start >= PURE {
                let slow = yield_took(FOREIGN);
                if ready() {
                    return true;
                }
                if slow {
                    note_contention();
                    return false;
                }
                last = Instant::now();
                continue;
            }
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_values() {
        assert_eq!(Policy::parse(None), Policy::Adaptive);
        assert_eq!(Policy::parse(Some("adaptive")), Policy::Adaptive);
        assert_eq!(Policy::parse(Some("always")), Policy::Always);
        assert_eq!(Policy::parse(Some("never")), Policy::Never);
        assert_eq!(Policy::parse(Some("off")), Policy::Never);
        assert_eq!(Policy::parse(Some("bogus")), Policy::Adaptive);
    }

    #[test]
    fn a_ready_condition_is_seen_whatever_the_budget() {
        assert!(spin_until(Duration::ZERO, None, || true));
        assert!(spin_until(Duration::from_micros(50), None, || true));
    }

    #[test]
    fn a_condition_that_never_holds_gives_up_within_the_budget() {
        let t = Instant::now();
        assert!(!spin_until(Duration::from_micros(200), None, || false));
        // The budget is 200 µs; even preempted, the call ends soon after.
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn a_past_deadline_stops_the_spin() {
        let past = Instant::now();
        let mut looks = 0u32;
        assert!(!spin_until(Duration::from_secs(10), Some(past), || {
            looks += 1;
            false
        }));
        assert!(looks <= 65 + 1, "looked {looks} times");
    }

    #[test]
    fn contention_turns_spinning_off_for_a_while() {
        let wanted = Duration::from_micros(100);
        assert_eq!(budget_for(Policy::Adaptive, false, wanted), wanted);
        assert_eq!(budget_for(Policy::Adaptive, true, wanted), Duration::ZERO);
        assert_eq!(budget_for(Policy::Always, true, wanted), wanted);
        assert_eq!(budget_for(Policy::Never, false, wanted), Duration::ZERO);
        assert!(!quiet(0, 5), "never marked");
        assert!(quiet(100, 99));
        assert!(!quiet(100, 100), "the quiet time is over");
        note_contention();
        let until = QUIET_UNTIL.load(Ordering::Relaxed);
        assert!(until >= QUIET.as_nanos() as u64, "marked {until}");
    }
}
