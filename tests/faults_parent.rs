//! Fault injection: the parent SIGKILLed, with and without `init()`.
//!
//! A re-executed copy of this binary (the "parent") starts a pool with a
//! busy worker and a task payload in a shared-memory block, a manager, a
//! queue holding an item in its own segment and, with `init()`, the fork
//! server; it prints the pids and waits. The test SIGKILLs it and checks
//! that every process it started exits within 1 s and that every
//! shared-memory segment it made is reclaimed.
//!
//! `harness = false`: the parent with `init()` must call it before any
//! thread exists.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use multiproc::{Manager, Pool, Queue};
use multiproc_testkit::{descendants_of, gone, shm_names, wait_until, Cases, Reexec};

const ROLE: &str = "MULTIPROC_FAULTS_PARENT";
const WATCHDOG: Duration = Duration::from_secs(90);
/// How soon every process must be gone after the parent's death.
const EXIT: Duration = Duration::from_secs(1);
/// How soon the shared memory must be reclaimed.
const RECLAIM: Duration = Duration::from_secs(5);

fn sleep_long(_: ()) -> u32 {
    std::thread::sleep(Duration::from_secs(120));
    0
}

fn length(v: Vec<u8>) -> usize {
    std::thread::sleep(Duration::from_secs(120));
    v.len()
}

/// The parent's role: start everything, print the pids, wait to be killed.
fn parent() {
    let pool = Pool::new(2).expect("pool");
    let manager = Manager::start().expect("manager");
    let d = manager.dict::<u32, u32>().expect("dict");
    d.insert(&1, &1).expect("insert");
    let q = Queue::<Vec<u8>>::new().expect("queue");
    // An item too large for the ring: it sits in its own segment.
    q.put(vec![7u8; 8 << 20]).expect("put");
    let busy = pool.apply_async(sleep_long, ()).expect("apply");
    // A payload too large for the ring: it travels in a block.
    let big = pool
        .apply_async(length, vec![1u8; 16 << 20])
        .expect("apply");
    std::thread::sleep(Duration::from_millis(300));
    let mut pids = pool.worker_pids();
    pids.push(manager.pid());
    if let Some(server) = multiproc_ipc::fork_server() {
        pids.push(server.pid());
    }
    let line: Vec<String> = pids.iter().map(i32::to_string).collect();
    println!("PIDS {}", line.join(" "));
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_secs(120));
    drop((busy, big, q, d));
}

/// The shared-memory entries named after any of `pids`.
fn shm_of(pids: &BTreeSet<i32>) -> Vec<String> {
    let mut v = Vec::new();
    for p in pids {
        v.extend(shm_names(&format!("mp-{p}-")));
        v.extend(shm_names(&format!("mpp-{p}-")));
    }
    v
}

fn parent_sigkill_leaves_nothing(with_init: bool) {
    let mut helper = Reexec::program()
        .env(ROLE, if with_init { "init" } else { "plain" })
        .spawn();
    let hpid = helper.pid() as i32;
    let printed = helper.read_pids("PIDS ", Duration::from_secs(30));
    let mut family: BTreeSet<i32> = descendants_of(hpid).into_iter().collect();
    family.extend(&printed);
    helper.adopt(&family.iter().copied().collect::<Vec<_>>());
    let mut owners = family.clone();
    owners.insert(hpid);
    let segments = shm_of(&owners);
    assert!(
        !segments.is_empty(),
        "the parent made no shared memory to reclaim"
    );
    let t = Instant::now();
    helper.kill();
    let all_gone = wait_until(Duration::from_secs(10), || family.iter().all(|&p| gone(p)));
    let exited = t.elapsed();
    let left: Vec<i32> = family.iter().copied().filter(|&p| !gone(p)).collect();
    let reclaimed = wait_until(RECLAIM, || shm_of(&owners).is_empty());
    let freed = t.elapsed();
    println!(
        "parent SIGKILL ({}): {} processes exited in {exited:?}, {} segments reclaimed in {freed:?}",
        if with_init { "init" } else { "no init" },
        family.len(),
        segments.len()
    );
    for p in &left {
        multiproc_testkit::kill_pid(*p);
    }
    assert!(all_gone, "processes survived the parent: {left:?}");
    assert!(exited < EXIT, "the family took {exited:?} to exit");
    assert!(reclaimed, "segments left: {:?}", shm_of(&owners));
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("init") => {
            multiproc::init().expect("init before any thread");
            return parent();
        }
        Ok(_) => return parent(),
        Err(_) => {}
    }
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        println!("faults_parent: timed out after {WATCHDOG:?}");
        std::process::exit(1);
    });
    let tests: [(&str, bool); 2] = [
        ("parent_sigkill_without_init_leaves_nothing", false),
        ("parent_sigkill_with_init_leaves_nothing", true),
    ];
    let mut cases = Cases::new();
    for (name, with_init) in tests {
        cases.run(name, || parent_sigkill_leaves_nothing(with_init));
    }
    cases.finish();
}
