//! PostgreSQL tables on a real server (started by the tests with `initdb`, see
//! `ember_tests::postgres`): TPC-H `orders` and `lineitem` at SF 0.1 loaded into it, q3 over
//! them read in 4 partitions equal to q3 over the Parquet files, a write under an
//! executor kill landing exactly once, and one-line errors for a missing table, an
//! unreachable server and a wrong password.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::UInt64Type;
use ember::connectors::postgres::PostgresOptions;
use ember::pipelines::register_tpch;
use ember::scheduler::JobEvent;
use ember::{EmberConfig, Session, WriteMode};
use ember_tests::postgres::{PASSWORD, PostgresServer};
use ember_tests::{rows, rows_match, tpch_data, tpch_query};

use crate::cluster::{Hook, NODE, TestCluster, kill_another_executor_when_a_task_finishes};

fn count(result: &ember::QueryResult) -> u64 {
    result.batches[0]
        .column(0)
        .as_primitive::<UInt64Type>()
        .value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_q3_over_postgres_tables_in_4_partitions_equals_q3_over_parquet() {
    let server = PostgresServer::shared();
    server.create_database("tpch_q3");
    let url = server.url("tpch_q3");
    let dir = tpch_data(0.1);
    let session = Session::new(EmberConfig {
        executors: 2,
        ..EmberConfig::default()
    })
    .expect("the cluster starts");
    register_tpch(&session, &dir).await.expect("tables");

    // Loaded by Ember's writer; checked by psql, a client Ember did not write.
    for (table, key) in [("orders", "o_orderkey"), ("lineitem", "l_orderkey")] {
        let written = session
            .table(table)
            .await
            .expect("table")
            .write_postgres(&url, table, WriteMode::Error)
            .await
            .expect("loads");
        let parquet = session
            .sql(&format!("SELECT count(*), sum({key}) FROM {table}"))
            .await
            .expect("counts");
        let expected = rows(&parquet.batches)[0].join("|");
        assert_eq!(
            server.psql(
                "tpch_q3",
                &format!("SELECT count(*), sum({key}) FROM {table}")
            ),
            Ok(expected.clone())
        );
        assert_eq!(
            count(&written).to_string(),
            expected.split('|').next().unwrap_or_default()
        );
    }
    let parquet_q3 = session.sql(&tpch_query(3)).await.expect("q3 on Parquet");

    // The same query over the PostgreSQL tables, each read in 4 ranges of its key.
    for (table, key) in [("orders", "o_orderkey"), ("lineitem", "l_orderkey")] {
        session
            .context()
            .deregister_table(table)
            .expect("deregisters");
        session
            .sql(&format!(
                "CREATE EXTERNAL TABLE {table} STORED AS POSTGRES LOCATION '{url}' \
                 OPTIONS ('table' '{table}', 'partition_column' '{key}', \
                 'lower_bound' '1', 'upper_bound' '600000', 'num_partitions' '4')"
            ))
            .await
            .expect("registers");
    }
    let plan = session
        .sql(&format!("EXPLAIN {}", tpch_query(3)))
        .await
        .expect("explains");
    let plan = rows(&plan.batches).concat().join("\n");
    assert_eq!(plan.matches("4 range(s)").count(), 2, "{plan}");
    let postgres_q3 = session.sql(&tpch_query(3)).await.expect("q3 on PostgreSQL");
    let (a, b) = (rows(&parquet_q3.batches), rows(&postgres_q3.batches));
    assert_eq!(a.len(), 10);
    assert!(rows_match(&a, &b), "parquet {a:?}\npostgres {b:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_under_an_executor_kill_lands_exactly_once() {
    let server = PostgresServer::shared();
    server.create_database("killed_write");
    let url = server.url("killed_write");
    let cluster = TestCluster::start(3, &[], None);
    let mut session = cluster.session().await;
    let killed = kill_another_executor_when_a_task_finishes(&cluster, &mut session);
    let written = session
        .from_batches(crate::cluster::key_values(100_000, 10))
        .expect("dataset")
        .repartition(6)
        .expect("six tasks")
        .map_batches("cluster_test.slow")
        .expect("slow")
        .write_postgres(&url, "public.events", WriteMode::Error)
        .await
        .expect("the write succeeds");
    assert!(
        killed.lock().expect("lock").is_some(),
        "an executor was killed"
    );
    assert_eq!(count(&written), 100_000);
    let expected_sum: i64 = (0..100_000).sum();
    assert_eq!(
        server.psql(
            "killed_write",
            "SELECT count(*), count(DISTINCT value), sum(value) FROM events"
        ),
        Ok(format!("100000|100000|{expected_sum}"))
    );
    assert_eq!(
        server.psql(
            "killed_write",
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'ember_stage_%'"
        ),
        Ok("0".to_string()),
        "every staging table is dropped"
    );

    // Append, then a job that fails: the table keeps what it had.
    session.set_listener(Arc::new(Hook(|_: &JobEvent| {})));
    let appended = session
        .sql(&format!(
            "CREATE EXTERNAL TABLE events STORED AS POSTGRES LOCATION '{url}' \
             OPTIONS ('table' 'events')"
        ))
        .await
        .and(
            session
                .sql("INSERT INTO events SELECT key, value + 100000 FROM events WHERE value < 10")
                .await,
        )
        .expect("appends");
    assert_eq!(count(&appended), 10);
    let failed = session
        .sql("INSERT INTO events SELECT key, CAST(1 / (value - value) AS BIGINT) FROM events")
        .await;
    assert!(failed.is_err(), "division by zero fails the job");
    assert_eq!(
        server.psql("killed_write", "SELECT count(*) FROM events"),
        Ok("100010".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tables_unreachable_servers_and_wrong_passwords_are_one_line_errors() {
    let server = PostgresServer::shared();
    server.create_database("errors");
    let session = Session::new(EmberConfig {
        executors: 1,
        ..EmberConfig::default()
    })
    .expect("the cluster starts");
    let options = |table: &str| PostgresOptions {
        table: table.into(),
        partitions: None,
    };
    let e = session
        .read_postgres(&server.url("errors"), options("nowhere"))
        .await
        .err()
        .expect("no table");
    assert_eq!(
        e.to_string(),
        format!(
            "PostgreSQL ember@127.0.0.1:{}/errors nowhere: no such table",
            server.port
        )
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let e = session
        .read_postgres(
            &format!("postgres://ember:x@127.0.0.1:{closed}/errors"),
            options("t"),
        )
        .await
        .err()
        .expect("unreachable");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "PostgreSQL ember@127.0.0.1:{closed}/errors: cannot connect"
        )),
        "{text}"
    );
    assert!(!text.contains('\n'), "{text}");
    let wrong = server.url("errors").replace(PASSWORD, "wrong");
    let e = session
        .read_postgres(&wrong, options("t"))
        .await
        .err()
        .expect("refused");
    let text = e.to_string();
    assert!(
        text.contains("password authentication failed for user \"ember\""),
        "{text}"
    );
    assert!(
        !text.contains("wrong"),
        "the password is never printed: {text}"
    );

    // The command line: exit status 1, one line, nothing written.
    let out = std::process::Command::new(NODE)
        .args(["sql", "--table"])
        .arg(format!("t={wrong}?table=t"))
        .arg("SELECT * FROM t")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert_eq!(
        server.psql(
            "errors",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        Ok("0".to_string())
    );
}
