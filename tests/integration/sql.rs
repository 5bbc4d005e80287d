//! SQL as people use it, through the `ember sql` command: scripts by `--file`, standard
//! input and `-c`; DDL, `CREATE TABLE … AS` and `INSERT INTO` through the commit
//! protocol; files by path, locally and on the S3 test server; a catalog that a
//! scheduler serves to every client and keeps across restarts; errors that name the
//! statement and its line; and the interactive shell in a terminal (tmux), with
//! completion, `\d` and Ctrl-C cancelling the job on the cluster.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ember_tests::S3Server;

use crate::cluster::{NODE, Node, TestCluster, kill, spawn};

/// The diamonds data set: 53,940 priced products.
fn diamonds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/diamonds.csv")
}

/// Rows of diamonds.csv as (cut, price), read with the csv crate: the tests' own answer.
fn diamond_rows() -> Vec<(String, i64)> {
    let mut reader = csv::Reader::from_path(diamonds()).expect("diamonds.csv opens");
    let headers = reader.headers().expect("a header").clone();
    let cut = headers
        .iter()
        .position(|h| h == "cut")
        .expect("a cut column");
    let price = headers
        .iter()
        .position(|h| h == "price")
        .expect("a price column");
    reader
        .records()
        .map(|r| {
            let r = r.expect("a record");
            (
                r[cut].to_string(),
                r[price].parse().expect("an integer price"),
            )
        })
        .collect()
}

/// `ember sql ARGS` with `stdin` (nothing when `None`); its output.
fn ember_sql(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(NODE);
    command
        .arg("sql")
        .args(args)
        .current_dir(dir)
        .env_remove("EMBER_SCHEDULER")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("ember sql starts");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(text.as_bytes())
            .expect("stdin is written");
    }
    child.wait_with_output().expect("ember sql ends")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The 10-statement script of the acceptance test, writing under `out`.
fn ten_statements(out: &Path) -> String {
    let out = out.display();
    format!(
        "-- external tables over CSV and Parquet, a view, a CTAS, an INSERT INTO
CREATE EXTERNAL TABLE d STORED AS CSV LOCATION '{diamonds}';
CREATE TABLE cheap STORED AS PARQUET LOCATION '{out}/cheap/'
  AS SELECT carat, cut, price FROM d WHERE price < 500;
CREATE EXTERNAL TABLE cheap_files STORED AS PARQUET LOCATION '{out}/cheap/';
CREATE VIEW cuts AS SELECT cut, count(*) AS n FROM d GROUP BY cut;
CREATE EXTERNAL TABLE top (carat DOUBLE, cut VARCHAR, price BIGINT)
  STORED AS CSV LOCATION '{out}/top/';
INSERT INTO top SELECT carat, cut, price FROM d WHERE price > 18700;
SHOW TABLES;
SELECT cut, n FROM cuts ORDER BY cut;
SELECT count(*) AS cheap_rows, max(price) AS cheap_max FROM cheap_files;
SELECT count(*) AS top_rows FROM top;
",
        diamonds = diamonds().display()
    )
}

/// The value cells of a `--format csv` output's lines after `header`.
fn csv_after<'a>(output: &'a str, header: &str) -> Vec<&'a str> {
    output
        .lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect()
}

