//! [`ExecutorMetrics`]: what an executor process has done, for `/metrics`
//! (`ember executor --metrics-bind ADDR`, Prometheus text through `prometheus-client`) and
//! for its heartbeats (memory in use, shuffle bytes served, tasks). One per process: an
//! executor that registers again under a new id keeps counting into the same metrics.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type State = Vec<(&'static str, &'static str)>;

/// The metrics of one executor process.
#[derive(Debug)]
pub struct ExecutorMetrics {
    registry: Registry,
    tasks: Family<State, Counter>,
    tasks_running: Gauge,
    task_seconds: Histogram,
    shuffle_written: Counter,
    shuffle_read: Counter,
    shuffle_served: Counter,
    spilled: Counter,
    memory_used: Gauge,
    memory_limit: Gauge,
}

const SUCCEEDED: &[(&str, &str)] = &[("state", "succeeded")];
const FAILED: &[(&str, &str)] = &[("state", "failed")];

impl Default for ExecutorMetrics {
    fn default() -> Self {
        let metrics = Self {
            registry: Registry::default(),
            tasks: Family::default(),
            tasks_running: Gauge::default(),
            task_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            shuffle_written: Counter::default(),
            shuffle_read: Counter::default(),
            shuffle_served: Counter::default(),
            spilled: Counter::default(),
            memory_used: Gauge::default(),
            memory_limit: Gauge::default(),
        };
        let mut registry = Registry::with_prefix("ember_executor");
        registry.register(
            "tasks",
            "Task attempts ended here, by state (succeeded, failed)",
            metrics.tasks.clone(),
        );
        registry.register(
            "tasks_running",
            "Task attempts running here now",
            metrics.tasks_running.clone(),
        );
        registry.register(
            "task_duration_seconds",
            "Wall time of the task attempts that succeeded here",
            metrics.task_seconds.clone(),
        );
        registry.register(
            "shuffle_written_bytes",
            "Bytes of shuffle files written by successful tasks",
            metrics.shuffle_written.clone(),
        );
        registry.register(
            "shuffle_read_bytes",
            "Shuffle bytes read by successful tasks (their partition of the stages they read)",
            metrics.shuffle_read.clone(),
        );
        registry.register(
            "shuffle_served_bytes",
            "Shuffle bytes served to other executors and clients over Flight",
            metrics.shuffle_served.clone(),
        );
        registry.register(
            "spilled_bytes",
            "Bytes spilled to disk by successful tasks",
            metrics.spilled.clone(),
        );
        registry.register(
            "memory_pool_used_bytes",
            "Bytes held in the memory pool now",
            metrics.memory_used.clone(),
        );
        registry.register(
            "memory_pool_limit_bytes",
            "The memory pool's limit (0: none)",
            metrics.memory_limit.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

/// What one successful task did, as the metrics count it.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskFigures {
    /// Its wall time.
    pub elapsed: Duration,
    /// Bytes it wrote.
    pub written: u64,
    /// Shuffle bytes it read.
    pub read: u64,
    /// Bytes it spilled.
    pub spilled: u64,
}

/// A snapshot for a heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Successful task attempts.
    pub tasks_succeeded: u64,
    /// Failed task attempts.
    pub tasks_failed: u64,
    /// Shuffle bytes served.
    pub shuffle_served: u64,
}

impl ExecutorMetrics {
    /// A shared, empty set.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A task attempt started.
    pub fn task_started(&self) {
        self.tasks_running.inc();
    }

    /// A task attempt succeeded.
    pub fn task_succeeded(&self, task: TaskFigures) {
        self.tasks_running.dec();
        self.tasks.get_or_create(&SUCCEEDED.to_vec()).inc();
        self.task_seconds.observe(task.elapsed.as_secs_f64());
        self.shuffle_written.inc_by(task.written);
        self.shuffle_read.inc_by(task.read);
        self.spilled.inc_by(task.spilled);
    }

    /// A task attempt failed.
    pub fn task_failed(&self) {
        self.tasks_running.dec();
        self.tasks.get_or_create(&FAILED.to_vec()).inc();
    }

    /// Bytes served over Flight.
    pub fn served(&self, bytes: u64) {
        self.shuffle_served.inc_by(bytes);
    }

    /// The counts a heartbeat carries.
    pub fn snapshot(&self) -> Snapshot {
        // One label set at a time: a family's read guard held while another label is
        // created would wait on itself.
        let tasks_succeeded = self.tasks.get_or_create(&SUCCEEDED.to_vec()).get();
        let tasks_failed = self.tasks.get_or_create(&FAILED.to_vec()).get();
        Snapshot {
            tasks_succeeded,
            tasks_failed,
            shuffle_served: self.shuffle_served.get(),
        }
    }

    /// The text format, with the memory pool's use set to `memory_used` of
    /// `memory_limit`.
    pub fn encode(&self, memory_used: u64, memory_limit: u64) -> String {
        self.memory_used
            .set(i64::try_from(memory_used).unwrap_or(i64::MAX));
        self.memory_limit
            .set(i64::try_from(memory_limit).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
