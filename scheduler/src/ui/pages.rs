//! The web UI's pages, rendered on the server as HTML from the views (no I/O here): the
//! jobs list, a job (its stage graph as SVG, its stages, its plan), a stage (task
//! quantiles and the task table, sorted and paged on the server), and the executors.
//! Every string that comes from a user or a log (SQL text, names, errors, paths) goes
//! through [`esc`]. One style sheet and one small script, served by this crate, make the
//! pages work offline; the script keeps live pages fresh through the REST API.

use std::fmt::Write;

use ember_planner::draw::escape_xml as esc;
use ember_planner::picture_svg;

use super::board::ShownJob;
use super::source::ExecutorRow;
use super::view::{JobStatus, StageView, TaskRow, TaskStatus};

/// Rows of the task table on one page.
pub const TASKS_PER_PAGE: usize = 100;

/// How the task table is ordered and which page of it is shown.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct TaskQuery {
    /// The column to sort by (see [`TaskColumn`]); `start` by default.
    pub sort: Option<String>,
    /// `asc` or `desc`.
    pub order: Option<String>,
    /// The page, from 1.
    pub page: Option<usize>,
    /// Rows to skip (API), instead of a page.
    pub offset: Option<usize>,
    /// Rows to return (API).
    pub limit: Option<usize>,
}

/// The task table's columns, by their name in `?sort=`.
const TASK_COLUMNS: [(&str, &str); 11] = [
    ("partition", "Partition"),
    ("attempt", "Attempt"),
    ("status", "Status"),
    ("executor", "Executor"),
    ("start", "Start"),
    ("duration", "Duration"),
    ("rows", "Rows"),
    ("bytes", "Bytes written"),
    ("read", "Shuffle read"),
    ("spill", "Spill"),
    ("error", "Error"),
];

impl TaskQuery {
    /// The sort column, when it is one of the table's (`start` otherwise).
    pub fn column(&self) -> &str {
        self.sort
            .as_deref()
            .filter(|s| TASK_COLUMNS.iter().any(|(name, _)| name == s))
            .unwrap_or("start")
    }

    /// Whether the order is descending.
    pub fn descending(&self) -> bool {
        self.order.as_deref() == Some("desc")
    }

    /// `tasks` in this query's order.
    pub fn sorted<'a>(&self, tasks: impl Iterator<Item = &'a TaskRow>) -> Vec<&'a TaskRow> {
        let mut rows: Vec<&TaskRow> = tasks.collect();
        let column = self.column();
        rows.sort_by(|a, b| {
            let order = match column {
                "partition" => a.partition.cmp(&b.partition),
                "attempt" => a.attempt.cmp(&b.attempt),
                "status" => a.status.as_str().cmp(b.status.as_str()),
                "executor" => a.executor_id.cmp(&b.executor_id),
                "duration" => a.duration_ms.cmp(&b.duration_ms),
                "rows" => a.rows.cmp(&b.rows),
                "bytes" => a.bytes.cmp(&b.bytes),
                "read" => a.shuffle_read_bytes.cmp(&b.shuffle_read_bytes),
                "spill" => a.spilled_bytes.cmp(&b.spilled_bytes),
                "error" => a.error.cmp(&b.error),
                _ => a.start_ms.cmp(&b.start_ms),
            }
            .then((a.partition, a.attempt).cmp(&(b.partition, b.attempt)));
            if self.descending() {
                order.reverse()
            } else {
                order
            }
        });
        rows
    }
}

