//! The Flight SQL endpoint (`ember scheduler --flight-sql-bind`), driven by a real client:
//! the ADBC Flight SQL driver from PyPI in `tests/python/flight_sql_client.py`, against a
//! process cluster (a scheduler and 2 executors) over TPC-H at SF 0.1. Its results are
//! compared with `ember sql` against the same scheduler, both written by Ember's CSV writer.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use ember::datasets::tpch_tables;
use ember::{Cluster, EmberConfig, OutputFormat, Session};
use ember_tests::{cells_match, python_venv, rows_match, tpch_data};

use crate::cluster::{NODE, Options, TestCluster, args, certificates};
use crate::streaming::job_folders;

/// The token of the clusters that have one.
const TOKEN: &str = "flight-sql-test-token";

/// A query that runs for a long while at SF 0.1 (360 million joined rows).
const SLOW: &str = "SELECT count(*) FROM lineitem a JOIN lineitem b ON a.l_suppkey = b.l_suppkey";

/// The Python with the ADBC Flight SQL driver and pyarrow, installed once.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        python_venv(
            "flight-sql",
            &["adbc-driver-flightsql", "pyarrow"],
            "adbc_driver_flightsql.dbapi, pyarrow",
        )
    })
}

/// TPC-H at SF 0.1, made once.
fn sf01() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| tpch_data(0.1))
}

/// `--table NAME=PATH:parquet` for every TPC-H table at SF 0.1.
fn table_args() -> Vec<String> {
    tpch_tables()
        .iter()
        .flat_map(|t| {
            [
                "--table".to_string(),
                format!("{t}={}:parquet", sf01().join(t).display()),
            ]
        })
        .collect()
}

/// A scheduler serving Flight SQL over the TPC-H tables, and 2 executors; the Flight SQL
/// URI (`grpc://127.0.0.1:PORT`).
fn flight_sql_cluster(token: Option<&str>) -> (TestCluster, String) {
    flight_sql_cluster_with(Options {
        token: token.map(str::to_string),
        ..Options::default()
    })
}

/// [`flight_sql_cluster`] with `options` (whose scheduler arguments come first).
fn flight_sql_cluster_with(mut options: Options) -> (TestCluster, String) {
    options
        .scheduler_args
        .extend(args(&["--flight-sql-bind", "127.0.0.1:0"]));
    options.scheduler_args.extend(table_args());
    let tls = options.tls_ca.is_some();
    let cluster = TestCluster::start_with(2, options);
    let line = cluster
        .scheduler
        .lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the scheduler announces its Flight SQL address");
    let address = line
        .strip_prefix("ember flight sql listening on ")
        .unwrap_or_else(|| panic!("an announcement of the Flight SQL address, got {line}"));
    let scheme = if tls { "grpc+tls" } else { "grpc" };
    (cluster, format!("{scheme}://{address}"))
}

/// The client script run with `args`, with `token` (if any) in its environment.
fn client(uri: &str, token: Option<&str>, args: &[&str]) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/flight_sql_client.py");
    let mut command = Command::new(python());
    command.arg(script).arg(uri).args(args);
    command.env_remove("EMBER_FLIGHT_SQL_TOKEN");
    if let Some(token) = token {
        command.env("EMBER_FLIGHT_SQL_TOKEN", token);
    }
    command
}

/// Runs the client to its end; its output, which must be a success.
fn run_client(uri: &str, token: Option<&str>, args: &[&str]) -> Output {
    let output = client(uri, token, args).output().expect("python runs");
    assert!(
        output.status.success(),
        "the client failed ({:?}): {}",
        args,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The rows of CSV text with a header line.
fn csv_rows(text: &[u8]) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text)
        .records()
        .map(|r| r.expect("valid CSV").iter().map(str::to_string).collect())
        .collect()
}

