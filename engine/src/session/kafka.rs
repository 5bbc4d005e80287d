//! The session's Kafka topics: reads between offsets ([`Session::read_kafka`]) and writes
//! that produce a dataset's rows to a topic ([`Session::write_kafka_plan`], at least once:
//! a task that runs again produces its rows again, as with Spark's Kafka sink).

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::UInt64Type;
use datafusion::physical_plan::ExecutionPlan;
use ember_connectors::kafka::{KafkaOptions, KafkaSource, KafkaTable, KafkaWriteExec};

use super::Session;
use crate::commit::count_result;
use crate::dataset::Dataset;
use crate::error::Result;
use crate::result_stream::QueryResult;

impl Session {
    /// The messages of `options.topic` between its start and end offsets as a dataset of
    /// `key`, `value`, `partition`, `offset` and `timestamp`, read one task per partition.
    pub async fn read_kafka(&self, options: KafkaOptions) -> Result<Dataset<'_>> {
        let table = KafkaTable::open(options).await?;
        Ok(Dataset::new(self, self.ctx.read_table(Arc::new(table))?))
    }

    /// Runs `plan` and produces its rows to the topic `options.topic` (which must exist;
    /// see `KafkaWriteExec` for how rows become messages). Returns one row, `count`.
    pub async fn write_kafka_plan(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        options: &KafkaOptions,
    ) -> Result<QueryResult> {
        // Fails, naming the topic, before any task runs when it is missing.
        KafkaTable::open(KafkaOptions {
            value_format: ember_connectors::kafka::ValueFormat::Raw,
            ..options.clone()
        })
        .await?;
        let source = KafkaSource {
            brokers: options.brokers.clone(),
            topic: options.topic.clone(),
            timeout: options.fetch_timeout,
            batch_records: options.batch_records,
        };
        let result = self
            .run_physical(Arc::new(KafkaWriteExec::new(plan, source)))
            .await?;
        let rows = result
            .batches
            .iter()
            .map(|b| {
                b.column(2)
                    .as_primitive::<UInt64Type>()
                    .iter()
                    .flatten()
                    .sum::<u64>()
            })
            .sum();
        count_result(rows, result)
    }
}
