//! The HTML reports of `ember run product-prices` and `ember run forest-train`, written by the
//! command line and opened in headless Chromium: one self-contained file under 2 MB, no
//! console errors, every chart drawn as a non-empty SVG, tables sorted by the page's own
//! script (through `#sort=` in the address), and a screenshot that is not blank. With
//! `EMBER_UPDATE_SCREENSHOTS` set, the screenshots replace the ones in `docs/`. Also the
//! forest commands' machine output (`--format json`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ember_tests::{PageLoad, open_in_chromium_at, png_colours, png_size};

use crate::cluster::NODE;

fn diamonds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/diamonds.csv")
}

/// Standard output of a successful `ember ARGS`.
fn ember_ok(args: &[&str]) -> String {
    let output = Command::new(NODE)
        .args(args)
        .env_remove("EMBER_SCHEDULER")
        .stdin(Stdio::null())
        .output()
        .expect("ember runs");
    assert!(
        output.status.success(),
        "ember {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Checks what every report must be: one file under 2 MB that loads nothing from
/// elsewhere.
fn check_self_contained(report: &Path) -> String {
    let html = std::fs::read_to_string(report).expect("the report is written");
    assert!(html.len() < 2_000_000, "{} bytes", html.len());
    for outside in ["src=", "<link", "@import", "url(", "href=\"http"] {
        assert!(
            !html.contains(outside),
            "the report loads something: {outside}"
        );
    }
    html
}

/// The SVG of the chart `id` in the DOM Chromium built: its drawn elements (rectangles,
/// lines, dots) and its text.
fn chart(dom: &str, id: &str) -> (usize, String) {
    let start = dom
        .find(&format!("<figure class=\"chart\" id=\"chart-{id}\">"))
        .unwrap_or_else(|| panic!("no chart {id}"));
    let end = start + dom[start..].find("</figure>").expect("a closed figure");
    let figure = &dom[start..end];
    let svg_start = figure
        .find("<svg")
        .unwrap_or_else(|| panic!("chart {id} has no SVG"));
    let svg = &figure[svg_start..];
    let drawn = ["<rect", "<polyline", "<line", "<circle", "<path"]
        .iter()
        .map(|tag| svg.matches(tag).count())
        .sum();
    (drawn, svg.to_string())
}

/// The `data-sort` values of column `column` of the table `id`, in the DOM's row order.
fn sort_keys(dom: &str, id: &str, column: usize) -> Vec<String> {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id}"));
    let end = start + dom[start..].find("</table>").expect("a closed table");
    let body = &dom[start..end];
    let body = &body[body.find("<tbody>").expect("a body")..];
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            let cell = row
                .split("<td")
                .nth(column + 1)
                .unwrap_or_else(|| panic!("a row without column {column}: {row}"));
            let key = cell
                .split_once("data-sort=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(key, _)| key.to_string());
            key.unwrap_or_else(|| panic!("a cell without a sort key: {cell}"))
        })
        .collect()
}

/// Where a screenshot goes: `docs/NAME` when `EMBER_UPDATE_SCREENSHOTS` is set, else a
/// temp folder.
fn keep_screenshot(page: &PageLoad, scratch: &Path, name: &str) {
    let path = if std::env::var_os("EMBER_UPDATE_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs")
            .join(name)
    } else {
        scratch.join(name)
    };
    std::fs::write(&path, &page.screenshot).expect("the screenshot is written");
}