/// `ember sql --format csv --file query` against the cluster's scheduler: its rows.
fn ember_sql_rows(cluster: &TestCluster, query: &Path) -> Vec<Vec<String>> {
    let output = Command::new(NODE)
        .args([
            "sql",
            "--scheduler",
            &cluster.url,
            "--format",
            "csv",
            "--file",
        ])
        .arg(query)
        .args(table_args())
        .args(
            cluster
                .token
                .iter()
                .flat_map(|t| ["--auth-token", t.as_str()]),
        )
        .env_remove("EMBER_AUTH_TOKEN")
        .output()
        .expect("ember sql runs");
    assert!(
        output.status.success(),
        "ember sql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    csv_rows(&output.stdout)
}

/// The rows of an Arrow IPC file, written by the same CSV writer as `ember sql`'s.
fn arrow_file_rows(path: &Path) -> Vec<Vec<String>> {
    let file = std::fs::File::open(path).expect("the client wrote its result");
    let reader = arrow::ipc::reader::FileReader::try_new(file, None).expect("an Arrow file");
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("a batch")).collect();
    let mut csv = Vec::new();
    ember::write_result(&mut csv, &schema, &batches, OutputFormat::Csv).expect("CSV");
    csv_rows(&csv)
}

/// Writes `sql` to a file in `dir`; its path.
fn sql_file(dir: &Path, name: &str, sql: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, sql).expect("the query file is written");
    path
}

fn tpch_query_file(n: usize) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/tpch/queries")
        .join(format!("q{n:02}.sql"))
}

/// A session on the cluster, to watch its scheduler.
async fn watcher(cluster: &TestCluster) -> Session {
    Session::connect_with(&cluster.url, cluster.security(), EmberConfig::default())
        .await
        .expect("the watcher connects")
}

/// Jobs running on the cluster and busy task slots, as its scheduler reports them.
async fn busy(session: &Session) -> (usize, usize) {
    let Cluster::Remote(remote) = session.cluster() else {
        panic!("a process cluster");
    };
    let jobs = remote.running_jobs().await.expect("the scheduler answers");
    let executors = remote.executors().await.expect("the scheduler answers");
    let busy_slots = executors.iter().map(|e| e.slots - e.free).sum();
    (jobs, busy_slots)
}

