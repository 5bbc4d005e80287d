//! [`EmberFlightSql`]: the Flight SQL service. Queries and prepared queries are planned
//! (physically, so the schema a `FlightInfo` announces is the one streamed) when their
//! `FlightInfo` is asked for, and run as a cluster job when their ticket is fetched; the
//! result streams to the client batch by batch as it reads. Other statements (DDL, `SET`,
//! `COPY`, `INSERT`) run when their `FlightInfo` is asked for, whose schema is their
//! result's.
//! Catalog calls are answered by [`super::metadata`].
//!
//! A client that goes away drops its `DoGet` stream, and with it the
//! [`ResultStream`](crate::ResultStream) (its job's files are removed) or the job still
//! running (the scheduler cancels it).

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt,
    SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use futures::future::{AbortHandle, Abortable};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use super::metadata;
use super::sessions::FlightSqlSessions;
use super::statements::{
    Cancelled, QueryBody, StatementOrQuery, Statements, runs_at_once, statement_or_query,
};
use crate::error::{EmberError, Result, one_line};
use crate::session::Session;

/// The stream type of every `DoGet` answer.
type DoGetStream = <EmberFlightSql as FlightService>::DoGetStream;

/// The name of the standard Flight action that cancels a query.
const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";

/// The Flight SQL service of a scheduler.
pub struct EmberFlightSql {
    sessions: Arc<FlightSqlSessions>,
    statements: Statements,
}

impl EmberFlightSql {
    /// A service whose statements run in the sessions of `sessions`.
    pub fn new(sessions: Arc<FlightSqlSessions>) -> Result<Self> {
        // A broken SqlInfo table is a bug: find it at start, not at a client's first call.
        if let Err(e) = metadata::SQL_INFO.as_ref() {
            return Err(EmberError::Internal {
                message: e.to_string(),
            });
        }
        Ok(Self {
            sessions,
            statements: Statements::default(),
        })
    }

    async fn session(&self) -> std::result::Result<Arc<Session>, Status> {
        self.sessions.current().await.map_err(status)
    }

    /// Plans `plan` physically (or runs it, for a statement that is not a query), keeps
    /// it under a new handle, and describes it: the schema its `DoGet` streams, and a
    /// ticket that names the handle.
    async fn flight_info_for(
        &self,
        session: Arc<Session>,
        plan: LogicalPlan,
        descriptor: FlightDescriptor,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let body = query_body(session, plan).await.map_err(status)?;
        self.describe(body, descriptor)
    }

    /// Keeps `body` under a new handle and describes it: the schema its `DoGet` streams,
    /// and a ticket that names the handle.
    fn describe(
        &self,
        body: QueryBody,
        descriptor: FlightDescriptor,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let schema = body.schema();
        let handle = self.statements.add_query(body);
        let ticket = TicketStatementQuery {
            statement_handle: handle.into_bytes().into(),
        };
        flight_info(&schema, ticket.as_any(), descriptor)
    }

    /// Runs `body` as a job (unless it ran already) and streams its result as the client
    /// reads it; `handle` names it for cancellation, which ends the stream with
    /// `CANCELLED`.
    fn run(&self, handle: &str, body: QueryBody) -> DoGetStream {
        let (abort, registration) = AbortHandle::new_pair();
        let guard = self.statements.start(handle, abort.clone());
        let handle = handle.to_string();
        let result = futures::stream::once(async move {
            match body {
                QueryBody::Planned { session, plan } => session.stream_physical(plan).await,
                QueryBody::Ran(stream) => Ok(*stream),
            }
        })
        .flat_map(|stream| match stream {
            Ok(stream) => {
                let schema = stream.schema();
                let batches = stream.map_err(|e| FlightError::from(datafusion_status(e)));
                FlightDataEncoderBuilder::new()
                    .with_schema(schema)
                    .build(batches)
                    .map_err(Status::from)
                    .boxed()
            }
            Err(e) => futures::stream::once(async move { Err(status(e)) }).boxed(),
        });
        let end = futures::stream::once(async move {
            guard.finish();
            abort
                .is_aborted()
                .then(|| Err(Status::cancelled(format!("query {handle} was cancelled"))))
        })
        .filter_map(futures::future::ready);
        Box::pin(Abortable::new(result, registration).chain(end))
    }
}

