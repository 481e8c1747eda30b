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
//! Once a quiet period is over, spinning comes back only if the machine
//! has a CPU to spare (fewer tasks runnable besides the caller, the
//! program's own spinners aside, than CPUs online, read from
//! `/proc/loadavg`); on a machine kept busy, the quiet period is renewed,
//! and no spinner pays a busy loop's turn again to learn what it knew
//! (beside two busy loops on two CPUs, a pool's `imap_unordered` ran 595k
//! items/s with a quiet period that simply ended, 822k with one renewed).
//! The program's spinners are counted in memory that all its processes
//! share (`sys::family`, made at the program's first fork or first spin,
//! inherited by every process forked after that; up to 1,024 processes
//! count, others read as load): one process's spinning threads must not
//! read, to another, as a busy CPU. Both counts are the host's, so in a
//! container given fewer CPUs than the host has, a busy host can keep
//! spinning off while the container's CPUs idle: after [`MAX_RENEWALS`]
//! renewals in a row (half a second), spinning comes back for one look of
//! its own.
//!
//! The knob is the environment variable `MULTIPROC_SPIN`, read once per
//! process: `adaptive` (the default, as above), `always` (spin whatever the
//! load: the fastest on a machine reserved for this program), or `never`
//! (sleep at once: the least CPU). A machine with a single CPU never spins.
//!
//! The values read once (CPU counts, policy, clock origin) are kept in plain
//! atomics, never behind a `OnceLock`: a process forked while another thread
//! was inside a `OnceLock`'s initializer inherits it as "being initialized"
//! for ever, and its first spin would then wait for a thread that does not
//! exist there. Two threads racing to fill one in compute the same value.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::sys::family::SpinCell;
use crate::sys::shm::pid_alive;

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
    read_once(&CPUS, 0, || {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    })
}

