//! The bench binary runs every Rust-side run in a process of its own
//! (`--run-one`): the line comes back through its stdout, with the CPU time
//! measured in that process.

use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_multiproc-bench");

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn a_run_one_process_prints_one_measured_line() {
    let out = Command::new(BENCH)
        .args(["--run-one", "process_spawn_join", "multiproc", "--quick"])
        .output()
        .expect("run the bench");
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["bench"], "process_spawn_join");
    assert_eq!(lines[0]["impl"], "multiproc");
    assert_eq!(lines[0]["n"], 50);
    assert!(lines[0]["cpu_us_per_op"].as_f64().is_some_and(|c| c > 0.0));
}

#[test]
fn runs_come_back_through_their_own_processes_and_combine() {
    let out = Command::new(BENCH)
        .args(["--only", "process_spawn_join", "--quick", "--runs", "2"])
        .output()
        .expect("run the bench");
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["impl"], "multiproc");
    assert_eq!(lines[0]["runs"], 2, "{lines:?}");
    assert!(lines[0]["per_process_us"].as_f64().is_some_and(|c| c > 0.0));
}

#[test]
fn a_bad_run_one_is_refused() {
    for args in [
        &["--run-one", "no_such_scenario", "multiproc"][..],
        &["--run-one", "process_spawn_join", "no_such_impl"][..],
        &["--run-one", "process_spawn_join"][..],
    ] {
        let out = Command::new(BENCH).args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(json_lines(&out.stdout).is_empty(), "{args:?}");
    }
}

#[test]
fn floors_run_beside_their_scenarios_and_print_both_lines() {
    let out = Command::new(BENCH)
        .args(["--floors", "--quick"])
        .output()
        .expect("run the bench");
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out.stdout);
    let scenarios = [
        "process_spawn_join",
        "pool_startup",
        "pool_apply_latency",
        "manager_decrement_seed",
    ];
    let fields = [
        "per_process_us",
        "median_cycle_seconds",
        "p50_us",
        "seconds",
    ];
    assert_eq!(lines.len(), 2 * scenarios.len(), "{lines:?}");
    for (pair, (scenario, field)) in lines.chunks(2).zip(scenarios.iter().zip(fields)) {
        assert_eq!(pair[0]["impl"], "floor", "{pair:?}");
        assert_eq!(pair[1]["impl"], "multiproc", "{pair:?}");
        for line in pair {
            assert_eq!(line["bench"], *scenario, "{line:?}");
            assert!(line[field].as_f64().is_some_and(|v| v > 0.0), "{line:?}");
        }
    }
    // The seed's floor checks its count as the scenario does.
    for line in &lines[6..] {
        assert_eq!(line["final_count"], 0, "{line:?}");
    }
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("multiproc / floor"), "{table}");
}

#[test]
fn floors_without_a_compiler_fail_and_say_why() {
    let out = Command::new(BENCH)
        .args(["--floors", "--quick"])
        .env("CC", "/nonexistent/cc")
        .output()
        .expect("run the bench");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(json_lines(&out.stdout).is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--floors needs a C compiler"), "{err}");
}
