//! `ember-bench connectors`: read throughput of each connector per executor (an embedded
//! cluster of `--executors` executors, 1 by default), in rows/s and MB/s, and the Delta
//! read of TPC-H `lineitem` against the Parquet read of the same files.
//!
//! - Delta: the `lineitem` Parquet files are linked into a folder and committed as
//!   version 0 of a Delta table (with their statistics), so both reads see the same
//!   bytes; TPC-H q1 and a full scan run on each, alternating, and the medians compare.
//! - PostgreSQL: `orders` is loaded into a server started here (`initdb`, as in the
//!   tests) and read whole in `--executors` × 2 key ranges; MB/s counts the table's size
//!   in PostgreSQL.
//! - Kafka: `--messages` JSON messages over 6 partitions are produced to a tansu broker
//!   started here (one per record batch, see `--messages`), then read as bytes and as
//!   JSON; MB/s counts the values' bytes.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use ember::connectors::delta::commit::{DeltaWriteMode, WrittenFile, commit, prepare};
use ember::connectors::delta::{store_for, table_url};
use ember::connectors::kafka::KafkaOptions;
use ember::{EmberConfig, Session, TableSpec, WriteMode};
use ember_tests::kafka::KafkaBroker;
use ember_tests::postgres::PostgresServer;

use crate::peers::median_after_warmup;
use crate::tpch::TpchBench;

/// Options of `ember-bench connectors`.
#[derive(Args, Clone)]
pub struct ConnectorsBench {
    #[command(flatten)]
    pub tpch: TpchBench,
    /// Kafka messages to produce and read (one per record batch: tansu 0.6's in-memory
    /// storage counts a batch as one offset in its high watermark).
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// Leave out PostgreSQL and Kafka (Delta only).
    #[arg(long)]
    pub delta_only: bool,
}

/// Runs `sql` `runs` times; the seconds of each run and the last result's first row.
async fn time(
    session: &Session,
    sql: &str,
    runs: usize,
) -> anyhow::Result<(Vec<f64>, Vec<String>)> {
    let mut times = Vec::new();
    let mut row = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let result = session.sql(sql).await?;
        times.push(start.elapsed().as_secs_f64());
        row = ember_tests::rows(&result.batches)
            .into_iter()
            .next()
            .unwrap_or_default();
    }
    Ok((times, row))
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn line(name: &str, seconds: f64, rows: u64, bytes: u64) {
    println!(
        "{name:<34} {seconds:>8.3} s {:>12.0} rows/s {:>9.1} MB/s",
        rows as f64 / seconds,
        bytes as f64 / 1e6 / seconds
    );
}

