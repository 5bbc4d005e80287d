//! The reports' charts, drawn with `plotters` on its SVG backend into strings that the page
//! inlines: horizontal bars, box plots from given quantiles, lines over time, a scatter of
//! predicted against actual values and a heat map of counts. Text is left to the browser
//! (`plotters` only estimates its size), so no font file and no `image` crate is built.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{EmberError, Result};

/// The charts' colours (Tableau 10), in the order series take them.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(78, 121, 167),
    RGBColor(242, 142, 43),
    RGBColor(225, 87, 89),
    RGBColor(118, 183, 178),
    RGBColor(89, 161, 79),
    RGBColor(237, 201, 72),
    RGBColor(176, 122, 161),
    RGBColor(255, 157, 167),
    RGBColor(156, 117, 95),
    RGBColor(186, 176, 172),
];

/// Width of every chart, in SVG pixels (the page scales it to its column).
const WIDTH: u32 = 960;

/// Height of one row of a chart with a row per item.
const ROW: u32 = 26;

const FONT: &str = "sans-serif";

/// One bar: its label, its length and the text written at its end.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// The label on the axis.
    pub label: String,
    /// The bar's length (not negative).
    pub value: f64,
    /// What is written at its end (the value, formatted; a share).
    pub note: String,
}

/// The five numbers of a box plot.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxStats {
    /// The label on the axis.
    pub label: String,
    /// The whiskers' ends.
    pub low: f64,
    /// The box's left edge.
    pub q1: f64,
    /// The line in the box.
    pub median: f64,
    /// The box's right edge.
    pub q3: f64,
    /// The whiskers' ends.
    pub high: f64,
}

/// A named line of `(x, y)` points, `x` ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The name in the legend.
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

fn failed(title: &str, error: impl std::fmt::Display) -> EmberError {
    EmberError::Internal {
        message: format!("drawing the chart '{title}': {error}"),
    }
}

/// The segmented axis of `n` rows: integer ranges are inclusive in `plotters`, so `0..n - 1`
/// is `n` rows; a single row gets an empty one beside it (a range of one value has no
/// ticks, so no label).
fn rows(n: usize) -> std::ops::Range<i32> {
    0..(n as i32 - 1).max(1)
}

/// The width of the label area for labels of up to `longest` characters.
fn label_width(longest: usize) -> u32 {
    (longest as u32 * 8 + 14).clamp(48, 280)
}

/// Horizontal bars, one row each, in the order given (the first on top); `axis` names
/// the value axis and `format` writes its ticks.
pub fn bars(
    title: &str,
    axis: &str,
    bars: &[Bar],
    format: &dyn Fn(f64) -> String,
) -> Result<String> {
    let n = bars.len().max(1);
    let height = 90 + ROW * n as u32;
    let longest = bars
        .iter()
        .map(|b| b.label.chars().count())
        .max()
        .unwrap_or(4);
    let max = bars.iter().map(|b| b.value).fold(0.0, f64::max);
    // Room at the right of the longest bar for the longest note (about 7 pixels a
    // character in the notes' font).
    let plot_width = f64::from(WIDTH - label_width(longest) - 30);
    let note_width = bars
        .iter()
        .map(|b| b.note.chars().count())
        .max()
        .unwrap_or(0) as f64
        * 7.0;
    let free = (1.0 - (note_width + 16.0) / plot_width).clamp(0.3, 0.95);
    let top = if max > 0.0 { max / free } else { 1.0 };
    let label = |i: usize| {
        (n.checked_sub(1 + i))
            .and_then(|at| bars.get(at))
            .map_or(String::new(), |b| b.label.clone())
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(title, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(label_width(longest))
            .build_cartesian_2d(0f64..top, rows(n).into_segmented())
            .map_err(|e| failed(title, e))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) if *i >= 0 => label(*i as usize),
                _ => String::new(),
            })
            .x_labels(8)
            .x_label_formatter(&|v| format(*v))
            .x_desc(axis)
            .label_style((FONT, 13))
            .draw()
            .map_err(|e| failed(title, e))?;
        let row = |i: usize| (n - 1 - i) as i32;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, bar)| {
                let mut rect = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(row(i))),
                        (bar.value.max(0.0), SegmentValue::Exact(row(i) + 1)),
                    ],
                    PALETTE[0].filled(),
                );
                rect.set_margin(4, 4, 0, 0);
                rect
            }))
            .map_err(|e| failed(title, e))?;
        let note = (FONT, 12)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        chart
            .draw_series(bars.iter().enumerate().map(|(i, bar)| {
                EmptyElement::at((bar.value.max(0.0), SegmentValue::CenterOf(row(i))))
                    + Text::new(bar.note.clone(), (6, 0), note.clone())
            }))
            .map_err(|e| failed(title, e))?;
        root.present().map_err(|e| failed(title, e))?;
    }
    Ok(svg)
}

