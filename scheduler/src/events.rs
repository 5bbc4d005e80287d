//! [`JobEvent`]s that the scheduler reports while a job runs, and the [`JobListener`] that
//! receives them (the command line's progress bar is one).

use ember_proto::ids::{ExecutorId, JobId, StageId};

use crate::adaptive::{Decision, TaskRead};

/// Something that happened in a running job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum JobEvent {
    /// The job was submitted.
    JobStarted {
        /// The job's id.
        job_id: JobId,
        /// Number of stages.
        stages: usize,
        /// Number of tasks, without retries.
        tasks: usize,
    },
    /// All inputs of a stage are done; its tasks are queued.
    StageStarted {
        /// The stage.
        stage_id: StageId,
        /// Its number of tasks.
        tasks: usize,
    },
    /// A task finished successfully.
    TaskFinished {
        /// The task's stage.
        stage_id: StageId,
        /// The task's partition.
        partition: usize,
        /// The executor that ran it.
        executor_id: ExecutorId,
    },
    /// A task attempt failed.
    TaskFailed {
        /// The task's stage.
        stage_id: StageId,
        /// The task's partition.
        partition: usize,
        /// The attempt that failed (0-based).
        attempt: usize,
        /// The error, as text.
        error: String,
        /// Whether the task is tried again.
        will_retry: bool,
    },
    /// Every task of a stage is done.
    StageFinished {
        /// The stage.
        stage_id: StageId,
        /// Rows its tasks wrote.
        #[serde(default)]
        rows: u64,
        /// Bytes its tasks wrote.
        #[serde(default)]
        bytes: u64,
        /// Rows and bytes per output partition, over all its map tasks.
        #[serde(default)]
        partitions: Vec<(u64, u64)>,
    },
    /// A slow task got a speculative copy on another executor.
    TaskSpeculated {
        /// The task's stage.
        stage_id: StageId,
        /// The task's partition.
        partition: usize,
        /// The copy's attempt.
        attempt: usize,
        /// Where the original runs.
        original_executor: ExecutorId,
    },
    /// Adaptive execution cut a stage's tasks anew from the sizes of its inputs.
    StageAdapted {
        /// The stage.
        stage_id: StageId,
        /// Its tasks as planned.
        planned_tasks: usize,
        /// Its tasks now.
        tasks: usize,
        /// What was decided, with the sizes behind it.
        decisions: Vec<Decision>,
        /// What each task reads.
        #[serde(default)]
        reads: Vec<TaskRead>,
    },
}

/// Receives a job's events, in order, from the scheduler's task.
pub trait JobListener: Send + Sync {
    /// Called for each event; must not block.
    fn on_event(&self, event: &JobEvent);
}
