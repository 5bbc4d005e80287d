//! The `ember` command line: SQL over files on the embedded cluster or a process cluster
//! (`--scheduler URL`), stage graphs, data sets, named pipelines (`ember run`), event
//! logs, and the cluster's processes (`ember scheduler`, `ember executor`). Errors print
//! as one line on stderr with a non-zero exit status.
//!
//! [`main_with`] is the whole command, so a user's own binary can be `ember` with its own
//! functions and jobs: its closure registers them in the command's [`Registry`] (a
//! [`FunctionRegistry`] that already holds the built-ins, plus the [`Job`]s of
//! `ember run`), then the command runs. The sessions of `ember sql` and `ember run` plan
//! with those functions, and every executor that `ember executor` starts runs tasks with
//! them, which is how a job's named functions reach executors in other processes. The
//! stock `ember` binary is `main_with(ember_examples::register)`; [`main`] is the command
//! with the built-ins only.
//!
//! ```no_run
//! use ember::TypedFunctions;
//!
//! fn main() -> std::process::ExitCode {
//!     ember::cli::main_with(|registry| {
//!         registry.register_reducer::<String, i64>("add", |a, b| a + b)
//!     })
//! }
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::datasets::{
    ProductsOptions, TpchOptions, generate_products, generate_tpch_with_progress,
};
use crate::executors::ShuffleCompression;
use crate::executors::metrics::ExecutorMetrics;
use crate::executors::rpc::server::{ExecutorProcessConfig, run_executor_process};
use crate::executors::storage::StoreOptions;
use crate::flight_sql::{FlightSqlConfig, FlightSqlServer};
use crate::progress::ProgressBar;
use crate::{EmberConfig, FunctionRegistry, OutputFormat, Session, TableSpec};
use anyhow::Context;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use ember_scheduler::ui::{DEFAULT_UI_PORT, UiBind};
use ember_scheduler::{
    EventLogDir, Listening, Policy, SchedulerConfig, SchedulerProcessConfig, run_scheduler_process,
};

pub use self::common::{ClusterArgs, finish_progress, print_result, report_bad_rows};
use self::common::{SecurityArgs, ServerTlsArgs, announce, new_session, shutdown_signal};
pub use self::jobs::{Job, JobContext, Registry};

mod common;
mod history;
mod jobs;
mod shell;
mod sql;

#[derive(Parser)]
#[command(
    name = "ember",
    version,
    about = "Ember: a distributed batch dataflow engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run SQL statements and print their results (a shell on a terminal when none are given).
    Sql(SqlArgs),
    /// Print the stage graph of a query: stages, operators, partitions and inputs, as text,
    /// an SVG picture or Graphviz DOT.
    Explain(ExplainArgs),
    /// Generate data sets.
    Datasets {
        #[command(subcommand)]
        which: DatasetCommand,
    },
    /// List the configuration keys that `--conf` accepts.
    Config,
    /// Run a scheduler process: executors register with it, clients run jobs on it.
    Scheduler(SchedulerArgs),
    /// Run an executor process that registers with a scheduler and runs its tasks.
    Executor(ExecutorArgs),
    /// List the jobs of an event-log folder, or print one job's stages and tasks.
    History(history::HistoryArgs),
}

