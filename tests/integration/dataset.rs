//! The columnar DSL ([`ember::Dataset`]): each operation against the same query in SQL, or
//! against plain Rust over the same rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::JoinType;
use datafusion::functions_aggregate::expr_fn::{count, max, sum};
use datafusion::prelude::{col, lit};
use ember::{Dataset, EmberConfig, Session};
use ember_tests::{rows, rows_match, tpch_session};

async fn session() -> Session {
    tpch_session(EmberConfig {
        executors: 2,
        ..EmberConfig::default()
    })
    .await
}

async fn same_rows(dataset: &Dataset<'_>, session: &Session, sql: &str) {
    let ours = rows(&dataset.collect().await.expect("the dataset runs").batches);
    let theirs = rows(&session.sql(sql).await.expect("the SQL runs").batches);
    assert!(
        rows_match(&ours, &theirs),
        "{sql}\n dsl: {ours:?}\n sql: {theirs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_with_column_group_by_and_sort_match_sql() {
    let session = session().await;
    let dataset = session
        .table("lineitem")
        .await
        .expect("table")
        .filter(col("l_quantity").gt(lit(10)))
        .expect("filter")
        .with_column(
            "revenue",
            col("l_extendedprice") * (lit(1) - col("l_discount")),
        )
        .expect("with_column")
        .group_by(vec![col("l_returnflag"), col("l_linestatus")])
        .agg(vec![
            sum(col("revenue")).alias("revenue"),
            count(lit(1)).alias("n"),
            max(col("l_shipdate")).alias("last"),
        ])
        .expect("agg")
        .sort(vec![
            col("l_returnflag").sort(true, false),
            col("l_linestatus").sort(true, false),
        ])
        .expect("sort");
    same_rows(
        &dataset,
        &session,
        "SELECT l_returnflag, l_linestatus, sum(l_extendedprice * (1 - l_discount)) AS revenue, \
         count(*) AS n, max(l_shipdate) AS last FROM lineitem WHERE l_quantity > 10 \
         GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_join_type_matches_sql() {
    let session = session().await;
    let customers = session
        .table("customer")
        .await
        .expect("table")
        .filter(col("c_nationkey").lt(lit(10)))
        .expect("filter")
        .select_columns(&["c_custkey", "c_nationkey"])
        .expect("select");
    let orders = session
        .table("orders")
        .await
        .expect("table")
        .filter(col("o_totalprice").gt(lit(200000)))
        .expect("filter")
        .select_columns(&["o_orderkey", "o_custkey"])
        .expect("select");
    let sql_join = |kind: &str| {
        format!(
            "SELECT count(*) FROM (SELECT c_custkey, c_nationkey FROM customer WHERE c_nationkey < 10) c \
             {kind} (SELECT o_orderkey, o_custkey FROM orders WHERE o_totalprice > 200000) o \
             ON c_custkey = o_custkey"
        )
    };
    for (join_type, kind) in [
        (JoinType::Inner, "JOIN"),
        (JoinType::Left, "LEFT JOIN"),
        (JoinType::Right, "RIGHT JOIN"),
        (JoinType::Full, "FULL JOIN"),
        (JoinType::LeftSemi, "LEFT SEMI JOIN"),
        (JoinType::LeftAnti, "LEFT ANTI JOIN"),
    ] {
        let joined = customers
            .join(&orders, join_type, &["c_custkey"], &["o_custkey"])
            .expect("join");
        let ours = joined.count().await.expect("counts");
        let sql = sql_join(kind);
        let theirs = rows(&session.sql(&sql).await.expect("sql runs").batches);
        assert_eq!(vec![vec![ours.to_string()]], theirs, "{join_type}: {sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_union_and_limit_match_sql() {
    let session = session().await;
    let flags = session
        .table("lineitem")
        .await
        .expect("table")
        .select_columns(&["l_returnflag", "l_linestatus"])
        .expect("select");
    let distinct = flags.distinct().expect("distinct");
    assert_eq!(
        distinct.count().await.expect("counts"),
        4,
        "sf 0.01 has four flag and status pairs"
    );
    let doubled = distinct.union(&distinct).expect("union");
    same_rows(
        &doubled
            .sort(vec![
                col("l_returnflag").sort(true, false),
                col("l_linestatus").sort(true, false),
            ])
            .expect("sort"),
        &session,
        "SELECT * FROM (SELECT DISTINCT l_returnflag, l_linestatus FROM lineitem \
         UNION ALL SELECT DISTINCT l_returnflag, l_linestatus FROM lineitem) \
         ORDER BY l_returnflag, l_linestatus",
    )
    .await;
    let page = session
        .table("orders")
        .await
        .expect("table")
        .select_columns(&["o_orderkey"])
        .expect("select")
        .sort(vec![col("o_orderkey").sort(true, false)])
        .expect("sort")
        .limit(5, Some(3))
        .expect("limit");
    same_rows(
        &page,
        &session,
        "SELECT o_orderkey FROM orders ORDER BY o_orderkey LIMIT 3 OFFSET 5",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repartition_shuffles_into_the_asked_partitions_and_keeps_every_row() {
    let session = session().await;
    let orders = session.table("orders").await.expect("table");
    let total = orders.count().await.expect("counts");
    for dataset in [
        orders.repartition(3).expect("round robin"),
        orders
            .repartition_by(vec![col("o_custkey")], 3)
            .expect("hash"),
    ] {
        let graph = {
            let plan = dataset
                .frame()
                .clone()
                .create_physical_plan()
                .await
                .expect("plans");
            ember::planner::cut_stages(plan).expect("cuts")
        };
        assert!(
            graph.stages().iter().any(|s| s.partitions() == 3),
            "a stage of 3 tasks reads the shuffle:\n{graph}"
        );
        assert_eq!(dataset.count().await.expect("counts"), total);
    }
    let err = orders.repartition(0).err().expect("zero partitions");
    assert!(err.to_string().contains("repartition"), "{err}");
}

fn keyed_batches() -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Int64, false),
    ]));
    (0..6)
        .map(|b| {
            let keys: Vec<String> = (0..100).map(|i| format!("k{}", (i * 7 + b) % 13)).collect();
            let values: Vec<i64> = (0..100).map(|i| i * (b + 1)).collect();
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(StringArray::from(keys)),
                    Arc::new(Int64Array::from(values)),
                ],
            )
            .expect("valid batch")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_batches_aggregate_like_plain_rust() {
    let session = Session::local(2).expect("cluster");
    let batches = keyed_batches();
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for batch in &batches {
        let keys = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("keys");
        let values = batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("values");
        for i in 0..batch.num_rows() {
            *expected.entry(keys.value(i).to_string()).or_default() += values.value(i);
        }
    }
    let expected: Vec<Vec<String>> = expected
        .into_iter()
        .map(|(k, v)| vec![k, v.to_string()])
        .collect();
    let summed = session
        .from_batches(batches)
        .expect("dataset")
        .group_by(vec![col("key")])
        .agg(vec![sum(col("value")).alias("total")])
        .expect("agg")
        .sort(vec![col("key").sort(true, false)])
        .expect("sort");
    let result = summed.collect().await.expect("runs");
    assert_eq!(rows(&result.batches), expected);
    let metrics = result.metrics.expect("a job ran");
    assert!(metrics.stages.len() >= 2, "the aggregate shuffled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_files_read_back_to_the_same_rows() {
    let session = Session::local(2).expect("cluster");
    let out = tempfile::tempdir().expect("tempdir");
    let source = session.from_batches(keyed_batches()).expect("dataset");
    fn sorted<'s>(d: Dataset<'s>) -> Dataset<'s> {
        d.sort(vec![
            col("key").sort(true, false),
            col("value").sort(true, false),
        ])
        .expect("sort")
    }
    let expected = rows(
        &sorted(source.clone())
            .collect()
            .await
            .expect("runs")
            .batches,
    );
    for format in ["parquet", "csv", "json"] {
        let folder = out.path().join(format);
        let folder = folder.to_string_lossy().to_string();
        let read = match format {
            "parquet" => {
                source.write_parquet(&folder).await.expect("writes");
                session.read_parquet(&folder).await
            }
            "csv" => {
                source.write_csv(&folder).await.expect("writes");
                session.read_csv(&folder).await
            }
            _ => {
                source.write_json(&folder).await.expect("writes");
                session.read_json(&folder).await
            }
        }
        .expect("reads back");
        let back = rows(&sorted(read).collect().await.expect("runs").batches);
        assert_eq!(back, expected, "{format}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_missing_path_names_it() {
    let session = Session::local(1).expect("cluster");
    let err = session
        .read_parquet("/no/such/folder")
        .await
        .err()
        .expect("missing");
    let message = err.to_string();
    assert!(message.contains("/no/such/folder"), "{message}");
    assert!(message.contains("no such file"), "{message}");
    let err = session
        .read_text("/no/such/book.txt")
        .await
        .err()
        .expect("missing");
    assert!(err.to_string().contains("/no/such/book.txt"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_batches_refuses_no_batches_and_mixed_schemas() {
    let session = Session::local(1).expect("cluster");
    let err = session.from_batches(vec![]).err().expect("empty");
    assert!(err.to_string().starts_with("from_batches: "), "{err}");
    let mut batches = keyed_batches();
    let other = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    batches.push(
        RecordBatch::try_new(other, vec![Arc::new(Int64Array::from(vec![1]))]).expect("batch"),
    );
    let err = session.from_batches(batches).err().expect("mixed schemas");
    assert!(err.to_string().contains("batch 6 has schema"), "{err}");
}
