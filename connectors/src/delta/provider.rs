//! [`DeltaTableProvider`]: one version of a Delta table as a DataFusion table. A scan keeps
//! the files that the filters do not rule out (partition values and the min, max and null
//! counts the log holds per file), and hands them to DataFusion's Parquet scan in groups
//! of about equal size, one group per task.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, FieldRef, Int64Type, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{Column, DFSchema, ScalarValue, Statistics};
use datafusion::datasource::TableProvider;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_optimizer::pruning::{PruningPredicateBuilder, PruningStatistics};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use deltalake_core::DeltaTable;
use object_store::path::Path as StorePath;
use url::Url;

use crate::error::{ConnectorError, Result};

/// One data file of the snapshot.
#[derive(Debug, Clone)]
struct DeltaFile {
    path: StorePath,
    size: u64,
    modified_ms: i64,
    partition_values: Vec<ScalarValue>,
}

/// Per-column statistics of the files, one entry per file, for pruning.
#[derive(Debug, Default)]
struct FileStats {
    min: HashMap<String, ArrayRef>,
    max: HashMap<String, ArrayRef>,
    nulls: HashMap<String, ArrayRef>,
    rows: Option<ArrayRef>,
}

/// A Delta table at one version.
#[derive(Debug)]
pub struct DeltaTableProvider {
    location: String,
    url: Url,
    version: u64,
    /// The data columns, then the partition columns (as the Parquet scan yields them).
    schema: SchemaRef,
    file_schema: SchemaRef,
    partition_fields: Vec<FieldRef>,
    files: Vec<DeltaFile>,
    stats: FileStats,
    total_rows: Option<u64>,
    /// For a table read at its latest version: the table, brought up to date at each scan
    /// (reading only the commits since), so that a registered table shows what later
    /// writes committed.
    follow: Option<tokio::sync::Mutex<DeltaTable>>,
}

impl DeltaTableProvider {
    /// The snapshot `table` holds, read from `location` (as the user wrote it) at `url`.
    pub fn try_new(table: &DeltaTable, location: &str, url: &Url) -> Result<Self> {
        let error = |message: String| ConnectorError::Delta {
            location: location.to_string(),
            message,
        };
        let snapshot = table.snapshot().map_err(|e| error(e.to_string()))?;
        let version = snapshot.version();
        let metadata = snapshot.metadata();
        if let Some(mode) = metadata.configuration().get("delta.columnMapping.mode")
            && mode != "none"
        {
            return Err(error(format!(
                "the table uses column mapping (mode '{mode}'), which Ember does not read yet"
            )));
        }
        let partition_columns: Vec<String> = metadata.partition_columns().to_vec();
        let table_schema = snapshot.snapshot().arrow_schema();
        let mut data_fields = Vec::new();
        let mut partition_fields = Vec::new();
        for field in table_schema.fields() {
            let field = view_typed(field);
            if partition_columns.contains(field.name()) {
                partition_fields.push(field);
            } else {
                data_fields.push(field);
            }
        }
        // The partition columns in the order the log names them.
        partition_fields.sort_by_key(|f| {
            partition_columns
                .iter()
                .position(|c| c == f.name())
                .unwrap_or(usize::MAX)
        });
        let file_schema = Arc::new(Schema::new(data_fields));
        let schema = Arc::new(Schema::new(
            file_schema
                .fields()
                .iter()
                .chain(partition_fields.iter())
                .cloned()
                .collect::<Vec<_>>(),
        ));
        let actions = snapshot
            .add_actions_table(true)
            .map_err(|e| error(format!("reading the files of version {version}: {e}")))?;
        let (files, stats) = read_actions(&actions, url, &file_schema, &partition_fields)
            .map_err(|message| error(format!("version {version}: {message}")))?;
        let total_rows = stats.rows.as_ref().and_then(|rows| {
            let rows = rows.as_primitive::<arrow::datatypes::UInt64Type>();
            (rows.null_count() == 0).then(|| rows.values().iter().sum())
        });
        Ok(Self {
            location: location.to_string(),
            url: url.clone(),
            version,
            schema,
            file_schema,
            partition_fields,
            files,
            stats,
            total_rows,
            follow: None,
        })
    }

    /// This table, scanning the latest version of `table` (the table it was made from)
    /// each time it is scanned, rather than the version it was opened at.
    pub fn following_latest(mut self, table: DeltaTable) -> Self {
        self.follow = Some(tokio::sync::Mutex::new(table));
        self
    }

    /// The version this provider reads.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The table's location, as given.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The number of data files in this version.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Which files the conjunction of `filters` may match: all when there are none or
    /// they cannot be used.
    fn keep(&self, state: &dyn Session, filters: &[Expr]) -> Vec<bool> {
        let all = vec![true; self.files.len()];
        let Some(predicate) = conjunction(filters.iter().cloned()) else {
            return all;
        };
        let pruned = || -> DfResult<Vec<bool>> {
            let df_schema = DFSchema::try_from(Arc::clone(&self.schema))?;
            let physical = state.create_physical_expr(predicate, &df_schema)?;
            let Some(pruning) = PruningPredicateBuilder::new()
                .with_file_schema(Arc::clone(&self.schema))
                .build(physical)
            else {
                return Ok(vec![true; self.files.len()]);
            };
            pruning.prune(&Containers {
                provider: self,
                count: self.files.len(),
            })
        };
        match pruned() {
            Ok(keep) => keep,
            Err(e) => {
                tracing::debug!(table = %self.location, "no file pruning: {e}");
                all
            }
        }
    }
}

