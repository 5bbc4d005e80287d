//! Naming the culprit of bad input: when a task fails because a file it scans does not
//! decode (a corrupt Parquet page, a CSV record with the wrong number of fields, a value
//! that does not parse, a line that is not JSON), the failure becomes an
//! [`ExecutorError::Input`] that names the file (and the line, or the row group, where
//! known), which no retry fixes, so the job fails at once.
//!
//! Two checks decide, neither of which reads message text:
//!
//! 1. **The error's types.** The source chain is walked by type ([`DataFusionError`],
//!    [`ArrowError`], [`ParquetError`], and the boxed errors of their `External`
//!    variants): a reader's decode error ([`ParquetError`], Arrow's `ParquetError`,
//!    `CsvError`, `ParseError`, `JsonError`) may be bad input; reading that failed (I/O,
//!    the object store) and everything else may not.
//! 2. **A scanned file that fails again.** Arrow's IPC reader, which reads Ember's own
//!    shuffle files, reports corrupt data with the same types, and a shuffle file is no
//!    user's fault: a lost or broken map output is recomputed. So each input file of the
//!    task's scans is read again alone, with the scan's own settings; the first that fails
//!    with a decode error is the culprit. When none does, the failure was not in the
//!    inputs and stays DataFusion's error, retried as any other.
//!
//! Ember's own record-by-record reader (`--bad-rows`) raises its input errors as an
//! [`ExecutorError::Input`] boxed in [`DataFusionError::External`]; those are taken as
//! they are.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use arrow::error::ArrowError;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use datafusion::parquet::errors::ParquetError;
use datafusion::physical_plan::ExecutionPlan;
use futures::StreamExt;

use crate::error::ExecutorError;

/// A decode error of a file reader, as its types tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decode {
    /// Parquet data that does not decode: the reader's own words.
    Parquet(String),
    /// A CSV record that does not split into the schema's fields (arrow-csv's `CsvError`).
    CsvRecord(String),
    /// A value that does not parse as its column's type (Arrow's `ParseError`).
    Value(String),
    /// Text that is not the JSON the schema expects (Arrow's `JsonError`).
    Json(String),
}