#[derive(Args)]
struct SchedulerArgs {
    /// Address to listen on (port 0 picks a free one; the bound address is printed). A
    /// non-loopback address needs --auth-token (or --allow-unauthenticated).
    #[arg(long, default_value = "127.0.0.1:50050")]
    bind: SocketAddr,
    /// How concurrent jobs share task slots: fifo or fair.
    #[arg(long, default_value = "fifo")]
    policy: Policy,
    /// Attempts of a task before its job fails.
    #[arg(long, default_value_t = 4)]
    max_attempts: usize,
    /// Seconds without a heartbeat after which an executor is declared lost.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    heartbeat_timeout: f64,
    /// Seconds a job waits for an executor when none is left, before it fails.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    grace_period: f64,
    /// Seconds a finished job's result stays on the executors for a client that is still
    /// connected but has not finished reading it (it goes as soon as the client is done
    /// or gone).
    #[arg(long, default_value_t = 3600.0, value_name = "SECS")]
    result_ttl: f64,
    /// Folder of a catalog to serve: tables and views that one client creates, every
    /// client sees, across scheduler restarts.
    #[arg(long, value_name = "DIR")]
    catalog: Option<PathBuf>,
    /// Append each job's scheduler events as JSON lines to DIR/JOB_ID.jsonl (a folder or
    /// an object-store URL), for `ember history`.
    #[arg(long, value_name = "DIR")]
    event_log: Option<String>,
    /// Keep every running job's state in this folder, so that a scheduler restarted on it
    /// takes its jobs over: finished stages are not run again and clients still get their
    /// results. Locked while a scheduler runs on it.
    #[arg(long, value_name = "DIR", conflicts_with = "ha")]
    state: Option<PathBuf>,
    /// Run as one of several schedulers, one leading and the others standing by, elected
    /// through etcd, which also keeps the jobs' state: a standby takes the jobs over when
    /// the leader dies or loses etcd. A standby listens on nothing; clients and executors
    /// are given every scheduler's URL. PREFIX (default /ember) separates clusters.
    #[arg(long, value_name = "etcd://HOST:PORT[,HOST:PORT][/PREFIX]")]
    ha: Option<String>,
    /// The URL clients and executors reach this scheduler at, for the others to name as
    /// the leader [default: http://BIND, https:// with TLS].
    #[arg(long, value_name = "URL", requires = "ha")]
    advertise: Option<String>,
    /// Seconds of the leader's lease in etcd: a dead leader is replaced within about this
    /// time, and a leader cut off from etcd stops before it.
    #[arg(long, default_value_t = 5.0, value_name = "SECS", requires = "ha")]
    ha_lease: f64,
    /// Serve the web UI, the REST API (/api/v1/) and Prometheus metrics (/metrics) on
    /// this address [default: 127.0.0.1:4040; when that port is taken, the next free one
    /// of the 16 after it]. With --auth-token they need the token; with TLS they speak
    /// https. A non-loopback address needs --auth-token (or --allow-unauthenticated).
    #[arg(long, value_name = "ADDR", conflicts_with = "no_ui")]
    ui_bind: Option<SocketAddr>,
    /// Serve no web UI.
    #[arg(long)]
    no_ui: bool,
    /// Also serve Arrow Flight SQL (ADBC, JDBC and other Flight SQL clients) on this
    /// address, with the scheduler's token and TLS. A non-loopback address needs
    /// --auth-token (or --allow-unauthenticated).
    #[arg(long, value_name = "ADDR")]
    flight_sql_bind: Option<SocketAddr>,
    /// A table Flight SQL clients see, over a file, folder or glob; FORMAT is parquet, csv
    /// or json (guessed from the extension when left out). Repeatable.
    #[arg(
        long = "table",
        value_name = "NAME=PATH[:FORMAT]",
        requires = "flight_sql_bind"
    )]
    tables: Vec<TableSpec>,
    #[command(flatten)]
    security: SecurityArgs,
    #[command(flatten)]
    tls: ServerTlsArgs,
}

