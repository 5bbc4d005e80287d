//! `ember-scheduler`: runs jobs (a [`JobSpec`]: encoded stage plans and how they connect) on
//! the executors of an [`ExecutorPool`].
//!
//! A stage is submitted when every stage it reads is complete; its tasks (one per
//! partition) go where the pool finds a free slot, preferring the executor that holds most
//! of the task's input. A failed task is tried again, on another executor when there is
//! one, up to `max_attempts` times; then the job fails. When an executor is lost, its
//! running tasks run again elsewhere and the map outputs it held are recomputed (only
//! those, and only where a later stage still needs them) before the stages that read them
//! go on. With no executor left, a job waits `grace_period` for one to register, then
//! fails. Several jobs may run at once; the pool's [`Policy`] shares slots between them.
//! The same scheduler drives the embedded cluster and a cluster of processes. Its [`ui`]
//! serves the jobs it runs (and, as the history server, the jobs of event logs) as web
//! pages, a REST API and Prometheus metrics.

mod adaptive;
mod client;
mod durable;
mod error;
mod eventlog;
mod events;
mod job;
mod metrics;
mod outcome;
mod pool;
mod remote;
mod runner;
mod service;
mod spec;
mod state;
mod sync;
pub mod ui;
mod wire;

#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use adaptive::{
    AdaptiveConfig, Decision, InputRead, InputSizes, PieceSize, Speculation, StagePlan, TaskRead,
    plan_stage,
};
pub use client::ExecutorClient;
pub use durable::{
    EtcdStore, FolderStore, HaConfig, Leadership, OnLost, STATE_FORMAT, StateStore, StoredJob,
    lead, parse_ha_url,
};
pub use error::{Result, SchedulerError};
pub use eventlog::{LogScan, LoggedJob, parse_log, scan as scan_event_logs};
pub use events::{JobEvent, JobListener};
pub use metrics::{
    FailedAttempt, JobMetrics, JobTimeline, RecomputedTask, RefusedReport, SpeculativeCopy,
    StageSummary, TaskRecord,
};
pub use outcome::{JobOutcome, ResultLease};
pub use pool::{ExecutorPool, ExecutorStatus, HeartbeatStats, Policy};
pub use remote::RemoteExecutor;
pub use runner::Scheduler;
pub use service::{
    CatalogUpdateError, Listening, SchedulerProcessConfig, ServedCatalog, run_scheduler_process,
};
pub use spec::{EventLogDir, JobPlan, JobSpec, OutputKind, SchedulerConfig, StageSpec};
pub use state::{
    Action, Event, Failure, JobFailure, JobShape, JobState, Launch, Location, StageShape, Status,
    TaskReport, Timer,
};
