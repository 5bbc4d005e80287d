//! The distributed steps of feature preparation: one pass that profiles every column
//! (label counts, moments, quantile sketches) in each partition, merged in the driver; the
//! fitting of a [`FeaturePipeline`] from that profile; the seeded train/test split with
//! bootstrap weights; and the functions that run these in the executors.
//!
//! | function | args | adds |
//! |---|---|---|
//! | `forest.profile` | [`ProfileSpec`] | one row per partition: its [`Profile`] as JSON |
//! | `forest.split` | [`SplitSpec`] | `row_hash`, `test`, and `bootstrap` weights per tree |
//! | `forest.transform` | a [`FeaturePipeline`] | the pipeline's columns |

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, FixedSizeListArray, RecordBatch, StringArray,
    UInt8Array, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::error::{DataFusionError, Result as DfResult};
use ember::planner::{EachBatch, FunctionOutput, FunctionRegistry, PartitionFn, UserFunction};
use serde::{Deserialize, Serialize};

use super::sketch::QuantileSketch;
use super::transformers::{
    FeaturePipeline, HandleInvalid, ImputeStrategy, Transformer, column, float_column, with_column,
};
use ember::Dataset;
use ember::{EmberError, Result};

/// The function that profiles columns.
pub const PROFILE_FN: &str = "forest.profile";
/// The function that splits rows into train and test and draws bootstrap weights.
pub const SPLIT_FN: &str = "forest.split";
/// The function that applies a fitted pipeline.
pub const TRANSFORM_FN: &str = "forest.transform";

/// Which columns a profile covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileSpec {
    /// String columns: their labels are counted.
    pub categorical: Vec<String>,
    /// Numeric columns: moments and a quantile sketch.
    pub numeric: Vec<String>,
    /// The sketches' rank error.
    pub relative_error: f64,
}

/// Count, mean and sum of squared deviations, merged with Chan's formula (stable where
/// sums of squares would cancel).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Values seen.
    pub count: u64,
    /// Their mean.
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Moments {
    /// Adds a value.
    pub fn add(&mut self, x: f64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Adds the values `other` saw.
    pub fn merge(&mut self, other: &Moments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let n = (self.count + other.count) as f64;
        let delta = other.mean - self.mean;
        self.mean += delta * other.count as f64 / n;
        self.m2 += other.m2 + delta * delta * self.count as f64 * other.count as f64 / n;
        self.count += other.count;
    }

    /// Sample standard deviation (0 for fewer than two values).
    pub fn std(&self) -> f64 {
        if self.count < 2 {
            0.0
        } else {
            (self.m2 / (self.count - 1) as f64).sqrt()
        }
    }
}

/// What one numeric column looks like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericProfile {
    /// Nulls, NaN and infinities.
    pub missing: u64,
    /// Moments of the other values.
    pub moments: Moments,
    /// Their quantile sketch.
    pub sketch: QuantileSketch,
}

/// What one string column looks like.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelCounts {
    /// Rows per label.
    pub counts: HashMap<String, u64>,
    /// Nulls.
    pub missing: u64,
}

/// The profile of a partition, or of all of them merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Rows seen.
    pub rows: u64,
    /// Per [`ProfileSpec::categorical`] column.
    pub categorical: Vec<LabelCounts>,
    /// Per [`ProfileSpec::numeric`] column.
    pub numeric: Vec<NumericProfile>,
}

impl Profile {
    /// An empty profile of the columns of `spec`.
    pub fn new(spec: &ProfileSpec) -> Self {
        Self {
            rows: 0,
            categorical: vec![LabelCounts::default(); spec.categorical.len()],
            numeric: spec
                .numeric
                .iter()
                .map(|_| NumericProfile {
                    missing: 0,
                    moments: Moments::default(),
                    sketch: QuantileSketch::new(spec.relative_error),
                })
                .collect(),
        }
    }

