//! Printing results: [`OutputFormat`] and [`write_result`].

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
    let arrow_err = |e: arrow::error::ArrowError| EmberError::DataFusion(e.into());
    match format {
        OutputFormat::Table => {
            let table =
                pretty_format_batches_with_schema(schema.clone(), batches).map_err(arrow_err)?;
            writeln!(out, "{table}").map_err(stdout_err)?;
        }
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            if batches.is_empty() {
                writer
                    .write(&RecordBatch::new_empty(schema.clone()))
                    .map_err(arrow_err)?;
            }
            for batch in batches {
                writer.write(batch).map_err(arrow_err)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(arrow_err)?;
            }
            writer.finish().map_err(arrow_err)?;
        }
    }
    out.flush().map_err(stdout_err)
}

fn stdout_err(source: std::io::Error) -> EmberError {
    EmberError::Io {
        action: "writing results to",
        path: "standard output".into(),
        source,
    }
}