#[test]
fn a_ten_statement_script_prints_the_same_by_file_stdin_and_c() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut outputs = Vec::new();
    for mode in ["file", "stdin", "c"] {
        let out = dir.path().join(format!("out-{mode}"));
        // The same paths in each run, so the outputs can be compared whole.
        let script = ten_statements(Path::new("out"));
        std::fs::create_dir_all(&out).expect("out dir");
        let run_dir = out.clone();
        let base = ["--executors", "2", "--format", "csv"];
        let output = match mode {
            "file" => {
                let file = run_dir.join("script.sql");
                std::fs::write(&file, &script).expect("script written");
                let mut args = base.to_vec();
                args.extend(["--file", "script.sql"]);
                ember_sql(&run_dir, &args, None)
            }
            "stdin" => ember_sql(&run_dir, &base, Some(&script)),
            _ => {
                let statements: Vec<String> = script
                    .split(";\n")
                    .map(str::to_string)
                    .filter(|s| !s.trim().is_empty())
                    .collect();
                assert_eq!(statements.len(), 10, "{statements:?}");
                let mut args: Vec<&str> = base.to_vec();
                for s in &statements {
                    args.extend(["-c", s.as_str()]);
                }
                ember_sql(&run_dir, &args, None)
            }
        };
        assert!(output.status.success(), "{mode}: {}", text(&output.stderr));
        outputs.push((mode, text(&output.stdout)));
    }
    for (mode, stdout) in &outputs[1..] {
        assert_eq!(stdout, &outputs[0].1, "{mode} differs from --file");
    }

    // The answers, against the tests' own reading of the CSV.
    let rows = diamond_rows();
    let stdout = &outputs[0].1;
    let mut per_cut: BTreeMap<&str, usize> = BTreeMap::new();
    for (cut, _) in &rows {
        *per_cut.entry(cut.as_str()).or_default() += 1;
    }
    let want: Vec<String> = per_cut.iter().map(|(c, n)| format!("{c},{n}")).collect();
    assert_eq!(csv_after(stdout, "cut,n"), want);
    let cheap: Vec<i64> = rows.iter().map(|r| r.1).filter(|p| *p < 500).collect();
    assert_eq!(
        csv_after(stdout, "cheap_rows,cheap_max"),
        vec![format!(
            "{},{}",
            cheap.len(),
            cheap.iter().max().expect("some")
        )]
    );
    let top = rows.iter().filter(|r| r.1 > 18700).count();
    assert_eq!(csv_after(stdout, "top_rows"), vec![top.to_string()]);
    let tables = csv_after(stdout, "table_catalog,table_schema,table_name,table_type");
    for name in ["cheap", "cheap_files", "cuts", "d", "top"] {
        assert!(
            tables.iter().any(|l| l.split(',').nth(2) == Some(name)),
            "{name} in {tables:?}"
        );
    }
    // The CTAS and the INSERT went through the commit protocol: a marker beside the data.
    let out = dir.path().join("out-file/out");
    assert!(out.join("cheap/_SUCCESS").is_file());
    assert!(out.join("top/_SUCCESS").is_file());
}

#[test]
fn a_failing_statement_is_named_with_its_line_and_stops_the_script() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = "SELECT 1 AS one;\n\nCREATE VIEW v AS SELECT 2 AS two;\n\n  SELECT * FROM nope;\nSELECT 3 AS three;\n";
    std::fs::write(dir.path().join("bad.sql"), script).expect("written");
    let output = ember_sql(dir.path(), &["--executors", "1", "--file", "bad.sql"], None);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: bad.sql: statement 3 (line 5): ")
            && stderr.contains("nope' not found"),
        "{stderr}"
    );
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("one") && !stdout.contains("three"),
        "{stdout}"
    );

    // --keep-going runs the rest, and still fails.
    let output = ember_sql(
        dir.path(),
        &["--executors", "1", "--keep-going", "--file", "bad.sql"],
        None,
    );
    assert!(!output.status.success());
    assert!(text(&output.stdout).contains("three"));
    assert!(text(&output.stderr).contains("1 statement(s) failed"));

    // A parse error, a bad location and a bad option: one line each, naming the thing.
    for (sql, names) in [
        (
            "SELECT 1;\nSELEC 2;",
            vec!["statement 2 (line 2)", "syntax error", "SELEC", "Line: 2"],
        ),
        (
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/nonexistent/ember/x/';",
            vec!["statement 1 (line 1)", "/nonexistent/ember/x/"],
        ),
        (
            "SET ember.output.mode = 'sideways';",
            vec!["statement 1 (line 1)", "ember.output.mode", "sideways"],
        ),
        (
            "SET ember.executors = 3;",
            vec!["ember.executors", "fixed when the session starts"],
        ),
        (
            "SELECT * FROM 'no/such/file.parquet';",
            vec!["no/such/file.parquet", "no such file"],
        ),
    ] {
        let output = ember_sql(dir.path(), &["--executors", "1", "-c", sql], None);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{sql}");
        assert_eq!(stderr.lines().count(), 1, "{sql}: {stderr}");
        for name in names {
            assert!(stderr.contains(name), "{sql}: {name} not in {stderr}");
        }
    }
}

#[test]
fn set_and_show_change_and_print_ember_settings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = ember_sql(
        dir.path(),
        &[
            "--executors",
            "1",
            "--format",
            "csv",
            "-c",
            "SET ember.output.mode = 'append'; SHOW ember.output.mode",
        ],
        None,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "name,value\nember.output.mode,append\n"
    );
}

