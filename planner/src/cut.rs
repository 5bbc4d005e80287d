//! Stage cutting: walks an optimized DataFusion physical plan and cuts it at every exchange
//! into a [`StageGraph`].
//!
//! | exchange in the plan                         | becomes                                                      |
//! |----------------------------------------------|--------------------------------------------------------------|
//! | `RepartitionExec` (hash)                     | writer `hash(keys, n)` / reader with the same partitioning    |
//! | `RepartitionExec` (round robin)              | writer `round-robin(n)` / reader with `n` partitions          |
//! | `CoalescePartitionsExec` (merge, broadcast)  | writer `single` / one-partition reader (+ limit if it had one)|
//! | `SortPreservingMergeExec`                    | writer `preserve(n)` / the merge over an `n`-partition reader |
//!
//! A build side that a join collects (`CollectLeft`) sits under a `CoalescePartitionsExec`,
//! so every probe task reads the whole build side from the shuffle: that is the broadcast.
//! Joins that would need every probe partition in one process are rewritten first (see
//! [`make_joins_task_local`]), file scans are regrouped so that tasks get even shares
//! ([`balance_file_scans`]), and broadcast semi-join filters are copied below the shuffles
//! they would otherwise follow (runtime filters, [`push_semi_filters`]).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::limit::GlobalLimitExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, Partitioning, replace_children_if_necessary,
};

use crate::error::Result;
use crate::exchange::ExchangeExec;
use crate::joins::make_joins_task_local;
use crate::scans::balance_file_scans;
use crate::semi_filters::push_semi_filters;
use crate::shuffle::{ShuffleOutput, ShuffleReaderExec, ShuffleWriterExec};
use crate::stage::{Stage, StageGraph};
use crate::unsupported;

/// What [`cut_stages_with`] may rewrite besides cutting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutOptions {
    /// Apply each broadcast join's build-side keys below the shuffles of its probe side
    /// (runtime filters, `ember.optimizer.runtime_filters`).
    pub runtime_filters: bool,
}

impl Default for CutOptions {
    fn default() -> Self {
        Self {
            runtime_filters: true,
        }
    }
}

/// Cuts `plan` into stages with the default [`CutOptions`]. The last stage's output,
/// partition by partition, is the plan's output.
pub fn cut_stages(plan: Arc<dyn ExecutionPlan>) -> Result<StageGraph> {
    cut_stages_with(plan, CutOptions::default())
}

/// Cuts `plan` into stages, rewriting it first as `options` allow.
pub fn cut_stages_with(plan: Arc<dyn ExecutionPlan>, options: CutOptions) -> Result<StageGraph> {
    let mut plan = make_joins_task_local(balance_file_scans(plan)?)?;
    if options.runtime_filters {
        plan = push_semi_filters(plan)?;
    }
    let mut cutter = StageCutter::default();
    let root = cutter.visit(plan)?;
    let count = root.output_partitioning().partition_count();
    cutter.add_stage(root, ShuffleOutput::Preserve { count });
    Ok(StageGraph::new(cutter.stages))
}

/// Collects stages while the plan is rewritten bottom-up.
#[derive(Default)]
struct StageCutter {
    stages: Vec<Stage>,
    /// What each exchange already cut became, by the address of its node: an exchange
    /// that appears twice in the plan (the same `Arc`) is one stage, read twice.
    cut: HashMap<usize, Arc<dyn ExecutionPlan>>,
}

impl StageCutter {
    /// Rewrites `plan` with every exchange below and at it replaced by a shuffle read.
    fn visit(&mut self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        let address = Arc::as_ptr(&plan) as *const () as usize;
        if let Some(done) = self.cut.get(&address) {
            return Ok(Arc::clone(done));
        }
        let is_exchange = plan.downcast_ref::<RepartitionExec>().is_some()
            || plan.downcast_ref::<ExchangeExec>().is_some()
            || plan.downcast_ref::<CoalescePartitionsExec>().is_some()
            || plan.downcast_ref::<SortPreservingMergeExec>().is_some();
        let rewritten = self.rewrite(plan)?;
        if is_exchange {
            self.cut.insert(address, Arc::clone(&rewritten));
        }
        Ok(rewritten)
    }

    /// [`Self::visit`] without the memo.
    fn rewrite(&mut self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        let children = plan
            .children()
            .into_iter()
            .map(|child| self.visit(Arc::clone(child)))
            .collect::<Result<Vec<_>>>()?;
        let plan = if children.is_empty() {
            plan
        } else {
            replace_children_if_necessary(plan, children)?
        };

        // DataFusion's repartitions and the ones a user asked for shuffle alike.
        let repartitioned = if let Some(repartition) = plan.downcast_ref::<RepartitionExec>() {
            if repartition.preserve_order() {
                unsupported!(
                    "order-preserving repartitioning ({}) is not supported; \
                     set datafusion.optimizer.prefer_existing_sort = false",
                    repartition.partitioning()
                );
            }
            Some((repartition.input(), repartition.partitioning()))
        } else {
            plan.downcast_ref::<ExchangeExec>()
                .map(|requested| (requested.input(), requested.partitioning()))
        };
        if let Some((input, partitioning)) = repartitioned {
            let output = match partitioning {
                Partitioning::Hash(exprs, count) => ShuffleOutput::Hash {
                    exprs: exprs.clone(),
                    count: *count,
                },
                Partitioning::RoundRobinBatch(count) => ShuffleOutput::RoundRobin { count: *count },
                other => unsupported!("repartitioning by {other} is not supported"),
            };
            return self.exchange(Arc::clone(input), output);
        }

        if let Some(coalesce) = plan.downcast_ref::<CoalescePartitionsExec>() {
            let input = Arc::clone(coalesce.input());
            let merged = if input.output_partitioning().partition_count() <= 1 {
                input
            } else {
                self.exchange(input, ShuffleOutput::Single)?
            };
            return Ok(match coalesce.fetch() {
                Some(fetch) => Arc::new(GlobalLimitExec::new(merged, 0, Some(fetch))),
                None => merged,
            });
        }

        if let Some(merge) = plan.downcast_ref::<SortPreservingMergeExec>() {
            let input = Arc::clone(merge.input());
            let count = input.output_partitioning().partition_count();
            if count <= 1 {
                return Ok(plan);
            }
            let reader = self.exchange(input, ShuffleOutput::Preserve { count })?;
            let merged = SortPreservingMergeExec::new(merge.expr().clone(), reader)
                .with_fetch(merge.fetch());
            return Ok(Arc::new(merged));
        }

        Ok(plan)
    }

    /// Ends a stage with `input` under a writer, and returns the reader that replaces it.
    fn exchange(
        &mut self,
        input: Arc<dyn ExecutionPlan>,
        output: ShuffleOutput,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = input.schema();
        let partitioning = output.reader_partitioning();
        let facts = output.reader_equivalences(&input);
        let stage_id = self.add_stage(input, output);
        let reader =
            ShuffleReaderExec::new(stage_id, schema, partitioning).with_equivalences(facts)?;
        Ok(Arc::new(reader))
    }

    /// Adds a stage that runs `input` and writes it as `output`; returns its id.
    fn add_stage(&mut self, input: Arc<dyn ExecutionPlan>, output: ShuffleOutput) -> usize {
        let id = self.stages.len();
        let writer = Arc::new(ShuffleWriterExec::new(id, input, output));
        self.stages.push(Stage::new(id, writer));
        id
    }
}
