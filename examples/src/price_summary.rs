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
//! Report with charts: out/product-prices/report.html
//! ```
//!
//! Money is printed to the cent with thousands separators; the month-over-month change is
//! the category's last month against the month before it.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Date32Type, Decimal128Type, Float64Type, Int64Type};
use datafusion::arrow::temporal_conversions::date32_to_datetime;
use datafusion::error::DataFusionError;

use crate::product_prices::{PriceRun, PriceSource, ReportForm};
use ember::QueryResult;
use ember::{EmberError, Result};

use ember::report::format::percent;
pub use ember::report::format::{count, money};

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
    /// Where the HTML report was written, when it was.
    pub report: Option<String>,
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
            c.median().map(money).unwrap_or_else(|| "-".into()),
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
    if let Some(report) = &context.report {
        lines.push(format!("Report with charts: {report}"));
    }
    lines.push("(--show all prints them here; --format csv or json for machines)".to_string());
    Ok(lines)
}

/// One category of the summary table (money in cents).
pub(crate) struct Category {
    pub(crate) key: String,
    pub(crate) sales: i128,
    pub(crate) revenue: i128,
    /// Lowest, 25th percentile, median, 75th percentile and highest unit price.
    pub(crate) prices: [Option<i128>; 5],
    /// The last month and its change from the month before.
    pub(crate) change: Option<(i32, Option<f64>)>,
}

impl Category {
    pub(crate) fn median(&self) -> Option<i128> {
        self.prices[2]
    }
}

/// The categories (keys of `dimension`) by revenue, highest first (ties by name).
pub(crate) fn categories(run: &PriceRun, dimension: &str) -> Result<Vec<Category>> {
    let summary = Columns::new(table(run, "summary")?)?;
    let dims = summary.strings("dimension")?;
    let keys = summary.strings("key")?;
    let sales = summary.ints("sales")?;
    let revenue = summary.cents("revenue")?;
    let prices = [
        summary.cents("min_price")?,
        summary.cents("p25_price")?,
        summary.cents("median_price")?,
        summary.cents("p75_price")?,
        summary.cents("max_price")?,
    ];
    let mut categories: Vec<Category> = (0..dims.len())
        .filter(|i| dims[*i].as_deref() == Some(dimension))
        .map(|i| Category {
            key: keys[i].clone().unwrap_or_else(|| "(none)".into()),
            sales: sales[i].unwrap_or(0).into(),
            revenue: revenue[i].unwrap_or(0),
            prices: [0, 1, 2, 3, 4].map(|q| prices[q][i]),
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

/// One fixed-edge price band summed over categories (money in cents).
pub(crate) struct Band {
    pub(crate) low: Option<i128>,
    pub(crate) high: Option<i128>,
    pub(crate) sales: i128,
    pub(crate) revenue: i128,
}

impl Band {
    /// Its price range in words (`10.00 to 25.00`).
    pub(crate) fn range(&self) -> String {
        match (self.low, self.high) {
            (None, Some(h)) => format!("under {}", money(h)),
            (Some(l), Some(h)) => format!("{} to {}", money(l), money(h)),
            (Some(l), None) => format!("{} and up", money(l)),
            (None, None) => "any".to_string(),
        }
    }
}

/// The fixed-edge bands summed over categories, those with sales, cheapest first.
pub(crate) fn fixed_bands(run: &PriceRun) -> Result<Vec<Band>> {
    let bands = Columns::new(table(run, "bands")?)?;
    let schemes = bands.strings("scheme")?;
    let band = bands.ints("band")?;
    let low = bands.cents("low")?;
    let high = bands.cents("high")?;
    let sales = bands.ints("sales")?;
    let revenue = bands.cents("revenue")?;
    let mut per_band: Vec<Band> = Vec::new();
    for i in (0..schemes.len()).filter(|i| schemes[*i].as_deref() == Some("fixed")) {
        let b = usize::try_from(band[i].unwrap_or(0)).unwrap_or(0);
        if per_band.len() <= b {
            per_band.resize_with(b + 1, || Band {
                low: None,
                high: None,
                sales: 0,
                revenue: 0,
            });
        }
        let entry = &mut per_band[b];
        entry.low = low[i];
        entry.high = high[i];
        entry.sales += i128::from(sales[i].unwrap_or(0));
        entry.revenue += revenue[i].unwrap_or(0);
    }
    per_band.retain(|b| b.sales > 0);
    Ok(per_band)
}

/// The fixed-edge bands as summary rows: price range, sales, share, revenue.
fn bands(run: &PriceRun) -> Result<Vec<Vec<String>>> {
    let bands = fixed_bands(run)?;
    let total: i128 = bands.iter().map(|b| b.sales).sum();
    let mut rows = vec![vec![
        "price".to_string(),
        "sales".to_string(),
        "share".to_string(),
        "revenue".to_string(),
    ]];
    for band in &bands {
        let share = band.sales as f64 / (total.max(1)) as f64;
        rows.push(vec![
            band.range(),
            count(band.sales),
            percent(share),
            money(band.revenue),
        ]);
    }
    Ok(rows)
}

pub(crate) fn table<'r>(run: &'r PriceRun, name: &str) -> Result<&'r QueryResult> {
    run.table(name).ok_or_else(|| EmberError::Internal {
        message: format!("the product-price report has no {name} table"),
    })
}

/// A table's rows as one batch, with its columns read as the summary needs them.
pub(crate) struct Columns {
    batch: RecordBatch,
}

impl Columns {
    pub(crate) fn new(result: &QueryResult) -> Result<Self> {
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

    pub(crate) fn strings(&self, name: &str) -> Result<Vec<Option<String>>> {
        let column = self.column(name, &DataType::Utf8)?;
        Ok(column
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect())
    }

    pub(crate) fn ints(&self, name: &str) -> Result<Vec<Option<i64>>> {
        let column = self.column(name, &DataType::Int64)?;
        Ok(column.as_primitive::<Int64Type>().iter().collect())
    }

    /// Money in cents (rounded to the cent).
    pub(crate) fn cents(&self, name: &str) -> Result<Vec<Option<i128>>> {
        let column = self.column(name, &DataType::Decimal128(38, 2))?;
        Ok(column.as_primitive::<Decimal128Type>().iter().collect())
    }

    pub(crate) fn floats(&self, name: &str) -> Result<Vec<Option<f64>>> {
        let column = self.column(name, &DataType::Float64)?;
        Ok(column.as_primitive::<Float64Type>().iter().collect())
    }

    pub(crate) fn dates(&self, name: &str) -> Result<Vec<Option<i32>>> {
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

pub(crate) fn day(days: i32) -> String {
    date32_to_datetime(days)
        .map(|d| d.date().to_string())
        .unwrap_or_else(|| days.to_string())
}

pub(crate) fn plural(dimension: &str) -> String {
    match dimension {
        "category" => "categories".to_string(),
        "clarity" => "clarities".to_string(),
        other => format!("{other}s"),
    }
}

pub(crate) fn source_place(source: &PriceSource) -> String {
    match source {
        PriceSource::Products(dir) => dir.display().to_string(),
        PriceSource::Tpch(dir) => format!("{} (TPC-H)", dir.display()),
        PriceSource::Diamonds(file) => file.display().to_string(),
    }
}
