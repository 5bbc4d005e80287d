//! Tests of [`JobState`] alone: no runtime, no executor, no socket, no clock. Each test
//! plays a driver by hand through [`Sim`]: it places launches on executors, answers tasks,
//! loses executors and fires timers, and checks the actions that come back. The property
//! test at the end feeds random orders of results and losses to random job graphs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::spec::OutputKind;
use super::state::{
    Action, Event, Failure, JobFailure, JobShape, JobState, Launch, Location, StageShape, Status,
    TaskReport, Timer, interrupted_pause,
};
use ember_proto::ids::{ExecutorId, JobId, PartitionId, StageId, TaskId};

/// A job of `(partitions, inputs)` per stage; the last stage is the final one.
fn shape(stages: &[(usize, &[usize])], max_attempts: usize) -> JobShape {
    JobShape {
        job_id: JobId::from("job"),
        stages: stages
            .iter()
            .enumerate()
            .map(|(id, (partitions, inputs))| StageShape {
                id: StageId(id),
                inputs: inputs.iter().copied().map(StageId).collect(),
                partitions: *partitions,
                output: OutputKind::Hash,
                facts: Default::default(),
            })
            .collect(),
        final_stage: StageId(stages.len() - 1),
        max_attempts,
        grace_period: Duration::from_secs(30),
        adaptive: Default::default(),
    }
}

/// Output partitions every task writes in these tests.
const OUTPUTS: usize = 2;

/// A hand-driven driver: the state, the executors alive, what runs where, and what waits.
struct Sim {
    state: JobState,
    alive: Vec<ExecutorId>,
    pending: Vec<Launch>,
    running: BTreeMap<TaskId, ExecutorId>,
    timers: Vec<Timer>,
    finished: Option<Vec<ember_proto::ShuffleLocation>>,
    failed: Option<JobFailure>,
    /// Every launch placed, in order, with its executor.
    placed: Vec<(TaskId, ExecutorId)>,
    cancelled: Vec<TaskId>,
    finishes: usize,
    /// Executors declared lost by the state, to be reported back as `ExecutorLost`.
    declared: Vec<ExecutorId>,
}

impl Sim {
    fn new(shape: JobShape, executors: &[&str]) -> Self {
        let mut sim = Self {
            state: JobState::new(shape),
            alive: executors.iter().map(|e| ExecutorId::from(*e)).collect(),
            pending: Vec::new(),
            running: BTreeMap::new(),
            timers: Vec::new(),
            finished: None,
            failed: None,
            placed: Vec::new(),
            cancelled: Vec::new(),
            finishes: 0,
            declared: Vec::new(),
        };
        sim.feed(Event::Submitted);
        sim
    }

    fn feed(&mut self, event: Event) {
        for action in self.state.on(event) {
            match action {
                Action::Launch(launch) => self.pending.push(launch),
                Action::Withdraw(task) => self.pending.retain(|l| l.task != task),
                Action::Cancel { task, .. } => {
                    self.running.remove(&task);
                    self.cancelled.push(task);
                }
                Action::DeclareLost { executor, .. } => self.declared.push(executor),
                Action::Straggler { .. } => {}
                Action::StartTimer { timer, .. } => self.timers.push(timer),
                Action::Notify(_) => {}
                Action::Finish { final_output } => {
                    self.finishes += 1;
                    self.finished = Some(final_output);
                }
                Action::Fail(failure) => self.failed = Some(failure),
            }
        }
    }

    /// Places every waiting launch on an executor (`pick` chooses by index), as a driver
    /// with free slots would, and checks that no task runs twice at once.
    fn place_with(&mut self, mut pick: impl FnMut(usize) -> usize) {
        while !self.alive.is_empty() && !self.pending.is_empty() {
            let launch = self.pending.remove(0);
            let executor = self.alive[pick(self.alive.len()) % self.alive.len()].clone();
            let part = launch.task.partition_id();
            assert!(
                !self.running.keys().any(|t| t.partition_id() == part),
                "{part} launched while an attempt of it runs: {:?}",
                self.running
            );
            self.running.insert(launch.task, executor.clone());
            self.placed.push((launch.task, executor.clone()));
            self.feed(Event::TaskStarted {
                task: launch.task,
                executor,
            });
        }
    }

    fn place(&mut self) {
        let mut next = 0;
        self.place_with(|n| {
            next += 1;
            (next - 1) % n
        });
    }

    fn report(task: TaskId, executor: &ExecutorId) -> TaskReport {
        TaskReport {
            locations: (0..OUTPUTS)
                .map(|o| Location {
                    output_partition: o,
                    executor: executor.clone(),
                    path: format!("/w/{executor}/{task}/{o}"),
                    rows: 1,
                    bytes: 10,
                })
                .collect(),
            elapsed: Duration::from_millis(1),
            ..TaskReport::default()
        }
    }

