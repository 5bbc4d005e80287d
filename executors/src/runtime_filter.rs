//! Runtime filters inside one task: the key range of a broadcast join's build side, given to
//! the Parquet scans of its probe side in the same task before they start.
//!
//! In one process DataFusion does this with dynamic filters: a hash join fills in a shared
//! predicate once its build side is collected, and the probe side's scan skips the row
//! groups and pages whose statistics fall outside it. Those filters count the partitions of
//! the whole plan before they publish anything, and a task runs one partition of its stage,
//! so Ember turns them off (`REQUIRED_DATAFUSION_SETTINGS`). What they buy matters most
//! where a fact table is stored in the order of a dimension key (TPC-DS's sales tables by
//! date): instead, before a task runs, each broadcast join whose build side has one
//! partition is collected, its keys' minimum and maximum become `key >= min AND key <= max`,
//! and that predicate is pushed by DataFusion's own filter pushdown into each Parquet scan of
//! the probe side that the key column comes from (followed through projections, filters and
//! the sides of joins that pass their rows on whole, as `ember_planner::column_sources`
//! says). The collected rows take the build side's place, so nothing is read twice.
//! Rows are dropped by the join as before; the scan only skips what its statistics rule out
//! (and, with `datafusion.execution.parquet.pushdown_filters`, the rows outside the range).
//!
//! `ember.optimizer.runtime_filters=false` (a task setting) turns it off.

use std::sync::Arc;

use datafusion::common::{JoinType, NullEquality, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::ParquetSource;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::{Accumulator, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::filter_pushdown::FilterPushdown;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, collect, replace_children_if_necessary,
};
use ember_planner::{column_sources, push_into_children};
use futures::future::BoxFuture;

use datafusion::error::Result;

/// The task setting that turns runtime filters off with `false`.
pub const RUNTIME_FILTERS_SETTING: &str = "ember.optimizer.runtime_filters";

/// `plan` with the key range of every eligible broadcast join's build side pushed into the
/// Parquet scans of its probe side.
pub(crate) fn apply(
    plan: Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
) -> BoxFuture<'static, Result<Arc<dyn ExecutionPlan>>> {
    Box::pin(async move {
        if let Some(join) = plan.downcast_ref::<HashJoinExec>()
            && eligible(join)
        {
            let build = Arc::clone(join.left());
            let batches = collect(Arc::clone(&build), Arc::clone(&context)).await?;
            let mut probe = Arc::clone(join.right());
            for (build_key, probe_key) in join.on() {
                let Some(column) = probe_key.downcast_ref::<Column>() else {
                    continue;
                };
                let Some((low, high)) = key_range(build_key, &batches)? else {
                    continue;
                };
                let options = context.session_config().options();
                if let Some(filtered) = push_range(&probe, column.index(), &low, &high, options)? {
                    probe = filtered;
                }
            }
            let probe = apply(probe, Arc::clone(&context)).await?;
            let collected = MemorySourceConfig::try_new_exec(&[batches], build.schema(), None)?;
            return join
                .builder()
                .with_new_children(vec![collected, probe])?
                .build_exec();
        }
        let mut children = Vec::new();
        for child in plan.children() {
            children.push(apply(Arc::clone(child), Arc::clone(&context)).await?);
        }
        if children.is_empty() {
            return Ok(plan);
        }
        replace_children_if_necessary(plan, children)
    })
}

/// A join that drops every probe row without a match, with a build side of one partition
/// that it collects.
fn eligible(join: &HashJoinExec) -> bool {
    matches!(join.join_type(), JoinType::Inner | JoinType::RightSemi)
        && *join.partition_mode() == PartitionMode::CollectLeft
        && join.null_equality() == NullEquality::NullEqualsNothing
        && !join.null_aware
        && join.left().output_partitioning().partition_count() == 1
}

/// The smallest and largest non-null value of `key` over `batches`; `None` when there is
/// none, or the key's type has no order that Parquet statistics could use.
fn key_range(
    key: &Arc<dyn PhysicalExpr>,
    batches: &[arrow::array::RecordBatch],
) -> Result<Option<(ScalarValue, ScalarValue)>> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let data_type = key.data_type(&first.schema())?;
    if !(data_type.is_integer()
        || data_type.is_floating()
        || data_type.is_temporal()
        || matches!(
            data_type,
            arrow::datatypes::DataType::Decimal128(..)
                | arrow::datatypes::DataType::Utf8
                | arrow::datatypes::DataType::Utf8View
                | arrow::datatypes::DataType::LargeUtf8
        ))
    {
        return Ok(None);
    }
    let mut low = MinAccumulator::try_new(&data_type)?;
    let mut high = MaxAccumulator::try_new(&data_type)?;
    for batch in batches {
        let values = key.evaluate(batch)?.into_array(batch.num_rows())?;
        low.update_batch(std::slice::from_ref(&values))?;
        high.update_batch(std::slice::from_ref(&values))?;
    }
    let (low, high) = (low.evaluate()?, high.evaluate()?);
    if low.is_null() || high.is_null() {
        return Ok(None);
    }
    Ok(Some((low, high)))
}

