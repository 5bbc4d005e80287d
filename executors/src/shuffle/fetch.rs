//! Reading one reduce partition whose pieces lie on several executors: pieces this executor
//! holds (or that sit on a shared file system) are read from their files, the others are
//! fetched over Flight from the executors that wrote them (or downloaded from the shuffle
//! directory), several at once on their own tasks, with the bytes in flight bounded per
//! executor (per process for stored pieces). Pieces come out in map order.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::compression::host_of;
use super::ipc::{PieceDecoder, split_piece};
use super::read_locations;
use crate::error::ExecutorError;
use crate::rpc::flight_client::{MAX_BYTES_IN_FLIGHT, PeerClients};
use crate::storage::{StoreOptions, download};
use ember_proto::ShuffleLocation;
use ember_proto::pb::ShuffleTicket;

/// The task setting that turns host-local reads off (`ember.shuffle.host_local_reads`).
pub const HOST_LOCAL_READS_SETTING: &str = "ember.shuffle.host_local_reads";

/// Pieces fetched at once by one reader.
const FETCH_CONCURRENCY: usize = 16;

/// Where the inputs of a task that live on other executors are fetched from.
#[derive(Debug, Clone)]
pub struct RemoteInputs {
    /// The executor running the task (its own pieces are read from disk).
    pub own_id: String,
    /// The job whose pieces are read.
    pub job_id: String,
    /// Addresses of the cluster's executors (this one included), by id.
    pub peers: Arc<HashMap<String, String>>,
    /// The connections to them.
    pub clients: Arc<PeerClients>,
    /// The options of the object stores that stored pieces lie in.
    pub stores: StoreOptions,
    /// Whether the pieces of executors on this host are read from their files.
    pub host_local: bool,
}

impl Piece {
    /// How to read `location` when no executor is asked: its file, or its object.
    pub(crate) fn stored(location: &ShuffleLocation, stores: &StoreOptions) -> Piece {
        if location.is_stored() {
            Piece::Stored {
                url: location.path.to_string_lossy().into_owned(),
                stores: stores.clone(),
                bytes: location.bytes,
            }
        } else {
            Piece::Local(location.path.clone())
        }
    }

    /// How to fetch `location` from the executor that wrote it: over Flight at `address`,
    /// or [`Piece::Missing`] when that executor has no address (it was lost).
    pub(crate) fn held_by(
        job_id: &str,
        location: &ShuffleLocation,
        address: Option<&String>,
    ) -> Piece {
        match address {
            Some(address) => Piece::Remote {
                executor_id: location.executor_id.to_string(),
                address: address.clone(),
                ticket: ShuffleTicket {
                    job_id: job_id.to_string(),
                    stage_id: location.stage_id.index() as u64,
                    map_partition: location.map_partition as u64,
                    attempt: location.attempt as u64,
                    output_partition: location.output_partition as u64,
                },
                bytes: location.bytes,
            },
            None => Piece::Missing {
                executor_id: location.executor_id.to_string(),
            },
        }
    }
}

/// One piece of a reduce partition.
#[derive(Debug, Clone)]
pub(crate) enum Piece {
    /// A file this executor can open.
    Local(PathBuf),
    /// A piece of an executor the cluster no longer knows (lost since the task started).
    Missing { executor_id: String },
    /// A piece in the job's shuffle directory (an object store), readable from anywhere.
    Stored {
        url: String,
        stores: StoreOptions,
        bytes: u64,
    },
    /// A piece held by another executor.
    Remote {
        executor_id: String,
        address: String,
        ticket: ShuffleTicket,
        bytes: u64,
    },
}

impl RemoteInputs {
    /// How to read `location`.
    pub(crate) fn piece(&self, location: &ShuffleLocation) -> Piece {
        self.piece_in(location, &self.job_id)
    }

