//! [`SchedulerMetrics`]: the scheduler's Prometheus metrics on `/metrics` (text format,
//! through `prometheus-client`). Counters of jobs and task attempts are brought up to the
//! board's figures at each scrape, so they equal what the REST API reports; task
//! durations, shuffle bytes written and spill are counted as tasks finish; the executors'
//! gauges are read from the pool.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::pool::ExecutorStatus;
use crate::state::TaskReport;
use crate::sync::lock;

use super::view::{JobStatus, JobView};

type Labels = Vec<(&'static str, String)>;

/// Attempts and jobs counted over jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskTotals {
    /// Successful attempts.
    pub succeeded: u64,
    /// Failed attempts.
    pub failed: u64,
    /// Jobs that succeeded.
    pub jobs_succeeded: u64,
    /// Jobs that failed.
    pub jobs_failed: u64,
}

impl TaskTotals {
    /// Adds what `view` counts.
    pub fn add(&mut self, view: &JobView) {
        self.succeeded += view.summary.tasks_succeeded as u64;
        self.failed += view.summary.failed_attempts as u64;
        match view.summary.status {
            JobStatus::Succeeded => self.jobs_succeeded += 1,
            JobStatus::Failed => self.jobs_failed += 1,
            JobStatus::Running => {}
        }
    }
}

/// The scheduler's metrics.
#[derive(Debug)]
pub struct SchedulerMetrics {
    registry: Registry,
    jobs_submitted: Counter,
    jobs_ended: Family<Labels, Counter>,
    jobs_running: Gauge,
    tasks: Family<Labels, Counter>,
    tasks_running: Gauge,
    task_seconds: Histogram,
    shuffle_written: Counter,
    spilled: Counter,
    executors: Family<Labels, Gauge>,
    heartbeat_lag: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    memory_used: Family<Labels, Gauge>,
    shuffle_served: Family<Labels, Gauge>,
    /// The totals last exported, so counters only ever go up by the difference.
    exported: Mutex<TaskTotals>,
}

impl SchedulerMetrics {
    /// Every metric at zero, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ember");
        let metrics = Self {
            jobs_submitted: Counter::default(),
            jobs_ended: Family::default(),
            jobs_running: Gauge::default(),
            tasks: Family::default(),
            tasks_running: Gauge::default(),
            task_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            shuffle_written: Counter::default(),
            spilled: Counter::default(),
            executors: Family::default(),
            heartbeat_lag: Family::default(),
            memory_used: Family::default(),
            shuffle_served: Family::default(),
            exported: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "jobs_submitted",
            "Jobs submitted",
            metrics.jobs_submitted.clone(),
        );
        registry.register(
            "jobs_ended",
            "Jobs ended, by state (succeeded, failed)",
            metrics.jobs_ended.clone(),
        );
        registry.register(
            "jobs_running",
            "Jobs running now",
            metrics.jobs_running.clone(),
        );
        registry.register(
            "tasks",
            "Task attempts ended, by state (succeeded, failed)",
            metrics.tasks.clone(),
        );
        registry.register(
            "tasks_running",
            "Task attempts running now",
            metrics.tasks_running.clone(),
        );
        registry.register(
            "task_duration_seconds",
            "Wall time of successful task attempts",
            metrics.task_seconds.clone(),
        );
        registry.register(
            "shuffle_written_bytes",
            "Bytes written by successful task attempts",
            metrics.shuffle_written.clone(),
        );
        registry.register(
            "spilled_bytes",
            "Bytes spilled to disk by successful task attempts",
            metrics.spilled.clone(),
        );
        registry.register(
            "executors",
            "Executors by state (alive, lost)",
            metrics.executors.clone(),
        );
        registry.register(
            "executor_heartbeat_lag_seconds",
            "Seconds since each live executor's last heartbeat",
            metrics.heartbeat_lag.clone(),
        );
        registry.register(
            "executor_memory_used_bytes",
            "Bytes held in each live executor's memory pool, as its last heartbeat said",
            metrics.memory_used.clone(),
        );
        registry.register(
            "executor_shuffle_served_bytes",
            "Shuffle bytes each live executor has served, as its last heartbeat said",
            metrics.shuffle_served.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    pub(crate) fn job_submitted(&self) {
        self.jobs_submitted.inc();
    }

    pub(crate) fn task_finished(&self, report: &TaskReport) {
        self.task_seconds.observe(report.elapsed.as_secs_f64());
        self.shuffle_written
            .inc_by(report.locations.iter().map(|l| l.bytes).sum());
        self.spilled.inc_by(report.spilled_bytes);
    }

    /// Brings the counters up to `retired` plus what `jobs` count now, and the running
    /// gauges to what they run.
    pub(crate) fn catch_up<'a>(
        &self,
        retired: TaskTotals,
        jobs: impl Iterator<Item = &'a JobView>,
    ) {
        let mut now = retired;
        let (mut running_jobs, mut running_tasks) = (0, 0);
        for view in jobs {
            now.add(view);
            if view.summary.status == JobStatus::Running {
                running_jobs += 1;
            }
            running_tasks += view.summary.tasks_running as i64;
        }
        self.jobs_running.set(running_jobs);
        self.tasks_running.set(running_tasks);
        let mut exported = lock(&self.exported);
        let up = |counter: &Counter, before: u64, after: u64| {
            counter.inc_by(after.saturating_sub(before));
        };
        up(
            &self
                .tasks
                .get_or_create(&vec![("state", "succeeded".into())]),
            exported.succeeded,
            now.succeeded,
        );
        up(
            &self.tasks.get_or_create(&vec![("state", "failed".into())]),
            exported.failed,
            now.failed,
        );
        up(
            &self
                .jobs_ended
                .get_or_create(&vec![("state", "succeeded".into())]),
            exported.jobs_succeeded,
            now.jobs_succeeded,
        );
        up(
            &self
                .jobs_ended
                .get_or_create(&vec![("state", "failed".into())]),
            exported.jobs_failed,
            now.jobs_failed,
        );
        let keep = |before: u64, after: u64| before.max(after);
        *exported = TaskTotals {
            succeeded: keep(exported.succeeded, now.succeeded),
            failed: keep(exported.failed, now.failed),
            jobs_succeeded: keep(exported.jobs_succeeded, now.jobs_succeeded),
            jobs_failed: keep(exported.jobs_failed, now.jobs_failed),
        };
    }

    /// The text format, with the executors' gauges set from `executors`.
    pub fn encode(&self, executors: &[ExecutorStatus]) -> String {
        let alive = executors.iter().filter(|e| e.alive).count();
        self.executors
            .get_or_create(&vec![("state", "alive".into())])
            .set(alive as i64);
        self.executors
            .get_or_create(&vec![("state", "lost".into())])
            .set((executors.len() - alive) as i64);
        self.heartbeat_lag.clear();
        self.memory_used.clear();
        self.shuffle_served.clear();
        for executor in executors.iter().filter(|e| e.alive) {
            let labels = vec![("executor", executor.id.to_string())];
            if let Some(lag) = executor.last_heartbeat_ago {
                self.heartbeat_lag
                    .get_or_create(&labels)
                    .set(lag.as_secs_f64());
            }
            self.memory_used
                .get_or_create(&labels)
                .set(i64::try_from(executor.memory_used).unwrap_or(i64::MAX));
            self.shuffle_served
                .get_or_create(&labels)
                .set(i64::try_from(executor.shuffle_bytes_served).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
