//! `Executor`: Python's `concurrent.futures.ProcessPoolExecutor`.

use std::future::Future as _;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use multiproc_pool::{
    as_completed, wait, ErrorKind, Executor, IMapOptions, ReturnWhen, EXECUTOR_QUEUE_PER_WORKER,
};
use multiproc_testkit::{checked, kill_pid, LIMIT};

const BOUND: Duration = Duration::from_secs(20);

fn square(x: u64) -> u64 {
    x * x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn fails(x: u64) -> u64 {
    if x % 2 == 1 {
        panic!("odd {x}");
    }
    x
}

fn pid(_: ()) -> i32 {
    std::process::id() as i32
}

/// Creates the marker file `path` (a side effect a cancelled task must not have).
fn mark(path: String) -> bool {
    std::fs::write(path, b"ran").is_ok()
}

fn marker_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("multiproc-exec-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn marker(dir: &Path, i: usize) -> String {
    dir.join(format!("m{i}")).display().to_string()
}

#[test]
fn submit_results_and_done_callbacks() {
    checked(LIMIT, || {
        let ex = Executor::new(2).unwrap();
        let (tx, rx) = mpsc::channel();
        let futures: Vec<_> = (0..10u64)
            .map(|i| {
                let f = ex.submit(square, i).unwrap();
                let tx = tx.clone();
                f.add_done_callback(move |r| tx.send((i, r.ok().copied())).unwrap());
                f
            })
            .collect();
        let mut seen: Vec<(u64, Option<u64>)> =
            (0..10).map(|_| rx.recv_timeout(BOUND).unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..10u64).map(|i| (i, Some(i * i))).collect::<Vec<_>>()
        );
        let ids: Vec<u64> = futures.iter().map(|f| f.id()).collect();
        assert!(ids.windows(2).all(|w| w[0] != w[1]));
        for (i, f) in futures.into_iter().enumerate() {
            assert!(f.done() && !f.running() && !f.cancelled());
            assert!(f.exception().is_none());
            // A callback added after the fact runs at once.
            let (t2, r2) = mpsc::channel();
            f.add_done_callback(move |r| t2.send(r.ok().copied()).unwrap());
            assert_eq!(r2.try_recv().unwrap(), Some(square(i as u64)));
            assert_eq!(f.result().unwrap(), square(i as u64));
        }
        // Errors come back as values, through exception() too.
        let f = ex.submit(fails, 3).unwrap();
        let e = f.exception().unwrap();
        assert_eq!(e.kind(), ErrorKind::TaskPanicked);
        assert!(e.to_string().contains("odd 3"));
        assert_eq!(f.result().unwrap_err().kind(), ErrorKind::TaskPanicked);
    });
}

