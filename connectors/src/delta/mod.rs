//! Delta Lake tables: opening one at a version or a time ([`load`]), scanning it as plain
//! Parquet files ([`DeltaTableProvider`]), `CREATE EXTERNAL TABLE ... STORED AS DELTA`
//! ([`DeltaTableFactory`]) and committing the files a job wrote as one new version
//! ([`commit`]).
//!
//! The log is read by `deltalake-core` in the driver; the plan the executors run is
//! DataFusion's Parquet scan of the files that the snapshot holds and that the query's
//! filters do not rule out (by partition values and the files' statistics), so it travels
//! to executors and splits over tasks like any other file scan.

pub mod commit;
mod factory;
mod open;
mod provider;
pub mod stats;

pub use factory::DeltaTableFactory;
pub use open::{DeltaVersion, load, store_for, table_url};
pub use provider::DeltaTableProvider;
