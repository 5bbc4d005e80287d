//! [`LocalShuffle`]: the shuffle runtime of one task on one executor.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use ember_planner::shuffle::write_summary_schema;
use ember_planner::{CachedPiece, ShuffleRead, ShuffleRuntime, ShuffleWrite};

use super::ShuffleCompression;
use super::fetch::{Piece, RemoteInputs, read_pieces};
use super::writer::MapOutputWriter;
use crate::rpc::flight_client::PeerClients;
use crate::storage::StoreOptions;
use ember_proto::ShuffleLocation;

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
    /// How to reach inputs held by other executors (none on the embedded cluster).
    remote: Option<RemoteInputs>,
    /// The options of the stores that pieces in a shuffle directory lie in.
    stores: StoreOptions,
    /// The task's own partition, which names its map output, when it differs from the plan
    /// partition it runs (a task cut by adaptive execution).
    map_partition: Option<usize>,
    /// Read every given piece of a stage, whatever its partition: the scheduler handed the
    /// task exactly its share (adaptive execution).
    read_given: bool,
}

impl LocalShuffle {
    /// A runtime writing under `task_dir` and reading `inputs`.
    pub fn new(
        task_dir: PathBuf,
        inputs: Arc<Vec<ShuffleLocation>>,
        compression: ShuffleCompression,
        remote: Option<RemoteInputs>,
    ) -> Self {
        Self {
            task_dir,
            inputs,
            compression,
            remote,
            stores: StoreOptions::default(),
            map_partition: None,
            read_given: false,
        }
    }

    /// A task cut by adaptive execution: it is task `map_partition` of its stage (which
    /// names its output) and reads every piece it was given.
    pub fn adapted(mut self, map_partition: usize) -> Self {
        self.map_partition = Some(map_partition);
        self.read_given = true;
        self
    }

    /// Reads pieces in a shuffle directory with these store options.
    pub fn with_stores(mut self, stores: StoreOptions) -> Self {
        if let Some(remote) = &mut self.remote {
            remote.stores = stores.clone();
        }
        self.stores = stores;
        self
    }

    /// How to read `location`.
    fn piece(&self, location: &ShuffleLocation) -> Piece {
        match &self.remote {
            Some(remote) => remote.piece(location),
            None => Piece::stored(location, &self.stores),
        }
    }

    fn clients(&self) -> Option<Arc<PeerClients>> {
        self.remote.as_ref().map(|r| Arc::clone(&r.clients))
    }
}

impl ShuffleRuntime for LocalShuffle {
    fn write(
        &self,
        writer: ShuffleWrite<'_>,
        map_partition: usize,
        input: SendableRecordBatchStream,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let task = MapOutputWriter {
            dir: self.task_dir.clone(),
            output: writer.output.clone(),
            map_partition: self.map_partition.unwrap_or(map_partition),
            map_partitions: writer.map_partitions,
            compression: self.compression,
            batch_size: context.session_config().batch_size(),
            pool: Arc::clone(context.memory_pool()),
        };
        let summary = futures::stream::once(task.write(input));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            write_summary_schema(),
            summary,
        )))
    }

    fn read(
        &self,
        reader: ShuffleRead,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut pieces: Vec<&ShuffleLocation> = self
            .inputs
            .iter()
            .filter(|l| {
                l.stage_id == ember_proto::StageId(reader.stage_id)
                    && (self.read_given || l.output_partition == partition)
            })
            .collect();
        pieces.sort_by_key(|l| (l.output_partition, l.map_partition));
        let pieces = pieces.into_iter().map(|l| self.piece(l)).collect();
        Ok(read_pieces(reader.schema, pieces, self.clients()))
    }

    fn read_pieces(
        &self,
        schema: SchemaRef,
        pieces: Vec<CachedPiece>,
    ) -> Result<SendableRecordBatchStream> {
        let pieces = pieces
            .into_iter()
            .map(|p| {
                let location = ShuffleLocation {
                    stage_id: ember_proto::StageId(p.stage_id),
                    map_partition: p.map_partition,
                    attempt: p.attempt,
                    output_partition: p.partition,
                    executor_id: p.executor_id.into(),
                    path: p.path,
                    rows: 0,
                    bytes: 0,
                };
                match &self.remote {
                    Some(remote) => remote.piece_in(&location, &p.job_id),
                    None => Piece::stored(&location, &self.stores),
                }
            })
            .collect();
        Ok(read_pieces(schema, pieces, self.clients()))
    }
}
