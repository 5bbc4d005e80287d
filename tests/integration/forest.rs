//! Random forests on diamonds: feature preparation (transformers through JSON, quantile
//! edges against a sort, bin statistics against DataFusion), training (accuracy,
//! determinism, a reloaded model's predictions), classification, and bad input.

use std::path::{Path, PathBuf};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use ember::{EmberConfig, Session};
use ember_examples::forest::fit::TRANSFORM_FN;
use ember_examples::forest::model::{ForestModel, evaluate, predict};
use ember_examples::forest::prep::{PrepOptions, forest_prep, labelled_input};
use ember_examples::forest::transformers::{FeaturePipeline, HandleInvalid, Transformer};
use ember_examples::forest::{TrainOptions, forest_train, register_forest_functions};

fn diamonds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/diamonds.csv")
}

fn session() -> Session {
    let session = Session::new(EmberConfig {
        executors: 2,
        ..EmberConfig::default()
    })
    .expect("the cluster starts");
    register_forest_functions(session.functions());
    session
}

fn column_values(batches: &[RecordBatch], name: &str) -> Vec<f64> {
    let mut values = Vec::new();
    for batch in batches {
        let column = arrow::compute::cast(
            batch.column_by_name(name).expect("the column"),
            &arrow::datatypes::DataType::Float64,
        )
        .expect("numeric");
        values.extend(column.as_primitive::<Float64Type>().iter().flatten());
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forest_prep_on_diamonds_fits_reloadable_transformers_and_exact_enough_edges() {
    let session = session();
    let out = tempfile::tempdir().expect("tempdir");
    let out_dir = out.path().join("prep");
    let mut options = PrepOptions::new(diamonds(), "price");
    options.out = Some(out_dir.clone());
    options.trees = 5;
    let outcome = forest_prep(&session, &options)
        .await
        .expect("forest-prep runs");
    assert_eq!(outcome.train_rows + outcome.test_rows, 53_940);
    let test_share = outcome.test_rows as f64 / 53_940.0;
    assert!((0.19..0.21).contains(&test_share), "{test_share}");
    for name in ["train", "test", "bin_stats", "pipeline.json", "_SUCCESS"] {
        assert!(out_dir.join(name).exists(), "{name} written");
    }

    // Indexers in frequency order (Ideal is the most common cut), a one-hot vector per
    // string column, and 3 + 6×1 columns assembled into 3 one-hot vectors + 6 numbers.
    let steps = &outcome.pipeline.steps;
    let Transformer::StringIndexer { labels, .. } = &steps[0] else {
        panic!("the first step indexes cut: {:?}", steps[0]);
    };
    assert_eq!(labels[0], "Ideal");
    assert_eq!(labels.len(), 5);
    let Some(Transformer::VectorAssembler { inputs, .. }) = steps.last() else {
        panic!("the pipeline ends in an assembler");
    };
    assert_eq!(inputs.len(), 9);

    // The saved pipeline reloads equal and gives identical columns on the cluster.
    let saved = std::fs::read_to_string(out_dir.join("pipeline.json")).expect("saved");
    let reloaded = FeaturePipeline::from_json(&saved).expect("reloads");
    assert_eq!(reloaded, outcome.pipeline);
    let raw = labelled_input(&session, &diamonds(), "price")
        .await
        .expect("input");
    let transform = |pipeline: &FeaturePipeline| {
        raw.map_partitions(TRANSFORM_FN, &pipeline.to_json().expect("json"))
            .expect("planned")
    };
    let first = transform(&outcome.pipeline).collect().await.expect("runs");
    let second = transform(&reloaded).collect().await.expect("runs");
    assert_eq!(first.batches, second.batches);
    let features = first.batches[0]
        .column_by_name("features")
        .expect("features")
        .as_fixed_size_list()
        .value_length();
    // One-hot widths (labels plus the extra index of `keep`) plus the scaled numbers.
    assert_eq!(features, (5 + 1) + (7 + 1) + (8 + 1) + 6);

    // Quantile sketches against a sort of the training rows: every quantile's value has a
    // rank within 0.001 of it.
    let ctx = SessionContext::new();
    let train = ctx
        .read_parquet(
            out_dir.join("train").to_string_lossy().as_ref(),
            ParquetReadOptions::default(),
        )
        .await
        .expect("train rows")
        .collect()
        .await
        .expect("read");
    for (i, name) in ["carat", "depth", "table", "x", "y", "z"]
        .iter()
        .enumerate()
    {
        let mut sorted = column_values(&train, name);
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let sketch = &outcome.profile.numeric[i].sketch;
        assert_eq!(sketch.count() as usize, sorted.len(), "{name}");
        for k in 0..=200 {
            let q = k as f64 / 200.0;
            let value = sketch.quantile(q).expect("a value");
            let below = sorted.partition_point(|v| *v < value) as f64 / n;
            let at_or_below = sorted.partition_point(|v| *v <= value) as f64 / n;
            assert!(
                below <= q + 0.001 && at_or_below >= q - 0.001,
                "{name} q {q}: {value} has rank {below}..{at_or_below}"
            );
        }
    }

    // Bin statistics: each feature's bins hold every training row and price once.
    let prices = column_values(&train, "price");
    let total: f64 = prices.iter().sum();
    let squares: f64 = prices.iter().map(|p| p * p).sum();
    let totals = ember_examples::forest::prep::totals_per_feature(&outcome.bin_stats);
    assert_eq!(totals.len(), 9);
    for (feature, [count, sum, sum_squares]) in &totals {
        assert_eq!(*count, prices.len() as f64, "{feature}");
        assert!(
            (sum - total).abs() <= 1e-9 * total,
            "{feature}: {sum} vs {total}"
        );
        assert!((sum_squares - squares).abs() <= 1e-9 * squares, "{feature}");
    }
    // A carat bucket's rows lie between its edges.
    let carat = column_values(&train, "carat");
    for stat in outcome
        .bin_stats
        .iter()
        .filter(|s| s.feature == "carat_bucket")
    {
        let inside = carat
            .iter()
            .filter(|c| stat.low.is_none_or(|l| **c >= l) && stat.high.is_none_or(|h| **c < h))
            .count();
        assert_eq!(inside as f64, stat.count, "bin {}", stat.bin);
    }

    // A second run into the same folder is refused.
    let err = forest_prep(&session, &options)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("is not empty"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forest_on_diamonds_predicts_prices_and_reloads_with_identical_predictions() {
    let session = session();
    let mut options = TrainOptions::new(diamonds(), "price");
    options.trees = 8;
    options.max_depth = 8;
    let outcome = forest_train(&session, &options).await.expect("trains");
    let evaluation = outcome.evaluation.clone().expect("test rows");
    let r2 = evaluation.r2.expect("regression");
    assert!(r2 > 0.96, "R² {r2}");
    assert!(evaluation.rmse.expect("rmse") < 800.0, "{evaluation:?}");
    assert!(
        (10_000..12_000).contains(&evaluation.rows),
        "{evaluation:?}"
    );
    assert_eq!(outcome.train_rows + evaluation.rows, 53_940);
    assert_eq!(outcome.model.trees.len(), 8);
    assert!(outcome.model.trees.iter().all(|t| t.depth() <= 8));

    // The same seed grows the same forest.
    let again = forest_train(&session, &options).await.expect("trains");
    assert!(
        again.model == outcome.model,
        "{}",
        first_difference(
            &format!("{:?}", again.model),
            &format!("{:?}", outcome.model)
        )
    );

    // Saved and reloaded, it predicts exactly the same.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.json");
    outcome.model.save(&path).expect("saves");
    let reloaded = ForestModel::load(&path).expect("loads");
    assert_eq!(reloaded, outcome.model);
    let rows = labelled_input(&session, &diamonds(), "price")
        .await
        .expect("input");
    let first = predict(&rows, &outcome.model, "test.first")
        .expect("planned")
        .collect()
        .await
        .expect("predicts");
    let second = predict(&rows, &reloaded, "test.second")
        .expect("planned")
        .collect()
        .await
        .expect("predicts");
    assert_eq!(column_values(&first.batches, "prediction").len(), 53_940);
    assert_eq!(
        column_values(&first.batches, "prediction"),
        column_values(&second.batches, "prediction")
    );
    // On every row (training rows included) the fit is close.
    let everything = evaluate(
        &predict(&rows, &reloaded, "test.third").expect("planned"),
        &reloaded,
    )
    .await
    .expect("evaluates");
    assert!(everything.r2.expect("r2") > r2 - 0.01, "{everything:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forest_classifies_the_cut_of_diamonds() {
    let session = session();
    let mut options = TrainOptions::new(diamonds(), "cut");
    options.trees = 6;
    options.max_depth = 7;
    let outcome = forest_train(&session, &options).await.expect("trains");
    let accuracy = outcome
        .evaluation
        .expect("test rows")
        .accuracy
        .expect("classification");
    // Ideal, the most common cut, is 40 % of the stones.
    assert!(accuracy > 0.6, "accuracy {accuracy}");
    assert_eq!(outcome.model.classes.len(), 5);
    assert_eq!(outcome.model.classes[0], "Ideal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_forest_input_is_named() {
    let session = session();
    let err = forest_train(&session, &TrainOptions::new(diamonds(), "weight"))
        .await
        .err()
        .expect("no such label");
    let text = err.to_string();
    assert!(
        text.contains("--label") && text.contains("'weight'"),
        "{text}"
    );
    assert!(
        text.contains("carat"),
        "names the columns there are: {text}"
    );

    let mut few_bins = TrainOptions::new(diamonds(), "price");
    few_bins.max_bins = 6;
    let err = forest_train(&session, &few_bins)
        .await
        .err()
        .expect("too few bins");
    assert!(
        err.to_string().contains("column 'color' has 7 labels"),
        "{err}"
    );

    let mut zero = TrainOptions::new(diamonds(), "price");
    zero.trees = 0;
    let err = forest_train(&session, &zero).await.err().expect("no trees");
    assert!(err.to_string().contains("--trees"), "{err}");
    let mut subset = TrainOptions::new(diamonds(), "price");
    subset.feature_subset = "most".into();
    let err = forest_train(&session, &subset)
        .await
        .err()
        .expect("bad subset");
    assert!(err.to_string().contains("--feature-subset"), "{err}");

    // An indexer set to fail on unseen labels names the column and the label.
    let indexer = FeaturePipeline::new(vec![Transformer::string_indexer(
        "cut",
        "cut_index",
        vec!["Ideal".into(), "Premium".into()],
        HandleInvalid::Error,
    )]);
    let rows = labelled_input(&session, &diamonds(), "price")
        .await
        .expect("input");
    let err = rows
        .map_partitions(TRANSFORM_FN, &indexer.to_json().expect("json"))
        .expect("planned")
        .collect()
        .await
        .expect_err("unseen labels fail");
    let text = err.to_string();
    assert!(
        text.contains("'cut'") && text.contains("unseen label"),
        "{text}"
    );
    // With skip, those rows are dropped; with keep, they get the extra index.
    for (handle, expected) in [
        (HandleInvalid::Skip, 21_551 + 13_791),
        (HandleInvalid::Keep, 53_940),
    ] {
        let pipeline = FeaturePipeline::new(vec![Transformer::string_indexer(
            "cut",
            "cut_index",
            vec!["Ideal".into(), "Premium".into()],
            handle,
        )]);
        let result = rows
            .map_partitions(TRANSFORM_FN, &pipeline.to_json().expect("json"))
            .expect("planned")
            .collect()
            .await
            .expect("runs");
        let indices = column_values(&result.batches, "cut_index");
        assert_eq!(indices.len(), expected, "{handle:?}");
        assert!(indices.iter().all(|i| *i <= 2.0));
    }
}

/// The first difference between two debug texts, for failures.
fn first_difference(a: &str, b: &str) -> String {
    let at = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    format!(
        "…{}… vs …{}…",
        a.chars()
            .skip(at.saturating_sub(80))
            .take(160)
            .collect::<String>(),
        b.chars()
            .skip(at.saturating_sub(80))
            .take(160)
            .collect::<String>()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_names_keep_their_case_and_dots_and_made_names_are_refused() {
    let session = session();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from("Sepal.Length,Kind,Survived\n");
    for i in 0..400 {
        let length = f64::from(i % 37) / 4.0;
        let kind = ["a", "b", "c"][i as usize % 3];
        let bonus = if kind == "a" { 3.0 } else { 0.0 };
        text.push_str(&format!("{length},{kind},{}\n", 2.0 * length + bonus));
    }
    let data = dir.path().join("flowers.csv");
    std::fs::write(&data, text).expect("fixture");
    let mut options = TrainOptions::new(&data, "Survived");
    options.trees = 3;
    options.max_depth = 4;
    let outcome = forest_train(&session, &options).await.expect("trains");
    let r2 = outcome.evaluation.and_then(|e| e.r2).expect("R²");
    assert!(r2 > 0.8, "R² {r2}");
    let names: Vec<&str> = outcome
        .model
        .features
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, ["Sepal.Length", "Kind"]);

    let clash = dir.path().join("clash.csv");
    std::fs::write(&clash, "x,test,y\n1,2,3\n4,5,6\n").expect("fixture");
    let err = forest_train(&session, &TrainOptions::new(&clash, "y"))
        .await
        .err()
        .expect("a column the pipeline makes");
    assert!(err.to_string().contains("column 'test'"), "{err}");
}
