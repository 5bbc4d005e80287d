//! The statistics of a Delta `add` action (`numRecords`, `minValues`, `maxValues`,
//! `nullCount`), read from a written Parquet file's footer: the row count, the null
//! counts of every top-level column, and bounds where they are exact in JSON (integers,
//! floats, dates, and strings of at most [`MAX_STRING_BOUND`] characters). Other bounds
//! are left out, which readers take as "unknown", never as wrong.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use datafusion::parquet::arrow::parquet_to_arrow_schema;
use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore};
use serde_json::{Map, Number, Value};

/// Strings longer than this get no bounds (a cut maximum would not bound the column).
pub const MAX_STRING_BOUND: usize = 64;

/// The stats JSON of the Parquet file at `path` (of `size` bytes) in `store`.
pub async fn file_stats(
    store: Arc<dyn ObjectStore>,
    path: &StorePath,
    size: u64,
) -> Result<String, String> {
    let object = ObjectMeta {
        location: path.clone(),
        last_modified: chrono::Utc::now(),
        size,
        e_tag: None,
        version: None,
    };
    let parquet = DFParquetMetadata::new(store.as_ref(), &object)
        .fetch_metadata()
        .await
        .map_err(|e| format!("reading the footer of {path}: {e}"))?;
    let schema = parquet_to_arrow_schema(
        parquet.file_metadata().schema_descr(),
        parquet.file_metadata().key_value_metadata(),
    )
    .map_err(|e| format!("reading the schema of {path}: {e}"))?;
    let schema = &schema;
    let groups = parquet.row_groups();
    let mut mins = Map::new();
    let mut maxes = Map::new();
    let mut nulls = Map::new();
    for field in schema.fields() {
        let Ok(converter) = StatisticsConverter::try_new(
            field.name(),
            schema,
            parquet.file_metadata().schema_descr(),
        ) else {
            continue;
        };
        if let Ok(counts) = converter.row_group_null_counts(groups)
            && counts.null_count() == 0
        {
            let total: u64 = counts.values().iter().sum();
            nulls.insert(field.name().clone(), Value::from(total));
        }
        if !bounded(field.data_type()) {
            continue;
        }
        if let Ok(values) = converter.row_group_mins(groups)
            && let Some(min) = fold(&values, std::cmp::Ordering::Less).and_then(|v| json(&v))
        {
            mins.insert(field.name().clone(), min);
        }
        if let Ok(values) = converter.row_group_maxes(groups)
            && let Some(max) = fold(&values, std::cmp::Ordering::Greater).and_then(|v| json(&v))
        {
            maxes.insert(field.name().clone(), max);
        }
    }
    let stats = serde_json::json!({
        "numRecords": parquet.file_metadata().num_rows(),
        "minValues": mins,
        "maxValues": maxes,
        "nullCount": nulls,
    });
    Ok(stats.to_string())
}

/// Whether bounds of `data_type` are written.
fn bounded(data_type: &DataType) -> bool {
    data_type.is_integer()
        || matches!(
            data_type,
            DataType::Float32
                | DataType::Float64
                | DataType::Date32
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
        )
}

/// The least (`Less`) or greatest (`Greater`) of the row groups' bounds; `None` when a
/// row group has none (the file's bound is then unknown).
fn fold(values: &ArrayRef, keep: std::cmp::Ordering) -> Option<ScalarValue> {
    if values.is_empty() || values.null_count() > 0 {
        return None;
    }
    let mut best: Option<ScalarValue> = None;
    for i in 0..values.len() {
        let value = ScalarValue::try_from_array(values, i).ok()?;
        best = match best {
            None => Some(value),
            Some(current) => match value.partial_cmp(&current)? {
                ordering if ordering == keep => Some(value),
                _ => Some(current),
            },
        };
    }
    best
}

/// `value` as Delta writes it in stats JSON, where that is exact.
fn json(value: &ScalarValue) -> Option<Value> {
    Some(match value {
        ScalarValue::Int8(Some(v)) => Value::from(*v),
        ScalarValue::Int16(Some(v)) => Value::from(*v),
        ScalarValue::Int32(Some(v)) => Value::from(*v),
        ScalarValue::Int64(Some(v)) => Value::from(*v),
        ScalarValue::UInt8(Some(v)) => Value::from(*v),
        ScalarValue::UInt16(Some(v)) => Value::from(*v),
        ScalarValue::UInt32(Some(v)) => Value::from(*v),
        ScalarValue::UInt64(Some(v)) => Value::from(*v),
        ScalarValue::Float32(Some(v)) => Value::Number(Number::from_f64(f64::from(*v))?),
        ScalarValue::Float64(Some(v)) => Value::Number(Number::from_f64(*v)?),
        ScalarValue::Date32(Some(days)) => {
            let date = chrono::NaiveDate::from_num_days_from_ce_opt(days.checked_add(719_163)?)?;
            Value::from(date.format("%Y-%m-%d").to_string())
        }
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
            if s.chars().count() <= MAX_STRING_BOUND =>
        {
            Value::from(s.clone())
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_in_json_are_exact_or_absent() {
        assert_eq!(json(&ScalarValue::Int64(Some(-3))), Some(Value::from(-3)));
        assert_eq!(
            json(&ScalarValue::Date32(Some(0))),
            Some(Value::from("1970-01-01"))
        );
        assert_eq!(json(&ScalarValue::Float64(Some(f64::NAN))), None);
        assert_eq!(json(&ScalarValue::Utf8(Some("x".repeat(65)))), None);
        assert_eq!(json(&ScalarValue::Decimal128(Some(1), 10, 2)), None);
    }

    #[test]
    fn folds_row_group_bounds() {
        let values: ArrayRef = Arc::new(arrow::array::Int32Array::from(vec![5, 2, 9]));
        assert_eq!(
            fold(&values, std::cmp::Ordering::Less),
            Some(ScalarValue::Int32(Some(2)))
        );
        assert_eq!(
            fold(&values, std::cmp::Ordering::Greater),
            Some(ScalarValue::Int32(Some(9)))
        );
        let gaps: ArrayRef = Arc::new(arrow::array::Int32Array::from(vec![Some(1), None]));
        assert_eq!(fold(&gaps, std::cmp::Ordering::Less), None);
    }
}
