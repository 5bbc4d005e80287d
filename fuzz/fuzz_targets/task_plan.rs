//! Fuzz target: the task-plan decoder (`ember_planner::decode_plan`), which every executor
//! runs on the bytes a scheduler sends.
//!
//! Each input is decoded twice: as it is, and spliced into a real stage plan (cut by
//! Ember from a few SQL queries, encoded once), so that mutations reach deep into valid
//! plans. A decoder may refuse any input, but it must not panic, and a plan it accepts
//! must re-encode. The first runs found corrupt in-memory batches that made arrow's IPC
//! reader panic or abort on a huge allocation; `decode_plan` now checks their framing and
//! turns panics into errors (regression test:
//! `ember_planner::codec::tests::corrupt_plans_are_errors_not_panics_or_aborts`).

#![no_main]

use std::sync::{Arc, OnceLock};

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::execution::TaskContext;
use datafusion::prelude::SessionContext;
use ember_planner::{FunctionRegistry, cut_stages, decode_plan, encode_plan};
use libfuzzer_sys::fuzz_target;

const QUERIES: &[&str] = &[
    "SELECT k, sum(v) AS s FROM t GROUP BY k ORDER BY s DESC LIMIT 3",
    "SELECT a.k, count(*) FROM t a JOIN t b ON a.k = b.k WHERE a.v > 2 GROUP BY a.k",
    "SELECT upper(k), v * 2, row_number() OVER (PARTITION BY k ORDER BY v) FROM t",
    "SELECT DISTINCT k FROM t WHERE k LIKE 'a%' UNION ALL SELECT 'z'",
];

/// The stage plans of [`QUERIES`], encoded.
fn seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let ctx = SessionContext::new();
            let schema = Arc::new(Schema::new(vec![
                Field::new("k", DataType::Utf8, true),
                Field::new("v", DataType::Int64, true),
            ]));
            let batch = RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(StringArray::from(vec!["a", "b", "ab"])),
                    Arc::new(Int64Array::from(vec![1, 2, 3])),
                ],
            )
            .expect("batch");
            ctx.register_batch("t", batch).expect("table");
            let mut seeds = Vec::new();
            for query in QUERIES {
                let frame = ctx.sql(query).await.expect("query");
                let plan = frame.create_physical_plan().await.expect("plan");
                let Ok(graph) = cut_stages(plan) else {
                    continue;
                };
                for stage in graph.stages() {
                    if let Ok(bytes) = encode_plan(Arc::clone(stage.plan())) {
                        seeds.push(bytes);
                    }
                }
            }
            assert!(!seeds.is_empty(), "no seed plan");
            seeds
        })
    })
}

fn check(bytes: &[u8], ctx: &TaskContext) {
    if let Ok(plan) = decode_plan(bytes, ctx, &FunctionRegistry::new()) {
        // What was accepted is a plan: it has a schema and travels again.
        let _ = plan.schema();
        let _ = encode_plan(plan);
    }
}

/// `decode_plan` turns a panicking decoder into an error with `catch_unwind`; libFuzzer's
/// panic hook would abort first, so it is replaced by a silent one. A panic that escapes
/// `decode_plan` still aborts: libfuzzer-sys catches it and reports the input.
fn quiet_panics() {
    static QUIET: OnceLock<()> = OnceLock::new();
    QUIET.get_or_init(|| std::panic::set_hook(Box::new(|_| {})));
}

fuzz_target!(|data: &[u8]| {
    quiet_panics();
    let ctx = TaskContext::default();
    check(data, &ctx);
    let Some((&pick, edit)) = data.split_first() else {
        return;
    };
    let seeds = seeds();
    let mut plan = seeds[usize::from(pick) % seeds.len()].clone();
    // The edit: a position (two bytes) and the bytes to write there.
    if let [hi, lo, patch @ ..] = edit {
        let at = (usize::from(*hi) << 8 | usize::from(*lo)) % plan.len().max(1);
        for (i, byte) in patch.iter().enumerate() {
            if let Some(slot) = plan.get_mut(at + i) {
                *slot = *byte;
            }
        }
    }
    check(&plan, &ctx);
});
