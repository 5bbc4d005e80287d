//! [`Picture`]: what a drawing of a [`StageGraph`] says, as plain text, before any
//! geometry: one [`StageBox`] per stage and one [`ShuffleArrow`] per shuffle edge.

use datafusion::physical_plan::displayable;
use datafusion::physical_plan::expressions::Column;

use crate::shuffle::ShuffleOutput;
use crate::stage::{StageGraph, StageId};

/// The text of a stage graph's drawing. It travels with a job (as JSON) so that the web UI
/// can draw a job's stages without its plans.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Picture {
    /// One box per stage, in stage id order.
    pub stages: Vec<StageBox>,
    /// One arrow per pair of stages where one reads the other's shuffle output.
    pub shuffles: Vec<ShuffleArrow>,
}

/// One stage as a box.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StageBox {
    /// The stage's id.
    pub id: StageId,
    /// Whether this is the final stage, whose output is the job's result.
    pub is_final: bool,
    /// Tasks of the stage: one per partition.
    pub partitions: usize,
    /// The stages it reads, in ascending order.
    pub inputs: Vec<StageId>,
    /// The stage plan's operators, root first, as `ember explain` prints them.
    pub operators: Vec<OperatorLine>,
    /// How the stage is doing in a running or finished job (the web UI's drawing); `None`
    /// in a plan's picture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StageStatus>,
}

/// Where a stage of a job stands, as its box shows it: the colour of its state and a
/// line of task counts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StageStatus {
    /// Its state.
    pub state: StageState,
    /// One line under the partition count, such as `12/16 tasks, 2 running`.
    pub line: String,
}

/// The state of a stage in a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    /// Waiting for the stages it reads.
    Waiting,
    /// Its tasks run.
    Running,
    /// Every task is done.
    Done,
    /// The job failed before the stage was done.
    Failed,
}

impl StageState {
    /// Its name: `waiting`, `running`, `done` or `failed` (the SVG group's class).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

impl StageBox {
    /// The box's heading: `Stage 3` or `Stage 7 (final)`.
    pub fn title(&self) -> String {
        if self.is_final {
            format!("Stage {} (final)", self.id)
        } else {
            format!("Stage {}", self.id)
        }
    }

    /// The partition count in words: `1 partition`, `4 partitions`.
    pub fn partitions_text(&self) -> String {
        match self.partitions {
            1 => "1 partition".to_string(),
            n => format!("{n} partitions"),
        }
    }
}

/// One operator of a stage plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OperatorLine {
    /// How far below the stage's root the operator is (the root is 0).
    pub depth: usize,
    /// The operator and its details, as DataFusion displays them.
    pub text: String,
}

/// One shuffle edge: stage `to` reads the output of stage `from`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShuffleArrow {
    /// The stage that writes the shuffle output.
    pub from: StageId,
    /// The stage that reads it.
    pub to: StageId,
    /// How the rows are spread, such as `hash(l_orderkey) x 4` (see [`shuffle_label`]).
    pub label: String,
}

/// What a drawing of `graph` says.
pub fn describe(graph: &StageGraph) -> Picture {
    let last = graph.stages().len().saturating_sub(1);
    let stages = graph
        .stages()
        .iter()
        .map(|stage| StageBox {
            id: stage.id(),
            is_final: stage.id() == last,
            partitions: stage.partitions(),
            inputs: stage.inputs().to_vec(),
            operators: operator_lines(
                &displayable(stage.plan().as_ref()).indent(false).to_string(),
            ),
            status: None,
        })
        .collect();
    let shuffles = graph
        .stages()
        .iter()
        .flat_map(|reader| {
            reader.inputs().iter().filter_map(move |&from| {
                let writer = graph.stage(from)?;
                Some(ShuffleArrow {
                    from,
                    to: reader.id(),
                    label: shuffle_label(writer.output(), reader.partitions()),
                })
            })
        })
        .collect();
    Picture { stages, shuffles }
}

/// The operators of an indented plan display (two spaces per level), root first.
fn operator_lines(indented: &str) -> Vec<OperatorLine> {
    indented
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let text = line.trim_start();
            OperatorLine {
                depth: (line.len() - text.len()) / 2,
                text: text.trim_end().to_string(),
            }
        })
        .collect()
}

/// The label of a shuffle that `output` writes and a stage of `reader_partitions` tasks
/// reads: `hash(l_orderkey) x 4`, `round-robin x 2`, `preserve x 2`, `single` (all rows
/// merged into one task) or `broadcast` (one partition that every one of several reading
/// tasks reads whole, the build side of a join).
pub fn shuffle_label(output: &ShuffleOutput, reader_partitions: usize) -> String {
    match output {
        ShuffleOutput::Hash { exprs, count } => {
            let keys: Vec<String> = exprs
                .iter()
                .map(|e| match e.downcast_ref::<Column>() {
                    Some(column) => column.name().to_string(),
                    None => e.to_string(),
                })
                .collect();
            format!("hash({}) x {count}", keys.join(", "))
        }
        ShuffleOutput::RoundRobin { count } => format!("round-robin x {count}"),
        ShuffleOutput::Preserve { count } => format!("preserve x {count}"),
        ShuffleOutput::Single if reader_partitions > 1 => "broadcast".to_string(),
        ShuffleOutput::Single => "single".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::physical_plan::PhysicalExpr;

    use super::*;

    #[test]
    fn operator_depth_comes_from_the_indentation() {
        let lines = operator_lines("A: x\n  B: y < z\n    C\n  D\n");
        let depths: Vec<(usize, &str)> = lines.iter().map(|l| (l.depth, l.text.as_str())).collect();
        assert_eq!(depths, [(0, "A: x"), (1, "B: y < z"), (2, "C"), (1, "D")]);
    }

    #[test]
    fn labels_name_the_partitioning() {
        let key: Arc<dyn PhysicalExpr> = Arc::new(Column::new("l_orderkey", 0));
        let hash = ShuffleOutput::Hash {
            exprs: vec![key],
            count: 4,
        };
        assert_eq!(shuffle_label(&hash, 4), "hash(l_orderkey) x 4");
        assert_eq!(
            shuffle_label(&ShuffleOutput::RoundRobin { count: 2 }, 2),
            "round-robin x 2"
        );
        assert_eq!(
            shuffle_label(&ShuffleOutput::Preserve { count: 3 }, 1),
            "preserve x 3"
        );
        assert_eq!(shuffle_label(&ShuffleOutput::Single, 1), "single");
        assert_eq!(shuffle_label(&ShuffleOutput::Single, 4), "broadcast");
    }
}
