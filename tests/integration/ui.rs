//! The web UI, the REST API, `/metrics` and the history server, driven as their users
//! drive them: a scheduler and executor processes run TPC-H queries (one executor
//! SIGKILLed during q21) and headless Chromium (through chromedriver and fantoccini) reads
//! the pages; the history server then shows the same jobs from the event logs. Also: user
//! text is rendered as text, and with a token every page, the API and `/metrics` need it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ember::proto::http::HttpServer;
use ember::proto::security::ServerSecurity;
use ember::scheduler::ui::{LiveSource, serve};
use ember_tests::{Browser, http, http_get, png_size, tpch_dir, tpch_query};
use fantoccini::{Client, ClientBuilder};
use serde_json::Value;

use super::cluster::{
    NODE, Options, TestCluster, args, kill_a_map_executor_after_the_first_stage, spawn,
    tls_scheduler, victim_of,
};

/// A WebDriver session in headless Chromium of `width` x `height`, and its driver.
async fn open_browser(width: u32, height: u32) -> (Browser, Client) {
    let driver = Browser::start();
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(Browser::capabilities(width, height))
        .connect(&driver.url)
        .await
        .expect("a Chromium session through chromedriver");
    (driver, client)
}

/// Runs `script` (a function body that returns a value) in the page.
async fn eval(client: &Client, script: &str) -> Value {
    client
        .execute(script, Vec::new())
        .await
        .unwrap_or_else(|e| panic!("running {script}: {e}"))
}

/// Saves a screenshot of the page as `NAME.png` under the test target's folder (and
/// under `$EMBER_UI_SCREENSHOTS`, where the docs' copies are refreshed from), and checks
/// it is a picture of the window's size.
async fn screenshot(client: &Client, name: &str) -> PathBuf {
    let png = client.screenshot().await.expect("a screenshot");
    assert!(png_size(&png).is_some(), "{name}: not a PNG");
    let mut folders = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots")];
    if let Some(dir) = std::env::var_os("EMBER_UI_SCREENSHOTS") {
        folders.push(PathBuf::from(dir));
    }
    let mut saved = PathBuf::new();
    for folder in folders {
        std::fs::create_dir_all(&folder).expect("screenshot folder");
        saved = folder.join(format!("{name}.png"));
        std::fs::write(&saved, &png).expect("screenshot written");
    }
    eprintln!("screenshot {}", saved.display());
    saved
}

async fn json(url: &str) -> Value {
    let answer = http_get(url, &[]).await;
    assert_eq!(answer.status, 200, "GET {url}: {}", answer.body);
    serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("GET {url}: {e}: {}", answer.body))
}

/// The jobs of `/api/v1/jobs` by their name (the SQL text).
async fn jobs_by_name(base: &str) -> BTreeMap<String, Value> {
    let jobs = json(&format!("{base}/api/v1/jobs")).await;
    jobs.as_array()
        .expect("a list of jobs")
        .iter()
        .filter_map(|j| Some((j["name"].as_str()?.to_string(), j.clone())))
        .collect()
}

fn number(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

/// `(sample name, labels, value)` of every sample of a `/metrics` text, read by
/// `prometheus-parse` as Prometheus would.
fn scrape(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("/metrics parses");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (s.metric, labels, value)
        })
        .collect()
}

fn sample(
    samples: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    label: (&str, &str),
) -> f64 {
    samples
        .iter()
        .find(|(n, labels, _)| {
            n == name && labels.get(label.0).map(String::as_str) == Some(label.1)
        })
        .map(|(_, _, v)| *v)
        .unwrap_or_else(|| panic!("no sample {name}{{{}={}}}", label.0, label.1))
}

