//! A failing initializer breaks the pool (Python's `BrokenProcessPool`)
//! instead of forking replacement workers for ever.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use multiproc_pool::{ErrorKind, Pool, INIT_FAILURE_LIMIT};
use multiproc_testkit::{checked, LIMIT};

fn square(x: u64) -> u64 {
    x * x
}

/// A fresh path for a file that counts initializer runs, one line each.
fn counter_file(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("multiproc-init-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn runs(path: &PathBuf) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

fn count_run(path: &str) -> usize {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(f, "run").unwrap();
    drop(f);
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

fn init_panics(path: String) {
    count_run(&path);
    panic!("the database at {path} is gone");
}

fn init_errs(path: String) -> Result<(), String> {
    count_run(&path);
    Err("no licence for this host".to_string())
}

fn init_aborts(path: String) {
    count_run(&path);
    std::process::abort();
}

/// Fails on its first run only (a transient failure).
fn init_fails_once(path: String) -> Result<(), String> {
    if count_run(&path) == 1 {
        Err("transient".to_string())
    } else {
        Ok(())
    }
}

/// Checks the broken pool: `apply` fails promptly with the cause in the
/// message, no worker is forked any more, and the pool closes and joins.
fn assert_broken(pool: Pool, path: &PathBuf, cause: &str) {
    let t = Instant::now();
    let e = pool.apply(square, 3).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotRunning, "{e}");
    assert!(e.to_string().contains("initializer"), "{e}");
    assert!(e.to_string().contains(cause), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // Later submissions fail at once.
    let e = pool.apply_async(square, 4).unwrap_err();
    assert!(e.to_string().contains(cause), "{e}");
    let e = pool.map(square, 0..100u64).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotRunning, "{e}");
    // Workers forked before the pool broke finish failing; then no worker
    // is left and none is forked any more.
    assert!(
        multiproc_testkit::wait_until(Duration::from_secs(10), || pool.stats().workers_alive == 0),
        "{:?}",
        pool.stats()
    );
    let n = runs(path);
    assert!(
        n >= INIT_FAILURE_LIMIT as usize && n < INIT_FAILURE_LIMIT as usize + pool.processes(),
        "{n} initializer runs"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(runs(path), n, "the pool kept forking workers");
    pool.close();
    pool.join().unwrap();
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_panicking_initializer_breaks_the_pool_with_its_message() {
    checked(LIMIT, || {
        let path = counter_file("panic");
        let pool = Pool::builder()
            .processes(2)
            .initializer(init_panics, path.display().to_string())
            .build()
            .unwrap();
        // Submitted before the pool is known to be broken.
        let pending: Vec<_> = (0..20).map(|i| pool.apply_async(square, i)).collect();
        for r in pending.into_iter().flatten() {
            let e = r.get_timeout(Duration::from_secs(10)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotRunning, "{e}");
            assert!(e.to_string().contains("is gone"), "{e}");
        }
        assert_broken(pool, &path, "is gone");
    });
}

#[test]
fn an_initializer_returning_an_error_breaks_the_pool() {
    checked(LIMIT, || {
        let path = counter_file("err");
        let pool = Pool::builder()
            .processes(1)
            .initializer(init_errs, path.display().to_string())
            .build()
            .unwrap();
        assert_broken(pool, &path, "no licence for this host");
    });
}

#[test]
fn an_initializer_killed_by_a_signal_breaks_the_pool() {
    checked(LIMIT, || {
        let path = counter_file("abort");
        let pool = Pool::builder()
            .processes(1)
            .initializer(init_aborts, path.display().to_string())
            .build()
            .unwrap();
        assert_broken(pool, &path, "SIGABRT");
    });
}

#[test]
fn a_transient_initializer_failure_does_not_break_the_pool() {
    checked(LIMIT, || {
        let path = counter_file("once");
        let pool = Pool::builder()
            .processes(1)
            .initializer(init_fails_once, path.display().to_string())
            .build()
            .unwrap();
        assert_eq!(pool.apply(square, 5).unwrap(), 25);
        assert_eq!(runs(&path), 2);
        drop(pool);
        let _ = std::fs::remove_file(&path);
    });
}

#[test]
fn a_broken_pool_terminates_and_drops_cleanly() {
    checked(LIMIT, || {
        let path = counter_file("drop");
        let pool = Pool::builder()
            .processes(2)
            .initializer(init_panics, path.display().to_string())
            .build()
            .unwrap();
        assert!(pool.apply(square, 1).is_err());
        pool.terminate();
        pool.join().unwrap();
        drop(pool);
        let _ = std::fs::remove_file(&path);
    });
}
