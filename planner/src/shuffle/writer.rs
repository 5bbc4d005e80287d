//! [`ShuffleWriterExec`]: the root of every stage plan; writes the stage's output for the
//! stages that read it.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNodeIterator, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    Partitioning, PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};

use super::runtime::{ShuffleWrite, shuffle_runtime};
use super::{ShuffleOutput, write_summary_schema};

/// Runs partition `i` of its input and writes the rows as [`ShuffleOutput`] says; yields one
/// summary row per output partition written (see [`write_summary_schema`]).
#[derive(Debug)]
pub struct ShuffleWriterExec {
    /// The stage this node ends.
    stage_id: usize,
    /// The stage's work: everything below the exchange that was cut.
    input: Arc<dyn ExecutionPlan>,
    /// How rows are assigned to output partitions.
    output: ShuffleOutput,
    /// Cached plan properties: the summary schema, one partition per input partition.
    properties: Arc<PlanProperties>,
}

impl ShuffleWriterExec {
    /// A writer that ends stage `stage_id`.
    pub fn new(stage_id: usize, input: Arc<dyn ExecutionPlan>, output: ShuffleOutput) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(write_summary_schema()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            stage_id,
            input,
            output,
            properties: Arc::new(properties),
        }
    }

    /// The stage this writer ends.
    pub fn stage_id(&self) -> usize {
        self.stage_id
    }

    /// The plan whose output is written.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    /// How rows are spread over output partitions.
    pub fn output(&self) -> &ShuffleOutput {
        &self.output
    }

    /// Number of map tasks: the input's partition count.
    pub fn map_partitions(&self) -> usize {
        self.input.output_partitioning().partition_count()
    }
}

impl DisplayAs for ShuffleWriterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ShuffleWriterExec: stage={}, output={}",
            self.stage_id, self.output
        )
    }
}

impl ExecutionPlan for ShuffleWriterExec {
    fn name(&self) -> &str {
        "ShuffleWriterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        match &self.output {
            ShuffleOutput::Hash { exprs, .. } => exprs.iter().apply_until_stop(f),
            _ => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input]: [Arc<dyn ExecutionPlan>; 1] = children.try_into().map_err(|_| {
            DataFusionError::Internal("ShuffleWriterExec takes exactly one child".into())
        })?;
        Ok(Arc::new(Self::new(
            self.stage_id,
            input,
            self.output.clone(),
        )))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let runtime = shuffle_runtime(&context)?;
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let write = ShuffleWrite {
            stage_id: self.stage_id(),
            output: self.output(),
            map_partitions: self.map_partitions(),
        };
        runtime.0.write(write, partition, input, context)
    }
}