#[test]
fn queued_tasks_cancel_and_never_run() {
    checked(LIMIT, || {
        let dir = marker_dir("cancel");
        let ex = Executor::new(1).unwrap();
        let blocker = ex.submit(sleep_ms, 400).unwrap();
        let n = EXECUTOR_QUEUE_PER_WORKER + 10;
        let futures: Vec<_> = (0..n)
            .map(|i| ex.submit(mark, marker(&dir, i)).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        assert!(blocker.running());
        assert!(!blocker.cancel(), "a running task cannot be cancelled");
        // Queued, at the worker (the first EXECUTOR_QUEUE_PER_WORKER) or
        // behind it: none is running, every one can be cancelled. Every
        // other one is, so that the worker skips cancelled tasks between
        // tasks it runs.
        assert!(futures.iter().all(|f| !f.running() && !f.done()));
        let mut cancelled = Vec::new();
        for (i, f) in futures.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
            let (tx, rx) = mpsc::channel();
            f.add_done_callback(move |r| tx.send(r.unwrap_err().kind()).unwrap());
            assert!(f.cancel(), "task {i} was queued");
            assert!(f.cancel(), "cancelling again is true");
            assert!(f.cancelled() && f.done() && !f.running());
            assert_eq!(rx.recv_timeout(BOUND).unwrap(), ErrorKind::Cancelled);
            cancelled.push(i);
        }
        assert_eq!(blocker.result_timeout(BOUND).unwrap(), 400);
        ex.shutdown(true, false).unwrap();
        for (i, f) in futures.into_iter().enumerate() {
            let ran = Path::new(&marker(&dir, i)).exists();
            if cancelled.contains(&i) {
                assert!(!ran, "cancelled task {i} ran");
                assert_eq!(f.result().unwrap_err().kind(), ErrorKind::Cancelled);
            } else {
                assert!(ran, "task {i} did not run");
                assert!(!f.cancel(), "a finished task cannot be cancelled");
                assert!(f.result().unwrap());
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn shutdown_with_cancel_futures_cancels_what_has_not_started() {
    checked(LIMIT, || {
        let ex = Executor::new(1).unwrap();
        let futures: Vec<_> = (0..30).map(|_| ex.submit(sleep_ms, 20).unwrap()).collect();
        let t = Instant::now();
        ex.shutdown(true, true).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        // All but the one or two the worker had started, although all 30
        // were queued at the worker already.
        let cancelled = futures.iter().filter(|f| f.cancelled()).count();
        assert!(cancelled >= 28, "{cancelled} cancelled");
        for f in futures {
            match f.result() {
                Ok(v) => assert_eq!(v, 20),
                Err(e) => assert_eq!(e.kind(), ErrorKind::Cancelled),
            }
        }
        let e = ex.submit(square, 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotRunning);
        assert_eq!(
            ex.map(square, 0..3u64).unwrap_err().kind(),
            ErrorKind::NotRunning
        );
        ex.shutdown(true, false).unwrap(); // again: harmless
    });
}

#[test]
fn as_completed_yields_in_completion_order_and_times_out() {
    checked(LIMIT, || {
        let ex = Executor::new(3).unwrap();
        let fs: Vec<_> = [600u64, 10, 250]
            .into_iter()
            .map(|ms| ex.submit(sleep_ms, ms).unwrap())
            .collect();
        let order: Vec<u64> = as_completed(fs, Some(BOUND))
            .map(|f| f.unwrap().result().unwrap())
            .collect();
        assert_eq!(order, vec![10, 250, 600]);
        let fs = vec![
            ex.submit(sleep_ms, 10).unwrap(),
            ex.submit(sleep_ms, 1_500).unwrap(),
        ];
        let mut it = as_completed(fs, Some(Duration::from_millis(500)));
        assert_eq!(it.next().unwrap().unwrap().result().unwrap(), 10);
        let e = it.next().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(it.next().is_none());
        let rest = it.into_remaining();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest.into_iter().next().unwrap().result().unwrap(), 1_500);
    });
}

#[test]
fn wait_returns_done_and_not_done() {
    checked(LIMIT, || {
        let ex = Executor::new(2).unwrap();
        let fs = vec![
            ex.submit(sleep_ms, 10).unwrap(),
            ex.submit(sleep_ms, 2_000).unwrap(),
        ];
        let w = wait(fs, Some(BOUND), ReturnWhen::FirstCompleted);
        assert_eq!((w.done.len(), w.not_done.len()), (1, 1));
        let w = wait(
            w.not_done,
            Some(Duration::from_millis(100)),
            ReturnWhen::AllCompleted,
        );
        assert_eq!((w.done.len(), w.not_done.len()), (0, 1), "timed out");
        let w = wait(w.not_done, Some(BOUND), ReturnWhen::AllCompleted);
        assert_eq!((w.done.len(), w.not_done.len()), (1, 0));
        // FIRST_EXCEPTION: returns at the first failure.
        let fs = vec![
            ex.submit(sleep_ms, 1_500).unwrap(),
            ex.submit(fails, 1).unwrap(),
        ];
        let t = Instant::now();
        let w = wait(fs, Some(BOUND), ReturnWhen::FirstException);
        assert!(
            t.elapsed() < Duration::from_millis(1_200),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(w.done.len(), 1);
        assert_eq!(
            w.done[0].exception().unwrap().kind(),
            ErrorKind::TaskPanicked
        );
        // Without a failure it waits for all.
        let fs = vec![ex.submit(square, 2).unwrap(), ex.submit(square, 3).unwrap()];
        let w = wait(fs, Some(BOUND), ReturnWhen::FirstException);
        assert_eq!((w.done.len(), w.not_done.len()), (2, 0));
    });
}

fn die(_: ()) -> u64 {
    std::process::abort()
}

#[test]
fn a_killed_worker_fails_only_its_task_and_the_executor_goes_on() {
    checked(LIMIT, || {
        let ex = Executor::new(2).unwrap();
        let before = ex.submit(sleep_ms, 100).unwrap();
        let f = ex.submit(die, ()).unwrap();
        let e = f.result().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WorkerLost, "{e}");
        assert_eq!(before.result().unwrap(), 100);
        // Still usable, and a worker killed from outside is replaced too.
        let victim = ex.submit(pid, ()).unwrap().result().unwrap();
        kill_pid(victim);
        let v: Vec<u64> = ex
            .map(square, 0..100u64)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(v[99], 99 * 99);
    });
}

/// Tasks cancelled in a worker's queue stay cancelled when that worker is
/// killed: the others it held are run by its replacement, the cancelled
/// ones never.
#[test]
fn tasks_cancelled_at_a_killed_worker_never_run() {
    checked(LIMIT, || {
        let dir = marker_dir("cancel-kill");
        let ex = Executor::new(1).unwrap();
        let blocker = ex.submit(sleep_ms, 5_000).unwrap();
        let futures: Vec<_> = (0..20)
            .map(|i| ex.submit(mark, marker(&dir, i)).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        for f in futures.iter().step_by(2) {
            assert!(f.cancel());
        }
        for p in ex.worker_pids() {
            kill_pid(p);
        }
        assert_eq!(
            blocker.result_timeout(BOUND).unwrap_err().kind(),
            ErrorKind::WorkerLost
        );
        for (i, f) in futures.into_iter().enumerate() {
            let r = f.result_timeout(BOUND);
            let ran = Path::new(&marker(&dir, i)).exists();
            if i % 2 == 0 {
                assert_eq!(r.unwrap_err().kind(), ErrorKind::Cancelled);
                assert!(!ran, "cancelled task {i} ran");
            } else {
                assert!(r.unwrap(), "task {i}");
                assert!(ran, "task {i} did not run");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// A skipped (cancelled) task counts towards `max_tasks_per_child` as the
/// parent counts it: the worker retires on time and later tasks run.
#[test]
fn cancelled_tasks_count_towards_max_tasks_per_child() {
    checked(LIMIT, || {
        let ex = Executor::builder()
            .max_workers(1)
            .max_tasks_per_child(3)
            .build()
            .unwrap();
        let first = ex.submit(sleep_ms, 300).unwrap();
        let cancelled = ex.submit(square, 2).unwrap();
        let third = ex.submit(square, 3).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(cancelled.cancel());
        let after = ex.submit(square, 4).unwrap();
        assert_eq!(first.result_timeout(BOUND).unwrap(), 300);
        assert_eq!(third.result_timeout(BOUND).unwrap(), 9);
        assert_eq!(after.result_timeout(BOUND).unwrap(), 16);
        assert_eq!(cancelled.result().unwrap_err().kind(), ErrorKind::Cancelled);
    });
}

#[test]
fn dropping_the_executor_waits_for_submitted_work() {
    checked(LIMIT, || {
        let dir = marker_dir("drop");
        let ex = Executor::new(2).unwrap();
        let fs: Vec<_> = (0..12)
            .map(|i| ex.submit(mark, marker(&dir, i)).unwrap())
            .collect();
        drop(ex);
        for (i, f) in fs.into_iter().enumerate() {
            assert!(f.done());
            assert!(f.result().unwrap());
            assert!(Path::new(&marker(&dir, i)).exists());
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn map_is_ordered_lazy_and_has_a_deadline() {
    checked(LIMIT, || {
        let ex = Executor::new(2).unwrap();
        let v: Vec<_> = ex.map(fails, 0..6u64).unwrap().collect();
        assert_eq!(*v[4].as_ref().unwrap(), 4);
        assert_eq!(v[5].as_ref().unwrap_err().kind(), ErrorKind::TaskPanicked);
        let first: Vec<u64> = ex
            .map_with(square, 0u64.., IMapOptions::new().chunksize(16), None)
            .unwrap()
            .take(100)
            .map(Result::unwrap)
            .collect();
        assert_eq!(first[99], 99 * 99);
        let out: Vec<_> = ex
            .map_with(
                sleep_ms,
                vec![5, 1_500, 5],
                IMapOptions::new(),
                Some(Duration::from_millis(300)),
            )
            .unwrap()
            .collect();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].as_ref().unwrap_err().kind(), ErrorKind::Timeout);
        ex.shutdown(false, true).unwrap();
    });
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

#[test]
fn futures_can_be_awaited() {
    checked(LIMIT, || {
        let ex = Executor::new(1).unwrap();
        let f = ex.submit(square, 12).unwrap();
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut f = pin!(f);
        let deadline = Instant::now() + BOUND;
        let v = loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                break v;
            }
            assert!(Instant::now() < deadline, "never completed");
            std::thread::park_timeout(Duration::from_millis(100));
        };
        assert_eq!(v.unwrap(), 144);
    });
}