#[test]
fn chromium_shows_the_product_price_report_with_every_chart_and_sorts_its_tables() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().join("products");
    let out = dir.path().join("prices");
    let data_arg = data.to_str().expect("a UTF-8 path");
    ember_ok(&[
        "datasets", "products", "--rows", "20000", "--out", data_arg, "--parts", "2",
    ]);
    let summary = ember_ok(&[
        "run",
        "product-prices",
        "--input",
        data_arg,
        "--out",
        out.to_str().expect("a UTF-8 path"),
        "--executors",
        "2",
    ]);
    let report = out.join("report.html");
    assert!(
        summary.contains(&format!("Report with charts: {}", report.display())),
        "{summary}"
    );
    let html = check_self_contained(&report);
    assert!(html.contains("20,000"), "the sales count is in the header");

    let (width, height) = (1100, 3000);
    let page = open_in_chromium_at(&report, "#sort=summary:3:desc", width, height);
    assert!(page.errors.is_empty(), "{:?}", page.errors);
    for (id, least) in [
        ("revenue", 16),
        ("prices", 16 * 4),
        ("monthly", 10),
        ("bands", 5),
    ] {
        let (drawn, svg) = chart(&page.dom, id);
        assert!(drawn > least, "chart {id}: {drawn} elements\n{svg}");
        if id != "bands" {
            assert!(
                svg.contains(">Electronics") || svg.contains("Electronics"),
                "{id}"
            );
        }
    }
    // The monthly chart has a line per shown category.
    let (_, monthly) = chart(&page.dom, "monthly");
    assert!(monthly.matches("<polyline").count() >= 10, "{monthly}");

    // The page's script sorted the summary by revenue, highest first (the file has it by
    // dimension and key).
    let revenues: Vec<f64> = sort_keys(&page.dom, "summary", 3)
        .iter()
        .map(|k| k.parse().expect("a revenue"))
        .collect();
    assert!(revenues.len() > 16, "{} rows", revenues.len());
    assert!(
        revenues.windows(2).all(|w| w[0] >= w[1]),
        "not sorted: {revenues:?}"
    );
    let unsorted: Vec<f64> = sort_keys(&html, "summary", 3)
        .iter()
        .map(|k| k.parse().expect("a revenue"))
        .collect();
    assert!(
        unsorted.windows(2).any(|w| w[0] < w[1]),
        "the file itself is in key order"
    );
    assert!(page.dom.contains("aria-sort=\"descending\""));

    assert_eq!(png_size(&page.screenshot), Some((width, height)));
    let colours = png_colours(&page.screenshot).expect("an RGB(A) PNG");
    assert!(colours > 50, "{colours} colours");
    keep_screenshot(&page, dir.path(), "report-product-prices.png");
}

