//! Reading shuffle files back: a stream over the IPC files of one reduce partition, decoded
//! on a blocking thread so the async workers keep computing. Each message is read straight
//! into its own buffer and decoded over it ([`ipc`](super::ipc)); messages whose checksum
//! matches the file's trailer skip Arrow's validation.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;

use super::ipc::{MessageReader, PieceDecoder, read_trailer};

/// Batches decoded ahead of the consumer, per reader.
const READ_AHEAD_BATCHES: usize = 4;

/// Streams the batches of `paths` in order, as one stream of `schema`.
pub fn read_locations(schema: SchemaRef, paths: Vec<PathBuf>) -> SendableRecordBatchStream {
    let mut builder = RecordBatchReceiverStreamBuilder::new(schema, READ_AHEAD_BATCHES);
    let tx = builder.tx();
    builder.spawn_blocking(move || {
        for path in paths {
            let failed = |e: &dyn std::fmt::Display| read_failed(&path, e);
            let mut file = File::open(&path).map_err(|e| {
                DataFusionError::Execution(format!(
                    "shuffle read failed opening {}: {e}",
                    path.display()
                ))
            })?;
            let length = file.metadata().map_err(|e| failed(&e))?.len();
            let checksums = read_trailer(&mut file, length).map_err(|e| failed(&e))?;
            let mut messages = MessageReader::new(BufReader::with_capacity(1 << 16, file));
            let mut decoder = PieceDecoder::default();
            let mut index = 0;
            while let Some(message) = messages.next_message().map_err(|e| failed(&e))? {
                let checksum = checksums.as_ref().and_then(|c| c.get(index).copied());
                index += 1;
                let Some(batch) = decoder
                    .decode(&message.header, message.body, checksum)
                    .map_err(|e| failed(&e))?
                else {
                    continue;
                };
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

fn read_failed(path: &Path, e: &dyn std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("shuffle read failed in {}: {e}", path.display()))
}
