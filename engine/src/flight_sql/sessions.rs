//! [`FlightSqlSessions`]: the [`Session`] that Flight SQL statements run in, and
//! [`flight_sql_session`], the one function that decides what that session sees.
//!
//! The session is a client of this process's own scheduler. Its plans are cut into as
//! many partitions as the cluster has task slots when it connects, so a session made
//! before the executors registered would plan every query for one slot: each statement
//! checks the cluster's slots, and a new session replaces the old one when they changed,
//! taking over the tables and views the old one had (those of the scheduler's `--table`
//! options and those created through Flight SQL since).

use std::sync::Arc;

use datafusion::prelude::SessionContext;
use ember_proto::security::ClientSecurity;

use crate::cluster::Cluster;
use crate::config::EmberConfig;
use crate::error::Result;
use crate::session::Session;
use crate::tables::TableSpec;

/// The session of the Flight SQL endpoint, renewed when the cluster's slots change.
pub struct FlightSqlSessions {
    /// The scheduler's URL.
    url: String,
    /// The token and CA to reach it with.
    security: ClientSecurity,
    /// Tables every session starts with.
    tables: Vec<TableSpec>,
    /// The session in use and the slot count it plans for.
    current: tokio::sync::Mutex<Option<(usize, Arc<Session>)>>,
}

impl FlightSqlSessions {
    /// Sessions on the scheduler at `url`, with `tables` registered.
    pub fn new(url: String, security: ClientSecurity, tables: Vec<TableSpec>) -> Self {
        Self {
            url,
            security,
            tables,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The session to run the next statement in: the current one while the cluster's
    /// slots are what it planned for, otherwise a new one that takes over its tables.
    pub async fn current(&self) -> Result<Arc<Session>> {
        let mut current = self.current.lock().await;
        if let Some((slots, session)) = current.as_ref()
            && total_slots(session).await? == *slots
        {
            // Tables other clients made in the scheduler's catalog since the last statement.
            session.sync_catalog().await?;
            return Ok(Arc::clone(session));
        }
        let previous = current.take().map(|(_, session)| session);
        let session =
            flight_sql_session(&self.url, &self.security, &self.tables, previous.as_deref())
                .await?;
        session.sync_catalog().await?;
        let slots = total_slots(&session).await?;
        let session = Arc::new(session);
        *current = Some((slots, Arc::clone(&session)));
        Ok(session)
    }
}

/// Builds the session Flight SQL statements run in: connected to the scheduler at `url`,
/// with `tables` registered and, when it replaces `previous`, every table and view that
/// one held. When the scheduler serves a catalog (`--catalog DIR`), the session uses it
/// (as every client of the scheduler does): its tables are loaded before each statement,
/// and those created through Flight SQL are recorded in it.
pub async fn flight_sql_session(
    url: &str,
    security: &ClientSecurity,
    tables: &[TableSpec],
    previous: Option<&Session>,
) -> Result<Session> {
    let session = Session::connect_with(url, security.clone(), EmberConfig::default()).await?;
    for table in tables {
        session.register_table(table).await?;
    }
    if let Some(previous) = previous {
        take_over_tables(previous.context(), session.context()).await?;
    }
    Ok(session)
}

/// Registers in `to` every table of `from` that `to` lacks, in the same catalog and
/// schema (where `to` has them).
async fn take_over_tables(from: &SessionContext, to: &SessionContext) -> Result<()> {
    for catalog_name in from.catalog_names() {
        let (Some(source), Some(target)) = (from.catalog(&catalog_name), to.catalog(&catalog_name))
        else {
            continue;
        };
        for schema_name in source.schema_names() {
            let (Some(source), Some(target)) =
                (source.schema(&schema_name), target.schema(&schema_name))
            else {
                continue;
            };
            for table_name in source.table_names() {
                if target.table_exist(&table_name) {
                    continue;
                }
                if let Some(provider) = source.table(&table_name).await? {
                    target.register_table(table_name, provider)?;
                }
            }
        }
    }
    Ok(())
}

/// The task slots of the session's cluster now.
async fn total_slots(session: &Session) -> Result<usize> {
    Ok(match session.cluster() {
        Cluster::Remote(remote) => remote.executors().await?.iter().map(|e| e.slots).sum(),
        Cluster::Local(local) => local.executors().len() * session.config().slots,
    })
}
