//! `ember run product-prices`: what products sell for, per category and per brand (per cut,
//! colour and clarity on diamonds), in a DSL form and a SQL form that give identical
//! results.
//!
//! Every source is first brought to one shape, the view `price_sales`:
//!
//! ```text
//! product, <dimensions...>, quantity, unit_price, revenue, sale_date
//! ```
//!
//! Money is money: `unit_price` is [`PRICE`] (`Decimal128(12, 2)`), `revenue` is
//! [`REVENUE`] (`Decimal128(20, 2)`) and its sums `Decimal128(30, 2)`; means, standard
//! deviations and quantiles are rounded to the cent, so no table prints float noise. The
//! quantity is an `Int64`.
//!
//! - the products dataset (`ember datasets products`): sales joined with the catalog for the
//!   product name; dimensions `category`, `brand`;
//! - TPC-H: `lineitem` joined with `part`; the manufacturer is the category and `p_brand`
//!   the brand; the unit price is the extended price over the quantity, the revenue is
//!   after discount; the ship date is the sale date;
//! - diamonds: each stone sold once at its price; the product is its carat, colour and
//!   clarity; dimensions `cut`, `color`, `clarity`; no dates; the integer price is cast
//!   to [`PRICE`] as it is read.
//!
//! The report is four tables, each ordered on a unique key so that two runs compare row
//! by row:
//!
//! - `summary`: per dimension and key, the number of sales, revenue, and the minimum,
//!   maximum, mean, standard deviation and the approximate quartiles (p25, median, p75),
//!   p90 and p99 of the unit price;
//! - `bands`: sales and revenue per category in price bands, with fixed edges and with
//!   edges at the 20/40/60/80 % quantiles of the unit price;
//! - `top_products`: the 10 best-selling products of each category by revenue
//!   (`row_number()` over the category);
//! - `monthly`: revenue per category and month with the change from the month before
//!   (`lag()`, as a ratio rounded to 4 decimals); absent for data without dates.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Date32Type, Decimal128Type, Int64Type};
use datafusion::common::{JoinType, ScalarValue};
use datafusion::functions::expr_fn::{concat, date_trunc, round};
use datafusion::functions_aggregate::expr_fn::{
    approx_percentile_cont, avg, count, grouping, max, min, stddev, sum,
};
use datafusion::functions_window::expr_fn::{lag, row_number};
use datafusion::logical_expr::{ExprFunctionExt, GroupingSet};
use datafusion::prelude::{Expr, cast, col, lit, when};

use ember::datasets::{ProductsOptions, generate_products};

use ember::Dataset;
use ember::pipelines::{check_empty_output, register_tpch};
use ember::{EmberError, Result};
use ember::{QueryResult, Session};

/// The view every form reads.
pub const PRICE_SALES: &str = "price_sales";

/// The type of a unit price and of every price statistic: money to the cent.
pub const PRICE: DataType = DataType::Decimal128(12, 2);

/// The type of one sale's revenue; sums of it are `Decimal128(30, 2)`.
pub const REVENUE: DataType = DataType::Decimal128(20, 2);

/// [`PRICE`] in SQL.
const PRICE_SQL: &str = "DECIMAL(12, 2)";

/// Fixed price-band edges (whole currency units): band 0 is below the first edge, band i
/// is [edge i-1, edge i), the last band is at or above the last edge.
pub const FIXED_EDGES: &[f64] = &[
    10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// The quantiles whose values are the edges of the quantile-based bands.
pub const BAND_QUANTILES: &[f64] = &[0.2, 0.4, 0.6, 0.8];

/// The products ranked per category.
pub const TOP_PRODUCTS: usize = 10;

/// Where the sales come from.
#[derive(Debug, Clone, PartialEq)]
pub enum PriceSource {
    /// A folder written by `ember datasets products` (`products/` and `sales/`).
    Products(PathBuf),
    /// A folder of TPC-H tables (`part` and `lineitem` are read).
    Tpch(PathBuf),
    /// The diamonds CSV file.
    Diamonds(PathBuf),
}

impl PriceSource {
    /// The columns the summary groups by, the first being the category of the other tables.
    pub fn dimensions(&self) -> &'static [&'static str] {
        match self {
            Self::Products(_) | Self::Tpch(_) => &["category", "brand"],
            Self::Diamonds(_) => &["cut", "color", "clarity"],
        }
    }

    /// Whether the sales have dates (the monthly table needs them).
    pub fn has_dates(&self) -> bool {
        !matches!(self, Self::Diamonds(_))
    }
}

