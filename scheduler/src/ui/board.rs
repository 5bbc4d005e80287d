//! [`JobBoard`]: the jobs a scheduler runs and has run, as the web UI reads them. Each
//! job's loop writes its events here as it feeds them to its state (the same timed events
//! its event log gets), so a live job and a logged one are read the same way. Finished
//! jobs are frozen (their view worked out once) and the oldest are dropped past
//! [`KEEP_FINISHED`]; what they counted stays in the totals `/metrics` reports.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use crate::eventlog::{LoggedJob, unix_ms_now};
use crate::spec::JobPlan;
use crate::state::{Event, JobShape};
use crate::sync::lock;

use super::metrics::{SchedulerMetrics, TaskTotals};
use super::view::JobView;

/// Finished jobs kept for the UI.
pub const KEEP_FINISHED: usize = 1000;

/// One job as shown: its log and its view.
#[derive(Debug, Clone)]
pub struct ShownJob {
    /// The log (header and events).
    pub log: Arc<LoggedJob>,
    /// What it comes to.
    pub view: Arc<JobView>,
}

impl ShownJob {
    /// The job of `log`, its view worked out now.
    pub fn of(log: Arc<LoggedJob>) -> Self {
        let view = Arc::new(JobView::of(&log, unix_ms_now()));
        Self { log, view }
    }
}

/// A job on the board.
enum Entry {
    Live(Arc<Mutex<LoggedJob>>),
    Finished(Arc<Frozen>),
}

/// A finished job: its log, and its view, worked out when first asked for (not on the
/// job loop's way out).
struct Frozen {
    log: Arc<LoggedJob>,
    view: OnceLock<Arc<JobView>>,
}

impl Frozen {
    fn shown(&self) -> ShownJob {
        let view = self
            .view
            .get_or_init(|| Arc::new(JobView::of(&self.log, unix_ms_now())));
        ShownJob {
            log: Arc::clone(&self.log),
            view: Arc::clone(view),
        }
    }
}

#[derive(Default)]
struct Board {
    /// Jobs by submission order.
    jobs: BTreeMap<u64, Entry>,
    /// Finished jobs, oldest first.
    finished: VecDeque<u64>,
    next: u64,
    /// What the jobs dropped from the board counted.
    retired: TaskTotals,
}

/// The jobs of one scheduler, for the web UI and `/metrics`.
#[derive(Default)]
pub struct JobBoard {
    board: Mutex<Board>,
    metrics: SchedulerMetrics,
}

impl std::fmt::Debug for JobBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobBoard").finish_non_exhaustive()
    }
}

/// A job's place on the board, held by its loop.
pub struct BoardEntry {
    board: Arc<JobBoard>,
    seq: u64,
    job: Arc<Mutex<LoggedJob>>,
    ended: bool,
}

/// A job whose loop is dropped before its end (its client went away) ends on the board
/// too, as failed.
impl Drop for BoardEntry {
    fn drop(&mut self) {
        if !self.ended {
            let at_us = lock(&self.job).last_at_us;
            self.finish(at_us, Err("the job stopped: its client went away".into()));
        }
    }
}

impl JobBoard {
    /// Puts a job on the board as it starts.
    pub(crate) fn start(
        self: &Arc<Self>,
        shape: &JobShape,
        name: Option<&str>,
        plan: Option<&JobPlan>,
        started_unix_ms: u64,
    ) -> BoardEntry {
        let job = Arc::new(Mutex::new(LoggedJob {
            file: String::new(),
            shape: shape.clone(),
            name: name.map(str::to_string),
            started_unix_ms,
            plan: plan.cloned(),
            events: Vec::new(),
            end: None,
            last_at_us: 0,
        }));
        let seq = {
            let mut board = lock(&self.board);
            let seq = board.next;
            board.next += 1;
            board.jobs.insert(seq, Entry::Live(Arc::clone(&job)));
            seq
        };
        self.metrics.job_submitted();
        BoardEntry {
            board: Arc::clone(self),
            seq,
            job,
            ended: false,
        }
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Vec<ShownJob> {
        self.snapshot().0
    }

    /// Every job, and what the jobs dropped from the board counted, as of one moment.
    fn snapshot(&self) -> (Vec<ShownJob>, TaskTotals) {
        let (entries, retired) = {
            let board = lock(&self.board);
            let entries: Vec<Result<Arc<Frozen>, Arc<Mutex<LoggedJob>>>> = board
                .jobs
                .values()
                .map(|entry| match entry {
                    Entry::Finished(frozen) => Ok(Arc::clone(frozen)),
                    Entry::Live(job) => Err(Arc::clone(job)),
                })
                .collect();
            (entries, board.retired)
        };
        let jobs = entries
            .into_iter()
            .map(|entry| match entry {
                Ok(frozen) => frozen.shown(),
                Err(live) => ShownJob::of(Arc::new(lock(&live).clone())),
            })
            .collect();
        (jobs, retired)
    }

    /// One job by id.
    pub fn job(&self, job_id: &str) -> Option<ShownJob> {
        let found = lock(&self.board)
            .jobs
            .values()
            .find_map(|entry| match entry {
                Entry::Finished(frozen) if *frozen.log.shape.job_id == *job_id => {
                    Some(Ok(Arc::clone(frozen)))
                }
                Entry::Live(job) if *lock(job).shape.job_id == *job_id => {
                    Some(Err(Arc::clone(job)))
                }
                _ => None,
            })?;
        Some(match found {
            Ok(frozen) => frozen.shown(),
            Err(live) => ShownJob::of(Arc::new(lock(&live).clone())),
        })
    }

    /// The metrics, with the task totals of every job seen brought up to date.
    pub fn metrics(&self) -> &SchedulerMetrics {
        let (jobs, retired) = self.snapshot();
        self.metrics
            .catch_up(retired, jobs.iter().map(|j| j.view.as_ref()));
        &self.metrics
    }
}

impl BoardEntry {
    /// Adds one event, `at_us` after the job's start.
    pub(crate) fn record(&self, at_us: u64, event: &Event) {
        if let Event::TaskFinished { report, .. } = event {
            self.board.metrics.task_finished(report);
        }
        let mut job = lock(&self.job);
        job.last_at_us = job.last_at_us.max(at_us);
        job.events.push((at_us, event.clone()));
    }

    /// Ends the job: it is frozen, and the oldest finished jobs past [`KEEP_FINISHED`]
    /// leave the board.
    pub(crate) fn end(mut self, at_us: u64, status: Result<(), String>) {
        self.finish(at_us, status);
    }

    fn finish(&mut self, at_us: u64, status: Result<(), String>) {
        self.ended = true;
        // The board is held while the events move out of the live entry, so no reader
        // sees the job without them (the board, then the job: the order `job()` takes).
        let mut board = lock(&self.board.board);
        let log = {
            let mut job = lock(&self.job);
            job.last_at_us = job.last_at_us.max(at_us);
            job.end = Some(status);
            // The events move to the frozen log (a job's may be hundreds of thousands).
            let events = std::mem::take(&mut job.events);
            Arc::new(LoggedJob {
                events,
                ..job.clone()
            })
        };
        let frozen = Arc::new(Frozen {
            log,
            view: OnceLock::new(),
        });
        board.jobs.insert(self.seq, Entry::Finished(frozen));
        board.finished.push_back(self.seq);
        while board.finished.len() > KEEP_FINISHED {
            let Some(oldest) = board.finished.pop_front() else {
                break;
            };
            if let Some(Entry::Finished(gone)) = board.jobs.remove(&oldest) {
                board.retired.add(&gone.shown().view);
            }
        }
    }
}
