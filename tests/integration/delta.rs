//! Delta Lake tables against the `deltalake` Python package (PyPI), a Delta
//! implementation no one here wrote: its tables read by Ember at two versions, Ember's
//! tables read by it with their version history, time travel and file pruning in SQL,
//! the errors for missing tables and versions, and a write on a process cluster whose
//! executor is SIGKILLed mid-write committing exactly one new version.

use std::path::Path;

use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{Int64Type, UInt64Type};
use datafusion::prelude::col;
use ember::{EmberConfig, Session, WriteMode};
use ember_tests::{key_value_schema, python_output, python_venv, sql_lines};

use crate::cluster::{TestCluster, kill_another_executor_when_a_task_finishes};

/// A Python with `deltalake` and `pyarrow`.
fn python() -> std::path::PathBuf {
    python_venv("delta", &["deltalake", "pyarrow"], "deltalake, pyarrow")
}

/// Runs `script` with `sys.argv[1]` = `table`; what it printed. Once the script has run to
/// its end the process leaves without Python's teardown, where deltalake's native runtime
/// sometimes aborts ("terminate called without an active exception"); an error before
/// that still fails the run.
fn run_python(script: &str, table: &Path) -> String {
    let script =
        format!("{script}\nimport os as _os, sys as _sys\n_sys.stdout.flush()\n_os._exit(0)\n");
    python_output(&python(), &script, &[table.as_os_str()])
}

fn session() -> Session {
    Session::new(EmberConfig {
        executors: 2,
        ..EmberConfig::default()
    })
    .expect("the cluster starts")
}

/// The Python side writes version 0 (ids 0..1000) and appends version 1 (1000..1500),
/// partitioned by `part`, and prints every row of each version as `id|name|price|part`.
const PY_WRITE: &str = r#"
import sys, pyarrow as pa
from deltalake import write_deltalake, DeltaTable
path = sys.argv[1]
def rows(lo, hi):
    return pa.table({
        "id": pa.array(range(lo, hi), pa.int64()),
        "name": [f"item {i}" for i in range(lo, hi)],
        "price": [i * 0.25 for i in range(lo, hi)],
        "part": pa.array([i % 3 for i in range(lo, hi)], pa.int32()),
    })
