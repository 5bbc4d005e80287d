//! The scheduler process (`ember scheduler`): its gRPC service, through which executors
//! register and heartbeat and clients run jobs, and the watch that declares silent
//! executors lost.
//!
//! Executor ids carry an *epoch* drawn at random when the scheduler starts
//! (`executor-3f9a1c-2`), so that no id outlives a restart: an executor that heartbeats
//! under an id of an earlier epoch is unknown and told to register again, and two
//! executors can never share an id. A finished job's result stays on the executors while
//! its client holds the job's update stream (it is reading the result), and is removed
//! when the stream closes (the client is done, or gone) or after `result_ttl`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ember_executors::storage::{StoreOptions, remove_prefix};
use ember_proto::MAX_MESSAGE_BYTES;
use ember_proto::convert::size;
use ember_proto::ids::JobId;
use ember_proto::pb::scheduler_service_server::{SchedulerService, SchedulerServiceServer};
use ember_proto::pb::{self as proto, Empty};
use ember_proto::security::{
    ClientSecurity, ServerSecurity, accept, check_exposure, check_exposure_of, error_chain,
};
use std::sync::Mutex;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use super::durable::{StateStore, read_journal};
use super::events::{JobEvent, JobListener};
use super::pool::{ExecutorPool, HeartbeatStats, Policy};
use super::remote::RemoteExecutor;
use super::runner::Scheduler;
use super::spec::{JobSpec, SchedulerConfig};
use crate::error::{Result, SchedulerError};
use crate::sync::lock;
use crate::ui::{LiveSource, UiBind, UiSource, bind_ui, serve};
use ember_proto::http::HttpServer;

/// How a scheduler process is set up.
#[derive(Debug, Clone)]
pub struct SchedulerProcessConfig {
    /// The address to listen on (port 0 picks one).
    pub bind: SocketAddr,
    /// How slots are shared between jobs.
    pub policy: Policy,
    /// Retries and the grace period.
    pub scheduler: SchedulerConfig,
    /// An executor silent this long is declared lost.
    pub heartbeat_timeout: Duration,
    /// What callers must present, and the TLS identity.
    pub server: ServerSecurity,
    /// How the scheduler calls executors.
    pub client: ClientSecurity,
    /// How long a finished job's result is kept for a client that holds its stream.
    pub result_ttl: Duration,
    /// Serve on a non-loopback address without a token (see
    /// [`check_exposure`](ember_proto::security::check_exposure)).
    pub allow_unauthenticated: bool,
    /// The catalog served to clients, if any (`--catalog DIR`).
    pub catalog: Option<Arc<dyn ServedCatalog>>,
    /// Where the web UI, the REST API and `/metrics` are served (`--ui-bind`), if at all.
    pub ui: Option<UiBind>,
    /// Where jobs' state is kept (`--state DIR`): the jobs found there are taken over at
    /// start, and every job's events are kept there while it runs.
    pub state: Option<Arc<dyn StateStore>>,
    /// Stand by until elected through etcd, then keep jobs' state there (`--ha`); it
    /// takes the place of `state`.
    pub ha: Option<super::durable::HaConfig>,
}

/// Where a scheduler process listens, once it does.
#[derive(Debug, Clone)]
pub struct Listening {
    /// The gRPC address.
    pub address: SocketAddr,
    /// The web UI's URL, when it serves one.
    pub ui: Option<String>,
}

/// A catalog the scheduler serves to its clients (the engine's catalog folder): read whole
/// as JSON with its version, or changed by one change given as JSON. Called on a blocking
/// thread.
pub trait ServedCatalog: std::fmt::Debug + Send + Sync + 'static {
    /// The current version and the document as JSON.
    fn read(&self) -> std::result::Result<(u64, String), String>;
    /// Applies `change_json` (one change); the new version. `Err(Bad)` for a change that is
    /// not one, `Err(Failed)` when it could not be applied.
    fn apply(&self, change_json: &str) -> std::result::Result<u64, CatalogUpdateError>;
}

/// Why a catalog change was refused.
#[derive(Debug)]
pub enum CatalogUpdateError {
    /// The text is not a catalog change.
    Bad(String),
    /// The change could not be applied.
    Failed(String),
}

