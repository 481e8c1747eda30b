//! A pool worker keeps the memory its tasks free for its next tasks
//! (`multiproc::heap`), and `MULTIPROC_WORKER_HEAP_MB=off` leaves malloc's
//! defaults, which give a large freed buffer back to the system at once.
//!
//! The `off` case runs in a re-executed copy of this test binary (role
//! `MP_HEAP_ROLE`), because the variable is read once per process.

use std::time::Duration;

use multiproc::{heap, Pool};
use multiproc_testkit::{checked, Reexec};

const ROLE: &str = "MP_HEAP_ROLE";
const LIMIT: Duration = Duration::from_secs(60);

/// This process's resident memory, in KiB.
fn rss_kib() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

/// Fills `mib` MiB, frees them, and returns the KiB of them this process
/// still holds.
fn held_after_free(mib: usize) -> i64 {
    let before = rss_kib();
    let buffer = vec![1u8; mib << 20];
    std::hint::black_box(&buffer);
    drop(buffer);
    rss_kib() - before
}

/// `(held by a worker after a 16 MiB task, held after a second one)`.
fn worker_holds() -> (i64, i64) {
    let pool = Pool::new(1).unwrap();
    let first = pool.apply(held_after_free, 16).unwrap();
    let second = pool.apply(held_after_free, 16).unwrap();
    (first, second)
}

#[test]
fn a_worker_keeps_what_its_tasks_free_for_the_next_ones() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    checked(LIMIT, || {
        assert_eq!(heap::keep_bytes(), heap::DEFAULT_KEEP_MB << 20);
        let (first, second) = worker_holds();
        assert!(
            first >= 12 << 10,
            "the worker gave back what it freed: {first} KiB held"
        );
        // The second task reuses the pages: it holds nothing new.
        assert!(second < 4 << 10, "{second} KiB more held");
    });
}

#[test]
fn off_leaves_mallocs_defaults() {
    if std::env::var_os(ROLE).is_some() {
        return;
    }
    checked(LIMIT, || {
        let (status, out) = Reexec::test("heap_role")
            .env(ROLE, "off")
            .env("MULTIPROC_WORKER_HEAP_MB", "off")
            .spawn()
            .output(LIMIT);
        assert!(status.success(), "{status}\n{out}");
        assert!(out.contains("heap checked"), "the role ran: {out}");
    });
}

/// The re-executed role (does nothing in a normal run).
#[test]
fn heap_role() {
    if std::env::var_os(ROLE).is_none() {
        return;
    }
    assert_eq!(heap::keep_bytes(), 0);
    let (first, _) = worker_holds();
    assert!(
        first < 4 << 10,
        "malloc's defaults give a large buffer back: {first} KiB held"
    );
    println!("heap checked");
}
