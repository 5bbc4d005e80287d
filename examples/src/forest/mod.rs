//! Random forests on the cluster, in the style of Spark MLlib: feature preparation
//! (`ember run forest-prep`), training (`ember run forest-train`) and prediction
//! (`ember run forest-predict`).
//!
//! | module | holds |
//! |---|---|
//! | [`sketch`] | the mergeable quantile sketch |
//! | [`transformers`] | fitted transformers and the JSON pipeline |
//! | [`fit`] | the profile pass, fitting, the seeded split and bootstrap weights |
//! | [`prep`] | the forest-prep pipeline and per-bin label statistics |
//! | [`train`] | growing trees level by level from statistics reduced across partitions |
//! | [`model`] | the trained model, its JSON, prediction and evaluation |
//! | [`diagnose`] | how a model errs on held-out rows |
//! | [`report`] | forest-train's HTML report |

pub mod diagnose;
pub mod fit;
pub mod model;
pub mod prep;
pub mod report;
pub mod sketch;
pub mod train;
pub mod transformers;

use std::path::PathBuf;
use std::time::Instant;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::ident;
use datafusion::prelude::{cast, col};

use self::diagnose::{Diagnostics, diagnose};
use self::fit::{
    ProfileSpec, SPLIT_FN, SplitSpec, TRANSFORM_FN, feature_columns, profile, quantile_edges,
};
use self::model::{
    Evaluation, FeatureInfo, ForestModel, TREE_FEATURES, TrainParams, evaluate, predict,
};
use self::prep::labelled_input;
use self::train::{FeatureSubset, GrowOptions, GrowReport, Task, grow_forest};
use self::transformers::{FeaturePipeline, HandleInvalid, ImputeStrategy, Transformer};
use ember::FunctionRegistry;
use ember::Session;
use ember::{EmberError, Result};

pub use self::model::PREDICT_FN;

/// The most classes a classifier takes.
pub const MAX_CLASSES: usize = 1000;

/// Registers every forest function in `functions` (a session's, or an executor binary's).
pub fn register_forest_functions(functions: &FunctionRegistry) {
    fit::register_fit_functions(functions);
    prep::register_prep_functions(functions);
    train::register_train_functions(functions);
    model::register_model_functions(functions);
}

/// What forest-train does.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// A CSV or Parquet file, or a folder of them.
    pub input: PathBuf,
    /// The column to predict: numbers for regression, strings for classification.
    pub label: String,
    /// Trees.
    pub trees: usize,
    /// Deepest level (the root is 0).
    pub max_depth: usize,
    /// Quantile buckets per numeric feature, and most labels per string feature.
    pub max_bins: usize,
    /// Seed of the split, the bootstrap and the feature sampling.
    pub seed: u64,
    /// Share of rows held out for the evaluation.
    pub test_fraction: f64,
    /// Features per node.
    pub feature_subset: String,
    /// Least training weight on each side of a split.
    pub min_instances: f64,
}

impl TrainOptions {
    /// Options with defaults for `input` and `label`.
    pub fn new(input: impl Into<PathBuf>, label: &str) -> Self {
        Self {
            input: input.into(),
            label: label.into(),
            trees: 20,
            max_depth: 5,
            max_bins: 32,
            seed: 42,
            test_fraction: 0.2,
            feature_subset: "auto".into(),
            min_instances: 1.0,
        }
    }

    fn check(&self) -> Result<FeatureSubset> {
        let bad = |key: &str, message: String| {
            Err(EmberError::Config {
                key: key.into(),
                message,
            })
        };
        if !(1..=10_000).contains(&self.trees) {
            return bad(
                "--trees",
                format!("expected 1 to 10000, not {}", self.trees),
            );
        }
        if self.max_depth > 30 {
            return bad(
                "--max-depth",
                format!("expected 0 to 30, not {}", self.max_depth),
            );
        }
        if !(2..=65_536).contains(&self.max_bins) {
            return bad(
                "--max-bins",
                format!("expected 2 to 65536, not {}", self.max_bins),
            );
        }
        if !(0.0..1.0).contains(&self.test_fraction) {
            return bad(
                "--test-fraction",
                format!("expected 0 <= F < 1, not {}", self.test_fraction),
            );
        }
        if self.min_instances.is_nan() || self.min_instances < 1.0 {
            return bad(
                "--min-instances",
                format!("expected at least 1, not {}", self.min_instances),
            );
        }
        self.feature_subset
            .parse::<FeatureSubset>()
            .map_err(|message| EmberError::Config {
                key: "--feature-subset".into(),
                message,
            })
    }
}