/// Runs the benchmark and prints its table.
pub async fn run(bench: &ConnectorsBench) -> anyhow::Result<()> {
    let data = bench.tpch.ensure_data()?;
    let runs = bench.tpch.iterations + 1;
    let session = Session::new(EmberConfig {
        executors: bench.tpch.executors,
        ..EmberConfig::default()
    })?;
    println!(
        "ember-bench connectors: {} executor(s), median of {} runs after a warm-up",
        bench.tpch.executors, bench.tpch.iterations
    );

    // Delta over the very files of the Parquet table.
    let work = tempfile::Builder::new()
        .prefix("ember-bench-delta-")
        .tempdir()?;
    let parquet = data.join("lineitem");
    let delta = work.path().join("lineitem");
    std::fs::create_dir_all(&delta)?;
    let mut files = Vec::new();
    let url = table_url(&delta.to_string_lossy())?;
    for entry in std::fs::read_dir(&parquet)?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "parquet") {
            let name = entry.file_name();
            let target = delta.join(&name);
            std::fs::hard_link(&path, &target)
                .or_else(|_| std::fs::copy(&path, &target).map(|_| ()))?;
            files.push(WrittenFile {
                path: object_store::path::Path::from_url_path(
                    url.join(&name.to_string_lossy())?.path(),
                )?,
                size: entry.metadata()?.len(),
            });
        }
    }
    let schema = session
        .context()
        .read_parquet(parquet.to_string_lossy().to_string(), Default::default())
        .await?
        .schema()
        .as_arrow()
        .clone();
    let store = store_for(session.context().runtime_env().as_ref(), &url)?;
    let prepared = prepare(
        store,
        &url,
        &delta.to_string_lossy(),
        &schema,
        DeltaWriteMode::ErrorIfExists,
    )
    .await?;
    commit(prepared, &files).await?;
    session
        .register_table(&TableSpec::new(
            "lineitem_parquet",
            parquet.to_string_lossy(),
            None,
        ))
        .await?;
    session
        .register_table(&TableSpec::new(
            "lineitem_delta",
            delta.to_string_lossy(),
            None,
        ))
        .await?;
    let bytes = folder_bytes(&parquet);
    let q1 =
        std::fs::read_to_string(bench.tpch.queries.join("q01.sql")).context("reading q01.sql")?;
    let scan = "SELECT count(*), sum(l_quantity), sum(l_extendedprice), max(l_comment), \
                max(l_shipinstruct), min(l_shipdate) FROM {}";
    let rows: u64 = session
        .sql("SELECT count(*) FROM lineitem_parquet")
        .await?
        .batches
        .first()
        .and_then(|b| ember_tests::rows(std::slice::from_ref(b)).first().cloned())
        .and_then(|r| r.first().and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    for (what, sql) in [("q1", q1.as_str()), ("full scan", scan)] {
        let mut parquet_times = Vec::new();
        let mut delta_times = Vec::new();
        let mut answers = Vec::new();
        for _ in 0..runs {
            for (table, times) in [
                ("lineitem_parquet", &mut parquet_times),
                ("lineitem_delta", &mut delta_times),
            ] {
                let text = sql.replace("lineitem", table).replace("{}", table);
                let (t, row) = time(&session, &text, 1).await?;
                times.extend(t);
                answers.push(row);
            }
        }
        anyhow::ensure!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "Delta and Parquet answers differ for {what}: {answers:?}"
        );
        let p = median_after_warmup(&parquet_times).unwrap_or(f64::NAN);
        let d = median_after_warmup(&delta_times).unwrap_or(f64::NAN);
        line(&format!("parquet lineitem {what}"), p, rows, bytes);
        line(&format!("delta lineitem {what}"), d, rows, bytes);
        println!(
            "{:<34} {:>8.3} x (goal <= 1.10)",
            format!("delta / parquet, {what}"),
            d / p
        );
    }
    if bench.delta_only {
        return Ok(());
    }

    // PostgreSQL: orders, read in ranges of its key.
    let server = PostgresServer::start();
    server.create_database("bench");
    let pg = server.url("bench");
    session
        .register_table(&TableSpec::new(
            "orders",
            data.join("orders").to_string_lossy(),
            None,
        ))
        .await?;
    let load = Instant::now();
    let loaded = session
        .table("orders")
        .await?
        .write_postgres(&pg, "orders", WriteMode::Overwrite)
        .await?;
    let load_seconds = load.elapsed().as_secs_f64();
    let order_rows: u64 = ember_tests::rows(&loaded.batches)[0][0].parse()?;
    let max_key: i64 = server
        .psql("bench", "SELECT max(o_orderkey) FROM orders")
        .map_err(anyhow::Error::msg)?
        .parse()?;
    let table_bytes: u64 = server
        .psql("bench", "SELECT pg_relation_size('orders')")
        .map_err(anyhow::Error::msg)?
        .parse()?;
    line(
        "postgres orders write (COPY in)",
        load_seconds,
        order_rows,
        table_bytes,
    );
    let ranges = bench.tpch.executors * 2;
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE orders_pg STORED AS POSTGRES LOCATION '{pg}' OPTIONS \
             ('table' 'orders', 'partition_column' 'o_orderkey', 'lower_bound' '1', \
             'upper_bound' '{max_key}', 'num_partitions' '{ranges}')"
        ))
        .await?;
    let sql = "SELECT count(*), sum(o_totalprice), max(o_comment), min(o_orderdate) FROM orders_pg";
    let (times, _) = time(&session, sql, runs).await?;
    line(
        &format!("postgres orders read ({ranges} ranges)"),
        median_after_warmup(&times).unwrap_or(f64::NAN),
        order_rows,
        table_bytes,
    );

    // Kafka: JSON messages over 6 partitions.
    let broker = KafkaBroker::start();
    let topic = "bench";
    let status = std::process::Command::new(ember_tests::kafka::tansu())
        .args(["topic", "create", topic, "--partitions", "6", "--broker"])
        .arg(format!("tcp://{}", broker.address))
        .status();
    anyhow::ensure!(
        status.is_ok_and(|s| s.success()),
        "tansu topic create failed"
    );
    let messages = bench.messages;
    let produce = Instant::now();
    let produced = session
        .sql_dataset(&format!(
            "SELECT CAST(l_orderkey AS VARCHAR) AS key, concat('{{\"orderkey\":', l_orderkey, \
             ',\"quantity\":', l_quantity, ',\"price\":', l_extendedprice, ',\"mode\":\"', \
             l_shipmode, '\"}}') AS value FROM lineitem_parquet LIMIT {messages}"
        ))
        .await?
        .write_kafka(&KafkaOptions::from_url(&format!(
            "{}?batch_records=1",
            broker.url(topic)
        ))?)
        .await?;
    let produce_seconds = produce.elapsed().as_secs_f64();
    let count: u64 = ember_tests::rows(&produced.batches)[0][0].parse()?;
    for format in ["raw", "json"] {
        let name = format!("kafka_{format}");
        session
            .register_table(&TableSpec::new(
                name.as_str(),
                format!("{}?value_format={format}", broker.url(topic)),
                None,
            ))
            .await?;
    }
    let value_bytes: u64 = ember_tests::rows(
        &session
            .sql("SELECT sum(length(value)) FROM kafka_raw")
            .await?
            .batches,
    )[0][0]
        .parse()?;
    line("kafka produce (JSON)", produce_seconds, count, value_bytes);
    let (times, _) = time(
        &session,
        "SELECT count(*), max(offset), sum(length(value)) FROM kafka_raw",
        runs,
    )
    .await?;
    line(
        "kafka read, bytes",
        median_after_warmup(&times).unwrap_or(f64::NAN),
        count,
        value_bytes,
    );
    let (times, _) = time(
        &session,
        "SELECT count(*), sum(value['quantity']), max(value['mode']) FROM kafka_json",
        runs,
    )
    .await?;
    line(
        "kafka read, JSON",
        median_after_warmup(&times).unwrap_or(f64::NAN),
        count,
        value_bytes,
    );
    drop(broker);
    drop(server);
    Ok(())
}
