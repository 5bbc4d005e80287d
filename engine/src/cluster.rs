//! The clusters a session runs on: [`LocalCluster`], a scheduler and N executors in this
//! process (the default), and [`RemoteCluster`], a scheduler process reached over gRPC
//! whose executors are processes too. [`Cluster`] is either.
//!
//! On the embedded cluster tasks still travel as serialized plans and shuffle data still
//! goes through files in each executor's own work directory, exactly as on a cluster of
//! machines; only the calls are in-process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::physical_plan::SendableRecordBatchStream;
use ember_executors::storage::{StoreOptions, remove_prefix};
use ember_executors::{Executor, ExecutorConfig, ResultClients, read_job_output};
use ember_planner::FunctionRegistry;
use ember_proto::MAX_MESSAGE_BYTES;
use ember_proto::ShuffleLocation;
use ember_proto::convert::size;
use ember_proto::pb::scheduler_service_client::SchedulerServiceClient;
use ember_proto::pb::{self as proto, Empty};
use ember_proto::security::{AddToken, ClientSecurity};
use futures::StreamExt;
use tempfile::TempDir;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::config::EmberConfig;
use crate::error::{EmberError, Result};
use crate::sql::catalog::{CatalogChange, CatalogDocument, CatalogStore};
use ember_scheduler::{
    EventLogDir, ExecutorClient, ExecutorPool, ExecutorStatus, JobEvent, JobListener, JobOutcome,
    JobSpec, ResultLease, Scheduler, SchedulerConfig,
};

/// A scheduler and its executors, all in this process.
pub struct LocalCluster {
    executors: Vec<Arc<Executor>>,
    scheduler: Arc<Scheduler>,
    /// Reads final output (all local here).
    results: Arc<ResultClients>,
    /// The temporary root of the work directories, removed with the cluster.
    _temp_root: Option<TempDir>,
}

