//! Named example pipelines for `ember run`: each makes its own data when it is missing.

use std::path::{Path, PathBuf};

use ember_datasets::{TpchOptions, generate_tpch, tpch_is_complete};

use crate::commit::WriteMode;
use crate::error::Result;
use crate::result_stream::QueryResult;
use crate::session::Session;
use crate::tables::{FileFormat, TableSpec};

/// The pricing summary report (TPC-H Q1): quantities, prices, discounts and charges per
/// return flag and line status over the `lineitem` sales table.
pub const PRICING_SQL: &str = "\
SELECT l_returnflag, l_linestatus,
       sum(l_quantity) AS sum_qty,
       sum(l_extendedprice) AS sum_base_price,
       sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
       sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
       avg(l_quantity) AS avg_qty,
       avg(l_extendedprice) AS avg_price,
       avg(l_discount) AS avg_disc,
       count(*) AS count_order
FROM lineitem
WHERE l_shipdate <= CAST('1998-09-02' AS date)
GROUP BY l_returnflag, l_linestatus
ORDER BY l_returnflag, l_linestatus";

/// Makes TPC-H data at `scale_factor` under `dir` unless a complete copy is there.
pub fn ensure_tpch(dir: &Path, scale_factor: f64, parts: usize) -> Result<bool> {
    if tpch_is_complete(dir) {
        return Ok(false);
    }
    let options = TpchOptions::new(scale_factor, dir).with_parts(parts);
    generate_tpch(&options)?;
    Ok(true)
}

/// Registers the eight TPC-H tables of `dir` (one folder of Parquet files per table).
pub async fn register_tpch(session: &Session, dir: &Path) -> Result<()> {
    for table in ember_datasets::tpch_tables() {
        let path: PathBuf = dir.join(table);
        let spec = TableSpec::new(*table, path.to_string_lossy(), Some(FileFormat::Parquet));
        session.register_table(&spec).await?;
    }
    Ok(())
}

/// Runs the pricing summary over TPC-H data in `dir`, generating it first if needed.
pub async fn run_pricing(session: &Session, dir: &Path, scale_factor: f64) -> Result<QueryResult> {
    let parts = session.config().target_partitions();
    ensure_tpch(dir, scale_factor, parts)?;
    register_tpch(session, dir).await?;
    session.sql(PRICING_SQL).await
}

/// Refuses an output folder (a path or URL) that holds files, unless the session's
/// `ember.output.mode` is overwrite or append: the outputs of an earlier run would mix
/// with this one's.
pub async fn check_empty_output(session: &Session, out: &str) -> Result<()> {
    if session.config().output_mode != WriteMode::Error {
        return Ok(());
    }
    let files = session.output_files(out).await?;
    if files > 0 {
        return Err(crate::EmberError::Config {
            key: "--out".into(),
            message: format!(
                "{out} is not empty ({files} files); remove it, choose another folder, or \
                 pass --mode overwrite or append"
            ),
        });
    }
    Ok(())
}
