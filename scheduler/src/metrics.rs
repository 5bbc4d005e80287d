//! [`JobMetrics`]: what ran where, how much it wrote, and what failed.

use std::collections::{BTreeSet, HashMap};

use ember_proto::ids::{ExecutorId, JobId, StageId};
use ember_proto::{AccumulatorValue, TaskPhases};

use super::adaptive::Decision;
use super::spec::OutputKind;
use std::time::Duration;

/// One successful task attempt.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TaskRecord {
    /// The task's stage.
    pub stage_id: StageId,
    /// The task's partition.
    pub partition: usize,
    /// The attempt that succeeded (0 for the first).
    pub attempt: usize,
    /// Where it ran.
    pub executor_id: ExecutorId,
    /// Rows it wrote.
    pub rows: u64,
    /// Bytes it wrote (as written: compressed when its codec says so).
    pub bytes: u64,
    /// Its wall time.
    pub elapsed: Duration,
    /// Bytes its operators spilled to disk under the executor's memory limit.
    #[serde(default)]
    pub spilled_bytes: u64,
    /// Spill files they wrote.
    #[serde(default)]
    pub spills: u64,
    /// Rows of shuffle input it was given (0 for a task that reads no shuffle).
    #[serde(default)]
    pub read_rows: u64,
    /// Bytes of shuffle input it was given.
    #[serde(default)]
    pub read_bytes: u64,
    /// The attempt was a speculative copy that finished before the original.
    #[serde(default)]
    pub speculative: bool,
    /// The codec of the shuffle files it wrote (`lz4`, `zstd` or `none`): what the
    /// executor's `auto` chose, for one.
    #[serde(default)]
    pub compression: String,
    /// When the scheduler launched it, since the job was submitted.
    #[serde(default)]
    pub started_at: Duration,
    /// When its report came back, since the job was submitted.
    #[serde(default)]
    pub ended_at: Duration,
    /// Where its wall time went on the executor.
    #[serde(default)]
    pub phases: TaskPhases,
}

/// One failed task attempt.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FailedAttempt {
    /// The task's stage.
    pub stage_id: StageId,
    /// The task's partition.
    pub partition: usize,
    /// The attempt that failed.
    pub attempt: usize,
    /// Where it ran.
    pub executor_id: ExecutorId,
    /// The error, as text.
    pub error: String,
}

/// A finished map task that ran again because its output was lost with its executor.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RecomputedTask {
    /// The task's stage.
    pub stage_id: StageId,
    /// The task's partition.
    pub partition: usize,
    /// The executor that was lost.
    pub lost_executor: ExecutorId,
}

/// A stale report: an attempt that ended on an executor after it was declared lost.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefusedReport {
    /// The task's stage.
    pub stage_id: StageId,
    /// The task's partition.
    pub partition: usize,
    /// The attempt that reported.
    pub attempt: usize,
    /// The lost executor it ran on.
    pub executor_id: ExecutorId,
    /// It reported success (its output was dropped), not an error.
    pub succeeded: bool,
}

/// The shape of one stage, as run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StageSummary {
    /// The stage.
    pub stage_id: StageId,
    /// Its number of tasks.
    pub partitions: usize,
    /// The stages it read.
    pub inputs: Vec<StageId>,
    /// How it spread its output (`"hash"`, `"round-robin"`, `"single"`, `"preserve"` in
    /// JSON).
    pub output: OutputKind,
    /// Its tasks as planned, before adaptive execution cut them again.
    #[serde(default)]
    pub planned_partitions: usize,
    /// What adaptive execution decided for it, with the sizes behind each decision.
    #[serde(default)]
    pub decisions: Vec<Decision>,
}

/// A speculative copy of a slow task, and how it ended.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SpeculativeCopy {
    /// The task's stage.
    pub stage_id: StageId,
    /// The task's partition.
    pub partition: usize,
    /// The copy's attempt.
    pub attempt: usize,
    /// Where the original ran.
    pub original_executor: ExecutorId,
    /// The copy finished first (the original was cancelled); otherwise the original won
    /// or the copy failed.
    pub won: bool,
}

/// Everything recorded about one job.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct JobMetrics {
    /// The job's id.
    pub job_id: JobId,
    /// The stages.
    pub stages: Vec<StageSummary>,
    /// Successful task attempts.
    pub tasks: Vec<TaskRecord>,
    /// Failed task attempts.
    pub failures: Vec<FailedAttempt>,
    /// Wall time of the job's tasks, from submission to the last task.
    pub elapsed: Duration,
    /// Map tasks run again because the executor holding their output was lost.
    pub recomputed: Vec<RecomputedTask>,
    /// What user functions added to each accumulator, counting only the successful
    /// attempt of each task.
    pub accumulators: HashMap<String, AccumulatorValue>,
    /// Speculative copies launched, and which won.
    #[serde(default)]
    pub speculated: Vec<SpeculativeCopy>,
    /// Reports of attempts on executors declared lost that came in after the loss: their
    /// task had run again elsewhere, so their output (or error) was not used.
    #[serde(default)]
    pub refused: Vec<RefusedReport>,
}

