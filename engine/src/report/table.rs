//! A sortable HTML table: headers that sort when clicked (the page's script), numbers
//! right-aligned with their raw value in `data-sort`, and text escaped. Made by hand or
//! from a query result, where decimals keep their scale (money to the cent) and counts
//! are grouped by thousands.

use std::fmt::Write as _;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;

use super::format::{count, decimal, escape};
use crate::error::Result;
use crate::result_stream::QueryResult;

/// One cell: what it shows and, for numbers, the value it sorts by.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    text: String,
    sort: Option<String>,
}

impl Cell {
    /// A text cell, sorted by its text.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            sort: None,
        }
    }

    /// A number shown as `text` and sorted by `value`.
    pub fn number(text: impl Into<String>, value: f64) -> Self {
        Self {
            text: text.into(),
            sort: Some(if value.is_finite() {
                value.to_string()
            } else {
                String::new()
            }),
        }
    }

    /// An empty cell (sorted last).
    pub fn blank() -> Self {
        Self {
            text: String::new(),
            sort: Some(String::new()),
        }
    }
}

/// A sortable table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    id: String,
    caption: String,
    /// Column names and whether each holds numbers.
    columns: Vec<(String, bool)>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table; `id` names it in the page (and in `#sort=ID:COLUMN:asc`).
    pub fn new(id: &str, caption: impl Into<String>, columns: &[(&str, bool)]) -> Self {
        Self {
            id: id.to_string(),
            caption: caption.into(),
            columns: columns
                .iter()
                .map(|(n, num)| (n.to_string(), *num))
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (cells past the columns are dropped, missing ones left blank).
    pub fn push(&mut self, mut row: Vec<Cell>) {
        row.resize(self.columns.len(), Cell::blank());
        self.rows.push(row);
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows of `result`, every column shown: decimals at their scale with thousands
    /// separated, integers grouped, floats to 4 decimals, the rest as Arrow prints it.
    pub fn from_result(id: &str, caption: impl Into<String>, result: &QueryResult) -> Result<Self> {
        let fields = result.schema.fields();
        let numeric: Vec<bool> = fields.iter().map(|f| f.data_type().is_numeric()).collect();
        let columns: Vec<(&str, bool)> = fields
            .iter()
            .zip(&numeric)
            .map(|(f, n)| (f.name().as_str(), *n))
            .collect();
        let mut table = Self::new(id, caption, &columns);
        for batch in &result.batches {
            let cells: Vec<Vec<Cell>> = batch
                .columns()
                .iter()
                .map(column_cells)
                .collect::<Result<_>>()?;
            for row in 0..batch.num_rows() {
                table.push(cells.iter().map(|c| c[row].clone()).collect());
            }
        }
        Ok(table)
    }

    /// Appends the table's HTML to `html`.
    pub fn render_into(&self, html: &mut String) {
        let _ = write!(
            html,
            "<div class=\"scroll\">\n<table class=\"sortable\" id=\"{}\">\n<caption>{}</caption>\n\
             <thead><tr>",
            escape(&self.id),
            escape(&self.caption)
        );
        for (name, numeric) in &self.columns {
            let class = if *numeric { " class=\"num\"" } else { "" };
            let _ = write!(
                html,
                "<th{class} scope=\"col\" aria-sort=\"none\">{}</th>",
                escape(name)
            );
        }
        html.push_str("</tr></thead>\n<tbody>\n");
        for row in &self.rows {
            html.push_str("<tr>");
            for (cell, (_, numeric)) in row.iter().zip(&self.columns) {
                let class = if *numeric { " class=\"num\"" } else { "" };
                match &cell.sort {
                    Some(key) => {
                        let _ = write!(
                            html,
                            "<td{class} data-sort=\"{}\">{}</td>",
                            escape(key),
                            escape(&cell.text)
                        );
                    }
                    None => {
                        let _ = write!(html, "<td{class}>{}</td>", escape(&cell.text));
                    }
                }
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</tbody>\n</table>\n</div>\n");
    }
}

/// The cells of one column.
fn column_cells(column: &ArrayRef) -> Result<Vec<Cell>> {
    let valid = |i: usize| column.is_valid(i);
    let cells = match column.data_type() {
        DataType::Decimal128(_, scale) if *scale >= 0 => {
            let scale = *scale as u32;
            let values = column.as_primitive::<Decimal128Type>();
            (0..values.len())
                .map(|i| {
                    if !valid(i) {
                        return Cell::blank();
                    }
                    let v = values.value(i);
                    let plain = decimal(v, scale).replace(',', "");
                    Cell {
                        text: decimal(v, scale),
                        sort: Some(plain),
                    }
                })
                .collect()
        }
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => {
            let values = cast(column, &DataType::Int64).map_err(DataFusionError::from)?;
            let values = values.as_primitive::<Int64Type>();
            (0..values.len())
                .map(|i| {
                    if !valid(i) {
                        return Cell::blank();
                    }
                    let v = values.value(i);
                    Cell::number(count(v.into()), v as f64)
                })
                .collect()
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::UInt64 => {
            let values = cast(column, &DataType::Float64).map_err(DataFusionError::from)?;
            let values = values.as_primitive::<Float64Type>();
            (0..values.len())
                .map(|i| {
                    if !valid(i) {
                        return Cell::blank();
                    }
                    let v = values.value(i);
                    let text = if v.fract() == 0.0 && v.abs() < 1e15 {
                        count(v as i128)
                    } else {
                        format!("{v:.4}")
                    };
                    Cell::number(text, v)
                })
                .collect()
        }
        _ => {
            let options = FormatOptions::default().with_null("");
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options)
                .map_err(DataFusionError::from)?;
            (0..column.len())
                .map(|i| Cell::text(formatter.value(i).to_string()))
                .collect()
        }
    };
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Decimal128Array, Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;

    use super::*;

    #[test]
    fn a_result_becomes_rows_with_money_to_the_cent_and_raw_sort_keys() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("category", DataType::Utf8, true),
            Field::new("revenue", DataType::Decimal128(30, 2), true),
            Field::new("sales", DataType::Int64, false),
            Field::new("change", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("Toys <&>"), None])),
                Arc::new(
                    Decimal128Array::from(vec![Some(126_489_727), None])
                        .with_precision_and_scale(30, 2)
                        .expect("a decimal type"),
                ),
                Arc::new(Int64Array::from(vec![1_000_000, 7])),
                Arc::new(Float64Array::from(vec![Some(0.031_27), None])),
            ],
        )
        .expect("a batch");
        let result = QueryResult {
            schema,
            batches: vec![batch],
            metrics: None,
        };
        let table = Table::from_result("summary", "Summary", &result).expect("a table");
        assert_eq!(table.len(), 2);
        let mut html = String::new();
        table.render_into(&mut html);
        assert!(html.contains("<table class=\"sortable\" id=\"summary\">"));
        assert!(html.contains("<th class=\"num\" scope=\"col\" aria-sort=\"none\">revenue</th>"));
        assert!(html.contains("<td>Toys &lt;&amp;&gt;</td>"));
        assert!(html.contains("<td class=\"num\" data-sort=\"1264897.27\">1,264,897.27</td>"));
        assert!(html.contains("<td class=\"num\" data-sort=\"1000000\">1,000,000</td>"));
        assert!(html.contains("<td class=\"num\" data-sort=\"0.03127\">0.0313</td>"));
        // Nulls are blank and sort last.
        assert!(html.contains("<td class=\"num\" data-sort=\"\"></td>"));
    }
}
