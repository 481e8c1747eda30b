//! `--charts DIR`: scaling sweeps of multiproc rendered as SVG charts.
//!
//! - `worker_memory.svg`: RSS and PSS of a worker vs pool size (measured
//!   first, while the bench's own heap is small);
//! - `pool_scaling.svg`: tasks/s of `apply_async` and items/s of `map` vs
//!   pool size (1 to 8 workers);
//! - `payload_throughput.svg`: bytes/s of pool arguments and queue items vs
//!   payload size (8 B to 64 MiB);
//! - `manager_clients.svg`: dict operations/s of one manager vs client
//!   processes (1 to 32).
//!
//! Every measured point is also printed as a JSON line
//! (`{"chart", "series", "x", "y"}`), so a run can be kept as data.

mod render;
mod sweep;

use std::path::Path;

use render::{line_chart, Chart, Series};
use sweep::Scale;

use crate::registry::BenchError;

fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_owned(),
        points,
    }
}

/// Prints the chart's points as JSON lines, then draws it into `dir/file`.
fn emit(dir: &Path, file: &str, chart: &Chart<'_>) -> Result<(), BenchError> {
    let name = file.trim_end_matches(".svg");
    for s in chart.series {
        for &(x, y) in &s.points {
            let line = serde_json::json!({ "chart": name, "series": s.name, "x": x, "y": y });
            println!("{line}");
        }
    }
    let path = dir.join(file);
    line_chart(&path, chart).map_err(BenchError)?;
    eprintln!("multiproc-bench: wrote {}", path.display());
    Ok(())
}

/// Runs every sweep (small sizes if `quick`) and writes the charts in `dir`.
///
/// # Errors
///
/// A sweep fails, or `dir` or a chart cannot be written.
pub fn run(dir: &Path, quick: bool) -> Result<(), BenchError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| BenchError(format!("cannot create {}: {e}", dir.display())))?;
    let scale = Scale::new(quick);

    // First, while this process's heap is small: a worker starts as a copy
    // of it.
    let (rss, pss) = sweep::worker_memory(scale)?;
    emit(
        dir,
        "worker_memory.svg",
        &Chart {
            title: "Memory of a pool worker vs pool size",
            x_desc: "worker processes",
            y_desc: "KiB per worker",
            series: &[series("RSS", rss), series("PSS (shared pages split)", pss)],
        },
    )?;
    let (apply, map) = sweep::pool_scaling(scale)?;
    emit(
        dir,
        "pool_scaling.svg",
        &Chart {
            title: "Pool throughput vs pool size",
            x_desc: "worker processes",
            y_desc: "tasks (items) per second",
            series: &[
                series("apply_async + get, 1 task each", apply),
                series("map(square), automatic chunksize", map),
            ],
        },
    )?;

    let (apply, queue) = sweep::payload_throughput(scale)?;
    emit(
        dir,
        "payload_throughput.svg",
        &Chart {
            title: "Throughput vs payload size",
            x_desc: "payload bytes",
            y_desc: "bytes per second",
            series: &[
                series("Pool(2).apply(len, payload)", apply),
                series("Queue: producer process to main", queue),
            ],
        },
    )?;

    let clients = sweep::manager_clients(scale)?;
    emit(
        dir,
        "manager_clients.svg",
        &Chart {
            title: "Manager dict operations vs client processes",
            x_desc: "client processes",
            y_desc: "operations per second (all clients)",
            series: &[series("insert + get of the client's own key", clients)],
        },
    )?;

    Ok(())
}
