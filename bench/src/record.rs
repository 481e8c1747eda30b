//! One benchmark result: the JSON line of `../shared/bench/python/README.md`.
//!
//! A [`Record`] keeps its fields in insertion order so that the printed line
//! reads like the Python one (`bench`, `impl`, `python`, `start_method`, `n`,
//! `seconds`, `ops_per_sec`, then the scenario's own fields). Every JSON line
//! the harness prints goes through [`emit`].

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// The `impl` value of the lines this crate measures.
pub const IMPL: &str = "multiproc";

/// The `impl` value of the Python counterparts' lines.
pub const PYTHON_IMPL: &str = "python-multiprocessing";

/// An ordered JSON object: one benchmark line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    fields: Vec<(String, Value)>,
}

impl Record {
    /// The common fields of a multiproc line for `n` operations timed over
    /// `seconds` (`ops_per_sec` rounded to one decimal, as in Python).
    pub fn timed(bench: &str, n: u64, seconds: f64) -> Record {
        let ops_per_sec = if seconds > 0.0 {
            Value::from(round(n as f64 / seconds, 1))
        } else {
            Value::Null
        };
        Record::default()
            .with("bench", bench)
            .with("impl", IMPL)
            .with("python", Value::Null)
            .with("start_method", "fork")
            .with("n", n)
            .with("seconds", round(seconds, 6))
            .with("ops_per_sec", ops_per_sec)
    }

    /// The line printed in place of a result when a scenario fails.
    pub fn error(bench: &str, implementation: &str, message: &str) -> Record {
        Record::default()
            .with("bench", bench)
            .with("impl", implementation)
            .with("error", message)
    }

