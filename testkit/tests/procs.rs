//! The kit's process checks see real children: a zombie that persists is
//! reported, one that is reaped in time is not.

use std::process::Command;
use std::time::Duration;

use multiproc_testkit::{
    assert_no_zombie_children, children, gone, reaped, wait_until, zombie_children, SETTLE,
};

#[test]
fn a_persisting_zombie_fails_the_check_and_a_reaped_one_passes() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    assert!(children().contains(&pid));
    // Not waited for: once it exits it stays a zombie.
    assert!(
        wait_until(SETTLE, || zombie_children().contains(&pid)),
        "{pid} never became a zombie"
    );
    assert!(gone(pid) && !reaped(pid));
    let failed = std::panic::catch_unwind(assert_no_zombie_children);
    let msg = failed.expect_err("a persisting zombie must fail the check");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains(&pid.to_string()), "{msg}");
    child.wait().unwrap();

    // Reaped a moment after the check starts: the check waits and passes.
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    assert!(wait_until(SETTLE, || zombie_children().contains(&pid)));
    let reaper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        child.wait().unwrap();
    });
    assert_no_zombie_children();
    reaper.join().unwrap();
    assert!(reaped(pid));
}