/// Horizontal box plots on a logarithmic axis (prices span orders of magnitude): a box
/// from `q1` to `q3` with a line at the median, whiskers from `low` to `high`.
pub fn box_plots(
    title: &str,
    axis: &str,
    boxes: &[BoxStats],
    format: &dyn Fn(f64) -> String,
) -> Result<String> {
    let n = boxes.len().max(1);
    let height = 90 + ROW * n as u32;
    let longest = boxes
        .iter()
        .map(|b| b.label.chars().count())
        .max()
        .unwrap_or(4);
    let positive = |v: f64| if v > 0.0 { Some(v) } else { None };
    let low = boxes
        .iter()
        .filter_map(|b| positive(b.low).or(positive(b.q1)))
        .fold(f64::INFINITY, f64::min);
    let high = boxes.iter().map(|b| b.high).fold(0.0, f64::max);
    let (low, high) = if low.is_finite() && high > low {
        (low / 1.3, high * 1.3)
    } else {
        (1.0, 10.0)
    };
    let clamp = |v: f64| v.max(low);
    let label = |i: usize| {
        (n.checked_sub(1 + i))
            .and_then(|at| boxes.get(at))
            .map_or(String::new(), |b| b.label.clone())
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(title, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(label_width(longest))
            .build_cartesian_2d((low..high).log_scale(), rows(n).into_segmented())
            .map_err(|e| failed(title, e))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) if *i >= 0 => label(*i as usize),
                _ => String::new(),
            })
            .x_labels(10)
            .x_label_formatter(&|v| format(*v))
            .x_desc(axis)
            .label_style((FONT, 13))
            .draw()
            .map_err(|e| failed(title, e))?;
        let row = |i: usize| (n - 1 - i) as i32;
        let ink = RGBColor(60, 60, 60);
        for (i, b) in boxes.iter().enumerate() {
            let y = row(i);
            let centre = SegmentValue::CenterOf(y);
            let whisker = PathElement::new(
                vec![
                    (clamp(b.low), centre.clone()),
                    (clamp(b.high), centre.clone()),
                ],
                ink.stroke_width(1),
            );
            let mut body = Rectangle::new(
                [
                    (clamp(b.q1), SegmentValue::Exact(y)),
                    (clamp(b.q3), SegmentValue::Exact(y + 1)),
                ],
                PALETTE[i % PALETTE.len()].mix(0.55).filled(),
            );
            body.set_margin(5, 5, 0, 0);
            let mut outline = Rectangle::new(
                [
                    (clamp(b.q1), SegmentValue::Exact(y)),
                    (clamp(b.q3), SegmentValue::Exact(y + 1)),
                ],
                ink.stroke_width(1),
            );
            outline.set_margin(5, 5, 0, 0);
            let median = EmptyElement::at((clamp(b.median), centre.clone()))
                + PathElement::new(vec![(0, -8), (0, 8)], BLACK.stroke_width(3));
            let ends = [clamp(b.low), clamp(b.high)].map(|x| {
                EmptyElement::at((x, centre.clone()))
                    + PathElement::new(vec![(0, -6), (0, 6)], ink.stroke_width(1))
            });
            chart
                .plotting_area()
                .draw(&whisker)
                .and_then(|_| chart.plotting_area().draw(&body))
                .and_then(|_| chart.plotting_area().draw(&outline))
                .and_then(|_| chart.plotting_area().draw(&median))
                .map_err(|e| failed(title, e))?;
            for end in &ends {
                chart
                    .plotting_area()
                    .draw(end)
                    .map_err(|e| failed(title, e))?;
            }
        }
        root.present().map_err(|e| failed(title, e))?;
    }
    Ok(svg)
}

