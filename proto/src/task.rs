//! What travels between the scheduler and an executor: [`TaskDefinition`] in,
//! [`TaskOutput`] out, and the [`ShuffleLocation`]s that connect one stage to the next;
//! [`AccumulatorValue`], what a task's user functions added to an accumulator.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::ids::{ExecutorId, JobId, StageId, TaskId};

/// Where one piece of shuffle output lies: what map task `map_partition` of `stage_id` wrote
/// for reduce partition `output_partition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShuffleLocation {
    /// The stage that wrote it.
    pub stage_id: StageId,
    /// The map task (partition of that stage) that wrote it.
    pub map_partition: usize,
    /// The attempt of that map task that wrote it.
    pub attempt: usize,
    /// The partition of the readers that it belongs to.
    pub output_partition: usize,
    /// The executor that holds the file.
    pub executor_id: ExecutorId,
    /// The Arrow IPC file, inside that executor's work directory.
    pub path: PathBuf,
    /// Rows in the file.
    pub rows: u64,
    /// Size of the file in bytes (compressed).
    pub bytes: u64,
}

/// One task: partition `partition` of stage `stage_id` of job `job_id`.
#[derive(Debug, Clone)]
pub struct TaskDefinition {
    /// The job the task belongs to; names its work directory.
    pub job_id: JobId,
    /// The stage.
    pub stage_id: StageId,
    /// The partition of the stage this task computes.
    pub partition: usize,
    /// 0 for the first try, 1.. for retries.
    pub attempt: usize,
    /// The stage plan, serialized with `ember_planner::encode_plan` (shared by the stage's
    /// tasks).
    pub plan: Arc<Vec<u8>>,
    /// The outputs of the stages this stage reads.
    pub inputs: Arc<Vec<ShuffleLocation>>,
    /// DataFusion settings (`datafusion.execution.batch_size`, ...) to run the plan with.
    pub settings: Arc<Vec<(String, String)>>,
    /// The address (URL) of every other executor holding an input, by executor id. An
    /// input held by an executor not named here is read from its path directly (the
    /// embedded cluster, where all executors share one file system).
    pub peers: Arc<HashMap<String, String>>,
    /// Set for a task that adaptive execution cut differently from the plan: the
    /// partition of the stage plan it runs. It then reads every input piece in `inputs`,
    /// whatever partition the piece belongs to (the scheduler gave it exactly its share).
    pub plan_partition: Option<usize>,
}

impl ShuffleLocation {
    /// Whether the piece lies in an object store (the job's shuffle directory), where it
    /// outlives the executor that wrote it; `path` is then its URL.
    pub fn is_stored(&self) -> bool {
        self.path.to_string_lossy().contains("://")
    }

    /// The piece's key under a shuffle directory: `JOB/stage-S/map-M-attempt-A/part-P.arrow`.
    pub fn stored_key(&self, job_id: &str) -> String {
        crate::ticket::piece_key(
            job_id,
            self.stage_id.index(),
            self.map_partition,
            self.attempt,
            self.output_partition,
        )
    }
}

impl TaskDefinition {
    /// The attempt this definition launches.
    pub fn id(&self) -> TaskId {
        TaskId {
            stage: self.stage_id,
            partition: self.partition,
            attempt: self.attempt,
        }
    }

    /// A short name for logs and errors: `job/stage.partition#attempt`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.job_id, self.id())
    }
}

/// What a finished task reports back.
#[derive(Debug, Clone)]
pub struct TaskOutput {
    /// The executor that ran it.
    pub executor_id: ExecutorId,
    /// The shuffle files it wrote (one per non-empty output partition).
    pub locations: Vec<ShuffleLocation>,
    /// Wall time of the task.
    pub elapsed: Duration,
    /// What the task's user functions added to each accumulator (reported only by a
    /// successful attempt, so a retried task counts once).
    pub accumulators: Vec<(String, AccumulatorValue)>,
    /// Bytes its operators spilled to disk under the memory limit.
    pub spilled_bytes: u64,
    /// Spill files they wrote.
    pub spills: u64,
    /// The codec of the shuffle files it wrote (`lz4`, `zstd` or `none`): what `auto`
    /// resolved to on its executor.
    pub compression: String,
    /// Where its wall time went.
    pub phases: TaskPhases,
}

/// Where a task's wall time went on its executor, in the order it spends it: what every
/// task pays before and after its rows move (`setup`, `decode`, `finish`) against the
/// work itself (`filters`, `run`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskPhases {
    /// Accepting the task and building its context: settings, object stores, the shuffle
    /// handle.
    #[serde(with = "micros")]
    pub setup: Duration,
    /// Decoding its plan.
    #[serde(with = "micros")]
    pub decode: Duration,
    /// Collecting broadcast build sides for runtime filters (0 when none applies).
    #[serde(with = "micros")]
    pub filters: Duration,
    /// Running the plan: reading inputs, the operators, writing the output files.
    #[serde(with = "micros")]
    pub run: Duration,
    /// Recording the files written (and uploading them to a shuffle directory).
    #[serde(with = "micros")]
    pub finish: Duration,
    /// A first run of the plan given up because a hash join's build side did not fit
    /// under the executor's memory limit, before the task ran again with sort-merge
    /// joins (0 when it did not happen); the other phases count the second run only.
    #[serde(default, with = "micros")]
    pub join_fallback: Duration,
}

impl TaskPhases {
    /// The phases added up, field by field.
    pub fn add(&mut self, other: &TaskPhases) {
        self.setup += other.setup;
        self.decode += other.decode;
        self.filters += other.filters;
        self.run += other.run;
        self.finish += other.finish;
        self.join_fallback += other.join_fallback;
    }
}

/// A [`Duration`] as whole microseconds, for `#[serde(with = "micros")]` (task times in
/// the event log).
pub mod micros {
    use std::time::Duration;

    /// Writes `d` as whole microseconds.
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    /// Reads whole microseconds.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let us: u64 = serde::Deserialize::deserialize(d)?;
        Ok(Duration::from_micros(us))
    }
}

impl TaskOutput {
    /// Rows written over all output partitions.
    pub fn rows(&self) -> u64 {
        self.locations.iter().map(|l| l.rows).sum()
    }

    /// Bytes written over all output partitions.
    pub fn bytes(&self) -> u64 {
        self.locations.iter().map(|l| l.bytes).sum()
    }
}

/// The value of an accumulator: a 64-bit integer counter or a floating-point sum.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum AccumulatorValue {
    /// An integer count or sum.
    Long(i64),
    /// A floating-point sum.
    Double(f64),
}

impl AccumulatorValue {
    /// Adds `other` to this value; a long added to a double (or back) becomes a double.
    pub fn merge(&mut self, other: AccumulatorValue) {
        *self = match (*self, other) {
            (Self::Long(a), Self::Long(b)) => Self::Long(a.wrapping_add(b)),
            (a, b) => Self::Double(a.as_f64() + b.as_f64()),
        };
    }

    /// The value as a float.
    pub fn as_f64(self) -> f64 {
        match self {
            Self::Long(v) => v as f64,
            Self::Double(v) => v,
        }
    }

    /// The value as an integer (a double is truncated).
    pub fn as_i64(self) -> i64 {
        match self {
            Self::Long(v) => v,
            Self::Double(v) => v as i64,
        }
    }
}