    fn finish(&mut self, task: TaskId) {
        let executor = self.running.remove(&task).expect("the task runs");
        let report = Self::report(task, &executor);
        self.feed(Event::TaskFinished {
            task,
            executor,
            report,
        });
    }

    fn fail(&mut self, task: TaskId, failure: Failure) {
        let executor = self.running.remove(&task).expect("the task runs");
        self.feed(Event::TaskFailed {
            task,
            executor,
            failure,
        });
    }

    fn lose(&mut self, executor: &str) {
        let executor = ExecutorId::from(executor);
        self.alive.retain(|e| *e != executor);
        self.feed(Event::ExecutorLost { executor });
        if self.alive.is_empty() {
            self.feed(Event::ExecutorsGone);
        }
    }

    /// Reports the executors the state declared lost.
    fn settle(&mut self) {
        while let Some(executor) = self.declared.pop() {
            if self.alive.contains(&executor) {
                self.lose(executor.as_str());
            }
        }
    }

    /// Finishes every running task, placing new ones, until nothing runs.
    fn run_to_end(&mut self) {
        for _ in 0..10_000 {
            self.place();
            let Some(task) = self.running.keys().next().copied() else {
                return;
            };
            self.finish(task);
        }
        panic!("the job did not end");
    }

    fn running_of_stage(&self, stage: usize) -> Vec<TaskId> {
        self.running
            .keys()
            .filter(|t| t.stage == StageId(stage))
            .copied()
            .collect()
    }
}

fn task(stage: usize, partition: usize, attempt: usize) -> TaskId {
    TaskId {
        stage: StageId(stage),
        partition,
        attempt,
    }
}

fn error(retryable: bool) -> Failure {
    Failure::Error {
        message: "boom".into(),
        retryable,
    }
}

#[test]
fn a_failing_task_is_retried_up_to_the_limit_then_the_job_fails_with_its_reason() {
    let mut sim = Sim::new(shape(&[(2, &[])], 3), &["a", "b"]);
    sim.place();
    sim.finish(task(0, 1, 0));
    for attempt in 0..3 {
        assert_eq!(sim.running_of_stage(0), vec![task(0, 0, attempt)]);
        sim.fail(task(0, 0, attempt), error(true));
        sim.place();
    }
    assert_eq!(
        sim.failed,
        Some(JobFailure::Task {
            task: PartitionId {
                stage: StageId(0),
                partition: 0
            },
            attempts: 3,
            failure: error(true),
        })
    );
    assert!(matches!(sim.state.status(), Status::Failed(_)));
    // A retry avoids the executor of the failed attempt while another has room: the
    // placements alternate only because the test places round-robin, so check the hint.
    assert_eq!(sim.state.metrics().failures.len(), 3);
}

#[test]
fn an_error_that_is_not_retryable_fails_the_job_at_once() {
    let mut sim = Sim::new(shape(&[(1, &[])], 4), &["a"]);
    sim.place();
    sim.fail(task(0, 0, 0), error(false));
    assert!(matches!(
        sim.failed,
        Some(JobFailure::Task { attempts: 1, .. })
    ));
    assert!(sim.pending.is_empty() && sim.running.is_empty());
}

#[test]
fn losses_do_not_use_up_the_tries_that_errors_count() {
    let mut sim = Sim::new(shape(&[(1, &[])], 2), &["a", "b", "c"]);
    sim.place();
    sim.fail(task(0, 0, 0), error(true));
    sim.place();
    let lost = Failure::Lost {
        message: "gone".into(),
    };
    sim.fail(task(0, 0, 1), lost);
    sim.settle();
    sim.place();
    sim.finish(task(0, 0, 2));
    assert_eq!(sim.finishes, 1);
    assert!(sim.failed.is_none());
}