/// The value in `cell`, read with `read` and kept there if it still holds
/// `unset` (which `read` never returns).
fn read_once(cell: &AtomicUsize, unset: usize, read: impl FnOnce() -> usize) -> usize {
    match cell.load(Ordering::Relaxed) {
        n if n == unset => {
            let n = read();
            cell.store(n, Ordering::Relaxed);
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

/// Until when (in [`now_ns`]) spinning is off; 0 when it is on.
static QUIET_UNTIL: AtomicU64 = AtomicU64::new(0);

/// True while spinning is off after contention was seen.
///
/// Once a quiet period is over, spinning comes back only if the machine has
/// a CPU to spare: fewer other tasks runnable at that moment than it has
/// CPUs online, not counting the program's own spinners (they would give
/// their CPU up, and counting them kept one process quiet for as long as
/// the others spun). While every CPU is taken by work (CPU-bound work,
/// ours or another program's), the quiet period is renewed instead, and no
/// spinner has to find the load again through a slow yield, which costs a
/// busy loop's whole turn each time. Where the count cannot be read,
/// spinning comes back when the period is over.
pub fn contended() -> bool {
    let until = QUIET_UNTIL.load(Ordering::Relaxed);
    if until == 0 {
        return false;
    }
    let now = now_ns();
    if quiet(until, now) {
        return true;
    }
    // One caller looks at the machine; the others stay quiet meanwhile.
    let next = now.saturating_add(QUIET.as_nanos() as u64);
    if QUIET_UNTIL
        .compare_exchange(until, next, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return quiet(QUIET_UNTIL.load(Ordering::Relaxed), now);
    }
    if machine_busy() && RENEWALS.fetch_add(1, Ordering::Relaxed) + 1 < MAX_RENEWALS {
        return true;
    }
    RENEWALS.store(0, Ordering::Relaxed);
    // Spinning is on again, unless contention was noted meanwhile.
    let _ = QUIET_UNTIL.compare_exchange(next, 0, Ordering::Relaxed, Ordering::Relaxed);
    quiet(QUIET_UNTIL.load(Ordering::Relaxed), now)
}

/// Quiet periods renewed in a row since spinning was last on.
static RENEWALS: AtomicU32 = AtomicU32::new(0);
/// At most this many renewals in a row (half a second): then spinning comes back
/// for one look of its own, which on a machine still busy notes contention
/// again at its first slow yield. The runnable count and the CPU count are
/// the host's: in a container given fewer CPUs than the host has, a busy
/// host would otherwise keep spinning off for good while the container's
/// own CPUs idle.
pub const MAX_RENEWALS: u32 = 100;

/// Whether every CPU of the machine is taken by work now: as many tasks
/// runnable besides the caller, not counting the program's spinners, as
/// CPUs online. False where unknown.
fn machine_busy() -> bool {
    let others = others_runnable().map(|n| n.saturating_sub(program_spinners()));
    all_cpus_taken(others, online_cpus())
}

fn quiet(until: u64, now: u64) -> bool {
    until != 0 && now < until
}

/// Whether `others` runnable tasks (besides the caller) take all of
/// `online` CPUs; unknown counts as not.
fn all_cpus_taken(others: Option<u64>, online: usize) -> bool {
    matches!(others, Some(n) if online > 0 && n >= online as u64)
}

/// Records that the CPU is contended: spinning stays off for [`QUIET`],
/// and after that for as long as the machine has no CPU to spare.
pub fn note_contention() {
    let until = now_ns().saturating_add(QUIET.as_nanos() as u64);
    QUIET_UNTIL.fetch_max(until, Ordering::Relaxed);
}

/// The number of CPUs online on the machine (not only those this process
/// may use: the runnable count it is compared with is the machine's), or
/// 0 if unknown.
pub fn online_cpus() -> usize {
    /// `usize::MAX` until first read.
    static ONLINE: AtomicUsize = AtomicUsize::new(usize::MAX);
    read_once(&ONLINE, usize::MAX, || {
        nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
            .ok()
            .flatten()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n != usize::MAX)
            .unwrap_or(0)
    })
}

/// How many tasks on the machine are runnable now besides the caller (the
/// fourth field of `/proc/loadavg`, "running/total", counts the reader),
/// or `None` where it cannot be read. Reads into a buffer on the stack: it
/// may run in a child just forked.
fn others_runnable() -> Option<u64> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let fd = open(
        "/proc/loadavg",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 128];
    let n = nix::unistd::read(&fd, &mut buf).ok()?;
    parse_runnable(buf.get(..n)?)?.checked_sub(1)
}

/// Parses `/proc/loadavg` ("0.40 1.24 1.57 3/245 12345\n") into the
/// number of runnable tasks (3).
fn parse_runnable(text: &[u8]) -> Option<u64> {
    let field = text.split(|&b| b == b' ').nth(3)?;
    let running = field.split(|&b| b == b'/').next()?;
    if running.is_empty() || field.len() == running.len() {
        return None;
    }
    running.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit()
            .then(|| acc.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

/// This process's cell among the program's (`sys::family`), with the
/// fork count it was claimed at ([`pack`]ed: the count's low 32 bits, then
/// the state: [`UNCLAIMED`], [`CLAIMING`] while one thread claims it,
/// [`NO_CELL`] when none was free, else its index plus one). A child's
/// fork count differs from its parent's, so a child forked by anyone
/// through the C library claims a cell of its own.
static MY_CELL: AtomicU64 = AtomicU64::new(0);
const UNCLAIMED: u32 = 0;
const CLAIMING: u32 = u32::MAX - 1;
const NO_CELL: u32 = u32::MAX;

/// Two 32-bit halves in a word: a cell's process and its spinners, or
/// [`MY_CELL`]'s fork count and state.
fn pack(high: u32, low: u32) -> u64 {
    (u64::from(high) << 32) | u64::from(low)
}

fn unpack(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

/// This process's spinner cell, claimed at its first spin, by one thread
/// (the others wait for its claim: a few system calls).
fn my_cell() -> Option<&'static SpinCell> {
    let cells = &crate::sys::family::cells_or_make()?.cells;
    let forks = crate::sys::fork::fork_generation()? as u32;
    for _ in 0..1000 {
        let word = MY_CELL.load(Ordering::Acquire);
        let state = match unpack(word) {
            (seen, state) if seen == forks => state,
            // Claimed (or being claimed) in the parent, before the fork.
            _ => UNCLAIMED,
        };
        match state {
            UNCLAIMED => {
                let claiming = pack(forks, CLAIMING);
                if MY_CELL
                    .compare_exchange(word, claiming, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    let got = claim_cell(cells, std::process::id());
                    let state = got.map_or(NO_CELL, |i| i as u32 + 1);
                    MY_CELL.store(pack(forks, state), Ordering::Release);
                    return cells.get(got?);
                }
            }
            CLAIMING => std::thread::yield_now(),
            NO_CELL => return None,
            i => return cells.get(i as usize - 1),
        }
    }
    // The claim takes far longer than it should: count from a later spin.
    None
}

/// Takes for process `me` a cell of `cells` that is free or left by a
/// process that is gone (one with `me`'s pid before it included), with a
/// count of zero; its index.
fn claim_cell(cells: &[SpinCell], me: u32) -> Option<usize> {
    cells.iter().position(|cell| {
        let word = cell.word.load(Ordering::Relaxed);
        let (holder, _) = unpack(word);
        let free = holder == 0
            || holder == me
            || i32::try_from(holder).map_or(true, |pid| !pid_alive(pid));
        free && cell
            .word
            .compare_exchange(word, pack(me, 0), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// How many threads of the program (this process and those forked from it,
/// or from the process that forked it) spin now.
pub fn program_spinners() -> u64 {
    crate::sys::family::cells().map_or(0, |c| spinners_in(&c.cells))
}

/// How many threads the processes of `cells` spin now; a process gone
/// while it spun counts no more (its count is cleared, unless the cell
/// changed hands meanwhile).
fn spinners_in(cells: &[SpinCell]) -> u64 {
    let mut n = 0u64;
    for cell in cells {
        let word = cell.word.load(Ordering::Relaxed);
        let (holder, spinning) = unpack(word);
        if spinning == 0 {
            continue;
        }
        if i32::try_from(holder).is_ok_and(pid_alive) {
            n += u64::from(spinning);
        } else {
            let _ = cell.word.compare_exchange(
                word,
                pack(holder, 0),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
    n
}

/// Counts the calling thread among the program's spinners while it lives
/// (with the adaptive policy, the only one that looks at the count).
///
/// Every spin of multiproc holds one ([`spin_until`], and a
/// [`crate::shmchan::SpinPermit`]): a spinner is a runnable task, but one
/// that gives its CPU up, and whether spinning comes back after a quiet
/// period must not depend on how many of the program's own threads still
/// spin ([`contended`]).
#[derive(Debug)]
pub struct Spinning(Option<&'static SpinCell>);

impl Spinning {
    /// Starts counting the calling thread.
    pub fn start() -> Spinning {
        let cell = (policy() == Policy::Adaptive).then(my_cell).flatten();
        if let Some(c) = cell {
            // The count's low bits: a process has far fewer than 2^32
            // threads, so it never reaches the pid's.
            c.word.fetch_add(1, Ordering::Relaxed);
        }
        Spinning(cell)
    }
}

impl Drop for Spinning {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            // Never below zero: the cell was cleared or taken only if this
            // process were gone.
            c.word.fetch_sub(1, Ordering::Relaxed);
        }
    }
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

/// Reads what spinning reads once (the CPU counts and the policy) in this
/// process, so that a child forked next inherits them and never reads the
/// environment for them; makes the program's spinner cells
/// (`sys::family`) that the child will share, and starts the fork count
/// that tells the child its cell is not its parent's.
pub(crate) fn prime() {
    let _ = policy();
    let _ = online_cpus();
    let _ = crate::sys::family::cells_or_make();
    let _ = crate::sys::fork::fork_generation();
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

/// Polls `ready()` between yields of the CPU, for at most `wanted` (not at
/// all on a busy machine: see [`budget`]), for a waiter whose look is a
/// system call (a socket, a pidfd), too costly to spin on. The peer it
/// waits for was often just woken on this very CPU, which a yield hands
/// it; a waiter asleep would leave its CPU idle (a virtual CPU that halts
/// costs tens of microseconds to wake) and need a wake-up of its own.
/// Returns whether `ready()` held; on false, wait asleep. Looks at least
/// once.
pub fn poll_yielding(wanted: Duration, mut ready: impl FnMut() -> bool) -> bool {
    if ready() {
        return true;
    }
    let budget = budget(wanted);
    if budget.is_zero() {
        return false;
    }
    let Some(_permit) = crate::shmchan::SpinPermit::acquire() else {
        return false;
    };
    let start = Instant::now();
    loop {
        if start.elapsed() >= budget || !yield_probe() {
            return ready();
        }
        if ready() {
            return true;
        }
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
    let _counted = Spinning::start();
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
    fn polling_sees_a_ready_condition_whatever_the_budget() {
        assert!(poll_yielding(Duration::ZERO, || true));
        let mut looks = 0u32;
        assert!(!poll_yielding(Duration::ZERO, || {
            looks += 1;
            false
        }));
        assert_eq!(looks, 1, "no budget: one look, then sleep");
    }

    #[test]
    fn polling_gives_up_within_its_budget() {
        let t = Instant::now();
        assert!(!poll_yielding(Duration::from_micros(200), || false));
        // Even preempted, the call ends soon after its 200 µs.
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
    fn the_runnable_count_is_read_from_loadavg() {
        assert_eq!(parse_runnable(b"0.40 1.24 1.57 3/245 12345\n"), Some(3));
        assert_eq!(parse_runnable(b"0.00 0.01 0.05 1/80 7"), Some(1));
        assert_eq!(parse_runnable(b""), None);
        assert_eq!(parse_runnable(b"0.40 1.24 1.57"), None);
        assert_eq!(parse_runnable(b"0.40 1.24 1.57 3 12345"), None, "no slash");
        assert_eq!(parse_runnable(b"0.40 1.24 1.57 /245 12345"), None);
        assert_eq!(parse_runnable(b"0.40 1.24 1.57 x/245 12345"), None);
        assert_eq!(
            parse_runnable(b"0 0 0 99999999999999999999999/1 1"),
            None,
            "overflow"
        );
        // On Linux the file is there, and counts at least its reader.
        assert!(parse_runnable(&std::fs::read("/proc/loadavg").unwrap()).unwrap() >= 1);
    }

    #[test]
    fn all_cpus_are_taken_by_as_many_tasks_as_cpus() {
        assert!(all_cpus_taken(Some(2), 2));
        assert!(all_cpus_taken(Some(9), 2));
        assert!(!all_cpus_taken(Some(1), 2));
        assert!(!all_cpus_taken(None, 2), "unknown: spinning comes back");
        assert!(!all_cpus_taken(Some(5), 0), "unknown CPU count");
        assert!(online_cpus() >= 1);
    }

    fn cells(pids_counts: &[(u32, u32)]) -> Vec<SpinCell> {
        pids_counts
            .iter()
            .map(|&(pid, n)| SpinCell {
                word: AtomicU64::new(pack(pid, n)),
            })
            .collect()
    }

    fn cell(c: &SpinCell) -> (u32, u32) {
        unpack(c.word.load(Ordering::Relaxed))
    }

    /// A pid no process has (above Linux's largest `pid_max`).
    const GONE: u32 = 1 << 23;

    #[test]
    fn spinners_of_processes_gone_count_no_more() {
        let me = std::process::id();
        let cs = cells(&[(me, 2), (GONE, 3), (0, 0), (me, 0)]);
        assert_eq!(spinners_in(&cs), 2);
        assert_eq!(cell(&cs[1]), (GONE, 0), "cleared");
        assert_eq!(cell(&cs[0]), (me, 2), "kept");
    }

    #[test]
    fn a_cell_is_claimed_free_or_left_behind() {
        let me = std::process::id();
        let parent = u32::try_from(nix::unistd::getppid().as_raw()).unwrap();
        // A live process's cell is skipped, a gone one's taken and cleared.
        let cs = cells(&[(parent, 1), (GONE, 4), (0, 0)]);
        assert_eq!(claim_cell(&cs, me), Some(1));
        assert_eq!(cell(&cs[1]), (me, 0));
        assert_eq!(cell(&cs[0]), (parent, 1), "a live process keeps its cell");
        // A cell with the claimer's pid was left by a gone process that had
        // it (one thread of a process claims): taken and cleared.
        let cs = cells(&[(parent, 0), (me, 3)]);
        assert_eq!(claim_cell(&cs, me), Some(1));
        assert_eq!(cell(&cs[1]), (me, 0));
        // None free.
        assert_eq!(claim_cell(&cells(&[(parent, 0)]), me), None);
        assert_eq!(claim_cell(&cells(&[(0, 0)]), me), Some(0));
    }

    #[test]
    fn a_count_stays_in_its_half_of_the_word() {
        let c = SpinCell {
            word: AtomicU64::new(pack(u32::MAX, 0)),
        };
        c.word.fetch_add(1, Ordering::Relaxed);
        c.word.fetch_add(1, Ordering::Relaxed);
        assert_eq!(cell(&c), (u32::MAX, 2));
        c.word.fetch_sub(2, Ordering::Relaxed);
        assert_eq!(cell(&c), (u32::MAX, 0));
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
