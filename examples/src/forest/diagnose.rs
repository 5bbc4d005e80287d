//! How a trained forest errs on its held-out rows ([`diagnose`]): a seeded sample of
//! predicted against actual values and the error per range of the label for a regression,
//! the confusion matrix for a classifier. forest-train's report draws them.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast as cast_array;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::error::DataFusionError;
use datafusion::functions::math::expr_fn::abs;
use datafusion::functions_aggregate::expr_fn::{avg, count};
use datafusion::logical_expr::ident;
use datafusion::prelude::{Expr, cast, col, lit, when};

use super::model::ForestModel;
use super::train::Task;
use ember::Dataset;
use ember::QueryResult;
use ember::report::format::count as grouped;
use ember::{EmberError, Result};

/// Held-out rows drawn for the predicted-against-actual chart, at most.
pub const SAMPLE_ROWS: u64 = 2_000;

/// Ranges of the label that the error is broken down by, at most.
const RANGES: usize = 8;

/// How a model errs on held-out rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diagnostics {
    /// `(actual, predicted)` of a sample of the rows (regression).
    pub sample: Vec<(f64, f64)>,
    /// The error per range of the actual value (regression).
    pub ranges: Vec<RangeError>,
    /// Rows per actual class (rows) and predicted class (columns), in the model's class
    /// order (classification).
    pub confusion: Vec<Vec<u64>>,
}

/// The error of the rows whose actual value lies in `[low, high)`.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeError {
    /// The lower edge (none for the first range).
    pub low: Option<f64>,
    /// The upper edge (none for the last range).
    pub high: Option<f64>,
    /// Rows in the range.
    pub rows: u64,
    /// Mean absolute error.
    pub mae: f64,
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean of predicted less actual.
    pub bias: f64,
}

impl RangeError {
    /// The range in words (`1,000 to 2,500`).
    pub fn range(&self) -> String {
        match (self.low, self.high) {
            (None, Some(h)) => format!("under {}", number(h)),
            (Some(l), Some(h)) => format!("{} to {}", number(l), number(h)),
            (Some(l), None) => format!("{} and up", number(l)),
            (None, None) => "all".to_string(),
        }
    }
}

/// A label value for people: grouped when whole, else to 2 decimals.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        grouped(value as i128)
    } else {
        format!("{value:.2}")
    }
}

/// `value` rounded to two significant digits (`1234.5` to `1200`).
fn two_digits(value: f64) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    let magnitude = 10f64.powi(value.abs().log10().floor() as i32 - 1);
    (value / magnitude).round() * magnitude
}

/// The edges of up to [`RANGES`] ranges with about as many rows each, from `actual`
/// values (sorted here), rounded to two significant digits.
pub fn range_edges(actual: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = actual.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let mut edges: Vec<f64> = Vec::new();
    if sorted.len() < 2 {
        return edges;
    }
    for k in 1..RANGES {
        let at = (sorted.len() * k / RANGES).min(sorted.len() - 1);
        let edge = two_digits(sorted[at]);
        if edge > sorted[0] && edges.last().is_none_or(|last| edge > *last) {
            edges.push(edge);
        }
    }
    edges
}

/// The rows of the first numeric column of `result` as `f64`s (nulls skipped).
fn floats(result: &QueryResult, column: usize) -> Result<Vec<Option<f64>>> {
    let mut values = Vec::new();
    for batch in &result.batches {
        let array =
            cast_array(batch.column(column), &DataType::Float64).map_err(DataFusionError::from)?;
        let array = array.as_primitive::<Float64Type>();
        values.extend((0..array.len()).map(|i| array.is_valid(i).then(|| array.value(i))));
    }
    Ok(values)
}

