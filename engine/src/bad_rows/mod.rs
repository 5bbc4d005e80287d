//! What to do with CSV and JSON rows that do not parse: fail naming `file:line` (the default),
//! skip and count them, or write them with their file, line and reason to a quarantine
//! folder and count them.
//!
//! [`Session::read_csv_checked`] reads each file in one task, record by record (the `csv`
//! crate, which knows each record's line), and checks every record against the schema:
//! its number of fields, and each non-empty field against its column's type. The schema
//! is, per column, the most specific type that 90 % of the first 1000 records' values
//! parse as, so a few bad values do not turn a numeric column into text. Counts go through the accumulator
//! [`BAD_ROWS_ACCUMULATOR`] (a retried task counts once).

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, RecordBatch,
    StringArray, StringBuilder,
};
use arrow::compute::kernels::cast_utils::Parser;
use arrow::datatypes::{DataType, Date32Type, Field, Float64Type, Int64Type, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result as DfResult};
use ember_executors::ExecutorError;
use ember_planner::{FunctionOutput, FunctionRegistry, PartitionFn, UserFunction};
use serde::{Deserialize, Serialize};

use crate::error::{EmberError, Result};
use crate::shared::LongAccumulator;

pub(crate) mod json;
mod kinds;

use kinds::{INFER_RECORDS, decide, vote};

/// The function that reads CSV files record by record.
pub const CHECKED_CSV_FN: &str = "ember.csv_checked";
/// The accumulator counting bad rows skipped or quarantined.
pub const BAD_ROWS_ACCUMULATOR: &str = "ember.bad_rows";

/// What to do with a row that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BadRows {
    /// Fail the job with `file:line: reason`.
    #[default]
    Fail,
    /// Drop the row and count it.
    Skip,
    /// Write it, with its file, line and reason, under this folder, and count it.
    Quarantine(PathBuf),
}

impl std::str::FromStr for BadRows {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fail" => Ok(Self::Fail),
            "skip" => Ok(Self::Skip),
            other => match other.strip_prefix("quarantine=") {
                Some(path) if !path.is_empty() => Ok(Self::Quarantine(PathBuf::from(path))),
                _ => Err(format!(
                    "expected fail, skip or quarantine=PATH, not '{other}'"
                )),
            },
        }
    }
}

/// Arguments of [`CHECKED_CSV_FN`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CheckedCsv {
    /// Column names and types (`Int64`, `Float64`, `Date32`, `Boolean`, `Utf8`).
    pub(crate) columns: Vec<(String, String)>,
    pub(crate) policy: BadRows,
    /// The files are newline-delimited JSON, not CSV.
    #[serde(default)]
    pub(crate) json: bool,
}

impl CheckedCsv {
    fn schema(&self) -> DfResult<SchemaRef> {
        let fields: DfResult<Vec<Field>> = self
            .columns
            .iter()
            .map(|(name, kind)| Ok(Field::new(name, data_type(kind)?, true)))
            .collect();
        Ok(Arc::new(Schema::new(fields?)))
    }
}

fn data_type(kind: &str) -> DfResult<DataType> {
    Ok(match kind {
        "Int64" => DataType::Int64,
        "Float64" => DataType::Float64,
        "Date32" => DataType::Date32,
        "Boolean" => DataType::Boolean,
        "Utf8" => DataType::Utf8,
        other => {
            return Err(DataFusionError::Execution(format!(
                "no CSV column type {other}"
            )));
        }
    })
}

/// Days since 1970-01-01 of a date, as Arrow's CSV reader parses it.
fn parse_date(text: &str) -> Option<i32> {
    Date32Type::parse(text)
}

/// The type `text` parses as, most specific first.
fn kind_of(text: &str) -> &'static str {
    if Int64Type::parse(text).is_some() {
        "Int64"
    } else if Float64Type::parse(text).is_some() {
        "Float64"
    } else if parse_date(text).is_some() {
        "Date32"
    } else if text == "true" || text == "false" {
        "Boolean"
    } else {
        "Utf8"
    }
}

/// The header and column types of a CSV file: per column, the most specific type that
/// 90 % of the first 1000 records' non-empty values parse as (integers count
/// for floats; text fits everything).
pub fn infer_csv_schema(path: &Path) -> Result<Vec<(String, String)>> {
    let file = std::fs::File::open(path).map_err(|source| EmberError::Io {
        action: "opening",
        path: path.to_path_buf(),
        source,
    })?;
    infer_csv_schema_from(file).map_err(|e| csv_error(path, e))
}

