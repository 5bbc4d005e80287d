//! Named user functions: the registry that the driver and every executor hold, and the
//! plan nodes that call them.
//!
//! A closure cannot travel to another process, so a plan refers to a user function by a
//! stable name ([`register_batch_fn`]). The registry is per process: the embedded cluster's
//! executors share the driver's, and a remote executor built from the user's own binary
//! registers the same functions when it starts. A plan naming an unregistered function
//! fails when it is planned ([`MapBatches::new`]) and, on an executor that lacks it, when
//! the task plan is decoded.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, RwLock};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DFSchemaRef, internal_err, plan_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::StreamExt;

/// The body of a batch function.
pub type BatchFn = dyn Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync;

/// A user function from one record batch to another, with the schema of what it returns.
pub struct BatchFunction {
    name: String,
    output_schema: SchemaRef,
    apply: Box<BatchFn>,
}

impl BatchFunction {
    /// The function's registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema of every batch it returns.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// Calls the function, checking that it returned what it promised.
    pub fn call(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let output = (self.apply)(batch).map_err(|e| {
            DataFusionError::Execution(format!("batch function '{}': {e}", self.name))
        })?;
        if output.schema().fields() != self.output_schema.fields() {
            return Err(DataFusionError::Execution(format!(
                "batch function '{}' returned columns {:?}, but was registered with {:?}",
                self.name,
                output.schema().fields(),
                self.output_schema.fields()
            )));
        }
        Ok(output)
    }
}

impl fmt::Debug for BatchFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchFunction")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

static BATCH_FUNCTIONS: LazyLock<RwLock<HashMap<String, Arc<BatchFunction>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// Registers `apply` in this process under `name`, returning batches of `output_schema`.
/// A later registration of the same name replaces the earlier one.
pub fn register_batch_fn(
    name: impl Into<String>,
    output_schema: SchemaRef,
    apply: impl Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync + 'static,
) {
    let name = name.into();
    let function = Arc::new(BatchFunction {
        name: name.clone(),
        output_schema,
        apply: Box::new(apply),
    });
    match BATCH_FUNCTIONS.write() {
        Ok(mut registry) => {
            registry.insert(name, function);
        }
        Err(poisoned) => {
            poisoned.into_inner().insert(name, function);
        }
    }
}

/// The batch function registered under `name` in this process.
pub fn batch_fn(name: &str) -> Result<Arc<BatchFunction>> {
    let registry = match BATCH_FUNCTIONS.read() {
        Ok(registry) => registry,
        Err(poisoned) => poisoned.into_inner(),
    };
    match registry.get(name) {
        Some(function) => Ok(Arc::clone(function)),
        None => {
            let mut known: Vec<&str> = registry.keys().map(String::as_str).collect();
            known.sort_unstable();
            plan_err!(
                "no batch function named '{name}' is registered (registered: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        }
    }
}

/// The logical node that maps every batch of its input through a named function.
#[derive(Debug, Clone)]
pub struct MapBatches {
    input: LogicalPlan,
    function: Arc<BatchFunction>,
    schema: DFSchemaRef,
}

impl MapBatches {
    /// `input` mapped through the function registered as `name`; fails when none is.
    pub fn new(input: LogicalPlan, name: &str) -> Result<Self> {
        let function = batch_fn(name)?;
        let schema = Arc::new(DFSchema::try_from(Arc::clone(function.output_schema()))?);
        Ok(Self {
            input,
            function,
            schema,
        })
    }

    /// The node as a logical plan.
    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(self),
        })
    }

    /// The function.
    pub fn function(&self) -> &Arc<BatchFunction> {
        &self.function
    }
}

impl PartialEq for MapBatches {
    fn eq(&self, other: &Self) -> bool {
        self.function.name == other.function.name && self.input == other.input
    }
}

impl Eq for MapBatches {}

impl Hash for MapBatches {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.function.name.hash(state);
        self.input.hash(state);
    }
}

