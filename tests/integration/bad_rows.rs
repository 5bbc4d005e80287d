//! Bad CSV rows: the dirty products CSV fails by default naming its file and line, and
//! with skip or quarantine gives the counts the generator wrote.

use ember::datasets::{ProductsOptions, generate_products};
use ember::{BadRows, EmberConfig, Session};

/// A products dataset with a dirty CSV copy (`sales-csv/sales.csv`); returns its folder
/// and the dirty row count.
pub(crate) fn dirty_products() -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = generate_products(&ProductsOptions {
        rows: 20_000,
        out_dir: dir.path().to_path_buf(),
        seed: 5,
        dirty_fraction: Some(0.01),
        parts: 1,
    })
    .expect("products");
    let written: u64 = std::fs::read_to_string(dir.path().join("sales-csv/_DIRTY_ROWS"))
        .expect("the count")
        .trim()
        .parse()
        .expect("a number");
    assert_eq!(written, summary.dirty_rows);
    assert!(written > 100, "{written}");
    (dir, written)
}

fn new_session() -> Session {
    Session::new(EmberConfig {
        executors: 2,
        max_attempts: 1,
        ..EmberConfig::default()
    })
    .expect("the cluster starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirty_csv_fails_naming_file_and_line_or_is_skipped_or_quarantined_with_exact_counts() {
    let (dir, dirty) = dirty_products();
    let csv = dir.path().join("sales-csv/sales.csv");
    let path = csv.to_string_lossy().into_owned();
    let lines: Vec<String> = std::fs::read_to_string(&csv)
        .expect("csv")
        .lines()
        .map(str::to_string)
        .collect();

    // Reads the CSV in a new session under `policy`: the rows counted, and the bad rows.
    let read = |policy: BadRows| {
        let path = path.clone();
        async move {
            let session = new_session();
            let counted = session
                .read_csv_checked(&path, &policy)
                .await
                .expect("planned")
                .count()
                .await;
            (counted, session.bad_rows())
        }
    };

    // By default: the first bad row fails the job, named by file and line.
    let err = read(BadRows::Fail)
        .await
        .0
        .expect_err("a bad row fails the job");
    let text = err.to_string();
    let at = text.find("sales.csv:").expect("names the file") + "sales.csv:".len();
    let line: usize = text[at..]
        .split(':')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("names the line: {text}"));
    assert!(line >= 2 && line <= lines.len(), "{text}");
    // DataFusion's reader, the default, fails on the first row with a missing field and
    // names its line (counted here from the file itself).
    let short = lines
        .iter()
        .position(|l| l.split(',').count() != 9)
        .expect("a short row")
        + 1;
    let session = new_session();
    let err = session.read_csv(&path).await.err().expect("fails too");
    assert!(
        err.to_string()
            .contains(&format!("sales.csv:{short}: expected 9 fields, found 8")),
        "{err} (line {short})"
    );

    // Skip: every other row, and the count of the bad ones.
    let (rows, bad) = read(BadRows::Skip).await;
    assert_eq!(rows.expect("runs"), 20_000 - dirty);
    assert_eq!(bad, dirty);

    // Quarantine: the bad rows with their file, line and reason.
    let quarantine = dir.path().join("quarantine");
    let (rows, bad) = read(BadRows::Quarantine(quarantine.clone())).await;
    assert_eq!(rows.expect("runs"), 20_000 - dirty);
    assert_eq!(bad, dirty);
    let mut quarantined = 0;
    for file in std::fs::read_dir(&quarantine).expect("a folder").flatten() {
        let mut reader = csv::Reader::from_path(file.path()).expect("a CSV");
        for record in reader.records() {
            let record = record.expect("a record");
            assert_eq!(&record[0], path.as_str());
            let line: usize = record[1].parse().expect("a line number");
            assert_eq!(lines[line - 1], record[3], "line {line}");
            let reason = &record[2];
            assert!(
                reason.starts_with("expected 9 fields")
                    || reason.contains("is not a Float64")
                    || reason.contains("is not a Date32"),
                "{reason}"
            );
            quarantined += 1;
        }
    }
    assert_eq!(quarantined, dirty);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_lines_fail_naming_file_and_line_or_are_skipped_or_quarantined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sales.json");
    let bad_lines = [50_u64, 120, 200];
    let mut text = String::new();
    for line in 1..=300_u64 {
        match line {
            50 => text.push_str("{\"id\": 50, \"price\": \"abc\", \"product\": \"p50\"}\n"),
            120 => text.push_str("{\"id\": 120, \"price\": 1.5\n"),
            200 => text.push_str("[200, 1.5]\n"),
            250 => text.push('\n'),
            _ => text.push_str(&format!(
                "{{\"id\": {line}, \"price\": {}.25, \"product\": \"p{line}\"}}\n",
                line % 40
            )),
        }
    }
    std::fs::write(&file, text).expect("written");
    let path = file.to_string_lossy().into_owned();
    let good = 300 - 1 - bad_lines.len() as u64;

    let err = new_session()
        .read_json_checked(&path, &BadRows::Fail)
        .await
        .expect("planned")
        .count()
        .await
        .expect_err("the first bad line fails the job");
    let message = err.to_string();
    assert!(
        message.contains(&format!("{path}:50: column price: 'abc' is not a Float64")),
        "{message}"
    );

    let session = new_session();
    let rows = session
        .read_json_checked(&path, &BadRows::Skip)
        .await
        .expect("planned")
        .count()
        .await
        .expect("skips");
    assert_eq!((rows, session.bad_rows()), (good, 3));

    let quarantine = dir.path().join("bad");
    let session = new_session();
    let rows = session
        .read_json_checked(&path, &BadRows::Quarantine(quarantine.clone()))
        .await
        .expect("planned")
        .count()
        .await
        .expect("quarantines");
    assert_eq!((rows, session.bad_rows()), (good, 3));
    let mut lines: Vec<u64> = Vec::new();
    for entry in std::fs::read_dir(&quarantine)
        .expect("quarantine folder")
        .flatten()
    {
        let mut reader = csv::Reader::from_path(entry.path()).expect("CSV");
        for record in reader.records() {
            let record = record.expect("record");
            assert_eq!(&record[0], path.as_str());
            lines.push(record[1].parse().expect("a line number"));
        }
    }
    lines.sort_unstable();
    assert_eq!(lines, bad_lines);

    // DataFusion's own reader (no policy) names the first line that is not JSON.
    let err = ember::TableSpec::new("sales", &path, None)
        .register(new_session().context())
        .await
        .expect_err("DataFusion cannot infer past line 120");
    assert!(
        err.to_string()
            .contains(&format!("{path}:120: invalid JSON")),
        "{err}"
    );
}
