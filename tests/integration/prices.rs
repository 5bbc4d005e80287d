//! The product-price pipeline: its DSL and SQL forms against each other, its diamonds
//! summary against DataFusion SQL over the same file, and its tables on the products
//! dataset against what they promise (ranks, lags, bands).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use datafusion::prelude::{CsvReadOptions, SessionConfig, SessionContext};
use ember::datasets::{ProductsOptions, generate_products};
use ember::examples::product_prices::{
    FIXED_EDGES, PriceSource, ReportForm, TOP_PRODUCTS, run_product_prices,
};
use ember::{EmberConfig, Session};
use ember_tests::{cells_match, rows};

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

/// The rows of `sql` run by DataFusion alone on `ctx`.
async fn df_rows(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let batches = ctx
        .sql(sql)
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    rows(&batches)
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
        let batches = df_rows(
            &ctx,
            &format!(
                "SELECT {dim}, count(*), sum(price), min(price), max(price), avg(price), \
                 stddev(price) FROM diamonds GROUP BY {dim} ORDER BY {dim}"
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
        let values = df_rows(
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
    // The approximate median, p90 and p99 (t-digest) land within 1 % of rank of the exact
    // quantile of each group.
    for row in summary {
        let mut sorted = prices[&(row[0].clone(), row[1].clone())].clone();
        sorted.sort_by(f64::total_cmp);
        for (q, cell) in [(0.5, &row[8]), (0.9, &row[9]), (0.99, &row[10])] {
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
    let batches = df_rows(
        &ctx,
        &format!(
            "SELECT cut, rank, product, revenue FROM (SELECT cut, product, revenue, \
             row_number() OVER (PARTITION BY cut ORDER BY revenue DESC, product) AS rank FROM \
             (SELECT cut, concat(CAST(carat AS VARCHAR), ' ct ', color, ' ', clarity) AS product, \
              sum(CAST(price AS DOUBLE)) AS revenue FROM diamonds GROUP BY 1, 2)) \
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
                    (change - (revenue - before) / before).abs() < 1e-9,
                    "{row:?}"
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
