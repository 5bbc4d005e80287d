//! Compacting string and binary view columns before they are written.
//!
//! A `Utf8View` or `BinaryView` column that was filtered, taken or sliced out of a larger
//! one still points into the larger column's data buffers, and Arrow IPC writes those
//! buffers whole (it cannot tell which bytes the views use). A hash shuffle that splits a
//! batch in two would write every string twice, and an aggregate's output slices would
//! each carry the strings of all its groups. Compacting first writes only the bytes that
//! rows of the batch reference: a copy of the strings is far cheaper than compressing,
//! writing and reading the rest.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use datafusion::error::Result;

/// Data buffers at most this much larger than what the views use are written as they are.
const SLACK: f64 = 1.2;

/// `batch` with every top-level view column whose data buffers hold notably more than its
/// rows reference rewritten into dense buffers; the batch itself when none does.
pub(crate) fn compact_views(batch: RecordBatch) -> Result<RecordBatch> {
    let mut columns: Option<Vec<ArrayRef>> = None;
    for (index, column) in batch.columns().iter().enumerate() {
        let compacted = match column.data_type() {
            DataType::Utf8View => {
                let array = column.as_string_view();
                is_sparse(array.data_buffers(), array.total_buffer_bytes_used())
                    .then(|| Arc::new(array.gc()) as ArrayRef)
            }
            DataType::BinaryView => {
                let array = column.as_binary_view();
                is_sparse(array.data_buffers(), array.total_buffer_bytes_used())
                    .then(|| Arc::new(array.gc()) as ArrayRef)
            }
            _ => None,
        };
        if let Some(compacted) = compacted {
            columns.get_or_insert_with(|| batch.columns().to_vec())[index] = compacted;
        }
    }
    match columns {
        Some(columns) => Ok(RecordBatch::try_new(batch.schema(), columns)?),
        None => Ok(batch),
    }
}

fn is_sparse(buffers: &[arrow::buffer::Buffer], used: usize) -> bool {
    let held: usize = buffers.iter().map(|b| b.len()).sum();
    held > 0 && held as f64 > used as f64 * SLACK
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringViewArray};
    use arrow::datatypes::{Field, Schema};

    fn batch_of(strings: StringViewArray) -> RecordBatch {
        let ids = Int32Array::from_iter_values(0..strings.len() as i32);
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("name", DataType::Utf8View, true),
        ]);
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(ids), Arc::new(strings)])
            .expect("valid batch")
    }

    fn held_bytes(batch: &RecordBatch) -> usize {
        batch
            .column(1)
            .as_string_view()
            .data_buffers()
            .iter()
            .map(|b| b.len())
            .sum()
    }

    #[test]
    fn a_slice_of_long_strings_keeps_only_its_own_bytes() {
        let strings: StringViewArray = (0..1000)
            .map(|i| Some(format!("a string longer than twelve bytes, number {i}")))
            .collect();
        let sliced = batch_of(strings).slice(10, 10);
        let before = held_bytes(&sliced);
        let compacted = compact_views(sliced.clone()).expect("compacts");
        assert!(
            held_bytes(&compacted) * 50 < before,
            "{} vs {before}",
            held_bytes(&compacted)
        );
        assert_eq!(compacted, sliced, "same values");
    }

    #[test]
    fn dense_columns_are_left_alone() {
        let strings: StringViewArray = (0..100)
            .map(|i| Some(format!("another string longer than twelve bytes {i}")))
            .collect();
        let batch = batch_of(strings);
        let compacted = compact_views(batch.clone()).expect("compacts");
        let before = batch.column(1).as_string_view().data_buffers()[0].as_ptr();
        let after = compacted.column(1).as_string_view().data_buffers()[0].as_ptr();
        assert_eq!(before, after, "no copy of a dense column");
    }
}
