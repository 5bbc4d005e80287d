//! Outputs and object stores: the commit protocol (staging, `_SUCCESS` last, `--mode`,
//! a failed job leaving the destination as it was), `memory://` stores, and a real
//! S3-compatible server (moto, on a loopback port) as input and output of a TPC-H query
//! and of the product-price pipeline.

use std::path::Path;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::UInt64Type;
use datafusion::error::DataFusionError;
use datafusion::prelude::col;
use ember::planner::WriteFormat;
use ember::{EmberConfig, FileFormat, Session, TableSpec, WriteMode};
use ember_examples::product_prices::{PriceSource, ReportForm, run_product_prices};
use ember_tests::{S3Server, key_value_schema, rows, rows_match, tpch_dir, tpch_query};

fn session(config: EmberConfig) -> Session {
    Session::new(EmberConfig {
        executors: 2,
        ..config
    })
    .expect("the cluster starts")
}

fn key_values(rows: i64, offset: i64) -> Vec<RecordBatch> {
    let batch = RecordBatch::try_new(
        key_value_schema(),
        vec![
            std::sync::Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i % 5))),
            std::sync::Arc::new(Int64Array::from_iter_values(offset..offset + rows)),
        ],
    )
    .expect("batch");
    vec![batch]
}

/// The names and sizes of the files in `dir`, sorted.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                    (e.file_name().to_string_lossy().into_owned(), size)
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

async fn count(session: &Session, path: &str) -> u64 {
    session
        .read_parquet(path)
        .await
        .expect("readable")
        .count()
        .await
        .expect("counted")
}

