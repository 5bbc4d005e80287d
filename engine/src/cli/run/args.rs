//! The options of `ember run` ([`RunArgs`]), apart from the code that runs the examples so
//! that every example module reads them without depending on `cli::run` itself.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::OutputFormat;
use crate::cli::common::ClusterArgs;
use crate::examples::price_summary::DEFAULT_TOP;

#[derive(Args)]
pub(crate) struct RunArgs {
    /// The pipeline: `pricing` (pricing summary over TPC-H lineitem), `product-prices`
    /// (price statistics, bands, top products and monthly revenue), `forest-prep` (fitted
    /// feature transformers, split, bin statistics), `forest-train` (a random forest,
    /// evaluated on held-out rows), `forest-predict` (a saved forest on new rows),
    /// `word-count INPUT...`
    /// (the 20 most frequent words), `distributed-sum --n N` (the sum of 1..=N) or
    /// `matrix-multiply --n N --block B` (the Frobenius norm of a blocked product).
    pub(crate) example: String,
    /// Inputs of the pipeline (word-count: text files, folders or globs).
    pub(crate) inputs: Vec<String>,
    /// product-prices: the products dataset (default `data/products`, made with --rows
    /// sales when missing); with --diamonds, the diamonds CSV. forest-*: a CSV or Parquet
    /// file, or a folder of them.
    #[arg(long)]
    pub(crate) input: Option<PathBuf>,
    /// forest-prep, forest-train: the column to predict (numbers: regression; strings:
    /// classification).
    #[arg(long)]
    pub(crate) label: Option<String>,
    /// forest-train: trees to grow (default 20); forest-prep: bootstrap weights drawn per
    /// training row (default 20).
    #[arg(long)]
    pub(crate) trees: Option<usize>,
    /// forest-train: the deepest level (the root is 0).
    #[arg(long, default_value_t = 5)]
    pub(crate) max_depth: usize,
    /// forest-*: quantile buckets per numeric feature (and, in training, most labels plus
    /// one per string feature).
    #[arg(long, default_value_t = 32)]
    pub(crate) max_bins: usize,
    /// forest-*: share of rows held out for testing (a seeded hash of each row decides).
    #[arg(long, default_value_t = 0.2)]
    pub(crate) test_fraction: f64,
    /// forest-train: features each node may split on: auto (regression all,
    /// classification sqrt), all, sqrt, log2, onethird, a fraction or a count.
    #[arg(long, default_value = "auto")]
    pub(crate) feature_subset: String,
    /// forest-train: where to save the model (JSON; default model.json in --out);
    /// forest-predict: the model to load.
    #[arg(long)]
    pub(crate) model: Option<PathBuf>,
    /// forest-prep: what string indexers do with unseen labels and nulls: error, skip or
    /// keep.
    #[arg(long, default_value = "keep")]
    pub(crate) handle_invalid: String,
    /// forest-prep: how imputers fill missing numbers: mean or median.
    #[arg(long, default_value = "mean")]
    pub(crate) impute: String,
    /// Where the pipeline writes its outputs. product-prices: its tables as Parquet and
    /// report.html (default `out/product-prices`, replaced on every run; a given folder must
    /// be empty); forest-train: model.json and report.html (default `out/forest-train`);
    /// forest-prep and forest-predict: rows as Parquet (a folder that must be empty).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// product-prices: what to print with --format table: a short summary, or every table.
    #[arg(long, value_enum, default_value_t = Show::Summary)]
    pub(crate) show: Show,
    /// product-prices: categories in the summary, by revenue.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TOP)]
    pub(crate) top: usize,
    /// product-prices: read TPC-H `part` and `lineitem` from this folder.
    #[arg(long, value_name = "DIR", conflicts_with = "diamonds")]
    pub(crate) tpch: Option<PathBuf>,
    /// product-prices: read the diamonds (default `datasets/diamonds.csv`).
    #[arg(long)]
    pub(crate) diamonds: bool,
    /// product-prices: sales to generate when the products dataset is missing.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) rows: u64,
    /// product-prices: the form of the report, the Dataset API or SQL (same results).
    #[arg(long, value_enum, default_value_t = Form::Dsl)]
    pub(crate) form: Form,
    /// distributed-sum: the last number to add (default 1000000); matrix-multiply: the
    /// matrix size (default 512).
    #[arg(long)]
    pub(crate) n: Option<u64>,
    /// matrix-multiply: the block size.
    #[arg(long, default_value_t = 128)]
    pub(crate) block: u64,
    /// The seed of every random choice (matrix-multiply: of the matrices).
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// pricing: scale factor of the data it makes when missing.
    #[arg(long = "sf", default_value_t = 0.1)]
    pub(crate) scale_factor: f64,
    /// pricing: where its data lives (default: `data/tpch-sf<SF>`).
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Output format: table, csv or json (forest-*: the summary's figures for machines).
    #[arg(long, default_value = "table")]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) cluster: ClusterArgs,
}

/// What `run product-prices` prints.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Show {
    /// What was read, the top categories and the price bands, in about 30 lines.
    Summary,
    /// Every table of the report.
    All,
}

/// Where `run product-prices` writes its tables without `--out`.
pub(crate) const DEFAULT_PRICES_OUT: &str = "out/product-prices";

/// The two forms of the product-price report.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Form {
    /// The Dataset API.
    Dsl,
    /// SQL.
    Sql,
}
