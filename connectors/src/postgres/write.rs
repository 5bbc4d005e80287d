//! Writing a PostgreSQL table. Before the job, [`prepare`] checks the table (or creates
//! it); each [`PostgresWriteExec`] task attempt then creates a staging table of its own
//! beside it (`ember_stage_WRITEID_PARTITION_ATTEMPT`, unlogged, with the table's
//! columns), `COPY`s its rows into it and commits, all in one transaction, and reports
//! the staging table. After the job, [`commit`] moves the winning attempts' rows into the
//! table in one transaction (`DELETE` first for an overwrite), and [`cleanup`] drops
//! every staging table of the write, the losers' too. A job that fails never reaches
//! [`commit`]: the table keeps the rows it had.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::Schema;
use bytes::Bytes;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::{SinkExt, StreamExt};

use super::Connection;
use super::connect::quote_name;
use super::types::postgres_type;
use crate::error::{ConnectorError, Result};
use crate::task::{write_result, write_result_schema, write_stream};

/// How a write meets a table that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostgresWriteMode {
    /// Refuse (the table must not exist).
    ErrorIfExists,
    /// Add the rows.
    Append,
    /// Replace the rows.
    Overwrite,
}

/// The staging tables of write `write_id` to `table` start with this (in its schema).
fn staging_prefix(table: &str, write_id: &str) -> (Option<String>, String) {
    let schema = table.rsplit_once('.').map(|(s, _)| s.to_string());
    (schema, format!("ember_stage_{write_id}_"))
}

/// Writes its input's partition `i` into a staging table of its own.
#[derive(Debug)]
pub struct PostgresWriteExec {
    input: Arc<dyn ExecutionPlan>,
    connection: Connection,
    table: String,
    write_id: String,
    properties: Arc<PlanProperties>,
}

impl PostgresWriteExec {
    /// Writes `input` for write `write_id` (letters and digits) into `table`.
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        connection: Connection,
        table: String,
        write_id: String,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(write_result_schema()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            input,
            connection,
            table,
            write_id,
            properties,
        }
    }

    /// The server.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The table written.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The write's id.
    pub fn write_id(&self) -> &str {
        &self.write_id
    }
}

impl DisplayAs for PostgresWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PostgresWriteExec: {} {} (write {})",
            self.connection.target, self.table, self.write_id
        )
    }
}

