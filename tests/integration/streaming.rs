//! Streamed results (`Session::sql_stream`): the rows come from the executors batch by
//! batch, the same rows in the same order as a collected result, on the embedded cluster
//! and on a process cluster (over Flight); and a job's folders leave every executor once
//! its stream is read to the end, or dropped before.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use ember::{EmberConfig, ResultStream, Session};
use ember_tests::{datafusion_rows, rows, rows_match, tpch_session};
use futures::StreamExt;

use crate::cluster::TestCluster;

/// Several partitions in the final stage, no order: they are read one after the other.
const UNORDERED: &str = "SELECT l_orderkey, l_linenumber, l_partkey, l_comment FROM lineitem \
                         WHERE l_quantity > 10";

/// A global order, on a unique key, that the partitions' own order does not give.
const ORDERED: &str = "SELECT l_partkey, l_orderkey, l_linenumber, l_extendedprice FROM lineitem \
                       ORDER BY l_partkey DESC, l_orderkey, l_linenumber";

/// Job folders (`job-*`) in `dirs`, or in the folders inside them (a process executor
/// keeps its jobs under a folder named by its id).
pub(crate) fn job_folders(dirs: &[PathBuf]) -> Vec<String> {
    fn walk(dir: &Path, depth: usize, found: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // `.removing` holds removed jobs' folders while their files are deleted.
            if !path.is_dir() || entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if entry.file_name().to_string_lossy().starts_with("job-") {
                found.push(path.display().to_string());
            } else if depth > 0 {
                walk(&path, depth - 1, found);
            }
        }
    }
    let mut found = Vec::new();
    for dir in dirs {
        walk(dir, 1, &mut found);
    }
    found
}

/// The executor folders of an embedded cluster whose work dir is `root`.
fn embedded_dirs(root: &Path, executors: usize) -> Vec<PathBuf> {
    (0..executors)
        .map(|i| root.join(format!("executor-{i}")))
        .collect()
}

/// Waits up to 20 s for every job folder in `dirs` to go; those left.
async fn job_folders_after_waiting(dirs: &[PathBuf]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = job_folders(dirs);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads `stream` to its end, batch by batch.
async fn read_all(mut stream: ResultStream) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch.expect("every batch reads"));
    }
    batches
}

/// Rows in a canonical order, to compare contents whatever the order.
fn sorted(mut rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.sort();
    rows
}

/// Streams `sql` and collects it on `session`: the rows read, in order, must be the
/// collected ones, the same as DataFusion's (in order when `ordered`), and come in several
/// batches; the final stage of the unordered query must have several partitions.
async fn assert_streamed_equals_collected(session: &Session, sql: &str, ordered: bool) {
    let stream = session.sql_stream(sql).await.expect("the query runs");
    let metrics = stream.metrics().expect("a job ran").clone();
    let streamed = read_all(stream).await;
    let collected = session.sql(sql).await.expect("the query runs again");

    let (got, want) = (rows(&streamed), rows(&collected.batches));
    assert!(!got.is_empty(), "{sql}: no rows");
    assert_eq!(
        got, want,
        "{sql}: streamed rows differ from the collected ones"
    );
    assert!(
        streamed.len() > 1,
        "{sql}: one batch only, nothing streamed"
    );

    let expected = datafusion_rows(sql).await;
    if ordered {
        assert!(
            rows_match(&got, &expected),
            "{sql}: not in DataFusion's order"
        );
    } else {
        assert!(
            rows_match(&sorted(got), &sorted(expected)),
            "{sql}: not DataFusion's rows"
        );
        let final_stage = metrics
            .stages
            .iter()
            .max_by_key(|s| s.stage_id)
            .expect("a stage");
        assert!(
            final_stage.partitions > 1,
            "{sql}: the final stage has {} partition(s)",
            final_stage.partitions
        );
    }
}

async fn embedded(work: &Path, executors: usize) -> Session {
    tpch_session(EmberConfig {
        executors,
        work_dir: Some(work.to_path_buf()),
        ..EmberConfig::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_cluster_a_streamed_result_equals_the_collected_one_in_order() {
    let work = tempfile::tempdir().expect("tempdir");
    let session = embedded(work.path(), 3).await;
    assert_streamed_equals_collected(&session, UNORDERED, false).await;
    assert_streamed_equals_collected(&session, ORDERED, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_read_to_its_end_leaves_no_job_folder_on_any_executor() {
    let work = tempfile::tempdir().expect("tempdir");
    let session = embedded(work.path(), 2).await;
    let dirs = embedded_dirs(work.path(), 2);
    let mut stream = session.sql_stream(UNORDERED).await.expect("the query runs");
    let first = stream.next().await.expect("a batch").expect("it reads");
    assert!(first.num_rows() > 0);
    assert!(
        !job_folders(&dirs).is_empty(),
        "the job's output is on the executors while it is read"
    );
    while let Some(batch) = stream.next().await {
        batch.expect("every batch reads");
    }
    // No waiting: the end of the stream comes after the removal.
    assert_eq!(job_folders(&dirs), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_dropped_early_has_its_job_folder_removed_from_every_executor() {
    let work = tempfile::tempdir().expect("tempdir");
    let session = embedded(work.path(), 2).await;
    let dirs = embedded_dirs(work.path(), 2);
    let mut stream = session.sql_stream(ORDERED).await.expect("the query runs");
    stream.next().await.expect("a batch").expect("it reads");
    assert!(!job_folders(&dirs).is_empty(), "the job's output is there");
    drop(stream);
    assert_eq!(job_folders_after_waiting(&dirs).await, Vec::<String>::new());

    // A consumer that stops at a limit drops its stream the same way.
    let limited = session
        .sql_stream(UNORDERED)
        .await
        .expect("the query runs")
        .take(1)
        .collect::<Vec<_>>()
        .await;
    assert_eq!(limited.len(), 1);
    assert_eq!(job_folders_after_waiting(&dirs).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_process_cluster_a_streamed_result_equals_the_collected_one_and_leaves_no_files() {
    let cluster = TestCluster::start(2, &[], None);
    let session = cluster.session().await;
    let dirs = cluster.work_dirs();
    assert_streamed_equals_collected(&session, UNORDERED, false).await;
    assert_streamed_equals_collected(&session, ORDERED, true).await;

    let mut stream = session.sql_stream(UNORDERED).await.expect("the query runs");
    stream.next().await.expect("a batch").expect("it reads");
    assert!(!job_folders(&dirs).is_empty(), "the job's output is there");
    while let Some(batch) = stream.next().await {
        batch.expect("every batch reads");
    }
    assert_eq!(job_folders(&dirs), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_process_cluster_a_stream_dropped_early_has_its_job_files_removed() {
    let cluster = TestCluster::start(2, &[], None);
    let session = cluster.session().await;
    let dirs = cluster.work_dirs();
    let mut stream = session.sql_stream(ORDERED).await.expect("the query runs");
    stream.next().await.expect("a batch").expect("it reads");
    assert!(!job_folders(&dirs).is_empty(), "the job's output is there");
    drop(stream);
    assert_eq!(job_folders_after_waiting(&dirs).await, Vec::<String>::new());
}