/// Writes a Parquet file and a CSV file of the first rows of diamonds under `dir` (with
/// `ember sql` itself), and a folder of two Parquet files.
fn files_by_path(dir: &Path, base: &str, extra: &[&str]) {
    let d = diamonds();
    let script = format!(
        "CREATE EXTERNAL TABLE d STORED AS CSV LOCATION '{d}';
COPY (SELECT cut, price FROM d WHERE price < 400) TO '{base}/one.parquet';
COPY (SELECT cut, price FROM d WHERE price < 400) TO '{base}/one.csv';
CREATE TABLE folder STORED AS PARQUET LOCATION '{base}/folder/' AS SELECT cut, price FROM d WHERE price > 18000;",
        d = d.display()
    );
    let mut args = vec!["--executors", "2", "-c", &script];
    args.extend(extra);
    let output = ember_sql(dir, &args, None);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let rows = diamond_rows();
    let low = rows.iter().filter(|r| r.1 < 400).count();
    let high = rows.iter().filter(|r| r.1 > 18000).count();
    for (path, want) in [
        (format!("{base}/one.parquet"), low),
        (format!("{base}/one.csv"), low),
        (format!("{base}/folder/"), high),
    ] {
        let sql = format!("SELECT count(*) AS n FROM '{path}'");
        let mut args = vec!["--executors", "2", "--format", "csv", &sql];
        args.extend(extra);
        let output = ember_sql(dir, &args, None);
        assert!(output.status.success(), "{path}: {}", text(&output.stderr));
        assert_eq!(text(&output.stdout), format!("n\n{want}\n"), "{path}");
    }
}

#[test]
fn files_are_read_by_path_locally() {
    let dir = tempfile::tempdir().expect("temp dir");
    files_by_path(dir.path(), "data", &[]);
}

#[test]
fn a_table_over_key_value_folders_has_their_partition_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut want = BTreeMap::new();
    for (cut, price) in diamond_rows().into_iter().filter(|r| r.1 < 360) {
        let folder = dir
            .path()
            .join(format!("part/cut={}", cut.replace(' ', "_")));
        std::fs::create_dir_all(&folder).expect("folder");
        let file = folder.join("prices.csv");
        let mut text = std::fs::read_to_string(&file).unwrap_or_else(|_| "price\n".into());
        text.push_str(&format!("{price}\n"));
        std::fs::write(&file, text).expect("written");
        *want.entry(cut.replace(' ', "_")).or_insert(0i64) += price;
    }
    let output = ember_sql(
        dir.path(),
        &[
            "--executors",
            "2",
            "--format",
            "csv",
            "-c",
            "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION 'part/'",
            "-c",
            "SELECT cut, sum(price) AS total FROM p GROUP BY cut ORDER BY cut",
        ],
        None,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let got: Vec<String> = csv_after(&text(&output.stdout), "cut,total")
        .into_iter()
        .map(str::to_string)
        .collect();
    let want: Vec<String> = want.iter().map(|(c, t)| format!("{c},{t}")).collect();
    assert!(want.len() > 1, "{want:?}");
    assert_eq!(got, want);
}

