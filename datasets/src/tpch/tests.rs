//! Unit tests of TPC-H generation: row counts, layout, types and options.

use std::error::Error;
use std::fs::{self, File};
use std::path::Path;

use arrow::array::{Array, Date32Array};
use arrow::datatypes::DataType;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tpchgen::dates::{MIN_GENERATE_DATE, TPCHDate};

use super::{SUCCESS_MARKER, TpchOptions, TpchTable, generate_tpch, tpch_is_complete, tpch_tables};
use crate::{DatasetError, tpch_schema};

type TestResult = Result<(), Box<dyn Error>>;

/// 1992-01-01 as days since 1970-01-01.
const DAYS_1992_01_01: i32 = 8035;

/// Files in `dir` whose names start with a dot (temporary files).
fn hidden_files(dir: &Path) -> Result<Vec<String>, Box<dyn Error>> {
    let mut hidden = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            hidden.push(name);
        }
    }
    Ok(hidden)
}

#[test]
fn tpch_date_epoch_matches_date32() {
    assert_eq!(
        TPCHDate::new(MIN_GENERATE_DATE).to_unix_epoch(),
        DAYS_1992_01_01
    );
}

#[test]
fn table_names_match_enum() {
    let names: Vec<&str> = TpchTable::ALL.iter().map(|table| table.name()).collect();
    assert_eq!(names, tpch_tables());
    for name in tpch_tables() {
        assert_eq!(TpchTable::from_name(name).map(TpchTable::name), Some(*name));
    }
    assert!(tpch_schema("nope").is_none());
    assert_eq!(
        tpch_schema("lineitem").map(|schema| schema.fields().len()),
        Some(16)
    );
}

#[test]
fn generates_sf_001_in_two_parts() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("tpch");
    let summary = generate_tpch(&TpchOptions::new(0.01, &out).with_parts(2))?;

    let expected: [(&str, u64); 7] = [
        ("region", 5),
        ("nation", 25),
        ("supplier", 100),
        ("part", 2_000),
        ("partsupp", 8_000),
        ("customer", 1_500),
        ("orders", 15_000),
    ];
    for (table, rows) in expected {
        assert_eq!(summary.rows(table), Some(rows), "rows of {table}");
    }
    let lineitem = summary.rows("lineitem").ok_or("no lineitem in summary")?;
    assert!(
        (59_000..=61_500).contains(&lineitem),
        "lineitem rows: {lineitem}"
    );

    // Layout: two files per scaled table, one for region and nation, no
    // temporary files left, and the marker.
    for table in TpchTable::ALL {
        let dir = out.join(table.name());
        let files = if matches!(table, TpchTable::Region | TpchTable::Nation) {
            1
        } else {
            2
        };
        for index in 0..files {
            assert!(
                dir.join(format!("part-{index}.parquet")).is_file(),
                "{table:?} {index}"
            );
        }
        assert!(
            !dir.join(format!("part-{files}.parquet")).exists(),
            "{table:?}"
        );
        assert_eq!(hidden_files(&dir)?, Vec::<String>::new(), "{table:?}");
    }
    assert!(out.join(SUCCESS_MARKER).is_file());
    assert!(tpch_is_complete(&out));

    // Read lineitem back: types as promised, dates from 1992 on, and the two
    // files add up to the summary.
    let mut rows_read = 0u64;
    let mut min_ship = i32::MAX;
    for index in 0..2 {
        let path = out.join("lineitem").join(format!("part-{index}.parquet"));
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path)?)?;
        let schema = builder.schema().clone();
        let field_type = |name: &str| -> Result<DataType, Box<dyn Error>> {
            Ok(schema.field_with_name(name)?.data_type().clone())
        };
        assert_eq!(field_type("l_orderkey")?, DataType::Int64);
        assert_eq!(field_type("l_linenumber")?, DataType::Int64);
        assert_eq!(field_type("l_quantity")?, DataType::Decimal128(15, 2));
        assert_eq!(field_type("l_extendedprice")?, DataType::Decimal128(15, 2));
        assert_eq!(field_type("l_shipdate")?, DataType::Date32);
        assert_eq!(field_type("l_returnflag")?, DataType::Utf8);
        assert!(schema.fields().iter().all(|field| !field.is_nullable()));

        for batch in builder.build()? {
            let batch = batch?;
            rows_read += batch.num_rows() as u64;
            let ship = batch
                .column_by_name("l_shipdate")
                .and_then(|column| column.as_any().downcast_ref::<Date32Array>())
                .ok_or("l_shipdate is not a Date32 column")?;
            assert_eq!(ship.null_count(), 0);
            if let Some(min) = ship.values().iter().min() {
                min_ship = min_ship.min(*min);
            }
        }
    }
    assert_eq!(rows_read, lineitem);
    assert!(min_ship >= DAYS_1992_01_01, "min l_shipdate {min_ship}");

    // Without the marker the folder no longer reads as complete.
    fs::remove_file(out.join(SUCCESS_MARKER))?;
    assert!(!tpch_is_complete(&out));
    Ok(())
}

#[test]
fn rerun_replaces_files_of_an_earlier_run() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path();
    generate_tpch(&TpchOptions::new(0.001, out).with_parts(3))?;
    assert!(out.join("orders").join("part-2.parquet").is_file());

    let summary = generate_tpch(&TpchOptions::new(0.001, out))?;
    assert!(!out.join("orders").join("part-2.parquet").exists());
    assert_eq!(summary.rows("orders"), Some(1_500));
    assert!(tpch_is_complete(out));
    Ok(())
}

#[test]
fn empty_folder_is_not_complete() -> TestResult {
    let tmp = tempfile::tempdir()?;
    assert!(!tpch_is_complete(tmp.path()));
    assert!(!tpch_is_complete(&tmp.path().join("missing")));
    Ok(())
}

/// The option named by an `InvalidOption` error, if that is what `result` is.
fn invalid_option<T>(result: Result<T, DatasetError>) -> Option<&'static str> {
    match result {
        Err(DatasetError::InvalidOption { option, .. }) => Some(option),
        _ => None,
    }
}

#[test]
fn rejects_invalid_options() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("never-created");

    for scale_factor in [0.0, -1.0, f64::NAN, f64::INFINITY, 0.00001] {
        let result = generate_tpch(&TpchOptions::new(scale_factor, &out));
        assert_eq!(
            invalid_option(result),
            Some("scale_factor"),
            "{scale_factor}"
        );
    }
    let result = generate_tpch(&TpchOptions::new(0.01, &out).with_parts(0));
    assert_eq!(invalid_option(result), Some("parts"));
    let result = generate_tpch(&TpchOptions::new(0.01, ""));
    assert_eq!(invalid_option(result), Some("out_dir"));

    assert!(
        !out.exists(),
        "validation must run before anything is written"
    );
    Ok(())
}

#[test]
fn progress_counts_every_file_up_to_the_total() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let calls = std::sync::Mutex::new(Vec::new());
    let summary = super::generate_tpch_with_progress(
        &TpchOptions::new(0.001, tmp.path()).with_parts(2),
        &|done, total| calls.lock().expect("lock").push((done, total)),
    )?;
    let mut calls = calls.into_inner().expect("lock");
    calls.sort_unstable();
    let files: usize = summary.tables.iter().map(|t| t.files).sum();
    // Six scaled tables in 2 files each, region and nation in one.
    assert_eq!(files, 14);
    assert_eq!(calls.len(), files);
    assert_eq!(calls.last(), Some(&(files, files)));
    assert!(calls.iter().enumerate().all(|(i, c)| *c == (i + 1, files)));
    Ok(())
}