#[derive(Args)]
struct ExecutorArgs {
    /// The scheduler's URL.
    #[arg(long, env = "EMBER_SCHEDULER", value_name = "URL")]
    scheduler: String,
    /// Address to listen on, for tasks and for shuffle data (port 0 picks a free one). A
    /// non-loopback address needs --auth-token (or --allow-unauthenticated).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// The URL or HOST:PORT others reach this executor at (default: the bound address, with
    /// 127.0.0.1 for 0.0.0.0).
    #[arg(long, value_name = "URL")]
    advertise: Option<String>,
    /// Tasks it runs at once (default: number of cores).
    #[arg(long, value_name = "N")]
    slots: Option<usize>,
    /// Root of its shuffle files (default: a new folder in the system temp dir).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    heartbeat_interval: f64,
    /// Codec of its shuffle files: auto (lz4 when the cluster spans hosts, a shuffle
    /// directory is set or it has a memory limit, else none), lz4, zstd or none.
    #[arg(long, default_value = "auto")]
    compression: ShuffleCompression,
    /// Serve Prometheus metrics on http://ADDR/metrics (tasks, task durations, shuffle
    /// bytes written, read and served, spill, memory pool use), with the executor's
    /// token and TLS.
    #[arg(long, value_name = "ADDR")]
    metrics_bind: Option<SocketAddr>,
    /// Memory its tasks may hold together (such as 512M or 4G) before their sorts,
    /// aggregations and joins spill to its work directory; no limit by default.
    #[arg(long, value_name = "SIZE", value_parser = crate::executors::memory::parse_size)]
    memory_limit: Option<usize>,
    #[command(flatten)]
    security: SecurityArgs,
    #[command(flatten)]
    tls: ServerTlsArgs,
}

#[derive(Args)]
struct QueryArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// A table over a file, folder or glob; FORMAT is parquet, csv, json or delta (a Delta
    /// Lake table; guessed from the extension, or from a _delta_log/ folder, when left
    /// out). PATH may also be postgres://USER:PASSWORD@HOST:PORT/DB?table=NAME (with
    /// &partition_column=C&lower_bound=L&upper_bound=U&num_partitions=N for a read in N
    /// tasks). Repeatable.
    #[arg(long = "table", value_name = "NAME=PATH[:FORMAT]")]
    tables: Vec<TableSpec>,
    /// Run the statements of this file ('-' for standard input), in order.
    #[arg(long, value_name = "F.sql", conflicts_with = "query")]
    file: Option<PathBuf>,
    /// Run these statements (several may be separated by ';'); repeatable, run in order.
    #[arg(
        short = 'c',
        long = "command",
        value_name = "SQL",
        conflicts_with_all = ["query", "file"],
        allow_hyphen_values = true
    )]
    commands: Vec<String>,
    /// Print each statement's row count and time on stderr.
    #[arg(long)]
    timing: bool,
    /// Run the statements after one that fails (the exit status is still non-zero).
    #[arg(long)]
    keep_going: bool,
    /// Keep table and view definitions in this folder, for later sessions
    /// (`ember.catalog.dir`). With --scheduler, the scheduler's catalog is used instead.
    #[arg(long, value_name = "DIR")]
    catalog: Option<PathBuf>,
    /// The SQL text. With no query, -c or --file, statements are read from standard
    /// input, or (on a terminal) typed into an interactive shell.
    query: Option<String>,
}

/// `ember sql`: the query arguments and how results are printed.
#[derive(Args)]
struct SqlArgs {
    #[command(flatten)]
    query: QueryArgs,
    /// Output format: table, csv or json.
    #[arg(long, default_value = "table")]
    format: OutputFormat,
}

/// `ember explain`: the query arguments and how the stage graph is printed.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ExplainArgs {
    #[command(subcommand)]
    analyze: Option<Box<ExplainMode>>,
    #[command(flatten)]
    query: QueryArgs,
    /// Stage graph format: text (stages and their operators), svg (a self-contained
    /// picture) or dot (Graphviz).
    #[arg(long, default_value = "text")]
    format: ExplainFormat,
}

/// `ember explain analyze`.
#[derive(Subcommand)]
enum ExplainMode {
    /// Run the query, then print the stage graph as it ran: each stage's tasks as planned
    /// and as run, rows and bytes read and written, task times, and every adaptive
    /// decision with the sizes behind it.
    Analyze(AnalyzeArgs),
}

/// `ember explain analyze`: the query to run.
#[derive(Args)]
struct AnalyzeArgs {
    #[command(flatten)]
    query: QueryArgs,
}

/// How `ember explain` prints the stage graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExplainFormat {
    /// Stages and their operator trees, as text.
    Text,
    /// One self-contained SVG document (see [`crate::planner::stage_graph_svg`]).
    Svg,
    /// A Graphviz DOT digraph.
    Dot,
}

