//! `--floors`: the bare system calls under the scenarios that sit on this
//! machine's floor, measured beside multiproc's runs of those scenarios.
//!
//! Each floor is a small C program (`bench/floors/*.c` and the `floor.h`
//! they share, built into this binary and compiled with the system's C
//! compiler at run time) that makes only the system calls a scenario
//! cannot do without, and prints the scenario's headline field for them:
//! `fork` + `_exit` + `waitpid` for `process_spawn_join`; three forks, two
//! threads and their stopping for a `Pool(2)`'s start and stop
//! (`pool_startup`); a round trip between two processes that sleep in
//! `futex` for `pool_apply_latency` when nothing spins; a server process,
//! and a hundred children that each take a `futex` lock, connect to it on
//! a unix socket, make two round trips and exit, for
//! `manager_decrement_seed` (sleeping, not spinning). The table then says
//! how far above its floor multiproc runs. A goal that needs less time than
//! its floor cannot be met by code that makes those calls (a round trip
//! that spins makes no `futex` call, and runs below that floor when a CPU
//! is free for it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::compare::layout;
use crate::isolate;
use crate::python::{run_line, time_limit};
use crate::record::{emit, take_turns, Record, Run, IMPL};
use crate::registry;

/// The `impl` value of a floor's line.
pub const FLOOR_IMPL: &str = "floor";

/// One floor: a C program and the scenario whose headline it prints.
pub struct Floor {
    /// The program's name (and its source's, with `.c`).
    pub name: &'static str,
    source: &'static str,
    /// The scenario it bounds.
    pub scenario: &'static str,
    /// The headline field both print.
    pub field: &'static str,
    /// Its one argument (cycles, round trips or processes), full and quick.
    count: (u32, u32),
}

/// What every floor program includes (`#include "floor.h"`).
const SHARED_HEADER: &str = include_str!("../floors/floor.h");

/// Every floor, in the scenarios' order.
pub const FLOORS: &[Floor] = &[
    Floor {
        name: "fork_exit_wait",
        source: include_str!("../floors/fork_exit_wait.c"),
        scenario: "process_spawn_join",
        field: "per_process_us",
        count: (1000, 50),
    },
    Floor {
        name: "pool_cycle",
        source: include_str!("../floors/pool_cycle.c"),
        scenario: "pool_startup",
        field: "median_cycle_seconds",
        count: (300, 10),
    },
    Floor {
        name: "futex_round_trip",
        source: include_str!("../floors/futex_round_trip.c"),
        scenario: "pool_apply_latency",
        field: "p50_us",
        count: (20000, 500),
    },
    Floor {
        name: "manager_seed",
        source: include_str!("../floors/manager_seed.c"),
        scenario: "manager_decrement_seed",
        field: "seconds",
        // The scenario's processes.
        count: (100, 10),
    },
];

/// A directory of this process's own, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The C compiler: `$CC`, else `cc`.
fn compiler() -> String {
    std::env::var("CC")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "cc".to_owned())
}

