//! The `ember` command as a user runs it: results on stdout, one-line errors that name the
//! culprit on stderr, non-zero exit status on failure.

use std::path::Path;
use std::process::{Command, Output};

fn ember(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("ember runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// Runs `ember` with `args`, asserts success, and returns its stdout.
fn ember_ok(args: &[&str]) -> String {
    let out = ember(args);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// Asserts a failure with a one-line message on stderr that contains every `needle`.
fn assert_fails_naming(output: &Output, needles: &[&str]) {
    let err = stderr(output);
    assert!(
        !output.status.success(),
        "expected failure, got: {}",
        stdout(output)
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks '{needle}': {err}");
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path.display().to_string()
}

#[test]
fn sql_prints_csv_and_explain_prints_stages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sales = write(
        dir.path(),
        "sales.csv",
        "product,price\nlamp,10.5\ndesk,99\nlamp,12.5\nchair,40\n",
    );
    let table = format!("sales={sales}");
    let query =
        "SELECT product, avg(price) AS avg_price FROM sales GROUP BY product ORDER BY product";
    let csv = ember_ok(&[
        "sql",
        "--executors",
        "2",
        "--table",
        &table,
        "--format",
        "csv",
        query,
    ]);
    assert_eq!(csv, "product,avg_price\nchair,40.0\ndesk,99.0\nlamp,11.5\n");

    let text = ember_ok(&["explain", "--executors", "2", "--table", &table, query]);
    assert!(text.contains("Stage 0: partitions="), "{text}");
    assert!(text.contains("(final)"), "{text}");
    assert!(text.contains("ShuffleReaderExec"), "{text}");

    let sql_file = write(dir.path(), "q.sql", query);
    let json = ember_ok(&[
        "sql", "--table", &table, "--format", "json", "--file", &sql_file,
    ]);
    assert!(json.starts_with("{\"product\":\"chair\""), "{json}");
}

#[test]
fn a_folder_of_files_is_one_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("parts");
    std::fs::create_dir(&folder).expect("mkdir");
    write(&folder, "a.csv", "k,v\n1,10\n2,20\n");
    write(&folder, "b.csv", "k,v\n3,30\n");
    let table = format!("t={}", folder.display());
    let csv = ember_ok(&[
        "sql",
        "--executors",
        "2",
        "--table",
        &table,
        "--format",
        "csv",
        "SELECT sum(v) AS s, count(*) AS n FROM t",
    ]);
    assert_eq!(csv, "s,n\n60,3\n");
}

#[test]
fn csv_and_json_of_several_partitions_print_every_row_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("parts");
    std::fs::create_dir(&folder).expect("mkdir");
    for part in 0..4 {
        let mut text = String::from("k,v\n");
        for k in (part * 5000)..((part + 1) * 5000) {
            text.push_str(&format!("{k},{}\n", k * 2));
        }
        write(&folder, &format!("part-{part}.csv"), &text);
    }
    let table = format!("t={}", folder.display());
    let sql = |format: &str, query: &str| {
        ember_ok(&[
            "sql",
            "--executors",
            "3",
            "--table",
            &table,
            "--format",
            format,
            query,
        ])
    };

    let csv = sql("csv", "SELECT k, v FROM t ORDER BY k DESC");
    let expected: String = std::iter::once("k,v\n".to_string())
        .chain((0..20_000).rev().map(|k| format!("{k},{}\n", k * 2)))
        .collect();
    assert!(
        csv == expected,
        "{} lines, not the 20,001 expected",
        csv.lines().count()
    );

    // No order: every partition's rows, the header once.
    let csv = sql("csv", "SELECT k FROM t WHERE k % 2 = 0");
    let mut lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.remove(0), "k");
    let mut keys: Vec<u32> = lines.iter().map(|l| l.parse().expect("a key")).collect();
    keys.sort_unstable();
    assert_eq!(keys, (0..20_000).step_by(2).collect::<Vec<u32>>());

    let json = sql("json", "SELECT k FROM t WHERE k >= 15000 ORDER BY k");
    let lines: Vec<&str> = json.lines().collect();
    assert_eq!(lines.len(), 5000);
    assert_eq!((lines[0], lines[4999]), ("{\"k\":15000}", "{\"k\":19999}"));

    assert_eq!(sql("csv", "SELECT k, v FROM t WHERE k < 0"), "k,v\n");
    assert_eq!(sql("json", "SELECT k, v FROM t WHERE k < 0"), "");
}