impl std::str::FromStr for ExplainFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(ExplainFormat::Text),
            "svg" => Ok(ExplainFormat::Svg),
            "dot" => Ok(ExplainFormat::Dot),
            other => Err(format!(
                "unknown explain format '{other}' (expected text, svg or dot)"
            )),
        }
    }
}

impl QueryArgs {
    fn input(&self) -> anyhow::Result<sql::Input> {
        sql::input(self.query.as_deref(), &self.commands, self.file.as_ref())
    }

    /// The statements as one text, for `explain`.
    fn sql(&self) -> anyhow::Result<String> {
        match self.input()? {
            sql::Input::Script(sources) => Ok(sources
                .into_iter()
                .map(|s| s.sql)
                .collect::<Vec<_>>()
                .join(";\n")),
            sql::Input::Shell => anyhow::bail!("give a query, -c SQL or --file F.sql"),
        }
    }

    async fn session(
        &self,
        functions: &FunctionRegistry,
    ) -> anyhow::Result<(Session, Option<Arc<ProgressBar>>)> {
        if self.catalog.is_some() && self.cluster.scheduler.is_some() {
            anyhow::bail!(
                "invalid setting --catalog: a process cluster's catalog is the scheduler's; \
                 start it with `ember scheduler --catalog DIR`"
            );
        }
        let mut cluster = self.cluster.clone();
        if let Some(dir) = &self.catalog {
            cluster
                .conf
                .push(format!("ember.catalog.dir={}", dir.display()));
        }
        let (session, bar) = new_session(&cluster, functions).await?;
        for table in &self.tables {
            match &session.config().bad_rows {
                Some(policy)
                    if matches!(
                        table.resolve_format()?,
                        crate::FileFormat::Csv | crate::FileFormat::Json
                    ) =>
                {
                    let rows = if table.resolve_format()? == crate::FileFormat::Csv {
                        session.read_csv_checked(&table.path, policy).await?
                    } else {
                        session.read_json_checked(&table.path, policy).await?
                    };
                    session
                        .context()
                        .register_table(table.name.as_str(), rows.frame().clone().into_view())?;
                }
                _ => session.register_table(table).await?,
            }
        }
        Ok((session, bar))
    }
}

