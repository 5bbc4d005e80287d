//! `ember run forest-prep --input FILE_OR_DIR --label COLUMN [--out DIR]`: distributed
//! feature preparation in the style of Spark MLlib.
//!
//! ```text
//! input ─▶ forest.split (row hash, test flag, Poisson(1) weights per tree) ─▶ cache
//!   train rows ─▶ forest.profile per partition ─▶ merged in the driver ─▶ fitted pipeline
//!   all rows ─▶ forest.transform ─▶ train/ and test/ (Parquet)
//!   train rows ─▶ forest.bin_stats per partition ─▶ shuffle by (feature, bin) ─▶ sum ─▶ bin_stats/
//! ```
//!
//! The pipeline (string indexers, one-hot encoders, imputers, standard scalers, quantile
//! discretizers, a vector assembler) is fitted on the training rows only and saved as
//! `pipeline.json`; reloaded, it gives the same columns on new data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef, UInt32Type};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::functions::expr_fn::{abs, isnan};
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::logical_expr::ident;
use datafusion::prelude::{cast, col, lit};
use ember::planner::{FunctionOutput, FunctionRegistry, PartitionFn, UserFunction};
use serde::{Deserialize, Serialize};

use super::fit::{
    FitOptions, Profile, ProfileSpec, SPLIT_FN, SplitSpec, TRANSFORM_FN, feature_columns,
    fit_pipeline, profile,
};
use super::transformers::{
    FeaturePipeline, HandleInvalid, ImputeStrategy, Transformer, float_column,
};
use ember::Dataset;
use ember::Session;
use ember::TableSpec;
use ember::pipelines::check_empty_output;
use ember::{EmberError, Result};

/// The function that sums label statistics per feature bin in each partition.
pub const BIN_STATS_FN: &str = "forest.bin_stats";

/// What forest-prep does.
#[derive(Debug, Clone)]
pub struct PrepOptions {
    /// A CSV or Parquet file, or a folder of them.
    pub input: PathBuf,
    /// The column to predict.
    pub label: String,
    /// Where the outputs go (a folder that must be empty).
    pub out: Option<PathBuf>,
    /// Seed of the split and the bootstrap weights.
    pub seed: u64,
    /// Share of rows held out for testing.
    pub test_fraction: f64,
    /// Bootstrap weights drawn per training row (one per tree).
    pub trees: usize,
    /// Buckets of the quantile discretizers.
    pub buckets: usize,
    /// Rank error of the quantile sketches.
    pub relative_error: f64,
    /// Unseen labels and nulls in the indexers.
    pub handle_invalid: HandleInvalid,
    /// How missing numbers are filled.
    pub impute: ImputeStrategy,
}

impl PrepOptions {
    /// Options with MLlib-like defaults for `input` and `label`.
    pub fn new(input: impl Into<PathBuf>, label: &str) -> Self {
        Self {
            input: input.into(),
            label: label.into(),
            out: None,
            seed: 42,
            test_fraction: 0.2,
            trees: 20,
            buckets: 32,
            relative_error: 0.001,
            handle_invalid: HandleInvalid::Keep,
            impute: ImputeStrategy::Mean,
        }
    }

    /// Checks the numbers a user can get wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, message: String| {
            Err(EmberError::Config {
                key: key.into(),
                message,
            })
        };
        if !(0.0..1.0).contains(&self.test_fraction) {
            return bad(
                "--test-fraction",
                format!("expected 0 <= F < 1, not {}", self.test_fraction),
            );
        }
        if !(2..=65_536).contains(&self.buckets) {
            return bad(
                "--max-bins",
                format!("expected 2 to 65536, not {}", self.buckets),
            );
        }
        if !(self.relative_error > 0.0 && self.relative_error < 1.0) {
            return bad(
                "--relative-error",
                format!("expected 0 < E < 1, not {}", self.relative_error),
            );
        }
        if self.trees > 4096 {
            return bad(
                "--trees",
                format!("expected at most 4096, not {}", self.trees),
            );
        }
        Ok(())
    }
}

