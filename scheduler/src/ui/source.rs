//! Where the web UI's figures come from: a [`UiSource`]. [`LiveSource`] is a running
//! scheduler (its job board and executor pool); [`HistorySource`] is a folder of event
//! logs (local or object store), read again when it changed, so a log still being written
//! shows its job as running. The pages and the REST API are the same over both.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use crate::eventlog::{list_logs, parse_log, read_log, unix_ms_now};
use crate::pool::ExecutorPool;
use crate::spec::EventLogDir;
use crate::sync::lock;

use super::board::{JobBoard, ShownJob};

/// One executor on the executors page and in `/api/v1/executors`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ExecutorRow {
    /// Its id.
    pub executor_id: String,
    /// Where it serves (`None` in the embedded cluster, or unknown from a log).
    pub address: Option<String>,
    /// Its slots (0 when unknown).
    pub slots: usize,
    /// `alive` or `lost`.
    pub state: String,
    /// Why it was declared lost.
    pub lost_reason: Option<String>,
    /// Task attempts running on it now.
    pub tasks_running: usize,
    /// Successful task attempts (of the jobs shown).
    pub tasks_succeeded: usize,
    /// Failed task attempts (of the jobs shown).
    pub tasks_failed: usize,
    /// Milliseconds since its last heartbeat (or since it was lost); `None` in process.
    pub last_heartbeat_ms_ago: Option<u64>,
    /// Milliseconds since 1970 of its last event in a log (history server).
    pub last_seen_unix_ms: Option<u64>,
    /// Bytes held in its memory pool.
    pub memory_used: u64,
    /// Its memory pool's limit (0: none or unknown).
    pub memory_limit: u64,
    /// Shuffle bytes it has served.
    pub shuffle_bytes_served: u64,
}

/// The figures behind the pages.
pub trait UiSource: Send + Sync + 'static {
    /// What the pages call it: `scheduler` or `history`.
    fn kind(&self) -> &'static str;
    /// Brings what it read up to date (a log folder read again); nothing for a live one.
    fn refresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    /// Every job, oldest first.
    fn jobs(&self) -> Vec<ShownJob>;
    /// One job by id.
    fn job(&self, job_id: &str) -> Option<ShownJob> {
        self.jobs()
            .into_iter()
            .find(|j| *j.log.shape.job_id == *job_id)
    }
    /// The executors.
    fn executors(&self) -> Vec<ExecutorRow>;
    /// The Prometheus text of `/metrics`, where it has one.
    fn metrics(&self) -> Option<String> {
        None
    }
}

/// Attempts per executor over `jobs`, with whether one was lost and when it was last seen.
fn activity(jobs: &[ShownJob]) -> BTreeMap<String, super::view::ExecutorActivity> {
    let mut all: BTreeMap<String, super::view::ExecutorActivity> = BTreeMap::new();
    for job in jobs {
        for (id, seen) in &job.view.executors {
            let entry = all.entry(id.clone()).or_default();
            entry.tasks_succeeded += seen.tasks_succeeded;
            entry.tasks_failed += seen.tasks_failed;
            entry.tasks_running += seen.tasks_running;
            entry.lost |= seen.lost;
            entry.last_seen_unix_ms = entry.last_seen_unix_ms.max(seen.last_seen_unix_ms);
        }
    }
    all
}

/// A running scheduler.
pub struct LiveSource {
    board: Arc<JobBoard>,
    pool: Arc<ExecutorPool>,
}

impl LiveSource {
    /// The scheduler of `board` and `pool`.
    pub fn new(board: Arc<JobBoard>, pool: Arc<ExecutorPool>) -> Self {
        Self { board, pool }
    }
}

impl UiSource for LiveSource {
    fn kind(&self) -> &'static str {
        "scheduler"
    }

    fn jobs(&self) -> Vec<ShownJob> {
        self.board.jobs()
    }

    fn job(&self, job_id: &str) -> Option<ShownJob> {
        self.board.job(job_id)
    }

    fn executors(&self) -> Vec<ExecutorRow> {
        let seen = activity(&self.board.jobs());
        self.pool
            .status_with_lost()
            .into_iter()
            .map(|status| {
                let done = seen.get(status.id.as_str()).cloned().unwrap_or_default();
                ExecutorRow {
                    executor_id: status.id.to_string(),
                    address: status.address.clone(),
                    slots: status.slots,
                    state: if status.alive { "alive" } else { "lost" }.to_string(),
                    lost_reason: status.lost_reason.clone(),
                    tasks_running: status.running_tasks,
                    tasks_succeeded: done.tasks_succeeded,
                    tasks_failed: done.tasks_failed,
                    last_heartbeat_ms_ago: status
                        .last_heartbeat_ago
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    last_seen_unix_ms: None,
                    memory_used: status.memory_used,
                    memory_limit: status.memory_limit,
                    shuffle_bytes_served: status.shuffle_bytes_served,
                }
            })
            .collect()
    }

    fn metrics(&self) -> Option<String> {
        let metrics = self.board.metrics();
        Some(metrics.encode(&self.pool.status_with_lost()))
    }
}