    /// Adds the rows of `batch`.
    pub fn add_batch(&mut self, spec: &ProfileSpec, batch: &RecordBatch) -> DfResult<()> {
        self.rows += batch.num_rows() as u64;
        for (name, counts) in spec.categorical.iter().zip(&mut self.categorical) {
            let strings = cast(column(batch, name)?, &DataType::Utf8)?;
            let strings = strings.as_string::<i32>();
            for value in strings.iter() {
                match value {
                    Some(v) => match counts.counts.get_mut(v) {
                        Some(n) => *n += 1,
                        None => {
                            counts.counts.insert(v.to_string(), 1);
                        }
                    },
                    None => counts.missing += 1,
                }
            }
        }
        for (name, profile) in spec.numeric.iter().zip(&mut self.numeric) {
            let numbers = float_column(batch, name)?;
            for value in numbers.iter() {
                match value.filter(|x| x.is_finite()) {
                    Some(x) => {
                        profile.moments.add(x);
                        profile.sketch.insert(x);
                    }
                    None => profile.missing += 1,
                }
            }
        }
        Ok(())
    }

    /// Adds what `other` saw.
    pub fn merge(&mut self, other: &Profile) {
        self.rows += other.rows;
        for (ours, theirs) in self.categorical.iter_mut().zip(&other.categorical) {
            ours.missing += theirs.missing;
            for (label, n) in &theirs.counts {
                *ours.counts.entry(label.clone()).or_default() += n;
            }
        }
        for (ours, theirs) in self.numeric.iter_mut().zip(&other.numeric) {
            ours.missing += theirs.missing;
            ours.moments.merge(&theirs.moments);
            ours.sketch.merge(&theirs.sketch);
        }
    }
}

/// A partition's profile, written as one JSON row at its end.
struct ProfilePartition {
    spec: ProfileSpec,
    profile: Profile,
    schema: SchemaRef,
}

impl PartitionFn for ProfilePartition {
    fn push(&mut self, batch: RecordBatch) -> DfResult<Option<RecordBatch>> {
        self.profile.add_batch(&self.spec, &batch)?;
        Ok(None)
    }

    fn finish(&mut self) -> DfResult<Option<RecordBatch>> {
        for numeric in &mut self.profile.numeric {
            numeric.sketch.finish();
        }
        let text = serde_json::to_string(&self.profile)
            .map_err(|e| DataFusionError::Execution(format!("a profile to JSON: {e}")))?;
        let column: ArrayRef = Arc::new(StringArray::from(vec![text]));
        Ok(Some(RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![column],
        )?))
    }
}

/// How rows are split and weighted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    /// Seed of the split and of the weights.
    pub seed: u64,
    /// Share of rows in the test set.
    pub test_fraction: f64,
    /// The columns a row's identity is hashed from.
    pub columns: Vec<String>,
    /// Bootstrap weights to draw per row (one per tree; 0 for none).
    pub trees: usize,
}

