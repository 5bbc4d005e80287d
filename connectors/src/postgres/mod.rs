//! PostgreSQL tables: a partitioned, parallel read ([`PostgresTable`], scanned by
//! [`PostgresScanExec`] tasks, each running `COPY (SELECT ...) TO STDOUT` for one range of
//! the partition column, with the query's projection and filters in its `SELECT`) and a
//! write ([`PostgresWriteExec`] tasks each `COPY` their rows into a staging table of their
//! own in one transaction; the driver's [`write::commit`] moves the winners' rows into
//! the table in one transaction and drops every staging table).
//!
//! Rows cross as CSV (`NULL '\N'`): PostgreSQL's fastest text path, read and written by
//! arrow's CSV reader and writer with the table's schema, so no type is decoded by hand.

mod connect;
mod options;
mod provider;
mod scan;
mod types;
pub mod write;

pub use connect::Connection;
pub use options::{PostgresOptions, Ranges};
pub use provider::{PostgresTable, PostgresTableFactory};
pub use scan::PostgresScanExec;
pub use write::PostgresWriteExec;