#[test]
fn an_executor_lost_mid_stage_reruns_its_tasks_and_the_tasks_reading_from_it() {
    let mut sim = Sim::new(shape(&[(2, &[]), (2, &[0])], 4), &["a", "b"]);
    sim.place();
    sim.finish(task(0, 0, 0)); // on a
    sim.finish(task(0, 1, 0)); // on b
    sim.place();
    assert_eq!(sim.running.len(), 2);
    sim.lose("b");
    // Both stage 1 tasks read from b: both stopped. b's map output is recomputed.
    assert_eq!(sim.cancelled, vec![task(1, 0, 0), task(1, 1, 0)]);
    assert!(sim.running.is_empty());
    assert_eq!(
        sim.pending.iter().map(|l| l.task).collect::<Vec<_>>(),
        vec![task(0, 1, 1)],
        "only the lost map output runs again, before stage 1"
    );
    sim.place();
    sim.finish(task(0, 1, 1));
    // Stage 1 reads the surviving piece and the recomputed one, both on a now.
    let inputs: BTreeSet<(usize, usize, String)> = sim.pending[0]
        .inputs
        .iter()
        .map(|l| (l.map_partition, l.attempt, l.executor_id.to_string()))
        .collect();
    let expected: BTreeSet<(usize, usize, String)> = [(0, 0), (1, 1)]
        .map(|(m, a)| (m, a, "a".to_string()))
        .into();
    assert_eq!(inputs, expected);
    sim.run_to_end();
    assert_eq!(sim.finishes, 1);
    let recomputed: Vec<(usize, usize, String)> = sim
        .state
        .metrics()
        .recomputed
        .iter()
        .map(|r| (r.stage_id.index(), r.partition, r.lost_executor.to_string()))
        .collect();
    assert_eq!(recomputed, vec![(0, 1, "b".to_string())]);
    // The final output comes from the reruns of stage 1, on a.
    let output = sim.finished.expect("finished");
    assert!(
        output
            .iter()
            .all(|l| l.executor_id == "a" && l.attempt == 1)
    );
}

#[test]
fn lost_outputs_no_stage_still_needs_are_not_recomputed() {
    let mut sim = Sim::new(shape(&[(1, &[]), (1, &[0]), (1, &[1])], 4), &["a", "b"]);
    sim.place(); // 0.0 on a
    sim.finish(task(0, 0, 0));
    sim.place_with(|_| 1); // 1.0 on b
    sim.finish(task(1, 0, 0));
    sim.place(); // 2.0 on a
    sim.lose("a");
    // Stage 0's output on a is lost, but stage 1 is done: only the final task reruns.
    assert_eq!(
        sim.pending.iter().map(|l| l.task).collect::<Vec<_>>(),
        vec![task(2, 0, 1)]
    );
    sim.run_to_end();
    assert_eq!(sim.finishes, 1);
    assert!(sim.state.metrics().recomputed.is_empty());
}

#[test]
fn a_fetch_failure_declares_the_source_lost_and_recomputes_what_it_held() {
    let mut sim = Sim::new(shape(&[(2, &[]), (1, &[0])], 4), &["a", "b"]);
    sim.place();
    sim.finish(task(0, 0, 0)); // a
    sim.finish(task(0, 1, 0)); // b
    sim.place(); // 1.0 on a
    sim.fail(
        task(1, 0, 0),
        Failure::FetchFailed {
            from: ExecutorId::from("b"),
            message: "connection refused".into(),
        },
    );
    assert_eq!(sim.declared, vec![ExecutorId::from("b")]);
    sim.settle();
    // The reduce task waits for the recomputed map output; its next attempt is 1 (the
    // launch withdrawn when b was lost never ran, so its number is used again).
    assert_eq!(
        sim.pending.iter().map(|l| l.task).collect::<Vec<_>>(),
        vec![task(0, 1, 1)]
    );
    sim.place();
    sim.finish(task(0, 1, 1));
    assert_eq!(
        sim.pending.iter().map(|l| l.task).collect::<Vec<_>>(),
        vec![task(1, 0, 1)]
    );
    sim.run_to_end();
    assert_eq!(sim.finishes, 1);
}

#[test]
fn an_interrupted_call_pauses_the_task_until_its_timer() {
    let mut sim = Sim::new(shape(&[(1, &[])], 4), &["a"]);
    sim.place();
    sim.fail(
        task(0, 0, 0),
        Failure::Interrupted {
            message: "reset".into(),
        },
    );
    assert!(sim.pending.is_empty(), "nothing runs before the timer");
    assert_eq!(
        sim.state.in_flight(),
        1,
        "the paused task keeps the job alive"
    );
    let timer = sim.timers.pop().expect("a retry timer");
    sim.feed(Event::Timer(timer));
    assert_eq!(sim.pending[0].task, task(0, 0, 1));
}

#[test]
fn an_interrupted_task_waits_longer_each_time_up_to_a_cap() {
    let pauses: Vec<u128> = (1..=7).map(|n| interrupted_pause(n).as_millis()).collect();
    assert_eq!(pauses, vec![200, 400, 800, 1600, 3200, 3200, 3200]);
}

#[test]
fn cancelling_stops_every_attempt_and_fails_the_job() {
    let mut sim = Sim::new(shape(&[(3, &[]), (1, &[0])], 4), &["a", "b"]);
    sim.place_with(|_| 0); // all three on a
    sim.feed(Event::Cancel {
        reason: "the user pressed Ctrl-C".into(),
    });
    assert_eq!(sim.cancelled.len(), 3);
    assert!(sim.running.is_empty());
    assert_eq!(
        sim.failed,
        Some(JobFailure::Cancelled {
            reason: "the user pressed Ctrl-C".into()
        })
    );
    // A task that reports in afterwards changes nothing; one placed late is stopped.
    let before = sim.cancelled.len();
    sim.feed(Event::TaskStarted {
        task: task(0, 0, 5),
        executor: ExecutorId::from("a"),
    });
    assert_eq!(sim.cancelled.len(), before + 1);
    assert_eq!(sim.finishes, 0);
}