/// How `model` errs on `predicted` (held-out rows with the label, `row_hash` and the
/// model's prediction columns), `rows` of them: two small jobs on the cluster.
pub async fn diagnose(
    predicted: &Dataset<'_>,
    model: &ForestModel,
    rows: u64,
) -> Result<Diagnostics> {
    let label = ident(model.label.as_str());
    match model.task {
        Task::Regression => {
            let actual = cast(label, DataType::Float64);
            let every = (rows / SAMPLE_ROWS).max(1);
            let sample = predicted
                .filter((col("row_hash") % lit(every)).eq(lit(0_u64)))?
                .select(vec![actual.clone().alias("actual"), col("prediction")])?
                .limit(0, Some(SAMPLE_ROWS as usize))?
                .collect()
                .await?;
            let sample: Vec<(f64, f64)> = floats(&sample, 0)?
                .into_iter()
                .zip(floats(&sample, 1)?)
                .filter_map(|(a, p)| a.zip(p))
                .collect();
            let edges = range_edges(&sample.iter().map(|s| s.0).collect::<Vec<_>>());
            let bucket = edges.iter().enumerate().try_fold(
                None::<datafusion::logical_expr::conditional_expressions::CaseBuilder>,
                |case, (i, edge)| {
                    let condition = actual.clone().lt(lit(*edge));
                    let value = lit(i as i64);
                    Ok::<_, EmberError>(Some(match case {
                        None => when(condition, value),
                        Some(mut case) => case.when(condition, value),
                    }))
                },
            )?;
            let bucket: Expr = match bucket {
                Some(mut case) => case.otherwise(lit(edges.len() as i64))?,
                None => lit(0_i64),
            };
            let error = col("prediction") - actual.clone();
            let per_range = predicted
                .filter(actual.is_not_null())?
                .group_by(vec![bucket.alias("range")])
                .agg(vec![
                    count(lit(1)).alias("rows"),
                    avg(abs(error.clone())).alias("mae"),
                    avg(error.clone() * error.clone()).alias("mse"),
                    avg(error).alias("bias"),
                ])?
                .collect()
                .await?;
            let mut ranges = Vec::new();
            let index = floats(&per_range, 0)?;
            let counts = floats(&per_range, 1)?;
            let mae = floats(&per_range, 2)?;
            let mse = floats(&per_range, 3)?;
            let bias = floats(&per_range, 4)?;
            for i in 0..index.len() {
                let Some(at) = index[i].map(|v| v as usize) else {
                    continue;
                };
                ranges.push((
                    at,
                    RangeError {
                        low: at.checked_sub(1).and_then(|b| edges.get(b).copied()),
                        high: edges.get(at).copied(),
                        rows: counts[i].unwrap_or(0.0) as u64,
                        mae: mae[i].unwrap_or(0.0),
                        rmse: mse[i].unwrap_or(0.0).sqrt(),
                        bias: bias[i].unwrap_or(0.0),
                    },
                ));
            }
            ranges.sort_by_key(|(at, _)| *at);
            Ok(Diagnostics {
                sample,
                ranges: ranges.into_iter().map(|(_, r)| r).collect(),
                confusion: Vec::new(),
            })
        }
        Task::Classification { .. } => {
            let pairs = predicted
                .filter(label.clone().is_not_null())?
                .group_by(vec![
                    cast(label, DataType::Utf8).alias("actual"),
                    col("predicted_label"),
                ])
                .agg(vec![count(lit(1)).alias("rows")])?
                .collect()
                .await?;
            let classes = &model.classes;
            let mut confusion = vec![vec![0_u64; classes.len()]; classes.len()];
            for batch in &pairs.batches {
                let text = |i: usize| -> Result<Vec<Option<String>>> {
                    let array = cast_array(batch.column(i), &DataType::Utf8)
                        .map_err(DataFusionError::from)?;
                    Ok(array
                        .as_string::<i32>()
                        .iter()
                        .map(|v| v.map(str::to_string))
                        .collect())
                };
                let actual = text(0)?;
                let predicted = text(1)?;
                let counts = batch.column(2).as_primitive::<Int64Type>();
                for row in 0..batch.num_rows() {
                    let find = |name: &Option<String>| {
                        name.as_ref()
                            .and_then(|n| classes.iter().position(|c| c == n))
                    };
                    if let (Some(a), Some(p)) = (find(&actual[row]), find(&predicted[row])) {
                        confusion[a][p] += counts.value(row).max(0) as u64;
                    }
                }
            }
            Ok(Diagnostics {
                sample: Vec::new(),
                ranges: Vec::new(),
                confusion,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_edges_split_the_values_into_rounded_ranges_of_similar_size() {
        let values: Vec<f64> = (1..=1000).map(|v| v as f64 * 10.0 + 0.37).collect();
        let edges = range_edges(&values);
        assert_eq!(edges.len(), RANGES - 1, "{edges:?}");
        assert_eq!(edges[0], 1300.0, "{edges:?}");
        assert!(edges.windows(2).all(|w| w[0] < w[1]), "{edges:?}");
        // Constant values give one range.
        assert!(range_edges(&[5.0; 10]).is_empty());
        assert_eq!(two_digits(1234.5), 1200.0);
        assert_eq!(two_digits(0.0456), 0.046);
    }
}
