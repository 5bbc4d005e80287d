//! [`LocalShuffle`]: the shuffle runtime of one task on one executor.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use ember_planner::shuffle::write_summary_schema;
use ember_planner::{CachedPiece, ShuffleReaderExec, ShuffleRuntime, ShuffleWriterExec};
use futures::StreamExt;

use super::writer::MapOutputWriter;
use super::{ShuffleCompression, read_locations};
use crate::task::ShuffleLocation;

/// Shuffle I/O for one task: writes under the task attempt's folder, reads the map outputs
/// the scheduler handed to the task.
#[derive(Debug)]
pub struct LocalShuffle {
    /// Folder of this task attempt's output files.
    task_dir: PathBuf,
    /// Map outputs of the stages this task reads.
    inputs: Arc<Vec<ShuffleLocation>>,
    /// Codec for written files.
    compression: ShuffleCompression,
}

impl LocalShuffle {
    /// A runtime writing under `task_dir` and reading `inputs`.
    pub fn new(
        task_dir: PathBuf,
        inputs: Arc<Vec<ShuffleLocation>>,
        compression: ShuffleCompression,
    ) -> Self {
        Self {
            task_dir,
            inputs,
            compression,
        }
    }
}

impl ShuffleRuntime for LocalShuffle {
    fn write(
        &self,
        writer: &ShuffleWriterExec,
        map_partition: usize,
        input: SendableRecordBatchStream,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let task = MapOutputWriter {
            dir: self.task_dir.clone(),
            output: writer.output().clone(),
            map_partition,
            map_partitions: writer.map_partitions(),
            compression: self.compression,
            batch_size: context.session_config().batch_size(),
        };
        let summary = futures::stream::once(task.write(input));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            write_summary_schema(),
            summary,
        )))
    }

    fn read(
        &self,
        reader: &ShuffleReaderExec,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut pieces: Vec<&ShuffleLocation> = self
            .inputs
            .iter()
            .filter(|l| l.stage_id == reader.stage_id() && l.output_partition == partition)
            .collect();
        pieces.sort_by_key(|l| l.map_partition);
        let paths = pieces.into_iter().map(|l| l.path.clone()).collect();
        // Open the files on first poll, not now: a join's probe side is executed long
        // before the build side is done, and its reader thread would sit parked meanwhile.
        let schema = reader.schema();
        let opened = Arc::clone(&schema);
        let lazy = futures::stream::once(async move { read_locations(opened, paths) }).flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, lazy)))
    }

    fn read_pieces(
        &self,
        schema: SchemaRef,
        pieces: Vec<CachedPiece>,
    ) -> Result<SendableRecordBatchStream> {
        let paths = pieces.into_iter().map(|p| p.path).collect();
        let opened = Arc::clone(&schema);
        let lazy = futures::stream::once(async move { read_locations(opened, paths) }).flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, lazy)))
    }
}
