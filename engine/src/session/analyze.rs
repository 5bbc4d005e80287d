//! `EXPLAIN ANALYZE` for Ember: [`Session::explain_analyze`] runs a query and
//! [`AnalyzedQuery`] prints its stage graph as it ran: each stage's tasks as planned and as
//! run, the rows and bytes it wrote, its task times, every adaptive decision with the
//! sizes behind it, and where the job's time went (tasks in flight against the scheduler
//! between stages, and the tasks' phases).

use std::fmt;

use datafusion::physical_plan::displayable;
use ember_planner::StageGraph;
use ember_proto::ids::StageId;
use ember_scheduler::JobMetrics;

use super::Session;
use crate::error::{EmberError, Result};
use crate::report::format::bytes;
use crate::result_stream::QueryResult;
use crate::sql::script;

/// A query that ran, with the stage graph it ran as.
#[derive(Debug)]
pub struct AnalyzedQuery {
    /// The stage graph as planned.
    pub graph: StageGraph,
    /// The rows and the job's metrics.
    pub result: QueryResult,
}

impl Session {
    /// Runs every statement of `sql` and keeps the last one's stage graph and metrics:
    /// what `ember explain analyze` prints.
    pub async fn explain_analyze(&self, sql: &str) -> Result<AnalyzedQuery> {
        let graph = self.explain(sql).await?;
        let statements = script::split(sql);
        let Some(last) = statements.last() else {
            return Err(EmberError::Config {
                key: "query".into(),
                message: "the SQL text holds no statement".into(),
            });
        };
        let result = self.execute_statement(last, false).await?.collect().await?;
        Ok(AnalyzedQuery { graph, result })
    }
}

/// Milliseconds with one decimal.
fn millis(micros: u128) -> String {
    format!("{:.1} ms", micros as f64 / 1e3)
}

impl fmt::Display for AnalyzedQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(metrics) = &self.result.metrics else {
            return write!(f, "{}", self.graph);
        };
        let stages = self.graph.stages();
        for stage in stages {
            let id = StageId(stage.id());
            let summary = metrics.stages.iter().find(|s| s.stage_id == id);
            let tasks: Vec<_> = metrics.tasks.iter().filter(|t| t.stage_id == id).collect();
            let planned = stage.partitions();
            let ran = summary.map_or(planned, |s| s.partitions);
            let role = if stage.id() + 1 == stages.len() {
                " (final)"
            } else {
                ""
            };
            let inputs = stage.inputs_text();
            let mut times: Vec<u128> = tasks.iter().map(|t| t.elapsed.as_micros()).collect();
            times.sort_unstable();
            let median = times.get(times.len() / 2).copied().unwrap_or(0);
            let max = times.last().copied().unwrap_or(0);
            writeln!(
                f,
                "Stage {}{role}: planned {planned} tasks, ran {ran}, inputs={inputs}, output={}",
                stage.id(),
                stage.output()
            )?;
            writeln!(
                f,
                "  read {} rows ({}), wrote {} rows ({}); task time median {}, max {}",
                tasks.iter().map(|t| t.read_rows).sum::<u64>(),
                bytes(tasks.iter().map(|t| t.read_bytes).sum()),
                tasks.iter().map(|t| t.rows).sum::<u64>(),
                bytes(tasks.iter().map(|t| t.bytes).sum()),
                millis(median),
                millis(max),
            )?;
            for decision in summary.map(|s| s.decisions.as_slice()).unwrap_or_default() {
                writeln!(f, "  adaptive: {decision}")?;
            }
            let copies: Vec<_> = metrics
                .speculated
                .iter()
                .filter(|c| c.stage_id == id)
                .collect();
            if !copies.is_empty() {
                writeln!(
                    f,
                    "  speculation: {} copies of slow tasks, {} finished first",
                    copies.len(),
                    copies.iter().filter(|c| c.won).count()
                )?;
            }
            for line in displayable(stage.plan().as_ref())
                .indent(false)
                .to_string()
                .lines()
            {
                writeln!(f, "  {line}")?;
            }
        }
        write_totals(f, metrics, self.result.num_rows())
    }
}

fn write_totals(f: &mut fmt::Formatter<'_>, metrics: &JobMetrics, rows: usize) -> fmt::Result {
    let decisions: usize = metrics.stages.iter().map(|s| s.decisions.len()).sum();
    writeln!(
        f,
        "Job {}: {rows} rows in {}, {} stages, {} tasks, {} adaptive decisions, {} speculative copies",
        metrics.job_id,
        millis(metrics.elapsed.as_micros()),
        metrics.stages.len(),
        metrics.tasks.len(),
        decisions,
        metrics.speculated.len()
    )?;
    let time = metrics.timeline();
    let phases = time.phases;
    writeln!(
        f,
        "Time: tasks in flight {}, none in flight {} (the scheduler between stages); \
         summed over the {} tasks: set-up {}, plan decoding {}, runtime filters {}, \
         running {}, finishing {}, launch and report {}",
        millis(time.in_flight.as_micros()),
        millis(time.idle.as_micros()),
        time.tasks,
        millis(phases.setup.as_micros()),
        millis(phases.decode.as_micros()),
        millis(phases.filters.as_micros()),
        millis(phases.run.as_micros()),
        millis(phases.finish.as_micros()),
        millis(time.transit.as_micros()),
    )?;
    let fallbacks = metrics
        .tasks
        .iter()
        .filter(|t| !t.phases.join_fallback.is_zero())
        .count();
    if fallbacks > 0 {
        writeln!(
            f,
            "Memory: {fallbacks} tasks ran again with sort-merge joins after a hash join's \
             build side did not fit under the executor's limit ({} lost in the first runs)",
            millis(phases.join_fallback.as_micros()),
        )?;
    }
    Ok(())
}
