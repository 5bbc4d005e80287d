//! Writing a Delta table: [`prepare`] (before the job runs: the table as it is, the
//! schema the written files must have, and a refusal when the write cannot go in) and
//! [`commit`] (after every task succeeded: the written files as one new version, made by
//! one transaction in the log). A job that fails never reaches [`commit`], so the table
//! stays at the version it had.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake_core::DeltaTable;
use deltalake_core::DeltaTableBuilder;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::CommitBuilder;
use deltalake_core::kernel::{Action, Add, StructType};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use super::open::{DeltaVersion, load};
use crate::error::{ConnectorError, Result};

/// How a write meets a table that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaWriteMode {
    /// Refuse (the table must not exist yet).
    ErrorIfExists,
    /// Add the rows as a new version.
    Append,
    /// Replace every row in a new version (the old versions stay readable).
    Overwrite,
}

/// A table about to be written.
pub struct Prepared {
    location: String,
    url: Url,
    store: Arc<dyn ObjectStore>,
    mode: DeltaWriteMode,
    /// The table as it was when the write began; `None` when it does not exist.
    table: Option<DeltaTable>,
    /// The schema the written files have: the table's, or for a new table the data's in
    /// types that Delta holds.
    pub schema: SchemaRef,
}

/// A Parquet file that a job wrote into the table's folder, not yet in its log.
#[derive(Debug, Clone)]
pub struct WrittenFile {
    /// Its path in the table's store.
    pub path: StorePath,
    /// Its size in bytes.
    pub size: u64,
}

/// Looks at the table at `location` before a write of rows of `schema`.
pub async fn prepare(
    store: Arc<dyn ObjectStore>,
    url: &Url,
    location: &str,
    schema: &Schema,
    mode: DeltaWriteMode,
) -> Result<Prepared> {
    let error = |message: String| ConnectorError::Delta {
        location: location.to_string(),
        message,
    };
    let exists = match load(Arc::clone(&store), url, location, &DeltaVersion::Latest).await {
        Ok(table) => Some(table),
        Err(ConnectorError::Delta { message, .. })
            if message.starts_with("not a Delta table") || message.starts_with("no such table") =>
        {
            None
        }
        Err(e) => return Err(e),
    };
    let target = match &exists {
        None => delta_types(schema),
        Some(table) => {
            if mode == DeltaWriteMode::ErrorIfExists {
                let version = table.version().unwrap_or_default();
                return Err(error(format!(
                    "already exists (at version {version}); write with --mode append or \
                     overwrite (ember.output.mode)"
                )));
            }
            let snapshot = table.snapshot().map_err(|e| error(e.to_string()))?;
            if !snapshot.metadata().partition_columns().is_empty() {
                return Err(error(format!(
                    "is partitioned by {}; Ember writes unpartitioned Delta tables only",
                    snapshot.metadata().partition_columns().join(", ")
                )));
            }
            let table_schema = snapshot.snapshot().arrow_schema();
            check_matches(schema, &table_schema).map_err(error)?;
            table_schema
        }
    };
    Ok(Prepared {
        location: location.to_string(),
        url: url.clone(),
        store,
        mode,
        table: exists,
        schema: target,
    })
}

