//! The scheduler: runs jobs (a [`JobSpec`]: encoded stage plans and how they connect) on
//! the executors of an [`ExecutorPool`].
//!
//! A stage is submitted when every stage it reads is complete; its tasks (one per
//! partition) go where the pool finds a free slot, preferring the executor that holds most
//! of the task's input. A failed task is tried again, on another executor when there is
//! one, up to `max_attempts` times; then the job fails. When an executor is lost, its
//! running tasks run again elsewhere and the map outputs it held are recomputed (only
//! those, and only where a later stage still needs them) before the stages that read them
//! go on. With no executor left, a job waits `grace_period` for one to register, then
//! fails. Several jobs may run at once; the pool's [`Policy`] shares slots between them.
//! The same scheduler drives the embedded cluster and a cluster of processes.

mod client;
mod events;
mod ids;
mod job;
mod metrics;
mod pool;
pub(crate) mod remote;
pub(crate) mod service;
pub(crate) mod wire;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ember_executors::ShuffleLocation;
use ember_planner::{StageGraph, encode_plan};

pub use client::ExecutorClient;
pub use events::{JobEvent, JobListener};
pub(crate) use ids::new_job_id;
pub use metrics::{FailedAttempt, JobMetrics, RecomputedTask, StageSummary, TaskRecord};
pub use pool::{ExecutorPool, ExecutorStatus, Policy};
pub use service::{SchedulerProcessConfig, run_scheduler_process};

use crate::error::{EmberError, Result};
use crate::sync::lock;

/// One stage of a job as the scheduler needs it: the plan its tasks run, already encoded.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// The stage's id, its index in the job.
    pub id: usize,
    /// The stage plan, encoded with `ember_planner::encode_plan`.
    pub plan: Arc<Vec<u8>>,
    /// The stages whose output it reads.
    pub inputs: Vec<usize>,
    /// Its number of tasks.
    pub partitions: usize,
    /// How it spreads its output (`hash`, `round-robin`, `single`, `preserve`).
    pub output_kind: String,
    /// The number of partitions of its output.
    pub output_partitions: usize,
}

/// A job to run: its stages and the settings its tasks run with.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Unique id; names the job's folder on every executor.
    pub job_id: String,
    /// The stages, in id order (a stage reads only stages with smaller ids).
    pub stages: Vec<StageSpec>,
    /// DataFusion settings for the tasks.
    pub settings: Vec<(String, String)>,
    /// The stage whose output is the job's result.
    pub final_stage: usize,
    /// Keep the final stage's output on the executors until the job is removed (a cached
    /// dataset), rather than once the client has read it.
    pub retain_output: bool,
    /// The staging URLs of the job's writes (`StagedWriteExec`): removed by a scheduler
    /// process whose client goes away before the job ends.
    pub staging: Vec<String>,
}

impl JobSpec {
    /// The job that runs `graph`, with every stage plan encoded.
    pub fn from_graph(
        job_id: &str,
        graph: &StageGraph,
        settings: Vec<(String, String)>,
    ) -> Result<Self> {
        let mut stages = Vec::with_capacity(graph.stages().len());
        for (index, stage) in graph.stages().iter().enumerate() {
            if stage.id() != index || stage.inputs().iter().any(|i| *i >= index) {
                return Err(EmberError::Internal {
                    message: format!("stage {} is out of order in its graph", stage.id()),
                });
            }
            stages.push(StageSpec {
                id: stage.id(),
                plan: Arc::new(encode_plan(Arc::clone(stage.plan()))?),
                inputs: stage.inputs().to_vec(),
                partitions: stage.partitions(),
                output_kind: stage.output().kind().to_string(),
                output_partitions: stage.output().partition_count(),
            });
        }
        Ok(Self {
            job_id: job_id.to_string(),
            stages,
            settings,
            final_stage: graph.final_stage().id(),
            retain_output: false,
            staging: staging_urls(graph),
        })
    }

    /// Tasks over all stages, without retries.
    pub fn total_tasks(&self) -> usize {
        self.stages.iter().map(|s| s.partitions).sum()
    }
}

/// The staging URL of every write in `graph`'s stage plans.
fn staging_urls(graph: &StageGraph) -> Vec<String> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut urls = Vec::new();
    for stage in graph.stages() {
        let _ = stage.plan().apply(|node| {
            if let Some(write) = node.downcast_ref::<ember_planner::StagedWriteExec>() {
                urls.push(write.staging().to_string());
            }
            Ok(TreeNodeRecursion::Continue)
        });
    }
    urls
}

/// The result of a finished job: where the final stage's output lies, and metrics.
#[derive(Debug)]
pub struct JobOutcome {
    /// Output of the final stage, one location per non-empty partition.
    pub final_output: Vec<ShuffleLocation>,
    /// The address of every executor in another process that holds final output.
    pub addresses: HashMap<String, String>,
    /// What ran where.
    pub metrics: JobMetrics,
    /// Keeps the final output on a process cluster's executors while it is held (see
    /// [`ResultLease`]); `None` on the embedded cluster.
    pub lease: Option<ResultLease>,
}

