//! Reading CSV and JSON record by record under a bad-row policy: the session's side of
//! `bad_rows` (`ember.input.bad_rows`).

use crate::bad_rows::{
    BAD_ROWS_ACCUMULATOR, BadRows, CHECKED_CSV_FN, CheckedCsv, infer_csv_schema, input_files, json,
};
use crate::dataset::Dataset;
use crate::error::{EmberError, Result};
use crate::shared::LongAccumulator;
use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::DataFusionError;
use std::path::Path;
use std::sync::Arc;

use super::Session;

impl Session {
    /// The CSV files at `path` (a file or a folder) read record by record, each row
    /// checked against the inferred schema, bad rows handled by `policy`. After a job,
    /// [`Session::bad_rows`] tells how many were skipped or quarantined.
    pub async fn read_csv_checked(&self, path: &str, policy: &BadRows) -> Result<Dataset<'_>> {
        self.read_checked(path, policy, false)
    }

    /// The newline-delimited JSON files at `path` (a file, or the `.json` and `.ndjson`
    /// files of a folder) read line by line, each line checked to be an object whose
    /// values fit the schema the first 1000 lines give (as [`Self::read_csv_checked`]),
    /// bad lines handled by `policy`.
    pub async fn read_json_checked(&self, path: &str, policy: &BadRows) -> Result<Dataset<'_>> {
        self.read_checked(path, policy, true)
    }

    fn read_checked(&self, path: &str, policy: &BadRows, json: bool) -> Result<Dataset<'_>> {
        let files = if json {
            input_files(Path::new(path), &["json", "ndjson"])?
        } else {
            input_files(Path::new(path), &["csv"])?
        };
        let columns = if json {
            let file = std::fs::File::open(&files[0]).map_err(|source| EmberError::Io {
                action: "opening",
                path: files[0].clone(),
                source,
            })?;
            json::infer_schema(std::io::BufReader::new(file)).map_err(|message| {
                EmberError::InvalidArgument {
                    operation: "reading JSON",
                    message: format!("{}: {message}", files[0].display()),
                }
            })?
        } else {
            infer_csv_schema(&files[0])?
        };
        let names: Vec<String> = files
            .iter()
            .map(|f| f.to_string_lossy().into_owned())
            .collect();
        let paths = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("path", DataType::Utf8, false)])),
            vec![Arc::new(StringArray::from(names))],
        )
        .map_err(DataFusionError::from)?;
        self.long_accumulator(BAD_ROWS_ACCUMULATOR);
        let args = serde_json::to_string(&CheckedCsv {
            columns,
            policy: policy.clone(),
            json,
        })
        .map_err(|e| EmberError::Internal {
            message: format!("CSV arguments: {e}"),
        })?;
        self.from_batches(vec![paths])?
            .map_partitions(CHECKED_CSV_FN, &args)
    }

    /// Rows skipped or quarantined by the jobs that read [`Session::read_csv_checked`]
    /// datasets since the last such dataset was made.
    pub fn bad_rows(&self) -> u64 {
        LongAccumulator::named(BAD_ROWS_ACCUMULATOR)
            .value(self)
            .max(0) as u64
    }
}
