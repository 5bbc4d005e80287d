//! Input files that do not decode fail their job at once, naming the file: a Parquet file
//! with a corrupt page in the middle, a CSV file with a record of the wrong number of
//! fields (read by DataFusion, or record by record with `--bad-rows fail`), a JSON file
//! with a line that is not JSON. No retry fixes a file, so the scheduler tries once,
//! although it would try a failing task four times.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::metadata::PageIndexPolicy;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use ember::{BadRows, EmberConfig, EmberError, Session, TableSpec};

/// Row groups of each Parquet file, and rows in each.
const ROW_GROUPS: usize = 8;
const ROWS_PER_GROUP: usize = 1_000;

/// A session of two executors that would try a failing task four times.
fn session() -> Session {
    Session::new(EmberConfig {
        executors: 2,
        slots: 1,
        max_attempts: 4,
        ..EmberConfig::default()
    })
    .expect("the cluster starts")
}

/// The number of times the failed job ran its failing task.
fn attempts(error: &EmberError) -> usize {
    match error {
        EmberError::TaskFailed { attempts, .. } => *attempts,
        other => panic!("expected a task failure, got {other:?}"),
    }
}

/// Runs `sql` over the table `t` at `folder` (FORMAT as in `--table`); the error it fails
/// with.
async fn failing_query(folder: &Path, format: &str, sql: &str) -> EmberError {
    let session = session();
    let spec: TableSpec = format!("t={}:{format}", folder.display())
        .parse()
        .expect("a table");
    session
        .register_table(&spec)
        .await
        .expect("the table registers: its first rows are fine");
    session
        .sql(sql)
        .await
        .expect_err("the bad file fails the job")
}

/// Writes a Snappy-compressed Parquet file of [`ROW_GROUPS`] row groups, several data
/// pages per column chunk.
fn write_parquet(path: &Path) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
        .set_data_page_row_count_limit(250)
        .set_write_batch_size(250)
        .build();
    let file = std::fs::File::create(path).expect("created");
    let mut writer =
        ArrowWriter::try_new(file, Arc::clone(&schema), Some(properties)).expect("a writer");
    let rows = (ROW_GROUPS * ROWS_PER_GROUP) as i64;
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows)),
            Arc::new(StringArray::from_iter_values((0..rows).map(|i| {
                format!("customer-{:06}-of-the-north-east-region", i % 977)
            }))),
        ],
    )
    .expect("a batch");
    writer.write(&batch).expect("written");
    writer.close().expect("closed");
}

/// Overwrites the second half of the middle data page of `name` in row group `row_group`
/// (its compressed values; the page header stays readable). Returns the number of data
/// pages that chunk has.
fn corrupt_middle_page(path: &Path, row_group: usize) -> usize {
    let file = std::fs::File::open(path).expect("opened");
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
    let metadata = ArrowReaderMetadata::load(&file, options).expect("metadata with the page index");
    let pages = metadata.metadata().offset_index().expect("an offset index")[row_group][1]
        .page_locations()
        .clone();
    assert!(pages.len() >= 3, "{} pages", pages.len());
    let page = &pages[pages.len() / 2];
    let (start, size) = (page.offset as usize, page.compressed_page_size as usize);
    let mut bytes = std::fs::read(path).expect("read");
    for byte in &mut bytes[start + size / 2..start + size] {
        *byte = 0xff;
    }
    std::fs::write(path, bytes).expect("rewritten");
    pages.len()
}

/// A folder `t` of `a`, `b` and `c.EXT`; only `b` gets `bad` written in.
fn folder_of_three(dir: &Path, extension: &str, write: impl Fn(&Path, bool)) -> (PathBuf, String) {
    let folder = dir.join("t");
    std::fs::create_dir(&folder).expect("folder");
    for name in ["a", "b", "c"] {
        write(&folder.join(format!("{name}.{extension}")), name == "b");
    }
    let bad = folder.join(format!("b.{extension}"));
    (folder, bad.to_string_lossy().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parquet_file_with_a_corrupt_middle_page_fails_the_job_once_naming_file_and_row_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let middle = ROW_GROUPS / 2;
    let (folder, bad) = folder_of_three(dir.path(), "parquet", |path, bad| {
        write_parquet(path);
        if bad {
            corrupt_middle_page(path, middle);
        }
    });
    // DataFusion alone cannot read it either: the page does not decompress.
    let alone = SessionContext::new()
        .read_parquet(bad.as_str(), ParquetReadOptions::default())
        .await
        .expect("the footer reads")
        .collect()
        .await
        .expect_err("the page is corrupt");
    assert!(alone.to_string().contains("snappy"), "{alone}");

    let err = failing_query(&folder, "parquet", "SELECT sum(length(name)) FROM t").await;
    assert_eq!(attempts(&err), 1, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "{bad}: corrupt Parquet data in row group {} of {ROW_GROUPS}",
            middle + 1
        )),
        "{text}"
    );
    assert!(text.contains("snappy"), "{text}");
}

/// `rows` records `(id, name, price)` under a header; with `bad`, line 1501 (the header is
/// line 1) has a fourth field.
fn write_csv(path: &Path, rows: usize, bad: bool) {
    let mut text = String::from("id,name,price\n");
    for i in 1..=rows {
        if bad && i == 1500 {
            text.push_str(&format!("{i},p{i},{i}.5,extra\n"));
        } else {
            text.push_str(&format!("{i},p{i},{i}.5\n"));
        }
    }
    std::fs::write(path, text).expect("written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_file_with_a_wrong_field_count_fails_the_job_once_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 2,000 rows a file: DataFusion infers the schema from a.csv's first 1,000.
    let (folder, bad) = folder_of_three(dir.path(), "csv", |path, bad| write_csv(path, 2_000, bad));
    let err = failing_query(&folder, "csv", "SELECT sum(price) FROM t").await;
    assert_eq!(attempts(&err), 1, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("{bad}: line 1501: expected 3 fields, found 4")),
        "{err}"
    );

    // Read record by record, failing on the first bad row: once too.
    let err = session()
        .read_csv_checked(&folder.to_string_lossy(), &BadRows::Fail)
        .await
        .expect("planned")
        .count()
        .await
        .expect_err("the bad row fails the job");
    assert_eq!(attempts(&err), 1, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("{bad}:1501: expected 3 fields, found 4")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_file_with_a_line_that_is_not_json_fails_the_job_once_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (folder, bad) = folder_of_three(dir.path(), "json", |path, bad| {
        let mut text = String::new();
        for i in 1..=2_000 {
            if bad && i == 1500 {
                text.push_str(&format!("{{\"id\": {i}, \"price\": \n"));
            } else {
                text.push_str(&format!("{{\"id\": {i}, \"price\": {i}.5}}\n"));
            }
        }
        std::fs::write(path, text).expect("written");
    });
    let err = failing_query(&folder, "json", "SELECT sum(price) FROM t").await;
    assert_eq!(attempts(&err), 1, "{err}");
    assert!(
        err.to_string().contains(&format!("{bad}: invalid JSON")),
        "{err}"
    );
}
