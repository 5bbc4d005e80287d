//! Atomic outputs: the driver side of the commit protocol.
//!
//! A write runs as a job whose last stage is a `StagedWriteExec`: every task attempt
//! writes its partition into a folder of its own under a staging prefix beside the
//! destination (`PARENT/.ember-staging/NAME-WRITEID/`), and reports that folder. When the
//! job succeeds, [`Session::write_plan`] commits: it removes what `--mode overwrite`
//! replaces, moves the winning attempts' files (a rename on a file system, a copy and a
//! delete on an object store) to `DEST/part-PPPPP-WRITEID-K.EXT`, writes `DEST/_SUCCESS`
//! last, and deletes the staging prefix, losers included. A job that fails leaves the
//! destination as it was and its staging prefix removed.

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, UInt32Type, UInt64Type};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use ember_executors::storage::location_url;
use ember_planner::{StagedWriteExec, WriteFormat};
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::error::{EmberError, Result};
use crate::session::{QueryResult, Session};

/// The marker a committed output holds, written last.
pub const SUCCESS_MARKER: &str = "_SUCCESS";
/// The folder, beside a destination, that holds the staging prefixes of its writes.
pub const STAGING_FOLDER: &str = ".ember-staging";

/// What a write does when its destination already holds files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Refuse to write (the default).
    #[default]
    Error,
    /// Replace what is there, once the new files are complete.
    Overwrite,
    /// Add the new files beside the old ones.
    Append,
}

impl FromStr for WriteMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(Self::Error),
            "overwrite" => Ok(Self::Overwrite),
            "append" => Ok(Self::Append),
            other => Err(format!(
                "unknown write mode '{other}' (expected error, overwrite or append)"
            )),
        }
    }
}

/// A destination: its URL, its store and its prefix in that store.
struct Destination {
    url: Url,
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    /// A single file (`out.parquet`, as DataFusion's `COPY` writes one) rather than a
    /// folder of files.
    single_file: bool,
}

/// Whether `location` names one file of `format` (`out.parquet`), not a folder.
fn names_a_file(location: &str, format: Option<WriteFormat>) -> bool {
    let last = location.rsplit('/').next().unwrap_or_default();
    format.is_some_and(|f| {
        last.to_ascii_lowercase()
            .ends_with(&format!(".{}", f.extension()))
    })
}

impl Destination {
    /// The destination `location`; with `format`, a location ending in its extension is
    /// a single file.
    fn resolve(session: &Session, location: &str, format: Option<WriteFormat>) -> Result<Self> {
        let single_file = names_a_file(location, format);
        let url = if !single_file {
            location_url(location)?
        } else if location.contains("://") {
            Url::parse(location).map_err(|e| EmberError::Config {
                key: "output".into(),
                message: format!("'{location}' is not a URL: {e}"),
            })?
        } else {
            std::path::absolute(location)
                .ok()
                .and_then(|p| Url::from_file_path(p).ok())
                .ok_or_else(|| EmberError::Config {
                    key: "output".into(),
                    message: format!("'{location}' is not a usable path"),
                })?
        };
        let root = ObjectStoreUrl::parse(format!(
            "{}://{}",
            url.scheme(),
            &url[url::Position::BeforeHost..url::Position::AfterPort]
        ))?;
        let store = session.context().runtime_env().object_store(&root)?;
        let prefix = StorePath::from_url_path(url.path()).map_err(|e| EmberError::Config {
            key: "output".into(),
            message: format!("{location}: {e}"),
        })?;
        Ok(Self {
            url,
            store,
            prefix,
            single_file,
        })
    }

