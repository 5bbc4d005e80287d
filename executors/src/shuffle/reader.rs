//! Reading shuffle files back: a stream over the IPC files of one reduce partition, decoded
//! on a blocking thread so the async workers keep computing.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;

/// Batches decoded ahead of the consumer, per reader.
const READ_AHEAD_BATCHES: usize = 4;

/// Streams the batches of `paths` in order, as one stream of `schema`.
pub fn read_locations(schema: SchemaRef, paths: Vec<PathBuf>) -> SendableRecordBatchStream {
    let mut builder = RecordBatchReceiverStreamBuilder::new(schema, READ_AHEAD_BATCHES);
    let tx = builder.tx();
    builder.spawn_blocking(move || {
        for path in paths {
            let file = File::open(&path).map_err(|e| {
                DataFusionError::Execution(format!(
                    "shuffle read failed opening {}: {e}",
                    path.display()
                ))
            })?;
            let reader = StreamReader::try_new(BufReader::with_capacity(1 << 16, file), None)
                .map_err(|e| {
                    DataFusionError::Execution(format!(
                        "shuffle read failed in {}: {e}",
                        path.display()
                    ))
                })?;
            for batch in reader {
                let batch = batch.map_err(|e| {
                    DataFusionError::Execution(format!(
                        "shuffle read failed in {}: {e}",
                        path.display()
                    ))
                })?;
                if tx.blocking_send(Ok(batch)).is_err() {
                    // The consumer is gone (limit reached or task cancelled).
                    return Ok(());
                }
            }
        }
        Ok(())
    });
    builder.build()
}
