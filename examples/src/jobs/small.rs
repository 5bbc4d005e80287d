//! `ember run word-count`, `distributed-sum` and `matrix-multiply`: one number or one
//! short list each.

use std::io::Write;

use clap::Args;
use ember::cli::{ClusterArgs, JobContext, finish_progress};

/// Options of `ember run word-count`.
#[derive(Args)]
pub(super) struct WordCountArgs {
    /// Text files, folders or globs to count the words of.
    #[arg(value_name = "INPUT")]
    inputs: Vec<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// `ember run word-count INPUT...`: the 20 most frequent words, one per line with its
/// count.
pub(super) async fn word_count(args: WordCountArgs, context: JobContext) -> anyhow::Result<()> {
    let (session, bar) = context.session(&args.cluster).await?;
    let top = crate::word_count(&session, &args.inputs, 20).await;
    finish_progress(bar.as_deref());
    let mut out = std::io::stdout().lock();
    for (word, count) in top? {
        writeln!(out, "{word}\t{count}")?;
    }
    Ok(())
}

/// Options of `ember run distributed-sum`.
#[derive(Args)]
pub(super) struct DistributedSumArgs {
    /// The last number to add.
    #[arg(long, default_value_t = 1_000_000)]
    n: u64,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// `ember run distributed-sum --n N`: the sum of 1..=N.
pub(super) async fn distributed_sum(
    args: DistributedSumArgs,
    context: JobContext,
) -> anyhow::Result<()> {
    let (session, bar) = context.session(&args.cluster).await?;
    let total = crate::distributed_sum(&session, args.n).await;
    finish_progress(bar.as_deref());
    writeln!(std::io::stdout().lock(), "{}", total?)?;
    Ok(())
}

/// Options of `ember run matrix-multiply`.
#[derive(Args)]
pub(super) struct MatrixMultiplyArgs {
    /// The size of the matrices (N×N).
    #[arg(long, default_value_t = 512)]
    n: u64,
    /// The size of a block.
    #[arg(long, default_value_t = 128)]
    block: u64,
    /// The seed of the random matrices.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// `ember run matrix-multiply --n N --block B`: the Frobenius norm of the blocked product,
/// and (for sizes small enough) the single-threaded product's, which must agree.
pub(super) async fn matrix_multiply(
    args: MatrixMultiplyArgs,
    context: JobContext,
) -> anyhow::Result<()> {
    let n = args.n;
    let (session, bar) = context.session(&args.cluster).await?;
    let product = crate::matrix_multiply(&session, n, args.block, args.seed).await;
    finish_progress(bar.as_deref());
    let product = product?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Frobenius norm of A·B ({n}×{n}, blocks of {}): {:.9}",
        args.block, product.frobenius
    )?;
    if let Some((norm, worst)) = product.reference {
        let relative = (product.frobenius - norm).abs() / norm.max(f64::MIN_POSITIVE);
        writeln!(
            out,
            "single-threaded product: {norm:.9}, largest element difference {worst:.1e}"
        )?;
        if relative > 1e-9 || worst > 1e-9 {
            anyhow::bail!(
                "the blocked product differs from the single-threaded one (relative norm \
                 difference {relative:.1e}, largest element difference {worst:.1e})"
            );
        }
    }
    Ok(())
}
