//! Batch builders of the sales tables: `orders` and `lineitem`.

use std::sync::Arc;

use arrow::array::{Date32Builder, Decimal128Builder, Int64Builder, StringBuilder};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use tpchgen::generators::{LineItem, Order};

use super::columns::{
    BatchBuilder, append_date, append_decimal, append_display, finish_date, finish_decimal,
    finish_i64, finish_str,
};
use crate::tpch::schema;

/// Builds `orders` batches.
pub(crate) struct OrdersBatch {
    schema: SchemaRef,
    rows: usize,
    o_orderkey: Int64Builder,
    o_custkey: Int64Builder,
    o_orderstatus: StringBuilder,
    o_totalprice: Decimal128Builder,
    o_orderdate: Date32Builder,
    o_orderpriority: StringBuilder,
    o_clerk: StringBuilder,
    o_shippriority: Int64Builder,
    o_comment: StringBuilder,
}

impl OrdersBatch {
    pub(crate) fn new() -> Self {
        Self {
            schema: schema::orders(),
            rows: 0,
            o_orderkey: Int64Builder::new(),
            o_custkey: Int64Builder::new(),
            o_orderstatus: StringBuilder::new(),
            o_totalprice: Decimal128Builder::new(),
            o_orderdate: Date32Builder::new(),
            o_orderpriority: StringBuilder::new(),
            o_clerk: StringBuilder::new(),
            o_shippriority: Int64Builder::new(),
            o_comment: StringBuilder::new(),
        }
    }
}

impl<'a> BatchBuilder<Order<'a>> for OrdersBatch {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn append(&mut self, row: Order<'a>) {
        self.o_orderkey.append_value(row.o_orderkey);
        self.o_custkey.append_value(row.o_custkey);
        self.o_orderstatus.append_value(row.o_orderstatus.as_str());
        append_decimal(&mut self.o_totalprice, row.o_totalprice);
        append_date(&mut self.o_orderdate, row.o_orderdate);
        self.o_orderpriority.append_value(row.o_orderpriority);
        append_display(&mut self.o_clerk, row.o_clerk);
        self.o_shippriority
            .append_value(i64::from(row.o_shippriority));
        self.o_comment.append_value(row.o_comment);
        self.rows += 1;
    }

    fn len(&self) -> usize {
        self.rows
    }

    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let columns = vec![
            finish_i64(&mut self.o_orderkey),
            finish_i64(&mut self.o_custkey),
            finish_str(&mut self.o_orderstatus),
            finish_decimal(&mut self.o_totalprice)?,
            finish_date(&mut self.o_orderdate),
            finish_str(&mut self.o_orderpriority),
            finish_str(&mut self.o_clerk),
            finish_i64(&mut self.o_shippriority),
            finish_str(&mut self.o_comment),
        ];
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
    }
}

/// Builds `lineitem` batches.
pub(crate) struct LineItemBatch {
    schema: SchemaRef,
    rows: usize,
    l_orderkey: Int64Builder,
    l_partkey: Int64Builder,
    l_suppkey: Int64Builder,
    l_linenumber: Int64Builder,
    l_quantity: Decimal128Builder,
    l_extendedprice: Decimal128Builder,
    l_discount: Decimal128Builder,
    l_tax: Decimal128Builder,
    l_returnflag: StringBuilder,
    l_linestatus: StringBuilder,
    l_shipdate: Date32Builder,
    l_commitdate: Date32Builder,
    l_receiptdate: Date32Builder,
    l_shipinstruct: StringBuilder,
    l_shipmode: StringBuilder,
    l_comment: StringBuilder,
}

impl LineItemBatch {
    pub(crate) fn new() -> Self {
        Self {
            schema: schema::lineitem(),
            rows: 0,
            l_orderkey: Int64Builder::new(),
            l_partkey: Int64Builder::new(),
            l_suppkey: Int64Builder::new(),
            l_linenumber: Int64Builder::new(),
            l_quantity: Decimal128Builder::new(),
            l_extendedprice: Decimal128Builder::new(),
            l_discount: Decimal128Builder::new(),
            l_tax: Decimal128Builder::new(),
            l_returnflag: StringBuilder::new(),
            l_linestatus: StringBuilder::new(),
            l_shipdate: Date32Builder::new(),
            l_commitdate: Date32Builder::new(),
            l_receiptdate: Date32Builder::new(),
            l_shipinstruct: StringBuilder::new(),
            l_shipmode: StringBuilder::new(),
            l_comment: StringBuilder::new(),
        }
    }
}

impl<'a> BatchBuilder<LineItem<'a>> for LineItemBatch {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn append(&mut self, row: LineItem<'a>) {
        self.l_orderkey.append_value(row.l_orderkey);
        self.l_partkey.append_value(row.l_partkey);
        self.l_suppkey.append_value(row.l_suppkey);
        self.l_linenumber.append_value(i64::from(row.l_linenumber));
        // tpchgen yields whole units; the column holds hundredths.
        self.l_quantity
            .append_value(i128::from(row.l_quantity) * 100);
        append_decimal(&mut self.l_extendedprice, row.l_extendedprice);
        append_decimal(&mut self.l_discount, row.l_discount);
        append_decimal(&mut self.l_tax, row.l_tax);
        self.l_returnflag.append_value(row.l_returnflag);
        self.l_linestatus.append_value(row.l_linestatus);
        append_date(&mut self.l_shipdate, row.l_shipdate);
        append_date(&mut self.l_commitdate, row.l_commitdate);
        append_date(&mut self.l_receiptdate, row.l_receiptdate);
        self.l_shipinstruct.append_value(row.l_shipinstruct);
        self.l_shipmode.append_value(row.l_shipmode);
        self.l_comment.append_value(row.l_comment);
        self.rows += 1;
    }

    fn len(&self) -> usize {
        self.rows
    }

    fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let columns = vec![
            finish_i64(&mut self.l_orderkey),
            finish_i64(&mut self.l_partkey),
            finish_i64(&mut self.l_suppkey),
            finish_i64(&mut self.l_linenumber),
            finish_decimal(&mut self.l_quantity)?,
            finish_decimal(&mut self.l_extendedprice)?,
            finish_decimal(&mut self.l_discount)?,
            finish_decimal(&mut self.l_tax)?,
            finish_str(&mut self.l_returnflag),
            finish_str(&mut self.l_linestatus),
            finish_date(&mut self.l_shipdate),
            finish_date(&mut self.l_commitdate),
            finish_date(&mut self.l_receiptdate),
            finish_str(&mut self.l_shipinstruct),
            finish_str(&mut self.l_shipmode),
            finish_str(&mut self.l_comment),
        ];
        RecordBatch::try_new(Arc::clone(&self.schema), columns)
    }
}
