//! Plan serialization: [`EmberCodec`] teaches datafusion-proto Ember's own plan nodes, and
//! [`encode_plan`] / [`decode_plan`] move a stage plan to an executor and back.
//!
//! Even the embedded cluster sends every task plan through these functions, so a plan that
//! runs locally is known to survive the trip to a remote executor.

use std::sync::Arc;

use arrow::datatypes::Schema;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::AggregateUDF;
use datafusion::physical_expr::equivalence::{EquivalenceClass, EquivalenceGroup};
use datafusion::physical_expr::{AcrossPartitions, ConstExpr, EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use datafusion_proto::bytes::{
    physical_plan_from_bytes_with_proto_converter, physical_plan_to_bytes_with_extension_codec,
};
use datafusion_proto::physical_plan::from_proto::{
    parse_physical_exprs, parse_protobuf_partitioning,
};
use datafusion_proto::physical_plan::to_proto::{serialize_partitioning, serialize_physical_exprs};
use datafusion_proto::physical_plan::{
    DefaultPhysicalProtoConverter, PhysicalExtensionCodec, PhysicalPlanDecodeContext,
    PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf;
use datafusion_proto::protobuf::physical_plan_node::PhysicalPlanType;
use prost::Message;

use crate::cache::{CacheScanExec, CachedPiece};
use crate::error::{PlannerError, Result};
use crate::functions::{FunctionRegistry, MapPartitionsExec};
use crate::percentiles::{APPROX_PERCENTILES, approx_percentiles_udaf};
use crate::shuffle::{ShuffleOutput, ShuffleReaderExec, ShuffleWriterExec};
use crate::sink::{StagedWriteExec, WriteFormat};
use ember_connectors::kafka::{KafkaScanExec, KafkaSource, KafkaWriteExec, OffsetRange};
use ember_connectors::postgres::{Connection, PostgresScanExec, PostgresWriteExec};

/// Version of the wire form of Ember's extension nodes; a decoder refuses other versions.
pub const PLAN_WIRE_VERSION: u32 = 6;

/// Serializes a stage plan (DataFusion nodes and Ember's shuffle nodes) to bytes.
pub fn encode_plan(plan: Arc<dyn ExecutionPlan>) -> Result<Vec<u8>> {
    // Encoding writes a function's name only; the registry is for decoding.
    let codec = EmberCodec::new(FunctionRegistry::new());
    physical_plan_to_bytes_with_extension_codec(plan, &codec)
        .map(|bytes| bytes.to_vec())
        .map_err(|source| {
            // DataFusion asks the extension codec last, after every built-in node failed:
            // its refusal names the operator that has no wire form.
            let text = source.to_string();
            match text
                .split_once(UNSERIALIZABLE)
                .and_then(|(_, rest)| rest.split(|c: char| !c.is_alphanumeric()).next())
            {
                Some(operator) if !operator.is_empty() => PlannerError::Unsupported {
                    message: format!(
                        "the operator {operator} cannot be sent to executors yet, so this \
                         query cannot run on Ember"
                    ),
                },
                _ => PlannerError::Codec {
                    action: "encoding a stage plan",
                    source,
                },
            }
        })
}

/// How [`EmberCodec`] refuses a node it does not know; [`encode_plan`] looks for it.
const UNSERIALIZABLE: &str = "Ember cannot serialize plan node ";

/// Rebuilds a stage plan from [`encode_plan`]'s bytes; the functions it names resolve
/// through `functions`, the decoding process's own registry.
///
/// Bytes from the network may be anything: a decoder that panics on them (arrow's IPC
/// reader does on some corrupt in-memory batches) yields an error here, not a panic.
pub fn decode_plan(
    bytes: &[u8],
    ctx: &TaskContext,
    functions: &FunctionRegistry,
) -> Result<Arc<dyn ExecutionPlan>> {
    let codec = EmberCodec::new(functions.clone());
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        physical_plan_from_bytes_with_proto_converter(bytes, ctx, &codec, &CheckedConverter)
    }));
    let source = match decoded {
        Ok(Ok(plan)) => return Ok(plan),
        Ok(Err(source)) => source,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            DataFusionError::Execution(format!("the plan bytes are corrupt: {message}"))
        }
    };
    Err(PlannerError::Codec {
        action: "decoding a stage plan",
        source,
    })
}

