//! [`JobRun`]: the state of one running job, and the loop that drives it: queue the tasks
//! of ready stages, place them on free slots, take in their results, retry failures, and
//! recover from lost executors.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::error::DataFusionError;
use ember_executors::{ExecutorError, ShuffleLocation, TaskDefinition, TaskOutput};
use tokio::task::{AbortHandle, JoinError, JoinSet};

use super::client::ExecutorClient;
use super::events::{JobEvent, JobListener};
use super::metrics::{FailedAttempt, JobMetrics, RecomputedTask, StageSummary, TaskRecord};
use super::outcome::JobOutcome;
use super::pool::{ExecutorPool, Placement};
use super::spec::{JobSpec, SchedulerConfig};
use crate::error::{EmberError, Result};

/// How often a waiting job looks at the clock (for the grace period).
const TICK: Duration = Duration::from_millis(200);

/// The state of one partition (task) of a stage.
#[derive(Debug, Clone)]
enum Part {
    /// Not queued: its stage has not started, or its output was lost and nothing needs it.
    Idle,
    /// Waiting for its inputs or a slot.
    Queued,
    /// Running on an executor.
    Running,
    /// Done; its output lies here.
    Done(Vec<ShuffleLocation>),
}

struct StageRun {
    parts: Vec<Part>,
    started: bool,
    /// `StageFinished` was reported (once, even if the stage is recomputed later).
    reported: bool,
}

#[derive(Default)]
struct TaskState {
    /// The number of the next attempt (every launch gets a new one, and its own folder).
    next_attempt: usize,
    /// Failed attempts that count against `max_attempts`.
    failures: usize,
    /// Attempts that failed fetching their input.
    fetch_failures: usize,
    /// Attempts whose executor was lost while they ran (a task that kills its executor
    /// must not go round forever).
    losses: usize,
    /// The executor of the last failed attempt.
    avoid: Option<String>,
    /// After an interrupted call, the task waits until then before it runs again.
    not_before: Option<Instant>,
    /// Its accumulator updates were added (a recomputed task adds nothing more).
    counted: bool,
}

/// An attempt in flight.
struct Launched {
    stage: usize,
    partition: usize,
    attempt: usize,
    executor_id: String,
    /// The executors holding its inputs.
    reads_from: Vec<String>,
    abort: AbortHandle,
}

type TaskResult = std::result::Result<TaskOutput, ExecutorError>;

/// One running job.
pub(super) struct JobRun<'a> {
    job: &'a JobSpec,
    seq: u64,
    pool: &'a ExecutorPool,
    config: &'a SchedulerConfig,
    listener: Option<&'a dyn JobListener>,
    stages: Vec<StageRun>,
    tasks: Vec<Vec<TaskState>>,
    /// The stages that read each stage.
    consumers: Vec<Vec<usize>>,
    queue: VecDeque<(usize, usize)>,
    running: JoinSet<TaskResult>,
    launched: HashMap<tokio::task::Id, Launched>,
    settings: Arc<Vec<(String, String)>>,
    metrics: JobMetrics,
    /// How far into the pool's log of lost executors this job has looked.
    lost_cursor: usize,
}

/// A job whose future is dropped (its client went away) still gives back its slots and
/// leaves the pool, or later jobs would wait for it forever.
impl Drop for JobRun<'_> {
    fn drop(&mut self) {
        self.release_all();
        self.pool.leave_job(self.seq);
    }
}

impl<'a> JobRun<'a> {
    pub(super) fn new(
        job: &'a JobSpec,
        seq: u64,
        pool: &'a ExecutorPool,
        config: &'a SchedulerConfig,
        listener: Option<&'a dyn JobListener>,
    ) -> Self {
        let mut consumers = vec![Vec::new(); job.stages.len()];
        for stage in &job.stages {
            for input in &stage.inputs {
                consumers[*input].push(stage.id);
            }
        }
        Self {
            job,
            seq,
            pool,
            config,
            listener,
            stages: job
                .stages
                .iter()
                .map(|s| StageRun {
                    parts: vec![Part::Idle; s.partitions],
                    started: false,
                    reported: false,
                })
                .collect(),
            tasks: job
                .stages
                .iter()
                .map(|s| (0..s.partitions).map(|_| TaskState::default()).collect())
                .collect(),
            consumers,
            queue: VecDeque::new(),
            running: JoinSet::new(),
            launched: HashMap::new(),
            settings: Arc::new(job.settings.clone()),
            metrics: JobMetrics {
                job_id: job.job_id.clone(),
                stages: job
                    .stages
                    .iter()
                    .map(|s| StageSummary {
                        stage_id: s.id,
                        partitions: s.partitions,
                        inputs: s.inputs.clone(),
                        output: s.output_kind,
                    })
                    .collect(),
                ..Default::default()
            },
            lost_cursor: pool.lost_since(0).1,
        }
    }

