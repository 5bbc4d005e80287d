//! What the web UI and the REST API show of one job, worked out from its log (a
//! [`LoggedJob`]: the header and the timed events) with no I/O: the [`JobSummary`] of the
//! jobs list, a [`StageView`] per stage with its task quantiles, and a [`TaskRow`] per
//! attempt. A live job and a finished one read the same way; the live one has no end yet.

use std::collections::{BTreeMap, HashMap};

use ember_planner::{Picture, StageState, StageStatus};
use ember_proto::ids::{ExecutorId, StageId, TaskId};

use crate::adaptive::{Decision, TaskRead};
use crate::eventlog::LoggedJob;
use crate::spec::OutputKind;
use crate::state::{Event, Location};

/// How a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Its log has no end yet.
    Running,
    /// It ended well.
    Succeeded,
    /// It ended with an error.
    Failed,
}

impl JobStatus {
    /// `running`, `succeeded` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// One job in the jobs list.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobSummary {
    /// The job's id.
    pub job_id: String,
    /// Its SQL text or job name.
    pub name: Option<String>,
    /// When it was submitted, in milliseconds since 1970.
    pub submitted_unix_ms: u64,
    /// From submission to its end (or to its last event, while it runs).
    pub duration_ms: u64,
    /// How it stands.
    pub status: JobStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// Stages done, of `stages_total`.
    pub stages_done: usize,
    /// Its stages.
    pub stages_total: usize,
    /// Tasks done (partitions with a successful attempt), of `tasks_total`.
    pub tasks_done: usize,
    /// Its tasks, without retries.
    pub tasks_total: usize,
    /// Attempts running now.
    pub tasks_running: usize,
    /// Successful attempts, recomputations included.
    pub tasks_succeeded: usize,
    /// Failed attempts.
    pub failed_attempts: usize,
    /// Rows written to shuffle files by all stages but the final one.
    pub shuffle_rows: u64,
    /// Bytes written to shuffle files by all stages but the final one.
    pub shuffle_bytes: u64,
    /// Bytes spilled to disk.
    pub spilled_bytes: u64,
}

/// Five-number summary: min, p25, median, p75, max.
pub type Quantiles = [u64; 5];

/// Quantiles of a stage's successful attempts.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StageQuantiles {
    /// Task wall time, in milliseconds.
    pub duration_ms: Quantiles,
    /// Rows written.
    pub rows: Quantiles,
    /// Shuffle bytes read.
    pub shuffle_read_bytes: Quantiles,
    /// Bytes written.
    pub shuffle_write_bytes: Quantiles,
    /// Bytes spilled.
    pub spilled_bytes: Quantiles,
}

/// One stage of a job.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StageView {
    /// The stage's id.
    pub stage_id: usize,
    /// Whether its output is the job's result.
    pub is_final: bool,
    /// Its tasks (one per partition).
    pub partitions: usize,
    /// The stages it reads.
    pub inputs: Vec<usize>,
    /// How it spreads its output.
    pub output: OutputKind,
    /// How it stands.
    pub state: StageState,
    /// Partitions with a successful attempt.
    pub tasks_done: usize,
    /// Attempts running now.
    pub tasks_running: usize,
    /// Failed attempts.
    pub failed_attempts: usize,
    /// Rows its successful attempts wrote.
    pub rows: u64,
    /// Bytes its successful attempts wrote.
    pub bytes: u64,
    /// Shuffle bytes its successful attempts read.
    pub shuffle_read_bytes: u64,
    /// Bytes its attempts spilled.
    pub spilled_bytes: u64,
    /// Quantiles over its successful attempts (none before the first).
    pub quantiles: Option<StageQuantiles>,
    /// Its tasks as planned, before adaptive execution cut them again.
    #[serde(default)]
    pub planned_partitions: usize,
    /// What adaptive execution decided for it, with the sizes behind each decision.
    #[serde(default)]
    pub decisions: Vec<Decision>,
}

/// How an attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// It runs.
    Running,
    /// It succeeded.
    Succeeded,
    /// It failed (its executor was lost, or the task failed).
    Failed,
    /// The job stopped it: a later attempt superseded it, or the job ended while it ran.
    Stopped,
}

impl TaskStatus {
    /// `running`, `succeeded`, `failed` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }
}

