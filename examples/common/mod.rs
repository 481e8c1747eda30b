//! Helpers shared by the examples (not an example itself).

/// The value after the command-line flag `name` (as in `--bind 127.0.0.1:5000`),
/// or `default` if the flag is absent or has no value.
pub fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}
