//! Plan serialization: [`EmberCodec`] teaches datafusion-proto Ember's own plan nodes, and
//! [`encode_plan`] / [`decode_plan`] move a stage plan to an executor and back.
//!
//! Even the embedded cluster sends every task plan through these functions, so a plan that
//! runs locally is known to survive the trip to a remote executor.

use std::sync::Arc;

use arrow::datatypes::Schema;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use datafusion_proto::physical_plan::from_proto::parse_protobuf_partitioning;
use datafusion_proto::physical_plan::to_proto::serialize_partitioning;
use datafusion_proto::physical_plan::{
    PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf;
use prost::Message;

use crate::cache::{CacheScanExec, CachedPiece};
use crate::error::{PlannerError, Result};
use crate::functions::{MapPartitionsExec, user_fn};
use crate::shuffle::{ShuffleOutput, ShuffleReaderExec, ShuffleWriterExec};
use crate::sink::{StagedWriteExec, WriteFormat};

/// Version of the wire form of Ember's extension nodes; a decoder refuses other versions.
pub const PLAN_WIRE_VERSION: u32 = 5;

/// Serializes a stage plan (DataFusion nodes and Ember's shuffle nodes) to bytes.
pub fn encode_plan(plan: Arc<dyn ExecutionPlan>) -> Result<Vec<u8>> {
    physical_plan_to_bytes_with_extension_codec(plan, &EmberCodec)
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

/// Rebuilds a stage plan from [`encode_plan`]'s bytes; functions resolve through `ctx`'s
/// registry.
///
/// Bytes from the network may be anything: a decoder that panics on them (arrow's IPC
/// reader does on some corrupt in-memory batches) yields an error here, not a panic.
pub fn decode_plan(bytes: &[u8], ctx: &TaskContext) -> Result<Arc<dyn ExecutionPlan>> {
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        physical_plan_from_bytes_with_extension_codec(bytes, ctx, &EmberCodec)
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

/// The datafusion-proto extension codec for [`ShuffleWriterExec`], [`ShuffleReaderExec`],
/// [`MapPartitionsExec`] (by function name) and [`CacheScanExec`].
#[derive(Debug, Default, Clone, Copy)]
pub struct EmberCodec;

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
            let stage_id = to_usize(reader.stage_id, "stage id")?;
            return Ok(Arc::new(ShuffleReaderExec::new(
                stage_id,
                schema,
                partitioning,
            )));
        }
        if let Some(map) = node.map_partitions {
            let [input] = inputs else {
                return Err(codec_err("MapPartitionsExec needs exactly one input"));
            };
            // The executor's own registry: a function the driver knows but this process
            // lacks fails here, naming it.
            let function = user_fn(&map.function)?;
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
        Err(codec_err(
            "extension node is neither a writer, a reader, a function, a cache scan nor an \
             output writer",
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `task_plan` fuzz target: a stage plan whose in-memory batch carries an
    /// IPC buffer length past its body made arrow's IPC reader panic inside the decoder.
    #[test]
    fn a_corrupt_plan_is_an_error_not_a_panic() {
        let bytes = include_bytes!("../tests/fixtures/corrupt-memory-batch-plan.bin");
        let Err(err) = decode_plan(bytes, &TaskContext::default()) else {
            panic!("a corrupt plan decoded");
        };
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}
