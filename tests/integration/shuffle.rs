//! Shuffles really happen: map tasks write files on several executors, reduce tasks on
//! several executors read them, and every codec gives the same answer.

use ember::EmberConfig;
use ember::executors::ShuffleCompression;
use ember_tests::{rows, rows_match, tpch_session};

const GROUPED: &str = "SELECT l_suppkey, count(*) AS n, sum(l_quantity) AS q \
                       FROM lineitem GROUP BY l_suppkey ORDER BY l_suppkey";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_that_reads_shuffle_files_runs_on_more_than_one_executor() {
    let work = tempfile::tempdir().expect("tempdir");
    let session = tpch_session(EmberConfig {
        executors: 2,
        work_dir: Some(work.path().to_path_buf()),
        ..EmberConfig::default()
    })
    .await;
    // Both reduce partitions as tasks: coalesced, the small ones would be one.
    session
        .set("ember.adaptive.coalesce", "false")
        .expect("a per-job setting");
    let result = session.sql(GROUPED).await.expect("query runs");
    assert_eq!(result.num_rows(), 100, "sf 0.01 has 100 suppliers");
    let metrics = result.metrics.expect("a job ran");

    let reducer = metrics
        .stages
        .iter()
        .find(|s| !s.inputs.is_empty() && s.partitions >= 2)
        .expect("a multi-partition stage reads a shuffle");
    let producer = &metrics.stages[reducer.inputs[0].index()];
    assert_eq!(producer.output, ember::scheduler::OutputKind::Hash);
    assert_eq!(metrics.executors_of_stage(reducer.stage_id).len(), 2);
    assert_eq!(metrics.executors_of_stage(producer.stage_id).len(), 2);
    let shuffled: u64 = metrics
        .tasks
        .iter()
        .filter(|t| t.stage_id == producer.stage_id)
        .map(|t| t.bytes)
        .sum();
    assert!(shuffled > 0, "map tasks wrote shuffle files");
    // The job's folders are gone once the result is read, and their files soon after
    // (deleted on a thread of their own, from `.removing`).
    for executor in ["executor-0", "executor-1"] {
        let dir = work.path().join(executor);
        let entries = || -> Vec<String> {
            std::fs::read_dir(&dir)
                .expect("executor dir")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        };
        assert!(
            entries().iter().all(|name| !name.starts_with("job-")),
            "{executor} kept {:?}",
            entries()
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !entries().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(entries().is_empty(), "{executor} kept {:?}", entries());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shuffle_codec_gives_the_same_rows_and_auto_does_not_compress_on_one_host() {
    let mut results = Vec::new();
    for compression in [
        ShuffleCompression::Lz4,
        ShuffleCompression::Zstd,
        ShuffleCompression::None,
        ShuffleCompression::Auto,
    ] {
        let session = tpch_session(EmberConfig {
            executors: 3,
            compression,
            ..EmberConfig::default()
        })
        .await;
        let result = session.sql(GROUPED).await.expect("query runs");
        let bytes = result
            .metrics
            .as_ref()
            .map(|m| m.shuffle_bytes())
            .unwrap_or(0);
        results.push((compression, rows(&result.batches), bytes));
    }
    let (_, lz4_rows, lz4_bytes) = &results[0];
    for (codec, rows, _) in &results[1..] {
        assert!(rows_match(rows, lz4_rows), "{codec} differs from lz4");
    }
    let none_bytes = results[2].2;
    assert!(
        *lz4_bytes < none_bytes,
        "lz4 shuffle ({lz4_bytes} B) is smaller than uncompressed ({none_bytes} B)"
    );
    // The embedded cluster is one host: auto, the default, writes what none writes.
    let auto_bytes = results[3].2;
    assert!(
        auto_bytes > *lz4_bytes && auto_bytes * 100 >= none_bytes * 99,
        "auto on one host does not compress: {auto_bytes} B against {none_bytes} B uncompressed"
    );
    assert_eq!(ShuffleCompression::default(), ShuffleCompression::Auto);
}
