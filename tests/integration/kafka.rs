//! Kafka topics on a real Kafka-compatible broker (`tansu`, see `ember_tests::kafka`),
//! with messages produced by a client no one here wrote (`confluent-kafka`, librdkafka
//! from PyPI): a million
//! JSON messages over six partitions read between explicit offsets and checked against
//! the same ranges read and summed in Python, a write by Ember read back, a broker stopped
//! mid-read failing the job with an error naming the topic and partition and the same
//! read succeeding once it is back, and one-line errors for a missing topic and an offset
//! out of range.

use std::process::Command;
use std::sync::{Arc, Mutex};

use arrow::datatypes::DataType;
use datafusion::functions::expr_fn::concat;
use datafusion::prelude::{cast, col, lit};
use ember::connectors::kafka::KafkaOptions;
use ember::scheduler::JobEvent;
use ember::{EmberConfig, Session};
use ember_tests::kafka::KafkaBroker;
use ember_tests::{python_output, python_venv, sql_lines};

use crate::cluster::{Hook, NODE};

/// A Python with `confluent-kafka` (librdkafka).
fn python() -> std::path::PathBuf {
    python_venv("kafka", &["confluent-kafka"], "confluent_kafka")
}

/// Runs `script` with `args`; what it printed.
fn run_python(script: &str, args: &[&str]) -> String {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    python_output(&python(), script, &args)
}

/// Creates topic `argv[2]` with `argv[4]` partitions on `argv[1]` and produces `argv[3]`
/// JSON messages, message `i` to partition `i % partitions`.
const PRODUCE: &str = r#"
import sys, json
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
boot, topic, n, parts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
admin = AdminClient({"bootstrap.servers": boot})
for done in admin.create_topics([NewTopic(topic, num_partitions=parts, replication_factor=1)]).values():
    done.result()
# One message per record batch: tansu 0.6's in-memory storage moves a partition's high
# watermark by one per batch, so messages after the first of a batch would be unreadable.
producer = Producer({"bootstrap.servers": boot, "linger.ms": 5, "batch.num.messages": 1,
                     "queue.buffering.max.messages": 1000000})
for i in range(n):
    value = json.dumps({"id": i, "user": f"u{i % 97}", "amount": i % 1000}).encode()
    producer.produce(topic, value=value, key=str(i).encode(), partition=i % parts)
    if i % 10000 == 0:
        producer.poll(0)
producer.flush()
print(n)
"#;

/// Reads offsets `[start, end)` of each partition (`argv[3]` as JSON `{"p": [start,
/// end]}`) of topic `argv[2]` and prints per partition `p|count|sum(id)`, then per user
/// `user|count|sum(amount)`.
const CONSUME: &str = r#"
import sys, json
from collections import defaultdict
from confluent_kafka import Consumer, TopicPartition
boot, topic, ranges = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
consumer = Consumer({"bootstrap.servers": boot, "group.id": "ember-check",
                     "enable.auto.commit": False})
per_partition, per_user = {}, defaultdict(lambda: [0, 0])
for p in sorted(int(p) for p in ranges):
    start, end = ranges[str(p)]
    consumer.assign([TopicPartition(topic, p, start)])
    count, total, position = 0, 0, start
    while position < end:
        for message in consumer.consume(num_messages=10000, timeout=1.0):
            if message.error() or message.offset() >= end:
                continue
            position = message.offset() + 1
            v = json.loads(message.value())
            count += 1
            total += v["id"]
            per_user[v["user"]][0] += 1
            per_user[v["user"]][1] += v["amount"]
    per_partition[p] = (count, total)
consumer.close()
for p in sorted(per_partition):
    print(f"{p}|{per_partition[p][0]}|{per_partition[p][1]}")
for user in sorted(per_user):
    print(f"{user}|{per_user[user][0]}|{per_user[user][1]}")
"#;

