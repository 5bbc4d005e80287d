//! The web UI, the REST API and `/metrics` of a scheduler, and the same pages over a
//! folder of event logs (the history server).
//!
//! ```text
//!  job loop ──events──▶ JobBoard ─┐                       ┌─▶ pages   (HTML, SVG)
//!                                 ├─▶ UiSource ──▶ JobView ┼─▶ /api/v1 (JSON)
//!  event logs ──parse──▶ History ─┘   (live or   (no I/O)  └─▶ /metrics (scheduler)
//!                                      logged)
//! ```
//!
//! A job is its log either way (a [`LoggedJob`](crate::LoggedJob): header and timed
//! events): the board holds the live ones as the job loop feeds them, the history source
//! reads them from files. [`JobView`] works out everything shown from a log alone, so a
//! page of the history server equals the scheduler's page of the same job.

mod board;
mod metrics;
mod pages;
mod server;
mod source;
mod view;

pub use board::{BoardEntry, JobBoard, KEEP_FINISHED, ShownJob};
pub use metrics::{SchedulerMetrics, TaskTotals};
pub use pages::{TASKS_PER_PAGE, utc};
pub use server::router;
pub use source::{ExecutorRow, HistorySource, LiveSource, UiSource};
pub use view::{
    ExecutorActivity, JobStatus, JobSummary, JobView, Quantiles, StageQuantiles, StageView,
    TaskRow, TaskStatus, quantiles,
};

use std::net::SocketAddr;
use std::sync::Arc;

use ember_proto::http::HttpServer;
use ember_proto::security::ServerSecurity;

use crate::error::{Result, SchedulerError};

/// Where a scheduler serves its web UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UiBind {
    /// The address.
    pub address: SocketAddr,
    /// Whether it was asked for: then a refused address is an error. The default one
    /// (`127.0.0.1:4040`) is taken by another process? The next 16 ports are tried, as
    /// Spark does, and then the scheduler runs without its UI, with a warning.
    pub explicit: bool,
}

/// The port of the default UI address.
pub const DEFAULT_UI_PORT: u16 = 4040;

/// Binds the UI's address (see [`UiBind`]); `None` where the default ports are all taken.
pub async fn bind_ui(bind: UiBind, security: &ServerSecurity) -> Result<Option<HttpServer>> {
    let tries: u16 = if bind.explicit || bind.address.port() == 0 {
        1
    } else {
        17
    };
    let addresses = (0..tries).map(|step| {
        let mut address = bind.address;
        address.set_port(bind.address.port().saturating_add(step));
        address
    });
    let server = HttpServer::bind_first_free(addresses, security, "--ui-bind").await?;
    match server {
        Some(server) => Ok(Some(server)),
        None if bind.explicit => Err(SchedulerError::Config {
            key: "--ui-bind".into(),
            message: format!("cannot listen on {}: the address is in use", bind.address),
        }),
        None => {
            tracing::warn!(
                "no web UI: {} and the 16 ports after it are in use; set --ui-bind",
                bind.address
            );
            Ok(None)
        }
    }
}

/// Serves the pages of `source` on `server` until `shutdown`.
pub async fn serve(
    server: HttpServer,
    source: Arc<dyn UiSource>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server.serve(router(source), shutdown).await
}
