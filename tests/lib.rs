//! Shared helpers of Ember's integration tests: small TPC-H data made once per test run,
//! table registration, and comparison of results as text rows.

pub mod chaos;
pub mod etcd;
pub mod host_cluster;
pub mod hosts;
pub mod kafka;
pub mod postgres;
pub mod shuffle_bench;
pub mod watched;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use ember::datasets::{TpchOptions, generate_tpch, tpch_is_complete, tpch_tables};
use ember::pipelines::register_tpch;
use ember::{EmberConfig, Session};

/// Scale factor of the TPC-H data the tests use.
pub const TEST_SCALE_FACTOR: f64 = 0.01;

/// TPC-H data at [`TEST_SCALE_FACTOR`] in two files per table, made on first use and kept
/// in the system temp dir across runs.
pub fn tpch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| tpch_data(TEST_SCALE_FACTOR))
}

/// TPC-H data at `scale_factor` in two files per table, made on first use and kept in the
/// system temp dir across runs.
pub fn tpch_data(scale_factor: f64) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("ember-test-data")
        .join(format!("tpch-sf{scale_factor}"));
    if !tpch_is_complete(&dir) {
        generate_tpch(&TpchOptions::new(scale_factor, &dir).with_parts(2))
            .expect("TPC-H test data can be generated");
    }
    dir
}

/// A session on an embedded cluster set up by `config`, with the TPC-H test tables.
pub async fn tpch_session(config: EmberConfig) -> Session {
    let session = Session::new(config).expect("the cluster starts");
    register_tpch(&session, tpch_dir())
        .await
        .expect("the TPC-H tables register");
    session
}

/// The text of TPC-H query `n` (1..=22) as shipped in `datasets/tpch/queries`.
pub fn tpch_query(n: usize) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/tpch/queries")
        .join(format!("q{n:02}.sql"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Rows of `sql` run by DataFusion alone (2 target partitions) on the test tables.
pub async fn datafusion_rows(sql: &str) -> Vec<Vec<String>> {
    datafusion_rows_in(tpch_dir(), sql).await
}

/// Rows of `sql` run by DataFusion alone (2 target partitions) on the TPC-H tables of `dir`.
pub async fn datafusion_rows_in(dir: &Path, sql: &str) -> Vec<Vec<String>> {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    for table in tpch_tables() {
        let path = dir.join(table);
        ctx.register_parquet(
            *table,
            path.to_string_lossy().as_ref(),
            ParquetReadOptions::default(),
        )
        .await
        .expect("register");
    }
    datafusion_rows_on(&ctx, sql).await
}

/// Rows of `sql` run by DataFusion alone on `ctx`.
pub async fn datafusion_rows_on(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let batches = ctx
        .sql(sql)
        .await
        .expect("DataFusion plans the query")
        .collect()
        .await
        .expect("DataFusion runs the query");
    rows(&batches)
}

/// Rows of `batches` as lists of display strings.
pub fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formattable column"))
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    out
}

/// Whether two cells agree: equal text, or numbers within a relative 1e-9.
pub fn cells_match(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

/// Whether two row lists agree cell by cell, in order.
pub fn rows_match(a: &[Vec<String>], b: &[Vec<String>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| cells_match(p, q)))
}

/// Runs the 22 TPC-H queries on `session` and compares each with DataFusion alone: one
/// line per query that failed or differs, and the metrics of those that ran.
pub async fn run_tpch_against_datafusion(
    session: &Session,
) -> (Vec<String>, Vec<ember::scheduler::JobMetrics>) {
    run_tpch_against_datafusion_in(session, tpch_dir()).await
}

/// [`run_tpch_against_datafusion`] on a session whose TPC-H tables are those of `dir`.
pub async fn run_tpch_against_datafusion_in(
    session: &Session,
    dir: &Path,
) -> (Vec<String>, Vec<ember::scheduler::JobMetrics>) {
    let mut failures = Vec::new();
    let mut metrics = Vec::new();
    for n in 1..=22 {
        let sql = tpch_query(n);
        let expected = datafusion_rows_in(dir, &sql).await;
        match session.sql(&sql).await {
            Ok(result) => {
                let got = rows(&result.batches);
                if !rows_match(&got, &expected) {
                    failures.push(format!(
                        "q{n:02}: {} rows vs DataFusion's {}\n  ember: {:?}\n  df:    {:?}",
                        got.len(),
                        expected.len(),
                        got.iter().take(3).collect::<Vec<_>>(),
                        expected.iter().take(3).collect::<Vec<_>>()
                    ));
                }
                match result.metrics {
                    Some(m) => metrics.push(m),
                    None => failures.push(format!("q{n:02}: ran no job")),
                }
            }
            Err(e) => failures.push(format!("q{n:02}: {e}")),
        }
    }
    (failures, metrics)
}

/// Milliseconds the `cluster_test.slow` function sleeps per batch.
pub const SLOW_BATCH_MILLIS: u64 = 150;

/// The schema of the rows the cluster tests push through `cluster_test.slow`.
pub fn key_value_schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    std::sync::Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("value", DataType::Int64, false),
    ]))
}