#[derive(Subcommand)]
enum DatasetCommand {
    /// TPC-H tables as Parquet, one folder per table (dbgen-identical, via tpchgen).
    Tpch {
        /// Scale factor (1 is about 6 million lineitem rows).
        #[arg(long = "sf", default_value_t = 1.0)]
        scale_factor: f64,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Files per scaled table (default: 4 per unit of scale factor, at least 1).
        #[arg(long)]
        parts: Option<usize>,
    },
    /// A product catalog and its sales as Parquet (Zipf-skewed categories and brands,
    /// log-normal prices, two years of dates, some missing values).
    Products {
        /// Sales rows.
        #[arg(long)]
        rows: u64,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Seed of every random choice.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Also write the sales as CSV with this share of rows malformed (wrong column
        /// count, non-numeric price, bad date), their count in sales-csv/_DIRTY_ROWS.
        #[arg(long, value_name = "F")]
        dirty_fraction: Option<f64>,
        /// Parquet files of the sales.
        #[arg(long, default_value_t = 4)]
        parts: usize,
    },
}

/// Runs the `ember` command with this process's arguments and returns its exit status;
/// its registry holds the built-in functions only.
pub fn main() -> ExitCode {
    main_with(|_| Ok(()))
}

/// Runs the `ember` command with this process's arguments, after `register` has put the
/// binary's own functions and jobs into the command's [`Registry`] (which starts with the
/// built-in functions and no jobs), and returns its exit status. Sessions of the command
/// plan with those functions, the executors of `ember executor` run with them, and
/// `ember run NAME` runs the job of that name. A failing `register` ends the command with
/// its error.
pub fn main_with(register: impl FnOnce(&mut Registry) -> crate::Result<()>) -> ExitCode {
    let mut registry = Registry::new();
    if let Err(e) = register(&mut registry) {
        eprintln!(
            "error: registering the binary's functions and jobs: {}",
            crate::error::one_line(&e.to_string())
        );
        return ExitCode::FAILURE;
    }
    let parsed = Cli::command()
        .subcommand(jobs::run_command(&registry))
        .try_get_matches()
        .and_then(|matches| match matches.subcommand() {
            Some(("run", run)) => Ok(Invocation::Job(run.clone())),
            _ => Cli::from_arg_matches(&matches).map(|cli| Invocation::Builtin(Box::new(cli))),
        });
    let invocation = match parsed {
        Ok(invocation) => invocation,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // clap's usage errors, on one line like every other error.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!("error: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    // Cluster processes log what they do (lost executors, recomputed tasks); one-shot
    // commands only their errors.
    let default_level = match &invocation {
        Invocation::Builtin(cli)
            if matches!(cli.command, Command::Scheduler(_) | Command::Executor(_)) =>
        {
            "info"
        }
        _ => "error",
    };
    // The Delta kernel logs, as errors, what Ember reports itself in one line (a missing
    // version, a folder that is not a table).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default_level},buoyant_kernel=off"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match invocation {
        Invocation::Builtin(cli) => runtime.block_on(run(*cli, registry.functions())),
        Invocation::Job(matches) => runtime.block_on(run_job(&registry, &matches)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", crate::error::one_line(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// What the command line asks for: a built-in subcommand, or `ember run JOB ...`.
enum Invocation {
    Builtin(Box<Cli>),
    Job(ArgMatches),
}

/// `ember run JOB ...`: the job's own options are in `matches`' subcommand.
async fn run_job(registry: &Registry, matches: &ArgMatches) -> anyhow::Result<()> {
    let Some((name, options)) = matches.subcommand() else {
        anyhow::bail!("ember run needs the name of a job");
    };
    let Some(job) = registry.job(name) else {
        anyhow::bail!(
            "unknown job '{name}' for ember run (known: {})",
            registry.job_names()
        );
    };
    job.run(options, JobContext::new(registry.functions().clone()))
        .await
}

async fn run(cli: Cli, functions: &FunctionRegistry) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    match cli.command {
        Command::Sql(SqlArgs {
            query: args,
            format,
        }) => {
            let input = args.input()?;
            let (session, bar) = args.session(functions).await?;
            let ran = match &input {
                sql::Input::Script(sources) => {
                    let options = sql::ScriptOptions {
                        format,
                        timing: args.timing,
                        keep_going: args.keep_going,
                    };
                    sql::run_script(&session, sources, options).await
                }
                sql::Input::Shell => shell::run_shell(&session, format).await,
            };
            finish_progress(bar.as_deref());
            report_bad_rows(&session);
            ran?;
        }
        Command::Explain(ExplainArgs {
            analyze: Some(mode),
            ..
        }) => {
            let ExplainMode::Analyze(AnalyzeArgs { query: args }) = *mode;
            let sql = args.sql()?;
            let (session, bar) = args.session(functions).await?;
            let analyzed = session.explain_analyze(&sql).await;
            finish_progress(bar.as_deref());
            write!(stdout.lock(), "{}", analyzed?)?;
        }
        Command::Explain(ExplainArgs {
            query: args,
            format,
            analyze: None,
        }) => {
            let sql = args.sql()?;
            let (session, _bar) = args.session(functions).await?;
            let graph = session.explain(&sql).await?;
            match format {
                ExplainFormat::Text => write!(stdout.lock(), "{graph}")?,
                ExplainFormat::Svg => {
                    write!(stdout.lock(), "{}", crate::planner::stage_graph_svg(&graph))?
                }
                ExplainFormat::Dot => {
                    write!(stdout.lock(), "{}", crate::planner::stage_graph_dot(&graph))?
                }
            }
        }
        Command::Datasets {
            which:
                DatasetCommand::Tpch {
                    scale_factor,
                    out,
                    parts,
                },
        } => {
            let parts =
                parts.unwrap_or_else(|| ((scale_factor * 4.0).ceil() as usize).clamp(1, 4096));
            let bar = ProgressBar::for_files("generating TPC-H");
            let summary = generate_tpch_with_progress(
                &TpchOptions::new(scale_factor, &out).with_parts(parts),
                &|done, total| {
                    if let Some(bar) = &bar {
                        bar.files(done, total);
                    }
                },
            );
            if let Some(bar) = &bar {
                bar.finish();
            }
            let summary = summary?;
            eprintln!(
                "wrote TPC-H sf {scale_factor} to {}: {} rows",
                out.display(),
                summary.total_rows()
            );
        }
        Command::Datasets {
            which:
                DatasetCommand::Products {
                    rows,
                    out,
                    seed,
                    dirty_fraction,
                    parts,
                },
        } => {
            let options = ProductsOptions {
                rows,
                out_dir: out.clone(),
                seed,
                dirty_fraction,
                parts,
            };
            let summary = generate_products(&options)?;
            eprintln!(
                "wrote {} products and {} sales to {}{}",
                summary.products,
                summary.sales,
                out.display(),
                match dirty_fraction {
                    Some(_) => format!(
                        " ({} malformed rows in sales-csv/sales.csv)",
                        summary.dirty_rows
                    ),
                    None => String::new(),
                }
            );
        }
        Command::Config => {
            write!(stdout.lock(), "{}", EmberConfig::markdown_table())?;
        }
        Command::Scheduler(args) => run_scheduler(args).await?,
        Command::Executor(args) => run_executor(args, functions).await?,
        Command::History(args) => history::run_history(args).await?,
    }
    Ok(())
}

fn seconds(value: f64, option: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| {
            format!("invalid setting {option}: expected a positive number of seconds, got {value}")
        })
}

/// The election settings of `--ha`.
fn ha_config(url: &str, args: &SchedulerArgs) -> anyhow::Result<ember_scheduler::HaConfig> {
    let (endpoints, prefix) = ember_scheduler::parse_ha_url(url)?;
    let lease_ttl = seconds(args.ha_lease, "--ha-lease")?;
    if lease_ttl < Duration::from_secs(1) {
        anyhow::bail!(
            "invalid setting --ha-lease: etcd's leases last at least 1 second, got {}",
            args.ha_lease
        );
    }
    let scheme = if args.tls.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let advertise = args
        .advertise
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{}", args.bind));
    Ok(ember_scheduler::HaConfig {
        endpoints,
        prefix,
        advertise,
        lease_ttl,
        wait_for_etcd: std::env::var_os(REJOIN_ENV).is_some(),
        on_lost: Arc::new(step_down),
    })
}

/// Set in the environment of a scheduler that stepped down and restarted itself: it then
/// waits for etcd instead of failing when etcd cannot be reached.
const REJOIN_ENV: &str = "EMBER_HA_REJOIN";

/// A leader that lost its leadership stops at once, everything it ran with it, and starts
/// again (the same process id, arguments and environment) as a standby.
fn step_down(reason: String) {
    use std::os::unix::process::CommandExt;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        eprintln!("ember scheduler: lost the leadership ({reason}); stepping down and rejoining as a standby");
        let error = match std::env::current_exe() {
            Ok(exe) => std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env(REJOIN_ENV, "1")
                .exec(),
            Err(e) => e,
        };
        eprintln!("ember scheduler: could not restart as a standby: {error}");
        std::process::exit(3);
    });
}