write_deltalake(path, rows(0, 1000), partition_by=["part"])
write_deltalake(path, rows(1000, 1500), mode="append", partition_by=["part"])
for version in (0, 1):
    t = DeltaTable(path, version=version).to_pyarrow_table().sort_by("id")
    print(version, t.num_rows)
    for r in t.to_pylist():
        print(f'{r["id"]}|{r["name"]}|{r["price"]}|{r["part"]}')
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_written_by_the_deltalake_package_read_the_same_at_two_versions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = dir.path().join("sales");
    let printed = run_python(PY_WRITE, &table);
    let mut versions: Vec<Vec<String>> = Vec::new();
    for line in printed.lines() {
        if line.contains('|') {
            if let Some(rows) = versions.last_mut() {
                rows.push(line.to_string());
            }
        } else {
            versions.push(Vec::new());
        }
    }
    assert_eq!(versions.len(), 2, "{printed}");
    assert_eq!((versions[0].len(), versions[1].len()), (1000, 1500));

    let session = session();
    let location = table.to_string_lossy();
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE sales STORED AS DELTA LOCATION '{location}'"
        ))
        .await
        .expect("the table registers");
    let query = "SELECT id, name, price, part FROM sales";
    let latest = sql_lines(&session, &format!("{query} ORDER BY id")).await;
    assert_eq!(latest, versions[1]);
    let first = sql_lines(&session, &format!("{query} VERSION AS OF 0 ORDER BY id")).await;
    assert_eq!(first, versions[0]);

    // The partition values and the statistics rule out files: a third of the files for
    // `part = 1`, and of those only the newer version's for ids above 1000.
    let files = |plan: Vec<String>| plan.join("\n").matches(".parquet").count();
    let all = files(sql_lines(&session, &format!("EXPLAIN {query}")).await);
    let one_part = files(sql_lines(&session, &format!("EXPLAIN {query} WHERE part = 1")).await);
    let newer = files(
        sql_lines(
            &session,
            &format!("EXPLAIN {query} WHERE part = 1 AND id >= 1200"),
        )
        .await,
    );
    assert_eq!(all, 6, "two versions of three partitions");
    assert_eq!((one_part, newer), (2, 1));
    let counted = sql_lines(
        &session,
        "SELECT count(*) FROM sales WHERE part = 1 AND id >= 1200",
    )
    .await;
    assert_eq!(
        counted,
        vec![(1200..1500).filter(|i| i % 3 == 1).count().to_string()]
    );

    // The same through the DSL and --table's reader.
    let dataset = session.read_delta(&location).await.expect("reads");
    assert_eq!(dataset.count().await.expect("counts"), 1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_written_by_ember_read_the_same_in_the_deltalake_package() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = dir.path().join("written");
    let location = table.to_string_lossy().to_string();
    let session = session();
    let batches = |lo: i64, hi: i64| {
        let batch = RecordBatch::try_new(
            key_value_schema(),
            vec![
                Arc::new(Int64Array::from_iter_values((lo..hi).map(|i| i % 7))),
                Arc::new(Int64Array::from_iter_values(lo..hi)),
            ],
        )
        .expect("batch");
        vec![batch]
    };
    let write = |lo, hi, mode| {
        let session = &session;
        let location = &location;
        async move {
            session
                .from_batches(batches(lo, hi))
                .expect("dataset")
                .write_delta(location, mode)
                .await
        }
    };
    let count =
        |r: ember::QueryResult| r.batches[0].column(0).as_primitive::<UInt64Type>().value(0);
    assert_eq!(
        count(write(0, 3000, WriteMode::Error).await.expect("v0")),
        3000
    );
    let again = write(0, 10, WriteMode::Error).await.expect_err("exists");
    assert!(
        again.to_string().contains("already exists (at version 0)"),
        "{again}"
    );
    assert_eq!(
        count(write(3000, 4000, WriteMode::Append).await.expect("v1")),
        1000
    );
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE w STORED AS DELTA LOCATION '{location}'"
        ))
        .await
        .expect("registers");
    session
        .sql("INSERT INTO w SELECT key, value + 100000 FROM w WHERE value < 500")
        .await
        .expect("v2 by INSERT INTO");
    // A registered table shows the versions committed after it was registered.
    assert_eq!(
        sql_lines(&session, "SELECT count(*) FROM w").await,
        vec!["4500"]
    );
    assert_eq!(
        sql_lines(&session, "SELECT count(*) FROM w VERSION AS OF 1").await,
        vec!["4000"]
    );

    // A job that fails leaves the table at its version and its folder as it was.
    let before = parquet_files(&table);
    let failed = session
        .sql("INSERT INTO w SELECT key, CAST(1 / (value - value) AS BIGINT) FROM w")
        .await;
    assert!(failed.is_err(), "division by zero fails the job");
    assert_eq!(
        parquet_files(&table),
        before,
        "nothing new in the table's folder"
    );

    let printed = run_python(
        r#"
import sys
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1])
print(t.version())
print(",".join(h["operation"] for h in reversed(t.history())))
data = t.to_pyarrow_table()
print(data.num_rows, sum(data.column("value").to_pylist()), sum(data.column("key").to_pylist()))
print(DeltaTable(sys.argv[1], version=1).to_pyarrow_table().num_rows)
print(data.schema.field("value").type)
"#,
        &table,
    );
    let expected_sum: i64 = (0..4000).sum::<i64>() + (0..500).map(|v| v + 100_000).sum::<i64>();
    let expected_keys: i64 =
        (0..4000).map(|i| i % 7).sum::<i64>() + (0..500).map(|i| i % 7).sum::<i64>();
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        vec![
            "2".to_string(),
            "CREATE TABLE,WRITE,WRITE".to_string(),
            format!("4500 {expected_sum} {expected_keys}"),
            "4000".to_string(),
            "int64".to_string(),
        ]
    );

    // Overwrite: a new version with only the new rows; the old ones stay readable.
    write(0, 10, WriteMode::Overwrite).await.expect("v3");
    assert_eq!(
        sql_lines(&session, "SELECT count(*) FROM w").await,
        vec!["10"]
    );
    assert_eq!(
        sql_lines(&session, "SELECT count(*) FROM w VERSION AS OF 2").await,
        vec!["4500"]
    );
    let printed = run_python(
        "import sys\nfrom deltalake import DeltaTable\nt = DeltaTable(sys.argv[1])\nprint(t.version(), t.to_pyarrow_table().num_rows)",
        &table,
    );
    assert_eq!(printed, "3 10");
}

