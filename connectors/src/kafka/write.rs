//! Writing a dataset to a topic. Each [`KafkaWriteExec`] task produces its partition's
//! rows: the `value` column (text or bytes) as the message value, or, with no such
//! column, each row as a JSON object; the `key` column, if any, as the key; and the
//! partition from a `partition` column, else from the key as Kafka's own clients choose
//! it (murmur2), else round robin. Kafka has no staging to commit from: a task that
//! runs again produces its rows again (at least once, as Spark's Kafka sink).

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type};
use chrono::Utc;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use rskafka::client::partition::Compression;
use rskafka::record::Record;

use super::scan::{KafkaSource, first_line};
use crate::error::ConnectorError;
use crate::task::{write_result, write_result_schema, write_stream};

/// Kafka's murmur2 hash (as its Java client's default partitioner computes it).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ u32::try_from(length).unwrap_or(u32::MAX);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    i32::from_ne_bytes(h.to_ne_bytes())
}

/// The partition of `key` among `count`, as Kafka's clients choose it.
pub fn partition_of(key: &[u8], count: usize) -> i32 {
    let positive = murmur2(key) & 0x7fff_ffff;
    let count = i32::try_from(count.max(1)).unwrap_or(i32::MAX);
    positive % count
}

/// Produces its input's rows to a topic.
#[derive(Debug)]
pub struct KafkaWriteExec {
    input: Arc<dyn ExecutionPlan>,
    source: KafkaSource,
    properties: Arc<PlanProperties>,
}

impl KafkaWriteExec {
    /// Produces `input` to `source`'s topic.
    pub fn new(input: Arc<dyn ExecutionPlan>, source: KafkaSource) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(write_result_schema()),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Self {
            input,
            source,
            properties,
        }
    }

    /// The brokers and topic.
    pub fn source(&self) -> &KafkaSource {
        &self.source
    }
}

impl DisplayAs for KafkaWriteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KafkaWriteExec: topic={}", self.source.topic)
    }
}

/// The rows of `batch` as messages: `(partition, record)`.
fn messages(
    batch: &RecordBatch,
    partitions: usize,
    task: usize,
    sent: &mut usize,
) -> Result<Vec<(i32, Record)>, String> {
    let schema = batch.schema();
    let bytes_of = |name: &str| -> Result<Option<Vec<Option<Vec<u8>>>>, String> {
        let Ok(index) = schema.index_of(name) else {
            return Ok(None);
        };
        let column = batch.column(index);
        let binary = cast(column, &DataType::Binary).map_err(|e| {
            format!(
                "column {name} ({}) is not text or bytes: {e}",
                column.data_type()
            )
        })?;
        let binary = binary.as_binary::<i32>();
        Ok(Some(
            (0..binary.len())
                .map(|i| binary.is_valid(i).then(|| binary.value(i).to_vec()))
                .collect(),
        ))
    };
    let keys = bytes_of("key")?;
    let values = match bytes_of("value")? {
        Some(values) => values,
        None => {
            let mut text = Vec::new();
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut text);
            writer.write(batch).map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())?;
            text.split(|b| *b == b'\n')
                .filter(|line| !line.is_empty())
                .map(|line| Some(line.to_vec()))
                .collect()
        }
    };
    let chosen = match schema.index_of("partition") {
        Ok(index) => Some(
            cast(batch.column(index), &DataType::Int32)
                .map_err(|e| format!("column partition is not a partition number: {e}"))?,
        ),
        Err(_) => None,
    };
    let count = i32::try_from(partitions.max(1)).unwrap_or(i32::MAX);
    let now = Utc::now();
    let mut out = Vec::with_capacity(batch.num_rows());
    for (i, value) in values.into_iter().enumerate() {
        let key = keys.as_ref().and_then(|k| k[i].clone());
        let partition = match (&chosen, &key) {
            (Some(p), _) if p.is_valid(i) => p.as_primitive::<Int32Type>().value(i),
            (_, Some(key)) => partition_of(key, partitions),
            _ => {
                *sent += 1;
                i32::try_from((task + *sent) % partitions.max(1)).unwrap_or(0)
            }
        };
        if !(0..count).contains(&partition) {
            return Err(format!(
                "row {i} names partition {partition}, which the topic lacks"
            ));
        }
        out.push((
            partition,
            Record {
                key,
                value,
                headers: Default::default(),
                timestamp: now,
            },
        ));
    }
    Ok(out)
}

impl ExecutionPlan for KafkaWriteExec {
    fn name(&self) -> &str {
        "KafkaWriteExec"
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
                "KafkaWriteExec takes one input".into(),
            ));
        };
        Ok(Arc::new(Self::new(Arc::clone(input), self.source.clone())))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, context)?;
        let source = self.source.clone();
        let task = async move {
            let client = source.client().await?;
            let topics = client
                .list_topics()
                .await
                .map_err(|e| source.error(None, first_line(&e)))?;
            let count = topics
                .iter()
                .find(|t| t.name == source.topic)
                .map(|t| t.partitions.len())
                .ok_or_else(|| source.error(None, "does not exist"))?;
            let mut producers = Vec::with_capacity(count);
            for p in 0..count {
                producers.push(
                    source
                        .partition(&client, i32::try_from(p).unwrap_or(0))
                        .await?,
                );
            }
            let mut rows = 0_u64;
            let mut sent = 0_usize;
            while let Some(batch) = input.next().await {
                let batch = batch?;
                let mut by_partition: Vec<Vec<Record>> = vec![Vec::new(); count];
                for (p, record) in messages(&batch, count, partition, &mut sent)
                    .map_err(|e| source.error(None, e))?
                {
                    by_partition[usize::try_from(p).unwrap_or(0)].push(record);
                }
                for (p, records) in by_partition.into_iter().enumerate() {
                    for chunk in records.chunks(source.batch_records.max(1)) {
                        let produced =
                            producers[p].produce(chunk.to_vec(), Compression::NoCompression);
                        match tokio::time::timeout(source.timeout, produced).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => {
                                return Err(source.error(
                                    i32::try_from(p).ok(),
                                    format!("producing: {}", first_line(&e)),
                                ));
                            }
                            Err(_) => {
                                return Err(source.error(
                                    i32::try_from(p).ok(),
                                    "no answer from the broker producing",
                                ));
                            }
                        }
                        rows += u64::try_from(chunk.len()).unwrap_or(0);
                    }
                }
            }
            Ok::<_, ConnectorError>(write_result(partition, source.topic.clone(), rows)?)
        };
        Ok(write_stream(task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_where_kafka_clients_send_them() {
        // Values from Kafka's own murmur2 tests (Utils.murmur2 in the Java client).
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"abc"), 479_470_107);
        assert!((0..6).contains(&partition_of(b"anything", 6)));
    }
}
