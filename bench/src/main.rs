//! `ember-bench`: runs Ember and its peers side by side in one invocation and prints
//! per-query times and ratios.
//!
//! `ember-bench tpch --sf 1 --executors 2` runs the 22 TPC-H queries on Ember's embedded
//! cluster (N executors, one slot each) and on DataFusion's `SessionContext` with N target
//! partitions, over the same Parquet files, and prints a markdown table; with `--cluster`
//! on a process cluster too, and with `--peers duckdb,polars,spark` on those engines
//! ([`peers`]), every result checked against DataFusion's.
//!
//! `ember-bench forest --executors 2` runs random-forest feature preparation and training
//! against Spark MLlib ([`forest`]).
//!
//! `ember-bench dsl --executors 2` runs word count and a sum per key as DSL user functions
//! (batch functions, typed rows, `reduce_by_key`) against the same jobs in SQL ([`dsl`]).

mod cluster;
mod dsl;
mod forest;
mod peers;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use ember::datasets::tpch_tables;
use ember::pipelines::{ensure_tpch, register_tpch};
use ember::{EmberConfig, Session};

use crate::cluster::ProcessCluster;
use crate::peers::{Peer, PeerRun, median_after_warmup, rows_agree};

#[derive(Parser)]
#[command(name = "ember-bench", about = "Ember against its peers, side by side")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The 22 TPC-H queries: Ember's embedded cluster against DataFusion alone.
    Tpch {
        /// Scale factor.
        #[arg(long = "sf", default_value_t = 1.0)]
        scale_factor: f64,
        /// Data folder (made when missing; default `data/tpch-sf<SF>`).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Ember executors, and DataFusion target partitions.
        #[arg(long, default_value_t = 2)]
        executors: usize,
        /// Runs per query and engine; the fastest counts.
        #[arg(long, default_value_t = 3)]
        iterations: usize,
        /// Folder of q01.sql .. q22.sql.
        #[arg(long, default_value = "datasets/tpch/queries")]
        queries: PathBuf,
        /// Only these queries (1..=22), comma-separated.
        #[arg(long, value_delimiter = ',')]
        only: Vec<usize>,
        /// An Ember setting as KEY=VALUE (see `ember config`); repeatable.
        #[arg(long = "conf", value_name = "KEY=VALUE")]
        conf: Vec<String>,
        /// Also run every query on a process cluster (1 scheduler, N executor processes of
        /// one slot each, started from `--ember-bin`), and measure its shuffle throughput.
        #[arg(long)]
        cluster: bool,
        /// The `ember` binary for the process cluster (default: next to this one).
        #[arg(long, value_name = "PATH")]
        ember_bin: Option<PathBuf>,
        /// Peers to run beside them, comma-separated: duckdb, polars, spark (each with as
        /// many threads as Ember has executors).
        #[arg(long, value_delimiter = ',')]
        peers: Vec<String>,
        /// The Python with the peers installed (`pip install -r bench/python/requirements.txt`).
        #[arg(long, default_value = "python3", env = "EMBER_BENCH_PYTHON")]
        python: PathBuf,
        /// The peers' driver.
        #[arg(long, default_value = "bench/python/tpch_peers.py")]
        peers_script: PathBuf,
    },
    /// Word count and a sum per key: DSL user functions against the same jobs in SQL.
    Dsl(dsl::DslBench),
    /// Random-forest feature preparation and training against Spark MLlib.
    Forest(forest::ForestBench),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Dsl(bench) => dsl::run(&bench).await,
        Command::Forest(bench) => forest::run(&bench).await,
        Command::Tpch {
            scale_factor,
            data,
            executors,
            iterations,
            queries,
            only,
            conf,
            cluster,
            ember_bin,
            peers,
            python,
            peers_script,
        } => {
            let dir = data.unwrap_or_else(|| PathBuf::from(format!("data/tpch-sf{scale_factor}")));
            if ensure_tpch(&dir, scale_factor, 4)? {
                eprintln!("generated TPC-H sf {scale_factor} in {}", dir.display());
            }
            let numbers: Vec<usize> = if only.is_empty() {
                (1..=22).collect()
            } else {
                only
            };
            let mut config = EmberConfig {
                executors,
                slots: 1,
                ..EmberConfig::default()
            };
            for pair in &conf {
                config.set_pair(pair)?;
            }
            let processes = match cluster {
                true => {
                    let bin = match ember_bin {
                        Some(bin) => bin,
                        None => std::env::current_exe()?
                            .parent()
                            .context("the bench binary has a folder")?
                            .join("ember"),
                    };
                    Some(ProcessCluster::start(&bin, executors)?)
                }
                false => None,
            };
            let mut started = Vec::new();
            for name in &peers {
                let peer = Peer::start(&python, &peers_script, name, &dir, executors)?;
                eprintln!(
                    "{name} {} ready in {:.0} ms (start-up, not counted)",
                    peer.version, peer.startup_ms
                );
                started.push(peer);
            }
            tpch(
                &dir,
                scale_factor,
                config,
                iterations.max(1),
                &queries,
                &numbers,
                processes.as_ref(),
                &mut started,
            )
            .await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn tpch(
    dir: &std::path::Path,
    scale_factor: f64,
    config: EmberConfig,
    iterations: usize,
    queries: &std::path::Path,
    numbers: &[usize],
    processes: Option<&ProcessCluster>,
    peers: &mut [Peer],
) -> anyhow::Result<()> {
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
    println!(
        "TPC-H sf {scale_factor}: Ember with {executors} executors ({partitions} partitions), \
         DataFusion with {partitions} target partitions, peers with {executors} threads; median \
         of {iterations} runs after a warm-up, engines alternating per query, every result \
         checked against DataFusion's; Ember settings: {}",
        settings.join(", ")
    );
    for peer in peers.iter() {
        println!(
            "{} start-up (session, tables): {:.0} ms, not counted",
            peer.name, peer.startup_ms
        );
    }
    println!();
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
    println!("{header}");
    println!("|---|{}", "---:|".repeat(engines.len() + ratios.len()));
    let mut all: Vec<Vec<Option<f64>>> = Vec::new();
    for n in numbers {
        let name = format!("q{n:02}");
        let path = queries.join(format!("q{n:02}.sql"));
        let sql = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); 3];
        let mut expected = Vec::new();
        let mut counts = [0usize; 3];
        for _ in 0..=iterations {
            let started = Instant::now();
            let batches = datafusion.sql(&sql).await?.collect().await?;
            times[0].push(ms(started.elapsed()));
            counts[0] = batches.iter().map(|b| b.num_rows()).sum::<usize>();
            expected = text_rows(&batches)?;

            let started = Instant::now();
            let result = ember.sql(&sql).await?;
            times[1].push(ms(started.elapsed()));
            counts[1] = result.num_rows();

            if let Some(remote) = &remote {
                let started = Instant::now();
                let result = remote.sql(&sql).await?;
                times[2].push(ms(started.elapsed()));
                counts[2] = result.num_rows();
            }
        }
        if counts[1] != counts[0] || (remote.is_some() && counts[2] != counts[0]) {
            bail!(
                "{name}: DataFusion returned {} rows, Ember embedded {}, Ember processes {}",
                counts[0],
                counts[1],
                counts[2]
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
        print_row(&name, &row, &ratios, false);
        all.push(row);
    }
    // Totals: each engine's sum; each ratio over the queries both engines ran.
    let totals: Vec<Option<f64>> = (0..engines.len())
        .map(|e| Some(all.iter().filter_map(|r| r[e]).sum()))
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
        line.push_str(&format!(" **{:.2}**{note} |", x / y));
    }
    println!("{line}");
    if !peers.is_empty() {
        println!();
        for peer in peers.iter_mut() {
            let peak = peer.peak_rss_mb()?;
            println!("{} peak memory: {peak:.0} MiB", peer.name);
        }
    }
    if let (Some(remote), Some(processes)) = (&remote, processes) {
        println!();
        cluster::shuffle_throughput(&ember, remote, processes.executors()).await?;
    }
    Ok(())
}

/// The ratio columns: every Ember column against DataFusion and against each peer.
fn ratio_columns(engines: &[String]) -> Vec<(usize, usize)> {
    let embers: Vec<usize> = (0..engines.len())
        .filter(|e| engines[*e].starts_with("Ember"))
        .collect();
    let others: Vec<usize> = (0..engines.len())
        .filter(|e| !engines[*e].starts_with("Ember"))
        .collect();
    embers
        .iter()
        .flat_map(|a| others.iter().map(move |b| (*a, *b)))
        .collect()
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
fn print_row(name: &str, times: &[Option<f64>], ratios: &[(usize, usize)], bold: bool) {
    let b = if bold { "**" } else { "" };
    let mut line = format!("| {b}{name}{b} |");
    for time in times {
        line.push_str(&format!(" {} |", cell(*time)));
    }
    for (x, y) in ratios {
        match (times[*x], times[*y]) {
            (Some(p), Some(q)) => line.push_str(&format!(" {:.2} |", p / q)),
            _ => line.push_str(" n/a |"),
        }
    }
    println!("{line}");
}

/// DataFusion's rows as text, as the peers report theirs.
fn text_rows(
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
