//! Ember's peers in the suite, each a long-lived process driven one request at a time over
//! stdin/stdout (JSON lines): DuckDB, Polars and Spark (local mode) in
//! `bench/python/peers.py`, Ballista standalone in `bench/ballista` (`ballista-peer`); and
//! the check of their rows against DataFusion's or Ember's.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// One peer engine's process.
pub struct Peer {
    /// `duckdb`, `polars`, `spark` or `ballista`.
    pub name: String,
    /// The engine's version.
    pub version: String,
    /// Time to start the engine and register the tables (Spark's session start-up).
    pub startup_ms: f64,
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

/// Where the peers' programs are.
pub struct PeerLaunch {
    /// The Python with the peers installed (`bench/python/requirements.txt`).
    pub python: PathBuf,
    /// `bench/python/peers.py`.
    pub script: PathBuf,
    /// The `ballista-peer` binary (`bench/ballista`).
    pub ballista: PathBuf,
}

/// What a peer did with one query.
pub enum PeerRun {
    /// Times of every run (the first is the warm-up) and the rows of the last, as text.
    Done {
        times_ms: Vec<f64>,
        rows: Vec<Vec<String>>,
    },
    /// The engine refused or failed the query.
    Failed(String),
}

impl Peer {
    /// Starts `engine` (`duckdb`, `polars` or `spark`: `script` under `python`;
    /// `ballista`: the `ballista` binary) over the TPC-H folders of `data` with `threads`
    /// threads (executors of one slot, for Ballista).
    pub fn start(
        launch: &PeerLaunch,
        engine: &str,
        data: &Path,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let mut command = match engine {
            "ballista" => Command::new(&launch.ballista),
            _ => {
                let mut python = Command::new(&launch.python);
                python.arg(&launch.script);
                python
            }
        };
        command
            .args(["--engine", engine, "--threads", &threads.to_string()])
            .arg("--data")
            .arg(data)
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {engine}: {program}"))?;
        let input = child.stdin.take().context("the peer's stdin")?;
        let output = BufReader::new(child.stdout.take().context("the peer's stdout")?);
        let mut peer = Self {
            name: engine.to_string(),
            version: String::new(),
            startup_ms: 0.0,
            child,
            input,
            output,
        };
        let ready = peer.reply().with_context(|| {
            format!("{engine} did not start ({program}; `bench/run` installs the peers)")
        })?;
        peer.version = ready["version"].as_str().unwrap_or("?").to_string();
        peer.startup_ms = ready["startup_ms"].as_f64().unwrap_or(0.0);
        Ok(peer)
    }

    fn reply(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        if self.output.read_line(&mut line)? == 0 {
            bail!("{} exited", self.name);
        }
        serde_json::from_str(&line).with_context(|| format!("{}: {line}", self.name))
    }

    fn send(&mut self, request: &Value) -> anyhow::Result<Value> {
        writeln!(self.input, "{request}")?;
        self.input.flush()?;
        self.reply()
    }

    /// Runs `sql` `runs` times.
    pub fn run(&mut self, query: &str, sql: &str, runs: usize) -> anyhow::Result<PeerRun> {
        let reply = self.send(&json!({"query": query, "sql": sql, "runs": runs}))?;
        if let Some(error) = reply["error"].as_str() {
            return Ok(PeerRun::Failed(error.to_string()));
        }
        Ok(PeerRun::Done {
            times_ms: times(&reply)?,
            rows: json_rows(&reply["rows"]).context("rows")?,
        })
    }

