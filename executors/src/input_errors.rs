//! Naming the culprit of bad input: when a task fails on a CSV value that does not parse,
//! find the file(s) the task was scanning and say file, line and column the way a person
//! counts them (1-based, the header is line 1); when it fails on Parquet data that does not
//! decode, name the file that does not read through.

use std::sync::Arc;

use arrow::error::ArrowError;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::physical_plan::ExecutionPlan;

use crate::error::ExecutorError;

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

/// Reads arrow-csv's "Error while parsing value 'V' as type 'T' for column C at line L".
fn parse_csv_failure(message: &str) -> Option<CsvParseFailure> {
    let rest = message.split_once("Error while parsing value '")?.1;
    let (value, rest) = rest.split_once("' as type '")?;
    let (data_type, rest) = rest.split_once("' for column ")?;
    let (column, rest) = rest.split_once(" at line ")?;
    let line = rest
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some(CsvParseFailure {
        value: value.to_string(),
        data_type: data_type.to_string(),
        column: column.trim().parse().ok()?,
        line,
    })
}

/// The files of type `file_type` (`csv`, `parquet`; and the byte offset each range starts
/// at) that partition `partition` of `plan` scans.
fn scanned_files(
    plan: &Arc<dyn ExecutionPlan>,
    partition: usize,
    file_type: &str,
    out: &mut Vec<CsvScanPart>,
) {
    if let Some(scan) = plan.downcast_ref::<DataSourceExec>()
        && let Some(config) = scan.data_source().downcast_ref::<FileScanConfig>()
        && config.file_source().file_type() == file_type
    {
        let names: Vec<String> = config
            .file_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        // A task may run other partitions of a scan too (a collected build side), so
        // prefer the task's own partition but fall back to every group.
        let groups: Vec<_> = match config.file_groups.get(partition) {
            Some(group) => vec![group],
            None => config.file_groups.iter().collect(),
        };
        for group in groups {
            for file in group.files() {
                out.push(CsvScanPart {
                    path: format!("/{}", file.object_meta.location),
                    start: file.range.as_ref().map(|r| r.start).unwrap_or(0),
                    columns: names.clone(),
                });
            }
        }
    }
    for child in plan.children() {
        scanned_files(child, partition, file_type, out);
    }
}

/// One file (range) of a file scan.
struct CsvScanPart {
    path: String,
    start: i64,
    columns: Vec<String>,
}

/// Turns a task failure into an [`ExecutorError`], naming file, line and column when the
/// failure is a CSV value that does not parse.
pub(crate) fn explain_task_failure(
    error: DataFusionError,
    plan: &Arc<dyn ExecutionPlan>,
    partition: usize,
) -> ExecutorError {
    if error.find_root().to_string().contains("Parquet error") {
        return explain_parquet_failure(error, plan, partition);
    }
    let message = match error.find_root() {
        DataFusionError::ArrowError(arrow, _) => match arrow.as_ref() {
            ArrowError::ParseError(m) | ArrowError::CsvError(m) => m.clone(),
            _ => return error.into(),
        },
        _ => return error.into(),
    };
    let Some(failure) = parse_csv_failure(&message) else {
        return error.into();
    };
    let mut parts = Vec::new();
    scanned_files(plan, partition, "csv", &mut parts);
    let Some(first) = parts.first() else {
        return error.into();
    };
    let location = parts
        .iter()
        .map(|p| p.path.as_str())
        .collect::<Vec<_>>()
        .join(" or ");
    let column_name = first
        .columns
        .get(failure.column)
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let counted_from = if parts.len() == 1 && first.start > 0 {
        format!(" of the part starting at byte {}", first.start)
    } else {
        String::new()
    };
    ExecutorError::Input {
        location,
        message: format!(
            "line {}{counted_from}, column {}{column_name}: cannot parse '{}' as {}",
            failure.line + 1,
            failure.column + 1,
            failure.value,
            failure.data_type
        ),
    }
}

/// A Parquet file that cannot be decoded: names it (the first of the task's local files
/// that does not read through, or all of them), as an input error that no retry fixes.
fn explain_parquet_failure(
    error: DataFusionError,
    plan: &Arc<dyn ExecutionPlan>,
    partition: usize,
) -> ExecutorError {
    let mut parts = Vec::new();
    scanned_files(plan, partition, "parquet", &mut parts);
    if parts.is_empty() {
        return error.into();
    }
    let culprit = parts.iter().find_map(|part| {
        let file = std::fs::File::open(&part.path).ok()?;
        let reads: Result<(), String> = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|builder| builder.build())
            .map_err(|e| e.to_string())
            .and_then(|mut reader| {
                reader.try_for_each(|b| b.map(|_| ()).map_err(|e| e.to_string()))
            });
        reads.err().map(|e| (part.path.clone(), e))
    });
    match culprit {
        Some((path, reason)) => ExecutorError::Input {
            location: path,
            message: format!("corrupt Parquet data: {reason}"),
        },
        // No file fails when read again (or none is local, such as objects in S3): the
        // failure was not in the data, maybe a transient read or a write error, so it
        // stays DataFusion's own error, retried as any other.
        None => error.into(),
    }
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
    }
}
