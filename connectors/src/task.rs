//! What the connectors' task plan nodes share: the stream of a read task (open the
//! source once, then pull batches until it ends or fails) and the one row a write task
//! yields (its partition, what it wrote into, and its rows).

use std::future::Future;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use crate::error::ConnectorError;

/// A source a read task pulls batches from.
pub(crate) trait BatchSource: Send + 'static {
    /// The next batch; `None` once the task's rows are all read.
    fn next_batch(
        &mut self,
    ) -> impl Future<Output = Result<Option<RecordBatch>, ConnectorError>> + Send;
}

/// The batches of the source that `open` makes, as a stream of `schema`: an error
/// opening it, or pulling from it, ends the stream.
pub(crate) fn batches_of<S: BatchSource>(
    schema: SchemaRef,
    open: impl Future<Output = Result<S, ConnectorError>> + Send + 'static,
) -> SendableRecordBatchStream {
    let stream = futures::stream::once(open).flat_map(|opened| match opened {
        Err(e) => futures::stream::once(async move { Err(DataFusionError::from(e)) }).boxed(),
        Ok(source) => futures::stream::unfold(Some(source), |state| async move {
            let mut source = state?;
            match source.next_batch().await {
                Ok(Some(batch)) => Some((Ok(batch), Some(source))),
                Ok(None) => None,
                Err(e) => Some((Err(DataFusionError::from(e)), None)),
            }
        })
        .boxed(),
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

/// The rows a write task yields: one, its partition, what it wrote into (a staging
/// table, a topic) and its rows; the shape of Ember's staged file writes.
pub fn write_result_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::UInt32, false),
        Field::new("folder", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
    ]))
}

/// The one row of a write task of `partition` that wrote `rows` rows into `target`.
pub(crate) fn write_result(partition: usize, target: String, rows: u64) -> DfResult<RecordBatch> {
    Ok(RecordBatch::try_new(
        write_result_schema(),
        vec![
            Arc::new(UInt32Array::from(vec![
                u32::try_from(partition).unwrap_or(u32::MAX),
            ])),
            Arc::new(StringArray::from(vec![target])),
            Arc::new(UInt64Array::from(vec![rows])),
        ],
    )?)
}

/// The stream of a write task: the one row that `task` makes, or its error.
pub(crate) fn write_stream(
    task: impl Future<Output = Result<RecordBatch, ConnectorError>> + Send + 'static,
) -> SendableRecordBatchStream {
    let stream = futures::stream::once(async move { task.await.map_err(DataFusionError::from) });
    Box::pin(RecordBatchStreamAdapter::new(write_result_schema(), stream))
}
