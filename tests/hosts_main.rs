//! `ember-hosts`: Ember on a cluster of network-namespace hosts from the command line.
//! `ember-hosts chaos` is the chaos run of [`ember_tests::chaos`] (it prints the seed
//! first and a summary last, and exits non-zero when a result was wrong, a write lost or
//! duplicated rows or left a partial output, or a job hung); `ember-hosts shuffle-bench`
//! measures the shuffle between hosts ([`ember_tests::shuffle_bench`]). Both need root
//! (network namespaces) and the `ember-node` binary built beside this one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ember_tests::chaos::ChaosOptions;
use ember_tests::hosts::Hosts;
use ember_tests::shuffle_bench::ShuffleBenchOptions;

/// Ember on a cluster of hosts made of Linux network namespaces on this machine.
#[derive(Parser)]
#[command(name = "ember-hosts")]
struct Args {
    /// The `ember-node` binary (default: the one beside this program).
    #[arg(long, global = true)]
    node: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run TPC-H queries and write jobs while killing, pausing and cutting off executors.
    Chaos {
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Seed of the random choices (default: from the clock); printed, to replay a run.
        #[arg(long)]
        seed: Option<u64>,
        /// Executor hosts (each runs one executor of 2 slots).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=16))]
        executors: u64,
    },
    /// Measure a hash shuffle between two executor hosts: codec none and lz4, links
    /// unlimited and limited.
    ShuffleBench {
        /// The `lineitem` folder of TPC-H Parquet data (such as SF 1's).
        #[arg(long)]
        lineitem: PathBuf,
        /// Timed runs per setting, after one warm-up.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
        runs: u64,
        /// The limit of the limited runs, in Mbit/s.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        limit_mbit: u32,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(reason) = Hosts::available() {
        eprintln!("ember-hosts: {reason} (it needs root and iproute2)");
        return ExitCode::from(2);
    }
    // One user of hosts at a time on this machine (the tests take the same lock).
    let _lock = ember_tests::hosts::hosts_lock();
    let node = match args.node {
        Some(node) => node,
        None => match std::env::current_exe() {
            Ok(exe) => exe.with_file_name("ember-node"),
            Err(e) => {
                eprintln!("ember-hosts: cannot find its own path: {e}");
                return ExitCode::from(2);
            }
        },
    };
    if !node.is_file() {
        eprintln!(
            "ember-hosts: {} is missing: build it with `cargo build -p ember-tests --bins`, \
             or pass --node",
            node.display()
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ember-hosts: {e}");
            return ExitCode::from(2);
        }
    };
    match args.command {
        Command::Chaos {
            seconds,
            seed,
            executors,
        } => {
            let seed = seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
            println!("ember-hosts chaos: seed {seed}");
            let options = ChaosOptions {
                duration: Duration::from_secs(seconds),
                seed,
                executors: executors as usize,
                node,
            };
            match runtime.block_on(ember_tests::chaos::run(&options)) {
                Ok(summary) => {
                    print!("{}", summary.report());
                    if summary.clean() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("ember-hosts chaos: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::ShuffleBench {
            lineitem,
            runs,
            limit_mbit,
        } => {
            if !lineitem.is_dir() {
                eprintln!(
                    "ember-hosts shuffle-bench: --lineitem {}: no such folder",
                    lineitem.display()
                );
                return ExitCode::from(2);
            }
            let options = ShuffleBenchOptions {
                node,
                lineitem,
                runs: runs as usize,
                limit_mbit,
            };
            match runtime.block_on(ember_tests::shuffle_bench::run(&options)) {
                Ok(table) => {
                    print!("{table}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ember-hosts shuffle-bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
