//! TPC-H generation: options, the parallel driver, and the completion marker.
//!
//! [`generate_tpch`] writes every table under `OUT/<table>/part-<i>.parquet`
//! using `tpchgen`'s row generators, then writes `OUT/_SUCCESS`.
//! [`tpch_is_complete`] checks for that layout. The schemas live in
//! [`schema`], the row-to-batch conversion in [`builders`], the parallel
//! driver in [`run`] and the atomic file writing in [`writer`].

pub(crate) mod builders;
mod run;
mod schema;
mod table;
pub(crate) mod writer;

#[cfg(test)]
mod tests;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;

use self::run::{plan_tasks, run_tasks};
use self::table::TABLE_NAMES;
pub use self::table::TpchTable;
use self::writer::is_generated_file_name;
use crate::DatasetError;

/// Name of the marker file [`generate_tpch`] writes into the output folder
/// once every table is complete.
pub const SUCCESS_MARKER: &str = "_SUCCESS";

/// Smallest accepted scale factor: below it `tpchgen` would generate no
/// supplier, and its supplier-key arithmetic divides by the supplier count.
const MIN_SCALE_FACTOR: f64 = 0.0001;
/// Largest accepted scale factor, the top of the TPC-H specification.
const MAX_SCALE_FACTOR: f64 = 100_000.0;

/// The names of the eight TPC-H tables, in [`TpchTable::ALL`] order.
pub fn tpch_tables() -> &'static [&'static str] {
    &TABLE_NAMES
}

/// The Arrow schema of table `table` (lower-case name), if it is a TPC-H table.
pub fn tpch_schema(table: &str) -> Option<SchemaRef> {
    TpchTable::from_name(table).map(TpchTable::schema)
}

/// What [`generate_tpch`] generates and where.
#[derive(Debug, Clone, PartialEq)]
pub struct TpchOptions {
    /// TPC-H scale factor: 1.0 is about 1 GB of raw data. Must be finite and
    /// between 0.0001 and 100,000.
    pub scale_factor: f64,
    /// Output folder; one sub-folder per table is created in it.
    pub out_dir: PathBuf,
    /// Parquet files per scaled table (at least 1). `region` and `nation`
    /// always get a single file.
    pub parts: usize,
}

impl TpchOptions {
    /// Options for `scale_factor` into `out_dir`, one file per table.
    pub fn new(scale_factor: f64, out_dir: impl Into<PathBuf>) -> Self {
        Self {
            scale_factor,
            out_dir: out_dir.into(),
            parts: 1,
        }
    }

    /// Sets [`TpchOptions::parts`].
    pub fn with_parts(mut self, parts: usize) -> Self {
        self.parts = parts;
        self
    }

    /// Checks the options and returns the part count as `tpchgen` takes it.
    fn validate(&self) -> Result<i32, DatasetError> {
        let sf = self.scale_factor;
        if !sf.is_finite() || sf <= 0.0 {
            return Err(DatasetError::InvalidOption {
                option: "scale_factor",
                message: format!("must be a finite number greater than 0, got {sf}"),
            });
        }
        if !(MIN_SCALE_FACTOR..=MAX_SCALE_FACTOR).contains(&sf) {
            return Err(DatasetError::InvalidOption {
                option: "scale_factor",
                message: format!(
                    "must be between {MIN_SCALE_FACTOR} and {MAX_SCALE_FACTOR}, got {sf}"
                ),
            });
        }
        if self.out_dir.as_os_str().is_empty() {
            return Err(DatasetError::InvalidOption {
                option: "out_dir",
                message: "must not be empty".to_string(),
            });
        }
        if self.parts == 0 {
            return Err(DatasetError::InvalidOption {
                option: "parts",
                message: "must be at least 1, got 0".to_string(),
            });
        }
        i32::try_from(self.parts).map_err(|_| DatasetError::InvalidOption {
            option: "parts",
            message: format!("must be at most {}, got {}", i32::MAX, self.parts),
        })
    }
}

/// Rows and files written for one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    /// The table.
    pub table: TpchTable,
    /// Number of Parquet files written.
    pub files: usize,
    /// Number of rows written, over all files.
    pub rows: u64,
}

/// What [`generate_tpch`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpchSummary {
    /// One entry per table, in [`TpchTable::ALL`] order.
    pub tables: Vec<TableSummary>,
}

impl TpchSummary {
    /// Rows written for the table named `table`, if it is a TPC-H table.
    pub fn rows(&self, table: &str) -> Option<u64> {
        self.tables
            .iter()
            .find(|summary| summary.table.name() == table)
            .map(|summary| summary.rows)
    }

    /// Rows written over all tables.
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|summary| summary.rows).sum()
    }
}

