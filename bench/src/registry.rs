//! The scenarios: one [`Scenario`] per bench of `../shared/bench/python/README.md`.
//!
//! Each entry carries the bench name, its sizes (full and `--quick`), the
//! headline field(s) with the direction that counts as better, and the Rust
//! implementation once it exists (`run: None` until then; `--compare` still
//! runs the Python side of such a scenario). Adding a scenario means writing
//! its function under `scenarios/` and pointing `run` at it here.
//!
//! The Python counterpart `bench/python/<name>.py` declares the same sizes
//! as `SIZES = {...}` and `QUICK_SIZES = {...}`; a unit test keeps the two in
//! step. The [`RUST_ONLY`] scenarios have no counterpart.

use std::fmt;

use crate::record::Record;

/// Which way a headline figure improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Smaller is better (latencies, durations).
    Lower,
    /// Larger is better (throughputs).
    Higher,
    /// Shown side by side, not compared (e.g. an outcome string).
    Info,
}

/// A field of the JSON line shown in the comparison table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headline {
    /// The field name in the JSON line.
    pub field: &'static str,
    /// Which way it improves.
    pub better: Better,
}

const fn lower(field: &'static str) -> Headline {
    Headline {
        field,
        better: Better::Lower,
    }
}

const fn higher(field: &'static str) -> Headline {
    Headline {
        field,
        better: Better::Higher,
    }
}

const fn info(field: &'static str) -> Headline {
    Headline {
        field,
        better: Better::Info,
    }
}

/// Named sizes of a scenario, e.g. `[("cycles", 1000), ("warmup", 20)]`.
pub type Sizes = &'static [(&'static str, u64)];

/// Why a scenario could not produce its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchError(pub String);

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl From<multiproc::Error> for BenchError {
    fn from(err: multiproc::Error) -> BenchError {
        BenchError(err.to_string())
    }
}

impl From<String> for BenchError {
    fn from(message: String) -> BenchError {
        BenchError(message)
    }
}

/// The sizes one run of a scenario uses (full or quick).
#[derive(Debug, Clone, Copy)]
pub struct Params {
    sizes: Sizes,
}

impl Params {
    /// The size called `name`.
    pub fn get(&self, name: &str) -> Result<u64, BenchError> {
        self.sizes
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| BenchError(format!("scenario has no size named {name:?}")))
    }

    /// The size called `name`, as a count.
    pub fn count(&self, name: &str) -> Result<usize, BenchError> {
        let value = self.get(name)?;
        usize::try_from(value).map_err(|_| BenchError(format!("size {name} = {value} too large")))
    }
}

/// A scenario's Rust implementation: runs the timed section, checks its
/// results and returns the JSON line.
pub type RunFn = fn(&Params) -> Result<Record, BenchError>;

/// One benchmark scenario.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Bench name (= Python script name).
    pub name: &'static str,
    /// Sizes of a full run, as in the Python baseline.
    pub full: Sizes,
    /// Sizes of a `--quick` run (CI smoke test).
    pub quick: Sizes,
    /// Fields shown in the comparison table; the first one is the headline.
    pub headlines: &'static [Headline],
    /// The multiproc implementation, `None` while it is not written yet.
    pub run: Option<RunFn>,
}

impl Scenario {
    /// The sizes for a full or quick run.
    pub fn params(&self, quick: bool) -> Params {
        Params {
            sizes: if quick { self.quick } else { self.full },
        }
    }

    /// Whether `--compare` has a Python counterpart to run (false for the
    /// [`RUST_ONLY`] scenarios: their Python column shows `-`).
    pub fn has_python(&self) -> bool {
        !RUST_ONLY.contains(&self.name)
    }
}

const PROCESS_SPAWN_JOIN: Option<RunFn> = Some(crate::scenarios::process::spawn_join);

const KILL_FULL: Sizes = &[
    ("task_sleep_ms", 500),
    ("kill_after_ms", 100),
    ("timeout_ms", 5000),
];
const KILL_QUICK: Sizes = &[
    ("task_sleep_ms", 300),
    ("kill_after_ms", 50),
    ("timeout_ms", 1000),
];

