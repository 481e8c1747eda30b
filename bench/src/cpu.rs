//! CPU time spent by each side (`--compare` reports it per operation), and
//! the busy processes of `--load N`.

use std::process::{Child, Command, Stdio};

use nix::sys::resource::{getrusage, UsageWho};

use crate::record::{round, Record};

/// The argument that makes this binary a busy process (used by `--load`).
pub const BURN_ARG: &str = "--burn-cpu";

/// CPU seconds (user + system) used so far by this process and by its
/// children that have been waited for (their own reaped children included).
pub fn cpu_seconds() -> f64 {
    let secs = |who| {
        getrusage(who).map_or(0.0, |u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
    };
    secs(UsageWho::RUSAGE_SELF) + secs(UsageWho::RUSAGE_CHILDREN)
}

/// Runs `side` (a whole scenario run, set-up and teardown included, on
/// either side) and adds `cpu_seconds` and `cpu_us_per_op` (CPU time over
/// the line's `n`) to its line.
pub fn measured(side: impl FnOnce() -> Record) -> Record {
    let before = cpu_seconds();
    let mut line = side();
    let used = (cpu_seconds() - before).max(0.0);
    if line.error_message().is_none() {
        line.set("cpu_seconds", round(used, 6));
        if let Some(n) = line.number("n").filter(|n| *n > 0.0) {
            line.set("cpu_us_per_op", round(used / n * 1e6, 3));
        }
    }
    line
}

/// `n` CPU-bound processes that spin until dropped (`--load N`): they run
/// during both sides' measurements.
pub struct Load {
    burners: Vec<Child>,
}

impl Load {
    /// Starts `n` busy copies of this binary.
    ///
    /// # Errors
    ///
    /// If the binary cannot be found or started.
    pub fn start(n: usize) -> std::io::Result<Load> {
        let exe = std::env::current_exe()?;
        let mut load = Load {
            burners: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let child = Command::new(&exe)
                .arg(BURN_ARG)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()?;
            load.burners.push(child);
        }
        Ok(load)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for child in &mut self.burners {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The body of a busy process: spins until killed (or for at most an hour,
/// should its parent die without killing it).
pub fn burn() {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3600);
    let mut x = 0u64;
    while std::time::Instant::now() < until {
        for i in 0..1_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_adds_cpu_per_operation() {
        let line = measured(|| {
            let mut x = 0u64;
            for i in 0..20_000_000u64 {
                x = std::hint::black_box(x ^ i);
            }
            Record::timed("t", 1000, 0.1)
        });
        let cpu = line.number("cpu_seconds").expect("cpu_seconds");
        assert!(cpu > 0.0);
        let per_op = line.number("cpu_us_per_op").expect("cpu_us_per_op");
        assert!((per_op - cpu / 1000.0 * 1e6).abs() < 1.0);
    }

    #[test]
    fn error_lines_get_no_cpu_fields() {
        let line = measured(|| Record::error("t", "multiproc", "boom"));
        assert!(line.get("cpu_seconds").is_none());
    }
}
