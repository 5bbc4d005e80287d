//! [`SchedulerError`]: what can go wrong in the scheduler, with the job, stage or option it
//! concerns. The engine turns each into the `EmberError` variant of the same name and text.

use std::time::Duration;

use datafusion::error::DataFusionError;
use ember_executors::ExecutorError;
use ember_planner::PlannerError;

/// An error of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// An option or setting had a bad value.
    #[error("invalid setting {key}: {message}")]
    Config {
        /// The option or setting.
        key: String,
        /// What was wrong with it.
        message: String,
    },
    /// A task failed on its last allowed attempt.
    #[error("{source} (stage {stage_id}, partition {partition}, {attempts} attempt(s))")]
    TaskFailed {
        /// The task's stage.
        stage_id: usize,
        /// The task's partition.
        partition: usize,
        /// How many times it ran.
        attempts: usize,
        /// The last attempt's error.
        source: ExecutorError,
    },
    /// An operation was given something it cannot use.
    #[error("{operation}: {message}")]
    InvalidArgument {
        /// What was being done.
        operation: &'static str,
        /// What was wrong.
        message: String,
    },
    /// A bug: a state the scheduler should never reach.
    #[error("internal error: {message}")]
    Internal {
        /// What happened.
        message: String,
    },
    /// Every executor was lost and none registered within the grace period.
    #[error(
        "job {job_id} failed: no executors left; it waited {}s (the grace period) and none registered",
        waited.as_secs_f64()
    )]
    NoExecutorsLeft {
        /// The job.
        job_id: String,
        /// How long it waited.
        waited: Duration,
    },
    /// The job was cancelled.
    #[error("job {job_id} was cancelled: {reason}")]
    Cancelled {
        /// The job.
        job_id: String,
        /// Why, as the canceller said.
        reason: String,
    },
    /// A cluster peer sent something unusable, or could not be served.
    #[error("{message}")]
    Cluster {
        /// What went wrong.
        message: String,
    },
    /// The job state store could not be read or written.
    #[error("{store}: {message}")]
    State {
        /// The store (`state folder DIR`, `etcd HOST:PORT`).
        store: String,
        /// What went wrong.
        message: String,
    },
    /// This scheduler does not lead (a standby, or one that lost its leadership).
    #[error("this scheduler is not the leader{}", leader.as_ref().map(|l| format!("; the leader is {l}")).unwrap_or_default())]
    NotLeader {
        /// The leader's URL, when known.
        leader: Option<String>,
    },
    /// An executor call failed.
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    /// A plan could not be encoded.
    #[error(transparent)]
    Planner(#[from] PlannerError),
    /// DataFusion (or an object store through it) failed.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

/// The scheduler's result type.
pub type Result<T, E = SchedulerError> = std::result::Result<T, E>;

impl From<ember_proto::ProtoError> for SchedulerError {
    fn from(error: ember_proto::ProtoError) -> Self {
        match error {
            ember_proto::ProtoError::Config { key, message } => Self::Config { key, message },
            unreachable @ ember_proto::ProtoError::Unreachable { .. } => {
                Self::Executor(unreachable.into())
            }
        }
    }
}
