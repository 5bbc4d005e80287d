//! `suite-chart FIGURES.json CHART.png`: the suite's PNG chart (plotters, bitmap backend)
//! from the figures `ember-bench suite --figures` wrote: the TPC-H median time of every
//! query per engine on a log scale, and below it every workload's time relative to Ember's.
//!
//! Its own workspace, so that plotters' image dependencies never change the features that
//! Ember's crates are built with. Text is drawn with a TrueType font read at run time
//! (`EMBER_BENCH_FONT`, or DejaVu Sans where Debian's `fonts-dejavu-core` puts it), so the
//! chart needs no fontconfig.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use plotters::prelude::*;
use plotters::style::FontStyle;
use serde_json::Value;

/// One workload's times per engine (milliseconds; `None` where the engine did not run it
/// or its result was wrong).
struct Figure {
    workload: String,
    times: Vec<(String, Option<f64>)>,
}

/// The figures of `ember-bench suite --figures`: `[{"workload": .., "times": [[engine,
/// ms or null], ..]}, ..]`.
fn read_figures(path: &Path) -> anyhow::Result<Vec<Figure>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let list = value
        .as_array()
        .with_context(|| format!("{}: expected a list of figures", path.display()))?;
    list.iter()
        .map(|figure| {
            let workload = figure["workload"]
                .as_str()
                .with_context(|| format!("{}: a figure without a workload", path.display()))?;
            let times = figure["times"]
                .as_array()
                .with_context(|| format!("{}: {workload} has no times", path.display()))?
                .iter()
                .map(|pair| {
                    let engine = pair[0].as_str().unwrap_or("?").to_string();
                    (engine, pair[1].as_f64())
                })
                .collect();
            Ok(Figure {
                workload: workload.to_string(),
                times,
            })
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [figures, chart] = args.as_slice() else {
        bail!("usage: suite-chart FIGURES.json CHART.png");
    };
    let figures = read_figures(Path::new(figures))?;
    draw(&figures, Path::new(chart))?;
    eprintln!("drew {chart}");
    Ok(())
}

/// Where a sans-serif TrueType font is looked for when `EMBER_BENCH_FONT` is not set.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
];

/// Engine colours, in the order engines first appear.
const PALETTE: &[RGBColor] = &[
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn load_font() -> anyhow::Result<()> {
    let path = match std::env::var_os("EMBER_BENCH_FONT") {
        Some(path) => PathBuf::from(path),
        None => FONT_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "no font for the chart: none of {} exists (apt install fonts-dejavu-core, \
                     or set EMBER_BENCH_FONT to a .ttf file)",
                    FONT_PATHS.join(", ")
                )
            })?,
    };
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a TrueType font", path.display()))
}

/// An engine's name without its version (`duckdb 2.0.1` → `duckdb`), as the legend shows it.
fn engine_key(engine: &str) -> String {
    match engine.split_once(' ') {
        Some((name, rest)) if rest.starts_with(|c: char| c.is_ascii_digit()) => name.to_string(),
        _ => engine.to_string(),
    }
}

