//! [`StageFacts`]: what adaptive execution may change in a stage, read from its plan with
//! no I/O when the job is planned. The scheduler decides from these facts and the sizes the
//! stage's inputs turned out to have, without ever decoding a plan:
//!
//! - **partitioned inputs**: input stages read partition by partition (hash or round-robin
//!   outputs with one partition per task of this stage);
//! - **coalescable**: every leaf is a shuffle read, so a task may read a run of adjacent
//!   partitions of every partitioned input at once;
//! - **splittable inputs**: partitioned inputs in which the stage is *linear*: running it
//!   on slices of that input's map outputs (every other input whole) and putting the
//!   outputs together gives what running it on the whole input gives (inner and outer
//!   joins on their preserved side, partial aggregates, filters, projections);
//! - **joins**: pairs of partitioned inputs that meet at a partitioned equi-join, the
//!   candidates of the broadcast switch;
//! - **empty-if inputs**: inputs any of which, when a task reads no row of it, leave the
//!   task with no output (an inner join's sides; not an outer join's optional side, not
//!   below an aggregate without groups, which answers one row even for no input).

use std::sync::Arc;

use datafusion::common::JoinType;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode, SortMergeJoinExec};
use datafusion::physical_plan::sorts::sort::SortExec;

use crate::shuffle::{ShuffleOutput, ShuffleReaderExec};
use crate::sink::StagedWriteExec;
use crate::stage::{StageGraph, StageId};

/// What adaptive execution may change in one stage (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StageFacts {
    /// Inputs read partition by partition, in ascending order.
    #[serde(default)]
    pub partitioned: Vec<StageId>,
    /// Every leaf is a shuffle read: adjacent partitions may be read by one task.
    #[serde(default)]
    pub coalescable: bool,
    /// Partitioned inputs whose map outputs may be read in slices by separate tasks.
    #[serde(default)]
    pub splittable: Vec<StageId>,
    /// Pairs `[build, probe]` of partitioned inputs joined on their partitioning keys.
    #[serde(default)]
    pub joins: Vec<[StageId; 2]>,
    /// Inputs any of which, read empty by a task, leave its output empty.
    #[serde(default)]
    pub empty_if: Vec<StageId>,
    /// The stage writes files (a sink): its tasks keep one plan partition each.
    #[serde(default)]
    pub writes: bool,
}

/// The facts of stage `id` of `graph` (default facts for an id not in it).
pub fn stage_facts(graph: &StageGraph, id: StageId) -> StageFacts {
    let Some(stage) = graph.stage(id) else {
        return StageFacts::default();
    };
    let partitions = stage.partitions();
    let body = Arc::clone(stage.writer().input());
    let mut leaves = Leaves {
        only_reads: true,
        ..Leaves::default()
    };
    leaves.collect(&body, graph, partitions);
    let mut facts = StageFacts {
        partitioned: leaves.partitioned.clone(),
        coalescable: leaves.only_reads && partitions > 1,
        writes: leaves.writes,
        ..StageFacts::default()
    };
    facts.partitioned.sort_unstable();
    facts.partitioned.dedup();
    facts.splittable = facts
        .partitioned
        .iter()
        .copied()
        .filter(|&input| leaves.read_once(input) && linear(&body, input))
        .collect();
    collect_joins(&body, &facts.partitioned, &mut facts.joins);
    if !facts.writes {
        let mut empty = empty_if(&body);
        empty.sort_unstable();
        empty.dedup();
        facts.empty_if = empty;
    }
    facts
}

/// What the leaves of a stage plan are.
#[derive(Default)]
struct Leaves {
    /// Inputs read partition by partition (one entry per reader).
    partitioned: Vec<StageId>,
    /// Every leaf is a reader of a partitioned input or of a one-partition input.
    only_reads: bool,
    /// Readers seen, by input.
    readers: Vec<StageId>,
    /// A sink lies in the plan.
    writes: bool,
}

impl Leaves {
    fn collect(&mut self, plan: &Arc<dyn ExecutionPlan>, graph: &StageGraph, partitions: usize) {
        if plan.downcast_ref::<StagedWriteExec>().is_some()
            || plan
                .downcast_ref::<ember_connectors::postgres::PostgresWriteExec>()
                .is_some()
            || plan
                .downcast_ref::<ember_connectors::kafka::KafkaWriteExec>()
                .is_some()
        {
            self.writes = true;
        }
        if let Some(reader) = plan.downcast_ref::<ShuffleReaderExec>() {
            let input = reader.stage_id();
            self.readers.push(input);
            let count = reader.partitioning().partition_count();
            let by_partition = graph.stage(input).is_some_and(|s| {
                matches!(
                    s.output(),
                    ShuffleOutput::Hash { .. } | ShuffleOutput::RoundRobin { .. }
                )
            });
            if by_partition && count == partitions {
                self.partitioned.push(input);
            } else if count != 1
                || !matches!(
                    graph.stage(input).map(|s| s.output()),
                    Some(ShuffleOutput::Single)
                )
            {
                self.only_reads = false;
            }
            return;
        }
        let children = plan.children();
        if children.is_empty() {
            self.only_reads = false;
        }
        for child in children {
            self.collect(child, graph, partitions);
        }
    }

    /// Whether `input` is read by exactly one reader of the stage.
    fn read_once(&self, input: StageId) -> bool {
        self.readers.iter().filter(|&&r| r == input).count() == 1
    }
}

/// Whether a reader of `input` lies in `plan`.
fn reads(plan: &Arc<dyn ExecutionPlan>, input: StageId) -> bool {
    if let Some(reader) = plan.downcast_ref::<ShuffleReaderExec>() {
        return reader.stage_id() == input;
    }
    plan.children().into_iter().any(|c| reads(c, input))
}

