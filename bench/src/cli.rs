//! Command-line options of `multiproc-bench`.

/// Usage text printed by `--help` and after a bad argument.
pub const USAGE: &str = "\
usage: multiproc-bench [--only NAME...] [--quick] [--compare] [--runs N] [--list]

Runs multiproc's benchmark scenarios and prints one JSON line per scenario
(the schema of the Python baseline, with \"impl\": \"multiproc\").

  --only NAME...  run only these scenarios (names separated by spaces or commas)
  --quick         small sizes: every scenario in seconds (CI smoke run)
  --compare       also run the Python counterparts (bench/python/NAME.py, same
                  sizes) and print a side-by-side table with ratios
  --runs N        run each scenario N times and report the medians (default 1)
  --list          list the scenarios, their headline fields and sizes
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
    /// Only list the scenarios.
    pub list: bool,
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
            list: false,
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
            "-h" | "--help" => options.help = true,
            "--runs" => {
                let value = args.next().ok_or("--runs needs a value")?;
                options.runs = parse_runs(&value)?;
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

        let o = parse_str("--only=x,y --runs=2 --only z --list").expect("valid");
        assert_eq!(o.only, ["x", "y", "z"]);
        assert_eq!(o.runs, 2);
        assert!(o.list);
        assert!(parse_str("-h").expect("valid").help);
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
        assert!(parse_str("extra").is_err());
    }
}
