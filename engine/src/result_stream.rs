//! [`ResultStream`]: a query's result as it comes from the executors, batch by batch, with
//! the metrics of the job that computed it.
//!
//! The job has finished when the stream is made; what the stream does is read the final
//! stage's output, partition after partition in order (so an `ORDER BY` holds), from the
//! executors' files or over Flight. The client holds a few batches at a time, however
//! large the result. When the stream ends, fails, or is dropped early, the job's files are
//! removed from every executor:
//!
//! ```text
//!   executors' final output ──▶ ResultStream ──▶ batches ──▶ caller
//!                                     │ end / error / drop
//!                                     ▼
//!                              remove the job's files (awaited at the end, spawned on drop)
//! ```
//!
//! ```no_run
//! # async fn example(session: &ember::Session) -> ember::Result<()> {
//! use futures::StreamExt;
//!
//! let mut stream = session.sql_stream("SELECT * FROM lineitem").await?;
//! let mut rows = 0;
//! while let Some(batch) = stream.next().await {
//!     rows += batch?.num_rows();
//! }
//! let metrics = stream.metrics().expect("a query runs a job");
//! println!("{rows} rows in {:?}", metrics.elapsed);
//! # Ok(())
//! # }
//! ```

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{RecordBatchStream, SendableRecordBatchStream};
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};

use crate::cluster::JobFiles;
use crate::error::{EmberError, Result};
use ember_scheduler::JobMetrics;

/// Rows and schema of a query, with the metrics of the job that computed them.
#[derive(Debug)]
pub struct QueryResult {
    /// The result's schema.
    pub schema: SchemaRef,
    /// The rows, in the result's order.
    pub batches: Vec<RecordBatch>,
    /// The job's metrics; `None` for statements that ran no job (DDL).
    pub metrics: Option<JobMetrics>,
}

impl QueryResult {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// The first row's first column, when there is a row and that column has type `T`
    /// and is not null: the answer of a query that computes one value.
    pub fn first_value<T: arrow::datatypes::ArrowPrimitiveType>(&self) -> Option<T::Native> {
        let batch = self.batches.iter().find(|b| b.num_rows() > 0)?;
        let column = arrow::array::AsArray::as_primitive_opt::<T>(batch.column(0))?;
        arrow::array::Array::is_valid(column, 0).then(|| column.value(0))
    }
}

/// A query's rows as they are read, in the result's order, and the job's metrics.
///
/// It is a DataFusion [`RecordBatchStream`], so it can be boxed into a
/// [`SendableRecordBatchStream`]. Reading it to its end removes the job's files before the
/// stream says it is over; dropping it earlier removes them on a spawned task.
pub struct ResultStream {
    /// The result's schema.
    schema: SchemaRef,
    /// The batches still to read; `None` once they ended or failed.
    batches: Option<SendableRecordBatchStream>,
    /// The job's metrics; `None` for statements that ran no job.
    metrics: Option<JobMetrics>,
    /// The job's files, until their removal starts.
    files: Option<JobFiles>,
    /// The removal under way once the batches are over.
    removing: Option<BoxFuture<'static, ()>>,
    /// The runtime a stream dropped before its end removes the files on.
    runtime: Option<tokio::runtime::Handle>,
}