/// The two forms of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportForm {
    /// Built with the Dataset API.
    Dsl,
    /// Written in SQL.
    Sql,
}

/// The report's tables, not yet run: each is written or collected by the caller.
pub struct PriceReport<'s> {
    /// `(name, rows)` in the order above; `monthly` only for data with dates.
    pub tables: Vec<(&'static str, Dataset<'s>)>,
    /// What one pass over all the sales found before the tables were planned.
    pub overview: Overview,
}

/// One pass over all of `price_sales`: how many sales, their first and last date, and
/// the edges of the quantile bands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    /// Rows of `price_sales`.
    pub sales: u64,
    /// The first and last sale date (days since 1970-01-01), for data with dates.
    pub dates: Option<(i32, i32)>,
    /// The unit prices at [`BAND_QUANTILES`] (in cents); equal edges are kept once.
    pub quantile_edges: Vec<i128>,
}

/// Makes the products dataset at `dir` with `rows` sales unless it is there already.
pub fn ensure_products(dir: &Path, rows: u64, parts: usize) -> Result<bool> {
    if dir.join("_SUCCESS").is_file() {
        return Ok(false);
    }
    generate_products(&ProductsOptions {
        rows,
        out_dir: dir.to_path_buf(),
        seed: 42,
        dirty_fraction: None,
        parts,
    })?;
    Ok(true)
}

/// Registers the view `price_sales` over `source` (built with the Dataset API; both forms
/// read it).
pub async fn register_price_sales(session: &Session, source: &PriceSource) -> Result<()> {
    let sales = match source {
        PriceSource::Products(dir) => {
            let sales = session
                .read_parquet(&path_text(&dir.join("sales"))?)
                .await?;
            let catalog = session
                .read_parquet(&path_text(&dir.join("products"))?)
                .await?
                .select(vec![col("product_id").alias("catalog_id"), col("name")])?;
            sales
                .join_on(
                    &catalog,
                    JoinType::Inner,
                    vec![col("product_id").eq(col("catalog_id"))],
                )?
                .select(vec![
                    col("name").alias("product"),
                    col("category"),
                    col("brand"),
                    cast(col("quantity"), DataType::Int64).alias("quantity"),
                    cast(col("unit_price"), PRICE).alias("unit_price"),
                    cast(
                        cast(col("unit_price"), PRICE) * cast(col("quantity"), DataType::Int64),
                        REVENUE,
                    )
                    .alias("revenue"),
                    col("sale_date"),
                ])?
        }
        PriceSource::Tpch(dir) => {
            register_tpch(session, dir).await?;
            let lineitem = session.table("lineitem").await?;
            let part = session.table("part").await?;
            lineitem
                .join_on(
                    &part,
                    JoinType::Inner,
                    vec![col("l_partkey").eq(col("p_partkey"))],
                )?
                .select(vec![
                    col("p_name").alias("product"),
                    col("p_mfgr").alias("category"),
                    col("p_brand").alias("brand"),
                    cast(col("l_quantity"), DataType::Int64).alias("quantity"),
                    cast(col("l_extendedprice") / col("l_quantity"), PRICE).alias("unit_price"),
                    cast(
                        col("l_extendedprice") * (lit(1_i64) - col("l_discount")),
                        REVENUE,
                    )
                    .alias("revenue"),
                    col("l_shipdate").alias("sale_date"),
                ])?
        }
        PriceSource::Diamonds(file) => {
            let stones = session.read_csv(&path_text(file)?).await?;
            let schema = stones.schema();
            for needed in ["carat", "cut", "color", "clarity", "price"] {
                if schema.field_with_unqualified_name(needed).is_err() {
                    return Err(EmberError::InvalidArgument {
                        operation: "product-prices",
                        message: format!(
                            "{} has no column '{needed}' (is it the diamonds CSV?)",
                            file.display()
                        ),
                    });
                }
            }
            stones.select(vec![
                concat(vec![
                    cast(col("carat"), DataType::Utf8),
                    lit(" ct "),
                    col("color"),
                    lit(" "),
                    col("clarity"),
                ])
                .alias("product"),
                col("cut"),
                col("color"),
                col("clarity"),
                lit(1_i64).alias("quantity"),
                cast(col("price"), PRICE).alias("unit_price"),
                cast(col("price"), REVENUE).alias("revenue"),
                lit(ScalarValue::Date32(None)).alias("sale_date"),
            ])?
        }
    };
    session
        .context()
        .register_table(PRICE_SALES, sales.frame().clone().into_view())?;
    Ok(())
}