/// Every scenario, in the order of the Python baseline's `run_all.sh`.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "process_spawn_join",
        full: &[("cycles", 1000), ("warmup", 20)],
        quick: &[("cycles", 50), ("warmup", 5)],
        headlines: &[lower("per_process_us")],
        run: PROCESS_SPAWN_JOIN,
    },
    Scenario {
        name: "pool_startup",
        full: &[("cycles", 20)],
        quick: &[("cycles", 3)],
        headlines: &[lower("median_cycle_seconds")],
        run: Some(crate::scenarios::pool::startup),
    },
    Scenario {
        name: "pool_apply_latency",
        full: &[("calls", 20000), ("warmup", 1000)],
        quick: &[("calls", 500), ("warmup", 50)],
        headlines: &[lower("p50_us"), lower("p99_us")],
        run: Some(crate::scenarios::pool::apply_latency),
    },
    Scenario {
        name: "pool_apply_async_tiny",
        full: &[("tasks", 100000)],
        quick: &[("tasks", 2000)],
        headlines: &[higher("ops_per_sec")],
        run: Some(crate::scenarios::pool::apply_async_tiny),
    },
    Scenario {
        name: "pool_map_tiny",
        full: &[("items", 1000000)],
        quick: &[("items", 20000)],
        headlines: &[higher("ops_per_sec")],
        run: Some(crate::scenarios::pool::map_tiny),
    },
    Scenario {
        name: "pool_map_chunksize1",
        full: &[("items", 100000)],
        quick: &[("items", 2000)],
        headlines: &[higher("ops_per_sec")],
        run: Some(crate::scenarios::pool::map_chunksize1),
    },
    Scenario {
        name: "pool_imap_unordered",
        full: &[("items", 100000)],
        quick: &[("items", 2000)],
        headlines: &[higher("ops_per_sec")],
        run: Some(crate::scenarios::pool::imap_unordered),
    },
    Scenario {
        name: "pool_callback",
        full: &[("tasks", 100000)],
        quick: &[("tasks", 2000)],
        headlines: &[higher("ops_per_sec")],
        run: Some(crate::scenarios::pool::callback),
    },
    Scenario {
        name: "pool_large_payload",
        full: &[("payload_bytes", 67108864), ("calls", 10)],
        quick: &[("payload_bytes", 1048576), ("calls", 3)],
        headlines: &[higher("gb_per_sec"), lower("median_call_seconds")],
        run: Some(crate::scenarios::pool::large_payload),
    },
    Scenario {
        name: "manager_decrement_seed",
        full: &[("processes", 100)],
        quick: &[("processes", 10)],
        headlines: &[lower("seconds"), info("final_count")],
        run: Some(crate::scenarios::manager::decrement_seed),
    },
    Scenario {
        name: "manager_decrement_heavy",
        full: &[("processes", 2), ("decrements_per_process", 20000)],
        quick: &[("processes", 2), ("decrements_per_process", 500)],
        headlines: &[higher("ops_per_sec"), info("final_count")],
        run: Some(crate::scenarios::manager::decrement_heavy),
    },
    Scenario {
        name: "manager_dict_ops",
        full: &[("keys", 50000)],
        quick: &[("keys", 1000)],
        headlines: &[higher("ops_per_sec")],
        run: Some(crate::scenarios::manager::dict_ops),
    },
    Scenario {
        name: "value_lock_increment",
        full: &[("processes", 2), ("increments_per_process", 200000)],
        quick: &[("processes", 2), ("increments_per_process", 5000)],
        headlines: &[higher("ops_per_sec"), info("final_value")],
        run: Some(crate::scenarios::sync::value_lock_increment),
    },
    Scenario {
        name: "queue_throughput",
        full: &[("items", 200000)],
        quick: &[("items", 5000)],
        headlines: &[higher("ops_per_sec")],
        run: Some(crate::scenarios::queue::queue_throughput),
    },
    Scenario {
        name: "joinable_queue_throughput",
        full: &[("items", 200000)],
        quick: &[("items", 5000)],
        headlines: &[higher("ops_per_sec")],
        run: Some(crate::scenarios::queue::joinable_queue_throughput),
    },
    Scenario {
        name: "lifo_queue_throughput",
        full: &[("items", 200000)],
        quick: &[("items", 5000)],
        headlines: &[higher("ops_per_sec")],
        run: Some(crate::scenarios::ordered_queue::lifo_queue_throughput),
    },
    Scenario {
        name: "priority_queue_throughput",
        full: &[("items", 200000)],
        quick: &[("items", 5000)],
        headlines: &[higher("ops_per_sec")],
        run: Some(crate::scenarios::ordered_queue::priority_queue_throughput),
    },
    Scenario {
        name: "queue_large_items",
        full: &[("items", 200), ("item_bytes", 1048576)],
        quick: &[("items", 20), ("item_bytes", 65536)],
        headlines: &[higher("gb_per_sec")],
        run: Some(crate::scenarios::queue::queue_large_items),
    },
    Scenario {
        name: "futures_submit",
        full: &[("tasks", 50000)],
        quick: &[("tasks", 1000)],
        headlines: &[higher("ops_per_sec")],
        run: Some(crate::scenarios::executor::futures_submit),
    },
    Scenario {
        name: "remote_manager_queue",
        full: &[("round_trips", 20000), ("warmup", 100)],
        quick: &[("round_trips", 300), ("warmup", 10)],
        headlines: &[higher("ops_per_sec"), lower("mean_round_trip_us")],
        run: Some(crate::scenarios::manager::remote_queue),
    },
    Scenario {
        name: "worker_killed_pool",
        full: KILL_FULL,
        quick: KILL_QUICK,
        headlines: &[
            lower("detect_seconds"),
            info("outcome"),
            info("pool_usable_after"),
        ],
        run: Some(crate::scenarios::pool::worker_killed),
    },
    Scenario {
        name: "worker_killed_executor",
        full: KILL_FULL,
        quick: KILL_QUICK,
        headlines: &[
            lower("detect_seconds"),
            info("outcome"),
            info("executor_usable_after"),
        ],
        run: Some(crate::scenarios::executor::worker_killed),
    },
    // The distributed tier on Redis (Rust only: the Python counterparts run
    // the same shape on a BaseManager, for reference).
    Scenario {
        name: "redis_pool_throughput",
        full: &[("tasks", 100000), ("unbatched_tasks", 10000)],
        quick: &[("tasks", 2000), ("unbatched_tasks", 200)],
        headlines: &[higher("ops_per_sec"), higher("unbatched_ops_per_sec")],
        run: Some(crate::scenarios::redis::pool_throughput),
    },
    Scenario {
        name: "redis_pool_latency",
        full: &[("calls", 5000), ("warmup", 200)],
        quick: &[("calls", 200), ("warmup", 20)],
        headlines: &[lower("p50_us"), lower("p99_us")],
        run: Some(crate::scenarios::redis::pool_latency),
    },
    Scenario {
        name: "redis_queue_throughput",
        full: &[("items", 200000), ("single_items", 20000)],
        quick: &[("items", 5000), ("single_items", 500)],
        headlines: &[higher("ops_per_sec"), higher("single_ops_per_sec")],
        run: Some(crate::scenarios::redis::queue_throughput),
    },
    Scenario {
        name: "remote_manager_queue_redis",
        full: &[("round_trips", 20000), ("warmup", 100)],
        quick: &[("round_trips", 300), ("warmup", 10)],
        headlines: &[higher("ops_per_sec"), lower("mean_round_trip_us")],
        run: Some(crate::scenarios::redis::remote_manager_queue),
    },
    // The Redis tier's delivery proofs at full size (Rust only: no Python
    // counterpart, see `RUST_ONLY`).
    Scenario {
        name: "redis_zero_loss",
        full: &[
            ("tasks", 100000),
            ("task_ms", 0),
            ("workers", 4),
            ("kill_every_ms", 500),
        ],
        quick: &[
            ("tasks", 3000),
            ("task_ms", 2),
            ("workers", 4),
            ("kill_every_ms", 500),
        ],
        headlines: &[higher("ops_per_sec"), info("lost"), info("kills")],
        run: Some(crate::scenarios::redis_proofs::zero_loss),
    },
    Scenario {
        name: "redis_redelivery",
        full: &[("victims", 20), ("task_ms", 20000)],
        quick: &[("victims", 4), ("task_ms", 20000)],
        headlines: &[lower("p50_s"), lower("p99_s"), info("redelivered")],
        run: Some(crate::scenarios::redis_proofs::redelivery),
    },
    Scenario {
        name: "redis_no_false_redelivery",
        full: &[("task_ms", 20000)],
        quick: &[("task_ms", 7000)],
        headlines: &[info("runs"), lower("seconds")],
        run: Some(crate::scenarios::redis_proofs::no_false_redelivery),
    },
    Scenario {
        name: "redis_restart_aof",
        full: &[("submit_ms", 5000)],
        quick: &[("submit_ms", 2000)],
        headlines: &[
            lower("reconnect_ms"),
            info("lost_older_than_1s"),
            info("recent_lost"),
        ],
        run: Some(crate::scenarios::redis_proofs::restart_aof),
    },
    Scenario {
        name: "redis_lock_contention",
        full: &[("processes", 8), ("acquisitions_per_process", 1250)],
        quick: &[("processes", 8), ("acquisitions_per_process", 40)],
        headlines: &[
            higher("ops_per_sec"),
            info("overlaps"),
            info("fences_increasing"),
        ],
        run: Some(crate::scenarios::redis_proofs::lock_contention),
    },
];