/// DataFusion's proto converter, except that it first checks the framing of the Arrow IPC
/// streams that carry in-memory batches: arrow's reader trusts the lengths in them and
/// allocates whatever they say (the `task_plan` fuzz target found a length that aborted
/// the process on allocation).
struct CheckedConverter;

impl PhysicalProtoConverterExtension for CheckedConverter {
    fn proto_to_execution_plan(
        &self,
        proto: &protobuf::PhysicalPlanNode,
        ctx: &PhysicalPlanDecodeContext<'_>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if let Some(PhysicalPlanType::MemoryScan(scan)) = &proto.physical_plan_type {
            for partition in &scan.partitions {
                check_ipc_stream(partition)?;
            }
        }
        self.default_proto_to_execution_plan(proto, ctx)
    }

    fn execution_plan_to_proto(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        codec: &dyn PhysicalExtensionCodec,
    ) -> DfResult<protobuf::PhysicalPlanNode> {
        DefaultPhysicalProtoConverter {}.execution_plan_to_proto(plan, codec)
    }

    fn proto_to_physical_expr(
        &self,
        proto: &protobuf::PhysicalExprNode,
        input_schema: &Schema,
        ctx: &PhysicalPlanDecodeContext<'_>,
    ) -> DfResult<Arc<dyn PhysicalExpr>> {
        self.default_proto_to_physical_expr(proto, input_schema, ctx)
    }

    fn physical_expr_to_proto(
        &self,
        expr: &Arc<dyn PhysicalExpr>,
        codec: &dyn PhysicalExtensionCodec,
    ) -> DfResult<protobuf::PhysicalExprNode> {
        DefaultPhysicalProtoConverter {}.physical_expr_to_proto(expr, codec)
    }
}

/// Checks that every message of the Arrow IPC stream `buf` (a 4-byte continuation
/// marker, a 4-byte metadata length, the metadata, then the body its metadata sizes) lies
/// inside `buf`.
fn check_ipc_stream(buf: &[u8]) -> DfResult<()> {
    let corrupt = |what: &str| codec_err(format!("corrupt in-memory batch: {what}"));
    let word = |at: usize| -> DfResult<u32> {
        buf.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| corrupt("a length past the end"))
    };
    let mut at = 0;
    while at < buf.len() {
        let mut length = word(at)?;
        at += 4;
        if length == 0xFFFF_FFFF {
            length = word(at)?;
            at += 4;
        }
        if length == 0 {
            return Ok(());
        }
        let end = at
            .checked_add(length as usize)
            .filter(|end| *end <= buf.len())
            .ok_or_else(|| corrupt("message metadata past the end"))?;
        let message = arrow::ipc::root_as_message(&buf[at..end])
            .map_err(|e| corrupt(&format!("message metadata: {e}")))?;
        let body = usize::try_from(message.bodyLength())
            .ok()
            .and_then(|body| end.checked_add(body))
            .filter(|body_end| *body_end <= buf.len())
            .ok_or_else(|| corrupt("message body past the end"))?;
        at = body;
    }
    Ok(())
}

/// The datafusion-proto extension codec for [`ShuffleWriterExec`], [`ShuffleReaderExec`],
/// [`MapPartitionsExec`] (by function name, resolved in its [`FunctionRegistry`] when
/// decoding) and [`CacheScanExec`].
#[derive(Debug, Clone)]
pub struct EmberCodec {
    functions: FunctionRegistry,
}

impl EmberCodec {
    /// A codec that finds the functions a plan names in `functions`.
    pub fn new(functions: FunctionRegistry) -> Self {
        Self { functions }
    }
}

/// Wire form of an Ember extension node.
#[derive(Clone, PartialEq, Message)]
struct ExtensionNode {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(message, optional, tag = "2")]
    writer: Option<WriterNode>,
    #[prost(message, optional, tag = "3")]
    reader: Option<ReaderNode>,
    #[prost(message, optional, tag = "4")]
    map_partitions: Option<MapPartitionsNode>,
    #[prost(message, optional, tag = "5")]
    cache_scan: Option<CacheScanNode>,
    #[prost(message, optional, tag = "6")]
    staged_write: Option<StagedWriteNode>,
    #[prost(message, optional, tag = "7")]
    postgres_scan: Option<PostgresScanNode>,
    #[prost(message, optional, tag = "8")]
    postgres_write: Option<PostgresWriteNode>,
    #[prost(message, optional, tag = "9")]
    kafka_scan: Option<KafkaScanNode>,
    #[prost(message, optional, tag = "10")]
    kafka_write: Option<KafkaWriteNode>,
}

