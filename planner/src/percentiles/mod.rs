//! Approximate percentiles: Ember's `approx_percentiles(value, [q, ...] [, size])`
//! aggregate, which answers several quantiles of one value from one t-digest per group, and
//! [`FuseApproxPercentiles`], the optimizer rule that turns a query's
//! `approx_percentile_cont` calls over one value into a single call of it.
//!
//! DataFusion's `approx_percentile_cont` keeps one digest per call and, in a grouped
//! aggregation, one boxed accumulator per group that it hands a slice of each batch: a
//! report asking five quantiles per brand merged every batch's dozen rows of a brand into
//! five digests of up to 100 centroids each. Here each group collects its values and merges
//! them into its one digest [`digests::FLUSH_AT`] at a time, so the merge is paid once per
//! few hundred values rather than once per batch, and once for all the quantiles.
//!
//! The digest is DataFusion's own ([`TDigest`], the same sizes and the same state layout),
//! so the answers are those of `approx_percentile_cont` up to the order in which values
//! reach the digest.
//!
//! [`TDigest`]: datafusion_functions_aggregate_common::tdigest::TDigest

mod digests;
mod fuse;

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Schema};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, GroupsAccumulator, Signature,
    Volatility,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion_functions_aggregate_common::tdigest::DEFAULT_MAX_SIZE;

pub use fuse::FuseApproxPercentiles;

use digests::{GroupDigests, SingleDigest};

/// The aggregate's name, in SQL and in serialized plans.
pub const APPROX_PERCENTILES: &str = "approx_percentiles";

/// The `approx_percentiles` aggregate (one shared instance).
pub fn approx_percentiles_udaf() -> Arc<AggregateUDF> {
    static UDAF: LazyLock<Arc<AggregateUDF>> =
        LazyLock::new(|| Arc::new(AggregateUDF::from(ApproxPercentiles::new())));
    Arc::clone(&UDAF)
}

/// `approx_percentiles(value, quantiles [, size])`: the quantiles (a list of numbers in
/// 0..=1) of a numeric value as a list of doubles, in the order asked, from one t-digest of
/// `size` centroids (100 unless given); null for a group without a non-null value.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ApproxPercentiles {
    signature: Signature,
}

impl ApproxPercentiles {
    /// The aggregate; its arguments are coerced by [`AggregateUDFImpl::coerce_types`].
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for ApproxPercentiles {
    fn default() -> Self {
        Self::new()
    }
}

/// The type of the quantiles argument and of the result.
fn double_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))
}

impl AggregateUDFImpl for ApproxPercentiles {
    fn name(&self) -> &str {
        APPROX_PERCENTILES
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(2..=3).contains(&arg_types.len()) {
            return plan_err!(
                "{APPROX_PERCENTILES} takes a value, a list of quantiles and optionally the \
                 digest's size, as in {APPROX_PERCENTILES}(price, [0.5, 0.9]); got {} arguments",
                arg_types.len()
            );
        }
        let value = &arg_types[0];
        if !(value.is_numeric() || value.is_null()) {
            return plan_err!("{APPROX_PERCENTILES} needs a numeric value, got {value}");
        }
        match &arg_types[1] {
            DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _)
                if item.data_type().is_numeric() => {}
            other => {
                return plan_err!(
                    "{APPROX_PERCENTILES} needs its quantiles as a list of numbers such as \
                     [0.5, 0.9], got {other}"
                );
            }
        }
        let mut coerced = vec![DataType::Float64, double_list()];
        if let Some(size) = arg_types.get(2) {
            if !size.is_integer() {
                return plan_err!(
                    "{APPROX_PERCENTILES} needs the digest's size as an integer, got {size}"
                );
            }
            coerced.push(DataType::Int64);
        }
        Ok(coerced)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(double_list())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(digest_state_fields(args.name))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SingleDigest::new(Quantiles::from_args(&args)?)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(GroupDigests::new(Quantiles::from_args(&args)?)))
    }
}

/// The state of one digest, as DataFusion's `approx_percentile_cont` lays it out: its size,
/// sum, count, maximum and minimum, then its centroids as `[mean, weight, mean, ...]`.
fn digest_state_fields(name: &str) -> Vec<FieldRef> {
    let double = |part: &str| Field::new(format_state_name(name, part), DataType::Float64, false);
    vec![
        Field::new(format_state_name(name, "max_size"), DataType::UInt64, false),
        double("sum"),
        double("count"),
        double("max"),
        double("min"),
        Field::new_list(
            format_state_name(name, "centroids"),
            Field::new_list_field(DataType::Float64, true),
            false,
        ),
    ]
    .into_iter()
    .map(Arc::new)
    .collect()
}

/// What one call asks: the quantiles, in order, and the digest's size.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Quantiles {
    pub(crate) quantiles: Vec<f64>,
    pub(crate) max_size: usize,
}

impl Quantiles {
    /// Reads the constant arguments of a planned call.
    fn from_args(args: &AccumulatorArgs) -> Result<Self> {
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

#[cfg(test)]
mod tests;