/// The report over the registered `price_sales`, in the given form.
pub async fn price_report<'s>(
    session: &'s Session,
    source: &PriceSource,
    form: ReportForm,
) -> Result<PriceReport<'s>> {
    let dims = source.dimensions();
    let overview = overview(session, form).await?;
    let quantile_edges = &overview.quantile_edges;
    let mut tables = Vec::new();
    match form {
        ReportForm::Sql => {
            tables.push(("summary", session.sql_dataset(&summary_sql(dims)).await?));
            let bands = bands_sql(dims[0], quantile_edges);
            tables.push(("bands", session.sql_dataset(&bands).await?));
            let top = top_products_sql(dims[0]);
            tables.push(("top_products", session.sql_dataset(&top).await?));
            if source.has_dates() {
                let monthly = monthly_sql(dims[0]);
                tables.push(("monthly", session.sql_dataset(&monthly).await?));
            }
        }
        ReportForm::Dsl => {
            let sales = session.table(PRICE_SALES).await?;
            tables.push(("summary", summary_dsl(&sales, dims)?));
            tables.push(("bands", bands_dsl(&sales, dims[0], quantile_edges)?));
            tables.push(("top_products", top_products_dsl(&sales, dims[0])?));
            if source.has_dates() {
                tables.push(("monthly", monthly_dsl(&sales, dims[0])?));
            }
        }
    }
    Ok(PriceReport { tables, overview })
}

fn path_text(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| EmberError::InvalidArgument {
            operation: "product-prices",
            message: format!("{} is not a UTF-8 path", path.display()),
        })
}

// ---- the SQL form ----

/// One aggregation over grouping sets, one set per dimension: the sales are read once for
/// all dimensions, and `grouping()` tells which dimension a row belongs to.
fn summary_sql(dims: &[&str]) -> String {
    let arms = |value: &dyn Fn(&str) -> String| -> String {
        dims.iter()
            .map(|d| format!(" WHEN grouping({d}) = 0 THEN {}", value(d)))
            .collect()
    };
    let sets: Vec<String> = dims.iter().map(|d| format!("({d})")).collect();
    format!(
        "SELECT CASE{} END AS dimension, CASE{} END AS key, count(*) AS sales, \
         sum(revenue) AS revenue, min(unit_price) AS min_price, \
         max(unit_price) AS max_price, CAST(avg(unit_price) AS {PRICE_SQL}) AS mean_price, \
         CAST(stddev(CAST(unit_price AS DOUBLE)) AS {PRICE_SQL}) AS stddev_price, \
         {} AS p25_price, {} AS median_price, {} AS p75_price, {} AS p90_price, \
         {} AS p99_price FROM {PRICE_SALES} GROUP BY GROUPING SETS ({}) \
         ORDER BY dimension, key NULLS LAST",
        arms(&|d| format!("'{d}'")),
        arms(&|d| format!("CAST({d} AS VARCHAR)")),
        percentile_sql(0.25),
        percentile_sql(0.5),
        percentile_sql(0.75),
        percentile_sql(0.9),
        percentile_sql(0.99),
        sets.join(", "),
    )
}

