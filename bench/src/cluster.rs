//! A process cluster for the benchmarks: one `ember scheduler` and N `ember executor`
//! processes (one slot each) on 127.0.0.1, and the shuffle-throughput measurement.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::prelude::{col, lit};
use ember::proto::StageId;
use ember::proto::security::ClientSecurity;
use ember::{EmberConfig, Session};

use crate::report::{Figure, Report};

/// A scheduler and its executors, killed when this is dropped.
pub struct ProcessCluster {
    url: String,
    children: Vec<Child>,
    executors: usize,
    /// The binary and arguments the scheduler was started with, for a restart.
    bin: std::path::PathBuf,
    scheduler_args: Vec<String>,
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
    /// Starts a scheduler and `config.executors` executors of one slot from the `ember`
    /// binary `bin`, writing shuffle files with `config.compression` (as
    /// `ember.shuffle.compression` does for the embedded cluster) and holding their tasks
    /// to `ember.executor.memory_limit` each (`ember executor --memory-limit`), as the
    /// embedded cluster's executors are.
    pub fn start(bin: &std::path::Path, config: &EmberConfig) -> anyhow::Result<Self> {
        Self::start_with(bin, config, &[], &[])
    }

    /// [`Self::start`], with more arguments for the scheduler and for each executor.
    pub fn start_with(
        bin: &std::path::Path,
        config: &EmberConfig,
        scheduler_args: &[&str],
        executor_args: &[&str],
    ) -> anyhow::Result<Self> {
        let executors = config.executors;
        let compression = config.compression.to_string();
        // `--memory-limit` takes a size with a unit (K, M or G).
        let memory_limit = config
            .memory_limit
            .map(|bytes| format!("{}K", bytes as f64 / 1024.0));
        if !bin.is_file() {
            bail!(
                "no ember binary at {} (build it: cargo build --release -p ember)",
                bin.display()
            );
        }
        let dir = tempfile::Builder::new().prefix("ember-bench-").tempdir()?;
        let mut children = Vec::new();
        let (child, line) = start(
            Command::new(bin)
                .args(["scheduler", "--bind", "127.0.0.1:0", "--no-ui"])
                .args(scheduler_args),
            "the scheduler",
        )?;
        children.push(child);
        let address = line.rsplit(' ').next().context("an address")?;
        let url = format!("http://{address}");
        let mut cluster = Self {
            url,
            children,
            executors,
            bin: bin.to_path_buf(),
            scheduler_args: scheduler_args.iter().map(|a| a.to_string()).collect(),
            _dir: dir,
        };
        for i in 0..executors {
            let work = cluster._dir.path().join(format!("executor-{i}"));
            let (child, _) = start(
                Command::new(bin)
                    .args(["executor", "--scheduler", &cluster.url])
                    .args(["--bind", "127.0.0.1:0", "--slots", "1"])
                    .args(["--compression", compression.as_str()])
                    .args(
                        memory_limit
                            .iter()
                            .flat_map(|size| ["--memory-limit", size.as_str()]),
                    )
                    .args(executor_args)
                    .arg("--work-dir")
                    .arg(&work),
                "an executor",
            )?;
            cluster.children.push(child);
        }
        Ok(cluster)
    }

    /// Kills the scheduler (SIGKILL) and starts it again on the same address with the same
    /// arguments and `extra`; returns how long after the kill the new one listened.
    pub fn restart_scheduler(&mut self, extra: &[String]) -> anyhow::Result<Duration> {
        let address = self
            .url
            .strip_prefix("http://")
            .context("a plain URL")?
            .to_string();
        let scheduler = self.children.first_mut().context("a scheduler")?;
        let _ = scheduler.kill();
        let _ = scheduler.wait();
        let killed = std::time::Instant::now();
        let (child, _) = start(
            Command::new(&self.bin)
                .args(["scheduler", "--bind", &address, "--no-ui"])
                .args(&self.scheduler_args)
                .args(extra),
            "the restarted scheduler",
        )?;
        self.children[0] = child;
        Ok(killed.elapsed())
    }

    /// The scheduler's and executors' peak resident memory together, in MiB.
    pub fn peak_rss_mb(&self) -> f64 {
        self.children.iter().map(|c| peak_rss_mb(c.id())).sum()
    }

    /// Executor processes.
    pub fn executors(&self) -> usize {
        self.executors
    }

