//! What the scheduler is asked to run: a [`JobSpec`] of [`StageSpec`]s (encoded stage plans
//! and how they connect, with the [`OutputKind`] of each), and the [`SchedulerConfig`] it retries and waits by. A leaf of the
//! scheduler: the job loop, the wire conversions and the service read these types without
//! depending on the scheduler module itself.

use std::sync::Arc;
use std::time::Duration;

use ember_planner::{Picture, ShuffleOutput, StageFacts, StageGraph, encode_plan, stage_facts};
use ember_proto::ids::{JobId, StageId};

use crate::adaptive::AdaptiveConfig;
use crate::error::{Result, SchedulerError};
use ember_executors::storage::StoreOptions;

/// How a stage spreads its output over the partitions of the stages that read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputKind {
    /// By a hash of key columns.
    Hash,
    /// Rows dealt out in turn.
    RoundRobin,
    /// Everything to one partition.
    Single,
    /// Each partition to the partition of the same number.
    Preserve,
}

impl OutputKind {
    /// Its name on the wire and in metrics (`hash`, `round-robin`, `single`, `preserve`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hash => "hash",
            Self::RoundRobin => "round-robin",
            Self::Single => "single",
            Self::Preserve => "preserve",
        }
    }
}

impl From<&ShuffleOutput> for OutputKind {
    fn from(output: &ShuffleOutput) -> Self {
        match output {
            ShuffleOutput::Hash { .. } => Self::Hash,
            ShuffleOutput::RoundRobin { .. } => Self::RoundRobin,
            ShuffleOutput::Single => Self::Single,
            ShuffleOutput::Preserve { .. } => Self::Preserve,
        }
    }
}

impl std::str::FromStr for OutputKind {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        [Self::Hash, Self::RoundRobin, Self::Single, Self::Preserve]
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| {
                format!("unknown output kind '{text}' (known: hash, round-robin, single, preserve)")
            })
    }
}

impl std::fmt::Display for OutputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stage of a job as the scheduler needs it: the plan its tasks run, already encoded.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// The stage's id, its index in the job.
    pub id: StageId,
    /// The stage plan, encoded with `ember_planner::encode_plan`.
    pub plan: Arc<Vec<u8>>,
    /// The stages whose output it reads.
    pub inputs: Vec<StageId>,
    /// Its number of tasks.
    pub partitions: usize,
    /// How it spreads its output.
    pub output_kind: OutputKind,
    /// The number of partitions of its output.
    pub output_partitions: usize,
    /// What adaptive execution may change in it.
    pub facts: StageFacts,
}

/// A job to run: its stages and the settings its tasks run with.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Unique id; names the job's folder on every executor.
    pub job_id: JobId,
    /// What the job is, for people: its SQL text or its job's name (event log, history).
    pub name: Option<String>,
    /// The stages, in id order (a stage reads only stages with smaller ids).
    pub stages: Vec<StageSpec>,
    /// DataFusion settings for the tasks.
    pub settings: Vec<(String, String)>,
    /// The stage whose output is the job's result.
    pub final_stage: StageId,
    /// Keep the final stage's output on the executors until the job is removed (a cached
    /// dataset), rather than once the client has read it.
    pub retain_output: bool,
    /// The staging URLs of the job's writes (`StagedWriteExec`): removed by a scheduler
    /// process whose client goes away before the job ends.
    pub staging: Vec<String>,
    /// The plan for people: what `ember explain` prints and the stage graph's drawing
    /// (the event log and the web UI show them).
    pub plan: Option<JobPlan>,
    /// The adaptive rules and speculation settings it runs with.
    pub adaptive: AdaptiveConfig,
}

/// A job's plan as people see it, without the encoded plans the executors run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobPlan {
    /// The stage graph as `ember explain` prints it.
    pub text: String,
    /// The stage graph's drawing, without states.
    pub picture: Picture,
}

impl JobPlan {
    /// The plan of `graph`.
    pub fn of(graph: &StageGraph) -> Self {
        Self {
            text: graph.to_string(),
            picture: ember_planner::describe_stages(graph),
        }
    }
}

impl JobSpec {
    /// The job that runs `graph`, with every stage plan encoded.
    pub fn from_graph(
        job_id: &str,
        graph: &StageGraph,
        settings: Vec<(String, String)>,
    ) -> Result<Self> {
        let mut stages = Vec::with_capacity(graph.stages().len());
        for (index, stage) in graph.stages().iter().enumerate() {
            if stage.id() != index || stage.inputs().iter().any(|i| *i >= index) {
                return Err(SchedulerError::Internal {
                    message: format!("stage {} is out of order in its graph", stage.id()),
                });
            }
            stages.push(StageSpec {
                id: StageId(stage.id()),
                plan: Arc::new(encode_plan(Arc::clone(stage.plan()))?),
                inputs: stage.inputs().iter().copied().map(StageId).collect(),
                partitions: stage.partitions(),
                output_kind: OutputKind::from(stage.output()),
                output_partitions: stage.output().partition_count(),
                facts: stage_facts(graph, stage.id()),
            });
        }
        Ok(Self {
            job_id: JobId::from(job_id),
            name: None,
            stages,
            settings,
            final_stage: StageId(graph.final_stage().id()),
            retain_output: false,
            staging: staging_urls(graph),
            plan: Some(JobPlan::of(graph)),
            adaptive: AdaptiveConfig::default(),
        })
    }

    /// Tasks over all stages, without retries.
    pub fn total_tasks(&self) -> usize {
        self.stages.iter().map(|s| s.partitions).sum()
    }
}

/// The staging URL of every write in `graph`'s stage plans.
fn staging_urls(graph: &StageGraph) -> Vec<String> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut urls = Vec::new();
    for stage in graph.stages() {
        let _ = stage.plan().apply(|node| {
            if let Some(write) = node.downcast_ref::<ember_planner::StagedWriteExec>() {
                urls.push(write.staging().to_string());
            }
            Ok(TreeNodeRecursion::Continue)
        });
    }
    urls
}

/// Where event logs go: a local folder or an object-store folder URL.
#[derive(Debug, Clone)]
pub struct EventLogDir {
    /// The folder as given: a path, or a URL (`s3://bucket/logs/`).
    pub location: String,
    /// Credentials and endpoint for an object store.
    pub options: StoreOptions,
}

impl EventLogDir {
    /// Logs under `location` (a path or a URL).
    pub fn new(location: impl Into<String>, options: StoreOptions) -> Self {
        Self {
            location: location.into(),
            options,
        }
    }

    pub(crate) fn is_url(&self) -> bool {
        self.location.contains("://")
    }

    pub(crate) fn file_name(job_id: &str) -> String {
        format!("{job_id}.jsonl")
    }
}

/// How a scheduler retries and waits, and where it logs its jobs' events.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Tries per task.
    pub max_attempts: usize,
    /// How long a job waits for an executor when none is left.
    pub grace_period: Duration,
    /// Where each job's event log goes (`ember.eventlog.dir`, `--event-log DIR`); none by
    /// default.
    pub event_log: Option<EventLogDir>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            grace_period: Duration::from_secs(30),
            event_log: None,
        }
    }
}
