//! The scheduler: runs a [`StageGraph`] on a set of executors.
//!
//! A stage is submitted when every stage it reads is complete; its tasks (one per
//! partition) go to the executor with the most free slots. A failed task is tried again,
//! on another executor when there is one, up to `ember.task.max_attempts` times; then the
//! job fails with the task's error and its running tasks are cancelled.

mod client;
mod events;
mod metrics;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use datafusion::error::DataFusionError;
use ember_executors::{ExecutorError, ShuffleLocation, TaskDefinition, TaskOutput};
use ember_planner::{StageGraph, encode_plan};
use tokio::task::JoinSet;

pub use client::ExecutorClient;
pub use events::{JobEvent, JobListener};
pub use metrics::{FailedAttempt, JobMetrics, StageSummary, TaskRecord};

use crate::error::{EmberError, Result};

/// A job to run: its stages and the settings its tasks run with.
pub struct JobSpec {
    /// Unique id; names the job's folder on every executor.
    pub job_id: String,
    /// The stages.
    pub graph: StageGraph,
    /// DataFusion settings for the tasks.
    pub settings: Vec<(String, String)>,
}

/// The result of a finished job: where the final stage's output lies, and metrics.
#[derive(Debug)]
pub struct JobOutcome {
    /// Output of the final stage, one location per non-empty partition.
    pub final_output: Vec<ShuffleLocation>,
    /// What ran where.
    pub metrics: JobMetrics,
}

/// Assigns tasks to executors and tracks the stages of running jobs.
pub struct Scheduler {
    executors: Vec<Arc<dyn ExecutorClient>>,
    max_attempts: usize,
}

/// A task waiting for a slot.
#[derive(Debug, Clone, Copy)]
struct PendingTask {
    stage_id: usize,
    partition: usize,
    attempt: usize,
    /// The executor of the last failed attempt, avoided when another is free.
    avoid: Option<usize>,
}

/// Per-stage progress of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StageState {
    Waiting,
    Running { remaining: usize },
    Done,
}

impl Scheduler {
    /// A scheduler over `executors`.
    pub fn new(executors: Vec<Arc<dyn ExecutorClient>>, max_attempts: usize) -> Result<Self> {
        if executors.is_empty() {
            return Err(EmberError::NoExecutors);
        }
        Ok(Self {
            executors,
            max_attempts: max_attempts.max(1),
        })
    }

    /// The executors.
    pub fn executors(&self) -> &[Arc<dyn ExecutorClient>] {
        &self.executors
    }

