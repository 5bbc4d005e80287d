//! Batch builders of the part tables: `part` and `partsupp`.

use std::sync::Arc;

use arrow::array::{Decimal128Builder, Int64Builder, StringBuilder};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use tpchgen::generators::{Part, PartSupp};

use super::columns::{
    BatchBuilder, append_decimal, append_display, finish_decimal, finish_i64, finish_str,
};
use crate::tpch::schema;

/// Builds `part` batches.
pub(crate) struct PartBatch {
    schema: SchemaRef,
    rows: usize,
    p_partkey: Int64Builder,
    p_name: StringBuilder,
    p_mfgr: StringBuilder,
    p_brand: StringBuilder,
    p_type: StringBuilder,
    p_size: Int64Builder,
    p_container: StringBuilder,
    p_retailprice: Decimal128Builder,
    p_comment: StringBuilder,
}

impl PartBatch {
    pub(crate) fn new() -> Self {
        Self {
            schema: schema::part(),
            rows: 0,
            p_partkey: Int64Builder::new(),
            p_name: StringBuilder::new(),
            p_mfgr: StringBuilder::new(),
            p_brand: StringBuilder::new(),
            p_type: StringBuilder::new(),
            p_size: Int64Builder::new(),
            p_container: StringBuilder::new(),
            p_retailprice: Decimal128Builder::new(),
            p_comment: StringBuilder::new(),
        }
    }
}

impl<'a> BatchBuilder<Part<'a>> for PartBatch {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn append(&mut self, row: Part<'a>) {
        self.p_partkey.append_value(row.p_partkey);
        append_display(&mut self.p_name, &row.p_name);
        append_display(&mut self.p_mfgr, row.p_mfgr);
        append_display(&mut self.p_brand, row.p_brand);
        self.p_type.append_value(row.p_type);
        self.p_size.append_value(i64::from(row.p_size));
        self.p_container.append_value(row.p_container);
        append_decimal(&mut self.p_retailprice, row.p_retailprice);
        self.p_comment.append_value(row.p_comment);
        self.rows += 1;
    }

    fn len(&self) -> usize {
        self.rows
    }

    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let columns = vec![
            finish_i64(&mut self.p_partkey),
            finish_str(&mut self.p_name),
            finish_str(&mut self.p_mfgr),
            finish_str(&mut self.p_brand),
            finish_str(&mut self.p_type),
            finish_i64(&mut self.p_size),
            finish_str(&mut self.p_container),
            finish_decimal(&mut self.p_retailprice)?,
            finish_str(&mut self.p_comment),
        ];
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
    }
}

/// Builds `partsupp` batches.
pub(crate) struct PartSuppBatch {
    schema: SchemaRef,
    rows: usize,
    ps_partkey: Int64Builder,
    ps_suppkey: Int64Builder,
    ps_availqty: Int64Builder,
    ps_supplycost: Decimal128Builder,
    ps_comment: StringBuilder,
}

impl PartSuppBatch {
    pub(crate) fn new() -> Self {
        Self {
            schema: schema::partsupp(),
            rows: 0,
            ps_partkey: Int64Builder::new(),
            ps_suppkey: Int64Builder::new(),
            ps_availqty: Int64Builder::new(),
            ps_supplycost: Decimal128Builder::new(),
            ps_comment: StringBuilder::new(),
        }
    }
}

impl<'a> BatchBuilder<PartSupp<'a>> for PartSuppBatch {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn append(&mut self, row: PartSupp<'a>) {
        self.ps_partkey.append_value(row.ps_partkey);
        self.ps_suppkey.append_value(row.ps_suppkey);
        self.ps_availqty.append_value(i64::from(row.ps_availqty));
        append_decimal(&mut self.ps_supplycost, row.ps_supplycost);
        self.ps_comment.append_value(row.ps_comment);
        self.rows += 1;
    }

    fn len(&self) -> usize {
        self.rows
    }

    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let columns = vec![
            finish_i64(&mut self.ps_partkey),
            finish_i64(&mut self.ps_suppkey),
            finish_i64(&mut self.ps_availqty),
            finish_decimal(&mut self.ps_supplycost)?,
            finish_str(&mut self.ps_comment),
        ];
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
    }
}
