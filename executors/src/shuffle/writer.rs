//! Writing one map task's output: partition each batch (DataFusion's [`BatchPartitioner`]),
//! coalesce the small pieces back to full batches, and append them to one Arrow
//! IPC stream file per output partition, with a trailer of the messages' checksums
//! ([`ChecksumWriter`]).
//!
//! The rows waiting in the coalescers (and the file buffers) are reserved in the task's
//! memory pool, like any operator's state. When the pool cannot grant more, the writer
//! writes what it holds as smaller batches and goes on: its way of spilling.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{RecordBatch, StringBuilder, UInt32Builder, UInt64Builder};
use arrow::compute::BatchCoalescer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::metrics::Time;
use datafusion::physical_plan::repartition::BatchPartitioner;
use ember_planner::ShuffleOutput;
use ember_planner::shuffle::write_summary_schema;
use ember_proto::ticket::piece_file;
use futures::StreamExt;

use super::ShuffleCompression;
use super::compact::compact_views;
use super::ipc::ChecksumWriter;

/// Everything a map task needs to write its output.
pub(crate) struct MapOutputWriter {
    /// The folder of this task attempt's files.
    pub dir: PathBuf,
    /// How rows are assigned to output partitions.
    pub output: ShuffleOutput,
    /// This task's partition (input partition of the partitioner).
    pub map_partition: usize,
    /// Number of map tasks in the stage.
    pub map_partitions: usize,
    /// Codec of the files.
    pub compression: ShuffleCompression,
    /// Rows per batch written.
    pub batch_size: usize,
    /// The pool its buffers are reserved in (the executor's, under a memory limit).
    pub pool: Arc<dyn MemoryPool>,
}

/// Bytes of a file's write buffer.
const FILE_BUFFER: usize = 1 << 16;

impl MapOutputWriter {
    /// Drains `input` into the partition files; returns one summary row per file.
    pub async fn write(self, mut input: SendableRecordBatchStream) -> Result<RecordBatch> {
        let schema = input.schema();
        let count = self.output.partition_count();
        let mut partitioner =
            match &self.output {
                ShuffleOutput::Hash { exprs, count } => Some(
                    BatchPartitioner::new_hash_partitioner(exprs.clone(), *count, Time::new())?,
                ),
                ShuffleOutput::RoundRobin { count } => {
                    Some(BatchPartitioner::new_round_robin_partitioner(
                        *count,
                        Time::new(),
                        self.map_partition,
                        self.map_partitions,
                    ))
                }
                ShuffleOutput::Single | ShuffleOutput::Preserve { .. } => None,
            };
        let fixed_target = match &self.output {
            ShuffleOutput::Preserve { .. } => self.map_partition,
            _ => 0,
        };
        if fixed_target >= count {
            return Err(DataFusionError::Internal(format!(
                "map partition {fixed_target} has no output partition (only {count})"
            )));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| io_error("creating", &self.dir, e))?;
        let mut files: Vec<Option<PartitionFile>> = (0..count).map(|_| None).collect();
        let reservation = MemoryConsumer::new(format!("ShuffleWriter[{}]", self.map_partition))
            .register(&self.pool);

        while let Some(batch) = input.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let mut route = |partition: usize, piece: RecordBatch| -> Result<()> {
                let slot = &mut files[partition];
                if slot.is_none() {
                    *slot = Some(PartitionFile::create(
                        &self.dir,
                        partition,
                        &schema,
                        self.compression,
                        self.batch_size,
                    )?);
                }
                match slot {
                    Some(file) => file.push(piece),
                    None => Ok(()),
                }
            };
            match partitioner.as_mut() {
                Some(partitioner) => partitioner.partition(batch, &mut route)?,
                None => route(fixed_target, batch)?,
            }
            let held: usize = files.iter().flatten().map(PartitionFile::held_bytes).sum();
            if reservation.try_resize(held).is_err() {
                // Under memory pressure: write out what the coalescers hold.
                for file in files.iter_mut().flatten() {
                    file.flush_buffered()?;
                }
                let held = files.iter().flatten().map(PartitionFile::held_bytes).sum();
                reservation.resize(held);
            }
        }