/// What the history server read of one log.
struct ReadLog {
    size: u64,
    job: ShownJob,
}

/// A folder of event logs.
pub struct HistorySource {
    dir: EventLogDir,
    /// The logs read, by file, with their size when read.
    read: Mutex<HashMap<String, ReadLog>>,
    /// When the folder was last listed.
    listed: Mutex<Option<Instant>>,
    /// One reader at a time: requests that come while it reads wait for its result.
    reading: tokio::sync::Mutex<()>,
    /// Lines that could not be read at the last reading, as `FILE:LINE: problem`.
    problems: Mutex<Vec<String>>,
}

/// How long a listing of the log folder is trusted.
const RELIST_AFTER: Duration = Duration::from_secs(1);

impl HistorySource {
    /// The logs under `dir`, read at the first request.
    pub fn new(dir: EventLogDir) -> Self {
        Self {
            dir,
            read: Mutex::default(),
            listed: Mutex::default(),
            reading: tokio::sync::Mutex::new(()),
            problems: Mutex::default(),
        }
    }

    /// Lines skipped at the last reading, as `FILE:LINE: problem`.
    pub fn problems(&self) -> Vec<String> {
        lock(&self.problems).clone()
    }

    async fn reread(&self) {
        let _one = self.reading.lock().await;
        if lock(&self.listed).is_some_and(|at| at.elapsed() < RELIST_AFTER) {
            return;
        }
        let (store, files) = match list_logs(&self.dir).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!("history: {e}");
                *lock(&self.problems) = vec![e.to_string()];
                return;
            }
        };
        let mut problems = Vec::new();
        let mut fresh = Vec::new();
        {
            let read = lock(&self.read);
            for log in &files {
                if read.get(&log.file).is_none_or(|r| r.size != log.size) {
                    fresh.push(log.clone());
                }
            }
        }
        let mut parsed = Vec::with_capacity(fresh.len());
        for log in fresh {
            match read_log(store.as_ref(), &log).await {
                Ok(text) => {
                    if let Some(job) = parse_log(&log.file, &text, &mut problems) {
                        parsed.push((log, job));
                    }
                }
                Err(problem) => problems.push(problem),
            }
        }
        let mut read = lock(&self.read);
        read.retain(|file, _| files.iter().any(|f| f.file == *file));
        for (log, job) in parsed {
            read.insert(
                log.file.clone(),
                ReadLog {
                    size: log.size,
                    job: ShownJob::of(Arc::new(job)),
                },
            );
        }
        // A job still running is seen again (its duration grows) at each reading.
        let now = unix_ms_now();
        for entry in read.values_mut() {
            if entry.job.log.end.is_none() {
                entry.job = ShownJob {
                    log: Arc::clone(&entry.job.log),
                    view: Arc::new(super::view::JobView::of(&entry.job.log, now)),
                };
            }
        }
        drop(read);
        for problem in &problems {
            tracing::warn!("history: skipped {problem}");
        }
        *lock(&self.problems) = problems;
        *lock(&self.listed) = Some(Instant::now());
    }
}

impl UiSource for HistorySource {
    fn kind(&self) -> &'static str {
        "history"
    }

    fn refresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.reread())
    }

    fn jobs(&self) -> Vec<ShownJob> {
        let mut jobs: Vec<ShownJob> = lock(&self.read).values().map(|r| r.job.clone()).collect();
        jobs.sort_by(|a, b| {
            (a.log.started_unix_ms, &a.log.file).cmp(&(b.log.started_unix_ms, &b.log.file))
        });
        jobs
    }

    fn executors(&self) -> Vec<ExecutorRow> {
        activity(&self.jobs())
            .into_iter()
            .map(|(id, seen)| ExecutorRow {
                executor_id: id,
                state: if seen.lost { "lost" } else { "alive" }.to_string(),
                tasks_running: seen.tasks_running,
                tasks_succeeded: seen.tasks_succeeded,
                tasks_failed: seen.tasks_failed,
                last_seen_unix_ms: Some(seen.last_seen_unix_ms),
                ..ExecutorRow::default()
            })
            .collect()
    }
}
