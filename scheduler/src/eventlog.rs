//! The event log: every job's [`Event`]s, appended as JSON lines to one file per job
//! (`DIR/JOB_ID.jsonl`) in a local folder or under an object-store URL. The first line
//! holds the job's [`JobShape`], the last how it ended; replaying the events in between
//! through a fresh [`JobState`] rebuilds the state the live run ended in, which is how
//! `ember history` (and later the web UI) reads a log.
//!
//! Schema, version [`VERSION`]; each line is one object with `"v"` and `"kind"`:
//! - `{"v":1,"kind":"job","job":{...JobShape},"name":"...","started_unix_ms":N}`
//! - `{"v":1,"kind":"event","at_us":N,"event":{"event":"task_finished",...}}`
//! - `{"v":1,"kind":"end","at_us":N,"error":null}` (`error` is the text of a failure)
//!
//! `at_us` counts microseconds from the job's start. Lines are written at each stage
//! boundary and at the end (a local file is appended to; an object, which cannot be
//! appended to, is written whole again). A reader reports a line it cannot parse with its
//! file and line number and reads on.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ember_executors::storage::{location_url, resolve};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use super::spec::{EventLogDir, JobPlan};
use super::state::{Event, JobShape, JobState};
use crate::error::{Result, SchedulerError};

/// The schema version written in every line.
pub const VERSION: u32 = 1;

/// Milliseconds since 1970, now.
pub(crate) fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One line of a log.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Line {
    v: u32,
    #[serde(flatten)]
    body: Body,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Body {
    Job {
        job: JobShape,
        #[serde(default)]
        name: Option<String>,
        started_unix_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plan: Option<JobPlan>,
    },
    Event {
        at_us: u64,
        event: Event,
    },
    End {
        at_us: u64,
        #[serde(default)]
        error: Option<String>,
    },
}

/// Writes one job's log. Errors are logged, not raised: a log that cannot be written
/// must not fail the job.
pub(super) struct EventLogWriter {
    dir: EventLogDir,
    job_id: String,
    /// Lines not yet written (a local file), or every line (an object).
    buffer: Vec<u8>,
    /// Set once writing failed, so the warning is given once.
    broken: bool,
    /// The object writes in flight, newest last; only the newest content is kept.
    version: Arc<AtomicU64>,
    uploads: Vec<tokio::task::JoinHandle<()>>,
}

impl EventLogWriter {
    /// A log for the job of `shape`, its first line written at once.
    pub(super) fn new(
        dir: EventLogDir,
        shape: &JobShape,
        name: Option<&str>,
        plan: Option<&JobPlan>,
        started_unix_ms: u64,
    ) -> Self {
        let mut writer = Self {
            dir,
            job_id: shape.job_id.to_string(),
            buffer: Vec::new(),
            broken: false,
            version: Arc::new(AtomicU64::new(0)),
            uploads: Vec::new(),
        };
        writer.push(Body::Job {
            job: shape.clone(),
            name: name.map(str::to_string),
            started_unix_ms,
            plan: plan.cloned(),
        });
        writer.flush();
        writer
    }

    fn push(&mut self, body: Body) {
        let line = Line { v: VERSION, body };
        match serde_json::to_writer(&mut self.buffer, &line) {
            Ok(()) => self.buffer.push(b'\n'),
            Err(e) => self.warn(&format!("could not encode an event: {e}")),
        }
    }

    fn warn(&mut self, message: &str) {
        if !self.broken {
            self.broken = true;
            tracing::warn!(job = %self.job_id, dir = %self.dir.location, "event log: {message}");
        }
    }

    /// Adds one event, `at_us` after the job's start (written at the next flush).
    pub(super) fn record(&mut self, at_us: u64, event: &Event) {
        self.push(Body::Event {
            at_us,
            event: event.clone(),
        });
    }

    /// Writes what was added since the last flush.
    pub(super) fn flush(&mut self) {
        if self.dir.is_url() {
            self.upload();
            return;
        }
        if self.buffer.is_empty() {
            return;
        }
        let path = PathBuf::from(&self.dir.location).join(EventLogDir::file_name(&self.job_id));
        let written = std::fs::create_dir_all(&self.dir.location).and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?
                .write_all(&self.buffer)
        });
        match written {
            Ok(()) => self.buffer.clear(),
            Err(e) => {
                let message = format!("{}: {e}", path.display());
                self.buffer.clear();
                self.warn(&message);
            }
        }
    }

    /// Writes the whole log as one object, in the background; a later write wins.
    fn upload(&mut self) {
        let url = match location_url(&self.dir.location) {
            Ok(folder) => format!("{folder}{}", EventLogDir::file_name(&self.job_id)),
            Err(e) => return self.warn(&e.to_string()),
        };
        let (store, path) = match resolve(&url, &self.dir.options) {
            Ok(found) => found,
            Err(e) => return self.warn(&e.to_string()),
        };
        let version = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        let latest = Arc::clone(&self.version);
        let payload = object_store::PutPayload::from(self.buffer.clone());
        self.uploads.retain(|u| !u.is_finished());
        self.uploads.push(tokio::spawn(async move {
            if latest.load(Ordering::SeqCst) != version {
                return;
            }
            if let Err(e) = store.put(&path, payload).await {
                tracing::warn!("event log: writing {url}: {e}");
            }
        }));
    }

    /// Writes the last line (`error` when the job failed) and waits until all is written.
    pub(super) async fn close(mut self, at_us: u64, status: std::result::Result<(), String>) {
        self.push(Body::End {
            at_us,
            error: status.err(),
        });
        if self.dir.is_url() {
            // Earlier uploads finish first, so the last one written is the whole log.
            for upload in std::mem::take(&mut self.uploads) {
                let _ = upload.await;
            }
            self.upload();
            for upload in std::mem::take(&mut self.uploads) {
                let _ = upload.await;
            }
        } else {
            self.flush();
        }
    }
}

