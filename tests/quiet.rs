//! The library prints nothing: a task that panics, a worker killed under
//! its task, an executor and a manager at work leave stdout and stderr as
//! the program left them; what happened (also a callback that panicked)
//! reaches a `tracing` subscriber instead, from the threads that saw it.
//!
//! The scenario runs in a re-executed copy of this test binary (role
//! `MP_QUIET_ROLE`), its stderr in a file, its stdout piped.

use std::fmt::Write as _;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc::{ApplyOptions, ErrorKind, Executor, Manager, Pool};
use multiproc_testkit::Reexec;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

const ROLE: &str = "MP_QUIET_ROLE";
const LIMIT: Duration = Duration::from_secs(60);

/// Collects `LEVEL message` of every event.
struct Collect(Arc<Mutex<Vec<String>>>);

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut m = Message(String::new());
        event.record(&mut m);
        let line = format!("{} {}", event.metadata().level(), m.0);
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn boom(x: u32) -> u32 {
    panic!("boom {x}")
}

fn abort(_: u32) -> u32 {
    std::process::abort()
}

fn double(x: u32) -> u32 {
    x * 2
}

/// The role: everything that could print, then the events seen, on stdout.
fn noisy_program(with_subscriber: bool) {
    let events = Arc::new(Mutex::new(Vec::new()));
    if with_subscriber {
        tracing::subscriber::set_global_default(Collect(Arc::clone(&events)))
            .expect("the only subscriber");
    }
    let pool = Pool::new(2).expect("pool");
    let e = pool.apply(boom, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TaskPanicked);
    let e = pool.apply(abort, 2).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WorkerLost);
    if with_subscriber {
        // A panic in the program's own callback is the program's: Rust's
        // panic hook prints it unless the program installs its own, as here.
        std::panic::set_hook(Box::new(|_| {}));
        let r = pool
            .apply_async_with(
                double,
                3,
                ApplyOptions::new().callback(|_: &u32| panic!("a callback's own panic")),
            )
            .expect("apply_async");
        assert_eq!(r.get().expect("the result survives its callback"), 6);
        let _ = std::panic::take_hook();
    }
    assert_eq!(pool.map(double, 0..100u32).expect("map").len(), 100);
    pool.close();
    pool.join().expect("join");
    let ex = Executor::new(1).expect("executor");
    let e = ex.submit(boom, 4).expect("submit").result().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TaskPanicked);
    drop(ex);
    let m = Manager::start().expect("manager");
    let d = m.dict::<u32, u32>().expect("dict");
    d.insert(&1, &1).expect("insert");
    m.shutdown().expect("shutdown");
    // The harness's "test quiet_role ... " has no newline yet.
    println!();
    for e in events.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        println!("EVENT {e}");
    }
    println!("DONE");
}

/// Runs the role; returns (stdout, stderr).
fn run(role: &str) -> (String, String) {
    let err_path = std::env::temp_dir().join(format!(
        "multiproc-quiet-{}-{role}.stderr",
        std::process::id()
    ));
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let helper = Reexec::test("quiet_role")
        .env(ROLE, role)
        .stderr(Stdio::from(err))
        .spawn();
    let (status, out) = helper.output(LIMIT);
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&err_path);
    assert!(status.success(), "{status}\nstdout:\n{out}\nstderr:\n{err}");
    (out, err)
}

/// The re-executed role (does nothing in a normal run).
#[test]
fn quiet_role() {
    match std::env::var(ROLE).as_deref() {
        Ok("subscriber") => noisy_program(true),
        Ok(_) => noisy_program(false),
        Err(_) => {}
    }
}

/// The lines the library itself wrote: the test harness's own lines (its
/// "running 1 test", "test quiet_role ...", "ok" and result lines) are not
/// the library's.
fn library_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            !l.starts_with("running ") && !l.starts_with("test ") && !l.contains("test result")
        })
        .filter(|l| !l.starts_with("EVENT ") && *l != "DONE" && *l != "ok")
        .collect()
}

#[test]
fn the_library_prints_nothing() {
    let (out, err) = run("plain");
    assert!(out.contains("DONE"), "{out}");
    assert_eq!(library_lines(&out), Vec::<&str>::new(), "stdout: {out}");
    assert_eq!(err.trim(), "", "stderr: {err}");
}

#[test]
fn what_happened_reaches_a_tracing_subscriber() {
    let (out, err) = run("subscriber");
    assert_eq!(err.trim(), "", "stderr: {err}");
    let events: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("EVENT "))
        .collect();
    for wanted in ["WARN a pool worker died", "WARN a pool callback panicked"] {
        assert!(
            events.iter().any(|e| e.starts_with(wanted)),
            "no {wanted:?} among {events:#?}"
        );
    }
}
