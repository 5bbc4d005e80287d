//! Tables over files: [`TableSpec`] parses `NAME=PATH[:FORMAT]` and registers the table in a
//! DataFusion context.

use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use datafusion::parquet::file::metadata::PageIndexPolicy;
use datafusion::prelude::{
    CsvReadOptions, DataFrame, JsonReadOptions, ParquetReadOptions, SessionContext,
};

use crate::error::{EmberError, Result};

/// File formats a table can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Apache Parquet.
    Parquet,
    /// Comma-separated values with a header line.
    Csv,
    /// Newline-delimited JSON objects.
    Json,
    /// A Delta Lake table (a folder with a `_delta_log/`), at its latest version.
    Delta,
    /// A PostgreSQL table: `postgres://USER:PASSWORD@HOST:PORT/DB?table=NAME` (with
    /// `partition_column`, `lower_bound`, `upper_bound` and `num_partitions` for a
    /// partitioned read).
    Postgres,
    /// A Kafka topic: `kafka://HOST:PORT/TOPIC` (with `starting_offsets`,
    /// `ending_offsets`, `value_format` and the other options as a query string).
    Kafka,
}

impl FileFormat {
    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Parquet => "parquet",
            FileFormat::Csv => "csv",
            FileFormat::Json => "json",
            // The data files of a Delta table.
            FileFormat::Delta => "parquet",
            FileFormat::Postgres => "postgres",
            FileFormat::Kafka => "kafka",
        }
    }

    /// The format an extension stands for (`parquet`, `csv`, `json`, `ndjson`, `jsonl`).
    pub fn from_extension(ext: &str) -> Option<Self> {
        match ext.to_ascii_lowercase().as_str() {
            "parquet" | "pq" => Some(FileFormat::Parquet),
            "csv" => Some(FileFormat::Csv),
            "json" | "ndjson" | "jsonl" => Some(FileFormat::Json),
            _ => None,
        }
    }
}

impl FromStr for FileFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "parquet" => Ok(FileFormat::Parquet),
            "csv" => Ok(FileFormat::Csv),
            "json" => Ok(FileFormat::Json),
            "delta" => Ok(FileFormat::Delta),
            "postgres" => Ok(FileFormat::Postgres),
            "kafka" => Ok(FileFormat::Kafka),
            other => Err(format!(
                "unknown format '{other}' (expected parquet, csv, json, delta, postgres or \
                 kafka)"
            )),
        }
    }
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileFormat::Delta => f.write_str("delta"),
            other => f.write_str(other.extension()),
        }
    }
}

/// A table to register: a name, a file / folder / glob, and a format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// The table's name in SQL.
    pub name: String,
    /// A file, a folder of files, or a glob.
    pub path: String,
    /// The format; guessed from the extension when `None`.
    pub format: Option<FileFormat>,
}