    /// Runs every stage of `job`; returns where the final output lies.
    ///
    /// The job's shuffle files stay on the executors until [`Scheduler::remove_job`].
    pub async fn run_job(
        &self,
        job: &JobSpec,
        listener: Option<&dyn JobListener>,
    ) -> Result<JobOutcome> {
        let started = Instant::now();
        let graph = &job.graph;
        let emit = |event: JobEvent| {
            if let Some(listener) = listener {
                listener.on_event(&event);
            }
        };
        let plans = graph
            .stages()
            .iter()
            .map(|stage| encode_plan(Arc::clone(stage.plan())).map(Arc::new))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let settings = Arc::new(job.settings.clone());
        let mut metrics = JobMetrics {
            job_id: job.job_id.clone(),
            stages: graph
                .stages()
                .iter()
                .map(|s| StageSummary {
                    stage_id: s.id(),
                    partitions: s.partitions(),
                    inputs: s.inputs().to_vec(),
                    output: s.output().kind(),
                })
                .collect(),
            ..Default::default()
        };
        emit(JobEvent::JobStarted {
            job_id: job.job_id.clone(),
            stages: graph.stages().len(),
            tasks: graph.total_tasks(),
        });

        let mut states = vec![StageState::Waiting; graph.stages().len()];
        let mut outputs: Vec<Vec<ShuffleLocation>> = vec![Vec::new(); graph.stages().len()];
        let mut pending: VecDeque<PendingTask> = VecDeque::new();
        let mut free: Vec<usize> = self.executors.iter().map(|e| e.slots()).collect();
        let mut running: JoinSet<Result<TaskOutput, ExecutorError>> = JoinSet::new();
        // Which task and executor each spawned attempt is, so a panic is still attributed.
        let mut launched_tasks: HashMap<tokio::task::Id, (PendingTask, usize)> = HashMap::new();

        self.submit_ready(graph, &mut states, &mut pending, &emit);
        loop {
            while let Some(index) = pending.front().and_then(|t| pick_executor(&free, t.avoid)) {
                let Some(task) = pending.pop_front() else {
                    break;
                };
                free[index] -= 1;
                let inputs: Vec<ShuffleLocation> = graph.stages()[task.stage_id]
                    .inputs()
                    .iter()
                    .flat_map(|input| outputs[*input].iter().cloned())
                    .collect();
                let definition = TaskDefinition {
                    job_id: job.job_id.clone(),
                    stage_id: task.stage_id,
                    partition: task.partition,
                    attempt: task.attempt,
                    plan: Arc::clone(&plans[task.stage_id]),
                    inputs: Arc::new(inputs),
                    settings: Arc::clone(&settings),
                };
                let handle = running.spawn(self.executors[index].launch(definition));
                launched_tasks.insert(handle.id(), (task, index));
            }

            let Some(joined) = running.join_next_with_id().await else {
                break;
            };
            let (id, result) = match joined {
                Ok((id, result)) => (id, result),
                Err(e) => {
                    let message = if e.is_panic() {
                        "the task panicked".to_string()
                    } else {
                        format!("the task was cancelled: {e}")
                    };
                    (
                        e.id(),
                        Err(ExecutorError::Execution(DataFusionError::Execution(
                            message,
                        ))),
                    )
                }
            };
            let Some((task, index)) = launched_tasks.remove(&id) else {
                running.shutdown().await;
                return Err(EmberError::Internal {
                    message: format!("a finished task {id} was never launched"),
                });
            };
            free[index] += 1;
            let executor_id = self.executors[index].id().to_string();
            match result {
                Ok(output) => {
                    tracing::debug!(
                        job = %job.job_id,
                        stage = task.stage_id,
                        partition = task.partition,
                        attempt = task.attempt,
                        executor = %executor_id,
                        rows = output.rows(),
                        bytes = output.bytes(),
                        elapsed_ms = output.elapsed.as_secs_f64() * 1e3,
                        "task finished"
                    );
                    metrics.tasks.push(TaskRecord {
                        stage_id: task.stage_id,
                        partition: task.partition,
                        attempt: task.attempt,
                        executor_id: executor_id.clone(),
                        rows: output.rows(),
                        bytes: output.bytes(),
                        elapsed: output.elapsed,
                    });
                    for (name, value) in output.accumulators {
                        metrics
                            .accumulators
                            .entry(name)
                            .and_modify(|v| v.merge(value))
                            .or_insert(value);
                    }
                    outputs[task.stage_id].extend(output.locations);
                    emit(JobEvent::TaskFinished {
                        stage_id: task.stage_id,
                        partition: task.partition,
                        executor_id,
                    });
                    if let StageState::Running { remaining } = &mut states[task.stage_id] {
                        *remaining -= 1;
                        if *remaining == 0 {
                            states[task.stage_id] = StageState::Done;
                            emit(JobEvent::StageFinished {
                                stage_id: task.stage_id,
                            });
                            self.submit_ready(graph, &mut states, &mut pending, &emit);
                        }
                    }
                }
                Err(error) => {
                    let will_retry = error.is_retryable() && task.attempt + 1 < self.max_attempts;
                    tracing::warn!(
                        stage = task.stage_id,
                        partition = task.partition,
                        attempt = task.attempt,
                        executor = %executor_id,
                        "task failed: {error}"
                    );
                    metrics.failures.push(FailedAttempt {
                        stage_id: task.stage_id,
                        partition: task.partition,
                        attempt: task.attempt,
                        executor_id,
                        error: error.to_string(),
                    });
                    emit(JobEvent::TaskFailed {
                        stage_id: task.stage_id,
                        partition: task.partition,
                        attempt: task.attempt,
                        error: error.to_string(),
                        will_retry,
                    });
                    if !will_retry {
                        // Wait for the cancelled tasks, so none writes after cleanup.
                        running.shutdown().await;
                        return Err(EmberError::TaskFailed {
                            stage_id: task.stage_id,
                            partition: task.partition,
                            attempts: task.attempt + 1,
                            source: error,
                        });
                    }
                    pending.push_front(PendingTask {
                        attempt: task.attempt + 1,
                        avoid: Some(index),
                        ..task
                    });
                }
            }
        }

        metrics.elapsed = started.elapsed();
        let final_stage = graph.final_stage().id();
        if states[final_stage] != StageState::Done {
            return Err(EmberError::Internal {
                message: format!("job {} stopped before its final stage ran", job.job_id),
            });
        }
        Ok(JobOutcome {
            final_output: std::mem::take(&mut outputs[final_stage]),
            metrics,
        })
    }