#[test]
fn files_are_read_by_path_on_s3() {
    let server = S3Server::shared();
    server.create_bucket("by-path");
    let confs: Vec<String> = [
        ("endpoint", server.endpoint.as_str()),
        ("allow_http", "true"),
        ("region", "us-east-1"),
        ("access_key_id", "testing"),
        ("secret_access_key", "testing"),
    ]
    .iter()
    .map(|(k, v)| format!("ember.s3.{k}={v}"))
    .collect();
    let mut extra = Vec::new();
    for conf in &confs {
        extra.extend(["--conf", conf.as_str()]);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    files_by_path(dir.path(), "s3://by-path/data", &extra);
}

/// Starts a scheduler on `address` with `--catalog catalog`; its node.
fn scheduler_on(cluster: &TestCluster, address: &str, catalog: &Path, log: &str) -> Node {
    let stderr = cluster.dir.path().join(log);
    let mut command = Command::new(NODE);
    command
        .args(["scheduler", "--bind", address, "--catalog"])
        .arg(catalog)
        .env("RUST_LOG", "info");
    let (child, line, lines) = spawn(&mut command, &stderr);
    assert!(line.is_some(), "the scheduler starts on {address}");
    Node {
        id: String::new(),
        child,
        stderr,
        lines,
    }
}

#[test]
fn tables_made_by_one_client_are_seen_by_the_next_and_after_a_restart() {
    let catalog_dir = tempfile::tempdir().expect("temp dir");
    let catalog = catalog_dir.path().join("catalog");
    let catalog_arg = catalog.display().to_string();
    let mut cluster = TestCluster::start(2, &["--catalog", &catalog_arg], None);
    let work = tempfile::tempdir().expect("temp dir");
    let url = cluster.url.clone();
    let first = ember_sql(
        work.path(),
        &[
            "--scheduler",
            &url,
            "-c",
            &format!(
                "CREATE EXTERNAL TABLE d STORED AS CSV LOCATION '{}'",
                diamonds().display()
            ),
            "-c",
            "CREATE VIEW ideal AS SELECT price FROM d WHERE cut = 'Ideal'",
        ],
        None,
    );
    assert!(first.status.success(), "{}", text(&first.stderr));
    let want = diamond_rows().iter().filter(|r| r.0 == "Ideal").count();
    let query = |label: &str| {
        let output = ember_sql(
            work.path(),
            &[
                "--scheduler",
                &url,
                "--format",
                "csv",
                "SELECT count(*) AS n FROM ideal",
            ],
            None,
        );
        assert!(output.status.success(), "{label}: {}", text(&output.stderr));
        assert_eq!(text(&output.stdout), format!("n\n{want}\n"), "{label}");
    };
    query("a second client");

    // The catalog is a versioned JSON document in the folder.
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(catalog.join("catalog.json")).expect("catalog.json"),
    )
    .expect("JSON");
    assert_eq!(doc["version"], 2);
    assert_eq!(doc["entries"]["ideal"]["kind"], "view");

    let address = url.strip_prefix("http://").expect("plain URL").to_string();
    kill(&mut cluster.scheduler);
    cluster.scheduler = scheduler_on(&cluster, &address, &catalog, "scheduler-2.log");
    // The executors register again within a heartbeat or two.
    let deadline = Instant::now() + Duration::from_secs(30);
    let remote = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            loop {
                if let Ok(remote) = ember::RemoteCluster::connect(&url, cluster.security()).await
                    && remote.executors().await.is_ok_and(|e| e.len() == 2)
                {
                    return remote;
                }
                assert!(Instant::now() < deadline, "executors did not come back");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    drop(remote);
    query("a client after the scheduler restarted");

    // A dropped table is gone for the next client too.
    let dropped = ember_sql(
        work.path(),
        &["--scheduler", &url, "-c", "DROP VIEW ideal"],
        None,
    );
    assert!(dropped.status.success(), "{}", text(&dropped.stderr));
    let gone = ember_sql(
        work.path(),
        &["--scheduler", &url, "SELECT * FROM ideal"],
        None,
    );
    assert!(!gone.status.success());
    assert!(
        text(&gone.stderr).contains("ideal"),
        "{}",
        text(&gone.stderr)
    );
}

#[test]
fn a_local_catalog_folder_keeps_tables_between_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let create = ember_sql(
        dir.path(),
        &[
            "--executors",
            "1",
            "--catalog",
            "cat",
            "-c",
            "CREATE TABLE small AS SELECT 1 AS a UNION ALL SELECT 2",
        ],
        None,
    );
    assert!(create.status.success(), "{}", text(&create.stderr));
    // The table's files went to the warehouse, under its name.
    assert!(dir.path().join("ember-warehouse/small/_SUCCESS").is_file());
    let read = ember_sql(
        dir.path(),
        &[
            "--executors",
            "1",
            "--catalog",
            "cat",
            "--format",
            "csv",
            "SELECT sum(a) AS s FROM small",
        ],
        None,
    );
    assert!(read.status.success(), "{}", text(&read.stderr));
    assert_eq!(text(&read.stdout), "s\n3\n");
}

/// A tmux session running a command, driven as a person at a terminal would.
struct Terminal {
    name: String,
}

