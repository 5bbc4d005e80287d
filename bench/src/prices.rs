//! The product-price report (`ember run product-prices`) in the suite: Ember embedded and
//! as a process cluster against the peers' own implementations of the same four tables
//! (`bench/python/peers.py`), each result checked against Ember embedded's.
//!
//! Approximate percentiles differ between engines by design (each has its own sketch), so
//! the check skips the summary's quartile, p90 and p99 columns and the bands cut at the
//! approximate quantiles; every other cell must agree.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::bail;
use ember::Session;
use ember_examples::price_report::{REPORT_FILE, price_report_page};
use ember_examples::price_summary::{DEFAULT_TOP, SummaryContext};
use ember_examples::product_prices::{
    PRICE_SALES, PriceRun, PriceSource, ReportForm, ensure_products, run_product_prices,
};

use crate::peers::{Peer, PipelineRun, median_after_warmup, rows_agree};
use crate::report::{Figure, Report};
use crate::tpch::text_rows;

/// The summary's approximate-percentile columns (p25, median, p75, p90, p99).
const APPROXIMATE_SUMMARY_COLUMNS: std::ops::Range<usize> = 8..13;

/// Ember's tables as text, by name.
type Tables = BTreeMap<String, Vec<Vec<String>>>;

/// One run of Ember's report (DSL form): its time in milliseconds, its tables as text,
/// and the run itself.
async fn ember_run(
    session: &Session,
    source: &PriceSource,
) -> anyhow::Result<(f64, Tables, PriceRun)> {
    // Each run registers its view of the sales afresh.
    session.context().deregister_table(PRICE_SALES)?;
    let started = Instant::now();
    let run = run_product_prices(session, source, ReportForm::Dsl, None).await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let mut tables = BTreeMap::new();
    for (name, result) in &run.tables {
        tables.insert(name.to_string(), text_rows(&result.batches)?);
    }
    Ok((ms, tables, run))
}

/// Builds the HTML report of `run` (what `ember run product-prices` writes beside its
/// tables) and writes it to a temporary file: milliseconds taken and bytes written.
fn html_report(run: &PriceRun, source: &PriceSource, seconds: f64) -> anyhow::Result<(f64, u64)> {
    let context = SummaryContext {
        source: source.clone(),
        form: ReportForm::Dsl,
        top: DEFAULT_TOP,
        out: None,
        report: None,
        executors: 2,
        seconds,
    };
    let scratch = tempfile::tempdir()?;
    let started = Instant::now();
    let bytes = price_report_page(run, &context)?.write(&scratch.path().join(REPORT_FILE))?;
    Ok((started.elapsed().as_secs_f64() * 1e3, bytes))
}

/// The cells of `table` that every engine must agree on.
fn exact_part(table: &str, rows: &[Vec<String>]) -> Vec<Vec<String>> {
    match table {
        "summary" => rows
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .filter(|(i, _)| !APPROXIMATE_SUMMARY_COLUMNS.contains(i))
                    .map(|(_, cell)| cell.clone())
                    .collect()
            })
            .collect(),
        "bands" => rows
            .iter()
            .filter(|row| row.first().is_some_and(|scheme| scheme == "fixed"))
            .cloned()
            .collect(),
        _ => rows.to_vec(),
    }
}

