//! The typed DSL ([`ember::TypedDataset`]): row functions, key/value operations, broadcast
//! variables, accumulators, samples, caches and checkpoints, each against plain Rust over
//! the same rows.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::datatypes::{DataType, Field, Schema};
use ember::{EmberConfig, FunctionRegistry, LongAccumulator, Session, TypedFunctions};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, PartialOrd, Serialize, Deserialize)]
struct Sale {
    product: String,
    quantity: i64,
    price: f64,
}

fn sales() -> Vec<Sale> {
    (0..3_000)
        .map(|i: i64| Sale {
            product: format!("p{}", (i * 7919) % 37),
            quantity: i % 5 + 1,
            price: (i % 11) as f64 + 0.5,
        })
        .collect()
}

/// A session whose registry holds the functions of [`register_functions`].
fn session(executors: usize) -> Session {
    let session = Session::new(EmberConfig {
        executors,
        ..EmberConfig::default()
    })
    .expect("cluster");
    register_functions(session.functions());
    session
}

fn register_functions(functions: &FunctionRegistry) {
    functions
        .register_filter_fn("bulk", |s: &Sale| s.quantity >= 3)
        .expect("register");
    functions
        .register_map_fn("revenue", |s: Sale| {
            (s.product, s.price * s.quantity as f64)
        })
        .expect("register");
    functions
        .register_flat_map_fn("units", |s: Sale| {
            (0..s.quantity).map(move |_| (s.product.clone(), 1_i64))
        })
        .expect("register");
    functions
        .register_key_fn("by_product", |s: &Sale| s.product.clone())
        .expect("register");
    functions
        .register_reducer::<String, i64>("add_i64", |a, b| a + b)
        .expect("register");
    functions
        .register_reducer::<String, f64>("add_f64", |a, b| a + b)
        .expect("register");
    // Per product: (rows, max price), as an aggregator with a different state type.
    functions
        .register_aggregator::<String, Sale, (i64, f64)>(
            "rows_and_max",
            || (0, f64::MIN),
            |(n, top), s| (n + 1, top.max(s.price)),
            |(n1, t1), (n2, t2)| (n1 + n2, t1.max(t2)),
        )
        .expect("register");
}

