//! Conversions between the task types of [`crate::task`] and their gRPC messages, and
//! from a Flight ticket to the key of the piece it names, once checked.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::pb as proto;
use crate::task::{AccumulatorValue, ShuffleLocation, TaskDefinition, TaskOutput, TaskPhases};
use crate::ticket::{is_plain_name, piece_key};

/// A duration as whole microseconds for the wire (saturating).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A count or index from the wire as a `usize` (saturating: a value that does not fit
/// names nothing that exists, and is refused or ignored as such).
pub fn size(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

impl From<&ShuffleLocation> for proto::ShuffleLocation {
    fn from(l: &ShuffleLocation) -> Self {
        Self {
            stage_id: l.stage_id.index() as u64,
            map_partition: l.map_partition as u64,
            output_partition: l.output_partition as u64,
            executor_id: l.executor_id.to_string(),
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
            stage_id: crate::StageId(size(l.stage_id)),
            map_partition: size(l.map_partition),
            attempt: size(l.attempt),
            output_partition: size(l.output_partition),
            executor_id: l.executor_id.into(),
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
            job_id: t.job_id.to_string(),
            stage_id: t.stage_id.index() as u64,
            partition: t.partition as u64,
            attempt: t.attempt as u64,
            plan: t.plan.as_ref().clone(),
            inputs: t.inputs.iter().map(Into::into).collect(),
            settings: key_values(&t.settings),
            peers: t.peers.as_ref().clone(),
            plan_partition: t.plan_partition.map(|p| p as u64),
        }
    }
}

impl From<proto::TaskDefinition> for TaskDefinition {
    fn from(t: proto::TaskDefinition) -> Self {
        Self {
            job_id: t.job_id.into(),
            stage_id: crate::StageId(size(t.stage_id)),
            partition: size(t.partition),
            attempt: size(t.attempt),
            plan: Arc::new(t.plan),
            inputs: Arc::new(t.inputs.into_iter().map(Into::into).collect()),
            settings: Arc::new(settings(t.settings)),
            peers: Arc::new(t.peers),
            plan_partition: t.plan_partition.map(size),
        }
    }
}

impl From<&TaskOutput> for proto::TaskOutput {
    fn from(o: &TaskOutput) -> Self {
        Self {
            executor_id: o.executor_id.to_string(),
            locations: o.locations.iter().map(Into::into).collect(),
            elapsed_micros: micros(o.elapsed),
            spilled_bytes: o.spilled_bytes,
            spills: o.spills,
            compression: o.compression.clone(),
            phases: Some(proto::TaskPhases {
                setup_micros: micros(o.phases.setup),
                decode_micros: micros(o.phases.decode),
                filters_micros: micros(o.phases.filters),
                run_micros: micros(o.phases.run),
                finish_micros: micros(o.phases.finish),
                join_fallback_micros: micros(o.phases.join_fallback),
            }),
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
            executor_id: o.executor_id.into(),
            locations: o.locations.into_iter().map(Into::into).collect(),
            elapsed: Duration::from_micros(o.elapsed_micros),
            spilled_bytes: o.spilled_bytes,
            spills: o.spills,
            compression: o.compression,
            phases: o
                .phases
                .map(|p| TaskPhases {
                    setup: Duration::from_micros(p.setup_micros),
                    decode: Duration::from_micros(p.decode_micros),
                    filters: Duration::from_micros(p.filters_micros),
                    run: Duration::from_micros(p.run_micros),
                    finish: Duration::from_micros(p.finish_micros),
                    join_fallback: Duration::from_micros(p.join_fallback_micros),
                })
                .unwrap_or_default(),
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

impl proto::ShuffleTicket {
    /// The piece the ticket names, relative to the work directory, once its job id has been
    /// checked to be a plain name (so the path cannot leave the work directory).
    pub fn checked_key(&self) -> Result<String, String> {
        if !is_plain_name(&self.job_id) {
            return Err(format!(
                "the ticket's job id {:?} is not a plain name",
                self.job_id
            ));
        }
        Ok(piece_key(
            &self.job_id,
            size(self.stage_id),
            size(self.map_partition),
            size(self.attempt),
            size(self.output_partition),
        ))
    }
}
