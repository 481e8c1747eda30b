//! Fault injection: Ctrl-C (SIGINT to the process group) during a `map`.
//!
//! Each scenario runs in a re-executed copy of this test binary that leads
//! its own process group, so the signal never reaches the test runner.
//!
//! * Default disposition: the program, its pool and its manager all die of
//!   SIGINT; nothing survives it and its shared memory is reclaimed.
//! * A program that takes Ctrl-C itself (SIGINT blocked, a thread waiting
//!   for it that terminates the pool): the `map` returns an error, the
//!   workers exit, the program ends normally and leaves nothing.
//!
//! `harness = false`: the program that takes Ctrl-C blocks SIGINT before
//! any thread exists (a thread with SIGINT unblocked would take the default
//! action for the whole process).

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use multiproc::{Manager, Pool, Queue};
use multiproc_testkit::{descendants_of, gone, shm_names, wait_until, Cases, Reexec};
use nix::sys::signal::{killpg, signal, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

const ROLE: &str = "MULTIPROC_FAULTS_SIGINT";
/// Where the program writes its `map`'s outcome.
const OUT: &str = "MULTIPROC_FAULTS_SIGINT_OUT";
const WATCHDOG: Duration = Duration::from_secs(90);

fn slow(x: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(50));
    x
}

/// The program under test: a pool, a manager and a queue item in its own
/// segment; prints `PIDS ...`, then maps slow tasks.
fn program(role: &str) {
    // The scenario starts from SIGINT's default action, whatever the runner
    // passed on: a non-interactive shell starts its background jobs with
    // SIGINT ignored, and an ignored disposition survives exec.
    // SAFETY: installs SIG_DFL, no handler code; no other thread exists yet.
    unsafe { signal(Signal::SIGINT, SigHandler::SigDfl) }.unwrap();
    let handled = role == "handled";
    let mask = {
        let mut m = SigSet::empty();
        m.add(Signal::SIGINT);
        m
    };
    if handled {
        // Before any process or thread of the pool exists: all inherit it.
        mask.thread_block().unwrap();
    }
    let pool = std::sync::Arc::new(Pool::new(2).unwrap());
    let manager = Manager::start().unwrap();
    let q = Queue::<Vec<u8>>::new().unwrap();
    q.put(vec![1u8; 4 << 20]).unwrap();
    if handled {
        let p = std::sync::Arc::clone(&pool);
        std::thread::spawn(move || {
            if mask.wait().is_ok() {
                println!("CTRL-C");
                p.terminate();
            }
        });
    }
    let mut pids = pool.worker_pids();
    pids.push(manager.pid());
    let line: Vec<String> = pids.iter().map(i32::to_string).collect();
    println!("PIDS {}", line.join(" "));
    let _ = std::io::stdout().flush();
    let t = Instant::now();
    let r = pool.map(slow, 0..2_000u32);
    let outcome = match &r {
        Ok(v) => format!("Ok {}", v.len()),
        Err(e) => format!("Err {:?}: {e}", e.kind()),
    };
    let line = format!("{outcome}\n{}\n", t.elapsed().as_millis());
    if let Ok(path) = std::env::var(OUT) {
        std::fs::write(path, line).unwrap();
    }
    drop(q);
    drop(manager);
    drop(pool);
}

fn shm_of(pids: &BTreeSet<i32>) -> Vec<String> {
    let mut v = Vec::new();
    for p in pids {
        v.extend(shm_names(&format!("mp-{p}-")));
        v.extend(shm_names(&format!("mpp-{p}-")));
    }
    v
}

/// Starts the program in `role`, sends SIGINT to its group mid-map, and
/// returns its exit status and what it wrote after checking nothing is left.
fn ctrl_c_during_map(role: &str) -> (std::process::ExitStatus, String) {
    let out = std::env::temp_dir().join(format!("faults-sigint-{}-{role}", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let mut helper = Reexec::program()
        .env(ROLE, role)
        .env(OUT, &out)
        .process_group()
        .spawn();
    let hpid = helper.pid() as i32;
    let printed = helper.read_pids("PIDS ", Duration::from_secs(30));
    let mut family: BTreeSet<i32> = descendants_of(hpid).into_iter().collect();
    family.extend(&printed);
    helper.adopt(&family.iter().copied().collect::<Vec<_>>());
    let mut owners = family.clone();
    owners.insert(hpid);
    std::thread::sleep(Duration::from_millis(300)); // mid-map
    let t = Instant::now();
    killpg(Pid::from_raw(hpid), Signal::SIGINT).unwrap();
    let status = helper.wait(Duration::from_secs(20));
    let ended = t.elapsed();
    let all_gone = wait_until(Duration::from_secs(5), || family.iter().all(|&p| gone(p)));
    let exited = t.elapsed();
    let left: Vec<i32> = family.iter().copied().filter(|&p| !gone(p)).collect();
    left.iter().for_each(|&p| multiproc_testkit::kill_pid(p));
    let reclaimed = wait_until(Duration::from_secs(5), || shm_of(&owners).is_empty());
    eprintln!(
        "Ctrl-C ({role}): the program ended {ended:?} after SIGINT ({status}), \
         its {} processes within {exited:?}",
        family.len()
    );
    assert!(all_gone, "processes survived Ctrl-C: {left:?}");
    assert!(reclaimed, "segments left: {:?}", shm_of(&owners));
    let written = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    (status, written)
}

fn default_disposition() {
    let (status, _) = ctrl_c_during_map("default");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status}");
}

fn taken_by_the_program() {
    let (status, written) = ctrl_c_during_map("handled");
    assert!(status.success(), "{status}");
    let mut lines = written.lines();
    let outcome = lines.next().unwrap_or_default();
    let ms: u64 = lines
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(u64::MAX);
    eprintln!("the map returned {outcome:?} after {ms} ms");
    assert!(outcome.starts_with("Err "), "the map returned {outcome:?}");
    // Started 300 ms before the Ctrl-C; 2,000 tasks of 50 ms on 2 workers
    // would take 50 s.
    assert!(ms < 10_000, "the map returned after {ms} ms");
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        return program(&role);
    }
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        println!("faults_signals: timed out after {WATCHDOG:?}");
        std::process::exit(1);
    });
    let tests: [(&str, fn()); 2] = [
        (
            "ctrl_c_during_map_with_the_default_disposition_leaves_nothing",
            default_disposition,
        ),
        (
            "ctrl_c_taken_by_the_program_gives_map_an_error_and_leaves_nothing",
            taken_by_the_program,
        ),
    ];
    let mut cases = Cases::new();
    for (name, test) in tests {
        cases.run(name, test);
    }
    cases.finish();
}