/// What forest-train made.
pub struct TrainOutcome {
    /// The model.
    pub model: ForestModel,
    /// Its evaluation on the test rows (none without test rows).
    pub evaluation: Option<Evaluation>,
    /// How it errs on the test rows (none without test rows).
    pub diagnostics: Option<Diagnostics>,
    /// Training rows.
    pub train_rows: u64,
    /// Passes over the training rows.
    pub report: GrowReport,
    /// Seconds spent fitting the features, growing the trees and evaluating.
    pub seconds: [f64; 3],
}

fn json<T: serde::Serialize>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| EmberError::Internal {
        message: format!("{what} to JSON: {e}"),
    })
}

/// Trains a forest on the training share of `options.input` and evaluates it on the rest.
pub async fn forest_train(session: &Session, options: &TrainOptions) -> Result<TrainOutcome> {
    let subset = options.check()?;
    register_forest_functions(session.functions());
    let started = Instant::now();
    let data = labelled_input(session, &options.input, &options.label).await?;
    let schema = data.arrow_schema();
    let (categorical, numeric) = feature_columns(&schema, &options.label);
    if categorical.is_empty() && numeric.is_empty() {
        return Err(EmberError::Config {
            key: "--input".into(),
            message: format!(
                "{} has no feature columns besides the label",
                options.input.display()
            ),
        });
    }
    let classification = !schema
        .field_with_name(&options.label)
        .map(|f| f.data_type().is_numeric())
        .unwrap_or(false);
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let split = data.map_partitions(
        SPLIT_FN,
        &json(
            "a split",
            &SplitSpec {
                seed: options.seed,
                test_fraction: options.test_fraction,
                columns,
                trees: 0,
            },
        )?,
    )?;
    let train = split.filter(col("test").is_false())?;
    let test = split.filter(col("test"))?;

    // Fit: labels of the string columns, quantile edges of the numeric ones.
    let mut profiled = categorical.clone();
    if classification {
        profiled.push(options.label.clone());
    }
    let spec = ProfileSpec {
        categorical: profiled,
        numeric: numeric.clone(),
        relative_error: 0.001,
    };
    let profile = profile(&train, &spec).await?;
    let by_frequency = |counts: &std::collections::HashMap<String, u64>| {
        let mut labels: Vec<(&String, &u64)> = counts.iter().collect();
        labels.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        labels
            .into_iter()
            .map(|(l, _)| l.clone())
            .collect::<Vec<_>>()
    };
    let mut features = Vec::new();
    let mut model_steps = Vec::new();
    let mut bin_steps = Vec::new();
    let mut tree_inputs = Vec::new();
    let mut bin_inputs = Vec::new();
    for field in schema.fields() {
        let name = field.name();
        if let Some(i) = categorical.iter().position(|c| c == name) {
            let labels = by_frequency(&profile.categorical[i].counts);
            if labels.len() + 1 > options.max_bins {
                return Err(EmberError::Config {
                    key: "--max-bins".into(),
                    message: format!(
                        "column '{name}' has {} labels; a string feature needs --max-bins of \
                         at least its labels plus one ({})",
                        labels.len(),
                        labels.len() + 1
                    ),
                });
            }
            let index = format!("{name}_index");
            model_steps.push(Transformer::string_indexer(
                name,
                &index,
                labels.clone(),
                HandleInvalid::Keep,
            ));
            tree_inputs.push(index.clone());
            bin_inputs.push(index);
            features.push(FeatureInfo {
                name: name.clone(),
                categorical: true,
                labels,
                edges: Vec::new(),
            });
        } else if let Some(i) = numeric.iter().position(|c| c == name) {
            let numbers = &profile.numeric[i];
            let imputed = format!("{name}_imputed");
            model_steps.push(Transformer::Imputer {
                input: name.clone(),
                output: imputed.clone(),
                strategy: ImputeStrategy::Mean,
                value: numbers.moments.mean,
            });
            let edges = quantile_edges(&numbers.sketch, options.max_bins);
            let bucket = format!("{name}_bucket");
            bin_steps.push(Transformer::QuantileDiscretizer {
                input: imputed.clone(),
                output: bucket.clone(),
                edges: edges.clone(),
            });
            tree_inputs.push(imputed);
            bin_inputs.push(bucket);
            features.push(FeatureInfo {
                name: name.clone(),
                categorical: false,
                labels: Vec::new(),
                edges,
            });
        }
    }
    model_steps.push(Transformer::VectorAssembler {
        inputs: tree_inputs,
        output: TREE_FEATURES.into(),
    });
    let model_pipeline = FeaturePipeline::new(model_steps.clone());
    let mut training_steps = model_steps;
    training_steps.extend(bin_steps);
    training_steps.push(Transformer::VectorAssembler {
        inputs: bin_inputs,
        output: "bins".into(),
    });
    let (task, classes, label_column) = if classification {
        let classes = by_frequency(&profile.categorical[categorical.len()].counts);
        if classes.len() > MAX_CLASSES {
            return Err(EmberError::Config {
                key: "--label".into(),
                message: format!(
                    "column '{}' is text with {} distinct values, more than the {MAX_CLASSES} \
                     classes a classifier takes (is it a number with a stray text value?)",
                    options.label,
                    classes.len()
                ),
            });
        }
        let index = format!("{}_index", options.label);
        training_steps.push(Transformer::string_indexer(
            &options.label,
            &index,
            classes.clone(),
            HandleInvalid::Skip,
        ));
        (
            Task::Classification {
                classes: classes.len(),
            },
            classes,
            index,
        )
    } else {
        (Task::Regression, Vec::new(), options.label.clone())
    };
    let training = FeaturePipeline::new(training_steps);
    let binned = train
        .map_partitions(TRANSFORM_FN, &training.to_json().map_err(EmberError::from)?)?
        .select(vec![
            col("bins"),
            cast(ident(label_column.as_str()), DataType::Float64).alias("label"),
            col("row_hash"),
        ])?
        .cache();
    let fitted = started.elapsed().as_secs_f64();

    // Grow.
    let started = Instant::now();
    let bins: Vec<(usize, bool)> = features.iter().map(|f| (f.bins(), f.categorical)).collect();
    let grow = GrowOptions {
        trees: options.trees,
        max_depth: options.max_depth,
        seed: options.seed,
        feature_subset: subset,
        min_instances: options.min_instances,
        min_gain: 0.0,
        bootstrap: options.trees > 1,
    };
    let train_rows = binned.count().await?;
    if train_rows == 0 {
        binned.unpersist().await;
        return Err(EmberError::Config {
            key: "--input".into(),
            message: format!(
                "{} has no training rows with a '{}' (of {} rows, --test-fraction {} are \
                 held out)",
                options.input.display(),
                options.label,
                profile.rows,
                options.test_fraction
            ),
        });
    }
    let grown = grow_forest(session, &binned, &bins, task, &grow).await;
    binned.unpersist().await;
    let (grown, report) = grown?;
    let model = ForestModel::from_grown(
        &grown,
        task,
        &options.label,
        classes,
        features,
        model_pipeline,
        TrainParams {
            trees: options.trees,
            max_depth: options.max_depth,
            max_bins: options.max_bins,
            feature_subset: options.feature_subset.clone(),
            seed: options.seed,
            test_fraction: options.test_fraction,
        },
    );
    let grown_seconds = started.elapsed().as_secs_f64();

    // Evaluate on the held-out rows.
    let started = Instant::now();
    let (evaluation, diagnostics) = if options.test_fraction > 0.0 {
        let predicted = predict(&test, &model, "forest.model")?;
        let evaluation = evaluate(&predicted, &model).await?;
        if evaluation.rows > 0 {
            let diagnostics = diagnose(&predicted, &model, evaluation.rows).await?;
            (Some(evaluation), Some(diagnostics))
        } else {
            (None, None)
        }
    } else {
        (None, None)
    };
    Ok(TrainOutcome {
        model,
        evaluation,
        diagnostics,
        train_rows,
        report,
        seconds: [fitted, grown_seconds, started.elapsed().as_secs_f64()],
    })
}

