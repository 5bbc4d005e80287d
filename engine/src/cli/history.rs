//! `ember history`: what the event logs of a folder say. With no job id it lists the jobs
//! (id, name, start, duration, status, stages, tasks, failed attempts, rows and bytes
//! shuffled, spill); with one it prints that job's stages and its tasks. Each log is
//! replayed through the scheduler's own `JobState`, so the figures are the ones the live
//! run had. Lines that cannot be read are reported on stderr with their file and line, and
//! the rest is still read.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{Field, Schema};
use clap::Args;

use super::common::{SecurityArgs, ServerTlsArgs, announce, shutdown_signal};
use crate::executors::storage::StoreOptions;
use crate::{OutputFormat, write_result};
use ember_proto::http::HttpServer;
use ember_proto::security::check_exposure;
use ember_scheduler::ui::{HistorySource, UiSource, serve, utc};
use ember_scheduler::{EventLogDir, JobMetrics, JobState, LoggedJob, Status, scan_event_logs};

#[derive(Args)]
pub(super) struct HistoryArgs {
    /// Folder (or object-store URL) of the event logs, as given to --event-log.
    #[arg(long, value_name = "DIR")]
    log_dir: String,
    /// A job's id: print its stages and tasks instead of the list of jobs.
    job_id: Option<String>,
    /// Output format: table, csv or json.
    #[arg(long, default_value = "table")]
    format: OutputFormat,
    /// Serve the folder's jobs as the web UI and REST API (/api/v1/) on this address
    /// (the history server), read again as the logs change, until Ctrl-C.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["job_id", "format"])]
    bind: Option<std::net::SocketAddr>,
    #[command(flatten)]
    security: SecurityArgs,
    #[command(flatten)]
    tls: ServerTlsArgs,
}

