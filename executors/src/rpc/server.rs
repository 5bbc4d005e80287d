//! The executor process (`ember executor`): it registers with the scheduler, serves its
//! gRPC control service and the Flight service of its shuffle data on one port, and
//! heartbeats until it is stopped.
//!
//! Tasks are **pushed**: the scheduler calls `LaunchTask` on an executor with a free slot
//! and the call answers when the task is done, with its output or its error. The scheduler
//! already knows every executor's free slots and which executor holds which map output, so
//! it can place each task (load and locality) the moment a slot frees, without waiting for
//! the next poll. Liveness is the heartbeats' alone: they run on a thread of their own, and
//! the gRPC and Flight services run on a runtime of their own ([`RPC_THREADS`] threads),
//! apart from the runtime that runs tasks, so that a machine busy with tasks still answers
//! heartbeats, keep-alive pings and control calls in time. An executor the scheduler
//! declared lost (or a restarted scheduler does not know) is told so at its next
//! heartbeat; it cancels the tasks it still runs under its old id, drops its old folder,
//! and registers again under a new id.
//!
//! The `--work-dir` may hold the folders of earlier executor processes: each executor
//! holds a lock on its folder while it lives, and a new executor removes the folders no
//! live process holds before it registers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow_flight::flight_service_server::FlightServiceServer;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::flight_server::{CurrentExecutor, ShuffleFlightService};
use crate::error::{ExecutorError, Result};
use crate::executor::{Executor, ExecutorConfig, work_dir_lock};
use crate::shuffle::ShuffleCompression;
use crate::sync::lock;
use ember_planner::FunctionRegistry;
use ember_proto::convert::size;
use ember_proto::http::HttpServer;
use ember_proto::pb::executor_service_server::{ExecutorService, ExecutorServiceServer};
use ember_proto::pb::scheduler_service_client::SchedulerServiceClient;
use ember_proto::pb::{self as proto, Empty};
use ember_proto::security::{
    AddToken, ClientSecurity, ServerSecurity, accept, check_exposure, check_exposure_of,
};

use crate::metrics::ExecutorMetrics;
use ember_proto::{StageId, TaskId};

/// The message limit, also under this module's name, where callers outside the crate
/// have found it.
pub use ember_proto::MAX_MESSAGE_BYTES;

/// Prepares every executor this process creates (registers the user's scalar functions).
pub type ExecutorSetup = Arc<dyn Fn(&Executor) + Send + Sync>;

/// How an executor process is set up.
#[derive(Clone)]
pub struct ExecutorProcessConfig {
    /// The scheduler's URL (`http://host:50050`).
    pub scheduler: String,
    /// The address to listen on (port 0 picks one).
    pub bind: SocketAddr,
    /// The URL (or `HOST:PORT`) others reach this executor at; by default `http://` (or
    /// `https://`) and the bound address, with 127.0.0.1 for an unspecified IP.
    pub advertise: Option<String>,
    /// Tasks it runs at once.
    pub slots: usize,
    /// Root of its shuffle files; each registration gets a folder inside.
    pub work_dir: PathBuf,
    /// How often it tells the scheduler it is alive.
    pub heartbeat_interval: Duration,
    /// How long it keeps trying to reach the scheduler at start.
    pub connect_timeout: Duration,
    /// Codec of its shuffle files.
    pub compression: ShuffleCompression,
    /// Bytes its tasks may hold before they spill (`None`: no limit).
    pub memory_limit: Option<usize>,
    /// What its servers require of callers, and their TLS identity.
    pub server: ServerSecurity,
    /// How it calls the scheduler and other executors.
    pub client: ClientSecurity,
    /// Run on every executor this process creates.
    pub setup: Option<ExecutorSetup>,
    /// The named user functions of the binary that starts the process: every executor it
    /// creates runs task plans with them.
    pub functions: FunctionRegistry,
    /// Serve on a non-loopback address without a token (see
    /// [`check_exposure`](ember_proto::security::check_exposure)).
    pub allow_unauthenticated: bool,
    /// What the process's executors count, for heartbeats and `/metrics`.
    pub metrics: Arc<ExecutorMetrics>,
    /// Where `/metrics` is served (`--metrics-bind`), if at all.
    pub metrics_bind: Option<SocketAddr>,
}

