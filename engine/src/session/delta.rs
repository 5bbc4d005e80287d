//! The session's Delta Lake tables: reads of a version ([`Session::read_delta`]) and writes
//! of one new version per job ([`Session::write_delta_plan`]), through the same commit
//! protocol as files: every task attempt writes Parquet into a staging folder of its
//! own, and only when the job succeeded does the driver move the winners' files into the
//! table's folder and commit them to the log in one transaction.

use std::sync::Arc;

use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{CastExpr, Column};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use ember_connectors::delta::commit::{DeltaWriteMode, WrittenFile, prepare};
use ember_connectors::delta::{self, DeltaTableProvider, DeltaVersion};
use ember_planner::{StagedWriteExec, WriteFormat};
use object_store::ObjectStoreExt;

use super::Session;
use crate::commit::{Destination, WriteMode, count_result, winners};
use crate::dataset::Dataset;
use crate::error::{EmberError, Result};
use crate::result_stream::QueryResult;

/// The tables a statement pins to versions (`t VERSION AS OF 3`), registered under names
/// of their own while it is planned (the plan holds the tables, not the names), and the
/// statement's text with those names; dropped, the names go.
pub(crate) struct Pinned<'a> {
    ctx: &'a datafusion::prelude::SessionContext,
    text: std::borrow::Cow<'a, str>,
    aliases: Vec<String>,
}

impl Pinned<'_> {
    /// The statement, with the pinned tables' names in place of `NAME VERSION AS OF N`.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        for alias in &self.aliases {
            let _ = self.ctx.deregister_table(alias.as_str());
        }
    }
}

impl Session {
    /// Registers the tables `text` pins to versions; see [`Pinned`].
    pub(crate) async fn pin_versions<'a>(&'a self, text: &'a str) -> Result<Pinned<'a>> {
        let Some((rewritten, tables)) = crate::sql::time_travel::pin_versions(text)? else {
            return Ok(Pinned {
                ctx: &self.ctx,
                text: text.into(),
                aliases: Vec::new(),
            });
        };
        let mut pinned = Pinned {
            ctx: &self.ctx,
            text: rewritten.into(),
            aliases: Vec::new(),
        };
        for table in tables {
            let provider = self.pinned_delta(&table.name, &table.version).await?;
            self.ctx.register_table(table.alias.as_str(), provider)?;
            pinned.aliases.push(table.alias);
        }
        Ok(pinned)
    }

    /// The Delta table at `location` (a path or an `s3://` URL) at `version`, as a table
    /// provider to register or read.
    pub async fn delta_table(
        &self,
        location: &str,
        version: &DeltaVersion,
    ) -> Result<Arc<DeltaTableProvider>> {
        let url = delta::table_url(location)?;
        let store = delta::store_for(self.ctx.runtime_env().as_ref(), &url)?;
        let table = delta::load(Arc::clone(&store), &url, location, version).await?;
        let provider = DeltaTableProvider::try_new(&table, location, &url)?;
        Ok(Arc::new(if *version == DeltaVersion::Latest {
            provider.following_latest(table)
        } else {
            provider
        }))
    }

    /// The registered Delta table `name` at `version` (for `VERSION AS OF`).
    pub(crate) async fn pinned_delta(
        &self,
        name: &str,
        version: &DeltaVersion,
    ) -> Result<Arc<DeltaTableProvider>> {
        let provider = self.ctx.table_provider(name).await?;
        let Some(delta) = provider.downcast_ref::<DeltaTableProvider>() else {
            return Err(EmberError::Config {
                key: "AS OF".into(),
                message: format!(
                    "table '{name}' is not a Delta table; time travel reads Delta tables \
                     (--table NAME=PATH:delta, or CREATE EXTERNAL TABLE ... STORED AS DELTA)"
                ),
            });
        };
        self.delta_table(delta.location(), version).await
    }

