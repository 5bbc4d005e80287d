//! The sort-merge fallback of a task under a memory limit: plans keep hash joins (fast,
//! but a hash table cannot spill), and a task whose hash table did not fit runs once
//! more with each partitioned hash join rewritten into a sort-merge join, whose sorts
//! spill. This module decides whether a failure allows that and does the rewrite; the
//! executor runs the task again.

use std::sync::Arc;

use arrow::compute::SortOptions;
use arrow::datatypes::DataType;
use datafusion::common::JoinType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode, SortMergeJoinExec};
use datafusion::physical_plan::limit::LocalLimitExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use ember_planner::{ShuffleWriterExec, StagedWriteExec};

/// Whether a task whose run failed with `error` may run again with sort-merge joins: the
/// error is a refused memory reservation, the plan has a partitioned hash join to
/// rewrite, and all it writes is shuffle output (which the executor removes before the
/// second run); a plan that writes to a table, a topic or files elsewhere is not run
/// twice. Any refused reservation counts, not only the hash table's own
/// (`HashJoinInput[partition]`): a hash table that cannot spill may have taken the memory
/// a sort or an aggregation of the same task then could not get.
pub fn may_fall_back(plan: &Arc<dyn ExecutionPlan>, error: &DataFusionError) -> bool {
    matches!(error.find_root(), DataFusionError::ResourcesExhausted(_))
        && plan.downcast_ref::<ShuffleWriterExec>().is_some()
        && partitioned_hash_joins(plan) > 0
        && !writes_elsewhere(plan)
}

/// The partitioned hash joins of `plan` that [`sort_merge_joins`] rewrites.
pub fn partitioned_hash_joins(plan: &Arc<dyn ExecutionPlan>) -> usize {
    let mut count = 0;
    let _ = plan.apply(|node| {
        if node.downcast_ref::<HashJoinExec>().is_some_and(rewritable) {
            count += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    });
    count
}

/// Whether a node below the root writes somewhere other than the task's shuffle files:
/// DataFusion's `DataSinkExec`, Ember's `StagedWriteExec`, or a connector's writer (the
/// PostgreSQL and Kafka `…WriteExec`s, known here by name: this crate does not depend on
/// the connectors).
fn writes_elsewhere(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.children().into_iter().any(|child| {
        child
            .exists(|node| {
                Ok(node.is::<DataSinkExec>()
                    || node.is::<StagedWriteExec>()
                    || node.name().contains("Write"))
            })
            .unwrap_or(true)
    })
}

/// A hash join whose partitions each hold their own build side (both inputs hashed on
/// the keys), and that a sort-merge join can answer: not a null-aware anti join, and for
/// semi, anti and mark joins (which DataFusion's sort-merge join compares key by key
/// across batches) keys of the types that comparison knows.
fn rewritable(join: &HashJoinExec) -> bool {
    if *join.partition_mode() != PartitionMode::Partitioned || join.null_aware {
        return false;
    }
    let compared_across_batches = matches!(
        join.join_type(),
        JoinType::LeftSemi
            | JoinType::LeftAnti
            | JoinType::LeftMark
            | JoinType::RightSemi
            | JoinType::RightAnti
            | JoinType::RightMark
    );
    let schema = join.left().schema();
    !compared_across_batches
        || join.on().iter().all(|(left, _)| {
            left.data_type(&schema)
                .is_ok_and(|t| comparable_across_batches(&t))
        })
}

/// The key types DataFusion 55's sort-merge semi, anti and mark joins compare
/// (`compare_join_arrays`); others fail there as not implemented.
fn comparable_across_batches(data_type: &DataType) -> bool {
    use DataType::*;
    matches!(
        data_type,
        Null | Boolean
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float32
            | Float64
            | Binary
            | BinaryView
            | FixedSizeBinary(_)
            | LargeBinary
            | Utf8
            | Utf8View
            | LargeUtf8
            | Decimal128(..)
            | Timestamp(_, None)
            | Date32
            | Date64
    )
}

/// `plan` with every partitioned hash join replaced by a sort-merge join over its two
/// inputs, each sorted on its join keys within its partition, then what the hash join
/// did to its output: its projection, the order of its rows where it kept one (a hash
/// join keeps its probe side's order, which a sort pushed below it may rely on) and its
/// limit per partition. Partitioning, columns, order and rows stay the same.
pub fn sort_merge_joins(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| match node.downcast_ref::<HashJoinExec>() {
        Some(join) if rewritable(join) => Ok(Transformed::yes(sort_merge_join(join)?)),
        _ => Ok(Transformed::no(node)),
    })
    .map(|t| t.data)
}

