//! The engine's error type, [`EmberError`], and how errors from the lower crates map into it.

use std::path::PathBuf;

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use ember_datasets::DatasetError;
use ember_executors::ExecutorError;
use ember_planner::PlannerError;

/// Result type of the `ember` crate.
pub type Result<T, E = EmberError> = std::result::Result<T, E>;

/// Everything that can go wrong in a session, a job or the command line.
#[derive(Debug, thiserror::Error)]
pub enum EmberError {
    /// A setting or option had a bad value.
    #[error("invalid setting {key}: {message}")]
    Config {
        /// The key or option (`ember.executor.slots`, `--executors`, ...).
        key: String,
        /// Why the value was refused.
        message: String,
    },
    /// A table could not be registered.
    #[error("table '{name}' ({path}): {message}")]
    Table {
        /// The table name.
        name: String,
        /// The path or URL given for it.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A task failed on every attempt, so its job failed.
    #[error("{source} (stage {stage_id}, partition {partition}, {attempts} attempt(s))")]
    TaskFailed {
        /// The task's stage.
        stage_id: usize,
        /// The task's partition.
        partition: usize,
        /// How many times it ran.
        attempts: usize,
        /// The error of the last attempt.
        #[source]
        source: ExecutorError,
    },
    /// A DSL operation was called with an argument it cannot work with.
    #[error("{operation}: {message}")]
    InvalidArgument {
        /// The operation (`from_batches`, `repartition`, ...).
        operation: &'static str,
        /// What is wrong with the argument.
        message: String,
    },
    /// A broken invariant inside Ember (a bug, not a user mistake).
    #[error("internal error: {message}")]
    Internal {
        /// What went wrong.
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
        waited: std::time::Duration,
    },
    /// The job was cancelled (by its client, or by a `CancelJob` call).
    #[error("job {job_id} was cancelled: {reason}")]
    Cancelled {
        /// The job.
        job_id: String,
        /// Why, as the canceller said.
        reason: String,
    },
    /// The scheduler of a process cluster reported an error, or could not be reached.
    #[error("{message}")]
    Cluster {
        /// What went wrong, as the scheduler (or the connection) said.
        message: String,
    },
    /// A statement of a script failed: which one, on which line, and why (on one line).
    #[error("statement {number} (line {line}): {message}")]
    Statement {
        /// 1 for the first statement.
        number: usize,
        /// The line its first word is on.
        line: usize,
        /// The error, on one line.
        message: String,
    },
    /// The table catalog could not be read or changed.
    #[error("catalog: {message}")]
    Catalog {
        /// What went wrong.
        message: String,
    },
    /// The cluster has no executor to run tasks on.
    #[error("the cluster has no executors")]
    NoExecutors,
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The planner could not cut or serialize a plan.
    #[error(transparent)]
    Planner(#[from] PlannerError),
    /// A connector (Delta Lake, PostgreSQL) failed, naming its table or server.
    #[error(transparent)]
    Connector(#[from] ember_connectors::ConnectorError),
    /// An executor failed outside a task.
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    /// A data set could not be generated.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// DataFusion refused the query (parse, plan or schema errors) or failed running it.
    #[error("{}", strip_datafusion_prefix(.0))]
    DataFusion(#[from] DataFusionError),
}

/// A message on one line: multi-line texts (DataFusion's among them) joined with spaces,
/// blank lines dropped.
pub(crate) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// DataFusion's error text without the wrapping "External error: " noise.
fn strip_datafusion_prefix(error: &DataFusionError) -> String {
    match error {
        DataFusionError::External(inner) => inner.to_string(),
        DataFusionError::Context(context, inner) => {
            format!("{context}: {}", strip_datafusion_prefix(inner))
        }
        DataFusionError::SQL(parser, _) => match parser.as_ref() {
            ParserError::ParserError(message) | ParserError::TokenizerError(message) => {
                format!("syntax error: {message}")
            }
            other => other.to_string(),
        },
        // Not a bug in DataFusion when a user's path holds no files: the message alone.
        DataFusionError::Internal(message) => message.clone(),
        DataFusionError::Plan(message) => message.clone(),
        other => other.to_string(),
    }
}

/// Returns early with [`EmberError::Config`] for `key` and a formatted message.
#[macro_export]
macro_rules! config_err {
    ($key:expr, $($arg:tt)*) => {
        return Err($crate::EmberError::Config { key: $key.to_string(), message: format!($($arg)*) })
    };
}

/// A scheduler error becomes the engine's variant of the same name, with the same text.
impl From<ember_scheduler::SchedulerError> for EmberError {
    fn from(error: ember_scheduler::SchedulerError) -> Self {
        use ember_scheduler::SchedulerError as S;
        match error {
            S::Config { key, message } => Self::Config { key, message },
            S::TaskFailed {
                stage_id,
                partition,
                attempts,
                source,
            } => Self::TaskFailed {
                stage_id,
                partition,
                attempts,
                source,
            },
            S::InvalidArgument { operation, message } => {
                Self::InvalidArgument { operation, message }
            }
            S::Internal { message } => Self::Internal { message },
            S::NoExecutorsLeft { job_id, waited } => Self::NoExecutorsLeft { job_id, waited },
            S::Cancelled { job_id, reason } => Self::Cancelled { job_id, reason },
            S::Cluster { message } => Self::Cluster { message },
            error @ (S::State { .. } | S::NotLeader { .. }) => Self::Cluster {
                message: error.to_string(),
            },
            S::Executor(e) => Self::Executor(e),
            S::Planner(e) => Self::Planner(e),
            S::DataFusion(e) => Self::DataFusion(e),
        }
    }
}

impl From<ember_proto::ProtoError> for EmberError {
    fn from(error: ember_proto::ProtoError) -> Self {
        match error {
            ember_proto::ProtoError::Config { key, message } => Self::Config { key, message },
            unreachable @ ember_proto::ProtoError::Unreachable { .. } => {
                Self::Executor(unreachable.into())
            }
        }
    }
}
