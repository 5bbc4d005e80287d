//! `ember-bench`: runs Ember and its peers side by side in one invocation and prints
//! per-query times and ratios.
//!
//! `ember-bench tpch --sf 1 --executors 2` runs the 22 TPC-H queries on Ember's embedded
//! cluster (N executors, one slot each) and on DataFusion's `SessionContext` with N target
//! partitions, over the same Parquet files, and prints a markdown table.
//!
//! `ember-bench dsl --executors 2` runs word count and a sum per key as DSL user functions
//! (batch functions, typed rows, `reduce_by_key`) against the same jobs in SQL ([`dsl`]).

mod dsl;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use ember::datasets::tpch_tables;
use ember::pipelines::{ensure_tpch, register_tpch};
use ember::{EmberConfig, Session};

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
    },
    /// Word count and a sum per key: DSL user functions against the same jobs in SQL.
    Dsl(dsl::DslBench),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Dsl(bench) => dsl::run(&bench).await,
        Command::Tpch {
            scale_factor,
            data,
            executors,
            iterations,
            queries,
            only,
            conf,
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
            tpch(
                &dir,
                scale_factor,
                config,
                iterations.max(1),
                &queries,
                &numbers,
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
    let ember = Session::new(config)?;
    register_tpch(&ember, dir).await?;

    println!(
        "TPC-H sf {scale_factor}: Ember with {executors} executors ({partitions} partitions), \
         DataFusion with {partitions} target partitions; best of {iterations}; Ember settings: {}",
        settings.join(", ")
    );
    println!();
    println!("| query | DataFusion (ms) | Ember (ms) | Ember / DataFusion |");
    println!("|---|---:|---:|---:|");
    let (mut total_df, mut total_ember) = (Duration::ZERO, Duration::ZERO);
    for n in numbers {
        let path = queries.join(format!("q{n:02}.sql"));
        let sql = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut best_df = Duration::MAX;
        let mut best_ember = Duration::MAX;
        let (mut df_rows, mut ember_rows) = (0, 0);
        for _ in 0..iterations {
            let started = Instant::now();
            let batches = datafusion.sql(&sql).await?.collect().await?;
            best_df = best_df.min(started.elapsed());
            df_rows = batches.iter().map(|b| b.num_rows()).sum::<usize>();

            let started = Instant::now();
            let result = ember.sql(&sql).await?;
            best_ember = best_ember.min(started.elapsed());
            ember_rows = result.num_rows();
        }
        if df_rows != ember_rows {
            bail!("q{n:02}: Ember returned {ember_rows} rows, DataFusion {df_rows}");
        }
        total_df += best_df;
        total_ember += best_ember;
        println!(
            "| q{n:02} | {:.1} | {:.1} | {:.2} |",
            ms(best_df),
            ms(best_ember),
            ms(best_ember) / ms(best_df)
        );
    }
    println!(
        "| **total** | **{:.1}** | **{:.1}** | **{:.2}** |",
        ms(total_df),
        ms(total_ember),
        ms(total_ember) / ms(total_df)
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
