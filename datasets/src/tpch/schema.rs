//! Arrow schemas of the eight TPC-H tables as Ember writes them.
//!
//! Keys and other integers are `Int64`, money, quantities, discounts and
//! taxes are `Decimal128(15, 2)`, dates are `Date32` and everything else
//! (the one-letter flags included) is `Utf8`. No column is nullable.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// Precision of TPC-H's decimal columns.
pub(crate) const DECIMAL_PRECISION: u8 = 15;
/// Scale of TPC-H's decimal columns (hundredths).
pub(crate) const DECIMAL_SCALE: i8 = 2;

const I64: DataType = DataType::Int64;
const STR: DataType = DataType::Utf8;
const DATE: DataType = DataType::Date32;
const DEC: DataType = DataType::Decimal128(DECIMAL_PRECISION, DECIMAL_SCALE);

/// Builds a schema of non-nullable columns.
fn schema(columns: &[(&str, DataType)]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, data_type)| Field::new(*name, data_type.clone(), false))
        .collect();
    Arc::new(Schema::new(fields))
}

/// Schema of `region`.
pub(crate) fn region() -> SchemaRef {
    schema(&[("r_regionkey", I64), ("r_name", STR), ("r_comment", STR)])
}

/// Schema of `nation`.
pub(crate) fn nation() -> SchemaRef {
    schema(&[
        ("n_nationkey", I64),
        ("n_name", STR),
        ("n_regionkey", I64),
        ("n_comment", STR),
    ])
}

/// Schema of `part`.
pub(crate) fn part() -> SchemaRef {
    schema(&[
        ("p_partkey", I64),
        ("p_name", STR),
        ("p_mfgr", STR),
        ("p_brand", STR),
        ("p_type", STR),
        ("p_size", I64),
        ("p_container", STR),
        ("p_retailprice", DEC),
        ("p_comment", STR),
    ])
}

/// Schema of `supplier`.
pub(crate) fn supplier() -> SchemaRef {
    schema(&[
        ("s_suppkey", I64),
        ("s_name", STR),
        ("s_address", STR),
        ("s_nationkey", I64),
        ("s_phone", STR),
        ("s_acctbal", DEC),
        ("s_comment", STR),
    ])
}

/// Schema of `partsupp`.
pub(crate) fn partsupp() -> SchemaRef {
    schema(&[
        ("ps_partkey", I64),
        ("ps_suppkey", I64),
        ("ps_availqty", I64),
        ("ps_supplycost", DEC),
        ("ps_comment", STR),
    ])
}

/// Schema of `customer`.
pub(crate) fn customer() -> SchemaRef {
    schema(&[
        ("c_custkey", I64),
        ("c_name", STR),
        ("c_address", STR),
        ("c_nationkey", I64),
        ("c_phone", STR),
        ("c_acctbal", DEC),
        ("c_mktsegment", STR),
        ("c_comment", STR),
    ])
}

/// Schema of `orders`.
pub(crate) fn orders() -> SchemaRef {
    schema(&[
        ("o_orderkey", I64),
        ("o_custkey", I64),
        ("o_orderstatus", STR),
        ("o_totalprice", DEC),
        ("o_orderdate", DATE),
        ("o_orderpriority", STR),
        ("o_clerk", STR),
        ("o_shippriority", I64),
        ("o_comment", STR),
    ])
}

/// Schema of `lineitem`.
pub(crate) fn lineitem() -> SchemaRef {
    schema(&[
        ("l_orderkey", I64),
        ("l_partkey", I64),
        ("l_suppkey", I64),
        ("l_linenumber", I64),
        ("l_quantity", DEC),
        ("l_extendedprice", DEC),
        ("l_discount", DEC),
        ("l_tax", DEC),
        ("l_returnflag", STR),
        ("l_linestatus", STR),
        ("l_shipdate", DATE),
        ("l_commitdate", DATE),
        ("l_receiptdate", DATE),
        ("l_shipinstruct", STR),
        ("l_shipmode", STR),
        ("l_comment", STR),
    ])
}
