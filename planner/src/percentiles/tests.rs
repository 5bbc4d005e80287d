use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Float64Type, Schema};
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};
use datafusion::prelude::SessionContext;

use super::digests::{FLUSH_AT, GroupDigests, SingleDigest};
use super::fuse::FuseApproxPercentiles;
use super::spec::{APPROX_PERCENTILES, Quantiles};
use super::udaf::approx_percentiles_udaf;

const QUANTILES: [f64; 5] = [0.25, 0.5, 0.75, 0.9, 0.99];

fn spec() -> Quantiles {
    Quantiles {
        quantiles: QUANTILES.to_vec(),
        max_size: 100,
    }
}

/// A value sequence that is not sorted: `i * 7919 mod n`, a permutation of `0..n`.
fn scrambled(n: usize) -> Vec<f64> {
    (0..n).map(|i| ((i * 7919) % n) as f64).collect()
}

fn doubles(values: &[f64]) -> ArrayRef {
    Arc::new(Float64Array::from(values.to_vec()))
}

/// The lists of an `evaluate` result, a `None` for a null group.
fn lists(array: &ArrayRef) -> Vec<Option<Vec<f64>>> {
    let lists = array.as_list::<i32>();
    (0..lists.len())
        .map(|i| {
            lists.is_valid(i).then(|| {
                lists
                    .value(i)
                    .as_primitive::<Float64Type>()
                    .values()
                    .to_vec()
            })
        })
        .collect()
}

/// Asserts that `answers` are the [`QUANTILES`] of `0..n` within 1 % of rank.
fn assert_close(answers: &[f64], n: usize) {
    assert_eq!(answers.len(), QUANTILES.len());
    for (q, value) in QUANTILES.iter().zip(answers) {
        let rank = value / n as f64;
        assert!((rank - q).abs() <= 0.01, "quantile {q} of 0..{n}: {value}");
    }
}

#[test]
fn groups_get_their_quantiles_from_one_digest_each() {
    // Three groups interleaved row by row, as a hash aggregation hands them over; group 2
    // sees a tenth of the values (fewer than one flush), group 1 ten times the flush size.
    let n = 20 * FLUSH_AT;
    let values = scrambled(n);
    let mut groups = GroupDigests::new(spec());
    for chunk in values.chunks(8192) {
        let indices: Vec<usize> = (0..chunk.len()).map(|i| i % 2).collect();
        groups
            .update_batch(&[doubles(chunk)], &indices, None, 3)
            .expect("update");
    }
    let small = scrambled(FLUSH_AT / 2);
    groups
        .update_batch(&[doubles(&small)], &vec![2; small.len()], None, 3)
        .expect("update");
    let answers = lists(&groups.evaluate(EmitTo::All).expect("evaluate"));
    assert_eq!(answers.len(), 3);
    for answer in &answers[..2] {
        assert_close(answer.as_deref().expect("values"), n);
    }
    assert_close(answers[2].as_deref().expect("values"), small.len());
    assert_eq!(
        groups.size(),
        GroupDigests::new(spec()).size(),
        "all released"
    );
}

#[test]
fn nulls_filtered_rows_and_empty_groups() {
    let values: ArrayRef = Arc::new(Float64Array::from(vec![
        Some(1.0),
        None,
        Some(100.0),
        Some(3.0),
    ]));
    let filter = BooleanArray::from(vec![Some(true), Some(true), Some(false), None]);
    let mut groups = GroupDigests::new(spec());
    groups
        .update_batch(&[values], &[0, 0, 0, 1], Some(&filter), 3)
        .expect("update");
    let answers = lists(&groups.evaluate(EmitTo::All).expect("evaluate"));
    assert_eq!(
        answers[0],
        Some(vec![1.0; QUANTILES.len()]),
        "100 is filtered out"
    );
    assert_eq!(answers[1], None, "a null filter value drops the row");
    assert_eq!(answers[2], None, "a group without rows");
}

#[test]
fn partial_states_merge_into_the_same_answers() {
    // Two partial aggregations over halves of the rows, merged by a final one.
    let n = 50_000;
    let values = scrambled(n);
    let (left, right) = values.split_at(n / 2);
    let mut states = Vec::new();
    for half in [left, right] {
        let mut partial = GroupDigests::new(spec());
        partial
            .update_batch(&[doubles(half)], &vec![0; half.len()], None, 1)
            .expect("update");
        states.push(partial.state(EmitTo::All).expect("state"));
    }
    let mut last = GroupDigests::new(spec());
    for state in &states {
        last.merge_batch(state, &[0], 1).expect("merge");
    }
    let grouped = lists(&last.evaluate(EmitTo::All).expect("evaluate"));
    assert_close(grouped[0].as_deref().expect("values"), n);

    // The ungrouped accumulator reads the same state layout.
    let mut single = SingleDigest::new(spec());
    for state in &states {
        single.merge_batch(state).expect("merge");
    }
    let scalar = single.evaluate().expect("evaluate");
    let array = scalar.to_array().expect("array");
    assert_eq!(lists(&array), grouped);
}