/// Which tables of `got` differ from `expected` in their exact part.
fn differing(expected: &Tables, got: &Tables) -> Vec<String> {
    expected
        .iter()
        .filter(|(name, rows)| {
            got.get(*name)
                .is_none_or(|other| !rows_agree(&exact_part(name, rows), &exact_part(name, other)))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Runs the report over the products dataset in `dir` (made with `rows` sales when
/// missing) `runs` times per engine and adds its table to `report`.
pub async fn run(
    dir: &Path,
    rows: u64,
    runs: usize,
    embedded: &Session,
    processes: Option<&Session>,
    peers: &mut [Peer],
    report: &mut Report,
) -> anyhow::Result<()> {
    if ensure_products(dir, rows, 4)? {
        eprintln!("made {rows} sales in {}", dir.display());
    }
    let source = PriceSource::Products(dir.to_path_buf());
    let mut times: Vec<(String, Option<f64>)> = Vec::new();
    let mut expected = Tables::new();
    let mut ember_times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let (ms, tables, run) = ember_run(embedded, &source).await?;
        ember_times.push(ms);
        expected = tables;
        last = Some((ms, run));
    }
    times.push(("Ember embedded".into(), median_after_warmup(&ember_times)));
    let html = match &last {
        Some((ms, run)) => Some(html_report(run, &source, ms / 1e3)?),
        None => None,
    };
    if let Some(processes) = processes {
        let mut process_times = Vec::new();
        for _ in 0..runs {
            let (ms, tables, _) = ember_run(processes, &source).await?;
            process_times.push(ms);
            let wrong = differing(&expected, &tables);
            if !wrong.is_empty() {
                bail!("product-prices: the process cluster's {wrong:?} differ from embedded's");
            }
        }
        times.push((
            "Ember processes".into(),
            median_after_warmup(&process_times),
        ));
    }
    for peer in peers.iter_mut().filter(|p| p.name != "ballista") {
        let engine = format!("{} {}", peer.name, peer.version);
        match peer.pipeline("product-prices", dir, runs)? {
            PipelineRun::Done { times_ms, tables } => {
                let wrong = differing(&expected, &tables);
                if wrong.is_empty() {
                    times.push((engine, median_after_warmup(&times_ms)));
                } else {
                    eprintln!(
                        "product-prices: {}'s {wrong:?} differ from Ember's; not counted",
                        peer.name
                    );
                    times.push((engine, None));
                }
            }
            PipelineRun::Failed(error) => {
                eprintln!("product-prices: {} failed: {error}", peer.name);
                times.push((engine, None));
            }
        }
    }
    let counts: Vec<String> = expected
        .iter()
        .map(|(name, rows)| format!("{name} {}", rows.len()))
        .collect();
    report.line(format!(
        "Product-price report over {} (its sales joined with their products; tables: {}); \
         Ember's DSL form, the peers' own SQL or DataFrame code; median of {} runs after a \
         warm-up; every table checked against Ember embedded's (all but the approximate \
         percentiles)",
        dir.display(),
        counts.join(", "),
        runs.saturating_sub(1)
    ));
    report.blank();
    let widest = times
        .iter()
        .position(|(e, _)| e == "Ember processes")
        .unwrap_or(0);
    report.line(format!(
        "| engine | time (ms) | {} / engine |",
        times[widest].0
    ));
    report.line("|---|---:|---:|");
    for (engine, time) in &times {
        let ratio = match (times[widest].1, time) {
            (Some(a), Some(b)) => format!("{:.2}", a / b),
            _ => "n/a".to_string(),
        };
        let cell = time.map_or("n/a".to_string(), |t| format!("{t:.0}"));
        report.line(format!("| {engine} | {cell} | {ratio} |"));
    }
    if let Some((ms, bytes)) = html {
        let line = format!(
            "HTML report of the last Ember embedded run (`report.html`, charts and every \
             table): built and written in {ms:.0} ms beyond the pipeline, {:.0} KB",
            bytes as f64 / 1e3
        );
        eprintln!("product-prices: {line}");
        report.blank();
        report.line(line);
    }
    report.figures.push(Figure {
        workload: "product prices".to_string(),
        times,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn approximate_cells_are_not_compared_and_exact_ones_are() {
        let summary = |median: &str, sales: &str| {
            table(&[&[
                "category", "A", sales, "10.0", "1", "9", "5", "2", "3", median, "7", "8", "9",
            ]])
        };
        let bands = |scheme: &str, sales: &str| table(&[&[scheme, "A", "0", "", "10.0", sales]]);
        let ember = Tables::from([
            ("summary".to_string(), summary("5.0", "3")),
            ("bands".to_string(), bands("quantile", "7")),
        ]);
        let close = Tables::from([
            ("summary".to_string(), summary("5.2", "3")),
            ("bands".to_string(), bands("quantile", "9")),
        ]);
        assert!(differing(&ember, &close).is_empty());
        let wrong = Tables::from([
            ("summary".to_string(), summary("5.0", "4")),
            ("bands".to_string(), bands("fixed", "7")),
        ]);
        assert_eq!(differing(&ember, &wrong), vec!["bands", "summary"]);
        let missing = Tables::from([("summary".to_string(), summary("5.0", "3"))]);
        assert_eq!(differing(&ember, &missing), vec!["bands"]);
    }
}
