//! The session's PostgreSQL tables: reads ([`Session::read_postgres`]) and writes
//! ([`Session::write_postgres_plan`]): every task attempt copies its rows into a staging
//! table of its own, and only when the job succeeded does the driver move the winners'
//! rows into the table, in one transaction.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::UInt64Type;
use datafusion::physical_plan::ExecutionPlan;
use ember_connectors::postgres::write::{
    PostgresWriteMode, cleanup, commit, new_write_id, prepare,
};
use ember_connectors::postgres::{Connection, PostgresOptions, PostgresTable, PostgresWriteExec};

use super::Session;
use crate::commit::{WriteMode, count_result};
use crate::dataset::Dataset;
use crate::error::Result;
use crate::result_stream::QueryResult;

impl Session {
    /// The PostgreSQL table `options.table` on the server of `url` (a `postgres://` URL
    /// or libpq's `key=value` pairs) as a dataset, read in `options.partitions` ranges.
    pub async fn read_postgres(&self, url: &str, options: PostgresOptions) -> Result<Dataset<'_>> {
        let table = PostgresTable::open(url, options).await?;
        Ok(Dataset::new(self, self.ctx.read_table(Arc::new(table))?))
    }

    /// Runs `plan` and writes its rows into the PostgreSQL table `table` on the server of
    /// `url` (see the module's documentation): a missing table is created; `mode` says
    /// whether an existing one is refused, appended to or overwritten. Returns one row,
    /// `count`: the rows written.
    pub async fn write_postgres_plan(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        url: &str,
        table: &str,
        mode: WriteMode,
    ) -> Result<QueryResult> {
        let connection = Connection::parse(url)?;
        let mode = match mode {
            WriteMode::Error => PostgresWriteMode::ErrorIfExists,
            WriteMode::Append => PostgresWriteMode::Append,
            WriteMode::Overwrite => PostgresWriteMode::Overwrite,
        };
        prepare(&connection, table, &plan.schema(), mode).await?;
        let write_id = new_write_id();
        let job = PostgresWriteExec::new(
            plan,
            connection.clone(),
            table.to_string(),
            write_id.clone(),
        );
        let result = self.run_physical(Arc::new(job)).await;
        let committed = match &result {
            Ok(result) => {
                let mut staged: Vec<(u32, String)> = Vec::new();
                let mut rows = 0;
                for batch in &result.batches {
                    let partitions = batch
                        .column(0)
                        .as_primitive::<arrow::datatypes::UInt32Type>();
                    let names = batch.column(1).as_string::<i32>();
                    let counts = batch.column(2).as_primitive::<UInt64Type>();
                    for i in 0..batch.num_rows() {
                        staged.push((partitions.value(i), names.value(i).to_string()));
                        rows += counts.value(i);
                    }
                }
                staged.sort();
                let names: Vec<String> = staged.into_iter().map(|(_, name)| name).collect();
                commit(&connection, table, &names, mode)
                    .await
                    .map(|()| rows)
            }
            Err(_) => Ok(0),
        };
        if let Err(e) = cleanup(&connection, table, &write_id).await {
            tracing::warn!("dropping the staging tables of write {write_id}: {e}");
        }
        let result = result?;
        let rows = committed?;
        tracing::info!(target = %connection.target, table, rows, "committed a PostgreSQL write");
        count_result(rows, result)
    }
}
