//! The process cluster: a real `ember scheduler` and `ember executor` processes (the
//! `ember-node` binary, which is `ember` plus the tests' functions) on 127.0.0.1 ports,
//! driven through `Session::connect`. Executors are killed with SIGKILL for the fault tests.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::Int64Type;
use datafusion::functions::expr_fn::character_length;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::prelude::{col, lit};
use ember::pipelines::register_tpch;
use ember::proto::security::ClientSecurity;
use ember::scheduler::{JobEvent, JobListener};
use ember::{BadRows, EmberConfig, Session};
use ember_tests::{
    S3Server, cluster_functions, datafusion_rows, key_value_schema, rows, rows_match,
    run_tpch_against_datafusion, tpch_dir, tpch_query,
};
use tempfile::TempDir;

pub(crate) const NODE: &str = env!("CARGO_BIN_EXE_ember-node");

/// One process of a test cluster.
pub(crate) struct Node {
    /// The executor id it registered under (empty for the scheduler).
    pub(crate) id: String,
    pub(crate) child: Child,
    pub(crate) stderr: PathBuf,
    /// The lines it prints on stdout after the first.
    pub(crate) lines: std::sync::mpsc::Receiver<String>,
}

use ember_tests::host_cluster::heartbeat_args;
pub(crate) use ember_tests::host_cluster::spawn;

/// How a test cluster's processes are set up beyond the defaults.
#[derive(Default)]
pub(crate) struct Options {
    pub(crate) scheduler_args: Vec<String>,
    pub(crate) executor_args: Vec<String>,
    pub(crate) token: Option<String>,
    /// The CA of the processes' certificates: TLS on, `https://` URLs.
    pub(crate) tls_ca: Option<PathBuf>,
    /// Environment variables of the executor processes.
    pub(crate) executor_env: Vec<(String, String)>,
}

pub(crate) fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// A scheduler and executors, each a process; all are killed when this is dropped.
pub(crate) struct TestCluster {
    pub(crate) dir: TempDir,
    pub(crate) url: String,
    pub(crate) token: Option<String>,
    pub(crate) tls_ca: Option<PathBuf>,
    pub(crate) executor_args: Vec<String>,
    pub(crate) executor_env: Vec<(String, String)>,
    pub(crate) scheduler: Node,
    pub(crate) executors: Arc<Mutex<Vec<Node>>>,
}

impl TestCluster {
    /// A scheduler with `scheduler_args`, then `executors` executors of 2 slots each.
    pub(crate) fn start(executors: usize, scheduler_args: &[&str], token: Option<&str>) -> Self {
        Self::start_with(
            executors,
            Options {
                scheduler_args: args(scheduler_args),
                token: token.map(str::to_string),
                ..Options::default()
            },
        )
    }