/// Fails on the batch holding value 7_777: a job that breaks in the middle of a write.
fn register_failing_function(session: &Session) {
    session
        .functions()
        .register_batch_fn("outputs_test.fail", key_value_schema(), |batch| {
            let values = batch
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| DataFusionError::Execution("values must be Int64".into()))?;
            if values.iter().flatten().any(|v| v == 7_777) {
                return Err(DataFusionError::Execution("value 7777 is poison".into()));
            }
            Ok(batch)
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_commit_whole_outputs_and_modes_decide_what_happens_to_existing_files() {
    let out = tempfile::tempdir().expect("temp dir");
    // Characters that URLs and object-store paths encode differently.
    let dest = out.path().join("run~1 %x").join("table");
    let dest_text = dest.to_string_lossy().into_owned();
    let session = session(EmberConfig::default());
    let data = |rows, offset| {
        session
            .from_batches(key_values(rows, offset))
            .and_then(|d| d.repartition(3))
            .expect("dataset")
    };

    // A first write: the files and the marker, nothing left in staging.
    let written = data(10_000, 0)
        .write_parquet(&dest_text)
        .await
        .expect("writes");
    assert_eq!(written.first_value::<UInt64Type>(), Some(10_000));
    let first = listing(&dest);
    let parquet = first
        .iter()
        .filter(|(n, _)| n.ends_with(".parquet"))
        .count();
    assert!((1..=3).contains(&parquet), "{first:?}");
    assert!(
        first.iter().any(|(n, size)| n == "_SUCCESS" && *size == 0),
        "{first:?}"
    );
    assert_eq!(
        listing(dest.parent().expect("a parent")).len(),
        1,
        "only the table: {:?}",
        listing(dest.parent().expect("a parent"))
    );
    assert_eq!(count(&session, &dest_text).await, 10_000);

    // The default mode refuses an existing destination and leaves it alone.
    let err = data(10, 0)
        .write_parquet(&dest_text)
        .await
        .expect_err("exists");
    assert!(err.to_string().contains("--mode"), "{err}");
    assert_eq!(listing(&dest), first);

    // Overwrite replaces; append adds.
    data(4_000, 100_000)
        .write(&dest_text, WriteFormat::Parquet, WriteMode::Overwrite)
        .await
        .expect("overwrites");
    let second = listing(&dest);
    assert!(
        first
            .iter()
            .all(|f| f.0 == "_SUCCESS" || !second.contains(f)),
        "{second:?}"
    );
    assert_eq!(count(&session, &dest_text).await, 4_000);
    data(1_000, 200_000)
        .write(&dest_text, WriteFormat::Parquet, WriteMode::Append)
        .await
        .expect("appends");
    assert_eq!(count(&session, &dest_text).await, 5_000);

    // A job that fails half-way leaves the destination exactly as it was, and no staging.
    register_failing_function(&session);
    let before = listing(&dest);
    let err = data(10_000, 0)
        .map_batches("outputs_test.fail")
        .expect("mapped")
        .write(&dest_text, WriteFormat::Parquet, WriteMode::Overwrite)
        .await
        .expect_err("the poison value fails the job");
    assert!(err.to_string().contains("poison"), "{err}");
    assert_eq!(listing(&dest), before);
    assert_eq!(
        listing(dest.parent().expect("a parent")).len(),
        1,
        "{:?}",
        listing(dest.parent().expect("a parent"))
    );

    // SQL's COPY goes through the same protocol, in CSV and JSON too.
    let csv_dest = out.path().join("csv");
    let copy = format!(
        "COPY (SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS t(id, name)) TO '{}' STORED AS CSV",
        csv_dest.display()
    );
    let copied = session.sql(&copy).await.expect("COPY runs");
    assert_eq!(copied.first_value::<UInt64Type>(), Some(2));
    let csv_files = listing(&csv_dest);
    assert!(
        csv_files.iter().any(|(n, _)| n.ends_with(".csv")),
        "{csv_files:?}"
    );
    assert!(
        csv_files.iter().any(|(n, _)| n == "_SUCCESS"),
        "{csv_files:?}"
    );
    let err = session.sql(&copy).await.expect_err("exists");
    assert!(err.to_string().contains("--mode"), "{err}");
    // A destination with the format's extension is one file, as DataFusion writes it.
    let single = out.path().join("one.parquet");
    let copy = format!(
        "COPY (SELECT * FROM (VALUES (1), (2), (3)) AS t(x)) TO '{}'",
        single.display()
    );
    session.sql(&copy).await.expect("COPY to a file");
    assert!(single.is_file(), "{single:?} is a file");
    assert_eq!(count(&session, &single.to_string_lossy()).await, 3);
    let err = session.sql(&copy).await.expect_err("exists");
    assert!(err.to_string().contains("--mode"), "{err}");
    let appending = Session::new(EmberConfig {
        executors: 2,
        output_mode: WriteMode::Append,
        ..EmberConfig::default()
    })
    .expect("the cluster starts");
    let err = appending.sql(&copy).await.expect_err("no append to a file");
    assert!(err.to_string().contains("cannot be appended"), "{err}");
    // An empty result is still one file, with the schema.
    let empty = out.path().join("empty.parquet");
    session
        .sql(&format!(
            "COPY (SELECT * FROM (VALUES (1)) AS t(x) WHERE x > 1) TO '{}'",
            empty.display()
        ))
        .await
        .expect("COPY of no rows");
    assert!(empty.is_file(), "{empty:?} is a file");
    assert_eq!(count(&session, &empty.to_string_lossy()).await, 0);
    let json_dest = out.path().join("json");
    data(50, 0)
        .write_json(&json_dest.to_string_lossy())
        .await
        .expect("JSON");
    let text: String = listing(&json_dest)
        .iter()
        .filter(|(n, _)| n.ends_with(".json"))
        .map(|(n, _)| std::fs::read_to_string(json_dest.join(n)).expect("readable"))
        .collect();
    assert_eq!(text.lines().count(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_urls_hold_outputs_that_read_back() {
    let session = session(EmberConfig::default());
    let written = session
        .from_batches(key_values(2_500, 0))
        .expect("dataset")
        .write_parquet("memory://outputs-test/numbers")
        .await
        .expect("written to memory");
    assert_eq!(written.first_value::<UInt64Type>(), Some(2_500));
    assert_eq!(
        count(&session, "memory://outputs-test/numbers").await,
        2_500
    );
    assert!(
        session
            .output_files("memory://outputs-test/numbers")
            .await
            .expect("listed")
            >= 2
    );
    let Err(err) = session.read_parquet("gopher://nowhere/x").await else {
        panic!("a gopher:// URL has no store");
    };
    assert!(err.to_string().contains("gopher"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_server_serves_as_input_and_output_of_a_tpch_query_and_a_pipeline() {
    let s3 = S3Server::shared();
    s3.create_bucket("ember");
    let mut config = EmberConfig::default();
    s3.configure(&mut config);
    let remote = session(config);
    let local = session(EmberConfig::default());

    // TPC-H tables copied into the bucket by Ember itself (S3 as output).
    let tables = ["customer", "orders", "lineitem"];
    for table in tables {
        let source = tpch_dir().join(table);
        let written = local_to_s3(&remote, &source, &format!("s3://ember/tpch/{table}")).await;
        assert!(written > 0, "{table}");
    }
    // Q3 (a three-way join, an aggregation and a sort) over the bucket and over the files.
    for table in tables {
        let url = format!("s3://ember/tpch/{table}");
        TableSpec::new(table, url, Some(FileFormat::Parquet))
            .register(remote.context())
            .await
            .expect("an S3 table registers");
        let path = tpch_dir().join(table);
        TableSpec::new(table, path.to_string_lossy(), Some(FileFormat::Parquet))
            .register(local.context())
            .await
            .expect("a local table registers");
    }
    let q3 = tpch_query(3);
    let from_s3 = remote.sql(&q3).await.expect("Q3 over S3");
    let from_files = local.sql(&q3).await.expect("Q3 over files");
    let (a, b) = (rows(&from_s3.batches), rows(&from_files.batches));
    assert!(!a.is_empty());
    assert!(rows_match(&a, &b), "{a:?}\nvs\n{b:?}");

    // The result written to the bucket and read back.
    let copy = format!(
        "COPY ({}) TO 's3://ember/results/q3' STORED AS PARQUET",
        q3.trim().trim_end_matches(';')
    );
    remote.sql(&copy).await.expect("COPY to S3");
    assert!(
        remote
            .output_files("s3://ember/results/q3")
            .await
            .expect("listed")
            >= 2
    );
    let back = remote
        .read_parquet("s3://ember/results/q3")
        .await
        .expect("readable")
        .sort(vec![
            col("revenue").sort(false, false),
            col("o_orderdate").sort(true, false),
        ])
        .expect("sorted")
        .collect()
        .await
        .expect("read back");
    assert!(rows_match(&rows(&back.batches), &b));

    // The product-price pipeline: input in the bucket, report written to the bucket.
    let products = tempfile::tempdir().expect("temp dir");
    ember::datasets::generate_products(&ember::datasets::ProductsOptions {
        rows: 20_000,
        out_dir: products.path().to_path_buf(),
        seed: 5,
        dirty_fraction: None,
        parts: 2,
    })
    .expect("products");
    for folder in ["products", "sales"] {
        local_to_s3(
            &remote,
            &products.path().join(folder),
            &format!("s3://ember/products/{folder}"),
        )
        .await;
    }
    let on_s3 = run_product_prices(
        &remote,
        &PriceSource::Products("s3://ember/products".into()),
        ReportForm::Sql,
        Some("s3://ember/prices"),
    )
    .await
    .expect("the pipeline runs over S3");
    let on_disk = run_product_prices(
        &local,
        &PriceSource::Products(products.path().to_path_buf()),
        ReportForm::Sql,
        None,
    )
    .await
    .expect("the pipeline runs over files");
    assert_eq!(on_s3.written.len(), 4);
    for ((name, a), (_, b)) in on_s3.tables.iter().zip(&on_disk.tables) {
        let (a, b) = (rows(&a.batches), rows(&b.batches));
        assert!(!a.is_empty(), "{name}");
        assert!(rows_match(&a, &b), "{name}: {a:?}\nvs\n{b:?}");
    }
    // A second run into the same prefix is refused (the default mode).
    let Err(err) = run_product_prices(
        &remote,
        &PriceSource::Products("s3://ember/products".into()),
        ReportForm::Sql,
        Some("s3://ember/prices"),
    )
    .await
    else {
        panic!("a second run into the same prefix must be refused");
    };
    assert!(err.to_string().contains("not empty"), "{err}");
}

/// Copies the Parquet folder `source` to `url` with an Ember job; returns the rows.
async fn local_to_s3(session: &Session, source: &Path, url: &str) -> u64 {
    session
        .read_parquet(&source.to_string_lossy())
        .await
        .expect("local Parquet")
        .write_parquet(url)
        .await
        .expect("written to S3")
        .first_value::<UInt64Type>()
        .unwrap_or(0)
}