/// The `q` quantile of the unit price (t-digest, over its value as a double) rounded to
/// the cent.
fn percentile_sql(q: f64) -> String {
    format!(
        "CAST(approx_percentile_cont({q:?}) WITHIN GROUP (ORDER BY CAST(unit_price AS DOUBLE)) \
         AS {PRICE_SQL})"
    )
}

/// A price of `cents` as a SQL literal of type [`PRICE`].
fn price_literal_sql(cents: i128) -> String {
    format!("CAST('{}' AS {PRICE_SQL})", cents_text(cents))
}

/// `cents` as a plain decimal number with two decimals (`-12.05`).
fn cents_text(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// `CASE` over the unit price giving the band index for `edges` (in cents).
fn band_case_sql(edges: &[i128]) -> String {
    let arms: String = edges
        .iter()
        .enumerate()
        .map(|(i, e)| format!(" WHEN unit_price < {} THEN {i}", price_literal_sql(*e)))
        .collect();
    if arms.is_empty() {
        return "0".to_string();
    }
    format!("CASE{arms} ELSE {} END", edges.len())
}

/// `CASE` over the band index giving its lower (`upper == false`) or upper edge.
fn band_edge_sql(edges: &[i128], upper: bool) -> String {
    let arms: String = (0..=edges.len())
        .filter_map(|band| band_edge(edges, band, upper).map(|e| (band, e)))
        .map(|(band, e)| format!(" WHEN {band} THEN {}", price_literal_sql(e)))
        .collect();
    if arms.is_empty() {
        return format!("CAST(NULL AS {PRICE_SQL})");
    }
    format!("CASE band{arms} END")
}

/// Both schemes in one aggregation over two grouping sets, (category, fixed band) and
/// (category, quantile band).
fn bands_sql(category: &str, quantile_edges: &[i128]) -> String {
    let fixed = fixed_edges();
    let edge = |upper: bool| {
        format!(
            "CASE WHEN scheme = 'fixed' THEN {} ELSE {} END",
            band_edge_sql(&fixed, upper),
            band_edge_sql(quantile_edges, upper)
        )
    };
    format!(
        "SELECT scheme, category, band, {low} AS low, {high} AS high, sales, revenue FROM (\
           SELECT CASE WHEN grouping(fixed_band) = 0 THEN 'fixed' ELSE 'quantile' END AS scheme, \
             category, CASE WHEN grouping(fixed_band) = 0 THEN fixed_band ELSE quantile_band END \
             AS band, count(*) AS sales, sum(revenue) AS revenue FROM (\
               SELECT {category} AS category, {fixed_case} AS fixed_band, \
                 {quantile_case} AS quantile_band, revenue FROM {PRICE_SALES} \
               WHERE unit_price IS NOT NULL) \
           GROUP BY GROUPING SETS ((category, fixed_band), (category, quantile_band))) \
         ORDER BY scheme, category, band",
        low = edge(false),
        high = edge(true),
        fixed_case = band_case_sql(&fixed),
        quantile_case = band_case_sql(quantile_edges),
    )
}

fn top_products_sql(category: &str) -> String {
    format!(
        "SELECT category, rank, product, revenue, units FROM (\
           SELECT category, product, revenue, units, row_number() OVER (PARTITION BY category \
             ORDER BY revenue DESC NULLS LAST, product) AS rank \
           FROM (SELECT {category} AS category, product, sum(revenue) AS revenue, \
                 sum(quantity) AS units FROM {PRICE_SALES} GROUP BY 1, 2)) \
         WHERE rank <= {TOP_PRODUCTS} ORDER BY category, rank"
    )
}

fn monthly_sql(category: &str) -> String {
    format!(
        "SELECT category, month, revenue, previous_revenue, \
           round(CAST(revenue - previous_revenue AS DOUBLE) / CAST(previous_revenue AS DOUBLE), \
             4) AS change FROM (\
           SELECT category, month, revenue, lag(revenue) OVER (PARTITION BY category \
             ORDER BY month) AS previous_revenue \
           FROM (SELECT {category} AS category, \
                 CAST(date_trunc('month', sale_date) AS DATE) AS month, \
                 sum(revenue) AS revenue FROM {PRICE_SALES} WHERE sale_date IS NOT NULL \
                 GROUP BY 1, 2)) \
         ORDER BY category, month"
    )
}

// ---- the DSL form ----

/// The `q` quantile of the unit price (t-digest, over its value as a double) rounded to
/// the cent.
fn percentile(q: f64) -> Expr {
    let price = cast(col("unit_price"), DataType::Float64);
    cast(
        approx_percentile_cont(price.sort(true, false), lit(q), None),
        PRICE,
    )
}

/// A price of `cents` as a literal of type [`PRICE`].
fn price_literal(cents: i128) -> Expr {
    lit(ScalarValue::Decimal128(Some(cents), 12, 2))
}

/// `grouping(column)` of each dimension, as the column `__grouping_<i>`.
fn grouping_column(i: usize) -> String {
    format!("__grouping_{i}")
}

/// `CASE` over the `grouping()` columns of `dims`: `value(d)` for the dimension a row is
/// grouped by.
fn per_dimension(dims: &[&str], value: impl Fn(&str) -> Expr) -> Result<Expr> {
    let mut arms = dims.iter().enumerate();
    let Some((_, first)) = arms.next() else {
        return Err(EmberError::Internal {
            message: "a price source without dimensions".into(),
        });
    };
    let mut case = when(col(grouping_column(0)).eq(lit(0)), value(first));
    for (i, d) in arms {
        case = case.when(col(grouping_column(i)).eq(lit(0)), value(d));
    }
    Ok(case.end()?)
}

/// One aggregation over grouping sets, one set per dimension (see [`summary_sql`]).
fn summary_dsl<'s>(sales: &Dataset<'s>, dims: &[&str]) -> Result<Dataset<'s>> {
    let sets = Expr::GroupingSet(GroupingSet::GroupingSets(
        dims.iter().map(|d| vec![col(*d)]).collect(),
    ));
    let mut aggregates = vec![
        count(lit(1)).alias("sales"),
        sum(col("revenue")).alias("revenue"),
        min(col("unit_price")).alias("min_price"),
        max(col("unit_price")).alias("max_price"),
        cast(avg(col("unit_price")), PRICE).alias("mean_price"),
        cast(stddev(cast(col("unit_price"), DataType::Float64)), PRICE).alias("stddev_price"),
        percentile(0.25).alias("p25_price"),
        percentile(0.5).alias("median_price"),
        percentile(0.75).alias("p75_price"),
        percentile(0.9).alias("p90_price"),
        percentile(0.99).alias("p99_price"),
    ];
    for (i, d) in dims.iter().enumerate() {
        aggregates.push(grouping(col(*d)).alias(grouping_column(i)));
    }
    sales
        .group_by(vec![sets])
        .agg(aggregates)?
        .select(vec![
            per_dimension(dims, |d| lit(d))?.alias("dimension"),
            per_dimension(dims, |d| cast(col(d), DataType::Utf8))?.alias("key"),
            col("sales"),
            col("revenue"),
            col("min_price"),
            col("max_price"),
            col("mean_price"),
            col("stddev_price"),
            col("p25_price"),
            col("median_price"),
            col("p75_price"),
            col("p90_price"),
            col("p99_price"),
        ])?
        .sort(vec![
            col("dimension").sort(true, false),
            col("key").sort(true, false),
        ])
}

