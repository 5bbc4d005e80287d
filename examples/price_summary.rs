//! The terminal summary of `ember run product-prices`: the few numbers a person reads,
//! in about 30 lines, while the full tables go to files.
//!
//! ```text
//! product-prices, DSL form: 1,000,000 sales from 5 files in data/products
//! dates 2023-01-01 to 2024-12-31; 16 categories; 4 executors, 3.21 s
//!
//! Top 10 of 16 categories by revenue
//!  #  category          revenue    sales  median  m/m 2024-12
//!  1  Electronics  1,234,567.89  300,000  250.00        +3.1%
//! ...
//! Price bands, all categories
//!  price                 sales  share       revenue
//!  under 10.00         123,456  12.3%  1,234,567.89
//! ...
//! Full tables (summary, bands, top_products, monthly) as Parquet in out/product-prices
//! ```
//!
//! Money is printed to the cent with thousands separators; the month-over-month change is
//! the category's last month against the month before it.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Date32Type, Decimal128Type, Float64Type, Int64Type};
use datafusion::arrow::temporal_conversions::date32_to_datetime;
use datafusion::error::DataFusionError;

use crate::error::{EmberError, Result};
use crate::examples::product_prices::{PriceRun, PriceSource, ReportForm};
use crate::session::QueryResult;

/// Categories shown by default.
pub const DEFAULT_TOP: usize = 10;

/// What the summary says besides the tables: how the run was made.
#[derive(Debug, Clone)]
pub struct SummaryContext {
    /// Where the sales came from.
    pub source: PriceSource,
    /// The form the report ran in.
    pub form: ReportForm,
    /// Categories to list, by revenue.
    pub top: usize,
    /// Where the tables were written, when they were.
    pub out: Option<String>,
    /// Executors of the cluster.
    pub executors: usize,
    /// Seconds the pipeline took.
    pub seconds: f64,
}

/// The summary's lines (no trailing newlines).
pub fn price_summary(run: &PriceRun, context: &SummaryContext) -> Result<Vec<String>> {
    let dimension = context.source.dimensions()[0];
    let mut lines = Vec::new();
    let input = &run.input;
    let form = match context.form {
        ReportForm::Dsl => "DSL",
        ReportForm::Sql => "SQL",
    };
    lines.push(format!(
        "product-prices, {form} form: {} sales from {} {} in {}",
        count(input.sales as i128),
        input.files,
        if input.files == 1 { "file" } else { "files" },
        source_place(&context.source)
    ));

    let categories = categories(run, dimension)?;
    let dates = match input.dates {
        Some((first, last)) => format!("dates {} to {}", day(first), day(last)),
        None => "no dates".to_string(),
    };
    lines.push(format!(
        "{dates}; {} {}; {} executors, {:.2} s",
        categories.len(),
        plural(dimension),
        context.executors,
        context.seconds
    ));
    lines.push(String::new());

    let shown = context.top.min(categories.len());
    lines.push(format!(
        "Top {shown} of {} {} by revenue",
        categories.len(),
        plural(dimension)
    ));
    let last_month = categories
        .iter()
        .filter_map(|c| c.change.map(|(m, _)| m))
        .max();
    let mut header = vec![
        "#".to_string(),
        dimension.to_string(),
        "revenue".to_string(),
        "sales".to_string(),
        "median".to_string(),
    ];
    if let Some(month) = last_month {
        header.push(format!("m/m {}", &day(month)[..7]));
    }
    let mut rows = vec![header];
    for (rank, c) in categories.iter().take(shown).enumerate() {
        let mut row = vec![
            (rank + 1).to_string(),
            c.key.clone(),
            money(c.revenue),
            count(c.sales),
            c.median.map(money).unwrap_or_else(|| "-".into()),
        ];
        if last_month.is_some() {
            row.push(match c.change {
                Some((_, Some(change))) => format!("{:+.1}%", change * 100.0),
                _ => "-".to_string(),
            });
        }
        rows.push(row);
    }
    lines.extend(aligned(&rows, &[true, false, true, true, true, true]));
    lines.push(String::new());

    lines.push(format!("Price bands, all {}", plural(dimension)));
    lines.extend(aligned(&bands(run)?, &[false, true, true, true]));
    lines.push(String::new());

    let names: Vec<&str> = run.tables.iter().map(|(n, _)| *n).collect();
    match &context.out {
        Some(out) => lines.push(format!(
            "Full tables ({}) as Parquet in {out}",
            names.join(", ")
        )),
        None => lines.push(format!("Tables ({}) not written", names.join(", "))),
    }
    lines.push("(--show all prints them here; --format csv or json for machines)".to_string());
    Ok(lines)
}