/// One hash join as a sort-merge join.
fn sort_merge_join(join: &HashJoinExec) -> Result<Arc<dyn ExecutionPlan>> {
    let options = vec![SortOptions::default(); join.on().len()];
    let sorted = |input: &Arc<dyn ExecutionPlan>, keys: Vec<PhysicalSortExpr>| {
        let ordering = LexOrdering::new(keys).ok_or_else(|| {
            DataFusionError::Internal("a hash join without join keys".to_string())
        })?;
        Ok::<_, DataFusionError>(Arc::new(
            SortExec::new(ordering, Arc::clone(input)).with_preserve_partitioning(true),
        ) as Arc<dyn ExecutionPlan>)
    };
    let key = |expr: &Arc<dyn PhysicalExpr>| PhysicalSortExpr {
        expr: Arc::clone(expr),
        options: SortOptions::default(),
    };
    let left = sorted(join.left(), join.on().iter().map(|(l, _)| key(l)).collect())?;
    let right = sorted(
        join.right(),
        join.on().iter().map(|(_, r)| key(r)).collect(),
    )?;
    let merged: Arc<dyn ExecutionPlan> = Arc::new(SortMergeJoinExec::try_new(
        left,
        right,
        join.on().to_vec(),
        join.filter().cloned(),
        *join.join_type(),
        options,
        join.null_equality(),
    )?);
    let projected: Arc<dyn ExecutionPlan> = match &join.projection {
        None => merged,
        Some(projection) => {
            let schema = merged.schema();
            let columns = projection
                .iter()
                .map(|&i| {
                    let name = schema.field(i).name().clone();
                    (
                        Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                        name,
                    )
                })
                .collect::<Vec<_>>();
            Arc::new(ProjectionExec::try_new(columns, merged)?)
        }
    };
    // The order and the limit are over the hash join's output columns, which the
    // projection gave back.
    Ok(match (join.properties().output_ordering(), join.fetch()) {
        (Some(ordering), fetch) => Arc::new(
            SortExec::new(ordering.clone(), projected)
                .with_preserve_partitioning(true)
                .with_fetch(fetch),
        ),
        (None, Some(fetch)) => Arc::new(LocalLimitExec::new(projected, fetch)),
        (None, None) => projected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// A session whose equi-joins are partitioned hash joins, over two small tables with
    /// duplicate, missing and null keys.
    async fn session() -> SessionContext {
        let config = SessionConfig::new()
            .with_target_partitions(3)
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold",
                0,
            )
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold_rows",
                0,
            );
        let ctx = SessionContext::new_with_config(config);
        for sql in [
            "CREATE TABLE a(k INT, x VARCHAR) AS VALUES \
             (1, 'a1'), (2, 'a2'), (2, 'a2b'), (3, 'a3'), (NULL, 'an'), (7, 'a7')",
            "CREATE TABLE b(k INT, y INT) AS VALUES \
             (2, 20), (2, 21), (3, 30), (4, 40), (NULL, 0), (7, 70)",
        ] {
            ctx.sql(sql)
                .await
                .expect("table")
                .collect()
                .await
                .expect("created");
        }
        ctx
    }

    /// The physical plan of `sql` (a new one each call: a plan runs once).
    async fn plan(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
        ctx.sql(sql)
            .await
            .expect("plans")
            .create_physical_plan()
            .await
            .expect("physical plan")
    }

    /// The rows of `plan` as lines, sorted unless `ordered`.
    async fn rows(
        plan: Arc<dyn ExecutionPlan>,
        ctx: &SessionContext,
        ordered: bool,
    ) -> Vec<String> {
        let batches = collect(plan, ctx.task_ctx()).await.expect("runs");
        let text = pretty_format_batches(&batches).expect("prints").to_string();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        if !ordered {
            lines.sort();
        }
        lines
    }

    #[tokio::test]
    async fn every_join_type_gives_the_hash_joins_rows_as_a_sort_merge_join() {
        let ctx = session().await;
        for sql in [
            "SELECT a.x, b.y FROM a JOIN b ON a.k = b.k",
            "SELECT a.x, b.y FROM a LEFT JOIN b ON a.k = b.k",
            "SELECT a.x, b.y FROM a RIGHT JOIN b ON a.k = b.k",
            "SELECT a.x, b.y FROM a FULL JOIN b ON a.k = b.k",
            "SELECT a.x, b.y FROM a JOIN b ON a.k = b.k AND b.y > 20",
            "SELECT a.x FROM a WHERE a.k IN (SELECT k FROM b)",
            "SELECT a.x FROM a WHERE NOT EXISTS (SELECT 1 FROM b WHERE b.k = a.k)",
            "SELECT b.y, count(*) FROM a JOIN b ON a.k = b.k GROUP BY b.y",
            // Sorted below the join on the probe side's column: the order must survive.
            "SELECT a.x, b.y FROM a JOIN b ON a.k = b.k WHERE a.x <> 'a2b' ORDER BY b.y DESC",
            "SELECT a.x, b.y FROM a RIGHT JOIN b ON a.k = b.k ORDER BY b.y, a.x LIMIT 4",
        ] {
            let ordered = sql.contains("ORDER BY");
            let expected = rows(plan(&ctx, sql).await, &ctx, ordered).await;
            let hashed = plan(&ctx, sql).await;
            assert!(partitioned_hash_joins(&hashed) > 0, "{sql}: no hash join");
            let merged = sort_merge_joins(hashed).expect("rewrites");
            assert_eq!(partitioned_hash_joins(&merged), 0, "{sql}");
            assert!(
                merged
                    .exists(|n| Ok(n.is::<SortMergeJoinExec>()))
                    .expect("walks"),
                "{sql}: no sort-merge join"
            );
            assert_eq!(rows(merged, &ctx, ordered).await, expected, "{sql}");
        }
    }

    #[tokio::test]
    async fn a_refused_reservation_in_a_map_task_with_hash_joins_allows_a_second_run() {
        let ctx = session().await;
        let plan = plan(&ctx, "SELECT a.x, b.y FROM a JOIN b ON a.k = b.k").await;
        let refused = |consumer: &str| {
            DataFusionError::ResourcesExhausted(format!(
                "Failed to allocate additional 1.0 MB for {consumer} with 0.0 B already \
                 allocated for this reservation"
            ))
        };
        let join_refused = refused("HashJoinInput[0]");
        // Not a shuffle map task: its output goes elsewhere, so it does not run twice.
        assert!(!may_fall_back(&plan, &join_refused));
        let map_task: Arc<dyn ExecutionPlan> = Arc::new(ShuffleWriterExec::new(
            1,
            Arc::clone(&plan),
            ember_planner::ShuffleOutput::RoundRobin { count: 2 },
        ));
        assert!(may_fall_back(&map_task, &join_refused));
        // Wrapped as DataFusion wraps errors of a stream, it is still the join's.
        let wrapped = DataFusionError::Context("collect".into(), Box::new(join_refused));
        assert!(may_fall_back(&map_task, &wrapped));
        assert!(
            may_fall_back(&map_task, &refused("ExternalSorter[0]")),
            "the hash table may hold what the sort was refused"
        );
        assert!(
            !may_fall_back(
                &map_task,
                &DataFusionError::Execution("HashJoinInput".to_string())
            ),
            "only a refused reservation"
        );
        // A task that also writes a table does not run twice.
        let insert = self::plan(
            &ctx,
            "INSERT INTO a SELECT a.k, a.x FROM a JOIN b ON a.k = b.k",
        )
        .await;
        assert!(insert.is::<DataSinkExec>(), "{}", insert.name());
        let writing: Arc<dyn ExecutionPlan> = Arc::new(ShuffleWriterExec::new(
            1,
            insert,
            ember_planner::ShuffleOutput::RoundRobin { count: 2 },
        ));
        assert!(!may_fall_back(&writing, &refused("HashJoinInput[0]")));
        // A task whose plan has no partitioned hash join has nothing to rewrite.
        let merged: Arc<dyn ExecutionPlan> = Arc::new(ShuffleWriterExec::new(
            1,
            sort_merge_joins(plan).expect("rewrites"),
            ember_planner::ShuffleOutput::RoundRobin { count: 2 },
        ));
        assert!(!may_fall_back(&merged, &refused("HashJoinInput[0]")));
    }
}