/// Generates all eight TPC-H tables as Parquet files under
/// [`TpchOptions::out_dir`] and returns the rows written per table.
///
/// The layout is `OUT/<table>/part-<i>.parquet` with `i` in `0..parts` for
/// the scaled tables and `i = 0` for `region` and `nation`. Files are
/// generated in parallel on up to `available_parallelism` threads, each
/// written under a hidden temporary name and renamed when complete. Any
/// `_SUCCESS` marker and `part-*.parquet` files from an earlier run are
/// removed first; `_SUCCESS` is written last, only on success.
pub fn generate_tpch(opts: &TpchOptions) -> Result<TpchSummary, DatasetError> {
    generate_tpch_with_progress(opts, &|_, _| {})
}

/// [`generate_tpch`], telling `progress` the files finished and the files in all after
/// each file (from the generator threads).
pub fn generate_tpch_with_progress(
    opts: &TpchOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<TpchSummary, DatasetError> {
    let part_count = opts.validate()?;
    prepare_output(&opts.out_dir)?;

    let tasks = plan_tasks(part_count);
    let rows = run_tasks(&tasks, opts.scale_factor, &opts.out_dir, progress)?;

    // `ALL` is in declaration order, so `table as usize` indexes `tables`.
    let mut tables: Vec<TableSummary> = TpchTable::ALL
        .into_iter()
        .map(|table| TableSummary {
            table,
            files: 0,
            rows: 0,
        })
        .collect();
    for (task, count) in tasks.iter().zip(&rows) {
        if let Some(summary) = tables.get_mut(task.table as usize) {
            summary.files += 1;
            summary.rows += count;
        }
    }
    let summary = TpchSummary { tables };
    write_success_marker(opts, &summary)?;
    Ok(summary)
}

/// Whether `dir` holds a complete data set written by [`generate_tpch`]:
/// the `_SUCCESS` marker exists and every table folder holds at least one
/// `.parquet` file. Unreadable folders count as incomplete.
pub fn tpch_is_complete(dir: &Path) -> bool {
    dir.join(SUCCESS_MARKER).is_file()
        && TpchTable::ALL
            .into_iter()
            .all(|table| has_parquet_file(&dir.join(table.name())))
}

/// Whether `dir` contains a visible regular file ending in `.parquet`.
fn has_parquet_file(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        !hidden && path.extension() == Some(OsStr::new("parquet")) && path.is_file()
    })
}

/// Creates the output and table folders and removes what an earlier run
/// left: the marker first (so the folder reads as incomplete), then our
/// data and temporary files.
fn prepare_output(out_dir: &Path) -> Result<(), DatasetError> {
    fs::create_dir_all(out_dir).map_err(|source| DatasetError::io(out_dir, source))?;
    let marker = out_dir.join(SUCCESS_MARKER);
    match fs::remove_file(&marker) {
        Ok(()) => {}
        Err(source) if source.kind() == ErrorKind::NotFound => {}
        Err(source) => return Err(DatasetError::io(marker, source)),
    }
    for table in TpchTable::ALL {
        let dir = out_dir.join(table.name());
        fs::create_dir_all(&dir).map_err(|source| DatasetError::io(&dir, source))?;
        remove_generated_files(&dir)?;
    }
    Ok(())
}

/// Removes `part-*.parquet` and temporary files from a table folder.
fn remove_generated_files(dir: &Path) -> Result<(), DatasetError> {
    let entries = fs::read_dir(dir).map_err(|source| DatasetError::io(dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| DatasetError::io(dir, source))?;
        let generated = entry
            .file_name()
            .to_str()
            .is_some_and(is_generated_file_name);
        if generated {
            let path = entry.path();
            fs::remove_file(&path).map_err(|source| DatasetError::io(&path, source))?;
        }
    }
    Ok(())
}

/// Writes `_SUCCESS` (options and row counts, one `key=value` a line)
/// through a temporary file and a rename.
fn write_success_marker(opts: &TpchOptions, summary: &TpchSummary) -> Result<(), DatasetError> {
    let mut text = format!("scale_factor={}\nparts={}\n", opts.scale_factor, opts.parts);
    for table in &summary.tables {
        // Writing to a `String` cannot fail.
        let _ = writeln!(text, "rows.{}={}", table.table.name(), table.rows);
    }
    let temp = opts.out_dir.join("._SUCCESS.inprogress");
    let marker = opts.out_dir.join(SUCCESS_MARKER);
    fs::write(&temp, text).map_err(|source| DatasetError::io(&temp, source))?;
    fs::rename(&temp, &marker).map_err(|source| DatasetError::io(&marker, source))
}
