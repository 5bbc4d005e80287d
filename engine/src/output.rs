//! Printing results: [`OutputFormat`], [`write_result`] for rows in memory and
//! [`ResultWriter`] for rows that arrive batch by batch.

use std::io::Write;
use std::str::FromStr;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::pretty::pretty_format_batches_with_schema;

use crate::error::{EmberError, Result};

/// How `ember sql` prints rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// An aligned text table.
    #[default]
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per line.
    Json,
}

impl FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "json" => Ok(OutputFormat::Json),
            other => Err(format!(
                "unknown output format '{other}' (expected table, csv or json)"
            )),
        }
    }
}

/// Writes `batches` to `out` in `format`.
pub fn write_result(
    out: &mut dyn Write,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<()> {
    let mut writer = ResultWriter::new(out, schema, format);
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()
}

/// Writes a result as its batches arrive: CSV and JSON rows go out batch by batch, so a
/// result of any size prints in the memory of one batch. A table needs every row for its
/// column widths, so it is kept until [`ResultWriter::finish`].
pub struct ResultWriter<'a> {
    format: Format<'a>,
    schema: SchemaRef,
}

/// The writer of each format.
enum Format<'a> {
    Table {
        out: &'a mut dyn Write,
        batches: Vec<RecordBatch>,
    },
    Csv {
        writer: Box<arrow::csv::Writer<&'a mut dyn Write>>,
        wrote: bool,
    },
    Json(arrow::json::LineDelimitedWriter<&'a mut dyn Write>),
}

impl<'a> ResultWriter<'a> {
    /// A writer of rows of `schema` to `out` in `format`.
    pub fn new(out: &'a mut dyn Write, schema: &SchemaRef, format: OutputFormat) -> Self {
        let format = match format {
            OutputFormat::Table => Format::Table {
                out,
                batches: Vec::new(),
            },
            OutputFormat::Csv => Format::Csv {
                writer: Box::new(
                    arrow::csv::WriterBuilder::new()
                        .with_header(true)
                        .build(out),
                ),
                wrote: false,
            },
            OutputFormat::Json => Format::Json(arrow::json::LineDelimitedWriter::new(out)),
        };
        Self {
            format,
            schema: schema.clone(),
        }
    }

    /// Writes the rows of `batch` (a table keeps them for [`ResultWriter::finish`]).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match &mut self.format {
            Format::Table { batches, .. } => batches.push(batch.clone()),
            Format::Csv { writer, wrote } => {
                writer.write(batch).map_err(write_err)?;
                *wrote = true;
            }
            Format::Json(writer) => writer.write(batch).map_err(write_err)?,
        }
        Ok(())
    }

    /// Writes what is left (the table, the CSV header of an empty result) and flushes.
    pub fn finish(self) -> Result<()> {
        let out = match self.format {
            Format::Table { out, batches } => {
                let table =
                    pretty_format_batches_with_schema(self.schema, &batches).map_err(arrow_err)?;
                writeln!(out, "{table}").map_err(stdout_err)?;
                out
            }
            Format::Csv { mut writer, wrote } => {
                if !wrote {
                    writer
                        .write(&RecordBatch::new_empty(self.schema))
                        .map_err(write_err)?;
                }
                writer.into_inner()
            }
            Format::Json(mut writer) => {
                writer.finish().map_err(write_err)?;
                writer.into_inner()
            }
        };
        out.flush().map_err(stdout_err)
    }
}

fn arrow_err(e: arrow::error::ArrowError) -> EmberError {
    EmberError::DataFusion(e.into())
}

/// A failed write: the output's own error when it is one (a closed pipe), else Arrow's.
fn write_err(e: arrow::error::ArrowError) -> EmberError {
    match e {
        arrow::error::ArrowError::IoError(_, source) => stdout_err(source),
        other => arrow_err(other),
    }
}

fn stdout_err(source: std::io::Error) -> EmberError {
    EmberError::Io {
        action: "writing results to",
        path: "standard output".into(),
        source,
    }
}
