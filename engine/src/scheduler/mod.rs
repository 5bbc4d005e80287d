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
mod outcome;
mod pool;
pub(crate) mod remote;
pub(crate) mod service;
mod spec;
pub(crate) mod wire;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use client::ExecutorClient;
pub use events::{JobEvent, JobListener};
pub(crate) use ids::new_job_id;
pub use metrics::{FailedAttempt, JobMetrics, RecomputedTask, StageSummary, TaskRecord};
pub use outcome::{JobOutcome, ResultLease};
pub use pool::{ExecutorPool, ExecutorStatus, Policy};
pub use service::{SchedulerProcessConfig, run_scheduler_process};
pub use spec::{JobSpec, SchedulerConfig, StageSpec};

use crate::error::Result;
use crate::sync::lock;

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