#[test]
fn rows_passed_on_as_states_merge_like_updated_rows() {
    // A partial aggregation that stops aggregating hands each row on as its own state.
    let values: ArrayRef = Arc::new(Float64Array::from(vec![
        Some(4.0),
        None,
        Some(1.0),
        Some(3.0),
        Some(2.0),
    ]));
    let filter = BooleanArray::from(vec![true, true, true, true, false]);
    let partial = GroupDigests::new(spec());
    let states = partial
        .convert_to_state(std::slice::from_ref(&values), Some(&filter))
        .expect("states");
    assert_eq!(states[0].len(), 5, "one state per row");
    let mut merged = GroupDigests::new(spec());
    merged
        .merge_batch(&states, &[0, 0, 0, 0, 1], 2)
        .expect("merge");
    let mut updated = GroupDigests::new(spec());
    updated
        .update_batch(&[values], &[0, 0, 0, 0, 1], Some(&filter), 2)
        .expect("update");
    let (merged, updated) = (
        lists(&merged.evaluate(EmitTo::All).expect("evaluate")),
        lists(&updated.evaluate(EmitTo::All).expect("evaluate")),
    );
    assert_eq!(merged, updated);
    assert!(merged[0].is_some() && merged[1].is_none(), "{merged:?}");
}

#[test]
fn emitting_the_first_groups_keeps_the_others() {
    let mut groups = GroupDigests::new(spec());
    groups
        .update_batch(&[doubles(&[1.0, 2.0, 3.0])], &[0, 1, 2], None, 3)
        .expect("update");
    let first = lists(&groups.evaluate(EmitTo::First(2)).expect("evaluate"));
    assert_eq!(first.len(), 2);
    assert_eq!(first[1], Some(vec![2.0; QUANTILES.len()]));
    // Group 2 is now group 0.
    groups
        .update_batch(&[doubles(&[3.0])], &[0], None, 1)
        .expect("update");
    let rest = lists(&groups.evaluate(EmitTo::All).expect("evaluate"));
    assert_eq!(rest, vec![Some(vec![3.0; QUANTILES.len()])]);
}

#[test]
fn a_state_of_the_wrong_shape_is_an_error() {
    let mut groups = GroupDigests::new(spec());
    let error = groups
        .merge_batch(&[doubles(&[1.0])], &[0], 1)
        .expect_err("not a digest state");
    assert!(error.to_string().contains("wrong shape"), "{error}");

    // A digest of another size (a corrupt or foreign state) is refused, not merged.
    let mut other = GroupDigests::new(Quantiles {
        quantiles: vec![0.5],
        max_size: 1_000_000,
    });
    other
        .update_batch(&[doubles(&[1.0, 2.0])], &[0, 0], None, 1)
        .expect("update");
    let state = other.state(EmitTo::All).expect("state");
    let error = groups
        .merge_batch(&state, &[0], 1)
        .expect_err("another size");
    assert!(
        error
            .to_string()
            .contains("1000000 centroids, expected 100"),
        "{error}"
    );
    let error = SingleDigest::new(spec())
        .merge_batch(&state)
        .expect_err("another size");
    assert!(error.to_string().contains("expected 100"), "{error}");
}

/// A session with the aggregate and the rule, over `t(g, v)`: 4 groups of 5,000 values.
fn session() -> SessionContext {
    let ctx = SessionContext::new();
    ctx.register_udaf(approx_percentiles_udaf().as_ref().clone());
    ctx.add_optimizer_rule(Arc::new(FuseApproxPercentiles));
    let n = 20_000;
    let schema = Arc::new(Schema::new(vec![
        Field::new("g", DataType::Int64, false),
        Field::new("v", DataType::Float64, true),
    ]));
    let groups = Int64Array::from((0..n).map(|i| i % 4).collect::<Vec<i64>>());
    let values = Float64Array::from(
        (0..n)
            .map(|i| ((i * 7919) % n) as f64 / 4.0)
            .collect::<Vec<f64>>(),
    );
    let batch =
        RecordBatch::try_new(schema, vec![Arc::new(groups), Arc::new(values)]).expect("batch");
    ctx.register_batch("t", batch).expect("register");
    ctx
}