fn session() -> Session {
    Session::new(EmberConfig {
        executors: 2,
        ..EmberConfig::default()
    })
    .expect("the cluster starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_json_messages_read_between_explicit_offsets_match_python() {
    let broker = KafkaBroker::shared();
    let produced = run_python(PRODUCE, &[&broker.address, "events", "1000000", "6"]);
    assert_eq!(produced, "1000000");
    // Ranges of each partition (166,666 or 166,667 messages each).
    let ranges: Vec<(i32, i64, i64)> = (0..6)
        .map(|p| {
            (
                p,
                10_000 + 1_000 * i64::from(p),
                60_000 + 2_000 * i64::from(p),
            )
        })
        .collect();
    let json = |pick: fn(&(i32, i64, i64)) -> i64| {
        let inner: Vec<String> = ranges
            .iter()
            .map(|r| format!("\"{}\":{}", r.0, pick(r)))
            .collect();
        format!("{{\"events\":{{{}}}}}", inner.join(","))
    };
    let python_ranges = format!(
        "{{{}}}",
        ranges
            .iter()
            .map(|(p, s, e)| format!("\"{p}\":[{s},{e}]"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let expected = run_python(CONSUME, &[&broker.address, "events", &python_ranges]);
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(expected.len(), 6 + 97, "{expected:?}");

    let session = session();
    session
        .sql(&format!(
            "CREATE EXTERNAL TABLE events STORED AS KAFKA LOCATION '{}' OPTIONS \
             ('starting_offsets' '{}', 'ending_offsets' '{}', 'value_format' 'json')",
            broker.url("events"),
            json(|r| r.1),
            json(|r| r.2),
        ))
        .await
        .expect("registers");
    let per_partition = sql_lines(
        &session,
        "SELECT partition, count(*), sum(value['id']) FROM events GROUP BY partition ORDER BY partition",
    )
    .await;
    assert_eq!(per_partition, expected[..6]);
    let per_user = sql_lines(
        &session,
        "SELECT value['user'] AS u, count(*), sum(value['amount']) FROM events GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert_eq!(per_user, expected[6..]);
    // Offsets and keys are the messages' own: partition p holds ids p, p + 6, ...
    let firsts = sql_lines(
        &session,
        "SELECT partition, min(offset), CAST(arrow_cast(first_value(key ORDER BY offset), 'Utf8') AS BIGINT) \
         FROM events GROUP BY partition ORDER BY partition",
    )
    .await;
    let wanted: Vec<String> = ranges
        .iter()
        .map(|(p, s, _)| format!("{p}|{s}|{}", i64::from(*p) + 6 * s))
        .collect();
    assert_eq!(firsts, wanted);

    // Earliest to latest: every message, one task per partition.
    let all = session
        .read_kafka(KafkaOptions::from_url(&broker.url("events")).expect("url"))
        .await
        .expect("opens");
    assert_eq!(all.count().await.expect("counts"), 1_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_mid_read_fails_naming_the_partition_and_a_retry_succeeds() {
    let broker = KafkaBroker::start();
    run_python(PRODUCE, &[&broker.address, "stopped", "0", "4"]);
    let mut session = session();
    let url = broker.url("stopped");
    let written = session
        .from_batches(crate::cluster::key_values(20_000, 10))
        .expect("dataset")
        .select(vec![
            cast(col("value"), DataType::Utf8).alias("key"),
            concat(vec![
                lit("{\"n\":"),
                cast(col("value"), DataType::Utf8),
                lit("}"),
            ])
            .alias("value"),
        ])
        .expect("select")
        .write_kafka(&KafkaOptions::from_url(&format!("{url}?batch_records=1")).expect("url"))
        .await
        .expect("produces");
    assert_eq!(
        ember_tests::rows(&written.batches),
        vec![vec!["20000".to_string()]]
    );

    let read_url = format!("{url}?value_format=json&max_offsets_per_task=500&fetch_timeout=1");
    let sql = "SELECT count(*), sum(value['n']) FROM events_read";
    session
        .register_table(&ember::TableSpec::new("events_read", read_url, None))
        .await
        .expect("registers");
    let expected_sum: i64 = (0..20_000).sum();
    assert_eq!(
        sql_lines(&session, sql).await,
        vec![format!("20000|{expected_sum}")]
    );

    // Stop the broker once the read's first task is done.
    let paused = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&paused);
    let pause = broker.pauser();
    session.set_listener(Arc::new(Hook(move |event: &JobEvent| {
        if let JobEvent::TaskFinished { .. } = event {
            let mut paused = flag.lock().expect("lock");
            if !*paused {
                pause();
                *paused = true;
            }
        }
    })));
    let failed = session.sql(sql).await.expect_err("the broker stopped");
    assert!(*paused.lock().expect("lock"), "the broker was stopped");
    let text = failed.to_string();
    assert!(text.contains("Kafka topic stopped partition "), "{text}");
    assert!(text.contains("no answer from the broker"), "{text}");
    assert!(text.contains("within 1s"), "{text}");
    broker.resume();
    session.set_listener(Arc::new(Hook(|_: &JobEvent| {})));
    assert_eq!(
        sql_lines(&session, sql).await,
        vec![format!("20000|{expected_sum}")],
        "the same read succeeds once the broker is back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topics_and_offsets_out_of_range_are_one_line_errors() {
    let broker = KafkaBroker::shared();
    run_python(PRODUCE, &[&broker.address, "small", "30", "3"]);
    let session = session();
    let e = session
        .read_kafka(KafkaOptions::from_url(&broker.url("nothing")).expect("url"))
        .await
        .err()
        .expect("no topic");
    let text = e.to_string();
    assert!(
        text.starts_with("Kafka topic nothing: does not exist (the brokers have "),
        "{text}"
    );
    let out_of_range = format!(
        "{}?starting_offsets=%7B%22small%22%3A%7B%221%22%3A50%7D%7D",
        broker.url("small")
    );
    let table = session
        .read_kafka(KafkaOptions::from_url(&out_of_range).expect("url"))
        .await
        .expect("opens");
    let e = table.count().await.expect_err("out of range");
    assert_eq!(
        e.to_string(),
        "Kafka topic small partition 1: starting offset 50 is out of range (the partition \
         holds offsets 0 to 9)"
    );

    // The command line: exit status 1, one line naming the topic.
    let out = Command::new(NODE)
        .args(["sql", "--table"])
        .arg(format!("t={}", broker.url("nothing")))
        .arg("SELECT count(*) FROM t")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("Kafka topic nothing: does not exist"),
        "{stderr}"
    );
}
