//! `ballista-peer`: Ballista standalone as a peer of `ember-bench`, in the shape of Ember's
//! embedded cluster: one scheduler and `--threads` executors of one task slot each, all in
//! this process and talking over gRPC and Flight on loopback, as Ballista's own standalone
//! mode does (which starts one executor with N slots).
//!
//! It speaks the same protocol as `bench/python/peers.py`, one JSON object per line:
//!
//! ```text
//! -> {"ready": true, "engine": "ballista", "version": "55.0.0", "startup_ms": 812.0}
//! <- {"query": "q01", "sql": "SELECT ...", "runs": 4}
//! -> {"query": "q01", "times_ms": [...], "rows": [["A", "F", ...], ...]}   or {"error": ...}
//! <- {"peak_rss": true}
//! -> {"peak_rss_mb": 812.3}
//! ```
//!
//! Tables: every folder of `--data` that holds Parquet files is registered under its name.

use std::io::{BufRead, Write};
use std::time::Instant;

use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use serde_json::{Value, json};

struct Args {
    data: String,
    threads: usize,
}

fn args() -> Result<Args> {
    let mut data = None;
    let mut threads = 2;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| DataFusionError::Configuration(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--data" => data = Some(value),
            "--threads" => {
                threads = value.parse().map_err(|_| {
                    DataFusionError::Configuration(format!("--threads {value}: not a number"))
                })?
            }
            "--engine" => {}
            other => {
                return Err(DataFusionError::Configuration(format!(
                    "unknown option {other} (expected --data, --threads)"
                )));
            }
        }
    }
    let data = data.ok_or_else(|| DataFusionError::Configuration("--data is required".into()))?;
    Ok(Args { data, threads })
}

/// Starts the scheduler and `executors` executors of one slot, and returns a client
/// context on them with `executors` shuffle partitions.
async fn cluster(executors: usize) -> Result<SessionContext> {
    let config = SessionConfig::new_with_ballista()
        .with_target_partitions(executors)
        .with_ballista_standalone_parallelism(1);
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    let addr = ballista_scheduler::standalone::new_standalone_scheduler_from_state(&state)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let url = format!("http://localhost:{}", addr.port());
    for _ in 0..executors {
        let scheduler = loop {
            match SchedulerGrpcClient::connect(url.clone()).await {
                Ok(client) => break client,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        };
        ballista_executor::new_standalone_executor_from_state(scheduler, 1, &state)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
    }
    let state = state.upgrade_for_ballista(url)?;
    Ok(SessionContext::new_with_state(state))
}

fn text_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>> {
    let mut rows = Vec::new();
    for batch in batches {
        for i in 0..batch.num_rows() {
            let row = batch
                .columns()
                .iter()
                .map(|c| match c.is_null(i) {
                    true => Ok(String::new()),
                    false => array_value_to_string(c, i),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            rows.push(row);
        }
    }
    Ok(rows)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn run(ctx: &SessionContext, sql: &str, runs: usize) -> Result<Value> {
    let mut times = Vec::new();
    let mut rows = Vec::new();
    for _ in 0..runs {
        let begun = Instant::now();
        let batches = ctx.sql(sql).await?.collect().await?;
        times.push(begun.elapsed().as_secs_f64() * 1000.0);
        rows = text_rows(&batches)?;
    }
    Ok(json!({"times_ms": times, "rows": rows}))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let started = Instant::now();
    let ctx = cluster(args.threads.max(1)).await?;
    for entry in std::fs::read_dir(&args.data)? {
        let path = entry?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if path.is_dir() {
            ctx.register_parquet(
                &name,
                path.to_string_lossy().as_ref(),
                ParquetReadOptions::default(),
            )
            .await?;
        }
    }
    let startup_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut out = std::io::stdout().lock();
    let ready =
        json!({"ready": true, "engine": "ballista", "version": "55.0.0", "startup_ms": startup_ms});
    writeln!(out, "{ready}")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let request: Value = serde_json::from_str(&line?)
            .map_err(|e| DataFusionError::Execution(format!("bad request: {e}")))?;
        if request.get("peak_rss").is_some() {
            writeln!(out, "{}", json!({"peak_rss_mb": peak_rss_mb()}))?;
            out.flush()?;
            continue;
        }
        let query = request["query"].as_str().unwrap_or("?").to_string();
        let sql = request["sql"]
            .as_str()
            .unwrap_or("")
            .trim()
            .trim_end_matches(';');
        let runs = request["runs"].as_u64().unwrap_or(1) as usize;
        let mut reply = match run(&ctx, sql, runs).await {
            Ok(reply) => reply,
            Err(e) => json!({"error": e.to_string().lines().next().unwrap_or("").to_string()}),
        };
        reply["query"] = json!(query);
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}
