//! An exchange the user asked for: `Dataset::repartition` and `repartition_by`.
//!
//! DataFusion treats its own `RepartitionExec` as a means to an end: its physical optimizer
//! removes every repartition the plan does not need and adds the ones it does. A
//! repartition the user asked for (to spread skewed data, or to co-locate keys before a
//! custom step) must survive that, so the DSL plans it as an [`Exchange`] logical node,
//! planned by [`EmberExtensionPlanner`] into an [`ExchangeExec`] that the optimizer leaves alone.
//! The stage cutter treats an `ExchangeExec` exactly like a repartition: a hash or
//! round-robin shuffle. It never runs as an operator.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::cache::CachedData;
use crate::functions::MapPartitions;
use datafusion::common::tree_node::{TreeNodeIterator, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, internal_err};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, Partitioning as LogicalPartitioning, UserDefinedLogicalNode,
    UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

/// The logical node of a requested repartition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Exchange {
    input: LogicalPlan,
    partitioning: LogicalPartitioning,
}

impl Exchange {
    /// `input` shuffled into `partitioning` (round robin or hash only).
    pub fn new(input: LogicalPlan, partitioning: LogicalPartitioning) -> Result<Self> {
        match partitioning {
            LogicalPartitioning::RoundRobinBatch(n) | LogicalPartitioning::Hash(_, n) if n > 0 => {
                Ok(Self {
                    input,
                    partitioning,
                })
            }
            other => internal_err!(
                "an exchange needs round robin or hash into 1+ partitions, got {other:?}"
            ),
        }
    }

    /// The node as a logical plan.
    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(self),
        })
    }
}

impl PartialOrd for Exchange {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        if self.partitioning == other.partitioning {
            self.input.partial_cmp(&other.input)
        } else {
            None
        }
    }
}

impl UserDefinedLogicalNodeCore for Exchange {
    fn name(&self) -> &str {
        "Exchange"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        match &self.partitioning {
            LogicalPartitioning::Hash(keys, _) => keys.clone(),
            _ => vec![],
        }
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Exchange: {:?}", self.partitioning)
    }

    fn with_exprs_and_inputs(
        &self,
        exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        let Some(input) = inputs.pop() else {
            return internal_err!("an exchange has one input");
        };
        let partitioning = match &self.partitioning {
            LogicalPartitioning::Hash(_, n) => LogicalPartitioning::Hash(exprs, *n),
            other => other.clone(),
        };
        Self::new(input, partitioning)
    }
}

/// Plans Ember's logical extension nodes: [`Exchange`] into [`ExchangeExec`],
/// [`MapPartitions`] into [`MapPartitionsExec`](crate::MapPartitionsExec) and
/// [`CachedData`] into [`CacheScanExec`](crate::CacheScanExec).
#[derive(Debug, Default)]
pub struct EmberExtensionPlanner;

#[async_trait]
impl ExtensionPlanner for EmberExtensionPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn datafusion::catalog::Session,
        planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        if let Some(map) = node.as_any().downcast_ref::<MapPartitions>() {
            let [input] = physical_inputs else {
                return internal_err!("MapPartitions has one input");
            };
            return map.to_exec(Arc::clone(input)).map(Some);
        }
        if let Some(cached) = node.as_any().downcast_ref::<CachedData>() {
            return cached.to_exec().map(Some);
        }
        let Some(exchange) = node.as_any().downcast_ref::<Exchange>() else {
            return Ok(None);
        };
        let (Some(input), Some(logical_input)) = (physical_inputs.first(), logical_inputs.first())
        else {
            return internal_err!("an exchange has one input");
        };
        let partitioning = match &exchange.partitioning {
            LogicalPartitioning::RoundRobinBatch(n) => Partitioning::RoundRobinBatch(*n),
            LogicalPartitioning::Hash(keys, n) => {
                let keys = keys
                    .iter()
                    .map(|k| {
                        planner.create_physical_expr(
                            k,
                            logical_input.schema(),
                            session,
                            planning_ctx,
                        )
                    })
                    .collect::<Result<Vec<_>>>()?;
                Partitioning::Hash(keys, *n)
            }
            other => return internal_err!("unsupported exchange {other:?}"),
        };
        Ok(Some(Arc::new(ExchangeExec::new(
            Arc::clone(input),
            partitioning,
        ))))
    }
}

/// A requested shuffle in a physical plan; the stage cutter replaces it.
#[derive(Debug)]
pub struct ExchangeExec {
    input: Arc<dyn ExecutionPlan>,
    partitioning: Partitioning,
    properties: Arc<PlanProperties>,
}

impl ExchangeExec {
    /// `input` shuffled into `partitioning`.
    pub fn new(input: Arc<dyn ExecutionPlan>, partitioning: Partitioning) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            partitioning.clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            input,
            partitioning,
            properties: Arc::new(properties),
        }
    }

    /// The input.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    /// How rows are spread.
    pub fn partitioning(&self) -> &Partitioning {
        &self.partitioning
    }
}

impl DisplayAs for ExchangeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ExchangeExec: partitioning={}", self.partitioning)
    }
}

impl ExecutionPlan for ExchangeExec {
    fn name(&self) -> &str {
        "ExchangeExec"
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        match &self.partitioning {
            Partitioning::Hash(exprs, _) => exprs.iter().apply_until_stop(f),
            _ => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => {
                Ok(Arc::new(Self::new(input, self.partitioning.clone())))
            }
            _ => internal_err!("ExchangeExec has one child"),
        }
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        internal_err!("an exchange runs as a shuffle between stages, not as an operator")
    }
}

/// DataFusion's physical planner with Ember's [`EmberExtensionPlanner`].
#[derive(Debug, Default)]
pub struct EmberQueryPlanner;

#[async_trait]
impl datafusion::execution::context::QueryPlanner for EmberQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(EmberExtensionPlanner)])
            .create_physical_plan(logical_plan, session)
            .await
    }
}