/// Wire form of a Kafka topic's brokers, name and time to answer.
#[derive(Clone, PartialEq, Message)]
struct KafkaSourceNode {
    #[prost(string, repeated, tag = "1")]
    brokers: Vec<String>,
    #[prost(string, tag = "2")]
    topic: String,
    #[prost(uint64, tag = "3")]
    timeout_ms: u64,
    #[prost(uint64, tag = "4")]
    batch_records: u64,
}

/// Wire form of one task's offsets.
#[derive(Clone, PartialEq, Message)]
struct OffsetRangeNode {
    #[prost(int32, tag = "1")]
    partition: i32,
    #[prost(int64, tag = "2")]
    start: i64,
    #[prost(int64, tag = "3")]
    end: i64,
}

/// Wire form of a [`KafkaScanExec`]: the topic, the ranges (one per partition of the
/// plan) and the JSON value's fields (absent for bytes).
#[derive(Clone, PartialEq, Message)]
struct KafkaScanNode {
    #[prost(message, optional, tag = "1")]
    source: Option<KafkaSourceNode>,
    #[prost(message, repeated, tag = "2")]
    ranges: Vec<OffsetRangeNode>,
    #[prost(message, optional, tag = "3")]
    value_fields: Option<protobuf::Schema>,
}

/// Wire form of a [`KafkaWriteExec`]; its input travels as the extension's input.
#[derive(Clone, PartialEq, Message)]
struct KafkaWriteNode {
    #[prost(message, optional, tag = "1")]
    source: Option<KafkaSourceNode>,
}

fn kafka_source_node(source: &KafkaSource) -> KafkaSourceNode {
    KafkaSourceNode {
        brokers: source.brokers.clone(),
        topic: source.topic.clone(),
        timeout_ms: u64::try_from(source.timeout.as_millis()).unwrap_or(u64::MAX),
        batch_records: u64::try_from(source.batch_records).unwrap_or(u64::MAX),
    }
}

fn kafka_source(node: Option<KafkaSourceNode>) -> DfResult<KafkaSource> {
    let node = node.ok_or_else(|| codec_err("Kafka node without its topic"))?;
    Ok(KafkaSource {
        brokers: node.brokers,
        topic: node.topic,
        timeout: std::time::Duration::from_millis(node.timeout_ms),
        batch_records: usize::try_from(node.batch_records).unwrap_or(usize::MAX),
    })
}

/// Wire form of a [`PostgresScanExec`]: the server (its connection string, password
/// included: the executors connect themselves), the table, the rows' schema and one
/// query per partition.
#[derive(Clone, PartialEq, Message)]
struct PostgresScanNode {
    #[prost(string, tag = "1")]
    connection: String,
    #[prost(string, tag = "2")]
    table: String,
    #[prost(message, optional, tag = "3")]
    schema: Option<protobuf::Schema>,
    #[prost(string, repeated, tag = "4")]
    queries: Vec<String>,
}

/// Wire form of a [`PostgresWriteExec`]; its input travels as the extension's input.
#[derive(Clone, PartialEq, Message)]
struct PostgresWriteNode {
    #[prost(string, tag = "1")]
    connection: String,
    #[prost(string, tag = "2")]
    table: String,
    #[prost(string, tag = "3")]
    write_id: String,
}

/// Wire form of a [`StagedWriteExec`]; its input travels as the extension's input.
#[derive(Clone, PartialEq, Message)]
struct StagedWriteNode {
    #[prost(string, tag = "1")]
    staging: String,
    /// The file extension: parquet, csv or json.
    #[prost(string, tag = "2")]
    format: String,
    #[prost(bool, tag = "3")]
    single_file: bool,
}

/// Wire form of a [`MapPartitionsExec`]: the function's name and arguments; its input
/// travels as the extension's input.
#[derive(Clone, PartialEq, Message)]
struct MapPartitionsNode {
    #[prost(string, tag = "1")]
    function: String,
    #[prost(string, tag = "2")]
    args: String,
}

