//! `ember-bench suite`: every workload of the performance suite in one invocation (TPC-H,
//! TPC-DS, the product-price report, random-forest feature preparation, the shuffle
//! micro-benchmark), the goals' ratios computed from the figures, the Markdown put into
//! `BENCHMARKS.md` between its markers and the figures written as JSON for the chart
//! (`bench/chart` draws it). `bench/run` installs the peers and calls both.

use std::path::PathBuf;

use clap::Args;
use ember::Session;
use ember::pipelines::register_tpch;

use crate::cluster::ShuffleRates;
use crate::forest::ForestBench;
use crate::report::{Figure, Report};
use crate::tpcds::{TpcdsBench, TpcdsGoals};
use crate::tpch::TpchBench;

/// Options of `ember-bench suite` (the TPC-H ones apply to every workload).
#[derive(Args)]
pub struct SuiteBench {
    #[command(flatten)]
    pub tpch: TpchBench,
    /// The products dataset of the product-price report (made when missing).
    #[arg(long, default_value = "data/products-10m")]
    pub products: PathBuf,
    /// Sales in that dataset when it is made.
    #[arg(long, default_value_t = 10_000_000)]
    pub product_rows: u64,
    /// Copies of diamonds in the feature-preparation input.
    #[arg(long, default_value_t = 20)]
    pub forest_scale: usize,
    /// The workloads to run, comma-separated: tpch, tpcds, prices, forest, shuffle.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tpch,tpcds,prices,forest,shuffle"
    )]
    pub workloads: Vec<String>,
    /// The TPC-DS data folder (SF 1; made when missing by `bench/python/tpcds.py`).
    #[arg(long, default_value = "data/tpcds-sf1")]
    pub tpcds_data: PathBuf,
    /// The Python with `duckdb` and `duckdb-ext-tpcds` of one version, to make the TPC-DS
    /// data (`bench/run` installs it).
    #[arg(long, default_value = "python3", env = "EMBER_TPCDS_PYTHON")]
    pub tpcds_python: PathBuf,
    /// Timed runs per TPC-DS query and engine, after one warm-up.
    #[arg(long, default_value_t = 1, value_parser = crate::tpch::at_least_one)]
    pub tpcds_iterations: usize,
    /// Put the report into this Markdown file, between its suite markers.
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Write the figures (times per workload and engine) as JSON to this file, for
    /// `suite-chart` (`bench/chart`).
    #[arg(long, value_name = "FILE")]
    pub figures: Option<PathBuf>,
    /// The chart's PNG file, linked from the report (`bench/run` draws it).
    #[arg(long, value_name = "FILE")]
    pub chart: Option<PathBuf>,
    /// The command line to print in the report (what `bench/run` was called with).
    #[arg(long, default_value = "bench/run")]
    pub command: String,
}

