//! [`KafkaTable`]: a topic as a DataFusion table. Opening it checks the topic and, for
//! JSON values, infers their fields from the first messages of each partition; each scan
//! then resolves the start and end offsets of every partition (so `latest` means the end
//! of the topic when the query is planned), checks explicit offsets against what the
//! partitions hold, and reads one range per partition (cut into several when
//! `max_offsets_per_task` says so). [`KafkaTableFactory`] makes one for `STORED AS KAFKA`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Fields, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{CreateExternalTable, Expr, TableType};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::projection::ProjectionExec;
use rskafka::client::partition::OffsetAt;

use super::scan::{KafkaSource, decode_json, first_line, topic_schema};
use super::{KafkaOptions, KafkaScanExec, OffsetRange, OffsetSpec, ValueFormat};
use crate::error::{ConnectorError, Result};

/// Messages per partition that the JSON fields are inferred from.
const SAMPLE: usize = 100;

/// A Kafka topic.
#[derive(Debug)]
pub struct KafkaTable {
    options: KafkaOptions,
    source: KafkaSource,
    partitions: Vec<i32>,
    value_fields: Option<Fields>,
    schema: SchemaRef,
}

impl KafkaTable {
    /// Opens `options.topic` on `options.brokers`.
    pub async fn open(options: KafkaOptions) -> Result<Self> {
        let source = KafkaSource {
            brokers: options.brokers.clone(),
            topic: options.topic.clone(),
            timeout: options.fetch_timeout,
            batch_records: options.batch_records,
        };
        let client = source.client().await?;
        let topics = tokio::time::timeout(source.timeout, client.list_topics())
            .await
            .map_err(|_| source.error(None, "no answer from the brokers listing topics"))?
            .map_err(|e| source.error(None, first_line(&e)))?;
        let Some(topic) = topics.iter().find(|t| t.name == options.topic) else {
            let mut names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
            names.sort_unstable();
            return Err(source.error(
                None,
                format!(
                    "does not exist (the brokers have {})",
                    if names.is_empty() {
                        "no topics".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        };
        let partitions: Vec<i32> = topic.partitions.iter().copied().collect();
        let value_fields = match options.value_format {
            ValueFormat::Raw => None,
            ValueFormat::Json => Some(infer_fields(&source, &client, &partitions).await?),
        };
        let schema = topic_schema(value_fields.as_ref());
        Ok(Self {
            options,
            source,
            partitions,
            value_fields,
            schema,
        })
    }

    /// The brokers, topic and timeout.
    pub fn options(&self) -> &KafkaOptions {
        &self.options
    }

    /// The offset ranges a read covers now, one per task.
    pub async fn ranges(&self) -> Result<Vec<OffsetRange>> {
        let client = self.source.client().await?;
        for named in [&self.options.starting, &self.options.ending] {
            if let OffsetSpec::Partitions(map) = named
                && let Some(p) = map.keys().find(|p| !self.partitions.contains(p))
            {
                return Err(self.source.error(
                    Some(*p),
                    format!(
                        "does not exist (the topic has partitions 0 to {})",
                        self.partitions.len().saturating_sub(1)
                    ),
                ));
            }
        }
        let mut ranges = Vec::new();
        for &p in &self.partitions {
            let pc = self.source.partition(&client, p).await?;
            let pc = &pc;
            let offset = |at: OffsetAt| async move {
                match tokio::time::timeout(self.source.timeout, pc.get_offset(at)).await {
                    Ok(Ok(offset)) => Ok(offset),
                    Ok(Err(e)) => Err(self.source.error(Some(p), first_line(&e))),
                    Err(_) => Err(self.source.error(Some(p), "no answer from the broker")),
                }
            };
            let (earliest, latest) = (
                offset(OffsetAt::Earliest).await?,
                offset(OffsetAt::Latest).await?,
            );
            let pick = |spec: &OffsetSpec, default: i64, what: &str| -> Result<i64> {
                let asked = match spec {
                    OffsetSpec::Earliest => earliest,
                    OffsetSpec::Latest => latest,
                    OffsetSpec::Partitions(map) => match map.get(&p) {
                        None => default,
                        Some(-2) => earliest,
                        Some(-1) => latest,
                        Some(&n) => n,
                    },
                };
                if asked < earliest || asked > latest {
                    return Err(self.source.error(
                        Some(p),
                        format!(
                            "{what} offset {asked} is out of range (the partition holds \
                             offsets {earliest} to {})",
                            latest - 1
                        ),
                    ));
                }
                Ok(asked)
            };
            let start = pick(&self.options.starting, earliest, "starting")?;
            let end = pick(&self.options.ending, latest, "ending")?;
            if start > end {
                return Err(self.source.error(
                    Some(p),
                    format!("starting offset {start} is after the ending offset {end}"),
                ));
            }
            let step = self.options.max_offsets_per_task.unwrap_or(i64::MAX);
            let mut from = start;
            while from < end {
                let to = from.saturating_add(step).min(end);
                ranges.push(OffsetRange {
                    partition: p,
                    start: from,
                    end: to,
                });
                from = to;
            }
        }
        Ok(ranges)
    }
}

/// The fields of the JSON objects in the first messages of each partition.
async fn infer_fields(
    source: &KafkaSource,
    client: &rskafka::client::Client,
    partitions: &[i32],
) -> Result<Fields> {
    let mut text = Vec::new();
    let mut values = 0;
    for &p in partitions {
        let pc = source.partition(client, p).await?;
        let earliest = tokio::time::timeout(source.timeout, pc.get_offset(OffsetAt::Earliest))
            .await
            .map_err(|_| source.error(Some(p), "no answer from the broker"))?
            .map_err(|e| source.error(Some(p), first_line(&e)))?;
        let fetched = tokio::time::timeout(
            source.timeout,
            pc.fetch_records(earliest, 1..1024 * 1024, 100),
        )
        .await
        .map_err(|_| source.error(Some(p), "no answer from the broker"))?
        .map_err(|e| source.error(Some(p), first_line(&e)))?;
        for record in fetched.0.into_iter().take(SAMPLE) {
            if let Some(value) = record.record.value {
                text.extend_from_slice(&value);
                text.push(b'\n');
                values += 1;
            }
        }
    }
    if values == 0 {
        return Err(source.error(
            None,
            "holds no messages to infer the fields of JSON values from (value_format json)",
        ));
    }
    let (schema, _) = arrow::json::reader::infer_json_schema(std::io::Cursor::new(&text), None)
        .map_err(|e| source.error(None, format!("a value is not a JSON object: {e}")))?;
    let fields = schema.fields().clone();
    // The sample must decode with the fields inferred from it.
    decode_json(&fields, &text, values)
        .map_err(|e| source.error(None, format!("a value is not a JSON object: {e}")))?;
    Ok(fields)
}

#[async_trait]
impl TableProvider for KafkaTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let ranges = self.ranges().await?;
        let scan: Arc<dyn ExecutionPlan> = if ranges.is_empty() {
            Arc::new(EmptyExec::new(Arc::clone(&self.schema)))
        } else {
            Arc::new(KafkaScanExec::new(
                self.source.clone(),
                ranges,
                self.value_fields.clone(),
            ))
        };
        let Some(projection) = projection else {
            return Ok(scan);
        };
        let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = projection
            .iter()
            .map(|&i| {
                let name = self.schema.field(i).name().clone();
                (
                    Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                    name,
                )
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(exprs, scan)?))
    }
}

/// Makes [`KafkaTable`]s for `STORED AS KAFKA LOCATION 'kafka://HOST:PORT/TOPIC'`.
#[derive(Debug, Default)]
pub struct KafkaTableFactory;

#[async_trait]
impl TableProviderFactory for KafkaTableFactory {
    async fn create(
        &self,
        _state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let [location] = cmd.locations.as_slice() else {
            return Err(ConnectorError::Option {
                key: "LOCATION".into(),
                message: "a Kafka table has one location: kafka://HOST:PORT/TOPIC".into(),
            }
            .into());
        };
        let options: HashMap<String, String> = cmd
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let options = KafkaOptions::parse(location, &options)?;
        Ok(Arc::new(KafkaTable::open(options).await?))
    }
}
