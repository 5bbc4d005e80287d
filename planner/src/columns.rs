//! Where a node's output column comes from: the child columns it is read from, through the
//! nodes that pass rows on unchanged or drop some of them. Used to carry a filter on a join
//! key down to where the key is produced (runtime filters, in the planner and in tasks), and
//! the rebuild of a node whose children took such a filter.

use std::sync::Arc;

use datafusion::common::{JoinType, NullEquality};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, replace_children_if_necessary};

/// The `(child, column)` pairs that output column `index` of `plan` equals on every row
/// `plan` emits: the column a projection (of a plain column), a filter or a cooperative
/// wrapper reads; for a hash join (nulls never equal), the column of a side whose rows it
/// passes on whole (both sides of an inner join, the preserved side of an outer join, the
/// side a semi or anti join keeps) and, for an inner join whose column is an equi-join key
/// given as a column, the other side's key. A filter on such a column may therefore run
/// below the node instead: it drops the same output rows. `None` for any other node, a
/// column computed from others, or a column an outer join may fill with nulls.
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
    if join.null_equality() != NullEquality::NullEqualsNothing {
        return None;
    }
    let joined = match join.projection.as_deref() {
        Some(projection) => *projection.get(index)?,
        None => index,
    };
    let left_width = join.left().schema().fields().len();
    let right_width = join.right().schema().fields().len();
    let (side, side_index) = match join.join_type() {
        // Left columns, then right ones; an outer join's other side may be all nulls.
        JoinType::Inner => match joined.checked_sub(left_width) {
            None => (0, joined),
            Some(right) => (1, right),
        },
        JoinType::Left => (joined < left_width).then_some((0, joined))?,
        JoinType::Right => (1, joined.checked_sub(left_width)?),
        // One side's columns (a mark join adds its mark after them).
        JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
            (joined < left_width).then_some((0, joined))?
        }
        JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
            (joined < right_width).then_some((1, joined))?
        }
        JoinType::Full => return None,
    };
    let mut sources = vec![(side, side_index)];
    if *join.join_type() == JoinType::Inner {
        let is_column = |expr: &Arc<dyn PhysicalExpr>, i: usize| {
            expr.downcast_ref::<Column>()
                .is_some_and(|c| c.index() == i)
        };
        let partner = join.on().iter().find_map(|(l, r)| {
            let (own, other) = if side == 0 { (l, r) } else { (r, l) };
            is_column(own, side_index)
                .then(|| other.downcast_ref::<Column>().map(Column::index))
                .flatten()
        });
        if let Some(other) = partner {
            sources.push((1 - side, other));
        }
    }
    Some(sources)
}

/// `plan` with `push` applied to each `(child, column)` of `targets` (what
/// [`column_sources`] gave), the children it changed put in; `None` when it changed none.
pub fn push_into_children(
    plan: &Arc<dyn ExecutionPlan>,
    targets: &[(usize, usize)],
    mut push: impl FnMut(
        &Arc<dyn ExecutionPlan>,
        usize,
    ) -> datafusion::error::Result<Option<Arc<dyn ExecutionPlan>>>,
) -> datafusion::error::Result<Option<Arc<dyn ExecutionPlan>>> {
    let mut children: Vec<Arc<dyn ExecutionPlan>> =
        plan.children().into_iter().map(Arc::clone).collect();
    let mut changed = false;
    for &(child, column) in targets {
        let Some(current) = children.get(child) else {
            continue;
        };
        if let Some(pushed) = push(current, column)? {
            children[child] = pushed;
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }
    Ok(Some(replace_children_if_necessary(
        Arc::clone(plan),
        children,
    )?))
}