/// Milliseconds the `cluster_test.stall` function holds its thread per batch: longer than
/// an HTTP/2 keep-alive interval and timeout together, as a CPU-bound task may.
pub const STALL_BATCH_MILLIS: u64 = 20_000;

/// Registers in `functions` those of the cluster tests: `cluster_test.slow` passes
/// `(key, value)` batches through unchanged after [`SLOW_BATCH_MILLIS`],
/// `cluster_test.stall` after [`STALL_BATCH_MILLIS`] (both block their thread, as
/// CPU-bound work does). The test sessions plan with them ([`cluster_functions`]), the
/// `ember-node` executors run them.
pub fn register_cluster_functions(functions: &ember::FunctionRegistry) {
    functions.register_batch_fn("cluster_test.slow", key_value_schema(), |batch| {
        std::thread::sleep(std::time::Duration::from_millis(SLOW_BATCH_MILLIS));
        Ok(batch)
    });
    functions.register_batch_fn("cluster_test.slow_counted", key_value_schema(), |batch| {
        ember::LongAccumulator::named("cluster_test.rows").add(batch.num_rows() as i64);
        std::thread::sleep(std::time::Duration::from_millis(SLOW_BATCH_MILLIS));
        Ok(batch)
    });
    functions.register_batch_fn("cluster_test.stall", key_value_schema(), |batch| {
        std::thread::sleep(std::time::Duration::from_millis(STALL_BATCH_MILLIS));
        Ok(batch)
    });
}

/// A registry of the built-in functions and the cluster tests' ones
/// ([`register_cluster_functions`]), for the sessions that drive `ember-node` clusters.
pub fn cluster_functions() -> ember::FunctionRegistry {
    let functions = ember::builtin_functions();
    register_cluster_functions(&functions);
    functions
}

