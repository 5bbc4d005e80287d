//! `ember-examples`: Ember's example pipelines, written against the public API of the
//! `ember` library only, and the jobs that run them (`ember run NAME`).
//!
//! | job | what it does |
//! |---|---|
//! | `pricing` | TPC-H Q1, the pricing summary report, over `lineitem` |
//! | `product-prices` | price statistics, bands, top products and monthly revenue ([`product_prices`]) |
//! | `forest-prep`, `forest-train`, `forest-predict` | random-forest feature preparation, training and prediction ([`forest`]) |
//! | `word-count` | the most frequent words of text files ([`word_count`]) |
//! | `distributed-sum` | the sum of 1..=N as a reduce ([`distributed_sum`]) |
//! | `matrix-multiply` | a blocked matrix product through the shuffle ([`matrix_multiply`]) |
//!
//! The stock `ember` binary is this crate's [`register`] given to
//! [`ember::cli::main_with`]; a binary of one's own can add these jobs and functions to
//! its own the same way:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     ember::cli::main_with(|registry| {
//!         ember_examples::register(registry)?;
//!         // ... and the binary's own functions and jobs.
//!         Ok(())
//!     })
//! }
//! ```

pub mod distributed_sum;
pub mod forest;
mod jobs;
pub mod matrix_multiply;
pub mod price_report;
pub mod price_summary;
pub mod product_prices;
pub mod word_count;

pub use distributed_sum::distributed_sum;
pub use matrix_multiply::{MatrixProduct, matrix_multiply};
pub use word_count::{WORD_SEPARATORS, word_count};

/// Registers the functions the examples' plans call by name, so that sessions and
/// executors with this registry can run them.
pub fn register_functions(functions: &ember::FunctionRegistry) -> ember::Result<()> {
    matrix_multiply::register_matrix_functions(functions)?;
    forest::register_forest_functions(functions);
    Ok(())
}

/// Registers the examples' functions and their jobs (`ember run NAME`) in the command's
/// registry.
pub fn register(registry: &mut ember::cli::Registry) -> ember::Result<()> {
    register_functions(registry.functions())?;
    jobs::register_jobs(registry)
}