/// Wire form of a [`CacheScanExec`].
#[derive(Clone, PartialEq, Message)]
struct CacheScanNode {
    #[prost(uint64, tag = "1")]
    cache_id: u64,
    #[prost(message, optional, tag = "2")]
    schema: Option<protobuf::Schema>,
    #[prost(uint64, tag = "3")]
    partitions: u64,
    #[prost(message, repeated, tag = "4")]
    pieces: Vec<CachedPieceNode>,
}

/// Wire form of a [`CachedPiece`].
#[derive(Clone, PartialEq, Message)]
struct CachedPieceNode {
    #[prost(uint64, tag = "1")]
    partition: u64,
    #[prost(string, tag = "2")]
    executor_id: String,
    #[prost(string, tag = "3")]
    path: String,
    #[prost(string, tag = "4")]
    job_id: String,
    #[prost(uint64, tag = "5")]
    stage_id: u64,
    #[prost(uint64, tag = "6")]
    map_partition: u64,
    #[prost(uint64, tag = "7")]
    attempt: u64,
}

/// Wire form of a [`ShuffleWriterExec`]; its input travels as the extension's input.
#[derive(Clone, PartialEq, Message)]
struct WriterNode {
    #[prost(uint64, tag = "1")]
    stage_id: u64,
    /// 0 hash, 1 round robin, 2 single, 3 preserve.
    #[prost(uint32, tag = "2")]
    kind: u32,
    /// The hash keys and partition count (hash), or the partition count.
    #[prost(message, optional, tag = "3")]
    partitioning: Option<protobuf::Partitioning>,
}

/// Wire form of a [`ShuffleReaderExec`].
#[derive(Clone, PartialEq, Message)]
struct ReaderNode {
    #[prost(uint64, tag = "1")]
    stage_id: u64,
    #[prost(message, optional, tag = "2")]
    schema: Option<protobuf::Schema>,
    #[prost(message, optional, tag = "3")]
    partitioning: Option<protobuf::Partitioning>,
    /// Expressions that are equal in every row, one message per group of them.
    #[prost(message, repeated, tag = "4")]
    equal: Vec<EqualExprsNode>,
    /// Expressions that have one value in every row of a partition.
    #[prost(message, repeated, tag = "5")]
    constants: Vec<ConstantNode>,
}

/// Wire form of one [`EquivalenceClass`] that a [`ShuffleReaderExec`] declares.
#[derive(Clone, PartialEq, Message)]
struct EqualExprsNode {
    #[prost(message, repeated, tag = "1")]
    exprs: Vec<protobuf::PhysicalExprNode>,
}

/// Wire form of a [`ConstExpr`] that a [`ShuffleReaderExec`] declares.
#[derive(Clone, PartialEq, Message)]
struct ConstantNode {
    #[prost(message, optional, tag = "1")]
    expr: Option<protobuf::PhysicalExprNode>,
    /// The value is the same in every partition ([`AcrossPartitions::Uniform`]).
    #[prost(bool, tag = "2")]
    uniform: bool,
    /// The value, where it is uniform and known.
    #[prost(message, optional, tag = "3")]
    value: Option<protobuf::ScalarValue>,
}

const KIND_HASH: u32 = 0;
const KIND_ROUND_ROBIN: u32 = 1;
const KIND_SINGLE: u32 = 2;
const KIND_PRESERVE: u32 = 3;

fn codec_err(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(format!("Ember plan codec: {}", message.into()))
}

