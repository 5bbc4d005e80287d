//! `ember-bench tpch`: the 22 TPC-H queries on Ember's embedded cluster, on a process
//! cluster (`--cluster`), on DataFusion alone and on the peers (`--peers`), alternating per
//! query, every result checked against DataFusion's; and the shuffle micro-benchmark.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use ember::datasets::tpch_tables;
use ember::pipelines::{ensure_tpch, register_tpch};
use ember::{EmberConfig, Session};

use crate::cluster::{ProcessCluster, ember_bin};
use crate::peers::{Peer, PeerLaunch, PeerRun, median_after_warmup, rows_agree};
use crate::report::{Figure, Report};

/// Options of `ember-bench tpch`.
#[derive(Args, Clone)]
pub struct TpchBench {
    /// Scale factor.
    #[arg(long = "sf", default_value_t = 1.0)]
    pub scale_factor: f64,
    /// Data folder (made when missing; default `data/tpch-sf<SF>`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Ember executors, DataFusion target partitions and the peers' threads.
    #[arg(long, default_value_t = 2, value_parser = at_least_one)]
    pub executors: usize,
    /// Timed runs per query and engine, after one warm-up; the median counts.
    #[arg(long, default_value_t = 3, value_parser = at_least_one)]
    pub iterations: usize,
    /// Folder of q01.sql .. q22.sql.
    #[arg(long, default_value = "datasets/tpch/queries")]
    pub queries: PathBuf,
    /// Only these queries (1..=22), comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = query_number)]
    pub only: Vec<usize>,
    /// An Ember setting as KEY=VALUE (see `ember config`); repeatable.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
    /// Also run every query on a process cluster (1 scheduler, N executor processes of
    /// one slot each, started from `--ember-bin`), and measure its shuffle throughput.
    #[arg(long)]
    pub cluster: bool,
    /// The `ember` binary for the process cluster (default: next to this one).
    #[arg(long, value_name = "PATH")]
    pub ember_bin: Option<PathBuf>,
    /// Peers to run beside them, comma-separated: duckdb, polars, spark, ballista (each
    /// with as many threads, or executors of one slot, as Ember has executors).
    #[arg(long, value_delimiter = ',', env = "EMBER_BENCH_PEERS",
          value_parser = ["duckdb", "polars", "spark", "ballista"])]
    pub peers: Vec<String>,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

/// Ember's configuration for a benchmark: `executors` executors of one slot and the
/// `--conf` KEY=VALUE settings.
pub fn ember_config(executors: usize, conf: &[String]) -> anyhow::Result<EmberConfig> {
    let mut config = EmberConfig {
        executors,
        slots: 1,
        ..EmberConfig::default()
    };
    for pair in conf {
        config.set_pair(pair)?;
    }
    Ok(config)
}

/// A count of 1 or more.
pub(crate) fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("'{text}' is not a whole number of at least 1")),
    }
}

/// A TPC-H query number, 1 to 22.
fn query_number(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=22).contains(&n) => Ok(n),
        _ => Err(format!("'{text}' is not a TPC-H query number (1 to 22)")),
    }
}

/// Where the peers' programs are.
#[derive(Args, Clone)]
pub struct LaunchArgs {
    /// The Python with the peers installed (`pip install -r bench/python/requirements.txt`).
    #[arg(long, default_value = "python3", env = "EMBER_BENCH_PYTHON")]
    pub python: PathBuf,
    /// The Python peers' driver.
    #[arg(long, default_value = "bench/python/peers.py")]
    pub peers_script: PathBuf,
    /// The Ballista peer (`cargo build --release` in `bench/ballista`).
    #[arg(
        long,
        env = "EMBER_BENCH_BALLISTA",
        default_value = "bench/ballista/target/release/ballista-peer"
    )]
    pub ballista_bin: PathBuf,
}

impl LaunchArgs {
    /// The peers' launch settings.
    pub fn launch(&self) -> PeerLaunch {
        PeerLaunch {
            python: self.python.clone(),
            script: self.peers_script.clone(),
            ballista: self.ballista_bin.clone(),
        }
    }
}

