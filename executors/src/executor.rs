//! [`Executor`]: runs tasks. It decodes a task's stage plan, runs the task's partition with a
//! [`LocalShuffle`] installed, and reports where the output went.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{UInt32Type, UInt64Type};
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::common::collect;
use datafusion::prelude::{SessionConfig, SessionContext};
use ember_planner::{BroadcastStore, FunctionRegistry, ShuffleRuntimeHandle, TaskEnv, decode_plan};
use ember_proto::pb::ShuffleTicket;
use ember_proto::security::ClientSecurity;
use ember_proto::ticket::{attempt_dir, is_plain_name};
use ember_proto::{ExecutorId, ShuffleLocation, TaskDefinition, TaskOutput, TaskPhases};

use crate::error::{ExecutorError, Result};
use crate::input_errors::explain_task_failure;
use crate::metrics::{ExecutorMetrics, TaskFigures};
use crate::rpc::flight_client::PeerClients;
use crate::runtime_filter::RUNTIME_FILTERS_SETTING;
use crate::shuffle::HOST_LOCAL_READS_SETTING;
use crate::shuffle::{LocalShuffle, RemoteInputs, ShuffleCompression, fetch_failure, spans_hosts};
use crate::storage::{SHUFFLE_DIR_SETTING, StoreOptions, StoreRegistry, upload};
use crate::sync::lock;

/// How an executor is set up.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Unique id within the cluster.
    pub id: String,
    /// Root of this executor's shuffle files; each job gets a folder inside.
    pub work_dir: PathBuf,
    /// Tasks it runs at once.
    pub slots: usize,
    /// Codec of the shuffle files it writes.
    pub compression: ShuffleCompression,
    /// How it authenticates to other executors when it fetches their shuffle data.
    pub security: ClientSecurity,
    /// Bytes its tasks' operators may hold together before they spill to disk (`None`:
    /// no limit).
    pub memory_limit: Option<usize>,
    /// The named user functions its task plans may call: the embedded cluster's executors
    /// share their session's registry, an executor process has its binary's.
    pub functions: FunctionRegistry,
    /// Where it counts what it does (shared by the executors of one process).
    pub metrics: Arc<ExecutorMetrics>,
}

/// A worker that runs tasks and keeps their shuffle output until the job ends.
pub struct Executor {
    /// Its id, as the scheduler knows it (`config.id`).
    id: ExecutorId,
    config: ExecutorConfig,
    /// Holds DataFusion's function registry (built-ins plus registered UDFs) and the
    /// runtime environment (object stores, memory pool) that tasks run with.
    context: SessionContext,
    /// The broadcast variables shipped to this executor, readable by user functions.
    broadcasts: Arc<BroadcastStore>,
    /// Connections to the executors whose shuffle data its tasks fetch.
    peers: Arc<PeerClients>,
    /// The jobs it ran tasks of: the only jobs whose files a Flight ticket may name.
    jobs: Mutex<HashSet<String>>,
    /// Tasks running now (a task that is stopped counts down as it is dropped).
    running: Arc<std::sync::atomic::AtomicUsize>,
    /// Attempts cancelled while they ran (`TaskDefinition::name`): one that still gets to
    /// its end (a stop takes effect only where the task waits) reports failure instead, and
    /// leaves no files.
    cancelled: Mutex<HashSet<String>>,
    /// The locked file beside its work directory (see [`work_dir_lock`]), held while it
    /// lives so that no other executor reclaims the folder.
    _work_dir_lock: std::fs::File,
}

/// Counts a task as failed when dropped armed.
struct CountFailure<'a>(Option<&'a ExecutorMetrics>);

impl Drop for CountFailure<'_> {
    fn drop(&mut self) {
        if let Some(metrics) = self.0 {
            metrics.task_failed();
        }
    }
}

/// Shuffle bytes a task of `partition` reads of `inputs`: its partition's pieces, or
/// every piece of partition 0 where the inputs have only that one (a broadcast).
fn read_bytes(inputs: &[ShuffleLocation], partition: usize) -> u64 {
    let own: u64 = inputs
        .iter()
        .filter(|l| l.output_partition == partition)
        .map(|l| l.bytes)
        .sum();
    if own > 0 || inputs.iter().any(|l| l.output_partition != 0) {
        own
    } else {
        inputs.iter().map(|l| l.bytes).sum()
    }
}

