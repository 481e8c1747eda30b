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

#[cfg(feature = "redis")]
pub mod redis_tasks;

/// The URL after `--backend` if it names a Redis server (`redis://…`).
#[allow(dead_code)] // not every example takes a backend
pub fn redis_backend_arg() -> Option<String> {
    let b = arg("--backend", "");
    b.starts_with("redis://").then_some(b)
}