#[test]
fn a_missing_file_is_named() {
    let out = ember(&["sql", "--table", "t=/no/such/file.csv", "SELECT 1"]);
    assert_fails_naming(&out, &["/no/such/file.csv", "'t'"]);
}

#[test]
fn unknown_tables_columns_and_bad_sql_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = format!(
        "sales={}",
        write(dir.path(), "s.csv", "product,price\nlamp,1\n")
    );
    let out = ember(&["sql", "--table", &table, "SELECT * FROM nosuch"]);
    assert_fails_naming(&out, &["nosuch", "not found"]);
    let out = ember(&["sql", "--table", &table, "SELECT nosuchcol FROM sales"]);
    assert_fails_naming(&out, &["nosuchcol"]);
    let out = ember(&["sql", "--table", &table, "SELECT * FRM sales"]);
    assert_fails_naming(&out, &["FRM", "Line: 1, Column: 10"]);
    let out = ember(&["sql", "--table", "sales", "SELECT 1"]);
    assert_fails_naming(&out, &["--table"]);
    let out = ember(&["sql", "--conf", "ember.executors=zero", "SELECT 1"]);
    assert_fails_naming(&out, &["ember.executors"]);
}

#[test]
fn a_csv_value_that_does_not_parse_names_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from("id,price\n");
    for i in 1..=2000 {
        text.push_str(&format!("{i},{i}.5\n"));
    }
    text.push_str("2001,twelve\n");
    let path = write(dir.path(), "prices.csv", &text);
    let table = format!("p={path}");
    let out = ember(&[
        "sql",
        "--executors",
        "2",
        "--table",
        &table,
        "SELECT sum(price) FROM p",
    ]);
    assert_fails_naming(&out, &[&path, "line 2002", "column 2 (price)", "'twelve'"]);
}

#[test]
fn an_operator_without_a_wire_form_is_named() {
    let out = ember(&[
        "sql",
        "--executors",
        "2",
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5) \
         SELECT sum(n) FROM t",
    ]);
    assert_fails_naming(&out, &["WorkTableExec", "cannot be sent to executors"]);
}

#[test]
fn a_set_statement_cannot_turn_on_what_ember_needs_off() {
    let out = ember(&[
        "sql",
        "SET datafusion.execution.enable_file_stream_work_stealing = true; SELECT 1",
    ]);
    assert_fails_naming(
        &out,
        &["enable_file_stream_work_stealing", "needs this to be false"],
    );
}

#[test]
fn run_word_count_and_distributed_sum_print_their_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = write(
        dir.path(),
        "book.txt",
        "The cat, the HAT.\n\nA cat in 2 hats; the end\n",
    );
    let out = ember_ok(&["run", "word-count", &text, "--executors", "2"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            "the\t3", "cat\t2", "2\t1", "a\t1", "end\t1", "hat\t1", "hats\t1", "in\t1"
        ]
    );
    let out = ember_ok(&[
        "run",
        "distributed-sum",
        "--n",
        "100000",
        "--executors",
        "2",
    ]);
    assert_eq!(out.trim(), "5000050000");

    assert_fails_naming(&ember(&["run", "word-count"]), &["INPUT"]);
    assert_fails_naming(
        &ember(&["run", "word-count", "/no/such/book.txt"]),
        &["/no/such/book.txt", "no such file"],
    );
    assert_fails_naming(&ember(&["run", "nope"]), &["nope", "word-count"]);
    // Each job takes its own options only.
    assert_fails_naming(
        &ember(&["run", "distributed-sum", "--rows", "5"]),
        &["--rows"],
    );
}

#[test]
fn run_help_lists_the_jobs_and_each_job_its_options() {
    let help = ember_ok(&["run", "--help"]);
    for job in [
        "pricing",
        "product-prices",
        "forest-prep",
        "forest-train",
        "forest-predict",
        "word-count",
        "distributed-sum",
        "matrix-multiply",
    ] {
        assert!(help.contains(job), "{job} missing from: {help}");
    }
    let help = ember_ok(&["run", "matrix-multiply", "--help"]);
    assert!(
        help.contains("--block") && help.contains("--executors"),
        "{help}"
    );
    assert!(!help.contains("--diamonds"), "{help}");
}