/// The scenarios without a Python counterpart (`bench/python/<name>.py`):
/// the Redis tier's delivery proofs, which have nothing to compare with.
pub const RUST_ONLY: &[&str] = &[
    "redis_zero_loss",
    "redis_redelivery",
    "redis_no_false_redelivery",
    "redis_restart_aof",
    "redis_lock_contention",
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    #[test]
    fn names_are_unique_and_sizes_match_between_modes() {
        for (i, s) in SCENARIOS.iter().enumerate() {
            assert!(
                SCENARIOS[..i].iter().all(|t| t.name != s.name),
                "{} twice",
                s.name
            );
            assert!(!s.headlines.is_empty(), "{} has no headline", s.name);
            let full: Vec<&str> = s.full.iter().map(|(k, _)| *k).collect();
            let quick: Vec<&str> = s.quick.iter().map(|(k, _)| *k).collect();
            assert_eq!(
                full, quick,
                "{}: full and quick name different sizes",
                s.name
            );
        }
        assert_eq!(SCENARIOS.len(), 31);
        assert!(find("pool_map_tiny").is_some());
        assert!(find("no_such_bench").is_none());
    }

    #[test]
    fn rust_only_names_are_registered_and_implemented() {
        for name in RUST_ONLY {
            let s = find(name).unwrap_or_else(|| panic!("{name} is not registered"));
            assert!(s.run.is_some() && !s.has_python(), "{name}");
        }
        assert!(find("redis_pool_throughput").is_some_and(Scenario::has_python));
    }

    #[test]
    fn params_look_up_sizes() {
        let s = find("process_spawn_join").expect("registered");
        assert_eq!(s.params(false).get("cycles"), Ok(1000));
        assert_eq!(s.params(true).count("warmup"), Ok(5));
        assert!(s.params(true).get("missing").is_err());
    }

    fn python_sizes(source: &str, variable: &str) -> BTreeMap<String, u64> {
        let prefix = format!("{variable} = ");
        let line = source
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no `{prefix}...` line"));
        serde_json::from_str(&line[prefix.len()..])
            .unwrap_or_else(|e| panic!("`{line}` is not a JSON-style dict: {e}"))
    }

    fn rust_sizes(sizes: Sizes) -> BTreeMap<String, u64> {
        sizes.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn python_counterparts_declare_the_same_sizes() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
        for s in SCENARIOS {
            let path = dir.join(format!("{}.py", s.name));
            if !s.has_python() {
                assert!(!path.exists(), "{}: Rust only, yet {path:?} exists", s.name);
                continue;
            }
            let source = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                python_sizes(&source, "SIZES"),
                rust_sizes(s.full),
                "{}",
                s.name
            );
            assert_eq!(
                python_sizes(&source, "QUICK_SIZES"),
                rust_sizes(s.quick),
                "{}",
                s.name
            );
            assert!(
                source.contains(&format!("BENCH = \"{}\"", s.name)),
                "{}: BENCH constant",
                s.name
            );
        }
    }
}
