//! What a [`Session`] does for the statements that are more than a query: `CREATE TABLE
//! ... AS`, `INSERT INTO`, `COPY` and the catalog statements (see `sql/run.rs`).

use crate::commit::WriteMode;
use crate::error::{EmberError, Result};
use crate::result_stream::ResultStream;
use crate::sql::catalog::{CatalogChange, CatalogEntry, EntryKind};
use crate::sql::run::{absolute_location, catalog_key, quoted};
use crate::sql::statement::CreateTableAs;
use datafusion::catalog::TableProvider;
use datafusion::datasource::listing::ListingTable;
use datafusion::logical_expr::DmlStatement;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{self, ObjectType};
use ember_planner::WriteFormat;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::Session;
use crate::result_stream::QueryResult;

impl Session {
    /// Loads the definitions the catalog gained or changed since this session last
    /// looked, and forgets the ones it lost. A definition that no longer works (its files
    /// are gone) is skipped with a warning, not an error for every query.
    pub(crate) async fn sync_catalog(&self) -> Result<()> {
        let Some(store) = &self.catalog else {
            return Ok(());
        };
        let mut seen = self.catalog_seen.lock().await;
        let known = seen.as_ref().map(|(version, _)| *version);
        let Some(doc) = store.load(known).await? else {
            return Ok(());
        };
        let old: BTreeMap<String, CatalogEntry> = seen.take().map(|(_, e)| e).unwrap_or_default();
        for (name, entry) in &old {
            if doc.entries.get(name) != Some(entry) {
                self.ctx.deregister_table(name.as_str())?;
            }
        }
        let mut pending: Vec<(&String, &CatalogEntry)> = doc
            .entries
            .iter()
            .filter(|(name, entry)| old.get(*name) != Some(*entry))
            .collect();
        for (name, _) in &pending {
            self.ctx.deregister_table(name.as_str())?;
        }
        // A view may name a table that sorts after it: what fails is tried again after
        // the others, until a round loads nothing more.
        loop {
            let mut failed = Vec::new();
            for (name, entry) in pending.iter().copied() {
                if let Err(e) = self.ctx.sql(&entry.sql).await {
                    failed.push((name, entry, e));
                }
            }
            if failed.is_empty() || failed.len() == pending.len() {
                for (name, entry, e) in failed {
                    tracing::warn!(
                        table = %name,
                        "the catalog's definition of {} '{name}' does not load: {e}",
                        entry.kind.as_str()
                    );
                }
                break;
            }
            pending = failed.into_iter().map(|(n, e, _)| (n, e)).collect();
        }
        *seen = Some((doc.version, doc.entries));
        Ok(())
    }

    /// Records `change` in the catalog, and in what this session has seen when nobody
    /// else changed the catalog in between.
    pub(crate) async fn record(&self, change: CatalogChange) -> Result<()> {
        let Some(store) = &self.catalog else {
            return Ok(());
        };
        let mut seen = self.catalog_seen.lock().await;
        let version = store.update(change.clone()).await?;
        if let Some((known, entries)) = seen.as_mut()
            && *known + 1 == version
        {
            *known = version;
            match change {
                CatalogChange::Put { name, entry } => {
                    entries.insert(name, entry);
                }
                CatalogChange::Drop { name } => {
                    entries.remove(&name);
                }
            }
        }
        Ok(())
    }

    /// What running `parsed` (written as `text`) changes in the catalog, if anything:
    /// decided before it runs, recorded once it ran.
    pub(crate) fn catalog_change(
        &self,
        parsed: &DFStatement,
        text: &str,
    ) -> Result<Option<CatalogChange>> {
        if self.catalog.is_none() {
            return Ok(None);
        }
        Ok(match parsed {
            // A table that exists and is kept: nothing changes.
            DFStatement::CreateExternalTable(create)
                if create.if_not_exists
                    && self.ctx.table_exist(create.name.to_string().as_str())? =>
            {
                None
            }
            DFStatement::CreateExternalTable(create) if !create.temporary => {
                let mut sql = text.to_string();
                for location in &create.locations {
                    let absolute = absolute_location(location)?;
                    sql = sql.replace(&quoted(location), &quoted(&absolute));
                }
                Some(CatalogChange::Put {
                    name: catalog_key(&create.name),
                    entry: CatalogEntry {
                        kind: EntryKind::Table,
                        sql,
                    },
                })
            }
            DFStatement::Statement(inner) => match inner.as_ref() {
                ast::Statement::CreateView(view) if !view.temporary => Some(CatalogChange::Put {
                    name: catalog_key(&view.name),
                    entry: CatalogEntry {
                        kind: EntryKind::View,
                        sql: text.to_string(),
                    },
                }),
                ast::Statement::Drop {
                    object_type: ObjectType::Table | ObjectType::View,
                    names,
                    ..
                } => names.first().map(|name| CatalogChange::Drop {
                    name: catalog_key(name),
                }),
                _ => None,
            },
            _ => None,
        })
    }