/// [`infer_csv_schema`] of CSV text read from `source`.
fn infer_csv_schema_from(
    source: impl Read,
) -> std::result::Result<Vec<(String, String)>, csv::Error> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(source);
    let header: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
    let mut votes = vec![[0_usize; 5]; header.len()];
    for record in reader.records().take(INFER_RECORDS) {
        let Ok(record) = record else { continue };
        if record.len() != header.len() {
            continue;
        }
        for (column, value) in record.iter().enumerate() {
            if value.is_empty() {
                continue;
            }
            vote(&mut votes[column], kind_of(value));
        }
    }
    Ok(header
        .into_iter()
        .zip(votes)
        .map(|(name, votes)| (name, decide(votes).to_string()))
        .collect())
}

fn csv_error(path: &Path, e: csv::Error) -> EmberError {
    EmberError::InvalidArgument {
        operation: "reading CSV",
        message: format!("{}: {e}", path.display()),
    }
}

/// A column being built.
enum Column {
    Int(Int64Builder),
    Float(Float64Builder),
    Date(Date32Builder),
    Bool(BooleanBuilder),
    Text(StringBuilder),
}

impl Column {
    fn new(kind: &DataType) -> Self {
        match kind {
            DataType::Int64 => Self::Int(Int64Builder::new()),
            DataType::Float64 => Self::Float(Float64Builder::new()),
            DataType::Date32 => Self::Date(Date32Builder::new()),
            DataType::Boolean => Self::Bool(BooleanBuilder::new()),
            _ => Self::Text(StringBuilder::new()),
        }
    }

    /// Checks `value` without appending it.
    fn check(&self, value: &str) -> bool {
        value.is_empty()
            || match self {
                Self::Int(_) => Int64Type::parse(value).is_some(),
                Self::Float(_) => Float64Type::parse(value).is_some(),
                Self::Date(_) => parse_date(value).is_some(),
                Self::Bool(_) => value == "true" || value == "false",
                Self::Text(_) => true,
            }
    }

    /// Appends a value [`Self::check`] accepted.
    fn append(&mut self, value: &str) {
        match self {
            Self::Int(b) => b.append_option(Int64Type::parse(value)),
            Self::Float(b) => b.append_option(Float64Type::parse(value)),
            Self::Date(b) => b.append_option(parse_date(value)),
            Self::Bool(b) => b.append_option((!value.is_empty()).then_some(value == "true")),
            Self::Text(b) => b.append_option((!value.is_empty()).then_some(value)),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Int(b) => Arc::new(b.finish()),
            Self::Float(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Text(b) => Arc::new(b.finish()),
        }
    }
}

/// Reads the files named in its input, one path per row.
struct CheckedPartition {
    spec: CheckedCsv,
    schema: SchemaRef,
    partition: usize,
    bad: u64,
    quarantine: Option<csv::Writer<std::fs::File>>,
    /// Under [`BadRows::Fail`], the line and reason of the row that failed.
    failed: Option<(u64, String)>,
}

impl CheckedPartition {
    fn read_file(&mut self, path: &str) -> DfResult<RecordBatch> {
        let file = std::fs::File::open(path)
            .map_err(|e| DataFusionError::Execution(format!("{path}: {e}")))?;
        if self.spec.json {
            self.read_json_from(path, std::io::BufReader::new(file))
        } else {
            self.read_from(path, file)
        }
    }

    /// An empty builder per column of the schema.
    fn new_columns(&self) -> Vec<Column> {
        self.schema
            .fields()
            .iter()
            .map(|f| Column::new(f.data_type()))
            .collect()
    }

