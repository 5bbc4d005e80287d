//! `ember-bench forest`: random-forest feature preparation and training, Ember against
//! Spark MLlib (`pyspark`, `local[N]`) in the same invocation.
//!
//! - Feature preparation on diamonds enlarged `--scale` times (100: 5.4 M rows): Ember's
//!   `forest-prep` and a Spark ML pipeline of the same transformers
//!   (`bench/python/spark_forest.py --mode prep`), each fitted on the training rows and
//!   writing the transformed training rows as Parquet.
//! - Training on diamonds: Ember's `forest-train` and MLlib's `RandomForestRegressor` with
//!   the same trees, depth, bins and feature subset, on the same training and test rows
//!   (Ember's seeded split, written by forest-prep and read by Spark).
//!
//! Spark's session start is reported apart from its times. Ember runs in this process on
//! its embedded cluster of `--executors` executors with one slot each.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use ember::{EmberConfig, Session};
use ember_examples::forest::prep::{PrepOptions, forest_prep};
use ember_examples::forest::{TrainOptions, forest_train, register_forest_functions};

use crate::peers::median_after_warmup;
use crate::report::{Figure, Report};

/// Options of `ember-bench forest`.
#[derive(Args)]
pub struct ForestBench {
    /// Ember executors (one slot each), and Spark's `local[N]`.
    #[arg(long, default_value_t = 2)]
    pub executors: usize,
    /// How many copies of diamonds the feature-preparation input holds.
    #[arg(long, default_value_t = 100)]
    pub scale: usize,
    /// The diamonds CSV.
    #[arg(long, default_value = "datasets/diamonds.csv")]
    pub diamonds: PathBuf,
    /// Where the enlarged input and the outputs go.
    #[arg(long, default_value = "data/forest-bench")]
    pub work: PathBuf,
    /// Trees.
    #[arg(long, default_value_t = 50)]
    pub trees: usize,
    /// Deepest level.
    #[arg(long, default_value_t = 10)]
    pub max_depth: usize,
    /// Bins per feature (quantile buckets in preparation).
    #[arg(long, default_value_t = 32)]
    pub max_bins: usize,
    /// Features per node, for both engines.
    #[arg(long, default_value = "all")]
    pub feature_subset: String,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The Python with pyspark (see `bench/python/requirements.txt`).
    #[arg(long, default_value = "python3", env = "EMBER_BENCH_PYTHON")]
    pub python: PathBuf,
    /// The Spark driver script.
    #[arg(long, default_value = "bench/python/spark_forest.py")]
    pub script: PathBuf,
    /// Ember only.
    #[arg(long)]
    pub skip_spark: bool,
}

/// Writes `copies` copies of the rows of `source` (one header) to `target`, unless it is
/// there already.
fn enlarge(source: &Path, target: &Path, copies: usize) -> anyhow::Result<()> {
    if target.is_file() {
        return Ok(());
    }
    let text =
        std::fs::read_to_string(source).with_context(|| format!("reading {}", source.display()))?;
    let (header, rows) = text.split_once('\n').context("a CSV with a header")?;
    let partial = target.with_extension("csv.partial");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&partial)?);
    writeln!(out, "{header}")?;
    for _ in 0..copies {
        out.write_all(rows.as_bytes())?;
        if !rows.ends_with('\n') {
            writeln!(out)?;
        }
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&partial, target)?;
    Ok(())
}

