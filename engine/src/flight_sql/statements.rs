//! [`Statements`]: what the Flight SQL endpoint keeps between calls. A planned query
//! waits under a handle (the ticket's) until its `DoGet` runs it, once (a DDL or other
//! statement has run already, and its small result waits instead); a prepared
//! statement keeps its plan and bound parameter values until it is closed; a running
//! query can be cancelled by its handle.
//!
//! SQL with `?` placeholders (as JDBC and ADBC write them) is numbered into DataFusion's
//! `$1, $2, …` before it is planned; the parameter types are those DataFusion infers,
//! and bound values are cast to them.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use futures::future::AbortHandle;

use crate::error::{EmberError, Result};
use crate::result_stream::ResultStream;
use crate::session::Session;
use crate::sql::statement::{self, EmberStatement};
use crate::sync::lock;

/// How long a planned query waits for its `DoGet` before it is forgotten.
const QUERY_TTL: Duration = Duration::from_secs(600);

/// The most prepared statements open at once.
const MAX_PREPARED: usize = 10_000;

/// What a ticket's `DoGet` streams.
pub(crate) enum QueryBody {
    /// A query, planned physically in `session`: its job runs when the ticket is fetched,
    /// and its result has the plan's schema.
    Planned {
        /// The session it was planned in, and runs in.
        session: Arc<Session>,
        /// Its physical plan.
        plan: Arc<dyn ExecutionPlan>,
    },
    /// A statement that already ran when its `FlightInfo` was asked for (DDL, `SET`,
    /// `COPY`, `INSERT`): its result schema is known only then, and it must run once.
    Ran(Box<ResultStream>),
}

impl QueryBody {
    /// The schema of what the `DoGet` streams.
    pub(crate) fn schema(&self) -> SchemaRef {
        match self {
            QueryBody::Planned { plan, .. } => plan.schema(),
            QueryBody::Ran(stream) => stream.schema(),
        }
    }
}

/// A query waiting for its `DoGet`.
struct PendingQuery {
    body: QueryBody,
    /// When it was planned.
    planned: Instant,
}

/// A prepared statement.
struct Prepared {
    session: Arc<Session>,
    /// The plan, placeholders and all.
    plan: LogicalPlan,
    /// Its parameters in order (`$1`, `$2`, …), with their inferred types.
    parameters: Vec<(String, Option<DataType>)>,
    /// The values last bound, one per parameter.
    values: Option<Vec<ScalarValue>>,
    /// The SQL, when it is a statement without parameters (DDL, `SET`, `CREATE TABLE …
    /// AS`, …): it runs through the session's statement path, not as a plan.
    statement: Option<String>,
}

/// A prepared statement as its creator sees it.
pub(crate) struct PreparedInfo {
    /// The handle it is known by.
    pub(crate) handle: String,
    /// The schema of its result.
    pub(crate) dataset_schema: SchemaRef,
    /// One field per parameter (`$1`, …), typed as inferred (`Null` when unknown).
    pub(crate) parameter_schema: SchemaRef,
}

/// How a cancellation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancelled {
    /// The query will not run, or stops now.
    Yes,
    /// No query waits or runs under the handle (it ended, or never was).
    NotFound,
}

/// Queries waiting for their `DoGet`, prepared statements, and running queries.
#[derive(Default)]
pub(crate) struct Statements {
    next: AtomicU64,
    queries: Mutex<HashMap<String, PendingQuery>>,
    prepared: Mutex<HashMap<String, Prepared>>,
    running: Arc<Mutex<HashMap<String, AbortHandle>>>,
}

impl Statements {
    /// A new handle: a counter and a random part, so that handles are not guessed.
    fn new_handle(&self, kind: &str) -> String {
        format!(
            "{kind}-{}-{:016x}",
            self.next.fetch_add(1, Ordering::Relaxed),
            rand::random::<u64>()
        )
    }

