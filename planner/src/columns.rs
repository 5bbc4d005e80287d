//! Where a node's output column comes from: the child columns it is read from, through the
//! nodes that pass rows on unchanged or drop some of them. Used to carry a filter on a join
//! key down to where the key is produced (runtime filters, in the planner and in tasks).

use std::sync::Arc;

use datafusion::common::{JoinType, NullEquality};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::projection::ProjectionExec;

/// The `(child, column)` pairs that output column `index` of `plan` equals on every row
/// `plan` emits: the column a projection (of a plain column), a filter or a cooperative
/// wrapper reads; for an inner hash join (nulls never equal), the side's column it comes
/// from and, when that column is an equi-join key given as a column, the other side's key.
/// `None` for any other node, or a column computed from others.
pub fn column_sources(plan: &Arc<dyn ExecutionPlan>, index: usize) -> Option<Vec<(usize, usize)>> {
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let source = projection
            .expr()
            .get(index)
            .and_then(|e| e.expr.downcast_ref::<Column>())?;
        return Some(vec![(0, source.index())]);
    }
    if let Some(filter) = plan.downcast_ref::<FilterExec>() {
        let source = match filter.projection().as_deref() {
            Some(projection) => *projection.get(index)?,
            None => index,
        };
        return Some(vec![(0, source)]);
    }
    if plan.downcast_ref::<CooperativeExec>().is_some() {
        return Some(vec![(0, index)]);
    }
    let join = plan.downcast_ref::<HashJoinExec>()?;
    if *join.join_type() != JoinType::Inner
        || join.null_equality() != NullEquality::NullEqualsNothing
    {
        return None;
    }
    let joined = match join.projection.as_deref() {
        Some(projection) => *projection.get(index)?,
        None => index,
    };
    let left_width = join.left().schema().fields().len();
    let (side, side_index) = if joined < left_width {
        (0, joined)
    } else {
        (1, joined - left_width)
    };
    let is_column = |expr: &Arc<dyn PhysicalExpr>, i: usize| {
        expr.downcast_ref::<Column>()
            .is_some_and(|c| c.index() == i)
    };
    let mut sources = vec![(side, side_index)];
    let partner = join.on().iter().find_map(|(l, r)| {
        let (own, other) = if side == 0 { (l, r) } else { (r, l) };
        is_column(own, side_index)
            .then(|| other.downcast_ref::<Column>().map(Column::index))
            .flatten()
    });
    if let Some(other) = partner {
        sources.push((1 - side, other));
    }
    Some(sources)
}
