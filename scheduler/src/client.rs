//! [`ExecutorClient`]: how the scheduler reaches an executor. The embedded cluster calls
//! its executors directly; a process cluster calls them over gRPC
//! ([`RemoteExecutor`](super::remote::RemoteExecutor)). Either way the task travels as a
//! [`TaskDefinition`] with a serialized plan.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ember_executors::{Executor, ExecutorError};
use ember_proto::{ExecutorId, TaskDefinition, TaskOutput};
use futures::future::BoxFuture;

/// An executor as the scheduler sees it.
pub trait ExecutorClient: Send + Sync {
    /// The executor's id.
    fn id(&self) -> &ExecutorId;
    /// Tasks it runs at once.
    fn slots(&self) -> usize;
    /// Where other processes reach it (`None` for an executor in this process).
    fn address(&self) -> Option<&str> {
        None
    }
    /// Runs `task` and reports its output. [`ExecutorError::Lost`] means the executor could
    /// not be reached.
    fn launch(&self, task: TaskDefinition)
    -> BoxFuture<'static, Result<TaskOutput, ExecutorError>>;
    /// Drops the shuffle files of a finished job.
    fn remove_job(&self, job_id: &str) -> BoxFuture<'static, Result<(), ExecutorError>>;
    /// Drops the files of one stage of a job.
    fn remove_stage(
        &self,
        job_id: &str,
        stage_id: usize,
    ) -> BoxFuture<'static, Result<(), ExecutorError>>;
    /// Stores a broadcast variable for the user functions of later tasks.
    fn put_broadcast(
        &self,
        name: &str,
        bytes: Arc<[u8]>,
    ) -> BoxFuture<'static, Result<(), ExecutorError>>;
    /// Stops attempt `attempt` of task `stage_id.partition` of job `job_id` if it still
    /// runs, and removes the files it wrote. An executor in this process stops when its
    /// launch future is dropped, so it only removes the files.
    fn cancel_task(
        &self,
        job_id: &str,
        stage_id: usize,
        partition: usize,
        attempt: usize,
    ) -> BoxFuture<'static, Result<(), ExecutorError>>;
    /// Whether the executor still holds the file `path` (a cached partition).
    fn holds(&self, path: &Path) -> BoxFuture<'static, bool>;
}

impl ExecutorClient for Arc<Executor> {
    fn id(&self) -> &ExecutorId {
        Executor::id(self)
    }

    fn slots(&self) -> usize {
        Executor::slots(self)
    }

    fn launch(
        &self,
        task: TaskDefinition,
    ) -> BoxFuture<'static, Result<TaskOutput, ExecutorError>> {
        let executor = Arc::clone(self);
        Box::pin(async move { executor.run_task(task).await })
    }

    fn remove_job(&self, job_id: &str) -> BoxFuture<'static, Result<(), ExecutorError>> {
        let result = Executor::remove_job(self, job_id);
        Box::pin(async move { result })
    }

    fn remove_stage(
        &self,
        job_id: &str,
        stage_id: usize,
    ) -> BoxFuture<'static, Result<(), ExecutorError>> {
        let result = Executor::remove_stage(self, job_id, stage_id);
        Box::pin(async move { result })
    }

    fn put_broadcast(
        &self,
        name: &str,
        bytes: Arc<[u8]>,
    ) -> BoxFuture<'static, Result<(), ExecutorError>> {
        Executor::put_broadcast(self, name, bytes);
        Box::pin(async { Ok(()) })
    }

    fn cancel_task(
        &self,
        job_id: &str,
        stage_id: usize,
        partition: usize,
        attempt: usize,
    ) -> BoxFuture<'static, Result<(), ExecutorError>> {
        // Its future was dropped; one that got to its end anyway fails and cleans up.
        self.mark_cancelled(&format!("{job_id}/{stage_id}.{partition}#{attempt}"));
        let result = Executor::remove_attempt(self, job_id, stage_id, partition, attempt);
        Box::pin(async move { result })
    }

    fn holds(&self, path: &Path) -> BoxFuture<'static, bool> {
        let path: PathBuf = path.to_path_buf();
        let executor = Arc::clone(self);
        Box::pin(async move { Executor::holds(&executor, &path) })
    }
}
