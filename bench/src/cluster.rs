//! A process cluster for the benchmarks: one `ember scheduler` and N `ember executor`
//! processes (one slot each) on 127.0.0.1, and the shuffle-throughput measurement.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::prelude::{col, lit};
use ember::executors::rpc::security::ClientSecurity;
use ember::{EmberConfig, Session};

/// A scheduler and its executors, killed when this is dropped.
pub struct ProcessCluster {
    url: String,
    children: Vec<Child>,
    executors: usize,
    _dir: tempfile::TempDir,
}

/// Starts `command` and returns it with the first line it printed.
fn start(command: &mut Command, what: &str) -> anyhow::Result<(Child, String)> {
    let mut child = command
        .stdout(Stdio::piped())
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line.trim().is_empty() {
        bail!("{what} exited before it was ready");
    }
    // Keep reading so the process never writes into a closed pipe.
    std::thread::spawn(move || for _ in reader.lines() {});
    Ok((child, line.trim().to_string()))
}

impl ProcessCluster {
    /// Starts a scheduler and `executors` executors from the `ember` binary `bin`.
    pub fn start(bin: &std::path::Path, executors: usize) -> anyhow::Result<Self> {
        if !bin.is_file() {
            bail!(
                "no ember binary at {} (build it: cargo build --release -p ember)",
                bin.display()
            );
        }
        let dir = tempfile::Builder::new().prefix("ember-bench-").tempdir()?;
        let mut children = Vec::new();
        let (child, line) = start(
            Command::new(bin).args(["scheduler", "--bind", "127.0.0.1:0"]),
            "the scheduler",
        )?;
        children.push(child);
        let address = line.rsplit(' ').next().context("an address")?;
        let url = format!("http://{address}");
        let mut cluster = Self {
            url,
            children,
            executors,
            _dir: dir,
        };
        for i in 0..executors {
            let work = cluster._dir.path().join(format!("executor-{i}"));
            let (child, _) = start(
                Command::new(bin)
                    .args(["executor", "--scheduler", &cluster.url])
                    .args(["--bind", "127.0.0.1:0", "--slots", "1", "--work-dir"])
                    .arg(&work),
                "an executor",
            )?;
            cluster.children.push(child);
        }
        Ok(cluster)
    }

    /// Executor processes.
    pub fn executors(&self) -> usize {
        self.executors
    }

    /// A session on the cluster with `config`'s settings.
    pub async fn session(&self, config: EmberConfig) -> anyhow::Result<Session> {
        Ok(Session::connect_with(&self.url, ClientSecurity::default(), config).await?)
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Repartitions all of `lineitem` by `l_orderkey` on both clusters and prints the shuffle
/// throughput of the readers: shuffle bytes (as written, compressed) over the wall time
/// of the stage that reads them, per executor. On the embedded cluster readers open the
/// files; on the process cluster half of every reader's input comes over loopback Flight.
pub async fn shuffle_throughput(
    embedded: &Session,
    processes: &Session,
    executors: usize,
) -> anyhow::Result<()> {
    println!(
        "Shuffle: all of lineitem repartitioned by l_orderkey into {executors} partitions, \
         best of 3"
    );
    println!();
    println!("| cluster | shuffle MB (compressed) | rows | read stage (ms) | MB/s per executor |");
    println!("|---|---:|---:|---:|---:|");
    for (name, session) in [("embedded", embedded), ("processes", processes)] {
        let mut best: Option<(f64, u64, u64, Duration)> = None;
        for _ in 0..3 {
            let result = session
                .table("lineitem")
                .await?
                .repartition_by(vec![col("l_orderkey")], executors)?
                .group_by(vec![])
                .agg(vec![count(lit(1)).alias("n")])?
                .collect()
                .await?;
            let metrics = result.metrics.context("a job ran")?;
            let map_stage = metrics
                .stages
                .iter()
                .find(|s| s.inputs.is_empty())
                .context("a map stage")?
                .stage_id;
            let read_stage = metrics
                .stages
                .iter()
                .find(|s| s.inputs == [map_stage])
                .context("a reading stage")?
                .stage_id;
            let bytes: u64 = metrics
                .tasks
                .iter()
                .filter(|t| t.stage_id == map_stage)
                .map(|t| t.bytes)
                .sum();
            let rows: u64 = metrics
                .tasks
                .iter()
                .filter(|t| t.stage_id == map_stage)
                .map(|t| t.rows)
                .sum();
            let wall = metrics
                .tasks
                .iter()
                .filter(|t| t.stage_id == read_stage)
                .map(|t| t.elapsed)
                .max()
                .context("reading tasks")?;
            let per_executor = bytes as f64 / 1e6 / executors as f64 / wall.as_secs_f64();
            if best.is_none_or(|b| per_executor > b.0) {
                best = Some((per_executor, bytes, rows, wall));
            }
        }
        if let Some((rate, bytes, rows, wall)) = best {
            println!(
                "| {name} | {:.1} | {rows} | {:.1} | {rate:.0} |",
                bytes as f64 / 1e6,
                wall.as_secs_f64() * 1e3
            );
        }
    }
    Ok(())
}
