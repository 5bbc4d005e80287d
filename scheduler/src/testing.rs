//! Test support for the scheduler: [`ScriptedExecutor`], an [`ExecutorClient`] that runs
//! nothing and answers each launch as a test script says, and [`Harness`], which owns a
//! [`Scheduler`] over such executors, the log of every launch, and the job's events. No
//! process, socket or file is involved, so a test can drive [`Scheduler::run_job`] through
//! failures and executor losses step by step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ember_executors::ExecutorError;
use ember_proto::{ShuffleLocation, TaskDefinition, TaskOutput};
use futures::future::BoxFuture;
use tokio::sync::{Notify, oneshot};

use super::{
    ExecutorClient, ExecutorPool, JobEvent, JobListener, JobOutcome, JobSpec, OutputKind, Policy,
    Scheduler, SchedulerConfig, StageSpec,
};
use crate::error::Result;
use crate::sync::lock;

/// How long a test waits for the scheduler to reach a state before it gives up.
const PATIENCE: Duration = Duration::from_secs(10);

/// One launch as an executor saw it.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The executor it was sent to.
    pub executor: String,
    /// The task's stage.
    pub stage: usize,
    /// The task's partition.
    pub partition: usize,
    /// The attempt number the scheduler gave it.
    pub attempt: usize,
    /// The input locations it was given.
    pub inputs: Vec<ShuffleLocation>,
}

/// How an executor answers one launch.
pub(crate) enum Reply {
    /// Succeeds with one output location per output partition of the stage.
    Finish,
    /// Succeeds, but the answer names another executor id.
    FinishAs(String),
    /// Fails with this error.
    Fail(ExecutorError),
    /// Does not answer until the test calls [`Harness::release`].
    Hold,
}

/// Decides the reply to each launch.
type Script = Box<dyn Fn(&Call) -> Reply + Send + Sync>;

/// What the executors of one harness share: the script, the launch log and held calls.
struct Shared {
    script: Mutex<Script>,
    calls: Mutex<Vec<Call>>,
    held: Mutex<HashMap<(usize, usize, usize), oneshot::Sender<Reply>>>,
    /// Attempts the scheduler cancelled: `(stage, partition, attempt)`.
    cancelled: Mutex<Vec<(usize, usize, usize)>>,
    /// The number of output partitions of each stage, by stage id.
    output_partitions: Vec<usize>,
    /// Bytes of each output location written by an executor, by executor id (1 if absent).
    bytes: HashMap<String, u64>,
    /// Wakes waiters on every launch.
    launched: Notify,
}

impl Shared {
    /// The output that `call` reports when it finishes, as executor `answered_by`.
    fn output(&self, call: &Call, answered_by: &str) -> TaskOutput {
        let outputs = self.output_partitions.get(call.stage).copied().unwrap_or(0);
        let bytes = self.bytes.get(&call.executor).copied().unwrap_or(1);
        TaskOutput {
            executor_id: answered_by.into(),
            locations: (0..outputs).map(|o| location(call, o, bytes)).collect(),
            elapsed: Duration::from_millis(1),
            accumulators: Vec::new(),
            spilled_bytes: 0,
            spills: 0,
            compression: "none".into(),
            phases: Default::default(),
        }
    }
}

/// The location that `call` writes for output partition `output`.
pub(crate) fn location(call: &Call, output: usize, bytes: u64) -> ShuffleLocation {
    ShuffleLocation {
        stage_id: ember_proto::StageId(call.stage),
        map_partition: call.partition,
        attempt: call.attempt,
        output_partition: output,
        executor_id: call.executor.clone().into(),
        path: PathBuf::from(format!(
            "/fake/{}/stage-{}/map-{}-attempt-{}/part-{output}.arrow",
            call.executor, call.stage, call.partition, call.attempt
        )),
        rows: 1,
        bytes,
    }
}

/// An executor that runs nothing: it logs each launch and answers as the script says.
pub(crate) struct ScriptedExecutor {
    id: ember_proto::ExecutorId,
    slots: usize,
    address: String,
    shared: Arc<Shared>,
}

impl Shared {
    fn new(
        output_partitions: Vec<usize>,
        bytes: HashMap<String, u64>,
        script: Script,
    ) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(script),
            calls: Mutex::new(Vec::new()),
            held: Mutex::new(HashMap::new()),
            cancelled: Mutex::new(Vec::new()),
            output_partitions,
            bytes,
            launched: Notify::new(),
        })
    }
}