    /// Keeps `body` until its `DoGet`; its handle.
    pub(crate) fn add_query(&self, body: QueryBody) -> String {
        let handle = self.new_handle("query");
        let mut queries = lock(&self.queries);
        queries.retain(|_, q| q.planned.elapsed() < QUERY_TTL);
        queries.insert(
            handle.clone(),
            PendingQuery {
                body,
                planned: Instant::now(),
            },
        );
        handle
    }

    /// The query waiting under `handle`, which it leaves: a ticket runs once.
    pub(crate) fn take_query(&self, handle: &str) -> Result<QueryBody> {
        lock(&self.queries)
            .remove(handle)
            .map(|q| q.body)
            .ok_or_else(|| unknown("statement", handle))
    }

    /// Plans `sql` as a prepared statement in `session`.
    pub(crate) async fn prepare(&self, session: Arc<Session>, sql: &str) -> Result<PreparedInfo> {
        // Ember's own statements have no DataFusion plan: they run as text.
        let ember_statement = !matches!(statement::parse(sql)?, EmberStatement::DataFusion(_));
        let plan = if ember_statement {
            LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema: Arc::new(DFSchema::empty()),
            })
        } else {
            plan_sql(&session, sql).await?
        };
        let parameters = parameters_of(&plan)?;
        let statement = ((ember_statement || runs_at_once(&plan)) && parameters.is_empty())
            .then(|| sql.to_string());
        let dataset_schema = if runs_at_once(&plan) {
            Arc::new(Schema::empty())
        } else {
            Arc::new(plan.schema().as_arrow().clone())
        };
        let parameter_schema = Arc::new(Schema::new(
            parameters
                .iter()
                .map(|(name, ty)| Field::new(name, ty.clone().unwrap_or(DataType::Null), true))
                .collect::<Vec<_>>(),
        ));
        let handle = self.new_handle("prepared");
        let mut prepared = lock(&self.prepared);
        if prepared.len() >= MAX_PREPARED {
            return Err(EmberError::InvalidArgument {
                operation: "CreatePreparedStatement",
                message: format!(
                    "{MAX_PREPARED} prepared statements are open: close some before preparing more"
                ),
            });
        }
        prepared.insert(
            handle.clone(),
            Prepared {
                session,
                plan,
                parameters,
                values: None,
                statement,
            },
        );
        Ok(PreparedInfo {
            handle,
            dataset_schema,
            parameter_schema,
        })
    }

    /// Binds the values of `batch`'s one row to the prepared statement `handle`'s
    /// parameters, in column order, each cast to its parameter's type.
    pub(crate) fn bind(&self, handle: &str, batch: &RecordBatch) -> Result<()> {
        let mut prepared = lock(&self.prepared);
        let statement = prepared
            .get_mut(handle)
            .ok_or_else(|| unknown("prepared statement", handle))?;
        let bad = |message: String| EmberError::InvalidArgument {
            operation: "bind parameters",
            message,
        };
        if batch.num_columns() != statement.parameters.len() {
            return Err(bad(format!(
                "the statement has {} parameter(s), {} value(s) were given",
                statement.parameters.len(),
                batch.num_columns()
            )));
        }
        if batch.num_rows() != 1 {
            return Err(bad(format!(
                "one row of parameter values at a time, got {} rows",
                batch.num_rows()
            )));
        }
        let mut values = Vec::with_capacity(batch.num_columns());
        for ((name, ty), column) in statement.parameters.iter().zip(batch.columns()) {
            let value = ScalarValue::try_from_array(column, 0)?;
            let value = match ty {
                Some(ty) if value.data_type() != *ty => value.cast_to(ty).map_err(|e| {
                    bad(format!("parameter {name}: cannot make {value} a {ty}: {e}"))
                })?,
                _ => value,
            };
            values.push(value);
        }
        statement.values = Some(values);
        Ok(())
    }

    /// The prepared statement `handle`'s plan with its bound values in place.
    pub(crate) fn bound_plan(&self, handle: &str) -> Result<(Arc<Session>, LogicalPlan)> {
        let prepared = lock(&self.prepared);
        let statement = prepared
            .get(handle)
            .ok_or_else(|| unknown("prepared statement", handle))?;
        let plan = match (&statement.values, statement.parameters.len()) {
            (_, 0) => statement.plan.clone(),
            (None, n) => {
                return Err(EmberError::InvalidArgument {
                    operation: "execute a prepared statement",
                    message: format!("it has {n} parameter(s) and no values were bound"),
                });
            }
            (Some(values), _) => statement.plan.clone().with_param_values(values.clone())?,
        };
        Ok((Arc::clone(&statement.session), plan))
    }

    /// The session and SQL of the prepared statement `handle` when it is a statement to
    /// run as text (see [`Prepared::statement`]); `None` for a query.
    pub(crate) fn bound_statement(&self, handle: &str) -> Result<Option<(Arc<Session>, String)>> {
        let prepared = lock(&self.prepared);
        let statement = prepared
            .get(handle)
            .ok_or_else(|| unknown("prepared statement", handle))?;
        Ok(statement
            .statement
            .clone()
            .map(|sql| (Arc::clone(&statement.session), sql)))
    }

    /// Forgets the prepared statement `handle`.
    pub(crate) fn close(&self, handle: &str) -> Result<()> {
        lock(&self.prepared)
            .remove(handle)
            .map(|_| ())
            .ok_or_else(|| unknown("prepared statement", handle))
    }

    /// Notes that the query `handle` runs, stopped by `abort`, until the guard is dropped.
    pub(crate) fn start(&self, handle: &str, abort: AbortHandle) -> RunningGuard {
        lock(&self.running).insert(handle.to_string(), abort);
        RunningGuard {
            handle: handle.to_string(),
            running: Arc::clone(&self.running),
            finished: false,
        }
    }

    /// Cancels the query `handle`: forgets it if it waits for its `DoGet`, stops it if it
    /// runs.
    pub(crate) fn cancel(&self, handle: &str) -> Cancelled {
        if lock(&self.queries).remove(handle).is_some() {
            return Cancelled::Yes;
        }
        match lock(&self.running).remove(handle) {
            Some(abort) => {
                abort.abort();
                Cancelled::Yes
            }
            None => Cancelled::NotFound,
        }
    }
}

