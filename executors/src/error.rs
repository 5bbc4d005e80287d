//! The executors' error type.

use std::path::PathBuf;

use datafusion::error::DataFusionError;
use ember_planner::PlannerError;

/// Result type of `ember-executors`.
pub type Result<T, E = ExecutorError> = std::result::Result<T, E>;

/// Everything that can go wrong while an executor runs a task.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// A file or folder of the work directory could not be used.
    #[error("{action} {path}: {source}")]
    Io {
        /// What the executor was doing ("creating work directory", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// A task definition carried a setting the executor cannot apply.
    #[error("invalid setting {key}: {message}")]
    Config {
        /// The offending key.
        key: String,
        /// Why it was refused.
        message: String,
    },
    /// Input data is malformed; `location` names the file.
    #[error("{location}: {message}")]
    Input {
        /// The file (or files) being read.
        location: String,
        /// What is wrong and where in the file.
        message: String,
    },
    /// The stage plan could not be decoded.
    #[error(transparent)]
    Plan(#[from] PlannerError),
    /// The task's plan failed while running.
    #[error("{}", execution_message(.0))]
    Execution(#[from] DataFusionError),
    /// A task needed more memory than the executor's limit, even after spilling.
    #[error(
        "out of memory under the executor's limit of {limit} (--memory-limit, \
         ember.executor.memory_limit): {message}"
    )]
    OutOfMemory {
        /// The limit, for people.
        limit: String,
        /// DataFusion's message, naming the operator.
        message: String,
    },

    /// The task could not fetch shuffle data that another executor holds.
    #[error("fetching shuffle data from executor {executor_id} failed: {message}")]
    FetchFailed {
        /// The executor that should have served the data.
        executor_id: String,
        /// What went wrong.
        message: String,
    },
    /// A server could not be reached.
    #[error("cannot reach {address}: {message}")]
    Unreachable {
        /// Its URL.
        address: String,
        /// Why.
        message: String,
    },
    /// The executor that ran the task stopped answering (it was killed or cut off).
    #[error("executor {executor_id} was lost: {message}")]
    Lost {
        /// The executor.
        executor_id: String,
        /// What the scheduler saw.
        message: String,
    },
    /// A call to an executor broke before it answered (its connection was reset or timed
    /// out) while the executor may still be alive: the attempt's outcome is unknown, so the
    /// task runs again, but the executor is not declared lost. Only missed heartbeats or a
    /// refused connection do that.
    #[error("the call to executor {executor_id} broke: {message}")]
    Interrupted {
        /// The executor.
        executor_id: String,
        /// What the scheduler saw.
        message: String,
    },
    /// A task failed on a remote executor in a way that has no closer variant here.
    #[error("{message}")]
    Remote {
        /// The error, as the executor reported it.
        message: String,
        /// Whether trying again may help.
        retryable: bool,
    },
    /// A gRPC call was refused or failed.
    #[error("{}", rpc_message(.0))]
    Rpc(#[from] tonic::Status),
}

/// A gRPC status as one line: "wrong auth token (unauthenticated)".
fn rpc_message(status: &tonic::Status) -> String {
    format!("{} ({:?})", status.message(), status.code())
}

impl ExecutorError {
    /// Whether running the task again may succeed. Malformed input, an undecodable plan
    /// and a bad setting fail the same way every time.
    pub fn is_retryable(&self) -> bool {
        match self {
            ExecutorError::Input { .. } | ExecutorError::Plan(_) | ExecutorError::Config { .. } => {
                false
            }
            ExecutorError::Remote { retryable, .. } => *retryable,
            _ => true,
        }
    }
}

impl From<ember_proto::ProtoError> for ExecutorError {
    fn from(error: ember_proto::ProtoError) -> Self {
        match error {
            ember_proto::ProtoError::Config { key, message } => Self::Config { key, message },
            ember_proto::ProtoError::Unreachable { address, message } => {
                Self::Unreachable { address, message }
            }
        }
    }
}

/// A task's error text: an external error (a connector's, naming its table or topic) as
/// it is, without DataFusion's "External error: " in front.
fn execution_message(error: &DataFusionError) -> String {
    match error {
        DataFusionError::External(inner) => inner.to_string(),
        other => other.to_string(),
    }
}