/// One category of the summary table.
struct Category {
    key: String,
    sales: i128,
    revenue: i128,
    median: Option<i128>,
    /// The last month and its change from the month before.
    change: Option<(i32, Option<f64>)>,
}

/// The categories by revenue, highest first (ties by name).
fn categories(run: &PriceRun, dimension: &str) -> Result<Vec<Category>> {
    let summary = Columns::new(table(run, "summary")?)?;
    let dims = summary.strings("dimension")?;
    let keys = summary.strings("key")?;
    let sales = summary.ints("sales")?;
    let revenue = summary.cents("revenue")?;
    let median = summary.cents("median_price")?;
    let mut categories: Vec<Category> = (0..dims.len())
        .filter(|i| dims[*i].as_deref() == Some(dimension))
        .map(|i| Category {
            key: keys[i].clone().unwrap_or_else(|| "(none)".into()),
            sales: sales[i].unwrap_or(0).into(),
            revenue: revenue[i].unwrap_or(0),
            median: median[i],
            change: None,
        })
        .collect();
    if let Some(monthly) = run.table("monthly") {
        let monthly = Columns::new(monthly)?;
        let keys = monthly.strings("category")?;
        let months = monthly.dates("month")?;
        let changes = monthly.floats("change")?;
        for c in &mut categories {
            c.change = (0..keys.len())
                .filter(|i| keys[*i].as_deref() == Some(c.key.as_str()))
                .filter_map(|i| months[i].map(|m| (m, changes[i])))
                .max_by_key(|(m, _)| *m);
        }
    }
    categories.sort_by(|a, b| b.revenue.cmp(&a.revenue).then_with(|| a.key.cmp(&b.key)));
    Ok(categories)
}

/// The fixed-edge bands summed over categories: price range, sales, share, revenue.
fn bands(run: &PriceRun) -> Result<Vec<Vec<String>>> {
    let bands = Columns::new(table(run, "bands")?)?;
    let schemes = bands.strings("scheme")?;
    let band = bands.ints("band")?;
    let low = bands.cents("low")?;
    let high = bands.cents("high")?;
    let sales = bands.ints("sales")?;
    let revenue = bands.cents("revenue")?;
    // band -> (low, high, sales, revenue)
    let mut per_band: Vec<(Option<i128>, Option<i128>, i128, i128)> = Vec::new();
    for i in (0..schemes.len()).filter(|i| schemes[*i].as_deref() == Some("fixed")) {
        let b = usize::try_from(band[i].unwrap_or(0)).unwrap_or(0);
        if per_band.len() <= b {
            per_band.resize(b + 1, (None, None, 0, 0));
        }
        let entry = &mut per_band[b];
        entry.0 = low[i];
        entry.1 = high[i];
        entry.2 += i128::from(sales[i].unwrap_or(0));
        entry.3 += revenue[i].unwrap_or(0);
    }
    let total: i128 = per_band.iter().map(|b| b.2).sum();
    let mut rows = vec![vec![
        "price".to_string(),
        "sales".to_string(),
        "share".to_string(),
        "revenue".to_string(),
    ]];
    for (low, high, sales, revenue) in per_band.iter().filter(|b| b.2 > 0) {
        let range = match (low, high) {
            (None, Some(h)) => format!("under {}", money(*h)),
            (Some(l), Some(h)) => format!("{} to {}", money(*l), money(*h)),
            (Some(l), None) => format!("{} and up", money(*l)),
            (None, None) => "any".to_string(),
        };
        let share = *sales as f64 * 100.0 / (total.max(1)) as f64;
        let share = if share < 0.05 {
            "<0.1%".to_string()
        } else {
            format!("{share:.1}%")
        };
        rows.push(vec![range, count(*sales), share, money(*revenue)]);
    }
    Ok(rows)
}

