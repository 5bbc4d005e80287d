//! Standby schedulers elected through a real etcd (`--ha`): the leader is SIGKILLed in the
//! middle of jobs and the standby takes them over; etcd is stopped while a write job runs
//! and the leader steps down before another leads; etcd unreachable at start is a clear
//! error. Executors and clients are given both schedulers' URLs and are never restarted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::prelude::{col, lit};
use ember::pipelines::register_tpch;
use ember::scheduler::JobEvent;
use ember::{EmberConfig, Session};
use ember_tests::etcd::EtcdServer;
use ember_tests::{cluster_functions, rows, rows_match, tpch_dir, tpch_query};
use tempfile::TempDir;

use crate::cluster::{Hook, NODE, Node, TestCluster, expected_sums, key_values, kill, sums_by_key};

/// The lease of the test schedulers, in seconds.
const LEASE_S: u64 = 2;

/// Starts `command` with its stdout lines sent to the receiver, without waiting for one.
fn start(command: &mut Command, stderr: &Path) -> (Child, Receiver<String>) {
    use std::io::BufRead;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).expect("log file"))
        .spawn()
        .expect("the process starts");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits up to `limit` for `text` in the file at `path`.
fn wait_for_text(path: &Path, text: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path)
            .unwrap_or_default()
            .contains(text)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A scheduler started with `--ha`: its process, stdout lines, log and URL.
struct HaScheduler {
    child: Child,
    lines: Receiver<String>,
    log: PathBuf,
    url: String,
}

fn ha_scheduler(dir: &Path, name: &str, etcd_url: &str, extra: &[&str]) -> HaScheduler {
    let port = free_port();
    let log = dir.join(format!("{name}.log"));
    let mut command = Command::new(NODE);
    command
        .args(["scheduler", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--ui-bind", "127.0.0.1:0", "--heartbeat-timeout", "5"])
        .args(["--ha", etcd_url, "--ha-lease", &LEASE_S.to_string()])
        .args(extra)
        .env("RUST_LOG", "info");
    let (child, lines) = start(&mut command, &log);
    HaScheduler {
        child,
        lines,
        log,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// A leader, a standby and three executors that know both.
struct HaCluster {
    cluster: TestCluster,
    standby: HaScheduler,
    leader_url: String,
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What the schedulers said, for the failure's report.
            for log in [&self.cluster.scheduler.stderr, &self.standby.log] {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("--- {} (last 60 lines)", log.display());
                for line in &lines[lines.len().saturating_sub(60)..] {
                    eprintln!("{line}");
                }
            }
        }
        let _ = self.standby.child.kill();
        let _ = self.standby.child.wait();
    }
}

fn ha_cluster(etcd_url: &str) -> HaCluster {
    let dir = tempfile::Builder::new()
        .prefix("ember-ha-test-")
        .tempdir()
        .expect("temp dir");
    let leader = ha_scheduler(dir.path(), "scheduler-a", etcd_url, &[]);
    let listening = leader
        .lines
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "the first scheduler did not lead: {}",
                std::fs::read_to_string(&leader.log).unwrap_or_default()
            )
        });
    assert!(listening.contains("listening"), "{listening}");
    let standby = ha_scheduler(dir.path(), "scheduler-b", etcd_url, &[]);
    assert!(
        wait_for_text(
            &standby.log,
            "standing by: the leader is",
            Duration::from_secs(30)
        ),
        "the second scheduler does not stand by: {}",
        std::fs::read_to_string(&standby.log).unwrap_or_default()
    );
    assert!(
        standby.lines.try_recv().is_err(),
        "a standby listens on nothing"
    );
    let leader_url = leader.url.clone();
    let mut cluster = TestCluster {
        url: format!("{},{}", leader.url, standby.url),
        token: None,
        tls_ca: None,
        executor_args: Vec::new(),
        executor_env: Vec::new(),
        scheduler: Node {
            id: String::new(),
            child: leader.child,
            stderr: leader.log,
            lines: leader.lines,
        },
        executors: Arc::default(),
        dir,
    };
    for _ in 0..3 {
        cluster.add_executor(None).expect("the executor registers");
    }
    HaCluster {
        cluster,
        standby,
        leader_url,
    }
}