impl ExecutionPlan for PostgresWriteExec {
    fn name(&self) -> &str {
        "PostgresWriteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [input] = children.as_slice() else {
            return Err(DataFusionError::Internal(
                "PostgresWriteExec takes one input".into(),
            ));
        };
        Ok(Arc::new(Self::new(
            Arc::clone(input),
            self.connection.clone(),
            self.table.clone(),
            self.write_id.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, context)?;
        let connection = self.connection.clone();
        let table = self.table.clone();
        let (schema, prefix) = staging_prefix(&self.table, &self.write_id);
        let attempt: u32 = rand::random();
        let staging = match schema {
            Some(schema) => format!("{schema}.{prefix}{partition}_{attempt:08x}"),
            None => format!("{prefix}{partition}_{attempt:08x}"),
        };
        let task = async move {
            let mut client = connection.connect().await?;
            let fail = |e: tokio_postgres::Error| connection.error(&table, Connection::explain(&e));
            let tx = client.transaction().await.map_err(fail)?;
            tx.batch_execute(&format!(
                "CREATE UNLOGGED TABLE {} (LIKE {})",
                quote_name(&staging),
                quote_name(&table)
            ))
            .await
            .map_err(fail)?;
            let sink = tx
                .copy_in::<_, Bytes>(&format!(
                    "COPY {} FROM STDIN (FORMAT csv, NULL '\\N')",
                    quote_name(&staging)
                ))
                .await
                .map_err(fail)?;
            futures::pin_mut!(sink);
            let mut rows = 0_u64;
            while let Some(batch) = input.next().await {
                let batch = batch?;
                rows += u64::try_from(batch.num_rows()).unwrap_or(0);
                let mut text = Vec::with_capacity(batch.get_array_memory_size());
                arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .with_null("\\N".into())
                    .build(&mut text)
                    .write(&batch)
                    .map_err(DataFusionError::from)?;
                sink.send(Bytes::from(text)).await.map_err(fail)?;
            }
            sink.as_mut().finish().await.map_err(fail)?;
            tx.commit().await.map_err(fail)?;
            Ok::<_, ConnectorError>(write_result(partition, staging, rows)?)
        };
        Ok(write_stream(task))
    }
}

/// Before a write of rows of `schema` into `table`: refuses what `mode` refuses, checks
/// that an existing table has the rows' column names in order, and creates a missing one.
pub async fn prepare(
    connection: &Connection,
    table: &str,
    schema: &Schema,
    mode: PostgresWriteMode,
) -> Result<()> {
    let client = connection.connect().await?;
    let fail = |e: tokio_postgres::Error| connection.error(table, Connection::explain(&e));
    let columns: Vec<String> = client
        .query(
            "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = to_regclass($1::text) \
             AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&quote_name(table)],
        )
        .await
        .map_err(fail)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    if columns.is_empty() {
        let mut definitions = Vec::new();
        for field in schema.fields() {
            let pg = postgres_type(field.data_type()).ok_or_else(|| {
                connection.error(
                    table,
                    format!(
                        "column {} is {}, which has no PostgreSQL column type here",
                        field.name(),
                        field.data_type()
                    ),
                )
            })?;
            definitions.push(format!("{} {pg}", quote_name(field.name())));
        }
        client
            .batch_execute(&format!(
                "CREATE TABLE {} ({})",
                quote_name(table),
                definitions.join(", ")
            ))
            .await
            .map_err(fail)?;
        return Ok(());
    }
    if mode == PostgresWriteMode::ErrorIfExists {
        return Err(connection.error(
            table,
            "already exists; write with --mode append or overwrite (ember.output.mode)",
        ));
    }
    if columns != names {
        return Err(connection.error(
            table,
            format!(
                "has columns ({}), but the rows written have ({})",
                columns.join(", "),
                names.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Moves the rows of the winning attempts' staging tables (`staged`) into `table` in
/// one transaction, after deleting its rows for an overwrite.
pub async fn commit(
    connection: &Connection,
    table: &str,
    staged: &[String],
    mode: PostgresWriteMode,
) -> Result<()> {
    let mut client = connection.connect().await?;
    let fail = |e: tokio_postgres::Error| connection.error(table, Connection::explain(&e));
    let tx = client.transaction().await.map_err(fail)?;
    if mode == PostgresWriteMode::Overwrite {
        tx.batch_execute(&format!("DELETE FROM {}", quote_name(table)))
            .await
            .map_err(fail)?;
    }
    for staging in staged {
        tx.batch_execute(&format!(
            "INSERT INTO {} SELECT * FROM {}",
            quote_name(table),
            quote_name(staging)
        ))
        .await
        .map_err(fail)?;
    }
    tx.commit().await.map_err(fail)
}

/// Drops every staging table of write `write_id` to `table`.
pub async fn cleanup(connection: &Connection, table: &str, write_id: &str) -> Result<()> {
    let client = connection.connect().await?;
    let fail = |e: tokio_postgres::Error| connection.error(table, Connection::explain(&e));
    let (schema, prefix) = staging_prefix(table, write_id);
    let rows = client
        .query(
            "SELECT schemaname, tablename FROM pg_tables WHERE tablename LIKE $1 \
             AND ($2::text IS NULL OR schemaname = $2::text)",
            &[&format!("{prefix}%"), &schema],
        )
        .await
        .map_err(fail)?;
    for row in rows {
        let (schema, name): (String, String) = (row.get(0), row.get(1));
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {}",
                quote_name(&format!("{schema}.{name}"))
            ))
            .await
            .map_err(fail)?;
    }
    Ok(())
}

/// A new write id: lowercase hex, safe in a table name.
pub fn new_write_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}