/// Draws the chart of `figures` into `path` (PNG).
fn draw(figures: &[Figure], path: &Path) -> anyhow::Result<()> {
    load_font()?;
    let mut engines: Vec<String> = Vec::new();
    for figure in figures {
        for (engine, _) in &figure.times {
            let key = engine_key(engine);
            if !engines.contains(&key) {
                engines.push(key);
            }
        }
    }
    let time = |figure: &Figure, engine: &str| {
        figure
            .times
            .iter()
            .find(|(e, _)| engine_key(e) == engine)
            .and_then(|(_, t)| *t)
    };
    let queries: Vec<&Figure> = figures
        .iter()
        .filter(|f| f.workload.starts_with('q') && f.workload[1..].parse::<u32>().is_ok())
        .collect();
    let workloads: Vec<&Figure> = figures
        .iter()
        .filter(|f| !queries.iter().any(|q| std::ptr::eq(*q, *f)))
        .collect();
    if queries.is_empty() && workloads.is_empty() {
        bail!("nothing to draw");
    }
    let color = |engine: &str| {
        let i = engines.iter().position(|e| e == engine).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };

    let root = BitMapBackend::new(path, (1600, 1100)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = match (queries.is_empty(), workloads.is_empty()) {
        (false, false) => root.split_vertically(620),
        (true, _) => root.split_vertically(0),
        (false, true) => root.split_vertically(1100),
    };

    if !queries.is_empty() {
        let all: Vec<f64> = queries
            .iter()
            .flat_map(|f| f.times.iter().filter_map(|(_, t)| *t))
            .collect();
        let (low, high) = bounds(&all);
        let n = queries.len();
        let width = 0.8 / engines.len() as f64;
        let mut chart = ChartBuilder::on(&upper)
            .caption(
                "TPC-H: median time per query, ms (log scale)",
                ("sans-serif", 24),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..n as f64, (low..high).log_scale())?;
        let label = |x: &f64| {
            let i = x.round() as usize;
            queries
                .get(i)
                .filter(|_| (x - x.round()).abs() < 1e-6)
                .map_or(String::new(), |f| f.workload.clone())
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n + 1)
            .x_label_formatter(&label)
            .y_desc("ms")
            .label_style(("sans-serif", 15))
            .draw()?;
        for (j, engine) in engines.iter().enumerate() {
            let fill = color(engine).filled();
            let bars = queries.iter().enumerate().filter_map(|(i, figure)| {
                let t = time(figure, engine)?;
                let x = i as f64 + 0.1 + j as f64 * width;
                Some(Rectangle::new([(x, low), (x + width, t)], fill))
            });
            chart
                .draw_series(bars)?
                .label(engine.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], fill));
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }

    if !workloads.is_empty() {
        // Each workload's times over Ember's: processes where it ran, else embedded.
        let base = |figure: &Figure| {
            time(figure, "Ember processes").or_else(|| time(figure, "Ember embedded"))
        };
        let ratios: Vec<Vec<(String, f64)>> = workloads
            .iter()
            .map(|figure| {
                let Some(base) = base(figure) else {
                    return Vec::new();
                };
                engines
                    .iter()
                    .filter_map(|e| Some((e.clone(), time(figure, e)? / base)))
                    .collect()
            })
            .collect();
        let all: Vec<f64> = ratios.iter().flatten().map(|(_, r)| *r).collect();
        let (low, high) = bounds(&all);
        let n = workloads.len();
        let width = 0.8 / engines.len() as f64;
        let mut chart = ChartBuilder::on(&lower)
            .caption(
                "Each workload: time relative to Ember (processes, else embedded); below 1 is \
                 faster than Ember (log scale)",
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..n as f64, (low..high).log_scale())?;
        let label = |x: &f64| {
            let i = (x - 0.5).round() as usize;
            workloads
                .get(i)
                .filter(|_| (x - 0.5 - (x - 0.5).round()).abs() < 1e-6)
                .map_or(String::new(), |f| f.workload.clone())
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(2 * n + 1)
            .x_label_formatter(&label)
            .y_desc("time / Ember's")
            .label_style(("sans-serif", 15))
            .draw()?;
        for (j, engine) in engines.iter().enumerate() {
            let fill = color(engine).filled();
            let bars = ratios.iter().enumerate().filter_map(|(i, row)| {
                let (_, r) = row.iter().find(|(e, _)| e == engine)?;
                let x = i as f64 + 0.1 + j as f64 * width;
                Some(Rectangle::new([(x, low), (x + width, *r)], fill))
            });
            chart
                .draw_series(bars)?
                .label(engine.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], fill));
        }
        chart.draw_series(LineSeries::new(
            [(0.0, 1.0), (n as f64, 1.0)],
            BLACK.stroke_width(1),
        ))?;
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A log axis from a little below the smallest value to a little above the largest.
fn bounds(values: &[f64]) -> (f64, f64) {
    let positive = values.iter().copied().filter(|v| *v > 0.0);
    let low = positive.clone().fold(f64::INFINITY, f64::min);
    let high = positive.fold(0.0, f64::max);
    if !low.is_finite() || high <= 0.0 {
        return (0.1, 10.0);
    }
    (low / 1.5, high * 1.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_are_named_without_versions() {
        assert_eq!(engine_key("duckdb 2.0.1"), "duckdb");
        assert_eq!(engine_key("Ember processes"), "Ember processes");
        assert_eq!(engine_key("DataFusion"), "DataFusion");
        assert_eq!(bounds(&[10.0, 100.0]), (10.0 / 1.5, 150.0));
        assert_eq!(bounds(&[]), (0.1, 10.0));
    }
}
