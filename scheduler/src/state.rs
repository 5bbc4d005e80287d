//! [`JobState`]: one job as a state machine with no I/O. It changes only through
//! [`Event`]s (`JobState::on(event) -> Vec<Action>`) and says what should happen next as
//! [`Action`]s: launch a task, withdraw or cancel one, declare an executor lost, start a
//! timer, tell the listener, finish or fail the job. It never touches a socket, a clock or a
//! thread; the driver (`job.rs`) owns those and feeds their results back in.
//!
//! Because every change is an event, the events are also the job's log: replaying a log
//! through a fresh `JobState` rebuilds the state the live run ended in (`eventlog.rs`).
//!
//! The rules, in short: a stage starts once every stage it reads is done; a failed attempt
//! runs again up to `max_attempts` (lost executors and failed fetches count apart, so that
//! a dying machine does not use up a task's tries); a lost executor's running tasks, and the
//! tasks reading from it, run again; the finished map outputs it held are recomputed where a
//! later stage (or the result) still needs them, and only those; with no executor left the
//! job waits `grace_period` before it fails.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ember_executors::ExecutorError;
use ember_proto::ShuffleLocation;
use ember_proto::task::micros;
use ember_proto::{AccumulatorValue, TaskPhases};

use super::adaptive::{
    AdaptiveConfig, Decision, InputSizes, PieceSize, StagePlan, TaskRead, plan_stage,
};
use super::events::JobEvent;
use super::metrics::{
    FailedAttempt, JobMetrics, RecomputedTask, RefusedReport, SpeculativeCopy, StageSummary,
    TaskRecord,
};
use super::spec::{JobSpec, OutputKind, SchedulerConfig};
use ember_planner::StageFacts;
use ember_proto::ids::{ExecutorId, JobId, PartitionId, StageId, TaskId};

/// The shape of one stage: all `JobState` needs of a [`StageSpec`](super::StageSpec).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageShape {
    /// The stage.
    pub id: StageId,
    /// The stages whose output it reads.
    pub inputs: Vec<StageId>,
    /// Its number of tasks.
    pub partitions: usize,
    /// How it spreads its output.
    pub output: OutputKind,
    /// What adaptive execution may change in it.
    #[serde(default, skip_serializing_if = "is_default")]
    pub facts: StageFacts,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// The shape of a job and the rules it runs by: what a `JobState` is made from, and the
/// first line of its event log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobShape {
    /// The job.
    pub job_id: JobId,
    /// Its stages, in id order.
    pub stages: Vec<StageShape>,
    /// The stage whose output is the job's result.
    pub final_stage: StageId,
    /// Tries per task.
    pub max_attempts: usize,
    /// How long the job waits for an executor when none is left.
    #[serde(with = "millis")]
    pub grace_period: Duration,
    /// The adaptive rules and speculation settings.
    #[serde(default)]
    pub adaptive: AdaptiveConfig,
}

impl JobShape {
    /// The shape of `job`, run by the rules of `config`.
    pub fn of(job: &JobSpec, config: &SchedulerConfig) -> Self {
        Self {
            job_id: job.job_id.clone(),
            stages: job
                .stages
                .iter()
                .map(|s| StageShape {
                    id: s.id,
                    inputs: s.inputs.clone(),
                    partitions: s.partitions,
                    output: s.output_kind,
                    facts: s.facts.clone(),
                })
                .collect(),
            final_stage: job.final_stage,
            max_attempts: config.max_attempts.max(1),
            grace_period: config.grace_period,
            adaptive: job.adaptive.clone(),
        }
    }

    /// Tasks over all stages, without retries.
    pub fn total_tasks(&self) -> usize {
        self.stages.iter().map(|s| s.partitions).sum()
    }
}

/// Why a task attempt failed, as far as the rules care.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Failure {
    /// Its executor could not be reached: the executor is lost.
    Lost {
        /// What went wrong.
        message: String,
    },
    /// The call broke off; the executor may be alive (its heartbeats decide).
    Interrupted {
        /// What went wrong.
        message: String,
    },
    /// It could not fetch its input from executor `from`, which is then lost.
    FetchFailed {
        /// The executor that did not serve the input.
        from: ExecutorId,
        /// What went wrong.
        message: String,
    },
    /// The task itself failed.
    Error {
        /// The error, as text.
        message: String,
        /// Whether another attempt may succeed.
        retryable: bool,
    },
}

impl Failure {
    /// The rules' view of `error`.
    pub fn of(error: &ExecutorError) -> Self {
        let message = error.to_string();
        match error {
            ExecutorError::Lost { .. } => Self::Lost { message },
            ExecutorError::Interrupted { .. } => Self::Interrupted { message },
            ExecutorError::FetchFailed { executor_id, .. } => Self::FetchFailed {
                from: ExecutorId::from(executor_id.as_str()),
                message,
            },
            other => Self::Error {
                message,
                retryable: other.is_retryable(),
            },
        }
    }

    /// The error, as text.
    pub fn message(&self) -> &str {
        match self {
            Self::Lost { message }
            | Self::Interrupted { message }
            | Self::FetchFailed { message, .. }
            | Self::Error { message, .. } => message,
        }
    }
}

/// What a successful attempt reports.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct TaskReport {
    /// The shuffle files it wrote.
    pub locations: Vec<Location>,
    /// Its wall time.
    #[serde(with = "micros")]
    pub elapsed: Duration,
    /// Bytes spilled to disk.
    #[serde(default)]
    pub spilled_bytes: u64,
    /// Spill files written.
    #[serde(default)]
    pub spills: u64,
    /// The codec of the shuffle files it wrote (`lz4`, `zstd` or `none`).
    #[serde(default)]
    pub compression: String,
    /// What its user functions added to each accumulator.
    #[serde(default)]
    pub accumulators: Vec<(String, AccumulatorValue)>,
    /// Where its wall time went on the executor.
    #[serde(default)]
    pub phases: TaskPhases,
}

/// A [`ShuffleLocation`] in the event log's form.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Location {
    /// The reduce partition it belongs to.
    pub output_partition: usize,
    /// The executor that holds the file.
    pub executor: ExecutorId,
    /// The file (or its URL in a shuffle directory).
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Bytes in the file.
    pub bytes: u64,
}

impl Location {
    /// The log's form of `location`.
    pub fn of(location: &ShuffleLocation) -> Self {
        Self {
            output_partition: location.output_partition,
            executor: ExecutorId::from(location.executor_id.as_str()),
            path: location.path.to_string_lossy().into_owned(),
            rows: location.rows,
            bytes: location.bytes,
        }
    }

    /// Whether the piece lies in an object store, where it outlives its executor.
    fn is_stored(&self) -> bool {
        self.path.contains("://")
    }

    fn shuffle_location(&self, task: TaskId) -> ShuffleLocation {
        ShuffleLocation {
            stage_id: task.stage,
            map_partition: task.partition,
            attempt: task.attempt,
            output_partition: self.output_partition,
            executor_id: self.executor.clone(),
            path: self.path.clone().into(),
            rows: self.rows,
            bytes: self.bytes,
        }
    }
}

