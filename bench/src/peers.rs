//! The TPC-H peers that are not Rust libraries: DuckDB, Polars and Spark (local mode), each
//! a long-lived `bench/python/tpch_peers.py` process driven one query at a time over
//! stdin/stdout, and the check of their rows against DataFusion's.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// One peer engine's process.
pub struct Peer {
    /// `duckdb`, `polars` or `spark`.
    pub name: String,
    /// The engine's version.
    pub version: String,
    /// Time to start the engine and register the tables (Spark's session start-up).
    pub startup_ms: f64,
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
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
    /// Starts `engine` over the TPC-H folders of `data` with `threads` threads.
    pub fn start(
        python: &Path,
        script: &Path,
        engine: &str,
        data: &Path,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(python)
            .arg(script)
            .args(["--engine", engine, "--threads", &threads.to_string()])
            .arg("--data")
            .arg(data)
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} {}", python.display(), script.display()))?;
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
            format!(
                "{engine} did not start (pip install -r bench/python/requirements.txt into \
                 {})",
                python.display()
            )
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
        let times_ms = reply["times_ms"]
            .as_array()
            .context("times_ms")?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        let rows = reply["rows"]
            .as_array()
            .context("rows")?
            .iter()
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
            .collect();
        Ok(PeerRun::Done { times_ms, rows })
    }

    /// The peak resident memory of the engine's processes, in MiB.
    pub fn peak_rss_mb(&mut self) -> anyhow::Result<f64> {
        let reply = self.send(&json!({"peak_rss": true}))?;
        reply["peak_rss_mb"].as_f64().context("peak_rss_mb")
    }
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
    let places = |s: &str| s.split_once('.').map_or(0, |(_, frac)| frac.len());
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => {
            let last_place = 10f64.powi(-(places(a).min(places(b)) as i32));
            let relative = 1e-6 * x.abs().max(y.abs());
            (x - y).abs() <= relative.max(last_place * 1.000_001)
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
        assert_eq!(median_after_warmup(&[100.0, 3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median_after_warmup(&[100.0, 4.0, 2.0]), Some(3.0));
        assert_eq!(median_after_warmup(&[100.0]), None);
    }
}