struct SchedulerRpc {
    scheduler: Arc<Scheduler>,
    client: ClientSecurity,
    /// Whether this scheduler serves TLS: then executors must too.
    tls: bool,
    /// Drawn at start; part of every executor id this scheduler hands out.
    epoch: String,
    next_executor: AtomicU64,
    result_ttl: Duration,
    /// Executors that registered and have not heartbeated yet: id -> (address, slots).
    registered: Mutex<HashMap<String, (String, usize)>>,
    running_jobs: Arc<Mutex<HashSet<JobId>>>,
    /// The catalog it serves (`--catalog DIR`).
    catalog: Option<Arc<dyn ServedCatalog>>,
    /// Jobs taken over from the state store, which their clients attach to again.
    resumed: Arc<Mutex<HashMap<JobId, Arc<ResumedJob>>>>,
    /// Executor ids of an earlier scheduler given back to the executors that held them,
    /// and those its jobs had declared lost (never given back).
    claimed: Mutex<HashSet<String>>,
}

/// A job taken over from the state store: it runs without a client until one attaches
/// (sends the same job again), which then gets its events and its result.
struct ResumedJob {
    job: JobSpec,
    client: Arc<ClientSlot>,
    /// How the job ended, once it has.
    end: tokio::sync::watch::Receiver<Option<proto::job_update::Update>>,
    /// A client attached.
    attached: std::sync::atomic::AtomicBool,
}

/// The client of a job taken over, once one attached.
#[derive(Default)]
struct ClientSlot(Mutex<Option<mpsc::Sender<std::result::Result<proto::JobUpdate, Status>>>>);

impl JobListener for ClientSlot {
    fn on_event(&self, event: &JobEvent) {
        if let Some(tx) = lock(&self.0).as_ref() {
            ChannelListener(tx.clone()).on_event(event);
        }
    }
}

/// The update that tells a client how its job ended.
fn final_update(
    job: &JobSpec,
    outcome: Result<super::outcome::JobOutcome>,
) -> proto::job_update::Update {
    match outcome {
        Ok(outcome) => {
            tracing::info!(job = %job.job_id, elapsed_ms = outcome.metrics.elapsed.as_millis() as u64, "job finished");
            match proto::JobResult::try_from(&outcome) {
                Ok(result) => proto::job_update::Update::Result(result),
                Err(e) => proto::job_update::Update::Error(e.to_string()),
            }
        }
        Err(e) => {
            tracing::warn!(job = %job.job_id, "job failed: {e}");
            proto::job_update::Update::Error(e.to_string())
        }
    }
}

/// Sends a job's events to its client; drops them when the client reads slowly (they
/// drive a progress bar, nothing depends on every one).
struct ChannelListener(mpsc::Sender<std::result::Result<proto::JobUpdate, Status>>);

impl JobListener for ChannelListener {
    fn on_event(&self, event: &JobEvent) {
        if let Ok(json) = serde_json::to_string(event) {
            let _ = self.0.try_send(Ok(proto::JobUpdate {
                update: Some(proto::job_update::Update::EventJson(json)),
            }));
        }
    }
}

fn internal(e: SchedulerError) -> Status {
    Status::internal(e.to_string())
}

impl SchedulerRpc {
    /// Gives `previous` back to the executor that asks for it, when it is the id of an
    /// executor of an earlier scheduler on the same state store (its outputs, which the
    /// jobs taken over name by that id, are still where they were), and no executor took
    /// it back before (a second claim is an executor that was lost since).
    fn claim(&self, previous: &str) -> Option<String> {
        if previous.is_empty()
            || self.scheduler.store().is_none()
            || previous.starts_with(&format!("executor-{}-", self.epoch))
            || self.scheduler.pool().client(previous).is_some()
        {
            return None;
        }
        lock(&self.claimed)
            .insert(previous.to_string())
            .then(|| previous.to_string())
    }

