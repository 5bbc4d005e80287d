//! The server side of shuffle data over Arrow Flight: the [`ShuffleFlightService`] that serves
//! the pieces this process's executor wrote (`do_get` with a [`ShuffleTicket`](ember_proto::pb::ShuffleTicket)).
//! The client side, which fetches pieces, is [`flight_client`](super::flight_client).
//!
//! A ticket names a piece by job, stage, map task, attempt and reduce partition; the
//! executor builds the path from those parts itself, after checking that the job is one it
//! ran and that the job id is a plain name. No ticket can reach outside the work directory.

use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::executor::Executor;
use crate::metrics::ExecutorMetrics;
use crate::shuffle::ipc::{MessageReader, checksum_metadata, read_trailer};
use ember_proto::pb::ShuffleTicket;

/// The executor of this process, replaced when it registers again under a new id.
#[derive(Debug)]
pub struct CurrentExecutor(std::sync::RwLock<Arc<Executor>>);

impl CurrentExecutor {
    /// Holds `executor`.
    pub fn new(executor: Arc<Executor>) -> Self {
        Self(std::sync::RwLock::new(executor))
    }

    /// The executor now.
    pub fn get(&self) -> Arc<Executor> {
        match self.0.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Puts `executor` in place of the current one.
    pub fn replace(&self, executor: Arc<Executor>) {
        match self.0.write() {
            Ok(mut guard) => *guard = executor,
            Err(poisoned) => *poisoned.into_inner() = executor,
        }
    }
}

/// Serves the shuffle pieces of this process's executor over Flight (`do_get` only).
#[derive(Debug, Clone)]
pub struct ShuffleFlightService {
    current: Arc<CurrentExecutor>,
}

impl ShuffleFlightService {
    /// A service over `current`.
    pub fn new(current: Arc<CurrentExecutor>) -> Self {
        Self { current }
    }
}

/// Streams the file at `path` as Flight data, one encapsulated IPC message (the schema,
/// then each record batch, as written, compressed or not) per `FlightData`, without decoding
/// them: serving a piece costs file reads, not codec work. Each message is read straight
/// into the buffer that is sent. Read on a blocking thread.
fn stream_file(
    path: PathBuf,
    metrics: Arc<ExecutorMetrics>,
) -> impl futures::Stream<Item = std::result::Result<FlightData, Status>> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let sent = send_messages(&path, &tx, &metrics);
        if let Err(e) = sent {
            let _ = tx.blocking_send(Err(Status::internal(format!(
                "reading shuffle file {}: {e}",
                path.display()
            ))));
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Sends the messages of the IPC stream file at `path` until its end marker, each with the
/// checksum its writer recorded (little-endian, in `app_metadata`) when the file has them.
fn send_messages(
    path: &std::path::Path,
    tx: &tokio::sync::mpsc::Sender<std::result::Result<FlightData, Status>>,
    metrics: &ExecutorMetrics,
) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let length = file.metadata()?.len();
    let checksums = read_trailer(&mut file, length)?;
    // Every shuffle file ends with the end-of-stream marker; running out of bytes before
    // it means the file is cut short, and is an error.
    let mut messages = MessageReader::new(BufReader::with_capacity(1 << 16, file));
    let mut index = 0;
    while let Some(message) = messages.next_message()? {
        metrics.served((message.header.len() + message.body.len()) as u64);
        let checksum = checksums.as_ref().and_then(|c| c.get(index));
        index += 1;
        let data = FlightData {
            data_header: message.header,
            data_body: message.body,
            app_metadata: checksum.map_or_else(Bytes::new, |crc| checksum_metadata(*crc)),
            ..FlightData::default()
        };
        if tx.blocking_send(Ok(data)).is_err() {
            // The reader went away.
            return Ok(());
        }
    }
    Ok(())
}

type FlightStream<T> = BoxStream<'static, std::result::Result<T, Status>>;

#[tonic::async_trait]
impl FlightService for ShuffleFlightService {
    type HandshakeStream = FlightStream<HandshakeResponse>;
    type ListFlightsStream = FlightStream<FlightInfo>;
    type DoGetStream = FlightStream<FlightData>;
    type DoPutStream = FlightStream<PutResult>;
    type DoActionStream = FlightStream<arrow_flight::Result>;
    type ListActionsStream = FlightStream<ActionType>;
    type DoExchangeStream = FlightStream<FlightData>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Self::DoGetStream>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "an unknown peer".to_string(), |a| a.to_string());
        let ticket = ShuffleTicket::decode(request.into_inner().ticket).map_err(|e| {
            tracing::warn!(%peer, "refused an undecodable Flight ticket: {e}");
            Status::invalid_argument(format!("not a shuffle ticket: {e}"))
        })?;
        let executor = self.current.get();
        let path = executor.shuffle_file(&ticket).map_err(|message| {
            tracing::warn!(%peer, job = %ticket.job_id, "refused a Flight ticket: {message}");
            Status::permission_denied(message)
        })?;
        if !path.is_file() {
            return Err(Status::not_found(format!(
                "executor {} holds no piece {}/{}.{}#{} for partition {}",
                executor.id(),
                ticket.job_id,
                ticket.stage_id,
                ticket.map_partition,
                ticket.attempt,
                ticket.output_partition
            )));
        }
        let encoded = stream_file(path, Arc::clone(executor.metrics()));
        Ok(Response::new(encoded.boxed()))
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("Ember executors serve do_get only"))
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> std::result::Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("Ember executors serve do_get only"))
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("Ember executors serve do_get only"))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("Ember executors serve do_get only"))
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("Ember executors serve do_get only"))
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented("Ember executors serve do_get only"))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("Ember executors serve do_get only"))
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> std::result::Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented("Ember executors serve do_get only"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> std::result::Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("Ember executors serve do_get only"))
    }
}
