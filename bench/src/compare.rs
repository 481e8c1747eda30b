//! The side-by-side table of `--compare`.

use serde_json::Value;

use crate::record::Record;
use crate::registry::{Better, Headline, Scenario};

/// How many times better multiproc is than Python on a figure: `mp / py`
/// when higher is better, `py / mp` when lower is better. `None` when the
/// figure is informational or either side is missing, zero or negative.
pub fn ratio(multiproc: f64, python: f64, better: Better) -> Option<f64> {
    if !(multiproc > 0.0 && python > 0.0) {
        return None;
    }
    let r = match better {
        Better::Higher => multiproc / python,
        Better::Lower => python / multiproc,
        Better::Info => return None,
    };
    r.is_finite().then_some(r)
}

/// One measured side of a comparison row.
#[derive(Debug, Clone, Copy)]
pub enum Side<'a> {
    /// This side has no implementation (a Rust-only scenario's Python side)
    /// or was not run.
    Absent,
    /// This side's line (possibly an error line).
    Line(&'a Record),
}

fn cell(side: Side<'_>, field: &str) -> (String, Option<f64>) {
    match side {
        Side::Absent => ("-".to_owned(), None),
        Side::Line(record) if record.error_message().is_some() => ("error".to_owned(), None),
        Side::Line(record) => match record.get(field) {
            None => ("missing".to_owned(), None),
            Some(Value::String(s)) => (s.clone(), None),
            Some(value) => (value.to_string(), value.as_f64()),
        },
    }
}

/// One scenario's sides: multiproc, Python and the Rust peer (procspawn).
pub struct Row<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// multiproc's line.
    pub multiproc: Side<'a>,
    /// Python's line.
    pub python: Side<'a>,
    /// The peer's line (`Absent` where it has no counterpart).
    pub peer: Side<'a>,
}

/// `multiproc / other` as a table cell, following the direction.
fn ratio_cell(mp: Option<f64>, other: Option<f64>, better: Better) -> String {
    match (mp, other) {
        (Some(mp), Some(other)) => {
            ratio(mp, other, better).map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x"))
        }
        _ => "-".to_owned(),
    }
}