fn to_u64(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

fn to_usize(value: u64, what: &str) -> DfResult<usize> {
    usize::try_from(value).map_err(|_| codec_err(format!("{what} {value} does not fit")))
}

impl PhysicalExtensionCodec for EmberCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let node = ExtensionNode::decode(buf)
            .map_err(|e| codec_err(format!("malformed extension node: {e}")))?;
        if node.version != PLAN_WIRE_VERSION {
            return Err(codec_err(format!(
                "plan wire version {} is not {PLAN_WIRE_VERSION}: scheduler and executor \
                 run different Ember versions",
                node.version
            )));
        }
        let decode_ctx = PhysicalPlanDecodeContext::new(ctx, self);
        if let Some(writer) = node.writer {
            let [input] = inputs else {
                return Err(codec_err("ShuffleWriterExec needs exactly one input"));
            };
            let partitioning = parse_protobuf_partitioning(
                writer.partitioning.as_ref(),
                &decode_ctx,
                input.schema().as_ref(),
                proto_converter,
            )?
            .ok_or_else(|| codec_err("ShuffleWriterExec without partitioning"))?;
            let count = partitioning.partition_count();
            let output = match (writer.kind, partitioning) {
                (KIND_HASH, Partitioning::Hash(exprs, count)) => {
                    ShuffleOutput::Hash { exprs, count }
                }
                (KIND_ROUND_ROBIN, _) => ShuffleOutput::RoundRobin { count },
                (KIND_SINGLE, _) => ShuffleOutput::Single,
                (KIND_PRESERVE, _) => ShuffleOutput::Preserve { count },
                (kind, partitioning) => {
                    return Err(codec_err(format!(
                        "unknown shuffle output kind {kind} with {partitioning}"
                    )));
                }
            };
            let stage_id = to_usize(writer.stage_id, "stage id")?;
            return Ok(Arc::new(ShuffleWriterExec::new(
                stage_id,
                Arc::clone(input),
                output,
            )));
        }
        if let Some(reader) = node.reader {
            let schema = reader
                .schema
                .as_ref()
                .ok_or_else(|| codec_err("ShuffleReaderExec without schema"))?;
            let schema = Arc::new(Schema::try_from(schema)?);
            let partitioning = parse_protobuf_partitioning(
                reader.partitioning.as_ref(),
                &decode_ctx,
                schema.as_ref(),
                proto_converter,
            )?
            .ok_or_else(|| codec_err("ShuffleReaderExec without partitioning"))?;
            let facts = decode_equivalences(
                &reader.equal,
                &reader.constants,
                &decode_ctx,
                schema.as_ref(),
                proto_converter,
            )?;
            let stage_id = to_usize(reader.stage_id, "stage id")?;
            return Ok(Arc::new(
                ShuffleReaderExec::new(stage_id, schema, partitioning).with_equivalences(facts)?,
            ));
        }
        if let Some(map) = node.map_partitions {
            let [input] = inputs else {
                return Err(codec_err("MapPartitionsExec needs exactly one input"));
            };
            // The executor's own registry: a function the driver knows but this process
            // lacks fails here, naming it.
            let function = self.functions.get(&map.function)?;
            return Ok(Arc::new(MapPartitionsExec::new(
                Arc::clone(input),
                function,
                map.args,
            )?));
        }
        if let Some(scan) = node.cache_scan {
            let schema = scan
                .schema
                .as_ref()
                .ok_or_else(|| codec_err("CacheScanExec without schema"))?;
            let pieces = scan
                .pieces
                .into_iter()
                .map(|p| {
                    Ok(CachedPiece {
                        partition: to_usize(p.partition, "cache partition")?,
                        executor_id: p.executor_id,
                        path: p.path.into(),
                        job_id: p.job_id,
                        stage_id: to_usize(p.stage_id, "cache stage")?,
                        map_partition: to_usize(p.map_partition, "cache map partition")?,
                        attempt: to_usize(p.attempt, "cache attempt")?,
                    })
                })
                .collect::<DfResult<Vec<_>>>()?;
            return Ok(Arc::new(CacheScanExec::new(
                scan.cache_id,
                Arc::new(Schema::try_from(schema)?),
                to_usize(scan.partitions, "cache partitions")?,
                Arc::new(pieces),
            )));
        }
        if let Some(write) = node.staged_write {
            let [input] = inputs else {
                return Err(codec_err("StagedWriteExec needs exactly one input"));
            };
            let format = WriteFormat::from_extension(&write.format)
                .ok_or_else(|| codec_err(format!("unknown output format '{}'", write.format)))?;
            return Ok(Arc::new(
                StagedWriteExec::new(Arc::clone(input), write.staging, format)
                    .with_single_file(write.single_file),
            ));
        }
        if let Some(scan) = node.postgres_scan {
            let schema = scan
                .schema
                .as_ref()
                .ok_or_else(|| codec_err("PostgresScanExec without schema"))?;
            return Ok(Arc::new(PostgresScanExec::new(
                Connection::parse(&scan.connection)?,
                scan.table,
                Arc::new(Schema::try_from(schema)?),
                scan.queries,
            )));
        }
        if let Some(write) = node.postgres_write {
            let [input] = inputs else {
                return Err(codec_err("PostgresWriteExec needs exactly one input"));
            };
            return Ok(Arc::new(PostgresWriteExec::new(
                Arc::clone(input),
                Connection::parse(&write.connection)?,
                write.table,
                write.write_id,
            )));
        }
        if let Some(scan) = node.kafka_scan {
            let value_fields = scan
                .value_fields
                .as_ref()
                .map(Schema::try_from)
                .transpose()?
                .map(|schema| schema.fields().clone());
            let ranges = scan
                .ranges
                .iter()
                .map(|r| OffsetRange {
                    partition: r.partition,
                    start: r.start,
                    end: r.end,
                })
                .collect();
            return Ok(Arc::new(KafkaScanExec::new(
                kafka_source(scan.source)?,
                ranges,
                value_fields,
            )));
        }
        if let Some(write) = node.kafka_write {
            let [input] = inputs else {
                return Err(codec_err("KafkaWriteExec needs exactly one input"));
            };
            return Ok(Arc::new(KafkaWriteExec::new(
                Arc::clone(input),
                kafka_source(write.source)?,
            )));
        }
        Err(codec_err(
            "extension node is neither a writer, a reader, a function, a cache scan, an \
             output writer nor a PostgreSQL or Kafka scan or write",
        ))
    }

    /// Ember's own aggregates, which a decoding process's registry need not hold: a plan
    /// names them and they resolve here.
    fn try_decode_udaf(&self, name: &str, _buf: &[u8]) -> DfResult<Arc<AggregateUDF>> {
        if name == APPROX_PERCENTILES {
            return Ok(approx_percentiles_udaf());
        }
        Err(codec_err(format!("no aggregate function named {name}")))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        let message = if let Some(writer) = node.downcast_ref::<ShuffleWriterExec>() {
            let (kind, partitioning) = match writer.output() {
                ShuffleOutput::Hash { exprs, count } => {
                    (KIND_HASH, Partitioning::Hash(exprs.clone(), *count))
                }
                ShuffleOutput::RoundRobin { count } => {
                    (KIND_ROUND_ROBIN, Partitioning::RoundRobinBatch(*count))
                }
                ShuffleOutput::Single => (KIND_SINGLE, Partitioning::UnknownPartitioning(1)),
                ShuffleOutput::Preserve { count } => {
                    (KIND_PRESERVE, Partitioning::UnknownPartitioning(*count))
                }
            };
            ExtensionNode {
                version: PLAN_WIRE_VERSION,
                writer: Some(WriterNode {
                    stage_id: to_u64(writer.stage_id()),
                    kind,
                    partitioning: Some(serialize_partitioning(
                        &partitioning,
                        self,
                        proto_converter,
                    )?),
                }),
                ..ExtensionNode::default()
            }
        } else if let Some(write) = node.downcast_ref::<StagedWriteExec>() {
            ExtensionNode {
                version: PLAN_WIRE_VERSION,
                staged_write: Some(StagedWriteNode {
                    staging: write.staging().to_string(),
                    format: write.format().extension().to_string(),
                    single_file: write.single_file(),
                }),
                ..ExtensionNode::default()
            }
        } else if let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() {
            let (equal, constants) =
                encode_equivalences(&reader.properties().eq_properties, self, proto_converter)?;
            ExtensionNode {
                version: PLAN_WIRE_VERSION,
                reader: Some(ReaderNode {
                    stage_id: to_u64(reader.stage_id()),
                    schema: Some(reader.schema().as_ref().try_into()?),
                    partitioning: Some(serialize_partitioning(
                        reader.partitioning(),
                        self,
                        proto_converter,
                    )?),
                    equal,
                    constants,
                }),
                ..ExtensionNode::default()
            }
        } else if let Some(map) = node.downcast_ref::<MapPartitionsExec>() {
            ExtensionNode {
                version: PLAN_WIRE_VERSION,
                map_partitions: Some(MapPartitionsNode {
                    function: map.function().name().to_string(),
                    args: map.args().to_string(),
                }),
                ..ExtensionNode::default()
            }
        } else if let Some(scan) = node.downcast_ref::<CacheScanExec>() {
            ExtensionNode {
                version: PLAN_WIRE_VERSION,
                cache_scan: Some(CacheScanNode {
                    cache_id: scan.cache_id(),
                    schema: Some(scan.schema().as_ref().try_into()?),
                    partitions: to_u64(scan.properties().partitioning.partition_count()),
                    pieces: scan
                        .pieces()
                        .iter()
                        .map(|p| CachedPieceNode {
                            partition: to_u64(p.partition),
                            executor_id: p.executor_id.clone(),
                            path: p.path.to_string_lossy().into_owned(),
                            job_id: p.job_id.clone(),
                            stage_id: to_u64(p.stage_id),
                            map_partition: to_u64(p.map_partition),
                            attempt: to_u64(p.attempt),
                        })
                        .collect(),
                }),
                ..ExtensionNode::default()
            }
        } else if let Some(scan) = node.downcast_ref::<PostgresScanExec>() {
            ExtensionNode {
                version: PLAN_WIRE_VERSION,
                postgres_scan: Some(PostgresScanNode {
                    connection: scan.connection().url().to_string(),
                    table: scan.table().to_string(),
                    schema: Some(scan.schema().as_ref().try_into()?),
                    queries: scan.queries().to_vec(),
                }),
                ..ExtensionNode::default()
            }
        } else if let Some(scan) = node.downcast_ref::<KafkaScanExec>() {
            ExtensionNode {
                version: PLAN_WIRE_VERSION,
                kafka_scan: Some(KafkaScanNode {
                    source: Some(kafka_source_node(scan.source())),
                    ranges: scan
                        .ranges()
                        .iter()
                        .map(|r| OffsetRangeNode {
                            partition: r.partition,
                            start: r.start,
                            end: r.end,
                        })
                        .collect(),
                    value_fields: scan
                        .value_fields()
                        .map(|fields| (&Schema::new(fields.clone())).try_into())
                        .transpose()?,
                }),
                ..ExtensionNode::default()
            }
        } else if let Some(write) = node.downcast_ref::<KafkaWriteExec>() {
            ExtensionNode {
                version: PLAN_WIRE_VERSION,
                kafka_write: Some(KafkaWriteNode {
                    source: Some(kafka_source_node(write.source())),
                }),
                ..ExtensionNode::default()
            }
        } else if let Some(write) = node.downcast_ref::<PostgresWriteExec>() {
            ExtensionNode {
                version: PLAN_WIRE_VERSION,
                postgres_write: Some(PostgresWriteNode {
                    connection: write.connection().url().to_string(),
                    table: write.table().to_string(),
                    write_id: write.write_id().to_string(),
                }),
                ..ExtensionNode::default()
            }
        } else {
            return Err(DataFusionError::NotImplemented(format!(
                "{UNSERIALIZABLE}{}",
                node.name()
            )));
        };
        message
            .encode(buf)
            .map_err(|e| codec_err(format!("encoding extension node: {e}")))
    }
}

