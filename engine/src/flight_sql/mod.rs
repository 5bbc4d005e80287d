//! An Arrow Flight SQL endpoint on the scheduler (`ember scheduler --flight-sql-bind ADDR`),
//! so that tools that speak Flight SQL (the ADBC and JDBC drivers, BI clients, notebooks)
//! run SQL on the cluster.
//!
//! ```text
//!  client ──GetFlightInfo(SQL)──▶ plan it, keep the plan under a handle
//!         ◀── FlightInfo ──────── schema, ticket = the handle
//!         ──DoGet(ticket)───────▶ take the plan, run it as a job through a Session
//!                                 connected to this scheduler
//!         ◀── FlightData ──────── its ResultStream, batch by batch as the client reads
//! ```
//!
//! Statements run through a [`Session`](crate::Session) connected to the scheduler's own
//! gRPC address, so their jobs take the same path as any client's: the scheduler cancels a
//! job whose client goes away, and a result stream that is dropped (the Flight SQL client
//! disconnected) releases its files. [`FlightSqlSessions`] builds that session, the one
//! place that decides which tables Flight SQL clients see. Calls need `authorization:
//! Bearer TOKEN` when the scheduler has a token, and TLS is the scheduler's.

mod metadata;
mod service;
mod sessions;
mod statements;

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use ember_proto::ProtoError;
use ember_proto::security::{ClientSecurity, ServerSecurity, accept, check_exposure, error_chain};
use tonic::service::interceptor::InterceptedService;

pub use service::EmberFlightSql;
pub use sessions::{FlightSqlSessions, flight_sql_session};

use crate::error::{EmberError, Result};
use crate::tables::TableSpec;

/// How the Flight SQL endpoint is set up.
#[derive(Debug, Clone)]
pub struct FlightSqlConfig {
    /// The address to listen on (port 0 picks one).
    pub bind: SocketAddr,
    /// Tables every statement sees (`--table` on the scheduler).
    pub tables: Vec<TableSpec>,
    /// What callers must present (the scheduler's token), and the TLS identity.
    pub server: ServerSecurity,
    /// How the endpoint's session reaches the scheduler (its token and CA).
    pub client: ClientSecurity,
    /// Serve on a non-loopback address without a token.
    pub allow_unauthenticated: bool,
}

/// A Flight SQL endpoint whose address is bound and that serves once the scheduler listens.
pub struct FlightSqlServer {
    config: FlightSqlConfig,
    listener: tokio::net::TcpListener,
    bound: SocketAddr,
}

impl FlightSqlServer {
    /// Checks the address against the safe-defaults rule (as `--bind` does) and binds it,
    /// so that a refused or busy address fails before the scheduler starts.
    pub async fn bind(config: FlightSqlConfig) -> Result<Self> {
        check_exposure(config.bind, &config.server, config.allow_unauthenticated).map_err(|e| {
            match e {
                ProtoError::Config { message, .. } => EmberError::Config {
                    key: "--flight-sql-bind".into(),
                    message,
                },
                other => EmberError::Executor(other.into()),
            }
        })?;
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|e| EmberError::Config {
                key: "--flight-sql-bind".into(),
                message: format!("cannot listen on {}: {e}", config.bind),
            })?;
        let bound = listener.local_addr().map_err(|e| EmberError::Config {
            key: "--flight-sql-bind".into(),
            message: e.to_string(),
        })?;
        Ok(Self {
            config,
            listener,
            bound,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.bound
    }

    /// Serves Flight SQL until `shutdown` resolves, running statements on the scheduler
    /// that listens at `scheduler`.
    pub async fn serve(
        self,
        scheduler: SocketAddr,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let url = scheduler_url(scheduler, self.config.server.tls.is_some());
        let sessions = FlightSqlSessions::new(url, self.config.client.clone(), self.config.tables);
        let service = EmberFlightSql::new(Arc::new(sessions))?;
        let mut builder = self.config.server.server_builder()?;
        let router = builder.add_service(InterceptedService::new(
            FlightServiceServer::new(service),
            self.config.server.interceptor("flight-sql"),
        ));
        tracing::info!(address = %self.bound, "flight sql listening");
        router
            .serve_with_incoming_shutdown(accept(self.listener), shutdown)
            .await
            .map_err(|e| EmberError::Cluster {
                message: format!("the Flight SQL server stopped: {}", error_chain(&e)),
            })
    }
}

/// The URL this process reaches its own scheduler at: the bound address, with loopback
/// for an unspecified one (`0.0.0.0`).
fn scheduler_url(address: SocketAddr, tls: bool) -> String {
    let mut address = address;
    if address.ip().is_unspecified() {
        let loopback: std::net::IpAddr = if address.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        address.set_ip(loopback);
    }
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{address}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheduler_is_reached_on_loopback_when_it_binds_every_address() {
        let any: SocketAddr = "0.0.0.0:50050".parse().expect("an address");
        assert_eq!(scheduler_url(any, false), "http://127.0.0.1:50050");
        let own: SocketAddr = "10.1.2.3:7".parse().expect("an address");
        assert_eq!(scheduler_url(own, true), "https://10.1.2.3:7");
    }
}
