//! Per-table batch builders: turn `tpchgen` rows into Arrow record batches.
//!
//! The [`BatchBuilder`] trait and the small column helpers shared by the table
//! builders live in `columns`; the builders in the other submodules. Each builder owns one
//! Arrow array builder per column, in the order of the table's schema in
//! [`super::schema`]. Rows go in with [`BatchBuilder::append`];
//! [`BatchBuilder::finish`] hands out a `RecordBatch` and leaves the
//! builder empty for the next batch.

mod columns;
mod parts;
mod reference;
mod sales;

pub(crate) use parts::{PartBatch, PartSuppBatch};
pub(crate) use reference::{CustomerBatch, NationBatch, RegionBatch, SupplierBatch};
pub(crate) use sales::{LineItemBatch, OrdersBatch};

pub(crate) use columns::BatchBuilder;
