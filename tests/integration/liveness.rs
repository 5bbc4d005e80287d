//! The process cluster under ordinary strain: executors whose task threads are all busy,
//! a scheduler restarted under running executors, clients that go away holding a result,
//! executors restarted on the same work directory, and the defaults that keep a cluster
//! closed to other hosts. Real scheduler and executor processes, as in [`crate::cluster`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::prelude::{col, lit};
use ember::scheduler::JobEvent;
use ember_tests::key_value_schema;

use crate::cluster::{
    Hook, NODE, Node, Options, TestCluster, args, executor_command, expected_sums, kill,
    q18_under_a_memory_limit, signal, slow_sums, spawn, tls_scheduler,
};

/// The sub-folders of `dir` (none when it cannot be read).
fn folders(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// The job folders in the executors' work directories of `cluster`
/// (`work-N/executor-ID/JOB`).
pub(crate) fn job_folders(cluster: &TestCluster) -> Vec<PathBuf> {
    folders(cluster.dir.path())
        .iter()
        .filter(|w| {
            w.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("work-"))
        })
        .flat_map(|work| folders(work))
        .flat_map(|executor| folders(&executor))
        .filter(|f| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("job-"))
        })
        .collect()
}

/// Polls `check` every 100 ms until it holds or `limit` has passed; whether it held.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The executor id of a line `ember executor ID listening on URL`.
fn registered_id(line: &str) -> String {
    line.split_whitespace().nth(2).expect("an id").to_string()
}

