//! `ember-bench tpcds`: the 99 TPC-DS queries on Ember and on DataFusion alone, over the
//! same Parquet files, every result checked against DuckDB's.
//!
//! The data, the query texts and DuckDB's answers come from DuckDB's `tpcds` extension
//! (PyPI `duckdb-ext-tpcds` with its matching `duckdb`), written once by
//! `bench/python/tpcds.py` into the data folder. Each engine runs each query once to warm
//! up and then `--iterations` times; the median counts, and only for a result equal to
//! DuckDB's (numbers within a relative tolerance, row order free where the query's order
//! leaves ties). A query that fails or differs is reported, not timed, and the run goes on.
//! With `--toggle KEY`, Ember runs a second time with that true/false setting off, side by
//! side (`--toggle ember.optimizer.runtime_filters` shows what runtime filters do). With
//! `--peers duckdb,spark`, those engines run the same texts over the same files in their
//! own processes (`bench/python/peers.py`), timed and checked the same way.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use ember::{EmberConfig, Session, TableSpec};

use crate::cluster::{ProcessCluster, ember_bin};
use crate::peers::{Peer, PeerRun, json_rows, median_after_warmup, rows_agree};
use crate::report::{Figure, Report};
use crate::tpch::{LaunchArgs, at_least_one, ember_config, text_rows};

/// Options of `ember-bench tpcds`.
#[derive(Args, Clone)]
pub struct TpcdsBench {
    /// Scale factor.
    #[arg(long = "sf", default_value_t = 1.0)]
    pub scale_factor: f64,
    /// Data folder (made when missing; default `data/tpcds-sf<SF>`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Ember executors of one slot, and DataFusion's target partitions.
    #[arg(long, default_value_t = 2, value_parser = at_least_one)]
    pub executors: usize,
    /// Timed runs per query and engine, after one warm-up; the median counts.
    #[arg(long, default_value_t = 1)]
    pub iterations: usize,
    /// Only these queries (1..=99), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<usize>,
    /// An Ember setting as KEY=VALUE (see `ember config`); repeatable.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
    /// Also run Ember with this true/false setting off (such as
    /// `ember.optimizer.runtime_filters`), side by side.
    #[arg(long, value_name = "KEY")]
    pub toggle: Option<String>,
    /// Also run every query on a process cluster (1 scheduler, N executor processes of
    /// one slot each, started from `--ember-bin`).
    #[arg(long)]
    pub cluster: bool,
    /// The `ember` binary for the process cluster (default: next to this one).
    #[arg(long, value_name = "PATH")]
    pub ember_bin: Option<PathBuf>,
    /// The Python with `duckdb` and `duckdb-ext-tpcds` (same version) installed, to make
    /// the data.
    #[arg(long, default_value = "python3", env = "EMBER_TPCDS_PYTHON")]
    pub tpcds_python: PathBuf,
    /// The data maker.
    #[arg(long, default_value = "bench/python/tpcds.py")]
    pub script: PathBuf,
    /// Peers to run the same query texts on, comma-separated: duckdb, polars, spark
    /// (through `--peers-script` under `--python`, with what `bench/run` installs).
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

/// One engine's outcome on one query.
enum Outcome {
    /// Equal to DuckDB's rows: the median time in ms.
    Correct(f64),
    /// Rows that differ from DuckDB's: how many came back.
    Differs(usize),
    /// The first line of its error.
    Failed(String),
}

impl Outcome {
    fn cell(&self) -> String {
        match self {
            Outcome::Correct(ms) => format!("{ms:.0}"),
            Outcome::Differs(rows) => format!("differs ({rows} rows)"),
            Outcome::Failed(message) => {
                let short: String = message.chars().take(60).collect();
                format!("error: {}", short.replace('|', "/"))
            }
        }
    }

    fn ms(&self) -> Option<f64> {
        match self {
            Outcome::Correct(ms) => Some(*ms),
            _ => None,
        }
    }
}

/// An engine under test.
enum Engine {
    DataFusion(SessionContext),
    Ember(Box<Session>),
    /// DuckDB, Polars or Spark in their own process (`Peer::run` is a blocking call).
    Peer(Mutex<Peer>),
}

impl Engine {
    async fn run(&self, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
        Ok(match self {
            Engine::DataFusion(ctx) => text_rows(&ctx.sql(sql).await?.collect().await?)?,
            Engine::Ember(session) => text_rows(&session.sql(sql).await?.batches)?,
            Engine::Peer(_) => bail!("a peer runs its queries in its own process"),
        })
    }