    /// How to read `location`, a piece of job `job_id`.
    pub(crate) fn piece_in(&self, location: &ShuffleLocation, job_id: &str) -> Piece {
        if location.is_stored() {
            return Piece::stored(location, &self.stores);
        }
        if *location.executor_id == *self.own_id {
            return Piece::Local(location.path.clone());
        }
        // On a process cluster every executor holding an input is a peer; one that is not
        // was lost, and its files are not readable here.
        let address = self.peers.get(location.executor_id.as_str());
        if let Some(address) = address
            && self.host_local
            && self.on_this_host(address)
            && is_piece_file(&location.path, location.bytes)
        {
            return Piece::Local(location.path.clone());
        }
        Piece::held_by(job_id, location, address)
    }

    /// Whether the executor at `address` runs on this executor's host: the same host part
    /// of the address, as written.
    fn on_this_host(&self, address: &str) -> bool {
        self.peers
            .get(self.own_id.as_str())
            .is_some_and(|own| host_of(own) == host_of(address))
    }
}

/// Whether `path` is a file of `bytes` bytes that this process may open: the piece as its
/// writer recorded it, not another host's file system at the same address (containers on a
/// host's network) nor a work dir of another user.
fn is_piece_file(path: &std::path::Path, bytes: u64) -> bool {
    std::fs::File::open(path)
        .and_then(|file| file.metadata())
        .is_ok_and(|m| m.is_file() && m.len() == bytes)
}

/// Permits (KiB) for a piece of `bytes`: never more than a semaphore holds, or the read
/// would wait forever.
fn permits_for(bytes: u64) -> u32 {
    let kib = ((bytes as usize) >> 10) + 1;
    u32::try_from(kib.min(MAX_BYTES_IN_FLIGHT >> 10)).unwrap_or(1)
}

/// The bytes of stored pieces held in this process at once, in KiB.
fn stored_in_flight() -> Arc<Semaphore> {
    static IN_FLIGHT: OnceLock<Arc<Semaphore>> = OnceLock::new();
    Arc::clone(IN_FLIGHT.get_or_init(|| Arc::new(Semaphore::new(MAX_BYTES_IN_FLIGHT >> 10))))
}

/// The batches of the shuffle piece `data`, read from `url`: decoded over `data` itself,
/// each message checked against the piece's trailer when it has one ([`PieceDecoder`]).
pub(crate) fn decode(data: bytes::Bytes, url: &str) -> Result<Vec<RecordBatch>, DataFusionError> {
    let failed = |e: &dyn std::fmt::Display| {
        DataFusionError::Execution(format!("shuffle read failed in {url}: {e}"))
    };
    let (messages, checksums) = split_piece(&data).map_err(|e| failed(&e))?;
    let mut decoder = PieceDecoder::default();
    let mut batches = Vec::new();
    for (index, message) in messages.into_iter().enumerate() {
        let checksum = checksums.as_ref().and_then(|c| c.get(index).copied());
        batches.extend(
            decoder
                .decode(&message.header, message.body, checksum)
                .map_err(|e| failed(&e))?,
        );
    }
    Ok(batches)
}

