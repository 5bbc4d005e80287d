//! `ember-bench history`: the history server over many finished jobs. It writes
//! `--jobs` synthetic event logs of `--tasks` tasks each (three stages, every task with
//! four shuffle pieces, a plan to draw), starts the history server in this process on a
//! loopback port, and requests the jobs page, job pages and the REST API over HTTP,
//! printing p50, p95 and max per page and the process's memory before and after the logs
//! are read.

use std::time::{Duration, Instant};

use clap::Args;
use ember::executors::storage::StoreOptions;
use ember::planner::draw::{OperatorLine, Picture, ShuffleArrow, StageBox};
use ember::proto::http::HttpServer;
use ember::proto::security::ServerSecurity;
use ember::proto::{ExecutorId, JobId, PartitionId, StageId};
use ember::scheduler::ui::{HistorySource, UiSource, serve};
use ember::scheduler::{
    Event, EventLogDir, JobPlan, JobShape, Location, LoggedJob, OutputKind, StageShape, TaskReport,
};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Args)]
pub struct HistoryBench {
    /// Finished jobs in the log folder.
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// Tasks per job, over three stages.
    #[arg(long, default_value_t = 50)]
    tasks: usize,
    /// Requests per page, after three to warm up.
    #[arg(long, default_value_t = 100)]
    requests: usize,
}

/// The resident memory of this process, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// One synthetic finished job: stages of `tasks` * 2/5, 2/5 and 1/5 tasks, two executors.
fn synthetic_job(index: usize, tasks: usize) -> LoggedJob {
    let widths = [tasks * 2 / 5, tasks * 2 / 5, tasks - 2 * (tasks * 2 / 5)];
    let stages: Vec<StageShape> = widths
        .iter()
        .enumerate()
        .map(|(id, &width)| StageShape {
            id: StageId(id),
            inputs: if id == 2 {
                vec![StageId(0), StageId(1)]
            } else {
                Vec::new()
            },
            partitions: width.max(1),
            output: OutputKind::Hash,
            facts: Default::default(),
        })
        .collect();
    let picture = Picture {
        stages: stages
            .iter()
            .map(|s| StageBox {
                id: s.id.index(),
                is_final: s.id.index() == 2,
                partitions: s.partitions,
                inputs: s.inputs.iter().map(|i| i.index()).collect(),
                operators: vec![
                    OperatorLine {
                        depth: 0,
                        text: format!("ShuffleWriterExec: stage={}", s.id.index()),
                    },
                    OperatorLine {
                        depth: 1,
                        text: "AggregateExec: mode=Partial, gby=[product@0], aggr=[sum(price)]"
                            .into(),
                    },
                    OperatorLine {
                        depth: 2,
                        text: "DataSourceExec: file_groups={8 groups}, projection=[product, price]"
                            .into(),
                    },
                ],
                status: None,
            })
            .collect(),
        shuffles: vec![
            ShuffleArrow {
                from: 0,
                to: 2,
                label: "hash(product) x 4".into(),
            },
            ShuffleArrow {
                from: 1,
                to: 2,
                label: "hash(product) x 4".into(),
            },
        ],
    };
    let executors = [
        ExecutorId::from("executor-1"),
        ExecutorId::from("executor-2"),
    ];
    let mut events = vec![(0, Event::Submitted)];
    let mut at_us = 1_000;
    for stage in &stages {
        for partition in 0..stage.partitions {
            let task = PartitionId {
                stage: stage.id,
                partition,
            }
            .attempt(0);
            let executor = executors[partition % 2].clone();
            events.push((
                at_us,
                Event::TaskStarted {
                    task,
                    executor: executor.clone(),
                },
            ));
            at_us += 7_000 + (partition as u64 * 997) % 5_000;
            let locations = (0..4)
                .map(|p| Location {
                    output_partition: p,
                    executor: executor.clone(),
                    path: format!(
                        "/work/{executor}/job-{index}/stage-{}/map-{partition}/part-{p}.arrow",
                        stage.id.index()
                    ),
                    rows: 10_000 + p as u64,
                    bytes: 250_000 + p as u64 * 1_000,
                })
                .collect();
            events.push((
                at_us,
                Event::TaskFinished {
                    task,
                    executor,
                    report: TaskReport {
                        locations,
                        elapsed: Duration::from_millis(7),
                        ..TaskReport::default()
                    },
                },
            ));
        }
    }
    LoggedJob {
        file: String::new(),
        shape: JobShape {
            job_id: JobId::from(format!("job-bench-{index:05}").as_str()),
            stages,
            final_stage: StageId(2),
            max_attempts: 4,
            grace_period: Duration::from_secs(30),
            adaptive: Default::default(),
        },
        name: Some(format!(
            "SELECT product, sum(price) FROM sales WHERE day = {index} GROUP BY product"
        )),
        started_unix_ms: 1_796_500_000_000 + index as u64 * 60_000,
        plan: Some(JobPlan {
            text: "Stage 0 ... (synthetic)".into(),
            picture,
        }),
        events,
        end: Some(Ok(())),
        last_at_us: at_us,
    }
}