/// What a `DoGet` of `plan` streams: a query planned physically, or the result of a
/// statement that runs now.
async fn query_body(session: Arc<Session>, plan: LogicalPlan) -> Result<QueryBody> {
    Ok(if runs_at_once(&plan) {
        QueryBody::Ran(Box::new(session.stream_logical(plan).await?))
    } else {
        let plan = session.physical_plan(plan).await?;
        QueryBody::Planned { session, plan }
    })
}

/// A `FlightInfo` with one endpoint whose ticket is `ticket`, for a result of `schema`.
fn flight_info(
    schema: &SchemaRef,
    ticket: Any,
    descriptor: FlightDescriptor,
) -> std::result::Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.encode_to_vec()));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("cannot encode the result's schema: {e}")))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor)
        .with_ordered(true);
    Ok(Response::new(info))
}

/// A one-batch `DoGet` answer.
fn one_batch(batch: Result<RecordBatch>) -> std::result::Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(status)?;
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::once(async move { Ok(batch) }))
        .map_err(Status::from);
    Ok(Response::new(Box::pin(stream)))
}

/// A handle as text.
fn handle_text(bytes: &[u8]) -> std::result::Result<String, Status> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Status::invalid_argument("a statement handle is not UTF-8"))
}

/// The one batch of parameter values a `DoPut` carries (the last, if several).
async fn parameter_batch(
    request: Request<PeekableFlightDataStream>,
) -> std::result::Result<Option<RecordBatch>, Status> {
    let data = request.into_inner().map_err(FlightError::from);
    let mut batches = FlightRecordBatchStream::new_from_flight_data(data);
    let mut last = None;
    while let Some(batch) = batches.next().await {
        let batch =
            batch.map_err(|e| Status::invalid_argument(format!("parameter values: {e}")))?;
        if batch.num_rows() > 0 {
            last = Some(batch);
        }
    }
    Ok(last)
}

/// Runs `plan` to its end and returns the count an update reports: the `count` column of
/// an `INSERT` or `COPY`, else 0. The rows themselves are dropped as they come.
async fn count_updated(mut stream: crate::ResultStream) -> Result<i64> {
    let mut count = 0i64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if let Some(column) = batch.column_by_name("count")
            && let Ok(column) = arrow::compute::cast(column, &arrow::datatypes::DataType::Int64)
            && let Some(column) = column.as_any().downcast_ref::<arrow::array::Int64Array>()
        {
            count += column.iter().flatten().sum::<i64>();
        }
    }
    Ok(count)
}

/// The gRPC status of an error, on one line: the user's mistakes are invalid arguments.
pub(crate) fn status(e: EmberError) -> Status {
    let message = one_line(&e.to_string());
    match &e {
        EmberError::Config { .. }
        | EmberError::Table { .. }
        | EmberError::InvalidArgument { .. }
        | EmberError::Planner(_) => Status::invalid_argument(message),
        EmberError::DataFusion(df) if is_user_error(df) => Status::invalid_argument(message),
        EmberError::NoExecutors
        | EmberError::NoExecutorsLeft { .. }
        | EmberError::Cluster { .. } => Status::unavailable(message),
        _ => Status::internal(message),
    }
}

fn datafusion_status(e: DataFusionError) -> Status {
    status(EmberError::from(e))
}

/// Whether DataFusion refused the query itself (rather than failed running it).
fn is_user_error(e: &DataFusionError) -> bool {
    match e {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_) => true,
        DataFusionError::Context(_, inner) => is_user_error(inner),
        DataFusionError::Diagnostic(_, inner) => is_user_error(inner),
        _ => false,
    }
}

