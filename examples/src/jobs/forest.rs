//! `ember run forest-prep`, `forest-train` and `forest-predict`: their options, checked and
//! named, the pipeline run, and what it did printed: a short summary for people (sizes,
//! metrics, times, where the model and the report went), or with `--format json|csv` the
//! same [`Figures`] for machines.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};

use clap::Args;
use ember::OutputFormat;
use ember::cli::{ClusterArgs, JobContext, finish_progress, print_result, report_bad_rows};
use ember::report::format::{bytes, count, percent};

use crate::forest::model::Evaluation;
use crate::forest::prep::{PrepOptions, forest_prep};
use crate::forest::report::{TrainFacts, train_report_page};
use crate::forest::transformers::Transformer;
use crate::forest::{TrainOptions, forest_predict, forest_train};

/// The options forest-prep and forest-train share: the rows, the label and the split.
#[derive(Args)]
pub(super) struct Training {
    /// A CSV or Parquet file, or a folder of them.
    #[arg(long)]
    input: Option<PathBuf>,
    /// The column to predict (numbers: regression; strings: classification).
    #[arg(long)]
    label: Option<String>,
    /// Quantile buckets per numeric feature (and, in training, most labels plus one per
    /// string feature).
    #[arg(long, default_value_t = 32)]
    max_bins: usize,
    /// Share of rows held out for testing (a seeded hash of each row decides).
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// The seed of every random choice.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output format: table (a summary for people), or the same figures as csv or json.
    #[arg(long, default_value = "table")]
    format: OutputFormat,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Options of `ember run forest-prep`.
#[derive(Args)]
pub(super) struct PrepArgs {
    #[command(flatten)]
    training: Training,
    /// Bootstrap weights drawn per training row (one per tree to be grown).
    #[arg(long, default_value_t = 20)]
    trees: usize,
    /// Where to write the rows, bin statistics and pipeline.json, as Parquet and JSON (a
    /// folder that must be empty).
    #[arg(long)]
    out: Option<PathBuf>,
    /// What string indexers do with unseen labels and nulls: error, skip or keep.
    #[arg(long, default_value = "keep")]
    handle_invalid: String,
    /// How imputers fill missing numbers: mean or median.
    #[arg(long, default_value = "mean")]
    impute: String,
}

/// Options of `ember run forest-train`.
#[derive(Args)]
pub(super) struct TrainArgs {
    #[command(flatten)]
    training: Training,
    /// Trees to grow.
    #[arg(long, default_value_t = 20)]
    trees: usize,
    /// Where to write model.json and report.html (default `out/forest-train`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The deepest level (the root is 0).
    #[arg(long, default_value_t = 5)]
    max_depth: usize,
    /// Features each node may split on: auto (regression all, classification sqrt), all,
    /// sqrt, log2, onethird, a fraction or a count.
    #[arg(long, default_value = "auto")]
    feature_subset: String,
    /// Where to save the model (JSON; default model.json in --out).
    #[arg(long)]
    model: Option<PathBuf>,
}

/// Options of `ember run forest-predict`.
#[derive(Args)]
pub(super) struct PredictArgs {
    /// The model that forest-train saved.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The rows to predict: a CSV or Parquet file, or a folder of them.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Where to write the rows with their predictions, as Parquet (a folder that must be
    /// empty).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Output format: table (a summary for people), or the same figures as csv or json.
    #[arg(long, default_value = "table")]
    format: OutputFormat,
    #[command(flatten)]
    cluster: ClusterArgs,
}

fn required<'a, T>(value: &'a Option<T>, option: &str, example: &str) -> anyhow::Result<&'a T> {
    value
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{example} needs {option}"))
}

fn parse<T: std::str::FromStr<Err = String>>(text: &str, option: &str) -> anyhow::Result<T> {
    text.parse::<T>()
        .map_err(|message| anyhow::anyhow!("invalid setting {option}: {message}"))
}

fn input(input: &Option<PathBuf>, example: &str) -> anyhow::Result<PathBuf> {
    let input = required(input, "--input FILE_OR_DIR", example)?;
    if !input.exists() {
        anyhow::bail!(
            "invalid setting --input: {} does not exist",
            input.display()
        );
    }
    Ok(input.clone())
}

