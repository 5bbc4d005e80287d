//! `ember-bench`: runs Ember and its peers side by side in one invocation and prints
//! per-query times and ratios.
//!
//! `ember-bench tpch --sf 1 --executors 2` runs the 22 TPC-H queries on Ember's embedded
//! cluster (N executors, one slot each) and on DataFusion's `SessionContext` with N target
//! partitions, over the same Parquet files, and prints a markdown table; with `--cluster`
//! on a process cluster too, and with `--peers duckdb,polars,spark,ballista` on those
//! engines ([`peers`]), every result checked against DataFusion's.
//!
//! `ember-bench tpcds --sf 1 --executors 2` runs the 99 TPC-DS queries (data, texts and
//! answers from DuckDB's `tpcds` extension) on Ember and DataFusion ([`tpcds`]);
//! `ember-bench overhead --data data/tpcds-sf1 --query 83` says where one small query's
//! time goes before and after its rows move ([`overhead`]).
//!
//! `ember-bench forest --executors 2` runs random-forest feature preparation and training
//! against Spark MLlib ([`forest`]).
//!
//! `ember-bench suite` runs all of it with the peers it is given (`bench/run` gives DuckDB,
//! Polars, Spark and Ballista), writes the report into `BENCHMARKS.md` and the figures for
//! the chart ([`suite`]); `bench/run` installs the peers and calls it.
//!
//! `ember-bench scheduler --tasks 100000 --executors 200` drives the scheduler alone over
//! fake executors and prints launches per second and scheduling latency ([`scheduler`]).
//!
//! `ember-bench history --jobs 1000 --tasks 50` serves 1,000 synthetic finished jobs from
//! the history server and prints page latency and memory ([`history`]).
//!
//! `ember-bench dsl --executors 2` runs word count and a sum per key as DSL user functions
//! (batch functions, typed rows, `reduce_by_key`) against the same jobs in SQL ([`dsl`]).

mod adaptive;
mod cluster;
mod connectors;
mod dsl;
mod durable;
mod forest;
mod history;
mod overhead;
mod peers;
mod prices;
mod report;
mod scheduler;
mod suite;
mod tpcds;
mod tpch;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ember-bench",
    about = "Ember against its peers, side by side",
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The 22 TPC-H queries: Ember (embedded, and processes with --cluster) against
    /// DataFusion alone and the peers.
    Tpch(tpch::TpchBench),
    /// The whole suite: TPC-H, the product-price report, forest feature preparation and
    /// the shuffle micro-benchmark, against the peers; rewrites BENCHMARKS.md and writes the
    /// chart's figures.
    Suite(suite::SuiteBench),
    /// Word count and a sum per key: DSL user functions against the same jobs in SQL.
    Dsl(dsl::DslBench),
    /// Random-forest feature preparation and training against Spark MLlib.
    Forest(forest::ForestBench),
    /// The scheduler alone: launches per second and scheduling latency over fake
    /// executors.
    Scheduler(scheduler::SchedulerBench),
    /// The history server over many finished jobs: page latency (p50, p95) and memory.
    History(history::HistoryBench),
    /// Adaptive execution and speculation: TPC-H with adaptivity off and on, a skewed join
    /// against Spark with AQE, and a frozen executor with speculation off and on.
    Adaptive(adaptive::AdaptiveBench),
    /// Durable job state: TPC-H on process clusters with no store, a state folder and
    /// etcd, and the time from a scheduler's kill to the first task of the resumed job.
    Durable(durable::DurableBench),
    /// Connectors: read throughput per executor of Delta, PostgreSQL and Kafka tables, and
    /// the Delta read of TPC-H lineitem against the Parquet read of the same files.
    Connectors(connectors::ConnectorsBench),
    /// TPC-DS: the 99 queries on Ember and DataFusion over DuckDB's dsdgen data, each
    /// result checked against DuckDB's.
    Tpcds(tpcds::TpcdsBench),
    /// Fixed costs: where one small TPC-DS query's time goes before and after its rows
    /// move (planning, stage cutting and encoding, task phases, scheduling, result
    /// return), on DataFusion and on Ember.
    Overhead(overhead::OverheadBench),
}

/// The allocator of the `ember` binary, set up alike, so that DataFusion and the embedded
/// cluster in this process and the executor processes all allocate alike.
#[path = "../../cli/src/allocator.rs"]
mod allocator;

fn main() -> anyhow::Result<()> {
    allocator::configure();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Dsl(bench) => dsl::run(&bench).await,
        Command::Forest(bench) => forest::run(&bench).await,
        Command::Tpch(bench) => tpch::run(&bench, &mut report::Report::default()).await,
        Command::Suite(suite) => suite::run(&suite).await,
        Command::Scheduler(bench) => scheduler::run(&bench).await,
        Command::History(bench) => history::run(&bench).await,
        Command::Adaptive(bench) => adaptive::run(&bench).await,
        Command::Durable(bench) => durable::run(&bench).await,
        Command::Connectors(bench) => connectors::run(&bench).await,
        Command::Tpcds(bench) => tpcds::run(&bench).await,
        Command::Overhead(bench) => overhead::run(&bench).await,
    }
}
