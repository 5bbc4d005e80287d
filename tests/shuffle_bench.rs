//! The shuffle between hosts, measured: a job that moves TPC-H `lineitem`'s rows through
//! one hash shuffle on a [`HostCluster`] of two executor hosts, with the executors'
//! shuffle codec set to `none` or `lz4`, each with the executor links unlimited and
//! limited to 1 Gbit/s (a token bucket on both directions of both links). It prints the
//! median job time of each and the rate per executor, reckoned on the bytes the job moves
//! uncompressed (the `none` run's shuffle bytes).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use datafusion::functions_aggregate::expr_fn::{count, max, sum};
use datafusion::prelude::{col, lit};
use ember::{EmberConfig, Session};

use crate::host_cluster::HostCluster;

/// Executor hosts of the benchmark.
const EXECUTORS: usize = 2;
/// Shuffle partitions (one per slot).
const PARTITIONS: usize = 4;

/// What the benchmark runs on.
#[derive(Debug, Clone)]
pub struct ShuffleBenchOptions {
    /// The `ember-node` binary.
    pub node: PathBuf,
    /// The `lineitem` folder of TPC-H data.
    pub lineitem: PathBuf,
    /// Timed runs per setting (after one warm-up).
    pub runs: usize,
    /// The limit of the limited runs, in Mbit/s.
    pub limit_mbit: u32,
}

/// One measured setting.
struct Measure {
    codec: &'static str,
    limit: Option<u32>,
    median: Duration,
    shuffle_bytes: u64,
    rows: u64,
}

/// The job: lineitem's wide columns, hash-shuffled on the order key, then aggregated
/// (so that every column crosses the shuffle and little else happens after it). Its time,
/// shuffle bytes as written and the rows that went through the shuffle.
async fn shuffle_job(session: &Session, lineitem: &Path) -> Result<(Duration, u64, u64), String> {
    let started = Instant::now();
    let result = session
        .read_parquet(&lineitem.to_string_lossy())
        .await
        .and_then(|ds| {
            ds.select_columns(&[
                "l_orderkey",
                "l_partkey",
                "l_suppkey",
                "l_extendedprice",
                "l_shipinstruct",
                "l_comment",
            ])
        })
        .and_then(|ds| ds.repartition_by(vec![col("l_orderkey")], PARTITIONS))
        .and_then(|ds| {
            ds.group_by(vec![]).agg(vec![
                count(lit(1)).alias("rows"),
                sum(col("l_extendedprice")).alias("price"),
                max(col("l_comment")).alias("comment"),
                max(col("l_shipinstruct")).alias("instruction"),
                sum(col("l_partkey") + col("l_suppkey")).alias("keys"),
            ])
        })
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let metrics = result.metrics.ok_or("the job ran no stage")?;
    // Only the scan stage writes shuffle output that crosses to the aggregation.
    let first = metrics
        .stages
        .first()
        .map(|s| s.stage_id)
        .ok_or("no stage")?;
    let (shuffle_bytes, rows) = metrics
        .tasks
        .iter()
        .filter(|t| t.stage_id == first)
        .fold((0, 0), |(bytes, rows), t| (bytes + t.bytes, rows + t.rows));
    Ok((elapsed, shuffle_bytes, rows))
}

/// Runs the benchmark; the table to print.
pub async fn run(options: &ShuffleBenchOptions) -> Result<String, String> {
    let mut measures = Vec::new();
    for codec in ["none", "lz4"] {
        let cluster = HostCluster::start(&options.node, EXECUTORS, &[], &["--compression", codec])?;
        let mut config = EmberConfig::default();
        // Every partition is its own reduce task: the shuffle is what is measured.
        config
            .set("ember.adaptive.enabled", "false")
            .map_err(|e| e.to_string())?;
        let session = cluster.session(config).await;
        for limit in [None, Some(options.limit_mbit)] {
            for host in 2..=EXECUTORS + 1 {
                match limit {
                    Some(mbit) => cluster.hosts().limit(host, mbit)?,
                    None => {
                        let _ = cluster.hosts().unlimit(host);
                    }
                }
            }
            shuffle_job(&session, &options.lineitem).await?;
            let mut times = Vec::new();
            let (mut shuffle_bytes, mut rows) = (0, 0);
            for _ in 0..options.runs.max(1) {
                let (elapsed, bytes, n) = shuffle_job(&session, &options.lineitem).await?;
                times.push(elapsed);
                (shuffle_bytes, rows) = (bytes, n);
            }
            times.sort();
            let median = times[times.len() / 2];
            eprintln!(
                "{codec} {}: {:.2} s, {shuffle_bytes} shuffle bytes",
                limit.map_or("unlimited".to_string(), |m| format!("{m} Mbit/s")),
                median.as_secs_f64()
            );
            measures.push(Measure {
                codec,
                limit,
                median,
                shuffle_bytes,
                rows,
            });
        }
    }
    let raw = measures
        .iter()
        .find(|m| m.codec == "none")
        .map_or(1, |m| m.shuffle_bytes.max(1));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| codec | executor links | job time (median of {}) | shuffle bytes written | ratio | rate per executor (uncompressed) |",
        options.runs
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
    for m in &measures {
        let rate = raw as f64 / m.median.as_secs_f64() / EXECUTORS as f64 / 1e6;
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} s | {:.1} MB | {:.2} | {:.0} MB/s |",
            m.codec,
            m.limit.map_or("unlimited veth".to_string(), |mbit| format!(
                "{mbit} Mbit/s"
            )),
            m.median.as_secs_f64(),
            m.shuffle_bytes as f64 / 1e6,
            m.shuffle_bytes as f64 / raw as f64,
            rate
        );
    }
    if let Some(first) = measures.first() {
        let _ = writeln!(out, "\n{} rows through the shuffle per run.", first.rows);
    }
    Ok(out)
}