        let mut summary = Summary::default();
        for (partition, file) in files.into_iter().enumerate() {
            if let Some(file) = file {
                let (path, rows, bytes) = file.finish()?;
                summary.add(partition, &path, rows, bytes);
            }
        }
        summary.finish()
    }
}

/// One output partition's file, with the coalescer that fills its batches.
struct PartitionFile {
    path: PathBuf,
    coalescer: BatchCoalescer,
    writer: StreamWriter<ChecksumWriter<BufWriter<File>>>,
    rows: u64,
}

impl PartitionFile {
    fn create(
        dir: &Path,
        partition: usize,
        schema: &SchemaRef,
        compression: ShuffleCompression,
        batch_size: usize,
    ) -> Result<Self> {
        let path = dir.join(piece_file(partition));
        let file = File::create(&path).map_err(|e| io_error("creating", &path, e))?;
        let options = IpcWriteOptions::default().try_with_compression(compression.ipc())?;
        let writer = StreamWriter::try_new_with_options(
            ChecksumWriter::new(BufWriter::with_capacity(FILE_BUFFER, file)),
            schema,
            options,
        )?;
        Ok(Self {
            path,
            // Pieces of half a batch or more are written as they are: copying them into
            // a full batch costs more than the smaller batch does downstream.
            coalescer: BatchCoalescer::new(Arc::clone(schema), batch_size)
                .with_biggest_coalesce_batch_size(Some(batch_size / 2)),
            writer,
            rows: 0,
        })
    }

    fn push(&mut self, batch: RecordBatch) -> Result<()> {
        self.rows += batch.num_rows() as u64;
        self.coalescer.push_batch(batch)?;
        self.drain()
    }

    /// Bytes it holds in memory: the coalescer's rows and the file buffer.
    fn held_bytes(&self) -> usize {
        self.coalescer.size() + FILE_BUFFER
    }

    /// Writes the rows the coalescer holds, as a smaller batch.
    fn flush_buffered(&mut self) -> Result<()> {
        self.coalescer.finish_buffered_batch()?;
        self.drain()
    }

    fn drain(&mut self) -> Result<()> {
        while let Some(batch) = self.coalescer.next_completed_batch() {
            self.writer.write(&compact_views(batch)?)?;
        }
        Ok(())
    }

    /// Flushes and closes the file; returns its path, rows and size.
    fn finish(mut self) -> Result<(PathBuf, u64, u64)> {
        self.flush_buffered()?;
        self.writer.finish()?;
        let mut inner = self
            .writer
            .into_inner()?
            .finish()
            .map_err(|e| io_error("writing the checksums of", &self.path, e))?;
        std::io::Write::flush(&mut inner).map_err(|e| io_error("writing", &self.path, e))?;
        let bytes = std::fs::metadata(&self.path)
            .map_err(|e| io_error("reading size of", &self.path, e))?
            .len();
        Ok((self.path, self.rows, bytes))
    }
}

/// Builds the summary batch in [`write_summary_schema`].
#[derive(Default)]
struct Summary {
    partitions: UInt32Builder,
    paths: StringBuilder,
    rows: UInt64Builder,
    bytes: UInt64Builder,
}

impl Summary {
    fn add(&mut self, partition: usize, path: &Path, rows: u64, bytes: u64) {
        self.partitions
            .append_value(u32::try_from(partition).unwrap_or(u32::MAX));
        self.paths.append_value(path.to_string_lossy());
        self.rows.append_value(rows);
        self.bytes.append_value(bytes);
    }

