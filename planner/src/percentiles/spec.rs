//! What an `approx_percentiles` call asks ([`Quantiles`]: its quantiles and digest size,
//! read from the planned call's constant arguments) and the aggregate's name.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Schema};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::ColumnarValue;
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::physical_expr::PhysicalExpr;
use datafusion_functions_aggregate_common::tdigest::DEFAULT_MAX_SIZE;

/// The aggregate's name, in SQL and in serialized plans.
pub const APPROX_PERCENTILES: &str = "approx_percentiles";

/// What one call asks: the quantiles, in order, and the digest's size.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Quantiles {
    pub(crate) quantiles: Vec<f64>,
    pub(crate) max_size: usize,
}

impl Quantiles {
    /// Reads the constant arguments of a planned call.
    pub(super) fn from_args(args: &AccumulatorArgs) -> Result<Self> {
        let Some(list) = args.exprs.get(1) else {
            return plan_err!("{APPROX_PERCENTILES} needs a list of quantiles");
        };
        let quantiles = match constant(list)? {
            ScalarValue::List(list) if list.len() == 1 && list.is_valid(0) => {
                let values = cast(&list.value(0), &DataType::Float64)?;
                let values = values.as_primitive::<Float64Type>();
                if values.null_count() > 0 {
                    return plan_err!("{APPROX_PERCENTILES}: a quantile is null");
                }
                values.values().to_vec()
            }
            other => {
                return plan_err!(
                    "{APPROX_PERCENTILES} needs its quantiles as a list of numbers, got {other}"
                );
            }
        };
        if quantiles.is_empty() {
            return plan_err!("{APPROX_PERCENTILES} needs at least one quantile");
        }
        if let Some(q) = quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
            return plan_err!("{APPROX_PERCENTILES}: the quantile {q} is not between 0 and 1");
        }
        let max_size = match args.exprs.get(2).map(constant).transpose()? {
            None => DEFAULT_MAX_SIZE,
            Some(ScalarValue::Int64(Some(size))) if size > 0 => {
                usize::try_from(size).unwrap_or(DEFAULT_MAX_SIZE)
            }
            Some(other) => {
                return plan_err!("{APPROX_PERCENTILES} needs a positive digest size, got {other}");
            }
        };
        Ok(Self {
            quantiles,
            max_size,
        })
    }
}

/// The value of an argument that must not depend on the rows.
fn constant(expr: &Arc<dyn PhysicalExpr>) -> Result<ScalarValue> {
    let empty = RecordBatch::new_empty(Arc::new(Schema::empty()));
    match expr.evaluate(&empty) {
        Ok(ColumnarValue::Scalar(value)) => Ok(value),
        _ => exec_err!("{APPROX_PERCENTILES}: {expr} is not a constant"),
    }
}