impl HaCluster {
    /// SIGKILLs the leader; returns how long the standby took to lead (its listening line).
    fn kill_leader(&mut self) -> Duration {
        kill(&mut self.cluster.scheduler);
        let killed = Instant::now();
        let line = self
            .standby
            .lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "the standby did not take over: {}",
                    std::fs::read_to_string(&self.standby.log).unwrap_or_default()
                )
            });
        assert!(line.contains("listening"), "{line}");
        killed.elapsed()
    }

    /// Every executor still runs (none was restarted) and registered again under its id.
    fn executors_followed(&self) {
        let mut executors = self.cluster.executors.lock().expect("lock");
        for (n, node) in executors.iter_mut().enumerate() {
            assert!(
                node.child.try_wait().expect("status").is_none(),
                "executor {n} exited"
            );
            let log = std::fs::read_to_string(&node.stderr).unwrap_or_default();
            assert!(
                log.contains("registered again under the same id"),
                "executor {n} did not follow the new leader: {log}"
            );
        }
    }
}

/// A session on `cluster` whose listener records every event with its time.
async fn watched_session(
    cluster: &TestCluster,
    dir: &Path,
) -> (Session, Arc<Mutex<Vec<(Instant, JobEvent)>>>) {
    let mut session = Session::connect_with_functions(
        &cluster.url,
        cluster.security(),
        EmberConfig::default(),
        cluster_functions(),
    )
    .await
    .expect("the client connects");
    register_tpch(&session, dir).await.expect("tables");
    let seen: Arc<Mutex<Vec<(Instant, JobEvent)>>> = Arc::default();
    let heard = Arc::clone(&seen);
    session.set_listener(Arc::new(Hook(move |event: &JobEvent| {
        heard
            .lock()
            .expect("lock")
            .push((Instant::now(), event.clone()));
    })));
    (session, seen)
}

fn stages_finished(seen: &Mutex<Vec<(Instant, JobEvent)>>) -> usize {
    seen.lock()
        .expect("lock")
        .iter()
        .filter(|(_, e)| matches!(e, JobEvent::StageFinished { .. }))
        .count()
}