    pub(crate) fn start_with(executors: usize, options: Options) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ember-cluster-test-")
            .tempdir()
            .expect("temp dir");
        let stderr = dir.path().join("scheduler.log");
        let mut command = Command::new(NODE);
        command
            .args(["scheduler", "--bind", "127.0.0.1:0"])
            .args(&options.scheduler_args)
            // Tests run side by side: each scheduler's web UI on a port of its own.
            .args(
                (!options
                    .scheduler_args
                    .iter()
                    .any(|a| a == "--ui-bind" || a == "--no-ui"))
                .then_some(["--ui-bind", "127.0.0.1:0"])
                .into_iter()
                .flatten(),
            )
            .env("RUST_LOG", "info")
            .env_remove("EMBER_AUTH_TOKEN");
        if let Some(token) = &options.token {
            command.args(["--auth-token", token]);
        }
        let (child, line, lines) = spawn(&mut command, &stderr);
        let Some(line) = line else {
            panic!(
                "the scheduler did not start: {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        };
        let address = line.rsplit(' ').next().expect("an address");
        let scheme = if options.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        let mut cluster = Self {
            url: format!("{scheme}://{address}"),
            token: options.token.clone(),
            tls_ca: options.tls_ca.clone(),
            executor_args: options.executor_args.clone(),
            executor_env: options.executor_env.clone(),
            scheduler: Node {
                id: String::new(),
                child,
                stderr,
                lines,
            },
            executors: Arc::default(),
            dir,
        };
        for _ in 0..executors {
            cluster
                .add_executor(options.token.as_deref())
                .expect("the executor registers");
        }
        cluster
    }

    /// Starts an executor with `token`; its id, or its error output when it exits.
    pub(crate) fn add_executor(&mut self, token: Option<&str>) -> Result<String, String> {
        let n = self.executors.lock().expect("lock").len();
        let stderr = self.dir.path().join(format!("executor-process-{n}.log"));
        let mut command = Command::new(NODE);
        command
            .args([
                "executor",
                "--scheduler",
                &self.url,
                "--bind",
                "127.0.0.1:0",
            ])
            .args(["--slots", "2"])
            .args(heartbeat_args(&self.executor_args))
            .arg("--work-dir")
            .arg(self.dir.path().join(format!("work-{n}")))
            .args(&self.executor_args)
            .envs(self.executor_env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .env_remove("EMBER_AUTH_TOKEN");
        if let Some(token) = token {
            command.args(["--auth-token", token]);
        }
        let (mut child, line, lines) = spawn(&mut command, &stderr);
        let Some(line) = line else {
            let status = child.wait().expect("exit status");
            let log = std::fs::read_to_string(&stderr).unwrap_or_default();
            return Err(format!("{status}: {log}"));
        };
        // "ember executor executor-3 listening on http://127.0.0.1:PORT"
        let id = line.split_whitespace().nth(2).expect("an id").to_string();
        self.executors.lock().expect("lock").push(Node {
            id: id.clone(),
            child,
            stderr,
            lines,
        });
        Ok(id)
    }

    pub(crate) fn security(&self) -> ClientSecurity {
        ClientSecurity {
            token: self.token.clone(),
            ca: self.tls_ca.clone(),
        }
    }

    /// A session on this cluster, with the TPC-H test tables.
    pub(crate) async fn session(&self) -> Session {
        let session = Session::connect_with_functions(
            &self.url,
            self.security(),
            EmberConfig::default(),
            cluster_functions(),
        )
        .await
        .expect("the client connects");
        register_tpch(&session, tpch_dir())
            .await
            .expect("the TPC-H tables register");
        session
    }

    /// The work directories of the executors started so far.
    pub(crate) fn work_dirs(&self) -> Vec<PathBuf> {
        let started = self.executors.lock().expect("lock").len();
        (0..started)
            .map(|n| self.dir.path().join(format!("work-{n}")))
            .collect()
    }

    /// The URL of the scheduler's web UI, from the line it printed after its address.
    pub(crate) fn ui_url(&self) -> String {
        loop {
            let line = self
                .scheduler
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no web UI line: {}", self.scheduler_log()));
            if let Some(url) = line.strip_prefix("ember web UI at ") {
                return url.trim().to_string();
            }
        }
    }

    pub(crate) fn scheduler_log(&self) -> String {
        std::fs::read_to_string(&self.scheduler.stderr).unwrap_or_default()
    }

    pub(crate) fn executor_log(&self, index: usize) -> String {
        let executors = self.executors.lock().expect("lock");
        std::fs::read_to_string(&executors[index].stderr).unwrap_or_default()
    }
}

/// Kills `node` with SIGKILL.
pub(crate) fn kill(node: &mut Node) {
    let _ = node.child.kill();
    let _ = node.child.wait();
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Ok(mut executors) = self.executors.lock() {
            for node in executors.iter_mut() {
                kill(node);
            }
        }
        kill(&mut self.scheduler);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_scheduler_and_three_executors_run_the_22_tpch_queries_like_datafusion() {
    let cluster = TestCluster::start(3, &[], None);
    let session = cluster.session().await;
    assert_eq!(
        session.config().target_partitions(),
        6,
        "3 executors x 2 slots"
    );
    let (failures, metrics) = run_tpch_against_datafusion(&session).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let executors_used: std::collections::BTreeSet<&str> = metrics
        .iter()
        .flat_map(|m| m.tasks.iter().map(|t| t.executor_id.as_str()))
        .collect();
    assert_eq!(executors_used.len(), 3, "tasks ran on {executors_used:?}");
    // All on one host: `auto` wrote every shuffle file uncompressed.
    assert!(
        metrics
            .iter()
            .flat_map(|m| &m.tasks)
            .all(|t| t.compression == "none"),
        "a task compressed on one host"
    );
}

/// `rows` pairs `(i % keys, i)` in batches of 1000.
pub(crate) fn key_values(rows: i64, keys: i64) -> Vec<RecordBatch> {
    (0..rows)
        .step_by(1000)
        .map(|start| {
            let end = (start + 1000).min(rows);
            RecordBatch::try_new(
                key_value_schema(),
                vec![
                    std::sync::Arc::new(Int64Array::from_iter_values(
                        (start..end).map(|i| i % keys),
                    )),
                    std::sync::Arc::new(Int64Array::from_iter_values(start..end)),
                ],
            )
            .expect("valid batch")
        })
        .collect()
}

/// Calls `on_event` for every event of the session's jobs.
pub(crate) struct Hook<F: Fn(&JobEvent) + Send + Sync>(pub(crate) F);

impl<F: Fn(&JobEvent) + Send + Sync> JobListener for Hook<F> {
    fn on_event(&self, event: &JobEvent) {
        (self.0)(event);
    }
}

/// Sum of values per key through a shuffle and the slow function, then a second shuffle:
/// `(key, sum)` sorted by key.
pub(crate) async fn slow_sums(
    session: &Session,
    rows: i64,
    keys: i64,
) -> ember::Result<Vec<(i64, i64)>> {
    let slow = session
        .from_batches(key_values(rows, keys))?
        .repartition_by(vec![col("value") % lit(7i64)], 6)?
        .map_batches("cluster_test.slow")?;
    sums_by_key(slow, 6).await
}

pub(crate) fn expected_sums(rows: i64, keys: i64) -> Vec<(i64, i64)> {
    let mut sums = vec![0i64; keys as usize];
    for i in 0..rows {
        sums[(i % keys) as usize] += i;
    }
    sums.into_iter()
        .enumerate()
        .map(|(k, v)| (k as i64, v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_while_reducers_read_has_its_map_outputs_recomputed() {
    let cluster = TestCluster::start(3, &["--heartbeat-timeout", "2"], None);
    let mut session = cluster.session().await;
    let (killed, map_executors) = kill_a_map_executor_after_the_first_stage(&cluster, &mut session);
    let (rows, keys) = (60_000, 40);
    let got = slow_sums(&session, rows, keys)
        .await
        .expect("the job survives the loss of an executor");
    assert_eq!(got, expected_sums(rows, keys));
    let victim = victim_of(&killed);
    // The scheduler names the map tasks it ran again, and only the victim's.
    let log = cluster.scheduler_log();
    let recomputed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("recomputing map task"))
        .collect();
    assert!(!recomputed.is_empty(), "no recomputation logged:\n{log}");
    eprintln!(
        "killed {victim}; the scheduler logged:\n{}",
        recomputed.join("\n")
    );
    assert!(
        recomputed
            .iter()
            .all(|l| l.contains(&format!("lost executor {victim}"))),
        "{recomputed:?}"
    );
    let map_tasks_on_victim = map_executors
        .lock()
        .expect("lock")
        .iter()
        .filter(|e| **e == victim)
        .count();
    let stage_0_recomputed = recomputed.iter().filter(|l| l.contains("/0.")).count();
    assert_eq!(
        stage_0_recomputed, map_tasks_on_victim,
        "exactly the victim's map tasks run again: {recomputed:?}"
    );
    // The scheduler's metrics name the same tasks as its log.
    let remote = ember::RemoteCluster::connect(&cluster.url, cluster.security())
        .await
        .expect("connects");
    let reported = remote.recomputed().await.expect("cluster state");
    assert_eq!(reported.len(), recomputed.len(), "{reported:?}");
    for task in &reported {
        assert!(
            recomputed
                .iter()
                .any(|l| l.contains(&format!("recomputing map task {task}:"))),
            "{task} is not in the log: {recomputed:?}"
        );
    }
}

/// Makes `session`'s tasks fetch every other executor's pieces over Flight. The files of
/// a killed executor stay on this host's disk, where host-local reads would still find
/// them; the tests of a lost executor are about the fetches that fail.
pub(crate) fn fetch_over_flight(session: &Session) {
    session
        .set("ember.shuffle.host_local_reads", "false")
        .expect("a setting of the job");
}

/// A value the event hook fills in.
pub(crate) type Shared<T> = Arc<Mutex<T>>;

/// When the session's next task finishes, kills an executor other than the one that ran
/// it (one still running tasks, in a stage of many); its id lands in the slot returned.
pub(crate) fn kill_another_executor_when_a_task_finishes(
    cluster: &TestCluster,
    session: &mut Session,
) -> Shared<Option<String>> {
    fetch_over_flight(session);
    let killed = Arc::new(Mutex::new(None::<String>));
    let executors = Arc::clone(&cluster.executors);
    let victim = Arc::clone(&killed);
    session.set_listener(Arc::new(Hook(move |event: &JobEvent| {
        if let JobEvent::TaskFinished { executor_id, .. } = event {
            let mut victim = victim.lock().expect("lock");
            if victim.is_some() {
                return;
            }
            let mut executors = executors.lock().expect("lock");
            if let Some(node) = executors
                .iter_mut()
                .find(|n| n.id != executor_id.to_string())
            {
                kill(node);
                *victim = Some(node.id.clone());
            }
        }
    })));
    killed
}

/// The executor a hook killed; fails the test when it killed none.
pub(crate) fn victim_of(killed: &Shared<Option<String>>) -> String {
    killed
        .lock()
        .expect("lock")
        .clone()
        .expect("an executor was killed")
}

/// When the first stage of the session's next job is done, kills an executor that ran some
/// of its map tasks (the reducers are then reading, and its map outputs are gone with it);
/// the executor's id lands in the first slot returned, the executors of the stage's map
/// tasks (one entry per task) in the second.
pub(crate) fn kill_a_map_executor_after_the_first_stage(
    cluster: &TestCluster,
    session: &mut Session,
) -> (Shared<Option<String>>, Shared<Vec<String>>) {
    fetch_over_flight(session);
    let map_executors = Arc::new(Mutex::new(Vec::<String>::new()));
    let killed = Arc::new(Mutex::new(None::<String>));
    let executors = Arc::clone(&cluster.executors);
    let (seen, victim) = (Arc::clone(&map_executors), Arc::clone(&killed));
    session.set_listener(Arc::new(Hook(move |event: &JobEvent| match event {
        JobEvent::TaskFinished {
            stage_id: ember::proto::StageId(0),
            executor_id,
            ..
        } => seen.lock().expect("lock").push(executor_id.to_string()),
        JobEvent::StageFinished {
            stage_id: ember::proto::StageId(0),
            ..
        } => {
            let mut victim = victim.lock().expect("lock");
            if victim.is_some() {
                return;
            }
            let target = seen.lock().expect("lock").first().cloned();
            let mut executors = executors.lock().expect("lock");
            if let Some(node) = executors
                .iter_mut()
                .find(|n| Some(&n.id) == target.as_ref())
            {
                kill(node);
                *victim = Some(node.id.clone());
            }
        }
        _ => {}
    })));
    (killed, map_executors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_shuffle_dir_in_s3_a_lost_executor_costs_no_recomputation() {
    let s3 = S3Server::shared();
    s3.create_bucket("shuffle");
    let cluster = TestCluster::start(3, &["--heartbeat-timeout", "2"], None);
    let mut config = EmberConfig::default();
    s3.configure(&mut config);
    config
        .set("ember.shuffle.dir", "s3://shuffle/jobs")
        .expect("a URL");
    let mut session = Session::connect_with_functions(
        &cluster.url,
        cluster.security(),
        config.clone(),
        cluster_functions(),
    )
    .await
    .expect("the client connects");
    let (killed, _) = kill_a_map_executor_after_the_first_stage(&cluster, &mut session);
    let (rows, keys) = (30_000, 20);
    let got = slow_sums(&session, rows, keys)
        .await
        .expect("the job survives the loss of an executor");
    assert_eq!(got, expected_sums(rows, keys));
    let victim = victim_of(&killed);
    // Its map outputs were in the bucket: nothing is recomputed.
    let log = cluster.scheduler_log();
    assert!(log.contains(&victim), "{victim} was never lost:\n{log}");
    assert!(
        !log.contains("recomputing map task"),
        "map outputs in the shuffle dir were recomputed:\n{log}"
    );
    // A cached dataset keeps its pieces in the shuffle dir, read back without a rerun.
    let cached = session
        .from_batches(key_values(5_000, 5))
        .expect("dataset")
        .repartition(4)
        .expect("shuffle")
        .cache();
    for _ in 0..2 {
        assert_eq!(cached.count().await.expect("counted"), 5_000);
    }
    let entry = cached.cache_entry().expect("a cache");
    assert_eq!(entry.materializations(), 1, "the cache was computed once");
    assert!(
        entry
            .location()
            .expect("materialized")
            .pieces
            .iter()
            .all(|p| p.path.to_string_lossy().starts_with("s3://shuffle/jobs/")),
        "cached pieces live in the shuffle dir"
    );
    cached.unpersist().await;
    // The job's pieces are deleted when it ends (and a cache's when it is dropped).
    let left = Session::new(EmberConfig {
        executors: 1,
        ..config
    })
    .expect("an embedded cluster")
    .output_files("s3://shuffle/jobs")
    .await
    .expect("listed");
    assert_eq!(left, 0, "pieces left in the shuffle dir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_executor_killed_a_job_fails_after_the_grace_period() {
    let cluster = TestCluster::start(
        2,
        &["--heartbeat-timeout", "1", "--grace-period", "2"],
        None,
    );
    let mut session = cluster.session().await;
    let executors = Arc::clone(&cluster.executors);
    session.set_listener(Arc::new(Hook(move |event: &JobEvent| {
        if matches!(event, JobEvent::TaskFinished { .. }) {
            for node in executors.lock().expect("lock").iter_mut() {
                kill(node);
            }
        }
    })));
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(60), slow_sums(&session, 20_000, 10))
        .await
        .expect("the job ends instead of hanging");
    let err = outcome.expect_err("no executor is left to finish the job");
    let message = err.to_string();
    assert!(message.contains("no executors left"), "{message}");
    assert!(message.contains("grace period"), "{message}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "failed before the grace period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_on_every_call_and_tickets_cannot_leave_the_work_dir() {
    use arrow_flight::{FlightClient, Ticket};
    use ember::proto::pb::ShuffleTicket;
    use futures::TryStreamExt;
    use prost::Message;

    let mut cluster = TestCluster::start(1, &[], Some("s3cret"));
    // Clients without the token, or with a wrong one, are refused.
    for token in [None, Some("guess")] {
        let security = ClientSecurity {
            token: token.map(str::to_string),
            ca: None,
        };
        let err = Session::connect_with(&cluster.url, security, EmberConfig::default())
            .await
            .err()
            .expect("refused");
        let expected = if token.is_some() {
            "wrong auth token"
        } else {
            "missing auth token"
        };
        assert!(err.to_string().contains(expected), "{err}");
    }
    // An executor with a wrong token cannot register.
    let refused = cluster.add_executor(Some("guess")).expect_err("refused");
    assert!(refused.contains("refused to register"), "{refused}");
    assert!(refused.contains("wrong auth token"), "{refused}");
    let log = cluster.scheduler_log();
    assert!(
        log.contains("refused a call with a wrong auth token"),
        "{log}"
    );
    assert!(
        log.contains("refused a call without an auth token"),
        "{log}"
    );

    // With the token, everything works.
    let session = cluster.session().await;
    let sql = tpch_query(3);
    let result = session.sql(&sql).await.expect("q3 runs");
    assert!(rows_match(
        &rows(&result.batches),
        &datafusion_rows(&sql).await
    ));

    // The executor's Flight service checks the token and the ticket.
    let address = session_executor_address(&cluster).await;
    let channel = ClientSecurity::default()
        .connect(&address)
        .await
        .expect("the executor is reachable");
    let ticket = |job: &str| {
        Ticket::new(
            ShuffleTicket {
                job_id: job.to_string(),
                stage_id: 0,
                map_partition: 0,
                attempt: 0,
                output_partition: 0,
            }
            .encode_to_vec(),
        )
    };
    let mut anonymous = FlightClient::new(channel.clone());
    let Err(err) = anonymous.do_get(ticket("job-1")).await else {
        panic!("a Flight call without a token was served");
    };
    assert!(err.to_string().contains("missing auth token"), "{err}");
    let mut client = FlightClient::new(channel);
    client
        .add_header("authorization", "Bearer s3cret")
        .expect("header");
    for job in ["../../etc", "..", "job/../../x", "never-ran-here"] {
        let outcome = match client.do_get(ticket(job)).await {
            Ok(stream) => stream.try_collect::<Vec<_>>().await.map(|_| ()),
            Err(e) => Err(e),
        };
        let err = outcome.expect_err("a ticket outside the cluster's jobs is refused");
        let text = err.to_string();
        assert!(
            text.contains("not a plain name") || text.contains("ran no job"),
            "{job}: {text}"
        );
    }
    let log = cluster.executor_log(0);
    assert!(log.contains("refused a Flight ticket"), "{log}");
}

/// The address of the first executor, as the scheduler knows it.
async fn session_executor_address(cluster: &TestCluster) -> String {
    let remote = ember::RemoteCluster::connect(&cluster.url, cluster.security())
        .await
        .expect("connects");
    remote
        .executors()
        .await
        .expect("lists executors")
        .into_iter()
        .next()
        .and_then(|e| e.address)
        .expect("an executor")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_jobs_at_once_all_finish_with_correct_results() {
    let cluster = TestCluster::start(2, &["--policy", "fair"], None);
    let session = cluster.session().await;
    let queries = [1, 3, 4, 5, 6, 10, 12, 14];
    let runs = queries.iter().map(|n| {
        let session = &session;
        async move {
            let sql = tpch_query(*n);
            (n, session.sql(&sql).await, sql)
        }
    });
    let results = futures::future::join_all(runs).await;
    let mut failures = Vec::new();
    for (n, result, sql) in results {
        match result {
            Ok(result) => {
                if !rows_match(&rows(&result.batches), &datafusion_rows(&sql).await) {
                    failures.push(format!("q{n:02}: wrong rows"));
                }
            }
            Err(e) => failures.push(format!("q{n:02}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Sends `signal` (`STOP`, `CONT`) to a process.
pub(crate) fn signal(node: &Node, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(node.child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_executor_is_declared_lost_and_registers_as_new_when_it_wakes() {
    let cluster = TestCluster::start(3, &["--heartbeat-timeout", "1.5"], None);
    let mut session = cluster.session().await;
    let stopped = Arc::new(Mutex::new(None::<usize>));
    let (executors, victim) = (Arc::clone(&cluster.executors), Arc::clone(&stopped));
    // Freeze (SIGSTOP) one executor while the reducers run: its calls hang instead of
    // failing, so only the missed heartbeats reveal it.
    session.set_listener(Arc::new(Hook(move |event: &JobEvent| {
        if let JobEvent::StageFinished {
            stage_id: ember::proto::StageId(0),
            ..
        } = event
        {
            let mut victim = victim.lock().expect("lock");
            if victim.is_none() {
                let executors = executors.lock().expect("lock");
                signal(&executors[0], "STOP");
                *victim = Some(0);
            }
        }
    })));
    let (rows, keys) = (40_000, 30);
    let got = tokio::time::timeout(Duration::from_secs(120), slow_sums(&session, rows, keys))
        .await
        .expect("the job does not hang on the frozen executor")
        .expect("the job finishes without it");
    assert_eq!(got, expected_sums(rows, keys));
    assert_eq!(
        *stopped.lock().expect("lock"),
        Some(0),
        "the executor was frozen"
    );
    let frozen_id = cluster.executors.lock().expect("lock")[0].id.clone();
    let log = cluster.scheduler_log();
    assert!(
        log.lines()
            .any(|l| l.contains("executor lost: no heartbeat") && l.contains(&frozen_id)),
        "{log}"
    );

    // Woken, it hears that it was declared lost and registers under a new id.
    signal(&cluster.executors.lock().expect("lock")[0], "CONT");
    let line = cluster.executors.lock().expect("lock")[0]
        .lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the executor registers again");
    let new_id = line.split_whitespace().nth(2).expect("an id").to_string();
    assert_ne!(new_id, frozen_id);
    let remote = ember::RemoteCluster::connect(&cluster.url, cluster.security())
        .await
        .expect("connects");
    let ids: Vec<String> = remote
        .executors()
        .await
        .expect("lists")
        .into_iter()
        .map(|e| e.id.to_string())
        .collect();
    assert!(
        ids.contains(&new_id) && !ids.contains(&frozen_id),
        "{ids:?}"
    );
    // And it takes tasks again.
    let got = slow_sums(&session, 6_000, 5)
        .await
        .expect("runs on 3 executors");
    assert_eq!(got, expected_sums(6_000, 5));
}

/// A CA, and a certificate it signed for 127.0.0.1 and localhost: (ca.pem, cert.pem,
/// key.pem) in `dir`.
pub(crate) fn certificates(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("certificate");
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).expect("write");
    std::fs::write(&paths.1, cert.pem()).expect("write");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write");
    paths
}

/// A scheduler serving TLS with the certificates made in `dir` and the token `s3cret`, and
/// no executor yet; the CA's file.
pub(crate) fn tls_scheduler(dir: &std::path::Path) -> (TestCluster, PathBuf) {
    let (ca, cert, key) = certificates(dir);
    let cluster = TestCluster::start_with(
        0,
        Options {
            scheduler_args: vec![
                "--tls-cert".into(),
                cert.display().to_string(),
                "--tls-key".into(),
                key.display().to_string(),
            ],
            token: Some("s3cret".into()),
            tls_ca: Some(ca.clone()),
            ..Options::default()
        },
    );
    (cluster, ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_every_call_is_encrypted_and_a_client_without_the_ca_is_refused() {
    let certs = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = certificates(certs.path());
    let tls: Vec<String> = vec![
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
        "--tls-ca".into(),
        ca.display().to_string(),
    ];
    let cluster = TestCluster::start_with(
        2,
        Options {
            scheduler_args: tls.clone(),
            executor_args: tls,
            token: Some("s3cret".into()),
            tls_ca: Some(ca.clone()),
            ..Options::default()
        },
    );
    assert!(cluster.url.starts_with("https://"), "{}", cluster.url);
    // Shuffles between executors and results back to the client all go over TLS.
    let session = cluster.session().await;
    let sql = tpch_query(5);
    let result = session.sql(&sql).await.expect("q5 runs over TLS");
    assert!(rows_match(
        &rows(&result.batches),
        &datafusion_rows(&sql).await
    ));
    let remote = ember::RemoteCluster::connect(&cluster.url, cluster.security())
        .await
        .expect("connects");
    let executors = remote.executors().await.expect("lists");
    assert!(
        executors.iter().all(|e| e
            .address
            .as_deref()
            .is_some_and(|a| a.starts_with("https://"))),
        "{executors:?}"
    );
    // A client that does not trust the CA cannot talk to the cluster, nor can a plain one.
    let untrusting = ClientSecurity {
        token: Some("s3cret".into()),
        ca: None,
    };
    assert!(
        Session::connect_with(&cluster.url, untrusting, EmberConfig::default())
            .await
            .is_err()
    );
    let plain = cluster.url.replacen("https://", "http://", 1);
    assert!(
        Session::connect_with(&plain, cluster.security(), EmberConfig::default())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_dataset_is_kept_on_the_executors_and_read_back_over_flight() {
    let cluster = TestCluster::start(2, &[], None);
    let session = cluster.session().await;
    // Through the slow function and a shuffle, so the cached partitions lie on both
    // executors and the second action's tasks read some of them from the other one.
    let cached = session
        .from_batches(key_values(8_000, 9))
        .expect("dataset")
        .repartition_by(vec![col("key")], 4)
        .expect("repartition")
        .map_batches("cluster_test.slow")
        .expect("registered")
        .cache();
    let entry = cached.cache_entry().expect("a cache");
    let expected = expected_sums(8_000, 9);
    assert_eq!(
        sums_by_key(cached.clone(), 4).await.expect("first action"),
        expected
    );
    assert_eq!(
        sums_by_key(cached.clone(), 4).await.expect("second action"),
        expected
    );
    assert_eq!(cached.count().await.expect("count"), 8_000);
    assert_eq!(entry.materializations(), 1, "the cache was computed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_rows_cross_executors_over_flight_in_messages_over_four_mib() {
    // On one host shuffle files are uncompressed, and Flight sends one batch per message:
    // 8,192 rows of 1 KiB are 8 MiB, twice tonic's default limit on received messages.
    let cluster = TestCluster::start(2, &[], None);
    let session = cluster.session().await;
    let rows = 20_000i64;
    let keys = Int64Array::from_iter_values(0..rows);
    let text = StringArray::from_iter_values((0..rows).map(|i| format!("{i:>1024}")));
    let batch = RecordBatch::try_from_iter([
        ("key", Arc::new(keys) as ArrayRef),
        ("text", Arc::new(text) as ArrayRef),
    ])
    .expect("a batch");
    let result = session
        .from_batches(vec![batch])
        .expect("dataset")
        .repartition_by(vec![col("key")], 2)
        .expect("repartition")
        .group_by(vec![])
        .agg(vec![
            sum(character_length(col("text"))).alias("chars"),
            count(lit(1)).alias("n"),
        ])
        .expect("aggregate")
        .collect()
        .await
        .expect("wide rows cross executors over Flight");
    let batch = &result.batches[0];
    assert_eq!(
        batch.column(0).as_primitive::<Int64Type>().value(0),
        rows * 1024
    );
    assert_eq!(batch.column(1).as_primitive::<Int64Type>().value(0), rows);
    let metrics = result.metrics.expect("a job ran");
    assert!(
        metrics.shuffle_bytes() > (rows * 1024) as u64,
        "the shuffle carried the text uncompressed ({} bytes)",
        metrics.shuffle_bytes()
    );
}

/// `(key, sum of value)` of `ds`, grouped after a shuffle into `partitions`, sorted by key.
pub(crate) async fn sums_by_key(
    ds: ember::Dataset<'_>,
    partitions: usize,
) -> ember::Result<Vec<(i64, i64)>> {
    let result = ds
        .repartition_by(vec![col("value") % lit(3i64)], partitions)?
        .group_by(vec![col("key")])
        .agg(vec![sum(col("value")).alias("total")])?
        .sort(vec![col("key").sort(true, false)])?
        .collect()
        .await?;
    let mut out = Vec::new();
    for batch in &result.batches {
        let k = batch.column(0).as_primitive::<Int64Type>();
        let v = batch.column(1).as_primitive::<Int64Type>();
        out.extend((0..batch.num_rows()).map(|i| (k.value(i), v.value(i))));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_pipelines_run_on_a_process_cluster() {
    let cluster = TestCluster::start(2, &[], None);
    let session = cluster.session().await;
    // Typed functions, a join and a reducer, all named and found in the executors' own
    // registry (every `ember executor` carries the examples' functions).
    let product = ember_examples::matrix_multiply(&session, 96, 20, 7)
        .await
        .expect("the blocked product runs on the cluster");
    let (norm, worst) = product.reference.expect("checked for small N");
    assert!(worst < 1e-9, "largest element difference {worst}");
    assert!(
        (product.frobenius - norm).abs() <= 1e-9 * norm,
        "{} vs {norm}",
        product.frobenius
    );
    assert_eq!(product.blocks, 25);
    let total = ember_examples::distributed_sum(&session, 100_000)
        .await
        .expect("runs");
    assert_eq!(total, 5_000_050_000);

    // The showcase pipelines: the product-price report equals the embedded cluster's, and
    // a forest (level statistics shuffled between executor processes) fits as well.
    use ember_examples::product_prices::{PriceSource, ReportForm, run_product_prices};
    let diamonds =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/diamonds.csv");
    let source = PriceSource::Diamonds(diamonds.clone());
    let remote = run_product_prices(&session, &source, ReportForm::Sql, None)
        .await
        .expect("the report runs on the process cluster");
    // The same partitions as the process cluster's 2 × 2 slots, so the same plan.
    let local_session = Session::new(EmberConfig {
        executors: 2,
        slots: 2,
        ..EmberConfig::default()
    })
    .expect("an embedded cluster");
    let local = run_product_prices(&local_session, &source, ReportForm::Dsl, None)
        .await
        .expect("the report runs embedded");
    assert_eq!(remote.tables.len(), 3);
    for ((name, a), (_, b)) in remote.tables.iter().zip(&local.tables) {
        let (a, b) = (rows(&a.batches), rows(&b.batches));
        assert!(rows_match(&a, &b), "{name}: {a:?} vs {b:?}");
    }
    let mut options = ember_examples::forest::TrainOptions::new(diamonds, "price");
    options.trees = 4;
    options.max_depth = 6;
    let outcome = ember_examples::forest::forest_train(&session, &options)
        .await
        .expect("a forest grows on the process cluster");
    let r2 = outcome.evaluation.and_then(|e| e.r2).expect("R²");
    assert!(r2 > 0.93, "R² {r2}");
    assert!(outcome.report.passes >= 6, "{:?}", outcome.report);
}

/// The rows of the dirty products CSV read under `policy` by `session`, sorted, and the
/// number of bad rows it counted.
async fn checked_sales(session: &Session, csv: &str, policy: &BadRows) -> (Vec<Vec<String>>, u64) {
    let result = session
        .read_csv_checked(csv, policy)
        .await
        .expect("planned")
        .collect()
        .await
        .expect("the bad rows do not stop the job");
    let mut got = rows(&result.batches);
    got.sort();
    (got, session.bad_rows())
}

/// The quarantined rows under `dir`, sorted: file, line, reason and text of each.
fn quarantined(dir: &std::path::Path) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    for file in std::fs::read_dir(dir)
        .expect("a quarantine folder")
        .flatten()
    {
        let mut reader = csv::Reader::from_path(file.path()).expect("a CSV");
        for record in reader.records() {
            records.push(
                record
                    .expect("a record")
                    .iter()
                    .map(str::to_string)
                    .collect(),
            );
        }
    }
    records.sort();
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_skipped_or_quarantined_by_executor_processes_as_by_the_embedded_cluster() {
    let (dir, dirty) = crate::bad_rows::dirty_products();
    let csv = dir.path().join("sales-csv/sales.csv");
    let csv = csv.to_string_lossy();
    let cluster = TestCluster::start(2, &[], None);
    let remote = Session::connect_with(&cluster.url, cluster.security(), EmberConfig::default())
        .await
        .expect("the client connects");
    let embedded = Session::new(EmberConfig {
        executors: 2,
        slots: 2,
        ..EmberConfig::default()
    })
    .expect("an embedded cluster");

    let (kept, skipped) = checked_sales(&remote, &csv, &BadRows::Skip).await;
    assert_eq!(skipped, dirty);
    assert_eq!(
        (kept, skipped),
        checked_sales(&embedded, &csv, &BadRows::Skip).await
    );

    let (on_cluster, in_process) = (dir.path().join("q-cluster"), dir.path().join("q-embedded"));
    let (kept, bad) = checked_sales(&remote, &csv, &BadRows::Quarantine(on_cluster.clone())).await;
    assert_eq!(bad, dirty);
    assert_eq!(
        (kept, bad),
        checked_sales(&embedded, &csv, &BadRows::Quarantine(in_process.clone())).await
    );
    let quarantine = quarantined(&on_cluster);
    assert_eq!(quarantine.len() as u64, dirty);
    assert_eq!(quarantine, quarantined(&in_process));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_processes_with_a_memory_limit_spill_and_report_it() {
    let cluster = TestCluster::start_with(
        2,
        Options {
            // Two slots each, sharing 16 MiB.
            executor_args: args(&["--memory-limit", "16M"]),
            ..Options::default()
        },
    );
    let metrics = q18_under_a_memory_limit(&cluster).await;
    // Spill figures travel back from the executor processes with each task's output.
    assert!(metrics.spilled_bytes() > 0, "nothing spilled");
    eprintln!(
        "q18 on 2 processes of 16 MiB: spilled {} bytes",
        metrics.spilled_bytes()
    );
}

/// Runs TPC-H q18 at SF 0.1 on `cluster`, planned for a small memory limit with
/// sort-merge joins (which spill; under a limit Ember would plan hash joins that fit) and
/// small batches as in the embedded spill test; checks its rows against DataFusion alone
/// and returns the job's metrics.
pub(crate) async fn q18_under_a_memory_limit(
    cluster: &TestCluster,
) -> ember::scheduler::JobMetrics {
    let config = EmberConfig {
        memory_limit: Some(4 << 20),
        datafusion: vec![
            (
                "datafusion.execution.batch_size".to_string(),
                "1024".to_string(),
            ),
            (
                "datafusion.optimizer.prefer_hash_join".to_string(),
                "false".to_string(),
            ),
        ],
        ..EmberConfig::default()
    };
    let session = Session::connect_with(&cluster.url, cluster.security(), config)
        .await
        .expect("the client connects");
    let dir = ember_tests::tpch_data(0.1);
    register_tpch(&session, &dir).await.expect("tables");
    let sql = tpch_query(18);
    let result = session.sql(&sql).await.expect("q18 runs under the limit");
    let expected = ember_tests::datafusion_rows_in(&dir, &sql).await;
    assert!(rows_match(&rows(&result.batches), &expected));
    result.metrics.expect("a job ran")
}

/// A command that starts an executor of `cluster`'s scheduler on a loopback port.
pub(crate) fn executor_command(cluster: &TestCluster) -> Command {
    let mut command = Command::new(NODE);
    command.args([
        "executor",
        "--scheduler",
        &cluster.url,
        "--bind",
        "127.0.0.1:0",
    ]);
    command
}

/// The files of an output folder, by name, with their sizes (the staging folder apart).
fn listing(dir: &std::path::Path) -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, u64)> = entries
        .flatten()
        .map(|e| {
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), size)
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_while_writing_leaves_the_destination_unchanged_and_the_job_writes_once()
{
    use ember::WriteMode;
    use ember::planner::WriteFormat;

    let cluster = TestCluster::start(3, &["--heartbeat-timeout", "2"], None);
    let mut session = cluster.session().await;
    // Six writing tasks, as planned: coalesced, the small partitions would be one task.
    session
        .set("ember.adaptive.coalesce", "false")
        .expect("a per-job setting");
    let out = TempDir::new().expect("temp dir");
    let dest = out.path().join("table");
    let dest_text = dest.to_string_lossy().into_owned();

    // An earlier output, which the write replaces.
    let earlier = session
        .from_batches(key_values(3_000, 3))
        .expect("dataset")
        .write(&dest_text, WriteFormat::Parquet, WriteMode::Overwrite)
        .await
        .expect("the first write");
    assert_eq!(
        earlier.first_value::<arrow::datatypes::UInt64Type>(),
        Some(3_000)
    );
    let before = listing(&dest);
    assert!(
        before.iter().any(|(name, _)| name == "_SUCCESS"),
        "{before:?}"
    );

    // While the slow writing stage runs, kill an executor other than the one that
    // finished the stage's first task: it is in the middle of writing its partition.
    let killed = Arc::new(Mutex::new(None::<String>));
    let seen_during = Arc::new(Mutex::new(None::<Vec<(String, u64)>>));
    let executors = Arc::clone(&cluster.executors);
    let (victim, during, watched) = (Arc::clone(&killed), Arc::clone(&seen_during), dest.clone());
    session.set_listener(Arc::new(Hook(move |event: &JobEvent| {
        if let JobEvent::TaskFinished {
            stage_id,
            executor_id,
            ..
        } = event
        {
            let mut victim = victim.lock().expect("lock");
            if *stage_id == ember::proto::StageId(0) || victim.is_some() {
                return;
            }
            *during.lock().expect("lock") = Some(listing(&watched));
            let mut executors = executors.lock().expect("lock");
            if let Some(node) = executors.iter_mut().find(|n| *n.id != **executor_id) {
                kill(node);
                *victim = Some(node.id.clone());
            }
        }
    })));
    let (rows_written, keys) = (24_000, 8);
    let written = session
        .from_batches(key_values(rows_written, keys))
        .expect("dataset")
        .repartition_by(vec![col("value") % lit(7i64)], 6)
        .expect("shuffle")
        .map_batches("cluster_test.slow")
        .expect("slow")
        .write(&dest_text, WriteFormat::Parquet, WriteMode::Overwrite)
        .await
        .expect("the write survives the loss of an executor");
    let victim = victim_of(&killed);
    let log = cluster.scheduler_log();
    // The victim was writing: its attempt of the writing stage was run again elsewhere,
    // because its call broke (or, had the call hung, once its heartbeats stopped).
    let rerun: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(&format!("running on lost executor {victim}"))
                || l.contains(&format!("the call to executor {victim} broke"))
        })
        .collect();
    assert!(!rerun.is_empty(), "no write of {victim} was re-run:\n{log}");
    eprintln!("killed {victim} while writing:\n{}", rerun.join("\n"));
    assert_eq!(
        written.first_value::<arrow::datatypes::UInt64Type>(),
        Some(rows_written as u64)
    );
    assert_eq!(
        seen_during.lock().expect("lock").clone(),
        Some(before.clone()),
        "the destination changed while the job ran"
    );

    // Written completely, once: every row once, one file per task, the old files gone,
    // the marker there, and no staging folder left.
    let after = listing(&dest);
    let data: Vec<_> = after
        .iter()
        .filter(|(n, _)| n.ends_with(".parquet"))
        .collect();
    assert!(after.iter().any(|(n, _)| n == "_SUCCESS"), "{after:?}");
    assert!(data.len() <= 6, "one file per partition at most: {after:?}");
    assert!(
        before
            .iter()
            .all(|old| old.0 == "_SUCCESS" || !after.contains(old)),
        "old files remain: {after:?}"
    );
    assert!(
        !out.path().join(".ember-staging").exists(),
        "the staging folder is left behind"
    );
    let reader = Session::new(EmberConfig {
        executors: 2,
        ..EmberConfig::default()
    })
    .expect("an embedded cluster");
    let back = reader.read_parquet(&dest_text).await.expect("readable");
    let sums = sums_by_key(back, 2).await.expect("sums");
    assert_eq!(sums, expected_sums(rows_written, keys), "killed {victim}");
}
