//! Running the Python counterparts in `bench/python/`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::record::{Record, PYTHON_IMPL};

/// Where the Python scripts live: `$MULTIPROC_BENCH_PYTHON`, else the
/// `python/` directory of this crate's sources.
pub fn script_dir() -> PathBuf {
    match std::env::var_os("MULTIPROC_BENCH_PYTHON") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("python"),
    }
}

/// The interpreter: `$PYTHON`, else `python3`.
pub fn interpreter() -> String {
    std::env::var("PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_owned())
}

/// The interpreter's version line, or `None` if it cannot be run.
pub fn interpreter_version(python: &str) -> Option<String> {
    let output = Command::new(python)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Some(if text.is_empty() {
        String::from_utf8_lossy(&output.stderr).trim().to_owned()
    } else {
        text
    })
}

/// How long one script (or one isolated Rust run) may run before it is
/// killed.
pub fn time_limit(quick: bool) -> Duration {
    Duration::from_secs(if quick { 120 } else { 900 })
}

/// Runs `<dir>/<name>.py [--quick]` and returns its JSON line, or an error
/// line (`{"bench", "impl", "error"}`) if the script fails, prints no line or
/// runs past `limit`.
pub fn run_script(python: &str, dir: &Path, name: &str, quick: bool, limit: Duration) -> Record {
    let error = |message: String| Record::error(name, PYTHON_IMPL, &message);
    let script = dir.join(format!("{name}.py"));
    if !script.is_file() {
        return error(format!("no script {}", script.display()));
    }
    let mut command = Command::new(python);
    command
        .arg(&script)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stderr(Stdio::piped());
    if quick {
        command.arg("--quick");
    }
    run_line(command, name, PYTHON_IMPL, limit)
}

/// Runs `command` (its stdin closed, its stdout captured; stderr as the
/// caller set it) and returns the last JSON line it printed, or an error
/// line for `name` and `implementation` if it fails, prints no line or runs
/// past `limit` (then it is killed).
pub fn run_line(mut command: Command, name: &str, implementation: &str, limit: Duration) -> Record {
    let error = |message: String| Record::error(name, implementation, &message);
    command.stdin(Stdio::null()).stdout(Stdio::piped());
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return error(format!(
                "cannot run {}: {e}",
                command.get_program().to_string_lossy()
            ))
        }
    };
    let (status, stdout, stderr) = match wait_with_limit(child, limit) {
        Ok(done) => done,
        Err(message) => return error(message),
    };
    if !status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return error(format!("{status}: {}", tail.join(" | ")));
    }
    match stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
    {
        Some(line) => Record::parse_line(line).unwrap_or_else(error),
        None => error("printed no JSON line".to_owned()),
    }
}

type Finished = (std::process::ExitStatus, String, String);

/// Waits for `child`, reading its output on helper threads; kills it (and
/// reaps it) when `limit` passes.
fn wait_with_limit(mut child: Child, limit: Duration) -> Result<Finished, String> {
    let stdout = child.stdout.take().map(spawn_reader);
    let stderr = child.stderr.take().map(spawn_reader);
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                // Kill errors mean it already exited; wait() reaps it either way.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {} s", limit.as_secs()));
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cannot wait for the script: {e}"));
            }
        }
    };
    let collect = |reader: Option<thread::JoinHandle<String>>| {
        reader
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default()
    };
    Ok((status, collect(stdout), collect(stderr)))
}

fn spawn_reader<R: Read + Send + 'static>(mut pipe: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error just truncates the captured output.
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn python() -> Option<String> {
        let python = interpreter();
        interpreter_version(&python).map(|_| python)
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("multiproc-bench-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    #[test]
    fn missing_interpreter_and_script_give_error_lines() {
        assert_eq!(interpreter_version("/nonexistent/python3"), None);
        let r = run_script(
            "/nonexistent/python3",
            &script_dir(),
            "process_spawn_join",
            true,
            Duration::from_secs(5),
        );
        assert!(r.error_message().is_some_and(|m| m.contains("cannot run")));
        let r = run_script(
            "python3",
            &script_dir(),
            "no_such_bench",
            true,
            Duration::from_secs(5),
        );
        assert!(r.error_message().is_some_and(|m| m.contains("no script")));
        assert_eq!(r.get("impl").and_then(|v| v.as_str()), Some(PYTHON_IMPL));
    }

    #[test]
    fn failing_silent_and_slow_scripts_give_error_lines() {
        let Some(python) = python() else {
            eprintln!("python3 not found; skipped");
            return;
        };
        let dir = temp_dir("scripts");
        std::fs::write(dir.join("fails.py"), "import sys\nsys.exit('boom')\n").expect("write");
        std::fs::write(dir.join("silent.py"), "print('no json')\n").expect("write");
        std::fs::write(dir.join("slow.py"), "import time\ntime.sleep(30)\n").expect("write");
        std::fs::write(
            dir.join("ok.py"),
            "import sys, json\nprint(json.dumps({'bench': 'ok', 'quick': sys.argv[1:] == ['--quick']}))\n",
        )
        .expect("write");
        let limit = Duration::from_secs(20);
        let r = run_script(&python, &dir, "fails", false, limit);
        assert!(
            r.error_message().is_some_and(|m| m.contains("boom")),
            "{r:?}"
        );
        let r = run_script(&python, &dir, "silent", false, limit);
        assert!(
            r.error_message().is_some_and(|m| m.contains("no JSON")),
            "{r:?}"
        );
        let started = Instant::now();
        let r = run_script(&python, &dir, "slow", false, Duration::from_millis(300));
        assert!(
            r.error_message().is_some_and(|m| m.contains("timed out")),
            "{r:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        let r = run_script(&python, &dir, "ok", true, limit);
        assert_eq!(
            r.get("quick"),
            Some(&serde_json::Value::Bool(true)),
            "{r:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The harness path `--compare` uses, on a real counterpart.
    #[test]
    fn runs_the_process_spawn_join_counterpart_quickly() {
        let Some(python) = python() else {
            eprintln!("python3 not found; skipped");
            return;
        };
        let r = run_script(
            &python,
            &script_dir(),
            "process_spawn_join",
            true,
            Duration::from_secs(60),
        );
        assert_eq!(r.error_message(), None, "{r:?}");
        assert_eq!(
            r.get("bench"),
            Some(&serde_json::Value::from("process_spawn_join"))
        );
        assert_eq!(r.number("n"), Some(50.0));
        assert!(r.number("per_process_us").is_some_and(|us| us > 0.0));
    }
}
