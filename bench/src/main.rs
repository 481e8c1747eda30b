//! Side-by-side benchmarks of multiproc against Python's multiprocessing.
//!
//! Every scenario of `../shared/bench/python/README.md` is registered in
//! [`registry`]; the ones with a Rust implementation print one JSON line each
//! (`"impl": "multiproc"`). `--compare` also runs the project's own Python
//! counterparts (`bench/python/<name>.py`) at the same sizes and prints a
//! table. Run `multiproc-bench --help` for the options.

mod charts;
mod cli;
mod compare;
mod cpu;
mod floors;
mod isolate;
mod python;
mod record;
mod registry;
mod scenarios;

use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;

use compare::Side;
use record::{emit, take_turns, Record, Run, IMPL};
use registry::{Scenario, SCENARIOS};

fn main() -> ExitCode {
    // A process of procspawn's pool (the peer column of --compare) is this
    // program re-executed: it runs its task here and never returns.
    procspawn::init();
    if std::env::args().nth(1).as_deref() == Some(cpu::BURN_ARG) {
        cpu::burn();
        return ExitCode::SUCCESS;
    }
    if std::env::args().nth(1).as_deref() == Some(isolate::RUN_ONE_ARG) {
        let args: Vec<String> = std::env::args().skip(2).collect();
        return run_one(&args);
    }
    let options = match cli::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("multiproc-bench: {message}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if options.help {
        println!("{}", cli::USAGE);
        return ExitCode::SUCCESS;
    }
    let selected = match select(&options.only) {
        Ok(selected) => selected,
        Err(message) => {
            eprintln!("multiproc-bench: {message}");
            return ExitCode::from(2);
        }
    };
    if options.list {
        print!("{}", list(&selected));
        return ExitCode::SUCCESS;
    }
    let _load = match cpu::Load::start(options.load) {
        Ok(load) => load,
        Err(e) => {
            eprintln!("multiproc-bench: --load: cannot start the busy processes: {e}");
            return ExitCode::FAILURE;
        }
    };
    if options.floors {
        return match floors::run(options.runs, options.quick, options.load) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("multiproc-bench: --floors: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(dir) = &options.charts {
        return match charts::run(dir, options.quick) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("multiproc-bench: --charts: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if run(&options, &selected) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The scenarios named by `--only` (in registry order), or all of them.
fn select(only: &[String]) -> Result<Vec<&'static Scenario>, String> {
    let unknown: Vec<&str> = only
        .iter()
        .map(String::as_str)
        .filter(|name| registry::find(name).is_none())
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        return Err(format!(
            "unknown scenario(s): {}\nknown: {}",
            unknown.join(", "),
            known.join(", ")
        ));
    }
    Ok(SCENARIOS
        .iter()
        .filter(|s| only.is_empty() || only.iter().any(|n| n == s.name))
        .collect())
}

fn format_sizes(sizes: registry::Sizes) -> String {
    let parts: Vec<String> = sizes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(" ")
}

/// The `--list` text: one block per scenario.
fn list(selected: &[&Scenario]) -> String {
    let mut out = String::new();
    for s in selected {
        let status = if s.run.is_some() {
            "implemented"
        } else {
            "python only (multiproc side not written yet)"
        };
        let headlines: Vec<String> = s
            .headlines
            .iter()
            .map(|h| format!("{} ({:?})", h.field, h.better).to_lowercase())
            .collect();
        out.push_str(&format!(
            "{}  [{status}]\n    headline: {}\n    sizes: {}\n    quick:  {}\n",
            s.name,
            headlines.join(", "),
            format_sizes(s.full),
            format_sizes(s.quick),
        ));
    }
    out
}

/// One run of a Rust side (`implementation`: multiproc or the peer); a
/// panic or error becomes an error line.
fn run_rust(
    scenario: &Scenario,
    run: registry::RunFn,
    quick: bool,
    implementation: &str,
) -> Record {
    let params = scenario.params(quick);
    match panic::catch_unwind(AssertUnwindSafe(|| run(&params))) {
        Ok(Ok(line)) => line,
        Ok(Err(err)) => Record::error(scenario.name, implementation, &err.to_string()),
        Err(_) => Record::error(scenario.name, implementation, "the scenario panicked"),
    }
}

/// The body of a process started by [`isolate::run`]: one run of one
/// scenario's Rust side, its line printed on stdout.
fn run_one(args: &[String]) -> ExitCode {
    let found = isolate::parse(args).and_then(|(name, implementation, quick)| {
        let scenario = registry::find(name).ok_or_else(|| format!("unknown scenario {name}"))?;
        let run = match implementation {
            IMPL => scenario.run,
            scenarios::peer::PEER_IMPL => scenarios::peer::find(name),
            other => return Err(format!("unknown implementation {other}")),
        }
        .ok_or_else(|| format!("{name} has no {implementation} side"))?;
        Ok((scenario, run, implementation, quick))
    });
    match found {
        Ok((scenario, run, implementation, quick)) => {
            emit(&cpu::measured(|| {
                run_rust(scenario, run, quick, implementation)
            }));
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("multiproc-bench: {message}");
            ExitCode::from(2)
        }
    }
}

/// A scenario's lines: multiproc's, Python's and the Rust peer's.
type Measured = (
    &'static Scenario,
    Option<Record>,
    Option<Record>,
    Option<Record>,
);

/// Runs the selected scenarios; returns whether every line was a result.
fn run(options: &cli::Options, selected: &[&'static Scenario]) -> bool {
    let interpreter = python::interpreter();
    let python = if options.compare {
        let version = python::interpreter_version(&interpreter);
        match &version {
            Some(v) => eprintln!("multiproc-bench: comparing with {v} ({interpreter})"),
            None => eprintln!(
                "multiproc-bench: --compare: {interpreter} not found; printing the multiproc side only"
            ),
        }
        version.map(|_| interpreter)
    } else {
        None
    };
    let pending: Vec<&str> = selected
        .iter()
        .filter(|s| s.run.is_none())
        .map(|s| s.name)
        .collect();
    if !pending.is_empty() {
        eprintln!(
            "multiproc-bench: not implemented in multiproc yet: {}",
            pending.join(", ")
        );
    }
    let script_dir = python::script_dir();
    let limit = python::time_limit(options.quick);

    let mut ok = true;
    let mut results: Vec<Measured> = Vec::new();
    for &scenario in selected {
        // Each Rust-side run in a process of its own, as each Python run is;
        // the sides take turns, run by run.
        let mut multiproc = scenario
            .run
            .map(|_| || isolate::run(scenario, IMPL, options.quick, limit));
        // The Rust-only scenarios (the Redis proofs) have no Python side.
        let mut python_side = python
            .as_deref()
            .filter(|_| scenario.has_python())
            .map(|py| {
                || {
                    cpu::measured(|| {
                        python::run_script(py, &script_dir, scenario.name, options.quick, limit)
                    })
                }
            });
        let mut peer = python
            .as_ref()
            .and_then(|_| scenarios::peer::find(scenario.name))
            .map(|_| || isolate::run(scenario, scenarios::peer::PEER_IMPL, options.quick, limit));
        let [mut multiproc, mut python_line, mut peer] = take_turns(
            options.runs,
            [
                multiproc.as_mut().map(|run| run as Run<'_>),
                python_side.as_mut().map(|run| run as Run<'_>),
                peer.as_mut().map(|run| run as Run<'_>),
            ],
        );
        for line in multiproc
            .iter_mut()
            .chain(python_line.iter_mut())
            .chain(peer.iter_mut())
        {
            if options.load > 0 {
                line.set("load", options.load);
            }
        }
        for line in multiproc.iter().chain(&python_line).chain(&peer) {
            emit(line);
            ok &= line.error_message().is_none();
        }
        results.push((scenario, multiproc, python_line, peer));
    }

    if python.is_some() {
        fn side(line: &Option<Record>) -> Side<'_> {
            line.as_ref().map_or(Side::Absent, Side::Line)
        }
        let rows: Vec<compare::Row<'_>> = results
            .iter()
            .map(|(s, mp, py, peer)| compare::Row {
                scenario: s,
                multiproc: side(mp),
                python: side(py),
                peer: side(peer),
            })
            .collect();
        let sizes = if options.quick { "quick" } else { "full" };
        println!(
            "\n# multiproc vs Python multiprocessing ({sizes} sizes, {} run(s) each, medians, {} busy process(es))",
            options.runs, options.load
        );
        print!("{}", compare::table(&rows));
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_keeps_registry_order_and_rejects_unknown_names() {
        let all = select(&[]).expect("all");
        assert_eq!(all.len(), SCENARIOS.len());
        let some = select(&["queue_throughput".to_owned(), "pool_startup".to_owned()])
            .expect("known names");
        let names: Vec<&str> = some.iter().map(|s| s.name).collect();
        assert_eq!(names, ["pool_startup", "queue_throughput"]);
        let err = select(&["pool_startup".to_owned(), "nope".to_owned()]).expect_err("unknown");
        assert!(err.contains("nope") && err.contains("known: process_spawn_join"));
    }

    #[test]
    fn list_shows_status_headlines_and_sizes() {
        let text = list(&select(&["pool_apply_latency".to_owned()]).expect("known"));
        assert!(
            text.starts_with("pool_apply_latency  [implemented]"),
            "{text}"
        );
        assert!(
            text.contains("headline: p50_us (lower), p99_us (lower)"),
            "{text}"
        );
        assert!(text.contains("sizes: calls=20000 warmup=1000"), "{text}");
        assert!(text.contains("quick:  calls=500 warmup=50"), "{text}");
    }

    fn failing(_: &registry::Params) -> Result<Record, registry::BenchError> {
        Err(registry::BenchError("no luck".to_owned()))
    }

    fn panicking(_: &registry::Params) -> Result<Record, registry::BenchError> {
        panic!("scenario bug")
    }

    #[test]
    fn scenario_errors_and_panics_become_error_lines() {
        let scenario = registry::find("pool_startup").expect("registered");
        let line = run_rust(scenario, failing, true, IMPL);
        assert_eq!(
            line.to_line(),
            "{\"bench\": \"pool_startup\", \"impl\": \"multiproc\", \"error\": \"no luck\"}"
        );
        let line = run_rust(scenario, panicking, true, IMPL);
        assert_eq!(line.error_message(), Some("the scenario panicked"));
    }
}