#[test]
fn a_job_left_without_executors_fails_when_the_grace_period_ends() {
    let mut sim = Sim::new(shape(&[(1, &[])], 4), &["a"]);
    sim.place();
    sim.lose("a");
    let timer = sim.timers.pop().expect("a grace timer");
    sim.feed(Event::ExecutorsBack);
    sim.feed(Event::Timer(timer));
    assert!(sim.failed.is_none(), "an executor came back in time");
    sim.feed(Event::ExecutorsGone);
    let timer = sim.timers.pop().expect("a second grace timer");
    sim.feed(Event::Timer(timer));
    assert!(matches!(sim.failed, Some(JobFailure::NoExecutors { .. })));
}

#[test]
fn a_job_of_twenty_stages_runs_each_stage_after_the_one_it_reads() {
    let stages: Vec<(usize, Vec<usize>)> = (0..20)
        .map(|s| (3, if s == 0 { vec![] } else { vec![s - 1] }))
        .collect();
    let borrowed: Vec<(usize, &[usize])> = stages.iter().map(|(p, i)| (*p, i.as_slice())).collect();
    let mut sim = Sim::new(shape(&borrowed, 4), &["a", "b", "c"]);
    sim.run_to_end();
    assert_eq!(sim.finishes, 1);
    assert_eq!(sim.placed.len(), 60, "every task once, no retries");
    let stage_order: Vec<usize> = sim.placed.iter().map(|(t, _)| t.stage.0).collect();
    assert!(stage_order.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(sim.finished.map(|o| o.len()), Some(3 * OUTPUTS));
}

#[test]
fn events_replayed_through_a_fresh_state_end_in_the_same_state() {
    let job = shape(&[(3, &[]), (2, &[0])], 4);
    let mut sim = Sim::new(job.clone(), &["a", "b"]);
    let mut log = vec![Event::Submitted];
    // Record what the sim feeds by replaying its decisions: drive by hand, logging.
    let mut feed = |sim: &mut Sim, event: Event| {
        log.push(event.clone());
        sim.feed(event);
    };
    let mut order = Vec::new();
    for launch in std::mem::take(&mut sim.pending) {
        let executor = ExecutorId::from(if launch.task.partition == 1 { "b" } else { "a" });
        sim.running.insert(launch.task, executor.clone());
        order.push(launch.task);
        feed(
            &mut sim,
            Event::TaskStarted {
                task: launch.task,
                executor,
            },
        );
    }
    for task in order {
        let executor = sim.running.remove(&task).expect("runs");
        let report = Sim::report(task, &executor);
        feed(
            &mut sim,
            Event::TaskFinished {
                task,
                executor,
                report,
            },
        );
    }
    feed(
        &mut sim,
        Event::ExecutorLost {
            executor: ExecutorId::from("b"),
        },
    );
    // Serialize and parse the log, as `ember history` reads it.
    let text: Vec<String> = log
        .iter()
        .map(|e| serde_json::to_string(e).expect("encodes"))
        .collect();
    let mut replayed = JobState::new(job);
    for line in &text {
        let event: Event = serde_json::from_str(line).expect("decodes");
        replayed.on(event);
    }
    assert_eq!(replayed.status(), sim.state.status());
    assert_eq!(replayed.done_attempts(), sim.state.done_attempts());
    assert_eq!(replayed.in_flight(), sim.state.in_flight());
    assert_eq!(
        serde_json::to_string(replayed.metrics()).expect("encodes"),
        serde_json::to_string(sim.state.metrics()).expect("encodes")
    );
}

/// Drives a random job through random results and losses; returns how it ended.
fn chaos(seed: u64, stages: &[(usize, Vec<usize>)], executors: usize) -> Sim {
    let mut rng = StdRng::seed_from_u64(seed);
    let borrowed: Vec<(usize, &[usize])> = stages.iter().map(|(p, i)| (*p, i.as_slice())).collect();
    let names: Vec<String> = (0..executors).map(|e| format!("e{e}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut sim = Sim::new(shape(&borrowed, 4), &refs);
    let mut outputs_done: HashMap<PartitionId, usize> = HashMap::new();
    for _ in 0..20_000 {
        if sim.finished.is_some() || sim.failed.is_some() {
            break;
        }
        sim.place_with(|n| rng.random_range(0..n));
        let roll = rng.random_range(0..100);
        if roll < 5 && !sim.alive.is_empty() {
            let victim = sim.alive[rng.random_range(0..sim.alive.len())].clone();
            sim.lose(victim.as_str());
            continue;
        }
        if (sim.running.is_empty() || roll < 10) && !sim.timers.is_empty() {
            let timer = sim.timers.remove(rng.random_range(0..sim.timers.len()));
            sim.feed(Event::Timer(timer));
            continue;
        }
        let Some(task) = sim
            .running
            .keys()
            .nth(rng.random_range(0..sim.running.len().max(1)))
            .copied()
        else {
            continue;
        };
        match roll {
            10..70 => {
                *outputs_done.entry(task.partition_id()).or_default() += 1;
                sim.finish(task);
            }
            70..82 => sim.fail(task, error(rng.random_bool(0.8))),
            82..88 => sim.fail(
                task,
                Failure::Lost {
                    message: "gone".into(),
                },
            ),
            88..94 => {
                let Some(from) = sim.alive.get(rng.random_range(0..executors)).cloned() else {
                    continue;
                };
                sim.fail(
                    task,
                    Failure::FetchFailed {
                        from,
                        message: "refused".into(),
                    },
                );
            }
            _ => sim.fail(
                task,
                Failure::Interrupted {
                    message: "reset".into(),
                },
            ),
        }
        sim.settle();
    }
    sim
}

fn graph() -> impl Strategy<Value = Vec<(usize, Vec<usize>)>> {
    prop::collection::vec(
        (
            1usize..5,
            prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        ),
        1..7,
    )
    .prop_map(|stages| {
        stages
            .into_iter()
            .enumerate()
            .map(|(id, (partitions, picks))| {
                let mut inputs: Vec<usize> = if id == 0 {
                    Vec::new()
                } else {
                    picks.iter().map(|p| p.index(id)).collect()
                };
                inputs.sort_unstable();
                inputs.dedup();
                (partitions, inputs)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever the order of results and losses: the job ends, succeeded or failed with a
    /// reason; no task has two attempts running at once (checked as each is placed); the
    /// result is committed once, with one piece per map task and output partition.
    #[test]
    fn every_run_ends_with_one_result_or_a_reason(
        seed in any::<u64>(),
        stages in graph(),
        executors in 1usize..5,
    ) {
        let sim = chaos(seed, &stages, executors);
        let ended = sim.finished.is_some() || sim.failed.is_some();
        prop_assert!(ended, "the job did not end: {:?}", sim.state.status());
        prop_assert!(sim.finishes <= 1);
        match (&sim.finished, &sim.failed) {
            (Some(output), None) => {
                prop_assert_eq!(sim.state.status(), &Status::Succeeded);
                let mut pieces = BTreeSet::new();
                for piece in output {
                    prop_assert!(pieces.insert((piece.map_partition, piece.output_partition)));
                }
                let final_partitions = stages.last().map_or(0, |s| s.0);
                prop_assert_eq!(pieces.len(), final_partitions * OUTPUTS);
            }
            (None, Some(failure)) => {
                prop_assert_eq!(sim.state.status(), &Status::Failed(failure.clone()));
                prop_assert!(!failure.to_string().is_empty());
            }
            other => prop_assert!(false, "ended both ways: {:?}", other),
        }
        prop_assert_eq!(sim.state.in_flight(), 0);
        prop_assert!(sim.state.running().is_empty());
    }
}

/// A one-stage job of `partitions` tasks with speculation on: copies after 3 of 4 are
/// done, for tasks over 1.5 x the median (and over 50 ms).
fn speculative(partitions: usize) -> JobState {
    let mut shape = shape(&[(partitions, &[])], 4);
    shape.adaptive.speculation = crate::adaptive::Speculation {
        enabled: true,
        quantile: 0.75,
        multiplier: 1.5,
        min_runtime: Duration::from_millis(50),
        interval: Duration::from_millis(100),
    };
    JobState::new(shape)
}

fn counted_report(executor: &ExecutorId, rows: i64) -> TaskReport {
    TaskReport {
        locations: vec![Location {
            output_partition: 0,
            executor: executor.clone(),
            path: format!("/w/{executor}/out"),
            rows: rows as u64,
            bytes: 10,
        }],
        elapsed: Duration::from_millis(100),
        accumulators: vec![("rows".into(), ember_proto::AccumulatorValue::Long(rows))],
        ..TaskReport::default()
    }
}

fn launches(actions: &[Action]) -> Vec<Launch> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Launch(l) => Some(l.clone()),
            _ => None,
        })
        .collect()
}

/// Starts the 4 tasks on e0..e3 at time 0 and finishes the first three at 100 ms.
fn three_of_four_done(state: &mut JobState) {
    state.set_clock(0);
    let started = launches(&state.on(Event::Submitted));
    assert_eq!(started.len(), 4);
    for (i, launch) in started.iter().enumerate() {
        state.on(Event::TaskStarted {
            task: launch.task,
            executor: ExecutorId::from(format!("e{i}").as_str()),
        });
    }
    state.set_clock(100_000);
    for (i, launch) in started.iter().take(3).enumerate() {
        let executor = ExecutorId::from(format!("e{i}").as_str());
        state.on(Event::TaskFinished {
            task: launch.task,
            executor: executor.clone(),
            report: counted_report(&executor, 10),
        });
    }
}

#[test]
fn a_straggler_gets_a_copy_elsewhere_and_the_first_to_finish_counts_once() {
    let mut state = speculative(4);
    three_of_four_done(&mut state);
    let slow = ExecutorId::from("e3");
    // Not slow yet at 120 ms (limit: max(1.5 x 100 ms, 50 ms) = 150 ms).
    state.set_clock(120_000);
    assert!(launches(&state.on(Event::Timer(Timer::Speculate))).is_empty());
    state.set_clock(400_000);
    let copies = launches(&state.on(Event::Timer(Timer::Speculate)));
    assert_eq!(copies.len(), 1, "one copy of the straggler");
    let copy = &copies[0];
    assert_eq!((copy.task.partition, copy.task.attempt), (3, 1));
    assert_eq!(
        copy.exclude.as_ref(),
        Some(&slow),
        "never on the straggler's executor"
    );
    // The next look launches no second copy.
    state.set_clock(600_000);
    assert!(launches(&state.on(Event::Timer(Timer::Speculate))).is_empty());
    let fast = ExecutorId::from("e0");
    state.on(Event::TaskStarted {
        task: copy.task,
        executor: fast.clone(),
    });
    let actions = state.on(Event::TaskFinished {
        task: copy.task,
        executor: fast.clone(),
        report: counted_report(&fast, 10),
    });
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Cancel { task, executor } if task.attempt == 0 && task.partition == 3 && *executor == slow
        )),
        "the original is cancelled: {actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Straggler { executor } if *executor == slow)),
        "its executor gets nothing more until it heartbeats: {actions:?}"
    );
    assert!(actions.iter().any(|a| matches!(a, Action::Finish { .. })));
    // The original reports late: nothing more counts.
    let original = TaskId {
        stage: StageId(0),
        partition: 3,
        attempt: 0,
    };
    state.on(Event::TaskFinished {
        task: original,
        executor: slow.clone(),
        report: counted_report(&slow, 10),
    });
    let metrics = state.metrics();
    assert_eq!(
        metrics.accumulators.get("rows"),
        Some(&ember_proto::AccumulatorValue::Long(40))
    );
    assert_eq!(metrics.tasks.len(), 4);
    assert!(
        metrics
            .tasks
            .iter()
            .any(|t| t.partition == 3 && t.speculative)
    );
    assert_eq!(metrics.speculated.len(), 1);
    assert!(metrics.speculated[0].won);
    assert_eq!(state.in_flight(), 0);
}

#[test]
fn when_the_original_finishes_first_its_copy_is_cancelled() {
    let mut state = speculative(4);
    three_of_four_done(&mut state);
    state.set_clock(400_000);
    let copy = launches(&state.on(Event::Timer(Timer::Speculate)))
        .pop()
        .expect("a copy");
    state.on(Event::TaskStarted {
        task: copy.task,
        executor: ExecutorId::from("e1"),
    });
    let slow = ExecutorId::from("e3");
    let original = TaskId {
        stage: StageId(0),
        partition: 3,
        attempt: 0,
    };
    let actions = state.on(Event::TaskFinished {
        task: original,
        executor: slow.clone(),
        report: counted_report(&slow, 10),
    });
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Cancel { task, .. } if *task == copy.task)),
        "{actions:?}"
    );
    assert!(actions.iter().any(|a| matches!(a, Action::Finish { .. })));
    assert_eq!(state.metrics().speculated.len(), 1);
    assert!(!state.metrics().speculated[0].won);
    assert_eq!(state.in_flight(), 0);
}