    /// Queues the tasks of every waiting stage whose inputs are all done. One pass in id
    /// order suffices: a stage's inputs have smaller ids, so a stage with no tasks that
    /// completes here is seen done by the stages after it.
    fn submit_ready(
        &self,
        graph: &StageGraph,
        states: &mut [StageState],
        pending: &mut VecDeque<PendingTask>,
        emit: &dyn Fn(JobEvent),
    ) {
        for stage in graph.stages() {
            let ready = states[stage.id()] == StageState::Waiting
                && stage
                    .inputs()
                    .iter()
                    .all(|input| states[*input] == StageState::Done);
            if !ready {
                continue;
            }
            let tasks = stage.partitions();
            emit(JobEvent::StageStarted {
                stage_id: stage.id(),
                tasks,
            });
            if tasks == 0 {
                states[stage.id()] = StageState::Done;
                emit(JobEvent::StageFinished {
                    stage_id: stage.id(),
                });
                continue;
            }
            states[stage.id()] = StageState::Running { remaining: tasks };
            pending.extend((0..tasks).map(|partition| PendingTask {
                stage_id: stage.id(),
                partition,
                attempt: 0,
                avoid: None,
            }));
        }
    }

    /// Deletes the files of one stage of a job on every executor.
    pub fn remove_stage(&self, job_id: &str, stage_id: usize) -> Result<()> {
        self.on_every_executor(|executor| executor.remove_stage(job_id, stage_id))
    }

    /// Deletes a job's shuffle files on every executor.
    pub fn remove_job(&self, job_id: &str) -> Result<()> {
        self.on_every_executor(|executor| executor.remove_job(job_id))
    }

    /// Calls `action` on every executor, logging each failure; returns the first.
    fn on_every_executor(
        &self,
        action: impl Fn(&dyn ExecutorClient) -> std::result::Result<(), ExecutorError>,
    ) -> Result<()> {
        let mut first_error = None;
        for executor in &self.executors {
            if let Err(e) = action(executor.as_ref()) {
                tracing::warn!(executor = executor.id(), "cleanup failed: {e}");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// The executor with the most free slots, avoiding `avoid` when another has room.
fn pick_executor(free: &[usize], avoid: Option<usize>) -> Option<usize> {
    let best = |skip: Option<usize>| {
        free.iter()
            .enumerate()
            .filter(|(i, n)| **n > 0 && Some(*i) != skip)
            .max_by_key(|(i, n)| (**n, std::cmp::Reverse(*i)))
            .map(|(i, _)| i)
    };
    best(avoid).or_else(|| best(None))
}

#[cfg(test)]
mod tests {
    use super::pick_executor;

    #[test]
    fn picks_the_most_free_executor_and_avoids_the_failed_one() {
        assert_eq!(pick_executor(&[1, 2, 0], None), Some(1));
        assert_eq!(pick_executor(&[1, 1], None), Some(0));
        assert_eq!(pick_executor(&[1, 1], Some(0)), Some(1));
        assert_eq!(pick_executor(&[1, 0], Some(0)), Some(0));
        assert_eq!(pick_executor(&[0, 0], None), None);
    }
}