/// The names of the Parquet files in the folder `dir`.
fn parquet_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tables_and_versions_are_one_line_errors_naming_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let session = session();
    let missing = dir.path().join("nothing");
    let e = session
        .read_delta(&missing.to_string_lossy())
        .await
        .err()
        .expect("no table");
    assert_eq!(
        e.to_string(),
        format!(
            "Delta table {}: no such table (nothing is at that path)",
            missing.display()
        )
    );
    let plain = dir.path().join("plain");
    std::fs::create_dir_all(&plain).expect("folder");
    let e = session
        .read_delta(&plain.to_string_lossy())
        .await
        .err()
        .expect("not a table");
    assert!(
        e.to_string()
            .ends_with("not a Delta table (it has no _delta_log/ with a commit)"),
        "{e}"
    );

    let table = dir.path().join("t");
    session
        .sql(&format!(
            "CREATE TABLE t STORED AS DELTA LOCATION '{}' AS SELECT 1 AS a",
            table.display()
        ))
        .await
        .expect("created");
    let e = session
        .sql("SELECT * FROM t VERSION AS OF 4")
        .await
        .expect_err("no v4");
    assert!(
        e.to_string()
            .contains("has no version 4 (its versions go up to 0)"),
        "{e}"
    );
    let e = session
        .sql("SELECT * FROM t TIMESTAMP AS OF '2001-01-01 00:00:00'")
        .await
        .expect_err("before the table");
    assert!(
        e.to_string()
            .contains("has no version at or before 2001-01-01"),
        "{e}"
    );
    assert!(!e.to_string().contains('\n'), "one line: {e}");
    session
        .sql("CREATE VIEW v AS SELECT 1 AS a")
        .await
        .expect("view");
    let e = session
        .sql("SELECT * FROM v VERSION AS OF 0")
        .await
        .expect_err("not delta");
    assert!(e.to_string().contains("'v' is not a Delta table"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_during_a_delta_write_leaves_one_new_version() {
    let cluster = TestCluster::start(3, &[], None);
    let mut session = cluster.session().await;
    let table = cluster.dir.path().join("delta-table");
    let location = table.to_string_lossy().to_string();
    let values = |lo: i64, hi: i64| {
        crate::cluster::key_values(hi - lo, 10)
            .into_iter()
            .map(|b| {
                let shifted: Int64Array = b
                    .column(1)
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| v.map(|v| v + lo))
                    .collect();
                RecordBatch::try_new(b.schema(), vec![Arc::clone(b.column(0)), Arc::new(shifted)])
                    .expect("batch")
            })
            .collect::<Vec<_>>()
    };
    session
        .from_batches(values(0, 1000))
        .expect("dataset")
        .write_delta(&location, WriteMode::Error)
        .await
        .expect("version 0");

    // When the first write task finishes, kill an executor that ran none yet: it is
    // writing, and its attempts run again elsewhere.
    let killed = kill_another_executor_when_a_task_finishes(&cluster, &mut session);
    let slow = session
        .from_batches(values(1000, 13_000))
        .expect("dataset")
        .repartition(6)
        .expect("six tasks")
        .map_batches("cluster_test.slow")
        .expect("slow");
    let written = slow
        .write_delta(&location, WriteMode::Append)
        .await
        .expect("the write succeeds");
    assert!(
        killed.lock().expect("lock").is_some(),
        "an executor was killed"
    );
    assert_eq!(
        written.batches[0]
            .column(0)
            .as_primitive::<UInt64Type>()
            .value(0),
        12_000
    );

    let log: Vec<String> = {
        let mut names: Vec<String> = std::fs::read_dir(table.join("_delta_log"))
            .expect("log")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        names
    };
    assert_eq!(log.len(), 2, "versions 0 and 1 only: {log:?}");
    let read = session.read_delta(&location).await.expect("reads");
    let sums = read
        .select(vec![col("value")])
        .expect("select")
        .collect()
        .await
        .expect("collects");
    let values: Vec<i64> = sums
        .batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(values.len(), 13_000, "each row once");
    assert_eq!(values.iter().sum::<i64>(), (0..13_000).sum::<i64>());
    // No staged attempt is left beside the table.
    let staging = cluster.dir.path().join(".ember-staging");
    let left = std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "staging folders left in {}", staging.display());
}
