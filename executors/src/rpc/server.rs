//! The executor process (`ember executor`): it registers with the scheduler, serves its
//! gRPC control service and the Flight service of its shuffle data on one port, and
//! heartbeats until it is stopped.
//!
//! Tasks are **pushed**: the scheduler calls `LaunchTask` on an executor with a free slot
//! and the call answers when the task is done, with its output or its error. The scheduler
//! already knows every executor's free slots and which executor holds which map output, so
//! it can place each task (load and locality) the moment a slot frees, without waiting for
//! the next poll; a call that breaks tells it at once that the executor is gone, while
//! heartbeats catch the executors that hang. An executor the scheduler declared lost is
//! told so at its next heartbeat; it drops its files and registers again under a new id.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow_flight::flight_service_server::FlightServiceServer;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::flight::{CurrentExecutor, ShuffleFlightService};
use super::proto::executor_service_server::{ExecutorService, ExecutorServiceServer};
use super::proto::scheduler_service_client::SchedulerServiceClient;
use super::proto::{self, Empty};
use super::security::{AddToken, ClientSecurity, ServerSecurity, accept};
use crate::error::{ExecutorError, Result};
use crate::executor::{Executor, ExecutorConfig};
use crate::shuffle::ShuffleCompression;

/// The largest gRPC message accepted (task plans with many inputs, broadcasts).
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

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

/// The executor's gRPC control service.
struct ExecutorRpc {
    current: Arc<CurrentExecutor>,
    running: Arc<AtomicUsize>,
}

/// Counts a running task for as long as it lives.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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
        let task = crate::task::TaskDefinition::from(request.into_inner());
        self.running.fetch_add(1, Ordering::Relaxed);
        let _running = Running(Arc::clone(&self.running));
        let name = task.name();
        let result = executor.run_task(task).await;
        if let Err(e) = &result {
            tracing::warn!(task = %name, "task failed: {e}");
        }
        Ok(Response::new(result.into()))
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
        let stage = usize::try_from(request.stage_id).unwrap_or(usize::MAX);
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
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
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

    // Register (the scheduler hands out the id), start serving, and only then heartbeat:
    // the first heartbeat is what puts this executor in the scheduler's pool, so no task
    // or broadcast is sent before the server answers.
    let mut scheduler = connect_scheduler(&config).await?;
    let first = register(&mut scheduler, &config, &address).await?;
    let current = Arc::new(CurrentExecutor::new(Arc::clone(&first)));

    let running = Arc::new(AtomicUsize::new(0));
    let check = config.server.interceptor("executor");
    let rpc = ExecutorRpc {
        current: Arc::clone(&current),
        running: Arc::clone(&running),
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
    let incoming = accept(listener);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = stop_rx.await;
    }));

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
                    let scheduler = connect_scheduler(&heartbeat_config).await?;
                    heartbeat_loop(
                        scheduler,
                        heartbeat_config,
                        address,
                        heartbeat_current,
                        running,
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
    let _ = server.await;
    let last = current.get();
    if let Err(e) = std::fs::remove_dir_all(last.work_dir()) {
        tracing::warn!("removing {}: {e}", last.work_dir().display());
    }
    Ok(())
}

/// Connects to the scheduler, trying again until `connect_timeout` has passed.
async fn connect_scheduler(config: &ExecutorProcessConfig) -> Result<SchedulerClient> {
    let started = Instant::now();
    let channel = loop {
        match config.client.connect(&config.scheduler).await {
            Ok(channel) => break channel,
            Err(e @ ExecutorError::Unreachable { .. })
                if started.elapsed() < config.connect_timeout =>
            {
                tracing::info!("waiting for the scheduler: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    };
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
) -> Result<Arc<Executor>> {
    let reply = scheduler
        .register_executor(proto::RegisterExecutorRequest {
            address: address.to_string(),
            slots: u32::try_from(config.slots).unwrap_or(u32::MAX),
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
    let executor = Executor::try_new(ExecutorConfig {
        work_dir: config.work_dir.join(&reply.executor_id),
        id: reply.executor_id,
        slots: config.slots,
        compression: config.compression,
        security: config.client.clone(),
        memory_limit: config.memory_limit,
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
    mut scheduler: SchedulerClient,
    config: ExecutorProcessConfig,
    address: String,
    current: Arc<CurrentExecutor>,
    running: Arc<AtomicUsize>,
    on_registered: impl Fn(&str, &str),
) -> Result<()> {
    let mut silent_since: Option<Instant> = None;
    let mut announce = true;
    loop {
        let executor = current.get();
        let reply = scheduler
            .heartbeat(proto::HeartbeatRequest {
                executor_id: executor.id().to_string(),
                running_tasks: u32::try_from(running.load(Ordering::Relaxed)).unwrap_or(0),
            })
            .await;
        match reply {
            Ok(reply) if reply.get_ref().reregister => {
                tracing::warn!(
                    executor = executor.id(),
                    "the scheduler does not know this executor (declared lost, or restarted); \
                     registering again"
                );
                match register(&mut scheduler, &config, &address).await {
                    Ok(fresh) => {
                        current.replace(fresh);
                        if let Err(e) = std::fs::remove_dir_all(executor.work_dir()) {
                            tracing::warn!("removing {}: {e}", executor.work_dir().display());
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
                if announce {
                    announce = false;
                    tracing::info!(executor = executor.id(), %address, "registered with {}", config.scheduler);
                    on_registered(executor.id(), &address);
                }
            }
            Err(status) => {
                let since = *silent_since.get_or_insert_with(Instant::now);
                tracing::warn!(
                    "heartbeat to {} failed for {:.0}s: {}",
                    config.scheduler,
                    since.elapsed().as_secs_f64(),
                    status.message()
                );
            }
        }
        tokio::time::sleep(config.heartbeat_interval).await;
    }
}