impl TpchBench {
    /// The data folder.
    pub fn dir(&self) -> PathBuf {
        self.data
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("data/tpch-sf{}", self.scale_factor)))
    }

    /// The data folder, generated when missing.
    pub fn ensure_data(&self) -> anyhow::Result<PathBuf> {
        let dir = self.dir();
        if ensure_tpch(&dir, self.scale_factor, 4)? {
            eprintln!(
                "generated TPC-H sf {} in {}",
                self.scale_factor,
                dir.display()
            );
        }
        Ok(dir)
    }

    /// Ember's configuration: the executors of one slot and the `--conf` settings.
    pub fn config(&self) -> anyhow::Result<EmberConfig> {
        ember_config(self.executors, &self.conf)
    }

    /// The process cluster, with `--cluster`.
    pub fn process_cluster(&self) -> anyhow::Result<Option<ProcessCluster>> {
        if !self.cluster {
            return Ok(None);
        }
        let bin = ember_bin(self.ember_bin.as_ref())?;
        Ok(Some(ProcessCluster::start(&bin, &self.config()?)?))
    }

    /// Starts the peers over the TPC-H folder.
    pub fn start_peers(&self) -> anyhow::Result<Vec<Peer>> {
        let launch = self.launch.launch();
        let mut started: Vec<Peer> = Vec::new();
        for name in &self.peers {
            if started.iter().any(|p| &p.name == name) {
                bail!("invalid setting --peers: {name} is named twice");
            }
            let peer = Peer::start(&launch, name, &self.dir(), self.executors)?;
            eprintln!(
                "{name} {} ready in {:.0} ms (start-up, not counted)",
                peer.version, peer.startup_ms
            );
            started.push(peer);
        }
        Ok(started)
    }
}

/// Runs `ember-bench tpch`.
pub async fn run(bench: &TpchBench, report: &mut Report) -> anyhow::Result<()> {
    let dir = bench.ensure_data()?;
    let processes = bench.process_cluster()?;
    let mut peers = bench.start_peers()?;
    tpch(bench, processes.as_ref(), &mut peers, report).await?;
    if let Some(processes) = &processes {
        report.blank();
        let config = bench.config()?;
        let remote = processes.session(config.clone()).await?;
        register_tpch(&remote, &dir).await?;
        let ember = Session::new(config)?;
        register_tpch(&ember, &dir).await?;
        crate::cluster::shuffle_throughput(&ember, &remote, processes.executors(), report).await?;
    }
    Ok(())
}

