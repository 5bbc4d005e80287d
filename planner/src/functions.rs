//! Named user functions: the [`FunctionRegistry`] that a session and every executor own,
//! and the plan nodes that call them.
//!
//! A closure cannot travel to another process, so a plan refers to a user function by a
//! stable name. Each session owns a registry (pre-filled with the built-ins) and the
//! embedded cluster's executors share their session's; a remote executor built from the
//! user's own binary fills its own with the same functions when it starts. A plan naming
//! an unregistered function fails when it is planned ([`MapPartitions::new`]) and, on an
//! executor that lacks it, when the task plan is decoded.
//!
//! Every function runs partition by partition ([`PartitionFn`]): it sees the batches of its
//! task's partition in order and may return a batch after each one and at the end. A batch
//! function ([`FunctionRegistry::register_batch_fn`]) is the stateless case; a map-side
//! combine keeps a hash table across the partition and returns it at the end.

use std::any::{Any, TypeId};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchemaRef, internal_err, plan_err};
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

use crate::env::{TaskEnv, with_task_env};

/// What a user function does with one partition.
pub trait PartitionFn: Send {
    /// Takes the partition's next batch; may return a batch of output.
    fn push(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>>;

    /// Called after the last batch; may return a last batch of output.
    fn finish(&mut self) -> Result<Option<RecordBatch>> {
        Ok(None)
    }
}

/// Where a call starts: the partition it runs on and the arguments the plan carries.
#[derive(Debug, Clone, Copy)]
pub struct FunctionCall<'a> {
    /// The partition (task) the function runs on.
    pub partition: usize,
    /// The arguments written into the plan ([`MapPartitions::with_args`]); empty for most
    /// functions.
    pub args: &'a str,
}

/// Starts a [`PartitionFn`] for one partition.
pub type PartitionFactory = dyn Fn(FunctionCall<'_>) -> Result<Box<dyn PartitionFn>> + Send + Sync;

/// The body of a batch function.
pub type BatchFn = dyn Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync;

/// The schema of what a function returns.
#[derive(Clone)]
pub enum FunctionOutput {
    /// Always this schema.
    Fixed(SchemaRef),
    /// The schema of its input (filters, samples).
    SameAsInput,
    /// A schema that depends on the call's arguments and the input's schema (a fitted
    /// transformer carried in the arguments adds the columns it makes).
    FromArgs(Arc<OutputFromArgs>),
}

/// Computes a function's output schema from its arguments and its input's schema.
pub type OutputFromArgs = dyn Fn(&str, &SchemaRef) -> Result<SchemaRef> + Send + Sync;

impl fmt::Debug for FunctionOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(schema) => f.debug_tuple("Fixed").field(schema).finish(),
            Self::SameAsInput => f.write_str("SameAsInput"),
            Self::FromArgs(_) => f.write_str("FromArgs"),
        }
    }
}

/// The Rust types of the rows a typed function reads and returns, for checks at planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowTypes {
    /// The type of the rows read.
    pub input: TypeId,
    /// Its name, for messages.
    pub input_name: &'static str,
    /// The type of the rows returned.
    pub output: TypeId,
    /// Its name, for messages.
    pub output_name: &'static str,
}

impl RowTypes {
    /// The types `I` in, `O` out.
    pub fn of<I: 'static, O: 'static>() -> Self {
        Self {
            input: TypeId::of::<I>(),
            input_name: std::any::type_name::<I>(),
            output: TypeId::of::<O>(),
            output_name: std::any::type_name::<O>(),
        }
    }
}

/// Builds the function that runs `before` and then this one, in one pass, when the two
/// can be fused (see [`UserFunction::with_fusion`]).
pub type FuseFn = dyn Fn(&UserFunction) -> Option<UserFunction> + Send + Sync;

/// A registered user function.
pub struct UserFunction {
    name: String,
    output: FunctionOutput,
    row_types: Option<RowTypes>,
    factory: Box<PartitionFactory>,
    /// A typed function's rows-from-a-batch closure, for fusion (opaque to the planner).
    rows: Option<Arc<dyn Any + Send + Sync>>,
    /// How to fuse a function that runs right before this one.
    fuse: Option<Arc<FuseFn>>,
}