/// A timer the job asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Timer {
    /// A task paused after an interrupted call may run again.
    Retry {
        /// The task.
        task: PartitionId,
    },
    /// The grace period of the `generation`-th time the executors were all gone is over.
    Grace {
        /// Which time the executors were gone.
        generation: u64,
    },
    /// Time to look for slow tasks to copy (speculation).
    Speculate,
}

/// Something that happened to the job.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The job was submitted: its first stages start.
    Submitted,
    /// A launched attempt was placed on an executor.
    TaskStarted {
        /// The attempt.
        task: TaskId,
        /// Where it runs.
        executor: ExecutorId,
    },
    /// An attempt succeeded.
    TaskFinished {
        /// The attempt.
        task: TaskId,
        /// Where it ran.
        executor: ExecutorId,
        /// What it wrote.
        report: TaskReport,
    },
    /// An attempt failed.
    TaskFailed {
        /// The attempt.
        task: TaskId,
        /// Where it ran.
        executor: ExecutorId,
        /// Why.
        failure: Failure,
    },
    /// An executor was declared lost (missed heartbeats, a broken call, a failed fetch).
    ExecutorLost {
        /// The executor.
        executor: ExecutorId,
    },
    /// No executor is left in the pool.
    ExecutorsGone,
    /// An executor joined an empty pool.
    ExecutorsBack,
    /// The job is to stop.
    Cancel {
        /// Why, for the error the client sees.
        reason: String,
    },
    /// A timer the job asked for is due.
    Timer(Timer),
    /// A slow task got a speculative copy (recorded for people: replaying the events
    /// launches the same copy again, so the state ignores it).
    TaskSpeculated {
        /// The copy.
        task: TaskId,
        /// Where the original runs.
        original: ExecutorId,
    },
    /// Adaptive execution cut a stage's tasks anew when it started (recorded for people:
    /// replaying the events decides the same again, so the state ignores it).
    StageAdapted {
        /// The stage.
        stage: StageId,
        /// Its tasks now.
        tasks: usize,
        /// What was decided, with the sizes behind it.
        decisions: Vec<Decision>,
        /// What each task reads (the web UI's shuffle read of each task).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reads: Vec<TaskRead>,
    },
    /// A scheduler (this one restarted, or a new leader) took the job over from its
    /// stored events: the attempts that were launched or running are abandoned and run
    /// again, and everything finished stays finished.
    Recovered,
}

/// One task to launch: the attempt, its inputs, and where it would like to run.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The attempt.
    pub task: TaskId,
    /// The outputs of the stages it reads, shared by the stage's tasks.
    pub inputs: Arc<Vec<ShuffleLocation>>,
    /// Bytes of its input each executor holds (empty when its input is nowhere in
    /// particular).
    pub local_bytes: Arc<Vec<(ExecutorId, u64)>>,
    /// The executor of its last failed attempt, avoided while another has room.
    pub avoid: Option<ExecutorId>,
    /// A task running again after a failure: it goes before launches already waiting.
    pub urgent: bool,
    /// The plan partition it runs, for a task that adaptive execution cut anew (it then
    /// reads exactly `inputs`); `None` for a task as planned.
    pub plan_partition: Option<usize>,
    /// An executor it must not run on (a speculative copy's original runs there).
    pub exclude: Option<ExecutorId>,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobFailure {
    /// A task failed on its last allowed attempt.
    Task {
        /// The task.
        task: PartitionId,
        /// How many times it ran.
        attempts: usize,
        /// The last error.
        failure: Failure,
    },
    /// No executor came back within the grace period.
    NoExecutors {
        /// How long the job waited.
        #[serde(with = "millis")]
        waited: Duration,
    },
    /// The job was cancelled.
    Cancelled {
        /// Why.
        reason: String,
    },
    /// The rules found nothing left to run before the final stage (a bug).
    Stuck,
}

impl std::fmt::Display for JobFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Task {
                task,
                attempts,
                failure,
            } => write!(
                f,
                "task {task} failed after {attempts} attempt(s): {}",
                failure.message()
            ),
            Self::NoExecutors { waited } => write!(
                f,
                "no executor left after waiting {:.1}s",
                waited.as_secs_f64()
            ),
            Self::Cancelled { reason } => write!(f, "cancelled: {reason}"),
            Self::Stuck => f.write_str("nothing left to run before the final stage"),
        }
    }
}

/// What the driver is to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Run this attempt on an executor with a free slot, then say [`Event::TaskStarted`].
    Launch(Launch),
    /// Forget a launch not yet placed: its inputs are gone.
    Withdraw(TaskId),
    /// Stop an attempt in flight on its executor and remove what it wrote.
    Cancel {
        /// The attempt.
        task: TaskId,
        /// Where it runs.
        executor: ExecutorId,
    },
    /// A speculative copy finished before this executor's attempt: place nothing more
    /// there until it heartbeats again (its slot may still be held by the stuck attempt).
    Straggler {
        /// The executor.
        executor: ExecutorId,
    },
    /// Take this executor out of the pool (every job then hears [`Event::ExecutorLost`]).
    DeclareLost {
        /// The executor.
        executor: ExecutorId,
        /// Why, for the log.
        reason: String,
    },
    /// Send [`Event::Timer`] after this long.
    StartTimer {
        /// The timer.
        timer: Timer,
        /// When it is due, from now.
        after: Duration,
    },
    /// Tell the job's listener.
    Notify(JobEvent),
    /// The job succeeded; its result lies here.
    Finish {
        /// The final stage's output.
        final_output: Vec<ShuffleLocation>,
    },
    /// The job failed.
    Fail(JobFailure),
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Not submitted yet.
    New,
    /// Running.
    Running,
    /// Done: the final stage's output is complete.
    Succeeded,
    /// Ended without a result.
    Failed(JobFailure),
}

/// Where one task stands.
#[derive(Debug, Clone)]
enum Part {
    /// Not needed now: its stage has not started, or its output was lost and no one needs
    /// it.
    Idle,
    /// In its stage's queue, waiting for the stage's inputs.
    Queued,
    /// Waiting for a retry timer after an interrupted call.
    Paused,
    /// Launched, not placed yet; it will read from the executors in `reads_from`.
    Offered {
        task: TaskId,
        reads_from: Arc<BTreeSet<ExecutorId>>,
    },
    /// Running on `executor` since `since_us`, reading from the executors in `reads_from`.
    Running {
        task: TaskId,
        executor: ExecutorId,
        reads_from: Arc<BTreeSet<ExecutorId>>,
        since_us: u64,
    },
    /// Done; its output lies here.
    Done {
        task: TaskId,
        locations: Vec<Location>,
    },
}

/// The counters of one task over its attempts.
#[derive(Debug, Default, Clone)]
struct Tries {
    /// The number of the next attempt.
    next_attempt: usize,
    /// Failed attempts that count against `max_attempts`.
    failures: usize,
    /// Attempts that failed fetching their input.
    fetch_failures: usize,
    /// Attempts whose executor was lost (or whose call broke off) while they ran.
    losses: usize,
    /// The executor of the last failed attempt.
    avoid: Option<ExecutorId>,
    /// Its accumulator updates were added (a recomputed task adds nothing more).
    counted: bool,
    /// It runs again after a failure, so it goes before tasks already waiting for a slot.
    urgent: bool,
}

