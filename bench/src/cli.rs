//! Command-line options of `multiproc-bench`.

/// Usage text printed by `--help` and after a bad argument.
pub const USAGE: &str = "\
usage: multiproc-bench [--only NAME...] [--quick] [--compare] [--runs N] [--load N] [--list]
       multiproc-bench --charts DIR [--quick] [--load N]
       multiproc-bench --floors [--quick] [--runs N] [--load N]

Runs multiproc's benchmark scenarios and prints one JSON line per scenario
(the schema of the Python baseline, with \"impl\": \"multiproc\").

  --only NAME...  run only these scenarios (names separated by spaces or commas)
  --quick         small sizes: every scenario in seconds (CI smoke run)
  --compare       also run the Python counterparts (bench/python/NAME.py, same
                  sizes) and print a side-by-side table with ratios
  --runs N        run each scenario N times and report the medians (default 1);
                  the sides (multiproc, Python, the peer, a floor) take turns,
                  a run each
  --load N        run N CPU-bound busy processes during both sides' runs (a
                  busy machine); every line gets \"load\": N
  --list          list the scenarios, their headline fields and sizes
  --charts DIR    run the scaling sweeps instead (pool size, payload size,
                  manager clients, worker memory) and write SVG charts in DIR;
                  each point is also printed as a JSON line
  --floors        run the bare system calls under process_spawn_join,
                  pool_startup, pool_apply_latency and
                  manager_decrement_seed (small C programs, compiled with
                  $CC or cc) alternately with multiproc's runs of those
                  scenarios, and print how far above them it is
  -h, --help      this text

Environment: MULTIPROC_BENCH_PYTHON overrides the directory of the Python
scripts, PYTHON the interpreter (default python3).";

/// Parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Scenario names given with `--only` (empty: all).
    pub only: Vec<String>,
    /// Use the quick sizes.
    pub quick: bool,
    /// Also run the Python counterparts and print the table.
    pub compare: bool,
    /// Repetitions per scenario (medians reported).
    pub runs: usize,
    /// Busy processes running during the measurements.
    pub load: usize,
    /// Only list the scenarios.
    pub list: bool,
    /// Run the scaling sweeps and write their charts in this directory.
    pub charts: Option<std::path::PathBuf>,
    /// Run the floors beside multiproc's scenarios instead.
    pub floors: bool,
    /// Only print the usage.
    pub help: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            only: Vec::new(),
            quick: false,
            compare: false,
            runs: 1,
            load: 0,
            list: false,
            charts: None,
            floors: false,
            help: false,
        }
    }
}

fn parse_runs(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("--runs needs a positive integer, got {value:?}")),
    }
}

fn parse_load(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n <= 64 => Ok(n),
        _ => Err(format!(
            "--load needs a number of processes (0 to 64), got {value:?}"
        )),
    }
}

fn push_names(only: &mut Vec<String>, value: &str) {
    only.extend(
        value
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
    );
}

/// Parses the arguments after the program name.
pub fn parse<I>(args: I) -> Result<Options, String>
where
    I: IntoIterator<Item = String>,
{
    let mut options = Options::default();
    let mut args = args.into_iter().peekable();
    let mut only_seen = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--compare" => options.compare = true,
            "--list" => options.list = true,
            "--floors" => options.floors = true,
            "-h" | "--help" => options.help = true,
            "--runs" => {
                let value = args.next().ok_or("--runs needs a value")?;
                options.runs = parse_runs(&value)?;
            }
            "--charts" => {
                let value = args.next().ok_or("--charts needs a directory")?;
                options.charts = Some(value.into());
            }
            "--load" => {
                let value = args.next().ok_or("--load needs a value")?;
                options.load = parse_load(&value)?;
            }
            "--only" => {
                only_seen = true;
                while let Some(name) = args.next_if(|a| !a.starts_with('-')) {
                    push_names(&mut options.only, &name);
                }
            }
            other => {
                if let Some(value) = other.strip_prefix("--runs=") {
                    options.runs = parse_runs(value)?;
                } else if let Some(value) = other.strip_prefix("--load=") {
                    options.load = parse_load(value)?;
                } else if let Some(value) = other.strip_prefix("--only=") {
                    only_seen = true;
                    push_names(&mut options.only, value);
                } else {
                    return Err(format!("unknown argument {other:?}"));
                }
            }
        }
    }
    if only_seen && options.only.is_empty() {
        return Err("--only needs at least one scenario name".to_owned());
    }
    if options.floors && (only_seen || options.compare || options.charts.is_some()) {
        return Err("--floors runs its own scenarios: no --only, --compare or --charts".to_owned());
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Options, String> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn defaults() {
        assert_eq!(parse_str(""), Ok(Options::default()));
        assert_eq!(Options::default().runs, 1);
    }

    #[test]
    fn flags_and_only_lists() {
        let o = parse_str("--quick --only a b,c --compare --runs 3").expect("valid");
        assert!(o.quick && o.compare && !o.list && !o.help);
        assert_eq!(o.only, ["a", "b", "c"]);
        assert_eq!(o.runs, 3);

        let o = parse_str("--load 2").expect("valid");
        assert_eq!(o.load, 2);
        assert_eq!(parse_str("--load=3").expect("valid").load, 3);

        let o = parse_str("--only=x,y --runs=2 --only z --list").expect("valid");
        assert_eq!(o.only, ["x", "y", "z"]);
        assert_eq!(o.runs, 2);
        assert!(o.list);
        assert!(parse_str("-h").expect("valid").help);
        let o = parse_str("--charts docs/perf --quick").expect("valid");
        assert_eq!(o.charts.as_deref(), Some(std::path::Path::new("docs/perf")));
        assert!(o.quick);
        let o = parse_str("--floors --runs 3 --load 2").expect("valid");
        assert!(o.floors && !o.compare);
        assert_eq!((o.runs, o.load), (3, 2));
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(parse_str("--only").is_err());
        assert!(parse_str("--only --quick").is_err());
        assert!(parse_str("--runs").is_err());
        assert!(parse_str("--runs 0").is_err());
        assert!(parse_str("--runs x").is_err());
        assert!(parse_str("--runs=-1").is_err());
        assert!(parse_str("--fast").is_err());
        assert!(parse_str("--load").is_err());
        assert!(parse_str("--load x").is_err());
        assert!(parse_str("--load 1000").is_err());
        assert!(parse_str("--charts").is_err());
        assert!(parse_str("--floors --compare").is_err());
        assert!(parse_str("--floors --only pool_startup").is_err());
        assert!(parse_str("--floors --charts x").is_err());
        assert!(parse_str("extra").is_err());
    }
}