#[test]
fn run_matrix_multiply_checks_the_blocked_product() {
    let out = ember_ok(&[
        "run",
        "matrix-multiply",
        "--n",
        "512",
        "--block",
        "128",
        "--executors",
        "2",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let norm = |line: &str, after: &str| -> f64 {
        let rest = line.split_once(after).expect("a norm").1;
        rest.split(',')
            .next()
            .expect("a number")
            .trim()
            .parse()
            .expect("a number")
    };
    let distributed = norm(lines[0], "blocks of 128): ");
    let single = norm(lines[1], "single-threaded product: ");
    assert!(
        distributed > 0.0 && (distributed - single).abs() < 1e-6,
        "{out}"
    );
    assert_fails_naming(
        &ember(&["run", "matrix-multiply", "--n", "64", "--block", "65"]),
        &["--block", "65"],
    );
}

#[test]
fn bad_cluster_options_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path().display().to_string();
    assert_fails_naming(
        &ember(&[
            "executor",
            "--scheduler",
            "http://127.0.0.1:1",
            "--slots",
            "0",
            "--work-dir",
            &work,
        ]),
        &["--slots"],
    );
    assert_fails_naming(
        &ember(&[
            "executor",
            "--scheduler",
            "ftp://127.0.0.1:1",
            "--work-dir",
            &work,
        ]),
        &["ftp://127.0.0.1:1", "http://"],
    );
    assert_fails_naming(
        &ember(&[
            "scheduler",
            "--bind",
            "127.0.0.1:0",
            "--heartbeat-timeout",
            "0",
        ]),
        &["--heartbeat-timeout"],
    );
    assert_fails_naming(
        &ember(&["scheduler", "--policy", "random"]),
        &["random", "--policy"],
    );
    let missing = dir.path().join("missing.pem").display().to_string();
    assert_fails_naming(
        &ember(&[
            "scheduler",
            "--bind",
            "127.0.0.1:0",
            "--tls-cert",
            &missing,
            "--tls-key",
            &missing,
        ]),
        &["--tls-cert", "missing.pem"],
    );
    assert_fails_naming(
        &ember(&["sql", "--scheduler", "http://127.0.0.1:1", "SELECT 1"]),
        &["cannot reach the scheduler at http://127.0.0.1:1"],
    );
}

#[test]
fn the_products_dataset_is_generated_and_queryable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("products");
    let out = out.display().to_string();
    let generated = ember(&[
        "datasets",
        "products",
        "--rows",
        "5000",
        "--out",
        &out,
        "--dirty-fraction",
        "0.02",
        "--parts",
        "2",
    ]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    assert!(
        stderr(&generated).contains("100 products and 5000 sales"),
        "{}",
        stderr(&generated)
    );
    let sales = format!("sales={out}/sales");
    let products = format!("products={out}/products");
    let csv = ember_ok(&[
        "sql",
        "--executors",
        "2",
        "--table",
        &sales,
        "--table",
        &products,
        "--format",
        "csv",
        "SELECT count(*) AS n, count(DISTINCT s.category) AS categories, \
         count(*) FILTER (WHERE p.product_id IS NULL) AS orphans \
         FROM sales s LEFT JOIN products p ON s.product_id = p.product_id",
    ]);
    let row = csv.lines().nth(1).expect("a row");
    let fields: Vec<&str> = row.split(',').collect();
    assert_eq!(fields[0], "5000", "{csv}");
    assert!(
        fields[1]
            .parse::<u32>()
            .is_ok_and(|c| (8..=16).contains(&c)),
        "{csv}"
    );
    assert_eq!(
        fields[2], "0",
        "every sale names a product of the catalog: {csv}"
    );
    // The dirty CSV copy does not read cleanly, and the error names the file.
    let dirty = format!("dirty={out}/sales-csv/sales.csv");
    assert_fails_naming(
        &ember(&[
            "sql",
            "--table",
            &dirty,
            "SELECT sum(unit_price) FROM dirty",
        ]),
        &["sales.csv"],
    );
    let count = std::fs::read_to_string(format!("{out}/sales-csv/_DIRTY_ROWS")).expect("count");
    assert!(
        count.trim().parse::<u64>().is_ok_and(|n| n > 40 && n < 170),
        "{count}"
    );
}

fn diamonds() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/diamonds.csv")
        .display()
        .to_string()
}

