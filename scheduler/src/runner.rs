//! [`Scheduler`]: the front of the scheduler. It holds the executor pool and the broadcast
//! variables, runs each job through its own job loop, and removes jobs' files from the
//! executors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ember_proto::JobId;
use tokio::sync::mpsc;

use super::client::ExecutorClient;
use super::durable::{Journal, JournalLine, StateStore};
use super::events::JobListener;
use super::job;
use super::outcome::JobOutcome;
use super::pool::ExecutorPool;
use super::spec::{JobSpec, SchedulerConfig};
use super::ui::JobBoard;
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
    /// How to reach each running job's loop to cancel it, by job id.
    cancels: Mutex<HashMap<JobId, mpsc::UnboundedSender<String>>>,
    /// The jobs it runs and ran, for the web UI and `/metrics`.
    board: Arc<JobBoard>,
    /// Where each job's state is kept for a scheduler that takes over (`--state`, `--ha`).
    store: Option<Arc<dyn StateStore>>,
}

/// Takes a job out of [`Scheduler::cancels`] when its run ends or is dropped.
struct Registered<'a> {
    cancels: &'a Mutex<HashMap<JobId, mpsc::UnboundedSender<String>>>,
    job_id: &'a str,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(self.cancels).remove(self.job_id);
    }
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
            cancels: Mutex::new(HashMap::new()),
            board: Arc::default(),
            store: None,
        }
    }

    /// Keeps every job's state in `store` from now on.
    pub fn with_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Where jobs' state is kept, if anywhere.
    pub fn store(&self) -> Option<&Arc<dyn StateStore>> {
        self.store.as_ref()
    }

    /// Forgets a job in the state store (it ended, and its client has its answer).
    pub async fn forget_job(&self, job_id: &str) {
        if let Some(store) = &self.store
            && let Err(e) = store.remove_job(job_id).await
        {
            tracing::warn!(job = job_id, "could not remove the job's stored state: {e}");
        }
    }

    /// The jobs it runs and ran, for the web UI and `/metrics`.
    pub fn board(&self) -> &Arc<JobBoard> {
        &self.board
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
        let journal = match &self.store {
            Some(store) => {
                let spec = prost::Message::encode_to_vec(&ember_proto::pb::JobSpec::from(job));
                Some(Journal::new(Arc::clone(store), &job.job_id, Some(spec)))
            }
            None => None,
        };
        self.drive(job, listener, journal, None).await
    }

    /// Takes over `job` from its stored events `lines` and runs it to its end, waiting up
    /// to `wait_for` for the executors that hold its outputs to register again.
    pub(crate) async fn resume_job(
        &self,
        job: &JobSpec,
        lines: Vec<JournalLine>,
        wait_for: std::time::Duration,
        listener: Option<&dyn JobListener>,
    ) -> Result<JobOutcome> {
        let journal = self
            .store
            .as_ref()
            .map(|store| Journal::new(Arc::clone(store), &job.job_id, None));
        let resume = job::Resume { lines, wait_for };
        self.drive(job, listener, journal, Some(resume)).await
    }

    async fn drive(
        &self,
        job: &JobSpec,
        listener: Option<&dyn JobListener>,
        journal: Option<Journal>,
        resume: Option<job::Resume>,
    ) -> Result<JobOutcome> {
        // The run leaves the pool when it is dropped, also when its future is.
        let (cancel, cancelled) = mpsc::unbounded_channel();
        lock(&self.cancels).insert(job.job_id.clone(), cancel);
        let _registered = Registered {
            cancels: &self.cancels,
            job_id: &job.job_id,
        };
        let seq = self.pool.join_job();
        let outcome = job::JobRun::new(
            job,
            seq,
            &self.pool,
            &self.config,
            listener,
            &self.board,
            job::Kept { journal, resume },
        )
        .run(cancelled)
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

    /// Cancels running job `job_id`: its attempts are stopped on their executors (and
    /// their files removed) and the job fails with `SchedulerError::Cancelled`. `false` when
    /// no job of that id runs here.
    pub fn cancel_job(&self, job_id: &str, reason: &str) -> bool {
        lock(&self.cancels)
            .get(job_id)
            .is_some_and(|cancel| cancel.send(reason.to_string()).is_ok())
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

/// How long a call to every executor (cleanup, broadcasts) waits for the slowest one; a
/// call still unanswered then (a hung executor) goes on in the background, so that one
/// frozen machine does not hold up the client that asked.
const FAN_OUT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs every call at once and waits for them up to [`FAN_OUT_WAIT`], logging each
/// failure; returns the first.
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
    let running: Vec<_> = calls.map(|(id, call)| (id, tokio::spawn(call))).collect();
    let deadline = tokio::time::Instant::now() + FAN_OUT_WAIT;
    let mut first = None;
    for (id, mut call) in running {
        match tokio::time::timeout_at(deadline, &mut call).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(executor = %id, "cleanup failed: {e}");
                first.get_or_insert(e);
            }
            Ok(Err(e)) => tracing::warn!(executor = %id, "cleanup call ended abnormally: {e}"),
            Err(_) => {
                tracing::warn!(
                    executor = %id,
                    "no answer from executor {id} within {FAN_OUT_WAIT:?}; the call goes on in the background"
                );
                tokio::spawn(async move {
                    if let Ok(Err(e)) = call.await {
                        tracing::warn!(executor = %id, "cleanup failed: {e}");
                    }
                });
            }
        }
    }
    match first {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
