//! [`ShuffleRuntime`]: the I/O behind the shuffle nodes, supplied by the executor that runs a
//! task.

use std::fmt::Debug;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;

use super::{ShuffleReaderExec, ShuffleWriterExec};
use crate::cache::CachedPiece;

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
        writer: &ShuffleWriterExec,
        map_partition: usize,
        input: SendableRecordBatchStream,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream>;

    /// Streams partition `partition` of the stage that `reader` reads: the pieces that every
    /// map task of that stage wrote for it.
    fn read(
        &self,
        reader: &ShuffleReaderExec,
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

/// A [`ShuffleRuntime`] as a `SessionConfig` extension (extensions are looked up by
/// concrete type, so the trait object needs this wrapper).
#[derive(Debug, Clone)]
pub struct ShuffleRuntimeHandle(pub Arc<dyn ShuffleRuntime>);

/// The schema of the rows a [`ShuffleWriterExec`] returns: one row per output partition
/// that received data.
pub fn write_summary_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("output_partition", DataType::UInt32, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
    ]))
}