/// Where forest-train writes its model and report without `--out`.
const DEFAULT_TRAIN_OUT: &str = "out/forest-train";

/// Transformers listed by name in forest-prep's summary; the rest are counted.
const LISTED_STEPS: usize = 16;

/// Prints an evaluation on one line.
fn evaluation_line(rows_kind: &str, evaluation: &Evaluation) -> String {
    let mut line = format!("{} {rows_kind} rows", evaluation.rows);
    if let (Some(rmse), Some(r2)) = (evaluation.rmse, evaluation.r2) {
        line.push_str(&format!(": RMSE {rmse:.4}, R² {r2:.4}"));
    }
    if let Some(accuracy) = evaluation.accuracy {
        line.push_str(&format!(": accuracy {accuracy:.4}"));
    }
    line
}

/// What a forest command did, by name, in the order it is told: printed by `--format
/// json` as one object and by `--format csv` as `figure,value` lines.
#[derive(Default)]
struct Figures(Vec<(&'static str, Value)>);

impl Figures {
    fn add(&mut self, name: &'static str, value: impl Into<Value>) -> &mut Self {
        self.0.push((name, value.into()));
        self
    }

    fn evaluation(&mut self, evaluation: Option<&Evaluation>) -> &mut Self {
        if let Some(e) = evaluation {
            self.add("evaluated_rows", e.rows);
            for (name, value) in [("rmse", e.rmse), ("r2", e.r2), ("accuracy", e.accuracy)] {
                if let Some(value) = value {
                    self.add(name, value);
                }
            }
        }
        self
    }

    /// Prints the figures as `format` says; false for `table`, which prints nothing.
    fn print(&self, format: OutputFormat) -> anyhow::Result<bool> {
        match format {
            OutputFormat::Table => return Ok(false),
            OutputFormat::Json => {
                // In the order told (a `serde_json::Map` would sort the keys).
                let members: Vec<String> = self
                    .0
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", Value::from(*k)))
                    .collect();
                println!("{{{}}}", members.join(","));
            }
            OutputFormat::Csv => {
                let mut writer = csv::Writer::from_writer(std::io::stdout().lock());
                writer.write_record(["figure", "value"])?;
                for (name, value) in &self.0 {
                    let text = match value {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    writer.write_record([*name, text.as_str()])?;
                }
                writer.flush()?;
            }
        }
        Ok(true)
    }
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

/// `ember run forest-prep`.
pub(super) async fn prep(args: PrepArgs, context: JobContext) -> anyhow::Result<()> {
    let training = &args.training;
    let mut options = PrepOptions::new(
        input(&training.input, "forest-prep")?,
        required(&training.label, "--label COLUMN", "forest-prep")?,
    );
    options.out = args.out.clone();
    options.seed = training.seed;
    options.test_fraction = training.test_fraction;
    options.trees = args.trees;
    options.buckets = training.max_bins;
    options.handle_invalid = parse(&args.handle_invalid, "--handle-invalid")?;
    options.impute = parse(&args.impute, "--impute")?;
    let (session, bar) = context.session(&training.cluster).await?;
    let started = Instant::now();
    let outcome = forest_prep(&session, &options).await;
    finish_progress(bar.as_deref());
    let outcome = outcome?;
    let elapsed = started.elapsed().as_secs_f64();
    let features: std::collections::BTreeSet<&str> = outcome
        .bin_stats
        .iter()
        .map(|s| s.feature.as_str())
        .collect();
    let mut figures = Figures::default();
    figures
        .add("input", path_text(&options.input))
        .add("label", options.label.clone())
        .add("train_rows", outcome.train_rows)
        .add("test_rows", outcome.test_rows)
        .add("transformers", outcome.pipeline.steps.len())
        .add("features", features.len())
        .add("bins", outcome.bin_stats.len())
        .add("out", options.out.as_deref().map(path_text))
        .add("executors", session.config().executors)
        .add("seconds", elapsed);
    if figures.print(training.format)? {
        report_bad_rows(&session);
        return Ok(());
    }
    println!(
        "forest-prep: {} training rows, {} held out for testing, from {}",
        count(outcome.train_rows.into()),
        count(outcome.test_rows.into()),
        options.input.display()
    );
    println!("fitted {} transformers:", outcome.pipeline.steps.len());
    for step in outcome.pipeline.steps.iter().take(LISTED_STEPS) {
        println!("  {}", describe(step));
    }
    if outcome.pipeline.steps.len() > LISTED_STEPS {
        println!(
            "  ... and {} more (every one in pipeline.json)",
            outcome.pipeline.steps.len() - LISTED_STEPS
        );
    }
    println!(
        "bin statistics of '{}': {} bins over {} features",
        outcome.stats_label,
        outcome.bin_stats.len(),
        features.len()
    );
    match &options.out {
        Some(out) => println!(
            "wrote train/, test/, bin_stats/ and pipeline.json to {}",
            out.display()
        ),
        None => println!("nothing written (--out DIR writes the rows, bins and pipeline)"),
    }
    println!("{elapsed:.2} s on {} executors", session.config().executors);
    report_bad_rows(&session);
    Ok(())
}

fn describe(step: &Transformer) -> String {
    match step {
        Transformer::StringIndexer {
            input,
            output,
            labels,
            handle_invalid,
            ..
        } => format!(
            "string indexer {input} -> {output}: {} labels, unseen: {handle_invalid:?}",
            labels.len()
        ),
        Transformer::OneHotEncoder {
            input,
            output,
            size,
        } => format!("one-hot encoder {input} -> {output}: {size} wide"),
        Transformer::Imputer {
            input,
            output,
            strategy,
            value,
        } => format!("imputer {input} -> {output}: {strategy:?} {value:.6}"),
        Transformer::StandardScaler {
            input,
            output,
            mean,
            std,
        } => format!("standard scaler {input} -> {output}: mean {mean:.6}, std {std:.6}"),
        Transformer::QuantileDiscretizer {
            input,
            output,
            edges,
        } => format!(
            "quantile discretizer {input} -> {output}: {} buckets",
            edges.len() + 1
        ),
        Transformer::VectorAssembler { inputs, output } => {
            format!("vector assembler -> {output}: {} columns", inputs.len())
        }
    }
}

/// `ember run forest-train`: trains, saves the model (`--model`, or `model.json` in the
/// output folder) and writes `report.html` there.
pub(super) async fn train(args: TrainArgs, context: JobContext) -> anyhow::Result<()> {
    let training = &args.training;
    let mut options = TrainOptions::new(
        input(&training.input, "forest-train")?,
        required(&training.label, "--label COLUMN", "forest-train")?,
    );
    options.trees = args.trees;
    options.max_depth = args.max_depth;
    options.max_bins = training.max_bins;
    options.seed = training.seed;
    options.test_fraction = training.test_fraction;
    options.feature_subset = args.feature_subset.clone();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TRAIN_OUT));
    if out.is_file() {
        anyhow::bail!(
            "invalid setting --out: {} is a file; forest-train writes model.json and \
             report.html into a folder",
            out.display()
        );
    }
    let model_path = args.model.clone().unwrap_or_else(|| out.join("model.json"));
    let (session, bar) = context.session(&training.cluster).await?;
    let started = Instant::now();
    let outcome = forest_train(&session, &options).await;
    finish_progress(bar.as_deref());
    let outcome = outcome?;
    let model = &outcome.model;
    if let Some(dir) = model_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    model.save(&model_path)?;
    let elapsed = started.elapsed().as_secs_f64();
    let report_path = out.join("report.html");
    let facts = TrainFacts {
        input: &path_text(&options.input),
        model_path: &path_text(&model_path),
        executors: session.config().executors,
        seconds: elapsed,
    };
    let report_bytes = train_report_page(&outcome, &facts)?.write(&report_path)?;
    let model_bytes = std::fs::metadata(&model_path).map_or(0, |m| m.len());

    let nodes: usize = model.trees.iter().map(|t| t.nodes.len()).sum();
    let depth = model.trees.iter().map(|t| t.depth()).max().unwrap_or(0);
    let [fit, grow, evaluate] = outcome.seconds;
    let mut ranked: Vec<(&str, f64)> = model
        .features
        .iter()
        .map(|f| f.name.as_str())
        .zip(model.feature_importances())
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut figures = Figures::default();
    figures
        .add("input", facts.input)
        .add("label", options.label.clone())
        .add("trees", model.trees.len())
        .add("nodes", nodes)
        .add("depth", depth)
        .add("features", model.features.len())
        .add("train_rows", outcome.train_rows)
        .add("passes", outcome.report.passes)
        .evaluation(outcome.evaluation.as_ref())
        .add(
            "importances",
            ranked
                .iter()
                .map(|(name, share)| json!({"feature": name, "importance": share}))
                .collect::<Vec<_>>(),
        )
        .add("features_seconds", fit)
        .add("trees_seconds", grow)
        .add("evaluation_seconds", evaluate)
        .add("seconds", elapsed)
        .add("executors", session.config().executors)
        .add("model", facts.model_path)
        .add("model_bytes", model_bytes)
        .add("report", path_text(&report_path))
        .add("report_bytes", report_bytes);
    if figures.print(training.format)? {
        report_bad_rows(&session);
        return Ok(());
    }
    println!(
        "forest-train: trained {} trees ({nodes} nodes, depth {depth}) on {} rows of {} \
         features in {} passes",
        model.trees.len(),
        count(outcome.train_rows.into()),
        model.features.len(),
        outcome.report.passes
    );
    match &outcome.evaluation {
        Some(evaluation) => println!("{}", evaluation_line("test", evaluation)),
        None => println!(
            "no test rows to evaluate on (--test-fraction {})",
            options.test_fraction
        ),
    }
    let top: Vec<String> = ranked
        .iter()
        .take(5)
        .map(|(name, share)| format!("{name} {}", percent(*share)))
        .collect();
    println!("most important features: {}", top.join(", "));
    println!(
        "times: features {fit:.2} s, trees {grow:.2} s, evaluation {evaluate:.2} s; \
         {elapsed:.2} s in all on {} executors",
        session.config().executors
    );
    println!(
        "saved the model to {} ({})",
        model_path.display(),
        bytes(model_bytes)
    );
    println!(
        "report with charts: {} ({})",
        report_path.display(),
        bytes(report_bytes)
    );
    report_bad_rows(&session);
    Ok(())
}

/// `ember run forest-predict`.
pub(super) async fn predict(args: PredictArgs, context: JobContext) -> anyhow::Result<()> {
    let model = required(&args.model, "--model FILE", "forest-predict")?;
    let input = input(&args.input, "forest-predict")?;
    let (session, bar) = context.session(&args.cluster).await?;
    let started = Instant::now();
    let outcome = forest_predict(&session, model, &input, args.out.as_deref()).await;
    finish_progress(bar.as_deref());
    let outcome = outcome?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut figures = Figures::default();
    figures
        .add("model", path_text(model))
        .add("input", path_text(&input))
        .add("rows", outcome.rows)
        .evaluation(outcome.evaluation.as_ref())
        .add("out", args.out.as_deref().map(path_text))
        .add("executors", session.config().executors)
        .add("seconds", elapsed);
    if figures.print(args.format)? {
        report_bad_rows(&session);
        return Ok(());
    }
    println!("first rows with their predictions:");
    print_result(&outcome.preview, OutputFormat::Table)?;
    match &args.out {
        Some(out) => println!(
            "wrote {} rows with predictions to {}",
            outcome.rows,
            out.display()
        ),
        None => println!(
            "predicted {} rows (--out DIR writes them as Parquet)",
            outcome.rows
        ),
    }
    if let Some(evaluation) = &outcome.evaluation {
        println!("{}", evaluation_line("labelled", evaluation));
    }
    println!(
        "{elapsed:.2} s on {} executors with the model {}",
        session.config().executors,
        model.display()
    );
    report_bad_rows(&session);
    Ok(())
}