impl std::fmt::Debug for ExecutorProcessConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorProcessConfig")
            .field("scheduler", &self.scheduler)
            .field("bind", &self.bind)
            .field("advertise", &self.advertise)
            .field("slots", &self.slots)
            .field("work_dir", &self.work_dir)
            .finish_non_exhaustive()
    }
}

/// Worker threads of the runtime that serves the gRPC and Flight services.
pub const RPC_THREADS: usize = 2;

/// The executor's gRPC control service.
struct ExecutorRpc {
    current: Arc<CurrentExecutor>,
    tasks: Arc<RunningTasks>,
    /// The runtime tasks run on: the process's main one, not the one serving calls.
    task_runtime: tokio::runtime::Handle,
}

/// The tasks this process runs now, by the executor id they were launched under, so that
/// a registration under a new id can cancel those of the old one.
#[derive(Default)]
struct RunningTasks {
    next: AtomicU64,
    tasks: std::sync::Mutex<HashMap<u64, (String, String, tokio::task::AbortHandle)>>,
}

impl RunningTasks {
    fn enter(
        self: &Arc<Self>,
        owner: &str,
        name: &str,
        abort: tokio::task::AbortHandle,
    ) -> RunningTask {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.tasks).insert(key, (owner.to_string(), name.to_string(), abort));
        RunningTask {
            tasks: Arc::clone(self),
            key,
        }
    }

    fn len(&self) -> usize {
        lock(&self.tasks).len()
    }

    /// Cancels every task launched under executor id `owner`; returns how many.
    fn cancel_owned_by(&self, owner: &str) -> usize {
        let tasks = lock(&self.tasks);
        let mut cancelled = 0;
        for (id, _, abort) in tasks.values() {
            if id == owner {
                abort.abort();
                cancelled += 1;
            }
        }
        cancelled
    }

    /// Cancels the task attempt named `name` (`job/stage.partition#attempt`); returns
    /// whether it was running.
    fn cancel_named(&self, name: &str) -> bool {
        let tasks = lock(&self.tasks);
        let mut found = false;
        for (_, task, abort) in tasks.values() {
            if task == name {
                abort.abort();
                found = true;
            }
        }
        found
    }
}

/// A task in [`RunningTasks`]; dropping it (the call ended, or its caller went away)
/// cancels the task if it still runs and forgets it.
struct RunningTask {
    tasks: Arc<RunningTasks>,
    key: u64,
}

impl Drop for RunningTask {
    fn drop(&mut self) {
        if let Some((_, _, abort)) = lock(&self.tasks.tasks).remove(&self.key) {
            abort.abort();
        }
    }
}

fn status(error: ExecutorError) -> Status {
    Status::internal(error.to_string())
}

#[tonic::async_trait]
impl ExecutorService for ExecutorRpc {
    async fn launch_task(
        &self,
        request: Request<proto::TaskDefinition>,
    ) -> std::result::Result<Response<proto::TaskResult>, Status> {
        let executor = self.current.get();
        let owner = executor.id().to_string();
        let task = ember_proto::TaskDefinition::from(request.into_inner());
        let name = task.name();
        let handle = self
            .task_runtime
            .spawn(async move { executor.run_task(task).await });
        let _running = self.tasks.enter(&owner, &name, handle.abort_handle());
        let result = match handle.await {
            Ok(result) => result,
            Err(e) if e.is_cancelled() => Err(ExecutorError::Remote {
                message: format!(
                    "task {name} was cancelled: executor {owner} registered again under a new id"
                ),
                retryable: true,
            }),
            Err(_) => Err(ExecutorError::Remote {
                message: format!("task {name} panicked"),
                retryable: true,
            }),
        };
        if let Err(e) = &result {
            tracing::warn!(task = %name, "task failed: {e}");
        }
        Ok(Response::new(super::task_result::to_message(result)))
    }

    async fn remove_job(
        &self,
        request: Request<proto::RemoveJobRequest>,
    ) -> std::result::Result<Response<Empty>, Status> {
        self.current
            .get()
            .remove_job(&request.into_inner().job_id)
            .map_err(status)?;
        Ok(Response::new(Empty {}))
    }

    async fn remove_stage(
        &self,
        request: Request<proto::RemoveStageRequest>,
    ) -> std::result::Result<Response<Empty>, Status> {
        let request = request.into_inner();
        let stage = size(request.stage_id);
        self.current
            .get()
            .remove_stage(&request.job_id, stage)
            .map_err(status)?;
        Ok(Response::new(Empty {}))
    }

