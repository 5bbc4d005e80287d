//! Opening a Delta table: its location as a URL, the object store it lives in, and a
//! load of its log at the latest version, a version number or a time.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use object_store::ObjectStore;
use url::Url;

use crate::error::{ConnectorError, Result};

/// Which version of a table to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DeltaVersion {
    /// The latest.
    #[default]
    Latest,
    /// `VERSION AS OF N`.
    Version(u64),
    /// `TIMESTAMP AS OF T`: the latest version committed at or before `T`.
    Timestamp(DateTime<Utc>),
}

impl std::fmt::Display for DeltaVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Version(v) => write!(f, "version {v}"),
            Self::Timestamp(t) => write!(f, "as of {}", t.to_rfc3339()),
        }
    }
}

/// The URL of a table location (a path or a URL), ending with `/`.
pub fn table_url(location: &str) -> Result<Url> {
    let error = |message: String| ConnectorError::Delta {
        location: location.to_string(),
        message,
    };
    let mut url = if location.contains("://") {
        Url::parse(location).map_err(|e| error(format!("not a URL: {e}")))?
    } else {
        let path = std::path::absolute(location).map_err(|e| error(e.to_string()))?;
        Url::from_directory_path(&path).map_err(|()| error("not a usable path".into()))?
    };
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// The object store of `url`'s scheme and bucket, as the session registered it.
pub fn store_for(runtime: &RuntimeEnv, url: &Url) -> Result<Arc<dyn ObjectStore>> {
    let root = ListingTableUrl::parse(url.as_str())?.object_store();
    Ok(runtime.object_store(&root)?)
}

/// Opens the table at `location` (`url` is its [`table_url`]) at `version`, reading its
/// log through `store`.
pub async fn load(
    store: Arc<dyn ObjectStore>,
    url: &Url,
    location: &str,
    version: &DeltaVersion,
) -> Result<DeltaTable> {
    let error = |message: String| ConnectorError::Delta {
        location: location.to_string(),
        message,
    };
    if url.scheme() == "file"
        && let Ok(path) = url.to_file_path()
        && !path.exists()
    {
        return Err(error("no such table (nothing is at that path)".into()));
    }
    let builder = DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| error(e.to_string()))?
        .with_storage_backend(Arc::clone(&store), url.clone());
    let builder = match version {
        DeltaVersion::Latest => builder,
        DeltaVersion::Version(v) => builder.with_version(*v),
        DeltaVersion::Timestamp(t) => builder.with_timestamp(*t),
    };
    match builder.load().await {
        Ok(table) => {
            if let DeltaVersion::Timestamp(t) = version {
                check_time(&table, *t).map_err(error)?;
            }
            Ok(table)
        }
        Err(e) => {
            let mut message = explain(e, version);
            if let DeltaVersion::Version(v) = version {
                // Name the versions there are.
                let latest = DeltaTableBuilder::from_url(url.clone())
                    .map(|b| b.with_storage_backend(Arc::clone(&store), url.clone()));
                if let Ok(latest) = latest
                    && let Ok(latest) = latest.load().await
                    && let Some(last) = latest.version()
                {
                    message = format!("has no version {v} (its versions go up to {last})");
                }
            }
            Err(error(message))
        }
    }
}

/// Fails when `time` is before the table's first version (`table` is the version that a
/// load at `time` chose).
fn check_time(table: &DeltaTable, time: DateTime<Utc>) -> std::result::Result<(), String> {
    let Ok(snapshot) = table.snapshot() else {
        return Ok(());
    };
    let version = snapshot.version();
    if let Some(committed) = snapshot.version_timestamp(version)
        && committed > time.timestamp_millis()
    {
        let at = DateTime::from_timestamp_millis(committed)
            .map_or_else(|| committed.to_string(), |t| t.to_rfc3339());
        return Err(format!(
            "has no version at or before {} (its earliest, version {version}, was \
             committed at {at})",
            time.to_rfc3339()
        ));
    }
    Ok(())
}

/// A one-line reason for a failed load.
fn explain(e: DeltaTableError, version: &DeltaVersion) -> String {
    match e {
        DeltaTableError::NotATable(_) => {
            "not a Delta table (it has no _delta_log/ with a commit)".to_string()
        }
        DeltaTableError::InvalidVersion(v) => format!("has no version {v}"),
        other => {
            let text = other.to_string();
            let first = text.lines().next().unwrap_or_default().to_string();
            if *version == DeltaVersion::Latest {
                first
            } else {
                format!("reading {version}: {first}")
            }
        }
    }
}