/// Writes `text` to `path`.
fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Writes `floor`'s source into `dir` (which holds `floor.h`) and compiles
/// it; the program's path, or what went wrong.
fn compile(floor: &Floor, dir: &Path, cc: &str) -> Result<PathBuf, String> {
    let source = dir.join(format!("{}.c", floor.name));
    let program = dir.join(floor.name);
    write(&source, floor.source)?;
    let out = Command::new(cc)
        .args(["-O2", "-pthread", "-o"])
        .arg(&program)
        .arg(&source)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("--floors needs a C compiler ({cc}, or set CC): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cc} could not compile {}.c: {}",
            floor.name,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(program)
}

/// One run of a compiled floor.
fn run_floor(floor: &Floor, program: &Path, quick: bool) -> Record {
    let count = if quick { floor.count.1 } else { floor.count.0 };
    let mut command = Command::new(program);
    command.arg(count.to_string()).stderr(Stdio::inherit());
    run_line(command, floor.scenario, FLOOR_IMPL, time_limit(quick))
}

/// Runs each floor and multiproc's side of its scenario `runs` times, one
/// after the other, prints every line and the table; whether every line
/// was a result. Fails at once if a floor cannot be compiled.
pub fn run(runs: usize, quick: bool, load: usize) -> Result<bool, String> {
    let dir = std::env::temp_dir().join(format!("multiproc-bench-floors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let scratch = Scratch(dir);
    write(&scratch.0.join("floor.h"), SHARED_HEADER)?;
    let cc = compiler();
    let programs = FLOORS
        .iter()
        .map(|f| compile(f, &scratch.0, &cc))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ok = true;
    let mut rows = Vec::new();
    for (floor, program) in FLOORS.iter().zip(&programs) {
        let scenario = registry::find(floor.scenario)
            .ok_or_else(|| format!("no scenario {}", floor.scenario))?;
        // Alternated, so that both see the same phases of the machine.
        let mut bare = || run_floor(floor, program, quick);
        let mut ours = || isolate::run(scenario, IMPL, quick, time_limit(quick));
        let [bare, ours] = take_turns(runs, [Some(&mut bare as Run<'_>), Some(&mut ours)]);
        let mut lines = [bare.unwrap_or_default(), ours.unwrap_or_default()];
        for line in &mut lines {
            if load > 0 {
                line.set("load", load);
            }
            emit(line);
            ok &= line.error_message().is_none();
        }
        let [bare, ours] = lines;
        rows.push((floor, bare.number(floor.field), ours.number(floor.field)));
    }
    println!(
        "\n# multiproc beside the bare system calls of its scenario ({} sizes, {runs} run(s) each, medians, {load} busy process(es))",
        if quick { "quick" } else { "full" },
    );
    print!("{}", table(&rows));
    Ok(ok)
}

type FloorRow<'a> = (&'a Floor, Option<f64>, Option<f64>);

/// The table: each floor, its value and multiproc's, and how many times
/// the floor multiproc takes (below 1: multiproc avoids a system call the
/// floor makes, as a spinning round trip avoids the sleep).
fn table(rows: &[FloorRow<'_>]) -> String {
    let header = [
        "scenario",
        "headline (lower is better)",
        "bare system calls",
        "floor",
        "multiproc",
        "multiproc / floor",
    ];
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v}"));
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for (floor, bare, ours) in rows {
        let multiple = match (bare, ours) {
            (Some(b), Some(o)) if *b > 0.0 && *o > 0.0 => Some(format!("{:.2}x", o / b)),
            _ => None,
        };
        cells.push(vec![
            floor.scenario.to_owned(),
            floor.field.to_owned(),
            floor.name.to_owned(),
            show(*bare),
            show(*ours),
            multiple.unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    layout(&cells, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_floor_prints_its_scenarios_headline() {
        for floor in FLOORS {
            let scenario = registry::find(floor.scenario).expect("a registered scenario");
            assert!(
                scenario.headlines.iter().any(|h| h.field == floor.field),
                "{} prints {}, not a headline of {}",
                floor.name,
                floor.field,
                floor.scenario
            );
            assert!(
                floor.source.contains(&format!("\\\"{}\\\"", floor.field)),
                "{}.c does not print {}",
                floor.name,
                floor.field
            );
        }
    }

    #[test]
    fn the_seed_floor_forks_as_many_children_as_its_scenario() {
        let floor = FLOORS
            .iter()
            .find(|f| f.name == "manager_seed")
            .expect("the seed's floor");
        let scenario = registry::find(floor.scenario).expect("a registered scenario");
        for (quick, count) in [(false, floor.count.0), (true, floor.count.1)] {
            let processes = scenario
                .params(quick)
                .get("processes")
                .expect("the seed's processes");
            assert_eq!(processes, u64::from(count), "quick: {quick}");
        }
    }

    #[test]
    fn the_table_gives_multiprocs_multiple_of_the_floor() {
        let rows = [
            (&FLOORS[0], Some(200.0), Some(300.0)),
            (&FLOORS[1], Some(0.001), None),
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[2].starts_with("process_spawn_join"), "{text}");
        assert!(lines[2].ends_with("1.50x"), "{text}");
        assert!(lines[3].ends_with('-'), "{text}");
    }

    #[test]
    fn a_compiler_that_fails_is_an_error_that_names_it() {
        let dir = std::env::temp_dir().join(format!("floors-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let scratch = Scratch(dir);
        let missing = compile(&FLOORS[0], &scratch.0, "/nonexistent/cc").expect_err("no compiler");
        assert!(missing.contains("needs a C compiler"), "{missing}");
        let failing = compile(&FLOORS[0], &scratch.0, "false").expect_err("a failing compiler");
        assert!(
            failing.contains("could not compile fork_exit_wait.c"),
            "{failing}"
        );
    }
}
