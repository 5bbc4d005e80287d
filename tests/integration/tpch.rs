//! The 22 TPC-H queries on the embedded cluster give the same rows as DataFusion alone.

use ember::EmberConfig;
use ember_tests::{datafusion_rows, rows, rows_match, tpch_query, tpch_session};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_22_queries_match_datafusion() {
    let session = tpch_session(EmberConfig {
        executors: 2,
        ..EmberConfig::default()
    })
    .await;
    let mut failures = Vec::new();
    for n in 1..=22 {
        let sql = tpch_query(n);
        let expected = datafusion_rows(&sql).await;
        match session.sql(&sql).await {
            Ok(result) => {
                let got = rows(&result.batches);
                if !rows_match(&got, &expected) {
                    failures.push(format!(
                        "q{n:02}: {} rows vs DataFusion's {}\n  ember: {:?}\n  df:    {:?}",
                        got.len(),
                        expected.len(),
                        got.iter().take(3).collect::<Vec<_>>(),
                        expected.iter().take(3).collect::<Vec<_>>()
                    ));
                }
                let metrics = result.metrics.expect("a query runs a job");
                assert!(metrics.stages.len() >= 2, "q{n:02} ran as one stage");
            }
            Err(e) => failures.push(format!("q{n:02}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
