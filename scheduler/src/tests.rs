//! Characterization tests of the job loop ([`JobRun`](super::job::JobRun)) through
//! [`Scheduler::run_job`](super::Scheduler::run_job), on [`ScriptedExecutor`]s: retries and
//! how each kind of failure is counted, executor losses and the recomputation of lost map
//! outputs, stale results, and what the final stage reports. They pin today's behaviour,
//! quirks included (see the note on each), so that a rewrite of the loop can be checked
//! against them.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::error::DataFusionError;
use ember_executors::ExecutorError;
use ember_proto::ShuffleLocation;

use super::testing::{Call, Harness, Reply, job, location};
use super::{JobEvent, JobOutcome};
use crate::error::{Result, SchedulerError};

fn retryable(message: &str) -> ExecutorError {
    ExecutorError::Execution(DataFusionError::Execution(message.to_string()))
}

/// `(stage, partition, attempt, will_retry)` of every `TaskFailed` event.
fn failures(events: &[JobEvent]) -> Vec<(usize, usize, usize, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            JobEvent::TaskFailed {
                stage_id,
                partition,
                attempt,
                will_retry,
                ..
            } => Some((stage_id.index(), *partition, *attempt, *will_retry)),
            _ => None,
        })
        .collect()
}

/// The `TaskFailed` event's error text for `(stage, partition, attempt)`.
fn failure_text(events: &[JobEvent], task: (usize, usize, usize)) -> String {
    events
        .iter()
        .find_map(|e| match e {
            JobEvent::TaskFailed {
                stage_id,
                partition,
                attempt,
                error,
                ..
            } if (stage_id.index(), *partition, *attempt) == task => Some(error.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no TaskFailed event for {task:?} in {events:?}"))
}

/// `(stage, partition, attempts)` of a job that failed with `TaskFailed`.
fn task_failed(result: Result<JobOutcome>) -> (usize, usize, usize, ExecutorError) {
    match result {
        Err(SchedulerError::TaskFailed {
            stage_id,
            partition,
            attempts,
            source,
        }) => (stage_id, partition, attempts, source),
        other => panic!("expected TaskFailed, got {other:?}"),
    }
}

fn key(stage: usize, partition: usize, attempt: usize, executor: &str) -> Key {
    (stage, partition, attempt, executor.to_string())
}

type Key = (usize, usize, usize, String);

/// The members left in the harness's pool.
fn members(harness: &Harness) -> Vec<String> {
    harness
        .scheduler
        .pool()
        .status()
        .into_iter()
        .map(|s| s.id.to_string())
        .collect()
}

/// `(stage, partition, lost executor)` of every recomputed map task.
fn recomputed(outcome: &JobOutcome) -> Vec<(usize, usize, String)> {
    outcome
        .metrics
        .recomputed
        .iter()
        .map(|r| (r.stage_id.index(), r.partition, r.lost_executor.to_string()))
        .collect()
}

/// `(stage, partition, attempt, executor)` of every successful attempt the metrics record.
fn records(outcome: &JobOutcome) -> Vec<Key> {
    outcome
        .metrics
        .tasks
        .iter()
        .map(|t| {
            (
                t.stage_id.index(),
                t.partition,
                t.attempt,
                t.executor_id.to_string(),
            )
        })
        .collect()
}

/// The call that launched `(stage, partition, attempt)`.
fn call(calls: &[Call], stage: usize, partition: usize, attempt: usize) -> Call {
    calls
        .iter()
        .find(|c| (c.stage, c.partition, c.attempt) == (stage, partition, attempt))
        .cloned()
        .unwrap_or_else(|| panic!("{stage}.{partition}#{attempt} was never launched"))
}

#[tokio::test]
async fn a_retryable_error_is_retried_up_to_max_attempts_on_another_executor() {
    let job = job("retry", &[(1, &[], 1)]);
    let harness = Harness::new(&job, 3, &[("e0", 1), ("e1", 1)], &[], |_| {
        Reply::Fail(retryable("boom"))
    });
    let (stage, partition, attempts, source) = task_failed(harness.run(&job).await);
    assert_eq!((stage, partition, attempts), (0, 0, 3));
    assert!(source.is_retryable(), "{source}");
    // Each retry avoids the executor of the failed attempt while another has room.
    assert_eq!(
        harness.keys(),
        vec![key(0, 0, 0, "e0"), key(0, 0, 1, "e1"), key(0, 0, 2, "e0")]
    );
    assert_eq!(
        failures(&harness.events()),
        vec![(0, 0, 0, true), (0, 0, 1, true), (0, 0, 2, false)]
    );
}

#[tokio::test]
async fn a_task_that_fails_then_succeeds_records_only_its_successful_attempt() {
    let job = job("retry-ok", &[(1, &[], 1)]);
    let harness = Harness::new(&job, 3, &[("e0", 1), ("e1", 1)], &[], |call| {
        if call.attempt < 2 {
            Reply::Fail(retryable("flaky"))
        } else {
            Reply::Finish
        }
    });
    let outcome = harness.run(&job).await.expect("the third attempt succeeds");
    assert_eq!(records(&outcome), vec![key(0, 0, 2, "e0")]);
    assert_eq!(outcome.metrics.failures.len(), 2);
    let last = call(&harness.calls(), 0, 0, 2);
    assert_eq!(outcome.final_output, vec![location(&last, 0, 1)]);
}

#[tokio::test]
async fn a_non_retryable_error_fails_the_job_on_its_first_attempt() {
    let errors = [
        ExecutorError::Remote {
            message: "bad plan".into(),
            retryable: false,
        },
        ExecutorError::Input {
            location: "data.csv".into(),
            message: "line 3: not a number".into(),
        },
        ExecutorError::Config {
            key: "datafusion.x".into(),
            message: "unknown".into(),
        },
    ];
    for error in errors {
        let text = error.to_string();
        let shared = std::sync::Mutex::new(Some(error));
        let job = job("fatal", &[(1, &[], 1)]);
        let harness =
            Harness::new(
                &job,
                4,
                &[("e0", 1), ("e1", 1)],
                &[],
                move |_| match crate::sync::lock(&shared).take() {
                    Some(error) => Reply::Fail(error),
                    None => Reply::Finish,
                },
            );
        let (_, _, attempts, source) = task_failed(harness.run(&job).await);
        assert_eq!(attempts, 1, "{text}");
        assert_eq!(source.to_string(), text);
        assert_eq!(harness.keys(), vec![key(0, 0, 0, "e0")], "{text}");
        assert_eq!(failures(&harness.events()), vec![(0, 0, 0, false)]);
    }
}

/// Quirk Q1: losses are retried while `losses <= max_attempts`, one more attempt than
/// other failures get (`failures < max_attempts`).
#[tokio::test]
async fn interrupted_calls_get_one_more_attempt_than_errors_and_leave_the_pool_alone() {
    let job = job("interrupted", &[(1, &[], 1)]);
    let harness = Harness::new(&job, 2, &[("e0", 1), ("e1", 1)], &[], |call| {
        Reply::Fail(ExecutorError::Interrupted {
            executor_id: call.executor.clone(),
            message: "connection reset".into(),
        })
    });
    let (_, _, attempts, source) = task_failed(harness.run(&job).await);
    assert_eq!(attempts, 3);
    assert!(
        matches!(source, ExecutorError::Interrupted { .. }),
        "{source}"
    );
    // No `avoid` for losses: placement alone decides (most free, then smaller id).
    assert_eq!(
        harness.keys(),
        vec![key(0, 0, 0, "e0"), key(0, 0, 1, "e0"), key(0, 0, 2, "e0")]
    );
    assert_eq!(members(&harness), vec!["e0", "e1"]);

    let errors = Harness::new(&job, 2, &[("e0", 1), ("e1", 1)], &[], |_| {
        Reply::Fail(retryable("boom"))
    });
    let (_, _, attempts, _) = task_failed(errors.run(&job).await);
    assert_eq!(attempts, 2);
    assert_eq!(errors.calls().len(), 2);
}

#[tokio::test]
async fn a_lost_error_declares_its_executor_lost_and_counts_losses_up_to_max_plus_one() {
    let job = job("lost", &[(1, &[], 1)]);
    let executors = [("e0", 1), ("e1", 1), ("e2", 1), ("e3", 1)];
    let harness = Harness::new(&job, 2, &executors, &[], |call| {
        Reply::Fail(ExecutorError::Lost {
            executor_id: call.executor.clone(),
            message: "connection refused".into(),
        })
    });
    let (_, _, attempts, source) = task_failed(harness.run(&job).await);
    assert_eq!(attempts, 3);
    assert!(matches!(source, ExecutorError::Lost { .. }), "{source}");
    assert_eq!(
        harness.keys(),
        vec![key(0, 0, 0, "e0"), key(0, 0, 1, "e1"), key(0, 0, 2, "e2")]
    );
    // Every executor that answered Lost left the pool.
    assert_eq!(members(&harness), vec!["e3"]);
}

#[tokio::test]
async fn an_answer_from_another_executor_id_counts_as_that_executor_lost() {
    let job = job("renamed", &[(1, &[], 1)]);
    let harness = Harness::new(&job, 4, &[("e0", 1), ("e1", 1)], &[], |call| {
        if call.attempt == 0 {
            Reply::FinishAs("e0-again".into())
        } else {
            Reply::Finish
        }
    });
    let outcome = harness.run(&job).await.expect("the retry succeeds");
    assert_eq!(members(&harness), vec!["e1"]);
    assert_eq!(harness.keys(), vec![key(0, 0, 0, "e0"), key(0, 0, 1, "e1")]);
    assert_eq!(records(&outcome), vec![key(0, 0, 1, "e1")]);
    let text = failure_text(&harness.events(), (0, 0, 0));
    assert!(text.contains("answered by executor e0-again"), "{text}");
}

#[tokio::test]
async fn a_fetch_failure_declares_the_source_lost_and_recomputes_its_output() {
    // Stage 0's two tasks land on e0 and e1; stage 1 reads both and first runs on e0.
    let job = job("fetch", &[(2, &[], 1), (1, &[0], 1)]);
    let harness = Harness::new(&job, 4, &[("e0", 2), ("e1", 2)], &[], |call| {
        if (call.stage, call.attempt) == (1, 0) {
            Reply::Fail(ExecutorError::FetchFailed {
                executor_id: "e1".into(),
                message: "connection refused".into(),
            })
        } else {
            Reply::Finish
        }
    });
    let outcome = harness.run(&job).await.expect("the job recovers");
    assert_eq!(members(&harness), vec!["e0"]);
    assert_eq!(
        harness.keys(),
        vec![
            key(0, 0, 0, "e0"),
            key(0, 1, 0, "e1"),
            key(1, 0, 0, "e0"),
            key(0, 1, 1, "e0"),
            key(1, 0, 1, "e0"),
        ]
    );
    assert_eq!(recomputed(&outcome), vec![(0, 1, "e1".to_string())]);
    assert_eq!(failures(&harness.events()), vec![(1, 0, 0, true)]);
    // The retry reads the recomputed piece, not the lost one.
    let calls = harness.calls();
    let retry = call(&calls, 1, 0, 1);
    assert_eq!(
        retry.inputs,
        vec![
            location(&call(&calls, 0, 0, 0), 0, 1),
            location(&call(&calls, 0, 1, 1), 0, 1)
        ]
    );
}

/// Fetch failures are retried while `fetch_failures < max_attempts` (one fewer than losses).
#[tokio::test]
async fn fetch_failures_fail_the_job_at_max_attempts() {
    let job = job("fetch-limit", &[(1, &[], 1), (1, &[0], 1)]);
    let harness = Harness::new(&job, 2, &[("e0", 1), ("e1", 1)], &[], |call| {
        if call.stage == 1 {
            // From an executor that has already left: nothing else is lost.
            Reply::Fail(ExecutorError::FetchFailed {
                executor_id: "gone".into(),
                message: "connection refused".into(),
            })
        } else {
            Reply::Finish
        }
    });
    let (stage, _, attempts, source) = task_failed(harness.run(&job).await);
    assert_eq!((stage, attempts), (1, 2));
    assert!(
        matches!(source, ExecutorError::FetchFailed { .. }),
        "{source}"
    );
    let stage1: Vec<Key> = harness.keys().into_iter().filter(|k| k.0 == 1).collect();
    assert_eq!(stage1.len(), 2);
    assert_eq!(members(&harness), vec!["e0", "e1"]);
}

/// An executor declared lost while stage 1 runs: its running task and the tasks reading
/// from it run again (quirk Q3: the whole stage reads from it), and only the map outputs it
/// held are recomputed, before stage 1 runs again.
#[tokio::test]
async fn an_executor_lost_mid_stage_recomputes_only_the_map_outputs_it_held() {
    let job = job("lost-mid-stage", &[(4, &[], 2), (2, &[0], 1)]);
    let harness = Harness::new(&job, 4, &[("e0", 2), ("e1", 2)], &[], |call| {
        if call.stage == 1 {
            Reply::Hold
        } else {
            Reply::Finish
        }
    });
    let running = harness.start(&job);
    harness
        .wait_for("stage 1 to start", |calls| {
            calls.iter().filter(|c| c.stage == 1).count() == 2
        })
        .await;
    assert_eq!(
        harness.keys(),
        vec![
            key(0, 0, 0, "e0"),
            key(0, 1, 0, "e1"),
            key(0, 2, 0, "e0"),
            key(0, 3, 0, "e1"),
            key(1, 0, 0, "e0"),
            key(1, 1, 0, "e1"),
        ]
    );
    harness.set_script(|_| Reply::Finish);
    assert!(harness.scheduler.pool().mark_lost("e1", "test"));
    let outcome = harness.outcome(running).await.expect("the job recovers");

    // The lost map tasks run first; stage 1's tasks wait for them (in an order that
    // follows a HashMap, quirk Q5, hence sorted here).
    let mut after: Vec<Key> = harness.keys().split_off(6);
    after[2..].sort();
    assert_eq!(
        after,
        vec![
            key(0, 1, 1, "e0"),
            key(0, 3, 1, "e0"),
            key(1, 0, 1, "e0"),
            key(1, 1, 1, "e0"),
        ]
    );
    assert_eq!(
        recomputed(&outcome),
        vec![(0, 1, "e1".to_string()), (0, 3, "e1".to_string())]
    );
    let events = harness.events();
    let restarted: BTreeSet<_> = failures(&events).into_iter().collect();
    assert_eq!(
        restarted,
        BTreeSet::from([(1, 0, 0, true), (1, 1, 0, true)])
    );
    assert!(failure_text(&events, (1, 1, 0)).contains("running on lost executor e1"));
    assert!(failure_text(&events, (1, 0, 0)).contains("reading from lost executor e1"));
    // Stage 1 read the two surviving pieces and the two recomputed ones.
    let calls = harness.calls();
    let inputs: BTreeSet<(usize, usize, String)> = call(&calls, 1, 0, 1)
        .inputs
        .iter()
        .map(|l| (l.map_partition, l.attempt, l.executor_id.to_string()))
        .collect();
    let expected: BTreeSet<(usize, usize, String)> = [(0, 0), (1, 1), (2, 0), (3, 1)]
        .into_iter()
        .map(|(map, attempt)| (map, attempt, "e0".to_string()))
        .collect();
    assert_eq!(inputs, expected);
    assert!(
        outcome
            .final_output
            .iter()
            .all(|l| l.executor_id == "e0" && l.attempt == 1)
    );
}

/// Outputs lost when every stage that reads them is done stay lost: nothing recomputes them.
#[tokio::test]
async fn lost_map_outputs_that_no_running_stage_needs_are_not_recomputed() {
    // Pieces written on e0 weigh 100 bytes, on e1 one byte, so stages 1 and 2 run on e0.
    let job = job("not-needed", &[(2, &[], 2), (2, &[0], 2), (2, &[1], 1)]);
    let harness = Harness::new(&job, 4, &[("e0", 2), ("e1", 2)], &[("e0", 100)], |call| {
        if call.stage == 2 {
            Reply::Hold
        } else {
            Reply::Finish
        }
    });
    let running = harness.start(&job);
    harness
        .wait_for("stage 2 to start", |calls| {
            calls.iter().filter(|c| c.stage == 2).count() == 2
        })
        .await;
    let before = harness.keys();
    assert_eq!(
        before,
        vec![
            key(0, 0, 0, "e0"),
            key(0, 1, 0, "e1"),
            key(1, 0, 0, "e0"),
            key(1, 1, 0, "e0"),
            key(2, 0, 0, "e0"),
            key(2, 1, 0, "e0"),
        ]
    );
    assert!(harness.scheduler.pool().mark_lost("e1", "test"));
    // Let the job loop see the loss before the final tasks answer.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    harness.release(2, 0, 0, Reply::Finish);
    harness.release(2, 1, 0, Reply::Finish);
    let outcome = harness.outcome(running).await.expect("the job finishes");
    assert_eq!(harness.keys(), before, "nothing ran again");
    assert!(recomputed(&outcome).is_empty());
    assert!(failures(&harness.events()).is_empty());
}

/// A result that arrives after its executor was declared lost has no attempt to belong to
/// any more: it is dropped, and the task's retry provides the output.
#[tokio::test]
async fn a_result_from_an_executor_declared_lost_meanwhile_is_ignored() {
    let job = job("stale", &[(2, &[], 1)]);
    let harness = Harness::new(&job, 4, &[("a", 2), ("b", 1)], &[], |_| Reply::Hold);
    let running = harness.start(&job);
    harness
        .wait_for("both tasks to start", |calls| calls.len() == 2)
        .await;
    assert_eq!(harness.keys(), vec![key(0, 0, 0, "a"), key(0, 1, 0, "a")]);
    harness.set_script(|_| Reply::Finish);
    // Both answer before the job loop runs again: task 1's answer (first) declares `a`
    // lost, so task 0's successful answer, queued behind it, is stale.
    harness.release(
        0,
        1,
        0,
        Reply::Fail(ExecutorError::Lost {
            executor_id: "a".into(),
            message: "connection refused".into(),
        }),
    );
    harness.release(0, 0, 0, Reply::Finish);
    let outcome = harness.outcome(running).await.expect("the job recovers");

    assert_eq!(
        harness.keys(),
        vec![
            key(0, 0, 0, "a"),
            key(0, 1, 0, "a"),
            key(0, 0, 1, "b"),
            key(0, 1, 1, "b"),
        ]
    );
    assert_eq!(
        records(&outcome),
        vec![key(0, 0, 1, "b"), key(0, 1, 1, "b")]
    );
    let events = harness.events();
    assert!(failure_text(&events, (0, 0, 0)).contains("running on lost executor a"));
    assert!(!events.iter().any(|e| matches!(
        e,
        JobEvent::TaskFinished { executor_id, .. } if executor_id == "a"
    )));
    let calls = harness.calls();
    assert_eq!(
        outcome.final_output,
        vec![
            location(&call(&calls, 0, 0, 1), 0, 1),
            location(&call(&calls, 0, 1, 1), 0, 1)
        ]
    );
}

/// A task running on an executor that the pool declares lost (missed heartbeats: it may
/// only be cut off) runs again elsewhere, but its call stays open: when it answers, late,
/// the answer is refused as stale and recorded, and the slot accounting still balances.
#[tokio::test]
async fn a_late_answer_from_an_executor_lost_by_heartbeat_is_refused_and_recorded() {
    let job = job("late", &[(2, &[], 1)]);
    let harness = Harness::new(&job, 4, &[("a", 1), ("b", 1)], &[], |_| Reply::Hold);
    let running = harness.start(&job);
    harness
        .wait_for("both tasks to start", |calls| calls.len() == 2)
        .await;
    let on_a = harness
        .keys()
        .into_iter()
        .find(|k| k.3 == "a")
        .expect("a task on a");
    assert!(harness.scheduler.pool().mark_lost("a", "no heartbeat"));
    // The task of `a` runs again on `b` once `b` is free (held, as every call here).
    let on_b = harness
        .keys()
        .into_iter()
        .find(|k| k.3 == "b")
        .expect("a task on b");
    harness.release(on_b.0, on_b.1, on_b.2, Reply::Finish);
    harness
        .wait_for("the rerun on b", |calls| calls.len() == 3)
        .await;
    // Now `a` answers, late, while the rerun still holds the job open.
    harness.release(on_a.0, on_a.1, on_a.2, Reply::Finish);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let rerun = harness.keys().last().cloned().expect("the rerun");
    harness.release(rerun.0, rerun.1, rerun.2, Reply::Finish);
    let outcome = harness.outcome(running).await.expect("the job finishes");
    let refused: Vec<(usize, usize, usize, String)> = outcome
        .metrics
        .refused
        .iter()
        .map(|r| {
            (
                r.stage_id.index(),
                r.partition,
                r.attempt,
                r.executor_id.to_string(),
            )
        })
        .collect();
    assert_eq!(refused, vec![(on_a.0, on_a.1, on_a.2, "a".to_string())]);
    assert!(
        records(&outcome).iter().all(|k| k.3 == "b"),
        "only b's attempts count: {:?}",
        records(&outcome)
    );
}

/// The final output holds, in partition order, the locations of the one successful attempt
/// of each final task, whatever order they finished in; `addresses` names only the
/// executors holding them.
#[tokio::test]
async fn the_final_output_is_each_final_tasks_successful_attempt_in_partition_order() {
    let job = job("final", &[(3, &[], 2), (2, &[0], 1)]);
    let executors = [("e0", 1), ("e1", 1), ("e2", 1)];
    let harness = Harness::new(&job, 4, &executors, &[], |call| {
        if (call.stage, call.partition, call.attempt) == (1, 0, 0) {
            Reply::Hold
        } else {
            Reply::Finish
        }
    });
    let running = harness.start(&job);
    harness
        .wait_for("task 1.1 to finish and 1.0 to wait", |calls| {
            calls.iter().filter(|c| c.stage == 1).count() == 2
        })
        .await;
    // Give task 1.1's answer time to be taken in before 1.0 fails.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    harness.release(1, 0, 0, Reply::Fail(retryable("flaky")));
    let outcome = harness.outcome(running).await.expect("the job finishes");

    let calls = harness.calls();
    let first = call(&calls, 1, 0, 1);
    let second = call(&calls, 1, 1, 0);
    assert_eq!(
        outcome.final_output,
        vec![location(&first, 0, 1), location(&second, 0, 1)]
    );
    let holders: BTreeMap<String, String> = [&first, &second]
        .iter()
        .map(|c| (c.executor.clone(), format!("http://{}:7000", c.executor)))
        .collect();
    let addresses: BTreeMap<String, String> = outcome.addresses.into_iter().collect();
    assert_eq!(addresses, holders);
    assert!(addresses.len() < executors.len());
    // Task 1.1 finished first, and 1.0's retry avoided the executor it failed on.
    let order: Vec<(usize, usize)> = outcome
        .metrics
        .tasks
        .iter()
        .filter(|t| t.stage_id == ember_proto::StageId(1))
        .map(|t| (t.partition, t.attempt))
        .collect();
    assert_eq!(order, vec![(1, 0), (0, 1)]);
    assert_ne!(first.executor, call(&calls, 1, 0, 0).executor);
}

/// A chain of 20 stages (the last also reading stage 0): every stage starts once its
/// inputs are done, every task runs once and reads exactly its input stages' output.
#[tokio::test]
async fn a_job_of_twenty_stages_runs_each_stage_once_in_order() {
    let mut shape: Vec<(usize, Vec<usize>, usize)> = (0..20)
        .map(|s| (2, if s == 0 { vec![] } else { vec![s - 1] }, 2))
        .collect();
    shape[19] = (2, vec![0, 18], 1);
    let stages: Vec<(usize, &[usize], usize)> = shape
        .iter()
        .map(|(p, i, o)| (*p, i.as_slice(), *o))
        .collect();
    let job = job("twenty", &stages);
    let harness = Harness::new(&job, 4, &[("e0", 2), ("e1", 2)], &[], |_| Reply::Finish);
    let outcome = harness.run(&job).await.expect("the job finishes");

    let calls = harness.calls();
    assert_eq!(calls.len(), 40);
    assert!(calls.iter().all(|c| c.attempt == 0));
    let stage_order: Vec<usize> = calls.iter().map(|c| c.stage).collect();
    assert!(stage_order.is_sorted(), "{stage_order:?}");
    let output_of = |stage: usize| -> Vec<ShuffleLocation> {
        let mut out = Vec::new();
        for partition in 0..2 {
            let c = call(&calls, stage, partition, 0);
            out.extend((0..2).map(|o| location(&c, o, 1)));
        }
        out
    };
    for c in &calls {
        let expected: Vec<ShuffleLocation> = match c.stage {
            0 => Vec::new(),
            19 => [output_of(0), output_of(18)].concat(),
            s => output_of(s - 1),
        };
        assert_eq!(c.inputs, expected, "inputs of {}.{}", c.stage, c.partition);
    }
    let events = harness.events();
    assert!(matches!(
        &events[0],
        JobEvent::JobStarted {
            stages: 20,
            tasks: 40,
            ..
        }
    ));
    let stage_events: Vec<(bool, usize)> = events
        .iter()
        .filter_map(|e| match e {
            JobEvent::StageStarted { stage_id, .. } => Some((true, stage_id.index())),
            JobEvent::StageFinished { stage_id, .. } => Some((false, stage_id.index())),
            _ => None,
        })
        .collect();
    let expected: Vec<(bool, usize)> = (0..20).flat_map(|s| [(true, s), (false, s)]).collect();
    assert_eq!(stage_events, expected);
    assert_eq!(outcome.final_output.len(), 2);
    assert!(
        outcome
            .final_output
            .iter()
            .all(|l| l.stage_id == ember_proto::StageId(19))
    );
    assert_eq!(outcome.metrics.tasks.len(), 40);
}

#[tokio::test]
async fn a_job_left_without_executors_waits_the_grace_period_then_fails() {
    let job = job("alone", &[(1, &[], 1)]);
    let harness = Harness::new(&job, 3, &[("e0", 1)], &[], |_| Reply::Hold);
    let running = harness.start(&job);
    harness
        .wait_for("the task to start", |calls| calls.len() == 1)
        .await;
    let lost_at = std::time::Instant::now();
    assert!(harness.scheduler.pool().mark_lost("e0", "test"));
    match harness.outcome(running).await {
        Err(SchedulerError::NoExecutorsLeft { job_id, waited }) => {
            assert_eq!(job_id, "alone");
            // The harness's grace period is 1 s; the loop checks it every 200 ms.
            assert_eq!(waited, std::time::Duration::from_secs(1));
            let elapsed = lost_at.elapsed();
            assert!(
                elapsed >= waited && elapsed < std::time::Duration::from_secs(3),
                "failed after {elapsed:?}"
            );
        }
        other => panic!("expected NoExecutorsLeft, got {other:?}"),
    }
    // The task ran once: nothing was left to run it again.
    assert_eq!(harness.keys(), vec![key(0, 0, 0, "e0")]);
}

#[tokio::test]
async fn tasks_requeued_because_their_executor_was_lost_are_not_counted_against_the_limit() {
    // Quirk Q2: with max 1 attempt, a task whose executor is declared lost while it runs
    // is run again (its loss is counted but never checked), as many times as that happens.
    let job = job("requeue", &[(1, &[], 1)]);
    let harness = Harness::new(
        &job,
        1,
        &[("e0", 1), ("e1", 1), ("e2", 1), ("e3", 1)],
        &[],
        |_| Reply::Hold,
    );
    let running = harness.start(&job);
    for (lost, launches) in [("e0", 1), ("e1", 2), ("e2", 3)] {
        harness
            .wait_for("the next launch", |calls| calls.len() == launches)
            .await;
        assert_eq!(harness.calls()[launches - 1].executor, lost);
        if lost == "e2" {
            harness.set_script(|_| Reply::Finish);
        }
        assert!(harness.scheduler.pool().mark_lost(lost, "test"));
    }
    let outcome = harness
        .outcome(running)
        .await
        .expect("the fourth attempt runs");
    assert_eq!(
        harness.keys(),
        vec![
            key(0, 0, 0, "e0"),
            key(0, 0, 1, "e1"),
            key(0, 0, 2, "e2"),
            key(0, 0, 3, "e3"),
        ]
    );
    assert_eq!(records(&outcome), vec![key(0, 0, 3, "e3")]);
    // Each loss is reported as a failure that will be retried.
    assert_eq!(
        failures(&harness.events()),
        vec![(0, 0, 0, true), (0, 0, 1, true), (0, 0, 2, true)]
    );
}

/// A task whose input executor is lost is stopped where it runs: the scheduler calls the
/// executor's cancel (which removes the attempt's files there) rather than leaving the
/// superseded attempt to run to its end; the rerun's output is the one used.
#[tokio::test]
async fn an_attempt_superseded_by_a_lost_input_is_cancelled_on_its_executor() {
    let job = job("superseded", &[(2, &[], 1), (1, &[0], 1)]);
    let harness = Harness::new(&job, 4, &[("e0", 2), ("e1", 2)], &[], |call| {
        if call.stage == 1 && call.attempt == 0 {
            Reply::Hold
        } else {
            Reply::Finish
        }
    });
    let running = harness.start(&job);
    harness
        .wait_for("the reduce task to start", |calls| {
            calls.iter().any(|c| c.stage == 1)
        })
        .await;
    let calls = harness.calls();
    let reducer = call(&calls, 1, 0, 0).executor.clone();
    let mappers: BTreeSet<&str> = calls
        .iter()
        .filter(|c| c.stage == 0)
        .map(|c| c.executor.as_str())
        .collect();
    assert_eq!(
        mappers,
        BTreeSet::from(["e0", "e1"]),
        "one map task on each"
    );
    let other = if reducer == "e0" { "e1" } else { "e0" };
    assert!(harness.scheduler.pool().mark_lost(other, "test"));
    let outcome = harness.outcome(running).await.expect("the job recovers");
    assert_eq!(harness.cancelled(), vec![(1, 0, 0)]);
    assert!(outcome.final_output.iter().all(|l| l.attempt == 1));
}
