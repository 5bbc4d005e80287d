//! The jobs of `ember run`: each one's options (a clap `Args` struct that flattens the
//! cluster options), checked and named, then its pipeline run and its results printed.

use ember::cli::{Job, Registry};

mod forest;
mod prices;
mod small;

/// Adds every example job to `registry`.
pub(crate) fn register_jobs(registry: &mut Registry) -> ember::Result<()> {
    for job in [
        Job::new(
            "pricing",
            "TPC-H Q1, the pricing summary report, over lineitem (made when missing)",
            prices::pricing,
        ),
        Job::new(
            "product-prices",
            "Price statistics, bands, top products and monthly revenue per category, with \
             tables as Parquet and an HTML report",
            prices::product_prices,
        ),
        Job::new(
            "forest-prep",
            "Fit feature transformers, split train/test rows and compute bin statistics for \
             a random forest",
            forest::prep,
        ),
        Job::new(
            "forest-train",
            "Train a random forest and evaluate it on held-out rows; saves the model and an \
             HTML report",
            forest::train,
        ),
        Job::new(
            "forest-predict",
            "Predict new rows with a saved random forest",
            forest::predict,
        ),
        Job::new(
            "word-count",
            "The 20 most frequent words of text files",
            small::word_count,
        ),
        Job::new(
            "distributed-sum",
            "The sum of 1..=N, as a reduce over every task slot",
            small::distributed_sum,
        ),
        Job::new(
            "matrix-multiply",
            "The Frobenius norm of a blocked product of two random matrices, checked \
             against a single-threaded one",
            small::matrix_multiply,
        ),
    ] {
        registry.add_job(job)?;
    }
    Ok(())
}
