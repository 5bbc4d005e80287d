//! Ember: a distributed batch dataflow engine in the family of MapReduce and Spark.
//!
//! A [`Session`] plans SQL with DataFusion, cuts the physical plan into stages at every
//! shuffle (`ember_planner`), and runs the stages on executors (`ember_executors`) that
//! exchange Arrow IPC shuffle files (LZ4 when they may cross machines). By default the
//! whole cluster lives in this process ([`LocalCluster`]), but every task plan is still
//! serialized and every shuffle still goes through files, so the same job runs unchanged
//! on a cluster of machines.
//!
//! ```text
//!   SQL ──▶ DataFusion plan ──▶ stages ──▶ Scheduler ──▶ tasks ──▶ Executors ──▶ shuffle files
//!                                                                      │
//!                                              result ◀── final stage ◀┘
//! ```
//!
//! ```no_run
//! # async fn example() -> ember::Result<()> {
//! use ember::{Session, TableSpec};
//!
//! let session = Session::local(2)?; // two executors in this process
//! session
//!     .register_table(&"sales=data/sales.parquet".parse::<TableSpec>()?)
//!     .await?;
//! let result = session
//!     .sql("SELECT product, avg(price) FROM sales GROUP BY product ORDER BY product")
//!     .await?;
//! println!("{} rows", result.num_rows());
//! # Ok(())
//! # }
//! ```

pub mod bad_rows;
pub mod cli;
pub mod cluster;
pub mod commit;
pub mod config;
pub mod dataset;
mod error;
pub mod flight_sql;
pub mod output;
pub mod pipelines;
pub mod progress;
pub mod report;
pub mod result_stream;
mod rows;
pub mod session;
mod shared;
pub mod sql;
pub(crate) mod sync;
pub mod tables;
pub mod typed;

pub use bad_rows::BadRows;
pub use cluster::{Cluster, LocalCluster, RemoteCluster};
pub use commit::WriteMode;
pub use config::EmberConfig;
pub use dataset::{Dataset, GroupedDataset};
pub use ember_planner::FunctionRegistry;
pub use ember_proto::AccumulatorValue;
pub use error::{EmberError, Result};
pub use output::{OutputFormat, ResultWriter, write_result};
pub use result_stream::QueryResult;
pub use result_stream::ResultStream;
pub use rows::{Row, TypedFunctions};
pub use session::Session;
pub use shared::{Broadcast, DoubleAccumulator, LongAccumulator};
pub use tables::{FileFormat, TableSpec};
pub use typed::TypedDataset;

pub use datafusion;
pub use ember_connectors as connectors;
pub use ember_datasets as datasets;
pub use ember_executors as executors;
pub use ember_planner as planner;
pub use ember_proto as proto;
pub use ember_scheduler as scheduler;

/// Registers in `functions` the functions that Ember's own plans call by name (the
/// record-by-record reader behind [`BadRows`], and the planner's sampler). Every session
/// and executor must carry them: [`builtin_functions`] starts with them, and every
/// registry a [`Session`] or [`cli::main_with`] is given gets them.
pub fn register_builtin_functions(functions: &FunctionRegistry) {
    bad_rows::register_bad_rows_function(functions);
}

/// A new [`FunctionRegistry`] holding Ember's built-in functions only: the start of every
/// session's and every executor process's registry.
pub fn builtin_functions() -> FunctionRegistry {
    let functions = FunctionRegistry::new();
    register_builtin_functions(&functions);
    functions
}