impl ScriptedExecutor {
    fn new(id: &str, slots: usize, shared: Arc<Shared>) -> Self {
        Self {
            id: id.into(),
            slots,
            address: format!("http://{id}:7000"),
            shared,
        }
    }

    /// An executor with `slots` slots on which nothing is launched (the pool's tests).
    pub(crate) fn idle(id: &str, slots: usize) -> Self {
        let shared = Shared::new(Vec::new(), HashMap::new(), Box::new(|_| Reply::Finish));
        Self::new(id, slots, shared)
    }
}

impl ExecutorClient for ScriptedExecutor {
    fn id(&self) -> &ember_proto::ExecutorId {
        &self.id
    }

    fn slots(&self) -> usize {
        self.slots
    }

    fn address(&self) -> Option<&str> {
        Some(&self.address)
    }

    fn launch(
        &self,
        task: TaskDefinition,
    ) -> BoxFuture<'static, std::result::Result<TaskOutput, ExecutorError>> {
        let call = Call {
            executor: self.id.to_string(),
            stage: task.stage_id.index(),
            partition: task.partition,
            attempt: task.attempt,
            inputs: task.inputs.to_vec(),
        };
        let shared = Arc::clone(&self.shared);
        let reply = (lock(&shared.script))(&call);
        let pending = match reply {
            Reply::Hold => {
                let (send, receive) = oneshot::channel();
                lock(&shared.held).insert((call.stage, call.partition, call.attempt), send);
                Some(receive)
            }
            _ => None,
        };
        lock(&shared.calls).push(call.clone());
        shared.launched.notify_waiters();
        Box::pin(async move {
            let reply = match pending {
                // A held call whose sender is dropped never answers (like a hung executor).
                Some(receive) => match receive.await {
                    Ok(reply) => reply,
                    Err(_) => std::future::pending().await,
                },
                None => reply,
            };
            match reply {
                Reply::Finish | Reply::Hold => Ok(shared.output(&call, &call.executor)),
                Reply::FinishAs(other) => Ok(shared.output(&call, &other)),
                Reply::Fail(error) => Err(error),
            }
        })
    }

    fn remove_job(&self, _job_id: &str) -> BoxFuture<'static, Result<(), ExecutorError>> {
        Box::pin(async { Ok(()) })
    }

    fn remove_stage(
        &self,
        _job_id: &str,
        _stage_id: usize,
    ) -> BoxFuture<'static, Result<(), ExecutorError>> {
        Box::pin(async { Ok(()) })
    }

    fn put_broadcast(
        &self,
        _name: &str,
        _bytes: Arc<[u8]>,
    ) -> BoxFuture<'static, Result<(), ExecutorError>> {
        Box::pin(async { Ok(()) })
    }

    fn cancel_task(
        &self,
        _job_id: &str,
        stage_id: usize,
        partition: usize,
        attempt: usize,
    ) -> BoxFuture<'static, Result<(), ExecutorError>> {
        lock(&self.shared.cancelled).push((stage_id, partition, attempt));
        Box::pin(async { Ok(()) })
    }

    fn holds(&self, _path: &Path) -> BoxFuture<'static, bool> {
        Box::pin(async { false })
    }
}

/// Records a job's events in order.
#[derive(Default)]
pub(crate) struct Recorder(Mutex<Vec<JobEvent>>);

impl JobListener for Recorder {
    fn on_event(&self, event: &JobEvent) {
        lock(&self.0).push(event.clone());
    }
}

/// A job's shape for tests: `(partitions, inputs, output partitions)` per stage, in id
/// order; the last stage is the final one. Plans are empty bytes, which the scripted
/// executors never read.
pub(crate) fn job(id: &str, stages: &[(usize, &[usize], usize)]) -> JobSpec {
    JobSpec {
        name: None,
        job_id: id.into(),
        stages: stages
            .iter()
            .enumerate()
            .map(|(index, (partitions, inputs, outputs))| StageSpec {
                id: ember_proto::StageId(index),
                plan: Arc::new(Vec::new()),
                inputs: inputs.iter().copied().map(ember_proto::StageId).collect(),
                partitions: *partitions,
                output_kind: OutputKind::Hash,
                output_partitions: *outputs,
                facts: Default::default(),
            })
            .collect(),
        settings: Vec::new(),
        final_stage: ember_proto::StageId(stages.len().saturating_sub(1)),
        retain_output: false,
        staging: Vec::new(),
        plan: None,
        adaptive: Default::default(),
    }
}