    /// `CREATE TABLE … AS`: runs the query on the cluster, writes its rows through the
    /// commit protocol to the location (a folder named after the table in
    /// `ember.sql.warehouse` when none is given), and registers a table over the files.
    pub(crate) async fn create_table_as(&self, ctas: CreateTableAs) -> Result<ResultStream> {
        let exists = self.ctx.table_exist(ctas.name.as_str())?;
        if exists && ctas.if_not_exists {
            return Ok(ResultStream::from_result(QueryResult::empty()));
        }
        if exists && !ctas.or_replace {
            return Err(EmberError::Table {
                name: ctas.name.clone(),
                path: ctas.location.clone().unwrap_or_default(),
                message: "already exists (CREATE OR REPLACE TABLE replaces it)".into(),
            });
        }
        let config = self.config();
        let location = match &ctas.location {
            Some(location) => location.clone(),
            None => format!(
                "{}/{}/",
                config.warehouse.trim_end_matches('/'),
                ctas.name.trim_matches('"').to_ascii_lowercase()
            ),
        };
        let mut location = absolute_location(&location)?;
        if !location.ends_with('/') {
            location.push('/');
        }
        let plan = self.ctx.state().create_logical_plan(&ctas.query).await?;
        let physical = self.physical_plan(plan).await?;
        let mode = if ctas.or_replace {
            WriteMode::Overwrite
        } else {
            WriteMode::Error
        };
        let written = if ctas.delta {
            self.write_delta_plan(physical, &location, mode).await?
        } else {
            self.write_plan(physical, &location, ctas.format, mode)
                .await?
        };
        let stored_as = match ctas.format {
            _ if ctas.delta => "DELTA",
            WriteFormat::Parquet => "PARQUET",
            WriteFormat::Csv => "CSV",
            WriteFormat::Json => "JSON",
        };
        let sql = format!(
            "CREATE EXTERNAL TABLE {} STORED AS {stored_as} LOCATION {}",
            ctas.name,
            quoted(&location)
        );
        if exists {
            self.ctx.deregister_table(ctas.name.as_str())?;
        }
        self.ctx.sql(&sql).await?;
        self.record(CatalogChange::Put {
            name: ctas.name.trim_matches('"').to_ascii_lowercase(),
            entry: CatalogEntry {
                kind: EntryKind::Table,
                sql,
            },
        })
        .await?;
        Ok(ResultStream::from_result(written))
    }

    /// `INSERT INTO` (or `INSERT OVERWRITE`) a table over files: the rows are computed on
    /// the cluster and added to the table's folder through the commit protocol. `None`
    /// for a table that lives in this process (DataFusion inserts into it).
    pub(crate) async fn insert_into(
        &self,
        dml: &DmlStatement,
        op: InsertOp,
    ) -> Result<Option<ResultStream>> {
        let provider: Arc<dyn TableProvider> =
            self.ctx.table_provider(dml.table_name.clone()).await?;
        if let Some(delta) = provider.downcast_ref::<ember_connectors::delta::DeltaTableProvider>()
        {
            let mode = match op {
                InsertOp::Append => WriteMode::Append,
                InsertOp::Overwrite | InsertOp::Replace => WriteMode::Overwrite,
            };
            let physical = self.physical_plan(dml.input.as_ref().clone()).await?;
            let written = self
                .write_delta_plan(physical, delta.location(), mode)
                .await?;
            return Ok(Some(ResultStream::from_result(written)));
        }
        if let Some(postgres) = provider.downcast_ref::<ember_connectors::postgres::PostgresTable>()
        {
            let mode = match op {
                InsertOp::Append => WriteMode::Append,
                InsertOp::Overwrite | InsertOp::Replace => WriteMode::Overwrite,
            };
            let physical = self.physical_plan(dml.input.as_ref().clone()).await?;
            let written = self
                .write_postgres_plan(
                    physical,
                    postgres.connection().url(),
                    postgres.table(),
                    mode,
                )
                .await?;
            return Ok(Some(ResultStream::from_result(written)));
        }
        let Some(listing) = provider.downcast_ref::<ListingTable>() else {
            return Ok(None);
        };
        let name = dml.table_name.to_string();
        let location = match listing.table_paths().as_slice() {
            [one] => one.as_str().to_string(),
            _ => {
                return Err(EmberError::Table {
                    name,
                    path: String::new(),
                    message: "INSERT INTO a table over several locations is not supported".into(),
                });
            }
        };
        if !listing.options().table_partition_cols.is_empty() {
            return Err(EmberError::Table {
                name,
                path: location,
                message: "INSERT INTO a partitioned table is not supported yet".into(),
            });
        }
        if !location.ends_with('/') {
            return Err(EmberError::Table {
                name,
                path: location,
                message: "INSERT INTO needs a table over a folder, not one file".into(),
            });
        }
        let ext = listing.options().format.get_ext();
        let format = WriteFormat::from_extension(&ext).ok_or_else(|| EmberError::Table {
            name: name.clone(),
            path: location.clone(),
            message: format!("cannot write '{ext}' files (parquet, csv or json)"),
        })?;
        let mode = match op {
            InsertOp::Append => WriteMode::Append,
            InsertOp::Overwrite | InsertOp::Replace => WriteMode::Overwrite,
        };
        let physical = self.physical_plan(dml.input.as_ref().clone()).await?;
        let written = self.write_plan(physical, &location, format, mode).await?;
        Ok(Some(ResultStream::from_result(written)))
    }
}
