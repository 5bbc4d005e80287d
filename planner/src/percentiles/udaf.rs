//! The `approx_percentiles` aggregate: its signature and coercion, its return type and
//! state, and the accumulators it makes.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::plan_err;
use datafusion::error::Result;
use datafusion::functions_aggregate::approx_percentile_cont::ApproxPercentileCont;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, GroupsAccumulator, Signature, Volatility,
};

use super::digests::{GroupDigests, SingleDigest};
use super::spec::{APPROX_PERCENTILES, Quantiles};

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

    /// DataFusion's `approx_percentile_cont` state (a digest's size, sum, count, maximum,
    /// minimum and `[mean, weight, ...]` centroids), which both accumulators write.
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        ApproxPercentileCont::new().state_fields(args)
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
