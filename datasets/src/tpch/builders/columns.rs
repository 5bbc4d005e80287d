//! Column helpers shared by the table builders: the [`BatchBuilder`] trait and the appends
//! and finishes of TPC-H's decimal, date and text values. A leaf of `builders`.

use std::fmt::{Display, Write as _};
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Builder, Decimal128Builder, Int64Builder, StringBuilder};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use tpchgen::dates::TPCHDate;
use tpchgen::decimal::TPCHDecimal;

use crate::tpch::schema::{DECIMAL_PRECISION, DECIMAL_SCALE};

/// Accumulates rows of type `R` and emits them as record batches.
pub(crate) trait BatchBuilder<R> {
    /// The schema of the batches this builder emits.
    fn schema(&self) -> SchemaRef;
    /// Adds one row.
    fn append(&mut self, row: R);
    /// Rows appended since the last [`BatchBuilder::finish`].
    fn len(&self) -> usize;
    /// Emits the appended rows as one batch and empties the builder.
    fn finish(&mut self) -> Result<RecordBatch, ArrowError>;
}

/// Appends a value through its `Display` impl, without an extra allocation.
pub(crate) fn append_display(builder: &mut StringBuilder, value: impl Display) {
    // `GenericStringBuilder`'s `fmt::Write` impl never fails, and tpchgen's
    // `Display` impls only forward to `write!`; nothing to report here.
    let _ = write!(builder, "{value}");
    builder.append_value("");
}

/// Appends a TPC-H decimal (hundredths) as a `Decimal128(15, 2)` value.
pub(crate) fn append_decimal(builder: &mut Decimal128Builder, value: TPCHDecimal) {
    builder.append_value(i128::from(value.into_inner()));
}

/// Appends a TPC-H date as days since 1970-01-01.
pub(crate) fn append_date(builder: &mut Date32Builder, value: TPCHDate) {
    builder.append_value(value.to_unix_epoch());
}

/// Finishes a string column.
pub(crate) fn finish_str(builder: &mut StringBuilder) -> ArrayRef {
    Arc::new(builder.finish())
}

/// Finishes an `Int64` column.
pub(crate) fn finish_i64(builder: &mut Int64Builder) -> ArrayRef {
    Arc::new(builder.finish())
}

/// Finishes a `Date32` column.
pub(crate) fn finish_date(builder: &mut Date32Builder) -> ArrayRef {
    Arc::new(builder.finish())
}

/// Finishes a decimal column as `Decimal128(15, 2)`.
pub(crate) fn finish_decimal(builder: &mut Decimal128Builder) -> Result<ArrayRef, ArrowError> {
    let array = builder
        .finish()
        .with_precision_and_scale(DECIMAL_PRECISION, DECIMAL_SCALE)?;
    Ok(Arc::new(array))
}