    fn finish(mut self) -> Result<RecordBatch> {
        Ok(RecordBatch::try_new(
            write_summary_schema(),
            vec![
                Arc::new(self.partitions.finish()),
                Arc::new(self.paths.finish()),
                Arc::new(self.rows.finish()),
                Arc::new(self.bytes.finish()),
            ],
        )?)
    }
}

fn io_error(action: &str, path: &Path, source: std::io::Error) -> DataFusionError {
    DataFusionError::Execution(format!(
        "shuffle write failed {action} {}: {source}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::execution::memory_pool::{GreedyMemoryPool, UnboundedMemoryPool};
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

    /// Writes 40 batches of 1000 rows round robin into 4 partitions under `pool`; returns
    /// the rows and the batches in the files.
    async fn write_under(pool: Arc<dyn MemoryPool>) -> (usize, usize) {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batches: Vec<Result<RecordBatch>> = (0..40)
            .map(|b| {
                let values = Int64Array::from_iter_values((0..1000).map(|i| b * 1000 + i));
                Ok(RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(values)],
                )?)
            })
            .collect();
        let input = Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&schema),
            futures::stream::iter(batches),
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = MapOutputWriter {
            dir: dir.path().join("map"),
            output: ShuffleOutput::RoundRobin { count: 4 },
            map_partition: 0,
            map_partitions: 1,
            compression: ShuffleCompression::default(),
            batch_size: 8192,
            pool,
        };
        let summary = writer.write(input).await.expect("writes");
        let paths = summary
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>();
        let (mut rows, mut written) = (0, 0);
        for path in paths.expect("paths").iter().flatten() {
            let file = File::open(path).expect("a file");
            for batch in arrow::ipc::reader::StreamReader::try_new(file, None).expect("ipc") {
                rows += batch.expect("a batch").num_rows();
                written += 1;
            }
        }
        (rows, written)
    }

    #[tokio::test]
    async fn a_piece_damaged_on_disk_fails_its_reader_with_the_file_named() {
        use crate::shuffle::read_locations;
        use arrow::array::StringArray;

        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)]));
        let strings = StringArray::from_iter_values((0..5000).map(|i| format!("value {i}")));
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(strings)]).expect("batch");
        let input = Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&schema),
            futures::stream::iter(vec![Ok(batch.clone())]),
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = MapOutputWriter {
            dir: dir.path().join("map"),
            output: ShuffleOutput::Single,
            map_partition: 0,
            map_partitions: 1,
            compression: ShuffleCompression::None,
            batch_size: 8192,
            pool: Arc::new(UnboundedMemoryPool::default()),
        };
        writer.write(input).await.expect("writes");
        let path = dir.path().join("map").join(piece_file(0));
        let read = |path: &Path| {
            let stream = read_locations(Arc::clone(&schema), vec![path.to_path_buf()]);
            async move { datafusion::physical_plan::common::collect(stream).await }
        };
        assert_eq!(read(&path).await.expect("reads back"), vec![batch]);

        // One bit of a string, in the middle of the file, turned.
        let mut bytes = std::fs::read(&path).expect("the piece");
        let at = bytes
            .windows(10)
            .position(|w| w == b"value 2500")
            .expect("the string is in the piece");
        bytes[at] ^= 0x01;
        std::fs::write(&path, bytes).expect("damaged");
        let error = read(&path).await.expect_err("a damaged piece");
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("corrupt"), "{message}");
    }

    #[tokio::test]
    async fn under_memory_pressure_the_writer_writes_what_it_holds_sooner() {
        let (rows, unbounded) = write_under(Arc::new(UnboundedMemoryPool::default())).await;
        assert_eq!(rows, 40_000);
        // 4 files' buffers fit, their coalescers' rows do not: smaller batches, same rows.
        let (rows, pressed) =
            write_under(Arc::new(GreedyMemoryPool::new(4 * FILE_BUFFER + 20_000))).await;
        assert_eq!(rows, 40_000);
        assert!(pressed > 2 * unbounded, "{pressed} batches vs {unbounded}");
    }
}