/// The band index of the unit price for `edges` (in cents).
fn band_case_dsl(edges: &[i128]) -> Result<Expr> {
    let mut arms = edges.iter().enumerate();
    let Some((_, first)) = arms.next() else {
        return Ok(lit(0_i64));
    };
    let mut case = when(col("unit_price").lt(price_literal(*first)), lit(0_i64));
    for (i, e) in arms {
        case = case.when(col("unit_price").lt(price_literal(*e)), lit(i as i64));
    }
    Ok(case.otherwise(lit(edges.len() as i64))?)
}

/// The lower or upper edge of the band in column `band`.
fn band_edge_dsl(edges: &[i128], upper: bool) -> Result<Expr> {
    let mut arms =
        (0..=edges.len()).filter_map(|band| band_edge(edges, band, upper).map(|e| (band, e)));
    let Some((band, e)) = arms.next() else {
        return Ok(lit(ScalarValue::Decimal128(None, 12, 2)));
    };
    let mut case =
        datafusion::logical_expr::case(col("band")).when(lit(band as i64), price_literal(e));
    for (band, e) in arms {
        case = case.when(lit(band as i64), price_literal(e));
    }
    Ok(case.end()?)
}

/// Both schemes in one aggregation over two grouping sets (see [`bands_sql`]).
fn bands_dsl<'s>(
    sales: &Dataset<'s>,
    category: &str,
    quantile_edges: &[i128],
) -> Result<Dataset<'s>> {
    let fixed = fixed_edges();
    let is_fixed = || col("scheme").eq(lit("fixed"));
    let edge = |upper: bool| -> Result<Expr> {
        Ok(when(is_fixed(), band_edge_dsl(&fixed, upper)?)
            .otherwise(band_edge_dsl(quantile_edges, upper)?)?)
    };
    let sets = Expr::GroupingSet(GroupingSet::GroupingSets(vec![
        vec![col("category"), col("fixed_band")],
        vec![col("category"), col("quantile_band")],
    ]));
    let by_fixed = || col("__grouping_fixed").eq(lit(0));
    sales
        .filter(col("unit_price").is_not_null())?
        .select(vec![
            col(category).alias("category"),
            band_case_dsl(&fixed)?.alias("fixed_band"),
            band_case_dsl(quantile_edges)?.alias("quantile_band"),
            col("revenue"),
        ])?
        .group_by(vec![sets])
        .agg(vec![
            count(lit(1)).alias("sales"),
            sum(col("revenue")).alias("revenue"),
            grouping(col("fixed_band")).alias("__grouping_fixed"),
        ])?
        .select(vec![
            when(by_fixed(), lit("fixed"))
                .otherwise(lit("quantile"))?
                .alias("scheme"),
            col("category"),
            when(by_fixed(), col("fixed_band"))
                .otherwise(col("quantile_band"))?
                .alias("band"),
            col("sales"),
            col("revenue"),
        ])?
        .select(vec![
            col("scheme"),
            col("category"),
            col("band"),
            edge(false)?.alias("low"),
            edge(true)?.alias("high"),
            col("sales"),
            col("revenue"),
        ])?
        .sort(vec![
            col("scheme").sort(true, false),
            col("category").sort(true, false),
            col("band").sort(true, false),
        ])
}