async fn run_scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let config = SchedulerProcessConfig {
        bind: args.bind,
        policy: args.policy,
        scheduler: SchedulerConfig {
            max_attempts: args.max_attempts.max(1),
            grace_period: seconds(args.grace_period, "--grace-period")?,
            event_log: args
                .event_log
                .clone()
                .map(|dir| EventLogDir::new(dir, StoreOptions::default())),
        },
        heartbeat_timeout: seconds(args.heartbeat_timeout, "--heartbeat-timeout")?,
        server: args.security.server(&args.tls),
        client: args.security.client(),
        result_ttl: seconds(args.result_ttl, "--result-ttl")?,
        allow_unauthenticated: args.tls.allow_unauthenticated,
        catalog: match &args.catalog {
            Some(dir) => Some(Arc::new(crate::sql::catalog::CatalogDir::open(dir)?)
                as Arc<dyn ember_scheduler::ServedCatalog>),
            None => None,
        },
        state: match &args.state {
            Some(dir) => Some(Arc::new(ember_scheduler::FolderStore::open(dir)?)
                as Arc<dyn ember_scheduler::StateStore>),
            None => None,
        },
        ha: match &args.ha {
            Some(url) => Some(ha_config(url, &args)?),
            None => None,
        },
        ui: (!args.no_ui).then(|| UiBind {
            address: args
                .ui_bind
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], DEFAULT_UI_PORT))),
            explicit: args.ui_bind.is_some(),
        }),
    };
    // Flight SQL's address is bound first, so that a refused one fails before the
    // scheduler starts; it serves once the scheduler it runs statements on listens.
    let flight_sql = match args.flight_sql_bind {
        Some(bind) => Some(
            FlightSqlServer::bind(FlightSqlConfig {
                bind,
                tables: args.tables.clone(),
                server: args.security.server(&args.tls),
                client: args.security.client(),
                allow_unauthenticated: args.tls.allow_unauthenticated,
            })
            .await?,
        ),
        None => None,
    };
    let flight_sql_address = flight_sql.as_ref().map(FlightSqlServer::local_addr);
    let (listening, scheduler_address) = tokio::sync::oneshot::channel();
    let scheduler = async {
        run_scheduler_process(
            config,
            move |listening_on: Listening| {
                let address = listening_on.address;
                announce(&format!("ember scheduler listening on {address}"));
                if let Some(flight_sql) = flight_sql_address {
                    announce(&format!("ember flight sql listening on {flight_sql}"));
                }
                if let Some(url) = &listening_on.ui {
                    announce(&format!("ember web UI at {url}"));
                }
                let _ = listening.send(address);
            },
            shutdown_signal(),
        )
        .await
        .map_err(crate::EmberError::from)
    };
    match flight_sql {
        None => scheduler.await?,
        Some(server) => {
            let flight_sql = async move {
                match scheduler_address.await {
                    Ok(address) => server.serve(address, shutdown_signal()).await,
                    // The scheduler never listened; its own error says why.
                    Err(_) => Ok(()),
                }
            };
            tokio::try_join!(scheduler, flight_sql)?;
        }
    }
    Ok(())
}