/// The equalities and constants of `properties` in wire form: every group of two or more
/// equal expressions, and every constant expression.
fn encode_equivalences(
    properties: &EquivalenceProperties,
    codec: &dyn PhysicalExtensionCodec,
    proto_converter: &dyn PhysicalProtoConverterExtension,
) -> DfResult<(Vec<EqualExprsNode>, Vec<ConstantNode>)> {
    let equal = properties
        .eq_group()
        .iter()
        .filter(|class| class.len() > 1)
        .map(|class| {
            Ok(EqualExprsNode {
                exprs: serialize_physical_exprs(class.iter(), codec, proto_converter)?,
            })
        })
        .collect::<DfResult<Vec<_>>>()?;
    let constants = properties
        .constants()
        .into_iter()
        .map(|constant| {
            let expr = proto_converter.physical_expr_to_proto(&constant.expr, codec)?;
            let (uniform, value) = match &constant.across_partitions {
                AcrossPartitions::Heterogeneous => (false, None),
                AcrossPartitions::Uniform(None) => (true, None),
                AcrossPartitions::Uniform(Some(value)) => {
                    let value = protobuf::ScalarValue::try_from(value)
                        .map_err(|e| codec_err(format!("encoding the constant {value}: {e}")))?;
                    (true, Some(value))
                }
            };
            Ok(ConstantNode {
                expr: Some(expr),
                uniform,
                value,
            })
        })
        .collect::<DfResult<Vec<_>>>()?;
    Ok((equal, constants))
}