/// `(p50, p95, max)` of `times`.
fn summary(times: &mut [Duration]) -> (Duration, Duration, Duration) {
    times.sort_unstable();
    let at = |q: usize| times[(times.len() - 1) * q / 100];
    (at(50), at(95), at(100))
}

pub async fn run(bench: &HistoryBench) -> anyhow::Result<()> {
    anyhow::ensure!(
        bench.jobs > 0 && bench.tasks >= 3 && bench.requests > 0,
        "--jobs, --requests >= 1 and --tasks >= 3"
    );
    let dir = tempfile::tempdir()?;
    let written = Instant::now();
    let mut bytes = 0;
    for index in 0..bench.jobs {
        let text = synthetic_job(index, bench.tasks).to_log_text();
        bytes += text.len();
        std::fs::write(dir.path().join(format!("job-bench-{index:05}.jsonl")), text)?;
    }
    println!(
        "wrote {} logs of {} tasks ({:.1} MB) in {:.2}s",
        bench.jobs,
        bench.tasks,
        bytes as f64 / 1e6,
        written.elapsed().as_secs_f64()
    );
    let before = rss_bytes();
    let source = std::sync::Arc::new(HistorySource::new(EventLogDir::new(
        dir.path().display().to_string(),
        StoreOptions::default(),
    )));
    let read = Instant::now();
    source.refresh().await;
    let read = read.elapsed();
    let after = rss_bytes();
    anyhow::ensure!(
        source.jobs().len() == bench.jobs,
        "read {} jobs of {}",
        source.jobs().len(),
        bench.jobs
    );
    let server =
        HttpServer::bind("127.0.0.1:0".parse()?, &ServerSecurity::default(), "--bind").await?;
    let base = server.url();
    let served = tokio::spawn(serve(server, source, std::future::pending()));
    let client: Client<_, Empty<hyper::body::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let get = |path: String| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let started = Instant::now();
            let answer = client.get(url.parse()?).await?;
            anyhow::ensure!(answer.status() == 200, "GET {url}: {}", answer.status());
            let body = answer.into_body().collect().await?.to_bytes();
            Ok::<_, anyhow::Error>((started.elapsed(), body.len()))
        }
    };
    println!(
        "| page | requests | p50 ms | p95 ms | max ms | size KB |\n|---|---:|---:|---:|---:|---:|"
    );
    // Each page's name, and its address for the i-th request.
    type PathOf<'a> = Box<dyn Fn(usize) -> String + 'a>;
    let pages: [(&str, PathOf); 4] = [
        ("jobs page `/`", Box::new(|_| "/".to_string())),
        (
            "job page `/jobs/ID`",
            Box::new(|i| format!("/jobs/job-bench-{:05}", (i * 7919) % bench.jobs)),
        ),
        (
            "stage page `/jobs/ID/stages/2`",
            Box::new(|i| format!("/jobs/job-bench-{:05}/stages/2", (i * 104_729) % bench.jobs)),
        ),
        (
            "REST `/api/v1/jobs`",
            Box::new(|_| "/api/v1/jobs".to_string()),
        ),
    ];
    for (name, path) in &pages {
        for i in 0..3 {
            get(path(i)).await?;
        }
        let mut times = Vec::with_capacity(bench.requests);
        let mut size = 0;
        for i in 0..bench.requests {
            let (took, len) = get(path(i + 3)).await?;
            times.push(took);
            size = len;
        }
        let (p50, p95, max) = summary(&mut times);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.0} |",
            bench.requests,
            ms(p50),
            ms(p95),
            ms(max),
            size as f64 / 1024.0
        );
    }
    println!(
        "\nread {} logs in {:.2}s; resident memory {:.0} MB before, {:.0} MB after reading ({:.0} MB for the jobs)",
        bench.jobs,
        read.as_secs_f64(),
        before as f64 / 1e6,
        after as f64 / 1e6,
        after.saturating_sub(before) as f64 / 1e6
    );
    served.abort();
    Ok(())
}