/// Label statistics of one bin of one feature over the training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinStat {
    /// The feature (a discretized number or an indexed string).
    pub feature: String,
    /// The bin (bucket or label index).
    pub bin: u32,
    /// The lower edge of a numeric bin (none for the first, and for labels).
    pub low: Option<f64>,
    /// The upper edge of a numeric bin (none for the last, and for labels): the split
    /// candidate between this bin and the next.
    pub high: Option<f64>,
    /// Training rows in the bin.
    pub count: f64,
    /// Sum of their labels.
    pub sum: f64,
    /// Sum of their squared labels.
    pub sum_squares: f64,
}

/// What forest-prep made.
pub struct PrepOutcome {
    /// The fitted pipeline.
    pub pipeline: FeaturePipeline,
    /// The merged profile of the training rows.
    pub profile: Profile,
    /// Training and test rows.
    pub train_rows: u64,
    /// Test rows.
    pub test_rows: u64,
    /// Label statistics per feature and bin.
    pub bin_stats: Vec<BinStat>,
    /// The column whose statistics those are (the label, or its index for strings).
    pub stats_label: String,
}

/// The files at `path` (CSV or Parquet, by extension) as a dataset; CSV record by record
/// under the session's `ember.input.bad_rows` policy when it has one.
pub async fn read_input<'s>(session: &'s Session, path: &Path) -> Result<Dataset<'s>> {
    let text = path.to_str().ok_or_else(|| EmberError::InvalidArgument {
        operation: "--input",
        message: format!("{} is not a UTF-8 path", path.display()),
    })?;
    let spec = TableSpec::new("input", text, None);
    if let Some(policy) = &session.config().bad_rows
        && spec.resolve_format()? == ember::FileFormat::Csv
    {
        return session.read_csv_checked(text, policy).await;
    }
    let frame = spec.read(session.context()).await?;
    Ok(Dataset::new(session, frame))
}

/// The input with its label checked: rows without a label are dropped.
pub async fn labelled_input<'s>(
    session: &'s Session,
    path: &Path,
    label: &str,
) -> Result<Dataset<'s>> {
    let data = read_input(session, path).await?;
    if data.schema().field_with_unqualified_name(label).is_err() {
        let names: Vec<String> = data
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        return Err(EmberError::Config {
            key: "--label".into(),
            message: format!(
                "{} has no column '{label}' (it has: {})",
                path.display(),
                names.join(", ")
            ),
        });
    }
    check_names(&data.arrow_schema(), label)?;
    let labelled = ident(label).is_not_null();
    let numeric = data
        .arrow_schema()
        .field_with_name(label)
        .is_ok_and(|f| f.data_type().is_numeric());
    if numeric {
        // NaN and infinite labels count as missing, like nulls.
        let y = cast(ident(label), DataType::Float64);
        data.filter(
            labelled
                .and(isnan(y.clone()).is_false())
                .and(abs(y).lt(lit(f64::INFINITY))),
        )
    } else {
        data.filter(labelled)
    }
}

/// Columns the pipelines make; an input column of one of these names would be overwritten.
pub const MADE_COLUMNS: &[&str] = &[
    "test",
    "row_hash",
    "bootstrap",
    "features",
    "tree_features",
    "bins",
    "prediction",
    "predicted_label",
];

/// The suffixes of the columns the transformers make from an input column.
pub const MADE_SUFFIXES: &[&str] = &["_index", "_vec", "_imputed", "_scaled", "_bucket"];

/// Refuses inputs with a column the pipelines would overwrite.
fn check_names(schema: &Schema, label: &str) -> Result<()> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for name in &names {
        let made = MADE_COLUMNS.contains(name)
            || MADE_SUFFIXES.iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| names.contains(&base) || base == label)
            });
        if made {
            return Err(EmberError::Config {
                key: "--input".into(),
                message: format!(
                    "the input has a column '{name}', a name the pipeline makes itself; \
                     rename it"
                ),
            });
        }
    }
    Ok(())
}

