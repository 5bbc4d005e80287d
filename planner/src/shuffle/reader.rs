//! [`ShuffleReaderExec`]: a leaf of a stage plan that streams the output of an earlier stage.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::equivalence::EquivalenceGroup;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    ReplaceChildrenOptions, SendableRecordBatchStream,
};

use super::runtime::{ShuffleRead, shuffle_runtime};
use datafusion::physical_plan::coop::make_cooperative;

/// Reads the shuffle output of stage `stage_id`: partition `p` of this node is every map
/// task's piece for output partition `p`.
#[derive(Debug)]
pub struct ShuffleReaderExec {
    /// The stage whose output is read.
    stage_id: usize,
    /// Schema of the rows (the output schema of that stage's work).
    schema: SchemaRef,
    /// Cached plan properties, carrying the partitioning the writer produced and the
    /// equalities and constants the rows keep (see [`Self::with_equivalences`]).
    properties: Arc<PlanProperties>,
}

impl ShuffleReaderExec {
    /// A reader of stage `stage_id`'s output, partitioned as `partitioning`, that declares
    /// nothing else about its rows.
    pub fn new(stage_id: usize, schema: SchemaRef, partitioning: Partitioning) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            partitioning,
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            stage_id,
            schema,
            properties: Arc::new(properties),
        }
    }

    /// This reader, declaring that its rows satisfy the equalities and constants of
    /// `facts`: what a shuffle keeps, as
    /// [`ShuffleOutput::reader_equivalences`](super::ShuffleOutput::reader_equivalences)
    /// finds it.
    ///
    /// The plan above a reader was optimized while the exchange it replaces still
    /// declared these facts, and an executor rebuilds that plan from what the reader
    /// declares: a window over a sort that left out a constant column checks, when it
    /// runs, that the constant is still known.
    pub fn with_equivalences(self, facts: EquivalenceGroup) -> Result<Self> {
        let mut equivalences = EquivalenceProperties::new(Arc::clone(&self.schema));
        equivalences.add_equivalence_group(facts)?;
        let properties = PlanProperties::new(
            equivalences,
            self.properties.partitioning.clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Self {
            properties: Arc::new(properties),
            ..self
        })
    }

    /// The stage whose output this node reads.
    pub fn stage_id(&self) -> usize {
        self.stage_id
    }

    /// The partitioning of the data read.
    pub fn partitioning(&self) -> &Partitioning {
        &self.properties.partitioning
    }
}

impl DisplayAs for ShuffleReaderExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ShuffleReaderExec: stage={}, partitioning={}",
            self.stage_id, self.properties.partitioning
        )
    }
}

impl ExecutionPlan for ShuffleReaderExec {
    fn name(&self) -> &str {
        "ShuffleReaderExec"
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "ShuffleReaderExec is a leaf and takes no children".into(),
            ))
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(
                datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
            ),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let runtime = shuffle_runtime(&context)?;
        // Cooperative: the stream gives way to the runtime every so many batches, so a
        // task whose plan never waits (a join feeding an aggregate) can still be
        // cancelled when its job is.
        Ok(make_cooperative(runtime.0.read(
            ShuffleRead {
                stage_id: self.stage_id(),
                schema: self.schema(),
            },
            partition,
            context,
        )?))
    }
}
