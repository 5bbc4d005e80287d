//! `ember-bench adaptive`: adaptive execution and speculation measured side by side, in one
//! invocation, every result checked:
//!
//! 1. **TPC-H**: the 22 queries on the embedded cluster with `ember.adaptive.enabled`
//!    (or the setting `--toggle` names, such as `ember.optimizer.runtime_filters`) off and
//!    on (same shuffle partitions), alternating per query, each checked against
//!    DataFusion alone;
//! 2. **a skewed join**: a sales table whose top product holds 30 % of the rows, joined
//!    with a products table too large to broadcast and aggregated per brand: Ember with
//!    adaptivity off and on, and Spark local mode with AQE (its skew-join handling on);
//! 3. **a straggler**: a query on a process cluster of 3 executors, one of them frozen
//!    (SIGSTOP) as the query starts and woken 10 s later: with speculation off and on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use datafusion::arrow::array::{Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use ember::datasets::tpch_tables;
use ember::executors::ShuffleCompression;
use ember::pipelines::{ensure_tpch, register_tpch};
use ember::{EmberConfig, FileFormat, Session, TableSpec};

use crate::cluster::ProcessCluster;
use crate::peers::{Peer, PeerRun, median_after_warmup, rows_agree};
use crate::report::Report;
use crate::tpch::{LaunchArgs, text_rows};

