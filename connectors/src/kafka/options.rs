//! The options of a Kafka table: the brokers and the topic (from a `kafka://HOST:PORT[,HOST:
//! PORT]/TOPIC` location), the offsets to read between, the value's format, and the
//! broker's time to answer.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::error::{ConnectorError, Result};

/// Where a read starts or ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The earliest offset each partition still holds.
    Earliest,
    /// The offset after the last message of each partition when the read is planned.
    Latest,
    /// Per partition: an offset, or -2 (earliest) / -1 (latest). Partitions left out
    /// take the default (earliest to start, latest to end).
    Partitions(BTreeMap<i32, i64>),
}

/// How a message's value becomes columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    /// One `value` column of bytes.
    Raw,
    /// The columns of the JSON object each value holds (the schema inferred from the
    /// first messages).
    Json,
}

/// How a topic is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOptions {
    /// `HOST:PORT` of the bootstrap brokers.
    pub brokers: Vec<String>,
    /// The topic.
    pub topic: String,
    /// Where the read starts.
    pub starting: OffsetSpec,
    /// Where it ends (exclusive).
    pub ending: OffsetSpec,
    /// The value's format.
    pub value_format: ValueFormat,
    /// Offsets per task at most (a partition with more is read by several tasks).
    pub max_offsets_per_task: Option<i64>,
    /// How long a broker may take to answer one fetch before the task fails.
    pub fetch_timeout: Duration,
    /// Messages per record batch that a write sends at most (`batch_records`).
    pub batch_records: usize,
}

impl KafkaOptions {
    /// From a `kafka://HOST:PORT[,HOST:PORT]/TOPIC` location and the table's options
    /// (keys with or without a `format.` prefix).
    pub fn parse(location: &str, options: &HashMap<String, String>) -> Result<Self> {
        let bad = |key: &str, message: String| ConnectorError::Option {
            key: key.into(),
            message,
        };
        let rest = location.strip_prefix("kafka://").ok_or_else(|| {
            bad(
                "LOCATION",
                format!("expected kafka://HOST:PORT/TOPIC, got '{location}'"),
            )
        })?;
        let (hosts, topic) = rest.split_once('/').ok_or_else(|| {
            bad(
                "LOCATION",
                format!("'{location}' names no topic (kafka://HOST:PORT/TOPIC)"),
            )
        })?;
        let brokers: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        if brokers.is_empty() || topic.is_empty() || topic.contains('/') {
            return Err(bad(
                "LOCATION",
                format!("expected kafka://HOST:PORT[,HOST:PORT]/TOPIC, got '{location}'"),
            ));
        }
        let get = |key: &str| {
            options
                .get(key)
                .or_else(|| options.get(&format!("format.{key}")))
                .map(|v| v.trim().to_string())
        };
        let offsets = |key: &str, default: OffsetSpec| -> Result<OffsetSpec> {
            match get(key).as_deref() {
                None => Ok(default),
                Some("earliest") => Ok(OffsetSpec::Earliest),
                Some("latest") => Ok(OffsetSpec::Latest),
                Some(json) => parse_offsets(json, topic).map_err(|m| bad(key, m)),
            }
        };
        let starting = offsets("starting_offsets", OffsetSpec::Earliest)?;
        let ending = offsets("ending_offsets", OffsetSpec::Latest)?;
        if ending == OffsetSpec::Earliest {
            return Err(bad("ending_offsets", "cannot be 'earliest'".into()));
        }
        let value_format = match get("value_format").as_deref() {
            None | Some("raw") | Some("bytes") => ValueFormat::Raw,
            Some("json") => ValueFormat::Json,
            Some(other) => {
                return Err(bad(
                    "value_format",
                    format!("'{other}' (expected raw or json)"),
                ));
            }
        };
        let max_offsets_per_task = get("max_offsets_per_task")
            .map(|v| {
                v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    bad(
                        "max_offsets_per_task",
                        format!("'{v}' is not a positive number"),
                    )
                })
            })
            .transpose()?;
        let fetch_timeout = get("fetch_timeout")
            .map(|v| {
                v.trim_end_matches('s')
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        bad("fetch_timeout", format!("'{v}' is not a number of seconds"))
                    })
            })
            .transpose()?
            .unwrap_or(Duration::from_secs(30));
        let batch_records = get("batch_records")
            .map(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("batch_records", format!("'{v}' is not a positive number")))
            })
            .transpose()?
            .unwrap_or(2000);
        Ok(Self {
            batch_records,
            brokers,
            topic: topic.to_string(),
            starting,
            ending,
            value_format,
            max_offsets_per_task,
            fetch_timeout,
        })
    }

    /// From `kafka://HOST:PORT/TOPIC?key=value&...`.
    pub fn from_url(url: &str) -> Result<Self> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let options: HashMap<String, String> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k.to_string(), percent_decode(v))
            })
            .collect();
        Self::parse(base, &options)
    }
}

/// `%XX` escapes decoded (JSON offsets in a URL).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Spark's per-partition offsets: `{"TOPIC":{"0":23,"1":-2}}`.
fn parse_offsets(json: &str, topic: &str) -> std::result::Result<OffsetSpec, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        format!("expected earliest, latest or {{\"{topic}\":{{\"0\":OFFSET}}}}: {e}")
    })?;
    let per_topic = value
        .get(topic)
        .and_then(|v| v.as_object())
        .ok_or_else(|| format!("names no offsets for topic '{topic}'"))?;
    let mut offsets = BTreeMap::new();
    for (partition, offset) in per_topic {
        let p = partition
            .parse::<i32>()
            .map_err(|_| format!("'{partition}' is not a partition number"))?;
        let o = offset
            .as_i64()
            .filter(|o| *o >= -2)
            .ok_or_else(|| format!("partition {p}: '{offset}' is not an offset"))?;
        offsets.insert(p, o);
    }
    Ok(OffsetSpec::Partitions(offsets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_offsets_parse_as_spark_writes_them() {
        let options = KafkaOptions::from_url(
            "kafka://127.0.0.1:9092/events?starting_offsets=%7B%22events%22%3A%7B%220%22%3A5%2C%221%22%3A-2%7D%7D&value_format=json",
        )
        .expect("valid");
        assert_eq!(options.brokers, vec!["127.0.0.1:9092"]);
        assert_eq!(options.topic, "events");
        assert_eq!(
            options.starting,
            OffsetSpec::Partitions([(0, 5), (1, -2)].into())
        );
        assert_eq!(options.ending, OffsetSpec::Latest);
        assert_eq!(options.value_format, ValueFormat::Json);
        let e = KafkaOptions::from_url("kafka://h:1/t?starting_offsets={\"other\":{}}")
            .expect_err("other topic");
        assert!(e.to_string().contains("starting_offsets"), "{e}");
        assert!(KafkaOptions::from_url("kafka://h:1").is_err());
        assert!(KafkaOptions::from_url("kafka://h:1/t?value_format=avro").is_err());
    }
}