/// What the tasks of a stage read, worked out once when they first launch.
#[derive(Debug)]
struct StageInputs {
    locations: Arc<Vec<ShuffleLocation>>,
    /// Each task's own share of `locations`, for a stage cut by adaptive execution.
    per_task: Option<Vec<Arc<Vec<ShuffleLocation>>>>,
    /// Rows and bytes each task reads.
    reads: Vec<(u64, u64)>,
    /// Bytes per executor for each task.
    local_bytes: Vec<Arc<Vec<(ExecutorId, u64)>>>,
    /// The executors serving the input (pieces in a shuffle directory need none).
    reads_from: Arc<BTreeSet<ExecutorId>>,
}

/// Which tasks of an adapted stage read each piece of its inputs, worked out once per
/// stage from the tasks' runs, in time proportional to the pieces read (not pieces x
/// tasks): a task with a run of an input reads the cells (map task, partition) of that run;
/// a task with none reads every piece of the input.
struct Readers {
    whole: HashMap<StageId, Vec<usize>>,
    cells: HashMap<(StageId, usize, usize), Vec<usize>>,
}

impl Readers {
    fn new(plan: &StagePlan, inputs: &[StageId], maps: impl Fn(StageId) -> usize) -> Self {
        let mut readers = Self {
            whole: HashMap::new(),
            cells: HashMap::new(),
        };
        for &input in inputs {
            for (index, task) in plan.tasks.iter().enumerate() {
                let Some(read) = task.reads.iter().find(|r| r.stage == input) else {
                    readers.whole.entry(input).or_default().push(index);
                    continue;
                };
                let (from, to) = read.maps.unwrap_or((0, maps(input)));
                for partition in read.partitions.0..read.partitions.1 {
                    for map in from..to {
                        readers
                            .cells
                            .entry((input, map, partition))
                            .or_default()
                            .push(index);
                    }
                }
            }
        }
        readers
    }

    /// The tasks that read the piece map task `map` of `input` wrote for `partition`.
    fn of(&self, input: StageId, map: usize, partition: usize) -> Vec<usize> {
        let mut tasks: Vec<usize> = self.whole.get(&input).cloned().unwrap_or_default();
        if let Some(cell) = self.cells.get(&(input, map, partition)) {
            tasks.extend(cell);
        }
        tasks
    }
}

impl StageInputs {
    /// What task `task` reads: its own share, or the stage's pieces.
    fn task_locations(&self, task: usize) -> Arc<Vec<ShuffleLocation>> {
        match self.per_task.as_ref().and_then(|own| own.get(task)) {
            Some(own) => Arc::clone(own),
            None => Arc::clone(&self.locations),
        }
    }
}

/// The plan partition task `task` of a stage runs: set only where adaptive execution cut
/// the stage's tasks.
fn plan_partition(plan: Option<&StagePlan>, task: usize) -> Option<usize> {
    plan.and_then(|plan| plan.tasks.get(task))
        .map(|t: &TaskRead| t.plan_partition)
}

#[derive(Debug)]
struct StageState {
    shape: StageShape,
    consumers: Vec<StageId>,
    parts: Vec<Part>,
    tries: Vec<Tries>,
    /// Parts that are `Done`.
    done: usize,
    /// Queued parts, in launch order.
    queue: VecDeque<usize>,
    started: bool,
    /// `StageFinished` was told (once, even if the stage is recomputed later).
    reported: bool,
    inputs: Option<Arc<StageInputs>>,
    /// How adaptive execution cut its tasks, when it did.
    plan: Option<Arc<StagePlan>>,
    /// Wall times of its finished attempts, in microseconds.
    durations: Vec<u64>,
}

/// A speculative copy of a running task.
#[derive(Debug, Clone)]
struct Copy {
    task: TaskId,
    /// Where it runs, once placed.
    executor: Option<ExecutorId>,
    /// Where the original runs.
    original: ExecutorId,
}

impl StageState {
    fn is_done(&self) -> bool {
        self.done == self.parts.len()
    }
}

/// One job's state. See the module documentation for its rules.
#[derive(Debug)]
pub struct JobState {
    shape: JobShape,
    stages: Vec<StageState>,
    status: Status,
    /// Attempts launched and not yet ended (offered, running) or paused.
    in_flight: usize,
    /// Executors declared lost, so a second report changes nothing.
    lost: BTreeSet<ExecutorId>,
    /// The executors are all gone since this generation's `ExecutorsGone`.
    gone: Option<u64>,
    generation: u64,
    metrics: JobMetrics,
    /// The time of the event being taken in, in microseconds since submission (set by the
    /// driver, and by a replay from the log's times).
    now_us: u64,
    /// Speculative copies in flight, by `(stage, partition)`.
    copies: HashMap<(usize, usize), Copy>,
    /// A speculation timer is pending.
    speculating: bool,
}

impl JobState {
    /// A job of this shape, not yet submitted.
    pub fn new(shape: JobShape) -> Self {
        let mut consumers = vec![Vec::new(); shape.stages.len()];
        for stage in &shape.stages {
            for input in &stage.inputs {
                if let Some(list) = consumers.get_mut(input.0) {
                    list.push(stage.id);
                }
            }
        }
        let stages = shape
            .stages
            .iter()
            .zip(consumers)
            .map(|(s, consumers)| StageState {
                shape: s.clone(),
                consumers,
                parts: vec![Part::Idle; s.partitions],
                tries: vec![Tries::default(); s.partitions],
                done: 0,
                queue: VecDeque::new(),
                started: false,
                reported: false,
                inputs: None,
                plan: None,
                durations: Vec::new(),
            })
            .collect();
        let metrics = JobMetrics {
            job_id: shape.job_id.clone(),
            stages: shape
                .stages
                .iter()
                .map(|s| StageSummary {
                    stage_id: s.id,
                    partitions: s.partitions,
                    inputs: s.inputs.clone(),
                    output: s.output,
                    planned_partitions: s.partitions,
                    decisions: Vec::new(),
                })
                .collect(),
            ..Default::default()
        };
        Self {
            shape,
            stages,
            status: Status::New,
            in_flight: 0,
            lost: BTreeSet::new(),
            gone: None,
            generation: 0,
            metrics,
            now_us: 0,
            copies: HashMap::new(),
            speculating: false,
        }
    }

    /// Sets the time of the next event, in microseconds since the job was submitted.
    pub fn set_clock(&mut self, at_us: u64) {
        self.now_us = self.now_us.max(at_us);
    }

    /// The job's shape.
    pub fn shape(&self) -> &JobShape {
        &self.shape
    }

    /// Where the job stands.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// What ran where so far (without the job's wall time, which the driver measures).
    pub fn metrics(&self) -> &JobMetrics {
        &self.metrics
    }

    /// Takes the metrics out, leaving empty ones.
    pub fn take_metrics(&mut self) -> JobMetrics {
        std::mem::take(&mut self.metrics)
    }

    /// Attempts launched and not ended, or paused before a retry.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The attempts running now, with their executors.
    pub fn running(&self) -> Vec<(TaskId, ExecutorId)> {
        let copies = self
            .copies
            .values()
            .filter_map(|c| c.executor.clone().map(|e| (c.task, e)));
        self.stages
            .iter()
            .flat_map(|s| &s.parts)
            .filter_map(|p| match p {
                Part::Running { task, executor, .. } => Some((*task, executor.clone())),
                _ => None,
            })
            .chain(copies)
            .collect()
    }