/// Forgets a running query when its stream ends or is dropped, and logs a client that
/// went away before the end.
pub(crate) struct RunningGuard {
    handle: String,
    running: Arc<Mutex<HashMap<String, AbortHandle>>>,
    /// Whether the result was sent to its end (or its error or cancellation was).
    finished: bool,
}

impl RunningGuard {
    /// Notes that the whole answer was sent.
    pub(crate) fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        lock(&self.running).remove(&self.handle);
        if !self.finished {
            tracing::info!(
                query = %self.handle,
                "the Flight SQL client went away before the end of the result; its job is \
                 stopped and its files removed"
            );
        }
    }
}

fn unknown(what: &str, handle: &str) -> EmberError {
    EmberError::InvalidArgument {
        operation: "Flight SQL",
        message: format!("no {what} has the handle '{handle}' (it ran, was closed, or expired)"),
    }
}

/// Whether `plan` is a statement that runs when its `FlightInfo` is asked for (see
/// [`QueryBody::Ran`]) rather than a query.
pub(crate) fn runs_at_once(plan: &LogicalPlan) -> bool {
    matches!(
        plan,
        LogicalPlan::Ddl(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Dml(_)
    )
}

/// A statement that ran (its result), or a query to plan and stream at `DoGet`.
pub(crate) enum StatementOrQuery {
    /// DDL, `SET`, `CREATE TABLE … AS`, `INSERT`, `COPY`: run through the session's
    /// statement path, so Ember's own statements work and a catalog records what they
    /// make.
    Ran(Box<ResultStream>),
    /// A query.
    Query(LogicalPlan),
}

/// Runs `sql` now if it is a statement, or plans it if it is a query.
pub(crate) async fn statement_or_query(session: &Session, sql: &str) -> Result<StatementOrQuery> {
    if let EmberStatement::DataFusion(_) = statement::parse(sql)? {
        let plan = plan_sql(session, sql).await?;
        if !runs_at_once(&plan) {
            return Ok(StatementOrQuery::Query(plan));
        }
    }
    Ok(StatementOrQuery::Ran(Box::new(session.execute(sql).await?)))
}

/// Plans one SQL statement in `session`, with `?` placeholders numbered.
pub(crate) async fn plan_sql(session: &Session, sql: &str) -> Result<LogicalPlan> {
    let sql = number_placeholders(sql)?;
    Ok(session.context().state().create_logical_plan(&sql).await?)
}

/// `sql` with each `?` placeholder replaced by `$1`, `$2`, … in order; strings, quoted
/// names and comments are left as they are.
pub(crate) fn number_placeholders(sql: &str) -> Result<String> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(false)
        .tokenize()
        .map_err(|e| EmberError::InvalidArgument {
            operation: "parse SQL",
            message: e.to_string(),
        })?;
    if !tokens
        .iter()
        .any(|t| matches!(t, Token::Placeholder(p) if p == "?"))
    {
        return Ok(sql.to_string());
    }
    let mut numbered = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for token in tokens {
        // Writing to a String cannot fail.
        let _ = match token {
            Token::Placeholder(p) if p == "?" => {
                n += 1;
                write!(numbered, "${n}")
            }
            other => write!(numbered, "{other}"),
        };
    }
    Ok(numbered)
}