    async fn put_broadcast(
        &self,
        request: Request<proto::Broadcast>,
    ) -> std::result::Result<Response<Empty>, Status> {
        let broadcast = request.into_inner();
        self.current
            .get()
            .put_broadcast(&broadcast.name, Arc::from(broadcast.value));
        Ok(Response::new(Empty {}))
    }

    async fn cancel_task(
        &self,
        request: Request<proto::CancelTaskRequest>,
    ) -> std::result::Result<Response<proto::CancelTaskResponse>, Status> {
        let request = request.into_inner();
        let (stage, partition, attempt) = (
            size(request.stage_id),
            size(request.partition),
            size(request.attempt),
        );
        // The name `TaskDefinition::name` gave the attempt when it was launched.
        let task = TaskId {
            stage: StageId(stage),
            partition,
            attempt,
        };
        let name = format!("{}/{task}", request.job_id);
        let was_running = self.tasks.cancel_named(&name);
        // The aborted task stops at its next await; its folder goes now, and again if it
        // was still writing when the first removal ran (one that reaches its end anyway
        // fails and removes its own).
        let executor = self.current.get();
        if was_running {
            executor.mark_cancelled(&name);
        }
        executor
            .remove_attempt(&request.job_id, stage, partition, attempt)
            .map_err(status)?;
        if was_running {
            let job = request.job_id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                let _ = executor.remove_attempt(&job, stage, partition, attempt);
            });
        }
        Ok(Response::new(proto::CancelTaskResponse { was_running }))
    }

    async fn holds(
        &self,
        request: Request<proto::HoldsRequest>,
    ) -> std::result::Result<Response<proto::HoldsResponse>, Status> {
        let path = PathBuf::from(request.into_inner().path);
        Ok(Response::new(proto::HoldsResponse {
            holds: self.current.get().holds(&path),
        }))
    }
}

type SchedulerClient = SchedulerServiceClient<InterceptedService<Channel, AddToken>>;