/// One job's log, as read.
#[derive(Debug, Clone)]
pub struct LoggedJob {
    /// The log file (path or URL).
    pub file: String,
    /// The job's shape.
    pub shape: JobShape,
    /// Its name (the SQL text or the job's name), if it was given one.
    pub name: Option<String>,
    /// When it started, in milliseconds since 1970.
    pub started_unix_ms: u64,
    /// Its plan for people, when the log has it.
    pub plan: Option<JobPlan>,
    /// Its events, with microseconds since its start.
    pub events: Vec<(u64, Event)>,
    /// How it ended: `Some(Ok)` succeeded, `Some(Err(text))` failed, `None` still running
    /// (or its scheduler died before the end).
    pub end: Option<std::result::Result<(), String>>,
    /// Microseconds from its start to its last line.
    pub last_at_us: u64,
}

impl LoggedJob {
    /// The job's state after its events, replayed through a fresh [`JobState`].
    pub fn replay(&self) -> JobState {
        let mut state = JobState::new(self.shape.clone());
        for (at_us, event) in &self.events {
            state.set_clock(*at_us);
            state.on(event.clone());
        }
        state
    }
}

impl LoggedJob {
    /// The job as the text of a log file, as the scheduler writes it (what [`parse_log`]
    /// reads back): for tools and benchmarks that make logs.
    pub fn to_log_text(&self) -> String {
        let mut lines = vec![Body::Job {
            job: self.shape.clone(),
            name: self.name.clone(),
            started_unix_ms: self.started_unix_ms,
            plan: self.plan.clone(),
        }];
        lines.extend(self.events.iter().map(|(at_us, event)| Body::Event {
            at_us: *at_us,
            event: event.clone(),
        }));
        if let Some(end) = &self.end {
            lines.push(Body::End {
                at_us: self.last_at_us,
                error: end.clone().err(),
            });
        }
        let mut text = String::new();
        for body in lines {
            if let Ok(line) = serde_json::to_string(&Line { v: VERSION, body }) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        text
    }
}

/// What reading a log folder found: the jobs, and the lines that could not be read.
#[derive(Debug, Default)]
pub struct LogScan {
    /// Every job found, oldest first.
    pub jobs: Vec<LoggedJob>,
    /// `FILE:LINE: problem` for every line skipped.
    pub problems: Vec<String>,
}

/// Parses one log's text; `file` names it in problems.
pub fn parse_log(file: &str, text: &str, problems: &mut Vec<String>) -> Option<LoggedJob> {
    let mut job: Option<LoggedJob> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let line: Line = match serde_json::from_str(raw) {
            Ok(line) => line,
            Err(e) => {
                problems.push(format!("{file}:{number}: {e}"));
                continue;
            }
        };
        if line.v > VERSION {
            problems.push(format!(
                "{file}:{number}: schema version {} is newer than this build reads ({VERSION})",
                line.v
            ));
            continue;
        }
        match (line.body, job.as_mut()) {
            (
                Body::Job {
                    job: shape,
                    name,
                    started_unix_ms,
                    plan,
                },
                None,
            ) => {
                job = Some(LoggedJob {
                    file: file.to_string(),
                    shape,
                    name,
                    started_unix_ms,
                    plan,
                    events: Vec::new(),
                    end: None,
                    last_at_us: 0,
                });
            }
            (Body::Job { .. }, Some(_)) => {
                problems.push(format!("{file}:{number}: a second job header"));
            }
            (_, None) => {
                problems.push(format!("{file}:{number}: an event before the job header"));
            }
            (Body::Event { at_us, event }, Some(job)) => {
                job.last_at_us = job.last_at_us.max(at_us);
                job.events.push((at_us, event));
            }
            (Body::End { at_us, error }, Some(job)) => {
                job.last_at_us = job.last_at_us.max(at_us);
                job.end = Some(error.map_or(Ok(()), Err));
            }
        }
    }
    if job.is_none() && !text.trim().is_empty() {
        problems.push(format!("{file}: no job header"));
    }
    job
}