impl UserFunction {
    /// A function named `name` whose partitions run through what `factory` starts.
    pub fn new(
        name: impl Into<String>,
        output: FunctionOutput,
        row_types: Option<RowTypes>,
        factory: impl Fn(FunctionCall<'_>) -> Result<Box<dyn PartitionFn>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            output,
            row_types,
            factory: Box::new(factory),
            rows: None,
            fuse: None,
        }
    }

    /// Attaches the typed closure that computes this function's output rows from an input
    /// batch without converting them to Arrow, so a following function can fuse with it.
    pub fn with_rows(mut self, rows: Arc<dyn Any + Send + Sync>) -> Self {
        self.rows = Some(rows);
        self
    }

    /// The typed closure of [`Self::with_rows`].
    pub fn rows(&self) -> Option<&Arc<dyn Any + Send + Sync>> {
        self.rows.as_ref()
    }

    /// Lets this function fuse with one that runs right before it: `fuse(before)` returns
    /// the single function that does both, or `None` when they do not fit together. A plan
    /// names the fused function `before>this`, and each executor fuses again from its own
    /// registry.
    pub fn with_fusion(
        mut self,
        fuse: impl Fn(&UserFunction) -> Option<UserFunction> + Send + Sync + 'static,
    ) -> Self {
        self.fuse = Some(Arc::new(fuse));
        self
    }

    /// The function's registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema of what it returns.
    pub fn output(&self) -> &FunctionOutput {
        &self.output
    }

    /// The row types of a typed function; `None` for batch functions.
    pub fn row_types(&self) -> Option<RowTypes> {
        self.row_types
    }

    /// Starts the function on one partition.
    pub fn start(&self, call: FunctionCall<'_>) -> Result<Box<dyn PartitionFn>> {
        (self.factory)(call).map_err(|e| self.context(e))
    }

    /// `error` with the function's name. A typed error the function boxed on purpose
    /// (such as an executor's input error) stays reachable by downcasting.
    fn context(&self, error: DataFusionError) -> DataFusionError {
        match error {
            DataFusionError::External(_) => error.context(format!("function '{}'", self.name)),
            _ => DataFusionError::Execution(format!("function '{}': {error}", self.name)),
        }
    }

    /// The output schema for an input of schema `input` and the call's `args`.
    fn output_schema(&self, input: &SchemaRef, args: &str) -> Result<SchemaRef> {
        match &self.output {
            FunctionOutput::Fixed(schema) => Ok(Arc::clone(schema)),
            FunctionOutput::SameAsInput => Ok(Arc::clone(input)),
            FunctionOutput::FromArgs(output) => output(args, input).map_err(|e| self.context(e)),
        }
    }

    /// Checks that `batch` has the columns the function promised.
    fn check(&self, batch: RecordBatch, expected: &SchemaRef) -> Result<RecordBatch> {
        if batch.schema().fields() != expected.fields() {
            return Err(DataFusionError::Execution(format!(
                "function '{}' returned columns {:?}, but promised {:?}",
                self.name,
                batch.schema().fields(),
                expected.fields()
            )));
        }
        Ok(batch)
    }
}

impl fmt::Debug for UserFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserFunction")
            .field("name", &self.name)
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}

/// A stateless function applied to every batch.
/// A stateless partition function: each batch in, one batch out.
pub struct EachBatch<F>(pub F);

impl<F: FnMut(RecordBatch) -> Result<RecordBatch> + Send> PartitionFn for EachBatch<F> {
    fn push(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        (self.0)(batch).map(Some)
    }
}

/// The user functions a driver or an executor knows, by name: a value, not a process
/// global, so that two sessions in one process may give one name different functions.
///
/// [`FunctionRegistry::new`] starts with the planner's built-ins. Clones share one table
/// (an `Arc` inside): the embedded cluster's executors hold clones of their session's
/// registry and see what it registers later; a fresh registry sees nothing of another.
#[derive(Clone)]
pub struct FunctionRegistry {
    functions: Arc<RwLock<HashMap<String, Arc<UserFunction>>>>,
}

impl Default for FunctionRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for FunctionRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionRegistry")
            .field("names", &self.names())
            .finish()
    }
}