/// `plan` with `column >= low AND column <= high` pushed into the Parquet scan that its
/// column `index` comes from; `None` when there is no such scan.
fn push_range(
    plan: &Arc<dyn ExecutionPlan>,
    index: usize,
    low: &ScalarValue,
    high: &ScalarValue,
    options: &ConfigOptions,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    // Below a limit, a filter would change which rows the limit keeps.
    if plan.fetch().is_some() {
        return Ok(None);
    }
    if let Some(scan) = plan.downcast_ref::<DataSourceExec>() {
        if scan.downcast_to_file_source::<ParquetSource>().is_none() {
            return Ok(None);
        }
        let schema = plan.schema();
        let column: Arc<dyn PhysicalExpr> =
            Arc::new(Column::new(schema.field(index).name(), index));
        let bound = |op: Operator, value: &ScalarValue| -> Arc<dyn PhysicalExpr> {
            Arc::new(BinaryExpr::new(
                Arc::clone(&column),
                op,
                Arc::new(Literal::new(value.clone())),
            ))
        };
        let range: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            bound(Operator::GtEq, low),
            Operator::And,
            bound(Operator::LtEq, high),
        ));
        let filter: Arc<dyn ExecutionPlan> =
            Arc::new(FilterExec::try_new(range, Arc::clone(plan))?);
        let pushed = FilterPushdown::new().optimize(filter, options)?;
        // Without Parquet filter pushdown the scan keeps the range for pruning only and the
        // filter stays above it: the join drops those rows anyway, so the filter, a pass
        // over every row, is left out.
        if let Some(kept) = pushed.downcast_ref::<FilterExec>() {
            let scan = kept.input();
            return Ok((!Arc::ptr_eq(scan, plan)).then(|| Arc::clone(scan)));
        }
        return Ok(Some(pushed));
    }
    let Some(targets) = column_sources(plan, index) else {
        return Ok(None);
    };
    push_into_children(plan, &targets, |child, column| {
        push_range(child, column, low, high, options)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::listing::PartitionedFile;
    use datafusion::datasource::physical_plan::FileScanConfigBuilder;
    use datafusion::execution::object_store::ObjectStoreUrl;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;
    use datafusion::physical_plan::displayable;
    use datafusion::physical_plan::joins::HashJoinExecBuilder;
    use datafusion::physical_plan::metrics::MetricValue;

    fn int_schema(name: &str) -> Arc<Schema> {
        Arc::new(Schema::new(vec![Field::new(name, DataType::Int64, true)]))
    }

    /// A Parquet file of `sale_date` 0..10_000 in row groups of 1,000 rows.
    fn sales(dir: &std::path::Path) -> Arc<dyn ExecutionPlan> {
        let schema = int_schema("sale_date");
        let path = dir.join("sales.parquet");
        let file = std::fs::File::create(&path).expect("creates");
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(1_000))
            .build();
        let mut writer =
            ArrowWriter::try_new(file, Arc::clone(&schema), Some(props)).expect("writer");
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(0..10_000))],
        )
        .expect("batch");
        writer.write(&batch).expect("writes");
        writer.close().expect("closes");
        let size = std::fs::metadata(&path).expect("exists").len();
        let source = Arc::new(ParquetSource::new(Arc::clone(&schema)));
        let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), source)
            .with_file(PartitionedFile::new(
                path.to_string_lossy().trim_start_matches('/').to_string(),
                size,
            ))
            .build();
        DataSourceExec::from_data_source(config)
    }

    /// Inner(CollectLeft) of the dates {2_500, 2_600, 3_100} with the sales scan.
    fn join_of_dates(dir: &std::path::Path) -> Arc<dyn ExecutionPlan> {
        dates_with(sales(dir), 0)
    }

    /// Fails unless `got` and `expected` hold the same rows in the same order.
    fn assert_same_rows(got: &[RecordBatch], expected: &[RecordBatch]) {
        let text = |batches: &[RecordBatch]| {
            arrow::util::pretty::pretty_format_batches(batches)
                .expect("formats")
                .to_string()
        };
        assert_eq!(text(got), text(expected));
    }

    /// Rows the plan's Parquet scans read.
    fn rows_scanned(plan: &Arc<dyn ExecutionPlan>) -> usize {
        let mut total = 0;
        if plan.downcast_ref::<DataSourceExec>().is_some()
            && let Some(metrics) = plan.metrics()
        {
            for metric in metrics.iter() {
                if let MetricValue::OutputRows(count) = metric.value() {
                    total += count.value();
                }
            }
        }
        total + plan.children().into_iter().map(rows_scanned).sum::<usize>()
    }

    #[tokio::test]
    async fn the_scan_skips_row_groups_outside_the_build_keys_and_the_rows_stay() {
        let dir = tempfile::tempdir().expect("temp dir");
        let context = Arc::new(TaskContext::default());
        let plain = join_of_dates(dir.path());
        let expected = collect(Arc::clone(&plain), Arc::clone(&context))
            .await
            .expect("runs");
        assert_eq!(rows_scanned(&plain), 10_000);

        let filtered = apply(join_of_dates(dir.path()), Arc::clone(&context))
            .await
            .expect("rewrites");
        let text = displayable(filtered.as_ref()).indent(false).to_string();
        assert!(
            text.contains("sale_date@0 >= 2500 AND sale_date@0 <= 3100"),
            "{text}"
        );
        assert!(
            !text.contains("FilterExec"),
            "the join drops the rows\n{text}"
        );
        let got = collect(Arc::clone(&filtered), context).await.expect("runs");
        assert_same_rows(&got, &expected);
        // Row groups 2 and 3 (2,000..4,000) only.
        assert_eq!(rows_scanned(&filtered), 2_000, "{text}");
    }

    /// `dates` joined (inner) with column `key` of `probe`.
    fn dates_with(probe: Arc<dyn ExecutionPlan>, key: usize) -> Arc<dyn ExecutionPlan> {
        let schema = int_schema("d");
        let dates = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![2_500, 2_600, 3_100]))],
        )
        .expect("batch");
        let build = MemorySourceConfig::try_new_exec(&[vec![dates]], schema, None).expect("dates");
        let name = probe.schema().field(key).name().clone();
        HashJoinExecBuilder::new(
            build,
            probe,
            vec![(
                Arc::new(Column::new("d", 0)) as Arc<dyn PhysicalExpr>,
                Arc::new(Column::new(&name, key)) as Arc<dyn PhysicalExpr>,
            )],
            JoinType::Inner,
        )
        .with_partition_mode(PartitionMode::CollectLeft)
        .build_exec()
        .expect("join")
    }

    /// An outer join (CollectLeft) of `left` and `right` on their column 0.
    fn outer(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        join_type: JoinType,
    ) -> Arc<dyn ExecutionPlan> {
        let on = |plan: &Arc<dyn ExecutionPlan>| -> Arc<dyn PhysicalExpr> {
            Arc::new(Column::new(plan.schema().field(0).name(), 0))
        };
        HashJoinExecBuilder::new(
            Arc::clone(&left),
            Arc::clone(&right),
            vec![(on(&left), on(&right))],
            join_type,
        )
        .with_partition_mode(PartitionMode::CollectLeft)
        .build_exec()
        .expect("join")
    }

    /// A few returns, one of them on a date outside the build keys.
    fn returns() -> Arc<dyn ExecutionPlan> {
        let schema = int_schema("r");
        let rows = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![2_600, 9_000]))],
        )
        .expect("batch");
        MemorySourceConfig::try_new_exec(&[vec![rows]], schema, None).expect("returns")
    }

    #[tokio::test]
    async fn the_range_goes_through_the_preserved_side_of_an_outer_join() {
        let dir = tempfile::tempdir().expect("temp dir");
        let context = Arc::new(TaskContext::default());
        // Sales right-joined with returns keeps every sale: its column 1 is the sale date.
        let plan = || dates_with(outer(returns(), sales(dir.path()), JoinType::Right), 1);
        let plain = plan();
        let expected = collect(Arc::clone(&plain), Arc::clone(&context))
            .await
            .expect("runs");
        let filtered = apply(plan(), Arc::clone(&context)).await.expect("rewrites");
        let got = collect(Arc::clone(&filtered), context).await.expect("runs");
        let text = displayable(filtered.as_ref()).indent(false).to_string();
        assert_eq!(got.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
        assert_same_rows(&got, &expected);
        assert_eq!(rows_scanned(&filtered), 2_000, "{text}");
    }

    #[tokio::test]
    async fn the_side_an_outer_join_fills_with_nulls_is_left_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Returns right-joined with sales: the sale date (column 0) is null where a return
        // has no sale, so no range goes into the sales scan.
        let plan = dates_with(outer(sales(dir.path()), returns(), JoinType::Right), 0);
        let rewritten = apply(plan, Arc::new(TaskContext::default()))
            .await
            .expect("rewrites");
        let text = displayable(rewritten.as_ref()).indent(false).to_string();
        assert!(!text.contains(">= 2500"), "{text}");
    }

    #[tokio::test]
    async fn a_left_join_is_left_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let left = join_of_dates(dir.path())
            .downcast_ref::<HashJoinExec>()
            .expect("join")
            .builder()
            .with_type(JoinType::Left)
            .build_exec()
            .expect("left join");
        let rewritten = apply(left, Arc::new(TaskContext::default()))
            .await
            .expect("rewrites");
        let text = displayable(rewritten.as_ref()).indent(false).to_string();
        assert!(!text.contains(">= 2500"), "{text}");
    }
}
