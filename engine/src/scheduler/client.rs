//! [`ExecutorClient`]: how the scheduler reaches an executor. The embedded cluster calls
//! its executors directly; the task still travels as a [`TaskDefinition`] with a serialized
//! plan.

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
}
