//! Named batch functions: registered in a session's registry, called in the executors
//! after the task plan was serialized, refused by name when missing, and private to the
//! session that registered them.

use std::sync::Arc;

use arrow::array::{AsArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Schema};
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::prelude::col;
use ember::{EmberConfig, Session, TypedFunctions};

fn prices() -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("product", DataType::Utf8, false),
        Field::new("price", DataType::Float64, false),
    ]));
    (0..4)
        .map(|b| {
            let names: Vec<String> = (0..50).map(|i| format!("p{}", (i + b) % 7)).collect();
            let prices: Vec<f64> = (0..50).map(|i| f64::from(i * (b + 1))).collect();
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(StringArray::from(names)),
                    Arc::new(Float64Array::from(prices)),
                ],
            )
            .expect("valid batch")
        })
        .collect()
}

/// `with_tax`: the product and its price with 20% tax.
fn register_with_tax(session: &Session) {
    let output = Arc::new(Schema::new(vec![
        Field::new("product", DataType::Utf8, false),
        Field::new("gross", DataType::Float64, false),
    ]));
    let schema = Arc::clone(&output);
    session
        .functions()
        .register_batch_fn("with_tax", output, move |batch| {
            let prices = batch.column(1).as_primitive::<Float64Type>();
            let gross: Float64Array = prices.unary(|p| p * 1.2);
            Ok(RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::clone(batch.column(0)), Arc::new(gross)],
            )?)
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_function_runs_in_the_executors_and_matches_plain_rust() {
    let session = Session::new(EmberConfig {
        executors: 2,
        ..EmberConfig::default()
    })
    .expect("cluster");
    register_with_tax(&session);
    let batches = prices();
    let expected: f64 = batches
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<Float64Type>().values().to_vec())
        .map(|p| p * 1.2)
        .sum();
    let taxed = session
        .from_batches(batches)
        .expect("dataset")
        .map_batches("with_tax")
        .expect("registered")
        .group_by(vec![])
        .agg(vec![sum(col("gross")).alias("total")])
        .expect("agg");
    let result = taxed.collect().await.expect("runs");
    let total = result.batches[0]
        .column(0)
        .as_primitive::<Float64Type>()
        .value(0);
    assert!((total - expected).abs() < 1e-6, "{total} vs {expected}");
    let metrics = result.metrics.expect("a job ran");
    let map_stage = metrics
        .stages
        .iter()
        .find(|s| s.inputs.is_empty())
        .expect("a first stage");
    assert_eq!(
        metrics.executors_of_stage(map_stage.stage_id).len(),
        2,
        "both executors called the function"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_function_fails_at_planning_naming_it() {
    let session = Session::local(1).expect("cluster");
    let dataset = session.from_batches(prices()).expect("dataset");
    let err = dataset
        .map_batches("no_such_function")
        .err()
        .expect("unknown name");
    assert!(err.to_string().contains("no_such_function"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_breaks_its_schema_fails_the_job_naming_it() {
    let promised = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let session = Session::local(2).expect("cluster");
    session.functions().register_batch_fn("liar", promised, Ok);
    let err = session
        .from_batches(prices())
        .expect("dataset")
        .map_batches("liar")
        .expect("registered")
        .collect()
        .await
        .expect_err("wrong schema");
    let message = err.to_string();
    assert!(message.contains("'liar'"), "{message}");
    assert!(message.contains("but promised"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_in_one_process_each_run_their_own_function_of_one_name() {
    let doubling = Session::local(2).expect("cluster");
    let negating = Session::local(2).expect("cluster");
    doubling
        .functions()
        .register_map_fn("adjust", |(n,): (i64,)| (n * 2,))
        .expect("a row");
    negating
        .functions()
        .register_map_fn("adjust", |(n,): (i64,)| (-n,))
        .expect("a row");
    let only_here = Session::local(1).expect("cluster");

    let numbers: Vec<(i64,)> = (1..=100).map(|n| (n,)).collect();
    let mut doubled = doubling
        .parallelize(numbers.clone())
        .expect("dataset")
        .map::<(i64,)>("adjust")
        .expect("registered in this session")
        .collect_rows()
        .await
        .expect("runs");
    let mut negated = negating
        .parallelize(numbers.clone())
        .expect("dataset")
        .map::<(i64,)>("adjust")
        .expect("registered in this session")
        .collect_rows()
        .await
        .expect("runs");
    doubled.sort_unstable();
    negated.sort_unstable();
    assert_eq!(doubled, (1..=100).map(|n| (n * 2,)).collect::<Vec<_>>());
    assert_eq!(negated, (-100..=-1).map(|n| (n,)).collect::<Vec<_>>());
    let err = only_here
        .parallelize(numbers)
        .expect("dataset")
        .map::<(i64,)>("adjust")
        .err()
        .expect("a third session has no 'adjust'");
    assert!(err.to_string().contains("adjust"), "{err}");
}
