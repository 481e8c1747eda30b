//! Every Rust-side run in a process of its own: the bench binary, executed
//! again with [`RUN_ONE_ARG`], runs one scenario once and prints its line.
//!
//! Each Python run is a fresh interpreter; a Rust run in the bench's own
//! process would instead inherit whatever the runs before it left behind: a
//! larger heap and more mappings (which every `fork` copies and every
//! child's first writes fault in), threads, cached connections. Run in the
//! same process after `pool_large_payload`, `manager_decrement_seed` took
//! 60 ms instead of 37 ms.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::python::run_line;
use crate::record::Record;
use crate::registry::Scenario;

/// The argument that makes this binary run one scenario once:
/// `RUN_ONE_ARG NAME IMPL [--quick]`.
pub const RUN_ONE_ARG: &str = "--run-one";

/// Runs `scenario` once as `implementation` (multiproc or the Rust peer) in
/// a new process and returns its line (with `cpu_seconds` and
/// `cpu_us_per_op`, measured in that process), or an error line if the
/// process fails, prints no line or runs past `limit`. Its stderr is ours.
pub fn run(scenario: &Scenario, implementation: &str, quick: bool, limit: Duration) -> Record {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            return Record::error(
                scenario.name,
                implementation,
                &format!("cannot find the bench binary: {e}"),
            )
        }
    };
    let mut command = Command::new(exe);
    command
        .args([RUN_ONE_ARG, scenario.name, implementation])
        .stderr(Stdio::inherit());
    if quick {
        command.arg("--quick");
    }
    run_line(command, scenario.name, implementation, limit)
}

/// Parses the arguments after [`RUN_ONE_ARG`]: the scenario's name, the
/// implementation, and whether the sizes are the quick ones.
pub fn parse(args: &[String]) -> Result<(&str, &str, bool), String> {
    match args {
        [name, implementation] => Ok((name, implementation, false)),
        [name, implementation, quick] if quick == "--quick" => Ok((name, implementation, true)),
        _ => Err(format!(
            "{RUN_ONE_ARG} needs NAME IMPL [--quick], got {args:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_takes_name_implementation_and_quick() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse(&args(&["pool_startup", "multiproc"])),
            Ok(("pool_startup", "multiproc", false))
        );
        assert_eq!(
            parse(&args(&["pool_startup", "procspawn", "--quick"])),
            Ok(("pool_startup", "procspawn", true))
        );
        assert!(parse(&args(&["pool_startup"])).is_err());
        assert!(parse(&args(&["pool_startup", "multiproc", "--fast"])).is_err());
    }
}
