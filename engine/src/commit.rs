//! Atomic outputs: the driver side of the commit protocol.
//!
//! A write runs as a job whose last stage is a `StagedWriteExec`: every task attempt
//! writes its partition into a folder of its own under a staging prefix beside the
//! destination (`PARENT/.ember-staging/NAME-WRITEID/`), and reports that folder. When the
//! job succeeds, [`Session::write_plan`] commits: it removes what `--mode overwrite`
//! replaces, moves the winning attempts' files (a rename on a file system, a copy and a
//! delete on an object store) to `DEST/part-PPPPP-WRITEID-K.EXT`, then removes what
//! `--mode overwrite` replaces, writes `DEST/_SUCCESS` last, and deletes the staging
//! prefix, losers included. A job that fails leaves the destination as it was and its
//! staging prefix removed; a commit that fails half-way keeps the staging prefix (and says
//! where it is), so that no written file is lost.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, UInt32Type, UInt64Type};
use datafusion::datasource::listing::ListingTableUrl;
use ember_executors::storage::location_url;
use ember_planner::WriteFormat;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::error::{EmberError, Result};
use crate::result_stream::QueryResult;

/// The marker a committed output holds, written last.
pub const SUCCESS_MARKER: &str = "_SUCCESS";
/// The folder, beside a destination, that holds the staging prefixes of its writes.
pub const STAGING_FOLDER: &str = ".ember-staging";

pub use crate::config::WriteMode;

/// A destination: its URL, its store and its prefix in that store.
pub(crate) struct Destination {
    pub(crate) url: Url,
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) prefix: StorePath,
    /// A single file (`out.parquet`, as DataFusion's `COPY` writes one) rather than a
    /// folder of files.
    pub(crate) single_file: bool,
}

/// Whether `location` names one file of `format` (`out.parquet`, as DataFusion's `COPY`
/// takes it), not a folder.
pub fn names_a_file(location: &str, format: WriteFormat) -> bool {
    let path = location.split_once("://").map_or(location, |(_, rest)| {
        // The bucket (or host) is not a file name.
        rest.split_once('/').map_or("", |(_, key)| key)
    });
    let last = path.rsplit('/').next().unwrap_or_default();
    last.len() > format.extension().len() + 1
        && last
            .to_ascii_lowercase()
            .ends_with(&format!(".{}", format.extension()))
}

impl Destination {
    /// The destination `location`: a folder, or with `single_file` one file.
    pub(crate) fn resolve(
        ctx: &datafusion::prelude::SessionContext,
        location: &str,
        single_file: bool,
    ) -> Result<Self> {
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
        let root = ListingTableUrl::parse(url.as_str())?.object_store();
        let store = ctx.runtime_env().object_store(&root)?;
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
    pub(crate) async fn existing(&self) -> Result<Vec<StorePath>> {
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
    /// the destination is a bucket's root). The URL is made from the destination's URL
    /// and the store path from that URL, as the tasks' folders are, so the two agree
    /// whatever characters the names hold.
    pub(crate) fn staging(&self, write_id: &str) -> Result<(StorePath, Url)> {
        let path = self.url.path().trim_end_matches('/');
        let (parent, name) = match path.rsplit_once('/') {
            Some((parent, name)) if !name.is_empty() => (parent, name),
            _ => ("", "root"),
        };
        let mut url = self.url.clone();
        url.set_path(&format!("{parent}/{STAGING_FOLDER}/{name}-{write_id}/"));
        let staged = StorePath::from_url_path(url.path()).map_err(|e| EmberError::Config {
            key: "output".into(),
            message: format!("{url}: {e}"),
        })?;
        Ok((staged, url))
    }

    pub(crate) fn error(&self, action: &str, e: object_store::Error) -> EmberError {
        EmberError::Config {
            key: "output".into(),
            message: format!("{action} {}: {e}", self.url),
        }
    }

    /// Deletes every object under `prefix` (and, on a file system, its folders).
    pub(crate) async fn remove_all(&self, prefix: &StorePath) -> Result<()> {
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

    pub(crate) async fn delete(&self, path: &StorePath) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("deleting from", e)),
        }
    }
}

/// The files of the winning attempts that `result` names (one row per task: its
/// partition, its folder and its rows), in partition order, and the rows they hold.
pub(crate) async fn winners(
    dest: &Destination,
    staging: &StorePath,
    result: &QueryResult,
) -> Result<(Vec<(u32, Vec<object_store::ObjectMeta>)>, u64)> {
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
    for (partition, folder, rows) in &folders {
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
        let mut files: Vec<object_store::ObjectMeta> = dest
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| dest.error("listing", e))?;
        files.sort_by(|a, b| a.location.cmp(&b.location));
        if files.is_empty() && *rows > 0 {
            // The task wrote where this process cannot look: a local folder on another
            // machine.
            return Err(EmberError::Config {
                key: "output".into(),
                message: format!(
                    "task {partition} wrote {rows} rows under {folder}, which this driver \
                     cannot see; on a process cluster, write to a shared file system or an \
                     object store (s3://)"
                ),
            });
        }
        winners.push((*partition, files));
    }
    let rows = folders.iter().map(|(_, _, rows)| rows).sum();
    Ok((winners, rows))
}

/// Moves the files of the folders that `result` names (the winning attempts) to the
/// destination, after removing what `mode` replaces, and writes the marker.
pub(crate) async fn commit(
    dest: &Destination,
    staging: &StorePath,
    write_id: &str,
    format: WriteFormat,
    mode: WriteMode,
    result: QueryResult,
) -> Result<QueryResult> {
    let (winners, rows) = winners(dest, staging, &result).await?;
    let winners: Vec<(u32, Vec<StorePath>)> = winners
        .into_iter()
        .map(|(partition, files)| (partition, files.into_iter().map(|m| m.location).collect()))
        .collect();
    if dest.single_file {
        return commit_file(dest, winners, result).await;
    }
    // The new files go in before anything old goes out: a commit that fails half-way
    // loses nothing (the old files, the moved new ones and the staged rest all remain).
    let marker = dest.prefix.clone().join(SUCCESS_MARKER);
    let old = dest.existing().await?;
    dest.delete(&marker).await?;
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
    if mode == WriteMode::Overwrite {
        for path in old.iter().filter(|p| **p != marker) {
            dest.delete(path).await?;
        }
    }
    dest.store
        .put(&marker, Vec::<u8>::new().into())
        .await
        .map_err(|e| dest.error("writing the marker of", e))?;
    tracing::info!(destination = %dest.url, files, "committed an output");
    count_result(rows, result)
}

/// The commit of a single-file destination: the one staged file renamed onto it.
pub(crate) async fn commit_file(
    dest: &Destination,
    winners: Vec<(u32, Vec<StorePath>)>,
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
    // A rename replaces the file, if one is there (overwrite).
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
pub(crate) fn count_result(rows: u64, result: QueryResult) -> Result<QueryResult> {
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
