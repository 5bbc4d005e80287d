//! [`KafkaScanExec`]: the tasks of a topic read. Task `i` reads offset range `i` (one
//! partition, `[start, end)`) with fetches of up to 4 MiB, and yields batches of `key`,
//! `value`, `partition`, `offset` and `timestamp` (the value as bytes, or as a struct of
//! the fields of its JSON object, decoded by arrow's JSON decoder).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, BinaryBuilder, Int64Builder, RecordBatch, StructArray, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};

use crate::error::ConnectorError;
use crate::task::{BatchSource, batches_of};

/// Bytes one fetch asks for at most.
const FETCH_BYTES: i32 = 4 * 1024 * 1024;

/// One task's share of a topic: offsets `[start, end)` of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRange {
    /// The partition.
    pub partition: i32,
    /// The first offset read.
    pub start: i64,
    /// The offset after the last one read.
    pub end: i64,
}

/// The columns of a topic's rows: `key`, `value` (`value_fields` as a struct, or bytes
/// when `None`), `partition`, `offset`, `timestamp`.
pub fn topic_schema(value_fields: Option<&Fields>) -> SchemaRef {
    let value = match value_fields {
        Some(fields) => Field::new("value", DataType::Struct(fields.clone()), true),
        None => Field::new("value", DataType::Binary, true),
    };
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Binary, true),
        value,
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ]))
}

/// A connection's settings, shared by the read's tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSource {
    /// `HOST:PORT` of the bootstrap brokers.
    pub brokers: Vec<String>,
    /// The topic.
    pub topic: String,
    /// How long a broker may take to answer.
    pub timeout: Duration,
    /// Messages per record batch that a write sends at most.
    pub batch_records: usize,
}

impl KafkaSource {
    /// An error about `partition` of the topic (all partitions when `None`).
    pub fn error(&self, partition: Option<i32>, message: impl Into<String>) -> ConnectorError {
        ConnectorError::Kafka {
            target: match partition {
                Some(p) => format!("topic {} partition {p}", self.topic),
                None => format!("topic {}", self.topic),
            },
            message: message.into(),
        }
    }

    /// A client of the brokers, within the timeout; errors name `partition` when a task
    /// of that partition asks.
    pub async fn client_for(&self, partition: Option<i32>) -> Result<Client, ConnectorError> {
        let backoff = rskafka::BackoffConfig {
            deadline: Some(self.timeout),
            ..Default::default()
        };
        let built = ClientBuilder::new(self.brokers.clone())
            .backoff_config(backoff)
            .max_message_size(64 * 1024 * 1024)
            .build();
        match tokio::time::timeout(self.timeout, built).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(self.error(
                partition,
                format!(
                    "cannot reach the brokers {}: {}",
                    self.brokers.join(","),
                    first_line(&e)
                ),
            )),
            Err(_) => Err(self.error(
                partition,
                format!(
                    "no answer from the brokers {} within {:?}",
                    self.brokers.join(","),
                    self.timeout
                ),
            )),
        }
    }

    /// A client of the brokers, within the timeout.
    pub async fn client(&self) -> Result<Client, ConnectorError> {
        self.client_for(None).await
    }

    /// A client of `partition`, within the timeout.
    pub async fn partition(
        &self,
        client: &Client,
        partition: i32,
    ) -> Result<PartitionClient, ConnectorError> {
        let made =
            client.partition_client(self.topic.clone(), partition, UnknownTopicHandling::Error);
        match tokio::time::timeout(self.timeout, made).await {
            Ok(Ok(pc)) => Ok(pc),
            Ok(Err(e)) => Err(self.error(Some(partition), first_line(&e))),
            Err(_) => Err(self.error(
                Some(partition),
                format!("no answer from the broker within {:?}", self.timeout),
            )),
        }
    }
}

/// The first line of an error's text.
pub fn first_line(e: &dyn fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Reads a topic, one offset range per partition of the plan.
#[derive(Debug)]
pub struct KafkaScanExec {
    source: KafkaSource,
    ranges: Vec<OffsetRange>,
    /// The JSON value's fields; `None` for bytes.
    value_fields: Option<Fields>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl KafkaScanExec {
    /// A read of `ranges` of `source`'s topic.
    pub fn new(
        source: KafkaSource,
        ranges: Vec<OffsetRange>,
        value_fields: Option<Fields>,
    ) -> Self {
        let schema = topic_schema(value_fields.as_ref());
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(ranges.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            source,
            ranges,
            value_fields,
            schema,
            properties,
        }
    }

    /// The brokers, topic and timeout.
    pub fn source(&self) -> &KafkaSource {
        &self.source
    }

    /// The offset ranges, one per task.
    pub fn ranges(&self) -> &[OffsetRange] {
        &self.ranges
    }

    /// The JSON value's fields; `None` for bytes.
    pub fn value_fields(&self) -> Option<&Fields> {
        self.value_fields.as_ref()
    }
}

impl DisplayAs for KafkaScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offsets: i64 = self.ranges.iter().map(|r| r.end - r.start).sum();
        write!(
            f,
            "KafkaScanExec: topic={}, {} range(s), {offsets} offsets, value={}",
            self.source.topic,
            self.ranges.len(),
            if self.value_fields.is_some() {
                "json"
            } else {
                "bytes"
            }
        )
    }
}

