//! Files named in a query: `SELECT … FROM 'data/x.parquet'`, `'data/folder/'` or
//! `'s3://bucket/prefix/'`, read with the format of the files' extension, as
//! datafusion-cli does. A name that looks like a path but cannot be read is an error that
//! says why, not "table not found". Also: which plans only read the catalog
//! (`information_schema`, `DESCRIBE`), and so run in this process.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use datafusion::catalog::{DynamicFileCatalog, TableProvider, UrlTableFactory};
use datafusion::common::tree_node::TreeNodeRecursion;
use std::collections::HashMap;

use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use futures::StreamExt;

/// Gets the session's current state.
type StateSource = Box<dyn Fn() -> Option<SessionState> + Send + Sync>;

/// Makes tables of the paths a query names.
struct PathTables {
    state: OnceLock<StateSource>,
}

impl std::fmt::Debug for PathTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PathTables")
    }
}

/// Whether a table name is meant as a path: it has a `/`, a `.` or a URL scheme.
fn looks_like_path(name: &str) -> bool {
    name.contains('/') || name.contains('.')
}

#[async_trait]
impl UrlTableFactory for PathTables {
    async fn try_new(&self, url: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if !looks_like_path(url) {
            return Ok(None);
        }
        let state = self
            .state
            .get()
            .and_then(|source| source())
            .ok_or_else(|| DataFusionError::Internal("the session is gone".into()))?;
        let cannot = |e: DataFusionError| {
            let why = match e {
                DataFusionError::Internal(m) | DataFusionError::Plan(m) => m,
                other => other.to_string(),
            };
            DataFusionError::Plan(format!("cannot read '{url}' as a table: {why}"))
        };
        if !url.contains("://") && !std::path::Path::new(url).exists() {
            return Err(cannot(DataFusionError::Plan(
                "no such file or folder".into(),
            )));
        }
        let table_url = ListingTableUrl::parse(url).map_err(cannot)?;
        let options = listing_options(&state, &table_url).await.map_err(cannot)?;
        let config = ListingTableConfig::new(table_url)
            .with_listing_options(options)
            .infer_partitions_from_path(&state)
            .await
            .map_err(cannot)?
            .infer_schema(&state)
            .await
            .map_err(cannot)?;
        Ok(Some(Arc::new(ListingTable::try_new(config)?)))
    }
}

/// How to read the files under `url`: the format of the first data file's extension
/// (markers such as `_SUCCESS` and hidden files are not data), with the session's
/// options for that format.
async fn listing_options(state: &SessionState, url: &ListingTableUrl) -> Result<ListingOptions> {
    let store = state.runtime_env().object_store(url)?;
    let mut files = url.list_all_files(state, store.as_ref(), "").await?;
    let mut first = None;
    while let Some(file) = files.next().await {
        let file = file?;
        let name = file.location.filename().unwrap_or_default();
        if !(name.starts_with('_') || name.starts_with('.')) {
            first = Some(file);
            break;
        }
    }
    let file = first.ok_or_else(|| DataFusionError::Plan("no data files there".into()))?;
    let (extension, compression) =
        ListingTableConfig::infer_file_extension_and_compression_type(file.location.as_ref())?;
    let mut format_options = HashMap::new();
    if let Some(compression) = &compression {
        format_options.insert("format.compression".to_string(), compression.clone());
    }
    let format = state
        .get_file_format_factory(&extension)
        .ok_or_else(|| {
            DataFusionError::Plan(format!(
                "cannot tell the format of '.{extension}' files (parquet, csv or json)"
            ))
        })?
        .create(state, &format_options)?;
    let listing_extension = match compression {
        Some(compression) => format!(".{extension}.{compression}"),
        None => format!(".{extension}"),
    };
    Ok(ListingOptions::new(format).with_file_extension(listing_extension))
}

/// `ctx` with tables by path: a name in quotes that no table has is read as files.
pub fn with_tables_by_path(ctx: SessionContext) -> SessionContext {
    let factory = Arc::new(PathTables {
        state: OnceLock::new(),
    });
    let current = Arc::clone(ctx.state().catalog_list());
    let catalogs = Arc::new(DynamicFileCatalog::new(
        current,
        Arc::clone(&factory) as Arc<dyn UrlTableFactory>,
    ));
    let session_id = ctx.session_id();
    let ctx: SessionContext = ctx
        .into_state_builder()
        .with_session_id(session_id)
        .with_catalog_list(catalogs)
        .build()
        .into();
    let weak = ctx.state_weak_ref();
    // Set once, just made: it cannot be set already.
    let _ = factory.state.set(Box::new(move || {
        weak.upgrade().map(|state| state.read().clone())
    }));
    ctx
}

/// Whether `plan` reads nothing but the catalog (`SHOW TABLES`, `SHOW COLUMNS`,
/// `information_schema`, `DESCRIBE`): such plans answer from this process's catalog.
pub fn reads_only_the_catalog(plan: &LogicalPlan) -> bool {
    if matches!(plan, LogicalPlan::DescribeTable(_)) {
        return true;
    }
    let (mut catalog, mut other) = (false, false);
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if scan.table_name.schema() == Some("information_schema") {
                catalog = true;
            } else {
                other = true;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    catalog && !other
}