#[test]
fn the_showcase_pipelines_run_and_print_their_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("report");
    let out = ember_ok(&[
        "run",
        "product-prices",
        "--diamonds",
        "--input",
        &diamonds(),
        "--form",
        "sql",
        "--out",
        &report.display().to_string(),
        "--executors",
        "2",
        "--format",
        "csv",
    ]);
    assert!(out.starts_with("summary:\n"), "{out}");
    assert!(
        out.contains("cut,Ideal,21551,74513487.00,326.00,18806.00,3457.54,"),
        "{out}"
    );
    for table in ["summary", "bands", "top_products"] {
        assert!(report.join(table).is_dir(), "{table} written");
    }

    let model = dir.path().join("model.json");
    let words = |line: String| -> Vec<String> { line.split(' ').map(str::to_string).collect() };
    let run = |line: String| {
        let args = words(line);
        ember_ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = run(format!(
        "run forest-train --input {} --label price --trees 3 --max-depth 4 --model {} \
         --out {} --executors 2",
        diamonds(),
        model.display(),
        dir.path().join("train").display()
    ));
    assert!(out.contains("trained 3 trees"), "{out}");
    assert!(out.contains("test rows: RMSE"), "{out}");
    assert!(dir.path().join("train/report.html").is_file(), "{out}");
    assert!(
        !dir.path().join("train/model.json").exists(),
        "--model says where"
    );
    let predictions = dir.path().join("predictions");
    let out = run(format!(
        "run forest-predict --model {} --input {} --out {} --executors 2",
        model.display(),
        diamonds(),
        predictions.display()
    ));
    assert!(out.contains("wrote 53940 rows with predictions"), "{out}");
    assert!(out.contains("53940 labelled rows: RMSE"), "{out}");
}

/// Whether `text` has a number with more than two decimals.
fn long_decimals(text: &str) -> Option<&str> {
    text.lines().find(|line| {
        let bytes = line.as_bytes();
        bytes.iter().enumerate().any(|(i, b)| {
            *b == b'.'
                && i > 0
                && bytes[i - 1].is_ascii_digit()
                && bytes[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count()
                    > 2
        })
    })
}

#[test]
fn the_readme_first_command_prints_a_short_summary_from_a_fresh_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_ember"))
            .args([
                "run",
                "product-prices",
                "--rows",
                "20000",
                "--executors",
                "2",
            ])
            .current_dir(dir.path())
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("ember runs")
    };
    let first = run();
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("made 20000 sales in data/products"),
        "{}",
        stderr(&first)
    );
    let out = stdout(&first);
    let lines = out.lines().count() + stderr(&first).lines().count();
    assert!(lines <= 40, "{lines} lines:\n{out}");
    assert!(
        out.starts_with("product-prices, DSL form: 20,000 sales from 5 files in data/products"),
        "{out}"
    );
    assert!(out.contains("Top 10 of 16 categories by revenue"), "{out}");
    assert!(out.contains("Price bands, all categories"), "{out}");
    assert!(out.contains("as Parquet in out/product-prices"), "{out}");
    assert_eq!(long_decimals(&out), None, "{out}");
    for table in ["summary", "bands", "top_products", "monthly"] {
        assert!(
            dir.path().join("out/product-prices").join(table).is_dir(),
            "{table} written"
        );
    }
    // The default output folder is the pipeline's own: a second run replaces it.
    let second = run();
    assert!(second.status.success(), "{}", stderr(&second));
    let again = stdout(&second);
    let top = |text: &str| text.lines().skip(5).take(10).collect::<Vec<_>>().join("\n");
    assert_eq!(
        top(&again),
        top(&out),
        "the same data gives the same top 10"
    );
}