/// Lines over `x` (a month index, say), one colour each, with the legend at the right;
/// `x_format` and `y_format` write the ticks. When one line dwarfs another (their peaks
/// differ more than 20 times), the `y` axis is logarithmic so that every line shows.
pub fn lines(
    title: &str,
    axes: (&str, &str),
    series: &[Series],
    x_format: &dyn Fn(f64) -> String,
    y_format: &dyn Fn(f64) -> String,
) -> Result<String> {
    let points = || series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.0), b.max(p.0))
    });
    let x = if x0.is_finite() && x1 > x0 {
        x0..x1
    } else {
        0.0..1.0
    };
    let peaks: Vec<f64> = series
        .iter()
        .map(|s| s.points.iter().map(|p| p.1).fold(0.0, f64::max))
        .filter(|p| *p > 0.0)
        .collect();
    let highest = peaks.iter().copied().fold(0.0, f64::max);
    let lowest = peaks.iter().copied().fold(f64::INFINITY, f64::min);
    let mut svg = String::new();
    if highest > 0.0 && highest > 20.0 * lowest {
        let low = points()
            .map(|p| p.1)
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let y = (low / 1.5..highest * 1.5).log_scale();
        draw_lines(&mut svg, title, axes, series, (x, y), (x_format, y_format))?;
    } else {
        let top = if highest > 0.0 { highest * 1.08 } else { 1.0 };
        draw_lines(
            &mut svg,
            title,
            axes,
            series,
            (x, 0.0..top),
            (x_format, y_format),
        )?;
    }
    Ok(svg)
}

/// [`lines`] on the `y` axis it chose.
fn draw_lines<Y>(
    svg: &mut String,
    title: &str,
    (x_axis, y_axis): (&str, &str),
    series: &[Series],
    (x, y): (std::ops::Range<f64>, Y),
    (x_format, y_format): (&dyn Fn(f64) -> String, &dyn Fn(f64) -> String),
) -> Result<()>
where
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let height = 460;
    let legend_width = 220;
    let root = SVGBackend::with_string(svg, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(title, e))?;
    let (plot, legend) = root.split_horizontally(WIDTH - legend_width);
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, (FONT, 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)
        .map_err(|e| failed(title, e))?;
    chart
        .configure_mesh()
        .x_labels(12)
        .x_label_formatter(&|v| x_format(*v))
        .y_labels(8)
        .y_label_formatter(&|v| y_format(*v))
        .x_desc(x_axis)
        .y_desc(y_axis)
        .label_style((FONT, 13))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(|e| failed(title, e))?;
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| failed(title, e))?;
    }
    draw_legend(&legend, series.iter().map(|s| s.name.as_str())).map_err(|e| failed(title, e))?;
    root.present().map_err(|e| failed(title, e))?;
    Ok(())
}

/// The legend of [`lines`]: a swatch and a name per series, from the top.
fn draw_legend<'n, DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    names: impl Iterator<Item = &'n str>,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let style = (FONT, 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, name) in names.enumerate() {
        let y = 50 + 22 * i as i32;
        let colour = PALETTE[i % PALETTE.len()];
        area.draw(&Rectangle::new([(8, y - 5), (26, y + 5)], colour.filled()))?;
        area.draw(&Text::new(name.to_string(), (32, y), style.clone()))?;
    }
    Ok(())
}

/// Predicted against actual values as dots, with the line where they would be equal.
pub fn scatter(
    title: &str,
    (x_axis, y_axis): (&str, &str),
    points: &[(f64, f64)],
    format: &dyn Fn(f64) -> String,
) -> Result<String> {
    let finite = points.iter().filter(|p| p.0.is_finite() && p.1.is_finite());
    let (low, high) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.0).min(p.1), b.max(p.0).max(p.1))
    });
    let (low, high) = if low.is_finite() && high > low {
        let pad = (high - low) * 0.03;
        (low - pad, high + pad)
    } else {
        (0.0, 1.0)
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(title, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(low..high, low..high)
            .map_err(|e| failed(title, e))?;
        chart
            .configure_mesh()
            .x_labels(10)
            .y_labels(10)
            .x_label_formatter(&|v| format(*v))
            .y_label_formatter(&|v| format(*v))
            .x_desc(x_axis)
            .y_desc(y_axis)
            .label_style((FONT, 13))
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(|e| failed(title, e))?;
        chart
            .draw_series(LineSeries::new(
                [(low, low), (high, high)],
                RGBColor(150, 150, 150).stroke_width(1),
            ))
            .map_err(|e| failed(title, e))?;
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .map(|p| Circle::new(*p, 2, PALETTE[0].mix(0.45).filled())),
            )
            .map_err(|e| failed(title, e))?;
        root.present().map_err(|e| failed(title, e))?;
    }
    Ok(svg)
}