/// `field` with strings and binaries in their view layouts, as DataFusion's Parquet
/// reader decodes them by default (`schema_force_view_types`) and as Ember's Parquet
/// tables hold them: declared as `Utf8`, every string would be copied once more.
fn view_typed(field: &FieldRef) -> FieldRef {
    let data_type = match field.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 => DataType::Utf8View,
        DataType::Binary | DataType::LargeBinary => DataType::BinaryView,
        _ => return Arc::clone(field),
    };
    Arc::new(field.as_ref().clone().with_data_type(data_type))
}

/// The files and their statistics from the flattened add actions of a snapshot.
fn read_actions(
    actions: &RecordBatch,
    url: &Url,
    file_schema: &SchemaRef,
    partition_fields: &[FieldRef],
) -> std::result::Result<(Vec<DeltaFile>, FileStats), String> {
    let column = |name: &str| actions.column_by_name(name).cloned();
    let as_i64 = |array: ArrayRef| -> std::result::Result<ArrayRef, String> {
        cast(&array, &DataType::Int64).map_err(|e| e.to_string())
    };
    let paths = column("path").ok_or("the log lists no file paths")?;
    let paths = cast(&paths, &DataType::Utf8).map_err(|e| e.to_string())?;
    let paths = paths.as_string::<i32>();
    let sizes = as_i64(column("size_bytes").ok_or("the log lists no file sizes")?)?;
    let sizes = sizes.as_primitive::<Int64Type>();
    let modified = match column("modification_time") {
        Some(m) => Some(as_i64(m)?),
        None => None,
    };
    for (name, array) in actions.schema().fields().iter().zip(actions.columns()) {
        if name.name().starts_with("deletion_vector.") && array.null_count() < array.len() {
            return Err(
                "some files have deletion vectors, which Ember does not read yet".to_string(),
            );
        }
    }
    let mut partition_arrays = Vec::new();
    for field in partition_fields {
        let array = column(&format!("partition.{}", field.name()))
            .ok_or_else(|| format!("the log has no values of partition column {}", field.name()))?;
        let array = cast(&array, field.data_type()).map_err(|e| e.to_string())?;
        partition_arrays.push(array);
    }
    let root = StorePath::from_url_path(url.path()).map_err(|e| e.to_string())?;
    let mut files = Vec::with_capacity(actions.num_rows());
    for i in 0..actions.num_rows() {
        let raw = paths.value(i);
        let path = if raw.contains("://") {
            let file = Url::parse(raw).map_err(|e| format!("file {raw}: {e}"))?;
            if file.scheme() != url.scheme() || file.host_str() != url.host_str() {
                return Err(format!(
                    "file {raw} lies in another store than the table; Ember reads tables \
                     whose files are in the table's store"
                ));
            }
            StorePath::from_url_path(file.path()).map_err(|e| e.to_string())?
        } else {
            let decoded = percent_decode(raw);
            decoded
                .split('/')
                .filter(|p| !p.is_empty())
                .fold(root.clone(), |path, part| path.join(part))
        };
        let partition_values = partition_arrays
            .iter()
            .map(|a| ScalarValue::try_from_array(a, i).map_err(|e| e.to_string()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        files.push(DeltaFile {
            path,
            size: u64::try_from(sizes.value(i)).unwrap_or(0),
            modified_ms: modified
                .as_ref()
                .map_or(0, |m| m.as_primitive::<Int64Type>().value(i)),
            partition_values,
        });
    }

    let mut stats = FileStats::default();
    for field in file_schema.fields() {
        let name = field.name();
        for (prefix, into) in [("min", &mut stats.min), ("max", &mut stats.max)] {
            if let Some(array) = column(&format!("{prefix}.{name}"))
                && let Ok(array) = cast(&array, field.data_type())
            {
                into.insert(name.clone(), array);
            }
        }
        if let Some(array) = column(&format!("null_count.{name}"))
            && let Ok(array) = cast(&array, &DataType::UInt64)
        {
            stats.nulls.insert(name.clone(), array);
        }
    }
    for (field, array) in partition_fields.iter().zip(&partition_arrays) {
        stats.min.insert(field.name().clone(), Arc::clone(array));
        stats.max.insert(field.name().clone(), Arc::clone(array));
    }
    stats.rows = column("num_records").and_then(|a| cast(&a, &DataType::UInt64).ok());
    Ok((files, stats))
}

/// `text` with its `%XX` escapes decoded (paths in the log are URIs).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The files of a provider as pruning containers.
struct Containers<'a> {
    provider: &'a DeltaTableProvider,
    count: usize,
}

impl PruningStatistics for Containers<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.provider.stats.min.get(column.name()).cloned()
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.provider.stats.max.get(column.name()).cloned()
    }

    fn num_containers(&self) -> usize {
        self.count
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        self.provider.stats.nulls.get(column.name()).cloned()
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        self.provider.stats.rows.clone()
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

/// `files` in `groups` groups of about equal bytes (largest first, each into the
/// lightest group), each group in path order.
fn balanced_groups(mut files: Vec<PartitionedFile>, groups: usize) -> Vec<FileGroup> {
    let groups = groups.clamp(1, files.len().max(1));
    files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
    let mut buckets: Vec<(u64, Vec<PartitionedFile>)> = vec![(0, Vec::new()); groups];
    for file in files {
        if let Some(lightest) = buckets.iter_mut().min_by_key(|(bytes, _)| *bytes) {
            lightest.0 += file.object_meta.size;
            lightest.1.push(file);
        }
    }
    buckets
        .into_iter()
        .filter(|(_, files)| !files.is_empty())
        .map(|(_, mut files)| {
            files.sort_by(|a, b| a.object_meta.location.cmp(&b.object_meta.location));
            FileGroup::new(files)
        })
        .collect()
}

#[async_trait]
impl TableProvider for DeltaTableProvider {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if let Some(table) = &self.follow {
            let mut table = table.lock().await;
            table
                .update_incremental(None)
                .await
                .map_err(|e| ConnectorError::Delta {
                    location: self.location.clone(),
                    message: format!("reading its latest version: {e}"),
                })?;
            if table.version() != Some(self.version) {
                let latest = Self::try_new(&table, &self.location, &self.url)?;
                if latest.schema != self.schema {
                    return Err(ConnectorError::Delta {
                        location: self.location.clone(),
                        message: format!(
                            "its schema changed at version {} since it was registered; \
                             register it again",
                            latest.version
                        ),
                    }
                    .into());
                }
                return latest.scan(state, projection, filters, limit).await;
            }
        }
        let keep = self.keep(state, filters);
        let mut rows = Some(0_u64);
        let mut bytes = 0_u64;
        let files: Vec<PartitionedFile> = self
            .files
            .iter()
            .zip(&keep)
            .enumerate()
            .filter(|(_, (_, keep))| **keep)
            .map(|(i, (file, _))| {
                let counted = self.stats.rows.as_ref().and_then(|r| {
                    let r = r.as_primitive::<arrow::datatypes::UInt64Type>();
                    r.is_valid(i).then(|| r.value(i))
                });
                rows = rows.zip(counted).map(|(a, b)| a + b);
                bytes += file.size;
                let mut part = PartitionedFile::new(file.path.to_string(), file.size)
                    .with_partition_values(file.partition_values.clone());
                part.object_meta.location = file.path.clone();
                if let Some(modified) = chrono::DateTime::from_timestamp_millis(file.modified_ms) {
                    part.object_meta.last_modified = modified;
                }
                part
            })
            .collect();
        tracing::debug!(
            table = %self.location,
            version = self.version,
            files = files.len(),
            of = self.files.len(),
            "Delta scan"
        );
        if files.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let groups = balanced_groups(files, state.config().target_partitions());
        let store_url = ObjectStoreUrl::parse(format!(
            "{}://{}",
            self.url.scheme(),
            &self.url[url::Position::BeforeHost..url::Position::AfterPort]
        ))?;
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let source = format.file_source(
            TableSchema::builder(Arc::clone(&self.file_schema))
                .with_table_partition_cols(self.partition_fields.clone())
                .build(),
        );
        let mut statistics = Statistics::new_unknown(&self.schema);
        statistics.total_byte_size =
            Precision::Inexact(usize::try_from(bytes).unwrap_or(usize::MAX));
        if let Some(rows) = rows {
            statistics.num_rows = Precision::Exact(usize::try_from(rows).unwrap_or(usize::MAX));
        }
        let config = FileScanConfigBuilder::new(store_url, source)
            .with_file_groups(groups)
            .with_statistics(statistics)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }

    fn statistics(&self) -> Option<Statistics> {
        let mut statistics = Statistics::new_unknown(&self.schema);
        if let Some(rows) = self.total_rows {
            statistics.num_rows = Precision::Exact(usize::try_from(rows).unwrap_or(usize::MAX));
        }
        Some(statistics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_in_log_paths() {
        assert_eq!(percent_decode("a%20b/c=1%3A2.parquet"), "a b/c=1:2.parquet");
        assert_eq!(percent_decode("plain.parquet"), "plain.parquet");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
    }

    #[test]
    fn groups_balance_bytes() {
        let files = [50, 40, 30, 20, 10]
            .iter()
            .enumerate()
            .map(|(i, size)| PartitionedFile::new(format!("f{i}"), *size))
            .collect();
        let groups = balanced_groups(files, 2);
        let bytes: Vec<u64> = groups
            .iter()
            .map(|g| g.iter().map(|f| f.object_meta.size).sum())
            .collect();
        assert_eq!(bytes.iter().sum::<u64>(), 150);
        assert!(bytes.iter().all(|b| (70..=80).contains(b)), "{bytes:?}");
        assert_eq!(balanced_groups(Vec::new(), 4).len(), 0);
    }
}
