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

mod etcd;
mod folder;
mod journal;
mod store;

pub use etcd::{EtcdStore, HaConfig, Leadership, OnLost, lead, parse_ha_url};
pub use folder::FolderStore;
pub use journal::{Journal, JournalLine, read_journal};
pub use store::{STATE_FORMAT, StateStore, StoredJob};
