//! Durable job state: what lets a scheduler be killed at any moment without losing a job.
//!
//! Each job the scheduler runs is kept in a [`StateStore`]: its [`JobSpec`] (as protobuf
//! bytes) when it is submitted, then the [`Event`]s of its state machine as JSON lines, in
//! the order the job's state took them in, and removed once its client has its result (or
//! its error). A scheduler started on the same store rebuilds every job still there by
//! replaying its events through a fresh `JobState` (`job.rs`), and resumes it.
//!
//! Two stores: a local folder ([`FolderStore`], `ember scheduler --state DIR`) and etcd
//! (`etcd.rs`, `--ha`), where every write is conditional on this scheduler's leadership.
//!
//! Events go to the store through a [`Journal`] per job: the job loop hands each event over
//! as it happens and goes on, and a writer task appends them in batches, in order. The job
//! waits for the writer ([`Journal::sync`]) before it gives its result to the client, so a
//! result is only ever given by a scheduler whose record of the job was accepted; a tail of
//! events lost to a kill only means that the tasks they finished run again.

mod folder;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

pub use folder::FolderStore;

use super::state::Event;
use crate::error::{Result, SchedulerError};

/// The format of the stored state this build writes and reads.
pub const STATE_FORMAT: u32 = 1;

/// One job as the store kept it.
#[derive(Debug, Clone)]
pub struct StoredJob {
    /// The job's id.
    pub job_id: String,
    /// Its `JobSpec`, protobuf-encoded.
    pub spec: Vec<u8>,
    /// Its events so far, as JSON lines of [`JournalLine`].
    pub events: Vec<u8>,
}

/// Where job state is kept.
#[async_trait::async_trait]
pub trait StateStore: std::fmt::Debug + Send + Sync + 'static {
    /// The jobs it holds, for a scheduler that starts (or takes over) on it.
    async fn load(&self) -> Result<Vec<StoredJob>>;
    /// Keeps a newly submitted job (replacing one of the same id).
    async fn put_job(&self, job_id: &str, spec: Vec<u8>) -> Result<()>;
    /// Appends JSON lines of events to a job's record.
    async fn append(&self, job_id: &str, lines: Vec<u8>) -> Result<()>;
    /// Forgets a job that has ended and whose client has its answer.
    async fn remove_job(&self, job_id: &str) -> Result<()>;
    /// What it is, for messages (`folder /var/lib/ember`, `etcd 127.0.0.1:2379`).
    fn describe(&self) -> String;
}

/// One line of a job's journal: an event and its time, in microseconds since the job was
/// submitted.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JournalLine {
    /// When, in microseconds since submission.
    pub at_us: u64,
    /// What happened.
    pub event: Event,
}

/// Reads a job's journal: its lines in order. A last line cut short (the scheduler was
/// killed while writing it) is dropped; any other bad line is an error naming its number.
pub fn read_journal(store: &str, job_id: &str, bytes: &[u8]) -> Result<Vec<JournalLine>> {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.split('\n').collect();
    let mut read = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<JournalLine>(line) {
            Ok(parsed) => read.push(parsed),
            // The last line has no newline yet: a write the kill cut short.
            Err(_) if n + 1 == lines.len() => {
                tracing::warn!(
                    job = job_id,
                    "{store}: dropped the job's last event, cut short"
                );
            }
            Err(e) => {
                return Err(SchedulerError::State {
                    store: store.to_string(),
                    message: format!("job {job_id}: event line {}: {e}", n + 1),
                });
            }
        }
    }
    Ok(read)
}

enum Write {
    Line(Vec<u8>),
    Sync(oneshot::Sender<Result<()>>),
}

/// The writer of one job's events into a [`StateStore`]: events are handed over without
/// waiting and appended in order, in batches, by a task of their own.
pub struct Journal {
    sender: mpsc::UnboundedSender<Write>,
    store: Arc<dyn StateStore>,
}

impl Journal {
    /// A journal for `job_id` in `store`; the job's record must exist.
    pub fn new(store: Arc<dyn StateStore>, job_id: &str) -> Self {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Write>();
        let writer_store = Arc::clone(&store);
        let job_id = job_id.to_string();
        tokio::spawn(async move {
            let mut failed: Option<SchedulerError> = None;
            while let Some(first) = receiver.recv().await {
                let mut batch = Vec::new();
                let mut syncs = Vec::new();
                let mut next = Some(first);
                while let Some(write) = next {
                    match write {
                        Write::Line(line) => batch.extend_from_slice(&line),
                        Write::Sync(done) => syncs.push(done),
                    }
                    next = receiver.try_recv().ok();
                }
                if !batch.is_empty()
                    && failed.is_none()
                    && let Err(e) = writer_store.append(&job_id, batch).await
                {
                    tracing::error!(job = %job_id, "could not record the job's state: {e}");
                    failed = Some(e);
                }
                for done in syncs {
                    let _ = done.send(match &failed {
                        None => Ok(()),
                        Some(e) => Err(SchedulerError::State {
                            store: writer_store.describe(),
                            message: e.to_string(),
                        }),
                    });
                }
            }
        });
        Self { sender, store }
    }

    /// Hands `event` over to be appended.
    pub fn record(&self, at_us: u64, event: &Event) {
        let line = JournalLine {
            at_us,
            event: event.clone(),
        };
        if let Ok(mut json) = serde_json::to_vec(&line) {
            json.push(b'\n');
            let _ = self.sender.send(Write::Line(json));
        }
    }

    /// Waits until every event handed over so far is in the store.
    pub async fn sync(&self) -> Result<()> {
        let (done, written) = oneshot::channel();
        let gone = || SchedulerError::State {
            store: self.store.describe(),
            message: "the journal's writer stopped".into(),
        };
        self.sender.send(Write::Sync(done)).map_err(|_| gone())?;
        written.await.map_err(|_| gone())?
    }
}

/// A file name for `job_id`: the characters a file name cannot safely hold, as `%XX`.
pub(crate) fn file_stem(job_id: &str) -> String {
    let mut stem = String::with_capacity(job_id.len());
    for (i, c) in job_id.chars().enumerate() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' || (c == '.' && i > 0) {
            stem.push(c);
        } else {
            let mut bytes = [0u8; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                stem.push_str(&format!("%{b:02X}"));
            }
        }
    }
    stem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_become_safe_file_names() {
        assert_eq!(file_stem("job-1a2b"), "job-1a2b");
        assert_eq!(file_stem("../x/y"), "%2E.%2Fx%2Fy");
        assert_eq!(file_stem("a.b"), "a.b");
    }

    #[test]
    fn a_cut_short_last_line_is_dropped_and_a_bad_middle_line_is_an_error() {
        let good = r#"{"at_us":5,"event":{"event":"submitted"}}"#;
        let text = format!("{good}\n{good}\n{{\"at_us\":9,\"ev");
        let lines = read_journal("folder x", "j", text.as_bytes()).expect("reads");
        assert_eq!(lines.len(), 2);
        let text = format!("{good}\nnot json\n{good}\n");
        let error = read_journal("folder x", "j", text.as_bytes()).expect_err("a bad line");
        assert!(error.to_string().contains("event line 2"), "{error}");
    }
}
