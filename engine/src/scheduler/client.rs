//! [`ExecutorClient`]: how the scheduler reaches an executor. The embedded cluster calls
//! its executors directly; the task still travels as a [`TaskDefinition`] with a serialized
//! plan.

use std::path::Path;
use std::sync::Arc;

use ember_executors::{Executor, ExecutorError, TaskDefinition, TaskOutput};
use futures::future::BoxFuture;

/// An executor as the scheduler sees it.
pub trait ExecutorClient: Send + Sync {
    /// The executor's id.
    fn id(&self) -> &str;
    /// Tasks it runs at once.
    fn slots(&self) -> usize;
    /// Runs `task` and reports its output.
    fn launch(&self, task: TaskDefinition)
    -> BoxFuture<'static, Result<TaskOutput, ExecutorError>>;
    /// Drops the shuffle files of a finished job.
    fn remove_job(&self, job_id: &str) -> Result<(), ExecutorError>;
    /// Drops the files of one stage of a job.
    fn remove_stage(&self, job_id: &str, stage_id: usize) -> Result<(), ExecutorError>;
    /// Stores a broadcast variable for the user functions of later tasks.
    fn put_broadcast(&self, name: &str, bytes: Arc<[u8]>) -> Result<(), ExecutorError>;
    /// Whether the executor still holds the file `path` (a cached partition).
    fn holds(&self, path: &Path) -> bool;
}

impl ExecutorClient for Arc<Executor> {
    fn id(&self) -> &str {
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

    fn remove_job(&self, job_id: &str) -> Result<(), ExecutorError> {
        Executor::remove_job(self, job_id)
    }

    fn remove_stage(&self, job_id: &str, stage_id: usize) -> Result<(), ExecutorError> {
        Executor::remove_stage(self, job_id, stage_id)
    }

    fn put_broadcast(&self, name: &str, bytes: Arc<[u8]>) -> Result<(), ExecutorError> {
        Executor::put_broadcast(self, name, bytes);
        Ok(())
    }

    fn holds(&self, path: &Path) -> bool {
        Executor::holds(self, path)
    }
}