    /// Reads the newline-delimited JSON of `source`, named `path` in messages.
    fn read_json_from(&mut self, path: &str, source: impl BufRead) -> DfResult<RecordBatch> {
        let names: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut columns = self.new_columns();
        for (index, line) in source.lines().enumerate() {
            let line_number = index as u64 + 1;
            let text = line.map_err(|e| DataFusionError::Execution(format!("{path}: {e}")))?;
            if text.trim().is_empty() {
                continue;
            }
            let problem = match json::record(&text, &names) {
                Err(reason) => Some(reason),
                Ok(values) => match self.check(&values, &columns) {
                    Some(reason) => Some(reason),
                    None => {
                        for (value, column) in values.iter().zip(columns.iter_mut()) {
                            column.append(value);
                        }
                        None
                    }
                },
            };
            if let Some(reason) = problem {
                self.bad_row(path, line_number, &reason, &text)?;
            }
        }
        let arrays: Vec<ArrayRef> = columns.iter_mut().map(Column::finish).collect();
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), arrays)?)
    }

    /// Why `values` do not fit the columns, if they do not.
    fn check<S: AsRef<str>>(&self, values: &[S], columns: &[Column]) -> Option<String> {
        values
            .iter()
            .zip(columns)
            .zip(self.schema.fields())
            .find(|((value, column), _)| !column.check(value.as_ref()))
            .map(|((value, _), field)| {
                format!(
                    "column {}: '{}' is not a {}",
                    field.name(),
                    value.as_ref(),
                    field.data_type()
                )
            })
    }

    /// Reads the CSV text of `source`, named `path` in messages and quarantine files.
    fn read_from(&mut self, path: &str, source: impl Read) -> DfResult<RecordBatch> {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(source);
        let fields = self.schema.fields().len();
        let mut columns = self.new_columns();
        let mut record = csv::StringRecord::new();
        loop {
            // The line the next record starts on (1 is the header).
            let line = reader.position().line();
            let problem = match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) if record.len() != fields => {
                    Some(format!("expected {fields} fields, found {}", record.len()))
                }
                Ok(true) => {
                    let values: Vec<&str> = record.iter().collect();
                    self.check(&values, &columns)
                }
                Err(e) => Some(e.to_string()),
            };
            match problem {
                None => {
                    for (value, column) in record.iter().zip(columns.iter_mut()) {
                        column.append(value);
                    }
                }
                Some(reason) => {
                    let text = record.iter().collect::<Vec<_>>().join(",");
                    self.bad_row(path, line, &reason, &text)?;
                }
            }
        }
        let arrays: Vec<ArrayRef> = columns.iter_mut().map(Column::finish).collect();
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), arrays)?)
    }

    fn bad_row(&mut self, path: &str, line: u64, reason: &str, text: &str) -> DfResult<()> {
        match &self.spec.policy {
            BadRows::Fail => {
                self.failed = Some((line, reason.to_string()));
                // Typed, so the executor knows bad input (which no retry fixes) from a
                // failure of the task.
                Err(DataFusionError::External(Box::new(ExecutorError::Input {
                    location: format!("{path}:{line}"),
                    message: format!("{reason} (--bad-rows skip or quarantine=PATH to go on)"),
                })))
            }
            BadRows::Skip => {
                self.bad += 1;
                Ok(())
            }
            BadRows::Quarantine(dir) => {
                self.bad += 1;
                if self.quarantine.is_none() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        DataFusionError::Execution(format!("creating {}: {e}", dir.display()))
                    })?;
                    // One file per partition: a retried task rewrites its own.
                    let file = dir.join(format!("bad-rows-{}.csv", self.partition));
                    let mut writer = csv::Writer::from_path(&file).map_err(|e| {
                        DataFusionError::Execution(format!("{}: {e}", file.display()))
                    })?;
                    writer
                        .write_record(["file", "line", "reason", "row"])
                        .map_err(|e| DataFusionError::Execution(e.to_string()))?;
                    self.quarantine = Some(writer);
                }
                if let Some(writer) = &mut self.quarantine {
                    writer
                        .write_record([path, &line.to_string(), reason, text])
                        .map_err(|e| DataFusionError::Execution(e.to_string()))?;
                }
                Ok(())
            }
        }
    }
}

impl PartitionFn for CheckedPartition {
    fn push(&mut self, batch: RecordBatch) -> DfResult<Option<RecordBatch>> {
        let paths = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| DataFusionError::Execution("CSV paths must be text".into()))?;
        let mut out = Vec::new();
        for path in paths.iter().flatten() {
            out.push(self.read_file(path)?);
        }
        match out.len() {
            0 => Ok(None),
            1 => Ok(out.pop()),
            _ => Ok(Some(arrow::compute::concat_batches(&self.schema, &out)?)),
        }
    }

    fn finish(&mut self) -> DfResult<Option<RecordBatch>> {
        if let Some(writer) = &mut self.quarantine {
            writer
                .flush()
                .map_err(|e| DataFusionError::Execution(format!("quarantine: {e}")))?;
        }
        if self.bad > 0 {
            LongAccumulator::named(BAD_ROWS_ACCUMULATOR).add(self.bad as i64);
        }
        Ok(None)
    }
}

