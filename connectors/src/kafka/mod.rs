//! Kafka topics as tables: a batch read between start and end offsets per partition
//! ([`KafkaTable`], scanned by [`KafkaScanExec`] tasks, one per partition or offset range,
//! with `key`, `partition`, `offset` and `timestamp` columns and the value as bytes or as
//! the columns of its JSON object), and a write that produces a dataset's rows to a topic
//! ([`KafkaWriteExec`]).
//!
//! The client is `rskafka` (pure Rust, maintained by InfluxData). Offsets follow Spark's
//! `startingOffsets` / `endingOffsets`: `earliest`, `latest`, or per partition as JSON
//! (`{"events":{"0":100,"1":-2}}`, -2 for earliest and -1 for latest).

mod options;
mod provider;
mod scan;
pub mod write;

pub use options::{KafkaOptions, OffsetSpec, ValueFormat};
pub use provider::{KafkaTable, KafkaTableFactory};
pub use scan::{KafkaScanExec, KafkaSource, OffsetRange};
pub use write::KafkaWriteExec;