/// Runs `script` with `python` (`python -c SCRIPT ARGS...`); what it printed, trimmed.
/// Fails the test with Python's stderr when the script fails.
pub fn python_output(python: &Path, script: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The rows of `sql` run in `session`, one line per row with `|` between values.
pub async fn sql_lines(session: &ember::Session, sql: &str) -> Vec<String> {
    let result = session.sql(sql).await.expect("query runs");
    rows(&result.batches)
        .into_iter()
        .map(|r| r.join("|"))
        .collect()
}

/// Where the tests find a Python with `moto[server]`: `EMBER_MOTO_PYTHON`, or a virtual
/// environment under `~/.cache/ember-moto-venv` (`EMBER_MOTO_VENV` moves it), made (with
/// `pip install moto[server]` from PyPI) on first use. Making it holds a lock file beside
/// it, so test binaries and threads that need it at once install it once, one after the
/// other, instead of writing the same folder together.
pub fn moto_python() -> PathBuf {
    if let Some(python) = std::env::var_os("EMBER_MOTO_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = match std::env::var_os("EMBER_MOTO_VENV") {
        Some(venv) => PathBuf::from(venv),
        None => std::env::var_os("HOME")
            .map_or_else(std::env::temp_dir, PathBuf::from)
            .join(".cache/ember-moto-venv"),
    };
    install_moto(&venv)
}

/// Makes the virtual environment `venv` with moto in it, unless it has it; its Python.
pub fn install_moto(venv: &Path) -> PathBuf {
    install_moto_using(venv, Path::new("python3"))
}

/// [`install_moto`], making the environment with the Python `python3`.
pub fn install_moto_using(venv: &Path, python3: &Path) -> PathBuf {
    install_venv_using(venv, python3, &["moto[server]"], "moto.server, boto3")
}

/// The Python of a virtual environment under `~/.cache/ember-NAME-venv` that has
/// `packages` from PyPI, made on first use (see [`install_venv_using`]); `imports` are
/// the modules that show they are installed (`"pyarrow, adbc_driver_flightsql"`).
pub fn python_venv(name: &str, packages: &[&str], imports: &str) -> PathBuf {
    let venv = std::env::var_os("HOME")
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join(format!(".cache/ember-{name}-venv"));
    install_venv_using(&venv, Path::new("python3"), packages, imports)
}

/// Makes the virtual environment `venv` with `python3` and `pip install`s `packages` in
/// it, unless `imports` already import there; its Python. Making it holds a lock file
/// beside it, so test binaries and threads that need it at once install it once, one
/// after the other, instead of writing the same folder together.
pub fn install_venv_using(
    venv: &Path,
    python3: &Path,
    packages: &[&str],
    imports: &str,
) -> PathBuf {
    let python = venv.join("bin/python");
    let installed = |python: &Path| {
        std::process::Command::new(python)
            .args(["-c", &format!("import {imports}")])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if installed(&python) {
        return python;
    }
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent).expect("the venv's parent folder can be made");
    }
    let _lock = hold_lock(&venv.with_extension("lock"));
    // Another process may have installed it while this one waited for the lock.
    if !installed(&python) {
        let made = std::process::Command::new(python3)
            .args(["-m", "venv", "--clear"])
            .arg(venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(made, "python3 -m venv {} failed", venv.display());
        let pip = std::process::Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet"])
            .args(packages)
            .status()
            .is_ok_and(|s| s.success());
        assert!(pip, "pip install {} failed", packages.join(" "));
    }
    python
}

/// What the moto process runs: the server, and a watch that ends it when the test process
/// that started it is gone (a shared server is never dropped).
const MOTO_SCRIPT: &str = "\
import os, sys, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
from moto.server import main
sys.argv = ['moto_server', '-H', sys.argv[2], '-p', sys.argv[1]]
main()
";

/// An S3-compatible server (moto) on a loopback port, killed when dropped.
pub struct S3Server {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    python: PathBuf,
}

impl S3Server {
    /// The one server of this test run, started (and moto installed) on first use; tests
    /// that share it use buckets of their own.
    pub fn shared() -> &'static S3Server {
        static SERVER: OnceLock<S3Server> = OnceLock::new();
        SERVER.get_or_init(|| S3Server::start_with(moto_python()))
    }

    /// Starts moto (installing it first if needed) and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(moto_python())
    }

    /// Starts moto with `python` and waits until it answers.
    pub fn start_with(python: PathBuf) -> Self {
        Self::start_at(python, "127.0.0.1")
    }

    /// Starts moto with `python` on `address` (of this process's namespace: loopback, or
    /// the client address of a set of [`hosts::Hosts`]) and waits until it answers.
    pub fn start_at(python: PathBuf, address: &str) -> Self {
        let port = std::net::TcpListener::bind((address, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new(&python)
            .args(["-c", MOTO_SCRIPT, &port.to_string(), address])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto starts");
        let server = Self {
            child,
            endpoint: format!("http://{address}:{port}"),
            python,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect((address, port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "moto did not listen on {port} within 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        server
    }

    /// Creates bucket `name`.
    pub fn create_bucket(&self, name: &str) {
        let script = format!(
            "import boto3; boto3.client('s3', endpoint_url='{}', aws_access_key_id='testing', \
             aws_secret_access_key='testing', region_name='us-east-1').create_bucket(Bucket='{name}')",
            self.endpoint
        );
        let status = std::process::Command::new(&self.python)
            .args(["-c", &script])
            .status()
            .expect("python runs");
        assert!(status.success(), "creating bucket {name} failed");
    }

    /// Uploads the local file `path` as `s3://bucket/key`.
    pub fn upload(&self, bucket: &str, key: &str, path: &Path) {
        let script = format!(
            "import boto3, sys; boto3.client('s3', endpoint_url='{}', aws_access_key_id='testing', \
             aws_secret_access_key='testing', region_name='us-east-1').upload_file(sys.argv[1], '{bucket}', '{key}')",
            self.endpoint
        );
        let status = std::process::Command::new(&self.python)
            .args(["-c", &script])
            .arg(path)
            .status()
            .expect("python runs");
        assert!(status.success(), "uploading {} failed", path.display());
    }

    /// `config` with the `ember.s3.*` options that reach this server.
    pub fn configure(&self, config: &mut EmberConfig) {
        for (key, value) in [
            ("endpoint", self.endpoint.as_str()),
            ("allow_http", "true"),
            ("region", "us-east-1"),
            ("access_key_id", "testing"),
            ("secret_access_key", "testing"),
        ] {
            config
                .set(&format!("ember.s3.{key}"), value)
                .expect("a known S3 option");
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes sure `tmux` is on the machine, installing Debian's package when it is not (see
/// [`ensure_debian_package`]); the shell tests drive `ember sql` in a tmux terminal.
pub fn ensure_tmux() {
    ensure_debian_package("tmux", "tmux", &["-V"]);
}

/// Makes sure `command` runs (`command PROBE_ARGS` exits 0), installing Debian's
/// `package` with `apt-get install -y --no-install-recommends` when it does not (after an
/// `apt-get update` if the first try fails). The install holds a lock file in the temp
/// dir, so tests and test binaries that need a package at the same moment install it
/// once, one after the other; apt-get itself waits for other users of dpkg.
pub fn ensure_debian_package(package: &str, command: &str, probe_args: &[&str]) {
    let present = || {
        std::process::Command::new(command)
            .args(probe_args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if present() {
        return;
    }
    let _lock = hold_lock(&std::env::temp_dir().join("ember-tests-apt.lock"));
    if present() {
        return;
    }
    let apt_get = |args: &[&str]| {
        std::process::Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let install = || apt_get(&["install", "-y", "--no-install-recommends", package]);
    let installed = install() || (apt_get(&["update"]) && install());
    assert!(
        installed && present(),
        "{command} is missing and apt-get install {package} failed"
    );
}

/// Debian's `chromium`, installed (once, see [`ensure_debian_package`]) when missing; the
/// tests open pictures and reports in it headless.
pub fn chromium() -> &'static Path {
    static CHROMIUM: OnceLock<PathBuf> = OnceLock::new();
    CHROMIUM.get_or_init(|| {
        ensure_debian_package("chromium", "chromium", &["--version"]);
        // The full path: chromedriver wants the browser's file, not a command name.
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("chromium"))
            .find(|path| path.is_file())
            .unwrap_or_else(|| PathBuf::from("chromium"))
    })
}

/// What headless Chromium saw when it opened a page.
#[derive(Debug)]
pub struct PageLoad {
    /// The page's console messages (uncaught exceptions among them, as
    /// `Uncaught Error: …`) and XML parse errors; Chromium's log does not tell a
    /// `console.log` from a `console.error`, so a page that should be quiet has none.
    pub errors: Vec<String>,
    /// The DOM after scripts ran, serialized.
    pub dom: String,
    /// A PNG screenshot of the window.
    pub screenshot: Vec<u8>,
}

/// Opens the local file `page` in headless [`chromium`] in a `width` x `height` window
/// (a fresh profile each time, so tests may run at once): its console messages, its DOM
/// and a screenshot. Panics if Chromium does not finish within 120 s.
pub fn open_in_chromium(page: &Path, width: u32, height: u32) -> PageLoad {
    open_in_chromium_at(page, "", width, height)
}

/// [`open_in_chromium`] with `fragment` (`#sort=…`, or empty) after the file's URL.
pub fn open_in_chromium_at(page: &Path, fragment: &str, width: u32, height: u32) -> PageLoad {
    let page = page
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", page.display()));
    let url = format!("file://{}{fragment}", page.display());
    let scratch = tempfile::tempdir().expect("a temp dir");
    let png = scratch.path().join("screenshot.png");
    let run = |mode: &str, profile: &str| {
        let profile = scratch.path().join(profile);
        let mut child = std::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
                &format!("--user-data-dir={}", profile.display()),
                &format!("--window-size={width},{height}"),
                mode,
                &url,
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("chromium starts");
        // Both pipes are drained while it runs: a DOM larger than a pipe's buffer would
        // otherwise block Chromium on its write, and the wait below would never end.
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for chromium") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium {mode} {url} did not finish within 120 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let output = std::process::Output {
            status,
            stdout: stdout.join().expect("chromium's output"),
            stderr: stderr.join().expect("chromium's errors"),
        };
        assert!(
            output.status.success(),
            "chromium {mode} {url} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };
    let dumped = run("--dump-dom", "dom-profile");
    let shot = run(
        &format!("--screenshot={}", png.display()),
        "screenshot-profile",
    );
    let dom = String::from_utf8_lossy(&dumped.stdout).into_owned();
    let mut errors: Vec<String> = [&dumped.stderr, &shot.stderr]
        .iter()
        .flat_map(|stderr| {
            String::from_utf8_lossy(stderr)
                .lines()
                .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
                .map(|l| l.split_once("] ").map_or(l, |(_, m)| m).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    // Both runs load the page, so each message shows twice.
    errors.dedup();
    errors.sort();
    errors.dedup();
    if let Some(at) = dom.find("<parsererror") {
        let end = dom[at..]
            .find("</parsererror>")
            .map_or(dom.len(), |e| at + e);
        errors.push(format!("XML parse error: {}", &dom[at..end]));
    }
    let screenshot =
        std::fs::read(&png).unwrap_or_else(|e| panic!("reading {}: {e}", png.display()));
    PageLoad {
        errors,
        dom,
        screenshot,
    }
}

/// The width and height of a PNG image, from its header; `None` if `png` is not one.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    let signature = b"\x89PNG\r\n\x1a\n";
    if png.len() < 24 || &png[..8] != signature || &png[12..16] != b"IHDR" {
        return None;
    }
    let word = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    Some((word(16), word(20)))
}

/// The number of distinct colours of an 8-bit RGB or RGBA PNG (what Chromium's
/// screenshots are), decoded here: 1 for a blank page. `None` for another kind of PNG.
pub fn png_colours(png: &[u8]) -> Option<usize> {
    use std::io::Read;
    let (width, height) = png_size(png)?;
    let (depth, colour_type) = (png[24], png[25]);
    let channels = match (depth, colour_type) {
        (8, 2) => 3,
        (8, 6) => 4,
        _ => return None,
    };
    // The image data: every IDAT chunk's payload, in order, as one zlib stream.
    let mut data = Vec::new();
    let mut at = 8;
    while at + 8 <= png.len() {
        let length = u32::from_be_bytes(png[at..at + 4].try_into().ok()?) as usize;
        let kind = &png[at + 4..at + 8];
        let body = png.get(at + 8..at + 8 + length)?;
        if kind == b"IDAT" {
            data.extend_from_slice(body);
        }
        at += 12 + length;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&data[..])
        .read_to_end(&mut raw)
        .ok()?;
    let stride = width as usize * channels;
    let mut previous = vec![0u8; stride];
    let mut colours = std::collections::HashSet::new();
    for row in raw.chunks(stride + 1).take(height as usize) {
        let (filter, line) = row.split_first()?;
        let mut current = line.to_vec();
        for i in 0..current.len() {
            let left = if i >= channels {
                current[i - channels]
            } else {
                0
            };
            let up = previous[i];
            let up_left = if i >= channels {
                previous[i - channels]
            } else {
                0
            };
            let predicted = match filter {
                0 => 0,
                1 => left,
                2 => up,
                3 => ((u16::from(left) + u16::from(up)) / 2) as u8,
                4 => {
                    let p = i16::from(left) + i16::from(up) - i16::from(up_left);
                    let (pa, pb, pc) = (
                        (p - i16::from(left)).abs(),
                        (p - i16::from(up)).abs(),
                        (p - i16::from(up_left)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        left
                    } else if pb <= pc {
                        up
                    } else {
                        up_left
                    }
                }
                _ => return None,
            };
            current[i] = current[i].wrapping_add(predicted);
        }
        for pixel in current.chunks(channels) {
            colours.insert(pixel.to_vec());
        }
        previous = current;
    }
    Some(colours.len())
}

/// Takes the exclusive lock on the file `path` (made if missing), waiting for whoever holds
/// it; the lock goes with the returned file. Installs that tests race for happen under one.
fn hold_lock(path: &Path) -> std::fs::File {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
    lock
}

/// An HTTP answer: its status, headers and body.
#[derive(Debug)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl HttpAnswer {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one plain-HTTP request (`GET` with no body, or `POST` with a form body) through
/// hyper's client.
pub async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    form: Option<&str>,
) -> HttpAnswer {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<hyper::body::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if form.is_some() {
        request = request.header("content-type", "application/x-www-form-urlencoded");
    }
    let body = Full::new(hyper::body::Bytes::from(form.unwrap_or("").to_string()));
    let request = request.body(body).expect("a valid request");
    let answer = client
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = answer.status().as_u16();
    let headers = answer
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let bytes = answer
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: reading the body: {e}"))
        .to_bytes();
    HttpAnswer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// `GET url` with `headers`.
pub async fn http_get(url: &str, headers: &[(&str, &str)]) -> HttpAnswer {
    http("GET", url, headers, None).await
}

/// A WebDriver session in headless Chromium (Debian's `chromium` and `chromium-driver`,
/// installed when missing), through `chromedriver` on a free port; both stop when it
/// is dropped.
pub struct Browser {
    driver: std::process::Child,
    /// chromedriver's URL, for a WebDriver client to open a session at.
    pub url: String,
}

impl Browser {
    /// Starts `chromedriver` on a free port and returns it with its URL; a session is
    /// opened by the caller's WebDriver client.
    pub fn start() -> Self {
        ensure_debian_package("chromium-driver", "chromedriver", &["--version"]);
        chromium();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver did not listen on {url} within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { driver, url }
    }

    /// The capabilities of a headless Chromium session of `width` x `height`.
    pub fn capabilities(width: u32, height: u32) -> serde_json::Map<String, serde_json::Value> {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium().display().to_string(),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                         format!("--window-size={width},{height}")],
            }),
        );
        caps
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