/// Streams `pieces` in order as one stream of `schema`.
pub(crate) fn read_pieces(
    schema: SchemaRef,
    pieces: Vec<Piece>,
    clients: Option<Arc<PeerClients>>,
) -> SendableRecordBatchStream {
    let all_local = pieces.iter().all(|p| matches!(p, Piece::Local(_)));
    if all_local {
        let paths = pieces
            .into_iter()
            .filter_map(|p| match p {
                Piece::Local(path) => Some(path),
                Piece::Remote { .. } | Piece::Missing { .. } | Piece::Stored { .. } => None,
            })
            .collect();
        // Open the files on first poll, not now: a join's probe side is executed long
        // before the build side is done, and its reader thread would sit parked.
        let opened = Arc::clone(&schema);
        let lazy = futures::stream::once(async move { read_locations(opened, paths) }).flatten();
        return Box::pin(RecordBatchStreamAdapter::new(schema, lazy));
    }
    let in_flight = clients.as_ref().map(|c| c.in_flight());
    let reader_schema = Arc::clone(&schema);
    let stream = futures::stream::iter(pieces)
        .map(move |piece| {
            let clients = clients.clone();
            let in_flight = in_flight.clone();
            let schema = Arc::clone(&reader_schema);
            async move {
                match piece {
                    Piece::Local(path) => {
                        Ok::<_, DataFusionError>(read_locations(schema, vec![path]).boxed())
                    }
                    Piece::Missing { executor_id } => Err(DataFusionError::External(Box::new(
                        ExecutorError::FetchFailed {
                            executor_id,
                            message: "the executor is no longer part of the cluster".into(),
                        },
                    ))),
                    piece => {
                        // The memory permits are taken here, in piece order (`buffered`
                        // first polls its futures in order and the semaphores are fair),
                        // so a reader always holds those of its earliest pieces. The fetch
                        // then runs on its own task: a future inside `buffered` only runs
                        // while the stream is polled for its next piece, which serialized
                        // reading a local piece and fetching the ones after it.
                        let permit = reserve(&piece, in_flight.as_ref()).await?;
                        let what = piece.to_string();
                        let task = tokio::spawn(fetch_piece(piece, clients, permit));
                        // A reader dropped early (a limit, a cancelled task) stops it.
                        let _abort = AbortOnDrop(task.abort_handle());
                        task.await.map_err(|e| {
                            DataFusionError::Execution(format!("shuffle fetch of {what}: {e}"))
                        })?
                    }
                }
            }
        })
        .buffered(FETCH_CONCURRENCY)
        .try_flatten();
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

/// Aborts a fetch task when the reader that waits for it is dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Display for Piece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Piece::Local(path) => write!(f, "{}", path.display()),
            Piece::Missing { executor_id } => write!(f, "a piece of lost executor {executor_id}"),
            Piece::Stored { url, .. } => f.write_str(url),
            Piece::Remote {
                executor_id,
                ticket,
                ..
            } => write!(
                f,
                "piece {}.{}#{} of partition {} on executor {executor_id}",
                ticket.stage_id, ticket.map_partition, ticket.attempt, ticket.output_partition
            ),
        }
    }
}

/// The memory permits of a piece that is fetched: its bytes (in KiB) from the bound on
/// stored pieces held in this process, or on Flight fetches of this executor.
async fn reserve(
    piece: &Piece,
    in_flight: Option<&Arc<Semaphore>>,
) -> Result<OwnedSemaphorePermit, DataFusionError> {
    let (semaphore, bytes) = match piece {
        Piece::Stored { bytes, .. } => (stored_in_flight(), *bytes),
        Piece::Remote {
            executor_id, bytes, ..
        } => {
            let semaphore = in_flight.cloned().ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "a piece of executor {executor_id} without Flight clients"
                ))
            })?;
            (semaphore, *bytes)
        }
        Piece::Local(_) | Piece::Missing { .. } => {
            return Err(DataFusionError::Internal(format!(
                "{piece} is read, not fetched"
            )));
        }
    };
    semaphore
        .acquire_many_owned(permits_for(bytes))
        .await
        .map_err(|e| DataFusionError::Execution(format!("shuffle fetch stopped: {e}")))
}

/// The batches of a stored or remote piece: downloaded from the shuffle directory, or
/// fetched over Flight from the executor that holds it. `permit` is held until the reader
/// has consumed them.
async fn fetch_piece(
    piece: Piece,
    clients: Option<Arc<PeerClients>>,
    permit: OwnedSemaphorePermit,
) -> Result<
    futures::stream::BoxStream<'static, Result<RecordBatch, DataFusionError>>,
    DataFusionError,
> {
    let batches = match piece {
        Piece::Stored { url, stores, .. } => {
            let data = download(&url, &stores).await?;
            tokio::task::spawn_blocking(move || decode(data, &url))
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))??
        }
        Piece::Remote {
            executor_id,
            address,
            ticket,
            ..
        } => {
            let clients = clients.ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "a piece of executor {executor_id} without Flight clients"
                ))
            })?;
            clients.fetch(&address, &ticket).await.map_err(|e| {
                let message = match e {
                    ExecutorError::Unreachable { message, .. } => message,
                    other => other.to_string(),
                };
                DataFusionError::External(Box::new(ExecutorError::FetchFailed {
                    executor_id,
                    message,
                }))
            })?
        }
        other => {
            return Err(DataFusionError::Internal(format!(
                "{other} is read, not fetched"
            )));
        }
    };
    // The permit goes with the batches: it is given back once the reader has consumed
    // them.
    Ok(futures::stream::iter(batches.into_iter().map(move |batch| {
        let _held = &permit;
        Ok(batch)
    }))
    .boxed())
}

