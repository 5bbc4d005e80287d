//! Joins that must see every probe partition in one task.
//!
//! A hash join in `CollectLeft` mode (and a nested loop join) of type left, full,
//! left-semi, left-anti or left-mark emits its unmatched (or matched) build-side rows after
//! the *last* probe partition of the process is done: DataFusion counts the partitions in
//! state shared between them. When each probe partition runs as its own task, no task ever
//! sees the last one, and those rows would be lost or repeated. Before cutting, such joins
//! are rewritten so that one task sees all it needs:
//!
//! - left-semi and left-anti hash joins keep their collected build side and learn which of
//!   its keys the probe side holds: every probe task joins its partition to the broadcast
//!   build side (a right-semi join), keeps the distinct matching keys (with the probe
//!   columns the join's filter reads), and one task joins the build side to all of them.
//!   Only probe rows that match some build row cross the shuffle, and only their keys;
//! - other hash joins become `Partitioned` joins, both sides hash-repartitioned on the join
//!   keys (each task then owns a disjoint slice of the build side);
//! - null-aware anti joins (`NOT IN`) and nested loop joins keep one build side but get
//!   their probe side merged into a single partition.

use std::sync::Arc;

use datafusion::common::{JoinSide, JoinType, NullEquality};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{PhysicalExpr, physical_exprs_equal};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::utils::{ColumnIndex, JoinFilter};
use datafusion::physical_plan::joins::{
    HashJoinExec, HashJoinExecBuilder, NestedLoopJoinExec, PartitionMode,
};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, Partitioning, replace_children_if_necessary,
};

use crate::error::Result;
use crate::rewrite::rewrite_up;
use crate::semi_filters::is_shared_once;

/// Whether a join of this type emits build-side rows once all probe partitions are done.
fn emits_build_side_at_end(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Left
            | JoinType::Full
            | JoinType::LeftSemi
            | JoinType::LeftAnti
            | JoinType::LeftMark
    )
}

/// `input` hash-partitioned on `keys` into `count` partitions: as it is when it already
/// is (the output of a join on the same keys), through a repartition otherwise.
fn hash_partitioned(
    input: Arc<dyn ExecutionPlan>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    count: usize,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    if let Partitioning::Hash(existing, n) = input.output_partitioning()
        && *n == count
        && physical_exprs_equal(existing, &keys)
    {
        return Ok(input);
    }
    Ok(Arc::new(RepartitionExec::try_new(
        input,
        Partitioning::Hash(keys, count),
    )?))
}

/// `join` with its probe side (`right`) merged into one partition.
fn merged_probe_side(
    join: &Arc<dyn ExecutionPlan>,
    left: &Arc<dyn ExecutionPlan>,
    right: &Arc<dyn ExecutionPlan>,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    let right: Arc<dyn ExecutionPlan> = Arc::new(CoalescePartitionsExec::new(Arc::clone(right)));
    let rewritten = replace_children_if_necessary(Arc::clone(join), vec![Arc::clone(left), right])?;
    Ok(rewritten)
}