    /// Attaches a client to job `job_id`, taken over from the state store.
    fn attach(
        &self,
        resumed: Arc<ResumedJob>,
    ) -> std::result::Result<
        Response<ReceiverStream<std::result::Result<proto::JobUpdate, Status>>>,
        Status,
    > {
        if resumed.attached.swap(true, Ordering::SeqCst) {
            return Err(Status::already_exists(format!(
                "job {} is already running, with its client attached",
                resumed.job.job_id
            )));
        }
        let (tx, rx) = mpsc::channel(1024);
        *lock(&resumed.client.0) = Some(tx.clone());
        tracing::info!(job = %resumed.job.job_id, "the job's client attached again");
        let scheduler = Arc::clone(&self.scheduler);
        let result_ttl = self.result_ttl;
        let jobs = Arc::clone(&self.resumed);
        let running_jobs = Arc::clone(&self.running_jobs);
        tokio::spawn(async move {
            let job = &resumed.job;
            let mut end = resumed.end.clone();
            let ended = tokio::select! {
                ended = end.wait_for(Option::is_some) => ended.ok().and_then(|u| u.clone()),
                () = tx.closed() => None,
            };
            let Some(update) = ended else {
                scheduler.cancel_job(&job.job_id, "its client went away");
                let _ = end.wait_for(Option::is_some).await;
                client_gone(job).await;
                finish_job(&scheduler, job, &jobs, &running_jobs).await;
                return;
            };
            if hand_over(tx, job, update, result_ttl).await {
                finish_job(&scheduler, job, &jobs, &running_jobs).await;
            } else {
                scheduler.forget_job(&job.job_id).await;
                lock(&jobs).remove(&job.job_id);
                lock(&running_jobs).remove(&job.job_id);
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Sends a job's end to its client. A result's files stay while the client holds the
/// stream (it reads the result) and go when it lets go (done, or gone) or when
/// `result_ttl` runs out. `false` for a cached dataset's result, whose files its client
/// removes; `true` when the job's files are to go now.
async fn hand_over(
    tx: mpsc::Sender<std::result::Result<proto::JobUpdate, Status>>,
    job: &JobSpec,
    update: proto::job_update::Update,
    result_ttl: Duration,
) -> bool {
    let succeeded = matches!(update, proto::job_update::Update::Result(_));
    let _ = tx
        .send(Ok(proto::JobUpdate {
            update: Some(update),
        }))
        .await;
    if succeeded && job.retain_output {
        return false;
    }
    if succeeded && tokio::time::timeout(result_ttl, tx.closed()).await.is_err() {
        tracing::warn!(job = %job.job_id, ttl_s = result_ttl.as_secs_f64(), "the job's result outlived its time to live");
    }
    true
}

/// The client of `job` went away and the job was cancelled: its staging folders go (a
/// second time once the executors have stopped its tasks, which may still finish the file
/// they were writing).
async fn client_gone(job: &JobSpec) {
    tracing::warn!(job = %job.job_id, "the client went away; job cancelled");
    remove_staging(job).await;
    tokio::time::sleep(STRAGGLER_WAIT).await;
    remove_staging(job).await;
}

/// Removes an ended job's files and its stored state.
async fn finish_job(
    scheduler: &Scheduler,
    job: &JobSpec,
    resumed: &Mutex<HashMap<JobId, Arc<ResumedJob>>>,
    running_jobs: &Mutex<HashSet<JobId>>,
) {
    if let Err(e) = scheduler.remove_job(&job.job_id).await {
        tracing::warn!(job = %job.job_id, "removing the job's files failed: {e}");
    }
    scheduler.forget_job(&job.job_id).await;
    lock(resumed).remove(&job.job_id);
    lock(running_jobs).remove(&job.job_id);
}

/// Takes over the jobs kept in `store`: each runs from where its events left it, without a
/// client until one attaches. `wait_for`: how long each waits for the executors holding its
/// outputs.
async fn take_over_jobs(
    store: &Arc<dyn StateStore>,
    scheduler: &Arc<Scheduler>,
    resumed: &Arc<Mutex<HashMap<JobId, Arc<ResumedJob>>>>,
    running_jobs: &Arc<Mutex<HashSet<JobId>>>,
    wait_for: Duration,
    result_ttl: Duration,
) -> Result<(usize, HashSet<String>)> {
    let stored = store.load().await?;
    let mut taken = 0;
    let mut lost_before = HashSet::new();
    for stored in stored {
        let decoded = <proto::JobSpec as prost::Message>::decode(stored.spec.as_slice())
            .map_err(|e| e.to_string())
            .and_then(|spec| JobSpec::try_from(spec).map_err(|e| e.to_string()));
        let job = match decoded {
            Ok(job) => job,
            Err(e) => {
                tracing::error!(job = %stored.job_id, "{}: cannot read the stored job, left as it is: {e}", store.describe());
                continue;
            }
        };
        let lines = read_journal(&store.describe(), &job.job_id, &stored.events);
        for line in &lines {
            if let super::state::Event::ExecutorLost { executor } = &line.event {
                lost_before.insert(executor.to_string());
            }
        }
        tracing::info!(job = %job.job_id, events = lines.len(), "taking over a job from {}", store.describe());
        let (end_tx, end) = tokio::sync::watch::channel(None);
        let entry = Arc::new(ResumedJob {
            job: job.clone(),
            client: Arc::default(),
            end,
            attached: std::sync::atomic::AtomicBool::new(false),
        });
        lock(resumed).insert(job.job_id.clone(), Arc::clone(&entry));
        lock(running_jobs).insert(job.job_id.clone());
        let scheduler = Arc::clone(scheduler);
        let resumed = Arc::clone(resumed);
        let running_jobs = Arc::clone(running_jobs);
        tokio::spawn(async move {
            let listener = Arc::clone(&entry.client);
            let outcome = scheduler
                .resume_job(&entry.job, lines, wait_for, Some(&*listener))
                .await;
            end_tx.send_replace(Some(final_update(&entry.job, outcome)));
            // An attached client takes it from here; with none, the result waits for one.
            tokio::time::sleep(result_ttl).await;
            // Claimed here, so that no client attaches while its files go.
            if !entry.attached.swap(true, Ordering::SeqCst) {
                tracing::warn!(job = %entry.job.job_id, "no client came back for the job's result");
                remove_staging(&entry.job).await;
                finish_job(&scheduler, &entry.job, &resumed, &running_jobs).await;
            }
        });
        taken += 1;
    }
    Ok((taken, lost_before))
}

#[tonic::async_trait]
impl SchedulerService for SchedulerRpc {
    type RunJobStream = ReceiverStream<std::result::Result<proto::JobUpdate, Status>>;

    async fn register_executor(
        &self,
        request: Request<proto::RegisterExecutorRequest>,
    ) -> std::result::Result<Response<proto::RegisterExecutorResponse>, Status> {
        let request = request.into_inner();
        if request.slots == 0 {
            return Err(Status::invalid_argument(
                "an executor needs at least 1 slot",
            ));
        }
        // Check the address now, so that a bad one is refused at registration.
        self.client
            .endpoint(&request.address)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if self.tls && !request.address.starts_with("https://") {
            return Err(Status::invalid_argument(format!(
                "this cluster serves TLS: an executor at {} would get tasks and the auth \
                 token in clear; start it with --tls-cert and --tls-key",
                request.address
            )));
        }
        let id = match self.claim(&request.previous_id) {
            Some(id) => {
                tracing::info!(executor = %id, address = %request.address, "an executor of the scheduler before this one registered again under its id");
                id
            }
            None => {
                let n = self.next_executor.fetch_add(1, Ordering::Relaxed);
                format!("executor-{}-{n}", self.epoch)
            }
        };
        // It joins the pool at its first heartbeat, once it serves calls.
        lock(&self.registered).insert(id.clone(), (request.address, request.slots as usize));
        Ok(Response::new(proto::RegisterExecutorResponse {
            executor_id: id,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<proto::HeartbeatRequest>,
    ) -> std::result::Result<Response<proto::HeartbeatResponse>, Status> {
        let request = request.into_inner();
        let id = request.executor_id;
        let running = size(u64::from(request.running_tasks));
        let stats = HeartbeatStats {
            memory_used: request.memory_used,
            memory_limit: request.memory_limit,
            shuffle_bytes_served: request.shuffle_bytes_served,
            tasks_succeeded: request.tasks_succeeded,
            tasks_failed: request.tasks_failed,
        };
        if self.scheduler.pool().touch(&id, running, stats) {
            return Ok(Response::new(proto::HeartbeatResponse {
                reregister: false,
            }));
        }
        let Some((address, slots)) = lock(&self.registered).remove(&id) else {
            return Ok(Response::new(proto::HeartbeatResponse { reregister: true }));
        };
        let client = RemoteExecutor::new(id, address, slots, &self.client)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.scheduler
            .add_executor(Arc::new(client))
            .await
            .map_err(internal)?;
        Ok(Response::new(proto::HeartbeatResponse {
            reregister: false,
        }))
    }

    async fn run_job(
        &self,
        request: Request<proto::JobSpec>,
    ) -> std::result::Result<Response<Self::RunJobStream>, Status> {
        let job = JobSpec::try_from(request.into_inner())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let resumed = lock(&self.resumed).get(&job.job_id).cloned();
        if let Some(resumed) = resumed {
            return self.attach(resumed);
        }
        if !lock(&self.running_jobs).insert(job.job_id.clone()) {
            return Err(Status::already_exists(format!(
                "job {} is already running",
                job.job_id
            )));
        }
        let (tx, rx) = mpsc::channel(1024);
        let scheduler = Arc::clone(&self.scheduler);
        let running_jobs = Arc::clone(&self.running_jobs);
        let result_ttl = self.result_ttl;
        tokio::spawn(async move {
            tracing::info!(job = %job.job_id, stages = job.stages.len(), tasks = job.total_tasks(), "job submitted");
            let listener = ChannelListener(tx.clone());
            let outcome = tokio::select! {
                outcome = scheduler.run_job(&job, Some(&listener)) => Some(outcome),
                () = tx.closed() => None,
            };
            let kept = match outcome {
                None => {
                    client_gone(&job).await;
                    false
                }
                Some(outcome) => {
                    !hand_over(tx, &job, final_update(&job, outcome), result_ttl).await
                }
            };
            if kept {
                // A cached dataset: its client removes it.
                scheduler.forget_job(&job.job_id).await;
                lock(&running_jobs).remove(&job.job_id);
                return;
            }
            if let Err(e) = scheduler.remove_job(&job.job_id).await {
                tracing::warn!(job = %job.job_id, "removing the job's files failed: {e}");
            }
            scheduler.forget_job(&job.job_id).await;
            lock(&running_jobs).remove(&job.job_id);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn remove_job(
        &self,
        request: Request<proto::RemoveJobRequest>,
    ) -> std::result::Result<Response<Empty>, Status> {
        self.scheduler
            .remove_job(&request.into_inner().job_id)
            .await
            .map_err(internal)?;
        Ok(Response::new(Empty {}))
    }

    async fn remove_stage(
        &self,
        request: Request<proto::RemoveStageRequest>,
    ) -> std::result::Result<Response<Empty>, Status> {
        let request = request.into_inner();
        let stage = size(request.stage_id);
        self.scheduler
            .remove_stage(&request.job_id, stage)
            .await
            .map_err(internal)?;
        Ok(Response::new(Empty {}))
    }

    async fn put_broadcast(
        &self,
        request: Request<proto::Broadcast>,
    ) -> std::result::Result<Response<Empty>, Status> {
        let broadcast = request.into_inner();
        self.scheduler
            .put_broadcast(&broadcast.name, Arc::from(broadcast.value))
            .await
            .map_err(internal)?;
        Ok(Response::new(Empty {}))
    }

    async fn holds(
        &self,
        request: Request<proto::HoldsRequest>,
    ) -> std::result::Result<Response<proto::HoldsResponse>, Status> {
        let request = request.into_inner();
        let holds = self
            .scheduler
            .holds(&request.executor_id, &PathBuf::from(request.path))
            .await;
        Ok(Response::new(proto::HoldsResponse { holds }))
    }

    async fn cluster_state(
        &self,
        _request: Request<Empty>,
    ) -> std::result::Result<Response<proto::ClusterStateResponse>, Status> {
        let pool = self.scheduler.pool();
        Ok(Response::new(proto::ClusterStateResponse {
            executors: pool
                .status()
                .into_iter()
                .map(|e| proto::ExecutorInfo {
                    executor_id: e.id.to_string(),
                    address: e.address.unwrap_or_default(),
                    slots: u32::try_from(e.slots).unwrap_or(u32::MAX),
                    free_slots: u32::try_from(e.free).unwrap_or(u32::MAX),
                    running_tasks: u32::try_from(e.running_tasks).unwrap_or(u32::MAX),
                })
                .collect(),
            running_jobs: pool.running_jobs() as u64,
            recomputed: self.scheduler.recomputed(),
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<proto::CancelJobRequest>,
    ) -> std::result::Result<Response<proto::CancelJobResponse>, Status> {
        let request = request.into_inner();
        let reason = if request.reason.is_empty() {
            "cancelled by a client".to_string()
        } else {
            request.reason
        };
        let found = self.scheduler.cancel_job(&request.job_id, &reason);
        tracing::info!(job = %request.job_id, found, "cancel requested: {reason}");
        Ok(Response::new(proto::CancelJobResponse { found }))
    }

    async fn get_catalog(
        &self,
        request: Request<proto::GetCatalogRequest>,
    ) -> std::result::Result<Response<proto::CatalogReply>, Status> {
        let Some(catalog) = self.catalog.clone() else {
            return Ok(Response::new(proto::CatalogReply::default()));
        };
        let known = request.into_inner().known_version;
        let (version, json) = tokio::task::spawn_blocking(move || catalog.read())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(Status::internal)?;
        let document_json = if Some(version) == known {
            String::new()
        } else {
            json
        };
        Ok(Response::new(proto::CatalogReply {
            served: true,
            version,
            document_json,
        }))
    }

    async fn update_catalog(
        &self,
        request: Request<proto::UpdateCatalogRequest>,
    ) -> std::result::Result<Response<proto::CatalogReply>, Status> {
        let Some(catalog) = self.catalog.clone() else {
            return Err(Status::failed_precondition(
                "this scheduler serves no catalog (start it with --catalog DIR)",
            ));
        };
        let change = request.into_inner().change_json;
        let version = tokio::task::spawn_blocking(move || catalog.apply(&change))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| match e {
                CatalogUpdateError::Bad(message) => Status::invalid_argument(message),
                CatalogUpdateError::Failed(message) => Status::internal(message),
            })?;
        Ok(Response::new(proto::CatalogReply {
            served: true,
            version,
            document_json: String::new(),
        }))
    }
}

/// How long after cancelling a job its staging folders are removed a second time.
const STRAGGLER_WAIT: Duration = Duration::from_secs(2);

/// Removes the staging folders of `job`'s writes, whose driver is gone: nothing will
/// commit or remove them. A staging folder on a local file system goes whole, with the
/// `.ember-staging` folder above it when that is left empty.
async fn remove_staging(job: &JobSpec) {
    if job.staging.is_empty() {
        return;
    }
    let options = match StoreOptions::from_settings(&job.settings) {
        Ok((options, _)) => options,
        Err(e) => {
            tracing::warn!(job = %job.job_id, "cannot remove the job's staging folders: {e}");
            return;
        }
    };
    for url in &job.staging {
        match remove_prefix(url, &options).await {
            Ok(files) => {
                tracing::info!(job = %job.job_id, %url, files, "removed the staging folder of a job whose client went away");
            }
            Err(e) => {
                tracing::warn!(job = %job.job_id, %url, "removing a staging folder failed: {e}")
            }
        }
        // An object store has no folders; a file system keeps the empty ones.
        if let Ok(parsed) = url::Url::parse(url)
            && parsed.scheme() == "file"
            && let Ok(path) = parsed.to_file_path()
        {
            let _ = std::fs::remove_dir_all(&path);
            if let Some(parent) = path.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

/// Runs a scheduler process until `shutdown` resolves; `on_listening` is told the bound
/// address once it accepts calls.
pub async fn run_scheduler_process(
    mut config: SchedulerProcessConfig,
    on_listening: impl FnOnce(Listening),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    check_exposure(config.bind, &config.server, config.allow_unauthenticated)?;
    if let Some(ha) = config.ha.clone() {
        // A standby serves nothing: clients and executors find the leader as the
        // scheduler that answers.
        let leadership = super::durable::lead(ha).await?;
        tracing::info!(
            waited_s = leadership.waited.as_secs_f64(),
            "leading; taking over the jobs in {}",
            leadership.store.describe()
        );
        config.state = Some(leadership.store as Arc<dyn StateStore>);
    }
    let ui = match config.ui {
        Some(bind) => {
            check_exposure_of(
                "--ui-bind",
                bind.address,
                &config.server,
                config.allow_unauthenticated,
            )?;
            bind_ui(bind, &config.server).await?
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| SchedulerError::Config {
            key: "--bind".into(),
            message: format!("cannot listen on {}: {e}", config.bind),
        })?;
    let bound = listener.local_addr().map_err(|e| SchedulerError::Config {
        key: "--bind".into(),
        message: e.to_string(),
    })?;
    let pool = Arc::new(ExecutorPool::new(config.policy));
    let mut scheduler = Scheduler::new(Arc::clone(&pool), config.scheduler.clone());
    if let Some(store) = &config.state {
        scheduler = scheduler.with_store(Arc::clone(store));
    }
    let scheduler = Arc::new(scheduler);
    let resumed: Arc<Mutex<HashMap<JobId, Arc<ResumedJob>>>> = Arc::default();
    let running_jobs: Arc<Mutex<HashSet<JobId>>> = Arc::default();
    let mut lost_before = HashSet::new();
    if let Some(store) = &config.state {
        let (taken, lost) = take_over_jobs(
            store,
            &scheduler,
            &resumed,
            &running_jobs,
            config.heartbeat_timeout,
            config.result_ttl,
        )
        .await?;
        lost_before = lost;
        tracing::info!(jobs = taken, "job state in {}", store.describe());
    }
    let source: Arc<dyn UiSource> = Arc::new(LiveSource::new(
        Arc::clone(scheduler.board()),
        Arc::clone(&pool),
    ));
    let rpc = SchedulerRpc {
        scheduler,
        client: config.client.clone(),
        tls: config.server.tls.is_some(),
        epoch: format!("{:06x}", rand::random::<u32>() & 0xff_ffff),
        next_executor: AtomicU64::new(1),
        result_ttl: config.result_ttl,
        registered: Mutex::new(HashMap::new()),
        running_jobs,
        catalog: config.catalog.clone(),
        resumed,
        claimed: Mutex::new(lost_before),
    };
    let mut builder = config.server.server_builder()?;
    let router = builder.add_service(InterceptedService::new(
        SchedulerServiceServer::new(rpc)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        config.server.interceptor("scheduler"),
    ));
    let timeout = config.heartbeat_timeout;
    let watch = tokio::spawn(async move {
        let every = (timeout / 4).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(every).await;
            pool.expire(timeout);
        }
    });
    tracing::info!(address = %bound, policy = %config.policy, "scheduler listening");
    let ui_url = ui.as_ref().map(HttpServer::url);
    if let Some(url) = &ui_url {
        tracing::info!(%url, "web UI listening");
    }
    on_listening(Listening {
        address: bound,
        ui: ui_url,
    });
    let (stop_ui, ui_stopped) = tokio::sync::oneshot::channel::<()>();
    let ui_task = ui.map(|server| {
        tokio::spawn(async move {
            if let Err(e) = serve(server, source, async {
                let _ = ui_stopped.await;
            })
            .await
            {
                tracing::warn!("the web UI stopped: {e}");
            }
        })
    });
    let incoming = accept(listener);
    let served = router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = stop_ui.send(());
    if let Some(task) = ui_task {
        task.abort();
    }
    watch.abort();
    served.map_err(|e| SchedulerError::Cluster {
        message: format!("the scheduler's server stopped: {}", error_chain(&e)),
    })
}