#[test]
fn chromium_shows_the_forest_reports_of_a_regression_and_a_classifier() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let input = diamonds();
    let input = input.to_str().expect("a UTF-8 path");
    let out = dir.path().join("price");
    let printed = ember_ok(&[
        "run",
        "forest-train",
        "--input",
        input,
        "--label",
        "price",
        "--trees",
        "3",
        "--max-depth",
        "5",
        "--out",
        out.to_str().expect("a UTF-8 path"),
        "--executors",
        "2",
    ]);
    let lines: Vec<&str> = printed.lines().collect();
    assert!(lines.len() <= 40, "{printed}");
    assert!(
        lines[0].starts_with("forest-train: trained 3 trees"),
        "{printed}"
    );
    assert!(
        printed.contains("most important features: carat"),
        "{printed}"
    );
    let model = out.join("model.json");
    let report = out.join("report.html");
    assert!(
        printed.contains(&format!("saved the model to {}", model.display())),
        "{printed}"
    );
    assert!(model.is_file());
    check_self_contained(&report);
    let (width, height) = (1100, 2600);
    let page = open_in_chromium_at(&report, "#sort=importances-table:2:desc", width, height);
    assert!(page.errors.is_empty(), "{:?}", page.errors);
    let (bars, svg) = chart(&page.dom, "importances");
    assert!(bars > 9, "{svg}");
    assert!(svg.contains("carat"));
    let (dots, _) = chart(&page.dom, "fit");
    assert!(dots >= 1000, "{dots} elements in predicted against actual");
    let (ranges, svg) = chart(&page.dom, "errors");
    assert!(ranges >= 4, "{svg}");
    assert!(svg.contains(" and up"), "the last range is open: {svg}");
    let importances: Vec<f64> = sort_keys(&page.dom, "importances-table", 2)
        .iter()
        .map(|k| k.parse().expect("an importance"))
        .collect();
    assert_eq!(importances.len(), 9, "one row per feature");
    assert!(importances.windows(2).all(|w| w[0] >= w[1]));
    assert!((importances.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert_eq!(png_size(&page.screenshot), Some((width, height)));
    assert!(png_colours(&page.screenshot).expect("a PNG") > 50);
    keep_screenshot(&page, dir.path(), "report-forest-train.png");

    // A classifier's report: the confusion matrix instead of the scatter.
    let out = dir.path().join("cut");
    ember_ok(&[
        "run",
        "forest-train",
        "--input",
        input,
        "--label",
        "cut",
        "--trees",
        "2",
        "--out",
        out.to_str().expect("a UTF-8 path"),
    ]);
    let page = open_in_chromium_at(&out.join("report.html"), "", 1100, 1800);
    assert!(page.errors.is_empty(), "{:?}", page.errors);
    let (cells, svg) = chart(&page.dom, "fit");
    assert!(cells >= 25, "five classes by five: {svg}");
    for class in ["Ideal", "Premium", "Very Good", "Good", "Fair"] {
        assert!(svg.contains(class), "{class}: {svg}");
    }
    let (bars, _) = chart(&page.dom, "errors");
    assert!(bars >= 5);
}

#[test]
fn forest_commands_print_their_figures_as_json_for_machines() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let input = diamonds();
    let input = input.to_str().expect("a UTF-8 path");
    let out = dir.path().join("train");
    let printed = ember_ok(&[
        "run",
        "forest-train",
        "--input",
        input,
        "--label",
        "price",
        "--trees",
        "2",
        "--out",
        out.to_str().expect("a UTF-8 path"),
        "--format",
        "json",
    ]);
    let figures: serde_json::Value = serde_json::from_str(printed.trim()).expect("one JSON object");
    assert!(
        printed.starts_with("{\"input\":")
            && printed.find("\"trees\"") < printed.find("\"seconds\""),
        "the figures in the summary's order: {printed}"
    );
    assert_eq!(figures["trees"], 2);
    assert_eq!(figures["label"], "price");
    let rows = figures["train_rows"].as_u64().expect("train_rows");
    let tested = figures["evaluated_rows"].as_u64().expect("evaluated_rows");
    assert_eq!(rows + tested, 53_940);
    assert!(figures["r2"].as_f64().expect("r2") > 0.8, "{figures}");
    let model = out.join("model.json");
    assert_eq!(figures["model"], model.display().to_string());
    assert_eq!(
        figures["model_bytes"].as_u64(),
        Some(std::fs::metadata(&model).expect("a model").len())
    );
    assert_eq!(figures["importances"][0]["feature"], "carat", "{figures}");

    let printed = ember_ok(&[
        "run",
        "forest-predict",
        "--model",
        model.to_str().expect("a UTF-8 path"),
        "--input",
        input,
        "--format",
        "csv",
    ]);
    let mut lines = printed.lines();
    assert_eq!(lines.next(), Some("figure,value"));
    let figures: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once(',')).collect();
    assert!(figures.contains(&("rows", "53940")), "{printed}");
    assert!(figures.iter().any(|(k, _)| *k == "rmse"), "{printed}");

    let printed = ember_ok(&[
        "run",
        "forest-prep",
        "--input",
        input,
        "--label",
        "price",
        "--format",
        "json",
    ]);
    let figures: serde_json::Value = serde_json::from_str(printed.trim()).expect("one JSON object");
    assert_eq!(
        figures["train_rows"].as_u64().expect("train_rows")
            + figures["test_rows"].as_u64().expect("test_rows"),
        53_940
    );
    assert_eq!(figures["out"], serde_json::Value::Null);
}