impl TableSpec {
    /// A table `name` over `path`.
    pub fn new(
        name: impl Into<String>,
        path: impl Into<String>,
        format: Option<FileFormat>,
    ) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
            format,
        }
    }

    fn is_glob(&self) -> bool {
        self.path.contains(['*', '?', '['])
    }

    /// The format: given, or guessed from the path's extension (or a folder's files).
    pub fn resolve_format(&self) -> Result<FileFormat> {
        if let Some(format) = self.format {
            return Ok(format);
        }
        if self.path.starts_with("postgres://") || self.path.starts_with("postgresql://") {
            return Ok(FileFormat::Postgres);
        }
        if self.path.starts_with("kafka://") {
            return Ok(FileFormat::Kafka);
        }
        let path = Path::new(&self.path);
        if let Some(format) = path
            .extension()
            .and_then(|e| e.to_str())
            .and_then(FileFormat::from_extension)
        {
            return Ok(format);
        }
        if path.join("_delta_log").is_dir() {
            return Ok(FileFormat::Delta);
        }
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| self.error(e.to_string()))?;
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(['.', '_']) {
                    continue;
                }
                if let Some(format) = Path::new(name.as_ref())
                    .extension()
                    .and_then(|e| e.to_str())
                    .and_then(FileFormat::from_extension)
                {
                    return Ok(format);
                }
            }
        }
        Err(self.error("cannot tell the format from the path; add :parquet, :csv, :json or :delta"))
    }

    /// Registers the table in `ctx`, checking that the path exists.
    pub async fn register(&self, ctx: &SessionContext) -> Result<()> {
        if self.name.is_empty() {
            return Err(self.error("the table name is empty"));
        }
        let (format, extension) = self.checked_format()?;
        let registered = match format {
            FileFormat::Parquet => {
                let options = ParquetReadOptions {
                    file_extension: &extension,
                    ..Default::default()
                };
                ctx.register_parquet(&self.name, &self.listing_path(), options)
                    .await
            }
            FileFormat::Csv => {
                let options = CsvReadOptions::new()
                    .has_header(true)
                    .file_extension(&extension);
                ctx.register_csv(&self.name, &self.listing_path(), options)
                    .await
            }
            FileFormat::Json => {
                let options = JsonReadOptions {
                    file_extension: &extension,
                    ..Default::default()
                };
                ctx.register_json(&self.name, &self.listing_path(), options)
                    .await
            }
            FileFormat::Delta => {
                let provider = self.delta(ctx).await?;
                ctx.register_table(self.name.as_str(), provider)?;
                return Ok(());
            }
            FileFormat::Postgres => {
                let provider = self.postgres().await?;
                ctx.register_table(self.name.as_str(), provider)?;
                return Ok(());
            }
            FileFormat::Kafka => {
                let options = ember_connectors::kafka::KafkaOptions::from_url(&self.path)?;
                let provider = ember_connectors::kafka::KafkaTable::open(options).await?;
                ctx.register_table(self.name.as_str(), std::sync::Arc::new(provider))?;
                return Ok(());
            }
        };
        registered.map_err(|e| self.explain(e, format))
    }

    /// The files as a DataFrame of `ctx`, without registering a name.
    pub async fn read(&self, ctx: &SessionContext) -> Result<DataFrame> {
        let (format, extension) = self.checked_format()?;
        let read = match format {
            FileFormat::Parquet => {
                let options = ParquetReadOptions {
                    file_extension: &extension,
                    ..Default::default()
                };
                ctx.read_parquet(self.listing_path(), options).await
            }
            FileFormat::Csv => {
                let options = CsvReadOptions::new()
                    .has_header(true)
                    .file_extension(&extension);
                ctx.read_csv(self.listing_path(), options).await
            }
            FileFormat::Json => {
                let options = JsonReadOptions {
                    file_extension: &extension,
                    ..Default::default()
                };
                ctx.read_json(self.listing_path(), options).await
            }
            FileFormat::Delta => return Ok(ctx.read_table(self.delta(ctx).await?)?),
            FileFormat::Postgres => return Ok(ctx.read_table(self.postgres().await?)?),
            FileFormat::Kafka => {
                let options = ember_connectors::kafka::KafkaOptions::from_url(&self.path)?;
                let provider = ember_connectors::kafka::KafkaTable::open(options).await?;
                return Ok(ctx.read_table(std::sync::Arc::new(provider))?);
            }
        };
        read.map_err(|e| self.explain(e, format))
    }

    /// The Delta table at the path, at its latest version.
    async fn delta(
        &self,
        ctx: &SessionContext,
    ) -> Result<std::sync::Arc<ember_connectors::delta::DeltaTableProvider>> {
        use ember_connectors::delta;
        let url = delta::table_url(&self.path)?;
        let store = delta::store_for(ctx.runtime_env().as_ref(), &url)?;
        let table = delta::load(
            std::sync::Arc::clone(&store),
            &url,
            &self.path,
            &delta::DeltaVersion::Latest,
        )
        .await?;
        Ok(std::sync::Arc::new(
            delta::DeltaTableProvider::try_new(&table, &self.path, &url)?.following_latest(table),
        ))
    }

    /// The PostgreSQL table the URL names.
    async fn postgres(&self) -> Result<std::sync::Arc<ember_connectors::postgres::PostgresTable>> {
        use ember_connectors::postgres::{PostgresOptions, PostgresTable};
        let (url, options) = PostgresOptions::from_url(&self.path)?;
        Ok(std::sync::Arc::new(
            PostgresTable::open(&url, options).await?,
        ))
    }

    /// `error` as this table's error; a schema that does not merge names two files that
    /// disagree.
    fn explain(&self, error: datafusion::error::DataFusionError, format: FileFormat) -> EmberError {
        let message = error.to_string();
        // DataFusion's CSV reader counts lines from where its buffer starts: read the file
        // record by record for the line of the first bad row.
        let local = Path::new(&self.path);
        if format == FileFormat::Csv
            && message.contains("Csv error")
            && local.is_file()
            && let Some((line, reason)) = crate::bad_rows::first_bad_row(
                local,
                // When DataFusion infers a schema it complains of field counts only (a
                // value that does not parse makes its column text).
                message.contains("unequal lengths"),
            )
        {
            return self.error(format!(
                "{}:{line}: {reason} (ember.input.bad_rows / --bad-rows skip or \
                 quarantine=PATH to go on)",
                self.path
            ));
        }
        if format == FileFormat::Json
            && (message.contains("Json error") || message.contains("JSON"))
            && local.is_file()
            // DataFusion reads values by the types its inference gave: it fails on lines
            // that are not JSON objects first.
            && let Some((line, reason)) = crate::bad_rows::first_bad_json_row(local, true)
        {
            return self.error(format!(
                "{}:{line}: {reason} (ember.input.bad_rows / --bad-rows skip or \
                 quarantine=PATH to go on)",
                self.path
            ));
        }
        if format == FileFormat::Parquet
            && message.contains("Parquet error")
            && let Some((file, reason)) = self.unreadable_parquet_file()
        {
            return self.error(format!(
                "{}: not a readable Parquet file ({reason})",
                file.display()
            ));
        }
        if format == FileFormat::Parquet
            && message.contains("Fail to merge schema")
            && let Some(files) = self.disagreeing_parquet_files()
        {
            return self.error(format!("{message}: {files}"));
        }
        self.error(message)
    }

    /// The local Parquet files of the table: the file, or the folder's `.parquet` files in
    /// name order.
    fn local_parquet_files(&self) -> Vec<std::path::PathBuf> {
        let path = Path::new(&self.path);
        if path.is_file() {
            return vec![path.to_path_buf()];
        }
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// The first local Parquet file of the table whose footer does not read, and why.
    fn unreadable_parquet_file(&self) -> Option<(std::path::PathBuf, String)> {
        self.local_parquet_files().into_iter().find_map(|path| {
            let file = std::fs::File::open(&path).ok()?;
            // With the page index, as DataFusion reads it.
            let options =
                ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
            ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
                .err()
                .map(|e| (path, e.to_string()))
        })
    }

    /// The first Parquet file of a local folder and the first whose schema differs from
    /// it, with both schemas.
    fn disagreeing_parquet_files(&self) -> Option<String> {
        let files = self.local_parquet_files();
        let schema_of = |path: &Path| {
            let file = std::fs::File::open(path).ok()?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).ok()?;
            Some(builder.schema().clone())
        };
        let first = files.first()?;
        let expected = schema_of(first)?;
        for file in &files[1..] {
            let schema = schema_of(file)?;
            if schema.fields() != expected.fields() {
                let describe = |s: &arrow::datatypes::Schema| {
                    s.fields()
                        .iter()
                        .map(|f| format!("{} {}", f.name(), f.data_type()))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Some(format!(
                    "{} has ({}) but {} has ({})",
                    first.display(),
                    describe(&expected),
                    file.display(),
                    describe(&schema)
                ));
            }
        }
        None
    }

    /// The format and the file extension to list, once the path is known to exist.
    fn checked_format(&self) -> Result<(FileFormat, String)> {
        self.check_exists()?;
        let local = Path::new(&self.path);
        if !self.path.contains("://")
            && local.is_file()
            && std::fs::metadata(local).is_ok_and(|m| m.len() == 0)
        {
            return Err(self.error("the file is empty (not even a header line or a footer)"));
        }
        let format = self.resolve_format()?;
        Ok((
            format,
            self.extension_to_list(format!(".{}", format.extension())),
        ))
    }

    /// The path DataFusion lists: an object-store URL whose last part has no file
    /// extension names a folder (`s3://bucket/tables/lineitem` is `.../lineitem/`), as
    /// local folders are found by looking.
    fn listing_path(&self) -> String {
        let url = self.path.contains("://");
        let last = self.path.rsplit('/').next().unwrap_or_default();
        if url && !self.is_glob() && !self.path.ends_with('/') && !last.contains('.') {
            format!("{}/", self.path)
        } else {
            self.path.clone()
        }
    }

    /// Fails, naming the path, when a local path (not a glob) does not exist.
    pub(crate) fn check_exists(&self) -> Result<()> {
        let local = !self.path.contains("://");
        if local && !self.is_glob() && !Path::new(&self.path).exists() {
            return Err(self.error("no such file or directory"));
        }
        Ok(())
    }

    /// The extension a listing keeps: a single local file is read whatever its extension
    /// (so its own); folders and globs keep to files ending in `listed`.
    pub(crate) fn extension_to_list(&self, listed: String) -> String {
        let path = Path::new(&self.path);
        if !self.path.contains("://") && path.is_file() {
            path.extension()
                .and_then(|e| e.to_str())
                .map(|e| format!(".{e}"))
                .unwrap_or_default()
        } else {
            listed
        }
    }

    /// An error about this table that names it and its path.
    pub(crate) fn error(&self, message: impl Into<String>) -> EmberError {
        EmberError::Table {
            name: self.name.clone(),
            path: self.path.clone(),
            message: message.into(),
        }
    }
}