fn to_json<T: Serialize>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| EmberError::Internal {
        message: format!("{what} to JSON: {e}"),
    })
}

/// Runs forest-prep.
pub async fn forest_prep(session: &Session, options: &PrepOptions) -> Result<PrepOutcome> {
    options.validate()?;
    if let Some(out) = &options.out {
        check_empty_output(session, &out.to_string_lossy()).await?;
    }
    let data = labelled_input(session, &options.input, &options.label).await?;
    let input_schema = data.arrow_schema();
    let (categorical, numeric) = feature_columns(&input_schema, &options.label);
    let label_is_text = !input_schema
        .field_with_name(&options.label)
        .map(|f| f.data_type().is_numeric())
        .unwrap_or(false);
    let columns: Vec<String> = input_schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let split = data
        .map_partitions(
            SPLIT_FN,
            &to_json(
                "a split",
                &SplitSpec {
                    seed: options.seed,
                    test_fraction: options.test_fraction,
                    columns: columns.clone(),
                    trees: options.trees,
                },
            )?,
        )?
        .cache();
    let train = split.filter(col("test").is_false())?;

    // Fit on the training rows, in one pass.
    let mut profiled = categorical.clone();
    if label_is_text {
        profiled.push(options.label.clone());
    }
    let spec = ProfileSpec {
        categorical: profiled,
        numeric: numeric.clone(),
        relative_error: options.relative_error,
    };
    let profile = profile(&train, &spec).await?;
    let fit = FitOptions {
        categorical: categorical.clone(),
        numeric: numeric.clone(),
        handle_invalid: options.handle_invalid,
        impute: options.impute,
        buckets: options.buckets,
        assemble: true,
    };
    let mut pipeline = fit_pipeline(&profile, &fit);
    let stats_label = if label_is_text {
        let counts = &profile.categorical[categorical.len()];
        let mut labels: Vec<(&String, &u64)> = counts.counts.iter().collect();
        labels.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let index = format!("{}_index", options.label);
        pipeline.steps.push(Transformer::string_indexer(
            &options.label,
            &index,
            labels.into_iter().map(|(l, _)| l.clone()).collect(),
            HandleInvalid::Keep,
        ));
        index
    } else {
        options.label.clone()
    };
    let pipeline_json = pipeline.to_json().map_err(EmberError::from)?;
    let transformed = split.map_partitions(TRANSFORM_FN, &pipeline_json)?;

    // Per-bin label statistics: a partial sum per partition, reduced by (feature, bin).
    let mut binned: Vec<(String, usize, Option<Vec<f64>>)> = Vec::new();
    for step in &pipeline.steps {
        match step {
            Transformer::QuantileDiscretizer { output, edges, .. } => {
                binned.push((output.clone(), edges.len() + 2, Some(edges.clone())))
            }
            Transformer::StringIndexer { output, labels, .. } if *output != stats_label => {
                binned.push((output.clone(), labels.len() + 1, None))
            }
            _ => {}
        }
    }
    let stats_spec = BinStatsSpec {
        columns: binned.iter().map(|(c, _, _)| c.clone()).collect(),
        bins: binned.iter().map(|(_, b, _)| *b).collect(),
        label: stats_label.clone(),
    };
    let sums = transformed
        .filter(col("test").is_false())?
        .map_partitions(BIN_STATS_FN, &to_json("bin statistics", &stats_spec)?)?
        .group_by(vec![col("feature"), col("bin")])
        .agg(vec![
            sum(col("count")).alias("count"),
            sum(col("sum")).alias("sum"),
            sum(col("sum_squares")).alias("sum_squares"),
        ])?
        .sort(vec![
            col("feature").sort(true, false),
            col("bin").sort(true, false),
        ])?
        .collect()
        .await?;
    let mut bin_stats = Vec::new();
    for batch in &sums.batches {
        let feature = batch.column(0).as_primitive::<UInt32Type>();
        let bin = batch.column(1).as_primitive::<UInt32Type>();
        let f64s = |i: usize| batch.column(i).as_primitive::<Float64Type>().clone();
        let (count, total, squares) = (f64s(2), f64s(3), f64s(4));
        for row in 0..batch.num_rows() {
            let (name, _, edges) = &binned[feature.value(row) as usize];
            let b = bin.value(row) as usize;
            let edge = |i: Option<usize>| {
                edges
                    .as_ref()
                    .and_then(|e| i.and_then(|i| e.get(i)).copied())
            };
            bin_stats.push(BinStat {
                feature: name.clone(),
                bin: bin.value(row),
                low: edge(b.checked_sub(1)),
                high: edge(Some(b)),
                count: count.value(row),
                sum: total.value(row),
                sum_squares: squares.value(row),
            });
        }
    }

    let keep = |test: bool| -> Result<Dataset<'_>> {
        let mut selected: Vec<_> = columns.iter().map(|c| ident(c.as_str())).collect();
        selected.push(col("features"));
        for (name, _, _) in &binned {
            selected.push(ident(name.as_str()));
        }
        if label_is_text {
            selected.push(ident(stats_label.as_str()));
        }
        selected.push(col("row_hash"));
        if !test && options.trees > 0 {
            selected.push(col("bootstrap"));
        }
        let rows = if test {
            transformed.filter(col("test"))?
        } else {
            transformed.filter(col("test").is_false())?
        };
        rows.select(selected)
    };
    let (train_rows, test_rows) = match &options.out {
        Some(out) => {
            let write = |name: &str| out.join(name).to_string_lossy().into_owned();
            let train_written = keep(false)?.write_parquet(&write("train")).await?;
            let test_written = keep(true)?.write_parquet(&write("test")).await?;
            let count = |r: &ember::QueryResult| {
                r.first_value::<arrow::datatypes::UInt64Type>().unwrap_or(0)
            };
            write_bin_stats(session, &bin_stats, &write("bin_stats")).await?;
            std::fs::write(out.join("pipeline.json"), &pipeline_json).map_err(|e| {
                EmberError::Io {
                    action: "writing",
                    path: out.join("pipeline.json"),
                    source: e,
                }
            })?;
            std::fs::write(out.join("_SUCCESS"), b"").map_err(|e| EmberError::Io {
                action: "writing",
                path: out.join("_SUCCESS"),
                source: e,
            })?;
            (count(&train_written), count(&test_written))
        }
        None => (keep(false)?.count().await?, keep(true)?.count().await?),
    };
    split.unpersist().await;
    Ok(PrepOutcome {
        pipeline,
        profile,
        train_rows,
        test_rows,
        bin_stats,
        stats_label,
    })
}