/// A heat map of `counts[row][column]` (a confusion matrix: actual rows, predicted
/// columns), each cell shaded by its share of its row and labelled with its count.
pub fn heat_map(
    title: &str,
    (row_axis, column_axis): (&str, &str),
    labels: &[String],
    counts: &[Vec<u64>],
) -> Result<String> {
    let n = labels.len().max(1);
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4);
    let cell = (longest as u32 * 8 + 12).clamp(44, 120);
    let height = 110 + cell * n as u32;
    let width = (label_width(longest) + 60 + cell * n as u32).max(360);
    let label = |i: i32, flip: bool| {
        let i = if flip { n as i32 - 1 - i } else { i };
        usize::try_from(i)
            .ok()
            .and_then(|i| labels.get(i))
            .cloned()
            .unwrap_or_default()
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(title, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(46)
            .y_label_area_size(label_width(longest) + 20)
            .build_cartesian_2d(rows(n).into_segmented(), rows(n).into_segmented())
            .map_err(|e| failed(title, e))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n)
            .y_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => label(*i, false),
                _ => String::new(),
            })
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => label(*i, true),
                _ => String::new(),
            })
            .x_desc(column_axis)
            .y_desc(row_axis)
            .label_style((FONT, 13))
            .draw()
            .map_err(|e| failed(title, e))?;
        let text = (FONT, 12)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        for (r, row) in counts.iter().enumerate().take(n) {
            let total: u64 = row.iter().sum();
            let y = (n - 1 - r) as i32;
            for (c, count) in row.iter().enumerate().take(n) {
                let share = if total > 0 {
                    *count as f64 / total as f64
                } else {
                    0.0
                };
                let x = c as i32;
                let shade = PALETTE[0].mix(0.08 + 0.92 * share).filled();
                let square = Rectangle::new(
                    [
                        (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                    ],
                    shade,
                );
                let number =
                    EmptyElement::at((SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)))
                        + Text::new(count.to_string(), (0, 0), text.clone());
                chart
                    .plotting_area()
                    .draw(&square)
                    .and_then(|_| chart.plotting_area().draw(&number))
                    .map_err(|e| failed(title, e))?;
            }
        }
        root.present().map_err(|e| failed(title, e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(svg: &str, what: &str) -> usize {
        svg.matches(what).count()
    }

    #[test]
    fn bars_draw_one_rectangle_and_one_label_per_bar() {
        let input: Vec<Bar> = ["Toys", "Garden & <Patio>", "Books"]
            .iter()
            .enumerate()
            .map(|(i, l)| Bar {
                label: l.to_string(),
                value: 100.0 * (3 - i) as f64,
                note: format!("{}%", 10 * (3 - i)),
            })
            .collect();
        let svg = bars("Revenue", "revenue", &input, &|v| format!("{v:.0}")).expect("drawn");
        assert!(svg.starts_with("<svg"), "{}", &svg[..60]);
        assert!(svg.contains("Garden &amp; &lt;Patio&gt;"));
        for note in ["30%", "20%", "10%"] {
            assert!(svg.contains(note), "{note}");
        }
        // The background and three bars.
        assert!(count(&svg, "<rect") >= 4, "{svg}");
    }

    #[test]
    fn box_plots_lines_scatter_and_heat_maps_draw() {
        let boxes = vec![BoxStats {
            label: "Toys".into(),
            low: 1.5,
            q1: 8.0,
            median: 12.0,
            q3: 20.0,
            high: 400.0,
        }];
        let svg = box_plots("Prices", "price", &boxes, &|v| format!("{v}")).expect("drawn");
        assert!(svg.contains("Toys"));
        let series = vec![
            Series {
                name: "Toys".into(),
                points: vec![(0.0, 5.0), (1.0, 7.0)],
            },
            Series {
                name: "Books".into(),
                points: vec![(0.0, 3.0), (1.0, 2.0)],
            },
        ];
        let svg = lines(
            "Monthly",
            ("month", "revenue"),
            &series,
            &|v| format!("{v}"),
            &|v| format!("{v}"),
        )
        .expect("drawn");
        assert!(count(&svg, "<polyline") >= 2, "{svg}");
        assert!(svg.contains("Books"));
        let svg = scatter(
            "Fit",
            ("actual", "predicted"),
            &[(1.0, 1.1), (2.0, 1.8)],
            &|v| format!("{v}"),
        )
        .expect("drawn");
        assert!(count(&svg, "<circle") >= 2, "{svg}");
        let labels = vec!["a".to_string(), "b".to_string()];
        let svg = heat_map(
            "Confusion",
            ("actual", "predicted"),
            &labels,
            &[vec![5, 1], vec![2, 7]],
        )
        .expect("drawn");
        assert!(svg.contains(">7") || svg.contains("7\n"), "{svg}");
    }
}