/// Runs `ember history`.
pub(super) async fn run_history(args: HistoryArgs) -> anyhow::Result<()> {
    let local = !args.log_dir.contains("://");
    if local && !std::path::Path::new(&args.log_dir).is_dir() {
        anyhow::bail!("--log-dir {}: no such folder", args.log_dir);
    }
    let dir = EventLogDir::new(args.log_dir.clone(), StoreOptions::default());
    if let Some(bind) = args.bind {
        return serve_history(dir, bind, &args).await;
    }
    let scan = scan_event_logs(&dir)
        .await
        .with_context(|| format!("reading the event logs in {}", args.log_dir))?;
    for problem in &scan.problems {
        eprintln!("warning: skipped {problem}");
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match &args.job_id {
        None => {
            let batch = job_list(&scan.jobs)?;
            write_result(&mut out, &batch.schema(), &[batch], args.format)?;
        }
        Some(id) => {
            let Some(job) = scan.jobs.iter().find(|j| j.shape.job_id == *id.as_str()) else {
                let known: Vec<String> = scan
                    .jobs
                    .iter()
                    .map(|j| j.shape.job_id.to_string())
                    .collect();
                anyhow::bail!(
                    "no job {id} in {} (jobs there: {})",
                    args.log_dir,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            };
            let state = job.replay();
            let metrics = state.metrics();
            writeln!(
                out,
                "job {} ({})",
                job.shape.job_id,
                status_text(job, &state)
            )?;
            if let Some(name) = &job.name {
                writeln!(out, "{name}")?;
            }
            writeln!(out, "\nstages")?;
            let stages = stage_table(job, metrics)?;
            write_result(&mut out, &stages.schema(), &[stages], args.format)?;
            writeln!(out, "\ntasks")?;
            let tasks = task_table(metrics)?;
            write_result(&mut out, &tasks.schema(), &[tasks], args.format)?;
        }
    }
    Ok(())
}

/// The history server: the web UI over the logs of `dir`, until Ctrl-C.
async fn serve_history(
    dir: EventLogDir,
    bind: SocketAddr,
    args: &HistoryArgs,
) -> anyhow::Result<()> {
    let security = args.security.server(&args.tls);
    check_exposure(bind, &security, args.tls.allow_unauthenticated)?;
    let server = HttpServer::bind(bind, &security, "--bind").await?;
    let source = Arc::new(HistorySource::new(dir));
    // Read once before saying where it is, so the first page is quick and a bad folder
    // is reported at once.
    source.refresh().await;
    for problem in source.problems() {
        eprintln!("warning: skipped {problem}");
    }
    let jobs = source.jobs().len();
    announce(&format!(
        "ember history server at {} ({jobs} jobs in {})",
        server.url(),
        args.log_dir
    ));
    serve(server, source, shutdown_signal()).await?;
    Ok(())
}

/// `succeeded`, `failed: ...` or `running`: the log's end line, or else where the replayed
/// `state` stands.
fn status_text(job: &LoggedJob, state: &JobState) -> String {
    match &job.end {
        Some(Ok(())) => "succeeded".into(),
        Some(Err(error)) => format!("failed: {error}"),
        None => match state.status() {
            Status::Failed(failure) => format!("failed: {failure}"),
            Status::Succeeded => "succeeded".into(),
            Status::New | Status::Running => "running".into(),
        },
    }
}

fn strings(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn numbers(values: Vec<u64>) -> ArrayRef {
    Arc::new(UInt64Array::from(values))
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> anyhow::Result<RecordBatch> {
    let schema = Schema::new(
        columns
            .iter()
            .map(|(name, array)| Field::new(*name, array.data_type().clone(), false))
            .collect::<Vec<_>>(),
    );
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        columns.into_iter().map(|(_, a)| a).collect(),
    )?)
}

/// One row per job.
fn job_list(jobs: &[LoggedJob]) -> anyhow::Result<RecordBatch> {
    let mut columns: [Vec<String>; 5] = Default::default();
    let mut figures: [Vec<u64>; 9] = Default::default();
    for job in jobs {
        let state = job.replay();
        let metrics = state.metrics();
        let stages_done = metrics
            .stages
            .iter()
            .filter(|s| {
                s.partitions == 0
                    || metrics
                        .tasks
                        .iter()
                        .filter(|t| t.stage_id == s.stage_id)
                        .map(|t| t.partition)
                        .collect::<std::collections::BTreeSet<_>>()
                        .len()
                        == s.partitions
            })
            .count();
        let shuffle_rows: u64 = {
            let last = metrics.stages.len().saturating_sub(1);
            metrics
                .tasks
                .iter()
                .filter(|t| t.stage_id != ember_proto::StageId(last))
                .map(|t| t.rows)
                .sum()
        };
        columns[0].push(job.shape.job_id.to_string());
        columns[1].push(job.name.clone().unwrap_or_default());
        columns[2].push(utc(job.started_unix_ms));
        columns[3].push(format!("{:.3}s", job.last_at_us as f64 / 1e6));
        columns[4].push(status_text(job, &state));
        figures[0].push(stages_done as u64);
        figures[1].push(metrics.stages.len() as u64);
        figures[2].push(metrics.tasks.len() as u64);
        figures[3].push(job.shape.total_tasks() as u64);
        figures[4].push(metrics.failures.len() as u64);
        figures[5].push(shuffle_rows);
        figures[6].push(metrics.shuffle_bytes());
        figures[7].push(metrics.spilled_bytes());
        figures[8].push(metrics.recomputed.len() as u64);
    }
    let [id, name, start, duration, status] = columns;
    let [
        stages_done,
        stages,
        tasks_done,
        tasks,
        failed,
        rows,
        bytes,
        spill,
        recomputed,
    ] = figures;
    batch(vec![
        ("job_id", strings(id)),
        ("name", strings(name)),
        ("start_utc", strings(start)),
        ("duration", strings(duration)),
        ("status", strings(status)),
        ("stages_done", numbers(stages_done)),
        ("stages", numbers(stages)),
        ("tasks_done", numbers(tasks_done)),
        ("tasks", numbers(tasks)),
        ("failed_attempts", numbers(failed)),
        ("rows_shuffled", numbers(rows)),
        ("bytes_shuffled", numbers(bytes)),
        ("spilled_bytes", numbers(spill)),
        ("recomputed", numbers(recomputed)),
    ])
}

/// One row per stage of `job`.
fn stage_table(job: &LoggedJob, metrics: &JobMetrics) -> anyhow::Result<RecordBatch> {
    let mut ids = Vec::new();
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    let mut figures: [Vec<u64>; 6] = Default::default();
    for stage in &job.shape.stages {
        let tasks: Vec<_> = metrics
            .tasks
            .iter()
            .filter(|t| t.stage_id == stage.id)
            .collect();
        ids.push(stage.id.index() as u64);
        inputs.push(
            stage
                .inputs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
        outputs.push(stage.output.to_string());
        figures[0].push(stage.partitions as u64);
        figures[1].push(tasks.len() as u64);
        figures[2].push(
            metrics
                .failures
                .iter()
                .filter(|f| f.stage_id == stage.id)
                .count() as u64,
        );
        figures[3].push(tasks.iter().map(|t| t.rows).sum());
        figures[4].push(tasks.iter().map(|t| t.bytes).sum());
        figures[5].push(
            tasks
                .iter()
                .map(|t| u64::try_from(t.elapsed.as_millis()).unwrap_or(u64::MAX))
                .max()
                .unwrap_or(0),
        );
    }
    let [partitions, done, failed, rows, bytes, slowest] = figures;
    batch(vec![
        ("stage", numbers(ids)),
        ("inputs", strings(inputs)),
        ("output", strings(outputs)),
        ("tasks", numbers(partitions)),
        ("attempts_succeeded", numbers(done)),
        ("attempts_failed", numbers(failed)),
        ("rows", numbers(rows)),
        ("bytes", numbers(bytes)),
        ("slowest_task_ms", numbers(slowest)),
    ])
}

/// One row per task attempt, succeeded or failed, in stage and partition order.
fn task_table(metrics: &JobMetrics) -> anyhow::Result<RecordBatch> {
    struct Row {
        stage: u64,
        partition: u64,
        attempt: u64,
        executor: String,
        result: String,
        rows: u64,
        bytes: u64,
        micros: u64,
        spill: u64,
    }
    let mut rows: Vec<Row> = metrics
        .tasks
        .iter()
        .map(|t| Row {
            stage: t.stage_id.index() as u64,
            partition: t.partition as u64,
            attempt: t.attempt as u64,
            executor: t.executor_id.to_string(),
            result: "ok".into(),
            rows: t.rows,
            bytes: t.bytes,
            micros: u64::try_from(t.elapsed.as_micros()).unwrap_or(u64::MAX),
            spill: t.spilled_bytes,
        })
        .chain(metrics.failures.iter().map(|f| Row {
            stage: f.stage_id.index() as u64,
            partition: f.partition as u64,
            attempt: f.attempt as u64,
            executor: f.executor_id.to_string(),
            result: f.error.clone(),
            rows: 0,
            bytes: 0,
            micros: 0,
            spill: 0,
        }))
        .collect();
    rows.sort_by_key(|r| (r.stage, r.partition, r.attempt));
    batch(vec![
        ("stage", numbers(rows.iter().map(|r| r.stage).collect())),
        (
            "partition",
            numbers(rows.iter().map(|r| r.partition).collect()),
        ),
        ("attempt", numbers(rows.iter().map(|r| r.attempt).collect())),
        (
            "executor",
            strings(rows.iter().map(|r| r.executor.clone()).collect()),
        ),
        (
            "result",
            strings(rows.iter().map(|r| r.result.clone()).collect()),
        ),
        ("rows", numbers(rows.iter().map(|r| r.rows).collect())),
        ("bytes", numbers(rows.iter().map(|r| r.bytes).collect())),
        (
            "elapsed_ms",
            strings(
                rows.iter()
                    .map(|r| format!("{:.3}", r.micros as f64 / 1e3))
                    .collect(),
            ),
        ),
        (
            "spilled_bytes",
            numbers(rows.iter().map(|r| r.spill).collect()),
        ),
    ])
}