/// Waits up to `limit` for `done` to hold, polling every 100 ms; whether it did.
async fn eventually(limit: Duration, mut done: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_gets_the_same_tpch_q1_q3_q18_results_as_ember_sql() {
    let (cluster, uri) = flight_sql_cluster(Some(TOKEN));
    for (n, direct) in [(1, true), (3, false), (18, false)] {
        let out = cluster.dir.path().join(format!("q{n}.arrow"));
        let query = tpch_query_file(n);
        let mut args = vec![
            "query",
            query.to_str().expect("UTF-8"),
            out.to_str().expect("UTF-8"),
        ];
        if direct {
            // A plain statement (CommandStatementQuery), not the DB-API's prepared one.
            args.push("--direct");
        }
        run_client(&uri, Some(TOKEN), &args);
        let got = arrow_file_rows(&out);
        let expected = ember_sql_rows(&cluster, &query);
        assert!(!expected.is_empty(), "q{n} has rows");
        assert!(
            rows_match(&got, &expected),
            "q{n}: Flight SQL gave {} rows, ember sql {}; first rows {:?} vs {:?}",
            got.len(),
            expected.len(),
            got.first(),
            expected.first()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_statement_binds_its_parameter_and_get_tables_lists_the_catalog() {
    let (cluster, uri) = flight_sql_cluster(None);
    let prepared = "SELECT count(*) FROM lineitem WHERE l_quantity > ?";
    for value in [30, 45] {
        let output = run_client(&uri, None, &["prepared", prepared, &value.to_string()]);
        let got = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let literal = sql_file(
            cluster.dir.path(),
            &format!("count-{value}.sql"),
            &format!("SELECT count(*) FROM lineitem WHERE l_quantity > {value}"),
        );
        let expected = ember_sql_rows(&cluster, &literal);
        assert!(
            cells_match(&got, &expected[0][0]),
            "l_quantity > {value}: the prepared statement counted {got}, ember sql {}",
            expected[0][0]
        );
    }

    let output = run_client(&uri, None, &["tables", "lineitem"]);
    let listed: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the client prints JSON");
    let mut expected: Vec<&str> = tpch_tables().to_vec();
    expected.sort();
    let tables: Vec<&str> = listed["tables"]
        .as_array()
        .expect("a table list")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert_eq!(tables, expected);
    let columns = listed["columns"].as_array().expect("lineitem's columns");
    assert_eq!(columns.len(), 16, "{columns:?}");
    assert_eq!(columns[4], "l_quantity");
    // GetSqlInfo, as the driver reports it.
    let server = &listed["server"];
    assert_eq!(server["name"], "Ember", "{server}");
    assert_eq!(server["version"], env!("CARGO_PKG_VERSION"), "{server}");

    // A bad query is refused with one line that names what is wrong.
    let bad = sql_file(cluster.dir.path(), "bad.sql", "SELECT * FROM no_such_table");
    let out = cluster.dir.path().join("bad.arrow");
    let output = client(
        &uri,
        None,
        &[
            "query",
            bad.to_str().expect("UTF-8"),
            out.to_str().expect("UTF-8"),
        ],
    )
    .output()
    .expect("python runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no_such_table") && stderr.contains("InvalidArgument")
            || stderr.contains("no_such_table") && stderr.contains("INVALID_ARGUMENT"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_token_is_refused() {
    let (cluster, uri) = flight_sql_cluster(Some(TOKEN));
    let query = sql_file(cluster.dir.path(), "one.sql", "SELECT 1");
    let out = cluster.dir.path().join("one.arrow");
    let query_args = [
        "query",
        query.to_str().expect("UTF-8"),
        out.to_str().expect("UTF-8"),
    ];
    for token in [None, Some("not-the-token")] {
        let output = client(&uri, token, &query_args)
            .output()
            .expect("python runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "token {token:?} was accepted");
        assert!(
            stderr.to_lowercase().contains("unauthenticated"),
            "token {token:?}: {stderr}"
        );
        assert!(!out.exists(), "token {token:?} got a result");
    }
    run_client(&uri, Some(TOKEN), &query_args);
    assert_eq!(arrow_file_rows(&out), vec![vec!["1".to_string()]]);
    let log = cluster.scheduler_log();
    assert!(
        log.contains("service=\"flight-sql\"") || log.contains("flight-sql"),
        "the refusals are logged: {log}"
    );

    // As for --bind: no other host's address without a token, unless allowed.
    let refused = Command::new(NODE)
        .args([
            "scheduler",
            "--bind",
            "127.0.0.1:0",
            "--flight-sql-bind",
            "0.0.0.0:0",
        ])
        .env_remove("EMBER_AUTH_TOKEN")
        .output()
        .expect("the scheduler runs");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--flight-sql-bind") && stderr.contains("without an auth token"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_result_or_mid_job_leaves_no_job_running() {
    let (cluster, uri) = flight_sql_cluster(None);
    let session = watcher(&cluster).await;

    // Mid-result: 3 batches of 600 000 rows read, then the client goes.
    let mut reader = client(&uri, None, &["read-some", "SELECT * FROM lineitem", "3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    let mut stdout = std::io::BufReader::new(reader.stdout.take().expect("piped"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("the client reports");
    assert!(
        line.starts_with("read 3 batches"),
        "the client said {line:?}"
    );
    assert!(
        !job_folders(&cluster.work_dirs()).is_empty(),
        "the result is still held on the executors while the client reads"
    );
    drop(reader.stdin.take());
    let output = reader.wait_with_output().expect("the client ends");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dirs = cluster.work_dirs();
    let gone = eventually(Duration::from_secs(20), async || {
        job_folders(&dirs).is_empty() && busy(&session).await == (0, 0)
    })
    .await;
    assert!(
        gone,
        "left after the client went: {:?}, (jobs, busy slots) {:?}",
        job_folders(&dirs),
        busy(&session).await
    );
    assert!(
        cluster
            .scheduler_log()
            .contains("the Flight SQL client went away before the end of the result"),
        "the server saw the client leave mid-result: {}",
        cluster.scheduler_log()
    );

    // Mid-job: the client is killed while its job runs.
    let mut runner = client(&uri, None, &["run", SLOW])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python runs");
    let started = eventually(Duration::from_secs(60), async || {
        let (jobs, slots) = busy(&session).await;
        jobs == 1 && slots > 0
    })
    .await;
    assert!(started, "the slow job runs: {:?}", busy(&session).await);
    runner.kill().expect("the client is killed");
    let _ = runner.wait();
    let stopped = eventually(Duration::from_secs(20), async || {
        busy(&session).await == (0, 0) && job_folders(&dirs).is_empty()
    })
    .await;
    assert!(
        stopped,
        "still running after the client was killed: (jobs, busy slots) {:?}, folders {:?}",
        busy(&session).await,
        job_folders(&dirs)
    );
    assert!(
        cluster
            .scheduler_log()
            .contains("the client went away; job cancelled"),
        "{}",
        cluster.scheduler_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_adbc_needs_the_ca_and_the_token_and_gets_its_rows_over_tls() {
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
    let (cluster, uri) = flight_sql_cluster_with(Options {
        scheduler_args: tls.clone(),
        executor_args: tls,
        token: Some(TOKEN.into()),
        tls_ca: Some(ca.clone()),
        ..Options::default()
    });
    assert!(uri.starts_with("grpc+tls://"), "{uri}");
    let query = sql_file(
        cluster.dir.path(),
        "nations.sql",
        "SELECT count(*) FROM nation",
    );
    let out = cluster.dir.path().join("nations.arrow");
    let query_args = [
        "query",
        query.to_str().expect("UTF-8"),
        out.to_str().expect("UTF-8"),
    ];
    // Without the CA the server's certificate is not trusted; in clear it is not spoken.
    let untrusting = client(&uri, Some(TOKEN), &query_args)
        .output()
        .expect("python runs");
    assert!(
        !untrusting.status.success(),
        "a client without the CA got through"
    );
    let plain = uri.replacen("grpc+tls://", "grpc://", 1);
    let in_clear = client(&plain, Some(TOKEN), &query_args)
        .env("EMBER_FLIGHT_SQL_CA", &ca)
        .output()
        .expect("python runs");
    assert!(!in_clear.status.success(), "a client in clear got through");
    assert!(!out.exists());
    let output = client(&uri, Some(TOKEN), &query_args)
        .env("EMBER_FLIGHT_SQL_CA", &ca)
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(arrow_file_rows(&out), vec![vec!["25".to_string()]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_flight_info_stops_a_running_query_and_its_job() {
    use arrow_flight::sql::client::FlightSqlServiceClient;
    use arrow_flight::{Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus};
    use futures::StreamExt;
    use prost::Message;

    let (cluster, uri) = flight_sql_cluster(None);
    let session = watcher(&cluster).await;
    let address = uri.replacen("grpc://", "http://", 1);
    let channel = tonic::transport::Endpoint::from_shared(address)
        .expect("a URL")
        .connect()
        .await
        .expect("the endpoint answers");
    let mut client = FlightSqlServiceClient::new(channel);
    let info = client
        .execute(SLOW.to_string(), None)
        .await
        .expect("the query plans");
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    let mut stream = client.do_get(ticket).await.expect("the query starts");
    let reading = tokio::spawn(async move { stream.next().await });
    let started = eventually(Duration::from_secs(60), async || {
        let (jobs, slots) = busy(&session).await;
        jobs == 1 && slots > 0
    })
    .await;
    assert!(started, "the slow job runs: {:?}", busy(&session).await);

    let cancel = |info| {
        Action::new(
            "CancelFlightInfo",
            CancelFlightInfoRequest { info: Some(info) }.encode_to_vec(),
        )
    };
    let mut answer = client
        .do_action(cancel(info.clone()))
        .await
        .expect("the action is served");
    let result = answer.next().await.expect("an answer").expect("a result");
    let result = CancelFlightInfoResult::decode(result.body).expect("a CancelFlightInfoResult");
    assert_eq!(result.status, CancelStatus::Cancelled as i32);

    let first = reading.await.expect("the reader ends");
    let error = match first {
        Some(Err(e)) => e.to_string(),
        other => panic!("the reader got {other:?} instead of a cancellation"),
    };
    assert!(error.contains("was cancelled"), "{error}");
    let stopped = eventually(Duration::from_secs(20), async || {
        busy(&session).await == (0, 0) && job_folders(&cluster.work_dirs()).is_empty()
    })
    .await;
    assert!(
        stopped,
        "still running after the cancellation: {:?}",
        busy(&session).await
    );

    // The query is gone: a second cancellation finds nothing to stop.
    let mut answer = client
        .do_action(cancel(info))
        .await
        .expect("the action is served");
    let result = answer.next().await.expect("an answer").expect("a result");
    let result = CancelFlightInfoResult::decode(result.body).expect("a CancelFlightInfoResult");
    assert_eq!(result.status, CancelStatus::NotCancellable as i32);
}

/// The task count of the last job the scheduler logged as submitted.
fn last_job_tasks(cluster: &TestCluster) -> usize {
    let log = cluster.scheduler_log();
    let line = log
        .lines()
        .rfind(|l| l.contains("job submitted"))
        .unwrap_or_else(|| panic!("no job in the log: {log}"));
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("tasks="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no task count in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_made_over_flight_sql_outlives_new_executors_whose_slots_plans_then_use() {
    let (mut cluster, uri) = flight_sql_cluster(None);
    let session = watcher(&cluster).await;
    run_client(
        &uri,
        None,
        &[
            "run",
            "CREATE VIEW big_lines AS SELECT l_orderkey FROM lineitem WHERE l_quantity > 45",
        ],
    );
    let query = sql_file(
        cluster.dir.path(),
        "big.sql",
        "SELECT count(*) FROM big_lines",
    );
    let dir = cluster.dir.path().to_path_buf();
    let count = |name: &str| {
        let out = dir.join(name);
        run_client(
            &uri,
            None,
            &[
                "query",
                query.to_str().expect("UTF-8"),
                out.to_str().expect("UTF-8"),
            ],
        );
        arrow_file_rows(&out)
    };
    let before = count("before.arrow");
    let tasks_before = last_job_tasks(&cluster);

    cluster
        .add_executor(None)
        .expect("a third executor registers");
    let Cluster::Remote(remote) = session.cluster() else {
        panic!("a process cluster");
    };
    let joined = eventually(Duration::from_secs(20), async || {
        remote.executors().await.is_ok_and(|e| e.len() == 3)
    })
    .await;
    assert!(joined, "the third executor is listed");
    let after = count("after.arrow");
    let tasks_after = last_job_tasks(&cluster);
    assert_eq!(after, before, "the view answers the same");
    let literal = sql_file(
        cluster.dir.path(),
        "literal.sql",
        "SELECT count(*) FROM lineitem WHERE l_quantity > 45",
    );
    assert_eq!(after, ember_sql_rows(&cluster, &literal));
    assert!(
        tasks_after > tasks_before,
        "plans use the new executor's slots: {tasks_before} tasks with 2 executors, \
         {tasks_after} with 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_and_ember_sql_share_the_schedulers_catalog() {
    let catalog = tempfile::tempdir().expect("temp dir");
    let catalog_arg = catalog.path().join("catalog").display().to_string();
    let (cluster, uri) = flight_sql_cluster_with(Options {
        scheduler_args: args(&["--catalog", &catalog_arg]),
        ..Options::default()
    });
    // A view made by an `ember sql` client is listed and answered over Flight SQL.
    let made = sql_file(
        cluster.dir.path(),
        "make-view.sql",
        "CREATE VIEW big_orders AS SELECT o_orderkey FROM orders WHERE o_totalprice > 400000",
    );
    ember_sql_rows(&cluster, &made);
    let want = ember_sql_rows(
        &cluster,
        &sql_file(
            cluster.dir.path(),
            "count.sql",
            "SELECT count(*) FROM orders WHERE o_totalprice > 400000",
        ),
    );
    let output = run_client(&uri, None, &["tables", "big_orders"]);
    let listed: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the client prints JSON");
    assert!(
        listed["tables"]
            .as_array()
            .expect("a table list")
            .iter()
            .any(|t| t == "big_orders"),
        "{listed}"
    );
    let output = run_client(&uri, None, &["run", "SELECT * FROM big_orders"]);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("{} rows", want[0][0])
    );

    // And one made over Flight SQL is there for the next `ember sql` client.
    run_client(
        &uri,
        None,
        &[
            "run",
            "CREATE VIEW few_nations AS SELECT * FROM nation WHERE n_regionkey = 1",
        ],
    );
    let rows = ember_sql_rows(
        &cluster,
        &sql_file(
            cluster.dir.path(),
            "few.sql",
            "SELECT count(*) FROM few_nations",
        ),
    );
    assert_eq!(rows[0][0], "5", "{rows:?}");
}
