//! Batch builders of the reference tables: `region`, `nation`, `supplier`
//! and `customer`.

use std::sync::Arc;

use arrow::array::{Decimal128Builder, Int64Builder, StringBuilder};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use tpchgen::generators::{Customer, Nation, Region, Supplier};

use super::columns::{
    BatchBuilder, append_decimal, append_display, finish_decimal, finish_i64, finish_str,
};
use crate::tpch::schema;

/// Builds `region` batches.
pub(crate) struct RegionBatch {
    schema: SchemaRef,
    rows: usize,
    r_regionkey: Int64Builder,
    r_name: StringBuilder,
    r_comment: StringBuilder,
}

impl RegionBatch {
    pub(crate) fn new() -> Self {
        Self {
            schema: schema::region(),
            rows: 0,
            r_regionkey: Int64Builder::new(),
            r_name: StringBuilder::new(),
            r_comment: StringBuilder::new(),
        }
    }
}

impl<'a> BatchBuilder<Region<'a>> for RegionBatch {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn append(&mut self, row: Region<'a>) {
        self.r_regionkey.append_value(row.r_regionkey);
        self.r_name.append_value(row.r_name);
        self.r_comment.append_value(row.r_comment);
        self.rows += 1;
    }

    fn len(&self) -> usize {
        self.rows
    }

    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let columns = vec![
            finish_i64(&mut self.r_regionkey),
            finish_str(&mut self.r_name),
            finish_str(&mut self.r_comment),
        ];
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
    }
}

/// Builds `nation` batches.
pub(crate) struct NationBatch {
    schema: SchemaRef,
    rows: usize,
    n_nationkey: Int64Builder,
    n_name: StringBuilder,
    n_regionkey: Int64Builder,
    n_comment: StringBuilder,
}

impl NationBatch {
    pub(crate) fn new() -> Self {
        Self {
            schema: schema::nation(),
            rows: 0,
            n_nationkey: Int64Builder::new(),
            n_name: StringBuilder::new(),
            n_regionkey: Int64Builder::new(),
            n_comment: StringBuilder::new(),
        }
    }
}

impl<'a> BatchBuilder<Nation<'a>> for NationBatch {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn append(&mut self, row: Nation<'a>) {
        self.n_nationkey.append_value(row.n_nationkey);
        self.n_name.append_value(row.n_name);
        self.n_regionkey.append_value(row.n_regionkey);
        self.n_comment.append_value(row.n_comment);
        self.rows += 1;
    }

    fn len(&self) -> usize {
        self.rows
    }

    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let columns = vec![
            finish_i64(&mut self.n_nationkey),
            finish_str(&mut self.n_name),
            finish_i64(&mut self.n_regionkey),
            finish_str(&mut self.n_comment),
        ];
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
    }
}

/// Builds `supplier` batches.
pub(crate) struct SupplierBatch {
    schema: SchemaRef,
    rows: usize,
    s_suppkey: Int64Builder,
    s_name: StringBuilder,
    s_address: StringBuilder,
    s_nationkey: Int64Builder,
    s_phone: StringBuilder,
    s_acctbal: Decimal128Builder,
    s_comment: StringBuilder,
}

impl SupplierBatch {
    pub(crate) fn new() -> Self {
        Self {
            schema: schema::supplier(),
            rows: 0,
            s_suppkey: Int64Builder::new(),
            s_name: StringBuilder::new(),
            s_address: StringBuilder::new(),
            s_nationkey: Int64Builder::new(),
            s_phone: StringBuilder::new(),
            s_acctbal: Decimal128Builder::new(),
            s_comment: StringBuilder::new(),
        }
    }
}

impl BatchBuilder<Supplier> for SupplierBatch {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn append(&mut self, row: Supplier) {
        self.s_suppkey.append_value(row.s_suppkey);
        append_display(&mut self.s_name, row.s_name);
        append_display(&mut self.s_address, &row.s_address);
        self.s_nationkey.append_value(row.s_nationkey);
        append_display(&mut self.s_phone, &row.s_phone);
        append_decimal(&mut self.s_acctbal, row.s_acctbal);
        self.s_comment.append_value(&row.s_comment);
        self.rows += 1;
    }

    fn len(&self) -> usize {
        self.rows
    }

    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let columns = vec![
            finish_i64(&mut self.s_suppkey),
            finish_str(&mut self.s_name),
            finish_str(&mut self.s_address),
            finish_i64(&mut self.s_nationkey),
            finish_str(&mut self.s_phone),
            finish_decimal(&mut self.s_acctbal)?,
            finish_str(&mut self.s_comment),
        ];
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
    }
}

/// Builds `customer` batches.
pub(crate) struct CustomerBatch {
    schema: SchemaRef,
    rows: usize,
    c_custkey: Int64Builder,
    c_name: StringBuilder,
    c_address: StringBuilder,
    c_nationkey: Int64Builder,
    c_phone: StringBuilder,
    c_acctbal: Decimal128Builder,
    c_mktsegment: StringBuilder,
    c_comment: StringBuilder,
}

impl CustomerBatch {
    pub(crate) fn new() -> Self {
        Self {
            schema: schema::customer(),
            rows: 0,
            c_custkey: Int64Builder::new(),
            c_name: StringBuilder::new(),
            c_address: StringBuilder::new(),
            c_nationkey: Int64Builder::new(),
            c_phone: StringBuilder::new(),
            c_acctbal: Decimal128Builder::new(),
            c_mktsegment: StringBuilder::new(),
            c_comment: StringBuilder::new(),
        }
    }
}

impl<'a> BatchBuilder<Customer<'a>> for CustomerBatch {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn append(&mut self, row: Customer<'a>) {
        self.c_custkey.append_value(row.c_custkey);
        append_display(&mut self.c_name, row.c_name);
        append_display(&mut self.c_address, &row.c_address);
        self.c_nationkey.append_value(row.c_nationkey);
        append_display(&mut self.c_phone, &row.c_phone);
        append_decimal(&mut self.c_acctbal, row.c_acctbal);
        self.c_mktsegment.append_value(row.c_mktsegment);
        self.c_comment.append_value(row.c_comment);
        self.rows += 1;
    }

    fn len(&self) -> usize {
        self.rows
    }

    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let columns = vec![
            finish_i64(&mut self.c_custkey),
            finish_str(&mut self.c_name),
            finish_str(&mut self.c_address),
            finish_i64(&mut self.c_nationkey),
            finish_str(&mut self.c_phone),
            finish_decimal(&mut self.c_acctbal)?,
            finish_str(&mut self.c_mktsegment),
            finish_str(&mut self.c_comment),
        ];
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
    }
}