async fn write_bin_stats(session: &Session, stats: &[BinStat], path: &str) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("feature", DataType::Utf8, false),
        Field::new("bin", DataType::UInt32, false),
        Field::new("low", DataType::Float64, true),
        Field::new("high", DataType::Float64, true),
        Field::new("count", DataType::Float64, false),
        Field::new("sum", DataType::Float64, false),
        Field::new("sum_squares", DataType::Float64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            stats.iter().map(|s| &s.feature),
        )),
        Arc::new(UInt32Array::from_iter_values(stats.iter().map(|s| s.bin))),
        Arc::new(Float64Array::from_iter(stats.iter().map(|s| s.low))),
        Arc::new(Float64Array::from_iter(stats.iter().map(|s| s.high))),
        Arc::new(Float64Array::from_iter_values(
            stats.iter().map(|s| s.count),
        )),
        Arc::new(Float64Array::from_iter_values(stats.iter().map(|s| s.sum))),
        Arc::new(Float64Array::from_iter_values(
            stats.iter().map(|s| s.sum_squares),
        )),
    ];
    let batch = RecordBatch::try_new(schema, columns).map_err(DataFusionError::from)?;
    session
        .from_batches(vec![batch])?
        .repartition(1)?
        .write_parquet(path)
        .await?;
    Ok(())
}