    /// The successful attempt of each finished task, in stage and partition order.
    pub fn done_attempts(&self) -> Vec<TaskId> {
        self.stages
            .iter()
            .flat_map(|s| &s.parts)
            .filter_map(|p| match p {
                Part::Done { task, .. } => Some(*task),
                _ => None,
            })
            .collect()
    }

    /// Takes in one event; returns what the driver is to do, in order.
    pub fn on(&mut self, event: Event) -> Vec<Action> {
        let mut actions = Vec::new();
        if matches!(self.status, Status::Succeeded | Status::Failed(_)) {
            // A finished job wants nothing more: stop whatever still reports in.
            if let Event::TaskStarted { task, executor } = event {
                actions.push(Action::Cancel { task, executor });
            }
            return actions;
        }
        match event {
            Event::Submitted => self.submitted(&mut actions),
            Event::TaskStarted { task, executor } => self.started(task, executor, &mut actions),
            Event::TaskFinished {
                task,
                executor,
                report,
            } => self.finished(task, executor, report, &mut actions),
            Event::TaskFailed {
                task,
                executor,
                failure,
            } => self.failed(task, executor, failure, &mut actions),
            Event::ExecutorLost { executor } => self.executor_lost(executor, &mut actions),
            Event::ExecutorsGone => {
                self.generation += 1;
                self.gone = Some(self.generation);
                actions.push(Action::StartTimer {
                    timer: Timer::Grace {
                        generation: self.generation,
                    },
                    after: self.shape.grace_period,
                });
            }
            Event::ExecutorsBack => self.gone = None,
            Event::Cancel { reason } => self.fail(JobFailure::Cancelled { reason }, &mut actions),
            Event::Timer(Timer::Retry { task }) => {
                if let Some(stage) = self.stages.get_mut(task.stage.0)
                    && matches!(stage.parts.get(task.partition), Some(Part::Paused))
                {
                    stage.parts[task.partition] = Part::Queued;
                    stage.queue.push_front(task.partition);
                    stage.tries[task.partition].urgent = true;
                    self.in_flight -= 1;
                }
            }
            Event::Timer(Timer::Grace { generation }) => {
                if self.gone == Some(generation) {
                    let waited = self.shape.grace_period;
                    self.fail(JobFailure::NoExecutors { waited }, &mut actions);
                }
            }
            Event::Timer(Timer::Speculate) => {
                self.speculating = false;
                self.speculate(&mut actions);
            }
            Event::StageAdapted { .. } | Event::TaskSpeculated { .. } => {}
            Event::Recovered => self.recovered(),
        }
        if self.status == Status::Running {
            self.offer(&mut actions);
            if self.in_flight == 0 && !self.final_done() {
                self.fail(JobFailure::Stuck, &mut actions);
            }
        }
        if self.status == Status::Running
            && self.shape.adaptive.speculation.enabled
            && !self.speculating
            && self.in_flight > 0
        {
            self.speculating = true;
            actions.push(Action::StartTimer {
                timer: Timer::Speculate,
                after: self.shape.adaptive.speculation.interval,
            });
        }
        actions
    }

    /// Every attempt launched, running or paused before the take-over runs again (as a
    /// new attempt, counted as no failure, numbered past any that a lost event may have
    /// launched); speculative copies are dropped.
    fn recovered(&mut self) {
        self.in_flight -= self.copies.len().min(self.in_flight);
        self.copies.clear();
        self.speculating = false;
        self.gone = None;
        for stage in &mut self.stages {
            for partition in (0..stage.parts.len()).rev() {
                // Events of the last moments before the take-over may be lost, launches
                // among them: a task not done starts with an attempt number no lost launch
                // can have used.
                if !matches!(stage.parts[partition], Part::Done { .. }) {
                    stage.tries[partition].next_attempt += 1;
                }
                if matches!(
                    stage.parts[partition],
                    Part::Offered { .. } | Part::Running { .. } | Part::Paused
                ) {
                    stage.parts[partition] = Part::Queued;
                    stage.queue.push_front(partition);
                    stage.tries[partition].urgent = true;
                    self.in_flight -= 1;
                }
            }
        }
    }

    fn final_done(&self) -> bool {
        self.stages
            .get(self.shape.final_stage.0)
            .is_some_and(StageState::is_done)
    }

    fn inputs_done(&self, stage: usize) -> bool {
        self.stages[stage]
            .shape
            .inputs
            .iter()
            .all(|input| self.stages.get(input.0).is_some_and(StageState::is_done))
    }

    fn submitted(&mut self, actions: &mut Vec<Action>) {
        if self.status != Status::New {
            return;
        }
        self.status = Status::Running;
        actions.push(Action::Notify(JobEvent::JobStarted {
            job_id: self.shape.job_id.clone(),
            stages: self.shape.stages.len(),
            tasks: self.shape.total_tasks(),
        }));
        self.start_ready(actions);
        self.finish_if_done(actions);
    }

    /// Starts every stage not yet started whose inputs are all done. One pass in id order
    /// suffices: a stage's inputs have smaller ids.
    fn start_ready(&mut self, actions: &mut Vec<Action>) {
        for id in 0..self.stages.len() {
            if self.stages[id].started || !self.inputs_done(id) {
                continue;
            }
            self.adapt(id, actions);
            let stage = &mut self.stages[id];
            stage.started = true;
            let tasks = stage.parts.len();
            actions.push(Action::Notify(JobEvent::StageStarted {
                stage_id: StageId(id),
                tasks,
            }));
            if tasks == 0 {
                stage.reported = true;
                actions.push(Action::Notify(JobEvent::StageFinished {
                    stage_id: StageId(id),
                    rows: 0,
                    bytes: 0,
                    partitions: Vec::new(),
                }));
                continue;
            }
            for partition in 0..tasks {
                stage.parts[partition] = Part::Queued;
                stage.queue.push_back(partition);
            }
        }
    }