/// Runs an executor process until `shutdown` resolves. `on_registered` is told the id and
/// address of each registration (the first, and any after the scheduler lost this one).
pub async fn run_executor_process(
    config: ExecutorProcessConfig,
    on_registered: impl Fn(&str, &str) + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    if config.slots == 0 {
        return Err(ExecutorError::Config {
            key: "--slots".into(),
            message: "must be at least 1".into(),
        });
    }
    let tls = config.server.tls_config()?;
    check_exposure(config.bind, &config.server, config.allow_unauthenticated)?;
    let metrics_server = match config.metrics_bind {
        Some(bind) => {
            check_exposure_of(
                "--metrics-bind",
                bind,
                &config.server,
                config.allow_unauthenticated,
            )?;
            Some(HttpServer::bind(bind, &config.server, "--metrics-bind").await?)
        }
        None => None,
    };
    let listener = std::net::TcpListener::bind(config.bind)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| ExecutorError::Config {
            key: "--bind".into(),
            message: format!("cannot listen on {}: {e}", config.bind),
        })?;
    let bound = listener.local_addr().map_err(|e| ExecutorError::Config {
        key: "--bind".into(),
        message: e.to_string(),
    })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let address = match &config.advertise {
        Some(url) if url.contains("://") => url.clone(),
        Some(host_port) => format!("{scheme}://{host_port}"),
        None => {
            let ip = if bound.ip().is_unspecified() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                bound.ip()
            };
            format!("{scheme}://{}", SocketAddr::new(ip, bound.port()))
        }
    };
    // Others must be able to dial it: a URL with a host and a port.
    let dialable = config
        .client
        .endpoint(&address)
        .is_ok_and(|e| e.uri().host().is_some() && e.uri().port_u16().is_some());
    if !dialable {
        return Err(ExecutorError::Config {
            key: "--advertise".into(),
            message: format!("{address} is not a URL with a host and a port"),
        });
    }

    let reclaimed = reclaim_work_dir(&config.work_dir);
    if reclaimed > 0 {
        tracing::info!(work_dir = %config.work_dir.display(), folders = reclaimed, "removed the folders of executors that are gone");
    }

    // Register (the scheduler hands out the id), start serving, and only then heartbeat:
    // the first heartbeat is what puts this executor in the scheduler's pool, so no task
    // or broadcast is sent before the server answers.
    let (mut scheduler, _) = connect_scheduler(&config).await?;
    let first = register(&mut scheduler, &config, &address, None).await?;
    let current = Arc::new(CurrentExecutor::new(Arc::clone(&first)));

    let tasks = Arc::new(RunningTasks::default());
    let check = config.server.interceptor("executor");
    let rpc = ExecutorRpc {
        current: Arc::clone(&current),
        tasks: Arc::clone(&tasks),
        task_runtime: tokio::runtime::Handle::current(),
    };
    let flight = ShuffleFlightService::new(Arc::clone(&current));
    let mut builder = config.server.server_builder()?;
    let router = builder
        .add_service(InterceptedService::new(
            ExecutorServiceServer::new(rpc)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            FlightServiceServer::new(flight)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            check,
        ));
    // The services run on a runtime of their own: tasks keeping every worker of the main
    // runtime busy must not delay the answer to a keep-alive ping or a control call.
    let rpc_runtime = BackgroundRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RPC_THREADS)
            .thread_name("ember-rpc")
            .enable_all()
            .build()
            .map_err(|source| ExecutorError::Io {
                action: "starting the RPC runtime for",
                path: config.work_dir.clone(),
                source,
            })?,
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(server) = metrics_server {
        tracing::info!(url = %server.url(), "serving /metrics");
        let current = Arc::clone(&current);
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let executor = current.get();
                async move {
                    let (used, limit) = executor.memory();
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        executor.metrics().encode(used, limit),
                    )
                }
            }),
        );
        rpc_runtime.handle().spawn(async move {
            let stopped = async {
                let _ = metrics_stopped.await;
            };
            if let Err(e) = server.serve(router, stopped).await {
                tracing::warn!("/metrics stopped: {e}");
            }
        });
    }
    let server = rpc_runtime.handle().spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        router
            .serve_with_incoming_shutdown(accept(listener), async {
                let _ = stop_rx.await;
            })
            .await
            .map_err(std::io::Error::other)
    });

    // Heartbeats run on a thread and runtime of their own, with their own connection, so
    // that tasks keeping every worker of the main runtime busy cannot delay them into a
    // false "lost".
    drop(scheduler);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<()>>();
    let heartbeat_config = config.clone();
    let heartbeat_current = Arc::clone(&current);
    let work_dir = config.work_dir.clone();
    std::thread::Builder::new()
        .name("ember-heartbeat".into())
        .spawn(move || {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(async move {
                    let (scheduler, index) = connect_scheduler(&heartbeat_config).await?;
                    heartbeat_loop(
                        (scheduler, index),
                        heartbeat_config,
                        address,
                        heartbeat_current,
                        tasks,
                        on_registered,
                    )
                    .await
                }),
                Err(source) => Err(ExecutorError::Io {
                    action: "starting the heartbeat runtime for",
                    path: work_dir,
                    source,
                }),
            };
            let _ = done_tx.send(result);
        })
        .map_err(|source| ExecutorError::Io {
            action: "starting the heartbeat thread for",
            path: config.work_dir.clone(),
            source,
        })?;
    tokio::select! {
        () = shutdown => {}
        Ok(result) = done_rx => result?,
    }
    let _ = stop_tx.send(());
    let _ = stop_metrics.send(());
    let _ = server.await;
    drop(rpc_runtime);
    let last = current.get();
    if let Err(e) = std::fs::remove_dir_all(last.work_dir()) {
        tracing::warn!("removing {}: {e}", last.work_dir().display());
    }
    let _ = std::fs::remove_file(work_dir_lock(last.work_dir()));
    Ok(())
}

