//! This process's children, and the state of a pid, read from `/proc`.

use std::time::Duration;

use crate::wait::poll_until;
use crate::SETTLE;

/// The state letter and parent pid of `pid`, from `/proc/<pid>/stat`.
fn state_and_parent(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may hold anything: the fields after its last ')' are
    // state, ppid, ...
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse::<i32>().ok()?;
    Some((state, ppid))
}

/// One entry of `/proc`: its pid, state letter and parent pid.
fn proc_entries() -> Vec<(i32, char, i32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Some((state, ppid)) = state_and_parent(pid) {
            out.push((pid, state, ppid));
        }
    }
    out
}

/// The parent of `pid` (`None` once it is gone).
///
/// # Examples
///
/// ```
/// let me = std::process::id() as i32;
/// assert!(multiproc_testkit::parent_of(me).is_some_and(|p| p != me));
/// ```
pub fn parent_of(pid: i32) -> Option<i32> {
    state_and_parent(pid).map(|(_, ppid)| ppid)
}

/// The scheduler slice, in nanoseconds, of thread `tid` of process `pid`
/// (its `se.slice` in `/proc/<pid>/task/<tid>/sched`; `None` where the
/// kernel shows none, or once it is gone).
///
/// # Examples
///
/// ```
/// let me = std::process::id() as i32;
/// // Kernels with EEVDF (6.6 and later) show one.
/// if let Some(ns) = multiproc_testkit::sched_slice(me, me) {
///     assert!(ns > 0);
/// }
/// ```
pub fn sched_slice(pid: i32, tid: i32) -> Option<u64> {
    let sched = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/sched")).ok()?;
    sched
        .lines()
        .find_map(|l| l.strip_prefix("se.slice"))
        .and_then(|rest| rest.trim_start_matches([' ', ':']).trim().parse().ok())
}

fn my_pid() -> i32 {
    std::process::id() as i32
}

/// Pids of this process's children, running or zombie.
///
/// # Examples
///
/// ```
/// assert!(!multiproc_testkit::children().contains(&(std::process::id() as i32)));
/// ```
pub fn children() -> Vec<i32> {
    let me = my_pid();
    proc_entries()
        .into_iter()
        .filter(|&(_, _, ppid)| ppid == me)
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Pids of every descendant of this process (children, grandchildren, ...),
/// such as the workers a pool's zygote forked.
///
/// # Examples
///
/// ```
/// assert!(!multiproc_testkit::descendants().contains(&(std::process::id() as i32)));
/// ```
pub fn descendants() -> Vec<i32> {
    descendants_of(my_pid())
}

/// Pids of every descendant of process `pid` (children, grandchildren,
/// ...), e.g. of a helper process that started a pool and a manager.
///
/// # Examples
///
/// ```
/// let me = std::process::id() as i32;
/// assert!(!multiproc_testkit::descendants_of(me).contains(&me));
/// ```
pub fn descendants_of(pid: i32) -> Vec<i32> {
    let entries = proc_entries();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            entries
                .iter()
                .filter(|&&(_, _, ppid)| ppid == parent)
                .map(|&(pid, _, _)| pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Pids of this process's children that are zombies (exited, not reaped).
///
/// A snapshot: in a test binary whose tests run in parallel, another test's
/// child may be a zombie for a moment between its exit and its join. To
/// assert that none is left, use [`assert_no_zombie_children`].
pub fn zombie_children() -> Vec<i32> {
    let me = my_pid();
    proc_entries()
        .into_iter()
        .filter(|&(_, state, ppid)| ppid == me && state == 'Z')
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Asserts that no zombie child persists: waits up to [`SETTLE`], polling
/// every 10 ms, for the set of zombie children to become empty.
///
/// # Panics
///
/// If zombies remain after [`SETTLE`]; the message names them.
pub fn assert_no_zombie_children() {
    let settled = poll_until(SETTLE, Duration::from_millis(10), || {
        zombie_children().is_empty()
    });
    assert!(
        settled,
        "zombie children persist after {SETTLE:?}: {:?}",
        zombie_children()
    );
}

/// Asserts that no child process (running or zombie) persists: waits up to
/// [`SETTLE`], polling every 10 ms, for this process to have no children.
///
/// # Panics
///
/// If children remain after [`SETTLE`]; the message names them.
pub fn assert_no_children() {
    let settled = poll_until(SETTLE, Duration::from_millis(10), || children().is_empty());
    assert!(
        settled,
        "child processes persist after {SETTLE:?}: {:?}",
        children()
    );
}

/// True if `pid` no longer exists or is a zombie (it has exited).
///
/// # Examples
///
/// ```
/// assert!(!multiproc_testkit::gone(std::process::id() as i32));
/// ```
pub fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start().starts_with('Z'))
            .unwrap_or(true),
    }
}

/// True if a process `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    !gone(pid)
}

/// True if `pid` has disappeared entirely: it exited and was reaped (a
/// zombie would still be listed in `/proc`).
pub fn reaped(pid: i32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits up to [`SETTLE`] for `pid` to be [`gone`]; returns whether it is.
pub fn wait_gone(pid: i32) -> bool {
    crate::wait_until(SETTLE, || gone(pid))
}

/// Sends SIGKILL to `pid`, ignoring errors (it may be gone already).
pub fn kill_pid(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Waits up to `grace` for all of `pids` to be [`gone`]; SIGKILLs those
/// that are not, and returns them (empty if all went in time).
pub fn kill_survivors(pids: &[i32], grace: Duration) -> Vec<i32> {
    crate::wait_until(grace, || pids.iter().all(|&p| gone(p)));
    let alive: Vec<i32> = pids.iter().copied().filter(|&p| !gone(p)).collect();
    for &p in &alive {
        kill_pid(p);
    }
    alive
}

/// SIGKILLs every child of this process and reaps it (after a test failed
/// or timed out).
pub fn kill_children() {
    for pid in children() {
        kill_pid(pid);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    }
}
