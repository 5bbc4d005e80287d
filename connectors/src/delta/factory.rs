//! [`DeltaTableFactory`]: `CREATE EXTERNAL TABLE t STORED AS DELTA LOCATION '...'`, with
//! `OPTIONS ('version' 'N')` or `OPTIONS ('timestamp' 'RFC 3339 time')` to pin a version.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::CreateExternalTable;

use super::open::{DeltaVersion, load, store_for, table_url};
use super::provider::DeltaTableProvider;
use crate::error::ConnectorError;

/// Makes [`DeltaTableProvider`]s for `STORED AS DELTA`.
#[derive(Debug, Default)]
pub struct DeltaTableFactory;

/// The version that table options ask for (`version`, `timestamp`; with or without a
/// `format.` prefix).
pub fn version_from_options<'a>(
    options: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<DeltaVersion, ConnectorError> {
    let mut version = DeltaVersion::Latest;
    for (key, value) in options {
        let key = key.strip_prefix("format.").unwrap_or(key);
        match key {
            "version" => {
                let n = value
                    .trim()
                    .parse::<u64>()
                    .map_err(|e| ConnectorError::Option {
                        key: "version".into(),
                        message: format!("'{value}' is not a version number: {e}"),
                    })?;
                version = DeltaVersion::Version(n);
            }
            "timestamp" => {
                let t = chrono::DateTime::parse_from_rfc3339(value.trim()).map_err(|e| {
                    ConnectorError::Option {
                        key: "timestamp".into(),
                        message: format!("'{value}' is not an RFC 3339 time: {e}"),
                    }
                })?;
                version = DeltaVersion::Timestamp(t.with_timezone(&chrono::Utc));
            }
            _ => {}
        }
    }
    Ok(version)
}

#[async_trait]
impl TableProviderFactory for DeltaTableFactory {
    async fn create(
        &self,
        state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let version = version_from_options(cmd.options.iter())?;
        let location = match cmd.locations.as_slice() {
            [one] => one.clone(),
            _ => {
                return Err(ConnectorError::Option {
                    key: "LOCATION".into(),
                    message: "a Delta table has one location".into(),
                }
                .into());
            }
        };
        let url = table_url(&location)?;
        let store = store_for(state.runtime_env(), &url)?;
        let table = load(Arc::clone(&store), &url, &location, &version).await?;
        let provider = DeltaTableProvider::try_new(&table, &location, &url)?;
        Ok(Arc::new(if version == DeltaVersion::Latest {
            provider.following_latest(table)
        } else {
            provider
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn options_pin_a_version() {
        let options: HashMap<String, String> =
            [("format.version".to_string(), "3".to_string())].into();
        assert_eq!(
            version_from_options(options.iter()).expect("valid"),
            DeltaVersion::Version(3)
        );
        let options: HashMap<String, String> =
            [("timestamp".to_string(), "yesterday".to_string())].into();
        let e = version_from_options(options.iter()).expect_err("not a time");
        assert!(e.to_string().contains("timestamp"), "{e}");
    }
}
