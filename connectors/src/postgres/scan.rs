//! [`PostgresScanExec`]: the tasks of a PostgreSQL read. Partition `i` runs query `i`
//! (one range of the partition column, with the scan's columns and filters) as
//! `COPY (query) TO STDOUT (FORMAT csv, NULL '\N')` and parses the stream with arrow's
//! CSV decoder, batch by batch, as the rows arrive.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::csv::reader::Decoder;
use arrow::datatypes::SchemaRef;
use bytes::{Buf, Bytes};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;
use tokio_postgres::{Client, CopyOutStream};

use super::Connection;
use crate::error::ConnectorError;
use crate::task::{BatchSource, batches_of};

/// Reads a PostgreSQL table, one query per partition.
#[derive(Debug)]
pub struct PostgresScanExec {
    connection: Connection,
    table: String,
    schema: SchemaRef,
    queries: Vec<String>,
    properties: Arc<PlanProperties>,
}

impl PostgresScanExec {
    /// A scan of `table` on `connection` whose partition `i` runs `queries[i]` and yields
    /// rows of `schema`.
    pub fn new(
        connection: Connection,
        table: String,
        schema: SchemaRef,
        queries: Vec<String>,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(queries.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            connection,
            table,
            schema,
            queries,
            properties,
        }
    }

    /// The server.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The table read.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The queries, one per partition.
    pub fn queries(&self) -> &[String] {
        &self.queries
    }
}

impl DisplayAs for PostgresScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PostgresScanExec: {} {}, {} range(s)",
            self.connection.target,
            self.table,
            self.queries.len()
        )
    }
}

/// What a partition's stream holds between batches.
struct Reading {
    _client: Client,
    copy: Pin<Box<CopyOutStream>>,
    decoder: Decoder,
    buffer: Bytes,
    ended: bool,
    connection: Connection,
    table: String,
}

impl BatchSource for Reading {
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        self.next().await.map_err(|message| {
            self.connection
                .error(&self.table, format!("reading rows: {message}"))
        })
    }
}

impl Reading {
    /// The next batch; `None` at the end of the rows.
    async fn next(&mut self) -> Result<Option<RecordBatch>, String> {
        loop {
            if self.buffer.is_empty() && !self.ended {
                match self.copy.as_mut().next().await {
                    Some(Ok(bytes)) => self.buffer = bytes,
                    Some(Err(e)) => return Err(Connection::explain(&e)),
                    None => self.ended = true,
                }
            }
            let used = self
                .decoder
                .decode(&self.buffer)
                .map_err(|e| format!("a row did not parse: {e}"))?;
            self.buffer.advance(used);
            if self.decoder.capacity() == 0 || self.ended {
                return self
                    .decoder
                    .flush()
                    .map_err(|e| format!("a row did not parse: {e}"));
            }
        }
    }
}

impl ExecutionPlan for PostgresScanExec {
    fn name(&self) -> &str {
        "PostgresScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
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
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "PostgresScanExec has no inputs".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let query = self.queries.get(partition).cloned().ok_or_else(|| {
            DataFusionError::Internal(format!("PostgresScanExec has no partition {partition}"))
        })?;
        let connection = self.connection.clone();
        let table = self.table.clone();
        let decoder = arrow::csv::ReaderBuilder::new(Arc::clone(&self.schema))
            .with_header(false)
            .with_batch_size(context.session_config().batch_size())
            .with_null_regex(regex::Regex::new(r"^\\N$").map_err(|e| {
                DataFusionError::Internal(format!("the NULL pattern does not compile: {e}"))
            })?)
            .build_decoder();
        let opened = async move {
            let client = connection.connect().await?;
            let copy = client
                .copy_out(&format!(
                    "COPY ({query}) TO STDOUT (FORMAT csv, NULL '\\N')"
                ))
                .await
                .map_err(|e| connection.error(&table, Connection::explain(&e)))?;
            Ok::<_, ConnectorError>(Reading {
                _client: client,
                copy: Box::pin(copy),
                decoder,
                buffer: Bytes::new(),
                ended: false,
                connection,
                table,
            })
        };
        Ok(batches_of(Arc::clone(&self.schema), opened))
    }
}
