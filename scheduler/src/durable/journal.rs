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

/// Reads a job's journal: its lines in order. A line that cannot be read (the last one,
/// cut short by a kill while it was written, or one that a later write followed) is
/// skipped with a warning: the event it held counts as lost, as the events a kill keeps
/// from being written do, and the tasks it recorded run again.
pub fn read_journal(store: &str, job_id: &str, bytes: &[u8]) -> Vec<JournalLine> {
    let text = String::from_utf8_lossy(bytes);
    let mut read = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<JournalLine>(line) {
            Ok(parsed) => read.push(parsed),
            Err(e) => tracing::warn!(
                job = job_id,
                "{store}: skipped event line {} of the job, which cannot be read ({e}); it counts as lost",
                n + 1
            ),
        }
    }
    read
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
        let resumed = spec.is_none();
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
            // A journal taken over may end in a line cut short: the first batch starts on
            // a line of its own.
            let mut new_line = resumed;
            while let Some(first) = receiver.recv().await {
                let mut batch = Vec::new();
                if std::mem::take(&mut new_line) {
                    batch.push(b'\n');
                }
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
        // Written from the borrowed event: no copy of it on the job loop's path.
        #[derive(serde::Serialize)]
        struct Line<'a> {
            at_us: u64,
            event: &'a Event,
        }
        if let Ok(mut json) = serde_json::to_vec(&Line { at_us, event }) {
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
    fn a_line_cut_short_is_skipped_and_the_lines_around_it_are_read() {
        let good = r#"{"at_us":5,"event":{"event":"submitted"}}"#;
        let text = format!("{good}\n{good}\n{{\"at_us\":9,\"ev");
        assert_eq!(read_journal("folder x", "j", text.as_bytes()).len(), 2);
        // A taken-over journal goes on on a line of its own after the cut.
        let text = format!("{good}\n{{\"at_us\":9,\"ev\n{good}\n");
        assert_eq!(read_journal("folder x", "j", text.as_bytes()).len(), 2);
    }
}