/// Where a job's wall time went ([`JobMetrics::timeline`]): the time some task of it was
/// launched and not yet reported against the time none was (the scheduler between stages,
/// and waiting for slots other jobs held), and, summed over its tasks, the phases on the
/// executors and the time between launch and report that the executors did not see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobTimeline {
    /// The job's wall time, from submission to its last task's report.
    pub elapsed: Duration,
    /// The time at least one task was between its launch and its report.
    pub in_flight: Duration,
    /// The time none was.
    pub idle: Duration,
    /// Successful task attempts.
    pub tasks: usize,
    /// Their phases on the executors, summed.
    pub phases: TaskPhases,
    /// Their time between launch and report outside the executor's own clock (the call
    /// to the executor and its answer), summed.
    pub transit: Duration,
}

impl JobMetrics {
    /// The executors that ran tasks of `stage_id`.
    pub fn executors_of_stage(&self, stage_id: StageId) -> BTreeSet<ExecutorId> {
        self.tasks
            .iter()
            .filter(|t| t.stage_id == stage_id)
            .map(|t| t.executor_id.clone())
            .collect()
    }

    /// Bytes all tasks spilled to disk under their executors' memory limits.
    pub fn spilled_bytes(&self) -> u64 {
        self.tasks.iter().map(|t| t.spilled_bytes).sum()
    }

    /// Where the job's wall time went, from its tasks' records.
    pub fn timeline(&self) -> JobTimeline {
        let mut spans: Vec<(Duration, Duration)> = self
            .tasks
            .iter()
            .map(|t| (t.started_at, t.ended_at.max(t.started_at)))
            .collect();
        spans.sort_unstable();
        let mut in_flight = Duration::ZERO;
        let mut open: Option<(Duration, Duration)> = None;
        for (start, end) in spans {
            open = match open {
                Some((from, to)) if start <= to => Some((from, to.max(end))),
                Some((from, to)) => {
                    in_flight += to - from;
                    Some((start, end))
                }
                None => Some((start, end)),
            };
        }
        if let Some((from, to)) = open {
            in_flight += to - from;
        }
        let mut phases = TaskPhases::default();
        let mut transit = Duration::ZERO;
        for task in &self.tasks {
            phases.add(&task.phases);
            transit += task
                .ended_at
                .saturating_sub(task.started_at)
                .saturating_sub(task.elapsed);
        }
        JobTimeline {
            elapsed: self.elapsed,
            in_flight: in_flight.min(self.elapsed),
            idle: self.elapsed.saturating_sub(in_flight),
            tasks: self.tasks.len(),
            phases,
            transit,
        }
    }

    /// Bytes written as shuffle output by all stages but the last.
    pub fn shuffle_bytes(&self) -> u64 {
        let last = self.stages.len().saturating_sub(1);
        self.tasks
            .iter()
            .filter(|t| t.stage_id != StageId(last))
            .map(|t| t.bytes)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(stage: usize, start_ms: u64, end_ms: u64, elapsed_ms: u64) -> TaskRecord {
        TaskRecord {
            stage_id: StageId(stage),
            partition: 0,
            attempt: 0,
            executor_id: ExecutorId::from("e"),
            rows: 0,
            bytes: 0,
            elapsed: Duration::from_millis(elapsed_ms),
            spilled_bytes: 0,
            spills: 0,
            read_rows: 0,
            read_bytes: 0,
            speculative: false,
            compression: String::new(),
            started_at: Duration::from_millis(start_ms),
            ended_at: Duration::from_millis(end_ms),
            phases: TaskPhases {
                decode: Duration::from_millis(1),
                run: Duration::from_millis(elapsed_ms.saturating_sub(1)),
                ..TaskPhases::default()
            },
        }
    }

    #[test]
    fn the_timeline_counts_overlapping_tasks_once_and_the_gaps_as_idle() {
        let metrics = JobMetrics {
            // Two tasks of stage 0 overlap (2..10, 4..12), stage 1 runs 15..20: in flight
            // 10 + 5 ms of the job's 25.
            tasks: vec![task(0, 2, 10, 7), task(0, 4, 12, 8), task(1, 15, 20, 5)],
            elapsed: Duration::from_millis(25),
            ..JobMetrics::default()
        };
        let time = metrics.timeline();
        assert_eq!(time.in_flight, Duration::from_millis(15));
        assert_eq!(time.idle, Duration::from_millis(10));
        assert_eq!(time.tasks, 3);
        assert_eq!(time.phases.decode, Duration::from_millis(3));
        assert_eq!(time.phases.run, Duration::from_millis(17));
        // 8 - 7, 8 - 8, 5 - 5: what the executors did not see.
        assert_eq!(time.transit, Duration::from_millis(1));
    }
}
