//! Writing one Parquet file from a row iterator, atomically.
//!
//! Rows are gathered into batches of [`BATCH_ROWS`] and streamed through
//! Parquet's `ArrowWriter` into a hidden temporary file next to the target;
//! only a complete, synced file is renamed to its final `part-<i>.parquet`
//! name, so a crash never leaves a partial `part-*.parquet` behind.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::error::ArrowError;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::properties::WriterProperties;

use super::builders::BatchBuilder;
use crate::DatasetError;

/// Rows per record batch handed to the Parquet writer.
pub(crate) const BATCH_ROWS: usize = 8192;

/// Rows per Parquet row group: 16 batches.
///
/// Readers split files into tasks by byte range, and a row group goes whole to the range it
/// starts in; with the writer's default (about a million rows) a 1.5 million row lineitem file
/// holds two unequal groups and one task gets twice the rows of another. Groups this size
/// give every table of SF1 and above enough of them to split evenly, and are still large
/// enough for Parquet's column statistics and compression to work well.
pub(crate) const ROW_GROUP_ROWS: usize = 16 * BATCH_ROWS;

/// Final name of data file `index` of a table.
pub(crate) fn part_file_name(index: usize) -> String {
    format!("part-{index}.parquet")
}

/// Name of the temporary file data file `index` is written to.
///
/// It starts with a dot and does not end in `.parquet`, so readers that
/// list a table's folder skip it.
pub(crate) fn temp_file_name(index: usize) -> String {
    format!(".part-{index}.parquet.inprogress")
}

/// Whether `name` is a data file or temporary file this module writes.
pub(crate) fn is_generated_file_name(name: &str) -> bool {
    let data = name.starts_with("part-") && name.ends_with(".parquet");
    let temp = name.starts_with(".part-") && name.ends_with(".parquet.inprogress");
    data || temp
}

/// Writer settings shared by every file.
fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build()
}

/// Writes `rows` to `dir/part-<index>.parquet` and returns the row count.
///
/// `table` names the table in errors. On failure the temporary file is
/// removed (best effort) and no data file appears.
pub(crate) fn write_part_file<R, B>(
    table: &'static str,
    rows: impl IntoIterator<Item = R>,
    builder: B,
    dir: &Path,
    index: usize,
) -> Result<u64, DatasetError>
where
    B: BatchBuilder<R>,
{
    let temp = dir.join(temp_file_name(index));
    let target = dir.join(part_file_name(index));
    match write_to(table, rows, builder, &temp) {
        Ok(count) => {
            fs::rename(&temp, &target).map_err(|source| DatasetError::io(&target, source))?;
            Ok(count)
        }
        Err(error) => {
            // The write already failed; a leftover temporary file is hidden
            // and gets cleaned by the next run, so its removal may fail.
            let _ = fs::remove_file(&temp);
            Err(error)
        }
    }
}

/// Streams all rows into a new Parquet file at `path`, synced to disk.
fn write_to<R, B>(
    table: &'static str,
    rows: impl IntoIterator<Item = R>,
    mut builder: B,
    path: &Path,
) -> Result<u64, DatasetError>
where
    B: BatchBuilder<R>,
{
    let parquet_error = |source: ParquetError| DatasetError::Parquet {
        path: PathBuf::from(path),
        source,
    };
    let arrow_error = |source: ArrowError| DatasetError::Arrow { table, source };

    let file = File::create(path).map_err(|source| DatasetError::io(path, source))?;
    let mut writer = ArrowWriter::try_new(file, builder.schema(), Some(writer_properties()))
        .map_err(parquet_error)?;

    let mut count: u64 = 0;
    for row in rows {
        builder.append(row);
        count += 1;
        if builder.len() >= BATCH_ROWS {
            let batch = builder.finish().map_err(arrow_error)?;
            writer.write(&batch).map_err(parquet_error)?;
        }
    }
    if builder.len() > 0 {
        let batch = builder.finish().map_err(arrow_error)?;
        writer.write(&batch).map_err(parquet_error)?;
    }

    let file = writer.into_inner().map_err(parquet_error)?;
    file.sync_all()
        .map_err(|source| DatasetError::io(path, source))?;
    Ok(count)
}