    /// Runs the pipeline `name` (`product-prices`) over `data` `runs` times; its tables
    /// are those of the last run.
    pub fn pipeline(
        &mut self,
        name: &str,
        data: &Path,
        runs: usize,
    ) -> anyhow::Result<PipelineRun> {
        let reply = self.send(&json!({"pipeline": name, "data": data, "runs": runs}))?;
        if let Some(error) = reply["error"].as_str() {
            return Ok(PipelineRun::Failed(error.to_string()));
        }
        let tables = reply["tables"]
            .as_object()
            .context("tables")?
            .iter()
            .map(|(name, rows)| Ok((name.clone(), json_rows(rows).context("table rows")?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(PipelineRun::Done {
            times_ms: times(&reply)?,
            tables,
        })
    }

    /// The peak resident memory of the engine's processes, in MiB.
    pub fn peak_rss_mb(&mut self) -> anyhow::Result<f64> {
        let reply = self.send(&json!({"peak_rss": true}))?;
        reply["peak_rss_mb"].as_f64().context("peak_rss_mb")
    }
}

/// What a peer did with one pipeline.
pub enum PipelineRun {
    /// Times of every run (the first is the warm-up) and the tables of the last, by name.
    Done {
        times_ms: Vec<f64>,
        tables: std::collections::BTreeMap<String, Vec<Vec<String>>>,
    },
    /// The engine failed.
    Failed(String),
}

fn times(reply: &Value) -> anyhow::Result<Vec<f64>> {
    Ok(reply["times_ms"]
        .as_array()
        .context("times_ms")?
        .iter()
        .filter_map(Value::as_f64)
        .collect())
}

/// Rows sent as JSON arrays of strings (a non-string cell reads as "").
pub fn json_rows(rows: &Value) -> Option<Vec<Vec<String>>> {
    let rows = rows.as_array()?;
    Some(
        rows.iter()
            .map(|row| {
                row.as_array()
                    .map(|cells| {
                        cells
                            .iter()
                            .map(|c| c.as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect(),
    )
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether two cells say the same: equal text, or numbers within a relative 1e-6 or one
/// unit in the last place of the less precise of them (engines print decimals and floats
/// differently: DataFusion's `avg` of a decimal is `0.050144`, truncated to 6 places,
/// Spark's `0.050145`, rounded, DuckDB's the float `0.05014459706340077`).
fn same_cell(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    // Integers (counts, keys) must be equal; the tolerance is for decimals and floats.
    if let (Ok(x), Ok(y)) = (a.parse::<i64>(), b.parse::<i64>()) {
        return x == y;
    }
    // Decimal places of a plain decimal (`-12.345`); none for other forms (`1e-8`).
    let places = |s: &str| {
        let (whole, frac) = s.split_once('.')?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit());
        (digits(whole.trim_start_matches('-')) && digits(frac)).then_some(frac.len())
    };
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => {
            let relative = 1e-6 * x.abs().max(y.abs());
            // One unit in the last place of the less precise, when both print decimals.
            let last_place = match (places(a), places(b)) {
                (Some(p), Some(q)) => 10f64.powi(-(p.min(q) as i32)) * 1.000_001,
                _ => 0.0,
            };
            (x - y).abs() <= relative.max(last_place)
        }
        _ => a.trim() == b.trim(),
    }
}

fn same_rows(a: &[Vec<String>], b: &[Vec<String>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_cell(p, q)))
}

/// Whether `got` holds DataFusion's rows `expected`: in the same order, or (for ties in
/// the order, or queries without one) as the same multiset.
pub fn rows_agree(expected: &[Vec<String>], got: &[Vec<String>]) -> bool {
    if same_rows(expected, got) {
        return true;
    }
    let (mut a, mut b) = (expected.to_vec(), got.to_vec());
    a.sort();
    b.sort();
    same_rows(&a, &b)
}

/// The median of `times` (after dropping the warm-up), in milliseconds.
pub fn median_after_warmup(times: &[f64]) -> Option<f64> {
    let mut timed: Vec<f64> = times.iter().skip(1).copied().collect();
    if timed.is_empty() {
        return None;
    }
    timed.sort_by(f64::total_cmp);
    let mid = timed.len() / 2;
    Some(if timed.len() % 2 == 1 {
        timed[mid]
    } else {
        (timed[mid - 1] + timed[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &[&[&str]]) -> Vec<Vec<String>> {
        text.iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn rows_agree_across_number_formats_and_tie_orders() {
        let df = rows(&[&["A", "0.050144", "10"], &["B", "1.5", "3"]]);
        let peer = rows(&[&["B", "1.50", "3"], &["A", "0.05014459706340077", "10"]]);
        assert!(rows_agree(&df, &peer));
        let rounded = rows(&[&["A", "0.050145", "10"], &["B", "1.5", "3"]]);
        assert!(rows_agree(&df, &rounded));
        let wrong = rows(&[&["A", "0.050147", "10"], &["B", "1.5", "3"]]);
        assert!(!rows_agree(&df, &wrong));
        assert!(!rows_agree(&df, &df[..1]));
        let count_off_by_one = rows(&[&["A", "0.050144", "11"], &["B", "1.5", "3"]]);
        assert!(!rows_agree(&df, &count_off_by_one));
        let integer_against_decimal = rows(&[&["A", "0.050144", "10.9"], &["B", "1.5", "3"]]);
        assert!(!rows_agree(&df, &integer_against_decimal));
        assert_eq!(median_after_warmup(&[100.0, 3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median_after_warmup(&[100.0, 4.0, 2.0]), Some(3.0));
        assert_eq!(median_after_warmup(&[100.0]), None);
    }
}
