//! The 22 TPC-H queries on the embedded cluster give the same rows as DataFusion alone.

use ember::EmberConfig;
use ember_tests::{run_tpch_against_datafusion, tpch_session};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_22_queries_match_datafusion() {
    let session = tpch_session(EmberConfig {
        executors: 2,
        ..EmberConfig::default()
    })
    .await;
    let (failures, metrics) = run_tpch_against_datafusion(&session).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for m in &metrics {
        assert!(m.stages.len() >= 2, "{} ran as one stage", m.job_id);
    }
}