/// A scheduler over scripted executors, and what they saw.
pub(crate) struct Harness {
    pub scheduler: Arc<Scheduler>,
    pub events: Arc<Recorder>,
    shared: Arc<Shared>,
}

impl Harness {
    /// A FIFO scheduler retrying up to `max_attempts` times, over executors `(id, slots)`
    /// that serve `job`'s stages and answer as `script` says. Output locations weigh one
    /// byte, or `bytes[id]` on executor `id`.
    pub fn new(
        job: &JobSpec,
        max_attempts: usize,
        executors: &[(&str, usize)],
        bytes: &[(&str, u64)],
        script: impl Fn(&Call) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let shared = Shared::new(
            job.stages.iter().map(|s| s.output_partitions).collect(),
            bytes.iter().map(|(id, b)| (id.to_string(), *b)).collect(),
            Box::new(script),
        );
        let pool = Arc::new(ExecutorPool::new(Policy::Fifo));
        for (id, slots) in executors {
            pool.add(Arc::new(ScriptedExecutor::new(
                id,
                *slots,
                Arc::clone(&shared),
            )));
        }
        let config = SchedulerConfig {
            max_attempts,
            grace_period: Duration::from_secs(1),
            event_log: None,
        };
        Self {
            scheduler: Arc::new(Scheduler::new(pool, config)),
            events: Arc::new(Recorder::default()),
            shared,
        }
    }

    /// Starts `job` on the runtime; the handle gives its outcome.
    pub fn start(&self, job: &JobSpec) -> tokio::task::JoinHandle<Result<JobOutcome>> {
        let scheduler = Arc::clone(&self.scheduler);
        let events = Arc::clone(&self.events);
        let job = job.clone();
        tokio::spawn(async move { scheduler.run_job(&job, Some(events.as_ref())).await })
    }

    /// The outcome of a job started with [`Harness::start`].
    pub async fn outcome(
        &self,
        running: tokio::task::JoinHandle<Result<JobOutcome>>,
    ) -> Result<JobOutcome> {
        match tokio::time::timeout(PATIENCE, running).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => panic!("the job's task failed: {e}"),
            Err(_) => panic!(
                "the job did not end within {PATIENCE:?}; launches: {:?}",
                self.keys()
            ),
        }
    }

    /// Runs `job` to its end.
    pub async fn run(&self, job: &JobSpec) -> Result<JobOutcome> {
        tokio::time::timeout(
            PATIENCE,
            self.scheduler.run_job(job, Some(self.events.as_ref())),
        )
        .await
        .unwrap_or_else(|_| panic!("job {} did not end within {PATIENCE:?}", job.job_id))
    }

    /// Every launch so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.shared.calls).clone()
    }

    /// The launches so far as `(stage, partition, attempt, executor)`.
    pub fn keys(&self) -> Vec<(usize, usize, usize, String)> {
        self.calls()
            .iter()
            .map(|c| (c.stage, c.partition, c.attempt, c.executor.clone()))
            .collect()
    }

    /// The job's events so far.
    pub fn events(&self) -> Vec<JobEvent> {
        lock(&self.events.0).clone()
    }

    /// The attempts the scheduler cancelled on an executor: `(stage, partition, attempt)`.
    pub fn cancelled(&self) -> Vec<(usize, usize, usize)> {
        lock(&self.shared.cancelled).clone()
    }

    /// Replaces the script for the launches to come.
    pub fn set_script(&self, script: impl Fn(&Call) -> Reply + Send + Sync + 'static) {
        *lock(&self.shared.script) = Box::new(script);
    }

    /// Waits until the launch log satisfies `done`.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Call]) -> bool) {
        let wait = async {
            loop {
                let notified = self.shared.launched.notified();
                if done(&lock(&self.shared.calls)) {
                    return;
                }
                // Launches may also come while the job loop runs between our looks.
                let _ = tokio::time::timeout(Duration::from_millis(20), notified).await;
            }
        };
        if tokio::time::timeout(PATIENCE, wait).await.is_err() {
            panic!("timed out waiting for {what}; launches: {:?}", self.keys());
        }
    }

    /// Answers held attempt `(stage, partition, attempt)` with `reply`.
    pub fn release(&self, stage: usize, partition: usize, attempt: usize, reply: Reply) {
        let sender = lock(&self.shared.held).remove(&(stage, partition, attempt));
        let Some(sender) = sender else {
            panic!("attempt {stage}.{partition}#{attempt} is not held");
        };
        // A closed receiver means the scheduler aborted the attempt; the test sees that
        // through what the scheduler does next.
        let _ = sender.send(reply);
    }
}