impl FromStr for TableSpec {
    type Err = EmberError;

    /// Parses `NAME=PATH[:FORMAT]`.
    fn from_str(s: &str) -> Result<Self> {
        let Some((name, rest)) = s.split_once('=') else {
            return Err(EmberError::Config {
                key: "--table".into(),
                message: format!("expected NAME=PATH[:FORMAT], got '{s}'"),
            });
        };
        let (path, format) = match rest.rsplit_once(':') {
            Some((path, suffix)) if !path.is_empty() && !suffix.contains('/') => {
                match suffix.parse::<FileFormat>() {
                    Ok(format) => (path, Some(format)),
                    Err(message) => {
                        return Err(EmberError::Config {
                            key: "--table".into(),
                            message: format!("{message} in '{s}'"),
                        });
                    }
                }
            }
            _ => (rest, None),
        };
        if name.trim().is_empty() || path.is_empty() {
            return Err(EmberError::Config {
                key: "--table".into(),
                message: format!("expected NAME=PATH[:FORMAT], got '{s}'"),
            });
        }
        Ok(TableSpec::new(name.trim(), path, format))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_path_and_format() {
        let spec: TableSpec = "t=/data/x.txt:csv".parse().expect("valid");
        assert_eq!(
            spec,
            TableSpec::new("t", "/data/x.txt", Some(FileFormat::Csv))
        );
        let spec: TableSpec = "t=/data/x.parquet".parse().expect("valid");
        assert_eq!(spec.format, None);
        assert_eq!(spec.resolve_format().expect("guessed"), FileFormat::Parquet);
        let spec: TableSpec = "t=s3://bucket/x/".parse().expect("valid");
        assert_eq!(spec.path, "s3://bucket/x/");
    }

    #[test]
    fn bad_specs_name_the_option() {
        let err = "nameless".parse::<TableSpec>().expect_err("no =");
        assert!(err.to_string().contains("--table"), "{err}");
        let err = "t=/x.csv:xml".parse::<TableSpec>().expect_err("bad format");
        assert!(err.to_string().contains("xml"), "{err}");
    }
}
