//! The session's writes: [`Session::write_plan`] and the single-file and object forms,
//! through the commit protocol of `commit.rs`.

use crate::commit::{Destination, WriteMode, commit};
use crate::error::{EmberError, Result};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use ember_planner::{StagedWriteExec, WriteFormat};
use object_store::ObjectStoreExt;
use std::sync::Arc;

use super::Session;
use crate::result_stream::QueryResult;

impl Session {
    /// The number of objects (files) at `location`, a folder URL or path; 0 when it does
    /// not exist.
    pub async fn output_files(&self, location: &str) -> Result<usize> {
        Ok(Destination::resolve(&self.ctx, location, false)?
            .existing()
            .await?
            .len())
    }

    /// Writes `bytes` as the one file `location` (a path or an `s3://`, `memory://` or
    /// `file://` URL), replacing it whole: the object store's put, which on a local disk
    /// writes a temporary file and renames it, so a reader never sees half of it.
    pub async fn put_object(&self, location: &str, bytes: Vec<u8>) -> Result<()> {
        let dest = Destination::resolve(&self.ctx, location, true)?;
        dest.store
            .put(&dest.prefix, bytes.into())
            .await
            .map_err(|e| dest.error("writing", e))?;
        Ok(())
    }

    /// Runs `plan` and writes its rows as `format` files under the folder `location`
    /// (a path or an `s3://`, `memory://` or `file://` URL), through the commit protocol
    /// (see the module's documentation). Returns one row, `count`: the rows written.
    pub async fn write_plan(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        location: &str,
        format: WriteFormat,
        mode: WriteMode,
    ) -> Result<QueryResult> {
        let dest = Destination::resolve(&self.ctx, location, false)?;
        self.write_to(plan, &dest, location, format, mode).await
    }

    /// [`Self::write_plan`] into the single file `location` (`out.parquet`), as
    /// DataFusion's `COPY` writes a location with the format's extension: the rows are
    /// gathered into one task that writes one file, which the commit renames onto
    /// `location` (no marker; `append` is refused).
    pub async fn write_plan_as_file(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        location: &str,
        format: WriteFormat,
        mode: WriteMode,
    ) -> Result<QueryResult> {
        if mode == WriteMode::Append {
            return Err(EmberError::Config {
                key: "--mode".into(),
                message: format!(
                    "{location} names one file, which cannot be appended to; write to a \
                     folder (no .{} extension) to append",
                    format.extension()
                ),
            });
        }
        let dest = Destination::resolve(&self.ctx, location, true)?;
        let plan: Arc<dyn ExecutionPlan> = if plan.output_partitioning().partition_count() > 1 {
            Arc::new(CoalescePartitionsExec::new(plan))
        } else {
            plan
        };
        self.write_to(plan, &dest, location, format, mode).await
    }

    async fn write_to(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        dest: &Destination,
        location: &str,
        format: WriteFormat,
        mode: WriteMode,
    ) -> Result<QueryResult> {
        if mode == WriteMode::Overwrite && dest.prefix.as_ref().is_empty() {
            return Err(EmberError::Config {
                key: "--mode".into(),
                message: format!("refusing to overwrite {location}, the root of its store"),
            });
        }
        let existing = dest.existing().await?;
        if mode == WriteMode::Error && !existing.is_empty() {
            return Err(EmberError::Config {
                key: "--mode".into(),
                message: format!(
                    "{location} already holds {} file(s); write with --mode overwrite or \
                     append (ember.output.mode), or choose another destination",
                    existing.len()
                ),
            });
        }
        let write_id = format!(
            "{}-{:08x}",
            ember_proto::new_job_id("write"),
            rand::random::<u32>()
        );
        let (staging, staging_url) = dest.staging(&write_id)?;
        let job = StagedWriteExec::new(plan, staging_url.to_string(), format)
            .with_single_file(dest.single_file);
        let result = match self.run_physical(Arc::new(job)).await {
            Ok(result) => result,
            Err(e) => {
                // Nothing reached the destination: only the staged attempts go.
                if let Err(cleanup) = dest.remove_all(&staging).await {
                    tracing::warn!("removing {staging_url} after a failed write: {cleanup}");
                }
                return Err(e);
            }
        };
        let committed = commit(dest, &staging, &write_id, format, mode, result).await;
        match committed {
            Ok(result) => {
                if let Err(e) = dest.remove_all(&staging).await {
                    // Committed: what is left is only the staging folder.
                    tracing::warn!("removing {staging_url} after a commit: {e}");
                }
                Ok(result)
            }
            Err(e) => Err(EmberError::Config {
                key: "output".into(),
                message: format!(
                    "committing {location} failed ({e}); the written files not yet moved \
                     are kept in {staging_url}"
                ),
            }),
        }
    }
}
