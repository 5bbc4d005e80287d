//! The HTML report of `ember run product-prices` (`report.html` beside the tables): the
//! key figures, revenue per category (bars), the price distribution per category (box
//! plots from the summary's quartiles), revenue per month of the top categories (lines),
//! the price bands (bars), and every table of the run, sortable. One self-contained file;
//! see [`ember::report`].

use crate::price_summary::{
    Columns, SummaryContext, categories, count, day, fixed_bands, money, plural, source_place,
};
use crate::product_prices::{PriceRun, ReportForm};
use ember::Result;
use ember::report::chart::{Bar, BoxStats, Series, bars, box_plots, lines};
use ember::report::format::{percent, short};
use ember::report::{Page, Table};

/// The name of the report's file in the output folder.
pub const REPORT_FILE: &str = "report.html";

/// The report of `run` as a page.
pub fn price_report_page(run: &PriceRun, context: &SummaryContext) -> Result<Page> {
    let dimension = context.source.dimensions()[0];
    let categories = categories(run, dimension)?;
    let input = &run.input;
    let form = match context.form {
        ReportForm::Dsl => "DSL",
        ReportForm::Sql => "SQL",
    };
    let mut page = Page::new("Product prices");
    page.line(format!(
        "{} sales from {} {} in {}",
        count(input.sales as i128),
        input.files,
        if input.files == 1 { "file" } else { "files" },
        source_place(&context.source)
    ));
    if let Some((first, last)) = input.dates {
        page.line(format!("Sales dated {} to {}", day(first), day(last)));
    }
    page.line(format!(
        "{form} form on {} executors in {:.2} s",
        context.executors, context.seconds
    ));
    let revenue: i128 = categories.iter().map(|c| c.revenue).sum();
    page.fact(money(revenue), "revenue")
        .fact(count(input.sales as i128), "sales")
        .fact(count(categories.len() as i128), plural(dimension));
    if let Some(top) = categories.first() {
        page.fact(top.key.clone(), format!("top {dimension} by revenue"));
    }

    let money_axis = |v: f64| short(v);
    let price_axis = |v: f64| {
        if v < 10.0 {
            format!("{v:.2}")
        } else {
            short(v)
        }
    };
    let total = revenue.max(1) as f64;
    let revenue_bars: Vec<Bar> = categories
        .iter()
        .map(|c| Bar {
            label: c.key.clone(),
            value: c.revenue as f64 / 100.0,
            note: format!(
                "{} ({})",
                money(c.revenue),
                percent(c.revenue as f64 / total)
            ),
        })
        .collect();
    page.section("revenue", format!("Revenue per {dimension}"))
        .chart(
            "revenue",
            format!("Revenue of each {dimension}, highest first, with its share of all revenue."),
            bars(
                &format!("Revenue per {dimension}"),
                "revenue",
                &revenue_bars,
                &money_axis,
            )?,
        );

    let boxes: Vec<BoxStats> = categories
        .iter()
        .filter_map(|c| {
            let [low, q1, median, q3, high] = c.prices;
            let price = |v: Option<i128>| v.map(|cents| cents as f64 / 100.0);
            Some(BoxStats {
                label: c.key.clone(),
                low: price(low)?,
                q1: price(q1)?,
                median: price(median)?,
                q3: price(q3)?,
                high: price(high)?,
            })
        })
        .collect();
    page.section("prices", format!("Prices per {dimension}"))
        .chart(
            "prices",
            "Unit prices: each box spans the 25th to the 75th percentile with a line at the \
             median (approximate, t-digest), the whiskers the lowest and highest price; \
             logarithmic axis.",
            box_plots(
                &format!("Unit price per {dimension}"),
                "unit price",
                &boxes,
                &price_axis,
            )?,
        );

    let shown: Vec<&str> = categories
        .iter()
        .take(context.top)
        .map(|c| c.key.as_str())
        .collect();
    let monthly = run.table("monthly").map(Columns::new).transpose()?;
    let section = page.section("monthly", "Revenue per month");
    match monthly {
        Some(monthly) => {
            let keys = monthly.strings("category")?;
            let months = monthly.dates("month")?;
            let revenue = monthly.cents("revenue")?;
            let first = months
                .iter()
                .flatten()
                .copied()
                .min()
                .and_then(month_number);
            let index = |days: i32| Some((month_number(days)? - first?) as f64);
            let series: Vec<Series> = shown
                .iter()
                .map(|key| Series {
                    name: (*key).to_string(),
                    points: (0..keys.len())
                        .filter(|i| keys[*i].as_deref() == Some(*key))
                        .filter_map(|i| Some((index(months[i]?)?, revenue[i]? as f64 / 100.0)))
                        .collect(),
                })
                .collect();
            let month_label = |x: f64| {
                first.map_or(String::new(), |origin| {
                    let month = origin + x.round() as i64;
                    format!("{}-{:02}", month.div_euclid(12), month.rem_euclid(12) + 1)
                })
            };
            section.chart(
                "monthly",
                format!(
                    "Revenue per month of the top {} {} by revenue.",
                    shown.len(),
                    plural(dimension)
                ),
                lines(
                    "Revenue per month",
                    ("month", "revenue"),
                    &series,
                    &month_label,
                    &money_axis,
                )?,
            );
        }
        None => {
            section.text("This source has no sale dates, so there is no monthly revenue.");
        }
    }

    let bands = fixed_bands(run)?;
    let band_sales: i128 = bands.iter().map(|b| b.sales).sum();
    let band_bars: Vec<Bar> = bands
        .iter()
        .map(|b| Bar {
            label: b.range(),
            value: b.revenue as f64 / 100.0,
            note: format!(
                "{} from {} sales ({})",
                money(b.revenue),
                count(b.sales),
                percent(b.sales as f64 / band_sales.max(1) as f64)
            ),
        })
        .collect();
    page.section("bands", "Price bands").chart(
        "bands",
        format!(
            "Revenue in each fixed price band, all {}, with its sales and their share.",
            plural(dimension)
        ),
        bars("Revenue per price band", "revenue", &band_bars, &money_axis)?,
    );

    let tables = page.section("tables", "Tables");
    tables.text(
        "Every table of the run (click a column to sort; again to reverse). Money is in \
         currency units to the cent.",
    );
    for (name, rows) in &run.tables {
        tables.table(Table::from_result(name, *name, rows)?);
    }
    match &context.out {
        Some(out) => page.footer(format!(
            "The same tables as Parquet in {out}. Made by ember run product-prices."
        )),
        None => page.footer("Made by ember run product-prices."),
    };
    Ok(page)
}

/// The month of `days` (since 1970-01-01) counted from year 0: `year * 12 + month - 1`.
fn month_number(days: i32) -> Option<i64> {
    let date = day(days);
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    Some(year * 12 + month - 1)
}