/// The first row of the CSV file at `path` that does not fit the schema
/// [`infer_csv_schema`] gives it (with `fields_only`, the first with the wrong number of
/// fields): its line and what is wrong.
pub fn first_bad_row(path: &Path, fields_only: bool) -> Option<(u64, String)> {
    let columns = infer_csv_schema(path).ok()?;
    let schema = CheckedCsv {
        columns,
        policy: BadRows::Fail,
        json: false,
    }
    .schema()
    .ok()?;
    let checks: Vec<Column> = schema
        .fields()
        .iter()
        .map(|f| Column::new(f.data_type()))
        .collect();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .ok()?;
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => return None,
            Ok(true) if record.len() != checks.len() => {
                return Some((
                    line,
                    format!("expected {} fields, found {}", checks.len(), record.len()),
                ));
            }
            Ok(true) if fields_only => {}
            Ok(true) => {
                let bad = record
                    .iter()
                    .zip(&checks)
                    .zip(schema.fields())
                    .find(|((value, check), _)| !check.check(value));
                if let Some(((value, _), field)) = bad {
                    return Some((
                        line,
                        format!(
                            "column {}: '{value}' is not a {}",
                            field.name(),
                            field.data_type()
                        ),
                    ));
                }
            }
            Err(e) => return Some((line, e.to_string())),
        }
    }
}

/// Reads the CSV text `bytes` as [`Session::read_csv_checked`] reads a file: the schema
/// inferred from its first records, each record checked against it, bad rows handled by
/// `policy` (`Fail` or `Skip`; `Quarantine` writes its file). Returns the good rows and
/// the number of bad ones; `name` stands for the file in messages.
pub fn parse_csv_checked(name: &str, bytes: &[u8], policy: &BadRows) -> Result<(RecordBatch, u64)> {
    let columns = infer_csv_schema_from(bytes).map_err(|e| EmberError::InvalidArgument {
        operation: "reading CSV",
        message: format!("{name}: {e}"),
    })?;
    let spec = CheckedCsv {
        columns,
        policy: policy.clone(),
        json: false,
    };
    let mut partition = CheckedPartition {
        schema: spec.schema()?,
        spec,
        partition: 0,
        bad: 0,
        quarantine: None,
        failed: None,
    };
    let batch = partition.read_from(name, bytes)?;
    Ok((batch, partition.bad))
}

/// Registers [`CHECKED_CSV_FN`] in `functions`: the driver plans with it, and every
/// executor carries it as a built-in (see [`crate::register_builtin_functions`]).
pub fn register_bad_rows_function(functions: &FunctionRegistry) {
    functions.register(UserFunction::new(
        CHECKED_CSV_FN,
        FunctionOutput::FromArgs(Arc::new(|args: &str, _input: &SchemaRef| {
            parse_spec(args)?.schema()
        })),
        None,
        |call| {
            let spec = parse_spec(call.args)?;
            Ok(Box::new(CheckedPartition {
                schema: spec.schema()?,
                spec,
                partition: call.partition,
                bad: 0,
                quarantine: None,
                failed: None,
            }) as Box<dyn PartitionFn>)
        },
    ));
}

fn parse_spec(args: &str) -> DfResult<CheckedCsv> {
    serde_json::from_str(args)
        .map_err(|e| DataFusionError::Execution(format!("bad {CHECKED_CSV_FN} arguments: {e}")))
}

/// The first line of the newline-delimited JSON file at `path` that is not an object or
/// (unless `syntax_only`) does not fit the schema its first lines give it: its line and
/// what is wrong.
pub fn first_bad_json_row(path: &Path, syntax_only: bool) -> Option<(u64, String)> {
    if syntax_only {
        let file = std::fs::File::open(path).ok()?;
        for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.ok()?;
            if line.trim().is_empty() {
                continue;
            }
            if let Err(reason) = json::record(&line, &[]) {
                return Some((index as u64 + 1, reason));
            }
        }
        return None;
    }
    let file = std::fs::File::open(path).ok()?;
    let columns = json::infer_schema(std::io::BufReader::new(file)).ok()?;
    let spec = CheckedCsv {
        columns,
        policy: BadRows::Fail,
        json: true,
    };
    let mut partition = CheckedPartition {
        schema: spec.schema().ok()?,
        spec,
        partition: 0,
        bad: 0,
        quarantine: None,
        failed: None,
    };
    let file = std::fs::File::open(path).ok()?;
    match partition.read_json_from("", std::io::BufReader::new(file)) {
        Ok(_) => None,
        Err(_) => partition.failed,
    }
}

/// The input files at `path`: the file, or the files of the folder with one of
/// `extensions`, in name order.
pub(crate) fn input_files(path: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| EmberError::Io {
        action: "listing",
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| extensions.contains(&x))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(EmberError::InvalidArgument {
            operation: "reading input",
            message: format!(
                "{} holds no .{} files",
                path.display(),
                extensions.join(" or .")
            ),
        });
    }
    Ok(files)
}