/// The query table: every engine's median per query, the ratios and the totals; then
/// the peers' peak memory.
pub async fn tpch(
    bench: &TpchBench,
    processes: Option<&ProcessCluster>,
    peers: &mut [Peer],
    report: &mut Report,
) -> anyhow::Result<()> {
    let dir = &bench.dir();
    let scale_factor = bench.scale_factor;
    let config = bench.config()?;
    let iterations = bench.iterations.max(1);
    let queries = &bench.queries;
    let numbers: Vec<usize> = match bench.only.is_empty() {
        true => (1..=22).collect(),
        false => bench.only.clone(),
    };
    let executors = config.executors;
    let partitions = config.target_partitions();
    let datafusion =
        SessionContext::new_with_config(SessionConfig::new().with_target_partitions(partitions));
    for table in tpch_tables() {
        let path = dir.join(table);
        datafusion
            .register_parquet(
                *table,
                path.to_string_lossy().as_ref(),
                ParquetReadOptions::default(),
            )
            .await?;
    }
    let settings: Vec<String> = config
        .datafusion
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain([format!("ember.shuffle.compression={}", config.compression)])
        .chain(config.memory_limit.map(|bytes| {
            format!(
                "ember.executor.memory_limit={} (each executor, embedded and processes)",
                ember::executors::memory::format_size(bytes)
            )
        }))
        .collect();
    let remote = match processes {
        Some(cluster) => {
            let session = cluster.session(config.clone()).await?;
            register_tpch(&session, dir).await?;
            Some(session)
        }
        None => None,
    };
    let ember = Session::new(config)?;
    register_tpch(&ember, dir).await?;

    // Engines in column order: DataFusion, Ember embedded, Ember processes, the peers.
    let mut engines = vec!["DataFusion".to_string(), "Ember embedded".to_string()];
    if remote.is_some() {
        engines.push("Ember processes".to_string());
    }
    engines.extend(peers.iter().map(|p| format!("{} {}", p.name, p.version)));
    report.line(format!(
        "TPC-H sf {scale_factor}: Ember with {executors} executors ({partitions} partitions), \
         DataFusion with {partitions} target partitions, peers with {executors} threads; median \
         of {iterations} runs after a warm-up, engines alternating per query, every result \
         checked against DataFusion's; Ember settings: {}",
        settings.join(", ")
    ));
    for peer in peers.iter() {
        report.line(format!(
            "{} start-up (session, tables): {:.0} ms, not counted",
            peer.name, peer.startup_ms
        ));
    }
    report.blank();
    let ratios: Vec<(usize, usize)> = ratio_columns(&engines);
    let mut header = String::from("| query |");
    for engine in &engines {
        header.push_str(&format!(" {engine} (ms) |"));
    }
    for (a, b) in &ratios {
        header.push_str(&format!(
            " {} / {} |",
            short(&engines[*a]),
            short(&engines[*b])
        ));
    }
    report.line(header);
    report.line(format!(
        "|---|{}",
        "---:|".repeat(engines.len() + ratios.len())
    ));
    let mut all: Vec<Vec<Option<f64>>> = Vec::new();
    for n in &numbers {
        let name = format!("q{n:02}");
        let path = queries.join(format!("q{n:02}.sql"));
        let sql = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); 3];
        let mut expected = Vec::new();
        let mut got: [Vec<Vec<String>>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..=iterations {
            let started = Instant::now();
            let batches = datafusion.sql(&sql).await?.collect().await?;
            times[0].push(ms(started.elapsed()));
            expected = text_rows(&batches)?;

            let started = Instant::now();
            let result = ember.sql(&sql).await?;
            times[1].push(ms(started.elapsed()));
            got[0] = text_rows(&result.batches)?;

            if let Some(remote) = &remote {
                let started = Instant::now();
                let result = remote.sql(&sql).await?;
                times[2].push(ms(started.elapsed()));
                got[1] = text_rows(&result.batches)?;
            }
        }
        if !rows_agree(&expected, &got[0]) {
            bail!(
                "{name}: Ember embedded returned rows that differ from DataFusion's ({} rows \
                 against {}; first {:?} against {:?})",
                got[0].len(),
                expected.len(),
                got[0].first(),
                expected.first()
            );
        }
        if remote.is_some() && !rows_agree(&expected, &got[1]) {
            bail!(
                "{name}: Ember processes returned rows that differ from DataFusion's ({} rows \
                 against {}; first {:?} against {:?})",
                got[1].len(),
                expected.len(),
                got[1].first(),
                expected.first()
            );
        }
        let mut row: Vec<Option<f64>> = vec![
            median_after_warmup(&times[0]),
            median_after_warmup(&times[1]),
        ];
        if remote.is_some() {
            row.push(median_after_warmup(&times[2]));
        }
        for peer in peers.iter_mut() {
            match peer.run(&name, &sql, iterations + 1)? {
                PeerRun::Done { times_ms, rows } if rows_agree(&expected, &rows) => {
                    row.push(median_after_warmup(&times_ms));
                }
                PeerRun::Done { rows, .. } => {
                    eprintln!(
                        "{name}: {} returned rows that differ from DataFusion's; not counted \
                         (first: {:?} against {:?})",
                        peer.name,
                        rows.first(),
                        expected.first()
                    );
                    row.push(None);
                }
                PeerRun::Failed(error) => {
                    eprintln!("{name}: {} failed: {error}", peer.name);
                    row.push(None);
                }
            }
        }
        report.line(table_row(&name, &row, &ratios));
        report.figures.push(Figure {
            workload: name.clone(),
            times: engines.iter().cloned().zip(row.iter().copied()).collect(),
        });
        all.push(row);
    }
    // Totals: each engine's sum, only where it ran every query right (the goals and the
    // chart compare totals); each ratio column over the queries both engines ran.
    let totals: Vec<Option<f64>> = (0..engines.len())
        .map(|e| all.iter().map(|r| r[e]).sum::<Option<f64>>())
        .collect();
    let mut line = String::from("| **total** |");
    for total in &totals {
        line.push_str(&format!(" **{}** |", cell(*total)));
    }
    for (a, b) in &ratios {
        let both: Vec<_> = all.iter().filter_map(|r| Some((r[*a]?, r[*b]?))).collect();
        let (x, y) = both
            .iter()
            .fold((0.0, 0.0), |(x, y), (p, q)| (x + p, y + q));
        let note = if both.len() < all.len() {
            format!(" ({} q)", both.len())
        } else {
            String::new()
        };
        match both.is_empty() {
            true => line.push_str(" n/a |"),
            false => line.push_str(&format!(" **{:.2}**{note} |", x / y)),
        }
    }
    report.line(line);
    report.figures.push(Figure {
        workload: "TPC-H total".to_string(),
        times: engines
            .iter()
            .cloned()
            .zip(totals.iter().copied())
            .collect(),
    });
    report.blank();
    report.line(format!(
        "Peak memory: DataFusion and Ember embedded (this process) {:.0} MiB",
        crate::cluster::peak_rss_mb(std::process::id())
    ));
    if let Some(processes) = processes {
        report.line(format!(
            "Peak memory: Ember processes (scheduler and executors) {:.0} MiB",
            processes.peak_rss_mb()
        ));
    }
    for peer in peers.iter_mut() {
        let peak = peer.peak_rss_mb()?;
        report.line(format!("Peak memory: {} {peak:.0} MiB", peer.name));
    }
    Ok(())
}