/// Renders the table: one row per headline field of every scenario, with
/// the peer's columns when any row has a peer line.
pub fn table(rows: &[Row<'_>]) -> String {
    let with_peer = rows.iter().any(|r| matches!(r.peer, Side::Line(_)));
    let mut cells = vec![vec![
        "scenario".to_owned(),
        "headline".to_owned(),
        "multiproc".to_owned(),
        "python".to_owned(),
        "multiproc better by".to_owned(),
    ]];
    if with_peer {
        cells[0].push("procspawn".to_owned());
        cells[0].push("better than procspawn by".to_owned());
    }
    /// Every scenario also compares the CPU time each side used per operation.
    const CPU: Headline = Headline {
        field: "cpu_us_per_op",
        better: Better::Lower,
    };
    for row in rows {
        for headline in row.scenario.headlines.iter().chain([&CPU]) {
            let (mp_text, mp_value) = cell(row.multiproc, headline.field);
            let (py_text, py_value) = cell(row.python, headline.field);
            let direction = match headline.better {
                Better::Lower => " (lower is better)",
                Better::Higher => " (higher is better)",
                Better::Info => "",
            };
            let mut line = vec![
                row.scenario.name.to_owned(),
                format!("{}{direction}", headline.field),
                mp_text,
                py_text,
                ratio_cell(mp_value, py_value, headline.better),
            ];
            if with_peer {
                let (peer_text, peer_value) = cell(row.peer, headline.field);
                line.push(peer_text);
                line.push(ratio_cell(mp_value, peer_value, headline.better));
            }
            cells.push(line);
        }
    }
    layout(&cells, 2)
}

/// Lays out `cells` (the header row first) in columns two spaces apart,
/// with a rule under the header: the first `text_columns` columns aligned
/// left, the others (numbers) right.
pub fn layout(cells: &[Vec<String>], text_columns: usize) -> String {
    let mut widths = vec![0usize; cells.first().map_or(0, Vec::len)];
    for row in cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for (i, row) in cells.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(col, (c, w))| {
                if col >= text_columns {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{IMPL, PYTHON_IMPL};
    use crate::registry::find;

    #[test]
    fn ratio_follows_the_direction() {
        assert_eq!(ratio(200.0, 100.0, Better::Higher), Some(2.0));
        assert_eq!(ratio(50.0, 100.0, Better::Higher), Some(0.5));
        assert_eq!(ratio(100.0, 2200.0, Better::Lower), Some(22.0));
        assert_eq!(ratio(400.0, 100.0, Better::Lower), Some(0.25));
        assert_eq!(ratio(1.0, 2.0, Better::Info), None);
        assert_eq!(ratio(0.0, 2.0, Better::Lower), None);
        assert_eq!(ratio(2.0, 0.0, Better::Higher), None);
        assert_eq!(ratio(f64::NAN, 2.0, Better::Higher), None);
    }

    #[test]
    fn table_shows_both_sides_and_the_ratio() {
        let spawn = find("process_spawn_join").expect("registered");
        let mp = Record::timed("process_spawn_join", 50, 0.01)
            .with("per_process_us", 100.0)
            .with("cpu_us_per_op", 50.0);
        let mut py = Record::timed("process_spawn_join", 50, 0.1)
            .with("per_process_us", 2200.0)
            .with("cpu_us_per_op", 500.0);
        py.set("impl", PYTHON_IMPL);
        let killed = find("worker_killed_pool").expect("registered");
        let py_killed = Record::timed("worker_killed_pool", 1, 5.0)
            .with("detect_seconds", 5.0)
            .with("outcome", "timed_out")
            .with("pool_usable_after", true);
        let queue = find("queue_throughput").expect("registered");
        let mp_error = Record::error("queue_throughput", IMPL, "boom");

        let row = |scenario, multiproc, python| Row {
            scenario,
            multiproc,
            python,
            peer: Side::Absent,
        };
        let text = table(&[
            row(spawn, Side::Line(&mp), Side::Line(&py)),
            row(killed, Side::Absent, Side::Line(&py_killed)),
            row(queue, Side::Line(&mp_error), Side::Absent),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("scenario"), "{text}");
        assert!(lines[1].starts_with("--------"), "{text}");
        let spawn_row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            spawn_row,
            [
                "process_spawn_join",
                "per_process_us",
                "(lower",
                "is",
                "better)",
                "100.0",
                "2200.0",
                "22.00x"
            ]
        );
        let cpu_row: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(cpu_row[1], "cpu_us_per_op", "{text}");
        assert_eq!(cpu_row.last(), Some(&"10.00x"), "{text}");
        assert!(lines[4].contains("detect_seconds") && lines[4].trim_end().ends_with('-'));
        assert!(lines[5].contains("outcome") && lines[5].contains("timed_out"));
        assert!(lines[6].contains("pool_usable_after") && lines[6].contains("true"));
        assert!(lines[7].contains("cpu_us_per_op") && lines[7].trim_end().ends_with('-'));
        assert!(lines[8].contains("queue_throughput") && lines[8].contains("error"));
        assert!(lines[9].contains("cpu_us_per_op") && lines[9].contains("error"));
        assert_eq!(lines.len(), 10, "{text}");
        assert!(
            !lines[0].contains("procspawn"),
            "no peer column without peer lines"
        );

        let mut peer = Record::timed("process_spawn_join", 50, 0.05)
            .with("per_process_us", 400.0)
            .with("cpu_us_per_op", 25.0);
        peer.set("impl", "procspawn");
        let text = table(&[Row {
            scenario: spawn,
            multiproc: Side::Line(&mp),
            python: Side::Line(&py),
            peer: Side::Line(&peer),
        }]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("procspawn"), "{text}");
        let spawn_row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            spawn_row[spawn_row.len() - 2..],
            ["400.0", "4.00x"],
            "{text}"
        );
        let cpu_row: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(cpu_row[cpu_row.len() - 2..], ["25.0", "0.50x"], "{text}");
    }
}