    /// Runs `sql` (query `name`) once to warm up and `iterations` times more.
    async fn measure(
        &self,
        name: &str,
        sql: &str,
        iterations: usize,
        expected: &[Vec<String>],
    ) -> Outcome {
        if let Engine::Peer(peer) = self {
            let run = match peer.lock() {
                Ok(mut peer) => peer.run(name, sql, iterations + 1),
                Err(_) => return Outcome::Failed("the peer's lock is poisoned".into()),
            };
            return match run {
                Ok(PeerRun::Done { times_ms, rows }) if rows_agree(expected, &rows) => {
                    Outcome::Correct(median_after_warmup(&times_ms).unwrap_or(0.0))
                }
                Ok(PeerRun::Done { rows, .. }) => Outcome::Differs(rows.len()),
                Ok(PeerRun::Failed(message)) => {
                    Outcome::Failed(message.lines().next().unwrap_or("").to_string())
                }
                Err(e) => Outcome::Failed(format!("{e:#}")),
            };
        }
        let mut times = Vec::new();
        for _ in 0..=iterations {
            let started = Instant::now();
            let rows = match self.run(sql).await {
                Ok(rows) => rows,
                Err(e) => {
                    let message = format!("{e:#}");
                    return Outcome::Failed(message.lines().next().unwrap_or("").to_string());
                }
            };
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            if !rows_agree(expected, &rows) {
                return Outcome::Differs(rows.len());
            }
        }
        Outcome::Correct(median_after_warmup(&times).unwrap_or(0.0))
    }
}

/// The table folders of `dir` (each holds Parquet files).
pub(crate) fn tables(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if path.join("part-0.parquet").is_file() {
            found.push((entry.file_name().to_string_lossy().to_string(), path));
        }
    }
    found.sort();
    Ok(found)
}

impl TpcdsBench {
    fn dir(&self) -> PathBuf {
        self.data
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("data/tpcds-sf{}", self.scale_factor)))
    }

    /// The data folder, made by the Python script when it has no `_SUCCESS`.
    fn ensure_data(&self) -> anyhow::Result<PathBuf> {
        let dir = self.dir();
        if dir.join("_SUCCESS").is_file() {
            return Ok(dir);
        }
        eprintln!(
            "making TPC-DS sf {} in {} with {}",
            self.scale_factor,
            dir.display(),
            self.tpcds_python.display()
        );
        let status = std::process::Command::new(&self.tpcds_python)
            .arg(&self.script)
            .arg("--sf")
            .arg(self.scale_factor.to_string())
            .arg("--out")
            .arg(&dir)
            .status()
            .with_context(|| format!("starting {}", self.tpcds_python.display()))?;
        if !status.success() || !dir.join("_SUCCESS").is_file() {
            bail!(
                "{} {} failed ({status}); it needs `pip install duckdb duckdb-ext-tpcds` \
                 of one version (set --tpcds-python or EMBER_TPCDS_PYTHON)",
                self.tpcds_python.display(),
                self.script.display()
            );
        }
        Ok(dir)
    }

    fn config(&self) -> anyhow::Result<EmberConfig> {
        ember_config(self.executors, &self.conf)
    }
}

pub(crate) async fn register_ember(
    session: &Session,
    tables: &[(String, PathBuf)],
) -> anyhow::Result<()> {
    for (name, path) in tables {
        session
            .register_table(&TableSpec::new(name, path.to_string_lossy(), None))
            .await?;
    }
    Ok(())
}

/// What the suite's goals read from a TPC-DS run: the Ember column set against
/// DataFusion (the process cluster when there is one), its total over the queries every
/// engine answered and its worst query.
pub struct TpcdsGoals {
    /// The Ember column (`Ember processes` or `Ember embedded`).
    pub engine: String,
    /// Its total over DataFusion's, on the queries every engine answered correctly.
    pub total_ratio: Option<f64>,
    /// Its highest ratio to DataFusion on one query, and that query.
    pub worst: Option<(usize, f64)>,
    /// Queries DataFusion answers correctly and an Ember column does not.
    pub missed: Vec<String>,
}