impl PartialOrd for MapBatches {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.function.name.cmp(&other.function.name) {
            Ordering::Equal => self.input.partial_cmp(&other.input),
            unequal => Some(unequal),
        }
    }
}

impl UserDefinedLogicalNodeCore for MapBatches {
    fn name(&self) -> &str {
        "MapBatches"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "MapBatches: {}", self.function.name)
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        let Some(input) = inputs.pop() else {
            return internal_err!("MapBatches has one input");
        };
        Ok(Self {
            input,
            function: Arc::clone(&self.function),
            schema: Arc::clone(&self.schema),
        })
    }
}

/// Maps every batch of its input, partition by partition, through a [`BatchFunction`].
#[derive(Debug)]
pub struct MapBatchesExec {
    input: Arc<dyn ExecutionPlan>,
    function: Arc<BatchFunction>,
    properties: Arc<PlanProperties>,
}

impl MapBatchesExec {
    /// `input` mapped through `function`.
    pub fn new(input: Arc<dyn ExecutionPlan>, function: Arc<BatchFunction>) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(function.output_schema())),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            input,
            function,
            properties: Arc::new(properties),
        }
    }

    /// The function.
    pub fn function(&self) -> &Arc<BatchFunction> {
        &self.function
    }
}

impl DisplayAs for MapBatchesExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "MapBatchesExec: function={}", self.function.name)
    }
}

impl ExecutionPlan for MapBatchesExec {
    fn name(&self) -> &str {
        "MapBatchesExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => {
                Ok(Arc::new(Self::new(input, Arc::clone(&self.function))))
            }
            _ => internal_err!("MapBatchesExec has one child"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let function = Arc::clone(&self.function);
        let mapped = input.map(move |batch| batch.and_then(|b| function.call(b)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(self.function.output_schema()),
            mapped,
        )))
    }
}

/// Plans [`MapBatches`] nodes into [`MapBatchesExec`]s.
#[derive(Debug, Default)]
pub struct MapBatchesPlanner;

#[async_trait::async_trait]
impl datafusion::physical_planner::ExtensionPlanner for MapBatchesPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn datafusion::physical_planner::PhysicalPlanner,
        node: &dyn datafusion::logical_expr::UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn datafusion::catalog::Session,
        _planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(map) = node.as_any().downcast_ref::<MapBatches>() else {
            return Ok(None);
        };
        let Some(input) = physical_inputs.first() else {
            return internal_err!("MapBatches has one input");
        };
        Ok(Some(Arc::new(MapBatchesExec::new(
            Arc::clone(input),
            Arc::clone(&map.function),
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_plan, encode_plan};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::empty::EmptyExec;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]))
    }

    fn plan_calling(function: Arc<BatchFunction>) -> Arc<dyn ExecutionPlan> {
        Arc::new(MapBatchesExec::new(
            Arc::new(EmptyExec::new(schema())),
            function,
        ))
    }

    #[test]
    fn a_plan_names_its_function_and_the_executor_finds_it_by_that_name() {
        register_batch_fn("codec_identity", schema(), Ok);
        let plan = plan_calling(batch_fn("codec_identity").expect("registered"));
        let bytes = encode_plan(plan).expect("encodes");
        let decoded = decode_plan(&bytes, &TaskContext::default()).expect("decodes");
        let map = decoded
            .downcast_ref::<MapBatchesExec>()
            .expect("a MapBatchesExec");
        assert_eq!(map.function().name(), "codec_identity");
    }

    #[test]
    fn an_executor_without_the_function_refuses_the_plan_naming_it() {
        let stranger = Arc::new(BatchFunction {
            name: "only_on_the_driver".into(),
            output_schema: schema(),
            apply: Box::new(Ok),
        });
        let bytes = encode_plan(plan_calling(stranger)).expect("encodes");
        let err = decode_plan(&bytes, &TaskContext::default()).expect_err("unknown here");
        assert!(err.to_string().contains("only_on_the_driver"), "{err}");
    }
}
