//! `ember-bench durable`: what keeping jobs' state costs, and how fast a job is taken
//! over. The TPC-H queries run on three process clusters side by side, alternating per
//! query: no state store, `--state DIR` (a local folder), and `--ha etcd://` (a real etcd
//! started from `--etcd`, one scheduler leading); every result is checked against the
//! cluster without a store. Then, on the folder cluster, the scheduler is SIGKILLed in the
//! middle of q18 and restarted on its folder: the time from the kill to the restarted
//! scheduler listening, to the first task of the resumed job, and to the answer.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use ember::pipelines::register_tpch;
use ember::scheduler::{JobEvent, JobListener};

use crate::cluster::ProcessCluster;
use crate::peers::{median_after_warmup, rows_agree};
use crate::tpch::{TpchBench, text_rows};

/// Options of `ember-bench durable`.
#[derive(Args, Clone)]
pub struct DurableBench {
    #[command(flatten)]
    pub tpch: TpchBench,
    /// The etcd binary (Debian's `etcd-server`); without one, the etcd column is left out.
    #[arg(long, default_value = "etcd")]
    pub etcd: PathBuf,
}

/// An etcd on loopback ports with a temporary data folder, killed when dropped.
struct Etcd {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_etcd(bin: &PathBuf) -> anyhow::Result<Etcd> {
    let dir = tempfile::Builder::new()
        .prefix("ember-bench-etcd-")
        .tempdir()?;
    let (client, peer) = (free_port()?, free_port()?);
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = dir.path().join("etcd.log");
    let child = Command::new(bin)
        .args(["--name", "bench", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("bench={peer_url}")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let etcd = Etcd {
        child,
        address: format!("127.0.0.1:{client}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)?.contains("ready to serve client requests") {
        if Instant::now() > deadline {
            bail!("etcd did not start within 30 s: see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(etcd)
}

/// Notes when the stages of the session's jobs finish.
struct StageClock(Arc<Mutex<Vec<Instant>>>);

impl JobListener for StageClock {
    fn on_event(&self, event: &JobEvent) {
        if matches!(event, JobEvent::StageFinished { .. })
            && let Ok(mut finished) = self.0.lock()
        {
            finished.push(Instant::now());
        }
    }
}

/// Runs `ember-bench durable`.
pub async fn run(bench: &DurableBench) -> anyhow::Result<()> {
    let dir = bench.tpch.ensure_data()?;
    let config = bench.tpch.config()?;
    let bin = crate::cluster::ember_bin(bench.tpch.ember_bin.as_ref())?;
    let executors = bench.tpch.executors;
    let state = tempfile::Builder::new()
        .prefix("ember-bench-state-")
        .tempdir()?;
    let state_arg = state.path().display().to_string();
    let etcd = match start_etcd(&bench.etcd) {
        Ok(etcd) => Some(etcd),
        Err(e) => {
            eprintln!("no etcd column: {e}");
            None
        }
    };
    let mut clusters: Vec<(String, ProcessCluster)> = vec![
        ("no store".into(), ProcessCluster::start(&bin, &config)?),
        (
            "--state DIR".into(),
            ProcessCluster::start_with(&bin, &config, &["--state", &state_arg], &[])?,
        ),
    ];
    if let Some(etcd) = &etcd {
        let url = format!("etcd://{}/bench", etcd.address);
        clusters.push((
            "--ha etcd".into(),
            ProcessCluster::start_with(&bin, &config, &["--ha", &url], &[])?,
        ));
    }
    let mut sessions = Vec::new();
    for (_, cluster) in &clusters {
        let session = cluster.session(config.clone()).await?;
        register_tpch(&session, &dir).await?;
        sessions.push(session);
    }
    let numbers: Vec<usize> = match bench.tpch.only.is_empty() {
        true => (1..=22).collect(),
        false => bench.tpch.only.clone(),
    };
    let iterations = bench.tpch.iterations;
    println!(
        "TPC-H sf {} on process clusters of {executors} executors of one slot, median of \
         {iterations} runs after a warm-up, clusters alternating per query, results checked \
         against the cluster without a store",
        bench.tpch.scale_factor
    );
    println!();
    let mut header = String::from("| query |");
    for (name, _) in &clusters {
        header.push_str(&format!(" {name} (ms) |"));
    }
    for (name, _) in clusters.iter().skip(1) {
        header.push_str(&format!(" {name} / no store |"));
    }
    println!("{header}");
    println!("|---|{}", "---:|".repeat(clusters.len() * 2 - 1));
    let mut totals = vec![0.0; clusters.len()];
    for n in &numbers {
        let path = bench.tpch.queries.join(format!("q{n:02}.sql"));
        let sql = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); clusters.len()];
        for _ in 0..=iterations {
            let mut expected: Option<Vec<Vec<String>>> = None;
            for (i, session) in sessions.iter().enumerate() {
                let started = Instant::now();
                let result = session.sql(&sql).await?;
                times[i].push(started.elapsed().as_secs_f64() * 1e3);
                let rows = text_rows(&result.batches)?;
                match &expected {
                    None => expected = Some(rows),
                    Some(expected) if !rows_agree(expected, &rows) => {
                        bail!(
                            "q{n:02} on {} differs from the cluster without a store",
                            clusters[i].0
                        )
                    }
                    Some(_) => {}
                }
            }
        }
        let medians: Vec<f64> = times
            .iter()
            .map(|t| median_after_warmup(t).unwrap_or(f64::NAN))
            .collect();
        let mut row = format!("| q{n:02} |");
        for (i, m) in medians.iter().enumerate() {
            totals[i] += m;
            row.push_str(&format!(" {m:.1} |"));
        }
        for m in medians.iter().skip(1) {
            row.push_str(&format!(" {:.3} |", m / medians[0]));
        }
        println!("{row}");
    }
    let mut row = String::from("| total |");
    for t in &totals {
        row.push_str(&format!(" {t:.1} |"));
    }
    for t in totals.iter().skip(1) {
        row.push_str(&format!(" {:.3} |", t / totals[0]));
    }
    println!("{row}");
    drop(sessions);

    // Time to recover: the folder cluster's scheduler killed in the middle of q18.
    let (_, cluster) = &mut clusters[1];
    let events = tempfile::Builder::new()
        .prefix("ember-bench-events-")
        .tempdir()?;
    let finished: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let mut session = cluster.session(config.clone()).await?;
    register_tpch(&session, &dir).await?;
    session.set_listener(Arc::new(StageClock(Arc::clone(&finished))));
    let sql = std::fs::read_to_string(bench.tpch.queries.join("q18.sql"))?;
    let started = Instant::now();
    let query = tokio::spawn(async move { session.sql(&sql).await.map(|r| r.batches.len()) });
    while finished.lock().map(|f| f.len()).unwrap_or(0) < 2 {
        if query.is_finished() || started.elapsed() > Duration::from_secs(300) {
            bail!("q18 ended before two of its stages had finished");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let killed = Instant::now();
    let listening =
        cluster.restart_scheduler(&["--event-log".into(), events.path().display().to_string()])?;
    query.await??;
    let answered = killed.elapsed();
    let log = std::fs::read_dir(events.path())?
        .flatten()
        .next()
        .context("the restarted scheduler wrote an event log")?;
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(log.path())?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let at = |from: usize, kind: &str| {
        lines
            .iter()
            .skip(from)
            .position(|l| l["event"]["event"] == kind)
            .map(|i| i + from)
    };
    let recovered = at(0, "recovered").context("a recovered event")?;
    let first_task = at(recovered, "task_started").context("a task after the take-over")?;
    let gap = lines[first_task]["at_us"].as_u64().unwrap_or(0)
        - lines[recovered]["at_us"].as_u64().unwrap_or(0);
    let rerun = lines[recovered..]
        .iter()
        .filter(|l| l["event"]["event"] == "task_started")
        .count();
    println!();
    println!(
        "Recovery (--state DIR, q18, scheduler SIGKILLed after 2 stages had finished): restarted \
         scheduler listening {:.0} ms after the kill; first task of the resumed job {:.0} ms after \
         the kill; answer {:.0} ms after the kill; {rerun} tasks ran after the take-over",
        listening.as_secs_f64() * 1e3,
        (listening + Duration::from_micros(gap)).as_secs_f64() * 1e3,
        answered.as_secs_f64() * 1e3
    );
    Ok(())
}
