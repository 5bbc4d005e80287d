//! The scheduler survives itself: a scheduler killed with SIGKILL in the middle of a job
//! and started again on its `--state` folder takes the job over, the client (which sends
//! the job again until a scheduler takes it) gets the right answer, and the stages that
//! had finished before the kill do not run again. Also: the state folder's lock and
//! format checks.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember::pipelines::register_tpch;
use ember::scheduler::JobEvent;
use ember::{EmberConfig, Session};
use ember_tests::{rows, rows_match, tpch_query};

use crate::cluster::{Hook, NODE, Node, Options, TestCluster, args, kill, spawn};

/// The lines of the event log in `dir` of the job that was taken over.
fn taken_over_log(dir: &std::path::Path) -> Vec<serde_json::Value> {
    for entry in std::fs::read_dir(dir).expect("event log folder").flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if text.contains("\"event\":\"recovered\"") {
            return text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
        }
    }
    panic!("no event log in {} has a recovered event", dir.display());
}

/// The stages all of whose tasks had finished in `lines` (an event log's header and
/// events), on executors not lost since.
fn stages_done(lines: &[serde_json::Value]) -> Vec<u64> {
    use std::collections::BTreeMap;
    let mut tasks: BTreeMap<u64, u64> = BTreeMap::new();
    let mut finished: BTreeMap<u64, BTreeMap<u64, String>> = BTreeMap::new();
    for line in lines {
        if line["kind"] == "job" {
            for stage in line["job"]["stages"].as_array().expect("stages") {
                let id = stage["id"].as_u64().expect("id");
                tasks.insert(id, stage["partitions"].as_u64().expect("partitions"));
            }
            continue;
        }
        let event = &line["event"];
        match event["event"].as_str() {
            Some("stage_adapted") => {
                let stage = event["stage"].as_u64().expect("stage");
                tasks.insert(stage, event["tasks"].as_u64().expect("tasks"));
            }
            Some("task_finished") => {
                let (stage, partition) = task_of(event);
                let executor = event["executor"].as_str().unwrap_or_default().to_string();
                finished
                    .entry(stage)
                    .or_default()
                    .insert(partition, executor);
            }
            Some("executor_lost") => {
                let lost = event["executor"].as_str().unwrap_or_default();
                for parts in finished.values_mut() {
                    parts.retain(|_, executor| executor != lost);
                }
            }
            _ => {}
        }
    }
    tasks
        .into_iter()
        .filter(|(stage, n)| *n > 0 && finished.get(stage).map_or(0, |p| p.len() as u64) == *n)
        .map(|(stage, _)| stage)
        .collect()
}

