//! Fitted feature transformers in the style of Spark MLlib, saved and reloaded as JSON and
//! applied batch by batch in the executors.
//!
//! A [`FeaturePipeline`] is an ordered list of [`Transformer`]s; each reads columns of the
//! batch and adds (or replaces) one column:
//!
//! | transformer | reads | makes |
//! |---|---|---|
//! | string indexer | a string column | its label's index (`Float64`), by frequency |
//! | one-hot encoder | an index | a `FixedSizeList<Float64>` with a 1 at the index |
//! | imputer | a number | the number, with nulls and NaN replaced by the mean or median |
//! | standard scaler | a number | `(x - mean) / std` |
//! | quantile discretizer | a number | its bucket between the quantile edges (`Float64`) |
//! | vector assembler | numbers and vectors | one `FixedSizeList<Float64>` of them all |
//!
//! The pipeline travels to the executors in the plan as the arguments of the
//! `forest.transform` function, whose output schema is the pipeline applied to an empty
//! batch of the input's schema.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, FixedSizeListArray, Float64Array, RecordBatch,
};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use serde::{Deserialize, Serialize};

/// What a string indexer does with a value it did not see when fitted (and with nulls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandleInvalid {
    /// Fail, naming the column and the value.
    Error,
    /// Drop the row.
    Skip,
    /// Give it one more index, after every known label.
    Keep,
}

impl std::str::FromStr for HandleInvalid {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "error" => Ok(Self::Error),
            "skip" => Ok(Self::Skip),
            "keep" => Ok(Self::Keep),
            other => Err(format!("expected error, skip or keep, not '{other}'")),
        }
    }
}

/// How an imputer fills missing values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImputeStrategy {
    /// The mean of the fitted values.
    Mean,
    /// Their approximate median (from the quantile sketch).
    Median,
}

impl std::str::FromStr for ImputeStrategy {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "mean" => Ok(Self::Mean),
            "median" => Ok(Self::Median),
            other => Err(format!("expected mean or median, not '{other}'")),
        }
    }
}

/// A string indexer's lookup from label to index, built from its labels on first use
/// (not saved, and not part of equality).
#[derive(Debug, Clone, Default)]
pub struct LabelIndex(OnceLock<HashMap<String, usize>>);

impl PartialEq for LabelIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// One fitted step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Transformer {
    /// Labels to indices, most frequent first (ties in label order).
    StringIndexer {
        /// Column read.
        input: String,
        /// Column made.
        output: String,
        /// The labels, index 0 first.
        labels: Vec<String>,
        /// Unseen values and nulls.
        handle_invalid: HandleInvalid,
        /// Label to index, built on first use.
        #[serde(skip)]
        index: LabelIndex,
    },
    /// An index to a vector of `size` with a 1 at the index.
    OneHotEncoder {
        /// Column read (an index).
        input: String,
        /// Column made.
        output: String,
        /// Length of the vector (every index, the extra one of `keep` included).
        size: usize,
    },
    /// Missing values (null, NaN, infinities) replaced by `value`.
    Imputer {
        /// Column read.
        input: String,
        /// Column made.
        output: String,
        /// How `value` was fitted.
        strategy: ImputeStrategy,
        /// The replacement.
        value: f64,
    },
    /// `(x - mean) / std` (0 where the fitted values were all equal).
    StandardScaler {
        /// Column read.
        input: String,
        /// Column made.
        output: String,
        /// Fitted mean.
        mean: f64,
        /// Fitted standard deviation (sample).
        std: f64,
    },
    /// The bucket of a number: how many edges are at or below it; missing values get the
    /// extra bucket `edges.len() + 1`.
    QuantileDiscretizer {
        /// Column read.
        input: String,
        /// Column made.
        output: String,
        /// Ascending distinct edges at the quantiles `i / buckets`.
        edges: Vec<f64>,
    },
    /// Numbers and vectors concatenated into one vector.
    VectorAssembler {
        /// Columns read, in order.
        inputs: Vec<String>,
        /// Column made.
        output: String,
    },
}

/// Fitted transformers applied in order; saved as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturePipeline {
    /// Format version of the saved pipeline.
    pub version: u32,
    /// The steps.
    pub steps: Vec<Transformer>,
}

/// The format version written by this build.
pub const PIPELINE_VERSION: u32 = 1;

impl FeaturePipeline {
    /// A pipeline of `steps`.
    pub fn new(steps: Vec<Transformer>) -> Self {
        Self {
            version: PIPELINE_VERSION,
            steps,
        }
    }