/// Options of `ember-bench adaptive`.
#[derive(Args, Clone)]
pub struct AdaptiveBench {
    /// TPC-H scale factor.
    #[arg(long = "sf", default_value_t = 1.0)]
    pub scale_factor: f64,
    /// TPC-H data folder (made when missing; default `data/tpch-sf<SF>`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Ember executors (one slot each) and Spark's threads.
    #[arg(long, default_value_t = 2)]
    pub executors: usize,
    /// Shuffle partitions (`ember.shuffle.partitions`) of both Ember runs.
    #[arg(long)]
    pub partitions: Option<usize>,
    /// Timed runs per query and engine, after one warm-up; the median counts.
    #[arg(long, default_value_t = 3)]
    pub iterations: usize,
    /// Folder of q01.sql .. q22.sql.
    #[arg(long, default_value = "datasets/tpch/queries")]
    pub queries: PathBuf,
    /// Rows of the skewed sales table.
    #[arg(long, default_value_t = 20_000_000)]
    pub skew_rows: usize,
    /// Folder of the skewed tables (made when missing).
    #[arg(long, default_value = "data/skew")]
    pub skew_data: PathBuf,
    /// The true/false setting the TPC-H part turns off and on.
    #[arg(long, default_value = "ember.adaptive.enabled")]
    pub toggle: String,
    /// Parts to run, comma-separated: tpch, skew, straggler.
    #[arg(long, value_delimiter = ',', default_value = "tpch,skew,straggler")]
    pub parts: Vec<String>,
    /// Run Spark (local mode, AQE on) on the skewed join.
    #[arg(long)]
    pub spark: bool,
    /// The `ember` binary for the straggler's process cluster (default: next to this one).
    #[arg(long, value_name = "PATH")]
    pub ember_bin: Option<PathBuf>,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

impl AdaptiveBench {
    /// The TPC-H folder.
    fn tpch_dir(&self) -> PathBuf {
        self.data
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("data/tpch-sf{}", self.scale_factor)))
    }

    fn config(&self, adaptive: bool) -> anyhow::Result<EmberConfig> {
        self.config_with("ember.adaptive.enabled", adaptive)
    }

    /// The embedded cluster's configuration with the true/false setting `key` at `on`.
    fn config_with(&self, key: &str, on: bool) -> anyhow::Result<EmberConfig> {
        let mut config = EmberConfig {
            executors: self.executors,
            slots: 1,
            shuffle_partitions: self.partitions,
            ..EmberConfig::default()
        };
        config.set(key, &on.to_string())?;
        Ok(config)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `ember-bench adaptive`.
pub async fn run(bench: &AdaptiveBench) -> anyhow::Result<()> {
    let mut report = Report::default();
    for part in &bench.parts {
        match part.as_str() {
            "tpch" => tpch(bench, &mut report).await?,
            "skew" => skew(bench, &mut report).await?,
            "straggler" => straggler(bench, &mut report).await?,
            other => {
                bail!("invalid setting --parts: unknown part '{other}' (tpch, skew, straggler)")
            }
        }
        report.blank();
    }
    Ok(())
}

/// Decisions over a job's stages.
fn decisions(result: &ember::QueryResult) -> usize {
    result
        .metrics
        .as_ref()
        .map_or(0, |m| m.stages.iter().map(|s| s.decisions.len()).sum())
}

/// Tasks a job ran.
fn tasks(result: &ember::QueryResult) -> usize {
    result.metrics.as_ref().map_or(0, |m| m.tasks.len())
}

async fn tpch(bench: &AdaptiveBench, report: &mut Report) -> anyhow::Result<()> {
    let dir = bench.tpch_dir();
    ensure_tpch(&dir, bench.scale_factor, 4)?;
    let off = Session::new(bench.config_with(&bench.toggle, false)?)?;
    let on = Session::new(bench.config_with(&bench.toggle, true)?)?;
    register_tpch(&off, &dir).await?;
    register_tpch(&on, &dir).await?;
    let partitions = on.config().target_partitions();
    let datafusion =
        SessionContext::new_with_config(SessionConfig::new().with_target_partitions(partitions));
    for table in tpch_tables() {
        datafusion
            .register_parquet(
                *table,
                dir.join(table).to_string_lossy().as_ref(),
                ParquetReadOptions::default(),
            )
            .await?;
    }
    report.line(format!(
        "TPC-H sf {}: Ember embedded, {} executors of one slot, {partitions} shuffle partitions, \
         {}=false against true; median of {} runs after a warm-up, the two \
         alternating per query, every result checked against DataFusion's",
        bench.scale_factor, bench.executors, bench.toggle, bench.iterations
    ));
    report.blank();
    report.line("| query | off (ms) | on (ms) | on / off | tasks off | tasks on | decisions |");
    report.line("|---|---:|---:|---:|---:|---:|---:|");
    let (mut total_off, mut total_on) = (0.0, 0.0);
    for n in 1..=22 {
        let path = bench.queries.join(format!("q{n:02}.sql"));
        let sql = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let expected = text_rows(&datafusion.sql(&sql).await?.collect().await?)?;
        let mut times = [Vec::new(), Vec::new()];
        let mut last = [None, None];
        for _ in 0..=bench.iterations {
            for (i, session) in [&off, &on].into_iter().enumerate() {
                let started = Instant::now();
                let result = session.sql(&sql).await?;
                times[i].push(ms(started.elapsed()));
                if !rows_agree(&expected, &text_rows(&result.batches)?) {
                    bail!(
                        "q{n:02}: Ember with adaptivity {} differs from DataFusion",
                        ["off", "on"][i]
                    );
                }
                last[i] = Some(result);
            }
        }
        let off_ms = median_after_warmup(&times[0]).unwrap_or(0.0);
        let on_ms = median_after_warmup(&times[1]).unwrap_or(0.0);
        total_off += off_ms;
        total_on += on_ms;
        let (Some(a), Some(b)) = (&last[0], &last[1]) else {
            continue;
        };
        report.line(format!(
            "| q{n:02} | {off_ms:.0} | {on_ms:.0} | {:.2} | {} | {} | {} |",
            on_ms / off_ms.max(1e-9),
            tasks(a),
            tasks(b),
            decisions(b)
        ));
    }
    report.line(format!(
        "| total | {total_off:.0} | {total_on:.0} | {:.3} | | | |",
        total_on / total_off.max(1e-9)
    ));
    Ok(())
}

/// Writes the skewed tables under `dir` when missing: `sales` (`rows` rows in 8 Parquet
/// files, product 0 in 30 % of them) and `products` (1,000,000 rows in 100 brands).
fn ensure_skewed(dir: &Path, rows: usize) -> anyhow::Result<()> {
    let done = dir.join("_SUCCESS");
    if done.is_file() {
        return Ok(());
    }
    let products = 1_000_000usize;
    std::fs::create_dir_all(dir.join("sales"))?;
    std::fs::create_dir_all(dir.join("products"))?;
    let sales_schema = Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Int64, false),
        Field::new("quantity", DataType::Int32, false),
        Field::new("price", DataType::Float64, false),
    ]));
    let files = 8;
    let per_file = rows.div_ceil(files);
    for f in 0..files {
        let file = std::fs::File::create(dir.join(format!("sales/part-{f}.parquet")))?;
        let mut writer = ArrowWriter::try_new(file, Arc::clone(&sales_schema), None)?;
        let (start, end) = (f * per_file, ((f + 1) * per_file).min(rows));
        for chunk in (start..end).step_by(1 << 16) {
            let stop = (chunk + (1 << 16)).min(end);
            let ids = Int64Array::from_iter_values((chunk..stop).map(|i| {
                // A multiplicative hash spreads the rest evenly; 3 in 10 are product 0.
                let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17;
                if h % 10 < 3 {
                    0
                } else {
                    1 + (h / 10 % (products as u64 - 1)) as i64
                }
            }));
            let quantity = Int32Array::from_iter_values((chunk..stop).map(|i| 1 + (i % 5) as i32));
            let price = Float64Array::from_iter_values(
                (chunk..stop).map(|i| 5.0 + (i % 9_000) as f64 / 100.0),
            );
            let batch = RecordBatch::try_new(
                Arc::clone(&sales_schema),
                vec![Arc::new(ids), Arc::new(quantity), Arc::new(price)],
            )?;
            writer.write(&batch)?;
        }
        writer.close()?;
    }
    let product_schema = Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Int64, false),
        Field::new("brand", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let file = std::fs::File::create(dir.join("products/part-0.parquet"))?;
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&product_schema), None)?;
    for chunk in (0..products).step_by(1 << 16) {
        let stop = (chunk + (1 << 16)).min(products);
        let batch = RecordBatch::try_new(
            Arc::clone(&product_schema),
            vec![
                Arc::new(Int64Array::from_iter_values(
                    (chunk..stop).map(|p| p as i64),
                )),
                Arc::new(StringArray::from_iter_values(
                    (chunk..stop).map(|p| format!("brand-{:02}", p % 100)),
                )),
                Arc::new(StringArray::from_iter_values(
                    (chunk..stop).map(|p| format!("product number {p} of the catalog")),
                )),
            ],
        )?;
        writer.write(&batch)?;
    }
    writer.close()?;
    std::fs::write(done, "")?;
    Ok(())
}

