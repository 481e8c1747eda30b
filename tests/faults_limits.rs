//! Fault injection: resource exhaustion. Each scenario runs in a forked
//! child (so the limit or the mount never touches the test runner) and
//! reports what every operation returned: a clear error or a value, never
//! a hang or a crash.
//!
//! * `/dev/shm` full: the child enters a private mount namespace and mounts
//!   a 16 MiB tmpfs on `/dev/shm` (needs root; the test fails, never skips,
//!   without it).
//! * The process limit (`RLIMIT_NPROC`, which binds only a non-root user: the
//!   child drops to `nobody`; needs root to do so).
//! * The fd limit (`RLIMIT_NOFILE`).

use std::process::Command;
use std::time::Duration;

use multiproc::shm::SharedMemory;
use multiproc::{Manager, Pipe, Pool, Process, Queue};
use multiproc_testkit::{checked, wait_until, Kid};
use nix::sys::resource::{getrlimit, setrlimit, Resource};

const LIMIT: Duration = Duration::from_secs(60);

fn need_root(what: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "{what} needs root (CI runs as root): run the faults suite as root"
    );
}

fn square(x: u64) -> u64 {
    x * x
}

fn len(v: Vec<u8>) -> usize {
    v.len()
}

/// `Ok(..)`/`Err(kind: message)` of one operation, as a line.
fn outcome<T: std::fmt::Debug>(what: &str, r: multiproc::Result<T>) -> String {
    match r {
        Ok(v) => format!("{what}: Ok({v:?})"),
        Err(e) => format!("{what}: Err({:?}: {e})", e.kind()),
    }
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// In a private mount namespace with a 16 MiB `/dev/shm`: large shared
/// memory, a large queue item and a large task payload.
fn with_small_dev_shm(_: ()) -> Vec<String> {
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS) {
        return vec![format!("unshare: {e}")];
    }
    if let Err(e) = sh(&["mount", "--make-rprivate", "/"]) {
        return vec![format!("make-rprivate: {e}")];
    }
    if let Err(e) = sh(&[
        "mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", "/dev/shm",
    ]) {
        return vec![format!("mount: {e}")];
    }
    let mut out = vec!["mounted".to_owned()];
    out.push(outcome(
        "shared memory 1 MiB",
        SharedMemory::create("faults-small", 1 << 20).map(|s| s.size()),
    ));
    out.push(outcome(
        "shared memory 64 MiB",
        SharedMemory::create("faults-big", 64 << 20).map(|s| s.size()),
    ));
    match Queue::<Vec<u8>>::new() {
        Ok(q) => {
            out.push(outcome(
                "queue put 64 MiB",
                q.put(vec![5u8; 64 << 20])
                    .map_err(|e| multiproc::Error::new(e.kind(), e.to_string())),
            ));
            out.push(outcome(
                "queue put small after",
                q.put(vec![1, 2, 3])
                    .map_err(|e| multiproc::Error::new(e.kind(), e.to_string())),
            ));
            out.push(outcome(
                "queue get after",
                q.get_timeout(Duration::from_secs(5))
                    .map(|v| v.len())
                    .map_err(|e| multiproc::Error::new(e.kind(), e.to_string())),
            ));
        }
        Err(e) => out.push(format!("queue: Err({:?}: {e})", e.kind())),
    }
    match Pool::new(2) {
        Ok(pool) => {
            out.push(outcome("pool apply", pool.apply(square, 3)));
            out.push(outcome(
                "pool apply 64 MiB payload",
                pool.apply(len, vec![0u8; 64 << 20]),
            ));
            out.push(outcome("pool apply after", pool.apply(square, 4)));
            // One chunk of 3 million numbers (24 MB) cannot get its block.
            out.push(outcome(
                "pool map 24 MB chunk",
                pool.map_chunksize(square, 0..3_000_000u64, 3_000_000)
                    .map(|v| v.len()),
            ));
            out.push(outcome(
                "pool map after",
                pool.map(square, 0..300_000u64).map(|v| v.len()),
            ));
        }
        Err(e) => out.push(format!("pool: Err({:?}: {e})", e.kind())),
    }
    out
}

#[test]
fn dev_shm_full_gives_clear_errors() {
    need_root("mounting a small tmpfs on /dev/shm in a private mount namespace");
    checked(LIMIT, || {
        let lines = Kid::spawn(with_small_dev_shm, ()).join();
        eprintln!("/dev/shm full:\n  {}", lines.join("\n  "));
        assert_eq!(lines[0], "mounted", "{lines:?}");
        let find = |what: &str| {
            lines
                .iter()
                .find(|l| l.starts_with(&format!("{what}:")))
                .cloned()
                .unwrap_or_default()
        };
        assert!(find("shared memory 1 MiB").contains("Ok("), "{lines:?}");
        assert!(find("shared memory 64 MiB").contains("Err(Io"), "{lines:?}");
        assert!(find("queue put 64 MiB").contains("Err("), "{lines:?}");
        assert!(find("queue get after").contains("Ok(3)"), "{lines:?}");
        assert!(find("pool apply after").contains("Ok(16)"), "{lines:?}");
        assert!(find("pool map 24 MB chunk").contains("Err(Io"), "{lines:?}");
        assert!(find("pool map after").contains("Ok(300000)"), "{lines:?}");
    });
}

