//! Adaptive execution and speculation seen from outside: every adaptive rule fires on some
//! TPC-H query (thresholds set so it must) and the 22 answers stay DataFusion's; a skewed
//! join's largest task shrinks to at most twice the median once its partition is split,
//! with the same result; `ember explain analyze` prints the decisions; and on a process
//! cluster with one executor frozen (SIGSTOP), speculation finishes a write job before the
//! executor wakes, with each output file and accumulator counted once, while without it
//! the job waits for the executor.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ember::scheduler::{AdaptiveConfig, Decision, JobMetrics};
use ember::{EmberConfig, FileFormat, Session, TableSpec};
use ember_tests::{cluster_functions, rows, run_tpch_against_datafusion, tpch_query, tpch_session};

use crate::cluster::{TestCluster, key_values, signal};
use crate::explain::ember_over_tpch;

/// Which rules decided something over `metrics`, by name.
fn fired(metrics: &[JobMetrics]) -> BTreeMap<&'static str, usize> {
    let mut count = BTreeMap::new();
    for decision in metrics
        .iter()
        .flat_map(|m| &m.stages)
        .flat_map(|s| &s.decisions)
    {
        let rule = match decision {
            Decision::Coalesced { .. } => "coalesce",
            Decision::SkewSplit { .. } => "skew",
            Decision::Broadcast { .. } => "broadcast",
            Decision::Pruned { .. } => "prune",
        };
        *count.entry(rule).or_default() += 1;
    }
    count
}

/// 8 shuffle partitions on 2 executors, with `adaptive` and the DataFusion `settings`.
fn config(adaptive: AdaptiveConfig, settings: &[(&str, &str)]) -> EmberConfig {
    EmberConfig {
        executors: 2,
        shuffle_partitions: Some(8),
        adaptive,
        datafusion: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..EmberConfig::default()
    }
}

