//! [`ShuffleRuntime`]: the I/O behind the shuffle nodes, supplied by the executor that runs a
//! task, what it is told ([`ShuffleWrite`], [`ShuffleRead`], [`CachedPiece`]), and how a
//! node finds it in its task's context. A leaf of `shuffle`: the nodes depend on it, not it
//! on them.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;

use super::ShuffleOutput;

/// Does the reading and writing of shuffle data for the tasks of one executor.
///
/// Implemented by `ember-executors`; the planner's nodes find it through a
/// [`ShuffleRuntimeHandle`] in the task's `SessionConfig` extensions.
pub trait ShuffleRuntime: Debug + Send + Sync {
    /// Runs `input` (partition `map_partition` of the writer's input) to completion, writes it
    /// out as the writer's [`ShuffleOutput`](super::ShuffleOutput) prescribes, and returns a
    /// stream of summary rows in [`write_summary_schema`].
    fn write(
        &self,
        writer: ShuffleWrite<'_>,
        map_partition: usize,
        input: SendableRecordBatchStream,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream>;

    /// Streams partition `partition` of the stage that `reader` reads: the pieces that every
    /// map task of that stage wrote for it.
    fn read(
        &self,
        reader: ShuffleRead,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream>;

    /// Streams the kept files of a cached dataset's partition, in order.
    fn read_pieces(
        &self,
        schema: SchemaRef,
        pieces: Vec<CachedPiece>,
    ) -> Result<SendableRecordBatchStream>;
}

/// What a map task of a [`ShuffleWriterExec`](super::ShuffleWriterExec) writes: its stage,
/// how the rows spread over the output partitions, and how many map tasks the stage has.
#[derive(Debug, Clone, Copy)]
pub struct ShuffleWrite<'a> {
    /// The stage the writer ends.
    pub stage_id: usize,
    /// How rows spread over the output partitions.
    pub output: &'a ShuffleOutput,
    /// The number of map tasks of the stage (partitions of the writer's input).
    pub map_partitions: usize,
}

/// What a reduce task of a [`ShuffleReaderExec`](super::ShuffleReaderExec) reads: the
/// stage whose output it reads, and the schema of its rows.
#[derive(Debug, Clone)]
pub struct ShuffleRead {
    /// The stage whose output is read.
    pub stage_id: usize,
    /// The rows' schema.
    pub schema: SchemaRef,
}

/// One kept file of a cached dataset: rows of partition `partition`, on `executor_id`,
/// written by map task `map_partition` (attempt `attempt`) of stage `stage_id` of job
/// `job_id`, the parts a Flight ticket names it by on another executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPiece {
    /// The partition of the cached dataset.
    pub partition: usize,
    /// The executor that holds the file.
    pub executor_id: String,
    /// The Arrow IPC file in that executor's work directory.
    pub path: PathBuf,
    /// The job that wrote it.
    pub job_id: String,
    /// The stage that wrote it.
    pub stage_id: usize,
    /// The map task that wrote it.
    pub map_partition: usize,
    /// The attempt of that task.
    pub attempt: usize,
}

/// A [`ShuffleRuntime`] as a `SessionConfig` extension (extensions are looked up by
/// concrete type, so the trait object needs this wrapper).
#[derive(Debug, Clone)]
pub struct ShuffleRuntimeHandle(pub Arc<dyn ShuffleRuntime>);

/// The schema of the rows a [`ShuffleWriterExec`](super::ShuffleWriterExec) returns: one row per output partition
/// that received data.
pub fn write_summary_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("output_partition", DataType::UInt32, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
    ]))
}

/// Finds the executor's shuffle runtime in a task context.
pub(crate) fn shuffle_runtime(context: &TaskContext) -> Result<Arc<ShuffleRuntimeHandle>> {
    context
        .session_config()
        .get_extension::<ShuffleRuntimeHandle>()
        .ok_or_else(|| {
            DataFusionError::Execution(
                "shuffle nodes run only inside an Ember executor: the task context has no \
                 shuffle runtime"
                    .into(),
            )
        })
}