#[test]
fn without_speculation_no_copy_is_launched() {
    let mut state = JobState::new(shape(&[(4, &[])], 4));
    three_of_four_done(&mut state);
    state.set_clock(10_000_000);
    assert!(launches(&state.on(Event::Timer(Timer::Speculate))).is_empty());
}

/// Submits `state` (stage 0 of maps, stage 1 reading it), runs every map on e0 with each
/// writing `bytes[o]` (and as many rows) to output partition `o`, and returns the
/// launches of stage 1.
fn run_maps(mut state: JobState, bytes: &[u64]) -> (JobState, Vec<Launch>) {
    let maps = launches(&state.on(Event::Submitted));
    let mut next = Vec::new();
    for launch in maps {
        let e = ExecutorId::from("e0");
        state.on(Event::TaskStarted {
            task: launch.task,
            executor: e.clone(),
        });
        let report = TaskReport {
            locations: bytes
                .iter()
                .enumerate()
                .map(|(o, &b)| Location {
                    output_partition: o,
                    executor: e.clone(),
                    path: format!("/w/{}/{o}", launch.task.partition),
                    rows: b,
                    bytes: b,
                })
                .collect(),
            ..TaskReport::default()
        };
        next = state.on(Event::TaskFinished {
            task: launch.task,
            executor: e,
            report,
        });
    }
    (state, launches(&next))
}