/// The executor and message of a fetch failure somewhere in `error`.
pub(crate) fn fetch_failure(error: &DataFusionError) -> Option<(String, String)> {
    let mut current = Some(error);
    while let Some(e) = current {
        match e {
            DataFusionError::External(inner) => {
                if let Some(ExecutorError::FetchFailed {
                    executor_id,
                    message,
                }) = inner.downcast_ref::<ExecutorError>()
                {
                    return Some((executor_id.clone(), message.clone()));
                }
                current = inner.downcast_ref::<DataFusionError>();
            }
            DataFusionError::Context(_, inner) => current = Some(inner),
            DataFusionError::Shared(inner) => current = Some(inner),
            DataFusionError::ArrowError(inner, _) => {
                current = match inner.as_ref() {
                    arrow::error::ArrowError::ExternalError(e) => {
                        e.downcast_ref::<DataFusionError>()
                    }
                    _ => None,
                };
            }
            _ => current = None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_proto::security::ClientSecurity;
    use ember_proto::{ExecutorId, StageId};

    /// The inputs of a task on executor `a` at 127.0.0.1, with `b` beside it and `c` on
    /// another host.
    fn inputs(host_local: bool) -> RemoteInputs {
        let peers = [
            ("a", "http://127.0.0.1:7001"),
            ("b", "http://127.0.0.1:7002"),
            ("c", "http://10.0.0.2:7001"),
        ]
        .into_iter()
        .map(|(id, address)| (id.to_string(), address.to_string()))
        .collect();
        RemoteInputs {
            own_id: "a".into(),
            job_id: "job".into(),
            peers: Arc::new(peers),
            clients: Arc::new(PeerClients::new(ClientSecurity::default())),
            stores: StoreOptions::default(),
            host_local,
        }
    }

    fn location(executor: &str, path: &std::path::Path, bytes: u64) -> ShuffleLocation {
        ShuffleLocation {
            stage_id: StageId(0),
            map_partition: 0,
            attempt: 0,
            output_partition: 0,
            executor_id: ExecutorId::from(executor),
            path: path.to_path_buf(),
            rows: 1,
            bytes,
        }
    }

    #[test]
    fn the_pieces_of_an_executor_on_this_host_are_read_from_its_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("part-0.arrow");
        std::fs::write(&file, [0u8; 100]).expect("a piece");
        let kind = |inputs: &RemoteInputs, executor: &str, bytes: u64| match inputs
            .piece(&location(executor, &file, bytes))
        {
            Piece::Local(_) => "file",
            Piece::Remote { .. } => "flight",
            Piece::Missing { .. } => "missing",
            Piece::Stored { .. } => "stored",
        };
        let on = inputs(true);
        assert_eq!(kind(&on, "a", 100), "file", "its own piece");
        assert_eq!(
            kind(&on, "b", 100),
            "file",
            "a piece of the executor beside it"
        );
        assert_eq!(kind(&on, "c", 100), "flight", "a piece on another host");
        assert_eq!(
            kind(&on, "b", 99),
            "flight",
            "a file of another size is not the piece"
        );
        assert_eq!(kind(&on, "z", 100), "missing", "a lost executor's piece");
        let missing = location("b", &dir.path().join("part-1.arrow"), 100);
        assert!(
            matches!(on.piece(&missing), Piece::Remote { .. }),
            "a file not found here (another file system at the same address) is fetched"
        );
        let off = inputs(false);
        assert_eq!(
            kind(&off, "b", 100),
            "flight",
            "host-local reads turned off"
        );
        assert_eq!(kind(&off, "a", 100), "file");
    }
}
