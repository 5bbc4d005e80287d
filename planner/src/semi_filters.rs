//! Runtime filters: a broadcast join's build side applied below the shuffles of its probe
//! side.
//!
//! A hash join whose build side is collected (small, broadcast to every task) drops every
//! probe row whose key is not among the build side's keys: an inner join matches equal
//! non-null keys only, and a right-semi join keeps only the probe rows that match. When the
//! probe side is made of inner joins over shuffled inputs, every row those inputs shuffle
//! that carries a key outside the build side is dropped later anyway. DataFusion prunes
//! such rows in one process with dynamic filters, which cannot span Ember's tasks; instead
//! a right-semi join against the build side's keys (what Spark calls a runtime filter) is
//! applied right before each shuffle that carries the key column, so that only rows that
//! can match are written, and the probe side's map stages run after the build side's:
//!
//! ```text
//! Inner(CollectLeft, on = [(b, o_orderkey)])           Inner(CollectLeft, on = [(b, o_orderkey)])
//!   build B                                               build B ──────────────────────────┐ (one stage)
//!   Inner(Partitioned, on = [(o_orderkey, l_orderkey)])   Inner(Partitioned, ...)          │
//!     Repartition(hash(o_orderkey)) ◀ orders      ──▶        Repartition(hash(o_orderkey)) │
//!     Repartition(hash(l_orderkey)) ◀ lineitem                 RightSemi(keys of B, orders) ◀┤
//!                                                            Repartition(hash(l_orderkey)) │
//!                                                              RightSemi(keys of B, lineitem) ◀┘
//! ```
//!
//! Right-semi joins get the filter always; inner joins only when their build side holds a
//! filter (a build side that is a whole dimension table keeps every probe row, and the
//! filter would only cost a probe per row and a wait for the build stage). The filter
//! uses one equi-join key (the first that reaches a shuffle), the build side reduced to
//! that key. The key column is followed through projections, filters and joins, as
//! [`column_sources`] says (an inner join: to both sides where it is an equi-join key, to
//! its own side otherwise; an outer, semi or anti join: to the side it passes on whole,
//! never to a side it fills with nulls), and the filter goes under the lowest shuffle on
//! each path. `ember.optimizer.runtime_filters=false` turns it
//! off.

use std::sync::Arc;

use datafusion::common::{JoinType, NullEquality};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{HashJoinExec, HashJoinExecBuilder, PartitionMode};
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::physical_plan::{Partitioning, replace_children_if_necessary};

use crate::columns::{column_sources, push_into_children};
use crate::error::Result;
use crate::rewrite::rewrite_up;

/// `plan` with the filter of every eligible broadcast join also applied below the shuffles
/// of its probe side.
pub(crate) fn push_semi_filters(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(rewrite_up(plan, &mut |node| {
        let Some(join) = node.downcast_ref::<HashJoinExec>() else {
            return Ok(node);
        };
        let filters_probe = match join.join_type() {
            JoinType::RightSemi => true,
            JoinType::Inner => holds_filter(join.left()),
            _ => false,
        };
        let eligible = filters_probe
            && *join.partition_mode() == PartitionMode::CollectLeft
            && join.null_equality() == NullEquality::NullEqualsNothing
            && !join.null_aware
            && is_shared_once(join.left());
        if !eligible {
            return Ok(node);
        }
        for (build_key, probe_key) in join.on() {
            let Some(column) = probe_key.downcast_ref::<Column>() else {
                continue;
            };
            let filter = SemiFilter::new(join.left(), build_key)?;
            if let Some(probe) = filter.push(join.right(), column.index())? {
                return join
                    .builder()
                    .with_new_children(vec![Arc::clone(join.left()), probe])?
                    .build_exec();
            }
        }
        Ok(node)
    })?)
}

/// Whether `plan` drops rows of its inputs by a predicate somewhere: a build side worth
/// filtering the probe side by.
fn holds_filter(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<FilterExec>().is_some() || plan.children().into_iter().any(holds_filter)
}

/// Whether `build` is computed once however many places read it: a merge of several
/// partitions, which becomes a stage of its own. Anything else would be recomputed in every
/// stage that reads it, and a volatile expression (`random()`) in it would give each place
/// different rows.
pub(crate) fn is_shared_once(build: &Arc<dyn ExecutionPlan>) -> bool {
    build
        .downcast_ref::<CoalescePartitionsExec>()
        .is_some_and(|merge| {
            merge.fetch().is_none() && merge.input().output_partitioning().partition_count() > 1
        })
}

