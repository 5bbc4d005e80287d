//! Ember across hosts: a scheduler and executors each in a network namespace of their own
//! on a private bridge ([`ember_tests::hosts`]), so that the shuffle crosses links, and
//! the faults are a link cut (whole, or only between two hosts) or a slow link, not only
//! a process death. The tests run one at a time and skip only where namespaces cannot be
//! made (never where `EMBER_REQUIRE_NETNS` is set, as in CI).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember::pipelines::register_tpch;
use ember::scheduler::JobEvent;
use ember::{EmberConfig, Session};
use ember_tests::host_cluster::HostCluster;
use ember_tests::hosts::{Hosts, hosts_lock};
use ember_tests::{
    S3Server, datafusion_rows_on, ensure_debian_package, moto_python, rows,
    run_tpch_against_datafusion_in, tpch_data, tpch_dir, tpch_query,
};

use crate::cluster::{Hook, NODE, expected_sums, slow_sums};

/// A cluster of one scheduler host and `executor_hosts` executor hosts, with the lock
/// that runs host tests one at a time; `None` (after saying why) where namespaces cannot
/// be made here.
fn host_cluster(
    executor_hosts: usize,
    scheduler_args: &[&str],
    executor_args: &[&str],
) -> Option<(std::fs::File, HostCluster)> {
    let guard = hosts_lock();
    if let Err(reason) = Hosts::available()
        && Hosts::skip(&reason)
    {
        return None;
    }
    let cluster = HostCluster::start(
        Path::new(NODE),
        executor_hosts,
        scheduler_args,
        executor_args,
    )
    .unwrap_or_else(|e| panic!("the host cluster starts: {e}"));
    Some((guard, cluster))
}

/// Polls `check` every 100 ms until it holds or `timeout` passes; whether it held.
async fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_on_four_hosts_equals_datafusion_with_lz4_between_hosts() {
    let Some((_guard, cluster)) = host_cluster(3, &[], &[]) else {
        return;
    };
    let session = cluster.session(EmberConfig::default()).await;
    let dir = tpch_data(0.1);
    register_tpch(&session, &dir)
        .await
        .expect("the TPC-H tables register");
    let (failures, metrics) = run_tpch_against_datafusion_in(&session, &dir).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let tasks: Vec<_> = metrics.iter().flat_map(|m| &m.tasks).collect();
    let executors: std::collections::BTreeSet<&str> =
        tasks.iter().map(|t| t.executor_id.as_str()).collect();
    assert_eq!(executors.len(), 3, "tasks ran on {executors:?}");
    // Every executor knows its peers are on other hosts: `auto` wrote LZ4, every time.
    let codecs: std::collections::BTreeMap<&str, usize> =
        tasks.iter().fold(Default::default(), |mut m, t| {
            *m.entry(t.compression.as_str()).or_default() += 1;
            m
        });
    assert_eq!(
        codecs.keys().copied().collect::<Vec<_>>(),
        ["lz4"],
        "codecs: {codecs:?}"
    );
    let shuffled: u64 = metrics.iter().map(|m| m.shuffle_bytes()).sum();
    eprintln!(
        "22 queries on 3 executor hosts: {} tasks, all LZ4; {shuffled} shuffle bytes written",
        tasks.len()
    );
    assert!(shuffled > 0);
}

/// A session set up for the fault tests: no partition coalescing, so that the slow
/// stage's six small tasks spread over every host instead of becoming one.
async fn spread_session(cluster: &HostCluster) -> Session {
    let mut config = EmberConfig::default();
    config
        .set("ember.adaptive.coalesce", "false")
        .expect("a known setting");
    cluster.session(config).await
}

