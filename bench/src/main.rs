//! `ember-bench`: runs Ember and its peers side by side in one invocation and prints
//! per-query times and ratios.
//!
//! `ember-bench tpch --sf 1 --executors 2` runs the 22 TPC-H queries on Ember's embedded
//! cluster (N executors, one slot each) and on DataFusion's `SessionContext` with N target
//! partitions, over the same Parquet files, and prints a markdown table.
//!
//! `ember-bench forest --executors 2` runs random-forest feature preparation and training
//! against Spark MLlib ([`forest`]).
//!
//! `ember-bench dsl --executors 2` runs word count and a sum per key as DSL user functions
//! (batch functions, typed rows, `reduce_by_key`) against the same jobs in SQL ([`dsl`]).

mod cluster;
mod dsl;
mod forest;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use ember::datasets::tpch_tables;
use ember::pipelines::{ensure_tpch, register_tpch};
use ember::{EmberConfig, Session};

use crate::cluster::ProcessCluster;

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
            tpch(
                &dir,
                scale_factor,
                config,
                iterations.max(1),
                &queries,
                &numbers,
                processes.as_ref(),
            )
            .await
        }
    }
}

async fn tpch(
    dir: &std::path::Path,
    scale_factor: f64,
    config: EmberConfig,
    iterations: usize,
    queries: &std::path::Path,
    numbers: &[usize],
    processes: Option<&ProcessCluster>,
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

    println!(
        "TPC-H sf {scale_factor}: Ember with {executors} executors ({partitions} partitions){}, \
         DataFusion with {partitions} target partitions; best of {iterations}, engines \
         alternating per query; Ember settings: {}",
        if remote.is_some() {
            " embedded and as processes (1 scheduler + executors, over gRPC and Flight)"
        } else {
            ""
        },
        settings.join(", ")
    );
    println!();
    if remote.is_some() {
        println!(
            "| query | DataFusion (ms) | Ember embedded (ms) | Ember processes (ms) | embedded / DF | processes / DF |"
        );
        println!("|---|---:|---:|---:|---:|---:|");
    } else {
        println!("| query | DataFusion (ms) | Ember (ms) | Ember / DataFusion |");
        println!("|---|---:|---:|---:|");
    }
    let mut totals = [Duration::ZERO; 3];
    for n in numbers {
        let path = queries.join(format!("q{n:02}.sql"));
        let sql = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut best = [Duration::MAX; 3];
        let mut counts = [0usize; 3];
        for _ in 0..iterations {
            let started = Instant::now();
            let batches = datafusion.sql(&sql).await?.collect().await?;
            best[0] = best[0].min(started.elapsed());
            counts[0] = batches.iter().map(|b| b.num_rows()).sum::<usize>();

            let started = Instant::now();
            let result = ember.sql(&sql).await?;
            best[1] = best[1].min(started.elapsed());
            counts[1] = result.num_rows();

            if let Some(remote) = &remote {
                let started = Instant::now();
                let result = remote.sql(&sql).await?;
                best[2] = best[2].min(started.elapsed());
                counts[2] = result.num_rows();
            }
        }
        if counts[1] != counts[0] || (remote.is_some() && counts[2] != counts[0]) {
            bail!(
                "q{n:02}: DataFusion returned {} rows, Ember embedded {}, Ember processes {}",
                counts[0],
                counts[1],
                counts[2]
            );
        }
        for (total, time) in totals.iter_mut().zip(best) {
            if time != Duration::MAX {
                *total += time;
            }
        }
        print_row(&format!("q{n:02}"), &best, remote.is_some(), false);
    }
    print_row("total", &totals, remote.is_some(), true);
    if let (Some(remote), Some(processes)) = (&remote, processes) {
        println!();
        cluster::shuffle_throughput(&ember, remote, processes.executors()).await?;
    }
    Ok(())
}

/// One table row: times and ratios to DataFusion.
fn print_row(name: &str, times: &[Duration; 3], processes: bool, bold: bool) {
    let b = if bold { "**" } else { "" };
    let df = ms(times[0]);
    if processes {
        println!(
            "| {b}{name}{b} | {b}{df:.1}{b} | {b}{:.1}{b} | {b}{:.1}{b} | {b}{:.2}{b} | {b}{:.2}{b} |",
            ms(times[1]),
            ms(times[2]),
            ms(times[1]) / df,
            ms(times[2]) / df
        );
    } else {
        println!(
            "| {b}{name}{b} | {b}{df:.1}{b} | {b}{:.1}{b} | {b}{:.2}{b} |",
            ms(times[1]),
            ms(times[1]) / df
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