    /// The latest version of the Delta table at `location` as a dataset.
    pub async fn read_delta(&self, location: &str) -> Result<Dataset<'_>> {
        self.read_delta_at(location, &DeltaVersion::Latest).await
    }

    /// The Delta table at `location` as it was at `version` (a version number or a
    /// time), as a dataset.
    pub async fn read_delta_at(
        &self,
        location: &str,
        version: &DeltaVersion,
    ) -> Result<Dataset<'_>> {
        let provider = self.delta_table(location, version).await?;
        Ok(Dataset::new(self, self.ctx.read_table(provider)?))
    }

    /// Runs `plan` and writes its rows into the Delta table at `location` as one new
    /// version (see the module's documentation). `mode`: `error` refuses a table that
    /// exists, `append` adds a version with the rows, `overwrite` a version that holds
    /// only them. Returns one row, `count`: the rows written.
    pub async fn write_delta_plan(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        location: &str,
        mode: WriteMode,
    ) -> Result<QueryResult> {
        let url = delta::table_url(location)?;
        let store = delta::store_for(self.ctx.runtime_env().as_ref(), &url)?;
        let delta_mode = match mode {
            WriteMode::Error => DeltaWriteMode::ErrorIfExists,
            WriteMode::Append => DeltaWriteMode::Append,
            WriteMode::Overwrite => DeltaWriteMode::Overwrite,
        };
        let prepared = prepare(store, &url, location, &plan.schema(), delta_mode).await?;
        let plan = cast_to(plan, &prepared.schema)?;

        let dest = Destination::resolve(&self.ctx, url.as_str(), false)?;
        let write_id = format!(
            "{}-{:08x}",
            ember_proto::new_job_id("write"),
            rand::random::<u32>()
        );
        let (staging, staging_url) = dest.staging(&write_id)?;
        let job = StagedWriteExec::new(plan, staging_url.to_string(), WriteFormat::Parquet);
        let result = match self.run_physical(Arc::new(job)).await {
            Ok(result) => result,
            Err(e) => {
                if let Err(cleanup) = dest.remove_all(&staging).await {
                    tracing::warn!("removing {staging_url} after a failed write: {cleanup}");
                }
                return Err(e);
            }
        };
        let committed = async {
            let (winners, rows) = winners(&dest, &staging, &result).await?;
            let mut files = Vec::new();
            for (partition, staged) in winners {
                for (k, meta) in staged.iter().enumerate() {
                    let name = format!("part-{partition:05}-{write_id}-{k}.parquet");
                    let path = dest.prefix.clone().join(name.as_str());
                    dest.store
                        .rename(&meta.location, &path)
                        .await
                        .map_err(|e| dest.error("moving a written file into", e))?;
                    files.push(WrittenFile {
                        path,
                        size: meta.size,
                    });
                }
            }
            let version = delta::commit::commit(prepared, &files).await?;
            tracing::info!(table = %location, version, files = files.len(), "committed a Delta version");
            Ok::<_, EmberError>(rows)
        }
        .await;
        if let Err(e) = dest.remove_all(&staging).await {
            tracing::warn!("removing {staging_url} after a Delta write: {e}");
        }
        count_result(committed?, result)
    }
}

/// `plan` with its columns cast to `schema`'s types (same names, same order).
fn cast_to(
    plan: Arc<dyn ExecutionPlan>,
    schema: &arrow::datatypes::Schema,
) -> Result<Arc<dyn ExecutionPlan>> {
    let input = plan.schema();
    if input.fields().len() == schema.fields().len()
        && input
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.data_type() == b.data_type())
    {
        return Ok(plan);
    }
    let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = input
        .fields()
        .iter()
        .zip(schema.fields())
        .enumerate()
        .map(|(i, (from, to))| {
            let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(from.name(), i));
            let expr: Arc<dyn PhysicalExpr> = if from.data_type() == to.data_type() {
                column
            } else {
                Arc::new(CastExpr::new(column, to.data_type().clone(), None))
            };
            (expr, to.name().clone())
        })
        .collect();
    Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
}
