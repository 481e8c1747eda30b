//! The shared half of `worker_killed_pool` and `worker_killed_executor`: a
//! task records its worker's pid and sleeps; the parent SIGKILLs that worker
//! mid-task and waits for the task's outcome. Only how the task is
//! submitted and awaited differs.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use multiproc::shm::ShmRegion;
use multiproc::{Error, ErrorKind};

use crate::record::{round, Record};
use crate::registry::{BenchError, Params};

/// The task: stores its pid in the region, then sleeps.
pub fn report_pid_then_sleep(arg: (ShmRegion, u64)) -> String {
    arg.0
        .atomic_u32(0)
        .store(std::process::id(), Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(arg.1));
    "finished".to_owned()
}

/// What happened to the task whose worker was killed.
pub struct Killed {
    outcome: &'static str,
    exception: Option<Error>,
    detect: f64,
    timeout_ms: u64,
}

impl Killed {
    /// The JSON line, without the scenario's own fields.
    pub fn record(&self, bench: &str) -> Record {
        let kind = self
            .exception
            .as_ref()
            .map(|e| format!("multiproc::ErrorKind::{:?}", e.kind()));
        let exit = self
            .exception
            .as_ref()
            .and_then(|e| e.exit_info())
            .map(|i| i.status.to_string());
        Record::timed(bench, 1, self.detect)
            .with("ops_per_sec", serde_json::Value::Null)
            .with("get_timeout_seconds", self.timeout_ms as f64 / 1000.0)
            .with("outcome", self.outcome)
            .with("exception", kind)
            .with("exit_status", exit)
            .with("detect_seconds", round(self.detect, 6))
    }
}

fn fail(what: impl Into<String>) -> BenchError {
    BenchError(what.into())
}

/// Submits the task with `submit`, kills its worker `kill_after_ms` after it
/// reported its pid, and waits for its outcome with `wait(handle, timeout)`.
pub fn kill_a_worker<H, T>(
    params: &Params,
    submit: impl FnOnce((ShmRegion, u64)) -> multiproc::Result<H>,
    wait: impl FnOnce(&H, Duration) -> multiproc::Result<T>,
) -> Result<Killed, BenchError> {
    let sleep_ms = params.get("task_sleep_ms")?;
    let kill_after = params.get("kill_after_ms")?;
    let timeout_ms = params.get("timeout_ms")?;
    let slot = ShmRegion::create(64)?;
    let handle = submit((slot.clone(), sleep_ms))?;
    let wait_until = Instant::now() + Duration::from_secs(10);
    while slot.atomic_u32(0).load(Ordering::SeqCst) == 0 {
        if Instant::now() > wait_until {
            return Err(fail("the task never started"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let victim = slot.atomic_u32(0).load(Ordering::SeqCst) as i32;
    std::thread::sleep(Duration::from_millis(kill_after));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| fail(format!("kill: {e}")))?;
    let killed_at = Instant::now();
    let (outcome, exception) = match wait(&handle, Duration::from_millis(timeout_ms)) {
        Ok(_) => ("returned", None),
        Err(e) if e.kind() == ErrorKind::Timeout => ("timed_out", Some(e)),
        Err(e) => ("raised", Some(e)),
    };
    Ok(Killed {
        outcome,
        exception,
        detect: killed_at.elapsed().as_secs_f64(),
        timeout_ms,
    })
}