fn top_products_dsl<'s>(sales: &Dataset<'s>, category: &str) -> Result<Dataset<'s>> {
    let rank = row_number()
        .partition_by(vec![col("category")])
        .order_by(vec![
            col("revenue").sort(false, false),
            col("product").sort(true, false),
        ])
        .build()?;
    sales
        .select(vec![
            col(category).alias("category"),
            col("product"),
            col("revenue"),
            col("quantity"),
        ])?
        .group_by(vec![col("category"), col("product")])
        .agg(vec![
            sum(col("revenue")).alias("revenue"),
            sum(col("quantity")).alias("units"),
        ])?
        .select(vec![
            col("category"),
            col("product"),
            col("revenue"),
            col("units"),
            rank.alias("rank"),
        ])?
        .filter(col("rank").lt_eq(lit(TOP_PRODUCTS as u64)))?
        .select(vec![
            col("category"),
            col("rank"),
            col("product"),
            col("revenue"),
            col("units"),
        ])?
        .sort(vec![
            col("category").sort(true, false),
            col("rank").sort(true, false),
        ])
}

fn monthly_dsl<'s>(sales: &Dataset<'s>, category: &str) -> Result<Dataset<'s>> {
    let previous = lag(col("revenue"), Some(1), None)
        .partition_by(vec![col("category")])
        .order_by(vec![col("month").sort(true, false)])
        .build()?;
    sales
        .filter(col("sale_date").is_not_null())?
        .select(vec![
            col(category).alias("category"),
            cast(date_trunc(lit("month"), col("sale_date")), DataType::Date32).alias("month"),
            col("revenue"),
        ])?
        .group_by(vec![col("category"), col("month")])
        .agg(vec![sum(col("revenue")).alias("revenue")])?
        .select(vec![
            col("category"),
            col("month"),
            col("revenue"),
            previous.alias("previous_revenue"),
        ])?
        .select(vec![
            col("category"),
            col("month"),
            col("revenue"),
            col("previous_revenue"),
            round(vec![
                cast(col("revenue") - col("previous_revenue"), DataType::Float64)
                    / cast(col("previous_revenue"), DataType::Float64),
                lit(4_i64),
            ])
            .alias("change"),
        ])?
        .sort(vec![
            col("category").sort(true, false),
            col("month").sort(true, false),
        ])
}

