//! [`StateStore`]: where job state is kept, and what it keeps of each job ([`StoredJob`]).

use crate::error::Result;

/// The format of the stored state this build writes and reads.
pub const STATE_FORMAT: u32 = 1;

/// One job as the store kept it.
#[derive(Debug, Clone)]
pub struct StoredJob {
    /// The job's id.
    pub job_id: String,
    /// Its `JobSpec`, protobuf-encoded.
    pub spec: Vec<u8>,
    /// Its events so far, as JSON lines (see `JournalLine`).
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
    /// How long a job's writer gathers events before it writes them, unless someone
    /// waits for them: fewer, larger writes where each write is dear (etcd's are
    /// consensus and an fsync); nothing by default.
    fn linger(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// What it is, for messages (`folder /var/lib/ember`, `etcd 127.0.0.1:2379`).
    fn describe(&self) -> String;
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
