//! Reading a finished job's result on the client: the final stage's pieces in order, each
//! streamed batch by batch as it is read, so that the client holds a few batches at a time,
//! never the whole result.
//!
//! Pieces in files this process can open (the embedded cluster) are read on a blocking
//! thread a few batches ahead; pieces held by executors in other processes come over Arrow
//! Flight (`do_get`) and are decoded message by message as they arrive, HTTP/2 flow control
//! holding back the sender; pieces in a shuffle directory are downloaded one at a time.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::Ticket;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use prost::Message;

use super::fetch::{Piece, decode};
use super::ipc::{PieceDecoder, checksum_in};
use super::read_locations;
use crate::error::ExecutorError;
use crate::rpc::flight_client::FlightChannels;
use crate::storage::{StoreOptions, download};
use ember_proto::ShuffleLocation;
use ember_proto::pb::ShuffleTicket;
use ember_proto::security::ClientSecurity;

/// Pieces opened at once: the one being read and the next, so that the next one's first
/// batches are on their way while the current one is read.
const PIECES_OPEN: usize = 2;

/// Connections through which a client streams results from executors' Flight services,
/// one per address, opened on first use.
#[derive(Debug)]
pub struct ResultClients {
    channels: FlightChannels,
}

impl ResultClients {
    /// Connections made with `security`.
    pub fn new(security: ClientSecurity) -> Self {
        Self {
            channels: FlightChannels::new(security),
        }
    }

    /// The batches of the piece `ticket` names, from the executor `executor_id` at
    /// `address`, decoded as they arrive. A failure, on opening or midway, is a
    /// [`ExecutorError::FetchFailed`] inside the DataFusion error.
    pub async fn stream(
        self: &Arc<Self>,
        executor_id: &str,
        address: &str,
        ticket: &ShuffleTicket,
    ) -> std::result::Result<
        BoxStream<'static, datafusion::error::Result<RecordBatch>>,
        DataFusionError,
    > {
        let failed = {
            let clients = Arc::clone(self);
            let (executor_id, address) = (executor_id.to_string(), address.to_string());
            move |message: String| {
                clients.channels.forget(&address);
                DataFusionError::External(Box::new(ExecutorError::FetchFailed {
                    executor_id: executor_id.clone(),
                    message,
                }))
            }
        };
        let mut service = match self.channels.service(address).await {
            Ok(service) => service,
            Err(ExecutorError::Unreachable { message, .. }) => return Err(failed(message)),
            Err(other) => return Err(failed(other.to_string())),
        };
        let request = self
            .channels
            .authorized(Ticket::new(ticket.encode_to_vec()))
            .map_err(|e| failed(e.to_string()))?;
        let messages = service
            .do_get(request)
            .await
            .map_err(|status| failed(status_message(&status)))?
            .into_inner();
        // Each message decoded as it arrives, checked against its writer's checksum.
        let mut decoder = PieceDecoder::default();
        let decode_failed = failed.clone();
        let batches = messages
            .map_err(move |status| failed(status_message(&status)))
            .try_filter_map(move |data| {
                let checksum = checksum_in(&data.app_metadata);
                let batch = decoder
                    .decode(&data.data_header, data.data_body, checksum)
                    .map_err(|e| decode_failed(e.to_string()));
                futures::future::ready(batch)
            });
        Ok(batches.boxed())
    }
}

/// What a failed Flight call said, in one line.
fn status_message(status: &tonic::Status) -> String {
    format!("{} ({:?})", status.message(), status.code())
}