/// A whole page: `title`, the navigation with `active` marked, and `body`. With `api`,
/// the script polls that REST address and reloads the page's main part when it changes.
pub fn page(kind: &str, title: &str, active: &str, body: &str, api: Option<&str>) -> String {
    let nav = [
        ("jobs", "/", "Jobs"),
        ("executors", "/executors", "Executors"),
    ]
    .iter()
    .map(|(key, href, label)| {
        let class = if *key == active {
            r#" class="active""#
        } else {
            ""
        };
        format!(r#"<a href="{href}"{class}>{label}</a>"#)
    })
    .collect::<String>();
    let live = api
        .map(|a| format!(r#" data-api="{}""#, esc(a)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Ember {kind}</title>
<link rel="stylesheet" href="/static/ui.css">
<script src="/static/ui.js" defer></script>
</head>
<body{live}>
<header><a class="brand" href="/">Ember <span>{kind}</span></a><nav>{nav}</nav><span id="live-state"></span></header>
<main>
{body}
</main>
</body></html>
"#,
        title = esc(title),
        kind = esc(kind),
    )
}

/// The jobs page.
pub fn jobs_page(kind: &str, jobs: &[ShownJob]) -> String {
    let mut body = String::new();
    let running = jobs
        .iter()
        .filter(|j| j.view.summary.status == JobStatus::Running)
        .count();
    let _ = write!(
        body,
        r#"<h1>Jobs</h1><p class="counts"><span id="jobs-total">{}</span> jobs, <span id="jobs-running">{running}</span> running</p>"#,
        jobs.len()
    );
    body.push_str(
        r#"<table class="jobs" id="jobs"><thead><tr><th>Job</th><th>Query or name</th><th>Submitted (UTC)</th><th>Duration</th><th>Status</th><th>Stages</th><th>Tasks</th><th>Failed attempts</th><th>Rows shuffled</th><th>Bytes shuffled</th><th>Spill</th></tr></thead><tbody>"#,
    );
    for job in jobs.iter().rev() {
        let s = &job.view.summary;
        let id = esc(&s.job_id);
        let name = s.name.as_deref().unwrap_or("");
        let _ = write!(
            body,
            r#"<tr data-job="{id}" data-status="{status}"><td><a href="/jobs/{id}">{id}</a></td><td class="name" title="{full}">{short}</td><td>{submitted}</td><td class="num">{duration}</td><td>{badge}</td><td class="num stages">{sd}/{st}</td><td class="num tasks">{td}/{tt}{running}</td><td class="num failed">{failed}</td><td class="num">{rows}</td><td class="num">{bytes}</td><td class="num">{spill}</td></tr>"#,
            status = s.status.as_str(),
            full = esc(name),
            short = esc(&shorten(name, 90)),
            submitted = utc(s.submitted_unix_ms),
            duration = millis(s.duration_ms),
            badge = badge(s.status.as_str()),
            sd = s.stages_done,
            st = s.stages_total,
            td = s.tasks_done,
            tt = s.tasks_total,
            running = if s.tasks_running > 0 {
                format!(
                    r#" <span class="running">({} running)</span>"#,
                    s.tasks_running
                )
            } else {
                String::new()
            },
            failed = s.failed_attempts,
            rows = count(s.shuffle_rows),
            bytes = bytes(s.shuffle_bytes),
            spill = bytes(s.spilled_bytes),
        );
    }
    body.push_str("</tbody></table>");
    if jobs.is_empty() {
        body.push_str(r#"<p class="empty">No jobs yet.</p>"#);
    }
    page(kind, "Jobs", "jobs", &body, Some("/api/v1/jobs"))
}

/// A job's page.
pub fn job_page(kind: &str, job: &ShownJob) -> String {
    let s = &job.view.summary;
    let id = esc(&s.job_id);
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<h1>Job <span class="id">{id}</span> {badge}</h1>"#,
        badge = badge(s.status.as_str())
    );
    if let Some(name) = &s.name {
        let _ = write!(body, r#"<pre class="query">{}</pre>"#, esc(name));
    }
    if let Some(error) = &s.error {
        let _ = write!(body, r#"<pre class="error">{}</pre>"#, esc(error));
    }
    let _ = write!(
        body,
        r#"<dl class="facts"><dt>Submitted</dt><dd>{}</dd><dt>Duration</dt><dd>{}</dd><dt>Stages</dt><dd>{}/{}</dd><dt>Tasks</dt><dd>{}/{} ({} running)</dd><dt>Failed attempts</dt><dd>{}</dd><dt>Shuffled</dt><dd>{} rows, {}</dd><dt>Spill</dt><dd>{}</dd></dl>"#,
        utc(s.submitted_unix_ms),
        millis(s.duration_ms),
        s.stages_done,
        s.stages_total,
        s.tasks_done,
        s.tasks_total,
        s.tasks_running,
        s.failed_attempts,
        count(s.shuffle_rows),
        bytes(s.shuffle_bytes),
        bytes(s.spilled_bytes),
    );
    body.push_str("<h2>Stage graph</h2>");
    match job.view.picture(&job.log) {
        Some(picture) => {
            let _ = write!(
                body,
                r#"<div class="graph" id="stage-graph">{}</div>"#,
                picture_svg(&picture)
            );
        }
        None => body.push_str(r#"<p class="empty">This job's log has no plan to draw.</p>"#),
    }
    let adapted: Vec<&StageView> = job
        .view
        .stages
        .iter()
        .filter(|stage| !stage.decisions.is_empty())
        .collect();
    if !adapted.is_empty() {
        body.push_str(r#"<h2>Adaptive decisions</h2><ul class="decisions" id="decisions">"#);
        for stage in adapted {
            for decision in &stage.decisions {
                let _ = write!(
                    body,
                    r#"<li data-stage="{sid}">Stage {sid} ({planned} planned tasks, {ran} run): {text}</li>"#,
                    sid = stage.stage_id,
                    planned = stage.planned_partitions,
                    ran = stage.partitions,
                    text = esc(&decision.to_string()),
                );
            }
        }
        body.push_str("</ul>");
    }
    body.push_str("<h2>Stages</h2>");
    stage_table(&mut body, &s.job_id, &job.view.stages);
    if let Some(plan) = &job.log.plan {
        let _ = write!(
            body,
            r#"<h2>Plan</h2><pre class="plan">{}</pre>"#,
            esc(&plan.text)
        );
    }
    let api = format!("/api/v1/jobs/{}", s.job_id);
    page(
        kind,
        &format!("Job {}", s.job_id),
        "jobs",
        &body,
        (s.status == JobStatus::Running).then_some(api.as_str()),
    )
}

fn stage_table(body: &mut String, job_id: &str, stages: &[StageView]) {
    body.push_str(r#"<table class="stages" id="stages"><thead><tr><th>Stage</th><th>State</th><th>Reads</th><th>Output</th><th>Tasks</th><th>Failed attempts</th><th>Rows written</th><th>Bytes written</th><th>Shuffle read</th><th>Spill</th><th>Median task</th></tr></thead><tbody>"#);
    for stage in stages {
        let inputs: Vec<String> = stage.inputs.iter().map(|i| i.to_string()).collect();
        let _ = write!(
            body,
            r#"<tr data-stage="{sid}" data-state="{state}"><td><a href="/jobs/{job}/stages/{sid}">Stage {sid}{fin}</a></td><td>{badge}</td><td>{inputs}</td><td>{output}</td><td class="num">{done}/{parts}{running}</td><td class="num">{failed}</td><td class="num">{rows}</td><td class="num">{bytes}</td><td class="num">{read}</td><td class="num">{spill}</td><td class="num">{median}</td></tr>"#,
            sid = stage.stage_id,
            job = esc(job_id),
            fin = if stage.is_final { " (final)" } else { "" },
            state = stage.state.as_str(),
            badge = badge(stage.state.as_str()),
            inputs = if inputs.is_empty() {
                "—".to_string()
            } else {
                inputs.join(", ")
            },
            output = stage.output,
            done = stage.tasks_done,
            parts = stage.partitions,
            running = if stage.tasks_running > 0 {
                format!(
                    r#" <span class="running">({} running)</span>"#,
                    stage.tasks_running
                )
            } else {
                String::new()
            },
            failed = stage.failed_attempts,
            rows = count(stage.rows),
            bytes = bytes(stage.bytes),
            read = bytes(stage.shuffle_read_bytes),
            spill = bytes(stage.spilled_bytes),
            median = stage
                .quantiles
                .as_ref()
                .map_or("—".to_string(), |q| millis(q.duration_ms[2])),
        );
    }
    body.push_str("</tbody></table>");
}

/// A stage's page: quantiles and one page of the task table.
pub fn stage_page(kind: &str, job: &ShownJob, stage: &StageView, query: &TaskQuery) -> String {
    let s = &job.view.summary;
    let job_id = esc(&s.job_id);
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<p class="crumbs"><a href="/jobs/{job_id}">Job {job_id}</a> ›</p><h1>Stage {sid}{fin} {badge}</h1>"#,
        sid = stage.stage_id,
        fin = if stage.is_final { " (final)" } else { "" },
        badge = badge(stage.state.as_str()),
    );
    let _ = write!(
        body,
        r#"<dl class="facts"><dt>Tasks</dt><dd>{}/{} ({} running)</dd><dt>Failed attempts</dt><dd>{}</dd><dt>Output</dt><dd>{}</dd><dt>Reads stages</dt><dd>{}</dd></dl>"#,
        stage.tasks_done,
        stage.partitions,
        stage.tasks_running,
        stage.failed_attempts,
        stage.output,
        if stage.inputs.is_empty() {
            "none".to_string()
        } else {
            stage
                .inputs
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    body.push_str("<h2>Task quantiles</h2>");
    match &stage.quantiles {
        Some(q) => {
            body.push_str(r#"<table class="quantiles" id="quantiles"><thead><tr><th>Metric</th><th>Min</th><th>25th percentile</th><th>Median</th><th>75th percentile</th><th>Max</th></tr></thead><tbody>"#);
            type Shown = fn(u64) -> String;
            let metrics: [(&str, [u64; 5], Shown); 5] = [
                ("Duration", q.duration_ms, millis),
                ("Rows written", q.rows, count),
                ("Shuffle read", q.shuffle_read_bytes, bytes),
                ("Shuffle write", q.shuffle_write_bytes, bytes),
                ("Spill", q.spilled_bytes, bytes),
            ];
            for (name, values, show) in metrics {
                let _ = write!(body, "<tr><th>{name}</th>");
                for v in values {
                    let _ = write!(body, r#"<td class="num">{}</td>"#, show(v));
                }
                body.push_str("</tr>");
            }
            body.push_str("</tbody></table>");
        }
        None => body.push_str(r#"<p class="empty">No task has finished yet.</p>"#),
    }
    let tasks = query.sorted(
        job.view
            .tasks
            .iter()
            .filter(|t| t.stage_id == stage.stage_id),
    );
    let pages = tasks.len().div_ceil(TASKS_PER_PAGE).max(1);
    let current = query.page.unwrap_or(1).clamp(1, pages);
    let _ = write!(
        body,
        r#"<h2>Tasks</h2><p class="counts"><span id="attempts">{}</span> attempts</p>"#,
        tasks.len()
    );
    let base = format!("/jobs/{}/stages/{}", s.job_id, stage.stage_id);
    body.push_str(r#"<table class="tasks" id="tasks"><thead><tr>"#);
    for (name, label) in TASK_COLUMNS {
        let (order, mark) = if query.column() == name {
            if query.descending() {
                ("asc", " ▼")
            } else {
                ("desc", " ▲")
            }
        } else {
            ("asc", "")
        };
        let _ = write!(
            body,
            r#"<th><a class="sort" data-column="{name}" href="{}?sort={name}&amp;order={order}">{label}{mark}</a></th>"#,
            esc(&base)
        );
    }
    body.push_str("</tr></thead><tbody>");
    for task in tasks
        .iter()
        .skip((current - 1) * TASKS_PER_PAGE)
        .take(TASKS_PER_PAGE)
    {
        let _ = write!(
            body,
            r#"<tr data-status="{status}" data-executor="{executor}"><td class="num">{partition}</td><td class="num">{attempt}</td><td>{badge}</td><td class="executor">{executor}</td><td class="num">+{start}</td><td class="num">{duration}</td><td class="num">{rows}</td><td class="num">{bytes}</td><td class="num">{read}</td><td class="num">{spill}</td><td class="error">{error}</td></tr>"#,
            status = task.status.as_str(),
            executor = esc(&task.executor_id),
            partition = task.partition,
            attempt = task.attempt,
            badge = badge(task.status.as_str()),
            start = millis(task.start_ms),
            duration = millis(task.duration_ms),
            rows = if task.status == TaskStatus::Succeeded {
                count(task.rows)
            } else {
                String::new()
            },
            bytes = if task.status == TaskStatus::Succeeded {
                bytes(task.bytes)
            } else {
                String::new()
            },
            read = if task.status == TaskStatus::Succeeded {
                bytes(task.shuffle_read_bytes)
            } else {
                String::new()
            },
            spill = if task.status == TaskStatus::Succeeded {
                bytes(task.spilled_bytes)
            } else {
                String::new()
            },
            error = esc(task.error.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</tbody></table>");
    if pages > 1 {
        body.push_str(r#"<nav class="pages" id="pages">"#);
        for n in 1..=pages {
            if n == current {
                let _ = write!(body, r#"<span class="current">{n}</span>"#);
            } else if n == 1 || n == pages || n.abs_diff(current) <= 3 {
                let _ = write!(
                    body,
                    r#"<a href="{}?sort={}&amp;order={}&amp;page={n}">{n}</a>"#,
                    esc(&base),
                    query.column(),
                    if query.descending() { "desc" } else { "asc" },
                );
            } else if n.abs_diff(current) == 4 {
                body.push_str("<span>…</span>");
            }
        }
        body.push_str("</nav>");
    }
    let api = format!("/api/v1/jobs/{}/stages/{}", s.job_id, stage.stage_id);
    page(
        kind,
        &format!("Stage {} of job {}", stage.stage_id, s.job_id),
        "jobs",
        &body,
        (s.status == JobStatus::Running).then_some(api.as_str()),
    )
}

/// The executors page.
pub fn executors_page(kind: &str, executors: &[ExecutorRow]) -> String {
    let alive = executors.iter().filter(|e| e.state == "alive").count();
    let mut body = String::new();
    let _ = write!(
        body,
        r#"<h1>Executors</h1><p class="counts"><span id="executors-alive">{alive}</span> alive, <span id="executors-lost">{}</span> lost</p>"#,
        executors.len() - alive
    );
    body.push_str(r#"<table class="executors" id="executors"><thead><tr><th>Executor</th><th>Address</th><th>State</th><th>Slots</th><th>Running tasks</th><th>Succeeded</th><th>Failed</th><th>Last heartbeat</th><th>Memory pool</th><th>Shuffle served</th></tr></thead><tbody>"#);
    for e in executors {
        let heartbeat = match (e.last_heartbeat_ms_ago, e.last_seen_unix_ms) {
            (Some(ago), _) if e.state == "lost" => format!("lost {} ago", millis(ago)),
            (Some(ago), _) => format!("{} ago", millis(ago)),
            (None, Some(seen)) => format!("last seen {}", utc(seen)),
            (None, None) => "in process".to_string(),
        };
        let memory = if e.memory_limit > 0 {
            format!("{} of {}", bytes(e.memory_used), bytes(e.memory_limit))
        } else {
            bytes(e.memory_used)
        };
        let _ = write!(
            body,
            r#"<tr data-executor="{id}" data-state="{state}"><td class="executor">{id}</td><td>{address}</td><td title="{reason}">{badge}</td><td class="num">{slots}</td><td class="num">{running}</td><td class="num">{ok}</td><td class="num">{failed}</td><td>{heartbeat}</td><td class="num">{memory}</td><td class="num">{served}</td></tr>"#,
            id = esc(&e.executor_id),
            address = esc(e.address.as_deref().unwrap_or("—")),
            state = esc(&e.state),
            reason = esc(e.lost_reason.as_deref().unwrap_or("")),
            badge = badge(&e.state),
            slots = if e.slots > 0 {
                e.slots.to_string()
            } else {
                "—".into()
            },
            running = e.tasks_running,
            ok = e.tasks_succeeded,
            failed = e.tasks_failed,
            served = bytes(e.shuffle_bytes_served),
        );
    }
    body.push_str("</tbody></table>");
    page(
        kind,
        "Executors",
        "executors",
        &body,
        Some("/api/v1/executors"),
    )
}

/// A page saying what was not found.
pub fn not_found_page(kind: &str, what: &str) -> String {
    page(
        kind,
        "Not found",
        "",
        &format!(
            r#"<h1>Not found</h1><p class="error">{}</p><p><a href="/">All jobs</a></p>"#,
            esc(what)
        ),
        None,
    )
}

fn badge(state: &str) -> String {
    format!(
        r#"<span class="badge {state}">{state}</span>"#,
        state = esc(state)
    )
}

/// The first `max` characters of the first line of `text`, with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        line
    } else {
        let mut cut: String = line.chars().take(max - 1).collect();
        cut.push('…');
        cut
    }
}

/// `ms` milliseconds for people: `850 ms`, `12.3 s`, `4 min 05 s`.
pub fn millis(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A count with thousands separated: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Milliseconds since 1970 as `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    // Days to a civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_796_569_285_000), "2026-12-06 15:01:25");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(millis(850), "850 ms");
        assert_eq!(millis(12_340), "12.3 s");
        assert_eq!(millis(245_000), "4 min 05 s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(shorten("SELECT\n  a,\n  b FROM t", 12), "SELECT a, b…");
    }

    #[test]
    fn the_task_query_falls_back_to_start_order_on_an_unknown_column() {
        let query = TaskQuery {
            sort: Some("<script>".into()),
            ..TaskQuery::default()
        };
        assert_eq!(query.column(), "start");
        assert!(!query.descending());
    }
}
