//! The outcome of a task on the wire: an [`ExecutorError`] as a `TaskError` message and
//! back (keeping its kind, so the scheduler still knows whether to retry), and a task's
//! result as the answer to `LaunchTask`.

use datafusion::error::DataFusionError;
use ember_proto::TaskOutput;
use ember_proto::pb as proto;

use crate::error::{ExecutorError, Result};

impl From<&ExecutorError> for proto::TaskError {
    fn from(error: &ExecutorError) -> Self {
        use proto::task_error::Kind;
        let (kind, location) = match error {
            ExecutorError::Input { location, .. } => (Kind::Input, location.clone()),
            ExecutorError::Plan(_) => (Kind::Plan, String::new()),
            ExecutorError::Config { key, .. } => (Kind::Config, key.clone()),
            ExecutorError::Io { .. } => (Kind::Io, String::new()),
            ExecutorError::FetchFailed { executor_id, .. } => {
                (Kind::FetchFailed, executor_id.clone())
            }
            ExecutorError::Remote {
                retryable: false, ..
            } => (Kind::Plan, String::new()),
            _ => (Kind::Execution, String::new()),
        };
        let message = match error {
            ExecutorError::Input { message, .. }
            | ExecutorError::Config { message, .. }
            | ExecutorError::FetchFailed { message, .. } => message.clone(),
            other => other.to_string(),
        };
        Self {
            kind: kind as i32,
            message,
            location,
        }
    }
}

impl From<proto::TaskError> for ExecutorError {
    fn from(e: proto::TaskError) -> Self {
        use proto::task_error::Kind;
        match Kind::try_from(e.kind).unwrap_or(Kind::Execution) {
            Kind::Input => ExecutorError::Input {
                location: e.location,
                message: e.message,
            },
            Kind::Config => ExecutorError::Config {
                key: e.location,
                message: e.message,
            },
            Kind::Plan => ExecutorError::Remote {
                message: e.message,
                retryable: false,
            },
            Kind::FetchFailed => ExecutorError::FetchFailed {
                executor_id: e.location,
                message: e.message,
            },
            Kind::Io => ExecutorError::Remote {
                message: e.message,
                retryable: true,
            },
            Kind::Execution => ExecutorError::Execution(DataFusionError::Execution(e.message)),
        }
    }
}

/// A task's output or error as the message that answers `LaunchTask`.
pub fn to_message(result: Result<TaskOutput>) -> proto::TaskResult {
    let result = match result {
        Ok(output) => proto::task_result::Result::Output((&output).into()),
        Err(error) => proto::task_result::Result::Error((&error).into()),
    };
    proto::TaskResult {
        result: Some(result),
    }
}

/// The task's output or error that a `LaunchTask` answer carries.
pub fn from_message(message: proto::TaskResult) -> Result<TaskOutput> {
    match message.result {
        Some(proto::task_result::Result::Output(output)) => Ok(output.into()),
        Some(proto::task_result::Result::Error(error)) => Err(error.into()),
        None => Err(ExecutorError::Remote {
            message: "the executor sent an empty task result".into(),
            retryable: true,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_errors_keep_their_kind_across_the_wire() {
        let input = ExecutorError::Input {
            location: "data/a.csv".into(),
            message: "line 3, column 2: bad number".into(),
        };
        let back = ExecutorError::from(proto::TaskError::from(&input));
        assert!(!back.is_retryable());
        assert_eq!(back.to_string(), input.to_string());

        let fetch = ExecutorError::FetchFailed {
            executor_id: "executor-3".into(),
            message: "connection refused".into(),
        };
        match ExecutorError::from(proto::TaskError::from(&fetch)) {
            ExecutorError::FetchFailed { executor_id, .. } => assert_eq!(executor_id, "executor-3"),
            other => panic!("became {other:?}"),
        }
    }
}