#[test]
fn a_stage_is_cut_anew_from_its_inputs_sizes_and_its_tasks_read_their_share() {
    let mut shape = shape(&[(2, &[]), (4, &[0])], 4);
    shape.stages[1].facts = ember_planner::StageFacts {
        partitioned: vec![0],
        coalescable: true,
        ..Default::default()
    };
    shape.adaptive = crate::adaptive::AdaptiveConfig {
        min_partition_bytes: 0,
        target_partition_bytes: 45,
        ..crate::adaptive::AdaptiveConfig::off()
    };
    shape.adaptive.coalesce = true;
    // Each map writes 10 bytes to each of 4 partitions.
    let (state, reduce) = run_maps(JobState::new(shape), &[10, 10, 10, 10]);
    // 20 bytes per partition, 45 per task: partitions [0, 2) and [2, 4).
    assert_eq!(reduce.len(), 2);
    for (launch, first) in reduce.iter().zip([0, 2]) {
        assert_eq!(launch.plan_partition, Some(first));
        let mut read: Vec<(usize, usize)> = launch
            .inputs
            .iter()
            .map(|l| (l.map_partition, l.output_partition))
            .collect();
        read.sort_unstable();
        assert_eq!(
            read,
            vec![(0, first), (0, first + 1), (1, first), (1, first + 1)],
            "each task is given exactly its partitions' pieces"
        );
    }
    assert_eq!(state.metrics().stages[1].partitions, 2);
    assert_eq!(state.metrics().stages[1].planned_partitions, 4);
}