/// The decode error in `error`'s source chain, if the chain is one of a reader that could
/// not decode its data; `None` for reading that failed (I/O, object store) and every other
/// error.
fn decode_error(error: &(dyn Error + 'static)) -> Option<Decode> {
    let mut link: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(current) = link {
        let datafusion = current.downcast_ref::<DataFusionError>().or_else(|| {
            current
                .downcast_ref::<Arc<DataFusionError>>()
                .map(Arc::as_ref)
        });
        if let Some(datafusion) = datafusion {
            match datafusion {
                DataFusionError::ParquetError(parquet) => return parquet_decode_error(parquet),
                DataFusionError::ArrowError(arrow, _) => return arrow_decode_error(arrow),
                // A wrapper: the cause is further down.
                DataFusionError::External(_)
                | DataFusionError::Context(..)
                | DataFusionError::Shared(_)
                | DataFusionError::Diagnostic(..)
                | DataFusionError::Collection(_) => {}
                _ => return None,
            }
        } else if let Some(arrow) = current.downcast_ref::<ArrowError>() {
            return arrow_decode_error(arrow);
        } else if let Some(parquet) = current.downcast_ref::<ParquetError>() {
            return parquet_decode_error(parquet);
        } else {
            return None;
        }
        link = current.source();
    }
    None
}

fn arrow_decode_error(error: &ArrowError) -> Option<Decode> {
    match error {
        // The Parquet reader's errors, turned into text by its record batch reader.
        ArrowError::ParquetError(message) => Some(Decode::Parquet(message.clone())),
        ArrowError::CsvError(message) => Some(Decode::CsvRecord(message.clone())),
        ArrowError::ParseError(message) => Some(Decode::Value(message.clone())),
        ArrowError::JsonError(message) => Some(Decode::Json(message.clone())),
        ArrowError::ExternalError(inner) => decode_error(inner.as_ref()),
        _ => None,
    }
}

fn parquet_decode_error(error: &ParquetError) -> Option<Decode> {
    match error {
        ParquetError::External(inner) => {
            let inner: &(dyn Error + 'static) = inner.as_ref();
            if inner.is::<std::io::Error>() || inner.is::<object_store::Error>() {
                // The bytes could not be read: maybe next time they can.
                None
            } else if let Some(arrow) = inner.downcast_ref::<ArrowError>() {
                arrow_decode_error(arrow)
            } else {
                // A decompressor's error (snappy, zstd, ...) or text that is not UTF-8.
                Some(Decode::Parquet(inner.to_string()))
            }
        }
        ParquetError::NeedMoreData(_) | ParquetError::NeedMoreDataRange(_) => None,
        other => Some(Decode::Parquet(other.to_string())),
    }
}

/// An [`ExecutorError`] that Ember's own readers boxed into `error`, if any.
fn ember_input_error(error: &(dyn Error + 'static)) -> Option<ExecutorError> {
    let mut link: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(current) = link {
        if let Some(ExecutorError::Input { location, message }) =
            current.downcast_ref::<ExecutorError>()
        {
            return Some(ExecutorError::Input {
                location: location.clone(),
                message: message.clone(),
            });
        }
        link = current.source();
    }
    None
}

/// A file scan of the task's plan.
struct FileScan {
    exec: DataSourceExec,
    config: FileScanConfig,
}

/// One input file (or byte range of one) of a file scan, and the scan that reads it.
struct ScannedFile {
    scan: Arc<FileScan>,
    file: PartitionedFile,
}

impl ScannedFile {
    /// The file as people name it: a local path, or the object store's URL.
    fn location(&self) -> String {
        let url = &self.scan.config.object_store_url;
        if *url == ObjectStoreUrl::local_filesystem() {
            format!("/{}", self.file.object_meta.location)
        } else {
            format!("{}{}", url.as_str(), self.file.object_meta.location)
        }
    }

    /// The local path of the file, if it is one.
    fn local_path(&self) -> Option<String> {
        (self.scan.config.object_store_url == ObjectStoreUrl::local_filesystem())
            .then(|| format!("/{}", self.file.object_meta.location))
    }

    /// The byte the scanned range starts at (0 for a whole file).
    fn start(&self) -> i64 {
        self.file.range.as_ref().map_or(0, |r| r.start)
    }

    /// Reads this file (range) alone, as the scan reads it; the decode error it fails
    /// with, if any.
    async fn read_again(&self, context: &Arc<TaskContext>) -> Option<Decode> {
        let config = FileScanConfigBuilder::from(self.scan.config.clone())
            .with_file_groups(vec![FileGroup::new(vec![self.file.clone()])])
            .build();
        let scan = self.scan.exec.clone().with_data_source(Arc::new(config));
        let mut stream = match scan.execute(0, Arc::clone(context)) {
            Ok(stream) => stream,
            Err(e) => return decode_error(&e),
        };
        while let Some(batch) = stream.next().await {
            if let Err(e) = batch {
                return decode_error(&e);
            }
        }
        None
    }
}

/// The input files of the file scans in `plan`: those that partition `partition` reads
/// first, then those of the scans' other partitions (a task may run every partition of a
/// scan, as for a collected build side).
fn scanned_files(plan: &Arc<dyn ExecutionPlan>, partition: usize) -> Vec<ScannedFile> {
    let mut own = Vec::new();
    let mut others = Vec::new();
    collect_scanned_files(plan, partition, &mut own, &mut others);
    own.extend(others);
    own
}

fn collect_scanned_files(
    plan: &Arc<dyn ExecutionPlan>,
    partition: usize,
    own: &mut Vec<ScannedFile>,
    others: &mut Vec<ScannedFile>,
) {
    if let Some(exec) = plan.downcast_ref::<DataSourceExec>()
        && let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>()
    {
        let scan = Arc::new(FileScan {
            exec: exec.clone(),
            config: config.clone(),
        });
        for (index, group) in config.file_groups.iter().enumerate() {
            let list = if index == partition {
                &mut *own
            } else {
                &mut *others
            };
            for file in group.files() {
                list.push(ScannedFile {
                    scan: Arc::clone(&scan),
                    file: file.clone(),
                });
            }
        }
    }
    for child in plan.children() {
        collect_scanned_files(child, partition, own, others);
    }
}

/// Turns a task failure into an [`ExecutorError`]: an [`ExecutorError::Input`] naming the
/// file when an input file of the task's scans does not decode (see the module
/// documentation), DataFusion's error otherwise.
pub(crate) async fn explain_task_failure(
    error: DataFusionError,
    plan: &Arc<dyn ExecutionPlan>,
    partition: usize,
    context: &Arc<TaskContext>,
) -> ExecutorError {
    if let Some(input) = ember_input_error(&error) {
        return input;
    }
    if decode_error(&error).is_none() {
        return error.into();
    }
    for file in scanned_files(plan, partition) {
        if let Some(decode) = file.read_again(context).await {
            return describe(&file, decode);
        }
    }
    // No input file fails when read again (a shuffle file may have been corrupt, or the
    // data changed): nothing to blame the inputs for, so it may be retried.
    error.into()
}

/// The input error of `file`, which fails to decode with `decode`.
fn describe(file: &ScannedFile, decode: Decode) -> ExecutorError {
    let location = file.location();
    let counted_from = match file.start() {
        0 => String::new(),
        start => format!(" of the part starting at byte {start}"),
    };
    let message = match decode {
        Decode::Parquet(reason) => {
            let row_group = file
                .local_path()
                .and_then(|path| failing_row_group(Path::new(&path)))
                .map(|(index, count)| format!(" in row group {} of {count}", index + 1))
                .unwrap_or_default();
            format!("corrupt Parquet data{row_group}: {reason}")
        }
        Decode::CsvRecord(reason) => match parse_field_count(&reason) {
            Some(count) => format!(
                "line {}{counted_from}: expected {} fields, found {}",
                count.line, count.expected, count.found
            ),
            None => format!("malformed CSV{counted_from}: {reason}"),
        },
        Decode::Value(reason) => match parse_csv_failure(&reason) {
            Some(failure) => {
                let columns = file.scan.config.file_schema();
                let column_name = columns
                    .fields()
                    .get(failure.column)
                    .map(|f| format!(" ({})", f.name()))
                    .unwrap_or_default();
                format!(
                    "line {}{counted_from}, column {}{column_name}: cannot parse '{}' as {}",
                    failure.line + 1,
                    failure.column + 1,
                    failure.value,
                    failure.data_type
                )
            }
            None => format!("a value does not parse{counted_from}: {reason}"),
        },
        Decode::Json(reason) => format!("invalid JSON{counted_from}: {reason}"),
    };
    ExecutorError::Input { location, message }
}

/// The row group (0-based) of the local Parquet file at `path` that does not read
/// through, and how many the file has; `None` when every row group reads, or the file's
/// metadata does not.
fn failing_row_group(path: &Path) -> Option<(usize, usize)> {
    let file = std::fs::File::open(path).ok()?;
    let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::default()).ok()?;
    let count = metadata.metadata().num_row_groups();
    let fails = |index: usize| -> bool {
        let Ok(file) = file.try_clone() else {
            return false;
        };
        match ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata.clone())
            .with_row_groups(vec![index])
            .build()
        {
            Ok(mut reader) => reader.any(|batch| batch.is_err()),
            Err(_) => true,
        }
    };
    (0..count)
        .find(|&index| fails(index))
        .map(|index| (index, count))
}

/// A CSV value that did not parse, as arrow-csv reports it.
#[derive(Debug, PartialEq, Eq)]
struct CsvParseFailure {
    value: String,
    data_type: String,
    /// 0-based column of the file.
    column: usize,
    /// 0-based line of the file (the header, if any, is line 0).
    line: usize,
}

/// Reads arrow-csv's "Error while parsing value 'V' as type 'T' for column C at line L"
/// for the position it names.
fn parse_csv_failure(message: &str) -> Option<CsvParseFailure> {
    let rest = message.split_once("Error while parsing value '")?.1;
    let (value, rest) = rest.split_once("' as type '")?;
    let (data_type, rest) = rest.split_once("' for column ")?;
    let (column, rest) = rest.split_once(" at line ")?;
    Some(CsvParseFailure {
        value: value.to_string(),
        data_type: data_type.to_string(),
        column: column.trim().parse().ok()?,
        line: leading_number(rest)?,
    })
}

/// A CSV record with the wrong number of fields, as arrow-csv reports it.
#[derive(Debug, PartialEq, Eq)]
struct FieldCount {
    /// 1-based line of the record (the header, if any, is line 1).
    line: usize,
    expected: usize,
    /// The fields found (or "more than N").
    found: String,
}

/// Reads arrow-csv's "incorrect number of fields for line L, expected E got F" for the
/// position it names.
fn parse_field_count(message: &str) -> Option<FieldCount> {
    let rest = message
        .split_once("incorrect number of fields for line ")?
        .1;
    let (line, rest) = rest.split_once(", expected ")?;
    let (expected, found) = rest.split_once(" got ")?;
    Some(FieldCount {
        line: line.trim().parse().ok()?,
        expected: expected.trim().parse().ok()?,
        found: found.trim().to_string(),
    })
}

/// The number `text` starts with.
fn leading_number(text: &str) -> Option<usize> {
    text.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_arrow_csv_messages() {
        let failure = parse_csv_failure(
            "Parser error: Error while parsing value 'zzz' as type 'Float64' for column 1 at \
             line 3001. Row data: '[3001,zzz]'",
        )
        .expect("recognised");
        assert_eq!(
            failure,
            CsvParseFailure {
                value: "zzz".into(),
                data_type: "Float64".into(),
                column: 1,
                line: 3001
            }
        );
        assert_eq!(parse_csv_failure("Parser error: something else"), None);
        assert_eq!(
            parse_field_count("incorrect number of fields for line 4, expected 3 got 4"),
            Some(FieldCount {
                line: 4,
                expected: 3,
                found: "4".into()
            })
        );
    }

    #[test]
    fn decode_errors_are_told_by_type_through_wrappers_and_reading_errors_are_not() {
        let snappy = DataFusionError::ArrowError(
            Box::new(ArrowError::ParquetError(
                "External: snappy: corrupt input".into(),
            )),
            None,
        );
        let wrapped = DataFusionError::Shared(Arc::new(
            DataFusionError::External(Box::new(snappy)).context("while scanning"),
        ));
        assert_eq!(
            decode_error(&wrapped),
            Some(Decode::Parquet("External: snappy: corrupt input".into()))
        );
        let csv = DataFusionError::ArrowError(
            Box::new(ArrowError::CsvError(
                "incorrect number of fields for line 2, expected 2 got 3".into(),
            )),
            None,
        );
        assert!(matches!(
            decode_error(&csv),
            Some(Decode::CsvRecord(message)) if message.contains("line 2")
        ));
        let decompressor = DataFusionError::ParquetError(Box::new(ParquetError::External(
            Box::new(std::fmt::Error),
        )));
        assert!(matches!(
            decode_error(&decompressor),
            Some(Decode::Parquet(_))
        ));

        // Reading that failed may succeed next time, and other errors are not the input's.
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let read_failed =
            DataFusionError::ParquetError(Box::new(ParquetError::External(Box::new(io))));
        assert_eq!(decode_error(&read_failed), None);
        let store = DataFusionError::ParquetError(Box::new(ParquetError::External(Box::new(
            object_store::Error::NotFound {
                path: "x".into(),
                source: "gone".into(),
            },
        ))));
        assert_eq!(decode_error(&store), None);
        assert_eq!(
            decode_error(&DataFusionError::Execution("Parquet error: no".into())),
            None
        );
        assert_eq!(
            decode_error(&DataFusionError::ResourcesExhausted("memory".into())),
            None
        );
    }

    /// The physical plan that reads the CSV file at `path` as `(a, b)` integers, and a
    /// context to run it in.
    async fn csv_scan(path: &Path) -> (Arc<dyn ExecutionPlan>, Arc<TaskContext>) {
        use arrow::datatypes::{DataType, Field, Schema};
        use datafusion::prelude::{CsvReadOptions, SessionContext};
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]);
        let ctx = SessionContext::new();
        let plan = ctx
            .read_csv(
                path.to_string_lossy().as_ref(),
                CsvReadOptions::new().schema(&schema),
            )
            .await
            .expect("a CSV table")
            .create_physical_plan()
            .await
            .expect("a plan");
        (plan, ctx.task_ctx())
    }

    #[tokio::test]
    async fn a_decode_error_that_no_input_file_repeats_is_not_blamed_on_the_inputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good.csv");
        std::fs::write(&good, "a,b\n1,2\n3,4\n").expect("written");
        let (plan, context) = csv_scan(&good).await;
        // What Arrow's IPC reader says of a corrupt shuffle file read in the same task.
        let shuffle = DataFusionError::ArrowError(
            Box::new(ArrowError::ParseError(
                "Unable to get root as message".into(),
            )),
            None,
        );
        let explained = explain_task_failure(shuffle, &plan, 0, &context).await;
        assert!(explained.is_retryable(), "{explained}");

        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "a,b\n1,2\n3,4,5\n").expect("written");
        let (plan, context) = csv_scan(&bad).await;
        let stream = plan.execute(0, Arc::clone(&context)).expect("runs");
        let failure = datafusion::physical_plan::common::collect(stream)
            .await
            .expect_err("line 3 has three fields");
        let explained = explain_task_failure(failure, &plan, 0, &context).await;
        assert!(!explained.is_retryable(), "{explained}");
        assert_eq!(
            explained.to_string(),
            format!("{}: line 3: expected 2 fields, found 3", bad.display())
        );
    }

    #[test]
    fn an_input_error_of_ember_s_own_reader_is_found_inside_datafusion_s() {
        let boxed = DataFusionError::External(Box::new(ExecutorError::Input {
            location: "/data/a.csv:3".into(),
            message: "expected 2 fields, found 3".into(),
        }))
        .context("function ember.csv_checked");
        match ember_input_error(&boxed) {
            Some(ExecutorError::Input { location, .. }) => assert_eq!(location, "/data/a.csv:3"),
            other => panic!("{other:?}"),
        }
    }
}