    fn emit(&self, event: JobEvent) {
        if let Some(listener) = self.listener {
            listener.on_event(&event);
        }
    }

    /// Runs the job to its end.
    pub(super) async fn run(mut self) -> Result<JobOutcome> {
        let started = Instant::now();
        let mut changes = self.pool.subscribe();
        self.emit(JobEvent::JobStarted {
            job_id: self.job.job_id.clone(),
            stages: self.job.stages.len(),
            tasks: self.job.total_tasks(),
        });
        self.submit_ready();
        let mut alone_since: Option<Instant> = None;
        let result = loop {
            changes.borrow_and_update();
            self.handle_lost();
            if self.stage_done(self.job.final_stage) {
                break Ok(());
            }
            self.launch();
            if self.running.is_empty() && self.pool.is_empty() {
                let since = *alone_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.config.grace_period {
                    break Err(EmberError::NoExecutorsLeft {
                        job_id: self.job.job_id.clone(),
                        waited: self.config.grace_period,
                    });
                }
            } else {
                alone_since = None;
            }
            if self.running.is_empty() && self.queue.is_empty() && !self.pool.is_empty() {
                break Err(EmberError::Internal {
                    message: format!(
                        "job {} has nothing to run before its final stage",
                        self.job.job_id
                    ),
                });
            }
            tokio::select! {
                Some(joined) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    if let Err(e) = self.finish(joined) {
                        break Err(e);
                    }
                }
                _ = changes.changed() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        };
        // Nothing more is needed from tasks still in flight (on failure, or recomputations
        // that lost their purpose); wait until they are stopped so none writes later.
        self.release_all();
        self.running.shutdown().await;
        result?;
        self.metrics.elapsed = started.elapsed();
        let final_output: Vec<ShuffleLocation> = self.stages[self.job.final_stage]
            .parts
            .iter()
            .flat_map(|p| match p {
                Part::Done(locations) => locations.clone(),
                _ => Vec::new(),
            })
            .collect();
        let mut addresses = self.pool.addresses();
        addresses.retain(|id, _| final_output.iter().any(|l| &l.executor_id == id));
        Ok(JobOutcome {
            final_output,
            addresses,
            metrics: std::mem::take(&mut self.metrics),
            lease: None,
        })
    }

    /// Gives back the slots of every attempt in flight and stops waiting for slots.
    fn release_all(&mut self) {
        for (_, launched) in self.launched.drain() {
            launched.abort.abort();
            self.pool.release(self.seq, &launched.executor_id);
        }
        self.pool.set_waiting(self.seq, false);
    }

    fn stage_done(&self, stage: usize) -> bool {
        self.stages[stage]
            .parts
            .iter()
            .all(|p| matches!(p, Part::Done(_)))
    }

    fn inputs_complete(&self, stage: usize) -> bool {
        self.job.stages[stage]
            .inputs
            .iter()
            .all(|input| self.stage_done(*input))
    }

    /// Queues the tasks of every stage not yet started whose inputs are all done. One pass
    /// in id order suffices: a stage's inputs have smaller ids.
    fn submit_ready(&mut self) {
        for id in 0..self.stages.len() {
            if self.stages[id].started || !self.inputs_complete(id) {
                continue;
            }
            let tasks = self.job.stages[id].partitions;
            self.stages[id].started = true;
            self.emit(JobEvent::StageStarted {
                stage_id: id,
                tasks,
            });
            if tasks == 0 {
                self.stages[id].reported = true;
                self.emit(JobEvent::StageFinished { stage_id: id });
                continue;
            }
            for partition in 0..tasks {
                self.stages[id].parts[partition] = Part::Queued;
                self.queue.push_back((id, partition));
            }
        }
    }

