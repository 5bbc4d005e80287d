//! Fuzz target: the CSV reader paths. Any bytes go through Ember's checked reader (schema
//! inference, then every record checked, bad rows failing or skipped) and through Arrow's
//! CSV reader with an inferred schema, which DataFusion's CSV tables use. Neither may
//! panic, and the two policies of the checked reader must agree: when failing finds no
//! bad row, skipping keeps the same rows and counts none.

#![no_main]

use std::io::Cursor;
use std::sync::Arc;

use arrow::csv::ReaderBuilder;
use arrow::csv::reader::Format;
use ember::bad_rows::{BadRows, parse_csv_checked};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let failing = parse_csv_checked("fuzz.csv", data, &BadRows::Fail);
    let skipping = parse_csv_checked("fuzz.csv", data, &BadRows::Skip);
    if let (Ok((kept, 0)), Ok((also_kept, skipped))) = (&failing, &skipping) {
        assert_eq!(*skipped, 0);
        assert_eq!(kept, also_kept);
    }
    if let (Err(_), Ok((_, skipped))) = (&failing, &skipping) {
        // Failing stops only at a bad row, and skipping counts that row.
        assert!(*skipped > 0, "failed without a bad row to skip");
    }

    let format = Format::default().with_header(true);
    if let Ok((schema, _)) = format.infer_schema(Cursor::new(data), Some(100)) {
        if let Ok(reader) = ReaderBuilder::new(Arc::new(schema))
            .with_format(format)
            .with_batch_size(64)
            .build(Cursor::new(data))
        {
            for batch in reader {
                if batch.is_err() {
                    break;
                }
            }
        }
    }
});
