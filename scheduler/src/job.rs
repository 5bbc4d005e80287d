//! [`JobRun`]: the driver of one job. The job's rules live in [`JobState`], which has no
//! I/O; the driver owns what the rules cannot: the task futures, the executors' slots
//! (through the shared [`ExecutorPool`]), the timers and the listener. It turns what
//! happens into [`Event`]s, feeds them to the state, and carries out the [`Action`]s that
//! come back. The embedded cluster and a process cluster run the same driver; only the
//! [`ExecutorClient`]s differ.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::error::DataFusionError;
use ember_executors::ExecutorError;
use ember_proto::{ShuffleLocation, TaskDefinition, TaskOutput};
use tokio::task::{AbortHandle, JoinError, JoinSet};

use super::client::ExecutorClient;
use super::durable::{Journal, JournalLine};
use super::eventlog::{EventLogWriter, unix_ms_now};
use super::events::{JobEvent, JobListener};
use super::outcome::JobOutcome;
use super::pool::{ExecutorPool, Placement};
use super::spec::{JobSpec, SchedulerConfig};
use super::state::{Action, Event, Failure, JobFailure, JobShape, JobState, Launch, Location};
use super::state::{TaskReport, Timer};
use super::ui::{BoardEntry, JobBoard};
use crate::error::{Result, SchedulerError};
use ember_proto::ids::{ExecutorId, StageId, TaskId};

type TaskResult = std::result::Result<TaskOutput, ExecutorError>;

/// An attempt in flight: where it runs, and how to stop it.
struct InFlight {
    task: TaskId,
    client: Arc<dyn ExecutorClient>,
    abort: AbortHandle,
}

/// How the job ended, once it has.
enum End {
    Finished(Vec<ShuffleLocation>),
    Failed(SchedulerError),
}

/// A job taken over from its stored events: what it did so far, and how long to wait for
/// the executors that hold its outputs to register again.
pub(super) struct Resume {
    /// Its stored events, in order.
    pub(super) lines: Vec<JournalLine>,
    /// How long its tasks wait for the executors holding its finished outputs; those that
    /// do not come back by then are lost, and their outputs recomputed.
    pub(super) wait_for: Duration,
}

/// How a job is kept for a scheduler that takes over: where its events go, and the
/// events of a job being taken over.
#[derive(Default)]
pub(super) struct Kept {
    /// Where its events go, when a state store keeps jobs.
    pub(super) journal: Option<Journal>,
    /// A job taken over from its stored events.
    pub(super) resume: Option<Resume>,
}