fn sorted<T: PartialOrd>(mut rows: Vec<T>) -> Vec<T> {
    rows.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_functions_and_reducers_match_plain_rust() {
    let session = session(2);
    let data = session.parallelize(sales()).expect("parallelize");

    // filter + map + reduce_by_key: revenue of bulk sales per product.
    let revenue = data
        .filter("bulk")
        .expect("filter")
        .map::<(String, f64)>("revenue")
        .expect("map")
        .reduce_by_key("add_f64")
        .expect("reduce_by_key");
    let mut expected: BTreeMap<String, f64> = BTreeMap::new();
    for s in sales().into_iter().filter(|s| s.quantity >= 3) {
        *expected.entry(s.product).or_default() += s.price * s.quantity as f64;
    }
    let ours: BTreeMap<String, f64> = revenue
        .collect_rows()
        .await
        .expect("runs")
        .into_iter()
        .collect();
    assert_eq!(ours.len(), expected.len());
    for (product, total) in &expected {
        assert!(
            (ours[product] - total).abs() < 1e-6,
            "{product}: {} vs {total}",
            ours[product]
        );
    }

    // flat_map + reduce_by_key: units per product; the map-side combine shuffles at most
    // one row per product and map task.
    let units = data
        .flat_map::<(String, i64)>("units")
        .expect("flat_map")
        .reduce_by_key("add_i64")
        .expect("reduce_by_key");
    // The combine fused with flat_map: the pairs go straight into its hash table.
    let plan = units
        .dataset()
        .frame()
        .logical_plan()
        .display_indent()
        .to_string();
    assert!(plan.contains("MapPartitions: units>add_i64"), "{plan}");
    let result = units.dataset().collect().await.expect("runs");
    let metrics = result.metrics.as_ref().expect("metrics");
    let map_tasks = metrics
        .tasks
        .iter()
        .filter(|t| t.stage_id == ember::proto::StageId(0))
        .count();
    let shuffled: u64 = metrics
        .tasks
        .iter()
        .filter(|t| t.stage_id == ember::proto::StageId(0))
        .map(|t| t.rows)
        .sum();
    assert!(
        shuffled <= 37 * map_tasks as u64,
        "{shuffled} rows shuffled by {map_tasks} tasks"
    );
    let mut plain: HashMap<String, i64> = HashMap::new();
    for s in sales() {
        *plain.entry(s.product).or_default() += s.quantity;
    }
    let ours: HashMap<String, i64> = units
        .collect_rows()
        .await
        .expect("runs")
        .into_iter()
        .collect();
    assert_eq!(ours, plain);

    // key_by + aggregate_by_key.
    let stats = data
        .key_by::<String>("by_product")
        .expect("key_by")
        .aggregate_by_key::<(i64, f64)>("rows_and_max")
        .expect("aggregate_by_key");
    let mut plain: HashMap<String, (i64, f64)> = HashMap::new();
    for s in sales() {
        let e = plain.entry(s.product).or_insert((0, f64::MIN));
        *e = (e.0 + 1, e.1.max(s.price));
    }
    let ours: HashMap<String, (i64, f64)> = stats
        .collect_rows()
        .await
        .expect("runs")
        .into_iter()
        .collect();
    assert_eq!(ours, plain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_operations_match_plain_rust() {
    let session = session(2);
    let orders: Vec<(i64, String)> = (0..200).map(|i| (i % 40, format!("o{i}"))).collect();
    let customers: Vec<(i64, String)> = (20..60).map(|i| (i, format!("c{i}"))).collect();
    let left = session.parallelize(orders.clone()).expect("parallelize");
    let right = session.parallelize(customers.clone()).expect("parallelize");

    let grouped = left
        .group_by_key()
        .expect("group_by_key")
        .collect_rows()
        .await
        .expect("runs");
    let grouped: BTreeMap<i64, Vec<String>> =
        grouped.into_iter().map(|(k, v)| (k, sorted(v))).collect();
    let mut plain: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (k, v) in &orders {
        plain.entry(*k).or_default().push(v.clone());
    }
    let plain: BTreeMap<i64, Vec<String>> =
        plain.into_iter().map(|(k, v)| (k, sorted(v))).collect();
    assert_eq!(grouped, plain);

    let joined = left
        .join(&right)
        .expect("join")
        .collect_rows()
        .await
        .expect("runs");
    let mut plain_join = Vec::new();
    for (k, o) in &orders {
        for (c_key, c) in &customers {
            if k == c_key {
                plain_join.push((*k, (o.clone(), c.clone())));
            }
        }
    }
    assert_eq!(sorted(joined), sorted(plain_join));

    let outer = left
        .left_outer_join(&right)
        .expect("left join")
        .collect_rows()
        .await
        .expect("runs");
    assert_eq!(outer.len(), orders.len());
    assert_eq!(
        outer
            .iter()
            .filter(|(k, (_, c))| c.is_none() && *k < 20)
            .count(),
        100
    );

    let cogrouped = left
        .cogroup(&right)
        .expect("cogroup")
        .collect_rows()
        .await
        .expect("runs");
    assert_eq!(cogrouped.len(), 60, "keys 0..60 appear on one side or both");
    for (k, (os, cs)) in &cogrouped {
        assert_eq!(os.len(), if *k < 40 { 5 } else { 0 }, "orders of {k}");
        assert_eq!(cs.len(), usize::from(*k >= 20), "customers of {k}");
    }

    let by_key = left
        .sort_by_key(false)
        .expect("sort")
        .collect_rows()
        .await
        .expect("runs");
    assert!(by_key.windows(2).all(|w| w[0].0 >= w[1].0));
    assert_eq!(by_key.len(), orders.len());

    let keys = left
        .keys()
        .expect("keys")
        .collect_rows()
        .await
        .expect("runs");
    assert_eq!(
        sorted(keys),
        sorted(orders.iter().map(|(k, _)| (*k,)).collect())
    );

    let counts = left.count_by_key().await.expect("count_by_key");
    assert_eq!(counts.len(), 40);
    assert!(counts.values().all(|n| *n == 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_mistyped_functions_fail_at_planning_with_their_names() {
    let session = session(1);
    let data = session.parallelize(sales()).expect("parallelize");
    let err = data
        .map::<(String, f64)>("no_such_function")
        .err()
        .expect("unknown name");
    assert!(err.to_string().contains("no_such_function"), "{err}");
    let err = data
        .map::<(String, i64)>("revenue")
        .err()
        .expect("wrong output type");
    assert!(
        err.to_string().contains("'revenue'") && err.to_string().contains("f64"),
        "{err}"
    );
    let err = data.sample(1.5, false, 1).err().expect("bad fraction");
    assert!(err.to_string().contains("at most 1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_values_reach_functions_in_every_executor() {
    let session = session(3);
    session
        .functions()
        .register_map_fn("discounted", |s: Sale| {
            let discounts = ember::Broadcast::<HashMap<String, f64>>::named("discounts")
                .value()
                .expect("broadcast on this executor");
            let rate = discounts.get(&s.product).copied().unwrap_or(0.0);
            (s.product, s.price * (1.0 - rate))
        })
        .expect("register");
    let discounts: HashMap<String, f64> = (0..37)
        .step_by(2)
        .map(|i| (format!("p{i}"), 0.25))
        .collect();
    session
        .broadcast("discounts", &discounts)
        .expect("broadcast");
    let rows = session
        .parallelize(sales())
        .expect("parallelize")
        .map::<(String, f64)>("discounted")
        .expect("map")
        .collect_rows()
        .await
        .expect("runs");
    let plain: Vec<(String, f64)> = sales()
        .into_iter()
        .map(|s| {
            let rate = discounts.get(&s.product).copied().unwrap_or(0.0);
            (s.product, s.price * (1.0 - rate))
        })
        .collect();
    assert_eq!(sorted(rows), sorted(plain));
}

static FAILED_ONCE: AtomicBool = AtomicBool::new(false);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_task_adds_to_an_accumulator_once() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("product", DataType::Utf8, false),
        Field::new("quantity", DataType::Int64, false),
        Field::new("price", DataType::Float64, false),
    ]));
    let session = session(2);
    session
        .functions()
        .register_batch_fn("count_then_fail_once", schema, |batch| {
            LongAccumulator::named("rows_seen").add(batch.num_rows() as i64);
            if !FAILED_ONCE.swap(true, Ordering::SeqCst) {
                return Err(datafusion::error::DataFusionError::Execution(
                    "injected failure after counting".into(),
                ));
            }
            Ok(batch)
        });
    let seen = session.long_accumulator("rows_seen");
    let result = session
        .parallelize(sales())
        .expect("parallelize")
        .dataset()
        .map_batches("count_then_fail_once")
        .expect("map_batches")
        .collect()
        .await
        .expect("the retry succeeds");
    let metrics = result.metrics.as_ref().expect("metrics");
    assert_eq!(metrics.failures.len(), 1, "{:?}", metrics.failures);
    assert!(metrics.failures[0].error.contains("injected failure"));
    assert_eq!(result.num_rows(), 3_000);
    assert_eq!(
        seen.value(&session),
        3_000,
        "the failed attempt's additions are dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_dataset_is_computed_once_and_recomputed_when_lost() {
    let session = session(2);
    let functions = session.functions();
    functions
        .register_map_fn("counted_revenue", |s: Sale| {
            LongAccumulator::named("revenue_calls").add(1);
            (s.product, s.price * s.quantity as f64)
        })
        .expect("register");
    functions
        .register_reducer::<String, f64>("sum_revenue", |a, b| a + b)
        .expect("register");
    let calls = session.long_accumulator("revenue_calls");
    let cached = session
        .parallelize(sales())
        .expect("parallelize")
        .map::<(String, f64)>("counted_revenue")
        .expect("map")
        .cache();
    assert_eq!(cached.count().await.expect("first action"), 3_000);
    assert_eq!(calls.value(&session), 3_000);
    let totals = cached
        .reduce_by_key("sum_revenue")
        .expect("reduce")
        .collect_rows()
        .await
        .expect("second action");
    assert_eq!(totals.len(), 37);
    assert_eq!(
        calls.value(&session),
        3_000,
        "the second action read the cache"
    );
    let entry = cached.dataset().cache_entry().expect("a cached dataset");
    assert_eq!(entry.materializations(), 1);

    // Lose one executor's cached files: the next action recomputes from the lineage.
    let location = entry.location().expect("materialized");
    let lost = &location.pieces[0].executor_id;
    for piece in location.pieces.iter().filter(|p| &p.executor_id == lost) {
        std::fs::remove_file(&piece.path).expect("remove a cached file");
    }
    assert_eq!(cached.count().await.expect("after the loss"), 3_000);
    assert_eq!(entry.materializations(), 2);
    assert_eq!(calls.value(&session), 6_000);

    cached.dataset().unpersist().await;
    assert!(entry.location().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_repeat_with_their_seed_and_checkpoints_cut_the_lineage() {
    let session = session(2);
    let data = session.parallelize(sales()).expect("parallelize");
    let first = data
        .sample(0.2, false, 42)
        .expect("sample")
        .collect_rows()
        .await
        .expect("runs");
    let again = data
        .sample(0.2, false, 42)
        .expect("sample")
        .collect_rows()
        .await
        .expect("runs");
    assert_eq!(first, again);
    assert!((450..750).contains(&first.len()), "{}", first.len());
    let all = sales();
    assert!(first.iter().all(|s| all.contains(s)));
    let doubled = data
        .sample(2.0, true, 7)
        .expect("sample")
        .count()
        .await
        .expect("runs");
    assert!((5_400..6_600).contains(&doubled), "{doubled}");

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("checkpoint");
    let path = path.to_str().expect("utf-8 path");
    let checkpointed = data
        .sample(0.2, false, 42)
        .expect("sample")
        .checkpoint(path)
        .await
        .expect("checkpoint");
    assert!(
        checkpointed
            .dataset()
            .frame()
            .logical_plan()
            .display_indent()
            .to_string()
            .contains("TableScan")
    );
    assert_eq!(
        sorted(checkpointed.collect_rows().await.expect("runs")),
        sorted(first)
    );
}