    /// The pipeline as pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| DataFusionError::Execution(format!("feature pipeline to JSON: {e}")))
    }

    /// A pipeline saved by [`Self::to_json`].
    pub fn from_json(text: &str) -> Result<Self> {
        let pipeline: Self = serde_json::from_str(text).map_err(|e| {
            DataFusionError::Execution(format!("not a saved feature pipeline: {e}"))
        })?;
        if pipeline.version != PIPELINE_VERSION {
            return Err(DataFusionError::Execution(format!(
                "a feature pipeline of format version {}, but this build reads version \
                 {PIPELINE_VERSION}",
                pipeline.version
            )));
        }
        Ok(pipeline)
    }

    /// Every step applied to `batch`.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let mut batch = batch.clone();
        for step in &self.steps {
            batch = step.apply(&batch)?;
        }
        Ok(batch)
    }

    /// The schema of what [`Self::apply`] makes from batches of `input`.
    pub fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        Ok(self
            .apply(&RecordBatch::new_empty(Arc::clone(input)))?
            .schema())
    }
}

/// The column `name` of `batch`, or an error naming what there is.
pub fn column<'b>(batch: &'b RecordBatch, name: &str) -> Result<&'b ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| {
        let names: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        DataFusionError::Execution(format!(
            "no column '{name}' (the data has: {})",
            names.join(", ")
        ))
    })
}

/// Column `name` as `Float64` (integers and decimals cast).
pub fn float_column(batch: &RecordBatch, name: &str) -> Result<Float64Array> {
    let array = column(batch, name)?;
    let cast = cast(array, &DataType::Float64).map_err(|e| {
        DataFusionError::Execution(format!(
            "column '{name}' of type {} is not numeric: {e}",
            array.data_type()
        ))
    })?;
    Ok(cast.as_primitive::<Float64Type>().clone())
}