async fn wait_for_stages(seen: &Mutex<Vec<(Instant, JobEvent)>>, n: usize) {
    let started = Instant::now();
    while stages_finished(seen) < n {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{n} stages did not finish"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_q21_when_the_leader_is_killed() {
    let etcd = EtcdServer::shared();
    let mut ha = ha_cluster(&etcd.url(&format!("ember-q21-{}", std::process::id())));
    let dir = ember_tests::tpch_data(0.1);
    let (session, seen) = watched_session(&ha.cluster, &dir).await;
    let sql = tpch_query(21);
    let query = {
        let sql = sql.clone();
        tokio::spawn(async move { session.sql(&sql).await.map(|r| rows(&r.batches)) })
    };
    wait_for_stages(&seen, 2).await;
    assert!(!query.is_finished(), "q21 ended before the kill");
    let took = ha.kill_leader();
    eprintln!(
        "the standby led {took:?} after the leader ({}) was killed; lease {LEASE_S} s",
        ha.leader_url
    );
    assert!(
        took < Duration::from_secs(LEASE_S + 3),
        "the standby led {took:?} after the kill, with a lease of {LEASE_S} s"
    );
    let got = tokio::time::timeout(Duration::from_secs(300), query)
        .await
        .expect("q21 ends")
        .expect("the query task")
        .expect("the client gets q21's answer from the new leader");
    let expected = ember_tests::datafusion_rows_in(&dir, &sql).await;
    assert!(
        rows_match(&got, &expected),
        "q21 differs from DataFusion's answer"
    );
    let log = std::fs::read_to_string(&ha.standby.log).unwrap_or_default();
    assert!(
        log.contains("took over the job from its stored state"),
        "{log}"
    );
    ha.executors_followed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_jobs_across_a_failover_all_finish_correctly() {
    let etcd = EtcdServer::shared();
    let mut ha = ha_cluster(&etcd.url(&format!("ember-eight-{}", std::process::id())));
    let (session, seen) = watched_session(&ha.cluster, tpch_dir()).await;
    let session = Arc::new(session);
    let queries = [3, 5, 7, 8, 9, 10, 18, 21];
    let mut running = Vec::new();
    for q in queries {
        let session = Arc::clone(&session);
        running.push((
            q,
            tokio::spawn(
                async move { session.sql(&tpch_query(q)).await.map(|r| rows(&r.batches)) },
            ),
        ));
    }
    wait_for_stages(&seen, 4).await;
    let unfinished = running.iter().filter(|(_, q)| !q.is_finished()).count();
    let took = ha.kill_leader();
    eprintln!("{unfinished} of 8 jobs were running at the kill; the standby led {took:?} after it");
    assert!(unfinished >= 4, "only {unfinished} jobs ran at the kill");
    for (q, query) in running {
        let got = tokio::time::timeout(Duration::from_secs(300), query)
            .await
            .unwrap_or_else(|_| panic!("q{q} did not end"))
            .expect("the query task")
            .unwrap_or_else(|e| panic!("q{q} failed across the failover: {e}"));
        let expected = ember_tests::datafusion_rows(&tpch_query(q)).await;
        assert!(
            rows_match(&got, &expected),
            "q{q} differs from DataFusion's answer"
        );
    }
    ha.executors_followed();
}

/// The files of an output folder, by name (the staging folder apart).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_etcd_steps_down_and_the_write_lands_exactly_once() {
    use ember::WriteMode;
    use ember::planner::WriteFormat;

    // Its own etcd: this test stops it.
    let etcd = EtcdServer::start();
    let ha = ha_cluster(&etcd.url("ember-write"));
    let (session, seen) = watched_session(&ha.cluster, tpch_dir()).await;
    session
        .set("ember.adaptive.coalesce", "false")
        .expect("a per-job setting");
    let out = TempDir::new().expect("temp dir");
    let dest = out.path().join("table");
    let dest_text = dest.to_string_lossy().into_owned();
    let (rows_written, keys) = (24_000i64, 8i64);
    let writing = {
        let dest_text = dest_text.clone();
        tokio::spawn(async move {
            session
                .from_batches(key_values(rows_written, keys))?
                .repartition_by(vec![col("value") % lit(7i64)], 6)?
                .map_batches("cluster_test.slow")?
                .write(&dest_text, WriteFormat::Parquet, WriteMode::Overwrite)
                .await
        })
    };

    // Once the first stage is done and the slow writing stage runs, etcd stops.
    wait_for_stages(&seen, 1).await;
    assert!(
        !writing.is_finished(),
        "the write ended before etcd stopped"
    );
    etcd.pause();
    let paused = Instant::now();
    let leader_log = ha.cluster.scheduler.stderr.clone();
    assert!(
        wait_for_text(
            &leader_log,
            "stepping down",
            Duration::from_secs(LEASE_S + 5)
        ),
        "the leader did not step down: {}",
        std::fs::read_to_string(&leader_log).unwrap_or_default()
    );
    let stepped_down = paused.elapsed();
    let during = listing(&dest);
    // Past the lease, so that etcd lets it run out once it goes on.
    std::thread::sleep(Duration::from_secs(LEASE_S + 1).saturating_sub(paused.elapsed()));
    etcd.resume();
    eprintln!("etcd stopped; the leader stepped down {stepped_down:?} later");
    assert!(
        stepped_down < Duration::from_secs(LEASE_S),
        "the leader stepped down {stepped_down:?} after etcd stopped: not before its lease of {LEASE_S} s ran out"
    );
    assert!(
        during.is_empty(),
        "the destination changed while no one led: {during:?}"
    );

    let written = tokio::time::timeout(Duration::from_secs(300), writing)
        .await
        .expect("the write ends")
        .expect("the write task")
        .expect("the write finishes under the new leader");
    assert_eq!(
        written.first_value::<arrow::datatypes::UInt64Type>(),
        Some(rows_written as u64)
    );
    let logs = [
        std::fs::read_to_string(&leader_log).unwrap_or_default(),
        std::fs::read_to_string(&ha.standby.log).unwrap_or_default(),
    ];
    assert!(
        logs.iter()
            .any(|l| l.contains("took over the job from its stored state")),
        "no scheduler took the write over"
    );

    // Every row exactly once: per-key sums as written.
    let reader = Session::new(EmberConfig {
        executors: 2,
        ..EmberConfig::default()
    })
    .expect("an embedded cluster");
    let back = reader.read_parquet(&dest_text).await.expect("readable");
    let sums = sums_by_key(back, 2).await.expect("sums");
    assert_eq!(
        sums,
        expected_sums(rows_written, keys),
        "rows lost or written twice"
    );
    assert!(listing(&dest).contains(&"_SUCCESS".to_string()));
    assert!(
        !out.path().join(".ember-staging").exists(),
        "the staging folder is left behind"
    );
}

#[test]
fn etcd_unreachable_at_start_is_a_clear_error() {
    let port = free_port();
    let output = Command::new(NODE)
        .args(["scheduler", "--bind", "127.0.0.1:0", "--no-ui", "--ha"])
        .arg(format!("etcd://127.0.0.1:{port}"))
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(text.contains("cannot reach etcd (--ha)"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    let bad = Command::new(NODE)
        .args(["scheduler", "--no-ui", "--ha", "zk://x:1"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(
        text.contains("invalid setting --ha: expected etcd://"),
        "{text}"
    );
}