/// One running job.
pub(super) struct JobRun<'a> {
    job: &'a JobSpec,
    seq: u64,
    pool: &'a ExecutorPool,
    listener: Option<&'a dyn JobListener>,
    state: JobState,
    /// Launches waiting for a slot, in launch order.
    pending: VecDeque<Launch>,
    running: JoinSet<TaskResult>,
    in_flight: HashMap<tokio::task::Id, InFlight>,
    by_task: HashMap<TaskId, tokio::task::Id>,
    /// Timers due, earliest first (the number keeps equal instants in order).
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    timer_events: HashMap<u64, Timer>,
    next_timer: u64,
    settings: Arc<Vec<(String, String)>>,
    /// How far into the pool's log of lost executors this job has looked.
    lost_cursor: usize,
    /// Whether the job last heard that no executor is left.
    told_gone: bool,
    /// The error of the attempt whose failure is being fed to the state (kept whole for
    /// the client, while the state sees its text).
    last_error: Option<ExecutorError>,
    log: Option<EventLogWriter>,
    /// Where the job's events are kept for a scheduler that takes over.
    journal: Option<Journal>,
    /// A job taken over: its events, replayed when it runs.
    resume: Option<Resume>,
    /// Executors holding finished outputs of a job taken over that have not registered
    /// again yet, and until when they are waited for; nothing is placed meanwhile.
    awaiting: BTreeSet<ExecutorId>,
    awaiting_until: Option<Instant>,
    /// The job's place on the scheduler's board (the web UI).
    board: Option<BoardEntry>,
    /// When it was submitted: the events' times count from here.
    started: Instant,
    end: Option<End>,
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
        board: &Arc<JobBoard>,
        kept: Kept,
    ) -> Self {
        let Kept { journal, resume } = kept;
        let shape = JobShape::of(job, config);
        // A job taken over goes on counting its events' times from its first submission.
        let resumed_at_us = resume
            .as_ref()
            .and_then(|r| r.lines.last())
            .map_or(0, |line| line.at_us);
        let started = Instant::now()
            .checked_sub(Duration::from_micros(resumed_at_us))
            .unwrap_or_else(Instant::now);
        let started_unix_ms = unix_ms_now().saturating_sub(resumed_at_us / 1000);
        if resume.is_some()
            && let Some(dir) = &config.event_log
            && !dir.is_url()
        {
            // Its log is written again whole, from the stored events.
            let _ = std::fs::remove_file(
                std::path::Path::new(&dir.location)
                    .join(super::spec::EventLogDir::file_name(&job.job_id)),
            );
        }
        let log = config.event_log.as_ref().map(|dir| {
            EventLogWriter::new(
                dir.clone(),
                &shape,
                job.name.as_deref(),
                job.plan.as_ref(),
                started_unix_ms,
            )
        });
        let board = board.start(
            &shape,
            job.name.as_deref(),
            job.plan.as_ref(),
            started_unix_ms,
        );
        Self {
            job,
            seq,
            pool,
            listener,
            state: JobState::new(shape),
            pending: VecDeque::new(),
            running: JoinSet::new(),
            in_flight: HashMap::new(),
            by_task: HashMap::new(),
            timers: BinaryHeap::new(),
            timer_events: HashMap::new(),
            next_timer: 0,
            settings: Arc::new(job.settings.clone()),
            lost_cursor: pool.lost_since(0).1,
            told_gone: false,
            last_error: None,
            log,
            journal,
            resume,
            awaiting: BTreeSet::new(),
            awaiting_until: None,
            board: Some(board),
            started,
            end: None,
        }
    }

    /// Microseconds since the job was submitted.
    fn at_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Runs the job to its end.
    pub(super) async fn run(
        mut self,
        mut cancels: tokio::sync::mpsc::UnboundedReceiver<String>,
    ) -> Result<JobOutcome> {
        let started = Instant::now();
        let mut changes = self.pool.subscribe();
        match self.resume.take() {
            None => self.feed(Event::Submitted),
            Some(resume) => self.take_over(resume),
        }
        while self.end.is_none() {
            changes.borrow_and_update();
            self.watch_pool();
            if self.end.is_some() {
                break;
            }
            self.await_executors();
            if self.end.is_some() {
                break;
            }
            if self.awaiting.is_empty() {
                self.place();
            }
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            let awaiting_until = self.awaiting_until.filter(|_| !self.awaiting.is_empty());
            tokio::select! {
                Some(joined) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    self.task_ended(joined);
                }
                Some(reason) = cancels.recv() => self.feed(Event::Cancel { reason }),
                _ = changes.changed() => {}
                () = sleep_until(next_timer) => self.fire_timers(),
                () = sleep_until(awaiting_until) => {}
            }
        }
        // The job's end goes to the client only once its record holds every event: a
        // scheduler whose record was refused (it lost its leadership) gives none.
        if let Some(journal) = &self.journal
            && let Err(e) = journal.sync().await
        {
            self.end = Some(End::Failed(e));
        }
        // A job that had finished before it was taken over: its result is read from the
        // executors that hold it, which must have registered again to be named.
        if let (Some(End::Finished(output)), Some(until)) = (&self.end, self.awaiting_until) {
            let holders: BTreeSet<String> =
                output.iter().map(|l| l.executor_id.to_string()).collect();
            while holders.iter().any(|h| self.pool.client(h).is_none()) {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let _ = tokio::time::timeout(left, changes.changed()).await;
            }
        }
        // Nothing more is needed from tasks still in flight; wait until they are stopped
        // so none writes later.
        self.release_all();
        self.running.shutdown().await;
        let end = self.end.take();
        let status = match &end {
            Some(End::Finished(_)) => Ok(()),
            Some(End::Failed(e)) => Err(e.to_string()),
            None => Err("the job stopped".to_string()),
        };
        let at_us = self.at_us();
        if let Some(log) = self.log.take() {
            log.close(at_us, status.clone()).await;
        }
        if let Some(board) = self.board.take() {
            board.end(at_us, status);
        }
        let final_output = match end {
            Some(End::Finished(output)) => output,
            Some(End::Failed(error)) => return Err(error),
            None => {
                return Err(SchedulerError::Internal {
                    message: format!("job {} stopped without an end", self.job.job_id),
                });
            }
        };
        let mut metrics = self.state.take_metrics();
        metrics.elapsed = started.elapsed();
        let mut addresses = self.pool.addresses();
        addresses.retain(|id, _| final_output.iter().any(|l| *l.executor_id == **id));
        Ok(JobOutcome {
            final_output,
            addresses,
            metrics,
            lease: None,
        })
    }

    /// Takes over a job from its stored events: replays them through the state (and into
    /// the log and the board, not the journal, which has them), then resumes it.
    fn take_over(&mut self, resume: Resume) {
        let mut holders: BTreeSet<ExecutorId> = BTreeSet::new();
        let events = resume.lines.len();
        for line in resume.lines {
            match &line.event {
                Event::TaskFinished {
                    executor, report, ..
                } if report.locations.iter().any(|l| !l.path.contains("://")) => {
                    holders.insert(executor.clone());
                }
                Event::ExecutorLost { executor } => {
                    holders.remove(executor);
                }
                _ => {}
            }
            if let Some(log) = &mut self.log {
                log.record(line.at_us, &line.event);
            }
            if let Some(board) = &self.board {
                board.record(line.at_us, &line.event);
            }
            self.state.set_clock(line.at_us);
            for action in self.state.on(line.event) {
                match action {
                    Action::Finish { final_output } => self.end = Some(End::Finished(final_output)),
                    Action::Fail(failure) => {
                        let error = self.job_error(failure);
                        self.end = Some(End::Failed(error));
                    }
                    _ => {}
                }
            }
        }
        if let Some(log) = &mut self.log {
            log.flush();
        }
        tracing::info!(
            job = %self.job.job_id,
            events,
            done = self.state.done_attempts().len(),
            executors = holders.len(),
            "took over the job from its stored state"
        );
        self.awaiting_until = Some(Instant::now() + resume.wait_for);
        if self.end.is_some() {
            return;
        }
        self.awaiting = holders;
        // A job whose submission was not recorded yet starts as it would have.
        if matches!(self.state.status(), super::state::Status::New) {
            self.feed(Event::Submitted);
        } else {
            self.feed(Event::Recovered);
        }
    }

    /// For a job taken over: stops waiting for the executors that registered again, and
    /// declares lost those still missing once the wait is over.
    fn await_executors(&mut self) {
        if self.awaiting.is_empty() {
            return;
        }
        let pool = self.pool;
        self.awaiting.retain(|e| pool.client(e.as_str()).is_none());
        let over = self
            .awaiting_until
            .is_none_or(|until| Instant::now() >= until);
        if over {
            for executor in std::mem::take(&mut self.awaiting) {
                tracing::warn!(
                    job = %self.job.job_id,
                    executor = %executor,
                    "executor {executor} held outputs of the job and did not register again in time"
                );
                self.feed(Event::ExecutorLost { executor });
            }
        }
    }

    /// Feeds `event` to the state (and the log) and carries out what comes back.
    fn feed(&mut self, event: Event) {
        let at_us = self.at_us();
        // A look for slow tasks that found none changes nothing a replay needs: it is
        // logged only when it launched a copy (four times a second otherwise).
        let quiet = matches!(event, Event::Timer(Timer::Speculate));
        if !quiet {
            self.record(at_us, &event);
        }
        let recomputed = self.state.metrics().recomputed.len();
        let refused = self.state.metrics().refused.len();
        self.state.set_clock(at_us);
        let logged = quiet.then(|| event.clone());
        let actions = self.state.on(event);
        if let Some(event) = logged
            && actions.iter().any(|a| matches!(a, Action::Launch(_)))
        {
            self.record(at_us, &event);
        }
        for action in actions {
            self.act(action);
        }
        for task in self
            .state
            .metrics()
            .recomputed
            .get(recomputed..)
            .unwrap_or_default()
        {
            tracing::warn!(
                job = %self.job.job_id,
                stage = task.stage_id.index(),
                partition = task.partition,
                lost_executor = %task.lost_executor,
                "recomputing map task {}/{}.{}: its output was on lost executor {}",
                self.job.job_id,
                task.stage_id,
                task.partition,
                task.lost_executor
            );
        }
        for report in self
            .state
            .metrics()
            .refused
            .get(refused..)
            .unwrap_or_default()
        {
            tracing::warn!(
                job = %self.job.job_id,
                executor = %report.executor_id,
                "refused a stale {} of task {}/{}.{} attempt {}: executor {} was declared lost \
                 and the task ran again",
                if report.succeeded { "result" } else { "failure" },
                self.job.job_id,
                report.stage_id,
                report.partition,
                report.attempt,
                report.executor_id
            );
        }
    }

    /// Appends `event` to the log and the board.
    fn record(&mut self, at_us: u64, event: &Event) {
        if let Some(journal) = &self.journal {
            journal.record(at_us, event);
        }
        if let Some(log) = &mut self.log {
            log.record(at_us, event);
        }
        if let Some(board) = &self.board {
            board.record(at_us, event);
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Launch(launch) => {
                // A retry goes first, as it holds up its stage.
                if launch.urgent {
                    self.pending.push_front(launch);
                } else {
                    self.pending.push_back(launch);
                }
            }
            Action::Withdraw(task) => self.pending.retain(|l| l.task != task),
            Action::Cancel { task, executor } => self.cancel(task, &executor),
            Action::DeclareLost { executor, reason } => {
                self.pool.mark_lost(executor.as_str(), &reason);
            }
            Action::Straggler { executor } => self.pool.mark_straggler(executor.as_str()),
            Action::StartTimer { timer, after } => {
                let key = self.next_timer;
                self.next_timer += 1;
                self.timer_events.insert(key, timer);
                self.timers.push(Reverse((Instant::now() + after, key)));
            }
            Action::Notify(event) => {
                if let JobEvent::StageAdapted {
                    stage_id,
                    tasks,
                    decisions,
                    reads,
                    ..
                } = &event
                {
                    for decision in decisions {
                        tracing::info!(job = %self.job.job_id, "stage {stage_id}: {decision}");
                    }
                    let recorded = Event::StageAdapted {
                        stage: *stage_id,
                        tasks: *tasks,
                        decisions: decisions.clone(),
                        reads: reads.clone(),
                    };
                    self.record(self.at_us(), &recorded);
                }
                if let JobEvent::TaskSpeculated {
                    stage_id,
                    partition,
                    attempt,
                    original_executor,
                } = &event
                {
                    let recorded = Event::TaskSpeculated {
                        task: TaskId {
                            stage: *stage_id,
                            partition: *partition,
                            attempt: *attempt,
                        },
                        original: original_executor.clone(),
                    };
                    self.record(self.at_us(), &recorded);
                }
                if let Some(log) = &mut self.log
                    && matches!(event, JobEvent::StageFinished { .. })
                {
                    log.flush();
                }
                if let JobEvent::TaskFailed {
                    stage_id,
                    partition,
                    attempt,
                    error,
                    will_retry: true,
                } = &event
                    && error.starts_with("the task runs again")
                {
                    tracing::warn!(
                        job = %self.job.job_id,
                        "task {stage_id}.{partition}#{attempt}: {error}"
                    );
                }
                if let Some(listener) = self.listener {
                    listener.on_event(&event);
                }
            }
            Action::Finish { final_output } => self.end = Some(End::Finished(final_output)),
            Action::Fail(failure) => {
                let error = self.job_error(failure);
                self.end = Some(End::Failed(error));
            }
        }
    }

    /// The error the client sees for `failure`.
    fn job_error(&mut self, failure: JobFailure) -> SchedulerError {
        let job_id = self.job.job_id.clone();
        match failure {
            JobFailure::Task {
                task,
                attempts,
                failure,
            } => SchedulerError::TaskFailed {
                stage_id: task.stage.index(),
                partition: task.partition,
                attempts,
                source: self
                    .last_error
                    .take()
                    .unwrap_or_else(|| ExecutorError::Remote {
                        message: failure.message().to_string(),
                        retryable: false,
                    }),
            },
            JobFailure::NoExecutors { waited } => SchedulerError::NoExecutorsLeft {
                job_id: job_id.to_string(),
                waited,
            },
            JobFailure::Cancelled { reason } => SchedulerError::Cancelled {
                job_id: job_id.to_string(),
                reason,
            },
            JobFailure::Stuck => SchedulerError::Internal {
                message: format!("job {job_id} has nothing to run before its final stage"),
            },
        }
    }

    /// Looks at the pool: executors lost since the last look, and whether any is left.
    fn watch_pool(&mut self) {
        let (lost, cursor) = self.pool.lost_since(self.lost_cursor);
        self.lost_cursor = cursor;
        for executor in lost {
            self.feed(Event::ExecutorLost { executor });
        }
        let gone = self.pool.is_empty();
        if gone != self.told_gone && self.end.is_none() {
            self.told_gone = gone;
            self.feed(if gone {
                Event::ExecutorsGone
            } else {
                Event::ExecutorsBack
            });
        }
    }

    /// Starts waiting launches while the pool gives slots.
    fn place(&mut self) {
        let mut waiting = false;
        let mut peers: Option<Arc<HashMap<String, String>>> = None;
        // Launches that must not run where the free slots are (speculative copies) wait
        // aside, without holding up the launches behind them.
        let mut aside: Vec<Launch> = Vec::new();
        while let Some(launch) = self.pending.front() {
            let client = {
                let placement = Placement {
                    local_bytes: launch
                        .local_bytes
                        .iter()
                        .map(|(e, b)| (e.as_str(), *b))
                        .collect(),
                    avoid: launch.avoid.as_ref().map(ExecutorId::as_str),
                    exclude: launch.exclude.as_ref().map(ExecutorId::as_str),
                };
                self.pool.acquire(self.seq, &placement)
            };
            let Some(client) = client else {
                if launch.exclude.is_some()
                    && let Some(launch) = self.pending.pop_front()
                {
                    aside.push(launch);
                    continue;
                }
                waiting = true;
                break;
            };
            let Some(launch) = self.pending.pop_front() else {
                break;
            };
            let peers = peers.get_or_insert_with(|| self.pool.shared_addresses());
            self.start(launch, client, Arc::clone(peers));
            if self.end.is_some() {
                break;
            }
        }
        for launch in aside.into_iter().rev() {
            self.pending.push_front(launch);
        }
        self.pool.set_waiting(self.seq, waiting);
    }

    fn start(
        &mut self,
        launch: Launch,
        client: Arc<dyn ExecutorClient>,
        peers: Arc<HashMap<String, String>>,
    ) {
        let task = launch.task;
        let stage = task.stage.index();
        let definition = TaskDefinition {
            job_id: self.job.job_id.clone(),
            stage_id: StageId(stage),
            partition: task.partition,
            attempt: task.attempt,
            plan: Arc::clone(&self.job.stages[stage].plan),
            inputs: launch.inputs,
            settings: Arc::clone(&self.settings),
            peers,
            plan_partition: launch.plan_partition,
        };
        let executor = client.id().clone();
        let abort = self.running.spawn(client.launch(definition));
        self.by_task.insert(task, abort.id());
        self.in_flight.insert(
            abort.id(),
            InFlight {
                task,
                client,
                abort,
            },
        );
        self.feed(Event::TaskStarted { task, executor });
    }

    /// Stops attempt `task` on `executor`: its future here, and its work and files there.
    fn cancel(&mut self, task: TaskId, executor: &ExecutorId) {
        let Some(id) = self.by_task.remove(&task) else {
            return;
        };
        let lost = self.pool.client(executor.as_str()).is_none();
        let client = if lost {
            // Its executor was declared lost, but may only be cut off: the call stays
            // open (the cancel below is best-effort), and whatever it answers while the
            // job runs (a result, or an error once the executor rejoins and drops the old
            // id's tasks, or once the connection breaks) goes to the state, which refuses
            // it as stale and says so.
            let Some(flight) = self.in_flight.get(&id) else {
                return;
            };
            Arc::clone(&flight.client)
        } else {
            let Some(flight) = self.in_flight.remove(&id) else {
                return;
            };
            flight.abort.abort();
            self.pool.release(self.seq, executor.as_str());
            flight.client
        };
        let stop = client.cancel_task(
            &self.job.job_id,
            task.stage.index(),
            task.partition,
            task.attempt,
        );
        tokio::spawn(async move {
            if let Err(e) = stop.await {
                tracing::debug!(task = %task, "could not cancel the attempt: {e}");
            }
        });
    }

    /// Takes in the result of a task that ended.
    fn task_ended(
        &mut self,
        joined: std::result::Result<(tokio::task::Id, TaskResult), JoinError>,
    ) {
        let (id, result) = match joined {
            Ok((id, result)) => (id, result),
            // Cancelled here; the state already knows.
            Err(e) if e.is_cancelled() => return,
            Err(e) => (
                e.id(),
                Err(ExecutorError::Execution(DataFusionError::Execution(
                    "the task panicked".into(),
                ))),
            ),
        };
        // No entry: it was cancelled, and the state has moved on.
        let Some(flight) = self.in_flight.remove(&id) else {
            return;
        };
        self.by_task.remove(&flight.task);
        let executor = flight.client.id();
        self.pool.release(self.seq, executor.as_str());
        let task = flight.task;
        let result = match result {
            // The process behind that address registered again under another id: its
            // output is not where the scheduler would look for it.
            Ok(output) if output.executor_id != executor.as_str() => Err(ExecutorError::Lost {
                executor_id: executor.to_string(),
                message: format!(
                    "the task was answered by executor {} instead",
                    output.executor_id
                ),
            }),
            other => other,
        };
        match result {
            Ok(output) => {
                tracing::debug!(
                    job = %self.job.job_id,
                    task = %task,
                    executor = %executor,
                    rows = output.rows(),
                    bytes = output.bytes(),
                    elapsed_ms = output.elapsed.as_secs_f64() * 1e3,
                    "task finished"
                );
                let report = TaskReport {
                    locations: output.locations.iter().map(Location::of).collect(),
                    elapsed: output.elapsed,
                    spilled_bytes: output.spilled_bytes,
                    spills: output.spills,
                    compression: output.compression,
                    accumulators: output.accumulators,
                    phases: output.phases,
                };
                self.feed(Event::TaskFinished {
                    task,
                    executor: executor.clone(),
                    report,
                });
            }
            Err(error) => {
                tracing::warn!(
                    job = %self.job.job_id,
                    task = %task,
                    executor = %executor,
                    "task failed: {error}"
                );
                let failure = Failure::of(&error);
                self.last_error = Some(error);
                self.feed(Event::TaskFailed {
                    task,
                    executor: executor.clone(),
                    failure,
                });
                self.last_error = None;
            }
        }
    }

    /// Feeds every timer that is due.
    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            if at > now || self.end.is_some() {
                break;
            }
            self.timers.pop();
            if let Some(timer) = self.timer_events.remove(&key) {
                self.feed(Event::Timer(timer));
            }
        }
    }

    /// Gives back the slots of every attempt in flight and stops waiting for slots.
    fn release_all(&mut self) {
        for (_, flight) in self.in_flight.drain() {
            flight.abort.abort();
            self.pool.release(self.seq, flight.client.id());
        }
        self.by_task.clear();
        self.pending.clear();
        self.pool.set_waiting(self.seq, false);
    }
}

/// Sleeps until `at`, or for ever when there is no timer.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => futures::future::pending().await,
    }
}
