//! [`Journal`]: the writer of one job's events into a [`StateStore`], and
//! [`read_journal`], which reads them back.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::store::StateStore;
use crate::error::{Result, SchedulerError};
use crate::state::Event;

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
    /// A journal for `job_id` in `store`. With `spec`, the writer first keeps the job (its
    /// protobuf `JobSpec`) in the store, so that the job need not wait for that write to
    /// start: a scheduler that dies before it is done leaves no record, and the client
    /// sends the job again. Without, the job's record must exist.
    pub fn new(store: Arc<dyn StateStore>, job_id: &str, spec: Option<Vec<u8>>) -> Self {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Write>();
        let writer_store = Arc::clone(&store);
        let job_id = job_id.to_string();
        tokio::spawn(async move {
            let mut failed: Option<SchedulerError> = None;
            if let Some(spec) = spec
                && let Err(e) = writer_store.put_job(&job_id, spec).await
            {
                tracing::error!(job = %job_id, "could not record the job: {e}");
                failed = Some(e);
            }
            let linger = writer_store.linger();
            while let Some(first) = receiver.recv().await {
                let mut batch = Vec::new();
                let mut syncs = Vec::new();
                // A batch gathers what comes within the store's linger, and goes at once
                // when someone waits for it.
                let until = tokio::time::Instant::now() + linger;
                let mut next = Some(first);
                while let Some(write) = next {
                    match write {
                        Write::Line(line) => batch.extend_from_slice(&line),
                        Write::Sync(done) => syncs.push(done),
                    }
                    next = match receiver.try_recv() {
                        Ok(write) => Some(write),
                        Err(_) if syncs.is_empty() && !linger.is_zero() => {
                            tokio::time::timeout_at(until, receiver.recv())
                                .await
                                .ok()
                                .flatten()
                        }
                        Err(_) => None,
                    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::store::file_stem;

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