#[test]
fn bad_pipeline_options_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nothing");
    let missing = missing.display().to_string();
    assert_fails_naming(
        &ember(&["run", "product-prices", "--tpch", &missing]),
        &["--tpch", "lineitem"],
    );
    assert_fails_naming(
        &ember(&["run", "product-prices", "--input", &missing]),
        &["--input", "sales/"],
    );
    assert_fails_naming(
        &ember(&["run", "product-prices", "--form", "python"]),
        &["--form", "python"],
    );
    assert_fails_naming(
        &ember(&["run", "product-prices", "--show", "everything"]),
        &["--show", "everything"],
    );
    assert_fails_naming(
        &ember(&["run", "product-prices", "--top", "0"]),
        &["--top", "0"],
    );
    assert_fails_naming(
        &ember(&["run", "product-prices", "--format", "xml"]),
        &["--format", "xml"],
    );
    assert_fails_naming(
        &ember(&["run", "forest-train", "--input", &diamonds()]),
        &["forest-train needs --label"],
    );
    assert_fails_naming(
        &ember(&[
            "run",
            "forest-prep",
            "--input",
            &missing,
            "--label",
            "price",
        ]),
        &["--input", "does not exist"],
    );
    assert_fails_naming(
        &ember(&[
            "run",
            "forest-prep",
            "--input",
            &diamonds(),
            "--label",
            "price",
            "--handle-invalid",
            "ignore",
        ]),
        &["--handle-invalid", "ignore"],
    );
    assert_fails_naming(
        &ember(&[
            "run",
            "forest-train",
            "--input",
            &diamonds(),
            "--label",
            "price",
            "--test-fraction",
            "1.5",
        ]),
        &["--test-fraction", "1.5"],
    );
    assert_fails_naming(
        &ember(&["sql", "--bad-rows", "ignore", "SELECT 1"]),
        &["ember.input.bad_rows", "quarantine=PATH", "ignore"],
    );
    assert_fails_naming(
        &ember(&["sql", "--memory-limit", "12Q", "SELECT 1"]),
        &["ember.executor.memory_limit", "12Q"],
    );
    assert_fails_naming(
        &ember(&[
            "executor",
            "--scheduler",
            "http://127.0.0.1:1",
            "--memory-limit",
            "0",
        ]),
        &["--memory-limit", "'0'"],
    );
    assert_fails_naming(
        &ember(&[
            "run",
            "forest-predict",
            "--model",
            &missing,
            "--input",
            &diamonds(),
        ]),
        &["reading the model", "nothing"],
    );
}

#[test]
fn bad_csv_rows_fail_by_default_and_are_counted_when_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Line 3 has a price that is not a number, line 4 a missing field; 20 good rows.
    let mut text = String::from("item,price\ntea,2.5\njam,3.x\nbread\n");
    for i in 0..19 {
        text.push_str(&format!("item{i},{i}.25\n"));
    }
    let csv = write(dir.path(), "prices.csv", &text);
    let table = format!("p={csv}");
    let query = "SELECT count(*) AS n, sum(price) AS total FROM p";
    assert_fails_naming(
        &ember(&["sql", "--bad-rows", "fail", "--table", &table, query]),
        &["prices.csv:3:", "column price: '3.x' is not a Float64"],
    );
    let out = ember(&[
        "sql",
        "--bad-rows",
        "skip",
        "--format",
        "csv",
        "--table",
        &table,
        query,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // 2.5 + (0.25 + 1.25 + ... + 18.25) = 2.5 + 171 + 4.75.
    assert_eq!(stdout(&out), "n,total\n20,178.25\n");
    assert!(
        stderr(&out).contains("skipped 2 bad rows"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn empty_files_and_parquet_files_that_disagree_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = write(dir.path(), "empty.csv", "");
    assert_fails_naming(
        &ember(&["sql", "--table", &format!("t={empty}"), "SELECT * FROM t"]),
        &["empty.csv", "the file is empty"],
    );
    let folder = dir.path().join("mixed");
    std::fs::create_dir(&folder).expect("folder");
    for (name, select) in [("a", "SELECT 1 AS x"), ("b", "SELECT 'one' AS x")] {
        let file = folder.join(format!("{name}.parquet"));
        ember_ok(&[
            "sql",
            "--executors",
            "1",
            &format!("COPY ({select}) TO '{}'", file.display()),
        ]);
    }
    assert_fails_naming(
        &ember(&[
            "sql",
            "--table",
            &format!("t={}", folder.display()),
            "SELECT * FROM t",
        ]),
        &["a.parquet has (x Int64) but", "b.parquet has (x Utf8"],
    );
}

#[test]
fn copy_to_an_existing_folder_needs_a_mode_and_the_flag_is_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let copy = |mode: Option<&str>| {
        let mut args = vec!["sql", "--executors", "2"];
        if let Some(mode) = mode {
            args.extend(["--mode", mode]);
        }
        let query = format!(
            "COPY (SELECT * FROM (VALUES (1), (2)) AS t(x)) TO '{}' STORED AS CSV",
            out.display()
        );
        ember(&[args, vec![query.as_str()]].concat())
    };
    assert!(copy(None).status.success());
    assert!(out.join("_SUCCESS").is_file());
    assert_fails_naming(&copy(None), &["already holds", "--mode overwrite"]);
    assert!(copy(Some("append")).status.success());
    let csv_files = || {
        std::fs::read_dir(&out)
            .expect("out")
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "csv"))
            .count()
    };
    let appended = csv_files();
    assert!(copy(Some("overwrite")).status.success());
    assert!(
        csv_files() < appended,
        "overwrite replaced the appended files"
    );
    assert_fails_naming(
        &copy(Some("sometimes")),
        &["ember.output.mode", "sometimes"],
    );
}

