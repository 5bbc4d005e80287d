//! Conversions between the scheduler's job types and their gRPC messages.

use std::collections::HashMap;
use std::sync::Arc;

use ember_proto::convert::{key_values, settings, size};
use ember_proto::ids::StageId;
use ember_proto::is_plain_name;
use ember_proto::pb as proto;

use super::adaptive::AdaptiveConfig;
use super::metrics::JobMetrics;
use super::outcome::JobOutcome;
use super::spec::{JobSpec, StageSpec};
use crate::error::{Result, SchedulerError};
use ember_planner::StageFacts;

impl From<&JobSpec> for proto::JobSpec {
    fn from(job: &JobSpec) -> Self {
        Self {
            job_id: job.job_id.to_string(),
            stages: job
                .stages
                .iter()
                .map(|s| proto::StageSpec {
                    id: s.id.index() as u64,
                    plan: s.plan.as_ref().clone(),
                    inputs: s.inputs.iter().map(|i| i.index() as u64).collect(),
                    partitions: s.partitions as u64,
                    output_kind: s.output_kind.as_str().to_string(),
                    output_partitions: s.output_partitions as u64,
                    facts_json: serde_json::to_string(&s.facts).unwrap_or_default(),
                })
                .collect(),
            settings: key_values(&job.settings),
            final_stage: job.final_stage.index() as u64,
            retain_output: job.retain_output,
            staging: job.staging.clone(),
            name: job.name.clone().unwrap_or_default(),
            plan_json: job
                .plan
                .as_ref()
                .and_then(|plan| serde_json::to_string(plan).ok())
                .unwrap_or_default(),
            adaptive_json: serde_json::to_string(&job.adaptive).unwrap_or_default(),
        }
    }
}

impl TryFrom<proto::JobSpec> for JobSpec {
    type Error = SchedulerError;

    fn try_from(job: proto::JobSpec) -> Result<Self> {
        let bad = |message: String| SchedulerError::Cluster {
            message: format!("invalid job {}: {message}", job.job_id),
        };
        if !is_plain_name(&job.job_id) {
            return Err(bad("the job id must be a plain name".into()));
        }
        let mut stages = Vec::with_capacity(job.stages.len());
        for (index, s) in job.stages.iter().enumerate() {
            let inputs: Vec<StageId> = s.inputs.iter().map(|i| StageId(size(*i))).collect();
            if size(s.id) != index || inputs.iter().any(|i| i.index() >= index) {
                return Err(bad(format!("stage {} is out of order", s.id)));
            }
            stages.push(StageSpec {
                id: StageId(index),
                plan: Arc::new(s.plan.clone()),
                inputs,
                partitions: size(s.partitions),
                output_kind: s
                    .output_kind
                    .parse()
                    .map_err(|e: String| bad(format!("stage {index}: {e}")))?,
                output_partitions: size(s.output_partitions),
                facts: if s.facts_json.is_empty() {
                    StageFacts::default()
                } else {
                    serde_json::from_str(&s.facts_json)
                        .map_err(|e| bad(format!("stage {index}: its facts do not parse: {e}")))?
                },
            });
        }
        let final_stage = size(job.final_stage);
        if final_stage >= stages.len() {
            return Err(bad(format!("it has no stage {final_stage}")));
        }
        let adaptive = if job.adaptive_json.is_empty() {
            AdaptiveConfig::default()
        } else {
            serde_json::from_str(&job.adaptive_json)
                .map_err(|e| bad(format!("its adaptive settings do not parse: {e}")))?
        };
        Ok(Self {
            job_id: job.job_id.into(),
            name: (!job.name.is_empty()).then_some(job.name),
            stages,
            settings: settings(job.settings),
            final_stage: StageId(final_stage),
            retain_output: job.retain_output,
            staging: job.staging.clone(),
            // A plan that does not read (a client of another build) only costs the UI its
            // drawing.
            plan: serde_json::from_str(&job.plan_json).ok(),
            adaptive,
        })
    }
}

impl TryFrom<&JobOutcome> for proto::JobResult {
    type Error = SchedulerError;

    fn try_from(outcome: &JobOutcome) -> Result<Self> {
        Ok(Self {
            final_output: outcome.final_output.iter().map(Into::into).collect(),
            addresses: outcome.addresses.clone(),
            metrics_json: serde_json::to_string(&outcome.metrics).map_err(|e| {
                SchedulerError::Internal {
                    message: format!("job metrics do not serialize: {e}"),
                }
            })?,
        })
    }
}

impl TryFrom<proto::JobResult> for JobOutcome {
    type Error = SchedulerError;

    fn try_from(result: proto::JobResult) -> Result<Self> {
        let metrics: JobMetrics =
            serde_json::from_str(&result.metrics_json).map_err(|e| SchedulerError::Cluster {
                message: format!("the scheduler sent metrics that do not parse: {e}"),
            })?;
        Ok(Self {
            final_output: result.final_output.into_iter().map(Into::into).collect(),
            addresses: result.addresses.into_iter().collect::<HashMap<_, _>>(),
            metrics,
            lease: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::OutputKind;

    fn spec(kind: OutputKind) -> JobSpec {
        JobSpec {
            job_id: "wire".into(),
            name: Some("SELECT 1".into()),
            stages: vec![StageSpec {
                id: StageId(0),
                plan: Arc::new(vec![1, 2, 3]),
                inputs: Vec::new(),
                partitions: 2,
                output_kind: kind,
                output_partitions: 3,
                facts: Default::default(),
            }],
            settings: Vec::new(),
            final_stage: StageId(0),
            retain_output: false,
            staging: Vec::new(),
            plan: None,
            adaptive: Default::default(),
        }
    }

    #[test]
    fn output_kinds_cross_the_wire_by_name_and_unknown_ones_are_refused() {
        for kind in [
            OutputKind::Hash,
            OutputKind::RoundRobin,
            OutputKind::Single,
            OutputKind::Preserve,
        ] {
            let message = proto::JobSpec::from(&spec(kind));
            assert_eq!(message.stages[0].output_kind, kind.as_str());
            let back = JobSpec::try_from(message).expect("a valid job");
            assert_eq!(back.stages[0].output_kind, kind);
        }
        let mut message = proto::JobSpec::from(&spec(OutputKind::Hash));
        message.stages[0].output_kind = "range".into();
        let error = JobSpec::try_from(message).expect_err("an unknown kind");
        let text = error.to_string();
        assert!(
            text.contains("invalid job wire") && text.contains("unknown output kind 'range'"),
            "{text}"
        );
        // Metrics keep the names in JSON.
        assert_eq!(
            serde_json::to_string(&OutputKind::RoundRobin).expect("JSON"),
            "\"round-robin\""
        );
    }
}
