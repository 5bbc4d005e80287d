//! `ember run NAME`: the example pipelines, each on the embedded cluster or, with
//! `--scheduler URL`, on a process cluster.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::{ClusterArgs, finish_progress, new_session, print_result};

mod forest;
use crate::OutputFormat;
use crate::examples::price_report::{REPORT_FILE, price_report_page};
use crate::examples::price_summary::{DEFAULT_TOP, SummaryContext, price_summary};
use crate::examples::product_prices::{
    PriceSource, ReportForm, ensure_products, run_product_prices,
};
use crate::examples::{distributed_sum, matrix_multiply, word_count};
use crate::pipelines::run_pricing;

/// The example names `ember run` knows.
const EXAMPLES: &str = "pricing, product-prices, forest-prep, forest-train, forest-predict, \
                        word-count, distributed-sum, matrix-multiply";

#[derive(Args)]
pub(crate) struct RunArgs {
    /// The pipeline: `pricing` (pricing summary over TPC-H lineitem), `product-prices`
    /// (price statistics, bands, top products and monthly revenue), `forest-prep` (fitted
    /// feature transformers, split, bin statistics), `forest-train` (a random forest,
    /// evaluated on held-out rows), `forest-predict` (a saved forest on new rows),
    /// `word-count INPUT...`
    /// (the 20 most frequent words), `distributed-sum --n N` (the sum of 1..=N) or
    /// `matrix-multiply --n N --block B` (the Frobenius norm of a blocked product).
    example: String,
    /// Inputs of the pipeline (word-count: text files, folders or globs).
    inputs: Vec<String>,
    /// product-prices: the products dataset (default `data/products`, made with --rows
    /// sales when missing); with --diamonds, the diamonds CSV. forest-*: a CSV or Parquet
    /// file, or a folder of them.
    #[arg(long)]
    input: Option<PathBuf>,
    /// forest-prep, forest-train: the column to predict (numbers: regression; strings:
    /// classification).
    #[arg(long)]
    label: Option<String>,
    /// forest-train: trees to grow (default 20); forest-prep: bootstrap weights drawn per
    /// training row (default 20).
    #[arg(long)]
    trees: Option<usize>,
    /// forest-train: the deepest level (the root is 0).
    #[arg(long, default_value_t = 5)]
    max_depth: usize,
    /// forest-*: quantile buckets per numeric feature (and, in training, most labels plus
    /// one per string feature).
    #[arg(long, default_value_t = 32)]
    max_bins: usize,
    /// forest-*: share of rows held out for testing (a seeded hash of each row decides).
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// forest-train: features each node may split on: auto (regression all,
    /// classification sqrt), all, sqrt, log2, onethird, a fraction or a count.
    #[arg(long, default_value = "auto")]
    feature_subset: String,
    /// forest-train: where to save the model (JSON; default model.json in --out);
    /// forest-predict: the model to load.
    #[arg(long)]
    model: Option<PathBuf>,
    /// forest-prep: what string indexers do with unseen labels and nulls: error, skip or
    /// keep.
    #[arg(long, default_value = "keep")]
    handle_invalid: String,
    /// forest-prep: how imputers fill missing numbers: mean or median.
    #[arg(long, default_value = "mean")]
    impute: String,
    /// Where the pipeline writes its outputs. product-prices: its tables as Parquet and
    /// report.html (default `out/product-prices`, replaced on every run; a given folder must
    /// be empty); forest-train: model.json and report.html (default `out/forest-train`);
    /// forest-prep and forest-predict: rows as Parquet (a folder that must be empty).
    #[arg(long)]
    out: Option<PathBuf>,
    /// product-prices: what to print with --format table: a short summary, or every table.
    #[arg(long, value_enum, default_value_t = Show::Summary)]
    show: Show,
    /// product-prices: categories in the summary, by revenue.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TOP)]
    top: usize,
    /// product-prices: read TPC-H `part` and `lineitem` from this folder.
    #[arg(long, value_name = "DIR", conflicts_with = "diamonds")]
    tpch: Option<PathBuf>,
    /// product-prices: read the diamonds (default `datasets/diamonds.csv`).
    #[arg(long)]
    diamonds: bool,
    /// product-prices: sales to generate when the products dataset is missing.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// product-prices: the form of the report, the Dataset API or SQL (same results).
    #[arg(long, value_enum, default_value_t = Form::Dsl)]
    form: Form,
    /// distributed-sum: the last number to add (default 1000000); matrix-multiply: the
    /// matrix size (default 512).
    #[arg(long)]
    n: Option<u64>,
    /// matrix-multiply: the block size.
    #[arg(long, default_value_t = 128)]
    block: u64,
    /// The seed of every random choice (matrix-multiply: of the matrices).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// pricing: scale factor of the data it makes when missing.
    #[arg(long = "sf", default_value_t = 0.1)]
    scale_factor: f64,
    /// pricing: where its data lives (default: `data/tpch-sf<SF>`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output format: table, csv or json (forest-*: the summary's figures for machines).
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

/// Runs the example `args` names.
pub(super) async fn run_example(args: RunArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    match args.example.as_str() {
        "pricing" => {
            let dir = args
                .data
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("data/tpch-sf{}", args.scale_factor)));
            let (session, bar) = new_session(&args.cluster).await?;
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
        }
        "product-prices" => product_prices(&args).await?,
        "forest-prep" => forest::prep(&args).await?,
        "forest-train" => forest::train(&args).await?,
        "forest-predict" => forest::predict(&args).await?,
        "word-count" => {
            let (session, bar) = new_session(&args.cluster).await?;
            let top = word_count(&session, &args.inputs, 20).await;
            finish_progress(bar.as_deref());
            let mut out = stdout.lock();
            for (word, count) in top? {
                writeln!(out, "{word}\t{count}")?;
            }
        }
        "distributed-sum" => {
            let (session, bar) = new_session(&args.cluster).await?;
            let total = distributed_sum(&session, args.n.unwrap_or(1_000_000)).await;
            finish_progress(bar.as_deref());
            writeln!(stdout.lock(), "{}", total?)?;
        }
        "matrix-multiply" => {
            let n = args.n.unwrap_or(512);
            let (session, bar) = new_session(&args.cluster).await?;
            let product = matrix_multiply(&session, n, args.block, args.seed).await;
            finish_progress(bar.as_deref());
            let product = product?;
            let mut out = stdout.lock();
            writeln!(
                out,
                "Frobenius norm of A·B ({n}×{n}, blocks of {}): {:.9}",
                args.block, product.frobenius
            )?;
            if let Some((norm, worst)) = product.reference {
                let relative = (product.frobenius - norm).abs() / norm.max(f64::MIN_POSITIVE);
                writeln!(
                    out,
                    "single-threaded product: {norm:.9}, largest element difference \
                     {worst:.1e}"
                )?;
                if relative > 1e-9 || worst > 1e-9 {
                    anyhow::bail!(
                        "the blocked product differs from the single-threaded one \
                         (relative norm difference {relative:.1e}, largest element \
                         difference {worst:.1e})"
                    );
                }
            }
        }
        other => anyhow::bail!("unknown example '{other}' (known: {EXAMPLES})"),
    }
    Ok(())
}

/// The products dataset, TPC-H or diamonds, as the options choose.
fn price_source(args: &RunArgs) -> anyhow::Result<PriceSource> {
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

async fn product_prices(args: &RunArgs) -> anyhow::Result<()> {
    if args.top == 0 {
        anyhow::bail!("invalid setting --top: expected at least 1 category, got 0");
    }
    let source = price_source(args)?;
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
    let (session, bar) = new_session(&cluster).await?;
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
