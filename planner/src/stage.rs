//! [`Stage`] and [`StageGraph`]: a job's physical plan after it was cut at every shuffle.

use std::fmt;
use std::sync::Arc;

use datafusion::physical_plan::{ExecutionPlan, displayable};

use crate::shuffle::{ShuffleOutput, ShuffleReaderExec, ShuffleWriterExec};

/// Identifies a stage within one job. Stages are numbered so that a stage's inputs always
/// have smaller ids than the stage itself.
pub type StageId = usize;

/// One stage: a plan that runs as one task per partition, from shuffle reads (or table
/// scans) up to a shuffle write.
#[derive(Debug, Clone)]
pub struct Stage {
    /// This stage's id.
    id: StageId,
    /// The stage plan; its root is a [`ShuffleWriterExec`].
    plan: Arc<dyn ExecutionPlan>,
    /// The stages whose output this stage reads, in ascending order.
    inputs: Vec<StageId>,
}

impl Stage {
    /// A stage whose plan is `writer` (a [`ShuffleWriterExec`]).
    pub(crate) fn new(id: StageId, writer: Arc<ShuffleWriterExec>) -> Self {
        let mut inputs = Vec::new();
        collect_reader_stages(writer.input(), &mut inputs);
        inputs.sort_unstable();
        inputs.dedup();
        Self {
            id,
            plan: writer,
            inputs,
        }
    }

    /// This stage's id.
    pub fn id(&self) -> StageId {
        self.id
    }

    /// The plan that each task of this stage runs (its root is a [`ShuffleWriterExec`]).
    pub fn plan(&self) -> &Arc<dyn ExecutionPlan> {
        &self.plan
    }

    /// The shuffle writer at the root of the plan.
    pub fn writer(&self) -> &ShuffleWriterExec {
        self.plan
            .downcast_ref::<ShuffleWriterExec>()
            .expect("a stage plan is always rooted at a ShuffleWriterExec")
    }

    /// Number of tasks: one per partition of the work below the writer.
    pub fn partitions(&self) -> usize {
        self.writer().map_partitions()
    }

    /// How this stage's rows are spread for the stages that read them.
    pub fn output(&self) -> &ShuffleOutput {
        self.writer().output()
    }

    /// The stages this one reads, in ascending order.
    pub fn inputs(&self) -> &[StageId] {
        &self.inputs
    }

    /// Its inputs as `explain` prints them: `stage 0, stage 2`, or `-` for none.
    pub fn inputs_text(&self) -> String {
        if self.inputs.is_empty() {
            return "-".to_string();
        }
        self.inputs
            .iter()
            .map(|i| format!("stage {i}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every [`ShuffleReaderExec`] below `plan` adds its stage to `out`.
fn collect_reader_stages(plan: &Arc<dyn ExecutionPlan>, out: &mut Vec<StageId>) {
    if let Some(reader) = plan.downcast_ref::<ShuffleReaderExec>() {
        out.push(reader.stage_id());
    }
    for child in plan.children() {
        collect_reader_stages(child, out);
    }
}

/// The stages of one job. The last stage is the final one: its output is the job's result,
/// partition by partition in order.
#[derive(Debug, Clone)]
pub struct StageGraph {
    /// All stages; `stages[i].id() == i`.
    stages: Vec<Stage>,
}

impl StageGraph {
    /// A graph of `stages`, which must be numbered 0.. in order, inputs before readers.
    pub(crate) fn new(stages: Vec<Stage>) -> Self {
        debug_assert!(stages.iter().enumerate().all(|(i, s)| s.id() == i));
        Self { stages }
    }

    /// All stages, by id.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The stage with id `id`.
    pub fn stage(&self, id: StageId) -> Option<&Stage> {
        self.stages.get(id)
    }

    /// The stage whose output is the job's result.
    pub fn final_stage(&self) -> &Stage {
        self.stages
            .last()
            .expect("a stage graph always has its final stage")
    }

    /// The stages that read `id`'s output.
    pub fn dependents(&self, id: StageId) -> Vec<StageId> {
        self.stages
            .iter()
            .filter(|s| s.inputs().contains(&id))
            .map(Stage::id)
            .collect()
    }

    /// Total number of tasks over all stages (without retries).
    pub fn total_tasks(&self) -> usize {
        self.stages.iter().map(Stage::partitions).sum()
    }
}

impl fmt::Display for StageGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for stage in &self.stages {
            let inputs = stage.inputs_text();
            let role = if stage.id() + 1 == self.stages.len() {
                " (final)"
            } else {
                ""
            };
            writeln!(
                f,
                "Stage {}{role}: partitions={}, inputs={inputs}, output={}",
                stage.id(),
                stage.partitions(),
                stage.output()
            )?;
            for line in displayable(stage.plan().as_ref())
                .indent(false)
                .to_string()
                .lines()
            {
                writeln!(f, "  {line}")?;
            }
        }
        Ok(())
    }
}