    /// The objects under the destination (or the file itself), staging folders left out.
    async fn existing(&self) -> Result<Vec<StorePath>> {
        if self.single_file {
            return match self.store.head(&self.prefix).await {
                Ok(meta) => Ok(vec![meta.location]),
                Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
                Err(e) => Err(self.error("looking at", e)),
            };
        }
        let listed: Vec<_> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| self.error("listing", e))?;
        Ok(listed
            .into_iter()
            .map(|meta| meta.location)
            .filter(|p| !p.parts().any(|part| part.as_ref() == STAGING_FOLDER))
            .collect())
    }

    /// The staging prefix of write `write_id`, beside the destination (inside it when
    /// the destination is a bucket's root).
    fn staging(&self, write_id: &str) -> (StorePath, Url) {
        let mut parts: Vec<String> = self
            .prefix
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        let name = parts.pop().unwrap_or_else(|| "root".to_string());
        parts.push(STAGING_FOLDER.to_string());
        parts.push(format!("{name}-{write_id}"));
        let path = StorePath::from_iter(parts.iter().map(String::as_str));
        let mut url = self.url.clone();
        url.set_path(&format!("/{path}/"));
        (path, url)
    }

    fn error(&self, action: &str, e: object_store::Error) -> EmberError {
        EmberError::Config {
            key: "output".into(),
            message: format!("{action} {}: {e}", self.url),
        }
    }

    /// Deletes every object under `prefix` (and, on a file system, its folders).
    async fn remove_all(&self, prefix: &StorePath) -> Result<()> {
        let listed: Vec<_> = self
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| self.error("listing", e))?;
        for meta in listed {
            self.delete(&meta.location).await?;
        }
        if self.url.scheme() == "file" {
            let folder = std::path::PathBuf::from(format!("/{prefix}"));
            let _ = std::fs::remove_dir_all(&folder);
            if let Some(parent) = folder.parent() {
                // The staging folder goes too once no write uses it.
                let _ = std::fs::remove_dir(parent);
            }
        }
        Ok(())
    }

    async fn delete(&self, path: &StorePath) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("deleting from", e)),
        }
    }
}

impl Session {
    /// The number of objects (files) at `location`, a folder URL or path; 0 when it does
    /// not exist.
    pub async fn output_files(&self, location: &str) -> Result<usize> {
        Ok(Destination::resolve(self, location, None)?
            .existing()
            .await?
            .len())
    }

    /// Runs `plan` and writes its rows as `format` files under the folder `location`
    /// (a path or an `s3://`, `memory://` or `file://` URL), through the commit protocol
    /// (see the module's documentation). Returns one row, `count`: the rows written.
    ///
    /// A location ending in the format's extension (`out.parquet`) is written as that one
    /// file, as DataFusion's `COPY` does: the rows are gathered into one task, and the
    /// commit renames its file (no marker; `append` is refused).
    pub async fn write_plan(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        location: &str,
        format: WriteFormat,
        mode: WriteMode,
    ) -> Result<QueryResult> {
        let dest = Destination::resolve(self, location, Some(format))?;
        if dest.single_file && mode == WriteMode::Append {
            return Err(EmberError::Config {
                key: "--mode".into(),
                message: format!(
                    "{location} names one file, which cannot be appended to; write to a \
                     folder (no .{} extension) to append",
                    format.extension()
                ),
            });
        }
        let plan: Arc<dyn ExecutionPlan> =
            if dest.single_file && plan.output_partitioning().partition_count() > 1 {
                Arc::new(CoalescePartitionsExec::new(plan))
            } else {
                plan
            };
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
            crate::session::new_job_id("write"),
            rand::random::<u32>()
        );
        let (staging, staging_url) = dest.staging(&write_id);
        let job = StagedWriteExec::new(plan, staging_url.to_string(), format);
        let outcome = self.run_physical(Arc::new(job)).await;
        let committed = match outcome {
            Ok(result) => commit(&dest, &staging, &write_id, format, mode, result).await,
            Err(e) => Err(e),
        };
        let cleaned = dest.remove_all(&staging).await;
        let result = committed?;
        cleaned?;
        Ok(result)
    }
}