// ---- shared ----

/// The lower (or upper) edge of `band` for `edges`; none below the first band or above the
/// last.
fn band_edge(edges: &[i128], band: usize, upper: bool) -> Option<i128> {
    if upper {
        edges.get(band).copied()
    } else {
        band.checked_sub(1).and_then(|i| edges.get(i)).copied()
    }
}

/// [`FIXED_EDGES`] in cents.
fn fixed_edges() -> Vec<i128> {
    FIXED_EDGES
        .iter()
        .map(|e| (e * 100.0).round() as i128)
        .collect()
}

/// The [`Overview`] of the registered `price_sales`, computed in the given form: one
/// aggregation over all the sales for their count, dates and quantile edges.
async fn overview(session: &Session, form: ReportForm) -> Result<Overview> {
    let result = match form {
        ReportForm::Sql => {
            let columns: Vec<String> = BAND_QUANTILES
                .iter()
                .enumerate()
                .map(|(i, q)| format!("{} AS q{i}", percentile_sql(*q)))
                .collect();
            session
                .sql(&format!(
                    "SELECT count(*) AS sales, min(sale_date) AS first, max(sale_date) AS last, \
                     {} FROM {PRICE_SALES}",
                    columns.join(", ")
                ))
                .await?
        }
        ReportForm::Dsl => {
            let mut columns = vec![
                count(lit(1)).alias("sales"),
                min(col("sale_date")).alias("first"),
                max(col("sale_date")).alias("last"),
            ];
            columns.extend(
                BAND_QUANTILES
                    .iter()
                    .enumerate()
                    .map(|(i, q)| percentile(*q).alias(format!("q{i}"))),
            );
            session
                .table(PRICE_SALES)
                .await?
                .group_by(vec![])
                .agg(columns)?
                .collect()
                .await?
        }
    };
    let mut overview = Overview {
        sales: 0,
        dates: None,
        quantile_edges: Vec::new(),
    };
    let Some(batch) = result.batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(overview);
    };
    let sales = batch.column(0).as_primitive_opt::<Int64Type>();
    overview.sales = sales.map_or(0, |s| u64::try_from(s.value(0)).unwrap_or(0));
    let day = |i: usize| {
        batch
            .column(i)
            .as_primitive_opt::<Date32Type>()
            .filter(|d| d.is_valid(0))
            .map(|d| d.value(0))
    };
    overview.dates = day(1).zip(day(2));
    for column in &batch.columns()[3..] {
        let values =
            column
                .as_primitive_opt::<Decimal128Type>()
                .ok_or_else(|| EmberError::Internal {
                    message: format!("a price quantile of type {}", column.data_type()),
                })?;
        if values.is_valid(0) {
            overview.quantile_edges.push(values.value(0));
        }
    }
    overview.quantile_edges.dedup();
    Ok(overview)
}