/// The keys of a broadcast join's build side: one column, `k`.
struct SemiFilter {
    build: Arc<dyn ExecutionPlan>,
}

impl SemiFilter {
    /// The filter by `key` of the build side `build`: the same (shared) build stage, only
    /// that key read from it.
    fn new(
        build: &Arc<dyn ExecutionPlan>,
        key: &Arc<dyn PhysicalExpr>,
    ) -> datafusion::error::Result<Self> {
        let keys = ProjectionExec::try_new(
            [ProjectionExpr::new(Arc::clone(key), "k".to_string())],
            Arc::clone(build),
        )?;
        Ok(Self {
            build: Arc::new(keys),
        })
    }

    /// `plan` with the filter on its column `index` applied under every shuffle that
    /// carries the column; `None` when there is no such shuffle.
    fn push(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        index: usize,
    ) -> datafusion::error::Result<Option<Arc<dyn ExecutionPlan>>> {
        // Below a limit, the filter would change which rows the limit keeps.
        if plan.fetch().is_some() {
            return Ok(None);
        }
        if let Some(repartition) = plan.downcast_ref::<RepartitionExec>() {
            if !matches!(repartition.partitioning(), Partitioning::Hash(..))
                || repartition.preserve_order()
            {
                return Ok(None);
            }
            let input = repartition.input();
            let filtered = match self.push(input, index)? {
                Some(deeper) => deeper,
                None => match self.semi_join(input, index)? {
                    Some(joined) => joined,
                    None => return Ok(None),
                },
            };
            return Ok(Some(replace_children_if_necessary(
                Arc::clone(plan),
                vec![filtered],
            )?));
        }
        let Some(mut targets) = column_sources(plan, index) else {
            return Ok(None);
        };
        // A collected build side is merged below the join: leave it whole.
        if let Some(join) = plan.downcast_ref::<HashJoinExec>()
            && *join.partition_mode() == PartitionMode::CollectLeft
        {
            targets.retain(|(side, _)| *side == 1);
        }
        push_into_children(plan, &targets, |child, column| self.push(child, column))
    }