/// One log file of a folder, as listed.
#[derive(Debug, Clone)]
pub(crate) struct LogFile {
    /// Its path or URL, as problems and the UI name it.
    pub(crate) file: String,
    location: object_store::path::Path,
    /// Its size in bytes when listed.
    pub(crate) size: u64,
}

/// The `*.jsonl` logs under `dir` (a path or a URL), and the store they are read from.
pub(crate) async fn list_logs(
    dir: &EventLogDir,
) -> Result<(Arc<dyn object_store::ObjectStore>, Vec<LogFile>)> {
    let folder = location_url(&dir.location)?;
    let (store, prefix) = resolve(folder.as_str(), &dir.options)?;
    let listed: Vec<_> = store.list(Some(&prefix)).try_collect().await.map_err(|e| {
        SchedulerError::InvalidArgument {
            operation: "listing the event logs",
            message: format!("{}: {e}", dir.location),
        }
    })?;
    let files = listed
        .into_iter()
        .filter(|meta| meta.location.as_ref().ends_with(".jsonl"))
        .map(|meta| {
            let name = meta.location.filename().unwrap_or_default().to_string();
            let file = if dir.is_url() {
                format!("{folder}{name}")
            } else {
                PathBuf::from(&dir.location)
                    .join(name)
                    .display()
                    .to_string()
            };
            LogFile {
                file,
                location: meta.location,
                size: meta.size,
            }
        })
        .collect();
    Ok((store, files))
}

/// The text of one listed log; the error names the file.
pub(crate) async fn read_log(
    store: &dyn object_store::ObjectStore,
    log: &LogFile,
) -> std::result::Result<String, String> {
    let bytes = match store.get(&log.location).await {
        Ok(got) => got.bytes().await,
        Err(e) => Err(e),
    };
    bytes
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|e| format!("{}: {e}", log.file))
}

/// Reads every `*.jsonl` log under `dir` (a path or a URL).
pub async fn scan(dir: &EventLogDir) -> Result<LogScan> {
    let (store, files) = list_logs(dir).await?;
    let mut scan = LogScan::default();
    for log in files {
        match read_log(store.as_ref(), &log).await {
            Ok(text) => {
                if let Some(job) = parse_log(&log.file, &text, &mut scan.problems) {
                    scan.jobs.push(job);
                }
            }
            Err(problem) => scan.problems.push(problem),
        }
    }
    scan.jobs
        .sort_by(|a, b| (a.started_unix_ms, &a.file).cmp(&(b.started_unix_ms, &b.file)));
    Ok(scan)
}