/// A left-semi or left-anti `CollectLeft` join, rewritten to shuffle the distinct probe
/// keys that match its build side instead of its probe side:
///
/// ```text
/// HashJoinExec(CollectLeft, LeftSemi | LeftAnti, on = [(l, key_0)])      one task
///   build ─────────────────────────────────┐ (the same node: one stage, read twice)
///   CoalescePartitionsExec                  │
///     AggregateExec(Partial, gby = [r as key_0])                           every probe task
///       HashJoinExec(CollectLeft, RightSemi, on = [(l, r)])
///         build ◀───────────────────────────┘
///         probe
/// ```
///
/// A build row matches the probe side exactly when its keys are among the probe keys that
/// match some build row, so both joins keep the rows they kept before. A filter reads probe
/// columns too: those are grouped on with the keys (`filter_<index>`) and the filter reads
/// them there, so each build row still meets every distinct probe value it met before.
/// `None` for a join this does not apply to.
fn semi_join_by_matched_keys(
    join: &HashJoinExec,
) -> datafusion::error::Result<Option<Arc<dyn ExecutionPlan>>> {
    let applies = matches!(join.join_type(), JoinType::LeftSemi | JoinType::LeftAnti)
        && join.null_equality() == NullEquality::NullEqualsNothing
        && !join.null_aware
        && is_shared_once(join.left());
    if !applies {
        return Ok(None);
    }
    let build = Arc::clone(join.left());
    let probe = Arc::clone(join.right());
    let probe_schema = probe.schema();
    // The probe columns a filter reads travel with the keys, one distinct row per
    // combination; the filter then reads them from there.
    let filter_columns: Vec<usize> = {
        let mut columns: Vec<usize> = join
            .filter()
            .map(|f| {
                f.column_indices()
                    .iter()
                    .filter(|c| c.side == JoinSide::Right)
                    .map(|c| c.index)
                    .collect()
            })
            .unwrap_or_default();
        columns.sort_unstable();
        columns.dedup();
        columns
    };
    let matched = HashJoinExecBuilder::new(
        Arc::clone(&build),
        probe,
        join.on().to_vec(),
        JoinType::RightSemi,
    )
    .with_partition_mode(PartitionMode::CollectLeft)
    .build_exec()?;
    let mut keys: Vec<(Arc<dyn PhysicalExpr>, String)> = join
        .on()
        .iter()
        .enumerate()
        .map(|(i, (_, r))| (Arc::clone(r), format!("key_{i}")))
        .collect();
    for &index in &filter_columns {
        let name = probe_schema.field(index).name();
        let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(name, index));
        keys.push((column, format!("filter_{index}")));
    }
    let key_count = join.on().len();
    let matched_schema = matched.schema();
    let distinct: Arc<dyn ExecutionPlan> = Arc::new(AggregateExec::try_new(
        AggregateMode::Partial,
        PhysicalGroupBy::new_single(keys),
        vec![],
        vec![],
        matched,
        matched_schema,
    )?);
    let distinct_schema = distinct.schema();
    let all_keys: Arc<dyn ExecutionPlan> = Arc::new(CoalescePartitionsExec::new(distinct));
    let on = join
        .on()
        .iter()
        .enumerate()
        .map(|(i, (l, _))| {
            let column = Column::new_with_schema(&format!("key_{i}"), &distinct_schema)?;
            Ok((Arc::clone(l), Arc::new(column) as Arc<dyn PhysicalExpr>))
        })
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    let filter = join.filter().map(|f| {
        let columns = f
            .column_indices()
            .iter()
            .map(|c| match c.side {
                JoinSide::Right => ColumnIndex {
                    index: key_count
                        + filter_columns
                            .iter()
                            .position(|&i| i == c.index)
                            .unwrap_or_default(),
                    side: JoinSide::Right,
                },
                _ => c.clone(),
            })
            .collect();
        JoinFilter::new(Arc::clone(f.expression()), columns, Arc::clone(f.schema()))
    });
    let rewritten = join
        .builder()
        .with_on(on)
        .with_filter(filter)
        .with_new_children(vec![build, all_keys])?
        .build_exec()?;
    Ok(Some(rewritten))
}

/// Rewrites every join of `plan` that needs all probe partitions in one task.
pub(crate) fn make_joins_task_local(
    plan: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(rewrite_up(plan, &mut |node| {
        let probe_partitions =
            |right: &Arc<dyn ExecutionPlan>| right.output_partitioning().partition_count();
        if let Some(join) = node.downcast_ref::<HashJoinExec>() {
            let risky = *join.partition_mode() == PartitionMode::CollectLeft
                && emits_build_side_at_end(*join.join_type())
                && probe_partitions(join.right()) > 1;
            if !risky {
                return Ok(node);
            }
            if join.null_aware {
                return merged_probe_side(&node, join.left(), join.right());
            }
            if let Some(rewritten) = semi_join_by_matched_keys(join)? {
                return Ok(rewritten);
            }
            let count = probe_partitions(join.right());
            // The merge of the build side goes; a limit it carried stays.
            let build = match join.left().downcast_ref::<CoalescePartitionsExec>() {
                Some(coalesce) if coalesce.fetch().is_none() => Arc::clone(coalesce.input()),
                _ => Arc::clone(join.left()),
            };
            let left_keys = join.on().iter().map(|(l, _)| Arc::clone(l)).collect();
            let right_keys = join.on().iter().map(|(_, r)| Arc::clone(r)).collect();
            let left = hash_partitioned(build, left_keys, count)?;
            let right = hash_partitioned(Arc::clone(join.right()), right_keys, count)?;
            let partitioned = join
                .builder()
                .with_partition_mode(PartitionMode::Partitioned)
                .with_new_children(vec![left, right])?
                .build_exec()?;
            return Ok(partitioned);
        }
        if let Some(join) = node.downcast_ref::<NestedLoopJoinExec>()
            && emits_build_side_at_end(*join.join_type())
            && probe_partitions(join.right()) > 1
        {
            return merged_probe_side(&node, join.left(), join.right());
        }
        Ok(node)
    })?)
}
