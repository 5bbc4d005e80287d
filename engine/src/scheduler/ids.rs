//! Job ids: [`new_job_id`] makes them. A leaf, so the session, the commit of writes and the
//! scheduler can all name jobs without depending on one another.

use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_JOB: AtomicU64 = AtomicU64::new(0);

/// A new job id, unique in this process and unlikely to meet another's: `PREFIX-PID-N-R`.
pub(crate) fn new_job_id(prefix: &str) -> String {
    // The random part keeps the ids of drivers on different machines (or in containers,
    // all PID 1) apart where they share a shuffle directory.
    format!(
        "{prefix}-{}-{}-{:06x}",
        std::process::id(),
        NEXT_JOB.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>() & 0xff_ffff
    )
}