/// Which columns [`BIN_STATS_FN`] sums over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BinStatsSpec {
    /// The binned columns (bucket or index, as `Float64`).
    pub columns: Vec<String>,
    /// Bins of each.
    pub bins: Vec<usize>,
    /// The label column.
    pub label: String,
}

/// A partition's sums per (feature, bin), written at its end.
struct BinStatsPartition {
    spec: BinStatsSpec,
    offsets: Vec<usize>,
    sums: Vec<[f64; 3]>,
    schema: SchemaRef,
}

impl PartitionFn for BinStatsPartition {
    fn push(&mut self, batch: RecordBatch) -> DfResult<Option<RecordBatch>> {
        let label = float_column(&batch, &self.spec.label)?;
        for (f, name) in self.spec.columns.iter().enumerate() {
            let bins = float_column(&batch, name)?;
            let limit = self.spec.bins[f];
            for row in 0..batch.num_rows() {
                if !label.is_valid(row) || !bins.is_valid(row) {
                    continue;
                }
                let bin = bins.value(row);
                if !(0.0..limit as f64).contains(&bin) {
                    return Err(DataFusionError::Execution(format!(
                        "column '{name}' has bin {bin}, outside 0..{limit}"
                    )));
                }
                let y = label.value(row);
                let cell = &mut self.sums[self.offsets[f] + bin as usize];
                cell[0] += 1.0;
                cell[1] += y;
                cell[2] += y * y;
            }
        }
        Ok(None)
    }

    fn finish(&mut self) -> DfResult<Option<RecordBatch>> {
        let mut feature = Vec::new();
        let mut bin = Vec::new();
        let mut values: [Vec<f64>; 3] = Default::default();
        for (f, offset) in self.offsets.iter().enumerate() {
            for b in 0..self.spec.bins[f] {
                let cell = self.sums[offset + b];
                if cell[0] > 0.0 {
                    feature.push(f as u32);
                    bin.push(b as u32);
                    for (column, value) in values.iter_mut().zip(cell) {
                        column.push(value);
                    }
                }
            }
        }
        let [count, total, squares] = values;
        Ok(Some(RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![
                Arc::new(UInt32Array::from(feature)),
                Arc::new(UInt32Array::from(bin)),
                Arc::new(Float64Array::from(count)),
                Arc::new(Float64Array::from(total)),
                Arc::new(Float64Array::from(squares)),
            ],
        )?))
    }
}

/// Registers [`BIN_STATS_FN`] in `functions`.
pub fn register_prep_functions(functions: &FunctionRegistry) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("feature", DataType::UInt32, false),
        Field::new("bin", DataType::UInt32, false),
        Field::new("count", DataType::Float64, false),
        Field::new("sum", DataType::Float64, false),
        Field::new("sum_squares", DataType::Float64, false),
    ]));
    let output = Arc::clone(&schema);
    functions.register(UserFunction::new(
        BIN_STATS_FN,
        FunctionOutput::Fixed(output),
        None,
        move |call| {
            let spec: BinStatsSpec = serde_json::from_str(call.args).map_err(|e| {
                DataFusionError::Execution(format!("bad {BIN_STATS_FN} arguments: {e}"))
            })?;
            let mut offsets = Vec::with_capacity(spec.bins.len());
            let mut total = 0;
            for bins in &spec.bins {
                offsets.push(total);
                total += bins;
            }
            Ok(Box::new(BinStatsPartition {
                spec,
                offsets,
                sums: vec![[0.0; 3]; total],
                schema: Arc::clone(&schema),
            }) as Box<dyn PartitionFn>)
        },
    ));
}

/// Label statistics summed per feature from `stats` (every bin of a feature covers every
/// training row once, so each feature's totals are the same).
pub fn totals_per_feature(stats: &[BinStat]) -> HashMap<String, [f64; 3]> {
    let mut totals: HashMap<String, [f64; 3]> = HashMap::new();
    for s in stats {
        let t = totals.entry(s.feature.clone()).or_default();
        t[0] += s.count;
        t[1] += s.sum;
        t[2] += s.sum_squares;
    }
    totals
}
