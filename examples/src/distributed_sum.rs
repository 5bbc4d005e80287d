//! `ember run distributed-sum --n N`: the sum of 1..=N, as an MPI reduce in dataflow form.
//!
//! The numbers are generated in one task, spread round robin over every task slot of the
//! cluster (a shuffle), summed per partition (the map-side combine), and the partial sums
//! are shuffled to one task that adds them up.

use datafusion::arrow::datatypes::{DataType, Decimal128Type};
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::prelude::{cast, col};

use ember::Session;
use ember::{EmberError, Result};

/// The sum of 1..=`n`, computed on the cluster.
pub async fn distributed_sum(session: &Session, n: u64) -> Result<i128> {
    if n == 0 {
        return Err(EmberError::Config {
            key: "--n".into(),
            message: "expected an integer >= 1".into(),
        });
    }
    let numbers = session
        .sql_dataset(&format!("SELECT value FROM generate_series(1, {n})"))
        .await?
        .repartition(session.config().target_partitions())?;
    let total = numbers
        .group_by(vec![])
        .agg(vec![
            sum(cast(col("value"), DataType::Decimal128(38, 0))).alias("total"),
        ])?
        .collect()
        .await?;
    total
        .first_value::<Decimal128Type>()
        .ok_or_else(|| EmberError::Internal {
            message: "the sum came back empty".into(),
        })
}