/// The parameters of `plan` in order (`$1`, `$2`, …), with their inferred types.
fn parameters_of(plan: &LogicalPlan) -> Result<Vec<(String, Option<DataType>)>> {
    let mut parameters: Vec<(String, Option<DataType>)> =
        plan.get_parameter_types()?.into_iter().collect();
    let position = |name: &str| name.trim_start_matches('$').parse::<usize>().ok();
    if let Some((name, _)) = parameters.iter().find(|(name, _)| position(name).is_none()) {
        return Err(EmberError::InvalidArgument {
            operation: "prepare",
            message: format!("named parameter {name}: use ? or $1, $2, …"),
        });
    }
    parameters.sort_by_key(|(name, _)| position(name));
    if let Some((index, (name, _))) = parameters
        .iter()
        .enumerate()
        .find(|(i, (name, _))| position(name) != Some(i + 1))
    {
        return Err(EmberError::InvalidArgument {
            operation: "prepare",
            message: format!("parameter {name} is used but ${} is not", index + 1),
        });
    }
    Ok(parameters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_are_numbered_outside_strings_and_comments() {
        let sql = "SELECT '?', \"a?\" FROM t -- ?\nWHERE x > ? AND y = 'it''s' AND z < ?";
        assert_eq!(
            number_placeholders(sql).expect("it tokenizes"),
            "SELECT '?', \"a?\" FROM t -- ?\nWHERE x > $1 AND y = 'it''s' AND z < $2"
        );
        let plain = "SELECT $1 + 1";
        assert_eq!(number_placeholders(plain).expect("it tokenizes"), plain);
    }

    #[test]
    fn a_cancelled_waiting_query_is_forgotten_and_a_second_cancel_finds_nothing() {
        let statements = Statements::default();
        let (abort, _registration) = AbortHandle::new_pair();
        let guard = statements.start("query-1", abort.clone());
        assert_eq!(statements.cancel("query-1"), Cancelled::Yes);
        assert!(abort.is_aborted());
        guard.finish();
        assert_eq!(statements.cancel("query-1"), Cancelled::NotFound);
    }
}