/// Runs `ember-bench tpcds`.
pub async fn run(bench: &TpcdsBench) -> anyhow::Result<()> {
    compare(bench, &mut Report::default()).await.map(|_| ())
}

/// Runs every asked query on every engine and adds the table, the totals and the
/// correctness counts to `report`, and the totals per engine to its figures (workload
/// `TPC-DS total`).
pub async fn compare(bench: &TpcdsBench, report: &mut Report) -> anyhow::Result<TpcdsGoals> {
    if let Some(bad) = bench.only.iter().find(|n| !(1..=99).contains(*n)) {
        bail!("invalid setting --only: {bad} is not a TPC-DS query number (1 to 99)");
    }
    if let Some(bad) = bench
        .peers
        .iter()
        .find(|p| !["duckdb", "polars", "spark"].contains(&p.as_str()))
    {
        bail!("invalid setting --peers: {bad} (the TPC-DS peers are duckdb, polars and spark)");
    }
    let dir = bench.ensure_data()?;
    let tables = tables(&dir)?;

    let mut engines: Vec<(String, Engine)> = Vec::new();
    let datafusion = SessionContext::new_with_config(
        SessionConfig::new().with_target_partitions(bench.executors),
    );
    for (name, path) in &tables {
        datafusion
            .register_parquet(
                name,
                path.to_string_lossy().as_ref(),
                ParquetReadOptions::default(),
            )
            .await?;
    }
    engines.push(("DataFusion".into(), Engine::DataFusion(datafusion)));
    let ember = Session::new(bench.config()?)?;
    register_ember(&ember, &tables).await?;
    engines.push(("Ember embedded".into(), Engine::Ember(Box::new(ember))));
    if let Some(key) = &bench.toggle {
        let mut config = bench.config()?;
        config.set(key, "false")?;
        let off = Session::new(config)?;
        register_ember(&off, &tables).await?;
        engines.push((format!("Ember, {key}=false"), Engine::Ember(Box::new(off))));
    }
    let cluster = if bench.cluster {
        let bin = ember_bin(bench.ember_bin.as_ref())?;
        Some(ProcessCluster::start(&bin, &bench.config()?)?)
    } else {
        None
    };
    if let Some(cluster) = &cluster {
        let session = cluster.session(bench.config()?).await?;
        register_ember(&session, &tables).await?;
        engines.push(("Ember processes".into(), Engine::Ember(Box::new(session))));
    }

    let mut started = Vec::new();
    for name in &bench.peers {
        let peer = Peer::start(&bench.launch.launch(), name, &dir, bench.executors)?;
        started.push(format!(
            "{} {} start-up (session, tables): {:.0} ms, not counted",
            peer.name, peer.version, peer.startup_ms
        ));
        engines.push((
            format!("{} {}", peer.name, peer.version),
            Engine::Peer(Mutex::new(peer)),
        ));
    }

    for line in started {
        report.line(line);
    }
    report.line(format!(
        "TPC-DS sf {} ({} tables from DuckDB's dsdgen), {} executors of one slot / {} target \
         partitions; median of {} run(s) after a warm-up; every result checked against \
         DuckDB's",
        bench.scale_factor,
        tables.len(),
        bench.executors,
        bench.executors,
        bench.iterations
    ));
    report.blank();
    let names: Vec<&str> = engines.iter().map(|(n, _)| n.as_str()).collect();
    // Each Ember column against DataFusion; each peer against Ember's last column (the
    // process cluster when there is one).
    let ember = engines
        .iter()
        .rposition(|(_, e)| matches!(e, Engine::Ember(_)))
        .unwrap_or(0);
    let pairs: Vec<(usize, usize)> = (1..engines.len())
        .map(|i| match engines[i].1 {
            Engine::Peer(_) => (ember, i),
            _ => (i, 0),
        })
        .collect();
    let ratios: Vec<String> = pairs
        .iter()
        .map(|&(a, b)| format!("{} / {}", names[a], names[b]))
        .collect();
    report.line(format!(
        "| query | {} (ms) | {} |",
        names.join(" (ms) | "),
        ratios.join(" | ")
    ));
    report.line(format!(
        "|---|{}",
        "---:|".repeat(names.len() + pairs.len())
    ));

    let numbers: Vec<usize> = if bench.only.is_empty() {
        (1..=99).collect()
    } else {
        bench.only.clone()
    };
    let mut outcomes: Vec<(usize, Vec<Outcome>)> = Vec::new();
    for n in numbers {
        let name = format!("q{n:02}");
        let sql = std::fs::read_to_string(dir.join("queries").join(format!("{name}.sql")))
            .with_context(|| format!("reading the text of {name}"))?;
        let answer: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("answers").join(format!("{name}.json")))
                .with_context(|| format!("reading DuckDB's answer to {name}"))?,
        )?;
        let Some(expected) = answer.get("rows").and_then(json_rows) else {
            report.line(format!("| {name} | DuckDB failed: {answer} |"));
            continue;
        };
        let mut row = Vec::new();
        for (_, engine) in &engines {
            row.push(
                engine
                    .measure(&name, &sql, bench.iterations, &expected)
                    .await,
            );
        }
        let cells: Vec<String> = row.iter().map(Outcome::cell).collect();
        let ratio_cells: Vec<String> = pairs
            .iter()
            .map(|&(a, b)| match (row[a].ms(), row[b].ms()) {
                (Some(a), Some(b)) => format!("{:.2}", a / b.max(1e-9)),
                _ => String::new(),
            })
            .collect();
        report.line(format!(
            "| {name} | {} | {} |",
            cells.join(" | "),
            ratio_cells.join(" | ")
        ));
        outcomes.push((n, row));
    }

    // Totals over the queries every engine answered correctly.
    let all_correct: Vec<&(usize, Vec<Outcome>)> = outcomes
        .iter()
        .filter(|(_, row)| row.iter().all(|o| o.ms().is_some()))
        .collect();
    let totals: Vec<f64> = (0..engines.len())
        .map(|i| {
            all_correct
                .iter()
                .map(|(_, row)| row[i].ms().unwrap_or(0.0))
                .sum()
        })
        .collect();
    report.line(format!(
        "| total ({} queries all answer) | {} | {} |",
        all_correct.len(),
        totals
            .iter()
            .map(|t| format!("{t:.0}"))
            .collect::<Vec<_>>()
            .join(" | "),
        pairs
            .iter()
            .map(|&(a, b)| format!("{:.3}", totals[a] / totals[b].max(1e-9)))
            .collect::<Vec<_>>()
            .join(" | ")
    ));
    report.blank();
    for (i, name) in names.iter().enumerate() {
        let correct = outcomes.iter().filter(|(_, r)| r[i].ms().is_some()).count();
        report.line(format!(
            "{name}: {correct} of {} queries equal to DuckDB's",
            outcomes.len()
        ));
    }
    let mut goals = TpcdsGoals {
        engine: names[ember].to_string(),
        total_ratio: (ember > 0 && !all_correct.is_empty())
            .then(|| totals[ember] / totals[0].max(1e-9)),
        worst: None,
        missed: Vec::new(),
    };
    for (i, name) in names.iter().enumerate().skip(1) {
        let missed: Vec<String> = outcomes
            .iter()
            .filter(|(_, r)| r[0].ms().is_some() && r[i].ms().is_none())
            .map(|(n, _)| format!("q{n:02}"))
            .collect();
        if !missed.is_empty() {
            report.line(format!(
                "{name} misses where DataFusion answers: {}",
                missed.join(", ")
            ));
            if matches!(engines[i].1, Engine::Ember(_)) {
                goals
                    .missed
                    .extend(missed.iter().map(|q| format!("{name} {q}")));
            }
        }
    }
    if ember > 0 {
        for (n, row) in &outcomes {
            if let (Some(a), Some(b)) = (row[ember].ms(), row[0].ms()) {
                let ratio = a / b.max(1e-9);
                if goals.worst.is_none_or(|(_, worst)| ratio > worst) {
                    goals.worst = Some((*n, ratio));
                }
            }
        }
    }
    report.figures.push(Figure {
        workload: "TPC-DS total".to_string(),
        times: names
            .iter()
            .zip(&totals)
            .map(|(name, total)| {
                (
                    name.to_string(),
                    (!all_correct.is_empty()).then_some(*total),
                )
            })
            .collect(),
    });
    Ok(goals)
}