/// The history server over `logs`: the process and its URL.
fn start_history(logs: &Path, dir: &Path) -> (std::process::Child, String) {
    let mut command = Command::new(NODE);
    command
        .args(["history", "--log-dir"])
        .arg(logs)
        .args(["--bind", "127.0.0.1:0"])
        .env_remove("EMBER_AUTH_TOKEN");
    let (child, line, _lines) = spawn(&mut command, &dir.join("history.log"));
    let line = line.unwrap_or_else(|| {
        panic!(
            "the history server did not start: {}",
            std::fs::read_to_string(dir.join("history.log")).unwrap_or_default()
        )
    });
    // "ember history server at http://127.0.0.1:PORT (2 jobs in DIR)"
    let url = line
        .split_whitespace()
        .nth(4)
        .unwrap_or_else(|| panic!("no URL in {line}"))
        .to_string();
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_sees_jobs_stages_a_lost_executor_and_the_history_server_the_same() {
    let logs = tempfile::tempdir().expect("temp dir");
    let cluster = TestCluster::start_with(
        2,
        Options {
            scheduler_args: args(&[
                "--heartbeat-timeout",
                "2",
                "--event-log",
                &logs.path().display().to_string(),
            ]),
            ..Options::default()
        },
    );
    let ui = cluster.ui_url();
    let mut session = cluster.session().await;
    let (q18, q21) = (tpch_query(18), tpch_query(21));
    // A job's name is its statement's text, without the `;` that ends it.
    let name = |query: &str| query.trim().trim_end_matches(';').trim_end().to_string();
    let (name18, name21) = (name(&q18), name(&q21));
    let rows = session.sql(&q18).await.expect("q18 runs");
    assert!(rows.num_rows() > 0);
    let (killed, _) = kill_a_map_executor_after_the_first_stage(&cluster, &mut session);
    session
        .sql(&q21)
        .await
        .expect("q21 survives the loss of an executor");
    let victim = victim_of(&killed);

    // The REST API: both jobs succeeded; q21 has failed attempts on the lost executor.
    let jobs = jobs_by_name(&ui).await;
    let (live18, live21) = (&jobs[name18.as_str()], &jobs[name21.as_str()]);
    for job in [live18, live21] {
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["stages_done"], job["stages_total"], "{job}");
    }
    let q21_id = live21["job_id"].as_str().expect("an id").to_string();
    let detail = json(&format!("{ui}/api/v1/jobs/{q21_id}")).await;
    let stages = detail["stages"].as_array().expect("stages").clone();
    // A stage with an attempt that failed because of the lost executor: one that ran on
    // it, or (when it was idle at the kill) one elsewhere whose fetch from it failed.
    let mut failed = None;
    for stage in stages.iter().filter(|s| number(&s["failed_attempts"]) > 0) {
        let id = number(&stage["stage_id"]);
        let tasks = json(&format!(
            "{ui}/api/v1/jobs/{q21_id}/stages/{id}/tasks?sort=status"
        ))
        .await;
        if let Some(task) = tasks["tasks"].as_array().expect("tasks").iter().find(|t| {
            t["status"] == "failed"
                && (t["executor_id"] == victim.as_str()
                    || t["error"]
                        .as_str()
                        .is_some_and(|e| e.contains(victim.as_str())))
        }) {
            let executor = task["executor_id"].as_str().expect("an id").to_string();
            failed = Some((id, executor));
            break;
        }
    }
    let (failed_stage, failed_on) =
        failed.unwrap_or_else(|| panic!("no failed attempt because of {victim}: {detail}"));
    let executors = json(&format!("{ui}/api/v1/executors")).await;
    let lost: Vec<&Value> = executors
        .as_array()
        .expect("executors")
        .iter()
        .filter(|e| e["state"] == "lost")
        .collect();
    assert_eq!(lost.len(), 1, "{executors}");
    assert_eq!(lost[0]["executor_id"], victim.as_str());

    // /metrics parses as Prometheus text, and its task counters equal the API's.
    let all_jobs = json(&format!("{ui}/api/v1/jobs")).await;
    let sum = |field: &str| -> f64 {
        all_jobs
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| number(&j[field]) as f64)
            .sum()
    };
    let metrics = http_get(&format!("{ui}/metrics"), &[]).await;
    assert_eq!(metrics.status, 200);
    let samples = scrape(&metrics.body);
    assert_eq!(
        sample(&samples, "ember_tasks_total", ("state", "succeeded")),
        sum("tasks_succeeded")
    );
    assert_eq!(
        sample(&samples, "ember_tasks_total", ("state", "failed")),
        sum("failed_attempts")
    );
    assert!(sum("failed_attempts") >= 1.0);
    assert_eq!(sample(&samples, "ember_executors", ("state", "lost")), 1.0);
    assert_eq!(sample(&samples, "ember_executors", ("state", "alive")), 1.0);

    // Chromium: the jobs page, q21's stage graph, the stage with the failed attempts, and
    // the executors page.
    let (_driver, client) = open_browser(1400, 1000).await;
    client.goto(&format!("{ui}/")).await.expect("the jobs page");
    let rows = eval(
        &client,
        "return Array.from(document.querySelectorAll('#jobs tbody tr')).map(r => [r.dataset.job, r.dataset.status]);",
    )
    .await;
    for job in [live18, live21] {
        assert!(
            rows.as_array()
                .expect("rows")
                .iter()
                .any(|r| r[0] == job["job_id"] && r[1] == "succeeded"),
            "{} is not listed as succeeded: {rows}",
            job["job_id"]
        );
    }
    screenshot(&client, "jobs").await;
    client
        .goto(&format!("{ui}/jobs/{q21_id}"))
        .await
        .expect("q21's page");
    let graph = eval(
        &client,
        "const svg = document.querySelector('#stage-graph svg'); return [svg.querySelectorAll('g.stage').length, svg.querySelectorAll('path.shuffle').length, svg.querySelectorAll('g.stage[data-state=done]').length, svg.getBoundingClientRect().width];",
    )
    .await;
    assert_eq!(number(&graph[0]), stages.len() as u64, "{graph}");
    assert!(number(&graph[1]) >= 1, "no arrows: {graph}");
    assert_eq!(
        number(&graph[2]),
        stages.len() as u64,
        "every box is done: {graph}"
    );
    assert!(
        graph[3].as_f64().unwrap_or(0.0) > 100.0,
        "the SVG is drawn: {graph}"
    );
    screenshot(&client, "job").await;
    client
        .goto(&format!(
            "{ui}/jobs/{q21_id}/stages/{failed_stage}?sort=status&order=asc"
        ))
        .await
        .expect("the stage page");
    let failed_rows = eval(
        &client,
        "return Array.from(document.querySelectorAll('#tasks tbody tr[data-status=failed]')).map(r => r.querySelector('td.executor').textContent);",
    )
    .await;
    assert!(
        failed_rows
            .as_array()
            .expect("rows")
            .iter()
            .any(|e| e == failed_on.as_str()),
        "the task table shows no failed attempt on {failed_on}: {failed_rows}"
    );
    let quantiles = eval(
        &client,
        "return document.querySelectorAll('#quantiles tbody tr').length;",
    )
    .await;
    assert_eq!(number(&quantiles), 5);
    screenshot(&client, "stage").await;
    client
        .goto(&format!("{ui}/executors"))
        .await
        .expect("the executors page");
    let states = eval(
        &client,
        "return Array.from(document.querySelectorAll('#executors tbody tr')).map(r => [r.dataset.executor, r.dataset.state]);",
    )
    .await;
    let states = states.as_array().expect("rows");
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(
        states
            .iter()
            .any(|r| r[0] == victim.as_str() && r[1] == "lost"),
        "{states:?}"
    );
    assert_eq!(states.iter().filter(|r| r[1] == "alive").count(), 1);
    screenshot(&client, "executors").await;

    // The history server, after the cluster is gone, says the same of both jobs.
    let live = [
        json(&format!(
            "{ui}/api/v1/jobs/{}",
            live18["job_id"].as_str().expect("id")
        ))
        .await,
        detail.clone(),
    ];
    drop(session);
    drop(cluster);
    let scratch = tempfile::tempdir().expect("temp dir");
    let (mut history, base) = start_history(logs.path(), scratch.path());
    let logged = jobs_by_name(&base).await;
    for job in &live {
        let id = job["job"]["job_id"].as_str().expect("an id");
        let from_log = json(&format!("{base}/api/v1/jobs/{id}")).await;
        assert_eq!(from_log, *job, "the history server differs on job {id}");
    }
    assert_eq!(
        logged[name21.as_str()]["failed_attempts"],
        live21["failed_attempts"]
    );
    client
        .goto(&format!("{base}/jobs/{q21_id}"))
        .await
        .expect("q21's page in the history server");
    let boxes = eval(
        &client,
        "return [document.querySelectorAll('#stage-graph svg g.stage').length, document.querySelector('h1 .badge').textContent];",
    )
    .await;
    assert_eq!(number(&boxes[0]), stages.len() as u64, "{boxes}");
    assert_eq!(boxes[1], "succeeded");
    screenshot(&client, "history-job").await;
    let _ = client.close().await;
    let _ = history.kill();
    let _ = history.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_text_and_errors_with_script_tags_render_as_text() {
    let session = ember::Session::local(2).expect("an embedded cluster");
    ember::pipelines::register_tpch(&session, tpch_dir())
        .await
        .expect("the TPC-H tables register");
    let payload = "<script>window.__xss = 1</script>";
    let query = format!("SELECT CAST(concat('{payload}', n_name) AS INT) AS x FROM nation");
    let error = session
        .sql(&query)
        .await
        .expect_err("the cast fails as the task runs")
        .to_string();
    assert!(error.contains("<script>"), "{error}");
    let ember::Cluster::Local(local) = session.cluster() else {
        panic!("an embedded cluster");
    };
    let server = HttpServer::bind(
        "127.0.0.1:0".parse().expect("an address"),
        &ServerSecurity::default(),
        "--ui",
    )
    .await
    .expect("the UI binds");
    let base = server.url();
    let source = Arc::new(LiveSource::new(
        Arc::clone(local.scheduler().board()),
        Arc::clone(local.scheduler().pool()),
    ));
    let ui = tokio::spawn(serve(server, source, std::future::pending()));
    let jobs = json(&format!("{base}/api/v1/jobs")).await;
    let job = jobs
        .as_array()
        .expect("jobs")
        .iter()
        .find(|j| j["name"] == query.as_str())
        .unwrap_or_else(|| panic!("the query's job is not listed: {jobs}"));
    assert_eq!(job["status"], "failed");
    let id = job["job_id"].as_str().expect("an id").to_string();
    // The raw HTML holds the text escaped, never the tag.
    let page = http_get(&format!("{base}/jobs/{id}"), &[]).await;
    assert!(!page.body.contains(payload), "an unescaped tag in the page");
    assert!(
        page.body
            .contains("&lt;script&gt;window.__xss = 1&lt;/script&gt;")
    );

    let (_driver, client) = open_browser(1200, 800).await;
    for path in [
        "/".to_string(),
        format!("/jobs/{id}"),
        format!("/jobs/{id}/stages/0"),
    ] {
        client
            .goto(&format!("{base}{path}"))
            .await
            .expect("the page loads");
        let seen = eval(
            &client,
            "return [typeof window.__xss, document.querySelectorAll('main script').length, document.querySelector('main').textContent];",
        )
        .await;
        assert_eq!(seen[0], "undefined", "{path}: the payload ran");
        assert_eq!(seen[1], 0, "{path}: a script element in the page");
        assert!(
            seen[2].as_str().expect("text").contains(payload),
            "{path}: the payload is not shown as text"
        );
    }
    client
        .goto(&format!("{base}/jobs/{id}"))
        .await
        .expect("the job page");
    let texts = eval(
        &client,
        "return [document.querySelector('pre.query').textContent, document.querySelector('pre.error').textContent];",
    )
    .await;
    assert_eq!(texts[0], query.as_str());
    assert!(
        texts[1].as_str().expect("text").contains(payload),
        "{texts}"
    );
    let _ = client.close().await;
    ui.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_pages_the_api_and_metrics_answer_401_without_it() {
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let metrics_bind = format!("127.0.0.1:{metrics_port}");
    let cluster = TestCluster::start_with(
        1,
        Options {
            token: Some("s3cret".into()),
            executor_args: args(&["--metrics-bind", &metrics_bind]),
            ..Options::default()
        },
    );
    let ui = cluster.ui_url();
    let executor_metrics = format!("http://{metrics_bind}/metrics");
    let bearer = [("authorization", "Bearer s3cret")];
    let wrong = [("authorization", "Bearer nope")];
    for url in [
        format!("{ui}/"),
        format!("{ui}/executors"),
        format!("{ui}/jobs/job-1"),
        format!("{ui}/api/v1/jobs"),
        format!("{ui}/api/v1/executors"),
        format!("{ui}/metrics"),
        format!("{ui}/static/ui.js"),
        executor_metrics.clone(),
    ] {
        assert_eq!(
            http_get(&url, &[]).await.status,
            401,
            "{url} without the token"
        );
        assert_eq!(
            http_get(&url, &wrong).await.status,
            401,
            "{url} with a wrong token"
        );
        let with = http_get(&url, &bearer).await.status;
        assert!(
            with == 200 || (with == 404 && url.ends_with("job-1")),
            "{url}: {with}"
        );
    }
    // The executor's metrics parse, and count the tasks it ran.
    let text = http_get(&executor_metrics, &bearer).await.body;
    let samples = scrape(&text);
    assert!(
        sample(
            &samples,
            "ember_executor_tasks_total",
            ("state", "succeeded")
        ) >= 0.0
    );
    // A browser gets the login form; the form sets an HttpOnly cookie that opens the pages.
    let page = http_get(&format!("{ui}/"), &[("accept", "text/html")]).await;
    assert_eq!(page.status, 401);
    assert!(
        page.body
            .contains(r#"<form method="post" action="/login">"#)
    );
    let refused = http("POST", &format!("{ui}/login"), &[], Some("token=nope")).await;
    assert_eq!(refused.status, 401);
    let login = http("POST", &format!("{ui}/login"), &[], Some("token=s3cret")).await;
    assert_eq!(login.status, 303, "{login:?}");
    let cookie = login.header("set-cookie").expect("a cookie").to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let pair = cookie.split(';').next().expect("name=value").to_string();
    let opened = http_get(&format!("{ui}/api/v1/jobs"), &[("cookie", pair.as_str())]).await;
    assert_eq!(opened.status, 200, "{opened:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_scheduler_serves_its_ui_over_https_behind_the_sign_in_form() {
    let certs = tempfile::tempdir().expect("temp dir");
    let (cluster, _ca) = tls_scheduler(certs.path());
    let ui = cluster.ui_url();
    assert!(ui.starts_with("https://"), "{ui}");
    let driver = Browser::start();
    let mut caps = Browser::capabilities(1000, 700);
    // The test's CA is not the browser's.
    caps.insert("acceptInsecureCerts".into(), Value::Bool(true));
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session");
    client.goto(&format!("{ui}/")).await.expect("the page");
    let form = client
        .form(fantoccini::Locator::Css("form[action='/login']"))
        .await
        .expect("the sign-in form");
    form.set_by_name("token", "s3cret")
        .await
        .expect("the token typed")
        .submit()
        .await
        .expect("the form sent");
    // The form posts, and the browser follows the redirect to the jobs page: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let heading = loop {
        let heading = eval(
            &client,
            "const h = document.querySelector('h1'); return [location.protocol, h ? h.textContent : '', document.cookie];",
        )
        .await;
        if heading[1] == "Jobs" || std::time::Instant::now() > deadline {
            break heading;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(heading[0], "https:");
    assert_eq!(heading[1], "Jobs", "{heading}");
    // HttpOnly: the page's script cannot read the token.
    assert_eq!(heading[2], "", "{heading}");
    let _ = client.close().await;
}