async fn rows(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run")
}

#[tokio::test]
async fn percentile_calls_over_one_value_run_as_one_digest_under_their_own_names() {
    let ctx = session();
    let query = "SELECT g, count(*) AS n, \
                 approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS median, \
                 approx_percentile_cont(0.1) WITHIN GROUP (ORDER BY v DESC) AS p90, \
                 approx_percentile_cont(v, 0.99) \
                 FROM t GROUP BY g ORDER BY g";
    let plan = ctx
        .sql(query)
        .await
        .expect("plan")
        .into_optimized_plan()
        .expect("optimize");
    let shown = plan.display_indent().to_string();
    assert_eq!(shown.matches("approx_percentiles(").count(), 1, "{shown}");
    let aggregate = shown
        .lines()
        .find(|line| line.trim_start().starts_with("Aggregate"))
        .expect("an aggregation");
    assert!(!aggregate.contains("approx_percentile_cont"), "{shown}");

    let batches = rows(&ctx, query).await;
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names[..4], ["g", "n", "median", "p90"]);
    assert!(names[4].starts_with("approx_percentile_cont("), "{names:?}");
    assert!(
        schema.fields()[2..]
            .iter()
            .all(|f| f.data_type() == &DataType::Float64)
    );
    // Each group holds the values 0, 0.25, ... in steps of one per 4 rows: its quantile q
    // is about q * 5000.
    let batch = &batches[0];
    for (column, q) in [(2, 0.5), (3, 0.9), (4, 0.99)] {
        let values = batch.column(column).as_primitive::<Float64Type>();
        for row in 0..4 {
            let rank = values.value(row) / 5000.0;
            assert!((rank - q).abs() <= 0.01, "group {row} quantile {q}: {rank}");
        }
    }
}

#[tokio::test]
async fn approx_percentiles_answers_a_list_and_refuses_bad_arguments() {
    let ctx = session();
    let batches = rows(&ctx, "SELECT approx_percentiles(v, [0.5, 0.9]) AS q FROM t").await;
    let answers = lists(batches[0].column(0));
    let answer = answers[0].as_deref().expect("values");
    assert!((answer[0] / 5000.0 - 0.5).abs() <= 0.01, "{answer:?}");
    assert!((answer[1] / 5000.0 - 0.9).abs() <= 0.01, "{answer:?}");

    for (sql, expected) in [
        (
            "SELECT approx_percentiles(v, 0.5) FROM t",
            "list of numbers",
        ),
        (
            "SELECT approx_percentiles(v, [1.5]) FROM t",
            "not between 0 and 1",
        ),
        (
            "SELECT approx_percentiles(v, [0.5], 0) FROM t",
            "positive digest size",
        ),
        (
            "SELECT approx_percentiles('a', [0.5]) FROM t",
            "numeric value",
        ),
    ] {
        let error = match ctx.sql(sql).await {
            Err(error) => error,
            Ok(frame) => frame.collect().await.expect_err(sql),
        };
        assert!(error.to_string().contains(expected), "{sql}: {error}");
    }
}

#[tokio::test]
async fn a_fused_plan_runs_where_the_aggregate_is_not_registered() {
    // An executor decodes task plans with its own registry, which does not hold
    // `approx_percentiles`: the codec supplies it.
    let ctx = session();
    let query = "SELECT g, approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY v) AS median, \
                 approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY v) AS p90 \
                 FROM t GROUP BY g ORDER BY g";
    let plan = ctx
        .sql(query)
        .await
        .expect("plan")
        .create_physical_plan()
        .await
        .expect("physical plan");
    let bytes = crate::encode_plan(plan).expect("encodes");
    let executor = SessionContext::new();
    let functions = executor.state().aggregate_functions().clone();
    assert!(!functions.contains_key(APPROX_PERCENTILES));
    let decoded = crate::decode_plan(
        &bytes,
        &executor.task_ctx(),
        &crate::FunctionRegistry::new(),
    )
    .expect("decodes");
    let batches = datafusion::physical_plan::collect(decoded, executor.task_ctx())
        .await
        .expect("runs");
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat");
    assert_eq!(batch.num_rows(), 4);
    for (column, q) in [(1, 0.5), (2, 0.9)] {
        let values = batch.column(column).as_primitive::<Float64Type>();
        for row in 0..4 {
            let rank = values.value(row) / 5000.0;
            assert!((rank - q).abs() <= 0.01, "group {row} quantile {q}: {rank}");
        }
    }
}