    /// The process id of executor `index` (0-based, in start order).
    pub fn executor_pid(&self, index: usize) -> Option<u32> {
        self.children.get(index + 1).map(std::process::Child::id)
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

/// The `ember` binary for a process cluster: `explicit`, or the one next to this binary.
pub fn ember_bin(explicit: Option<&std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    match explicit {
        Some(bin) => Ok(bin.clone()),
        None => Ok(std::env::current_exe()?
            .parent()
            .ok_or_else(|| anyhow::anyhow!("the bench binary has no folder"))?
            .join("ember")),
    }
}

/// The peak resident memory (`VmHWM`) of process `pid`, in MiB; 0 where it cannot be read.
pub fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One run of the shuffle micro-benchmark (the caller keeps the best of three).
struct ShuffleRun {
    /// Bytes the map stage wrote (compressed as configured).
    bytes: u64,
    rows: u64,
    /// The slowest reading task's wall time.
    read: Duration,
    /// The slowest map task's wall time.
    map: Duration,
}

/// The setting that the shuffle micro-benchmark turns off for its Flight row.
const HOST_LOCAL_READS: &str = "ember.shuffle.host_local_reads";

/// The figures of the shuffle micro-benchmark: MB/s per executor, by cluster.
pub type ShuffleRates = Vec<(String, f64)>;

/// Repartitions all of `lineitem` by `l_orderkey` on both clusters and reports the shuffle
/// throughput of the readers: shuffle bytes over the wall time of the stage that reads
/// them, per executor, both as written (compressed) and as Arrow data in memory. On the
/// embedded cluster readers open the files; on the process cluster they open the files of
/// the other executor on this host too (host-local reads), and in the last row half of
/// every reader's input comes over loopback Flight instead.
pub async fn shuffle_throughput(
    embedded: &Session,
    processes: &Session,
    executors: usize,
    report: &mut Report,
) -> anyhow::Result<ShuffleRates> {
    let mut rates = Vec::new();
    let mut figure = Figure {
        workload: "shuffle read stage".to_string(),
        times: Vec::new(),
    };
    report.line(format!(
        "Shuffle: all of lineitem repartitioned by l_orderkey into {executors} partitions, \
         counted per partition; best of 3; Ember's shuffle compression setting: {} (auto is \
         none on one host, so the bytes are Arrow IPC as in memory); the rate is the bytes \
         the map stage wrote over the wall time of the stage that reads them, per executor",
        embedded.config().compression
    ));
    report.blank();
    report.line(
        "| cluster | shuffle MB (as written) | rows | map stage (ms) | read stage (ms) | \
         MB/s per executor |",
    );
    report.line("|---|---:|---:|---:|---:|---:|");
    // The process cluster twice: readers open the files of the executor beside them
    // (host-local reads, the default), then fetch them over loopback Flight.
    let runs = [
        ("embedded", embedded, true),
        ("processes", processes, true),
        ("processes over Flight", processes, false),
    ];
    for (name, session, host_local) in runs {
        session.set(HOST_LOCAL_READS, &host_local.to_string())?;
        let mut best: Option<ShuffleRun> = None;
        for _ in 0..3 {
            let run = shuffle_once(session, executors).await?;
            if best.as_ref().is_none_or(|b| run.read < b.read) {
                best = Some(run);
            }
        }
        session.set(HOST_LOCAL_READS, "true")?;
        let Some(run) = best else { continue };
        let read_s = run.read.as_secs_f64();
        let rate = run.bytes as f64 / 1e6 / executors as f64 / read_s;
        rates.push((name.to_string(), rate));
        report.line(format!(
            "| {name} | {:.1} | {} | {:.1} | {:.1} | {:.0} |",
            run.bytes as f64 / 1e6,
            run.rows,
            run.map.as_secs_f64() * 1e3,
            read_s * 1e3,
            rate,
        ));
        figure
            .times
            .push((format!("Ember {name}"), Some(read_s * 1e3)));
    }
    report.figures.push(figure);
    Ok(rates)
}

async fn shuffle_once(session: &Session, executors: usize) -> anyhow::Result<ShuffleRun> {
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
    let of = |stage: StageId| metrics.tasks.iter().filter(move |t| t.stage_id == stage);
    Ok(ShuffleRun {
        bytes: of(map_stage).map(|t| t.bytes).sum(),
        rows: of(map_stage).map(|t| t.rows).sum(),
        read: of(read_stage)
            .map(|t| t.elapsed)
            .max()
            .context("reading tasks")?,
        map: of(map_stage)
            .map(|t| t.elapsed)
            .max()
            .context("map tasks")?,
    })
}
