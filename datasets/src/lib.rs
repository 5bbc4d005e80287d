//! Ember's data-set generators.
//!
//! This crate owns everything needed to put benchmark data on disk: a product catalog
//! and its sales ([`generate_products`]), and TPC-H: [`generate_tpch`] runs the `tpchgen` row generators and
//! writes every table as Parquet under one folder per table, and
//! [`tpch_is_complete`] tells whether a folder holds a finished data set.
//!
//! ```no_run
//! use ember_datasets::{generate_tpch, TpchOptions};
//!
//! let summary = generate_tpch(&TpchOptions::new(0.1, "/tmp/tpch-sf0.1"))?;
//! println!("lineitem rows: {:?}", summary.rows("lineitem"));
//! # Ok::<(), ember_datasets::DatasetError>(())
//! ```

mod error;
mod products;
mod tpch;

pub use error::DatasetError;
pub use products::{
    PRICE_TYPE, ProductsOptions, ProductsSummary, generate_products, products_schema, sales_schema,
};
pub use tpch::{
    SUCCESS_MARKER, TableSummary, TpchOptions, TpchSummary, TpchTable, generate_tpch,
    generate_tpch_with_progress, tpch_is_complete, tpch_schema, tpch_tables,
};