    /// Cuts the tasks of stage `id` (its inputs are done) from its inputs' real sizes, where
    /// the adaptive rules find something to change.
    fn adapt(&mut self, id: usize, actions: &mut Vec<Action>) {
        let stage = &self.stages[id];
        let facts = &stage.shape.facts;
        if facts.partitioned.is_empty() && facts.empty_if.is_empty() {
            return;
        }
        let inputs: Vec<InputSizes> = stage
            .shape
            .inputs
            .iter()
            .map(|input| {
                let parts = &self.stages[input.0].parts;
                let pieces = parts
                    .iter()
                    .filter_map(|part| match part {
                        Part::Done { task, locations } => Some((task.partition, locations)),
                        _ => None,
                    })
                    .flat_map(|(map, locations)| {
                        locations.iter().map(move |l| PieceSize {
                            map_partition: map,
                            output_partition: l.output_partition,
                            rows: l.rows,
                            bytes: l.bytes,
                        })
                    })
                    .collect();
                InputSizes {
                    stage: *input,
                    maps: parts.len(),
                    pieces,
                }
            })
            .collect();
        // A stage whose task outputs are the result's partitions (or a merge's), or that
        // deals rows out in turn from a start set by its task's number, keeps at most its
        // planned number of tasks: no split, no broadcast.
        let rules = if !matches!(stage.shape.output, OutputKind::Hash | OutputKind::Single) {
            AdaptiveConfig {
                broadcast: false,
                skew_join: false,
                ..self.shape.adaptive.clone()
            }
        } else {
            self.shape.adaptive.clone()
        };
        let Some(plan) = plan_stage(facts, stage.parts.len(), &rules, &inputs) else {
            return;
        };
        let tasks = plan.tasks.len();
        let stage = &mut self.stages[id];
        let planned_tasks = stage.parts.len();
        stage.parts = vec![Part::Idle; tasks];
        stage.tries = vec![Tries::default(); tasks];
        if let Some(summary) = self.metrics.stages.get_mut(id) {
            summary.partitions = tasks;
            summary.decisions = plan.decisions.clone();
        }
        actions.push(Action::Notify(JobEvent::StageAdapted {
            stage_id: StageId(id),
            planned_tasks,
            tasks,
            decisions: plan.decisions.clone(),
            reads: plan.tasks.clone(),
        }));
        stage.plan = Some(Arc::new(plan));
    }

    /// Launches the queued tasks of every stage whose inputs are done.
    fn offer(&mut self, actions: &mut Vec<Action>) {
        for id in 0..self.stages.len() {
            if self.stages[id].queue.is_empty() || !self.inputs_done(id) {
                continue;
            }
            let inputs = self.stage_inputs(id);
            let stage = &mut self.stages[id];
            while let Some(partition) = stage.queue.pop_front() {
                if !matches!(stage.parts[partition], Part::Queued) {
                    continue;
                }
                let tries = &mut stage.tries[partition];
                let task = TaskId {
                    stage: StageId(id),
                    partition,
                    attempt: tries.next_attempt,
                };
                tries.next_attempt += 1;
                let urgent = std::mem::take(&mut tries.urgent);
                stage.parts[partition] = Part::Offered {
                    task,
                    reads_from: Arc::clone(&inputs.reads_from),
                };
                self.in_flight += 1;
                actions.push(Action::Launch(Launch {
                    task,
                    inputs: inputs.task_locations(partition),
                    local_bytes: inputs
                        .local_bytes
                        .get(partition)
                        .cloned()
                        .unwrap_or_default(),
                    avoid: tries.avoid.clone(),
                    urgent,
                    plan_partition: plan_partition(stage.plan.as_deref(), partition),
                    exclude: None,
                }));
            }
        }
    }

    /// What the tasks of `stage` read (its inputs are done), worked out once.
    fn stage_inputs(&mut self, stage: usize) -> Arc<StageInputs> {
        if let Some(inputs) = &self.stages[stage].inputs {
            return Arc::clone(inputs);
        }
        let tasks = self.stages[stage].parts.len();
        let plan = self.stages[stage].plan.clone();
        let mut locations = Vec::new();
        let mut per_task: Vec<Vec<ShuffleLocation>> = match &plan {
            Some(_) => vec![Vec::new(); tasks],
            None => Vec::new(),
        };
        let mut local: Vec<HashMap<ExecutorId, u64>> = vec![HashMap::new(); tasks];
        let mut reads = vec![(0u64, 0u64); tasks];
        let mut reads_from = BTreeSet::new();
        let readers_of = plan.as_deref().map(|plan| {
            Readers::new(plan, &self.stages[stage].shape.inputs, |input| {
                self.stages[input.0].parts.len()
            })
        });
        for input in &self.stages[stage].shape.inputs {
            let whole = self.stages[input.0].shape.output == OutputKind::Single;
            for part in &self.stages[input.0].parts {
                let Part::Done {
                    task,
                    locations: pieces,
                } = part
                else {
                    continue;
                };
                for piece in pieces {
                    let location = piece.shuffle_location(*task);
                    // The tasks that read this piece.
                    let readers: Vec<usize> = match &readers_of {
                        Some(readers) => readers.of(*input, task.partition, piece.output_partition),
                        None if whole || tasks == 1 => (0..tasks).collect(),
                        None => vec![piece.output_partition],
                    };
                    for &reader in &readers {
                        if let Some(read) = reads.get_mut(reader) {
                            read.0 += piece.rows;
                            read.1 += piece.bytes;
                        }
                        if let Some(own) = per_task.get_mut(reader) {
                            own.push(location.clone());
                        }
                        if !piece.is_stored()
                            && !whole
                            && let Some(bytes) = local.get_mut(reader)
                        {
                            *bytes.entry(piece.executor.clone()).or_default() += piece.bytes;
                        }
                    }
                    if !piece.is_stored() {
                        reads_from.insert(piece.executor.clone());
                    }
                    if plan.is_none() {
                        locations.push(location);
                    }
                }
            }
        }
        let inputs = Arc::new(StageInputs {
            locations: Arc::new(locations),
            per_task: plan
                .is_some()
                .then(|| per_task.into_iter().map(Arc::new).collect()),
            reads,
            local_bytes: local
                .into_iter()
                .map(|bytes| {
                    let mut bytes: Vec<(ExecutorId, u64)> = bytes.into_iter().collect();
                    bytes.sort();
                    Arc::new(bytes)
                })
                .collect(),
            reads_from: Arc::new(reads_from),
        });
        self.stages[stage].inputs = Some(Arc::clone(&inputs));
        inputs
    }

    /// The stages reading `stage` must work their inputs out again.
    fn inputs_changed(&mut self, stage: usize) {
        let consumers = self.stages[stage].consumers.clone();
        for consumer in consumers {
            self.stages[consumer.0].inputs = None;
        }
    }

    fn started(&mut self, task: TaskId, executor: ExecutorId, actions: &mut Vec<Action>) {
        if let Some(copy) = self.copies.get_mut(&(task.stage.0, task.partition))
            && copy.task == task
            && copy.executor.is_none()
        {
            copy.executor = Some(executor);
            return;
        }
        let reads_from = match self
            .stages
            .get(task.stage.0)
            .and_then(|s| s.parts.get(task.partition))
        {
            Some(Part::Offered {
                task: offered,
                reads_from,
            }) if *offered == task => Arc::clone(reads_from),
            _ => {
                // Withdrawn before it was placed: nothing wants it.
                actions.push(Action::Cancel { task, executor });
                return;
            }
        };
        self.stages[task.stage.0].parts[task.partition] = Part::Running {
            task,
            executor,
            reads_from,
            since_us: self.now_us,
        };
    }

    /// Whether `task` on `executor` is the speculative copy in flight.
    fn is_copy(&self, task: TaskId, executor: &ExecutorId) -> bool {
        self.copies
            .get(&(task.stage.0, task.partition))
            .is_some_and(|c| c.task == task && c.executor.as_ref() == Some(executor))
    }