impl ResultStream {
    /// The output of a finished job: `batches`, then the removal of `files`.
    pub(crate) fn new(
        batches: SendableRecordBatchStream,
        metrics: JobMetrics,
        files: JobFiles,
    ) -> Self {
        Self {
            schema: batches.schema(),
            batches: Some(batches),
            metrics: Some(metrics),
            files: Some(files),
            removing: None,
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// A result already in memory (a catalog statement, a write's summary), with the
    /// metrics of its job if one ran.
    pub(crate) fn from_result(result: QueryResult) -> Self {
        let QueryResult {
            schema,
            batches,
            metrics,
        } = result;
        let batches = futures::stream::iter(batches.into_iter().map(Ok));
        Self {
            batches: Some(Box::pin(RecordBatchStreamAdapter::new(
                schema.clone(),
                batches,
            ))),
            schema,
            metrics,
            files: None,
            removing: None,
            runtime: None,
        }
    }

    /// The result's schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The metrics of the job that computed the result (`None` for a statement that ran
    /// none). The job has finished when the stream is made, so they are complete from the
    /// start.
    pub fn metrics(&self) -> Option<&JobMetrics> {
        self.metrics.as_ref()
    }

    /// Reads every batch into a [`QueryResult`]. The job's files are gone when it returns,
    /// with the rows or with the error.
    pub async fn collect(mut self) -> Result<QueryResult> {
        let mut batches = Vec::new();
        while let Some(batch) = self.next().await {
            match batch {
                Ok(batch) => batches.push(batch),
                Err(e) => {
                    self.close().await;
                    return Err(EmberError::from(e));
                }
            }
        }
        Ok(QueryResult {
            schema: self.schema.clone(),
            batches,
            metrics: self.metrics.take(),
        })
    }

    /// Stops reading and removes the job's files now, waiting for the removal (dropping
    /// the stream does the same without waiting).
    pub async fn close(mut self) {
        self.batches = None;
        self.start_removal();
        if let Some(removing) = self.removing.take() {
            removing.await;
        }
    }

    /// Starts removing the job's files, once.
    fn start_removal(&mut self) {
        if let Some(files) = self.files.take() {
            self.removing = Some(files.remove().boxed());
        }
    }
}

impl Stream for ResultStream {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(batches) = this.batches.as_mut() {
            match ready!(batches.poll_next_unpin(cx)) {
                Some(Ok(batch)) => return Poll::Ready(Some(Ok(batch))),
                Some(Err(e)) => {
                    // A failed read ends the result; the files go as they would at its end.
                    this.batches = None;
                    this.start_removal();
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    this.batches = None;
                    this.start_removal();
                }
            }
        }
        // The end is reported only once the files are gone, so that a caller that read
        // everything finds the cluster clean.
        if let Some(removing) = this.removing.as_mut() {
            ready!(removing.poll_unpin(cx));
            this.removing = None;
        }
        Poll::Ready(None)
    }
}

impl RecordBatchStream for ResultStream {
    fn schema(&self) -> SchemaRef {
        ResultStream::schema(self)
    }
}

impl Drop for ResultStream {
    fn drop(&mut self) {
        // Stop the readers (and their Flight calls) before the files go.
        self.batches = None;
        self.start_removal();
        let Some(removing) = self.removing.take() else {
            return;
        };
        // Dropping must not block, so the removal runs on its own task. It is meant to
        // outlive the stream: cancelling it with the stream would leave the files behind.
        match &self.runtime {
            Some(runtime) => {
                runtime.spawn(removing);
            }
            None => tracing::warn!(
                "a query result was dropped outside a Tokio runtime; its job's files stay on \
                 the executors"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use futures::TryStreamExt;

    use super::*;

    fn result(values: &[&[i64]]) -> QueryResult {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batches = values
            .iter()
            .map(|v| {
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(Int64Array::from(v.to_vec())) as _],
                )
                .expect("a batch")
            })
            .collect();
        QueryResult {
            schema,
            batches,
            metrics: None,
        }
    }

    #[tokio::test]
    async fn a_result_stream_is_a_datafusion_stream_with_the_batches_in_order() {
        let stream: SendableRecordBatchStream =
            Box::pin(ResultStream::from_result(result(&[&[1, 2], &[3]])));
        assert_eq!(stream.schema().field(0).name(), "n");
        let batches: Vec<RecordBatch> = stream.try_collect().await.expect("in memory");
        let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(sizes, vec![2, 1]);
    }

    #[tokio::test]
    async fn collecting_a_result_stream_gives_back_its_rows_and_metrics() {
        let mut with_metrics = result(&[&[7]]);
        with_metrics.metrics = Some(JobMetrics {
            job_id: "job-7".into(),
            ..JobMetrics::default()
        });
        let stream = ResultStream::from_result(with_metrics);
        assert_eq!(stream.metrics().map(|m| m.job_id.as_str()), Some("job-7"));
        let collected = stream.collect().await.expect("in memory");
        assert_eq!(collected.num_rows(), 1);
        assert_eq!(collected.metrics.map(|m| m.job_id), Some("job-7".into()));
    }
}