impl Terminal {
    fn start(command: &str) -> Self {
        ember_tests::ensure_tmux();
        let name = format!("ember-shell-{}", std::process::id());
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "160",
                "-y",
                "60",
                command,
            ])
            .status()
            .expect("tmux runs (apt-get install tmux)");
        assert!(status.success(), "tmux started");
        Self { name }
    }

    /// Types `text` (no Enter).
    fn type_text(&self, text: &str) {
        // tmux reads a trailing ';' as its own command separator.
        for (i, part) in text.split(';').enumerate() {
            if i > 0 {
                self.keys(&["\\;"]);
            }
            if !part.is_empty() {
                let status = Command::new("tmux")
                    .args(["send-keys", "-t", &self.name, "-l", part])
                    .status()
                    .expect("tmux send-keys");
                assert!(status.success());
            }
        }
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    fn line(&self, text: &str) {
        self.type_text(text);
        self.keys(&["Enter"]);
    }

    fn screen(&self) -> String {
        let output = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name, "-S", "-200"])
            .output()
            .expect("tmux capture-pane");
        text(&output.stdout)
    }

    /// Waits until the screen shows `what` (panics with the screen after `limit`).
    fn wait_for(&self, limit: Duration, what: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if what(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "the terminal shows:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Gone already when the shell quit.
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_completes_describes_and_cancels_a_running_job_on_ctrl_c() {
    let cluster = TestCluster::start(1, &[], None);
    let dir = tempfile::tempdir().expect("temp dir");
    let command = format!(
        "cd {} && EMBER_HISTORY={} {NODE} sql --scheduler {}",
        dir.path().display(),
        dir.path().join("history").display(),
        cluster.url
    );
    let term = Terminal::start(&command);
    // (tmux drops the blanks at the ends of lines.)
    term.wait_for(Duration::from_secs(30), |s| s.contains("ember>"));
    term.line(&format!(
        "CREATE EXTERNAL TABLE diamonds STORED AS CSV LOCATION '{}';",
        diamonds().display()
    ));
    term.wait_for(Duration::from_secs(30), |s| {
        s.matches("ember>").count() >= 2
    });

    // A query over two lines, the table's name completed with Tab.
    term.line("SELECT cut,");
    term.type_text("count(*) AS n FROM diam");
    term.keys(&["Tab"]);
    term.line(" WHERE cut = 'Fair' GROUP BY cut;");
    let want = diamond_rows().iter().filter(|r| r.0 == "Fair").count();
    let screen = term.wait_for(Duration::from_secs(60), |s| {
        s.contains(&format!("| {want} "))
    });
    assert!(screen.contains("FROM diamonds WHERE"), "{screen}");
    assert!(screen.contains("   ...> count(*)"), "{screen}");

    term.line("\\d");
    term.wait_for(Duration::from_secs(30), |s| {
        s.contains("| diamonds   | BASE TABLE |")
    });
    term.line("\\d diamonds");
    term.wait_for(Duration::from_secs(30), |s| {
        s.contains("| price ") && s.contains("Int64")
    });

    // A slow query (a join of 850 million rows), cancelled with Ctrl-C once it runs.
    term.line("SELECT count(*) FROM diamonds a JOIN diamonds b ON a.cut = b.cut;");
    let remote = ember::RemoteCluster::connect(&cluster.url, cluster.security())
        .await
        .expect("connects");
    // Into the join's stage (the progress bar counts stages): a join that feeds an
    // aggregate never waits, the hardest task to stop.
    term.wait_for(Duration::from_secs(60), |s| s.contains("2/4 stages"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let busy = remote
            .executors()
            .await
            .expect("executors")
            .iter()
            .any(|e| e.free < e.slots);
        if busy {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow query never ran:\n{}",
            term.screen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    term.keys(&["C-c"]);
    term.wait_for(Duration::from_secs(10), |s| s.contains("cancelled"));
    // The cluster's counts: no job, every slot free.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let jobs = remote.running_jobs().await.expect("cluster state");
        let free = remote
            .executors()
            .await
            .expect("executors")
            .iter()
            .all(|e| e.free == e.slots);
        if jobs == 0 && free {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{jobs} job(s) still run after Ctrl-C"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cluster.scheduler_log().contains("job cancelled"));

    // The shell is still there, and the next query works.
    term.line("SELECT count(*) AS total FROM diamonds;");
    term.wait_for(Duration::from_secs(60), |s| {
        s.contains(&format!("| {} ", diamond_rows().len()))
    });
    term.line("\\q");
    // History is kept in the file.
    // The shell writes the file as it exits: a read can land between its creation and the
    // write, so wait for the line rather than for the file.
    let history = dir.path().join("history");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let kept = std::fs::read_to_string(&history).unwrap_or_default();
        if kept.contains("SELECT count(*) AS total FROM diamonds;") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the history file lacks the last query:\n{kept}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