/// One task attempt.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TaskRow {
    /// The stage.
    pub stage_id: usize,
    /// The partition.
    pub partition: usize,
    /// The attempt (0 for the first).
    pub attempt: usize,
    /// Where it ran.
    pub executor_id: String,
    /// When it started, in milliseconds after the job's submission.
    pub start_ms: u64,
    /// Its wall time (so far, while it runs).
    pub duration_ms: u64,
    /// How it stands.
    pub status: TaskStatus,
    /// Rows it wrote.
    pub rows: u64,
    /// Bytes it wrote.
    pub bytes: u64,
    /// Shuffle bytes it read.
    pub shuffle_read_bytes: u64,
    /// Bytes it spilled.
    pub spilled_bytes: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// What one executor did in a job, for the executors page of the history server.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ExecutorActivity {
    /// Successful attempts.
    pub tasks_succeeded: usize,
    /// Failed attempts.
    pub tasks_failed: usize,
    /// Attempts running now.
    pub tasks_running: usize,
    /// Whether a job declared it lost.
    pub lost: bool,
    /// Milliseconds since 1970 of the last event from it.
    pub last_seen_unix_ms: u64,
}

/// Everything shown of one job.
#[derive(Debug, Clone)]
pub struct JobView {
    /// Its line in the jobs list.
    pub summary: JobSummary,
    /// Its stages, in id order.
    pub stages: Vec<StageView>,
    /// Every attempt, in start order.
    pub tasks: Vec<TaskRow>,
    /// What each executor did.
    pub executors: BTreeMap<String, ExecutorActivity>,
}

impl JobView {
    /// The view of `job`; `now_unix_ms` dates a job still running.
    pub fn of(job: &LoggedJob, now_unix_ms: u64) -> Self {
        Fold::new(job).run(job, now_unix_ms)
    }

    /// The stage graph's drawing with each stage's state and task counts, when the log
    /// has the plan.
    pub fn picture(&self, job: &LoggedJob) -> Option<Picture> {
        let mut picture = job.plan.as_ref()?.picture.clone();
        for stage in &mut picture.stages {
            let Some(view) = self.stages.get(stage.id) else {
                continue;
            };
            let mut line = format!("{}/{} tasks", view.tasks_done, view.partitions);
            if view.tasks_running > 0 {
                line.push_str(&format!(", {} running", view.tasks_running));
            }
            if view.failed_attempts > 0 {
                line.push_str(&format!(", {} failed", view.failed_attempts));
            }
            for decision in &view.decisions {
                line.push_str(", ");
                line.push_str(&decision.short());
            }
            stage.status = Some(StageStatus {
                state: view.state,
                line,
            });
        }
        Some(picture)
    }
}

/// The pass over a job's events.
struct Fold {
    rows: Vec<TaskRow>,
    by_task: HashMap<TaskId, usize>,
    /// The output of the latest successful attempt of each map task, by (stage, partition).
    outputs: HashMap<(usize, usize), Vec<Location>>,
    /// Bytes of those outputs by (stage, output partition).
    pieces: HashMap<(usize, usize), u64>,
    executors: BTreeMap<String, ExecutorActivity>,
    /// Stages adaptive execution cut anew: their tasks, decisions and what each task
    /// reads.
    adapted: HashMap<usize, (usize, Vec<Decision>, Vec<TaskRead>)>,
    /// Speculative copies: they run beside the attempt they copy, superseding nothing.
    copies: std::collections::HashSet<TaskId>,
}

impl Fold {
    fn new(job: &LoggedJob) -> Self {
        Self {
            rows: Vec::with_capacity(job.events.len() / 2),
            by_task: HashMap::with_capacity(job.events.len() / 2),
            outputs: HashMap::new(),
            pieces: HashMap::new(),
            executors: BTreeMap::new(),
            adapted: HashMap::new(),
            copies: std::collections::HashSet::new(),
        }
    }

    /// The row of attempt `task` when it is still running (an attempt that ended or was
    /// superseded reports late, and is not counted twice), counted as ended on `executor`.
    fn settle(
        &mut self,
        task: &TaskId,
        executor: &ExecutorId,
        at_unix_ms: u64,
        succeeded: bool,
    ) -> Option<usize> {
        let index = *self.by_task.get(task)?;
        if self.rows[index].status != TaskStatus::Running {
            return None;
        }
        let activity = self.executor(executor, at_unix_ms);
        activity.tasks_running = activity.tasks_running.saturating_sub(1);
        if succeeded {
            activity.tasks_succeeded += 1;
        } else {
            activity.tasks_failed += 1;
        }
        Some(index)
    }

