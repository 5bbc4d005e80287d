//! The chaos run: TPC-H queries and write jobs in a loop on a [`HostCluster`] for a fixed
//! time, while a second thread kills executors (SIGKILL, restarted a moment later),
//! pauses them (SIGSTOP, then SIGCONT), and cuts and restores links (a host's whole link,
//! the scheduler's link to one executor, or the link between two executors). Every query
//! result is checked against DataFusion's, every write for exactly-once (each row once,
//! none lost, the `_SUCCESS` marker, and nothing at the destination when the job failed).
//!
//! Both threads draw from generators seeded by one printed seed, so a run's choices can
//! be replayed (the timings of a real cluster still vary).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch};
use ember::pipelines::register_tpch;
use ember::{EmberConfig, Session};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::host_cluster::HostCluster;
use crate::{datafusion_rows, key_value_schema, rows, rows_match, tpch_dir, tpch_query};

/// Seconds without a heartbeat before the scheduler declares an executor lost.
const HEARTBEAT_TIMEOUT_S: u64 = 3;
/// Seconds a job waits with no executor left before it fails.
pub const GRACE_PERIOD_S: u64 = 60;
/// Rows of each write job.
const WRITE_ROWS: i64 = 20_000;

/// What a chaos run does.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// How long jobs are started for (the last one may end a little later).
    pub duration: Duration,
    /// The seed of both generators.
    pub seed: u64,
    /// Executor hosts (the scheduler has a host of its own).
    pub executors: usize,
    /// The `ember-node` binary.
    pub node: PathBuf,
}

/// Kinds of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL an executor, start a new one on its host a moment later.
    Kill,
    /// SIGSTOP an executor, SIGCONT it later.
    Pause,
    /// Cut an executor host's whole link, restore it later.
    CutHost,
    /// Cut only the scheduler's link to one executor.
    CutScheduler,
    /// Cut the link between two executors.
    CutPeers,
}

impl FaultKind {
    const ALL: [FaultKind; 5] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::CutHost,
        FaultKind::CutScheduler,
        FaultKind::CutPeers,
    ];

    fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "executor killed (SIGKILL)",
            FaultKind::Pause => "executor paused (SIGSTOP/SIGCONT)",
            FaultKind::CutHost => "host link cut",
            FaultKind::CutScheduler => "scheduler-executor link cut",
            FaultKind::CutPeers => "executor-executor link cut",
        }
    }
}

/// One injected fault: what, and when (from the run's start).
#[derive(Debug, Clone)]
struct Fault {
    kind: FaultKind,
    at: Duration,
    what: String,
}

/// How one job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// The right answer (or exactly the rows written, once).
    Correct,
    /// An answer that differs, or a write with rows lost or duplicated.
    Wrong,
    /// An error (a failed write left nothing behind).
    Failed,
    /// A failed write that left files at its destination.
    Partial,
    /// No end within the grace period.
    Hung,
}

/// One job of the run.
#[derive(Debug, Clone)]
struct JobRun {
    name: String,
    started: Duration,
    ended: Duration,
    verdict: Verdict,
    detail: String,
}

/// What a chaos run saw.
#[derive(Debug, Clone)]
pub struct ChaosSummary {
    /// The seed.
    pub seed: u64,
    /// Jobs started, by verdict.
    pub verdicts: BTreeMap<Verdict, usize>,
    /// Queries and writes run.
    pub queries: usize,
    /// Write jobs run.
    pub writes: usize,
    /// Faults injected, by kind.
    pub faults: BTreeMap<FaultKind, usize>,
    /// Faults followed by a correct job that started after the fault.
    pub recoveries: usize,
    /// Faults injected.
    pub fault_count: usize,
    /// The longest time from a fault to the end of the first correct job that started
    /// after it.
    pub longest_recovery: Duration,
    /// Lines about the jobs that were not correct.
    pub problems: Vec<String>,
    /// The whole run's wall time.
    pub elapsed: Duration,
}

impl ChaosSummary {
    /// Whether the run found nothing wrong: no wrong result, no lost or duplicated row,
    /// no partial output, no hang.
    /// Some job must also have been correct: a run where every job failed proves nothing.
    pub fn clean(&self) -> bool {
        self.verdicts.contains_key(&Verdict::Correct)
            && [Verdict::Wrong, Verdict::Partial, Verdict::Hung]
                .iter()
                .all(|v| !self.verdicts.contains_key(v))
    }

