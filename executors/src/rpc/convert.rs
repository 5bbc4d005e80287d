//! Conversions between the executors' types and their gRPC messages.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::error::DataFusionError;
use ember_planner::AccumulatorValue;

use super::proto;
use crate::error::ExecutorError;
use crate::task::{ShuffleLocation, TaskDefinition, TaskOutput};

/// A `u64` from the wire as a `usize`.
fn size(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

impl From<&ShuffleLocation> for proto::ShuffleLocation {
    fn from(l: &ShuffleLocation) -> Self {
        Self {
            stage_id: l.stage_id as u64,
            map_partition: l.map_partition as u64,
            output_partition: l.output_partition as u64,
            executor_id: l.executor_id.clone(),
            path: l.path.to_string_lossy().into_owned(),
            rows: l.rows,
            bytes: l.bytes,
            attempt: l.attempt as u64,
        }
    }
}

impl From<proto::ShuffleLocation> for ShuffleLocation {
    fn from(l: proto::ShuffleLocation) -> Self {
        Self {
            stage_id: size(l.stage_id),
            map_partition: size(l.map_partition),
            attempt: size(l.attempt),
            output_partition: size(l.output_partition),
            executor_id: l.executor_id,
            path: PathBuf::from(l.path),
            rows: l.rows,
            bytes: l.bytes,
        }
    }
}

/// Settings as key/value messages.
pub fn key_values(settings: &[(String, String)]) -> Vec<proto::KeyValue> {
    settings
        .iter()
        .map(|(key, value)| proto::KeyValue {
            key: key.clone(),
            value: value.clone(),
        })
        .collect()
}

/// Key/value messages as settings.
pub fn settings(pairs: Vec<proto::KeyValue>) -> Vec<(String, String)> {
    pairs.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

impl From<&TaskDefinition> for proto::TaskDefinition {
    fn from(t: &TaskDefinition) -> Self {
        Self {
            job_id: t.job_id.clone(),
            stage_id: t.stage_id as u64,
            partition: t.partition as u64,
            attempt: t.attempt as u64,
            plan: t.plan.as_ref().clone(),
            inputs: t.inputs.iter().map(Into::into).collect(),
            settings: key_values(&t.settings),
            peers: t.peers.as_ref().clone(),
        }
    }
}

impl From<proto::TaskDefinition> for TaskDefinition {
    fn from(t: proto::TaskDefinition) -> Self {
        Self {
            job_id: t.job_id,
            stage_id: size(t.stage_id),
            partition: size(t.partition),
            attempt: size(t.attempt),
            plan: Arc::new(t.plan),
            inputs: Arc::new(t.inputs.into_iter().map(Into::into).collect()),
            settings: Arc::new(settings(t.settings)),
            peers: Arc::new(t.peers),
        }
    }
}

impl From<&TaskOutput> for proto::TaskOutput {
    fn from(o: &TaskOutput) -> Self {
        Self {
            executor_id: o.executor_id.clone(),
            locations: o.locations.iter().map(Into::into).collect(),
            elapsed_micros: u64::try_from(o.elapsed.as_micros()).unwrap_or(u64::MAX),
            spilled_bytes: o.spilled_bytes,
            spills: o.spills,
            accumulators: o
                .accumulators
                .iter()
                .map(|(name, value)| proto::Accumulator {
                    name: name.clone(),
                    value: Some(match value {
                        AccumulatorValue::Long(v) => proto::accumulator::Value::Long(*v),
                        AccumulatorValue::Double(v) => proto::accumulator::Value::Double(*v),
                    }),
                })
                .collect(),
        }
    }
}

impl From<proto::TaskOutput> for TaskOutput {
    fn from(o: proto::TaskOutput) -> Self {
        Self {
            executor_id: o.executor_id,
            locations: o.locations.into_iter().map(Into::into).collect(),
            elapsed: Duration::from_micros(o.elapsed_micros),
            spilled_bytes: o.spilled_bytes,
            spills: o.spills,
            accumulators: o
                .accumulators
                .into_iter()
                .filter_map(|a| {
                    let value = match a.value? {
                        proto::accumulator::Value::Long(v) => AccumulatorValue::Long(v),
                        proto::accumulator::Value::Double(v) => AccumulatorValue::Double(v),
                    };
                    Some((a.name, value))
                })
                .collect(),
        }
    }
}

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

impl From<std::result::Result<TaskOutput, ExecutorError>> for proto::TaskResult {
    fn from(result: std::result::Result<TaskOutput, ExecutorError>) -> Self {
        let result = match result {
            Ok(output) => proto::task_result::Result::Output((&output).into()),
            Err(error) => proto::task_result::Result::Error((&error).into()),
        };
        Self {
            result: Some(result),
        }
    }
}

impl proto::TaskResult {
    /// The task's output or error.
    pub fn into_result(self) -> std::result::Result<TaskOutput, ExecutorError> {
        match self.result {
            Some(proto::task_result::Result::Output(output)) => Ok(output.into()),
            Some(proto::task_result::Result::Error(error)) => Err(error.into()),
            None => Err(ExecutorError::Remote {
                message: "the executor sent an empty task result".into(),
                retryable: true,
            }),
        }
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