/// Runs the suite.
pub async fn run(suite: &SuiteBench) -> anyhow::Result<()> {
    let known = ["tpch", "tpcds", "prices", "forest", "shuffle"];
    if let Some(bad) = suite
        .workloads
        .iter()
        .find(|w| !known.contains(&w.as_str()))
    {
        anyhow::bail!(
            "invalid setting --workloads: unknown workload '{bad}' (known: tpch, tpcds, prices, forest, shuffle)"
        );
    }
    let wants = |w: &str| suite.workloads.iter().any(|x| x == w);
    let bench = &suite.tpch;
    if wants("shuffle") && !bench.cluster {
        anyhow::bail!(
            "invalid setting --workloads: shuffle measures the process cluster too, which \
             needs --cluster (or leave shuffle out)"
        );
    }
    let dir = bench.ensure_data()?;
    let mut report = Report::default();
    report.line(format!(
        "## The suite: Ember against the field (`{}`)",
        suite.command
    ));
    report.blank();
    report.line(format!("Machine: {}.", machine()));
    report.line(format!(
        "Run: {}, commit {}.",
        today(),
        git_head().unwrap_or_else(|| "unknown".into())
    ));
    report.blank();

    let processes = bench.process_cluster()?;
    let mut peers = match wants("tpch") {
        true => bench.start_peers()?,
        false => Vec::new(),
    };
    let config = bench.config()?;
    let embedded = Session::new(config.clone())?;
    let remote = match &processes {
        Some(cluster) => Some(cluster.session(config.clone()).await?),
        None => None,
    };

    if wants("tpch") {
        report.line("### TPC-H");
        report.blank();
        crate::tpch::tpch(bench, processes.as_ref(), &mut peers, &mut report).await?;
        report.blank();
    }
    drop(peers);
    let mut tpcds = None;
    if wants("tpcds") {
        report.line("### TPC-DS");
        report.blank();
        let tpcds_bench = TpcdsBench {
            scale_factor: 1.0,
            data: Some(suite.tpcds_data.clone()),
            executors: bench.executors,
            iterations: suite.tpcds_iterations,
            only: Vec::new(),
            conf: bench.conf.clone(),
            toggle: None,
            cluster: bench.cluster,
            ember_bin: bench.ember_bin.clone(),
            tpcds_python: suite.tpcds_python.clone(),
            script: "bench/python/tpcds.py".into(),
            // Polars' SQL reads few of the TPC-DS texts; Ballista has no TPC-DS driver here.
            peers: bench
                .peers
                .iter()
                .filter(|p| ["duckdb", "spark"].contains(&p.as_str()))
                .cloned()
                .collect(),
            launch: bench.launch.clone(),
        };
        tpcds = Some(crate::tpcds::compare(&tpcds_bench, &mut report).await?);
        report.blank();
    }
    let mut peers = match wants("prices") {
        true => bench.start_peers()?,
        false => Vec::new(),
    };
    if wants("prices") {
        report.line("### Product-price report");
        report.blank();
        crate::prices::run(
            &suite.products,
            suite.product_rows,
            bench.iterations.max(1) + 1,
            &embedded,
            remote.as_ref(),
            &mut peers,
            &mut report,
        )
        .await?;
        report.blank();
    }
    drop(peers);
    if wants("forest") {
        report.line("### Random-forest feature preparation");
        report.blank();
        let forest = ForestBench {
            executors: bench.executors,
            scale: suite.forest_scale,
            diamonds: "datasets/diamonds.csv".into(),
            work: "data/forest-bench".into(),
            trees: 0,
            max_depth: 0,
            max_bins: 32,
            feature_subset: "all".into(),
            seed: 42,
            python: bench.launch.python.clone(),
            script: "bench/python/spark_forest.py".into(),
            skip_spark: !bench.peers.iter().any(|p| p == "spark"),
        };
        crate::forest::prep_against_spark(&forest, bench.iterations.max(1) + 1, &mut report)
            .await?;
        report.blank();
    }
    let mut rates = ShuffleRates::new();
    if wants("shuffle")
        && let (Some(processes), Some(remote)) = (&processes, &remote)
    {
        report.line("### Shuffle");
        report.blank();
        register_tpch(&embedded, &dir).await?;
        register_tpch(remote, &dir).await?;
        rates = crate::cluster::shuffle_throughput(
            &embedded,
            remote,
            processes.executors(),
            &mut report,
        )
        .await?;
        report.blank();
    }
    goals(&mut report, &rates, tpcds.as_ref());
    if let Some(file) = &suite.figures {
        std::fs::write(file, report.figures_json())?;
        eprintln!("wrote the figures to {}", file.display());
    }
    if let Some(chart) = &suite.chart {
        report.blank();
        report.line(format!("![The suite's chart]({})", chart.display()));
        report.blank();
    }
    if let Some(file) = &suite.write {
        report.rewrite(file)?;
        eprintln!("wrote the suite's section of {}", file.display());
    }
    Ok(())
}

/// The time of `engine` (its name up to the version) in the figure of `workload`.
fn time_of(figures: &[Figure], workload: &str, engine: &str) -> Option<f64> {
    figures
        .iter()
        .find(|f| f.workload == workload)?
        .times
        .iter()
        .find(|(e, _)| e == engine || e.split(' ').next() == Some(engine))
        .and_then(|(_, t)| *t)
}