    /// Stops the copy of `(stage, partition)`, if one is in flight, and records how it
    /// ended.
    fn drop_copy(&mut self, stage: usize, partition: usize, won: bool, actions: &mut Vec<Action>) {
        let Some(copy) = self.copies.remove(&(stage, partition)) else {
            return;
        };
        self.in_flight -= 1;
        if !won {
            match &copy.executor {
                Some(executor) => actions.push(Action::Cancel {
                    task: copy.task,
                    executor: executor.clone(),
                }),
                None => actions.push(Action::Withdraw(copy.task)),
            }
        }
        self.metrics.speculated.push(SpeculativeCopy {
            stage_id: StageId(stage),
            partition,
            attempt: copy.task.attempt,
            original_executor: copy.original,
            won,
        });
    }

    /// The copy of `task` finished first: the original is stopped and the copy takes its
    /// place as the running attempt.
    fn promote_copy(&mut self, task: TaskId, executor: &ExecutorId, actions: &mut Vec<Action>) {
        let (stage, partition) = (task.stage.0, task.partition);
        if let Part::Running {
            task: original,
            executor: original_executor,
            reads_from,
            since_us,
        } = self.stages[stage].parts[partition].clone()
        {
            actions.push(Action::Straggler {
                executor: original_executor.clone(),
            });
            actions.push(Action::Cancel {
                task: original,
                executor: original_executor,
            });
            self.stages[stage].parts[partition] = Part::Running {
                task,
                executor: executor.clone(),
                reads_from,
                since_us,
            };
            self.drop_copy(stage, partition, true, actions);
        }
    }

    /// Launches a copy of every task that runs much longer than its finished siblings,
    /// in stages that are mostly done.
    fn speculate(&mut self, actions: &mut Vec<Action>) {
        let rules = self.shape.adaptive.speculation.clone();
        if !rules.enabled || self.status != Status::Running {
            return;
        }
        for id in 0..self.stages.len() {
            let stage = &self.stages[id];
            let tasks = stage.parts.len();
            if !stage.started || stage.is_done() || stage.durations.is_empty() {
                continue;
            }
            if (stage.done as f64) < rules.quantile * tasks as f64 {
                continue;
            }
            let mut durations = stage.durations.clone();
            durations.sort_unstable();
            let median = durations[durations.len() / 2];
            let limit =
                (median as f64 * rules.multiplier).max(rules.min_runtime.as_micros() as f64);
            let slow: Vec<(usize, TaskId, ExecutorId)> = stage
                .parts
                .iter()
                .enumerate()
                .filter_map(|(partition, part)| match part {
                    Part::Running {
                        task,
                        executor,
                        since_us,
                        ..
                    } if (self.now_us.saturating_sub(*since_us)) as f64 > limit
                        && !self.copies.contains_key(&(id, partition)) =>
                    {
                        Some((partition, *task, executor.clone()))
                    }
                    _ => None,
                })
                .collect();
            if slow.is_empty() {
                continue;
            }
            let inputs = self.stage_inputs(id);
            for (partition, original, executor) in slow {
                let stage = &mut self.stages[id];
                let tries = &mut stage.tries[partition];
                let copy = TaskId {
                    stage: StageId(id),
                    partition,
                    attempt: tries.next_attempt,
                };
                tries.next_attempt += 1;
                self.in_flight += 1;
                tracing::info!(
                    job = %self.shape.job_id,
                    "task {original} runs {:.1}s on {executor}, over {:.1} x the {:.1}s median: speculative copy {copy}",
                    self.now_us.saturating_sub(match &stage.parts[partition] {
                        Part::Running { since_us, .. } => *since_us,
                        _ => self.now_us,
                    }) as f64 / 1e6,
                    rules.multiplier,
                    median as f64 / 1e6,
                );
                actions.push(Action::Notify(JobEvent::TaskSpeculated {
                    stage_id: StageId(id),
                    partition,
                    attempt: copy.attempt,
                    original_executor: executor.clone(),
                }));
                actions.push(Action::Launch(Launch {
                    task: copy,
                    inputs: inputs.task_locations(partition),
                    local_bytes: Arc::default(),
                    avoid: Some(executor.clone()),
                    urgent: false,
                    plan_partition: plan_partition(stage.plan.as_deref(), partition),
                    exclude: Some(executor.clone()),
                }));
                self.copies.insert(
                    (id, partition),
                    Copy {
                        task: copy,
                        executor: None,
                        original: executor,
                    },
                );
            }
        }
    }

    /// The part of `task` when that attempt is the one running; `None` for an attempt
    /// superseded by another (or never launched).
    fn running_part(&self, task: TaskId, executor: &ExecutorId) -> bool {
        matches!(
            self.stages.get(task.stage.0).and_then(|s| s.parts.get(task.partition)),
            Some(Part::Running { task: t, executor: e, .. }) if *t == task && e == executor
        )
    }

    /// Records a report of `task` that is not used because `executor` was declared lost
    /// before it came (the task ran again elsewhere, or is queued to).
    fn refuse_if_lost(&mut self, task: TaskId, executor: &ExecutorId, succeeded: bool) {
        if self.lost.contains(executor) {
            self.metrics.refused.push(RefusedReport {
                stage_id: task.stage,
                partition: task.partition,
                attempt: task.attempt,
                executor_id: executor.clone(),
                succeeded,
            });
        }
    }

    fn finished(
        &mut self,
        task: TaskId,
        executor: ExecutorId,
        report: TaskReport,
        actions: &mut Vec<Action>,
    ) {
        let speculative = self.is_copy(task, &executor);
        if speculative {
            self.promote_copy(task, &executor, actions);
            if !self.running_part(task, &executor) {
                // The original it copied is gone (failed and queued again): the copy's
                // output is not used, and its entry goes.
                self.drop_copy(task.stage.0, task.partition, false, actions);
                return;
            }
        }
        if !self.running_part(task, &executor) {
            // A superseded attempt that ran to its end anyway: its output is not used.
            self.refuse_if_lost(task, &executor, true);
            actions.push(Action::Cancel { task, executor });
            return;
        }
        self.in_flight -= 1;
        // The original won: its copy stops.
        self.drop_copy(task.stage.0, task.partition, false, actions);
        let stage_index = task.stage.0;
        let (read_rows, read_bytes) = self.stages[stage_index]
            .inputs
            .as_ref()
            .and_then(|inputs| inputs.reads.get(task.partition).copied())
            .unwrap_or_default();
        self.stages[stage_index]
            .durations
            .push(u64::try_from(report.elapsed.as_micros()).unwrap_or(u64::MAX));
        let started_us = match &self.stages[stage_index].parts[task.partition] {
            Part::Running { since_us, .. } => *since_us,
            _ => self.now_us,
        };
        self.metrics.tasks.push(TaskRecord {
            stage_id: StageId(stage_index),
            partition: task.partition,
            attempt: task.attempt,
            executor_id: executor.clone(),
            rows: report.locations.iter().map(|l| l.rows).sum(),
            bytes: report.locations.iter().map(|l| l.bytes).sum(),
            elapsed: report.elapsed,
            spilled_bytes: report.spilled_bytes,
            spills: report.spills,
            compression: report.compression.clone(),
            read_rows,
            read_bytes,
            speculative,
            started_at: Duration::from_micros(started_us),
            ended_at: Duration::from_micros(self.now_us),
            phases: report.phases,
        });
        let stage = &mut self.stages[stage_index];
        let tries = &mut stage.tries[task.partition];
        if !tries.counted {
            tries.counted = true;
            for (name, value) in report.accumulators {
                self.metrics
                    .accumulators
                    .entry(name)
                    .and_modify(|v| v.merge(value))
                    .or_insert(value);
            }
        }
        stage.parts[task.partition] = Part::Done {
            task,
            locations: report.locations,
        };
        stage.done += 1;
        actions.push(Action::Notify(JobEvent::TaskFinished {
            stage_id: StageId(stage_index),
            partition: task.partition,
            executor_id: executor,
        }));
        self.inputs_changed(stage_index);
        if self.stages[stage_index].is_done() {
            if !self.stages[stage_index].reported {
                self.stages[stage_index].reported = true;
                actions.push(Action::Notify(self.stage_finished(stage_index)));
            }
            self.start_ready(actions);
            self.finish_if_done(actions);
        }
    }