/// A notification when stage `stage` of the session's next job starts.
fn on_stage_start(session: &mut Session, stage: usize) -> Arc<tokio::sync::Notify> {
    let started = Arc::new(tokio::sync::Notify::new());
    let notify = Arc::clone(&started);
    let fired = Arc::new(Mutex::new(false));
    session.set_listener(Arc::new(Hook(move |event: &JobEvent| {
        if let JobEvent::StageStarted { stage_id, .. } = event
            && stage_id.index() == stage
        {
            let mut fired = fired.lock().expect("lock");
            if !*fired {
                *fired = true;
                notify.notify_one();
            }
        }
    })));
    started
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_cut_off_from_the_scheduler_is_lost_then_rejoins_as_new() {
    let Some((_guard, cluster)) = host_cluster(3, &["--heartbeat-timeout", "3"], &[]) else {
        return;
    };
    let mut session = spread_session(&cluster).await;
    let victim_host = 2;
    let victim = cluster.executors[0].id.clone();
    assert_eq!(cluster.executors[0].host, victim_host);
    let originals: Vec<String> = cluster.executors.iter().map(|e| e.id.clone()).collect();
    // Stage 1 pushes the rows through the slow function: cut host 2 off from the
    // scheduler (only from it: the executors still reach each other) while it runs.
    let slow_stage = on_stage_start(&mut session, 1);
    // Long enough that the stage outlasts the cut and the executor's return, whose stale
    // answer the running job refuses.
    let (rows_n, keys) = (240_000, 30);
    let job = slow_sums(&session, rows_n, keys);
    let fault = async {
        tokio::time::timeout(Duration::from_secs(120), slow_stage.notified())
            .await
            .expect("the slow stage starts");
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster
            .hosts()
            .cut_between(1, victim_host)
            .expect("the link is cut");
        let cut = Instant::now();
        let declared = wait_until(Duration::from_secs(20), || {
            cluster
                .scheduler_log()
                .lines()
                .any(|l| l.contains("executor lost") && l.contains(&victim))
        })
        .await;
        let lost_after = cut.elapsed();
        cluster
            .hosts()
            .restore_between(1, victim_host)
            .expect("the link is restored");
        (declared, lost_after)
    };
    let (got, (declared, lost_after)) = tokio::join!(job, fault);
    let log = cluster.scheduler_log();
    assert!(declared, "{victim} was not declared lost:\n{log}");
    eprintln!("{victim} declared lost {lost_after:?} after its link to the scheduler was cut");
    let got = got.expect("the job survives the cut");
    assert_eq!(got, expected_sums(rows_n, keys));
    // Back on the network, the executor registers again under a new id, and its reports
    // of the old id's attempts are refused: stale.
    let rejoined = wait_until(Duration::from_secs(30), || {
        cluster.executors[0]
            .log_text()
            .contains("registering again")
    })
    .await;
    assert!(rejoined, "no re-registration:\n{}", cluster.executor_logs());
    let refused = wait_until(Duration::from_secs(45), || {
        cluster
            .scheduler_log()
            .lines()
            .any(|l| l.contains("refused a stale") && l.contains(&victim))
    })
    .await;
    assert!(
        refused,
        "no stale report of {victim} refused:\n{}",
        cluster.scheduler_log()
    );
    // The rejoined executor gets tasks under its new id.
    session.set_listener(Arc::new(Hook(|_: &JobEvent| {})));
    register_tpch(&session, tpch_dir())
        .await
        .expect("the TPC-H tables register");
    let mut new_ids = std::collections::BTreeSet::new();
    for _ in 0..5 {
        let result = session
            .sql(&tpch_query(1))
            .await
            .expect("a job after the rejoin");
        let metrics = result.metrics.expect("it ran a job");
        new_ids.extend(
            metrics
                .tasks
                .iter()
                .map(|t| t.executor_id.to_string())
                .filter(|id| !originals.contains(id)),
        );
        if !new_ids.is_empty() {
            break;
        }
    }
    assert!(
        !new_ids.is_empty(),
        "no task ran on the rejoined executor:\n{}",
        cluster.scheduler_log()
    );
    eprintln!("{victim} rejoined as {new_ids:?} and ran tasks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_between_two_executors_fails_the_fetch_and_recomputes() {
    let Some((_guard, cluster)) = host_cluster(3, &["--heartbeat-timeout", "3"], &[]) else {
        return;
    };
    let mut session = spread_session(&cluster).await;
    // When the slow stage starts, its tasks fetch the first stage's output from every
    // host: cut hosts 2 and 3 apart (both still reach the scheduler and host 4).
    let slow_stage = on_stage_start(&mut session, 1);
    let (rows_n, keys) = (60_000, 30);
    let job = slow_sums(&session, rows_n, keys);
    let fault = async {
        tokio::time::timeout(Duration::from_secs(120), slow_stage.notified())
            .await
            .expect("the slow stage starts");
        cluster.hosts().cut_between(2, 3).expect("the link is cut");
        let failed = wait_until(Duration::from_secs(90), || {
            cluster
                .scheduler_log()
                .lines()
                .any(|l| l.contains("could not fetch its data"))
        })
        .await;
        cluster
            .hosts()
            .restore_between(2, 3)
            .expect("the link is restored");
        failed
    };
    let (got, failed) = tokio::join!(job, fault);
    let log = cluster.scheduler_log();
    assert!(failed, "no fetch failed across the cut:\n{log}");
    let got = got.expect("the job survives the cut");
    assert_eq!(got, expected_sums(rows_n, keys));
    let recomputed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("recomputing map task"))
        .collect();
    assert!(!recomputed.is_empty(), "nothing recomputed:\n{log}");
    eprintln!(
        "fetch failure across the cut, then:\n{}",
        recomputed.join("\n")
    );
}

/// Files of the slow-link test, rows per file, bytes per row: 12 files of 16 MB.
const BLOB_FILES: usize = 12;
const BLOB_ROWS: usize = 2_000;
const BLOB_BYTES: usize = 8_192;
/// The query of the slow-link test: it reads every byte of every file.
const BLOB_QUERY: &str = "SELECT count(*) AS n, md5(max(blob)) AS top FROM blobs";

/// Writes [`BLOB_FILES`] Parquet files of one binary column into `dir`, uncompressed and
/// without dictionaries: reading them is mostly moving bytes, which a slow link slows.
async fn write_blobs(dir: &Path) {
    let ctx = datafusion::prelude::SessionContext::new();
    for file in 0..BLOB_FILES {
        let (first, last) = (file * BLOB_ROWS + 1, (file + 1) * BLOB_ROWS);
        let sql = format!(
            "COPY (SELECT CAST(repeat(md5(CAST(i AS VARCHAR)), {}) AS BYTEA) AS blob \
             FROM generate_series({first}, {last}) AS t(i)) TO '{}' STORED AS PARQUET \
             OPTIONS ('format.compression' 'uncompressed', 'format.dictionary_enabled' 'false')",
            BLOB_BYTES / 32,
            dir.join(format!("part-{file:02}.parquet")).display()
        );
        ctx.sql(&sql)
            .await
            .expect("plans")
            .collect()
            .await
            .expect("writes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_finishes_and_speculation_makes_it_faster() {
    let Some((_guard, cluster)) = host_cluster(3, &[], &[]) else {
        return;
    };
    // The data sits in an object store on the client's address: every executor reads
    // its input over its own link, and host 4's link is 50 Mbit/s.
    let s3 = S3Server::start_at(moto_python(), &cluster.hosts().client_address());
    s3.create_bucket("lake");
    let local = tempfile::tempdir().expect("temp dir");
    write_blobs(local.path()).await;
    for entry in std::fs::read_dir(local.path())
        .expect("the files")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().to_string();
        s3.upload("lake", &format!("blobs/{name}"), &entry.path());
    }
    // One scan task per file on six slots: the fast hosts take more as they finish
    // theirs, and speculation sees the ones left on host 4 as slow. No keys: the cluster
    // speaks plain HTTP across hosts, where Ember sends no secret (the store on this test
    // host takes unsigned requests).
    let mut config = EmberConfig::default();
    config
        .set("ember.shuffle.partitions", &BLOB_FILES.to_string())
        .expect("a known setting");
    for (key, value) in [
        ("endpoint", s3.endpoint.as_str()),
        ("allow_http", "true"),
        ("region", "us-east-1"),
        ("skip_signature", "true"),
    ] {
        config
            .set(&format!("ember.s3.{key}"), value)
            .expect("a known S3 option");
    }
    let session = cluster.session(config).await;
    session
        .sql("CREATE EXTERNAL TABLE blobs STORED AS PARQUET LOCATION 's3://lake/blobs/'")
        .await
        .expect("the table registers");
    cluster.hosts().limit(4, 50).expect("host 4 is slowed");
    let expected = {
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_parquet(
            "blobs",
            local.path().to_string_lossy().as_ref(),
            Default::default(),
        )
        .await
        .expect("registers");
        datafusion_rows_on(&ctx, BLOB_QUERY).await
    };
    assert_eq!(expected[0][0], (BLOB_FILES * BLOB_ROWS).to_string());
    let mut times = std::collections::BTreeMap::<bool, Vec<Duration>>::new();
    let mut copies = 0;
    // Alternate, twice each, so that neither setting gets a warmer cache.
    for speculation in [false, true, false, true] {
        session
            .sql(&format!("SET ember.speculation.enabled = {speculation}"))
            .await
            .expect("a setting");
        let started = Instant::now();
        let result = session
            .sql(BLOB_QUERY)
            .await
            .expect("the query finishes over the slow link");
        let elapsed = started.elapsed();
        assert_eq!(rows(&result.batches), expected, "speculation {speculation}");
        let metrics = result.metrics.expect("a job ran");
        eprintln!(
            "speculation {speculation}: {elapsed:?}, {} copies",
            metrics.speculated.len()
        );
        if speculation {
            copies += metrics.speculated.len();
        } else {
            assert!(metrics.speculated.is_empty(), "copies with speculation off");
        }
        times.entry(speculation).or_default().push(elapsed);
    }
    let best = |on: bool| times[&on].iter().min().copied().unwrap_or_default();
    let (off, on) = (best(false), best(true));
    eprintln!(
        "host 4 at 50 Mbit/s: {:.2} s without speculation, {:.2} s with it ({:.2}x)",
        off.as_secs_f64(),
        on.as_secs_f64(),
        on.as_secs_f64() / off.as_secs_f64()
    );
    assert!(copies > 0, "speculation launched no copy: {times:?}");
    assert!(on < off, "speculation did not help: {times:?}");
    cluster.hosts().unlimit(4).expect("the limit goes");
}

#[test]
fn hosts_are_torn_down_even_after_a_panic() {
    let _guard = hosts_lock();
    if let Err(reason) = Hosts::available()
        && Hosts::skip(&reason)
    {
        return;
    }
    ensure_debian_package("iputils-ping", "ping", &["-V"]);
    let names = std::panic::catch_unwind(|| {
        let hosts = Hosts::create(2).expect("hosts");
        let names = vec![hosts.namespace(1), hosts.namespace(2)];
        // The hosts reach each other over the bridge, and a cut stops that.
        let ping = |from: usize, to: &str| {
            hosts
                .command(from, Path::new("ping"))
                .args(["-c", "1", "-W", "1", to])
                .output()
                .expect("ping runs")
                .status
                .success()
        };
        assert!(ping(1, &hosts.address(2)), "host 1 reaches host 2");
        hosts.cut_between(1, 2).expect("cut");
        assert!(!ping(1, &hosts.address(2)), "the cut holds");
        hosts.restore_between(1, 2).expect("restored");
        assert!(ping(1, &hosts.address(2)), "host 1 reaches host 2 again");
        std::panic::panic_any(names)
    })
    .expect_err("it panicked")
    .downcast::<Vec<String>>()
    .expect("the names");
    let listed = || {
        let out = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip runs");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    for name in names.iter() {
        assert!(
            !listed().contains(name.as_str()),
            "{name} is left: {}",
            listed()
        );
    }
    // What a killed run leaves (a namespace named after a process that is gone, with a
    // link into this namespace) goes when the next run makes its hosts.
    let ip = |args: &[&str]| {
        let status = std::process::Command::new("ip")
            .args(args)
            .status()
            .expect("ip runs");
        assert!(status.success(), "ip {args:?}");
    };
    let stale = "ember-4194305-0-h1";
    ip(&["netns", "add", stale]);
    ip(&[
        "link",
        "add",
        "eth0",
        "netns",
        stale,
        "type",
        "veth",
        "peer",
        "name",
        "embstale0",
    ]);
    let hosts = Hosts::create(1).expect("hosts after a killed run");
    assert!(!listed().contains(stale), "{stale} is left: {}", listed());
    // The kernel tears a deleted namespace's devices down in the background.
    let link_gone = || {
        !std::process::Command::new("ip")
            .args(["link", "show", "embstale0"])
            .output()
            .expect("ip runs")
            .status
            .success()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !link_gone() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(link_gone(), "the stale link is left");
    drop(hosts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_minute_chaos_run_finds_nothing_wrong() {
    let _guard = hosts_lock();
    if let Err(reason) = Hosts::available()
        && Hosts::skip(&reason)
    {
        return;
    }
    let seed = std::env::var("EMBER_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()));
    let seconds = std::env::var("EMBER_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let options = ember_tests::chaos::ChaosOptions {
        duration: Duration::from_secs(seconds),
        seed,
        executors: 3,
        node: NODE.into(),
    };
    let summary = ember_tests::chaos::run(&options)
        .await
        .unwrap_or_else(|e| panic!("the chaos run starts: {e}"));
    eprint!("{}", summary.report());
    assert!(summary.clean(), "{}", summary.report());
    assert_eq!(
        summary.recoveries,
        summary.fault_count,
        "a fault after which no job was correct: {}",
        summary.report()
    );
    assert!(
        summary.fault_count as u64 >= (seconds / 15).max(2),
        "too few faults: {}",
        summary.report()
    );
    assert!(
        summary.queries > 0 && summary.writes > 0,
        "{}",
        summary.report()
    );
}
