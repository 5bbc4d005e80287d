//! `ember-bench overhead`: where one small query's time goes before and after its rows
//! move, on DataFusion alone and on Ember (embedded, and processes with `--cluster`).
//!
//! Each engine plans the query step by step, timing DataFusion's own steps (SQL to a
//! logical plan, its optimizer, the physical planner) and Ember's (cutting the plan into
//! stages, encoding the stage plans), then runs the physical plan: DataFusion in this
//! process, Ember as a job whose metrics say where its time went (tasks in flight against
//! the scheduler between stages; summed over the tasks, their phases on the executors and
//! the time between launch and report). What is left of the end-to-end time is the
//! session's own work around a statement (catalog look-ups, the job's submission) and the
//! result's return. The median of `--iterations` runs after a warm-up counts.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use datafusion::execution::SessionState;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use ember::Session;
use ember::planner::{CutOptions, cut_stages_with};
use ember::scheduler::JobSpec;
use futures::StreamExt;
use std::sync::Arc;

use crate::cluster::{ProcessCluster, ember_bin};
use crate::peers::median_after_warmup;
use crate::tpcds::{register_ember, tables};
use crate::tpch::{at_least_one, ember_config};

/// Options of `ember-bench overhead`.
#[derive(Args, Clone)]
pub struct OverheadBench {
    /// The data folder: one folder of Parquet files per table (what `ember-bench tpcds`
    /// or `ember datasets tpch` made).
    #[arg(long)]
    pub data: PathBuf,
    /// The query: a TPC-DS query number (1..=99, its text from `DATA/queries/`), or a
    /// SQL file.
    #[arg(long, default_value = "83")]
    pub query: String,
    /// Ember executors of one slot, and DataFusion's target partitions.
    #[arg(long, default_value_t = 2, value_parser = at_least_one)]
    pub executors: usize,
    /// Timed runs per engine, after one warm-up; the median of each step counts.
    #[arg(long, default_value_t = 5, value_parser = at_least_one)]
    pub iterations: usize,
    /// Also on a process cluster (1 scheduler, N executor processes).
    #[arg(long)]
    pub cluster: bool,
    /// The `ember` binary for the process cluster (default: next to this one).
    #[arg(long, value_name = "PATH")]
    pub ember_bin: Option<PathBuf>,
}

/// The steps measured, in the order they happen.
const STEPS: &[&str] = &[
    "SQL to logical plan (parse, analyze)",
    "logical optimizer",
    "physical planner",
    "cut into stages (Ember)",
    "encode the stage plans (Ember)",
    "run: tasks in flight (DataFusion: execute)",
    "run: no task in flight (scheduler between stages)",
    "submission and end of the job, outside the scheduler",
    "result return: reading the rows",
    "result return: removing the job's files",
    "end to end (one `sql` call)",
    "Σ tasks: set-up",
    "Σ tasks: plan decoding",
    "Σ tasks: runtime filters",
    "Σ tasks: running",
    "Σ tasks: finishing",
    "Σ tasks: launch and report",
];

/// One run's figures, by step (`STEPS`), in ms.
type Figures = Vec<f64>;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// DataFusion's three planning steps, timed; the physical plan.
async fn plan(
    state: &SessionState,
    sql: &str,
) -> anyhow::Result<(Arc<dyn ExecutionPlan>, Figures)> {
    let started = Instant::now();
    let logical = state.create_logical_plan(sql).await?;
    let parsed = started.elapsed();
    let started = Instant::now();
    let optimized = state.optimize(&logical)?;
    let optimizing = started.elapsed();
    let started = Instant::now();
    let physical = state
        .query_planner()
        .create_physical_plan(&optimized, state)
        .await?;
    let planning = started.elapsed();
    let mut figures = vec![0.0; STEPS.len()];
    figures[0] = ms(parsed);
    figures[1] = ms(optimizing);
    figures[2] = ms(planning);
    Ok((physical, figures))
}

async fn datafusion_run(ctx: &SessionContext, sql: &str) -> anyhow::Result<Figures> {
    let state = ctx.state();
    let (physical, mut figures) = plan(&state, sql).await?;
    let started = Instant::now();
    collect(physical, ctx.task_ctx()).await?;
    figures[5] = ms(started.elapsed());
    let started = Instant::now();
    ctx.sql(sql).await?.collect().await?;
    figures[10] = ms(started.elapsed());
    Ok(figures)
}

