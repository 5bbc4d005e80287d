//! `ember run pricing` and `ember run product-prices`: their options, the data they read
//! (made when missing), and what they print and write.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use ember::OutputFormat;
use ember::cli::{ClusterArgs, JobContext, finish_progress, print_result};
use ember::pipelines::run_pricing;

use crate::price_report::{REPORT_FILE, price_report_page};
use crate::price_summary::{DEFAULT_TOP, SummaryContext, price_summary};
use crate::product_prices::{PriceSource, ReportForm, ensure_products, run_product_prices};

/// Options of `ember run pricing`.
#[derive(Args)]
pub(super) struct PricingArgs {
    /// Scale factor of the TPC-H data it makes when missing.
    #[arg(long = "sf", default_value_t = 0.1)]
    scale_factor: f64,
    /// Where the data lives (default: `data/tpch-sf<SF>`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output format: table, csv or json.
    #[arg(long, default_value = "table")]
    format: OutputFormat,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// `ember run pricing`: TPC-H Q1 over `lineitem`, made when missing.
pub(super) async fn pricing(args: PricingArgs, context: JobContext) -> anyhow::Result<()> {
    let dir = args
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("data/tpch-sf{}", args.scale_factor)));
    let (session, bar) = context.session(&args.cluster).await?;
    let started = std::time::Instant::now();
    let result = run_pricing(&session, &dir, args.scale_factor).await;
    finish_progress(bar.as_deref());
    let result = result?;
    print_result(&result, args.format)?;
    if let Some(metrics) = &result.metrics {
        eprintln!(
            "pricing summary over {} on {} executors: {} stages, {} tasks, {:.2} s",
            dir.display(),
            session.config().executors,
            metrics.stages.len(),
            metrics.tasks.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Options of `ember run product-prices`.
#[derive(Args)]
pub(super) struct ProductPricesArgs {
    /// The products dataset (default `data/products`, made with --rows sales when
    /// missing); with --diamonds, the diamonds CSV.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Where the tables go as Parquet, with report.html (default `out/product-prices`,
    /// replaced on every run; a given folder must be empty).
    #[arg(long)]
    out: Option<PathBuf>,
    /// What to print with --format table: a short summary, or every table.
    #[arg(long, value_enum, default_value_t = Show::Summary)]
    show: Show,
    /// Categories in the summary, by revenue.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TOP)]
    top: usize,
    /// Read TPC-H `part` and `lineitem` from this folder.
    #[arg(long, value_name = "DIR", conflicts_with = "diamonds")]
    tpch: Option<PathBuf>,
    /// Read the diamonds (default `datasets/diamonds.csv`).
    #[arg(long)]
    diamonds: bool,
    /// Sales to generate when the products dataset is missing.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// The form of the report, the Dataset API or SQL (same results).
    #[arg(long, value_enum, default_value_t = Form::Dsl)]
    form: Form,
    /// Output format: table, csv or json.
    #[arg(long, default_value = "table")]
    format: OutputFormat,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// What `run product-prices` prints.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Show {
    /// What was read, the top categories and the price bands, in about 30 lines.
    Summary,
    /// Every table of the report.
    All,
}

/// Where `run product-prices` writes its tables without `--out`.
const DEFAULT_PRICES_OUT: &str = "out/product-prices";

/// The two forms of the product-price report.
#[derive(Clone, Copy, ValueEnum)]
enum Form {
    /// The Dataset API.
    Dsl,
    /// SQL.
    Sql,
}

/// The products dataset, TPC-H or diamonds, as the options choose.
fn price_source(args: &ProductPricesArgs) -> anyhow::Result<PriceSource> {
    if let Some(dir) = &args.tpch {
        if !dir.join("lineitem").is_dir() || !dir.join("part").is_dir() {
            anyhow::bail!(
                "invalid setting --tpch: {} has no lineitem/ and part/ folders (make them with \
                 `ember datasets tpch --sf 1 --out {}`)",
                dir.display(),
                dir.display()
            );
        }
        return Ok(PriceSource::Tpch(dir.clone()));
    }
    if args.diamonds {
        let file = args
            .input
            .clone()
            .unwrap_or_else(|| PathBuf::from("datasets/diamonds.csv"));
        if !file.is_file() {
            anyhow::bail!(
                "invalid setting --input: the diamonds file {} does not exist",
                file.display()
            );
        }
        return Ok(PriceSource::Diamonds(file));
    }
    let dir = args
        .input
        .clone()
        .unwrap_or_else(|| PathBuf::from("data/products"));
    Ok(PriceSource::Products(dir))
}

/// `ember run product-prices`: the report's tables as Parquet and `report.html` in the
/// output folder, and a summary (or every table) on stdout.
pub(super) async fn product_prices(args: ProductPricesArgs, job: JobContext) -> anyhow::Result<()> {
    if args.top == 0 {
        anyhow::bail!("invalid setting --top: expected at least 1 category, got 0");
    }
    let source = price_source(&args)?;
    if let PriceSource::Products(dir) = &source {
        // An object-store URL is read as it is; a local folder is checked (and made).
        let remote = dir.to_string_lossy().contains("://");
        let has_sales = remote || dir.join("sales").is_dir();
        if args.input.is_some() && !has_sales {
            anyhow::bail!(
                "invalid setting --input: {} has no sales/ folder (make one with `ember \
                 datasets products --rows N --out {}`)",
                dir.display(),
                dir.display()
            );
        }
        if !has_sales && ensure_products(dir, args.rows, 4)? {
            eprintln!("made {} sales in {}", args.rows, dir.display());
        }
    }
    let form = match args.form {
        Form::Dsl => ReportForm::Dsl,
        Form::Sql => ReportForm::Sql,
    };
    // The default folder is the pipeline's own: each run replaces the one before, unless
    // --mode says otherwise.
    let mut cluster = args.cluster.clone();
    let out_dir = match &args.out {
        Some(dir) => dir.clone(),
        None => {
            cluster.mode.get_or_insert_with(|| "overwrite".to_string());
            PathBuf::from(DEFAULT_PRICES_OUT)
        }
    };
    let out = out_dir.to_string_lossy().into_owned();
    let (session, bar) = job.session(&cluster).await?;
    let started = std::time::Instant::now();
    let run = run_product_prices(&session, &source, form, Some(&out)).await;
    finish_progress(bar.as_deref());
    let run = run?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut context = SummaryContext {
        source: source.clone(),
        form,
        top: args.top,
        out: Some(out.clone()),
        report: None,
        executors: session.config().executors,
        seconds: elapsed,
    };
    let report = format!("{}/{REPORT_FILE}", out.trim_end_matches('/'));
    let page = price_report_page(&run, &context)?.render();
    session.put_object(&report, page.into_bytes()).await?;
    context.report = Some(report);
    if args.format == OutputFormat::Table && args.show == Show::Summary {
        let mut stdout = std::io::stdout().lock();
        for line in price_summary(&run, &context)? {
            writeln!(stdout, "{line}")?;
        }
        return Ok(());
    }
    for (name, rows) in &run.tables {
        println!("{name}:");
        print_result(rows, args.format)?;
    }
    for (name, count) in &run.written {
        eprintln!(
            "wrote {count} rows of {name} to {}",
            Path::new(&out).join(name).display()
        );
    }
    if let Some(report) = &context.report {
        eprintln!("wrote the report to {report}");
    }
    eprintln!(
        "product prices over {} on {} executors: {:.2} s",
        source_name(&source),
        session.config().executors,
        elapsed
    );
    Ok(())
}

fn source_name(source: &PriceSource) -> String {
    match source {
        PriceSource::Products(dir) => format!("the products in {}", dir.display()),
        PriceSource::Tpch(dir) => format!("TPC-H in {}", dir.display()),
        PriceSource::Diamonds(file) => format!("the diamonds in {}", file.display()),
    }
}