    /// The summary as text.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let count = |v: Verdict| self.verdicts.get(&v).copied().unwrap_or(0);
        let _ = writeln!(out, "chaos run, seed {}", self.seed);
        let _ = writeln!(
            out,
            "  ran for            {:.0} s",
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "  jobs               {} ({} TPC-H queries, {} writes)",
            self.queries + self.writes,
            self.queries,
            self.writes
        );
        let _ = writeln!(out, "  correct            {}", count(Verdict::Correct));
        let _ = writeln!(out, "  wrong results      {}", count(Verdict::Wrong));
        let _ = writeln!(out, "  failed (clean)     {}", count(Verdict::Failed));
        let _ = writeln!(out, "  partial outputs    {}", count(Verdict::Partial));
        let _ = writeln!(out, "  hung               {}", count(Verdict::Hung));
        let total: usize = self.faults.values().sum();
        let _ = writeln!(out, "  faults injected    {total}");
        for (kind, n) in &self.faults {
            let _ = writeln!(out, "    {:<32} {n}", kind.name());
        }
        let _ = writeln!(
            out,
            "  recoveries         {} of {} faults",
            self.recoveries, self.fault_count
        );
        let _ = writeln!(
            out,
            "  longest recovery   {:.1} s",
            self.longest_recovery.as_secs_f64()
        );
        for line in &self.problems {
            let _ = writeln!(out, "  ! {line}");
        }
        out
    }
}

/// Runs the chaos loop described in the module docs; `Err` when the cluster cannot start.
pub async fn run(options: &ChaosOptions) -> Result<ChaosSummary, String> {
    if options.executors < 2 {
        return Err("a chaos run needs at least 2 executor hosts".into());
    }
    eprintln!(
        "chaos run: seed {}, {} s, {} executor hosts",
        options.seed,
        options.duration.as_secs(),
        options.executors
    );
    let timeout = HEARTBEAT_TIMEOUT_S.to_string();
    let grace = GRACE_PERIOD_S.to_string();
    let cluster = HostCluster::start(
        &options.node,
        options.executors,
        &[
            "--heartbeat-timeout",
            &timeout,
            "--grace-period",
            &grace,
            "--max-attempts",
            "8",
        ],
        &[],
    )?;
    // Every query's answer from DataFusion alone, before any fault.
    let mut answers = Vec::new();
    for n in 1..=22 {
        answers.push(datafusion_rows(&tpch_query(n)).await);
    }
    let session = cluster.session(EmberConfig::default()).await;
    register_tpch(&session, tpch_dir())
        .await
        .map_err(|e| format!("registering TPC-H: {e}"))?;
    let out = tempfile::Builder::new()
        .prefix("ember-chaos-")
        .tempdir()
        .map_err(|e| e.to_string())?;

    let cluster = Arc::new(Mutex::new(cluster));
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    // The fault thread stops when this function ends, also by a panic.
    let _stop_on_exit = StopOnDrop(Arc::clone(&stop));
    let faults = Arc::new(Mutex::new(Vec::<Fault>::new()));
    let injector = std::thread::spawn({
        let (cluster, stop, faults) =
            (Arc::clone(&cluster), Arc::clone(&stop), Arc::clone(&faults));
        let seed = options.seed;
        move || inject(&cluster, seed, start, &stop, &faults)
    });

    let mut rng = StdRng::seed_from_u64(options.seed ^ 0x005e_ed0f_10b5);
    let mut runs = Vec::new();
    let (mut queries, mut writes) = (0, 0);
    // A job that takes longer than the grace period has hung: these take seconds.
    let hang_after = Duration::from_secs(GRACE_PERIOD_S);
    while start.elapsed() < options.duration {
        let started = start.elapsed();
        let (name, outcome) = if rng.random_bool(0.25) {
            writes += 1;
            let dest = out.path().join(format!("write-{writes}"));
            let seed = rng.random::<u64>();
            let name = format!("write {writes}");
            let outcome = tokio::time::timeout(hang_after, write_job(&session, &dest, seed)).await;
            (name, outcome)
        } else {
            queries += 1;
            let n = rng.random_range(1..=22usize);
            let outcome =
                tokio::time::timeout(hang_after, query_job(&session, n, &answers[n - 1])).await;
            (format!("q{n:02}"), outcome)
        };
        let (verdict, detail) =
            outcome.unwrap_or((Verdict::Hung, format!("no end in {hang_after:?}")));
        let ended = start.elapsed();
        if verdict != Verdict::Correct {
            eprintln!(
                "chaos: {name} at {:.1} s: {verdict:?}: {detail}",
                started.as_secs_f64()
            );
        }
        runs.push(JobRun {
            name,
            started,
            ended,
            verdict,
            detail,
        });
    }
    stop.store(true, Ordering::Relaxed);
    let _ = injector.join();
    // Every fault is healed now; a last query shows that the cluster answers after the
    // last of them (a fault injected near the end has no later job otherwise).
    for attempt in 0..3 {
        let started = start.elapsed();
        let (verdict, detail) =
            tokio::time::timeout(hang_after, query_job(&session, 1, &answers[0]))
                .await
                .unwrap_or((Verdict::Hung, format!("no end in {hang_after:?}")));
        queries += 1;
        let correct = verdict == Verdict::Correct;
        runs.push(JobRun {
            name: format!("q01 after the run ({})", attempt + 1),
            started,
            ended: start.elapsed(),
            verdict,
            detail,
        });
        if correct {
            break;
        }
    }
    let faults = faults.lock().map(|f| f.clone()).unwrap_or_default();
    let elapsed = start.elapsed();
    Ok(summarize(
        options.seed,
        &runs,
        &faults,
        queries,
        writes,
        elapsed,
    ))
}