/// `batch` with `array` as column `name`, replacing a column of that name.
pub fn with_column(batch: &RecordBatch, name: &str, array: ArrayRef) -> Result<RecordBatch> {
    let schema = batch.schema();
    let field = Field::new(name, array.data_type().clone(), array.null_count() > 0);
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    let mut columns = batch.columns().to_vec();
    match schema.index_of(name) {
        Ok(i) => {
            fields[i] = Arc::new(field);
            columns[i] = array;
        }
        Err(_) => {
            fields.push(Arc::new(field));
            columns.push(array);
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// A vector column of `width` numbers per row from row-major `values`.
pub fn vector_column(values: Vec<f64>, width: usize) -> Result<ArrayRef> {
    let width_i32 = i32::try_from(width)
        .map_err(|_| DataFusionError::Execution(format!("a vector of {width} numbers")))?;
    let item = Arc::new(Field::new("item", DataType::Float64, false));
    Ok(Arc::new(FixedSizeListArray::try_new(
        item,
        width_i32,
        Arc::new(Float64Array::from(values)),
        None,
    )?))
}

impl Transformer {
    /// The column this step makes.
    pub fn output(&self) -> &str {
        match self {
            Self::StringIndexer { output, .. }
            | Self::OneHotEncoder { output, .. }
            | Self::Imputer { output, .. }
            | Self::StandardScaler { output, .. }
            | Self::QuantileDiscretizer { output, .. }
            | Self::VectorAssembler { output, .. } => output,
        }
    }

    /// A string indexer (its lookup is built on first use).
    pub fn string_indexer(
        input: &str,
        output: &str,
        labels: Vec<String>,
        handle_invalid: HandleInvalid,
    ) -> Self {
        Self::StringIndexer {
            input: input.into(),
            output: output.into(),
            labels,
            handle_invalid,
            index: LabelIndex::default(),
        }
    }

    /// The step applied to `batch`: the batch with the output column added or replaced
    /// (and, for an indexer that skips, without the rows it skipped).
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        match self {
            Self::StringIndexer {
                input,
                output,
                labels,
                handle_invalid,
                index,
            } => {
                let lookup = index.0.get_or_init(|| {
                    labels
                        .iter()
                        .enumerate()
                        .map(|(i, l)| (l.clone(), i))
                        .collect()
                });
                let strings = cast(column(batch, input)?, &DataType::Utf8)?;
                let strings = strings.as_string::<i32>();
                let mut indices = Vec::with_capacity(strings.len());
                let mut keep = Vec::with_capacity(strings.len());
                for row in 0..strings.len() {
                    let found = strings
                        .is_valid(row)
                        .then(|| lookup.get(strings.value(row)).copied())
                        .flatten();
                    match (found, handle_invalid) {
                        (Some(i), _) => {
                            indices.push(i as f64);
                            keep.push(true);
                        }
                        (None, HandleInvalid::Keep) => {
                            indices.push(labels.len() as f64);
                            keep.push(true);
                        }
                        (None, HandleInvalid::Skip) => {
                            indices.push(0.0);
                            keep.push(false);
                        }
                        (None, HandleInvalid::Error) => {
                            let value = if strings.is_valid(row) {
                                format!("the unseen label '{}'", strings.value(row))
                            } else {
                                "a null".to_string()
                            };
                            return Err(DataFusionError::Execution(format!(
                                "string indexer of column '{input}': {value} (it knows {} \
                                 labels; handle_invalid is error, choose skip or keep to go on)",
                                labels.len()
                            )));
                        }
                    }
                }
                let out = with_column(batch, output, Arc::new(Float64Array::from(indices)))?;
                if keep.iter().all(|k| *k) {
                    Ok(out)
                } else {
                    Ok(filter_record_batch(&out, &BooleanArray::from(keep))?)
                }
            }
            Self::OneHotEncoder {
                input,
                output,
                size,
            } => {
                let indices = float_column(batch, input)?;
                let mut values = vec![0.0; indices.len() * size];
                for row in 0..indices.len() {
                    let index = indices.is_valid(row).then(|| indices.value(row));
                    match index {
                        Some(i) if i >= 0.0 && (i as usize) < *size && i.fract() == 0.0 => {
                            values[row * size + i as usize] = 1.0;
                        }
                        other => {
                            return Err(DataFusionError::Execution(format!(
                                "one-hot encoder of column '{input}': index {other:?} is not \
                                 one of 0..{size}"
                            )));
                        }
                    }
                }
                with_column(batch, output, vector_column(values, *size)?)
            }
            Self::Imputer {
                input,
                output,
                value,
                ..
            } => {
                let numbers = float_column(batch, input)?;
                let filled: Float64Array = (0..numbers.len())
                    .map(|row| {
                        let x = numbers.is_valid(row).then(|| numbers.value(row));
                        Some(x.filter(|x| x.is_finite()).unwrap_or(*value))
                    })
                    .collect();
                with_column(batch, output, Arc::new(filled))
            }
            Self::StandardScaler {
                input,
                output,
                mean,
                std,
            } => {
                let numbers = float_column(batch, input)?;
                let scale = if *std > 0.0 { 1.0 / std } else { 0.0 };
                let scaled: Float64Array = numbers.unary(|x| (x - mean) * scale);
                with_column(batch, output, Arc::new(scaled))
            }
            Self::QuantileDiscretizer {
                input,
                output,
                edges,
            } => {
                let numbers = float_column(batch, input)?;
                let missing = (edges.len() + 1) as f64;
                let buckets: Float64Array = (0..numbers.len())
                    .map(|row| {
                        let x = numbers.is_valid(row).then(|| numbers.value(row));
                        Some(match x.filter(|x| x.is_finite()) {
                            Some(x) => edges.partition_point(|e| *e <= x) as f64,
                            None => missing,
                        })
                    })
                    .collect();
                with_column(batch, output, Arc::new(buckets))
            }
            Self::VectorAssembler { inputs, output } => {
                let mut parts: Vec<(usize, Float64Array)> = Vec::with_capacity(inputs.len());
                for name in inputs {
                    let array = column(batch, name)?;
                    let part = match array.data_type() {
                        DataType::FixedSizeList(_, width) => {
                            let list = array.as_fixed_size_list();
                            let values = cast(list.values(), &DataType::Float64)?;
                            (
                                *width as usize,
                                values.as_primitive::<Float64Type>().clone(),
                            )
                        }
                        _ => (1, float_column(batch, name)?),
                    };
                    if array.null_count() > 0 || part.1.null_count() > 0 {
                        return Err(DataFusionError::Execution(format!(
                            "vector assembler: column '{name}' has missing values (impute \
                             them first)"
                        )));
                    }
                    parts.push(part);
                }
                let width: usize = parts.iter().map(|(w, _)| w).sum();
                let rows = batch.num_rows();
                let mut values = Vec::with_capacity(rows * width);
                for row in 0..rows {
                    for (w, part) in &parts {
                        values.extend_from_slice(&part.values()[row * w..(row + 1) * w]);
                    }
                }
                with_column(batch, output, vector_column(values, width)?)
            }
        }
    }
}
