//! `ember-bench scheduler`: the scheduler alone, with no plan to run. It drives the real
//! `JobState` and job driver (`Scheduler::run_job`) through a job of `--tasks` tasks over
//! `--executors` in-process fake executors that answer each launch at once, and prints
//! task launches per second and the scheduling latency: the time from a task's end on an
//! executor to the next launch on the slot it freed (p50, p99, max).
//!
//! The job is a chain of `--stages` stages of equal width, each partition reading the
//! same partition of the stage before, so every stage boundary is crossed and every task
//! carries its stage's input list.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use ember::executors::ExecutorError;
use ember::executors::storage::StoreOptions;
use ember::proto::{ExecutorId, ShuffleLocation, StageId, TaskDefinition, TaskOutput};
use ember::scheduler::{
    EventLogDir, ExecutorClient, ExecutorPool, JobSpec, OutputKind, Policy, Scheduler,
    SchedulerConfig, StageSpec,
};

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

#[derive(Args)]
pub struct SchedulerBench {
    /// Tasks over all stages.
    #[arg(long, default_value_t = 100_000)]
    tasks: usize,
    /// Fake executors.
    #[arg(long, default_value_t = 200)]
    executors: usize,
    /// Slots per executor.
    #[arg(long, default_value_t = 1)]
    slots: usize,
    /// Stages in the chain.
    #[arg(long, default_value_t = 10)]
    stages: usize,
    /// Also write the job's event log to this folder.
    #[arg(long, value_name = "DIR")]
    event_log: Option<String>,
}

/// What the fake executors measured.
#[derive(Default)]
struct Record {
    launches: usize,
    /// Gaps from a task's end to the next launch on the same executor.
    gaps: Vec<Duration>,
}

/// An executor that runs nothing and answers at once.
struct FakeExecutor {
    id: ExecutorId,
    slots: usize,
    /// When its last task ended.
    last_end: Arc<Mutex<Option<Instant>>>,
    record: Arc<Mutex<Record>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ExecutorClient for FakeExecutor {
    fn id(&self) -> &ExecutorId {
        &self.id
    }

    fn slots(&self) -> usize {
        self.slots
    }

    fn launch(&self, task: TaskDefinition) -> BoxFuture<Result<TaskOutput, ExecutorError>> {
        let now = Instant::now();
        let ended = lock(&self.last_end).take();
        {
            let mut record = lock(&self.record);
            record.launches += 1;
            if let Some(ended) = ended {
                record.gaps.push(now.saturating_duration_since(ended));
            }
        }
        let id = self.id.clone();
        let last_end = Arc::clone(&self.last_end);
        Box::pin(async move {
            let output = TaskOutput {
                locations: vec![ShuffleLocation {
                    stage_id: task.stage_id,
                    map_partition: task.partition,
                    attempt: task.attempt,
                    output_partition: task.partition,
                    executor_id: id.clone(),
                    path: PathBuf::from("/fake"),
                    rows: 1,
                    bytes: 1,
                }],
                executor_id: id,
                elapsed: Duration::ZERO,
                accumulators: Vec::new(),
                spilled_bytes: 0,
                spills: 0,
                compression: "none".into(),
                phases: Default::default(),
            };
            *lock(&last_end) = Some(Instant::now());
            Ok(output)
        })
    }

    fn remove_job(&self, _job_id: &str) -> BoxFuture<Result<(), ExecutorError>> {
        Box::pin(async { Ok(()) })
    }

    fn remove_stage(&self, _job_id: &str, _stage: usize) -> BoxFuture<Result<(), ExecutorError>> {
        Box::pin(async { Ok(()) })
    }

    fn put_broadcast(
        &self,
        _name: &str,
        _bytes: Arc<[u8]>,
    ) -> BoxFuture<Result<(), ExecutorError>> {
        Box::pin(async { Ok(()) })
    }

    fn cancel_task(
        &self,
        _job_id: &str,
        _stage: usize,
        _partition: usize,
        _attempt: usize,
    ) -> BoxFuture<Result<(), ExecutorError>> {
        Box::pin(async { Ok(()) })
    }

    fn holds(&self, _path: &std::path::Path) -> BoxFuture<bool> {
        Box::pin(async { false })
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Runs the benchmark and prints its figures.
pub async fn run(bench: &SchedulerBench) -> anyhow::Result<()> {
    anyhow::ensure!(bench.stages > 0, "--stages must be at least 1");
    anyhow::ensure!(bench.executors > 0, "--executors must be at least 1");
    let width = bench.tasks.div_ceil(bench.stages).max(1);
    let record = Arc::new(Mutex::new(Record::default()));
    let pool = Arc::new(ExecutorPool::new(Policy::Fifo));
    for e in 0..bench.executors {
        pool.add(Arc::new(FakeExecutor {
            id: format!("fake-{e}").into(),
            slots: bench.slots,
            last_end: Arc::new(Mutex::new(None)),
            record: Arc::clone(&record),
        }));
    }
    let config = SchedulerConfig {
        event_log: bench
            .event_log
            .clone()
            .map(|dir| EventLogDir::new(dir, StoreOptions::default())),
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::new(pool, config);
    let job = JobSpec {
        job_id: format!("sched-bench-{}", std::process::id()).into(),
        name: Some("scheduler micro-benchmark".into()),
        stages: (0..bench.stages)
            .map(|s| StageSpec {
                id: StageId(s),
                plan: Arc::new(Vec::new()),
                inputs: if s == 0 {
                    Vec::new()
                } else {
                    vec![StageId(s - 1)]
                },
                partitions: width,
                output_kind: OutputKind::Preserve,
                output_partitions: width,
                facts: Default::default(),
            })
            .collect(),
        settings: Vec::new(),
        final_stage: StageId(bench.stages - 1),
        retain_output: false,
        staging: Vec::new(),
        plan: None,
        adaptive: Default::default(),
    };
    let started = Instant::now();
    let outcome = scheduler.run_job(&job, None).await?;
    let elapsed = started.elapsed();
    let record = std::mem::take(&mut *lock(&record));
    let mut gaps = record.gaps;
    gaps.sort_unstable();
    let tasks = width * bench.stages;
    anyhow::ensure!(
        outcome.metrics.tasks.len() == tasks && record.launches == tasks,
        "expected {tasks} tasks, the scheduler reported {} and the executors saw {}",
        outcome.metrics.tasks.len(),
        record.launches
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| tasks | executors x slots | stages | wall (s) | launches/s | p50 latency (ms) | p99 latency (ms) | max latency (ms) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {tasks} | {} x {} | {} | {:.2} | {:.0} | {:.3} | {:.3} | {:.3} |",
        bench.executors,
        bench.slots,
        bench.stages,
        elapsed.as_secs_f64(),
        tasks as f64 / elapsed.as_secs_f64(),
        ms(quantile(&gaps, 0.5)),
        ms(quantile(&gaps, 0.99)),
        ms(gaps.last().copied().unwrap_or_default()),
    );
    Ok(())
}
