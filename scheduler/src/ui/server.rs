//! The web UI's routes: the pages, the REST API under `/api/v1/` (see `docs/web-ui.md`),
//! `/metrics`, and the style sheet and script, over any [`UiSource`]. Served by
//! [`HttpServer`](ember_proto::http::HttpServer), which adds the token check and TLS.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;

use super::board::ShownJob;
use super::pages::{self, TASKS_PER_PAGE, TaskQuery};
use super::source::UiSource;
use super::view::{JobSummary, StageView, TaskRow};

/// The style sheet of every page.
const CSS: &str = include_str!("assets/ui.css");
/// The script of every page: live refresh through the REST API.
const JS: &str = include_str!("assets/ui.js");

type Source = Arc<dyn UiSource>;

/// The routes of the web UI, the REST API and (where the source has metrics) `/metrics`.
pub fn router(source: Arc<dyn UiSource>) -> Router {
    Router::new()
        .route("/", get(jobs_page))
        .route("/jobs/{job}", get(job_page))
        .route("/jobs/{job}/stages/{stage}", get(stage_page))
        .route("/executors", get(executors_page))
        .route("/api/v1/jobs", get(api_jobs))
        .route("/api/v1/jobs/{job}", get(api_job))
        .route("/api/v1/jobs/{job}/stages", get(api_stages))
        .route("/api/v1/jobs/{job}/stages/{stage}", get(api_stage))
        .route("/api/v1/jobs/{job}/stages/{stage}/tasks", get(api_tasks))
        .route("/api/v1/executors", get(api_executors))
        .route("/metrics", get(metrics))
        .route(
            "/static/ui.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }),
        )
        .route(
            "/static/ui.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    JS,
                )
            }),
        )
        .with_state(source)
}

/// A JSON error with its status.
fn api_error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

fn no_job(job_id: &str) -> String {
    format!("no job {job_id}")
}

async fn job_of(source: &Source, job_id: &str) -> Option<ShownJob> {
    source.refresh().await;
    source.job(job_id)
}

async fn jobs_page(State(source): State<Source>) -> Html<String> {
    source.refresh().await;
    Html(pages::jobs_page(source.kind(), &source.jobs()))
}

async fn job_page(State(source): State<Source>, Path(job_id): Path<String>) -> Response {
    match job_of(&source, &job_id).await {
        Some(job) => Html(pages::job_page(source.kind(), &job)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Html(pages::not_found_page(source.kind(), &no_job(&job_id))),
        )
            .into_response(),
    }
}

async fn stage_page(
    State(source): State<Source>,
    Path((job_id, stage_id)): Path<(String, usize)>,
    Query(query): Query<TaskQuery>,
) -> Response {
    let Some(job) = job_of(&source, &job_id).await else {
        return (
            StatusCode::NOT_FOUND,
            Html(pages::not_found_page(source.kind(), &no_job(&job_id))),
        )
            .into_response();
    };
    match job.view.stages.get(stage_id) {
        Some(stage) => Html(pages::stage_page(source.kind(), &job, stage, &query)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Html(pages::not_found_page(
                source.kind(),
                &format!("job {job_id} has no stage {stage_id}"),
            )),
        )
            .into_response(),
    }
}

async fn executors_page(State(source): State<Source>) -> Html<String> {
    source.refresh().await;
    Html(pages::executors_page(source.kind(), &source.executors()))
}

async fn api_jobs(State(source): State<Source>) -> Json<Vec<JobSummary>> {
    source.refresh().await;
    Json(
        source
            .jobs()
            .iter()
            .map(|j| j.view.summary.clone())
            .collect(),
    )
}

/// `/api/v1/jobs/{job}`: the job, its stages and its plan.
#[derive(serde::Serialize)]
struct JobDetail {
    job: JobSummary,
    stages: Vec<StageView>,
    plan: Option<String>,
}

async fn api_job(State(source): State<Source>, Path(job_id): Path<String>) -> Response {
    match job_of(&source, &job_id).await {
        Some(job) => Json(JobDetail {
            job: job.view.summary.clone(),
            stages: job.view.stages.clone(),
            plan: job.log.plan.as_ref().map(|p| p.text.clone()),
        })
        .into_response(),
        None => api_error(StatusCode::NOT_FOUND, no_job(&job_id)),
    }
}

async fn api_stages(State(source): State<Source>, Path(job_id): Path<String>) -> Response {
    match job_of(&source, &job_id).await {
        Some(job) => Json(job.view.stages.clone()).into_response(),
        None => api_error(StatusCode::NOT_FOUND, no_job(&job_id)),
    }
}

async fn api_stage(
    State(source): State<Source>,
    Path((job_id, stage_id)): Path<(String, usize)>,
) -> Response {
    let Some(job) = job_of(&source, &job_id).await else {
        return api_error(StatusCode::NOT_FOUND, no_job(&job_id));
    };
    match job.view.stages.get(stage_id) {
        Some(stage) => Json(stage.clone()).into_response(),
        None => api_error(
            StatusCode::NOT_FOUND,
            format!("job {job_id} has no stage {stage_id}"),
        ),
    }
}

/// `/api/v1/jobs/{job}/stages/{stage}/tasks`: one slice of the stage's attempts.
#[derive(serde::Serialize)]
struct TaskPage {
    /// Attempts of the stage in all.
    total: usize,
    offset: usize,
    tasks: Vec<TaskRow>,
}

async fn api_tasks(
    State(source): State<Source>,
    Path((job_id, stage_id)): Path<(String, usize)>,
    Query(query): Query<TaskQuery>,
) -> Response {
    let Some(job) = job_of(&source, &job_id).await else {
        return api_error(StatusCode::NOT_FOUND, no_job(&job_id));
    };
    if job.view.stages.get(stage_id).is_none() {
        return api_error(
            StatusCode::NOT_FOUND,
            format!("job {job_id} has no stage {stage_id}"),
        );
    }
    let sorted = query.sorted(job.view.tasks.iter().filter(|t| t.stage_id == stage_id));
    let limit = query.limit.unwrap_or(TASKS_PER_PAGE * 10);
    let offset = query
        .offset
        .unwrap_or_else(|| query.page.unwrap_or(1).saturating_sub(1) * TASKS_PER_PAGE);
    Json(TaskPage {
        total: sorted.len(),
        offset,
        tasks: sorted
            .into_iter()
            .skip(offset)
            .take(limit)
            .cloned()
            .collect(),
    })
    .into_response()
}

async fn api_executors(State(source): State<Source>) -> Response {
    source.refresh().await;
    Json(source.executors()).into_response()
}

async fn metrics(State(source): State<Source>) -> Response {
    match source.metrics() {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "the history server has no metrics; ask the scheduler\n",
        )
            .into_response(),
    }
}
