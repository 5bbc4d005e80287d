//! Joins that must see every probe partition in one task.
//!
//! A hash join in `CollectLeft` mode (and a nested loop join) of type left, full,
//! left-semi, left-anti or left-mark emits its unmatched (or matched) build-side rows after
//! the *last* probe partition of the process is done: DataFusion counts the partitions in
//! state shared between them. When each probe partition runs as its own task, no task ever
//! sees the last one, and those rows would be lost or repeated. Before cutting, such joins
//! are rewritten so that one task sees all it needs:
//!
//! - hash joins become `Partitioned` joins, both sides hash-repartitioned on the join keys
//!   (each task then owns a disjoint slice of the build side);
//! - null-aware anti joins (`NOT IN`) and nested loop joins keep one build side but get
//!   their probe side merged into a single partition.

use std::sync::Arc;

use datafusion::common::JoinType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::physical_expr::{PhysicalExpr, physical_exprs_equal};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, PartitionMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, Partitioning, replace_children_if_necessary,
};

use crate::error::Result;

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
) -> datafusion::error::Result<Transformed<Arc<dyn ExecutionPlan>>> {
    let right: Arc<dyn ExecutionPlan> = Arc::new(CoalescePartitionsExec::new(Arc::clone(right)));
    let rewritten = replace_children_if_necessary(Arc::clone(join), vec![Arc::clone(left), right])?;
    Ok(Transformed::yes(rewritten))
}

/// Rewrites every join of `plan` that needs all probe partitions in one task.
pub(crate) fn make_joins_task_local(
    plan: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let rewritten = plan.transform_up(|node| {
        let probe_partitions =
            |right: &Arc<dyn ExecutionPlan>| right.output_partitioning().partition_count();
        if let Some(join) = node.downcast_ref::<HashJoinExec>() {
            let risky = *join.partition_mode() == PartitionMode::CollectLeft
                && emits_build_side_at_end(*join.join_type())
                && probe_partitions(join.right()) > 1;
            if !risky {
                return Ok(Transformed::no(node));
            }
            if join.null_aware {
                return merged_probe_side(&node, join.left(), join.right());
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
            return Ok(Transformed::yes(partitioned));
        }
        if let Some(join) = node.downcast_ref::<NestedLoopJoinExec>()
            && emits_build_side_at_end(*join.join_type())
            && probe_partitions(join.right()) > 1
        {
            return merged_probe_side(&node, join.left(), join.right());
        }
        Ok(Transformed::no(node))
    })?;
    Ok(rewritten.data)
}
