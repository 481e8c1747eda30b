//! `multiproc::init()` called from a constructor that runs before `main`
//! (before the library's own start-up code, whose order is up to the
//! linker): children forked through the fork server it starts must accept
//! this program's functions.
//!
//! The constructor acts only in a re-executed copy of this test binary
//! (the role variable set); a normal test run is untouched.

use std::sync::atomic::{AtomicU32, Ordering};

use multiproc::Process;
use multiproc_testkit::{Reexec, LIMIT};

const ROLE: &str = "MP_INIT_FROM_CTOR";

/// 0: not run (no role), 1: `init` succeeded, 2: it failed.
static INIT_OUTCOME: AtomicU32 = AtomicU32::new(0);

extern "C" fn init_before_main() {
    if std::env::var_os(ROLE).is_some() {
        let outcome = match multiproc::init() {
            Ok(()) => 1,
            Err(_) => 2,
        };
        INIT_OUTCOME.store(outcome, Ordering::SeqCst);
    }
}

// The std-only way to run code before `main`: the loader calls every
// function pointer in `.init_array` at start-up. This one is linked ahead of
// the library's own.
#[used]
#[link_section = ".init_array"]
static INIT_BEFORE_MAIN: extern "C" fn() = init_before_main;

fn double(x: u32) -> u32 {
    x * 2
}

/// The helper's side: runs only in the re-executed binary.
#[test]
fn helper_spawns_after_ctor_init() {
    if std::env::var_os(ROLE).is_none() {
        return;
    }
    assert_eq!(INIT_OUTCOME.load(Ordering::SeqCst), 1, "init() failed");
    assert!(multiproc_ipc::fork_server().is_some(), "no fork server");
    for x in 0..3 {
        let mut p = Process::spawn(double, x).expect("spawn");
        match p.join_timeout(LIMIT) {
            Ok(v) => println!("CTOR-INIT {x} {v}"),
            Err(e) => {
                let _ = p.kill();
                let _ = p.join_timeout(LIMIT);
                panic!("spawn through the fork server failed: {e}");
            }
        }
    }
}

/// Issue 8, item 15: `init()` from a constructor, then `Process::spawn`.
#[test]
fn init_from_a_constructor_before_main() {
    let (status, out) = Reexec::test("helper_spawns_after_ctor_init")
        .env(ROLE, "1")
        .spawn()
        .output(LIMIT);
    assert!(status.success(), "helper failed: {status}\n{out}");
    for x in 0..3 {
        assert!(
            out.contains(&format!("CTOR-INIT {x} {}", x * 2)),
            "missing result for {x}:\n{out}"
        );
    }
}