fn table<'r>(run: &'r PriceRun, name: &str) -> Result<&'r QueryResult> {
    run.table(name).ok_or_else(|| EmberError::Internal {
        message: format!("the product-price report has no {name} table"),
    })
}

/// A table's rows as one batch, with its columns read as the summary needs them.
struct Columns {
    batch: RecordBatch,
}

impl Columns {
    fn new(result: &QueryResult) -> Result<Self> {
        let batch =
            concat_batches(&result.schema, &result.batches).map_err(DataFusionError::from)?;
        Ok(Self { batch })
    }

    fn column(&self, name: &str, to: &DataType) -> Result<std::sync::Arc<dyn Array>> {
        let column = self
            .batch
            .column_by_name(name)
            .ok_or_else(|| EmberError::Internal {
                message: format!("a product-price table without column {name}"),
            })?;
        Ok(cast(column, to).map_err(DataFusionError::from)?)
    }

    fn strings(&self, name: &str) -> Result<Vec<Option<String>>> {
        let column = self.column(name, &DataType::Utf8)?;
        Ok(column
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect())
    }

    fn ints(&self, name: &str) -> Result<Vec<Option<i64>>> {
        let column = self.column(name, &DataType::Int64)?;
        Ok(column.as_primitive::<Int64Type>().iter().collect())
    }

    /// Money in cents (rounded to the cent).
    fn cents(&self, name: &str) -> Result<Vec<Option<i128>>> {
        let column = self.column(name, &DataType::Decimal128(38, 2))?;
        Ok(column.as_primitive::<Decimal128Type>().iter().collect())
    }

    fn floats(&self, name: &str) -> Result<Vec<Option<f64>>> {
        let column = self.column(name, &DataType::Float64)?;
        Ok(column.as_primitive::<Float64Type>().iter().collect())
    }

    fn dates(&self, name: &str) -> Result<Vec<Option<i32>>> {
        let column = self.column(name, &DataType::Date32)?;
        Ok(column.as_primitive::<Date32Type>().iter().collect())
    }
}

/// Rows as text columns padded to one width each, right-aligned where `right` says.
fn aligned(rows: &[Vec<String>], right: &[bool]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|v| v.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, v)| {
                    if right.get(c).copied().unwrap_or(false) {
                        format!("{v:>w$}", w = widths[c])
                    } else {
                        format!("{v:<w$}", w = widths[c])
                    }
                })
                .collect();
            format!(" {}", cells.join("  ").trim_end())
        })
        .collect()
}

/// `cents` as money: thousands separated, two decimals (`1,264,897.27`).
pub fn money(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", grouped(abs / 100), abs % 100)
}

/// A count with thousands separated (`1,000,000`).
pub fn count(n: i128) -> String {
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{}", grouped(n.unsigned_abs()))
}

fn grouped(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

fn day(days: i32) -> String {
    date32_to_datetime(days)
        .map(|d| d.date().to_string())
        .unwrap_or_else(|| days.to_string())
}

fn plural(dimension: &str) -> String {
    match dimension {
        "category" => "categories".to_string(),
        "clarity" => "clarities".to_string(),
        other => format!("{other}s"),
    }
}

fn source_place(source: &PriceSource) -> String {
    match source {
        PriceSource::Products(dir) => dir.display().to_string(),
        PriceSource::Tpch(dir) => format!("{} (TPC-H)", dir.display()),
        PriceSource::Diamonds(file) => file.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_counts_are_grouped_by_thousands() {
        assert_eq!(money(126_489_727), "1,264,897.27");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(-100_000), "-1,000.00");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(count(999), "999");
    }
}
