//! Cached datasets: [`CacheEntry`] (a dataset's lineage and where its partitions are kept),
//! the logical leaf [`CachedData`] that stands for it in later plans, and [`CacheScanExec`],
//! which reads the kept partitions back.
//!
//! The driver materializes an entry by running its lineage as a job whose final output
//! stays on the executors ([`CacheEntry::set_pieces`]); a later plan reads those files. When
//! any of them is gone (an executor lost its work directory), the driver runs the lineage
//! again before planning, so a cache is a speed-up that never changes a result.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchemaRef, internal_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};

pub use crate::shuffle::CachedPiece;
use crate::shuffle::shuffle_runtime;

/// Where a materialized cache lies.
#[derive(Debug, Clone)]
pub struct CacheLocation {
    /// The job folder that holds the files on every executor.
    pub job_id: String,
    /// Partitions of the cached dataset.
    pub partitions: usize,
    /// The files, in partition order.
    pub pieces: Arc<Vec<CachedPiece>>,
}

/// A dataset marked for caching: its lineage, and its files once materialized.
pub struct CacheEntry {
    id: u64,
    lineage: LogicalPlan,
    location: Mutex<Option<CacheLocation>>,
    materializations: AtomicUsize,
}

impl fmt::Debug for CacheEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheEntry")
            .field("id", &self.id)
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

impl CacheEntry {
    /// An entry for the dataset computed by `lineage`, not materialized yet.
    pub fn new(id: u64, lineage: LogicalPlan) -> Self {
        Self {
            id,
            lineage,
            location: Mutex::new(None),
            materializations: AtomicUsize::new(0),
        }
    }

    /// The entry's id, unique in its session.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The plan that computes the dataset.
    pub fn lineage(&self) -> &LogicalPlan {
        &self.lineage
    }

    /// Where the files are, when materialized.
    pub fn location(&self) -> Option<CacheLocation> {
        match self.location.lock() {
            Ok(location) => location.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Records a (new) materialization and returns the one it replaces.
    pub fn set_location(&self, location: CacheLocation) -> Option<CacheLocation> {
        self.materializations.fetch_add(1, AtomicOrdering::Relaxed);
        match self.location.lock() {
            Ok(mut current) => current.replace(location),
            Err(poisoned) => poisoned.into_inner().replace(location),
        }
    }

    /// Forgets the files (they are gone or dropped) and returns where they were.
    pub fn clear_location(&self) -> Option<CacheLocation> {
        match self.location.lock() {
            Ok(mut current) => current.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }

    /// How many times the lineage has run (1 when the cache was never lost).
    pub fn materializations(&self) -> usize {
        self.materializations.load(AtomicOrdering::Relaxed)
    }
}

/// The logical leaf that stands for a cached dataset in later plans.
#[derive(Debug, Clone)]
pub struct CachedData {
    entry: Arc<CacheEntry>,
    schema: DFSchemaRef,
}

impl CachedData {
    /// The leaf for `entry`.
    pub fn new(entry: Arc<CacheEntry>) -> Self {
        let schema = Arc::clone(entry.lineage.schema());
        Self { entry, schema }
    }

    /// The node as a logical plan.
    pub fn into_plan(self) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(self),
        })
    }

    /// The entry.
    pub fn entry(&self) -> &Arc<CacheEntry> {
        &self.entry
    }

    /// The scan of the kept files; fails when the cache was not materialized first.
    pub(crate) fn to_exec(&self) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(location) = self.entry.location() else {
            return Err(DataFusionError::Internal(format!(
                "cache {} is planned before it was materialized",
                self.entry.id
            )));
        };
        Ok(Arc::new(CacheScanExec::new(
            self.entry.id,
            Arc::clone(self.schema.inner()),
            location.partitions,
            location.pieces,
        )))
    }
}

impl PartialEq for CachedData {
    fn eq(&self, other: &Self) -> bool {
        self.entry.id == other.entry.id
    }
}

impl Eq for CachedData {}

impl Hash for CachedData {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.entry.id.hash(state);
    }
}

impl PartialOrd for CachedData {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.entry.id.cmp(&other.entry.id))
    }
}

impl UserDefinedLogicalNodeCore for CachedData {
    fn name(&self) -> &str {
        "CachedData"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CachedData: cache={}", self.entry.id)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}

/// Reads the kept partitions of a cached dataset.
#[derive(Debug)]
pub struct CacheScanExec {
    cache_id: u64,
    schema: SchemaRef,
    pieces: Arc<Vec<CachedPiece>>,
    properties: Arc<PlanProperties>,
}

impl CacheScanExec {
    /// A scan of cache `cache_id`: `partitions` partitions made of `pieces`.
    pub fn new(
        cache_id: u64,
        schema: SchemaRef,
        partitions: usize,
        pieces: Arc<Vec<CachedPiece>>,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            cache_id,
            schema,
            pieces,
            properties: Arc::new(properties),
        }
    }

    /// The cache read.
    pub fn cache_id(&self) -> u64 {
        self.cache_id
    }

    /// The files read.
    pub fn pieces(&self) -> &[CachedPiece] {
        &self.pieces
    }
}

impl DisplayAs for CacheScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "CacheScanExec: cache={}, files={}",
            self.cache_id,
            self.pieces.len()
        )
    }
}

impl ExecutionPlan for CacheScanExec {
    fn name(&self) -> &str {
        "CacheScanExec"
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

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            internal_err!("CacheScanExec has no children")
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let runtime = shuffle_runtime(&context)?;
        let pieces = self
            .pieces
            .iter()
            .filter(|p| p.partition == partition)
            .cloned()
            .collect();
        // Cooperative, as the shuffle reader: a cancelled job's task stops.
        Ok(datafusion::physical_plan::coop::make_cooperative(
            runtime.0.read_pieces(Arc::clone(&self.schema), pieces)?,
        ))
    }
}