/// What [`run_product_prices`] did: the tables' rows (read back from the output when it
/// was written), in the report's order.
pub struct PriceRun {
    /// `(name, rows)` of every table.
    pub tables: Vec<(&'static str, QueryResult)>,
    /// Rows written per table, when the report went to an output folder.
    pub written: Vec<(&'static str, u64)>,
    /// What the report read.
    pub input: PriceInput,
}

impl PriceRun {
    /// The table called `name`, when the report has it.
    pub fn table(&self, name: &str) -> Option<&QueryResult> {
        self.tables.iter().find(|(n, _)| *n == name).map(|(_, t)| t)
    }
}

/// What the report read: the sales of `price_sales` and the files behind them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceInput {
    /// Rows of `price_sales` (sales that found their product).
    pub sales: u64,
    /// Files read (sales and catalog; lineitem and part; the diamonds file).
    pub files: usize,
    /// The first and last sale date (days since 1970-01-01), for data with dates.
    pub dates: Option<(i32, i32)>,
}

/// The files behind `source`, with the sales and dates the report's overview found.
async fn price_input(
    session: &Session,
    source: &PriceSource,
    overview: &Overview,
) -> Result<PriceInput> {
    let folders = match source {
        PriceSource::Products(dir) => vec![dir.join("sales"), dir.join("products")],
        PriceSource::Tpch(dir) => vec![dir.join("lineitem"), dir.join("part")],
        PriceSource::Diamonds(_) => Vec::new(),
    };
    let mut files = usize::from(folders.is_empty());
    for folder in &folders {
        files += session.output_files(&path_text(folder)?).await?;
    }
    Ok(PriceInput {
        sales: overview.sales,
        files,
        dates: overview.dates,
    })
}

/// Runs the report over `source` in `form`; with `out`, writes each table as Parquet under
/// `out/<table>/` (through the engine's Parquet sink) and returns the tables read back.
/// `out` (a folder path or URL) must not hold files already unless the session's
/// `ember.output.mode` says to overwrite or append.
pub async fn run_product_prices(
    session: &Session,
    source: &PriceSource,
    form: ReportForm,
    out: Option<&str>,
) -> Result<PriceRun> {
    if let Some(out) = out {
        check_empty_output(session, out).await?;
    }
    register_price_sales(session, source).await?;
    let report = price_report(session, source, form).await?;
    let mut run = PriceRun {
        tables: Vec::new(),
        written: Vec::new(),
        input: price_input(session, source, &report.overview).await?,
    };
    for (name, rows) in &report.tables {
        let rows = match out {
            None => rows.collect().await?,
            Some(out) => {
                let folder = format!("{}/{name}", out.trim_end_matches('/'));
                let written = rows.write_parquet(&folder).await?;
                let count = written
                    .first_value::<datafusion::arrow::datatypes::UInt64Type>()
                    .unwrap_or(0);
                run.written.push((name, count));
                let key: Vec<_> = rows
                    .arrow_schema()
                    .fields()
                    .iter()
                    .take(3)
                    .map(|f| col(f.name()).sort(true, false))
                    .collect();
                session
                    .read_parquet(&folder)
                    .await?
                    .sort(key)?
                    .collect()
                    .await?
            }
        };
        run.tables.push((name, rows));
    }
    Ok(run)
}
