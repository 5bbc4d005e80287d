//! Stage cutting: aggregates, joins and sorts are cut where their exchanges are.

use ember::datafusion::prelude::{CsvReadOptions, SessionConfig, SessionContext};
use ember::planner::{ShuffleOutput, StageGraph};
use ember::{EmberConfig, FileFormat, Session, TableSpec};
use ember_tests::{datafusion_rows, rows, rows_match, tpch_session};

async fn session(extra: &[(&str, &str)]) -> Session {
    let mut config = EmberConfig {
        executors: 2,
        ..EmberConfig::default()
    };
    for (key, value) in extra {
        config.set(key, value).expect("valid setting");
    }
    tpch_session(config).await
}

fn plan_text(graph: &StageGraph, stage: usize) -> String {
    graph
        .to_string()
        .split("Stage ")
        .find(|s| s.starts_with(&format!("{stage}:")) || s.starts_with(&format!("{stage} (")))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_is_cut_between_partial_and_final() {
    let session = session(&[]).await;
    let graph = session
        .explain("SELECT l_returnflag, count(*) FROM lineitem GROUP BY l_returnflag")
        .await
        .expect("plans");
    assert_eq!(graph.stages().len(), 2, "{graph}");
    let map = &graph.stages()[0];
    assert!(
        matches!(map.output(), ShuffleOutput::Hash { count: 2, .. }),
        "{graph}"
    );
    assert!(map.inputs().is_empty());
    assert!(plan_text(&graph, 0).contains("mode=Partial"), "{graph}");
    let reduce = graph.final_stage();
    assert_eq!(reduce.inputs(), &[0]);
    assert_eq!(reduce.partitions(), 2);
    assert!(
        plan_text(&graph, 1).contains("mode=FinalPartitioned"),
        "{graph}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_join_reads_both_sides_from_hash_shuffles() {
    let session = session(&[
        (
            "datafusion.optimizer.hash_join_single_partition_threshold",
            "0",
        ),
        (
            "datafusion.optimizer.hash_join_single_partition_threshold_rows",
            "0",
        ),
    ])
    .await;
    let graph = session
        .explain("SELECT o_orderpriority, l_quantity FROM orders JOIN lineitem ON o_orderkey = l_orderkey")
        .await
        .expect("plans");
    let join = graph.final_stage();
    assert_eq!(join.inputs().len(), 2, "{graph}");
    for input in join.inputs() {
        let side = &graph.stages()[*input];
        match side.output() {
            ShuffleOutput::Hash { exprs, count } => {
                assert_eq!(*count, 2);
                assert!(exprs[0].to_string().contains("orderkey"), "{graph}");
            }
            other => panic!("join side writes {other}, not a hash shuffle\n{graph}"),
        }
    }
    assert!(
        plan_text(&graph, join.id()).contains("mode=Partitioned"),
        "{graph}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_build_side_is_broadcast_to_every_probe_task() {
    let session = session(&[]).await;
    let graph = session
        .explain("SELECT s_name, l_quantity FROM supplier JOIN lineitem ON s_suppkey = l_suppkey")
        .await
        .expect("plans");
    let build = graph
        .stages()
        .iter()
        .find(|s| matches!(s.output(), ShuffleOutput::Single))
        .unwrap_or_else(|| panic!("no broadcast stage\n{graph}"));
    let join = graph.final_stage();
    assert!(join.inputs().contains(&build.id()), "{graph}");
    assert_eq!(
        join.partitions(),
        2,
        "every probe partition reads the build side"
    );
    assert!(
        plan_text(&graph, join.id()).contains("CollectLeft"),
        "{graph}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_sort_sorts_partitions_then_merges_them_in_one_task() {
    let session = session(&[]).await;
    let graph = session
        .explain("SELECT l_orderkey, l_quantity FROM lineitem ORDER BY l_quantity DESC, l_orderkey")
        .await
        .expect("plans");
    let merge = graph.final_stage();
    assert_eq!(merge.partitions(), 1, "{graph}");
    assert!(
        plan_text(&graph, merge.id()).contains("SortPreservingMergeExec"),
        "{graph}"
    );
    let sorted = &graph.stages()[merge.inputs()[0]];
    assert!(
        matches!(sorted.output(), ShuffleOutput::Preserve { count: 2 }),
        "{graph}"
    );
    assert!(
        plan_text(&graph, sorted.id()).contains("SortExec"),
        "{graph}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outer_join_with_a_collected_build_side_becomes_partitioned() {
    let session = session(&[]).await;
    let graph = session
        .explain(
            "SELECT c_custkey, count(o_orderkey) FROM customer LEFT JOIN orders \
             ON c_custkey = o_custkey GROUP BY c_custkey",
        )
        .await
        .expect("plans");
    let text = graph.to_string();
    assert!(!text.contains("CollectLeft"), "{text}");
    // And the answer still counts customers without orders.
    let result = session
        .sql(
            "SELECT count(*) FROM (SELECT c_custkey, count(o_orderkey) AS n FROM customer \
             LEFT JOIN orders ON c_custkey = o_custkey GROUP BY c_custkey) WHERE n = 0",
        )
        .await
        .expect("runs");
    let batch = &result.batches[0];
    let zero_order_customers =
        arrow::array::cast::as_primitive_array::<arrow::datatypes::Int64Type>(batch.column(0))
            .value(0);
    assert_eq!(
        zero_order_customers, 500,
        "a third of sf 0.01's 1500 customers have no orders"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semi_join_shuffles_the_matching_probe_keys_not_its_probe_side() {
    let session = session(&[]).await;
    // TPC-H q04: orders that have a late lineitem. The filtered orders are the collected
    // build side; lineitem is the probe side.
    let query = ember_tests::tpch_query(4);
    let graph = session.explain(&query).await.expect("plans");
    let text = graph.to_string();
    for stage in graph.stages() {
        if let ShuffleOutput::Hash { exprs, .. } = stage.output() {
            assert!(
                !exprs.iter().any(|e| e.to_string().contains("l_orderkey")),
                "lineitem is shuffled by its join key\n{text}"
            );
        }
    }
    // The probe tasks keep the distinct keys that match; one task joins them to the
    // build side, which is one stage read by both.
    assert!(text.contains("join_type=RightSemi"), "{text}");
    assert!(text.contains("gby=[l_orderkey@0 as key_0]"), "{text}");
    let semi = graph
        .stages()
        .iter()
        .find(|s| plan_text(&graph, s.id()).contains("join_type=LeftSemi"))
        .unwrap_or_else(|| panic!("no left-semi join\n{text}"));
    assert_eq!(semi.partitions(), 1, "{text}");
    let build = semi.inputs()[0];
    let readers = graph
        .stages()
        .iter()
        .filter(|s| s.inputs().contains(&build))
        .count();
    assert_eq!(
        readers, 2,
        "the build side is computed once and read twice\n{text}"
    );

    let ours = rows(&session.sql(&query).await.expect("runs").batches);
    let alone = datafusion_rows(&query).await;
    assert!(rows_match(&ours, &alone), "{ours:?} vs {alone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_broadcast_side_filters_the_shuffles_below_its_join() {
    // Customers and orders are joined partitioned (broadcast only under 30 rows); the
    // two nations are broadcast to the join above. A runtime filter keeps only customers
    // of those nations before customers are shuffled.
    let small = [
        (
            "datafusion.optimizer.hash_join_single_partition_threshold",
            "1000",
        ),
        (
            "datafusion.optimizer.hash_join_single_partition_threshold_rows",
            "30",
        ),
    ];
    let off = [
        small[0],
        small[1],
        ("ember.optimizer.runtime_filters", "false"),
    ];
    let query = "SELECT n_name, count(*), sum(o_totalprice) FROM customer \
                 JOIN orders ON c_custkey = o_custkey \
                 JOIN nation ON c_nationkey = n_nationkey \
                 WHERE n_name IN ('FRANCE', 'GERMANY') GROUP BY n_name ORDER BY n_name";
    let with_filters = session(&small).await;
    let without = session(&off).await;
    let graph = with_filters.explain(query).await.expect("plans");
    let text = graph.to_string();
    let filtered_shuffles = graph
        .stages()
        .iter()
        .filter(|s| matches!(s.output(), ShuffleOutput::Hash { .. }))
        .filter(|s| {
            let plan = plan_text(&graph, s.id());
            plan.contains("join_type=RightSemi") && plan.contains("c_nationkey")
        })
        .count();
    assert_eq!(
        filtered_shuffles, 1,
        "customers filtered before their shuffle\n{text}"
    );
    assert!(
        text.contains("join_type=Partitioned") || text.contains("mode=Partitioned"),
        "customers and orders joined partitioned\n{text}"
    );
    let plain = without.explain(query).await.expect("plans").to_string();
    assert!(!plain.contains("RightSemi"), "{plain}");

    let ours = rows(&with_filters.sql(query).await.expect("runs").batches);
    assert_eq!(ours.len(), 2, "{ours:?}");
    let unfiltered = rows(&without.sql(query).await.expect("runs").batches);
    assert_eq!(ours, unfiltered);
    let alone = datafusion_rows(query).await;
    assert!(rows_match(&ours, &alone), "{ours:?} vs {alone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_of_two_equal_files_gives_each_task_one_whole_file() {
    // DataFusion splits these small files into byte ranges too.
    let session = session(&[("datafusion.optimizer.repartition_file_min_size", "0")]).await;
    let graph = session
        .explain("SELECT l_returnflag, count(*) FROM lineitem GROUP BY l_returnflag")
        .await
        .expect("plans");
    let scan = plan_text(&graph, 0);
    assert!(scan.contains("2 groups"), "{scan}");
    assert!(
        scan.contains("lineitem/part-0.parquet]") && scan.contains("lineitem/part-1.parquet]"),
        "each group is one whole file, not byte ranges:\n{scan}"
    );
}

/// Monthly sales of 5 categories × 7 brands over three years, as CSV in `dir`.
fn monthly_sales_csv(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = String::from("category,brand,year,month,amount\n");
    for i in 0..4000 {
        text.push_str(&format!(
            "c{},b{},{},{},{}.{:02}\n",
            i % 5,
            (i / 5) % 7,
            1998 + (i / 35) % 3,
            1 + (i / 105) % 12,
            (i * 37) % 1000,
            i % 100
        ));
    }
    let path = dir.join("sales.csv");
    std::fs::write(&path, text).expect("the sales table is written");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_partitioned_by_a_filtered_constant_runs_over_a_shuffle() {
    // The shape of TPC-DS q47 and q57: `year = 1999` is pushed below the window partitioned
    // by (category, brand, year), so DataFusion sorts its input by category and brand
    // only, year being constant; and with two partitions that input is shuffled by
    // (category, brand, year). The stage above the shuffle runs only if its reader still
    // declares year constant.
    let work = tempfile::tempdir().expect("tempdir");
    let csv = monthly_sales_csv(work.path());
    let query = "SELECT category, brand, year, month, total, avg_total, rn FROM ( \
                   SELECT category, brand, year, month, sum(amount) AS total, \
                     avg(sum(amount)) OVER (PARTITION BY category, brand, year) AS avg_total, \
                     rank() OVER (PARTITION BY category, brand ORDER BY year, month) AS rn \
                   FROM sales GROUP BY category, brand, year, month) v \
                 WHERE year = 1999 \
                 ORDER BY category, brand, month";

    let session = Session::new(EmberConfig {
        executors: 2,
        ..EmberConfig::default()
    })
    .expect("the cluster starts");
    let table = TableSpec::new("sales", csv.to_string_lossy(), Some(FileFormat::Csv));
    session.register_table(&table).await.expect("registers");
    let graph = session.explain(query).await.expect("plans");
    let window_stage = graph
        .stages()
        .iter()
        .map(|s| plan_text(&graph, s.id()))
        .find(|text| text.contains("WindowAggExec: wdw=[avg"))
        .unwrap_or_else(|| panic!("no stage computes the average\n{graph}"));
    assert!(
        window_stage.contains("partitioning=Hash([category@0, brand@1, year@2], 2)"),
        "the average reads a shuffle by its partition keys\n{graph}"
    );
    let got = rows(&session.sql(query).await.expect("runs").batches);

    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    ctx.register_csv(
        "sales",
        csv.to_string_lossy().as_ref(),
        CsvReadOptions::new(),
    )
    .await
    .expect("registers");
    let expected = rows(
        &ctx.sql(query)
            .await
            .expect("DataFusion plans")
            .collect()
            .await
            .expect("DataFusion runs"),
    );
    assert_eq!(
        expected.len(),
        5 * 7 * 12,
        "one row per category, brand and month"
    );
    assert!(
        rows_match(&got, &expected),
        "ember: {:?}\ndf: {:?}",
        &got[..got.len().min(3)],
        &expected[..3]
    );
}