const BRAND_REVENUE: &str = "SELECT p.brand, count(*) AS sales, sum(s.price * s.quantity) AS revenue \
     FROM sales s JOIN products p ON s.product_id = p.product_id \
     GROUP BY p.brand ORDER BY p.brand";

async fn skew(bench: &AdaptiveBench, report: &mut Report) -> anyhow::Result<()> {
    let dir = bench.skew_data.join(format!("rows-{}", bench.skew_rows));
    let started = Instant::now();
    ensure_skewed(&dir, bench.skew_rows)?;
    eprintln!(
        "skewed tables ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut engines: Vec<(String, Session)> = Vec::new();
    for adaptive in [false, true] {
        let session = Session::new(bench.config(adaptive)?)?;
        for table in ["sales", "products"] {
            session
                .register_table(&TableSpec::new(
                    table,
                    dir.join(table).to_string_lossy(),
                    Some(FileFormat::Parquet),
                ))
                .await?;
        }
        engines.push((
            format!("Ember adaptive {}", ["off", "on"][adaptive as usize]),
            session,
        ));
    }
    let mut spark = if bench.spark {
        // The peer registers the TPC-H tables it is given; the skewed ones are read by path.
        let tpch = bench.tpch_dir();
        ensure_tpch(&tpch, bench.scale_factor, 4)?;
        Some(Peer::start(
            &bench.launch.launch(),
            "spark",
            &tpch,
            bench.executors,
        )?)
    } else {
        None
    };
    let spark_sql = BRAND_REVENUE
        .replace(
            "FROM sales s",
            &format!("FROM parquet.`{}` s", dir.join("sales").display()),
        )
        .replace(
            "JOIN products p",
            &format!("JOIN parquet.`{}` p", dir.join("products").display()),
        );
    report.line(format!(
        "Skewed join: {} sales rows (product 0 holds 30 %) joined with 1,000,000 products, \
         sum per brand; {} executors of one slot, {} shuffle partitions; Spark local[{}] with \
         AQE (skew join on); median of {} runs after a warm-up; every result checked against \
         the first engine's",
        bench.skew_rows,
        bench.executors,
        engines[0].1.config().target_partitions(),
        bench.executors,
        bench.iterations
    ));
    report.blank();
    report.line("| engine | time (ms) | largest join task / median | join tasks | decisions |");
    report.line("|---|---:|---:|---:|---|");
    let mut expected: Option<Vec<Vec<String>>> = None;
    let mut medians = Vec::new();
    for (name, session) in &engines {
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..=bench.iterations {
            let started = Instant::now();
            let result = session.sql(BRAND_REVENUE).await?;
            times.push(ms(started.elapsed()));
            last = Some(result);
        }
        let Some(result) = last else { continue };
        let rows = text_rows(&result.batches)?;
        match &expected {
            Some(expected) if !rows_agree(expected, &rows) => {
                bail!("skewed join: {name} differs from Ember adaptive off")
            }
            Some(_) => {}
            None => expected = Some(rows),
        }
        let metrics = result.metrics.as_ref().context("metrics")?;
        let join = metrics.stages.iter().find(|s| s.inputs.len() == 2);
        let (spread, count, decided) = match join {
            Some(join) => {
                let mut work: Vec<u64> = metrics
                    .tasks
                    .iter()
                    .filter(|t| t.stage_id == join.stage_id)
                    .map(|t| t.read_rows)
                    .collect();
                work.sort_unstable();
                let median = work.get(work.len() / 2).copied().unwrap_or(0).max(1);
                let max = work.last().copied().unwrap_or(0);
                (
                    format!("{:.2}", max as f64 / median as f64),
                    work.len(),
                    join.decisions
                        .iter()
                        .map(|d| d.short())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            }
            None => ("-".into(), 0, String::new()),
        };
        let median = median_after_warmup(&times).unwrap_or(0.0);
        medians.push((name.clone(), median));
        report.line(format!(
            "| {name} | {median:.0} | {spread} | {count} | {decided} |"
        ));
    }
    if let Some(spark) = &mut spark {
        let name = format!("Spark {} local[{}], AQE", spark.version, bench.executors);
        match spark.run("skew", &spark_sql, bench.iterations + 1)? {
            PeerRun::Done { times_ms, rows } => {
                if let Some(expected) = &expected
                    && !rows_agree(expected, &rows)
                {
                    bail!("skewed join: Spark differs from Ember");
                }
                let median = median_after_warmup(&times_ms).unwrap_or(0.0);
                medians.push((name.clone(), median));
                report.line(format!("| {name} | {median:.0} | | | |"));
            }
            PeerRun::Failed(error) => report.line(format!("| {name} | failed: {error} | | | |")),
        }
    }
    if let Some((_, on)) = medians.iter().find(|(n, _)| n == "Ember adaptive on") {
        for (name, time) in &medians {
            if name != "Ember adaptive on" {
                report.line(format!(
                    "Ember adaptive on / {name}: {:.3}",
                    on / time.max(1e-9)
                ));
            }
        }
    }
    Ok(())
}

async fn straggler(bench: &AdaptiveBench, report: &mut Report) -> anyhow::Result<()> {
    let bin = crate::cluster::ember_bin(bench.ember_bin.as_ref())?;
    let dir = bench.tpch_dir();
    ensure_tpch(&dir, bench.scale_factor, 4)?;
    let sql = std::fs::read_to_string(bench.queries.join("q01.sql"))?;
    report.line(format!(
        "Straggler: TPC-H q1 at sf {} on a process cluster of 3 executors of one slot \
         (heartbeats every 0.5 s, declared lost after 30 s), 6 shuffle partitions; one \
         executor frozen (SIGSTOP) as the query starts and woken (SIGCONT) 10 s later",
        bench.scale_factor
    ));
    report.blank();
    report.line("| speculation | time (ms) | speculative copies | copies that won |");
    report.line("|---|---:|---:|---:|");
    for speculation in [false, true] {
        let mut config = EmberConfig {
            executors: 3,
            slots: 1,
            shuffle_partitions: Some(6),
            compression: ShuffleCompression::Lz4,
            ..EmberConfig::default()
        };
        config.adaptive.speculation.enabled = speculation;
        let cluster = ProcessCluster::start_with(
            &bin,
            &config,
            &["--heartbeat-timeout", "30"],
            &["--heartbeat-interval", "0.5"],
        )?;
        let session = cluster.session(config).await?;
        register_tpch(&session, &dir).await?;
        // A warm-up run, not timed.
        session.sql(&sql).await?;
        let victim = cluster.executor_pid(2).context("a third executor")?;
        // Frozen as the query starts, the executor holds no map output: what it runs
        // is stuck, not what others read from it (a reader of a frozen executor's output
        // waits for it whatever runs the reader, until it is declared lost).
        signal(victim, "STOP");
        let freezer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(10));
            signal(victim, "CONT");
        });
        let started = Instant::now();
        let result = session.sql(&sql).await?;
        let took = ms(started.elapsed());
        freezer
            .join()
            .map_err(|_| anyhow::anyhow!("the freezer thread panicked"))?;
        let metrics = result.metrics.as_ref().context("metrics")?;
        report.line(format!(
            "| {} | {took:.0} | {} | {} |",
            if speculation { "on" } else { "off" },
            metrics.speculated.len(),
            metrics.speculated.iter().filter(|c| c.won).count()
        ));
    }
    Ok(())
}

/// Sends `signal` (`STOP`, `CONT`) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}
