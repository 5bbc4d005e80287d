//! Memory limits: queries whose working set is several times an executor's limit spill
//! to disk and still give DataFusion's answers; a hash join that cannot hold its build
//! side runs again as a sort-merge join; a task that cannot fit says so.

use ember::pipelines::register_tpch;
use ember::{EmberConfig, Session};
use ember_tests::{datafusion_rows_in, rows, rows_match, tpch_data, tpch_query};

/// The limit of each executor in the spill tests.
const LIMIT: usize = 4 << 20;

/// The scale factor of the spill tests' data.
const SCALE_FACTOR: f64 = 0.1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_9_18_and_21_spill_under_a_memory_limit_and_match_datafusion() {
    let dir = tpch_data(SCALE_FACTOR);
    let session = Session::new(EmberConfig {
        executors: 2,
        memory_limit: Some(LIMIT),
        datafusion: vec![
            // Small batches, so that a few of them fit in the small limit of small data.
            (
                "datafusion.execution.batch_size".to_string(),
                "1024".to_string(),
            ),
            // Sort-merge joins, as a user may choose: their sorts spill. (Ember's own
            // plans keep hash joins, which fit here; the next test makes one that does
            // not.)
            (
                "datafusion.optimizer.prefer_hash_join".to_string(),
                "false".to_string(),
            ),
        ],
        ..EmberConfig::default()
    })
    .expect("the cluster starts");
    register_tpch(&session, &dir).await.expect("tables");
    for q in [9, 18, 21] {
        let sql = tpch_query(q);
        let result = session
            .sql(&sql)
            .await
            .unwrap_or_else(|e| panic!("q{q}: {e}"));
        let expected = datafusion_rows_in(&dir, &sql).await;
        let got = rows(&result.batches);
        assert!(rows_match(&got, &expected), "q{q}: {got:?} vs {expected:?}");
        let metrics = result.metrics.expect("a job ran");
        let spilled = metrics.spilled_bytes();
        let spills: u64 = metrics.tasks.iter().map(|t| t.spills).sum();
        let fallbacks = join_fallbacks(&metrics);
        eprintln!(
            "q{q}: spilled {spilled} bytes in {spills} files under {LIMIT} bytes per executor; \
             {fallbacks} tasks ran again with sort-merge joins"
        );
        // What an executor held never passed the limit, so the data it spilled is the rest
        // of a working set at least 4 times the limit.
        assert!(
            spilled >= 3 * LIMIT as u64,
            "q{q}: spilled only {spilled} bytes"
        );
    }
}

/// The tasks of a job that ran again with sort-merge joins.
fn join_fallbacks(metrics: &ember::scheduler::JobMetrics) -> usize {
    metrics
        .tasks
        .iter()
        .filter(|t| !t.phases.join_fallback.is_zero())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_join_too_big_for_the_limit_runs_again_as_a_sort_merge_join() {
    let dir = tpch_data(SCALE_FACTOR);
    // Each side of the join holds lineitem's comments: a partition's build side is
    // several times the limit of 4 MiB.
    let sql = "SELECT count(*) AS n, sum(length(a.l_comment) + length(b.l_comment)) AS chars \
               FROM lineitem a JOIN lineitem b \
               ON a.l_orderkey = b.l_orderkey AND a.l_linenumber = b.l_linenumber";
    let expected = datafusion_rows_in(&dir, sql).await;
    for (limit, falls_back) in [(LIMIT, true), (1 << 30, false)] {
        let session = Session::new(EmberConfig {
            executors: 2,
            memory_limit: Some(limit),
            // One attempt: the second run is the task's own, not a retry.
            max_attempts: 1,
            datafusion: vec![(
                "datafusion.execution.batch_size".to_string(),
                "1024".to_string(),
            )],
            ..EmberConfig::default()
        })
        .expect("the cluster starts");
        register_tpch(&session, &dir).await.expect("tables");
        let analyzed = session
            .explain_analyze(sql)
            .await
            .unwrap_or_else(|e| panic!("under {limit} bytes: {e}"));
        let got = rows(&analyzed.result.batches);
        assert!(rows_match(&got, &expected), "{got:?} vs {expected:?}");
        let metrics = analyzed.result.metrics.as_ref().expect("a job ran");
        let fallbacks = join_fallbacks(metrics);
        let text = analyzed.to_string();
        eprintln!(
            "under {limit} bytes: {fallbacks} of {} tasks fell back, {} bytes spilled",
            metrics.tasks.len(),
            metrics.spilled_bytes()
        );
        if falls_back {
            assert!(fallbacks > 0, "no task fell back under {limit} bytes");
            assert!(
                text.contains(&format!(
                    "Memory: {fallbacks} tasks ran again with sort-merge joins"
                )),
                "{text}"
            );
            assert!(
                metrics.spilled_bytes() > 0,
                "the sort-merge joins spilled nothing"
            );
        } else {
            assert_eq!(fallbacks, 0, "the build side fits in 1 GiB");
            assert!(!text.contains("sort-merge"), "{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_cannot_fit_names_the_operator_and_the_limit() {
    let session = Session::new(EmberConfig {
        executors: 2,
        memory_limit: Some(16 << 10),
        max_attempts: 1,
        ..EmberConfig::default()
    })
    .expect("the cluster starts");
    register_tpch(&session, ember_tests::tpch_dir())
        .await
        .expect("tables");
    let err = session
        .sql("SELECT l_orderkey, l_comment FROM lineitem ORDER BY l_comment")
        .await
        .expect_err("16 KiB cannot hold a sort's batches");
    let text = err.to_string();
    assert!(
        text.contains("out of memory under the executor's limit of 16.0 KB"),
        "{text}"
    );
    assert!(text.contains("Sort"), "names the operator: {text}");
}