fn summarize(
    seed: u64,
    runs: &[JobRun],
    faults: &[Fault],
    queries: usize,
    writes: usize,
    elapsed: Duration,
) -> ChaosSummary {
    let mut verdicts = BTreeMap::new();
    for run in runs {
        *verdicts.entry(run.verdict).or_insert(0) += 1;
    }
    let mut by_kind = BTreeMap::new();
    for fault in faults {
        *by_kind.entry(fault.kind).or_insert(0) += 1;
    }
    // A fault is recovered from when a job that started after it ends correctly; the
    // time from the fault to that end is its recovery time.
    let (mut recoveries, mut longest) = (0, Duration::ZERO);
    for fault in faults {
        if let Some(first) = runs
            .iter()
            .filter(|r| r.verdict == Verdict::Correct && r.started >= fault.at)
            .map(|r| r.ended)
            .min()
        {
            recoveries += 1;
            longest = longest.max(first - fault.at);
        }
    }
    let problems = runs
        .iter()
        .filter(|r| r.verdict != Verdict::Correct)
        .map(|r| {
            let near: Vec<&str> = faults
                .iter()
                .filter(|f| f.at + Duration::from_secs(10) >= r.started && f.at <= r.ended)
                .map(|f| f.what.as_str())
                .collect();
            format!(
                "{} ({:.1}-{:.1} s): {:?}: {} [faults: {}]",
                r.name,
                r.started.as_secs_f64(),
                r.ended.as_secs_f64(),
                r.verdict,
                r.detail,
                near.join("; ")
            )
        })
        .collect();
    ChaosSummary {
        seed,
        verdicts,
        queries,
        writes,
        faults: by_kind,
        recoveries,
        fault_count: faults.len(),
        longest_recovery: longest,
        problems,
        elapsed,
    }
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs TPC-H query `n` and checks it against `expected`.
async fn query_job(session: &Session, n: usize, expected: &[Vec<String>]) -> (Verdict, String) {
    match session.sql(&tpch_query(n)).await {
        Ok(result) => {
            let got = rows(&result.batches);
            if rows_match(&got, expected) {
                (Verdict::Correct, String::new())
            } else {
                (
                    Verdict::Wrong,
                    format!("{} rows vs {} expected", got.len(), expected.len()),
                )
            }
        }
        Err(e) => (Verdict::Failed, e.to_string()),
    }
}

/// Writes [`WRITE_ROWS`] rows `(key, value)` with distinct values (shuffled by `seed`)
/// as Parquet under `dest`, then reads the folder back: each value exactly once.
async fn write_job(session: &Session, dest: &Path, seed: u64) -> (Verdict, String) {
    let offset = i64::try_from(seed % 1_000_000).unwrap_or(0);
    let batches: Vec<RecordBatch> = (0..WRITE_ROWS)
        .step_by(1000)
        .map(|start| {
            let end = (start + 1000).min(WRITE_ROWS);
            RecordBatch::try_new(
                key_value_schema(),
                vec![
                    Arc::new(Int64Array::from_iter_values((start..end).map(|i| i % 97))),
                    Arc::new(Int64Array::from_iter_values(
                        (start..end).map(|i| i + offset),
                    )),
                ],
            )
            .expect("a valid batch")
        })
        .collect();
    let path = dest.to_string_lossy().to_string();
    let written = match session.from_batches(batches) {
        Ok(ds) => match ds.repartition(6) {
            Ok(ds) => ds.write_parquet(&path).await.map(|_| ()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        // A failed write leaves nothing where readers look.
        let leftovers = data_files(dest);
        return if leftovers.is_empty() {
            (Verdict::Failed, e.to_string())
        } else {
            (Verdict::Partial, format!("{e}; files left: {leftovers:?}"))
        };
    }
    if !dest.join("_SUCCESS").exists() {
        return (Verdict::Wrong, "no _SUCCESS marker".into());
    }
    let check = async {
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_parquet("written", &path, Default::default())
            .await?;
        let batches = ctx
            .sql("SELECT count(*), count(DISTINCT value), sum(value) FROM written")
            .await?
            .collect()
            .await?;
        Ok::<_, datafusion::error::DataFusionError>(rows(&batches))
    };
    let expected_sum: i64 = (0..WRITE_ROWS).map(|i| i + offset).sum();
    let expected = vec![vec![
        WRITE_ROWS.to_string(),
        WRITE_ROWS.to_string(),
        expected_sum.to_string(),
    ]];
    match check.await {
        Ok(got) if got == expected => (Verdict::Correct, String::new()),
        Ok(got) => (
            Verdict::Wrong,
            format!("read back {got:?}, expected {expected:?} (rows, distinct, sum)"),
        ),
        Err(e) => (Verdict::Wrong, format!("reading the output back: {e}")),
    }
}

/// The data files under `dir` (not markers or hidden staging entries).
fn data_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| !n.starts_with('_') && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// The fault thread: one fault at a time, held for a random while, then healed, until
/// `stop`; each recorded in `faults`.
fn inject(
    cluster: &Mutex<HostCluster>,
    seed: u64,
    start: Instant,
    stop: &AtomicBool,
    faults: &Mutex<Vec<Fault>>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let sleep = |stop: &AtomicBool, d: Duration| {
        let until = Instant::now() + d;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Let the first jobs run undisturbed.
    sleep(stop, Duration::from_secs(3));
    while !stop.load(Ordering::Relaxed) {
        let kind = FaultKind::ALL[rng.random_range(0..FaultKind::ALL.len())];
        let hold = Duration::from_millis(rng.random_range(1_000..6_000));
        let Ok(mut guard) = cluster.lock() else {
            return;
        };
        let hosts = guard.hosts().count();
        // Executor hosts are 2..=hosts.
        let host = rng.random_range(2..=hosts);
        let other = {
            let pick = rng.random_range(2..hosts);
            if pick >= host { pick + 1 } else { pick }
        };
        let at = start.elapsed();
        let what = match kind {
            FaultKind::Kill => format!("killed the executor of host {host} for {hold:?}"),
            FaultKind::Pause => format!("paused the executor of host {host} for {hold:?}"),
            FaultKind::CutHost => format!("cut host {host}'s link for {hold:?}"),
            FaultKind::CutScheduler => format!("cut the scheduler from host {host} for {hold:?}"),
            FaultKind::CutPeers => format!("cut hosts {host} and {other} apart for {hold:?}"),
        };
        eprintln!("chaos: {:.1} s: {what}", at.as_secs_f64());
        // The newest executor process of the host.
        let current = guard.executors.iter().rposition(|e| e.host == host);
        let applied = match (kind, current) {
            (FaultKind::Kill, Some(index)) => {
                guard.executors[index].signal("KILL");
                Ok(())
            }
            (FaultKind::Pause, Some(index)) => {
                guard.executors[index].signal("STOP");
                Ok(())
            }
            (FaultKind::Kill | FaultKind::Pause, None) => Err("no executor on that host".into()),
            (FaultKind::CutHost, _) => guard.hosts().cut(host),
            (FaultKind::CutScheduler, _) => guard.hosts().cut_between(1, host),
            (FaultKind::CutPeers, _) => guard.hosts().cut_between(host, other),
        };
        drop(guard);
        if let Err(e) = applied {
            eprintln!("chaos: the fault was not applied: {e}");
            sleep(stop, Duration::from_secs(1));
            continue;
        }
        if let Ok(mut list) = faults.lock() {
            list.push(Fault { kind, at, what });
        }
        // Held even when the run is stopping: what was broken is healed before the end.
        std::thread::sleep(hold);
        let Ok(mut guard) = cluster.lock() else {
            return;
        };
        let healed = match (kind, current) {
            (FaultKind::Kill, _) => guard.start_executor(host).map(|_| ()),
            (FaultKind::Pause, Some(index)) => {
                guard.executors[index].signal("CONT");
                Ok(())
            }
            (FaultKind::Pause, None) => Ok(()),
            (FaultKind::CutHost, _) => guard.hosts().restore(host),
            (FaultKind::CutScheduler, _) => guard.hosts().restore_between(1, host),
            (FaultKind::CutPeers, _) => guard.hosts().restore_between(host, other),
        };
        drop(guard);
        if let Err(e) = healed {
            eprintln!("chaos: healing failed: {e}");
        }
        sleep(stop, Duration::from_millis(rng.random_range(1_000..4_000)));
    }
}