/// Every join planned partitioned (no join side collected by DataFusion's own estimate),
/// so that the adaptive rules meet partitioned joins.
const PARTITIONED_JOINS: &[(&str, &str)] = &[
    (
        "datafusion.optimizer.hash_join_single_partition_threshold",
        "0",
    ),
    (
        "datafusion.optimizer.hash_join_single_partition_threshold_rows",
        "0",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_adaptive_rule_fires_on_tpch_and_the_answers_stay_datafusions() {
    // Broadcast first: small sides under 1 MiB become broadcasts.
    let broadcast = AdaptiveConfig {
        broadcast_threshold: 1 << 20,
        ..AdaptiveConfig::default()
    };
    // Then skew: broadcasts and coalescing off (coalesced, tasks of this small data would
    // aim at 1 MiB, slices too), any partition over 1.2 x its input's median is split.
    let skew = AdaptiveConfig {
        broadcast: false,
        coalesce: false,
        skew_factor: 1.2,
        skew_min_bytes: 0,
        ..AdaptiveConfig::default()
    };
    let mut all = Vec::new();
    for (name, adaptive) in [("broadcast", broadcast), ("skew", skew)] {
        let session = tpch_session(config(adaptive, PARTITIONED_JOINS)).await;
        let (failures, metrics) = run_tpch_against_datafusion(&session).await;
        assert!(
            failures.is_empty(),
            "with {name} rules: {}",
            failures.join("\n")
        );
        eprintln!("{name} run: {:?}", fired(&metrics));
        all.extend(metrics);
    }
    let count = fired(&all);
    for rule in ["coalesce", "skew", "broadcast", "prune"] {
        assert!(
            count.get(rule).copied().unwrap_or(0) > 0,
            "rule {rule} never fired: {count:?}"
        );
    }
    // The decisions change the tasks: some stage ran another number of tasks than planned.
    assert!(
        all.iter()
            .flat_map(|m| &m.stages)
            .any(|s| s.partitions != s.planned_partitions)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_adaptivity_off_every_stage_runs_as_planned() {
    let session = tpch_session(config(AdaptiveConfig::off(), PARTITIONED_JOINS)).await;
    for n in [3, 5, 12] {
        let result = session.sql(&tpch_query(n)).await.expect("the query runs");
        let metrics = result.metrics.expect("metrics");
        assert!(fired(std::slice::from_ref(&metrics)).is_empty());
        assert!(
            metrics
                .stages
                .iter()
                .all(|s| s.partitions == s.planned_partitions)
        );
    }
}

/// Writes a products-style sales table to `dir`: `rows` sales over 8 CSV files, 1,000
/// products in 20 brands, product 0 holding 30 % of the sales.
fn skewed_sales(dir: &Path, rows: usize) {
    let sales = dir.join("sales");
    std::fs::create_dir_all(&sales).expect("sales folder");
    let files = 8;
    for f in 0..files {
        let mut text = String::from("product_id,quantity,price\n");
        for i in (f..rows).step_by(files) {
            let product = if i % 10 < 3 { 0 } else { 1 + (i * 7919) % 999 };
            text.push_str(&format!("{product},{},{}.5\n", 1 + i % 5, 10 + i % 90));
        }
        std::fs::write(sales.join(format!("part-{f}.csv")), text).expect("sales file");
    }
    let mut products = String::from("product_id,brand\n");
    for p in 0..1000 {
        products.push_str(&format!("{p},brand-{:02}\n", p % 20));
    }
    std::fs::write(dir.join("products.csv"), products).expect("products file");
}

const BRAND_REVENUE: &str = "SELECT p.brand, count(*) AS sales, sum(s.price * s.quantity) AS revenue \
     FROM sales s JOIN products p ON s.product_id = p.product_id \
     GROUP BY p.brand ORDER BY p.brand";

/// The join stage's tasks' input rows, largest first, and the result, with `skew_join`
/// on or off.
async fn brand_revenue(dir: &Path, skew_join: bool) -> (Vec<u64>, Vec<Vec<String>>) {
    let adaptive = AdaptiveConfig {
        skew_join,
        // Only skew splitting changes the join stage's tasks here.
        broadcast: false,
        coalesce: false,
        skew_factor: 3.0,
        skew_min_bytes: 0,
        ..AdaptiveConfig::default()
    };
    let session = Session::new(config(adaptive, PARTITIONED_JOINS)).expect("a session");
    for (name, path) in [
        ("sales", dir.join("sales")),
        ("products", dir.join("products.csv")),
    ] {
        session
            .register_table(&TableSpec::new(
                name,
                path.to_string_lossy(),
                Some(FileFormat::Csv),
            ))
            .await
            .expect("table");
    }
    let result = session.sql(BRAND_REVENUE).await.expect("the query runs");
    let metrics = result.metrics.clone().expect("metrics");
    // The join stage reads two inputs.
    let join = metrics
        .stages
        .iter()
        .find(|s| s.inputs.len() == 2)
        .expect("a join stage");
    let mut work: Vec<u64> = metrics
        .tasks
        .iter()
        .filter(|t| t.stage_id == join.stage_id)
        .map(|t| t.read_rows)
        .collect();
    work.sort_unstable_by(|a, b| b.cmp(a));
    eprintln!(
        "skew_join={skew_join}: join tasks read {work:?}; decisions {:?}",
        join.decisions
    );
    (work, rows(&result.batches))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_join_partition_is_split_until_no_task_holds_over_twice_the_median() {
    let dir = tempfile::tempdir().expect("temp dir");
    skewed_sales(dir.path(), 160_000);
    let median = |work: &[u64]| work[work.len() / 2];

    let (before, expected) = brand_revenue(dir.path(), false).await;
    assert!(
        before[0] >= 3 * median(&before),
        "without splitting one task holds the hot product: {before:?}"
    );
    assert!(before[0] as f64 >= 0.3 * before.iter().sum::<u64>() as f64);

    let (after, got) = brand_revenue(dir.path(), true).await;
    assert!(
        after[0] <= 2 * median(&after),
        "the largest task reads at most twice the median: {after:?}"
    );
    assert!(
        after.len() > before.len(),
        "the hot partition became several tasks"
    );
    assert_eq!(got, expected, "splitting changes no result");
    assert_eq!(got.len(), 20);
    let sales: u64 = got
        .iter()
        .map(|r| r[1].parse::<u64>().expect("count"))
        .sum();
    assert_eq!(sales, 160_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_analyze_prints_the_stages_as_they_ran_and_each_decision() {
    let q12 = tpch_query(12);
    let analyze = |settings: &[&str]| {
        let mut args = vec!["--conf", "ember.shuffle.partitions=8"];
        for setting in settings {
            args.extend(["--conf", setting]);
        }
        args.push(&q12);
        let output = ember_over_tpch(&["explain", "analyze"], &args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let stdout = analyze(&[]);
    assert!(
        stdout.contains("Stage 0: planned 8 tasks, ran 8"),
        "{stdout}"
    );
    assert!(
        stdout.contains("adaptive: coalesced 8 partitions into"),
        "{stdout}"
    );
    assert!(stdout.contains("HashJoinExec"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("Job ") && l.contains("2 rows")),
        "{stdout}"
    );
    // The last line says where the job's time went: the tasks ran for some of it.
    let time = stdout.lines().last().unwrap_or_default();
    assert!(time.starts_with("Time: tasks in flight "), "{stdout}");
    let running: f64 = time
        .split("running ")
        .nth(1)
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no running time in {time}"));
    assert!(running > 0.0, "{time}");

    // With adaptivity off, no decision is printed.
    let stdout = analyze(&["ember.adaptive.enabled=false"]);
    assert!(!stdout.contains("adaptive:"), "{stdout}");
    assert!(stdout.contains("0 adaptive decisions"), "{stdout}");
}

/// Runs a one-stage write job of 8 slow tasks (`cluster_test.slow_counted`) on `cluster`
/// with executor 2 frozen from before the job until 10 s later; how long the job took, and
/// the accumulator and files it left.
async fn write_with_a_frozen_executor(
    cluster: &TestCluster,
    speculation: bool,
    out: &Path,
) -> (Duration, i64, usize, u64) {
    let mut config = EmberConfig {
        shuffle_partitions: Some(8),
        ..EmberConfig::default()
    };
    config.adaptive.speculation.enabled = speculation;
    let session = Session::connect_with_functions(
        &cluster.url,
        cluster.security(),
        config,
        cluster_functions(),
    )
    .await
    .expect("the client connects");
    let counted = session.long_accumulator("cluster_test.rows");
    let frozen = std::thread::spawn({
        let pid = cluster.executors.lock().expect("lock")[2].child.id();
        move || {
            std::thread::sleep(Duration::from_secs(10));
            let _ = Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
    });
    signal(&cluster.executors.lock().expect("lock")[2], "STOP");
    let started = Instant::now();
    let written = session
        .from_batches(key_values(8_000, 10))
        .expect("batches")
        .map_batches("cluster_test.slow_counted")
        .expect("map")
        .write_parquet(&out.to_string_lossy())
        .await
        .expect("the write job succeeds");
    let took = started.elapsed();
    drop(written);
    frozen.join().expect("the waker");
    // Give the woken executor's late attempts time to end (and to be refused).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let files: Vec<_> = std::fs::read_dir(out)
        .expect("the output folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    let rows = session
        .read_parquet(&out.to_string_lossy())
        .await
        .expect("read back")
        .count()
        .await
        .expect("count");
    (took, counted.value(&session), files.len(), rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speculation_finishes_a_write_before_a_frozen_executor_wakes_and_counts_once() {
    let cluster = TestCluster::start(3, &["--heartbeat-timeout", "30"], None);
    let dir = tempfile::tempdir().expect("temp dir");

    let (took, counted, files, rows) =
        write_with_a_frozen_executor(&cluster, true, &dir.path().join("fast")).await;
    eprintln!("with speculation: {took:?}, {files} files, {rows} rows, counted {counted}");
    assert!(
        took < Duration::from_secs(9),
        "the job finished before the executor woke: {took:?}\n{}",
        cluster.scheduler_log()
    );
    assert_eq!(files, 8, "one file per task");
    assert_eq!(rows, 8_000, "each row written once");
    assert_eq!(counted, 8_000, "each row counted once");
    let log = cluster.scheduler_log();
    assert!(log.contains("speculative copy"), "{log}");

    let (took, counted, files, rows) =
        write_with_a_frozen_executor(&cluster, false, &dir.path().join("slow")).await;
    eprintln!("without speculation: {took:?}, {files} files, {rows} rows, counted {counted}");
    assert!(
        took >= Duration::from_secs(9),
        "without speculation the job waits for the executor: {took:?}"
    );
    assert_eq!((files, rows, counted), (8, 8_000, 8_000));
}
