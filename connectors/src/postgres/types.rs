//! Types between PostgreSQL and Arrow: a column's type (as `format_type` prints it) as an
//! Arrow type and the `SELECT` expression whose CSV text arrow's reader parses as that
//! type; and an Arrow type as the PostgreSQL type a written table's column gets.

use arrow::datatypes::{DataType, TimeUnit};

/// The Arrow type of a column of PostgreSQL type `pg` (`format_type` output) and the
/// expression to select for `quoted` (the quoted column name).
pub fn arrow_column(pg: &str, quoted: &str) -> (DataType, String) {
    let plain = || quoted.to_string();
    let base = pg.split('(').next().unwrap_or(pg).trim();
    match base {
        "smallint" => (DataType::Int16, plain()),
        "integer" => (DataType::Int32, plain()),
        "bigint" => (DataType::Int64, plain()),
        "real" => (DataType::Float32, plain()),
        "double precision" => (DataType::Float64, plain()),
        "boolean" => (DataType::Boolean, format!("{quoted}::text")),
        "date" => (DataType::Date32, plain()),
        "timestamp without time zone" => {
            (DataType::Timestamp(TimeUnit::Microsecond, None), plain())
        }
        "timestamp with time zone" => (
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            format!("to_char({quoted} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"),
        ),
        "numeric" => match precision_scale(pg) {
            Some((p, s)) if p <= 38 => (DataType::Decimal128(p, s), plain()),
            // No declared precision: any size, read as a double (Spark reads it as a
            // decimal of 38 digits, which such values can overflow).
            _ => (DataType::Float64, format!("{quoted}::float8")),
        },
        _ => (DataType::Utf8, format!("{quoted}::text")),
    }
}

/// `(precision, scale)` of `numeric(p,s)`.
fn precision_scale(pg: &str) -> Option<(u8, i8)> {
    let inner = pg.split_once('(')?.1.trim_end_matches(')');
    let (p, s) = inner.split_once(',').unwrap_or((inner, "0"));
    Some((p.trim().parse().ok()?, s.trim().parse().ok()?))
}

/// The PostgreSQL type a column of Arrow type `arrow` is written as; `None` for a type
/// with no column type here (lists, structs, maps).
pub fn postgres_type(arrow: &DataType) -> Option<String> {
    Some(match arrow {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "numeric(20,0)".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => format!("numeric({p},{s})"),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea".into(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_types_map_to_arrow_and_back() {
        assert_eq!(
            arrow_column("numeric(15,2)", "c").0,
            DataType::Decimal128(15, 2)
        );
        assert_eq!(
            arrow_column("numeric", "c"),
            (DataType::Float64, "c::float8".into())
        );
        assert_eq!(arrow_column("character varying(25)", "c").0, DataType::Utf8);
        assert_eq!(arrow_column("boolean", "c").1, "c::text");
        assert_eq!(arrow_column("date", "c").0, DataType::Date32);
        assert_eq!(
            postgres_type(&DataType::Decimal128(15, 2)).as_deref(),
            Some("numeric(15,2)")
        );
        assert_eq!(postgres_type(&DataType::Utf8View).as_deref(), Some("text"));
        assert_eq!(postgres_type(&DataType::Null), None);
    }
}