/// Rebuilds what [`encode_equivalences`] wrote, with expressions bound to `schema`.
fn decode_equivalences(
    equal: &[EqualExprsNode],
    constants: &[ConstantNode],
    ctx: &PhysicalPlanDecodeContext<'_>,
    schema: &Schema,
    proto_converter: &dyn PhysicalProtoConverterExtension,
) -> DfResult<EquivalenceGroup> {
    let classes = equal
        .iter()
        .map(|node| {
            parse_physical_exprs(&node.exprs, ctx, schema, proto_converter)
                .map(EquivalenceClass::new)
        })
        .collect::<DfResult<Vec<_>>>()?;
    let mut group = EquivalenceGroup::new(classes);
    for node in constants {
        let expr = node
            .expr
            .as_ref()
            .ok_or_else(|| codec_err("a constant without its expression"))?;
        let expr = proto_converter.proto_to_physical_expr(expr, schema, ctx)?;
        let across = match (node.uniform, &node.value) {
            (false, _) => AcrossPartitions::Heterogeneous,
            (true, None) => AcrossPartitions::Uniform(None),
            (true, Some(value)) => AcrossPartitions::Uniform(Some(
                ScalarValue::try_from(value)
                    .map_err(|e| codec_err(format!("decoding a constant: {e}")))?,
            )),
        };
        group.add_constant(ConstExpr::new(expr, across));
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `task_plan` fuzz target: stage plans whose in-memory batches carry an
    /// IPC buffer length past the body (arrow's reader panicked) or a message length of
    /// exabytes (arrow's reader aborted the process allocating it).
    #[test]
    fn corrupt_plans_are_errors_not_panics_or_aborts() {
        for bytes in [
            &include_bytes!("../tests/fixtures/corrupt-memory-batch-plan.bin")[..],
            &include_bytes!("../tests/fixtures/huge-ipc-length-plan.bin")[..],
        ] {
            let Err(err) = decode_plan(bytes, &TaskContext::default(), &FunctionRegistry::new())
            else {
                panic!("a corrupt plan decoded");
            };
            assert!(err.to_string().contains("corrupt"), "{err}");
        }
    }

    #[test]
    fn a_reader_keeps_its_equalities_and_constants_on_the_wire() {
        use arrow::datatypes::{DataType, Field};
        use datafusion::physical_expr::expressions::col;

        let schema = Arc::new(Schema::new(
            ["year", "b", "c"]
                .map(|name| Field::new(name, DataType::Int32, true))
                .to_vec(),
        ));
        let column = |name| col(name, &schema).expect("a column of the schema");
        let mut facts = EquivalenceGroup::new([EquivalenceClass::new([column("b"), column("c")])]);
        let year_1999 = AcrossPartitions::Uniform(Some(ScalarValue::Int32(Some(1999))));
        facts.add_constant(ConstExpr::new(column("year"), year_1999.clone()));
        let reader = ShuffleReaderExec::new(
            3,
            Arc::clone(&schema),
            Partitioning::Hash(vec![column("b")], 2),
        )
        .with_equivalences(facts)
        .expect("the facts fit the schema");

        let bytes = encode_plan(Arc::new(reader)).expect("encodes");
        let decoded = decode_plan(&bytes, &TaskContext::default(), &FunctionRegistry::new())
            .expect("decodes");
        let group = decoded.properties().eq_properties.eq_group();
        assert_eq!(group.is_expr_constant(&column("year")), Some(year_1999));
        assert!(group.exprs_equal(&column("b"), &column("c")), "{group}");
        assert_eq!(group.is_expr_constant(&column("b")), None);
    }

    #[test]
    fn ipc_streams_are_checked_message_by_message() {
        let batch = arrow::array::RecordBatch::try_from_iter([(
            "x",
            Arc::new(arrow::array::Int64Array::from(vec![1, 2, 3])) as arrow::array::ArrayRef,
        )])
        .expect("batch");
        let mut stream = Vec::new();
        let mut writer =
            arrow::ipc::writer::StreamWriter::try_new(&mut stream, &batch.schema()).expect("w");
        writer.write(&batch).expect("written");
        writer.finish().expect("finished");
        drop(writer);
        check_ipc_stream(&stream).expect("a well-formed stream");
        check_ipc_stream(&[]).expect("no batches");
        for cut in [3, 9, stream.len() - 9] {
            assert!(check_ipc_stream(&stream[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = stream.clone();
        huge[4..8].copy_from_slice(&0x7fff_fff0_u32.to_le_bytes());
        assert!(check_ipc_stream(&huge).is_err());
    }
}