/// The goals of issues 7 and 25, each with its measured ratio.
fn goals(report: &mut Report, rates: &ShuffleRates, tpcds: Option<&TpcdsGoals>) {
    let figures = &report.figures;
    let ratio = |workload: &str, a: &str, b: &str| {
        Some(time_of(figures, workload, a)? / time_of(figures, workload, b)?)
    };
    // (goal, the ratio it must not pass, measured)
    let rows: Vec<(&str, f64, Option<f64>)> = vec![
        (
            "Ember processes / Spark local, TPC-H total",
            0.10,
            ratio("TPC-H total", "Ember processes", "spark"),
        ),
        (
            "Ember embedded / DataFusion, TPC-H total",
            1.10,
            ratio("TPC-H total", "Ember embedded", "DataFusion"),
        ),
        (
            "Ember processes / DataFusion, TPC-H total",
            1.30,
            ratio("TPC-H total", "Ember processes", "DataFusion"),
        ),
        (
            "Ember embedded / Ballista standalone, TPC-H total",
            0.80,
            ratio("TPC-H total", "Ember embedded", "ballista"),
        ),
        (
            "Ember processes / Ballista standalone, TPC-H total",
            0.80,
            ratio("TPC-H total", "Ember processes", "ballista"),
        ),
        (
            "Ember embedded / DuckDB, product-price report (moonshot)",
            1.00,
            ratio("product prices", "Ember embedded", "duckdb"),
        ),
        (
            "Ember embedded / DuckDB, q01 (moonshot)",
            1.00,
            ratio("q01", "Ember embedded", "duckdb"),
        ),
    ];
    report.line("### The goals");
    report.blank();
    report.line("| goal | target | measured | met |");
    report.line("|---|---:|---:|---|");
    for (name, limit, measured) in rows {
        let (cell, met) = match measured {
            Some(m) => (format!("{m:.2}"), if m <= limit { "yes" } else { "no" }),
            None => ("n/a".to_string(), "n/a"),
        };
        report.line(format!("| {name} | ≤ {limit:.2} | {cell} | {met} |"));
    }
    if let Some(tpcds) = tpcds {
        let engine = &tpcds.engine;
        let rows = [
            (
                format!("{engine} / DataFusion, TPC-DS total"),
                1.10,
                tpcds.total_ratio,
                String::new(),
            ),
            (
                format!("{engine} / DataFusion, the slowest TPC-DS query"),
                1.50,
                tpcds.worst.map(|(_, r)| r),
                tpcds
                    .worst
                    .map(|(n, _)| format!(" (q{n:02})"))
                    .unwrap_or_default(),
            ),
        ];
        for (name, limit, measured, query) in rows {
            let (cell, met) = match measured {
                Some(m) => (
                    format!("{m:.2}{query}"),
                    if m <= limit { "yes" } else { "no" },
                ),
                None => ("n/a".to_string(), "n/a"),
            };
            report.line(format!("| {name} | ≤ {limit:.2} | {cell} | {met} |"));
        }
        let missed = match tpcds.missed.is_empty() {
            true => ("none".to_string(), "yes"),
            false => (tpcds.missed.join(", "), "no"),
        };
        report.line(format!(
            "| TPC-DS queries DataFusion answers and Ember does not | none | {} | {} |",
            missed.0, missed.1
        ));
    }
    for (cluster, rate) in rates {
        let met = if *rate >= 1000.0 { "yes" } else { "no" };
        report.line(format!(
            "| shuffle read per executor, {cluster} | ≥ 1000 MB/s | {rate:.0} MB/s | {met} |"
        ));
    }
}

/// CPU model, cores and memory, from /proc.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cpu}, {cores} cores, {memory:.0} GiB")
}

fn today() -> String {
    std::process::Command::new("date")
        .arg("+%Y-%m-%d %H:%M UTC")
        .env("TZ", "UTC")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn git_head() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["log", "-1", "--format=%h %s"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