/// Operators that pass each input row on by itself (or drop it) and keep no state.
fn passes_rows(plan: &Arc<dyn ExecutionPlan>) -> bool {
    matches!(
        plan.name(),
        "ProjectionExec" | "FilterExec" | "CoalesceBatchesExec" | "CooperativeExec"
    )
}

/// Whether a join of `join_type` keeps the rows of its left (`left = true`) or right
/// side one by one, so that slices of that side may be joined apart.
fn linear_side(join_type: JoinType, left: bool) -> bool {
    if left {
        matches!(
            join_type,
            JoinType::Inner
                | JoinType::Left
                | JoinType::LeftSemi
                | JoinType::LeftAnti
                | JoinType::LeftMark
        )
    } else {
        matches!(
            join_type,
            JoinType::Inner
                | JoinType::Right
                | JoinType::RightSemi
                | JoinType::RightAnti
                | JoinType::RightMark
        )
    }
}

/// A join's type and its left and right sides.
type JoinSides<'a> = (
    JoinType,
    &'a Arc<dyn ExecutionPlan>,
    &'a Arc<dyn ExecutionPlan>,
);

/// The type and sides of a hash or sort-merge equi-join.
fn join_sides(plan: &Arc<dyn ExecutionPlan>) -> Option<JoinSides<'_>> {
    if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
        return Some((*join.join_type(), join.left(), join.right()));
    }
    plan.downcast_ref::<SortMergeJoinExec>()
        .map(|join| (join.join_type(), join.left(), join.right()))
}

/// Whether `plan`'s output over the whole of `input` is the union of its outputs over
/// slices of `input` (every other input whole).
fn linear(plan: &Arc<dyn ExecutionPlan>, input: StageId) -> bool {
    if !reads(plan, input) {
        return true;
    }
    if plan.downcast_ref::<ShuffleReaderExec>().is_some() {
        return true;
    }
    if plan.fetch().is_some() {
        return false;
    }
    let children = plan.children();
    if passes_rows(plan) {
        return children.iter().all(|c| linear(c, input));
    }
    if let Some(aggregate) = plan.downcast_ref::<AggregateExec>() {
        return *aggregate.mode() == AggregateMode::Partial && linear(aggregate.input(), input);
    }
    if let Some(sort) = plan.downcast_ref::<SortExec>() {
        return linear(sort.input(), input);
    }
    if let Some((join_type, left, right)) = join_sides(plan) {
        let (in_left, in_right) = (reads(left, input), reads(right, input));
        return match (in_left, in_right) {
            (true, false) => linear_side(join_type, true) && linear(left, input),
            (false, true) => linear_side(join_type, false) && linear(right, input),
            _ => false,
        };
    }
    false
}

/// The partitioned input that `plan` reads through row-passing operators only, if one.
fn single_partitioned_input(
    plan: &Arc<dyn ExecutionPlan>,
    partitioned: &[StageId],
) -> Option<StageId> {
    if let Some(reader) = plan.downcast_ref::<ShuffleReaderExec>() {
        return partitioned
            .contains(&reader.stage_id())
            .then_some(reader.stage_id());
    }
    if passes_rows(plan) || plan.name() == "SortExec" {
        let children = plan.children();
        if let [child] = children.as_slice() {
            return single_partitioned_input(child, partitioned);
        }
    }
    None
}

/// Every partitioned equi-join of two partitioned inputs read right below it.
fn collect_joins(
    plan: &Arc<dyn ExecutionPlan>,
    partitioned: &[StageId],
    out: &mut Vec<[StageId; 2]>,
) {
    let sides = if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
        (*join.partition_mode() == PartitionMode::Partitioned && join.fetch().is_none())
            .then(|| (join.left(), join.right()))
    } else {
        plan.downcast_ref::<SortMergeJoinExec>()
            .map(|join| (join.left(), join.right()))
    };
    if let Some((left, right)) = sides
        && let (Some(build), Some(probe)) = (
            single_partitioned_input(left, partitioned),
            single_partitioned_input(right, partitioned),
        )
        && build != probe
    {
        out.push([build, probe]);
    }
    for child in plan.children() {
        collect_joins(child, partitioned, out);
    }
}

/// Inputs any of which, read empty, leave `plan`'s output empty.
fn empty_if(plan: &Arc<dyn ExecutionPlan>) -> Vec<StageId> {
    if let Some(reader) = plan.downcast_ref::<ShuffleReaderExec>() {
        return vec![reader.stage_id()];
    }
    if passes_rows(plan)
        || matches!(
            plan.name(),
            "SortExec" | "GlobalLimitExec" | "LocalLimitExec"
        )
    {
        return plan
            .children()
            .first()
            .map(|c| empty_if(c))
            .unwrap_or_default();
    }
    if let Some(aggregate) = plan.downcast_ref::<AggregateExec>() {
        // Without groups an aggregate answers one row, even for no input.
        if aggregate.group_expr().is_empty() {
            return Vec::new();
        }
        return empty_if(aggregate.input());
    }
    if let Some((join_type, left, right)) = join_sides(plan) {
        // A join answers nothing for an empty side whose rows it keeps one by one, and a
        // semi join nothing for an empty side it matches against.
        let semi = matches!(join_type, JoinType::LeftSemi | JoinType::RightSemi);
        let needs_left = linear_side(join_type, true) || semi;
        let needs_right = linear_side(join_type, false) || semi;
        let mut out = Vec::new();
        if needs_left {
            out.extend(empty_if(left));
        }
        if needs_right {
            out.extend(empty_if(right));
        }
        return out;
    }
    Vec::new()
}