#[test]
fn a_copy_takes_over_when_the_straggler_is_declared_lost() {
    let mut state = speculative(4);
    three_of_four_done(&mut state);
    state.set_clock(400_000);
    let copy = launches(&state.on(Event::Timer(Timer::Speculate)))
        .pop()
        .expect("a copy");
    let fast = ExecutorId::from("e0");
    state.on(Event::TaskStarted {
        task: copy.task,
        executor: fast.clone(),
    });
    // The straggler's executor stops heartbeating and is declared lost: no new attempt,
    // the copy carries on.
    let actions = state.on(Event::ExecutorLost {
        executor: ExecutorId::from("e3"),
    });
    assert!(launches(&actions).is_empty(), "{actions:?}");
    let actions = state.on(Event::TaskFinished {
        task: copy.task,
        executor: fast.clone(),
        report: counted_report(&fast, 10),
    });
    assert!(actions.iter().any(|a| matches!(a, Action::Finish { .. })));
    assert_eq!(
        state.metrics().accumulators.get("rows"),
        Some(&ember_proto::AccumulatorValue::Long(40))
    );
    assert_eq!(state.in_flight(), 0);
}

#[test]
fn a_copy_whose_original_failed_and_ran_again_is_not_used() {
    let mut state = speculative(4);
    three_of_four_done(&mut state);
    state.set_clock(400_000);
    let copy = launches(&state.on(Event::Timer(Timer::Speculate)))
        .pop()
        .expect("a copy");
    // The original fails before the copy is placed: the copy is withdrawn, the task
    // queued again.
    let slow = ExecutorId::from("e3");
    let original = TaskId {
        stage: StageId(0),
        partition: 3,
        attempt: 0,
    };
    let actions = state.on(Event::TaskFailed {
        task: original,
        executor: slow,
        failure: Failure::Error {
            message: "boom".into(),
            retryable: true,
        },
    });
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Withdraw(t) if *t == copy.task)),
        "{actions:?}"
    );
    let retry = launches(&actions).pop().expect("a retry");
    assert_eq!(retry.task.attempt, 2);
    // The withdrawn copy is placed anyway (a race): it is cancelled, and the retry counts.
    let actions = state.on(Event::TaskStarted {
        task: copy.task,
        executor: ExecutorId::from("e1"),
    });
    assert!(actions.iter().any(|a| matches!(a, Action::Cancel { .. })));
    let e2 = ExecutorId::from("e2");
    state.on(Event::TaskStarted {
        task: retry.task,
        executor: e2.clone(),
    });
    let actions = state.on(Event::TaskFinished {
        task: retry.task,
        executor: e2.clone(),
        report: counted_report(&e2, 10),
    });
    assert!(actions.iter().any(|a| matches!(a, Action::Finish { .. })));
    assert_eq!(state.in_flight(), 0);
}