fn count_tasks_of_uid(uid: u32) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let p = e.path().join("status");
        if let Ok(s) = std::fs::read_to_string(p) {
            let mine = s
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|u| u.parse::<u32>().ok())
                == Some(uid);
            if mine {
                n += s
                    .lines()
                    .find_map(|l| l.strip_prefix("Threads:"))
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .unwrap_or(1);
            }
        }
    }
    n
}

/// As `nobody`, with room for `extra` more tasks: a pool of 8, a process,
/// then the same with the limit lifted.
fn with_process_limit(extra: u64) -> Vec<String> {
    let nobody = nix::unistd::Uid::from_raw(65534);
    if let Err(e) = nix::unistd::setgid(nix::unistd::Gid::from_raw(65534))
        .and_then(|()| nix::unistd::setuid(nobody))
    {
        return vec![format!("setuid: {e}")];
    }
    let n = count_tasks_of_uid(65534) + extra;
    if let Err(e) = setrlimit(Resource::RLIMIT_NPROC, n, 4096) {
        return vec![format!("setrlimit: {e}")];
    }
    let mut out = vec![format!("limited to {n} tasks")];
    match Pool::new(8) {
        Ok(pool) => {
            out.push(outcome("pool apply", pool.apply(square, 3)));
            out.push(outcome(
                "pool map",
                pool.map(square, 0..100u64).map(|v| v.len()),
            ));
        }
        Err(e) => out.push(format!("pool: Err({:?}: {e})", e.kind())),
    }
    out.push(outcome(
        "process spawn",
        Process::spawn(square, 5u64).and_then(|mut p| p.join_timeout(Duration::from_secs(10))),
    ));
    let _ = setrlimit(Resource::RLIMIT_NPROC, 4096, 4096);
    out.push(outcome(
        "pool after the limit is lifted",
        Pool::new(2).and_then(|p| p.apply(square, 6)),
    ));
    out
}

#[test]
fn the_process_limit_gives_clear_errors() {
    need_root("dropping to nobody (RLIMIT_NPROC does not bind root)");
    checked(LIMIT, || {
        // Room for: not even the pool's zygote and workers; the zygote and
        // some workers; more of them.
        let nobody = count_tasks_of_uid(65534);
        for extra in [3, 5, 6] {
            let lines = Kid::spawn(with_process_limit, extra).join();
            // Everything the child started exits with it.
            assert!(
                wait_until(Duration::from_secs(5), || count_tasks_of_uid(65534)
                    <= nobody),
                "processes of the limited child survive it"
            );
            eprintln!("RLIMIT_NPROC (+{extra}):\n  {}", lines.join("\n  "));
            assert!(lines[0].starts_with("limited"), "{lines:?}");
            let failed = lines.iter().any(|l| l.contains("Err("));
            assert!(failed, "nothing hit the process limit: {lines:?}");
            assert!(lines.last().unwrap().contains("Ok(36)"), "{lines:?}");
        }
    });
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// With room for `extra` more descriptors: pools, managers, queues and
/// pipes until something fails; then the same with the limit lifted.
fn with_fd_limit(extra: u64) -> Vec<String> {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    let n = open_fds() + extra;
    if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, n, hard) {
        return vec![format!("setrlimit: {e}")];
    }
    let mut out = vec![format!("limited to {n} descriptors")];
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    for i in 0..40 {
        match Pool::new(2).and_then(|p| p.apply(square, i).map(|_| p)) {
            Ok(p) => keep.push(Box::new(p)),
            Err(e) => {
                out.push(format!("pool {i}: Err({:?}: {e})", e.kind()));
                break;
            }
        }
    }
    for i in 0..40 {
        match Manager::start().and_then(|m| m.dict::<u8, u8>().map(|d| (m, d))) {
            Ok(m) => keep.push(Box::new(m)),
            Err(e) => {
                out.push(format!("manager {i}: Err({:?}: {e})", e.kind()));
                break;
            }
        }
    }
    for i in 0..200 {
        match Pipe::new::<u8>() {
            Ok(p) => keep.push(Box::new(p)),
            Err(e) => {
                out.push(format!("pipe {i}: Err({:?}: {e})", e.kind()));
                break;
            }
        }
    }
    out.push(format!("{} objects made", keep.len()));
    drop(keep);
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    out.push(outcome(
        "pool after the limit is lifted",
        Pool::new(2).and_then(|p| p.apply(square, 7)),
    ));
    out
}

#[test]
fn the_fd_limit_gives_clear_errors() {
    checked(LIMIT, || {
        let lines = Kid::spawn(with_fd_limit, 24).join();
        eprintln!("RLIMIT_NOFILE:\n  {}", lines.join("\n  "));
        assert!(lines[0].starts_with("limited"), "{lines:?}");
        for kind in ["pool", "manager", "pipe"] {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(kind) && l.contains("Err(")),
                "no {kind} hit the limit: {lines:?}"
            );
        }
        assert!(lines.last().unwrap().contains("Ok(49)"), "{lines:?}");
    });
}