/// The ratio columns: Ember embedded against DataFusion (its ceiling) and against
/// Ballista standalone (the same shape: one process); the widest Ember (processes when it
/// ran) against every engine that is not Ember.
fn ratio_columns(engines: &[String]) -> Vec<(usize, usize)> {
    let find = |prefix: &str| engines.iter().position(|e| e.starts_with(prefix));
    let others: Vec<usize> = (0..engines.len())
        .filter(|e| !engines[*e].starts_with("Ember"))
        .collect();
    let mut ratios = Vec::new();
    let embedded = find("Ember embedded");
    let processes = find("Ember processes");
    if let (Some(embedded), Some(_)) = (embedded, processes) {
        for other in [find("DataFusion"), find("ballista")].into_iter().flatten() {
            ratios.push((embedded, other));
        }
    }
    if let Some(widest) = processes.or(embedded) {
        ratios.extend(others.iter().map(|other| (widest, *other)));
    }
    ratios
}

/// An engine's name for a ratio header: `embedded`, `processes`, `DF`, `duckdb`, ...
fn short(engine: &str) -> String {
    match engine {
        "DataFusion" => "DF".to_string(),
        e => e
            .strip_prefix("Ember ")
            .unwrap_or(e)
            .split(' ')
            .next()
            .unwrap_or(e)
            .to_string(),
    }
}

fn cell(time: Option<f64>) -> String {
    time.map_or_else(|| "n/a".to_string(), |t| format!("{t:.1}"))
}

/// One table row: times, then the ratios.
fn table_row(name: &str, times: &[Option<f64>], ratios: &[(usize, usize)]) -> String {
    let mut line = format!("| {name} |");
    for time in times {
        line.push_str(&format!(" {} |", cell(*time)));
    }
    for (x, y) in ratios {
        match (times[*x], times[*y]) {
            (Some(p), Some(q)) => line.push_str(&format!(" {:.2} |", p / q)),
            _ => line.push_str(" n/a |"),
        }
    }
    line
}

/// DataFusion's rows as text, as the peers report theirs.
pub fn text_rows(
    batches: &[datafusion::arrow::array::RecordBatch],
) -> anyhow::Result<Vec<Vec<String>>> {
    use datafusion::arrow::util::display::array_value_to_string;
    let mut rows = Vec::new();
    for batch in batches {
        for i in 0..batch.num_rows() {
            let row = batch
                .columns()
                .iter()
                .map(|c| {
                    if c.is_null(i) {
                        Ok(String::new())
                    } else {
                        array_value_to_string(c, i)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            rows.push(row);
        }
    }
    Ok(rows)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