/// The launches of stage 1 (4 partitions, output `output`) after stage 0's 4 maps each
/// wrote 100 bytes to partition 0 and 1 byte to the others, with skew splitting forced.
fn skewed_second_stage(output: OutputKind) -> Vec<Launch> {
    let mut shape = shape(&[(4, &[]), (4, &[0])], 4);
    shape.stages[1].output = output;
    shape.stages[1].facts = ember_planner::StageFacts {
        partitioned: vec![0],
        splittable: vec![0],
        ..Default::default()
    };
    shape.adaptive = crate::adaptive::AdaptiveConfig {
        skew_factor: 1.5,
        skew_min_bytes: 0,
        ..crate::adaptive::AdaptiveConfig::off()
    };
    shape.adaptive.skew_join = true;
    run_maps(JobState::new(shape), &[100, 1, 1, 1]).1
}

#[test]
fn a_stage_whose_outputs_are_result_partitions_is_never_split_into_more_tasks() {
    // A hash output: the hot partition is split by map outputs.
    assert_eq!(skewed_second_stage(OutputKind::Hash).len(), 3 + 4);
    // The result's partitions (or a merge's input): as planned.
    assert_eq!(skewed_second_stage(OutputKind::Preserve).len(), 4);
    assert_eq!(skewed_second_stage(OutputKind::RoundRobin).len(), 4);
}

#[test]
fn a_result_from_an_executor_declared_lost_is_refused_and_recorded() {
    let mut sim = Sim::new(shape(&[(2, &[]), (1, &[0])], 4), &["a", "b"]);
    sim.place();
    let on_b: TaskId = *sim
        .running
        .iter()
        .find(|(_, e)| e.as_str() == "b")
        .expect("a task on b")
        .0;
    // b is cut off: declared lost while its task runs, which then runs again on a.
    sim.lose("b");
    let stale = Sim::report(on_b, &ExecutorId::from("b"));
    sim.running.remove(&on_b);
    sim.feed(Event::TaskFinished {
        task: on_b,
        executor: ExecutorId::from("b"),
        report: stale,
    });
    let refused = &sim.state.metrics().refused;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].executor_id.as_str(), "b");
    assert!(refused[0].succeeded);
    sim.run_to_end();
    let outputs = sim.finished.expect("the job finished");
    assert!(
        outputs.iter().all(|l| l.executor_id.as_str() == "a"),
        "nothing of lost b is used: {outputs:?}"
    );
    // Only a's attempts count in the metrics.
    assert!(
        sim.state
            .metrics()
            .tasks
            .iter()
            .all(|t| t.executor_id.as_str() == "a")
    );
}

#[test]
fn a_job_taken_over_runs_again_what_ran_and_keeps_what_finished() {
    let job = shape(&[(2, &[]), (2, &[0]), (1, &[1])], 4);
    let mut sim = Sim::new(job.clone(), &["a", "b"]);
    sim.place();
    sim.finish(task(0, 0, 0));
    sim.finish(task(0, 1, 0));
    sim.place();
    // Stage 1 runs on both executors; one of its tasks finishes before the take-over.
    sim.finish(task(1, 0, 0));
    assert_eq!(sim.running_of_stage(1), vec![task(1, 1, 0)]);

    // The new scheduler: the same events replayed, then `Recovered`.
    let mut taken = Sim {
        state: JobState::new(job),
        ..Sim::new(shape(&[(1, &[])], 1), &["a", "b"])
    };
    taken.pending.clear();
    let replay: Vec<Event> = {
        let mut events = vec![Event::Submitted];
        for (task, executor) in &sim.placed {
            events.push(Event::TaskStarted {
                task: *task,
                executor: executor.clone(),
            });
            if !sim.running.contains_key(task) {
                events.push(Event::TaskFinished {
                    task: *task,
                    executor: executor.clone(),
                    report: Sim::report(*task, executor),
                });
            }
        }
        events
    };
    for event in replay {
        let _ = taken.state.on(event);
    }
    assert_eq!(taken.state.in_flight(), 1, "task 1.1 ran at the kill");
    taken.feed(Event::Recovered);
    let launched: Vec<TaskId> = taken.pending.iter().map(|l| l.task).collect();
    assert_eq!(
        launched,
        vec![task(1, 1, 2)],
        "only the running task, as an attempt no lost launch can have had"
    );
    assert!(taken.pending[0].urgent);
    taken.run_to_end();
    assert_eq!(taken.state.status(), &Status::Succeeded);
    let stage0_runs = taken
        .placed
        .iter()
        .filter(|(t, _)| t.stage == StageId(0))
        .count();
    assert_eq!(stage0_runs, 0, "the finished stage did not run again");
}