async fn ember_run(session: &Session, sql: &str) -> anyhow::Result<Figures> {
    let state = session.context().state();
    let (physical, mut figures) = plan(&state, sql).await?;
    let started = Instant::now();
    let graph = cut_stages_with(
        Arc::clone(&physical),
        CutOptions {
            runtime_filters: session.config().runtime_filters,
        },
    )?;
    figures[3] = ms(started.elapsed());
    let started = Instant::now();
    JobSpec::from_graph("overhead", &graph, Vec::new())?;
    figures[4] = ms(started.elapsed());
    let started = Instant::now();
    let stream = session.stream_physical(physical).await?;
    let submitted = started.elapsed();
    let metrics = stream
        .metrics()
        .context("the job reported no metrics")?
        .timeline();
    let started = Instant::now();
    let mut stream = stream;
    while let Some(batch) = stream.next().await {
        batch?;
        figures[8] = ms(started.elapsed());
    }
    // The stream ends once the job's files are removed.
    figures[9] = ms(started.elapsed()) - figures[8];
    figures[5] = ms(metrics.in_flight);
    figures[6] = ms(metrics.idle);
    figures[7] = ms(submitted.saturating_sub(metrics.elapsed)) - figures[3] - figures[4];
    let phases = metrics.phases;
    figures[11] = ms(phases.setup);
    figures[12] = ms(phases.decode);
    figures[13] = ms(phases.filters);
    figures[14] = ms(phases.run);
    figures[15] = ms(phases.finish);
    figures[16] = ms(metrics.transit);
    let started = Instant::now();
    session.sql(sql).await?;
    figures[10] = ms(started.elapsed());
    Ok(figures)
}

/// The median of each step over the runs.
fn medians(runs: &[Figures]) -> Figures {
    (0..STEPS.len())
        .map(|step| {
            let values: Vec<f64> = runs.iter().map(|r| r[step]).collect();
            median_after_warmup(&values).unwrap_or(0.0)
        })
        .collect()
}

/// Runs `ember-bench overhead`.
pub async fn run(bench: &OverheadBench) -> anyhow::Result<()> {
    let (name, query_file) = match bench.query.parse::<usize>() {
        Ok(n) if (1..=99).contains(&n) => (
            format!("TPC-DS q{n:02}"),
            bench.data.join("queries").join(format!("q{n:02}.sql")),
        ),
        Ok(n) => bail!("invalid setting --query: {n} is not a TPC-DS query number (1 to 99)"),
        Err(_) => (bench.query.clone(), PathBuf::from(&bench.query)),
    };
    let sql = std::fs::read_to_string(&query_file)
        .with_context(|| format!("invalid setting --query: reading {}", query_file.display()))?;
    let tables = tables(&bench.data)?;

    let mut columns: Vec<(String, Figures)> = Vec::new();
    let ctx = SessionContext::new_with_config(
        SessionConfig::new().with_target_partitions(bench.executors),
    );
    for (table, path) in &tables {
        ctx.register_parquet(
            table,
            path.to_string_lossy().as_ref(),
            ParquetReadOptions::default(),
        )
        .await?;
    }
    let mut runs = Vec::new();
    for _ in 0..=bench.iterations {
        runs.push(datafusion_run(&ctx, &sql).await?);
    }
    columns.push(("DataFusion".into(), medians(&runs)));

    let config = ember_config(bench.executors, &[])?;
    let session = Session::new(config.clone())?;
    register_ember(&session, &tables).await?;
    let mut runs = Vec::new();
    for _ in 0..=bench.iterations {
        runs.push(ember_run(&session, &sql).await?);
    }
    columns.push(("Ember embedded".into(), medians(&runs)));

    let _cluster = if bench.cluster {
        let bin = ember_bin(bench.ember_bin.as_ref())?;
        let cluster = ProcessCluster::start(&bin, &config)?;
        let session = cluster.session(config.clone()).await?;
        register_ember(&session, &tables).await?;
        let mut runs = Vec::new();
        for _ in 0..=bench.iterations {
            runs.push(ember_run(&session, &sql).await?);
        }
        columns.push(("Ember processes".into(), medians(&runs)));
        Some(cluster)
    } else {
        None
    };

    println!(
        "{name} over {}, {} executors of one slot / {} target partitions; median of \
         {} runs after a warm-up, in ms",
        bench.data.display(),
        bench.executors,
        bench.executors,
        bench.iterations
    );
    println!();
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    println!("| step | {} |", names.join(" | "));
    println!("|---|{}", "---:|".repeat(names.len()));
    for (i, step) in STEPS.iter().enumerate() {
        let cells: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(engine, (_, figures))| {
                let ember_only = (3..=4).contains(&i) || (6..=9).contains(&i) || i >= 11;
                if engine == 0 && ember_only {
                    "-".to_string()
                } else {
                    format!("{:.1}", figures[i])
                }
            })
            .collect();
        println!("| {step} | {} |", cells.join(" | "));
    }
    Ok(())
}