/// The file beside an executor's work directory `DIR` that it holds locked while it
/// lives: `DIR.lock`.
pub fn work_dir_lock(work_dir: &Path) -> PathBuf {
    let mut path = work_dir.as_os_str().to_owned();
    path.push(".lock");
    PathBuf::from(path)
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("config", &self.config)
            .finish()
    }
}

impl Executor {
    /// Creates the executor and its work directory.
    pub fn try_new(config: ExecutorConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.work_dir).map_err(|source| ExecutorError::Io {
            action: "creating work directory",
            path: config.work_dir.clone(),
            source,
        })?;
        if config.slots == 0 {
            return Err(ExecutorError::Config {
                key: "ember.executor.slots".into(),
                message: "must be at least 1".into(),
            });
        }
        let lock_path = work_dir_lock(&config.work_dir);
        let work_dir_lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| ExecutorError::Io {
                action: "creating the lock file",
                path: lock_path.clone(),
                source,
            })?;
        work_dir_lock
            .try_lock()
            .map_err(|e| ExecutorError::Config {
                key: "--work-dir".into(),
                message: format!(
                    "{} is held by another live executor: {e}",
                    config.work_dir.display()
                ),
            })?;
        // Jobs an earlier executor here was removing when it stopped.
        remove_dir(config.work_dir.join(REMOVING_DIR))?;
        let runtime = crate::memory::runtime_env(&config.work_dir, config.memory_limit)?;
        Ok(Self {
            id: ExecutorId::from(config.id.as_str()),
            peers: Arc::new(PeerClients::new(config.security.clone())),
            config,
            context: SessionContext::new_with_config_rt(SessionConfig::new(), runtime),
            broadcasts: Arc::default(),
            jobs: Mutex::new(HashSet::new()),
            running: Arc::default(),
            cancelled: Mutex::new(HashSet::new()),
            _work_dir_lock: work_dir_lock,
        })
    }

    /// This executor's id.
    pub fn id(&self) -> &ExecutorId {
        &self.id
    }

    /// Tasks it runs at once.
    pub fn slots(&self) -> usize {
        self.config.slots
    }

    /// Marks the running attempt `name` (`job/stage.partition#attempt`) cancelled: if it
    /// gets to its end anyway, it fails and removes what it wrote.
    pub fn mark_cancelled(&self, name: &str) {
        lock(&self.cancelled).insert(name.to_string());
    }

    /// Tasks running now.
    pub fn running_tasks(&self) -> usize {
        self.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The root of its work directory.
    pub fn work_dir(&self) -> &Path {
        &self.config.work_dir
    }

    /// The named user functions its task plans may call.
    pub fn functions(&self) -> &FunctionRegistry {
        &self.config.functions
    }

    /// Makes a scalar function available to the plans this executor decodes.
    pub fn register_udf(&self, udf: ScalarUDF) {
        self.context.register_udf(udf);
    }

    /// Makes an aggregate function available to the plans this executor decodes.
    pub fn register_udaf(&self, udaf: AggregateUDF) {
        self.context.register_udaf(udaf);
    }

    /// Makes a window function available to the plans this executor decodes.
    pub fn register_udwf(&self, udwf: WindowUDF) {
        self.context.register_udwf(udwf);
    }

    /// What it has done, for `/metrics` and heartbeats.
    pub fn metrics(&self) -> &Arc<ExecutorMetrics> {
        &self.config.metrics
    }

    /// Bytes its tasks hold in its memory pool now, and the pool's limit (0: none).
    pub fn memory(&self) -> (u64, u64) {
        let used = self.context.runtime_env().memory_pool.reserved();
        let limit = self.config.memory_limit.unwrap_or(0);
        (used as u64, limit as u64)
    }

    /// Runs one task to completion and reports the shuffle files it wrote.
    pub async fn run_task(&self, task: TaskDefinition) -> Result<TaskOutput> {
        let metrics = Arc::clone(&self.config.metrics);
        metrics.task_started();
        // A task whose future is dropped (cancelled) counts as failed.
        let mut counted = CountFailure(Some(&metrics));
        let partition = task.partition;
        let adapted = task.plan_partition.is_some();
        let inputs = Arc::clone(&task.inputs);
        let output = self.run_task_inner(task).await;
        if let Ok(output) = &output {
            counted.0 = None;
            metrics.task_succeeded(TaskFigures {
                elapsed: output.elapsed,
                written: output.locations.iter().map(|l| l.bytes).sum(),
                read: if adapted {
                    inputs.iter().map(|l| l.bytes).sum()
                } else {
                    read_bytes(&inputs, partition)
                },
                spilled: output.spilled_bytes,
            });
        }
        output
    }

    async fn run_task_inner(&self, task: TaskDefinition) -> Result<TaskOutput> {
        let _running = Running::enter(&self.running);
        self.accept_job(&task.job_id)?;
        let started = Instant::now();
        let mut lap = Lap(started);
        let mut phases = TaskPhases::default();
        let task_dir = self.job_dir(&task.job_id).join(attempt_dir(
            task.stage_id.index(),
            task.partition,
            task.attempt,
        ));
        // An attempt that does not succeed (it failed, or was cancelled and dropped) leaves
        // no files behind.
        let mut unfinished = Unfinished {
            executor: self,
            job_id: &task.job_id,
            task_dir: task_dir.clone(),
            armed: true,
        };
        // S3 options and the shuffle directory ride along as `ember.*` settings; the rest
        // are DataFusion's.
        let (stores, mut settings) =
            StoreOptions::from_settings(&task.settings).map_err(|message| {
                ExecutorError::Config {
                    key: "ember.s3".into(),
                    message,
                }
            })?;
        let shuffle_dir = take_setting(&mut settings, SHUFFLE_DIR_SETTING);
        let runtime_filters =
            take_setting(&mut settings, RUNTIME_FILTERS_SETTING).is_none_or(|v| v != "false");
        let host_local =
            take_setting(&mut settings, HOST_LOCAL_READS_SETTING).is_none_or(|v| v != "false");
        let remote = (!task.peers.is_empty()).then(|| RemoteInputs {
            own_id: self.config.id.clone(),
            job_id: task.job_id.to_string(),
            peers: Arc::clone(&task.peers),
            clients: Arc::clone(&self.peers),
            stores: StoreOptions::default(),
            host_local,
        });
        // Compress what may cross machines: pieces other hosts' executors may fetch, or
        // that go to a shared shuffle directory. Under a memory limit too: the batches
        // read back from an uncompressed piece are slices of one message body each, which
        // the memory accounting of sorts and joins counts once per column (and which
        // stays alive while any column does); decompressed batches own their buffers.
        let compression = self.config.compression.resolve(
            shuffle_dir.is_some()
                || self.config.memory_limit.is_some()
                || spans_hosts(task.peers.values().map(String::as_str)),
        );
        let plan_partition = task.plan_partition.unwrap_or(task.partition);
        // A task's context, built afresh for each run of its plan: the shuffle handle
        // writes into `task_dir`, the task env gathers accumulators.
        let new_context = || -> Result<(Arc<TaskContext>, Arc<TaskEnv>)> {
            let mut shuffle = LocalShuffle::new(
                task_dir.clone(),
                Arc::clone(&task.inputs),
                compression,
                remote.clone(),
            )
            .with_stores(stores.clone());
            if task.plan_partition.is_some() {
                shuffle = shuffle.adapted(task.partition);
            }
            let runtime = RuntimeEnvBuilder::from_runtime_env(&self.context.runtime_env())
                .with_object_store_registry(Arc::new(StoreRegistry::new(stores.clone())))
                .build_arc()?;
            let mut config = SessionConfig::new();
            for (key, value) in &settings {
                config
                    .options_mut()
                    .set(key, value)
                    .map_err(|e| ExecutorError::Config {
                        key: key.clone(),
                        message: e.to_string(),
                    })?;
            }
            let env = Arc::new(TaskEnv::new(task.name(), Arc::clone(&self.broadcasts)));
            let config = config
                .with_extension(Arc::new(ShuffleRuntimeHandle(Arc::new(shuffle))))
                .with_extension(Arc::clone(&env));
            let context = TaskContext::from(&self.context.state())
                .with_session_config(config)
                .with_runtime(runtime)
                .with_task_id(task.name());
            Ok((Arc::new(context), env))
        };

        // Under a memory limit, a hash join whose build side does not fit sends the task
        // round once more with sort-merge joins (`join_fallback`).
        let mut sort_merge = false;
        let (plan, summary, env) = loop {
            let (attempt_started, phases_before) = (Instant::now(), phases);
            let (context, env) = new_context()?;
            phases.setup += lap.next();
            let mut decoded = decode_plan(&task.plan, &context, &self.config.functions)?;
            if sort_merge {
                decoded = crate::join_fallback::sort_merge_joins(decoded)?;
            }
            phases.decode += lap.next();
            // Runtime filters collect broadcast build sides first: a fetch failure there
            // is reported as one of the task's own.
            let prepared = if runtime_filters {
                crate::runtime_filter::apply(Arc::clone(&decoded), Arc::clone(&context)).await
            } else {
                Ok(Arc::clone(&decoded))
            };
            phases.filters += lap.next();
            let (plan, result) = match prepared {
                Ok(prepared) => {
                    let plan = cooperative_joins(prepared)?;
                    let run = async {
                        let stream = plan.execute(plan_partition, Arc::clone(&context))?;
                        collect(stream).await
                    };
                    let result = run.await;
                    (plan, result)
                }
                Err(e) => (Arc::clone(&decoded), Err(e)),
            };
            let e = match result {
                Ok(summary) => break (plan, summary, env),
                Err(e) => e,
            };
            if !sort_merge
                && self.config.memory_limit.is_some()
                && crate::join_fallback::may_fall_back(&decoded, &e)
            {
                // The failed run's operators (and their reservations) and its partial
                // output go before the second run starts.
                drop(plan);
                drop(decoded);
                drop(context);
                remove_output(&task_dir)?;
                phases = TaskPhases {
                    join_fallback: attempt_started.elapsed(),
                    ..phases_before
                };
                lap.next();
                tracing::info!(
                    task = %task.name(),
                    error = %e.find_root(),
                    "a hash join's build side did not fit under the memory limit; \
                     running the task again with sort-merge joins"
                );
                sort_merge = true;
                continue;
            }
            return Err(match fetch_failure(&e) {
                Some((executor_id, message)) => ExecutorError::FetchFailed {
                    executor_id,
                    message,
                },
                None => match (&e.find_root(), self.config.memory_limit) {
                    (
                        datafusion::error::DataFusionError::ResourcesExhausted(message),
                        Some(limit),
                    ) => ExecutorError::OutOfMemory {
                        limit: crate::memory::format_size(limit),
                        message: message.clone(),
                    },
                    _ => explain_task_failure(e, &plan, plan_partition, &context).await,
                },
            });
        };
        phases.run += lap.next();
        let (spilled_bytes, spills) = crate::memory::spilled(&plan);

        let mut locations = Vec::new();
        for batch in &summary {
            let partitions = batch.column(0).as_primitive::<UInt32Type>();
            let paths = batch.column(1).as_string::<i32>();
            let rows = batch.column(2).as_primitive::<UInt64Type>();
            let bytes = batch.column(3).as_primitive::<UInt64Type>();
            for i in 0..batch.num_rows() {
                if partitions.is_null(i) {
                    continue;
                }
                locations.push(ShuffleLocation {
                    stage_id: task.stage_id,
                    map_partition: task.partition,
                    attempt: task.attempt,
                    output_partition: partitions.value(i) as usize,
                    executor_id: self.id.clone(),
                    path: PathBuf::from(paths.value(i)),
                    rows: rows.value(i),
                    bytes: bytes.value(i),
                });
            }
        }
        if let Some(dir) = &shuffle_dir {
            // Copied to the shuffle directory, the pieces outlive this executor.
            for location in &mut locations {
                let url = format!(
                    "{}/{}",
                    dir.trim_end_matches('/'),
                    location.stored_key(&task.job_id)
                );
                upload(&location.path, &url, &stores).await?;
                let _ = std::fs::remove_file(&location.path);
                location.path = PathBuf::from(url);
            }
        }
        // Cancelled, or its job removed, while it ran to its end: its output must not stay.
        let cancelled = lock(&self.cancelled).remove(&task.name());
        if cancelled || !lock(&self.jobs).contains(task.job_id.as_str()) {
            return Err(ExecutorError::Remote {
                message: format!("task {} was cancelled", task.name()),
                retryable: false,
            });
        }
        unfinished.armed = false;
        phases.finish = lap.next();
        Ok(TaskOutput {
            executor_id: self.id.clone(),
            locations,
            elapsed: started.elapsed(),
            accumulators: env.accumulators(),
            spilled_bytes,
            spills,
            compression: compression.to_string(),
            phases,
        })
    }

    /// Records that this executor runs tasks of `job_id`, whose files Flight tickets may
    /// then name; refuses an id that is not a plain name.
    pub fn accept_job(&self, job_id: &str) -> Result<()> {
        check_job_id(job_id)?;
        lock(&self.jobs).insert(job_id.to_string());
        Ok(())
    }

    /// Stores (or replaces) a broadcast variable for the user functions of later tasks.
    pub fn put_broadcast(&self, name: &str, bytes: Arc<[u8]>) {
        self.broadcasts.put(name, bytes);
    }

    /// Drops a broadcast variable.
    pub fn remove_broadcast(&self, name: &str) {
        self.broadcasts.remove(name);
    }

    /// Whether `path` is a file this executor still holds (inside its work directory).
    ///
    /// Paths are compared resolved (`..` and links followed), so no path outside the work
    /// directory is ever said to be held.
    pub fn holds(&self, path: &Path) -> bool {
        let (Ok(path), Ok(root)) = (path.canonicalize(), self.config.work_dir.canonicalize())
        else {
            return false;
        };
        path.starts_with(root) && path.is_file()
    }

    /// Deletes the files one stage of a job wrote (the job's other stages stay).
    pub fn remove_stage(&self, job_id: &str, stage_id: usize) -> Result<()> {
        check_job_id(job_id)?;
        remove_dir(self.job_dir(job_id).join(format!("stage-{stage_id}")))
    }

    /// Deletes the files one attempt of one task wrote (a cancelled or superseded attempt).
    pub fn remove_attempt(
        &self,
        job_id: &str,
        stage_id: usize,
        partition: usize,
        attempt: usize,
    ) -> Result<()> {
        check_job_id(job_id)?;
        remove_dir(
            self.job_dir(job_id)
                .join(format!("stage-{stage_id}"))
                .join(format!("map-{partition}-attempt-{attempt}")),
        )
    }

    /// The folder of one job's shuffle files.
    pub fn job_dir(&self, job_id: &str) -> PathBuf {
        self.config.work_dir.join(job_id)
    }

    /// Deletes a finished job's shuffle files. The job's folder is moved aside first (one
    /// rename), so that it is gone when this returns, and its files are deleted on a
    /// thread of their own: unlinking the files of a job of 20 stages takes about 5 ms,
    /// which every query's result would otherwise wait for.
    pub fn remove_job(&self, job_id: &str) -> Result<()> {
        check_job_id(job_id)?;
        lock(&self.jobs).remove(job_id);
        let dir = self.job_dir(job_id);
        if !dir.exists() {
            return Ok(());
        }
        let removing = self.config.work_dir.join(REMOVING_DIR);
        let aside = removing.join(job_id);
        // Not movable (moved aside already by a removal still running): removed here.
        if std::fs::create_dir_all(&removing)
            .and_then(|()| std::fs::rename(&dir, &aside))
            .is_err()
        {
            return remove_dir(dir);
        }
        let spawned = std::thread::Builder::new()
            .name("ember-remove-job".into())
            .spawn({
                let aside = aside.clone();
                move || {
                    if let Err(e) = remove_dir(aside) {
                        tracing::warn!("{e}");
                    }
                    // The last removal takes the folder with it.
                    let _ = std::fs::remove_dir(removing);
                }
            });
        match spawned {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!("removing a job's files in place: {e}");
                remove_dir(aside)
            }
        }
    }

    /// The file a Flight ticket names, if the ticket is one this executor may serve: a job
    /// it ran, named by a plain id, so that the path stays inside the work directory.
    pub fn shuffle_file(&self, ticket: &ShuffleTicket) -> std::result::Result<PathBuf, String> {
        let key = ticket.checked_key()?;
        let job = ticket.job_id.as_str();
        if !lock(&self.jobs).contains(job) {
            return Err(format!("executor {} ran no job {job:?}", self.config.id));
        }
        let path = self.config.work_dir.join(key);
        if !path.starts_with(&self.config.work_dir) {
            return Err("the ticket names a path outside the work directory".into());
        }
        Ok(path)
    }
}

