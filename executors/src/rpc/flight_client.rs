//! The client side of shuffle data over Arrow Flight: [`PeerClients`], the connections
//! through which tasks and clients fetch the pieces that other executors hold, with the
//! bound on bytes fetched at once. It knows nothing of the [`Executor`](crate::Executor)
//! that serves them ([`flight_server`](super::flight_server)).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow_flight::Ticket;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use prost::Message;
use tokio::sync::Semaphore;
use tonic::transport::Channel;

use crate::error::{ExecutorError, Result};
use crate::shuffle::ipc::{PieceDecoder, checksum_in};
use crate::sync::lock;
use ember_proto::MAX_MESSAGE_BYTES;
use ember_proto::pb::ShuffleTicket;
use ember_proto::security::{ClientSecurity, error_chain, is_connection_refused};

/// Bytes of shuffle data (as written) that one executor fetches at once.
pub const MAX_BYTES_IN_FLIGHT: usize = 256 << 20;

/// Connections to executors' Flight services, one per address, opened on first use and
/// forgotten when they break; the clients made on them carry the token.
#[derive(Debug)]
pub(crate) struct FlightChannels {
    security: ClientSecurity,
    channels: Mutex<HashMap<String, Channel>>,
}

impl FlightChannels {
    /// Connections made with `security`.
    pub(crate) fn new(security: ClientSecurity) -> Self {
        Self {
            security,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The Flight service of the executor at `address`, on its open connection (or a new
    /// one), accepting messages up to the servers' limit: pieces are sent one record batch
    /// per message, uncompressed on one host, past tonic's 4 MiB default.
    pub(crate) async fn service(&self, address: &str) -> Result<FlightServiceClient<Channel>> {
        let cached = lock(&self.channels).get(address).cloned();
        let channel = match cached {
            Some(channel) => channel,
            None => {
                let channel = self.security.connect(address).await?;
                lock(&self.channels).insert(address.to_string(), channel.clone());
                channel
            }
        };
        Ok(FlightServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// A request of `message` that carries the token.
    pub(crate) fn authorized<T>(&self, message: T) -> Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        if let Some(header) = self.security.header() {
            let value = header
                .parse()
                .map_err(|_| token_error("not a valid header value".into()))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }

    /// Forgets the connection to `address`: a broken one is not reused.
    pub(crate) fn forget(&self, address: &str) {
        lock(&self.channels).remove(address);
    }
}

/// Connections to other executors' Flight services, and the bound on bytes fetched at once.
#[derive(Debug)]
pub struct PeerClients {
    channels: FlightChannels,
    in_flight: Arc<Semaphore>,
}

impl PeerClients {
    /// Connections made with `security`.
    pub fn new(security: ClientSecurity) -> Self {
        Self {
            channels: FlightChannels::new(security),
            in_flight: Arc::new(Semaphore::new(MAX_BYTES_IN_FLIGHT >> 10)),
        }
    }

    /// The semaphore of bytes in flight, in KiB permits.
    pub(crate) fn in_flight(&self) -> Arc<Semaphore> {
        Arc::clone(&self.in_flight)
    }

    /// All batches of the piece `ticket` names, from the executor at `address`.
    ///
    /// A fetch that breaks on the way (a reset stream, a keep-alive that timed out on a
    /// busy peer) is tried again, [`FETCH_ATTEMPTS`] times in all, on a new connection;
    /// one that the peer refused, or that the peer answered with an error, is reported at
    /// once.
    pub async fn fetch(&self, address: &str, ticket: &ShuffleTicket) -> Result<Vec<RecordBatch>> {
        let mut attempt = 1;
        loop {
            match self.fetch_once(address, ticket).await {
                Err(FetchAttempt::Broken(e)) if attempt < FETCH_ATTEMPTS => {
                    tracing::warn!(%address, attempt, "fetching a shuffle piece broke, trying again: {e}");
                    tokio::time::sleep(FETCH_BACKOFF * attempt).await;
                    attempt += 1;
                }
                Err(FetchAttempt::Broken(e) | FetchAttempt::Final(e)) => return Err(e),
                Ok(batches) => return Ok(batches),
            }
        }
    }

    /// One try: the piece's messages decoded as they arrive, each checked against the
    /// checksum its writer recorded when the server sends one ([`PieceDecoder`]).
    async fn fetch_once(
        &self,
        address: &str,
        ticket: &ShuffleTicket,
    ) -> std::result::Result<Vec<RecordBatch>, FetchAttempt> {
        let mut service = self
            .channels
            .service(address)
            .await
            .map_err(FetchAttempt::Final)?;
        let request = self
            .channels
            .authorized(Ticket::new(ticket.encode_to_vec()))
            .map_err(FetchAttempt::Final)?;
        let result = async {
            let mut messages = service.do_get(request).await?.into_inner();
            let mut decoder = PieceDecoder::default();
            let mut batches = Vec::new();
            while let Some(data) = messages.message().await? {
                let checksum = checksum_in(&data.app_metadata);
                batches.extend(decoder.decode(&data.data_header, data.data_body, checksum)?);
            }
            Ok::<_, FlightError>(batches)
        }
        .await;
        result.map_err(|e| {
            self.channels.forget(address);
            let (message, broken) = match &e {
                FlightError::Tonic(status) => (
                    format!("{} ({:?})", status.message(), status.code()),
                    is_transport_failure(status),
                ),
                other => (error_chain(other), false),
            };
            let error = ExecutorError::Unreachable {
                address: address.to_string(),
                message,
            };
            if broken {
                FetchAttempt::Broken(error)
            } else {
                FetchAttempt::Final(error)
            }
        })
    }
}

/// An error in the `--auth-token` the connections are made with.
fn token_error(message: String) -> ExecutorError {
    ExecutorError::Config {
        key: "--auth-token".into(),
        message,
    }
}

/// Tries of one fetch whose connection broke.
pub const FETCH_ATTEMPTS: u32 = 3;

/// The wait before the second try of a broken fetch; it grows with each try.
const FETCH_BACKOFF: std::time::Duration = std::time::Duration::from_millis(500);

/// How one try of a fetch failed.
enum FetchAttempt {
    /// The connection broke: another try may get through.
    Broken(ExecutorError),
    /// The peer refused the connection or answered with an error.
    Final(ExecutorError),
}

/// Whether a failed call broke in transport (the peer may be alive and busy), rather
/// than being refused or answered with an error by the peer.
fn is_transport_failure(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    ) && !is_connection_refused(status)
}
