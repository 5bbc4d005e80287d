//! The product-price pipeline: its DSL and SQL forms against each other, its diamonds
//! summary against DataFusion SQL over the same file, its tables on the products
//! dataset against what they promise (ranks, lags, bands, money in cents), and its
//! terminal summary against sums computed here from the Parquet files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use datafusion::prelude::{CsvReadOptions, SessionConfig, SessionContext};
use ember::datasets::{ProductsOptions, generate_products};
use ember::{EmberConfig, Session};
use ember_examples::product_prices::{
    FIXED_EDGES, PriceSource, ReportForm, TOP_PRODUCTS, run_product_prices,
};
use ember_tests::{cells_match, datafusion_rows_on, rows};

fn diamonds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/diamonds.csv")
}

fn session() -> Session {
    Session::new(EmberConfig {
        executors: 2,
        ..EmberConfig::default()
    })
    .expect("the cluster starts")
}

/// A products dataset of `rows` sales in a temporary folder.
fn products(rows: u64, seed: u64, parts: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    generate_products(&ProductsOptions {
        rows,
        out_dir: dir.path().to_path_buf(),
        seed,
        dirty_fraction: None,
        parts,
    })
    .expect("products");
    dir
}

/// Every table of the report in `form`, as text rows by table name.
async fn report(source: &PriceSource, form: ReportForm) -> HashMap<String, Vec<Vec<String>>> {
    let session = session();
    let run = run_product_prices(&session, source, form, None)
        .await
        .expect("the report runs");
    run.tables
        .iter()
        .map(|(name, result)| (name.to_string(), rows(&result.batches)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dsl_and_sql_forms_give_identical_reports_on_diamonds_and_products() {
    let dir = products(20_000, 7, 3);
    for source in [
        PriceSource::Diamonds(diamonds()),
        PriceSource::Products(dir.path().to_path_buf()),
    ] {
        let dsl = report(&source, ReportForm::Dsl).await;
        let sql = report(&source, ReportForm::Sql).await;
        let expected_tables = if source.has_dates() { 4 } else { 3 };
        assert_eq!(dsl.len(), expected_tables, "{source:?}");
        for (name, rows) in &dsl {
            assert!(!rows.is_empty(), "{source:?}: {name} is empty");
            // Exactly equal, not within a tolerance: both forms run the same operators.
            assert_eq!(Some(rows), sql.get(name), "{source:?}: {name} differs");
        }
    }
}

/// Rank of `value` among `sorted` as a fraction: the share of values below it, and the
/// share at or below it.
fn rank_range(sorted: &[f64], value: f64) -> (f64, f64) {
    let below = sorted.partition_point(|v| *v < value) as f64;
    let at_or_below = sorted.partition_point(|v| *v <= value) as f64;
    let n = sorted.len() as f64;
    (below / n, at_or_below / n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diamonds_summary_agrees_with_datafusion_sql() {
    let ours = report(&PriceSource::Diamonds(diamonds()), ReportForm::Dsl).await;
    let summary = &ours["summary"];
    assert_eq!(summary.len(), 5 + 7 + 8, "cuts, colours and clarities");

    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(3));
    ctx.register_csv(
        "diamonds",
        diamonds().to_string_lossy().as_ref(),
        CsvReadOptions::new(),
    )
    .await
    .expect("register");
    let mut prices: HashMap<(String, String), Vec<f64>> = HashMap::new();
    for dim in ["cut", "color", "clarity"] {
        let batches = datafusion_rows_on(
            &ctx,
            &format!(
                "SELECT {dim}, count(*), sum(price), min(price), max(price), \
                 CAST(avg(CAST(price AS DECIMAL(12, 2))) AS DECIMAL(12, 2)), \
                 CAST(stddev(CAST(price AS DOUBLE)) AS DECIMAL(12, 2)) \
                 FROM diamonds GROUP BY {dim} ORDER BY {dim}"
            ),
        )
        .await;
        let expected = batches;
        let got: Vec<&Vec<String>> = summary.iter().filter(|r| r[0] == dim).collect();
        assert_eq!(got.len(), expected.len(), "{dim}");
        for (g, e) in got.iter().zip(&expected) {
            // key, sales, revenue, min, max, mean, stddev.
            for (column, (a, b)) in g[1..8].iter().zip(e).enumerate() {
                assert!(
                    cells_match(a, b),
                    "{dim} {}: column {column}: {a} vs {b}",
                    e[0]
                );
            }
        }
        let values = datafusion_rows_on(
            &ctx,
            &format!("SELECT {dim}, CAST(price AS DOUBLE) FROM diamonds"),
        )
        .await;
        for row in values {
            let price: f64 = row[1].parse().expect("a price");
            prices
                .entry((dim.to_string(), row[0].clone()))
                .or_default()
                .push(price);
        }
    }
    // The approximate quartiles, p90 and p99 (t-digest) land within 1 % of rank of the
    // exact quantile of each group.
    for row in summary {
        let mut sorted = prices[&(row[0].clone(), row[1].clone())].clone();
        sorted.sort_by(f64::total_cmp);
        for (q, cell) in [0.25, 0.5, 0.75, 0.9, 0.99].iter().zip(&row[8..13]) {
            let q = *q;
            let value: f64 = cell.parse().expect("a quantile");
            let (low, high) = rank_range(&sorted, value);
            assert!(
                low <= q + 0.01 && high >= q - 0.01,
                "{} {}: the {q} quantile {value} has rank {low:.4}..{high:.4}",
                row[0],
                row[1]
            );
        }
    }
    // The top diamonds per cut: the same as DataFusion ranks them.
    let batches = datafusion_rows_on(
        &ctx,
        &format!(
            "SELECT cut, rank, product, revenue FROM (SELECT cut, product, revenue, \
             row_number() OVER (PARTITION BY cut ORDER BY revenue DESC, product) AS rank FROM \
             (SELECT cut, concat(CAST(carat AS VARCHAR), ' ct ', color, ' ', clarity) AS product, \
              sum(CAST(price AS DECIMAL(20, 2))) AS revenue FROM diamonds GROUP BY 1, 2)) \
             WHERE rank <= {TOP_PRODUCTS} ORDER BY cut, rank"
        ),
    )
    .await;
    let expected = batches;
    let got: Vec<Vec<String>> = ours["top_products"]
        .iter()
        .map(|r| r[..4].to_vec())
        .collect();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_report_is_written_as_parquet_and_keeps_its_promises() {
    let data = products(30_000, 11, 2);
    let out = tempfile::tempdir().expect("tempdir");
    let out_dir = out.path().join("report");
    let session = session();
    let source = PriceSource::Products(data.path().to_path_buf());
    let run = run_product_prices(&session, &source, ReportForm::Sql, out_dir.to_str())
        .await
        .expect("the report runs");
    let names: Vec<&str> = run.written.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["summary", "bands", "top_products", "monthly"]);
    for (name, count) in &run.written {
        let files: Vec<_> = std::fs::read_dir(out_dir.join(name))
            .expect("a folder per table")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
            .collect();
        assert!(!files.is_empty(), "{name}: no Parquet files");
        let read_back = &run.tables.iter().find(|(n, _)| n == name).expect("table").1;
        assert_eq!(read_back.num_rows() as u64, *count, "{name}");
    }
    let table = |name: &str| {
        rows(
            &run.tables
                .iter()
                .find(|(n, _)| *n == name)
                .expect("table")
                .1
                .batches,
        )
    };

    // 16 categories, each with its brands; sales add up to every row.
    let summary = table("summary");
    let categories: Vec<&Vec<String>> = summary.iter().filter(|r| r[0] == "category").collect();
    assert_eq!(categories.len(), 16);
    let total: u64 = categories
        .iter()
        .map(|r| r[2].parse::<u64>().expect("count"))
        .sum();
    assert_eq!(total, 30_000);
    let brands: u64 = summary
        .iter()
        .filter(|r| r[0] == "brand")
        .map(|r| r[2].parse::<u64>().expect("count"))
        .sum();
    assert_eq!(brands, 30_000, "brands, with the missing ones as one group");

    // Top products: at most 10 per category, ranks 1.., revenue not increasing.
    let top = table("top_products");
    let mut per_category: HashMap<&str, Vec<f64>> = HashMap::new();
    for row in &top {
        let revenue: f64 = row[3].parse().expect("revenue");
        let list = per_category.entry(&row[0]).or_default();
        list.push(revenue);
        assert_eq!(row[1], list.len().to_string(), "rank in {}", row[0]);
    }
    assert_eq!(per_category.len(), 16);
    for (category, revenues) in &per_category {
        assert!(revenues.len() <= TOP_PRODUCTS);
        assert!(
            revenues.windows(2).all(|w| w[0] >= w[1]),
            "{category}: {revenues:?}"
        );
    }

    // Monthly: 24 months over two years per category, each change from the month before.
    let monthly = table("monthly");
    let mut previous: Option<(String, f64)> = None;
    for row in &monthly {
        let revenue: f64 = row[2].parse().expect("revenue");
        match &previous {
            Some((category, before)) if *category == row[0] => {
                assert!(cells_match(&row[3], &before.to_string()), "{row:?}");
                let change: f64 = row[4].parse().expect("change");
                assert!(
                    (change - (revenue - before) / before).abs() <= 0.5e-4 + 1e-12,
                    "the change rounded to 4 decimals: {row:?}"
                );
            }
            _ => assert_eq!(row[3], "NULL", "the first month has no change: {row:?}"),
        }
        previous = Some((row[0].clone(), revenue));
    }
    assert!(monthly.len() >= 16 * 20, "{} months", monthly.len());

    // Fixed bands cover every priced sale once, quantile bands split them near fifths.
    let bands = table("bands");
    let summed = |scheme: &str| -> Vec<u64> {
        let mut per_band = vec![0_u64; FIXED_EDGES.len() + 1];
        for row in bands.iter().filter(|r| r[0] == scheme) {
            per_band[row[2].parse::<usize>().expect("band")] += row[5].parse::<u64>().expect("n");
        }
        per_band
    };
    let priced: u64 = summed("fixed").iter().sum();
    assert_eq!(priced, summed("quantile").iter().sum::<u64>());
    assert!(
        priced < 30_000 && priced > 28_000,
        "{priced} sales with a price"
    );
    for (band, n) in summed("quantile").iter().take(5).enumerate() {
        let share = *n as f64 / priced as f64;
        assert!(
            (0.15..0.25).contains(&share),
            "quantile band {band}: {share:.3}"
        );
    }

    // A second run into the same folder is refused, and leaves it as it was.
    let err = run_product_prices(&session, &source, ReportForm::Dsl, out_dir.to_str())
        .await
        .err()
        .expect("a non-empty output folder is refused");
    assert!(err.to_string().contains("is not empty"), "{err}");
    assert_eq!(std::fs::read_dir(&out_dir).expect("still there").count(), 4);
}

/// Whether `text` has a number with more than two decimals (float noise, or money not
/// rounded to the cent).
fn has_long_decimals(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'.' && i > 0 && bytes[i - 1].is_ascii_digit() {
            let digits = bytes[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if digits > 2 {
                let line_start = text[..i].rfind('\n').map_or(0, |p| p + 1);
                let line_end = text[i..].find('\n').map_or(text.len(), |p| i + p);
                return Some(&text[line_start..line_end]);
            }
        }
    }
    None
}

/// `cents` as the summary prints money: thousands separated, two decimals.
fn grouped_money(cents: i128) -> String {
    let whole = (cents / 100).to_string();
    let mut out = String::new();
    for (i, d) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    format!("{out}.{:02}", cents % 100)
}

/// Revenue per category in cents, summed here from the sales Parquet files: unit price
/// (Decimal128 cents) times quantity, sales without a price left out.
fn revenue_from_parquet(sales: &Path) -> (HashMap<String, i128>, u64) {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Decimal128Type, Int32Type};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let mut per_category: HashMap<String, i128> = HashMap::new();
    let mut rows = 0;
    for entry in std::fs::read_dir(sales).expect("sales folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let reader = ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&path).expect("a sales file"),
        )
        .expect("parquet")
        .build()
        .expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            rows += batch.num_rows() as u64;
            let category = arrow::compute::cast(
                batch.column_by_name("category").expect("category"),
                &DataType::Utf8,
            )
            .expect("text");
            let category = category.as_string::<i32>();
            let price = batch.column_by_name("unit_price").expect("unit_price");
            assert_eq!(
                price.data_type(),
                &DataType::Decimal128(12, 2),
                "stored as money"
            );
            let price = price.as_primitive::<Decimal128Type>();
            let quantity = batch.column_by_name("quantity").expect("quantity");
            let quantity = quantity.as_primitive::<Int32Type>();
            for i in 0..batch.num_rows() {
                if price.is_valid(i) {
                    *per_category
                        .entry(category.value(i).to_string())
                        .or_default() += price.value(i) * i128::from(quantity.value(i));
                }
            }
        }
    }
    (per_category, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_summary_names_the_top_category_and_its_revenue_to_the_cent() {
    use ember_examples::price_summary::{SummaryContext, price_summary};

    let data = products(40_000, 42, 3);
    let out = tempfile::tempdir().expect("tempdir");
    let out_dir = out.path().join("tables");
    let session = session();
    let source = PriceSource::Products(data.path().to_path_buf());
    let run = run_product_prices(&session, &source, ReportForm::Dsl, out_dir.to_str())
        .await
        .expect("the report runs");
    let context = SummaryContext {
        source: source.clone(),
        form: ReportForm::Dsl,
        top: 10,
        out: out_dir.to_str().map(str::to_string),
        report: None,
        executors: 2,
        seconds: 1.5,
    };
    let lines = price_summary(&run, &context).expect("a summary");
    let text = lines.join("\n");
    assert!(lines.len() <= 40, "{} lines:\n{text}", lines.len());
    if let Some(line) = has_long_decimals(&text) {
        panic!("a number with more than 2 decimals: {line}\n{text}");
    }

    // What was read: every sale, 3 sales files and the catalog, two years of dates.
    let (expected, rows) = revenue_from_parquet(&data.path().join("sales"));
    assert_eq!(rows, 40_000);
    assert!(
        lines[0].contains("40,000 sales from 4 files"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("dates 2023-01-01 to 2024-12-31; 16 categories"),
        "{}",
        lines[1]
    );

    // The top category and its revenue to the cent, as summed here in integer cents.
    let (top, cents) = expected
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .expect("categories");
    let ranked = lines
        .iter()
        .position(|l| l.starts_with("Top 10 of 16 categories by revenue"))
        .expect("the top table");
    let first = &lines[ranked + 2];
    let cells: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(cells[0], "1", "{first}");
    assert_eq!(cells[1], top, "{text}");
    assert_eq!(cells[2], grouped_money(*cents), "{text}");
    // Ten ranked rows, revenues not increasing.
    let revenues: Vec<i128> = lines[ranked + 2..ranked + 12]
        .iter()
        .map(|l| {
            l.split_whitespace()
                .nth(2)
                .expect("revenue")
                .replace([',', '.'], "")
                .parse()
                .expect("cents")
        })
        .collect();
    assert!(revenues.windows(2).all(|w| w[0] >= w[1]), "{text}");
    let mut sorted: Vec<i128> = expected.values().copied().collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(revenues, sorted[..10], "the ten largest revenues, in order");

    // The bands table and where the tables went.
    assert!(text.contains("Price bands, all categories"), "{text}");
    assert!(text.contains("under 10.00"), "{text}");
    assert!(
        text.contains(&format!("as Parquet in {}", out_dir.display())),
        "{text}"
    );

    // Money columns are decimals with 2 decimals in every table.
    for (name, table) in &run.tables {
        for field in table.schema.fields() {
            let money = field.name() == "revenue"
                || field.name() == "previous_revenue"
                || field.name().ends_with("_price")
                || field.name() == "low"
                || field.name() == "high";
            if money {
                assert!(
                    matches!(
                        field.data_type(),
                        arrow::datatypes::DataType::Decimal128(_, 2)
                    ),
                    "{name}.{}: {}",
                    field.name(),
                    field.data_type()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_revenue_agrees_to_the_cent_with_datafusion_alone() {
    let data = products(25_000, 5, 2);
    let source = PriceSource::Products(data.path().to_path_buf());
    let dsl = report(&source, ReportForm::Dsl).await;

    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
    let sales = data.path().join("sales");
    ctx.register_parquet("sales", sales.to_str().expect("utf-8"), Default::default())
        .await
        .expect("register");
    let expected = datafusion_rows_on(
        &ctx,
        "SELECT 'category', category, count(*), \
         sum(CAST(unit_price * quantity AS DECIMAL(20, 2))), min(unit_price), max(unit_price) \
         FROM sales GROUP BY category ORDER BY category",
    )
    .await;
    let got: Vec<Vec<String>> = dsl["summary"]
        .iter()
        .filter(|r| r[0] == "category")
        .map(|r| r[..6].to_vec())
        .collect();
    // Exactly equal text: both are Decimal128 with 2 decimals.
    assert_eq!(got, expected);
    let (cents, _) = revenue_from_parquet(&sales);
    for row in &got {
        let printed: i128 = row[3].replace('.', "").parse().expect("cents");
        assert_eq!(printed, cents[&row[1]], "{row:?}");
    }
}