/// A runtime shut down in the background when dropped: dropping a runtime the usual way
/// inside another runtime's task would panic.
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl BackgroundRuntime {
    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(runtime) => runtime.handle().clone(),
            None => tokio::runtime::Handle::current(),
        }
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The schedulers an executor may register with (`--scheduler URL[,URL...]`: a leader
/// and its standbys), in order.
fn scheduler_urls(config: &ExecutorProcessConfig) -> Vec<String> {
    config
        .scheduler
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

/// Connects to a scheduler (the first of the list that answers), trying again until
/// `connect_timeout` has passed; the client, and the index of its URL.
async fn connect_scheduler(config: &ExecutorProcessConfig) -> Result<(SchedulerClient, usize)> {
    let started = Instant::now();
    let urls = scheduler_urls(config);
    let mut index = 0;
    let channel = loop {
        let url = urls
            .get(index % urls.len().max(1))
            .map_or(config.scheduler.as_str(), String::as_str);
        match config.client.connect(url).await {
            Ok(channel) => break channel,
            Err(e @ ember_proto::ProtoError::Unreachable { .. })
                if started.elapsed() < config.connect_timeout =>
            {
                tracing::info!("waiting for the scheduler: {e}");
                index += 1;
                if index % urls.len().max(1) == 0 {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok((
        SchedulerServiceClient::with_interceptor(channel, config.client.interceptor()?),
        index % urls.len().max(1),
    ))
}

/// A client of the scheduler at `url`, connecting when first called.
fn lazy_scheduler(config: &ExecutorProcessConfig, url: &str) -> Result<SchedulerClient> {
    let channel = config.client.endpoint(url)?.connect_lazy();
    Ok(SchedulerServiceClient::with_interceptor(
        channel,
        config.client.interceptor()?,
    ))
}

/// Registers with the scheduler and creates the executor under the id it gives.
async fn register(
    scheduler: &mut SchedulerClient,
    config: &ExecutorProcessConfig,
    address: &str,
    previous: Option<&Arc<Executor>>,
) -> Result<Arc<Executor>> {
    let reply = scheduler
        .register_executor(proto::RegisterExecutorRequest {
            address: address.to_string(),
            slots: u32::try_from(config.slots).unwrap_or(u32::MAX),
            previous_id: previous.map(|e| e.id().to_string()).unwrap_or_default(),
        })
        .await
        .map_err(|status| ExecutorError::Remote {
            message: format!(
                "the scheduler at {} refused to register this executor: {} ({:?})",
                config.scheduler,
                status.message(),
                status.code()
            ),
            retryable: false,
        })?
        .into_inner();
    if let Some(previous) = previous
        && previous.id().as_str() == reply.executor_id
    {
        // A scheduler that took over on the same state gave the id back: this executor,
        // its files and the outputs that its jobs name by the id, go on as they are.
        return Ok(Arc::clone(previous));
    }
    let executor = Executor::try_new(ExecutorConfig {
        work_dir: config.work_dir.join(&reply.executor_id),
        id: reply.executor_id,
        slots: config.slots,
        compression: config.compression,
        security: config.client.clone(),
        memory_limit: config.memory_limit,
        functions: config.functions.clone(),
        metrics: Arc::clone(&config.metrics),
    })?;
    if let Some(setup) = &config.setup {
        setup(&executor);
    }
    Ok(Arc::new(executor))
}

/// Heartbeats forever; registers again when the scheduler no longer knows this executor.
/// `on_registered` hears of each registration once the scheduler has taken it into its
/// pool (at the first heartbeat after it).
async fn heartbeat_loop(
    (mut scheduler, mut index): (SchedulerClient, usize),
    config: ExecutorProcessConfig,
    address: String,
    current: Arc<CurrentExecutor>,
    tasks: Arc<RunningTasks>,
    on_registered: impl Fn(&str, &str),
) -> Result<()> {
    let mut silent_since: Option<Instant> = None;
    // Heartbeats failed in a row.
    let mut failures = 0u32;
    let mut announce = true;
    loop {
        let executor = current.get();
        let reply = scheduler
            .heartbeat({
                let (memory_used, memory_limit) = executor.memory();
                let counts = config.metrics.snapshot();
                proto::HeartbeatRequest {
                    executor_id: executor.id().to_string(),
                    running_tasks: u32::try_from(tasks.len()).unwrap_or(u32::MAX),
                    memory_used,
                    memory_limit,
                    shuffle_bytes_served: counts.shuffle_served,
                    tasks_succeeded: counts.tasks_succeeded,
                    tasks_failed: counts.tasks_failed,
                }
            })
            .await;
        match reply {
            Ok(reply) if reply.get_ref().reregister => {
                tracing::warn!(
                    executor = %executor.id(),
                    "the scheduler does not know this executor (declared lost, or restarted); \
                     registering again"
                );
                match register(&mut scheduler, &config, &address, Some(&executor)).await {
                    Ok(same) if same.id() == executor.id() => {
                        // The tasks running now were launched by the scheduler before,
                        // which is gone: the one that took over runs them again.
                        let cancelled = tasks.cancel_owned_by(executor.id());
                        tracing::warn!(
                            executor = %executor.id(),
                            cancelled,
                            "registered again under the same id with the scheduler that took over; its outputs stay"
                        );
                        announce = true;
                        continue;
                    }
                    Ok(fresh) => {
                        let old_dir = executor.work_dir().to_path_buf();
                        let in_use = fresh.work_dir() == old_dir;
                        current.replace(fresh);
                        // Nothing the old id launched may go on writing into its folder.
                        let cancelled = tasks.cancel_owned_by(executor.id());
                        if cancelled > 0 {
                            tracing::warn!(
                                executor = %executor.id(),
                                cancelled,
                                "cancelled the tasks of the old registration"
                            );
                        }
                        if !in_use {
                            if let Err(e) = std::fs::remove_dir_all(&old_dir) {
                                tracing::warn!("removing {}: {e}", old_dir.display());
                            }
                            let _ = std::fs::remove_file(work_dir_lock(&old_dir));
                        }
                        announce = true;
                        // Heartbeat at once: that puts the new id in the pool.
                        continue;
                    }
                    Err(e) => tracing::warn!("registering again failed: {e}"),
                }
                silent_since = None;
            }
            Ok(_) => {
                silent_since = None;
                failures = 0;
                if announce {
                    announce = false;
                    let urls = scheduler_urls(&config);
                    let url = urls
                        .get(index)
                        .map_or(config.scheduler.as_str(), String::as_str);
                    tracing::info!(executor = %executor.id(), %address, "registered with {url}");
                    on_registered(executor.id(), &address);
                }
            }
            Err(status) => {
                let since = *silent_since.get_or_insert_with(Instant::now);
                let urls = scheduler_urls(&config);
                let url = urls
                    .get(index)
                    .map_or(config.scheduler.as_str(), String::as_str);
                tracing::warn!(
                    "heartbeat to {url} failed for {:.0}s: {}",
                    since.elapsed().as_secs_f64(),
                    status.message()
                );
                // With standbys, the leader may now be another: after two heartbeats in a
                // row fail, try the next one.
                failures += 1;
                if urls.len() > 1 && failures >= 2 {
                    failures = 0;
                    index = (index + 1) % urls.len();
                    match lazy_scheduler(&config, &urls[index]) {
                        Ok(next) => scheduler = next,
                        Err(e) => tracing::warn!("{}: {e}", urls[index]),
                    }
                }
            }
        }
        tokio::time::sleep(config.heartbeat_interval).await;
    }
}

/// Removes the folders of earlier executors in `root` (`executor-*`) that no live process
/// holds: their lock file (`executor-*.lock`) can be locked. Returns how many were removed.
fn reclaim_work_dir(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let named = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("executor-"));
        if !named || !path.is_dir() {
            continue;
        }
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(work_dir_lock(&path))
        else {
            continue;
        };
        // Held by a live executor: leave it. The lock goes with the file when it drops.
        if file.try_lock().is_err() {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                removed += 1;
                let _ = std::fs::remove_file(work_dir_lock(&path));
            }
            Err(e) => tracing::warn!("removing {}: {e}", path.display()),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shuffle::ShuffleCompression;

    #[test]
    fn reclaiming_removes_only_the_folders_no_live_executor_holds() {
        let root = tempfile::tempdir().expect("temp dir");
        let live = Executor::try_new(ExecutorConfig {
            id: "executor-live".into(),
            work_dir: root.path().join("executor-live"),
            slots: 1,
            compression: ShuffleCompression::default(),
            security: ClientSecurity::default(),
            memory_limit: None,
            functions: FunctionRegistry::new(),
            metrics: Arc::default(),
        })
        .expect("executor");
        let gone = root.path().join("executor-gone");
        std::fs::create_dir_all(gone.join("job-1")).expect("mkdir");
        std::fs::write(work_dir_lock(&gone), b"").expect("write");
        let other = root.path().join("not-an-executor");
        std::fs::create_dir_all(&other).expect("mkdir");

        assert_eq!(reclaim_work_dir(root.path()), 1);
        assert!(!gone.exists(), "the dead executor's folder is reclaimed");
        assert!(live.work_dir().is_dir(), "the live executor's folder stays");
        assert!(other.is_dir(), "folders that are not an executor's stay");
        drop(live);
        assert_eq!(reclaim_work_dir(root.path()), 1);
    }
}
