//! What a finished job gives back: its [`JobOutcome`] (where the final output lies, and the
//! metrics), and the [`ResultLease`] that keeps a process cluster's result alive while it is
//! read.

use std::collections::HashMap;
use std::sync::Mutex;

use ember_proto::ShuffleLocation;

use super::metrics::JobMetrics;

/// The result of a finished job: where the final stage's output lies, and metrics.
#[derive(Debug)]
pub struct JobOutcome {
    /// Output of the final stage, one location per non-empty partition.
    pub final_output: Vec<ShuffleLocation>,
    /// The address of every executor in another process that holds final output.
    pub addresses: HashMap<String, String>,
    /// What ran where.
    pub metrics: JobMetrics,
    /// Keeps the final output on a process cluster's executors while it is held (see
    /// [`ResultLease`]); `None` on the embedded cluster.
    pub lease: Option<ResultLease>,
}

/// A hold on a finished job's result: the scheduler process keeps the job's files while
/// the client holds the job's update stream, and removes them once it is dropped (read
/// to the end, or the client gone). Keep it until the result has been read.
pub struct ResultLease(#[allow(dead_code)] Mutex<Box<dyn Send>>);

impl ResultLease {
    /// A lease that holds `stream` open.
    pub fn new(stream: impl Send + 'static) -> Self {
        Self(Mutex::new(Box::new(stream)))
    }
}

impl std::fmt::Debug for ResultLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResultLease")
    }
}