/// Seconds the late-answering executor stays frozen: past the old HTTP/2 keep-alive
/// interval and timeout together (5 s + 10 s), inside the heartbeat timeout below.
const LATE_SECS: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_that_answers_late_but_heartbeats_in_time_is_not_declared_lost() {
    // Finding 1: a busy executor answered its task channel's keep-alive late, and the
    // scheduler took the failed call for a lost executor. SIGSTOP stands in for the busy
    // runtime; heartbeats alone decide liveness, so a freeze shorter than the heartbeat
    // timeout loses nothing.
    let cluster = TestCluster::start(1, &["--heartbeat-timeout", "40"], None);
    let mut session = cluster.session().await;
    let frozen = Arc::new(Mutex::new(None::<Instant>));
    let (executors, mark) = (Arc::clone(&cluster.executors), Arc::clone(&frozen));
    session.set_listener(Arc::new(Hook(move |event: &JobEvent| {
        if let JobEvent::StageFinished {
            stage_id: ember::proto::StageId(0),
            ..
        } = event
        {
            let mut mark = mark.lock().expect("lock");
            if mark.is_none() {
                signal(&executors.lock().expect("lock")[0], "STOP");
                *mark = Some(Instant::now());
                let executors = Arc::clone(&executors);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(LATE_SECS));
                    signal(&executors.lock().expect("lock")[0], "CONT");
                });
            }
        }
    })));
    let (rows, keys) = (40_000, 30);
    let got = tokio::time::timeout(Duration::from_secs(180), slow_sums(&session, rows, keys))
        .await
        .expect("the job does not hang")
        .expect("the job runs through the freeze");
    assert_eq!(got, expected_sums(rows, keys));
    let since = frozen
        .lock()
        .expect("lock")
        .expect("the executor was frozen");
    assert!(
        since.elapsed() >= Duration::from_secs(LATE_SECS),
        "the job waited for the frozen executor"
    );
    let log = cluster.scheduler_log();
    assert!(!log.contains("executor lost"), "{log}");
    assert!(!log.contains("was lost"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_whose_task_threads_are_all_stalled_is_not_declared_lost() {
    let cluster = TestCluster::start_with(
        1,
        Options {
            // Two task threads, both held by the two stalled tasks, on any machine.
            executor_env: vec![("TOKIO_WORKER_THREADS".into(), "2".into())],
            ..Options::default()
        },
    );
    let session = cluster.session().await;
    let batch = arrow::array::RecordBatch::try_new(
        key_value_schema(),
        vec![
            std::sync::Arc::new(arrow::array::Int64Array::from_iter_values(0..1000)),
            std::sync::Arc::new(arrow::array::Int64Array::from_iter_values(0..1000)),
        ],
    )
    .expect("a batch");
    // Two tasks of one batch each, each holding its thread for longer than an HTTP/2
    // keep-alive interval and timeout together.
    let result = session
        .from_batches(vec![batch])
        .expect("a dataset")
        .repartition_by(vec![col("key") % lit(2i64)], 2)
        .expect("repartitioned")
        .map_batches("cluster_test.stall")
        .expect("mapped")
        .collect()
        .await
        .expect("the job runs through the stall");
    assert_eq!(
        result.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
        1000
    );
    let metrics = result.metrics.expect("a job ran");
    assert!(metrics.failures.is_empty(), "{:?}", metrics.failures);
    let log = cluster.scheduler_log();
    assert!(!log.contains("executor lost"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_scheduler_gives_its_executors_new_ids_and_spilling_queries_still_run() {
    let mut cluster = TestCluster::start_with(
        2,
        Options {
            executor_args: args(&["--memory-limit", "64M", "--heartbeat-interval", "1"]),
            ..Options::default()
        },
    );
    let before: Vec<String> = cluster
        .executors
        .lock()
        .expect("lock")
        .iter()
        .map(|e| e.id.clone())
        .collect();
    let address = cluster
        .url
        .strip_prefix("http://")
        .expect("a plain URL")
        .to_string();

    kill(&mut cluster.scheduler);
    let stderr = cluster.dir.path().join("scheduler-restarted.log");
    let mut command = Command::new(NODE);
    command
        .args(["scheduler", "--bind", &address])
        .env("RUST_LOG", "info");
    let (child, line, lines) = spawn(&mut command, &stderr);
    assert!(line.is_some(), "the scheduler restarts on {address}");
    let restarted = Instant::now();
    cluster.scheduler = Node {
        id: String::new(),
        child,
        stderr,
        lines,
    };

    // Each executor hears that the new scheduler does not know it, and registers again.
    let mut after = Vec::new();
    for executor in cluster.executors.lock().expect("lock").iter() {
        let line = executor
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the executor registers again");
        after.push(registered_id(&line));
    }
    let took = restarted.elapsed();
    eprintln!("both executors registered again {took:?} after the restart (heartbeats every 1 s)");
    assert!(
        took <= Duration::from_secs(2),
        "re-registered {took:?} after the restart: more than 2 heartbeats"
    );
    assert!(
        after.iter().all(|id| !before.contains(id)),
        "{before:?} -> {after:?}"
    );
    assert_ne!(after[0], after[1], "two executors, two ids");

    let remote = ember::RemoteCluster::connect(&cluster.url, cluster.security())
        .await
        .expect("connects");
    let mut listed: Vec<String> = remote
        .executors()
        .await
        .expect("lists")
        .into_iter()
        .map(|e| e.id.to_string())
        .collect();
    listed.sort();
    after.sort();
    assert_eq!(listed, after, "the scheduler sees both executors");

    // Their spill folders survived the new registration: a query that spills runs.
    let metrics = q18_under_a_memory_limit(&cluster).await;
    assert!(metrics.spilled_bytes() > 0, "nothing spilled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_while_it_fetches_a_result_leaves_no_files_on_the_executors() {
    let cluster = TestCluster::start(2, &[], None);
    let lineitem = ember_tests::tpch_data(0.1).join("lineitem");
    // Killed the moment the job is done: while it fetches the result (600 K rows), before
    // it could remove the files itself.
    let mut client = Command::new(NODE)
        .args(["sql", "--scheduler", &cluster.url, "--format", "csv"])
        .arg("--table")
        .arg(format!("lineitem={}", lineitem.display()))
        .arg("SELECT * FROM lineitem")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the client starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cluster.scheduler_log().contains("job finished") {
        assert!(Instant::now() < deadline, "{}", cluster.scheduler_log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = client.kill();
    let _ = client.wait();
    assert!(
        eventually(Duration::from_secs(10), || job_folders(&cluster).is_empty()),
        "left behind: {:?}",
        job_folders(&cluster)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_started_on_a_used_work_dir_reclaims_the_folders_of_dead_executors() {
    let cluster = TestCluster::start(1, &[], None);
    let work = cluster.dir.path().join("work-0");
    let old = {
        let mut executors = cluster.executors.lock().expect("lock");
        let old = work.join(&executors[0].id);
        assert!(
            old.is_dir(),
            "{} holds the executor's folder",
            work.display()
        );
        kill(&mut executors[0]);
        old
    };
    assert!(old.is_dir(), "a killed executor leaves its folder");

    let stderr = cluster.dir.path().join("successor.log");
    let mut command = executor_command(&cluster);
    command
        .args(["--slots", "1", "--heartbeat-interval", "0.2", "--work-dir"])
        .arg(&work)
        .env("RUST_LOG", "info");
    let (child, line, lines) = spawn(&mut command, &stderr);
    let line = line.expect("the successor registers");
    let id = registered_id(&line);
    cluster.executors.lock().expect("lock").push(Node {
        id: id.clone(),
        child,
        stderr,
        lines,
    });
    assert!(!old.exists(), "the dead executor's folder is reclaimed");
    assert!(
        work.join(&id).is_dir(),
        "the successor's own folder is there"
    );
}

#[test]
fn servers_refuse_a_non_loopback_address_without_a_token_unless_allowed() {
    let roles: [&[&str]; 2] = [
        &["scheduler", "--bind", "0.0.0.0:0"],
        &[
            "executor",
            "--scheduler",
            "http://127.0.0.1:9",
            "--bind",
            "0.0.0.0:0",
        ],
    ];
    for role in roles {
        let out = Command::new(NODE)
            .args(role)
            .env_remove("EMBER_AUTH_TOKEN")
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{role:?} started: {stderr}");
        assert!(
            stderr.contains("refusing to listen on 0.0.0.0:0 without an auth token")
                && stderr.contains("--allow-unauthenticated"),
            "{role:?}: {stderr}"
        );
    }
    // Allowed in so many words, it starts, and warns.
    let dir = tempfile::tempdir().expect("temp dir");
    let stderr = dir.path().join("scheduler.log");
    let mut command = Command::new(NODE);
    command
        .args([
            "scheduler",
            "--bind",
            "0.0.0.0:0",
            "--allow-unauthenticated",
        ])
        .env("RUST_LOG", "info")
        .env_remove("EMBER_AUTH_TOKEN");
    let (mut child, line, _lines) = spawn(&mut command, &stderr);
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.is_some_and(|l| l.contains("listening on 0.0.0.0:")));
    let log = std::fs::read_to_string(&stderr).expect("log");
    assert!(log.contains("without an auth token"), "{log}");
    // By default, both listen on loopback only.
    for (role, default) in [
        ("scheduler", "127.0.0.1:50050"),
        ("executor", "127.0.0.1:0"),
    ] {
        let help = Command::new(NODE)
            .args([role, "--help"])
            .output()
            .expect("runs");
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(help.contains(&format!("[default: {default}]")), "{help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_refuses_an_executor_that_serves_in_clear() {
    let certs = tempfile::tempdir().expect("temp dir");
    let (cluster, ca) = tls_scheduler(certs.path());
    // It trusts the CA and knows the token, but serves plain http itself.
    let out = executor_command(&cluster)
        .args(["--auth-token", "s3cret", "--tls-ca"])
        .arg(&ca)
        .env_remove("EMBER_AUTH_TOKEN")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("this cluster serves TLS"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_during_a_copy_leaves_no_staging_folder_beside_the_destination() {
    let cluster = TestCluster::start(2, &[], None);
    let out = tempfile::tempdir().expect("temp dir");
    let dest = out.path().join("pairs");
    // 18 M pairs: the write is still running when the client is killed.
    let lineitem = ember_tests::tpch_data(0.1).join("lineitem");
    let copy = format!(
        "COPY (SELECT a.l_orderkey, b.l_comment FROM lineitem a JOIN lineitem b \
         ON a.l_partkey = b.l_partkey) TO '{}' STORED AS PARQUET",
        dest.display()
    );
    let mut client = Command::new(NODE)
        .args(["sql", "--scheduler", &cluster.url])
        .arg("--table")
        .arg(format!("lineitem={}", lineitem.display()))
        .arg(&copy)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the client starts");
    let staging = out.path().join(".ember-staging");
    // Killed once its tasks have started writing.
    assert!(
        eventually(Duration::from_secs(60), || !folders(&staging).is_empty()),
        "the write stages its output in {}",
        staging.display()
    );
    let _ = client.kill();
    let _ = client.wait();
    assert!(
        !dest.join("_SUCCESS").exists(),
        "killed before the driver committed"
    );
    assert!(
        eventually(Duration::from_secs(15), || !staging.exists()),
        "left behind: {:?}",
        folders(&staging)
    );
    assert!(
        cluster
            .scheduler_log()
            .contains("removed the staging folder of a job whose client went away"),
        "{}",
        cluster.scheduler_log()
    );
}