/// What forest-predict made.
pub struct PredictOutcome {
    /// Rows predicted (and written, with an output folder).
    pub rows: u64,
    /// The evaluation, when the input has the label column.
    pub evaluation: Option<Evaluation>,
    /// The first rows with their predictions.
    pub preview: ember::QueryResult,
}

/// Predicts the rows of `input` with the model saved at `model`; with `out`, writes them
/// with their predictions as Parquet there (a folder that must be empty).
pub async fn forest_predict(
    session: &Session,
    model: &std::path::Path,
    input: &std::path::Path,
    out: Option<&std::path::Path>,
) -> Result<PredictOutcome> {
    register_forest_functions(session.functions());
    let model = ForestModel::load(model)?;
    if let Some(out) = out {
        ember::pipelines::check_empty_output(session, &out.to_string_lossy()).await?;
    }
    let data = prep::read_input(session, input).await?;
    let has_label = data
        .schema()
        .field_with_unqualified_name(&model.label)
        .is_ok();
    let predicted = predict(&data, &model, "forest.model")?;
    let rows = match out {
        Some(out) => {
            let written = predicted.write_parquet(&out.to_string_lossy()).await?;
            written
                .first_value::<datafusion::arrow::datatypes::UInt64Type>()
                .unwrap_or(0)
        }
        None => predicted.count().await?,
    };
    let evaluation = if has_label {
        let labelled = predicted.filter(ident(model.label.as_str()).is_not_null())?;
        Some(evaluate(&labelled, &model).await?)
    } else {
        None
    };
    let preview = predicted.limit(0, Some(10))?.collect().await?;
    Ok(PredictOutcome {
        rows,
        evaluation,
        preview,
    })
}