    /// The rows of `input` whose column `index` is among the build side's keys; `None`
    /// when the column's type differs from the key's.
    fn semi_join(
        &self,
        input: &Arc<dyn ExecutionPlan>,
        index: usize,
    ) -> datafusion::error::Result<Option<Arc<dyn ExecutionPlan>>> {
        let schema = input.schema();
        let field = schema.field(index);
        let build_schema = self.build.schema();
        if build_schema.field(0).data_type() != field.data_type() {
            return Ok(None);
        }
        let key: Arc<dyn PhysicalExpr> = Arc::new(Column::new(field.name(), index));
        let build_key: Arc<dyn PhysicalExpr> = Arc::new(Column::new("k", 0));
        HashJoinExecBuilder::new(
            Arc::clone(&self.build),
            Arc::clone(input),
            vec![(build_key, key)],
            JoinType::RightSemi,
        )
        .with_partition_mode(PartitionMode::CollectLeft)
        .build_exec()
        .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::execution::TaskContext;
    use datafusion::physical_plan::{collect, displayable};

    /// A table of `columns` (Int64) in `partitions` partitions, row `i` holding
    /// `i % modulus` and `i * 10`.
    fn table(
        columns: [&str; 2],
        rows: i64,
        modulus: i64,
        partitions: usize,
    ) -> Arc<dyn ExecutionPlan> {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(*c, DataType::Int64, true))
                .collect::<Vec<_>>(),
        ));
        let parts: Vec<Vec<RecordBatch>> = (0..partitions as i64)
            .map(|p| {
                let rows: Vec<i64> = (0..rows).filter(|i| i % partitions as i64 == p).collect();
                let ids: Vec<i64> = rows.iter().map(|i| i % modulus).collect();
                let tens: Vec<i64> = rows.iter().map(|i| i * 10).collect();
                vec![
                    RecordBatch::try_new(
                        Arc::clone(&schema),
                        vec![
                            Arc::new(Int64Array::from(ids)),
                            Arc::new(Int64Array::from(tens)),
                        ],
                    )
                    .expect("valid batch"),
                ]
            })
            .collect();
        MemorySourceConfig::try_new_exec(&parts, schema, None).expect("memory table")
    }

    fn col(name: &str, index: usize) -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new(name, index))
    }

    fn hashed(input: Arc<dyn ExecutionPlan>, key: &str) -> Arc<dyn ExecutionPlan> {
        Arc::new(
            RepartitionExec::try_new(input, Partitioning::Hash(vec![col(key, 0)], 2))
                .expect("repartition"),
        )
    }

    /// RightSemi(build keys {3, 5, 7, 1000}) over Inner(orders x items on their ids).
    fn semi_over_inner_join() -> Arc<dyn ExecutionPlan> {
        let wanted = {
            let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
            let batch = |keys: Vec<i64>| {
                RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from(keys))])
                    .expect("valid batch")
            };
            let parts = [vec![batch(vec![3, 5])], vec![batch(vec![7, 1000])]];
            let table: Arc<dyn ExecutionPlan> =
                MemorySourceConfig::try_new_exec(&parts, schema, None).expect("memory table");
            Arc::new(CoalescePartitionsExec::new(table)) as Arc<dyn ExecutionPlan>
        };
        let orders = hashed(table(["o_id", "o_total"], 100, 100, 2), "o_id");
        let items = hashed(table(["i_order", "i_price"], 300, 100, 3), "i_order");
        let inner = HashJoinExecBuilder::new(
            orders,
            items,
            vec![(col("o_id", 0), col("i_order", 0))],
            JoinType::Inner,
        )
        .with_partition_mode(PartitionMode::Partitioned)
        .with_projection(Some(vec![1, 0, 3]))
        .build_exec()
        .expect("inner join");
        // The join outputs (o_total, o_id, i_price); the semi join keys on o_id (column 1).
        HashJoinExecBuilder::new(
            wanted,
            inner,
            vec![(col("k", 0), col("o_id", 1))],
            JoinType::RightSemi,
        )
        .with_partition_mode(PartitionMode::CollectLeft)
        .build_exec()
        .expect("semi join")
    }

    /// Right-semi joins right under a repartition in the plan's `text`.
    fn filters_under_shuffles(text: &str) -> usize {
        let lines: Vec<&str> = text.lines().collect();
        lines
            .windows(2)
            .filter(|w| w[0].contains("RepartitionExec") && w[1].contains("join_type=RightSemi"))
            .count()
    }

    async fn sorted_rows(plan: Arc<dyn ExecutionPlan>) -> Vec<String> {
        let batches = collect(plan, Arc::new(TaskContext::default()))
            .await
            .expect("runs");
        let mut rows: Vec<String> = arrow::util::pretty::pretty_format_batches(&batches)
            .expect("formats")
            .to_string()
            .lines()
            .filter(|l| l.starts_with("| ") && !l.contains("o_total"))
            .map(str::to_string)
            .collect();
        rows.sort();
        rows
    }

    #[tokio::test]
    async fn the_filter_runs_before_both_shuffles_and_the_rows_stay_the_same() {
        let plan = semi_over_inner_join();
        let pushed = push_semi_filters(Arc::clone(&plan)).expect("rewrites");
        let text = displayable(pushed.as_ref()).indent(false).to_string();
        let below_shuffles = filters_under_shuffles(&text);
        assert_eq!(below_shuffles, 2, "a filter under each shuffle:\n{text}");

        let expected = sorted_rows(plan).await;
        assert_eq!(expected.len(), 9, "orders 3, 5 and 7 with three items each");
        assert_eq!(sorted_rows(pushed).await, expected);
    }

    #[test]
    fn a_build_side_that_is_not_its_own_stage_is_not_copied() {
        // A one-partition build side would be recomputed wherever it is read.
        let plan = semi_over_inner_join();
        let table = Arc::clone(plan.children()[0].children()[0]);
        let one_partition: Arc<dyn ExecutionPlan> = Arc::new(
            RepartitionExec::try_new(table, Partitioning::RoundRobinBatch(1)).expect("one"),
        );
        let plan = replace_children_if_necessary(
            Arc::clone(&plan),
            vec![one_partition, Arc::clone(plan.children()[1])],
        )
        .expect("rebuilt");
        let pushed = push_semi_filters(plan).expect("rewrites");
        let text = displayable(pushed.as_ref()).indent(false).to_string();
        assert_eq!(text.matches("RightSemi").count(), 1, "{text}");
    }

    /// The semi join of `semi_over_inner_join` over an outer join of `join_type` instead.
    fn semi_over_outer_join(join_type: JoinType) -> Arc<dyn ExecutionPlan> {
        let plan = semi_over_inner_join();
        let outer = plan.children()[1]
            .downcast_ref::<HashJoinExec>()
            .expect("inner join")
            .builder()
            .with_type(join_type)
            .build_exec()
            .expect("outer join");
        replace_children_if_necessary(
            Arc::clone(&plan),
            vec![Arc::clone(plan.children()[0]), outer],
        )
        .expect("rebuilt")
    }

    #[tokio::test]
    async fn a_semi_join_over_an_outer_join_filters_only_the_side_it_keeps_whole() {
        // Orders left-joined with items: every order stays, so its o_id may be filtered
        // below the join; the items side (null where an order has none) may not.
        let pushed = push_semi_filters(semi_over_outer_join(JoinType::Left)).expect("rewrites");
        let text = displayable(pushed.as_ref()).indent(false).to_string();
        assert_eq!(filters_under_shuffles(&text), 1, "{text}");
        assert!(
            text.contains("RightSemi, on=[(k@0, o_id@0)]"),
            "the filter is on the orders side:\n{text}"
        );
        // A fresh plan: the rewritten one shares the items side's operators with `plan`.
        let expected = sorted_rows(semi_over_outer_join(JoinType::Left)).await;
        assert_eq!(expected.len(), 9, "orders 3, 5 and 7 with three items each");
        assert_eq!(sorted_rows(pushed).await, expected);

        // Items right-joined with orders: o_id is null where an item has no order.
        let plan = semi_over_outer_join(JoinType::Right);
        let pushed = push_semi_filters(plan).expect("rewrites");
        let text = displayable(pushed.as_ref()).indent(false).to_string();
        assert_eq!(text.matches("RightSemi").count(), 1, "{text}");
    }

    /// Inner(CollectLeft) of the keys {3, 5, 7, 1000} (filtered by `k < 2000` when
    /// `filtered`) with Inner(orders x items on their ids), on o_id.
    fn inner_over_inner_join(filtered: bool) -> Arc<dyn ExecutionPlan> {
        let semi = semi_over_inner_join();
        let merge = semi.children()[0];
        let table = Arc::clone(merge.children()[0]);
        let table: Arc<dyn ExecutionPlan> = if filtered {
            let predicate = datafusion::physical_expr::expressions::binary(
                col("k", 0),
                datafusion::logical_expr::Operator::Lt,
                datafusion::physical_expr::expressions::lit(2000_i64),
                &table.schema(),
            )
            .expect("predicate");
            Arc::new(FilterExec::try_new(predicate, table).expect("filter"))
        } else {
            table
        };
        let build: Arc<dyn ExecutionPlan> = Arc::new(CoalescePartitionsExec::new(table));
        HashJoinExecBuilder::new(
            build,
            Arc::clone(semi.children()[1]),
            vec![(col("k", 0), col("o_id", 1))],
            JoinType::Inner,
        )
        .with_partition_mode(PartitionMode::CollectLeft)
        .build_exec()
        .expect("inner join")
    }

    #[tokio::test]
    async fn an_inner_join_with_a_filtered_build_side_filters_its_probe_side() {
        let plan = inner_over_inner_join(true);
        let pushed = push_semi_filters(Arc::clone(&plan)).expect("rewrites");
        let text = displayable(pushed.as_ref()).indent(false).to_string();
        let below_shuffles = filters_under_shuffles(&text);
        assert_eq!(below_shuffles, 2, "a filter under each shuffle:\n{text}");
        // Each filter reads the build side's key only, from the same merge.
        assert_eq!(
            text.matches("ProjectionExec: expr=[k@0 as k]").count(),
            2,
            "{text}"
        );

        let expected = sorted_rows(plan).await;
        assert_eq!(expected.len(), 9, "orders 3, 5 and 7 with three items each");
        assert_eq!(sorted_rows(pushed).await, expected);
    }

    #[test]
    fn an_inner_join_with_a_whole_build_side_is_left_alone() {
        let plan = inner_over_inner_join(false);
        let pushed = push_semi_filters(plan).expect("rewrites");
        let text = displayable(pushed.as_ref()).indent(false).to_string();
        assert!(!text.contains("RightSemi"), "{text}");
    }

    #[test]
    fn the_option_turns_runtime_filters_off() {
        let options = crate::CutOptions {
            runtime_filters: false,
        };
        let graph = crate::cut_stages_with(inner_over_inner_join(true), options).expect("cuts");
        let with = crate::cut_stages(inner_over_inner_join(true)).expect("cuts");
        let semi_joins = |graph: &crate::StageGraph| {
            graph
                .stages()
                .iter()
                .map(|stage| {
                    displayable(stage.plan().as_ref())
                        .indent(false)
                        .to_string()
                        .matches("RightSemi")
                        .count()
                })
                .sum::<usize>()
        };
        assert_eq!(semi_joins(&graph), 0);
        assert_eq!(semi_joins(&with), 2);
    }
}