/// Moves the files of the folders that `result` names (the winning attempts) to the
/// destination, after removing what `mode` replaces, and writes the marker.
async fn commit(
    dest: &Destination,
    staging: &StorePath,
    write_id: &str,
    format: WriteFormat,
    mode: WriteMode,
    result: QueryResult,
) -> Result<QueryResult> {
    let mut folders = Vec::new();
    for batch in &result.batches {
        let partitions = batch.column(0).as_primitive::<UInt32Type>();
        let names = batch.column(1).as_string::<i32>();
        let rows = batch.column(2).as_primitive::<UInt64Type>();
        for i in 0..batch.num_rows() {
            folders.push((
                partitions.value(i),
                names.value(i).to_string(),
                rows.value(i),
            ));
        }
    }
    folders.sort();
    let mut winners = Vec::new();
    for (partition, folder, _) in &folders {
        let url = Url::parse(folder).map_err(|e| EmberError::Internal {
            message: format!("a task reported the folder '{folder}': {e}"),
        })?;
        let prefix = StorePath::from_url_path(url.path()).map_err(|e| EmberError::Internal {
            message: format!("a task reported the folder '{folder}': {e}"),
        })?;
        if !prefix.prefix_matches(staging) {
            return Err(EmberError::Internal {
                message: format!("a task wrote {folder}, outside the staging prefix"),
            });
        }
        let mut files: Vec<_> = dest
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| dest.error("listing", e))?;
        files.sort();
        winners.push((*partition, files));
    }

    if dest.single_file {
        return commit_file(dest, winners, mode, result).await;
    }
    let marker = dest.prefix.clone().join(SUCCESS_MARKER);
    match mode {
        WriteMode::Overwrite => {
            for old in dest.existing().await? {
                dest.delete(&old).await?;
            }
        }
        WriteMode::Append => dest.delete(&marker).await?,
        WriteMode::Error => {}
    }
    let mut files = 0_u64;
    for (partition, staged) in winners {
        for (k, from) in staged.iter().enumerate() {
            let name = format!("part-{partition:05}-{write_id}-{k}.{}", format.extension());
            dest.store
                .rename(from, &dest.prefix.clone().join(name.as_str()))
                .await
                .map_err(|e| dest.error("committing into", e))?;
            files += 1;
        }
    }
    dest.store
        .put(&marker, Vec::<u8>::new().into())
        .await
        .map_err(|e| dest.error("writing the marker of", e))?;
    tracing::info!(destination = %dest.url, files, "committed an output");

    let rows: u64 = folders.iter().map(|(_, _, rows)| rows).sum();
    count_result(rows, result)
}

/// The commit of a single-file destination: the one staged file renamed onto it.
async fn commit_file(
    dest: &Destination,
    winners: Vec<(u32, Vec<StorePath>)>,
    mode: WriteMode,
    result: QueryResult,
) -> Result<QueryResult> {
    let staged: Vec<StorePath> = winners.into_iter().flat_map(|(_, files)| files).collect();
    let [file] = staged.as_slice() else {
        return Err(EmberError::Config {
            key: "output".into(),
            message: format!(
                "{} names one file, but the write made {} files; write to a folder instead",
                dest.url,
                staged.len()
            ),
        });
    };
    if mode == WriteMode::Overwrite {
        for old in dest.existing().await? {
            dest.delete(&old).await?;
        }
    }
    dest.store
        .rename(file, &dest.prefix)
        .await
        .map_err(|e| dest.error("committing", e))?;
    tracing::info!(destination = %dest.url, "committed an output file");
    let rows = result
        .batches
        .iter()
        .map(|b| {
            b.column(2)
                .as_primitive::<UInt64Type>()
                .iter()
                .flatten()
                .sum::<u64>()
        })
        .sum();
    count_result(rows, result)
}

/// The result of a write: one row, `count`, with the job's metrics.
fn count_result(rows: u64, result: QueryResult) -> Result<QueryResult> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]));
    let counts = UInt64Array::from(vec![rows]);
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(counts) as Arc<dyn Array>],
    )
    .map_err(datafusion::error::DataFusionError::from)?;
    Ok(QueryResult {
        schema,
        batches: vec![batch],
        metrics: result.metrics,
    })
}