impl FunctionRegistry {
    /// A registry with no function at all; [`FunctionRegistry::new`] (in `sample.rs`) is
    /// the one with the built-ins.
    pub(crate) fn empty() -> Self {
        Self {
            functions: Arc::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<UserFunction>>> {
        match self.functions.read() {
            Ok(functions) => functions,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Registers `function` under its name. A later registration of the same name
    /// replaces the earlier one.
    pub fn register(&self, function: UserFunction) {
        let name = function.name.clone();
        let function = Arc::new(function);
        let mut functions = match self.functions.write() {
            Ok(functions) => functions,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !name.contains(FUSE_SEPARATOR) {
            // Fusions are rebuilt on demand: drop those that may include an older version.
            functions.retain(|existing, _| !existing.contains(FUSE_SEPARATOR));
        }
        functions.insert(name, function);
    }

    /// Registers `apply` under `name`, mapping every batch to a batch of `output_schema`.
    /// A later registration of the same name replaces the earlier one.
    pub fn register_batch_fn(
        &self,
        name: impl Into<String>,
        output_schema: SchemaRef,
        apply: impl Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync + 'static,
    ) {
        let apply: Arc<BatchFn> = Arc::new(apply);
        self.register(UserFunction::new(
            name,
            FunctionOutput::Fixed(output_schema),
            None,
            move |_| {
                let apply = Arc::clone(&apply);
                Ok(Box::new(EachBatch(move |batch| apply(batch))) as Box<dyn PartitionFn>)
            },
        ));
    }

    /// The names registered, sorted (fusions built so far included).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// The function registered under `name` (or the fusion of two registered functions,
    /// for a name made by [`fused_name`]); a plan error naming the registered ones when
    /// there is none.
    pub fn get(&self, name: &str) -> Result<Arc<UserFunction>> {
        let found = self.read().get(name).cloned();
        if let Some(function) = found.or_else(|| self.fuse_by_name(name)) {
            return Ok(function);
        }
        let known: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| !n.starts_with("ember.") && !n.contains(FUSE_SEPARATOR))
            .collect();
        plan_err!(
            "no function named '{name}' is registered (registered: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )
    }

    /// The fusion of two registered functions whose names join to `name`, registered
    /// under `name` once built.
    fn fuse_by_name(&self, name: &str) -> Option<Arc<UserFunction>> {
        let lookup = |n: &str| self.read().get(n).cloned();
        for (at, _) in name.match_indices(FUSE_SEPARATOR) {
            let (before, after) = (&name[..at], &name[at + 1..]);
            let Some(first) = lookup(before).or_else(|| self.fuse_by_name(before)) else {
                continue;
            };
            let Some(second) = lookup(after) else {
                continue;
            };
            let mut fused = second.fuse.as_ref().and_then(|fuse| fuse(&first))?;
            fused.name = name.to_string();
            let fused = Arc::new(fused);
            let mut functions = match self.functions.write() {
                Ok(functions) => functions,
                Err(poisoned) => poisoned.into_inner(),
            };
            functions.insert(name.to_string(), Arc::clone(&fused));
            return Some(fused);
        }
        None
    }
}

/// The name of the function that runs `before`, then `after`, in one pass.
pub fn fused_name(before: &str, after: &str) -> String {
    format!("{before}{FUSE_SEPARATOR}{after}")
}

const FUSE_SEPARATOR: char = '>';

/// The logical node that runs every partition of its input through a named function.
#[derive(Debug, Clone)]
pub struct MapPartitions {
    input: LogicalPlan,
    function: Arc<UserFunction>,
    args: String,
    schema: DFSchemaRef,
}

impl MapPartitions {
    /// `input` run through the function registered in `functions` as `name`; fails when
    /// none is.
    pub fn new(input: LogicalPlan, functions: &FunctionRegistry, name: &str) -> Result<Self> {
        Self::with_args(input, functions, name, String::new())
    }

    /// `input` run through the function registered in `functions` as `name`, which
    /// receives `args`.
    pub fn with_args(
        input: LogicalPlan,
        functions: &FunctionRegistry,
        name: &str,
        args: String,
    ) -> Result<Self> {
        let function = functions.get(name)?;
        let schema = match function.output() {
            FunctionOutput::SameAsInput => Arc::clone(input.schema()),
            _ => {
                let input_schema = Arc::clone(input.schema().inner());
                let output = function.output_schema(&input_schema, &args)?;
                Arc::new(datafusion::common::DFSchema::try_from(output)?)
            }
        };
        Ok(Self {
            input,
            function,
            args,
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
    pub fn function(&self) -> &Arc<UserFunction> {
        &self.function
    }

    /// The arguments the function is called with.
    pub fn args(&self) -> &str {
        &self.args
    }

    /// The input plan.
    pub fn input(&self) -> &LogicalPlan {
        &self.input
    }

    /// The physical node, over the planned `input`.
    pub(crate) fn to_exec(&self, input: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(MapPartitionsExec::new(
            input,
            Arc::clone(&self.function),
            self.args.clone(),
        )?))
    }
}

impl PartialEq for MapPartitions {
    fn eq(&self, other: &Self) -> bool {
        self.function.name == other.function.name
            && self.args == other.args
            && self.input == other.input
    }
}

impl Eq for MapPartitions {}

impl Hash for MapPartitions {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.function.name.hash(state);
        self.args.hash(state);
        self.input.hash(state);
    }
}

impl PartialOrd for MapPartitions {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (&self.function.name, &self.args).cmp(&(&other.function.name, &other.args)) {
            Ordering::Equal => self.input.partial_cmp(&other.input),
            unequal => Some(unequal),
        }
    }
}

impl UserDefinedLogicalNodeCore for MapPartitions {
    fn name(&self) -> &str {
        "MapPartitions"
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
        write!(f, "MapPartitions: {}", self.function.name)?;
        if !self.args.is_empty() {
            write!(f, "({})", self.args)?;
        }
        Ok(())
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        let Some(input) = inputs.pop() else {
            return internal_err!("MapPartitions has one input");
        };
        Ok(Self {
            input,
            function: Arc::clone(&self.function),
            args: self.args.clone(),
            schema: Arc::clone(&self.schema),
        })
    }

    fn necessary_children_exprs(&self, _output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        // A function reads whole rows: keep every input column.
        None
    }
}

/// Runs every partition of its input through a [`UserFunction`].
#[derive(Debug)]
pub struct MapPartitionsExec {
    input: Arc<dyn ExecutionPlan>,
    function: Arc<UserFunction>,
    args: String,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl MapPartitionsExec {
    /// `input` run through `function` with `args`; fails when the function's output
    /// schema cannot be made from `args`.
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        function: Arc<UserFunction>,
        args: String,
    ) -> Result<Self> {
        let schema = function.output_schema(&input.schema(), &args)?;
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Self {
            input,
            function,
            args,
            schema,
            properties: Arc::new(properties),
        })
    }

    /// The function.
    pub fn function(&self) -> &Arc<UserFunction> {
        &self.function
    }

    /// The arguments it is called with.
    pub fn args(&self) -> &str {
        &self.args
    }
}

impl DisplayAs for MapPartitionsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "MapPartitionsExec: function={}", self.function.name)?;
        if !self.args.is_empty() {
            write!(f, ", args={}", self.args)?;
        }
        Ok(())
    }
}

/// The state of one running partition.
struct Running {
    input: SendableRecordBatchStream,
    state: Box<dyn PartitionFn>,
    function: Arc<UserFunction>,
    env: Option<Arc<TaskEnv>>,
    schema: SchemaRef,
}

impl Running {
    fn call(
        &mut self,
        step: impl FnOnce(&mut dyn PartitionFn) -> Result<Option<RecordBatch>>,
    ) -> Result<Option<RecordBatch>> {
        let state = self.state.as_mut();
        match with_task_env(self.env.as_ref(), || step(state)) {
            Ok(Some(batch)) => self.function.check(batch, &self.schema).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(self.function.context(e)),
        }
    }
}

impl ExecutionPlan for MapPartitionsExec {
    fn name(&self) -> &str {
        "MapPartitionsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        // Never let the optimizer put a round-robin repartition under a function: a reduce
        // after a hash exchange must see all the rows of each key in one partition.
        vec![false]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
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
            Some(input) if children.is_empty() => Ok(Arc::new(Self::new(
                input,
                Arc::clone(&self.function),
                self.args.clone(),
            )?)),
            _ => internal_err!("MapPartitionsExec has one child"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let env = context.session_config().get_extension::<TaskEnv>();
        let input = self.input.execute(partition, context)?;
        let call = FunctionCall {
            partition,
            args: &self.args,
        };
        let state = with_task_env(env.as_ref(), || self.function.start(call))?;
        let running = Running {
            input,
            state,
            function: Arc::clone(&self.function),
            env,
            schema: Arc::clone(&self.schema),
        };
        let output = futures::stream::unfold(Some(running), |running| async move {
            let mut running = running?;
            loop {
                match running.input.next().await {
                    Some(Ok(batch)) => match running.call(|s| s.push(batch)) {
                        Ok(Some(out)) => return Some((Ok(out), Some(running))),
                        Ok(None) => continue,
                        Err(e) => return Some((Err(e), None)),
                    },
                    Some(Err(e)) => return Some((Err(e), None)),
                    None => {
                        return match running.call(|s| s.finish()) {
                            Ok(Some(out)) => Some((Ok(out), None)),
                            Ok(None) => None,
                            Err(e) => Some((Err(e), None)),
                        };
                    }
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            output,
        )))
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

    fn plan_calling(function: Arc<UserFunction>) -> Arc<dyn ExecutionPlan> {
        Arc::new(
            MapPartitionsExec::new(Arc::new(EmptyExec::new(schema())), function, "x=1".into())
                .expect("a fixed schema"),
        )
    }

    #[test]
    fn a_plan_names_its_function_and_the_executor_finds_it_by_that_name() {
        let driver = FunctionRegistry::new();
        driver.register_batch_fn("codec_identity", schema(), Ok);
        let plan = plan_calling(driver.get("codec_identity").expect("registered"));
        let bytes = encode_plan(plan).expect("encodes");
        let executor = FunctionRegistry::new();
        executor.register_batch_fn("codec_identity", schema(), Ok);
        let decoded = decode_plan(&bytes, &TaskContext::default(), &executor).expect("decodes");
        let map = decoded
            .downcast_ref::<MapPartitionsExec>()
            .expect("a MapPartitionsExec");
        assert_eq!(map.function().name(), "codec_identity");
        assert_eq!(map.args(), "x=1");
    }

    #[test]
    fn an_executor_without_the_function_refuses_the_plan_naming_it() {
        let stranger = Arc::new(UserFunction::new(
            "only_on_the_driver",
            FunctionOutput::SameAsInput,
            None,
            |_| Ok(Box::new(EachBatch(Ok)) as Box<dyn PartitionFn>),
        ));
        let bytes = encode_plan(plan_calling(stranger)).expect("encodes");
        let err = decode_plan(&bytes, &TaskContext::default(), &FunctionRegistry::new())
            .expect_err("unknown here");
        assert!(err.to_string().contains("only_on_the_driver"), "{err}");
    }

    #[test]
    fn two_registries_give_one_name_their_own_functions() {
        let doubles = FunctionRegistry::new();
        let halves = FunctionRegistry::new();
        doubles.register(UserFunction::new(
            "scale",
            FunctionOutput::Fixed(schema()),
            None,
            |_| Ok(Box::new(EachBatch(Ok)) as Box<dyn PartitionFn>),
        ));
        halves.register(UserFunction::new(
            "scale",
            FunctionOutput::SameAsInput,
            None,
            |_| Ok(Box::new(EachBatch(Ok)) as Box<dyn PartitionFn>),
        ));
        let output = |registry: &FunctionRegistry| {
            format!("{:?}", registry.get("scale").expect("registered").output())
        };
        assert!(
            output(&doubles).starts_with("Fixed"),
            "{}",
            output(&doubles)
        );
        assert_eq!(output(&halves), "SameAsInput");
        let shared = doubles.clone();
        shared.register_batch_fn("later", schema(), Ok);
        assert!(doubles.get("later").is_ok(), "a clone shares its registry");
        assert!(halves.get("later").is_err(), "another registry does not");
    }
}
