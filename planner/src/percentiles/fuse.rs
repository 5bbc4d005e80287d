//! [`FuseApproxPercentiles`]: an aggregation's `approx_percentile_cont` calls over one
//! value (same value, digest size and filter) become one `approx_percentiles` call, whose
//! list a projection above the aggregation takes apart again under the calls' own names.
//!
//! ```text
//! Aggregate [brand] [approx_percentile_cont(p, 0.5) AS median, approx_percentile_cont(p, 0.9) AS p90]
//!   becomes
//! Projection [brand, __percentiles_0[1] AS median, __percentiles_0[2] AS p90]
//!   Aggregate [brand] [approx_percentiles(p, [0.5, 0.9]) AS __percentiles_0]
//! ```
//!
//! A call is left alone when its percentile is not a literal in 0..=1, its value not a
//! double (DataFusion coerces numbers to doubles; a `float` stays a `float`), or it is
//! `DISTINCT`. A descending `WITHIN GROUP (ORDER BY x DESC)` asks for `1 - q`, as
//! DataFusion answers it.

use std::sync::Arc;

use arrow::array::ListArray;
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, ScalarValue};
use datafusion::error::Result;
use datafusion::functions_nested::expr_fn::array_element;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Aggregate, Expr, ExprSchemable, LogicalPlan, Projection, lit};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use super::udaf::approx_percentiles_udaf;

/// DataFusion's name of the calls this rule fuses.
const APPROX_PERCENTILE_CONT: &str = "approx_percentile_cont";

/// The optimizer rule; see the module's documentation.
#[derive(Debug, Default)]
pub struct FuseApproxPercentiles;

/// The calls one fused aggregate answers: what they share, and each call's quantile with
/// its position among the aggregation's expressions.
struct Fused {
    value: Expr,
    size: Option<Expr>,
    filter: Option<Box<Expr>>,
    calls: Vec<(usize, f64)>,
}

impl OptimizerRule for FuseApproxPercentiles {
    fn name(&self) -> &str {
        "fuse_approx_percentiles"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = plan else {
            return Ok(Transformed::no(plan));
        };
        let fused = fusable_calls(&aggregate)?;
        if fused.is_empty() {
            return Ok(Transformed::no(LogicalPlan::Aggregate(aggregate)));
        }
        rewrite(aggregate, fused).map(Transformed::yes)
    }
}

/// The groups of calls in `aggregate` that one `approx_percentiles` can answer.
fn fusable_calls(aggregate: &Aggregate) -> Result<Vec<Fused>> {
    let schema = aggregate.input.schema();
    let mut fused: Vec<Fused> = Vec::new();
    for (position, expr) in aggregate.aggr_expr.iter().enumerate() {
        let Some((call, quantile)) = percentile_call(expr) else {
            continue;
        };
        let value = &call.params.args[0];
        if value.get_type(schema.as_ref())? != DataType::Float64 {
            continue;
        }
        let size = call.params.args.get(2).cloned();
        let filter = call.params.filter.clone();
        match fused
            .iter_mut()
            .find(|f| &f.value == value && f.size == size && f.filter == filter)
        {
            Some(group) => group.calls.push((position, quantile)),
            None => fused.push(Fused {
                value: value.clone(),
                size,
                filter,
                calls: vec![(position, quantile)],
            }),
        }
    }
    Ok(fused)
}

/// `expr` as a fusable `approx_percentile_cont` call and the quantile it asks.
fn percentile_call(expr: &Expr) -> Option<(&AggregateFunction, f64)> {
    let inner = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        other => other,
    };
    let Expr::AggregateFunction(call) = inner else {
        return None;
    };
    let params = &call.params;
    if call.func.name() != APPROX_PERCENTILE_CONT
        || params.distinct
        || !(2..=3).contains(&params.args.len())
        || params.order_by.len() > 1
    {
        return None;
    }
    let Expr::Literal(ScalarValue::Float64(Some(q)), _) = &params.args[1] else {
        return None;
    };
    if !(0.0..=1.0).contains(q) {
        return None;
    }
    let descending = params.order_by.first().is_some_and(|sort| !sort.asc);
    Some((call, if descending { 1.0 - q } else { *q }))
}

/// The aggregation with each group of calls fused, under a projection that gives every
/// output column its old name and type.
fn rewrite(aggregate: Aggregate, fused: Vec<Fused>) -> Result<LogicalPlan> {
    let old_schema = Arc::clone(&aggregate.schema);
    let groups = old_schema.fields().len() - aggregate.aggr_expr.len();
    let taken = |name: &str| old_schema.fields().iter().any(|f| f.name() == name);
    let mut names = Vec::with_capacity(fused.len());
    let mut aggr_expr: Vec<Option<Expr>> = aggregate.aggr_expr.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<Expr>> = vec![None; aggr_expr.len()];
    for (index, group) in fused.into_iter().enumerate() {
        let name = (0..)
            .map(|n| format!("__percentiles_{index}_{n}"))
            .find(|name| !taken(name))
            .unwrap_or_default();
        let quantiles: Vec<f64> = group.calls.iter().map(|(_, q)| *q).collect();
        let list = ListArray::from_iter_primitive::<Float64Type, _, _>([Some(
            quantiles.into_iter().map(Some),
        )]);
        let mut args = vec![group.value, lit(ScalarValue::List(Arc::new(list)))];
        args.extend(group.size);
        let call = Expr::AggregateFunction(AggregateFunction::new_udf(
            approx_percentiles_udaf(),
            args,
            false,
            group.filter,
            Vec::new(),
            None,
        ));
        for (item, (position, _)) in group.calls.iter().enumerate() {
            aggr_expr[*position] = None;
            let element = array_element(
                Expr::Column(Column::from_name(name.clone())),
                lit(item as i64 + 1),
            );
            outputs[*position] = Some(element);
        }
        names.push(call.alias(name.clone()));
    }
    let new_aggr: Vec<Expr> = aggr_expr.into_iter().flatten().chain(names).collect();
    let input = Arc::new(LogicalPlan::Aggregate(Aggregate::try_new(
        aggregate.input,
        aggregate.group_expr,
        new_aggr,
    )?));
    let mut projection = Vec::with_capacity(old_schema.fields().len());
    for (i, (qualifier, field)) in old_schema.iter().enumerate() {
        let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
        let expr = match i.checked_sub(groups).and_then(|a| outputs[a].take()) {
            Some(element) => element.alias_qualified(qualifier.cloned(), field.name()),
            None => column,
        };
        projection.push(expr);
    }
    Ok(LogicalPlan::Projection(Projection::try_new(
        projection, input,
    )?))
}