    /// Sets `key` to `value`, replacing an existing value in place.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Record {
        self.set(key, value);
        self
    }

    /// Sets `key` to `value`, replacing an existing value in place.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((key.to_owned(), value)),
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The numeric value of `key`, if present and a number.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }

    /// The failure message, when this is an error line.
    pub fn error_message(&self) -> Option<&str> {
        self.get("error").and_then(Value::as_str)
    }

    /// The fields in order.
    pub fn fields(&self) -> &[(String, Value)] {
        &self.fields
    }

    /// Renders the line as Python's `json.dumps` does (`", "` and `": "`).
    pub fn to_line(&self) -> String {
        let mut line = String::from("{");
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                line.push_str(", ");
            }
            line.push_str(&Value::from(key.as_str()).to_string());
            line.push_str(": ");
            line.push_str(&value.to_string());
        }
        line.push('}');
        line
    }

    /// Parses one JSON object line, keeping the order of its fields.
    pub fn parse_line(line: &str) -> Result<Record, String> {
        serde_json::from_str::<Record>(line.trim()).map_err(|e| format!("bad JSON line: {e}"))
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Record, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Record;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Record, M::Error> {
                let mut record = Record::default();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    record.set(&key, value);
                }
                Ok(record)
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Prints `record` as one line on stdout: the harness's only JSON output path.
pub fn emit(record: &Record) {
    println!("{}", record.to_line());
}

/// Rounds `x` to `digits` decimals, like Python's `round(x, digits)` for the
/// magnitudes benchmarks produce.
pub fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// The median of `values` (mean of the middle two for an even count), like
/// Python's `statistics.median`; `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// Combines repeated runs of one scenario as `summarize.py` does: numeric
/// fields become their median (rounded to 6 decimals; integers stay integers
/// when the median is whole), other fields keep the first run's value, and a
/// `runs` field counts the runs. A single run is returned unchanged.
pub fn combine_runs(runs: &[Record]) -> Option<Record> {
    let first = runs.first()?;
    if runs.len() == 1 {
        return Some(first.clone());
    }
    let mut combined = Record::default();
    for (key, value) in first.fields() {
        let numbers: Vec<f64> = runs.iter().filter_map(|r| r.number(key)).collect();
        let is_number = value.is_number() && numbers.len() == runs.len();
        let combined_value = match median(&numbers) {
            Some(m) if is_number => {
                let all_integers = runs.iter().all(|r| r.get(key).is_some_and(Value::is_u64));
                if all_integers && m.fract() == 0.0 {
                    Value::from(m as u64)
                } else {
                    Value::from(round(m, 6))
                }
            }
            _ => value.clone(),
        };
        combined.set(key, combined_value);
    }
    combined.set("runs", runs.len());
    Some(combined)
}

/// One line for a scenario's repeated runs: the first error line as is,
/// else the runs combined ([`combine_runs`]).
pub fn combined(lines: &[Record]) -> Record {
    match lines.iter().find(|l| l.error_message().is_some()) {
        Some(error) => error.clone(),
        None => combine_runs(lines).unwrap_or_default(),
    }
}

/// One run of one side of a scenario (multiproc, Python, the Rust peer, a
/// floor), as a line.
pub type Run<'a> = &'a mut dyn FnMut() -> Record;

/// Runs each present side `runs` times, taking turns: one run of every side
/// a round, in the order given, so that all sides see the same phases of a
/// machine whose speed drifts over minutes (one side's runs in a row, then
/// the other's, would give each a phase of its own). A side's first error
/// line ends that side's runs; the others go on. One line a side
/// ([`combined`]), `None` for an absent one.
pub fn take_turns<const N: usize>(
    runs: usize,
    mut sides: [Option<Run<'_>>; N],
) -> [Option<Record>; N] {
    let mut lines: [Vec<Record>; N] = std::array::from_fn(|_| Vec::with_capacity(runs));
    for _ in 0..runs {
        for (side, done) in sides.iter_mut().zip(lines.iter_mut()) {
            if done.last().is_some_and(|l| l.error_message().is_some()) {
                continue;
            }
            if let Some(run) = side {
                done.push(run());
            }
        }
    }
    std::array::from_fn(|i| sides[i].as_ref().map(|_| combined(&lines[i])))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    #[test]
    fn sides_take_turns_and_a_failed_side_stops_alone() {
        let order = RefCell::new(String::new());
        let mut seconds = [3.0, 1.0, 2.0].into_iter();
        let mut steady = || {
            order.borrow_mut().push('a');
            Record::timed("x", 10, seconds.next().expect("three runs"))
        };
        let mut failing_second = || {
            order.borrow_mut().push('b');
            match order.borrow().matches('b').count() {
                2 => Record::error("x", IMPL, "boom"),
                _ => Record::timed("x", 10, 1.0),
            }
        };
        let [steady, absent, failed] =
            take_turns(3, [Some(&mut steady), None, Some(&mut failing_second)]);
        assert_eq!(*order.borrow(), "ababa");
        let steady = steady.expect("a line for a present side");
        assert_eq!(steady.number("seconds"), Some(2.0));
        assert_eq!(steady.number("runs"), Some(3.0));
        assert!(absent.is_none());
        let failed = failed.expect("a line for a present side");
        assert_eq!(failed.error_message(), Some("boom"));
    }

    #[test]
    fn timed_record_has_the_schema_fields_in_order() {
        let record = Record::timed("process_spawn_join", 1000, 0.25).with("per_process_us", 12.5);
        let keys: Vec<&str> = record.fields().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "bench",
                "impl",
                "python",
                "start_method",
                "n",
                "seconds",
                "ops_per_sec",
                "per_process_us"
            ]
        );
        assert_eq!(
            record.to_line(),
            "{\"bench\": \"process_spawn_join\", \"impl\": \"multiproc\", \"python\": null, \
             \"start_method\": \"fork\", \"n\": 1000, \"seconds\": 0.25, \"ops_per_sec\": 4000.0, \
             \"per_process_us\": 12.5}"
        );
    }

    #[test]
    fn line_round_trips_and_keeps_order() {
        let python_line =
            "{\"bench\": \"queue_throughput\", \"impl\": \"python-multiprocessing\", \
                           \"python\": \"3.11.7\", \"start_method\": \"fork\", \"n\": 200000, \
                           \"seconds\": 0.711727, \"ops_per_sec\": 281006.7}";
        let record = Record::parse_line(python_line).expect("valid line");
        assert_eq!(record.to_line(), python_line);
        assert_eq!(record.get("bench"), Some(&Value::from("queue_throughput")));
        assert_eq!(record.number("ops_per_sec"), Some(281006.7));
        assert!(Record::parse_line("[1, 2]").is_err());
        assert!(Record::parse_line("not json").is_err());
    }

    #[test]
    fn zero_seconds_gives_null_rate_and_strings_are_escaped() {
        let record = Record::timed("x", 5, 0.0);
        assert_eq!(record.get("ops_per_sec"), Some(&Value::Null));
        let error = Record::error("x", IMPL, "bad \"quote\"\n");
        assert_eq!(
            error.to_line(),
            "{\"bench\": \"x\", \"impl\": \"multiproc\", \"error\": \"bad \\\"quote\\\"\\n\"}"
        );
        assert_eq!(error.error_message(), Some("bad \"quote\"\n"));
    }

    #[test]
    fn set_replaces_in_place() {
        let record = Record::timed("x", 1, 1.0).with("n", 7);
        assert_eq!(record.fields()[4], ("n".to_owned(), Value::from(7)));
        assert_eq!(record.fields().len(), 7);
    }

    #[test]
    fn median_and_combine_runs() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        let runs: Vec<Record> = [1.0, 3.0, 2.0]
            .iter()
            .map(|&s| Record::timed("x", 10, s).with("outcome", format!("o{s}")))
            .collect();
        let combined = combine_runs(&runs).expect("three runs");
        assert_eq!(combined.number("seconds"), Some(2.0));
        assert_eq!(combined.get("n"), Some(&Value::from(10u64)));
        assert_eq!(combined.get("outcome"), Some(&Value::from("o1")));
        assert_eq!(combined.get("runs"), Some(&Value::from(3)));
        assert_eq!(combine_runs(&runs[..1]), Some(runs[0].clone()));
        assert_eq!(combine_runs(&[]), None);
    }

    #[test]
    fn combined_gives_the_first_error_or_the_medians() {
        let ok = |s| Record::timed("x", 10, s);
        let lines = [
            ok(1.0),
            Record::error("x", IMPL, "first"),
            Record::error("x", IMPL, "second"),
        ];
        assert_eq!(combined(&lines).error_message(), Some("first"));
        let line = combined(&[ok(3.0), ok(1.0), ok(2.0)]);
        assert_eq!(line.number("seconds"), Some(2.0));
        assert_eq!(line.number("runs"), Some(3.0));
    }
}