#[test]
fn corrupt_parquet_files_are_named_and_fail_without_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("t");
    std::fs::create_dir(&folder).expect("folder");
    let good = folder.join("a.parquet");
    ember_ok(&[
        "sql",
        "--executors",
        "1",
        &format!(
            "COPY (SELECT CAST(x AS BIGINT) AS x, repeat('pad', 50) AS s FROM (VALUES (1), (2), (3)) AS t(x)) TO '{}'",
            good.display()
        ),
    ]);
    let bytes = std::fs::read(&good).expect("written");
    // A file that is not Parquet at all: its footer does not read.
    write(&folder, "b.parquet", "hello,world\n");
    assert_fails_naming(
        &ember(&[
            "sql",
            "--table",
            &format!("t={}", folder.display()),
            "SELECT * FROM t",
        ]),
        &["b.parquet: not a readable Parquet file"],
    );
    // A file whose footer reads but whose data pages are garbage.
    let mut mangled = bytes.clone();
    let footer = bytes.len() - 8;
    let metadata = u32::from_le_bytes(bytes[footer..footer + 4].try_into().expect("4 bytes"));
    let data_end = footer - metadata as usize;
    // The first column chunk's pages, not the page index that sits after the chunks.
    for byte in mangled.iter_mut().take(data_end / 3).skip(4) {
        *byte = 0xff;
    }
    std::fs::write(folder.join("b.parquet"), &mangled).expect("written");
    let output = ember(&[
        "sql",
        "--executors",
        "1",
        "--table",
        &format!("t={}", folder.display()),
        "SELECT sum(length(s)) FROM t",
    ]);
    assert_fails_naming(
        &output,
        &["b.parquet: corrupt Parquet data", "1 attempt(s)"],
    );
}

#[test]
fn history_lists_logged_jobs_prints_one_and_reports_bad_lines_by_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logs = dir.path().join("events");
    let logs_text = logs.to_str().expect("utf-8 path");
    let query = "SELECT g % 3 AS k, count(*) AS n FROM generate_series(1, 1000) t(g) GROUP BY k";
    ember_ok(&["sql", "--executors", "2", "--event-log", logs_text, query]);
    let files: Vec<_> = std::fs::read_dir(&logs)
        .expect("the log folder exists")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "one job, one log: {files:?}");
    let job_id = files[0]
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a job id")
        .to_string();

    let listed = ember_ok(&["history", "--log-dir", logs_text, "--format", "csv"]);
    let row = listed
        .lines()
        .find(|l| l.starts_with(&job_id))
        .unwrap_or_else(|| panic!("{job_id} is not listed:\n{listed}"));
    assert!(row.contains("succeeded"), "{row}");
    assert!(
        row.contains("GROUP BY k"),
        "the job is named by its SQL: {row}"
    );
    assert!(
        listed
            .lines()
            .next()
            .is_some_and(|h| h.contains("tasks_done"))
    );

    let detail = ember_ok(&["history", "--log-dir", logs_text, &job_id]);
    assert!(
        detail.contains("stages") && detail.contains("tasks"),
        "{detail}"
    );
    assert!(detail.contains("executor-0") || detail.contains("executor-1"));

    // A corrupt line and a line cut short are skipped and named; the rest is read.
    let mut text = std::fs::read_to_string(&files[0]).expect("the log");
    let lines = text.lines().count();
    text.push_str("this is not json\n{\"v\":1,\"kind\":\"event\",\"at_us\":");
    std::fs::write(&files[0], text).expect("write");
    let out = ember(&["history", "--log-dir", logs_text, "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let file = files[0].display().to_string();
    assert!(err.contains(&format!("{file}:{}:", lines + 1)), "{err}");
    assert!(err.contains(&format!("{file}:{}:", lines + 2)), "{err}");
    assert!(stdout(&out).contains("succeeded"), "{}", stdout(&out));

    // The skipped lines are warned about first; the error is the last line.
    let missing = ember(&["history", "--log-dir", logs_text, "job-that-never-ran"]);
    assert!(!missing.status.success());
    let err = stderr(&missing);
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.contains("job-that-never-ran") && last.contains(&job_id),
        "{err}"
    );
    let nowhere = dir.path().join("nowhere");
    let out = ember(&["history", "--log-dir", nowhere.to_str().expect("utf-8")]);
    assert_fails_naming(&out, &["--log-dir", "nowhere"]);
}