/// `schema` in the types a Delta table holds: strings and binaries in their plain
/// layouts, timestamps in microseconds (with time zones as UTC).
pub fn delta_types(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let data_type = match f.data_type() {
                DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
                DataType::BinaryView | DataType::LargeBinary | DataType::FixedSizeBinary(_) => {
                    DataType::Binary
                }
                DataType::Timestamp(_, Some(_)) => {
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
                }
                DataType::Timestamp(_, None) => DataType::Timestamp(TimeUnit::Microsecond, None),
                DataType::UInt8 => DataType::Int16,
                DataType::UInt16 => DataType::Int32,
                DataType::UInt32 | DataType::UInt64 => DataType::Int64,
                DataType::Float16 => DataType::Float32,
                DataType::Date64 => DataType::Date32,
                other => other.clone(),
            };
            Field::new(f.name(), data_type, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Whether rows of `data` can go into a table of `table`: the same column names in the
/// same order, each castable to the table's type.
fn check_matches(data: &Schema, table: &Schema) -> std::result::Result<(), String> {
    let names = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if data.fields().len() != table.fields().len()
        || data
            .fields()
            .iter()
            .zip(table.fields())
            .any(|(d, t)| d.name() != t.name())
    {
        return Err(format!(
            "has columns ({}), but the rows written have ({})",
            names(table),
            names(data)
        ));
    }
    for (d, t) in data.fields().iter().zip(table.fields()) {
        if !arrow::compute::can_cast_types(d.data_type(), t.data_type()) {
            return Err(format!(
                "column {} is {} in the table, but {} in the rows written",
                t.name(),
                t.data_type(),
                d.data_type()
            ));
        }
    }
    Ok(())
}

/// Commits `files` (written under the table's folder) as one new version; returns it.
/// In overwrite mode the version removes every file the table held when the write
/// began. A commit that another writer's commit conflicts with fails, and the written
/// files are then deleted.
pub async fn commit(prepared: Prepared, files: &[WrittenFile]) -> Result<u64> {
    let result = commit_files(&prepared, files).await;
    if result.is_err() {
        for file in files {
            if let Err(e) = prepared.store.delete(&file.path).await {
                tracing::warn!("removing {} after a failed Delta commit: {e}", file.path);
            }
        }
    }
    result
}

async fn commit_files(prepared: &Prepared, files: &[WrittenFile]) -> Result<u64> {
    let error = |message: String| ConnectorError::Delta {
        location: prepared.location.clone(),
        message,
    };
    let root = StorePath::from_url_path(prepared.url.path()).map_err(|e| error(e.to_string()))?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut actions = Vec::with_capacity(files.len());
    for file in files {
        let relative = file
            .path
            .prefix_match(&root)
            .map(|parts| {
                parts
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .ok_or_else(|| error(format!("{} is not inside the table's folder", file.path)))?;
        let stats = super::stats::file_stats(Arc::clone(&prepared.store), &file.path, file.size)
            .await
            .map_err(error)?;
        actions.push(Action::Add(Add {
            path: relative,
            size: i64::try_from(file.size).unwrap_or(i64::MAX),
            modification_time: now,
            data_change: true,
            stats: Some(stats),
            ..Add::default()
        }));
    }
    match &prepared.table {
        None => {
            let schema: StructType = prepared
                .schema
                .as_ref()
                .try_into_kernel()
                .map_err(|e| error(format!("its schema has no Delta form: {e}")))?;
            let log_store = DeltaTableBuilder::from_url(prepared.url.clone())
                .map_err(|e| error(e.to_string()))?
                .with_storage_backend(Arc::clone(&prepared.store), prepared.url.clone())
                .build()
                .map_err(|e| error(e.to_string()))?
                .log_store();
            let table = CreateBuilder::new()
                .with_log_store(log_store)
                .with_columns(schema.fields().cloned())
                .with_save_mode(SaveMode::ErrorIfExists)
                .with_actions(actions)
                .await
                .map_err(|e| error(format!("creating the table: {}", first_line(&e))))?;
            Ok(table.version().unwrap_or_default())
        }
        Some(table) => {
            let snapshot = table.snapshot().map_err(|e| error(e.to_string()))?;
            let save_mode = match prepared.mode {
                DeltaWriteMode::Overwrite => {
                    for file in snapshot.log_data().iter() {
                        actions.push(Action::Remove(file.remove_action(true)));
                    }
                    SaveMode::Overwrite
                }
                DeltaWriteMode::Append | DeltaWriteMode::ErrorIfExists => SaveMode::Append,
            };
            let operation = DeltaOperation::Write {
                mode: save_mode,
                partition_by: None,
                predicate: None,
            };
            let committed = CommitBuilder::default()
                .with_actions(actions)
                .build(Some(snapshot), table.log_store(), operation)
                .await
                .map_err(|e| error(format!("committing: {}", first_line(&e))))?;
            Ok(committed.version())
        }
    }
}

fn first_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_must_match_by_name_and_castable_type() {
        let table = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]);
        let same = Schema::new(vec![
            Field::new("a", DataType::Int32, false),
            Field::new("b", DataType::Utf8View, true),
        ]);
        assert!(check_matches(&same, &table).is_ok());
        let renamed = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("c", DataType::Utf8, true),
        ]);
        let e = check_matches(&renamed, &table).expect_err("other names");
        assert!(e.contains("(a, b)") && e.contains("(a, c)"), "{e}");
        let typed = Schema::new(vec![
            Field::new("a", DataType::Binary, true),
            Field::new("b", DataType::Utf8, true),
        ]);
        let e = check_matches(&typed, &table).expect_err("bytes into a number");
        assert!(e.contains("column a"), "{e}");
    }

    #[test]
    fn delta_types_are_plain_layouts() {
        let schema = Schema::new(vec![
            Field::new("s", DataType::Utf8View, false),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
                true,
            ),
            Field::new("u", DataType::UInt32, true),
        ]);
        let delta = delta_types(&schema);
        assert_eq!(delta.field(0).data_type(), &DataType::Utf8);
        assert_eq!(
            delta.field(1).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(delta.field(2).data_type(), &DataType::Int64);
    }
}
