//! Line charts as SVG files (plotters, SVG backend, no font files needed).

use std::path::Path;

use plotters::prelude::*;

/// One line of a chart: its legend and its points (x, y), x ascending.
pub struct Series {
    /// The legend text.
    pub name: String,
    /// The measured points.
    pub points: Vec<(f64, f64)>,
}

/// What a chart shows.
pub struct Chart<'a> {
    /// The caption above the plot.
    pub title: &'a str,
    /// The x axis' description.
    pub x_desc: &'a str,
    /// The y axis' description.
    pub y_desc: &'a str,
    /// The lines.
    pub series: &'a [Series],
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// `v` with an SI suffix and at most three significant digits: `1.5k`,
/// `64M`, `2`.
fn si(v: f64) -> String {
    let (scaled, suffix) = [(1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(unit, _)| v.abs() >= *unit)
        .map_or((v, ""), |(unit, s)| (v / unit, s));
    let digits = if scaled.abs() >= 100.0 || scaled.fract() == 0.0 {
        0
    } else if scaled.abs() >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{scaled:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    format!("{text}{suffix}")
}

/// The smallest and largest value of `values`, widened so a flat or single
/// value still spans a range a log axis can show, and down to a power of
/// ten if none lies inside (a log axis labels nothing in a range within one
/// decade: 138k to 363k would have no label at all).
fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if hi == 0.0 {
        return None;
    }
    let (lo, hi) = (lo / 1.5, hi * 1.5);
    let decade = 10f64.powi(hi.log10().floor() as i32);
    Some((lo.min(decade), hi))
}

/// Draws `chart` on log-log axes into the SVG file `path`.
///
/// # Errors
///
/// A chart without a positive point, or the file cannot be written.
pub fn line_chart(path: &Path, chart: &Chart<'_>) -> Result<(), String> {
    let points = || chart.series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = span(points().map(|p| p.0)).ok_or("no positive x value")?;
    let (y0, y1) = span(points().map(|p| p.1)).ok_or("no positive y value")?;
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut plot = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(90)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
        .map_err(|e| err(&e))?;
    plot.configure_mesh()
        .light_line_style(RGBColor(238, 238, 238))
        .x_label_formatter(&|v| si(*v))
        .y_label_formatter(&|v| si(*v))
        .x_desc(chart.x_desc)
        .y_desc(chart.y_desc)
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in chart.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let style = color.stroke_width(2);
        plot.draw_series(LineSeries::new(s.points.iter().copied(), style))
            .map_err(|e| err(&e))?
            .label(s.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
        plot.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
    }
    plot.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_axis_range_holds_a_power_of_ten() {
        // Within one decade: widened down to the power of ten below.
        assert_eq!(span([207e3, 242e3].into_iter()), Some((1e5, 242e3 * 1.5)));
        // Already across one: only the usual margin.
        assert_eq!(span([50.0, 400.0].into_iter()), Some((50.0 / 1.5, 600.0)));
        // A single value, and what a log axis cannot show.
        assert_eq!(span([3.0].into_iter()), Some((1.0, 4.5)));
        assert_eq!(span([0.0, -1.0, f64::NAN].into_iter()), None);
    }

    #[test]
    fn a_chart_names_its_series_and_axes() {
        let dir = std::env::temp_dir().join(format!("mp-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.svg");
        let series = [
            Series {
                name: "apply_async".into(),
                points: vec![(1.0, 1e5), (2.0, 1.8e5), (4.0, 2.0e5)],
            },
            Series {
                name: "map".into(),
                points: vec![(1.0, 1e6), (2.0, 2e6)],
            },
        ];
        let chart = Chart {
            title: "tasks/s vs pool size",
            x_desc: "workers",
            y_desc: "tasks/s",
            series: &series,
        };
        line_chart(&path, &chart).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        for text in ["apply_async", "map", "workers", "tasks/s vs pool size"] {
            assert!(svg.contains(text), "missing {text}");
        }
    }

    #[test]
    fn si_labels_are_short() {
        assert_eq!(si(2.0), "2");
        assert_eq!(si(1500.0), "1.5k");
        assert_eq!(si(67_108_864.0), "67.1M");
        assert_eq!(si(3.2e9), "3.2G");
        assert_eq!(si(0.25), "0.25");
    }

    #[test]
    fn a_chart_without_points_is_an_error() {
        let series = [Series {
            name: "empty".into(),
            points: vec![],
        }];
        let chart = Chart {
            title: "t",
            x_desc: "x",
            y_desc: "y",
            series: &series,
        };
        let path = std::env::temp_dir().join("mp-chart-never-written.svg");
        assert!(line_chart(&path, &chart).is_err());
        assert!(!path.exists());
    }
}