    /// Takes `locations` of map task `(stage, partition)` out of the piece sums.
    fn forget(&mut self, stage: usize, locations: &[Location]) {
        for location in locations {
            if let Some(bytes) = self.pieces.get_mut(&(stage, location.output_partition)) {
                *bytes = bytes.saturating_sub(location.bytes);
            }
        }
    }

    /// Shuffle bytes a task of `partition` in `stage` reads now: its partition's pieces of
    /// each stage it reads, or partition 0 of a stage whose output is one partition that
    /// every reader reads whole; for a task that adaptive execution cut anew, the pieces
    /// it was given.
    fn reads(&self, job: &LoggedJob, stage: usize, partition: usize) -> u64 {
        let Some(shape) = job.shape.stages.get(stage) else {
            return 0;
        };
        if let Some(read) = self
            .adapted
            .get(&stage)
            .and_then(|(_, _, reads)| reads.get(partition))
        {
            return self
                .outputs
                .iter()
                .filter(|((input, _), _)| shape.inputs.iter().any(|i| i.index() == *input))
                .flat_map(|((input, map), locations)| {
                    locations
                        .iter()
                        .filter(move |l| {
                            read.reads_piece(StageId(*input), *map, l.output_partition)
                        })
                        .map(|l| l.bytes)
                })
                .sum();
        }
        shape
            .inputs
            .iter()
            .map(|input| {
                let single = job
                    .shape
                    .stages
                    .get(input.index())
                    .is_some_and(|s| s.output == OutputKind::Single);
                let part = if single { 0 } else { partition };
                self.pieces
                    .get(&(input.index(), part))
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    }

    fn executor(&mut self, id: &ExecutorId, at_unix_ms: u64) -> &mut ExecutorActivity {
        let activity = self.executors.entry(id.to_string()).or_default();
        activity.last_seen_unix_ms = activity.last_seen_unix_ms.max(at_unix_ms);
        activity
    }

    fn run(mut self, job: &LoggedJob, now_unix_ms: u64) -> JobView {
        let start = job.started_unix_ms;
        for (at_us, event) in &job.events {
            let at_ms = at_us / 1000;
            let at_unix_ms = start + at_ms;
            match event {
                Event::TaskStarted { task, executor } => {
                    // An earlier attempt still running is superseded: the job stopped it
                    // (it read from a lost executor, or its executor was lost). A
                    // speculative copy runs beside it instead.
                    let beside = if self.copies.contains(task) {
                        0
                    } else {
                        task.attempt
                    };
                    for earlier in 0..beside {
                        let earlier = task.partition_id().attempt(earlier);
                        let Some(&index) = self.by_task.get(&earlier) else {
                            continue;
                        };
                        let row = &mut self.rows[index];
                        if row.status == TaskStatus::Running {
                            row.status = TaskStatus::Stopped;
                            row.duration_ms = at_ms.saturating_sub(row.start_ms);
                            row.error = Some(format!("superseded by attempt {}", task.attempt));
                            let stopped_on = ExecutorId::from(row.executor_id.as_str());
                            let activity = self.executor(&stopped_on, at_unix_ms);
                            activity.tasks_running = activity.tasks_running.saturating_sub(1);
                        }
                    }
                    self.executor(executor, at_unix_ms).tasks_running += 1;
                    self.by_task.insert(*task, self.rows.len());
                    self.rows.push(TaskRow {
                        stage_id: task.stage.index(),
                        partition: task.partition,
                        attempt: task.attempt,
                        executor_id: executor.to_string(),
                        start_ms: at_ms,
                        duration_ms: 0,
                        status: TaskStatus::Running,
                        rows: 0,
                        bytes: 0,
                        shuffle_read_bytes: 0,
                        spilled_bytes: 0,
                        error: None,
                    });
                }
                Event::TaskFinished {
                    task,
                    executor,
                    report,
                } => {
                    let Some(index) = self.settle(task, executor, at_unix_ms, true) else {
                        continue;
                    };
                    // The other attempt of a speculation race is cancelled.
                    let rival: Vec<usize> = self
                        .rows
                        .iter()
                        .enumerate()
                        .filter(|(i, r)| {
                            *i != index
                                && r.status == TaskStatus::Running
                                && r.stage_id == task.stage.index()
                                && r.partition == task.partition
                        })
                        .map(|(i, _)| i)
                        .collect();
                    for i in rival {
                        let row = &mut self.rows[i];
                        row.status = TaskStatus::Stopped;
                        row.duration_ms = at_ms.saturating_sub(row.start_ms);
                        row.error = Some(format!("attempt {} finished first", task.attempt));
                        let stopped_on = ExecutorId::from(row.executor_id.as_str());
                        let activity = self.executor(&stopped_on, at_unix_ms);
                        activity.tasks_running = activity.tasks_running.saturating_sub(1);
                    }
                    let read = self.reads(job, task.stage.index(), task.partition);
                    let row = &mut self.rows[index];
                    row.status = TaskStatus::Succeeded;
                    row.duration_ms = u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX);
                    row.rows = report.locations.iter().map(|l| l.rows).sum();
                    row.bytes = report.locations.iter().map(|l| l.bytes).sum();
                    row.spilled_bytes = report.spilled_bytes;
                    row.shuffle_read_bytes = read;
                    let stage = task.stage.index();
                    for location in &report.locations {
                        *self
                            .pieces
                            .entry((stage, location.output_partition))
                            .or_default() += location.bytes;
                    }
                    if let Some(before) = self
                        .outputs
                        .insert((stage, task.partition), report.locations.clone())
                    {
                        self.forget(stage, &before);
                    }
                }
                Event::TaskFailed {
                    task,
                    executor,
                    failure,
                } => {
                    let Some(index) = self.settle(task, executor, at_unix_ms, false) else {
                        continue;
                    };
                    let row = &mut self.rows[index];
                    row.status = TaskStatus::Failed;
                    row.duration_ms = at_ms.saturating_sub(row.start_ms);
                    row.error = Some(failure.message().to_string());
                }
                Event::TaskSpeculated { task, .. } => {
                    self.copies.insert(*task);
                }
                Event::StageAdapted {
                    stage,
                    tasks,
                    decisions,
                    reads,
                } => {
                    self.adapted
                        .insert(stage.index(), (*tasks, decisions.clone(), reads.clone()));
                }
                Event::ExecutorLost { executor } => {
                    let name = executor.to_string();
                    let mut failed = 0;
                    for row in &mut self.rows {
                        if row.status == TaskStatus::Running && row.executor_id == name {
                            row.status = TaskStatus::Failed;
                            row.duration_ms = at_ms.saturating_sub(row.start_ms);
                            row.error = Some(format!("executor {name} was lost"));
                            failed += 1;
                        }
                    }
                    let activity = self.executor(executor, at_unix_ms);
                    activity.lost = true;
                    activity.tasks_running = activity.tasks_running.saturating_sub(failed);
                    activity.tasks_failed += failed;
                    // Its map outputs are gone with it (those in an object store are not).
                    let mut gone = Vec::new();
                    for ((stage, _), locations) in &mut self.outputs {
                        let (lost, kept): (Vec<Location>, Vec<Location>) =
                            std::mem::take(locations)
                                .into_iter()
                                .partition(|l| l.executor == *executor && !l.path.contains("://"));
                        *locations = kept;
                        gone.push((*stage, lost));
                    }
                    for (stage, lost) in gone {
                        self.forget(stage, &lost);
                    }
                }
                _ => {}
            }
        }
        let end_ms = match job.end {
            Some(_) => job.last_at_us / 1000,
            None => now_unix_ms.saturating_sub(start).max(job.last_at_us / 1000),
        };
        for row in &mut self.rows {
            if row.status == TaskStatus::Running {
                row.duration_ms = end_ms.saturating_sub(row.start_ms);
                if job.end.is_some() {
                    row.status = TaskStatus::Stopped;
                }
            }
        }
        let status = match &job.end {
            None => JobStatus::Running,
            Some(Ok(())) => JobStatus::Succeeded,
            Some(Err(_)) => JobStatus::Failed,
        };
        let stages = self.stages(job, status);
        let running = self
            .rows
            .iter()
            .filter(|r| r.status == TaskStatus::Running)
            .count();
        let shuffled = |f: fn(&TaskRow) -> u64| -> u64 {
            self.rows
                .iter()
                .filter(|r| {
                    r.status == TaskStatus::Succeeded && r.stage_id != job.shape.final_stage.index()
                })
                .map(f)
                .sum()
        };
        let summary = JobSummary {
            job_id: job.shape.job_id.to_string(),
            name: job.name.clone(),
            submitted_unix_ms: start,
            duration_ms: end_ms,
            status,
            error: match &job.end {
                Some(Err(e)) => Some(e.clone()),
                _ => None,
            },
            stages_done: stages
                .iter()
                .filter(|s| s.state == StageState::Done)
                .count(),
            stages_total: stages.len(),
            tasks_done: stages.iter().map(|s| s.tasks_done).sum(),
            tasks_total: stages.iter().map(|s| s.partitions).sum(),
            tasks_running: running,
            tasks_succeeded: self
                .rows
                .iter()
                .filter(|r| r.status == TaskStatus::Succeeded)
                .count(),
            failed_attempts: self
                .rows
                .iter()
                .filter(|r| r.status == TaskStatus::Failed)
                .count(),
            shuffle_rows: shuffled(|r| r.rows),
            shuffle_bytes: shuffled(|r| r.bytes),
            spilled_bytes: self.rows.iter().map(|r| r.spilled_bytes).sum(),
        };
        JobView {
            summary,
            stages,
            tasks: self.rows,
            executors: self.executors,
        }
    }

    fn stages(&self, job: &LoggedJob, status: JobStatus) -> Vec<StageView> {
        let mut views: Vec<StageView> = job
            .shape
            .stages
            .iter()
            .map(|shape| StageView {
                stage_id: shape.id.index(),
                is_final: shape.id == job.shape.final_stage,
                partitions: self
                    .adapted
                    .get(&shape.id.index())
                    .map_or(shape.partitions, |(tasks, _, _)| *tasks),
                planned_partitions: shape.partitions,
                decisions: self
                    .adapted
                    .get(&shape.id.index())
                    .map(|(_, d, _)| d.clone())
                    .unwrap_or_default(),
                inputs: shape.inputs.iter().map(|i| i.index()).collect(),
                output: shape.output,
                state: StageState::Waiting,
                tasks_done: 0,
                tasks_running: 0,
                failed_attempts: 0,
                rows: 0,
                bytes: 0,
                shuffle_read_bytes: 0,
                spilled_bytes: 0,
                quantiles: None,
            })
            .collect();
        let mut done: Vec<Vec<bool>> = views.iter().map(|v| vec![false; v.partitions]).collect();
        let mut started = vec![false; views.len()];
        let mut succeeded: Vec<Vec<&TaskRow>> = vec![Vec::new(); views.len()];
        for row in &self.rows {
            let Some(view) = views.get_mut(row.stage_id) else {
                continue;
            };
            started[row.stage_id] = true;
            view.spilled_bytes += row.spilled_bytes;
            match row.status {
                TaskStatus::Running => view.tasks_running += 1,
                TaskStatus::Failed => view.failed_attempts += 1,
                TaskStatus::Succeeded => {
                    if let Some(flag) = done[row.stage_id].get_mut(row.partition) {
                        *flag = true;
                    }
                    view.rows += row.rows;
                    view.bytes += row.bytes;
                    view.shuffle_read_bytes += row.shuffle_read_bytes;
                    succeeded[row.stage_id].push(row);
                }
                TaskStatus::Stopped => {}
            }
        }
        for (index, view) in views.iter_mut().enumerate() {
            view.tasks_done = done[index].iter().filter(|d| **d).count();
            view.state = if status == JobStatus::Succeeded
                || (view.tasks_done == view.partitions && view.tasks_running == 0)
            {
                StageState::Done
            } else if status == JobStatus::Failed && started[index] {
                StageState::Failed
            } else if started[index] {
                StageState::Running
            } else {
                StageState::Waiting
            };
            let rows = &succeeded[index];
            if !rows.is_empty() {
                view.quantiles = Some(StageQuantiles {
                    duration_ms: quantiles(rows.iter().map(|r| r.duration_ms)),
                    rows: quantiles(rows.iter().map(|r| r.rows)),
                    shuffle_read_bytes: quantiles(rows.iter().map(|r| r.shuffle_read_bytes)),
                    shuffle_write_bytes: quantiles(rows.iter().map(|r| r.bytes)),
                    spilled_bytes: quantiles(rows.iter().map(|r| r.spilled_bytes)),
                });
            }
        }
        views
    }
}

/// Min, p25, median, p75 and max of `values` (nearest rank); zeros when empty.
pub fn quantiles(values: impl Iterator<Item = u64>) -> Quantiles {
    let mut sorted: Vec<u64> = values.collect();
    if sorted.is_empty() {
        return [0; 5];
    }
    sorted.sort_unstable();
    let n = sorted.len();
    let at = |q: usize| sorted[(n * q).div_ceil(100).max(1) - 1];
    [sorted[0], at(25), at(50), at(75), sorted[n - 1]]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::state::{Failure, JobShape, StageShape, TaskReport};
    use ember_proto::ids::{JobId, PartitionId, StageId};

    fn task(stage: usize, partition: usize, attempt: usize) -> TaskId {
        PartitionId {
            stage: StageId(stage),
            partition,
        }
        .attempt(attempt)
    }

    fn location(partition: usize, executor: &str, bytes: u64) -> Location {
        Location {
            output_partition: partition,
            executor: ExecutorId::from(executor),
            path: format!("/w/{executor}/{partition}"),
            rows: bytes / 10,
            bytes,
        }
    }

    /// Two stages of 2 tasks; e1 is lost while it runs 1.0 and after it wrote 0.0's output.
    fn logged(end: Option<Result<(), String>>) -> LoggedJob {
        let e1 = ExecutorId::from("e1");
        let e2 = ExecutorId::from("e2");
        let finished = |t: TaskId, e: &ExecutorId, locations: Vec<Location>| Event::TaskFinished {
            task: t,
            executor: e.clone(),
            report: TaskReport {
                locations,
                elapsed: Duration::from_millis(40),
                spilled_bytes: 5,
                ..TaskReport::default()
            },
        };
        let events = vec![
            (0, Event::Submitted),
            (
                1_000,
                Event::TaskStarted {
                    task: task(0, 0, 0),
                    executor: e1.clone(),
                },
            ),
            (
                1_000,
                Event::TaskStarted {
                    task: task(0, 1, 0),
                    executor: e2.clone(),
                },
            ),
            (
                50_000,
                finished(
                    task(0, 0, 0),
                    &e1,
                    vec![location(0, "e1", 100), location(1, "e1", 300)],
                ),
            ),
            (
                60_000,
                finished(
                    task(0, 1, 0),
                    &e2,
                    vec![location(0, "e2", 10), location(1, "e2", 30)],
                ),
            ),
            (
                61_000,
                Event::TaskStarted {
                    task: task(1, 0, 0),
                    executor: e1.clone(),
                },
            ),
            (
                61_000,
                Event::TaskStarted {
                    task: task(1, 1, 0),
                    executor: e2.clone(),
                },
            ),
            (
                70_000,
                Event::ExecutorLost {
                    executor: e1.clone(),
                },
            ),
            (
                71_000,
                Event::TaskFailed {
                    task: task(1, 0, 0),
                    executor: e1.clone(),
                    failure: Failure::Lost {
                        message: "broken pipe".into(),
                    },
                },
            ),
            (
                72_000,
                Event::TaskStarted {
                    task: task(0, 0, 1),
                    executor: e2.clone(),
                },
            ),
        ];
        LoggedJob {
            file: "j.jsonl".into(),
            shape: JobShape {
                job_id: JobId::from("j"),
                stages: vec![
                    StageShape {
                        id: StageId(0),
                        inputs: vec![],
                        partitions: 2,
                        output: OutputKind::Hash,
                        facts: Default::default(),
                    },
                    StageShape {
                        id: StageId(1),
                        inputs: vec![StageId(0)],
                        partitions: 2,
                        output: OutputKind::Single,
                        facts: Default::default(),
                    },
                ],
                final_stage: StageId(1),
                max_attempts: 4,
                grace_period: Duration::from_secs(1),
                adaptive: Default::default(),
            },
            name: Some("SELECT <b>".into()),
            started_unix_ms: 1_000_000,
            plan: None,
            events,
            end,
            last_at_us: 72_000,
        }
    }

    #[test]
    fn a_running_job_counts_its_attempts_and_the_lost_executors_tasks_as_failed() {
        let view = JobView::of(&logged(None), 1_000_100);
        let s = &view.summary;
        assert_eq!(s.status, JobStatus::Running);
        // Stage 0 had both tasks done, but runs 0.0 again: its output was on e1.
        assert_eq!((s.stages_done, s.stages_total), (0, 2));
        assert_eq!((s.tasks_done, s.tasks_total), (2, 4));
        // 1.1 and the rerun of 0.0 run; 1.0 failed with e1 (once, not twice).
        assert_eq!(s.tasks_running, 2);
        assert_eq!(s.failed_attempts, 1);
        assert_eq!(s.duration_ms, 100);
        let failed: Vec<&TaskRow> = view
            .tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Failed)
            .collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].executor_id, "e1");
        assert_eq!(failed[0].error.as_deref(), Some("executor e1 was lost"));
        assert_eq!(view.stages[0].state, StageState::Running);
        assert_eq!(view.stages[0].tasks_done, 2);
        assert_eq!(view.stages[1].state, StageState::Running);
        assert!(view.executors["e1"].lost);
        assert_eq!(view.executors["e2"].tasks_succeeded, 1);
        let q = view.stages[0].quantiles.as_ref().expect("quantiles");
        assert_eq!(q.shuffle_write_bytes, [40, 40, 40, 400, 400]);
        assert_eq!(s.shuffle_bytes, 440);
        assert_eq!(s.spilled_bytes, 10);
    }

    #[test]
    fn an_ended_job_stops_what_still_ran_and_colours_its_stages() {
        let view = JobView::of(&logged(Some(Err("boom".into()))), 0);
        assert_eq!(view.summary.status, JobStatus::Failed);
        assert_eq!(view.summary.error.as_deref(), Some("boom"));
        assert_eq!(view.summary.tasks_running, 0);
        assert_eq!(view.summary.duration_ms, 72);
        assert!(view.tasks.iter().any(|t| t.status == TaskStatus::Stopped));
        assert_eq!(view.stages[1].state, StageState::Failed);
    }

    #[test]
    fn an_adapted_stage_shows_its_tasks_and_decisions_on_the_graph() {
        let mut job = logged(Some(Ok(())));
        job.events.insert(
            1,
            (
                1,
                Event::StageAdapted {
                    stage: StageId(1),
                    tasks: 1,
                    decisions: vec![Decision::Coalesced {
                        partitions: 2,
                        tasks: 1,
                        bytes: 440,
                        target_bytes: 1 << 20,
                    }],
                    reads: Vec::new(),
                },
            ),
        );
        job.plan = Some(crate::spec::JobPlan {
            text: String::new(),
            picture: ember_planner::Picture {
                stages: (0..2)
                    .map(|id| ember_planner::draw::StageBox {
                        id,
                        is_final: id == 1,
                        partitions: 2,
                        inputs: Vec::new(),
                        operators: Vec::new(),
                        status: None,
                    })
                    .collect(),
                shuffles: Vec::new(),
            },
        });
        let view = JobView::of(&job, 0);
        assert_eq!(view.stages[1].partitions, 1);
        assert_eq!(view.stages[1].planned_partitions, 2);
        assert_eq!(view.summary.tasks_total, 3);
        let picture = view.picture(&job).expect("a picture");
        let line = &picture.stages[1].status.as_ref().expect("a status").line;
        assert!(line.ends_with("coalesced 2→1"), "{line}");
    }

    #[test]
    fn a_coalesced_task_reads_every_piece_it_was_given() {
        let mut job = logged(None);
        // Both map tasks done: stage 1 becomes one task reading partitions 0 and 1.
        job.events.truncate(5);
        let e2 = ExecutorId::from("e2");
        job.events.extend([
            (
                60_500,
                Event::StageAdapted {
                    stage: StageId(1),
                    tasks: 1,
                    decisions: Vec::new(),
                    reads: vec![TaskRead {
                        plan_partition: 0,
                        reads: vec![crate::adaptive::InputRead {
                            stage: StageId(0),
                            partitions: (0, 2),
                            maps: None,
                        }],
                    }],
                },
            ),
            (
                61_000,
                Event::TaskStarted {
                    task: task(1, 0, 0),
                    executor: e2.clone(),
                },
            ),
            (
                62_000,
                Event::TaskFinished {
                    task: task(1, 0, 0),
                    executor: e2,
                    report: TaskReport::default(),
                },
            ),
        ]);
        let view = JobView::of(&job, 1_000_100);
        let row = view
            .tasks
            .iter()
            .find(|t| t.stage_id == 1)
            .expect("the coalesced task");
        assert_eq!(row.shuffle_read_bytes, 100 + 300 + 10 + 30);
        assert_eq!(view.stages[1].partitions, 1);
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        assert_eq!(quantiles([].into_iter()), [0; 5]);
        assert_eq!(quantiles([7].into_iter()), [7; 5]);
        assert_eq!(quantiles((1..=101).rev()), [1, 26, 51, 76, 101]);
    }
}