/// SplitMix64: a 64-bit hash with good avalanche.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) from a hash.
pub fn unit(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether the row of `row_hash` is in the test set.
pub fn is_test(seed: u64, row_hash: u64, test_fraction: f64) -> bool {
    unit(mix(row_hash ^ mix(seed))) < test_fraction
}

/// The Poisson(1) bootstrap weight of the row of `row_hash` in tree `tree`.
pub fn poisson_weight(seed: u64, tree: u64, row_hash: u64) -> u8 {
    let u = unit(mix(row_hash ^ mix(seed ^ mix(tree.wrapping_add(1)))));
    // Inverse CDF: P(k) = e^-1 / k!.
    let mut p = (-1.0_f64).exp();
    let mut cdf = p;
    let mut k = 0_u8;
    while u > cdf && k < 16 {
        k += 1;
        p /= f64::from(k);
        cdf += p;
    }
    k
}

/// Hashes of each row's values in `columns` (numbers as `Float64`, the rest as text), the
/// same for a row whatever file type or partition it came from.
pub fn row_hashes(batch: &RecordBatch, columns: &[String]) -> DfResult<Vec<u64>> {
    let mut arrays = Vec::with_capacity(columns.len());
    for name in columns {
        let array = column(batch, name)?;
        let target = if array.data_type().is_numeric() {
            DataType::Float64
        } else {
            DataType::Utf8
        };
        arrays.push(cast(array, &target)?);
    }
    let mut hashes = vec![0; batch.num_rows()];
    create_hashes(&arrays, &RandomState::with_seed(0x00E4_BE12), &mut hashes)?;
    Ok(hashes)
}

fn split_batch(spec: &SplitSpec, batch: &RecordBatch) -> DfResult<RecordBatch> {
    let hashes = row_hashes(batch, &spec.columns)?;
    let test: BooleanArray = hashes
        .iter()
        .map(|h| Some(is_test(spec.seed, *h, spec.test_fraction)))
        .collect();
    let mut out = with_column(batch, "test", Arc::new(test))?;
    if spec.trees > 0 {
        let mut weights = Vec::with_capacity(hashes.len() * spec.trees);
        for h in &hashes {
            for tree in 0..spec.trees as u64 {
                weights.push(poisson_weight(spec.seed, tree, *h));
            }
        }
        let item = Arc::new(Field::new("item", DataType::UInt8, false));
        let width = i32::try_from(spec.trees)
            .map_err(|_| DataFusionError::Execution("too many trees".into()))?;
        let list =
            FixedSizeListArray::try_new(item, width, Arc::new(UInt8Array::from(weights)), None)?;
        out = with_column(&out, "bootstrap", Arc::new(list))?;
    }
    with_column(&out, "row_hash", Arc::new(UInt64Array::from(hashes)))
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, args: &str) -> DfResult<T> {
    serde_json::from_str(args)
        .map_err(|e| DataFusionError::Execution(format!("bad {what} arguments: {e}")))
}

/// Registers `forest.profile`, `forest.split` and `forest.transform` in `functions`.
pub fn register_fit_functions(functions: &FunctionRegistry) {
    let profile_schema = Arc::new(Schema::new(vec![Field::new(
        "profile",
        DataType::Utf8,
        false,
    )]));
    let schema = Arc::clone(&profile_schema);
    functions.register(UserFunction::new(
        PROFILE_FN,
        FunctionOutput::Fixed(profile_schema),
        None,
        move |call| {
            let spec: ProfileSpec = parse(PROFILE_FN, call.args)?;
            Ok(Box::new(ProfilePartition {
                profile: Profile::new(&spec),
                spec,
                schema: Arc::clone(&schema),
            }) as Box<dyn PartitionFn>)
        },
    ));
    functions.register(UserFunction::new(
        SPLIT_FN,
        FunctionOutput::FromArgs(Arc::new(|args: &str, input: &SchemaRef| {
            let spec: SplitSpec = parse(SPLIT_FN, args)?;
            Ok(split_batch(&spec, &RecordBatch::new_empty(Arc::clone(input)))?.schema())
        })),
        None,
        |call| {
            let spec: SplitSpec = parse(SPLIT_FN, call.args)?;
            Ok(Box::new(EachBatch(move |batch: RecordBatch| {
                split_batch(&spec, &batch)
            })) as Box<dyn PartitionFn>)
        },
    ));
    functions.register(UserFunction::new(
        TRANSFORM_FN,
        FunctionOutput::FromArgs(Arc::new(|args: &str, input: &SchemaRef| {
            FeaturePipeline::from_json(args)?.output_schema(input)
        })),
        None,
        |call| {
            let pipeline = FeaturePipeline::from_json(call.args)?;
            Ok(
                Box::new(EachBatch(move |batch: RecordBatch| pipeline.apply(&batch)))
                    as Box<dyn PartitionFn>,
            )
        },
    ));
}

/// The profile of `data`'s columns in `spec`, one pass on the cluster.
pub async fn profile(data: &Dataset<'_>, spec: &ProfileSpec) -> Result<Profile> {
    let args = serde_json::to_string(spec).map_err(|e| EmberError::Internal {
        message: format!("a profile spec to JSON: {e}"),
    })?;
    let result = data.map_partitions(PROFILE_FN, &args)?.collect().await?;
    let mut merged = Profile::new(spec);
    for batch in &result.batches {
        let texts = batch.column(0).as_string::<i32>();
        for text in texts.iter().flatten() {
            let part: Profile = serde_json::from_str(text).map_err(|e| EmberError::Internal {
                message: format!("a partition's profile: {e}"),
            })?;
            merged.merge(&part);
        }
    }
    Ok(merged)
}

/// How a [`FeaturePipeline`] is fitted.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// String columns to index.
    pub categorical: Vec<String>,
    /// Numeric columns to impute, scale and discretize.
    pub numeric: Vec<String>,
    /// Unseen labels and nulls in the indexers.
    pub handle_invalid: HandleInvalid,
    /// How the imputers fill.
    pub impute: ImputeStrategy,
    /// Buckets of the quantile discretizers.
    pub buckets: usize,
    /// One-hot vectors and scaled numbers assembled into `features`.
    pub assemble: bool,
}

