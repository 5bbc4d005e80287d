//! `ember run forest-prep`, `forest-train` and `forest-predict`: options checked and
//! named, the pipeline run, its figures printed.

use std::path::PathBuf;
use std::time::Instant;

use super::RunArgs;
use crate::cli::{finish_progress, new_session, print_result, report_bad_rows};
use crate::examples::forest::model::Evaluation;
use crate::examples::forest::prep::{PrepOptions, forest_prep};
use crate::examples::forest::{
    TrainOptions, forest_predict, forest_train, register_forest_functions,
};

fn required<'a, T>(value: &'a Option<T>, option: &str, example: &str) -> anyhow::Result<&'a T> {
    value
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{example} needs {option}"))
}

fn parse<T: std::str::FromStr<Err = String>>(text: &str, option: &str) -> anyhow::Result<T> {
    text.parse::<T>()
        .map_err(|message| anyhow::anyhow!("invalid setting {option}: {message}"))
}

fn input(args: &RunArgs, example: &str) -> anyhow::Result<PathBuf> {
    let input = required(&args.input, "--input FILE_OR_DIR", example)?;
    if !input.exists() {
        anyhow::bail!(
            "invalid setting --input: {} does not exist",
            input.display()
        );
    }
    Ok(input.clone())
}

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

/// `ember run forest-prep`.
pub(super) async fn prep(args: &RunArgs) -> anyhow::Result<()> {
    let mut options = PrepOptions::new(
        input(args, "forest-prep")?,
        required(&args.label, "--label COLUMN", "forest-prep")?,
    );
    options.out = args.out.clone();
    options.seed = args.seed;
    options.test_fraction = args.test_fraction;
    options.trees = args.trees.unwrap_or(20);
    options.buckets = args.max_bins;
    options.handle_invalid = parse(&args.handle_invalid, "--handle-invalid")?;
    options.impute = parse(&args.impute, "--impute")?;
    register_forest_functions();
    let (session, bar) = new_session(&args.cluster).await?;
    let started = Instant::now();
    let outcome = forest_prep(&session, &options).await;
    finish_progress(bar.as_deref());
    let outcome = outcome?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "fitted {} transformers on {} training rows ({} held out for testing):",
        outcome.pipeline.steps.len(),
        outcome.train_rows,
        outcome.test_rows
    );
    for step in &outcome.pipeline.steps {
        println!("  {}", describe(step));
    }
    let features: std::collections::BTreeSet<&str> = outcome
        .bin_stats
        .iter()
        .map(|s| s.feature.as_str())
        .collect();
    println!(
        "bin statistics of '{}': {} bins over {} features",
        outcome.stats_label,
        outcome.bin_stats.len(),
        features.len()
    );
    if let Some(out) = &options.out {
        println!(
            "wrote train/, test/, bin_stats/ and pipeline.json to {}",
            out.display()
        );
    }
    eprintln!(
        "forest-prep over {} on {} executors: {elapsed:.2} s",
        options.input.display(),
        session.config().executors
    );
    report_bad_rows(&session);
    Ok(())
}

fn describe(step: &crate::examples::forest::transformers::Transformer) -> String {
    use crate::examples::forest::transformers::Transformer;
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

/// `ember run forest-train`.
pub(super) async fn train(args: &RunArgs) -> anyhow::Result<()> {
    let mut options = TrainOptions::new(
        input(args, "forest-train")?,
        required(&args.label, "--label COLUMN", "forest-train")?,
    );
    options.trees = args.trees.unwrap_or(20);
    options.max_depth = args.max_depth;
    options.max_bins = args.max_bins;
    options.seed = args.seed;
    options.test_fraction = args.test_fraction;
    options.feature_subset = args.feature_subset.clone();
    let (session, bar) = new_session(&args.cluster).await?;
    let started = Instant::now();
    let outcome = forest_train(&session, &options).await;
    finish_progress(bar.as_deref());
    let outcome = outcome?;
    let elapsed = started.elapsed().as_secs_f64();
    let model = &outcome.model;
    let nodes: usize = model.trees.iter().map(|t| t.nodes.len()).sum();
    let depth = model.trees.iter().map(|t| t.depth()).max().unwrap_or(0);
    let [fit, grow, evaluate] = outcome.seconds;
    println!(
        "trained {} trees ({nodes} nodes, depth {depth}) on {} rows of {} features in {} \
         passes",
        model.trees.len(),
        outcome.train_rows,
        model.features.len(),
        outcome.report.passes
    );
    println!("times: features {fit:.2} s, trees {grow:.2} s, evaluation {evaluate:.2} s");
    match &outcome.evaluation {
        Some(evaluation) => println!("{}", evaluation_line("test", evaluation)),
        None => println!(
            "no test rows to evaluate on (--test-fraction {})",
            options.test_fraction
        ),
    }
    if let Some(path) = &args.model {
        model.save(path)?;
        println!("saved the model to {}", path.display());
    }
    eprintln!(
        "forest-train over {} on {} executors: {elapsed:.2} s",
        options.input.display(),
        session.config().executors
    );
    report_bad_rows(&session);
    Ok(())
}

/// `ember run forest-predict`.
pub(super) async fn predict(args: &RunArgs) -> anyhow::Result<()> {
    let model = required(&args.model, "--model FILE", "forest-predict")?;
    let input = input(args, "forest-predict")?;
    let (session, bar) = new_session(&args.cluster).await?;
    let outcome = forest_predict(&session, model, &input, args.out.as_deref()).await;
    finish_progress(bar.as_deref());
    let outcome = outcome?;
    print_result(&outcome.preview, args.format)?;
    match &args.out {
        Some(out) => println!(
            "wrote {} rows with predictions to {}",
            outcome.rows,
            out.display()
        ),
        None => println!("predicted {} rows", outcome.rows),
    }
    if let Some(evaluation) = &outcome.evaluation {
        println!("{}", evaluation_line("labelled", evaluation));
    }
    report_bad_rows(&session);
    Ok(())
}