    /// The `StageFinished` event of stage `id`, with its output's totals.
    fn stage_finished(&self, id: usize) -> JobEvent {
        let stage = &self.stages[id];
        let count = self
            .shape
            .stages
            .iter()
            .find(|s| s.inputs.contains(&StageId(id)))
            .map_or(0, |reader| reader.partitions);
        let mut partitions = vec![(0u64, 0u64); count];
        let (mut rows, mut bytes) = (0, 0);
        for part in &stage.parts {
            if let Part::Done { locations, .. } = part {
                for l in locations {
                    rows += l.rows;
                    bytes += l.bytes;
                    if l.output_partition >= partitions.len() {
                        partitions.resize(l.output_partition + 1, (0, 0));
                    }
                    partitions[l.output_partition].0 += l.rows;
                    partitions[l.output_partition].1 += l.bytes;
                }
            }
        }
        JobEvent::StageFinished {
            stage_id: StageId(id),
            rows,
            bytes,
            partitions,
        }
    }

    fn finish_if_done(&mut self, actions: &mut Vec<Action>) {
        if !self.final_done() {
            return;
        }
        let final_output = self.stages[self.shape.final_stage.0]
            .parts
            .iter()
            .flat_map(|part| match part {
                Part::Done { task, locations } => locations
                    .iter()
                    .map(|l| l.shuffle_location(*task))
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        // Recomputations that lost their purpose stop here.
        self.stop_all(actions);
        self.status = Status::Succeeded;
        actions.push(Action::Finish { final_output });
    }

    fn failed(
        &mut self,
        task: TaskId,
        executor: ExecutorId,
        failure: Failure,
        actions: &mut Vec<Action>,
    ) {
        if self.is_copy(task, &executor) {
            // A copy that failed changes nothing: the original still runs.
            if let Failure::Lost { message } = &failure {
                actions.push(Action::DeclareLost {
                    executor: executor.clone(),
                    reason: message.clone(),
                });
            }
            self.drop_copy(task.stage.0, task.partition, false, actions);
            return;
        }
        if !self.running_part(task, &executor) {
            self.refuse_if_lost(task, &executor, false);
            return;
        }
        if self
            .copies
            .get(&(task.stage.0, task.partition))
            .is_some_and(|c| c.executor.is_none())
        {
            // A copy not placed yet is withdrawn: the task runs again by the rules below.
            self.drop_copy(task.stage.0, task.partition, false, actions);
        }
        if self
            .copies
            .get(&(task.stage.0, task.partition))
            .is_some_and(|c| c.executor.is_some())
        {
            // The original failed while its copy runs: the copy carries on as the attempt.
            self.record_failure(
                task,
                &executor,
                failure.message().to_string(),
                true,
                actions,
            );
            let tries = &mut self.stages[task.stage.0].tries[task.partition];
            match &failure {
                Failure::Lost { message } => {
                    tries.losses += 1;
                    actions.push(Action::DeclareLost {
                        executor: executor.clone(),
                        reason: message.clone(),
                    });
                }
                Failure::FetchFailed { from, message } => {
                    tries.fetch_failures += 1;
                    actions.push(Action::DeclareLost {
                        executor: from.clone(),
                        reason: format!(
                            "task {} of job {} could not fetch its data: {message}",
                            task.partition_id(),
                            self.shape.job_id
                        ),
                    });
                }
                Failure::Interrupted { .. } => tries.losses += 1,
                Failure::Error { .. } => {
                    tries.failures += 1;
                    tries.avoid = Some(executor.clone());
                }
            }
            let Some(copy) = self.copies.get(&(task.stage.0, task.partition)).cloned() else {
                return;
            };
            if let (Some(copy_executor), Part::Running { reads_from, .. }) = (
                copy.executor,
                self.stages[task.stage.0].parts[task.partition].clone(),
            ) {
                self.stages[task.stage.0].parts[task.partition] = Part::Running {
                    task: copy.task,
                    executor: copy_executor,
                    reads_from,
                    // Timed from now, so that it is not copied again at once.
                    since_us: self.now_us,
                };
                self.copies.remove(&(task.stage.0, task.partition));
                // One attempt ended; the copy's slot in `in_flight` stays for it.
                self.in_flight -= 1;
            }
            return;
        }
        let max = self.shape.max_attempts;
        let part_id = task.partition_id();
        let tries = &mut self.stages[task.stage.0].tries[task.partition];
        let mut pause = None;
        let (counts, retry) = match &failure {
            Failure::Lost { message } => {
                actions.push(Action::DeclareLost {
                    executor: executor.clone(),
                    reason: message.clone(),
                });
                tries.losses += 1;
                (false, tries.losses <= max)
            }
            Failure::Interrupted { .. } => {
                // The executor may well be alive and busy: its heartbeats decide that. The
                // attempt's outcome is unknown, so it runs again, after a pause that doubles
                // with each interruption, so that an executor that died gets the time to
                // miss its heartbeats before the task's attempts are spent on it.
                tries.losses += 1;
                pause = Some(interrupted_pause(tries.losses));
                (false, tries.losses <= max)
            }
            Failure::FetchFailed { from, message } => {
                actions.push(Action::DeclareLost {
                    executor: from.clone(),
                    reason: format!(
                        "task {part_id} of job {} could not fetch its data: {message}",
                        self.shape.job_id
                    ),
                });
                tries.fetch_failures += 1;
                (false, tries.fetch_failures < max)
            }
            Failure::Error { retryable, .. } => {
                tries.failures += 1;
                (true, *retryable && tries.failures < max)
            }
        };
        if counts {
            tries.avoid = Some(executor.clone());
        }
        let attempts = tries.failures + tries.fetch_failures + tries.losses;
        self.record_failure(
            task,
            &executor,
            failure.message().to_string(),
            retry,
            actions,
        );
        self.in_flight -= 1;
        if !retry {
            self.stages[task.stage.0].parts[task.partition] = Part::Idle;
            self.fail(
                JobFailure::Task {
                    task: part_id,
                    attempts,
                    failure,
                },
                actions,
            );
            return;
        }
        let stage = &mut self.stages[task.stage.0];
        match pause {
            Some(after) => {
                stage.parts[task.partition] = Part::Paused;
                self.in_flight += 1;
                actions.push(Action::StartTimer {
                    timer: Timer::Retry { task: part_id },
                    after,
                });
            }
            None => {
                stage.parts[task.partition] = Part::Queued;
                stage.queue.push_front(task.partition);
                stage.tries[task.partition].urgent = true;
            }
        }
    }

    fn record_failure(
        &mut self,
        task: TaskId,
        executor: &ExecutorId,
        error: String,
        will_retry: bool,
        actions: &mut Vec<Action>,
    ) {
        actions.push(Action::Notify(JobEvent::TaskFailed {
            stage_id: task.stage,
            partition: task.partition,
            attempt: task.attempt,
            error: error.clone(),
            will_retry,
        }));
        self.metrics.failures.push(FailedAttempt {
            stage_id: task.stage,
            partition: task.partition,
            attempt: task.attempt,
            executor_id: executor.clone(),
            error,
        });
    }

    /// Re-queues the tasks that ran on `lost` or read from it, and recomputes the finished
    /// map tasks whose output it held where a later stage (or the result) still needs it.
    fn executor_lost(&mut self, lost: ExecutorId, actions: &mut Vec<Action>) {
        if !self.lost.insert(lost.clone()) {
            return;
        }
        let reads_lost = |state: &Self, stage: usize| {
            state.stages[stage]
                .inputs
                .as_ref()
                .is_some_and(|i| i.reads_from.contains(&lost))
        };
        let doomed: Vec<(usize, usize)> = self
            .copies
            .iter()
            .filter(|(key, c)| {
                c.executor.is_none()
                    || c.executor.as_ref() == Some(&lost)
                    || reads_lost(self, key.0)
            })
            .map(|(key, _)| *key)
            .collect();
        for (stage, partition) in doomed {
            self.drop_copy(stage, partition, false, actions);
        }
        // A copy running elsewhere takes over from an original on the lost executor.
        let heirs: Vec<((usize, usize), Copy)> = self
            .copies
            .iter()
            .filter(|(_, c)| c.original == lost)
            .map(|(key, c)| (*key, c.clone()))
            .collect();
        for ((stage, partition), copy) in heirs {
            let Some(executor) = copy.executor else {
                continue;
            };
            if let Part::Running {
                task: original,
                reads_from,
                ..
            } = self.stages[stage].parts[partition].clone()
            {
                actions.push(Action::Cancel {
                    task: original,
                    executor: lost.clone(),
                });
                self.stages[stage].parts[partition] = Part::Running {
                    task: copy.task,
                    executor,
                    reads_from,
                    since_us: self.now_us,
                };
                self.copies.remove(&(stage, partition));
                self.in_flight -= 1;
            }
        }
        let mut gone: HashMap<PartitionId, ExecutorId> = HashMap::new();
        for stage_index in 0..self.stages.len() {
            let mut output_lost = false;
            for partition in 0..self.stages[stage_index].parts.len() {
                let stage = &mut self.stages[stage_index];
                match &stage.parts[partition] {
                    Part::Running {
                        task,
                        executor,
                        reads_from,
                        ..
                    } if *executor == lost || reads_from.contains(&lost) => {
                        let (task, executor) = (*task, executor.clone());
                        let why = if executor == lost {
                            stage.tries[partition].losses += 1;
                            format!("it was running on lost executor {lost}")
                        } else {
                            format!("it was reading from lost executor {lost}")
                        };
                        stage.parts[partition] = Part::Queued;
                        stage.queue.push_front(partition);
                        stage.tries[partition].urgent = true;
                        self.in_flight -= 1;
                        actions.push(Action::Cancel {
                            task,
                            executor: executor.clone(),
                        });
                        self.record_failure(
                            task,
                            &executor,
                            format!("the task runs again: {why}"),
                            true,
                            actions,
                        );
                    }
                    Part::Offered { task, reads_from } if reads_from.contains(&lost) => {
                        actions.push(Action::Withdraw(*task));
                        // It never ran, so its attempt number is free again.
                        stage.tries[partition].next_attempt = task.attempt;
                        stage.tries[partition].urgent = true;
                        stage.parts[partition] = Part::Queued;
                        stage.queue.push_front(partition);
                        self.in_flight -= 1;
                    }
                    Part::Done { locations, .. }
                        if locations
                            .iter()
                            .any(|l| l.executor == lost && !l.is_stored()) =>
                    {
                        stage.parts[partition] = Part::Idle;
                        stage.done -= 1;
                        output_lost = true;
                        gone.insert(
                            PartitionId {
                                stage: StageId(stage_index),
                                partition,
                            },
                            lost.clone(),
                        );
                    }
                    _ => {}
                }
            }
            if output_lost {
                self.inputs_changed(stage_index);
            }
        }
        // Highest id first: whether a stage is still needed depends on its readers, which
        // have higher ids and are decided by then.
        for stage_index in (0..self.stages.len()).rev() {
            let stage = &self.stages[stage_index];
            let needed = StageId(stage_index) == self.shape.final_stage
                || stage.consumers.iter().any(|c| !self.stages[c.0].is_done());
            if !stage.started || !needed {
                continue;
            }
            for partition in 0..stage.parts.len() {
                let stage = &mut self.stages[stage_index];
                if !matches!(stage.parts[partition], Part::Idle) {
                    continue;
                }
                stage.parts[partition] = Part::Queued;
                stage.queue.push_back(partition);
                let part_id = PartitionId {
                    stage: StageId(stage_index),
                    partition,
                };
                if let Some(executor) = gone.get(&part_id) {
                    self.metrics.recomputed.push(RecomputedTask {
                        stage_id: StageId(stage_index),
                        partition,
                        lost_executor: executor.clone(),
                    });
                }
            }
        }
    }

    /// Stops every attempt in flight.
    fn stop_all(&mut self, actions: &mut Vec<Action>) {
        let copies: Vec<(usize, usize)> = self.copies.keys().copied().collect();
        for (stage, partition) in copies {
            self.drop_copy(stage, partition, false, actions);
        }
        for stage in &mut self.stages {
            stage.queue.clear();
            for part in &mut stage.parts {
                match part {
                    Part::Offered { task, .. } => actions.push(Action::Withdraw(*task)),
                    Part::Running { task, executor, .. } => actions.push(Action::Cancel {
                        task: *task,
                        executor: executor.clone(),
                    }),
                    Part::Queued | Part::Paused => {}
                    Part::Idle | Part::Done { .. } => continue,
                }
                *part = Part::Idle;
            }
        }
        self.in_flight = 0;
    }

    fn fail(&mut self, failure: JobFailure, actions: &mut Vec<Action>) {
        self.stop_all(actions);
        self.status = Status::Failed(failure.clone());
        actions.push(Action::Fail(failure));
    }
}

/// How long a task waits before it runs again after its `losses`-th interrupted call:
/// 200 ms, doubling each time, at most 3.2 s (0.2 + 0.4 + 0.8 + 1.6 s before a fifth try).
pub(super) fn interrupted_pause(losses: usize) -> Duration {
    let doublings = u32::try_from(losses.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(4);
    Duration::from_millis(200) * 2_u32.pow(doublings)
}

/// Durations as whole milliseconds in the log.
pub(crate) mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms: u64 = serde::Deserialize::deserialize(d)?;
        Ok(Duration::from_millis(ms))
    }
}