/// `(stage, partition)` of a task event's `task`.
fn task_of(event: &serde_json::Value) -> (u64, u64) {
    let task = &event["task"];
    (
        task["stage"].as_u64().expect("stage"),
        task["partition"].as_u64().expect("partition"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_killed_during_q18_and_restarted_on_its_state_finishes_the_job() {
    let state = tempfile::tempdir().expect("state dir");
    let events = tempfile::tempdir().expect("event log dir");
    let scheduler_args = args(&[
        "--state",
        &state.path().display().to_string(),
        "--event-log",
        &events.path().display().to_string(),
    ]);
    let mut cluster = TestCluster::start_with(
        3,
        Options {
            scheduler_args: scheduler_args.clone(),
            ..Options::default()
        },
    );
    let address = cluster
        .url
        .strip_prefix("http://")
        .expect("a plain URL")
        .to_string();

    let seen: Arc<Mutex<Vec<(Instant, JobEvent)>>> = Arc::default();
    let mut session =
        Session::connect_with(&cluster.url, cluster.security(), EmberConfig::default())
            .await
            .expect("the client connects");
    let heard = Arc::clone(&seen);
    session.set_listener(Arc::new(Hook(move |event: &JobEvent| {
        heard
            .lock()
            .expect("lock")
            .push((Instant::now(), event.clone()));
    })));
    let dir = ember_tests::tpch_data(0.1);
    register_tpch(&session, &dir).await.expect("tables");
    let sql = tpch_query(18);
    let query = {
        let sql = sql.clone();
        tokio::spawn(async move { session.sql(&sql).await.map(|r| rows(&r.batches)) })
    };

    // Kill the scheduler once two stages of q18 have finished.
    let finished_stages = || {
        seen.lock()
            .expect("lock")
            .iter()
            .filter_map(|(_, e)| match e {
                JobEvent::StageFinished { stage_id, .. } => Some(stage_id.index()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let waited = Instant::now();
    while finished_stages().len() < 2 {
        assert!(
            !query.is_finished(),
            "q18 ended before two stages had finished"
        );
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "no two stages finished"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kill(&mut cluster.scheduler);
    let killed = Instant::now();
    let done_before_kill = finished_stages();
    let stderr = cluster.dir.path().join("scheduler-restarted.log");
    let mut command = Command::new(NODE);
    command
        .args(["scheduler", "--bind", &address, "--ui-bind", "127.0.0.1:0"])
        .args(&scheduler_args)
        .env("RUST_LOG", "info");
    let (child, line, lines) = spawn(&mut command, &stderr);
    let restarted = killed.elapsed();
    assert!(line.is_some(), "the scheduler restarts on {address}");
    assert!(
        restarted < Duration::from_secs(5),
        "restarted {restarted:?} after the kill"
    );
    cluster.scheduler = Node {
        id: String::new(),
        child,
        stderr: stderr.clone(),
        lines,
    };
    let took_over = loop {
        if std::fs::read_to_string(&stderr)
            .unwrap_or_default()
            .contains("took over the job")
        {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the job was not taken over"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };

    let got = tokio::time::timeout(Duration::from_secs(300), query)
        .await
        .expect("q18 ends")
        .expect("the query task")
        .expect("the client gets q18's answer after the restart");
    let expected = ember_tests::datafusion_rows_in(&dir, &sql).await;
    assert!(
        rows_match(&got, &expected),
        "q18 differs from DataFusion's answer"
    );
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(log.contains("registered again under its id"), "{log}");

    // The event log, written again whole from the stored state: nothing of a stage that
    // had finished before the kill started after the take-over.
    let lines = taken_over_log(events.path());
    let at = lines
        .iter()
        .position(|l| l["event"]["event"] == "recovered")
        .expect("a recovered event");
    let started_after: Vec<(u64, u64)> = lines[at..]
        .iter()
        .filter(|l| l["event"]["event"] == "task_started")
        .map(|l| task_of(&l["event"]))
        .collect();
    assert!(!started_after.is_empty(), "no task ran after the take-over");
    // The stages the stored state had as finished at the kill: every task finished, on an
    // executor not lost since. (The client may hear of a stage's end before its last
    // events are written: on a loaded machine the store lagged up to two stages behind
    // what the client saw; those stages' unrecorded tasks run again, rightly.)
    let recorded = stages_done(&lines[..at]);
    eprintln!(
        "stages the client saw finish: {done_before_kill:?}; stored as finished: {recorded:?}"
    );
    assert!(
        !recorded.is_empty(),
        "no stage was stored as finished at the kill"
    );
    assert!(
        done_before_kill
            .iter()
            .filter(|s| recorded.contains(&(**s as u64)))
            .count()
            + 1
            >= done_before_kill.len(),
        "the store missed more than the last stage the client saw finish"
    );
    for stage in &recorded {
        let rerun: Vec<_> = started_after.iter().filter(|(s, _)| s == stage).collect();
        assert!(
            rerun.is_empty(),
            "stage {stage} had finished before the kill, yet {rerun:?} ran again"
        );
    }
    let recovered_at = lines[at]["at_us"].as_u64().expect("at_us");
    let first_task_at = lines[at..]
        .iter()
        .find(|l| l["event"]["event"] == "task_started")
        .and_then(|l| l["at_us"].as_u64())
        .expect("a task started");
    let waited_for_executors = Duration::from_micros(first_task_at - recovered_at);
    eprintln!(
        "stages done before the kill: {done_before_kill:?}; restarted {restarted:?} after the kill; \
         took the job over {took_over:?} after the kill; first task {:?} after the kill; \
         {} tasks ran after the take-over",
        took_over + waited_for_executors,
        started_after.len()
    );
}

#[test]
fn a_second_scheduler_on_a_state_folder_in_use_is_refused_and_a_newer_format_too() {
    let state = tempfile::tempdir().expect("state dir");
    let cluster = TestCluster::start_with(
        0,
        Options {
            scheduler_args: args(&["--state", &state.path().display().to_string()]),
            ..Options::default()
        },
    );
    let second = Command::new(NODE)
        .args(["scheduler", "--bind", "127.0.0.1:0", "--no-ui", "--state"])
        .arg(state.path())
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        text.contains("invalid setting --state") && text.contains("in use by another scheduler"),
        "{text}"
    );
    drop(cluster);

    let newer = tempfile::tempdir().expect("state dir");
    std::fs::write(newer.path().join("ember-state.json"), r#"{"format":7}"#).expect("writes");
    let refused = Command::new(NODE)
        .args(["scheduler", "--bind", "127.0.0.1:0", "--no-ui", "--state"])
        .arg(newer.path())
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        text.contains("written by a newer Ember (state format 7"),
        "{text}"
    );
}