    /// Where task `(stage, partition)` would like to run.
    fn placement(&self, stage: usize, partition: usize) -> Placement<'_> {
        let mut local_bytes: HashMap<&str, u64> = HashMap::new();
        for input in &self.job.stages[stage].inputs {
            for part in &self.stages[*input].parts {
                if let Part::Done(locations) = part {
                    for l in locations.iter().filter(|l| l.output_partition == partition) {
                        *local_bytes.entry(l.executor_id.as_str()).or_default() += l.bytes;
                    }
                }
            }
        }
        Placement {
            local_bytes,
            avoid: self.tasks[stage][partition].avoid.as_deref(),
        }
    }

    /// Starts every queued task whose inputs are complete, while the pool gives slots.
    fn launch(&mut self) {
        let mut waiting = false;
        let mut peers: Option<Arc<HashMap<String, String>>> = None;
        let mut index = 0;
        while index < self.queue.len() {
            let (stage, partition) = self.queue[index];
            let paused = self.tasks[stage][partition]
                .not_before
                .is_some_and(|at| at > Instant::now());
            if paused || !self.inputs_complete(stage) {
                index += 1;
                continue;
            }
            let client = {
                let placement = self.placement(stage, partition);
                self.pool.acquire(self.seq, &placement)
            };
            let Some(client) = client else {
                waiting = true;
                break;
            };
            self.queue.remove(index);
            let peers = peers
                .get_or_insert_with(|| Arc::new(self.pool.addresses()))
                .clone();
            self.start(stage, partition, client, peers);
        }
        self.pool.set_waiting(self.seq, waiting);
    }

    fn start(
        &mut self,
        stage: usize,
        partition: usize,
        client: Arc<dyn ExecutorClient>,
        peers: Arc<HashMap<String, String>>,
    ) {
        let state = &mut self.tasks[stage][partition];
        let attempt = state.next_attempt;
        state.next_attempt += 1;
        let inputs: Vec<ShuffleLocation> = self.job.stages[stage]
            .inputs
            .iter()
            .flat_map(|input| &self.stages[*input].parts)
            .flat_map(|part| match part {
                Part::Done(locations) => locations.clone(),
                _ => Vec::new(),
            })
            .collect();
        let definition = TaskDefinition {
            job_id: self.job.job_id.clone(),
            stage_id: stage,
            partition,
            attempt,
            plan: Arc::clone(&self.job.stages[stage].plan),
            inputs: Arc::new(inputs),
            settings: Arc::clone(&self.settings),
            peers,
        };
        // Pieces in a shuffle directory are read from its store, not from an executor.
        let mut reads_from: Vec<String> = definition
            .inputs
            .iter()
            .filter(|l| !l.is_stored())
            .map(|l| l.executor_id.clone())
            .collect();
        reads_from.sort_unstable();
        reads_from.dedup();
        let executor_id = client.id().to_string();
        let abort = self.running.spawn(client.launch(definition));
        self.launched.insert(
            abort.id(),
            Launched {
                stage,
                partition,
                attempt,
                executor_id,
                reads_from,
                abort,
            },
        );
        self.stages[stage].parts[partition] = Part::Running;
    }

    /// Takes in the result of a task that ended.
    fn finish(
        &mut self,
        joined: std::result::Result<(tokio::task::Id, TaskResult), JoinError>,
    ) -> Result<()> {
        let (id, result) = match joined {
            Ok((id, result)) => (id, result),
            // Cancelled here, after its executor was lost; already queued again.
            Err(e) if e.is_cancelled() => return Ok(()),
            Err(e) => (
                e.id(),
                Err(ExecutorError::Execution(DataFusionError::Execution(
                    "the task panicked".into(),
                ))),
            ),
        };
        // No entry: it ran on an executor since lost, and is queued again.
        let Some(task) = self.launched.remove(&id) else {
            return Ok(());
        };
        self.pool.release(self.seq, &task.executor_id);
        match result {
            Ok(output) => self.succeeded(task, output),
            Err(error) => self.failed(task, error),
        }
    }

    fn succeeded(&mut self, task: Launched, output: TaskOutput) -> Result<()> {
        if output.executor_id != task.executor_id {
            // The process behind that address registered again under another id: its
            // output is not where the scheduler would look for it.
            let error = ExecutorError::Lost {
                executor_id: task.executor_id.clone(),
                message: format!(
                    "the task was answered by executor {} instead",
                    output.executor_id
                ),
            };
            return self.failed(task, error);
        }
        tracing::debug!(
            job = %self.job.job_id,
            stage = task.stage,
            partition = task.partition,
            attempt = task.attempt,
            executor = %task.executor_id,
            rows = output.rows(),
            bytes = output.bytes(),
            elapsed_ms = output.elapsed.as_secs_f64() * 1e3,
            "task finished"
        );
        self.metrics.tasks.push(TaskRecord {
            stage_id: task.stage,
            partition: task.partition,
            attempt: task.attempt,
            executor_id: task.executor_id.clone(),
            rows: output.rows(),
            bytes: output.bytes(),
            elapsed: output.elapsed,
            spilled_bytes: output.spilled_bytes,
            spills: output.spills,
        });
        let state = &mut self.tasks[task.stage][task.partition];
        if !state.counted {
            state.counted = true;
            for (name, value) in output.accumulators {
                self.metrics
                    .accumulators
                    .entry(name)
                    .and_modify(|v| v.merge(value))
                    .or_insert(value);
            }
        }
        self.stages[task.stage].parts[task.partition] = Part::Done(output.locations);
        self.emit(JobEvent::TaskFinished {
            stage_id: task.stage,
            partition: task.partition,
            executor_id: task.executor_id,
        });
        if self.stage_done(task.stage) {
            if !self.stages[task.stage].reported {
                self.stages[task.stage].reported = true;
                self.emit(JobEvent::StageFinished {
                    stage_id: task.stage,
                });
            }
            self.submit_ready();
        }
        Ok(())
    }

    fn failed(&mut self, task: Launched, error: ExecutorError) -> Result<()> {
        let (counts, retry) = match &error {
            ExecutorError::Lost {
                executor_id,
                message,
            } => {
                self.pool.mark_lost(executor_id, message);
                let state = &mut self.tasks[task.stage][task.partition];
                state.losses += 1;
                (false, state.losses <= self.config.max_attempts)
            }
            ExecutorError::Interrupted { .. } => {
                // The executor may well be alive and busy: its heartbeats decide that. The
                // attempt's outcome is unknown, so it runs again, after a pause that doubles
                // with each interruption, so that an executor that died gets the time to
                // miss its heartbeats before the task's attempts are spent on it.
                let state = &mut self.tasks[task.stage][task.partition];
                state.losses += 1;
                state.not_before = Some(Instant::now() + interrupted_pause(state.losses));
                (false, state.losses <= self.config.max_attempts)
            }
            ExecutorError::FetchFailed {
                executor_id,
                message,
            } => {
                self.pool.mark_lost(
                    executor_id,
                    &format!(
                        "task {}.{} of job {} could not fetch its data: {message}",
                        task.stage, task.partition, self.job.job_id
                    ),
                );
                let state = &mut self.tasks[task.stage][task.partition];
                state.fetch_failures += 1;
                (false, state.fetch_failures < self.config.max_attempts)
            }
            other => {
                let state = &mut self.tasks[task.stage][task.partition];
                state.failures += 1;
                (
                    true,
                    other.is_retryable() && state.failures < self.config.max_attempts,
                )
            }
        };
        tracing::warn!(
            job = %self.job.job_id,
            stage = task.stage,
            partition = task.partition,
            attempt = task.attempt,
            executor = %task.executor_id,
            "task failed: {error}"
        );
        self.record_failure(&task, error.to_string(), retry);
        if !retry {
            let state = &self.tasks[task.stage][task.partition];
            return Err(EmberError::TaskFailed {
                stage_id: task.stage,
                partition: task.partition,
                attempts: state.failures + state.fetch_failures + state.losses,
                source: error,
            });
        }
        if counts {
            self.tasks[task.stage][task.partition].avoid = Some(task.executor_id);
        }
        self.stages[task.stage].parts[task.partition] = Part::Queued;
        self.queue.push_front((task.stage, task.partition));
        Ok(())
    }

    /// Records a failed attempt in the metrics and tells the listener.
    fn record_failure(&mut self, task: &Launched, error: String, will_retry: bool) {
        self.emit(JobEvent::TaskFailed {
            stage_id: task.stage,
            partition: task.partition,
            attempt: task.attempt,
            error: error.clone(),
            will_retry,
        });
        self.metrics.failures.push(FailedAttempt {
            stage_id: task.stage,
            partition: task.partition,
            attempt: task.attempt,
            executor_id: task.executor_id.clone(),
            error,
        });
    }

    /// Deals with executors lost since the last look: re-queues the tasks that ran on
    /// them or read from them (a read from a hung executor may never end), and recomputes the finished map tasks whose output they held where a later
    /// stage (or the result) still needs it.
    fn handle_lost(&mut self) {
        let (lost, cursor) = self.pool.lost_since(self.lost_cursor);
        self.lost_cursor = cursor;
        if lost.is_empty() {
            return;
        }
        let mut gone: HashMap<(usize, usize), String> = HashMap::new();
        for executor in &lost {
            let touched: Vec<tokio::task::Id> = self
                .launched
                .iter()
                .filter(|(_, l)| &l.executor_id == executor || l.reads_from.contains(executor))
                .map(|(id, _)| *id)
                .collect();
            for id in touched {
                let Some(task) = self.launched.remove(&id) else {
                    continue;
                };
                task.abort.abort();
                self.pool.release(self.seq, &task.executor_id);
                let state = &mut self.tasks[task.stage][task.partition];
                if &task.executor_id == executor {
                    state.losses += 1;
                }
                let why = if &task.executor_id == executor {
                    format!("it was running on lost executor {executor}")
                } else {
                    format!("it was reading from lost executor {executor}")
                };
                tracing::warn!(
                    job = %self.job.job_id,
                    stage = task.stage,
                    partition = task.partition,
                    executor = %task.executor_id,
                    "task {}.{} runs again: {why}",
                    task.stage,
                    task.partition
                );
                self.record_failure(&task, format!("the task runs again: {why}"), true);
                self.stages[task.stage].parts[task.partition] = Part::Queued;
                self.queue.push_front((task.stage, task.partition));
            }
            for (stage, run) in self.stages.iter_mut().enumerate() {
                for (partition, part) in run.parts.iter_mut().enumerate() {
                    if let Part::Done(locations) = part
                        && locations
                            .iter()
                            .any(|l| &l.executor_id == executor && !l.is_stored())
                    {
                        *part = Part::Idle;
                        gone.insert((stage, partition), executor.clone());
                    }
                }
            }
        }
        // Highest id first: whether a stage is still needed depends on its readers, which
        // have higher ids and are decided by then.
        for stage in (0..self.stages.len()).rev() {
            let needed = stage == self.job.final_stage
                || self.consumers[stage].iter().any(|c| !self.stage_done(*c));
            if !self.stages[stage].started || !needed {
                continue;
            }
            for partition in 0..self.stages[stage].parts.len() {
                if !matches!(self.stages[stage].parts[partition], Part::Idle) {
                    continue;
                }
                self.stages[stage].parts[partition] = Part::Queued;
                self.queue.push_back((stage, partition));
                if let Some(executor) = gone.get(&(stage, partition)) {
                    tracing::warn!(
                        job = %self.job.job_id,
                        stage,
                        partition,
                        lost_executor = %executor,
                        "recomputing map task {}/{stage}.{partition}: its output was on lost executor {executor}",
                        self.job.job_id
                    );
                    self.metrics.recomputed.push(RecomputedTask {
                        stage_id: stage,
                        partition,
                        lost_executor: executor.clone(),
                    });
                }
            }
        }
    }
}

/// How long a task waits before it runs again after its `losses`-th interrupted call:
/// 200 ms, doubling each time, at most 3.2 s (0.2 + 0.4 + 0.8 + 1.6 s before a fifth try).
fn interrupted_pause(losses: usize) -> Duration {
    let doublings = u32::try_from(losses.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(4);
    Duration::from_millis(200) * 2_u32.pow(doublings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_task_waits_longer_each_time_up_to_a_cap() {
        let pauses: Vec<u128> = (1..=7).map(|n| interrupted_pause(n).as_millis()).collect();
        assert_eq!(pauses, vec![200, 400, 800, 1600, 3200, 3200, 3200]);
    }
}