/// The edges of `buckets` quantile buckets: the distinct values at `i / buckets`.
pub fn quantile_edges(sketch: &QuantileSketch, buckets: usize) -> Vec<f64> {
    let qs: Vec<f64> = (1..buckets.max(1))
        .map(|i| i as f64 / buckets as f64)
        .collect();
    let mut edges: Vec<f64> = sketch.quantiles(&qs).into_iter().flatten().collect();
    edges.dedup();
    edges
}

/// A pipeline fitted to `profile` (of `options`' columns, in that order).
pub fn fit_pipeline(profile: &Profile, options: &FitOptions) -> FeaturePipeline {
    let mut steps = Vec::new();
    let mut assembled = Vec::new();
    for (name, counts) in options.categorical.iter().zip(&profile.categorical) {
        let mut labels: Vec<(&String, &u64)> = counts.counts.iter().collect();
        labels.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let labels: Vec<String> = labels.into_iter().map(|(l, _)| l.clone()).collect();
        let size = labels.len() + usize::from(options.handle_invalid == HandleInvalid::Keep);
        let index = format!("{name}_index");
        steps.push(Transformer::string_indexer(
            name,
            &index,
            labels,
            options.handle_invalid,
        ));
        let vector = format!("{name}_vec");
        steps.push(Transformer::OneHotEncoder {
            input: index,
            output: vector.clone(),
            size,
        });
        assembled.push(vector);
    }
    for (name, numeric) in options.numeric.iter().zip(&profile.numeric) {
        let value = match options.impute {
            ImputeStrategy::Mean => numeric.moments.mean,
            ImputeStrategy::Median => numeric.sketch.quantile(0.5).unwrap_or(0.0),
        };
        let imputed = format!("{name}_imputed");
        steps.push(Transformer::Imputer {
            input: name.clone(),
            output: imputed.clone(),
            strategy: options.impute,
            value,
        });
        // The moments of the imputed column: the values seen plus `missing` copies of
        // `value`.
        let mut moments = numeric.moments.clone();
        moments.merge(&Moments {
            count: numeric.missing,
            mean: value,
            m2: 0.0,
        });
        let scaled = format!("{name}_scaled");
        steps.push(Transformer::StandardScaler {
            input: imputed.clone(),
            output: scaled.clone(),
            mean: moments.mean,
            std: moments.std(),
        });
        steps.push(Transformer::QuantileDiscretizer {
            input: imputed,
            output: format!("{name}_bucket"),
            edges: quantile_edges(&numeric.sketch, options.buckets),
        });
        assembled.push(scaled);
    }
    if options.assemble {
        steps.push(Transformer::VectorAssembler {
            inputs: assembled,
            output: "features".into(),
        });
    }
    FeaturePipeline::new(steps)
}

/// The string and numeric columns of `schema` other than `label`: the features.
pub fn feature_columns(schema: &Schema, label: &str) -> (Vec<String>, Vec<String>) {
    let mut categorical = Vec::new();
    let mut numeric = Vec::new();
    for field in schema.fields() {
        if field.name() == label {
            continue;
        }
        match field.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean => {
                categorical.push(field.name().clone())
            }
            t if t.is_numeric() => numeric.push(field.name().clone()),
            _ => {}
        }
    }
    (categorical, numeric)
}
