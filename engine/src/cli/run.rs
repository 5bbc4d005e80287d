//! `ember run NAME`: the example pipelines, each on the embedded cluster or, with
//! `--scheduler URL`, on a process cluster.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::common::{finish_progress, new_session, print_result};

mod args;
mod forest;

use crate::examples::price_report::{REPORT_FILE, price_report_page};
use crate::examples::price_summary::{SummaryContext, price_summary};
use crate::examples::product_prices::{
    PriceSource, ReportForm, ensure_products, run_product_prices,
};
use crate::examples::{distributed_sum, matrix_multiply, word_count};
use crate::pipelines::run_pricing;
use crate::{FunctionRegistry, OutputFormat};
pub(crate) use args::RunArgs;
use args::{DEFAULT_PRICES_OUT, Form, Show};

/// The example names `ember run` knows.
const EXAMPLES: &str = "pricing, product-prices, forest-prep, forest-train, forest-predict, \
                        word-count, distributed-sum, matrix-multiply";

/// Runs the example `args` names.
pub(super) async fn run_example(args: RunArgs, functions: &FunctionRegistry) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    match args.example.as_str() {
        "pricing" => {
            let dir = args
                .data
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("data/tpch-sf{}", args.scale_factor)));
            let (session, bar) = new_session(&args.cluster, functions).await?;
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
        "product-prices" => product_prices(&args, functions).await?,
        "forest-prep" => forest::prep(&args, functions).await?,
        "forest-train" => forest::train(&args, functions).await?,
        "forest-predict" => forest::predict(&args, functions).await?,
        "word-count" => {
            let (session, bar) = new_session(&args.cluster, functions).await?;
            let top = word_count(&session, &args.inputs, 20).await;
            finish_progress(bar.as_deref());
            let mut out = stdout.lock();
            for (word, count) in top? {
                writeln!(out, "{word}\t{count}")?;
            }
        }
        "distributed-sum" => {
            let (session, bar) = new_session(&args.cluster, functions).await?;
            let total = distributed_sum(&session, args.n.unwrap_or(1_000_000)).await;
            finish_progress(bar.as_deref());
            writeln!(stdout.lock(), "{}", total?)?;
        }
        "matrix-multiply" => {
            let n = args.n.unwrap_or(512);
            let (session, bar) = new_session(&args.cluster, functions).await?;
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

async fn product_prices(args: &RunArgs, functions: &FunctionRegistry) -> anyhow::Result<()> {
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
    let (session, bar) = new_session(&cluster, functions).await?;
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