#[tonic::async_trait]
impl FlightSqlService for EmberFlightSql {
    type FlightService = EmberFlightSql;

    /// The token is checked on every call (the `authorization` header), so a handshake
    /// has nothing to exchange; it answers for the clients that begin with one.
    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<
        Response<
            Pin<Box<dyn Stream<Item = std::result::Result<HandshakeResponse, Status>> + Send>>,
        >,
        Status,
    > {
        let answer = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        Ok(Response::new(Box::pin(futures::stream::once(async move {
            Ok(answer)
        }))))
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let session = self.session().await?;
        match statement_or_query(&session, &query.query)
            .await
            .map_err(status)?
        {
            StatementOrQuery::Ran(rows) => {
                self.describe(QueryBody::Ran(rows), request.into_inner())
            }
            StatementOrQuery::Query(plan) => {
                self.flight_info_for(session, plan, request.into_inner())
                    .await
            }
        }
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let handle = handle_text(&query.prepared_statement_handle)?;
        if let Some((session, sql)) = self.statements.bound_statement(&handle).map_err(status)? {
            let rows = session.execute(&sql).await.map_err(status)?;
            return self.describe(QueryBody::Ran(Box::new(rows)), request.into_inner());
        }
        let (session, plan) = self.statements.bound_plan(&handle).map_err(status)?;
        self.flight_info_for(session, plan, request.into_inner())
            .await
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let info = metadata::SQL_INFO
            .as_ref()
            .map_err(|e| Status::internal(e.to_string()))?;
        let schema = query.clone().into_builder(info).schema();
        flight_info(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        let handle = handle_text(&ticket.statement_handle)?;
        let body = self.statements.take_query(&handle).map_err(status)?;
        Ok(Response::new(self.run(&handle, body)))
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        let handle = handle_text(&query.prepared_statement_handle)?;
        if let Some((session, sql)) = self.statements.bound_statement(&handle).map_err(status)? {
            let rows = session.execute(&sql).await.map_err(status)?;
            return Ok(Response::new(
                self.run(&handle, QueryBody::Ran(Box::new(rows))),
            ));
        }
        let (session, plan) = self.statements.bound_plan(&handle).map_err(status)?;
        let body = query_body(session, plan).await.map_err(status)?;
        Ok(Response::new(self.run(&handle, body)))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        let session = self.session().await?;
        one_batch(metadata::catalogs(session.context(), query))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        let session = self.session().await?;
        one_batch(metadata::db_schemas(session.context(), query))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        let session = self.session().await?;
        one_batch(metadata::tables(session.context(), query).await)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        one_batch(metadata::table_types(query))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> std::result::Result<Response<DoGetStream>, Status> {
        one_batch(metadata::sql_info(query))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        let session = self.session().await?;
        let rows = match statement_or_query(&session, &command.query)
            .await
            .map_err(status)?
        {
            StatementOrQuery::Ran(rows) => *rows,
            StatementOrQuery::Query(plan) => session.stream_logical(plan).await.map_err(status)?,
        };
        count_updated(rows).await.map_err(status)
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<DoPutPreparedStatementResult, Status> {
        let handle = handle_text(&query.prepared_statement_handle)?;
        if let Some(batch) = parameter_batch(request).await? {
            self.statements.bind(&handle, &batch).map_err(status)?;
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(query.prepared_statement_handle),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> std::result::Result<i64, Status> {
        let handle = handle_text(&query.prepared_statement_handle)?;
        if let Some(batch) = parameter_batch(request).await? {
            self.statements.bind(&handle, &batch).map_err(status)?;
        }
        let rows = match self.statements.bound_statement(&handle).map_err(status)? {
            Some((session, sql)) => session.execute(&sql).await.map_err(status)?,
            None => {
                let (session, plan) = self.statements.bound_plan(&handle).map_err(status)?;
                session.stream_logical(plan).await.map_err(status)?
            }
        };
        count_updated(rows).await.map_err(status)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> std::result::Result<ActionCreatePreparedStatementResult, Status> {
        let session = self.session().await?;
        let prepared = self
            .statements
            .prepare(session, &query.query)
            .await
            .map_err(status)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: prepared.handle.into_bytes().into(),
            dataset_schema: schema_bytes(&prepared.dataset_schema)?,
            parameter_schema: schema_bytes(&prepared.parameter_schema)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> std::result::Result<(), Status> {
        let handle = handle_text(&query.prepared_statement_handle)?;
        self.statements.close(&handle).map_err(status)
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        _request: Request<Action>,
    ) -> std::result::Result<ActionCancelQueryResult, Status> {
        let info = FlightInfo::decode(query.info)
            .map_err(|e| Status::invalid_argument(format!("CancelQuery: {e}")))?;
        // The values of Flight SQL's `CancelResult` (which arrow-flight does not export),
        // the same as those of Flight's `CancelStatus`.
        let result = match self.cancel(&info)? {
            Cancelled::Yes => CancelStatus::Cancelled,
            Cancelled::NotFound => CancelStatus::NotCancellable,
        };
        Ok(ActionCancelQueryResult {
            result: result as i32,
        })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> std::result::Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let action = request.into_inner();
        if action.r#type != CANCEL_FLIGHT_INFO {
            return Err(Status::invalid_argument(format!(
                "unknown action '{}'",
                action.r#type
            )));
        }
        let request = CancelFlightInfoRequest::decode(action.body)
            .map_err(|e| Status::invalid_argument(format!("{CANCEL_FLIGHT_INFO}: {e}")))?;
        let info = request.info.ok_or_else(|| {
            Status::invalid_argument(format!("{CANCEL_FLIGHT_INFO}: no FlightInfo"))
        })?;
        let outcome = match self.cancel(&info)? {
            Cancelled::Yes => CancelStatus::Cancelled,
            Cancelled::NotFound => CancelStatus::NotCancellable,
        };
        let result = CancelFlightInfoResult {
            status: outcome as i32,
        };
        let body = arrow_flight::Result {
            body: result.encode_to_vec().into(),
        };
        Ok(Response::new(Box::pin(futures::stream::once(async move {
            Ok(body)
        }))))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

impl EmberFlightSql {
    /// Cancels the queries named by the tickets of `info`.
    fn cancel(&self, info: &FlightInfo) -> std::result::Result<Cancelled, Status> {
        let mut outcome = Cancelled::NotFound;
        for endpoint in &info.endpoint {
            let Some(ticket) = &endpoint.ticket else {
                continue;
            };
            let any = Any::decode(ticket.ticket.clone())
                .map_err(|e| Status::invalid_argument(format!("a ticket does not decode: {e}")))?;
            let Ok(Some(ticket)) = any.unpack::<TicketStatementQuery>() else {
                continue;
            };
            let handle = handle_text(&ticket.statement_handle)?;
            if self.statements.cancel(&handle) == Cancelled::Yes {
                tracing::info!(query = %handle, "flight sql query cancelled by its client");
                outcome = Cancelled::Yes;
            }
        }
        Ok(outcome)
    }
}

/// A schema in the IPC form Flight SQL carries schemas in.
fn schema_bytes(schema: &SchemaRef) -> std::result::Result<prost::bytes::Bytes, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e| Status::internal(format!("cannot encode a schema: {e}")))?;
    let IpcMessage(bytes) = message;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_the_planner_refuses_is_an_invalid_argument_on_one_line() {
        let e = EmberError::DataFusion(DataFusionError::Plan(
            "table 'nope' not found\nsecond line".into(),
        ));
        let status = status(e);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "table 'nope' not found second line");
    }
}