/// A hold on a finished job's result: the scheduler process keeps the job's files while
/// the client holds the job's update stream, and removes them once it is dropped (read
/// to the end, or the client gone). Keep it until the result has been read.
pub struct ResultLease(#[allow(dead_code)] Mutex<Box<dyn Send>>);

impl ResultLease {
    /// A lease that holds `stream` open.
    pub fn new(stream: impl Send + 'static) -> Self {
        Self(Mutex::new(Box::new(stream)))
    }
}

impl std::fmt::Debug for ResultLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResultLease")
    }
}

/// How a scheduler retries and waits.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Tries per task.
    pub max_attempts: usize,
    /// How long a job waits for an executor when none is left.
    pub grace_period: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            grace_period: Duration::from_secs(30),
        }
    }
}

/// Runs jobs on the executors of its pool.
pub struct Scheduler {
    pool: Arc<ExecutorPool>,
    config: SchedulerConfig,
    /// Broadcast variables, re-sent to executors that join later.
    broadcasts: Mutex<HashMap<String, Arc<[u8]>>>,
    /// Map tasks recomputed after executor losses, over all jobs: `job/stage.partition`.
    recomputed: Mutex<Vec<String>>,
}

impl Scheduler {
    /// A scheduler over `pool`.
    pub fn new(pool: Arc<ExecutorPool>, config: SchedulerConfig) -> Self {
        Self {
            pool,
            config: SchedulerConfig {
                max_attempts: config.max_attempts.max(1),
                ..config
            },
            broadcasts: Mutex::new(HashMap::new()),
            recomputed: Mutex::new(Vec::new()),
        }
    }

    /// The executors.
    pub fn pool(&self) -> &Arc<ExecutorPool> {
        &self.pool
    }

    /// Map tasks recomputed after executor losses so far, as `job/stage.partition`.
    pub fn recomputed(&self) -> Vec<String> {
        lock(&self.recomputed).clone()
    }

    /// Adds an executor, sending it the broadcast variables it has missed.
    pub async fn add_executor(&self, client: Arc<dyn ExecutorClient>) -> Result<()> {
        let broadcasts: Vec<(String, Arc<[u8]>)> = lock(&self.broadcasts)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        for (name, bytes) in broadcasts {
            client.put_broadcast(&name, bytes).await?;
        }
        self.pool.add(client);
        Ok(())
    }

    /// Runs every stage of `job`; returns where the final output lies.
    ///
    /// The job's shuffle files stay on the executors until [`Scheduler::remove_job`].
    pub async fn run_job(
        &self,
        job: &JobSpec,
        listener: Option<&dyn JobListener>,
    ) -> Result<JobOutcome> {
        // The run leaves the pool when it is dropped, also when its future is.
        let seq = self.pool.join_job();
        let outcome = job::JobRun::new(job, seq, &self.pool, &self.config, listener)
            .run()
            .await?;
        if !outcome.metrics.recomputed.is_empty() {
            lock(&self.recomputed).extend(
                outcome
                    .metrics
                    .recomputed
                    .iter()
                    .map(|r| format!("{}/{}.{}", job.job_id, r.stage_id, r.partition)),
            );
        }
        Ok(outcome)
    }

    /// Deletes the files of one stage of a job on every executor.
    pub async fn remove_stage(&self, job_id: &str, stage_id: usize) -> Result<()> {
        let calls = self
            .pool
            .clients()
            .into_iter()
            .map(|c| (c.id().to_string(), c.remove_stage(job_id, stage_id)));
        first_error(calls).await
    }

    /// Deletes a job's shuffle files on every executor.
    pub async fn remove_job(&self, job_id: &str) -> Result<()> {
        let calls = self
            .pool
            .clients()
            .into_iter()
            .map(|c| (c.id().to_string(), c.remove_job(job_id)));
        first_error(calls).await
    }

    /// Sends a broadcast variable to every executor (and to those that join later).
    pub async fn put_broadcast(&self, name: &str, bytes: Arc<[u8]>) -> Result<()> {
        lock(&self.broadcasts).insert(name.to_string(), Arc::clone(&bytes));
        let calls = self.pool.clients().into_iter().map(|c| {
            (
                c.id().to_string(),
                c.put_broadcast(name, Arc::clone(&bytes)),
            )
        });
        first_error(calls).await
    }

    /// Whether executor `executor_id` is alive and still holds `path`.
    pub async fn holds(&self, executor_id: &str, path: &std::path::Path) -> bool {
        match self.pool.client(executor_id) {
            Some(client) => client.holds(path).await,
            None => false,
        }
    }
}

/// Awaits every call, logging each failure; returns the first.
async fn first_error(
    calls: impl Iterator<
        Item = (
            String,
            futures::future::BoxFuture<
                'static,
                std::result::Result<(), ember_executors::ExecutorError>,
            >,
        ),
    >,
) -> Result<()> {
    let mut first = None;
    for (id, call) in calls {
        if let Err(e) = call.await {
            tracing::warn!(executor = %id, "cleanup failed: {e}");
            first.get_or_insert(e);
        }
    }
    match first {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