/// Runs the Spark driver and returns its last line as JSON.
fn spark(bench: &ForestBench, args: &[String]) -> anyhow::Result<serde_json::Value> {
    let output = Command::new(&bench.python)
        .arg(&bench.script)
        .args(args)
        .args(["--master", &format!("local[{}]", bench.executors)])
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .output()
        .with_context(|| format!("starting {}", bench.python.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "the Spark driver failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .rev()
                .take(12)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let last = stdout
        .lines()
        .last()
        .context("the Spark driver printed nothing")?;
    serde_json::from_str(last).with_context(|| format!("the Spark driver's last line: {last}"))
}

fn number(value: &serde_json::Value, key: &str) -> anyhow::Result<f64> {
    value
        .get(key)
        .and_then(serde_json::Value::as_f64)
        .with_context(|| format!("no '{key}' in {value}"))
}

fn fresh(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// The enlarged input (made when missing) and an embedded cluster with the forest
/// functions.
fn setup(bench: &ForestBench) -> anyhow::Result<(PathBuf, Session)> {
    std::fs::create_dir_all(&bench.work)?;
    let big = bench.work.join(format!("diamonds-{}x.csv", bench.scale));
    enlarge(&bench.diamonds, &big, bench.scale)?;
    let session = Session::new(EmberConfig {
        executors: bench.executors,
        slots: 1,
        ..EmberConfig::default()
    })?;
    register_forest_functions(session.functions());
    Ok((big, session))
}

/// Feature preparation only, for the suite: Ember's `forest-prep` on its embedded cluster
/// and Spark's pipeline, each `runs` times (the first a warm-up, the median counts).
pub async fn prep_against_spark(
    bench: &ForestBench,
    runs: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (big, session) = setup(bench)?;
    let out = bench.work.join("ember-prep");
    let mut ember_ms = Vec::new();
    let mut rows = 0;
    for _ in 0..runs {
        fresh(&out)?;
        let mut prep = PrepOptions::new(&big, "price");
        prep.out = Some(out.clone());
        prep.seed = bench.seed;
        prep.buckets = bench.max_bins;
        let started = Instant::now();
        let prepared = forest_prep(&session, &prep).await?;
        ember_ms.push(started.elapsed().as_secs_f64() * 1e3);
        rows = prepared.train_rows + prepared.test_rows;
    }
    fresh(&out)?;
    let spark_out = bench.work.join("spark-prep");
    let spark_ms = match bench.skip_spark {
        true => Vec::new(),
        false => {
            fresh(&spark_out)?;
            let prep = spark(
                bench,
                &[
                    "--mode".into(),
                    "prep".into(),
                    "--input".into(),
                    big.to_string_lossy().into_owned(),
                    "--out".into(),
                    spark_out.to_string_lossy().into_owned(),
                    "--max-bins".into(),
                    bench.max_bins.to_string(),
                    "--seed".into(),
                    bench.seed.to_string(),
                    "--runs".into(),
                    runs.to_string(),
                ],
            )?;
            fresh(&spark_out)?;
            let spark_rows = number(&prep, "rows")? as u64;
            if spark_rows != rows {
                bail!("Spark's feature prep read {spark_rows} rows, Ember's {rows}");
            }
            prep["prep_runs_s"]
                .as_array()
                .context("prep_runs_s")?
                .iter()
                .filter_map(serde_json::Value::as_f64)
                .map(|s| s * 1e3)
                .collect()
        }
    };
    let ember = median_after_warmup(&ember_ms);
    let spark = median_after_warmup(&spark_ms);
    report.line(format!(
        "Random-forest feature preparation: diamonds × {} ({rows} rows of CSV), Ember \
         embedded ({} executors × 1 slot) against a Spark ML pipeline in local[{}]; median of \
         {} runs after a warm-up; both read {rows} rows",
        bench.scale,
        bench.executors,
        bench.executors,
        runs.saturating_sub(1)
    ));
    report.blank();
    report.line("| workload | Ember embedded (ms) | Spark (ms) | Ember / Spark |");
    report.line("|---|---:|---:|---:|");
    let cell = |t: Option<f64>| t.map_or("n/a".to_string(), |t| format!("{t:.0}"));
    let ratio = match (ember, spark) {
        (Some(e), Some(s)) => format!("{:.2}", e / s),
        _ => "n/a".to_string(),
    };
    report.line(format!(
        "| forest prep | {} | {} | {ratio} |",
        cell(ember),
        cell(spark)
    ));
    report.figures.push(Figure {
        workload: "forest prep".to_string(),
        times: vec![
            ("Ember embedded".to_string(), ember),
            ("spark".to_string(), spark),
        ],
    });
    Ok(())
}

/// Runs the benchmark and prints its table.
pub async fn run(bench: &ForestBench) -> anyhow::Result<()> {
    let (big, session) = setup(bench)?;
    let path = |p: &Path| p.to_string_lossy().into_owned();

    // Feature preparation on the enlarged input.
    let ember_prep_out = bench.work.join("ember-prep");
    fresh(&ember_prep_out)?;
    let mut prep = PrepOptions::new(&big, "price");
    prep.out = Some(ember_prep_out.clone());
    prep.seed = bench.seed;
    prep.buckets = bench.max_bins;
    let started = Instant::now();
    let prepared = forest_prep(&session, &prep).await?;
    let ember_prep = started.elapsed().as_secs_f64();
    eprintln!(
        "Ember forest-prep: {ember_prep:.2} s, {} + {} rows",
        prepared.train_rows, prepared.test_rows
    );
    fresh(&ember_prep_out)?;

    // Ember's split of diamonds, for Spark's training.
    let split = bench.work.join("diamonds-split");
    fresh(&split)?;
    let mut split_options = PrepOptions::new(&bench.diamonds, "price");
    split_options.out = Some(split.clone());
    split_options.seed = bench.seed;
    split_options.trees = 0;
    forest_prep(&session, &split_options).await?;

    // Training on diamonds.
    let mut train = TrainOptions::new(&bench.diamonds, "price");
    train.trees = bench.trees;
    train.max_depth = bench.max_depth;
    train.max_bins = bench.max_bins;
    train.seed = bench.seed;
    train.feature_subset = bench.feature_subset.clone();
    let started = Instant::now();
    let trained = forest_train(&session, &train).await?;
    let ember_total = started.elapsed().as_secs_f64();
    let [fit, grow, evaluate] = trained.seconds;
    let ember_r2 = trained
        .evaluation
        .as_ref()
        .and_then(|e| e.r2)
        .context("Ember's evaluation")?;
    eprintln!(
        "Ember forest-train: {:.2} s training ({fit:.2} s features, {grow:.2} s trees), \
         {evaluate:.2} s evaluation, R² {ember_r2:.4}",
        fit + grow
    );

    let spark_results = if bench.skip_spark {
        None
    } else {
        let spark_prep_out = bench.work.join("spark-prep");
        fresh(&spark_prep_out)?;
        let prep = spark(
            bench,
            &[
                "--mode".into(),
                "prep".into(),
                "--input".into(),
                path(&big),
                "--out".into(),
                path(&spark_prep_out),
                "--max-bins".into(),
                bench.max_bins.to_string(),
                "--seed".into(),
                bench.seed.to_string(),
            ],
        )?;
        fresh(&spark_prep_out)?;
        eprintln!("Spark prep: {prep}");
        let train = spark(
            bench,
            &[
                "--mode".into(),
                "train".into(),
                "--train".into(),
                path(&split.join("train")),
                "--test".into(),
                path(&split.join("test")),
                "--numeric".into(),
                "carat,depth,table,x,y,z".into(),
                "--trees".into(),
                bench.trees.to_string(),
                "--max-depth".into(),
                bench.max_depth.to_string(),
                "--max-bins".into(),
                bench.max_bins.to_string(),
                "--feature-subset".into(),
                bench.feature_subset.clone(),
                "--seed".into(),
                bench.seed.to_string(),
            ],
        )?;
        eprintln!("Spark train: {train}");
        Some((prep, train))
    };

    println!(
        "Random forests: Ember embedded ({} executors × 1 slot) against Spark MLlib \
         local[{}]; {} trees, depth {}, {} bins, feature subset {}, seed {}",
        bench.executors,
        bench.executors,
        bench.trees,
        bench.max_depth,
        bench.max_bins,
        bench.feature_subset,
        bench.seed
    );
    println!();
    println!("| workload | Ember (s) | Spark (s) | Spark / Ember | Ember R² | Spark R² |");
    println!("|---|---:|---:|---:|---:|---:|");
    let rows = prepared.train_rows + prepared.test_rows;
    match &spark_results {
        Some((prep, train)) => {
            let spark_prep = number(prep, "prep_s")?;
            println!(
                "| feature prep, {rows} rows | {ember_prep:.2} | {spark_prep:.2} | {:.1} | | |",
                spark_prep / ember_prep
            );
            let spark_train = number(train, "train_s")?;
            let spark_r2 = number(train, "r2")?;
            println!(
                "| forest training, {} rows | {:.2} | {spark_train:.2} | {:.1} | {ember_r2:.4} | {spark_r2:.4} |",
                trained.train_rows,
                fit + grow,
                spark_train / (fit + grow)
            );
            let spark_predict = number(train, "predict_s")?;
            println!(
                "| prediction and evaluation, {} rows | {evaluate:.2} | {spark_predict:.2} | {:.1} | | |",
                trained.evaluation.as_ref().map_or(0, |e| e.rows),
                spark_predict / evaluate
            );
            println!();
            println!(
                "Spark's session start (not counted): {:.2} s (prep run), {:.2} s (training \
                 run). Ember's whole training run, reading the CSV to the evaluation: \
                 {ember_total:.2} s.",
                number(prep, "session_start_s")?,
                number(train, "session_start_s")?
            );
        }
        None => {
            println!("| feature prep, {rows} rows | {ember_prep:.2} | | | | |");
            println!(
                "| forest training, {} rows | {:.2} | | | {ember_r2:.4} | |",
                trained.train_rows,
                fit + grow
            );
        }
    }
    Ok(())
}
