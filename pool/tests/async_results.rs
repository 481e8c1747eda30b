//! AsyncResult semantics, callbacks and error callbacks, and `Future`.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use multiproc_pool::{ApplyOptions, ErrorKind, Pool};
use multiproc_testkit::{checked, LIMIT};

fn square(x: u64) -> u64 {
    x * x
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn fails(_: ()) -> u64 {
    panic!("always fails")
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: polls `fut` on this thread until it completes.
fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        assert!(Instant::now() < deadline, "future never completed");
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn get_timeout_times_out_and_a_later_get_succeeds() {
    checked(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        let r = pool.apply_async(sleep_ms, 300).unwrap();
        let t = Instant::now();
        let e = r.get_timeout(Duration::from_millis(50)).unwrap_err();
        assert!(e.is_timeout());
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert!(!r.ready());
        assert_eq!(r.successful(), None);
        assert!(!r.wait_timeout(Duration::from_millis(1)));
        assert_eq!(r.get().unwrap(), 300);
    });
}

#[test]
fn ready_successful_and_wait() {
    checked(LIMIT, || {
        let pool = Pool::new(1).unwrap();
        let ok = pool.apply_async(square, 4).unwrap();
        let bad = pool.apply_async(fails, ()).unwrap();
        ok.wait();
        assert!(bad.wait_timeout(Duration::from_secs(10)));
        assert!(ok.ready() && bad.ready());
        assert_eq!(ok.successful(), Some(true));
        assert_eq!(bad.successful(), Some(false));
        assert_eq!(ok.get_timeout(Duration::from_secs(1)).unwrap(), 16);
        // Taken once: a second take is an error, not a hang.
        assert_eq!(
            ok.get_timeout(Duration::from_secs(1)).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(bad.get().unwrap_err().kind(), ErrorKind::TaskPanicked);
    });
}

#[test]
fn callbacks_run_in_the_parent_without_get() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let (tx, rx) = mpsc::channel();
        for i in 0..50u64 {
            let tx = tx.clone();
            pool.apply_async_with(
                square,
                i,
                ApplyOptions::new().callback(move |v: &u64| {
                    tx.send((std::process::id(), *v)).unwrap();
                }),
            )
            .unwrap();
        }
        let mut got: Vec<u64> = (0..50)
            .map(|_| {
                let (pid, v) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
                assert_eq!(pid, std::process::id(), "callbacks run in the parent");
                v
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..50u64).map(|x| x * x).collect::<Vec<_>>());
        let (etx, erx) = mpsc::channel();
        let r = pool
            .apply_async_with(
                fails,
                (),
                ApplyOptions::new()
                    .callback(|_: &u64| panic!("not called"))
                    .error_callback(move |e| etx.send(e.kind()).unwrap()),
            )
            .unwrap();
        assert_eq!(
            erx.recv_timeout(Duration::from_secs(10)).unwrap(),
            ErrorKind::TaskPanicked
        );
        assert_eq!(r.get().unwrap_err().kind(), ErrorKind::TaskPanicked);
        let (mtx, mrx) = mpsc::channel();
        pool.map_async_with(
            square,
            0..10u64,
            None,
            ApplyOptions::new().callback(move |v: &Vec<u64>| mtx.send(v.len()).unwrap()),
        )
        .unwrap();
        assert_eq!(mrx.recv_timeout(Duration::from_secs(10)).unwrap(), 10);
    });
}

#[test]
fn a_panicking_callback_is_reported_and_the_pool_goes_on() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let r = pool
            .apply_async_with(
                square,
                3,
                ApplyOptions::new().callback(|_: &u64| panic!("callback bug")),
            )
            .unwrap();
        assert_eq!(r.get().unwrap(), 9);
        assert_eq!(pool.callback_panics(), 1);
        let calls = Arc::new(AtomicUsize::new(0));
        let rs: Vec<_> = (0..20u64)
            .map(|i| {
                let c = Arc::clone(&calls);
                pool.apply_async_with(
                    square,
                    i,
                    ApplyOptions::new().callback(move |_: &u64| {
                        c.fetch_add(1, Ordering::SeqCst);
                    }),
                )
                .unwrap()
            })
            .collect();
        for r in rs {
            r.get().unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 20);
    });
}

#[test]
fn async_results_are_futures() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let a = pool.apply_async(square, 5).unwrap();
        let b = pool.apply_async(sleep_ms, 50).unwrap();
        let c = pool.apply_async(fails, ()).unwrap();
        let (x, y, z) = block_on(async { (a.await, b.await, c.await) });
        assert_eq!(x.unwrap(), 25);
        assert_eq!(y.unwrap(), 50);
        assert_eq!(z.unwrap_err().kind(), ErrorKind::TaskPanicked);
    });
}

#[test]
fn a_callback_may_wait_for_another_result() {
    checked(LIMIT, || {
        let pool = Arc::new(Pool::new(2).unwrap());
        let (tx, rx) = mpsc::channel();
        let p = Arc::clone(&pool);
        pool.apply_async_with(
            square,
            2,
            ApplyOptions::new().callback(move |v: &u64| {
                let inner = p.apply(square, *v).unwrap();
                tx.send(inner).unwrap();
            }),
        )
        .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), 16);
        drop(pool);
    });
}

fn pid_after_ms(ms: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

/// A worker busy with a long task is loaded even while it is awake: the
/// next task goes to the idle worker (asleep or not), not behind it. Round
/// after round, as the workers' sleep states change between them.
#[test]
fn a_task_goes_to_an_idle_worker_not_behind_a_running_one() {
    checked(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        for round in 0..4 {
            // Tiny tasks first: one worker or both awake and spinning.
            for r in (0..50u64)
                .map(|i| pool.apply_async(square, i).unwrap())
                .collect::<Vec<_>>()
            {
                r.get().unwrap();
            }
            let a = pool.apply_async(pid_after_ms, 200).unwrap();
            // Let the first start: the choice below sees a running task.
            std::thread::sleep(Duration::from_millis(20));
            let b = pool.apply_async(pid_after_ms, 200).unwrap();
            let (a, b) = (a.get().unwrap(), b.get().unwrap());
            assert_ne!(a, b, "round {round}: both ran on worker {a}");
        }
    });
}