impl LocalCluster {
    /// Starts `config.executors` executors with `config.slots` slots each, sharing the
    /// registry `functions`.
    pub fn start(config: &EmberConfig, functions: &FunctionRegistry) -> Result<Self> {
        if config.executors == 0 {
            return Err(EmberError::NoExecutors);
        }
        let (root, temp_root) = match &config.work_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("ember-")
                    .tempdir()
                    .map_err(|source| EmberError::Io {
                        action: "creating a work directory in",
                        path: std::env::temp_dir(),
                        source,
                    })?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let executors = (0..config.executors)
            .map(|i| {
                Executor::try_new(ExecutorConfig {
                    id: format!("executor-{i}"),
                    work_dir: executor_dir(&root, i),
                    slots: config.slots,
                    compression: config.compression,
                    security: ClientSecurity::default(),
                    memory_limit: config.memory_limit,
                    functions: functions.clone(),
                    metrics: Arc::default(),
                })
                .map(Arc::new)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let pool = Arc::new(ExecutorPool::new(config.policy));
        for executor in &executors {
            pool.add(Arc::new(Arc::clone(executor)) as Arc<dyn ExecutorClient>);
        }
        let scheduler = Arc::new(Scheduler::new(
            pool,
            SchedulerConfig {
                max_attempts: config.max_attempts,
                event_log: config
                    .event_log
                    .as_ref()
                    .map(|dir| EventLogDir::new(dir.clone(), config.storage.clone())),
                ..SchedulerConfig::default()
            },
        ));
        Ok(Self {
            executors,
            scheduler,
            results: Arc::new(ResultClients::new(ClientSecurity::default())),
            _temp_root: temp_root,
        })
    }

    /// The executors.
    pub fn executors(&self) -> &[Arc<Executor>] {
        &self.executors
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }
}

fn executor_dir(root: &Path, index: usize) -> PathBuf {
    root.join(format!("executor-{index}"))
}

type SchedulerClient = SchedulerServiceClient<InterceptedService<Channel, AddToken>>;

/// A scheduler process and its executors, reached over the network.
///
/// It may know several schedulers (`http://a:50050,http://b:50050`: a leader and its
/// standbys): calls go to the one that answered last, and a job whose scheduler is lost
/// (killed, restarted, or no longer the leader) is sent again, to the same scheduler or
/// the next, until one takes it: a scheduler that took the job over from its stored state
/// attaches the client to it, so that the client still gets its result.
pub struct RemoteCluster {
    url: String,
    client: SchedulerClient,
    /// Every scheduler it knows, the first one first.
    schedulers: Vec<(String, SchedulerClient)>,
    /// The index in `schedulers` of the one that answered last.
    current: std::sync::atomic::AtomicUsize,
    /// Connections to executors, to stream final results over Flight.
    results: Arc<ResultClients>,
}

/// How long a client tries to reach a scheduler again after losing the one that ran its job.
const RECONNECT_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether `status` says the scheduler went away (it is down, restarting, or not the
/// leader) rather than that it refused or failed the call. `AlreadyExists`: the scheduler
/// still winds down this job's earlier run (its stream broke a moment ago).
fn scheduler_gone(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::Aborted
            | tonic::Code::AlreadyExists
    )
}

impl RemoteCluster {
    /// Connects to the scheduler at `url` (or the first of a comma-separated list that
    /// answers) and checks that it accepts this client.
    pub async fn connect(url: &str, security: ClientSecurity) -> Result<Self> {
        let urls: Vec<String> = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        if urls.is_empty() {
            return Err(EmberError::Config {
                key: "--scheduler".into(),
                message: "no scheduler URL given".into(),
            });
        }
        let interceptor = security.interceptor()?;
        let mut schedulers = Vec::new();
        for url in &urls {
            let endpoint = security.endpoint(url).map_err(|e| EmberError::Config {
                key: "--scheduler".into(),
                message: e.to_string(),
            })?;
            let client = SchedulerServiceClient::with_interceptor(
                endpoint.connect_lazy(),
                interceptor.clone(),
            )
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
            schedulers.push((url.clone(), client));
        }
        let mut errors = Vec::new();
        for (index, (url, client)) in schedulers.iter().enumerate() {
            match client.clone().cluster_state(Empty {}).await {
                Ok(_) => {
                    return Ok(Self {
                        url: url.clone(),
                        client: client.clone(),
                        schedulers: schedulers.clone(),
                        current: std::sync::atomic::AtomicUsize::new(index),
                        results: Arc::new(ResultClients::new(security)),
                    });
                }
                Err(status) if status.code() == tonic::Code::Unavailable => errors.push(format!(
                    "cannot reach the scheduler at {url}: {}",
                    status.message()
                )),
                Err(status) => errors.push(scheduler_error(url, &status).to_string()),
            }
        }
        Err(EmberError::Cluster {
            message: errors.join("; "),
        })
    }

    fn status(&self, status: tonic::Status) -> EmberError {
        scheduler_error(&self.url, &status)
    }

    /// The catalog the scheduler serves (`ember scheduler --catalog DIR`), if any.
    pub async fn served_catalog(&self) -> Result<Option<Arc<dyn CatalogStore>>> {
        let reply = self
            .client
            .clone()
            .get_catalog(proto::GetCatalogRequest {
                known_version: None,
            })
            .await;
        match reply {
            Ok(reply) if reply.get_ref().served => Ok(Some(Arc::new(RemoteCatalog {
                url: self.url.clone(),
                client: self.client.clone(),
            }))),
            Ok(_) => Ok(None),
            // A scheduler of an older build has no catalog to serve.
            Err(status) if status.code() == tonic::Code::Unimplemented => Ok(None),
            Err(status) => Err(self.status(status)),
        }
    }

    /// What the scheduler reports of the cluster now.
    async fn cluster_state(&self) -> Result<proto::ClusterStateResponse> {
        Ok(self
            .client
            .clone()
            .cluster_state(Empty {})
            .await
            .map_err(|s| self.status(s))?
            .into_inner())
    }

    /// The executors registered now.
    pub async fn executors(&self) -> Result<Vec<ExecutorStatus>> {
        Ok(self
            .cluster_state()
            .await?
            .executors
            .into_iter()
            .map(|e| ExecutorStatus {
                id: e.executor_id.into(),
                address: Some(e.address),
                slots: e.slots as usize,
                free: e.free_slots as usize,
                running_tasks: e.running_tasks as usize,
                alive: true,
                last_heartbeat_ago: None,
                lost_reason: None,
                memory_used: 0,
                memory_limit: 0,
                shuffle_bytes_served: 0,
            })
            .collect())
    }

    /// Jobs whose stages are running or waiting to run on the cluster now.
    pub async fn running_jobs(&self) -> Result<usize> {
        let state = self.cluster_state().await?;
        Ok(size(state.running_jobs))
    }

    /// Asks the scheduler to cancel job `job_id`; `false` when it runs no such job.
    pub async fn cancel_job(&self, job_id: &str, reason: &str) -> Result<bool> {
        let reply = self
            .client
            .clone()
            .cancel_job(proto::CancelJobRequest {
                job_id: job_id.to_string(),
                reason: reason.to_string(),
            })
            .await
            .map_err(|s| self.status(s))?;
        Ok(reply.into_inner().found)
    }

    /// Map tasks the scheduler recomputed after executor losses (`job/stage.partition`).
    pub async fn recomputed(&self) -> Result<Vec<String>> {
        Ok(self.cluster_state().await?.recomputed)
    }

    /// Runs `job` on the scheduler that answered last; when that scheduler is lost while
    /// the job runs, sends the job again (to it, once it is back, or to the next one) for
    /// up to [`RECONNECT_FOR`], backing off between tries.
    async fn run_job(
        &self,
        job: &JobSpec,
        listener: Option<&dyn JobListener>,
    ) -> Result<JobOutcome> {
        let spec = proto::JobSpec::from(job);
        // Since when no scheduler has run the job: the window of [`RECONNECT_FOR`] counts
        // from the loss, not from the submission.
        let mut lost_since: Option<std::time::Instant> = None;
        let mut backoff = std::time::Duration::from_millis(100);
        let mut index = self.current.load(std::sync::atomic::Ordering::Relaxed);
        loop {
            let (url, client) = &self.schedulers[index % self.schedulers.len()];
            match run_on(url, client, spec.clone(), job, listener).await {
                Ok(outcome) => {
                    self.current.store(
                        index % self.schedulers.len(),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    return Ok(outcome);
                }
                Err(Lost::Gone(status, progressed))
                    if progressed
                        || lost_since
                            .get_or_insert_with(std::time::Instant::now)
                            .elapsed()
                            < RECONNECT_FOR =>
                {
                    if progressed {
                        // It ran on that scheduler for a while: a new loss, a new window.
                        lost_since = Some(std::time::Instant::now());
                        backoff = std::time::Duration::from_millis(100);
                    }
                    tracing::warn!(
                        job = %job.job_id,
                        "lost the scheduler at {url} ({}); sending the job again in {backoff:?}",
                        status.message()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
                    index += 1;
                }
                Err(Lost::Gone(status, _)) => {
                    return Err(EmberError::Cluster {
                        message: format!(
                            "job {} lost its scheduler and no scheduler took it back within {}s; the last, {url}, said: {} ({:?})",
                            job.job_id,
                            RECONNECT_FOR.as_secs(),
                            status.message(),
                            status.code()
                        ),
                    });
                }
                Err(Lost::Failed(e)) => return Err(e),
            }
        }
    }
}

/// Why a run on one scheduler gave no result.
enum Lost {
    /// The scheduler went away (or does not lead): the job may be sent again. `true` when
    /// the scheduler had taken the job (it sent updates) before it went.
    Gone(tonic::Status, bool),
    /// The job failed, or was refused.
    Failed(EmberError),
}

/// Runs `spec` on the scheduler at `url`, to its result.
async fn run_on(
    url: &str,
    client: &SchedulerClient,
    spec: proto::JobSpec,
    job: &JobSpec,
    listener: Option<&dyn JobListener>,
) -> std::result::Result<JobOutcome, Lost> {
    let classify = |status: tonic::Status, progressed: bool| {
        if scheduler_gone(&status) {
            Lost::Gone(status, progressed)
        } else {
            Lost::Failed(scheduler_error(url, &status))
        }
    };
    let mut updates = client
        .clone()
        .run_job(spec)
        .await
        .map_err(|s| classify(s, false))?
        .into_inner();
    let mut progressed = false;
    while let Some(update) = updates.next().await {
        let update = update.map_err(|s| classify(s, progressed))?;
        progressed = true;
        match update.update {
            Some(proto::job_update::Update::EventJson(json)) => {
                if let (Some(listener), Ok(event)) =
                    (listener, serde_json::from_str::<JobEvent>(&json))
                {
                    listener.on_event(&event);
                }
            }
            Some(proto::job_update::Update::Result(result)) => {
                let mut outcome =
                    JobOutcome::try_from(result).map_err(|e| Lost::Failed(e.into()))?;
                // The scheduler keeps the result's files while this stream is open.
                outcome.lease = Some(ResultLease::new(updates));
                return Ok(outcome);
            }
            Some(proto::job_update::Update::Error(message)) => {
                return Err(Lost::Failed(EmberError::Cluster { message }));
            }
            None => {}
        }
    }
    Err(Lost::Gone(
        tonic::Status::unavailable(format!(
            "the scheduler at {url} ended job {} without a result",
            job.job_id
        )),
        progressed,
    ))
}

/// The cluster a session runs its jobs on.
pub enum Cluster {
    /// Scheduler and executors in this process.
    Local(LocalCluster),
    /// A scheduler process and executor processes.
    Remote(Box<RemoteCluster>),
}

impl Cluster {
    /// The executors in this process (none for a remote cluster).
    pub fn local_executors(&self) -> &[Arc<Executor>] {
        match self {
            Cluster::Local(local) => local.executors(),
            Cluster::Remote(_) => &[],
        }
    }

    /// Runs `job` to its end.
    pub async fn run_job(
        &self,
        job: &JobSpec,
        listener: Option<&dyn JobListener>,
    ) -> Result<JobOutcome> {
        match self {
            Cluster::Local(local) => Ok(local.scheduler.run_job(job, listener).await?),
            Cluster::Remote(remote) => remote.run_job(job, listener).await,
        }
    }

    /// Cancels running job `job_id`: its attempts are stopped on their executors and the
    /// job fails with [`EmberError::Cancelled`]. `false` when no such job runs.
    pub async fn cancel_job(&self, job_id: &str, reason: &str) -> Result<bool> {
        match self {
            Cluster::Local(local) => Ok(local.scheduler.cancel_job(job_id, reason)),
            Cluster::Remote(remote) => remote.cancel_job(job_id, reason).await,
        }
    }

    /// Deletes a job's files on every executor.
    pub async fn remove_job(&self, job_id: &str) -> Result<()> {
        self.job_remover().remove_job(job_id).await
    }

    /// What deletes jobs' files on this cluster, usable after `self` is no longer borrowed.
    pub(crate) fn job_remover(&self) -> JobRemover {
        match self {
            Cluster::Local(local) => JobRemover::Local(Arc::clone(&local.scheduler)),
            Cluster::Remote(remote) => JobRemover::Remote {
                url: remote.url.clone(),
                client: Box::new(remote.client.clone()),
            },
        }
    }

    /// Deletes the files of one stage of a job on every executor.
    pub async fn remove_stage(&self, job_id: &str, stage_id: usize) -> Result<()> {
        match self {
            Cluster::Local(local) => Ok(local.scheduler.remove_stage(job_id, stage_id).await?),
            Cluster::Remote(remote) => remote
                .client
                .clone()
                .remove_stage(proto::RemoveStageRequest {
                    job_id: job_id.to_string(),
                    stage_id: stage_id as u64,
                })
                .await
                .map(|_| ())
                .map_err(|s| remote.status(s)),
        }
    }

    /// Ships a broadcast variable to every executor.
    pub async fn put_broadcast(&self, name: &str, bytes: Arc<[u8]>) -> Result<()> {
        match self {
            Cluster::Local(local) => Ok(local.scheduler.put_broadcast(name, bytes).await?),
            Cluster::Remote(remote) => remote
                .client
                .clone()
                .put_broadcast(proto::Broadcast {
                    name: name.to_string(),
                    value: bytes.to_vec(),
                })
                .await
                .map(|_| ())
                .map_err(|s| remote.status(s)),
        }
    }

    /// Whether executor `executor_id` is alive and holds `path`.
    pub async fn holds(&self, executor_id: &str, path: &Path) -> bool {
        match self {
            Cluster::Local(local) => local.scheduler.holds(executor_id, path).await,
            Cluster::Remote(remote) => remote
                .client
                .clone()
                .holds(proto::HoldsRequest {
                    executor_id: executor_id.to_string(),
                    path: path.to_string_lossy().into_owned(),
                })
                .await
                .is_ok_and(|r| r.into_inner().holds),
        }
    }

    /// Streams a finished job's final output, in the order of `locations`.
    pub fn read_output(
        &self,
        schema: SchemaRef,
        job_id: &str,
        locations: &[ShuffleLocation],
        addresses: HashMap<String, String>,
        stores: &StoreOptions,
    ) -> SendableRecordBatchStream {
        let results = match self {
            Cluster::Local(local) => Arc::clone(&local.results),
            Cluster::Remote(remote) => Arc::clone(&remote.results),
        };
        read_job_output(schema, job_id, locations, addresses, results, stores)
    }
}

/// Deletes jobs' files on every executor of a cluster: directly on the embedded cluster,
/// through the scheduler on a process cluster. It owns what it needs, so a result stream
/// can remove its job's files after the session call that made it has returned.
#[derive(Clone)]
pub(crate) enum JobRemover {
    /// The embedded cluster's scheduler.
    Local(Arc<Scheduler>),
    /// A scheduler process.
    Remote {
        /// Its URL, for error messages.
        url: String,
        /// The connection to it.
        client: Box<SchedulerClient>,
    },
}

impl JobRemover {
    /// Deletes job `job_id`'s files on every executor.
    pub(crate) async fn remove_job(&self, job_id: &str) -> Result<()> {
        match self {
            JobRemover::Local(scheduler) => Ok(scheduler.remove_job(job_id).await?),
            JobRemover::Remote { url, client } => SchedulerClient::clone(client)
                .remove_job(proto::RemoveJobRequest {
                    job_id: job_id.to_string(),
                })
                .await
                .map(|_| ())
                .map_err(|s| scheduler_error(url, &s)),
        }
    }
}

/// A job's files: its folder on every executor and, where the job's shuffle output went to
/// a shuffle directory, its prefix there.
#[derive(Clone)]
pub(crate) struct JobFiles {
    /// The job.
    pub(crate) job_id: String,
    /// Who deletes the executors' folders.
    pub(crate) remover: JobRemover,
    /// The shuffle directory (`ember.shuffle.dir`), when one is set.
    pub(crate) shuffle_dir: Option<String>,
    /// The options of the store it lies in.
    pub(crate) stores: StoreOptions,
    /// Keeps a process cluster's scheduler from removing the result while it is read;
    /// dropped after the removal.
    pub(crate) lease: Option<Arc<ResultLease>>,
}

impl JobFiles {
    /// Deletes the job's files. A failure is logged, not returned: the result stands, and
    /// the leftover files are the cluster's to reclaim.
    pub(crate) async fn remove(self) {
        let job_id = &self.job_id;
        if let Err(e) = self.remover.remove_job(job_id).await {
            tracing::warn!(job = %job_id, "removing the job's shuffle files failed: {e}");
        }
        if let Some(dir) = &self.shuffle_dir {
            let prefix = format!("{dir}/{job_id}/");
            if let Err(e) = remove_prefix(&prefix, &self.stores).await {
                tracing::warn!(job = %job_id, "removing {prefix} failed: {e}");
            }
        }
    }
}

/// A scheduler's refusal, with its URL.
fn scheduler_error(url: &str, status: &tonic::Status) -> EmberError {
    EmberError::Cluster {
        message: format!(
            "the scheduler at {url} answered: {} ({:?})",
            status.message(),
            status.code()
        ),
    }
}

/// The catalog a scheduler serves, reached over its gRPC service.
struct RemoteCatalog {
    url: String,
    client: SchedulerClient,
}

impl CatalogStore for RemoteCatalog {
    fn load(
        &self,
        known: Option<u64>,
    ) -> futures::future::BoxFuture<'_, Result<Option<CatalogDocument>>> {
        Box::pin(async move {
            let reply = self
                .client
                .clone()
                .get_catalog(proto::GetCatalogRequest {
                    known_version: known,
                })
                .await
                .map_err(|s| scheduler_error(&self.url, &s))?
                .into_inner();
            if reply.document_json.is_empty() {
                return Ok(None);
            }
            let origin = format!("the catalog served by {}", self.url);
            CatalogDocument::from_json(&reply.document_json, &origin).map(Some)
        })
    }

    fn update(&self, change: CatalogChange) -> futures::future::BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let change_json = serde_json::to_string(&change).map_err(|e| EmberError::Internal {
                message: format!("a catalog change as JSON: {e}"),
            })?;
            let reply = self
                .client
                .clone()
                .update_catalog(proto::UpdateCatalogRequest { change_json })
                .await
                .map_err(|s| scheduler_error(&self.url, &s))?
                .into_inner();
            Ok(reply.version)
        })
    }
}
