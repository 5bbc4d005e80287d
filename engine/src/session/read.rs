//! Datasets from the session: [`Session::from_batches`], tables and files as
//! [`Dataset`](crate::Dataset)s.

use crate::dataset::{Dataset, TEXT_QUOTE, TEXT_SEPARATOR};
use crate::error::{EmberError, Result};
use crate::tables::{FileFormat, TableSpec};
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::CsvReadOptions;
use std::sync::Arc;

use super::Session;

impl Session {
    /// The Parquet files at `path` (a file, a folder or a glob) as a dataset.
    pub async fn read_parquet(&self, path: &str) -> Result<Dataset<'_>> {
        self.read_files(path, FileFormat::Parquet).await
    }

    /// The CSV files (with a header line) at `path` as a dataset.
    pub async fn read_csv(&self, path: &str) -> Result<Dataset<'_>> {
        self.read_files(path, FileFormat::Csv).await
    }

    /// The text files at `path` (a file, a folder or a glob) as a dataset of one `value`
    /// column (Utf8), one row per line. Lines end at `\n` (or `\r\n`); each task reads a
    /// byte range of the files, cut at line ends.
    pub async fn read_text(&self, path: &str) -> Result<Dataset<'_>> {
        let spec = TableSpec::new("text files", path, None);
        spec.check_exists()?;
        // Every file of a folder or glob, whatever its extension.
        let extension = spec.extension_to_list(String::new());
        let schema = Schema::new(vec![Field::new("value", DataType::Utf8, true)]);
        // The CSV reader with no header, no quoting and a separator that text does not
        // use reads each line whole as one field.
        let options = CsvReadOptions::new()
            .has_header(false)
            .delimiter(TEXT_SEPARATOR)
            .quote(TEXT_QUOTE)
            .schema(&schema)
            .file_extension(&extension);
        let frame =
            self.context()
                .read_csv(path, options)
                .await
                .map_err(|e| EmberError::Table {
                    name: spec.name.clone(),
                    path: path.to_string(),
                    message: e.to_string(),
                })?;
        Ok(Dataset::new(self, frame))
    }

    /// The newline-delimited JSON files at `path` as a dataset.
    pub async fn read_json(&self, path: &str) -> Result<Dataset<'_>> {
        self.read_files(path, FileFormat::Json).await
    }

    async fn read_files(&self, path: &str, format: FileFormat) -> Result<Dataset<'_>> {
        let spec = TableSpec::new(format!("{format} files"), path, Some(format));
        let frame = spec.read(self.context()).await?;
        Ok(Dataset::new(self, frame))
    }

    /// `batches` as a dataset, spread round-robin over as many partitions as the cluster
    /// has task slots. The rows travel inside the task plans, so this suits small data.
    pub fn from_batches(&self, batches: Vec<RecordBatch>) -> Result<Dataset<'_>> {
        let Some(first) = batches.first() else {
            return Err(EmberError::InvalidArgument {
                operation: "from_batches",
                message: "needs at least one batch (for the schema)".into(),
            });
        };
        let schema = first.schema();
        let count = self.config().target_partitions().min(batches.len()).max(1);
        let mut partitions: Vec<Vec<RecordBatch>> = vec![Vec::new(); count];
        for (i, batch) in batches.into_iter().enumerate() {
            if batch.schema() != schema {
                return Err(EmberError::InvalidArgument {
                    operation: "from_batches",
                    message: format!(
                        "batch {i} has schema {} but batch 0 has {}",
                        batch.schema(),
                        schema
                    ),
                });
            }
            partitions[i % count].push(batch);
        }
        let table = MemTable::try_new(schema, partitions)?;
        let frame = self.context().read_table(Arc::new(table))?;
        Ok(Dataset::new(self, frame))
    }

    /// A registered table (SQL name) as a dataset.
    pub async fn table(&self, name: &str) -> Result<Dataset<'_>> {
        Ok(Dataset::new(self, self.context().table(name).await?))
    }

    /// The result of a query as a dataset, to continue with DSL operations.
    pub async fn sql_dataset(&self, sql: &str) -> Result<Dataset<'_>> {
        Ok(Dataset::new(self, self.context().sql(sql).await?))
    }
}