/// Removes the folder of a task attempt that ends without success, once the attempt is
/// dropped (a cancelled one is dropped at its next await, possibly after its job's folder
/// was removed, which its writes may have made again). When the job itself was removed
/// meanwhile, the job's folder goes too if nothing else is left in it.
struct Unfinished<'a> {
    executor: &'a Executor,
    job_id: &'a str,
    task_dir: PathBuf,
    armed: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.task_dir);
        if !lock(&self.executor.jobs).contains(self.job_id) {
            // Only empty folders go: `remove_dir` refuses the others.
            if let Some(stage_dir) = self.task_dir.parent() {
                let _ = std::fs::remove_dir(stage_dir);
            }
            let _ = std::fs::remove_dir(self.executor.job_dir(self.job_id));
        }
    }
}

/// Removes what a task's failed run wrote to `task_dir`, so that its next run starts
/// from nothing.
fn remove_output(task_dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(task_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ExecutorError::Io {
            action: "removing a failed run's output",
            path: task_dir.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Takes Ember's own setting `key` out of a task's settings (the rest go to DataFusion).
fn take_setting(settings: &mut Vec<(String, String)>, key: &str) -> Option<String> {
    let at = settings.iter().position(|(k, _)| k == key)?;
    Some(settings.remove(at).1)
}

/// The folder of a work directory where removed jobs' folders wait for their files to be
/// deleted.
const REMOVING_DIR: &str = ".removing";

/// A stopwatch read at the end of each phase of a task.
struct Lap(Instant);

impl Lap {
    /// The time since the last reading (or the start).
    fn next(&mut self) -> std::time::Duration {
        let now = Instant::now();
        let since = now.duration_since(self.0);
        self.0 = now;
        since
    }
}

/// One task counted in [`Executor::running_tasks`] while it lives.
struct Running(Arc<std::sync::atomic::AtomicUsize>);

impl Running {
    fn enter(count: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(Arc::clone(count))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Removes a folder and everything in it; a folder that is not there is fine.
fn remove_dir(dir: PathBuf) -> Result<()> {
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ExecutorError::Io {
            action: "removing a shuffle folder",
            path: dir,
            source,
        }),
    }
}

fn check_job_id(job_id: &str) -> Result<()> {
    if is_plain_name(job_id) {
        Ok(())
    } else {
        Err(ExecutorError::Config {
            key: "job id".into(),
            message: format!("{job_id:?} is not a plain name"),
        })
    }
}

/// `plan` with each join's output made cooperative: a join can make millions of rows
/// from one input batch without ever waiting, and a task that never waits cannot be
/// cancelled (its job was, or its caller went away) until it ends. Through
/// [`CooperativeExec`] it gives way to the runtime every so many batches, and a
/// cancellation takes effect there.
fn cooperative_joins(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::physical_plan::coop::CooperativeExec;
    let plan = plan.transform_up(|node| {
        if node.name().contains("Join") {
            Ok(Transformed::yes(
                Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
            ))
        } else {
            Ok(Transformed::no(node))
        }
    })?;
    Ok(plan.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(job: &str) -> ShuffleTicket {
        ShuffleTicket {
            job_id: job.to_string(),
            stage_id: 1,
            map_partition: 2,
            attempt: 0,
            output_partition: 3,
        }
    }

    fn executor_in(dir: &Path) -> Result<Executor> {
        Executor::try_new(ExecutorConfig {
            id: "e".into(),
            work_dir: dir.to_path_buf(),
            slots: 1,
            compression: ShuffleCompression::default(),
            security: ClientSecurity::default(),
            memory_limit: None,
            functions: FunctionRegistry::new(),
            metrics: Arc::default(),
        })
    }

    #[test]
    fn holds_resolves_paths_before_it_compares_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let work = dir.path().join("work");
        let executor = executor_in(&work).expect("executor");
        std::fs::write(work.join("piece.arrow"), b"x").expect("write");
        std::fs::write(dir.path().join("outside"), b"x").expect("write");
        assert!(executor.holds(&work.join("piece.arrow")));
        assert!(!executor.holds(&work.join("../outside")));
        assert!(!executor.holds(&work.join("../../../../../../../../etc/passwd")));
        assert!(!executor.holds(&work.join("missing")));
    }

    #[test]
    fn a_removed_job_is_gone_at_once_and_its_files_follow() {
        let dir = tempfile::tempdir().expect("temp dir");
        let executor = executor_in(dir.path()).expect("executor");
        executor.accept_job("job-1").expect("a plain id");
        let stage = executor.job_dir("job-1").join("stage-0/map-0-attempt-0");
        std::fs::create_dir_all(&stage).expect("folders");
        for part in 0..50 {
            std::fs::write(stage.join(format!("part-{part}.arrow")), b"x").expect("write");
        }
        executor.remove_job("job-1").expect("removed");
        assert!(!executor.job_dir("job-1").exists());
        assert!(executor.shuffle_file(&ticket("job-1")).is_err());
        let removing = dir.path().join(REMOVING_DIR);
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while removing.exists() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            !removing.exists(),
            "the files stay in {}",
            removing.display()
        );
        // Removing it again, or a job that never was, is fine.
        executor.remove_job("job-1").expect("again");
        executor.remove_job("job-2").expect("never there");
    }

    #[test]
    fn files_left_being_removed_go_when_the_next_executor_starts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let left = dir.path().join(REMOVING_DIR).join("job-1");
        std::fs::create_dir_all(&left).expect("folders");
        std::fs::write(left.join("part-0.arrow"), b"x").expect("write");
        let _executor = executor_in(dir.path()).expect("executor");
        assert!(!dir.path().join(REMOVING_DIR).exists());
    }

    #[test]
    fn a_work_dir_held_by_a_live_executor_is_refused_to_another() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = executor_in(dir.path()).expect("executor");
        let second = executor_in(dir.path());
        assert!(
            matches!(&second, Err(ExecutorError::Config { key, .. }) if key == "--work-dir"),
            "{second:?}"
        );
        drop(first);
        executor_in(dir.path()).expect("free once the first is gone");
    }

    #[test]
    fn tickets_name_only_files_of_jobs_it_ran_inside_the_work_dir() {
        let dir = tempfile::tempdir().expect("temp dir");
        let executor = Executor::try_new(ExecutorConfig {
            id: "e".into(),
            work_dir: dir.path().join("e"),
            slots: 1,
            compression: ShuffleCompression::default(),
            security: ClientSecurity::default(),
            memory_limit: Some(1 << 20),
            functions: FunctionRegistry::new(),
            metrics: Arc::default(),
        })
        .expect("executor");
        assert!(
            dir.path().join("e").join("spill").is_dir(),
            "spills go to its work dir"
        );
        executor.accept_job("job-1").expect("a plain id");
        let path = executor
            .shuffle_file(&ticket("job-1"))
            .expect("a job it ran");
        assert_eq!(
            path,
            dir.path()
                .join("e/job-1/stage-1/map-2-attempt-0/part-3.arrow")
        );
        for job in [
            "job-2",
            "..",
            "../job-1",
            "/etc",
            "",
            ".hidden",
            "job-1/../x",
        ] {
            assert!(executor.shuffle_file(&ticket(job)).is_err(), "{job:?}");
        }
        assert!(executor.remove_job("../outside").is_err());
        assert!(executor.remove_job("").is_err());
        executor.remove_job("job-1").expect("a plain id");
        assert!(
            executor.shuffle_file(&ticket("job-1")).is_err(),
            "forgotten once removed"
        );
    }
}