/// `ember executor`: its executors run tasks with `functions`, the registry of the binary
/// that runs the command (Ember's built-ins and whatever that binary registered).
async fn run_executor(args: ExecutorArgs, functions: &FunctionRegistry) -> anyhow::Result<()> {
    let slots = match args.slots {
        Some(0) => anyhow::bail!("invalid setting --slots: must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1),
    };
    let work_dir = args.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("ember-executor-{}", std::process::id()))
    });
    let config = ExecutorProcessConfig {
        scheduler: args.scheduler.clone(),
        bind: args.bind,
        advertise: args.advertise.clone(),
        slots,
        work_dir,
        heartbeat_interval: seconds(args.heartbeat_interval, "--heartbeat-interval")?,
        connect_timeout: Duration::from_secs(30),
        compression: args.compression,
        memory_limit: args.memory_limit,
        server: args.security.server(&args.tls),
        client: args.security.client(),
        setup: None,
        functions: functions.clone(),
        allow_unauthenticated: args.tls.allow_unauthenticated,
        metrics: ExecutorMetrics::shared(),
        metrics_bind: args.metrics_bind,
    };
    run_executor_process(
        config,
        |id, address| announce(&format!("ember executor {id} listening on {address}")),
        shutdown_signal(),
    )
    .await?;
    Ok(())
}