/// Streams the output of a finished job's final stage, in the order of `locations`:
/// pieces held by executors named in `addresses` over Flight with `clients`, pieces in a
/// shuffle directory from its store (with `stores`), the others from their files (the
/// embedded cluster, where `addresses` is empty). Each piece is read batch by batch.
pub fn read_job_output(
    schema: SchemaRef,
    job_id: &str,
    locations: &[ShuffleLocation],
    addresses: HashMap<String, String>,
    clients: Arc<ResultClients>,
    stores: &StoreOptions,
) -> SendableRecordBatchStream {
    let pieces: Vec<Piece> = locations
        .iter()
        .map(|location| piece(location, job_id, &addresses, stores))
        .collect();
    if pieces.iter().all(|p| matches!(p, Piece::Local(_))) {
        let paths = pieces
            .into_iter()
            .filter_map(|p| match p {
                Piece::Local(path) => Some(path),
                Piece::Remote { .. } | Piece::Missing { .. } | Piece::Stored { .. } => None,
            })
            .collect();
        // One reader thread for every file, in order, opened on first poll.
        let opened = Arc::clone(&schema);
        let lazy = futures::stream::once(async move { read_locations(opened, paths) }).flatten();
        return Box::pin(RecordBatchStreamAdapter::new(schema, lazy));
    }
    let reader_schema = Arc::clone(&schema);
    let stream = futures::stream::iter(pieces)
        .map(move |piece| open(piece, Arc::clone(&reader_schema), Arc::clone(&clients)))
        .buffered(PIECES_OPEN)
        .try_flatten();
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

/// How the client reads `location`.
fn piece(
    location: &ShuffleLocation,
    job_id: &str,
    addresses: &HashMap<String, String>,
    stores: &StoreOptions,
) -> Piece {
    // On the embedded cluster every file is readable here.
    if location.is_stored() || addresses.is_empty() {
        return Piece::stored(location, stores);
    }
    Piece::held_by(
        job_id,
        location,
        addresses.get(location.executor_id.as_str()),
    )
}

/// Starts reading one piece; its batches come out of the stream returned.
async fn open(
    piece: Piece,
    schema: SchemaRef,
    clients: Arc<ResultClients>,
) -> datafusion::error::Result<BoxStream<'static, datafusion::error::Result<RecordBatch>>> {
    match piece {
        Piece::Local(path) => Ok(read_locations(schema, vec![path]).boxed()),
        Piece::Remote {
            executor_id,
            address,
            ticket,
            ..
        } => clients.stream(&executor_id, &address, &ticket).await,
        Piece::Stored { url, stores, .. } => {
            // An object is read whole: one piece in memory at a time.
            let data = download(&url, &stores).await?;
            let batches = tokio::task::spawn_blocking(move || decode(data, &url))
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))??;
            Ok(futures::stream::iter(batches.into_iter().map(Ok)).boxed())
        }
        Piece::Missing { executor_id } => Err(DataFusionError::External(Box::new(
            ExecutorError::FetchFailed {
                executor_id,
                message: "the executor is not part of the cluster".into(),
            },
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::ipc::writer::StreamWriter;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]))
    }

    /// Writes `values` as an IPC file of one batch per value list.
    fn write_piece(path: &std::path::Path, batches: &[Vec<i64>]) {
        let file = std::fs::File::create(path).expect("create");
        let mut writer = StreamWriter::try_new(file, &schema()).expect("writer");
        for values in batches {
            let batch = RecordBatch::try_new(
                schema(),
                vec![Arc::new(Int64Array::from(values.clone())) as _],
            )
            .expect("batch");
            writer.write(&batch).expect("write");
        }
        writer.finish().expect("finish");
    }

    fn location(partition: usize, path: std::path::PathBuf) -> ShuffleLocation {
        ShuffleLocation {
            stage_id: ember_proto::StageId(1),
            map_partition: partition,
            attempt: 0,
            output_partition: partition,
            executor_id: "executor-0".into(),
            path,
            bytes: 0,
            rows: 0,
        }
    }

    #[tokio::test]
    async fn local_pieces_come_out_batch_by_batch_in_the_order_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a.arrow"), dir.path().join("b.arrow"));
        write_piece(&a, &[vec![1, 2], vec![3]]);
        write_piece(&b, &[vec![4], vec![5, 6]]);
        let stream = read_job_output(
            schema(),
            "job-1",
            &[location(0, b), location(1, a)],
            HashMap::new(),
            Arc::new(ResultClients::new(ClientSecurity::default())),
            &StoreOptions::default(),
        );
        let batches: Vec<RecordBatch> = stream.try_collect().await.expect("read");
        let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, vec![1, 2, 2, 1], "one batch per batch written");
        let values: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("int64")
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(values, vec![4, 5, 6, 1, 2, 3]);
    }

    #[tokio::test]
    async fn a_piece_of_an_executor_without_an_address_is_a_fetch_failure() {
        let addresses = HashMap::from([("executor-1".to_string(), "http://127.0.0.1:1".into())]);
        let stream = read_job_output(
            schema(),
            "job-1",
            &[location(0, "/nowhere/part-0.arrow".into())],
            addresses,
            Arc::new(ResultClients::new(ClientSecurity::default())),
            &StoreOptions::default(),
        );
        let err = stream
            .try_collect::<Vec<_>>()
            .await
            .expect_err("executor-0 is unknown");
        assert!(
            err.to_string()
                .contains("fetching shuffle data from executor executor-0 failed"),
            "{err}"
        );
    }
}