/// What a task's stream holds between batches.
struct Reading {
    source: KafkaSource,
    client: PartitionClient,
    range: OffsetRange,
    next: i64,
    value_fields: Option<Fields>,
    schema: SchemaRef,
    batch_size: usize,
    _connection: Client,
}

impl BatchSource for Reading {
    /// The next batch of up to `batch_size` messages; `None` once the range is read.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        if self.next >= self.range.end {
            return Ok(None);
        }
        let p = self.range.partition;
        let mut keys = BinaryBuilder::new();
        let mut raw = BinaryBuilder::new();
        let mut json = Vec::new();
        let mut offsets = Int64Builder::new();
        let mut times = TimestampMillisecondBuilder::new().with_timezone("UTC");
        let mut rows = 0;
        while rows < self.batch_size && self.next < self.range.end {
            let fetch = self.client.fetch_records(self.next, 1..FETCH_BYTES, 500);
            let (records, high_watermark) =
                match tokio::time::timeout(self.source.timeout, fetch).await {
                    Ok(Ok(fetched)) => fetched,
                    Ok(Err(e)) => {
                        return Err(self.source.error(
                            Some(p),
                            format!("reading from offset {}: {}", self.next, first_line(&e)),
                        ));
                    }
                    Err(_) => {
                        return Err(self.source.error(
                            Some(p),
                            format!(
                                "no answer from the broker within {:?} reading from offset {}",
                                self.source.timeout, self.next
                            ),
                        ));
                    }
                };
            if records.is_empty() {
                if high_watermark <= self.next {
                    return Err(self.source.error(
                        Some(p),
                        format!(
                            "ends at offset {high_watermark}, before the read's end offset {}",
                            self.range.end
                        ),
                    ));
                }
                continue;
            }
            for record in records {
                if record.offset < self.next {
                    continue;
                }
                if record.offset >= self.range.end {
                    self.next = self.range.end;
                    break;
                }
                self.next = record.offset + 1;
                keys.append_option(record.record.key.as_deref());
                match &self.value_fields {
                    None => raw.append_option(record.record.value.as_deref()),
                    Some(_) => {
                        match record.record.value.as_deref() {
                            Some(bytes) if !bytes.is_empty() => json.extend_from_slice(bytes),
                            _ => json.extend_from_slice(b"{}"),
                        }
                        json.push(b'\n');
                    }
                }
                offsets.append_value(record.offset);
                times.append_value(record.record.timestamp.timestamp_millis());
                rows += 1;
            }
        }
        if rows == 0 {
            return Ok(None);
        }
        let value: ArrayRef = match &self.value_fields {
            None => Arc::new(raw.finish()),
            Some(fields) => {
                let first = offsets.values_slice().first().copied().unwrap_or_default();
                let decoded = decode_json(fields, &json, rows).map_err(|e| {
                    self.source.error(
                        Some(p),
                        format!("a value from offset {first} on is not the JSON expected: {e}"),
                    )
                })?;
                Arc::new(decoded)
            }
        };
        let partitions = arrow::array::Int32Array::from(vec![p; rows]);
        RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![
                Arc::new(keys.finish()),
                value,
                Arc::new(partitions),
                Arc::new(offsets.finish()),
                Arc::new(times.finish()),
            ],
        )
        .map(Some)
        .map_err(|e| self.source.error(Some(p), e.to_string()))
    }
}

/// `rows` newline-separated JSON objects as a struct array of `fields`.
pub fn decode_json(fields: &Fields, text: &[u8], rows: usize) -> Result<StructArray, String> {
    let schema = Arc::new(Schema::new(fields.clone()));
    let mut decoder = arrow::json::ReaderBuilder::new(schema)
        .with_batch_size(rows.max(1))
        .build_decoder()
        .map_err(|e| e.to_string())?;
    let mut rest = text;
    while !rest.is_empty() {
        let used = decoder.decode(rest).map_err(|e| e.to_string())?;
        if used == 0 {
            break;
        }
        rest = &rest[used..];
    }
    let batch = decoder
        .flush()
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| RecordBatch::new_empty(Arc::new(Schema::new(fields.clone()))));
    if batch.num_rows() != rows {
        return Err(format!("{} of {rows} values decoded", batch.num_rows()));
    }
    Ok(StructArray::from(batch))
}

impl ExecutionPlan for KafkaScanExec {
    fn name(&self) -> &str {
        "KafkaScanExec"
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
                "KafkaScanExec has no inputs".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let range = *self.ranges.get(partition).ok_or_else(|| {
            DataFusionError::Internal(format!("KafkaScanExec has no partition {partition}"))
        })?;
        let source = self.source.clone();
        let value_fields = self.value_fields.clone();
        let schema = Arc::clone(&self.schema);
        let batch_size = context.session_config().batch_size();
        let opened = async move {
            let connection = source.client_for(Some(range.partition)).await?;
            let client = source.partition(&connection, range.partition).await?;
            Ok::<_, ConnectorError>(Reading {
                source,
                client,
                range,
                next: range.start,
                value_fields,
                schema,
                batch_size,
                _connection: connection,
            })
        };
        Ok(batches_of(Arc::clone(&self.schema), opened))
    }
}
