//! What the `ember` subcommands share: the cluster and security options ([`ClusterArgs`],
//! [`SecurityArgs`], [`ServerTlsArgs`]), the session they open ([`new_session`]), and how
//! they print results, bad-row counts and the end of a progress bar. A leaf of `cli`: the
//! subcommand modules use it without depending on `cli` itself.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::cluster::Cluster;
use crate::progress::ProgressBar;
use crate::{EmberConfig, FunctionRegistry, OutputFormat, QueryResult, Session, write_result};
use ember_proto::security::check_exposure_of;
use ember_proto::security::{ClientSecurity, ServerSecurity};
use ember_scheduler::ui::{DEFAULT_UI_PORT, LiveSource, UiBind, bind_ui, serve};
use std::net::SocketAddr;

/// Authentication and TLS options shared by every process and client.
#[derive(Args, Clone)]
pub(super) struct SecurityArgs {
    /// Shared-secret token that every gRPC and Flight call must carry.
    #[arg(
        long,
        env = "EMBER_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(super) auth_token: Option<String>,
    /// PEM file of the CA that signed the cluster's certificates (for https:// URLs).
    #[arg(long, env = "EMBER_TLS_CA", value_name = "PEM")]
    pub(super) tls_ca: Option<PathBuf>,
}

impl SecurityArgs {
    pub(super) fn client(&self) -> ClientSecurity {
        ClientSecurity {
            token: self.auth_token.clone().filter(|t| !t.is_empty()),
            ca: self.tls_ca.clone(),
        }
    }

    pub(super) fn server(&self, tls: &ServerTlsArgs) -> ServerSecurity {
        ServerSecurity {
            token: self.auth_token.clone().filter(|t| !t.is_empty()),
            tls: tls.tls_cert.clone().zip(tls.tls_key.clone()),
        }
    }
}

/// The certificate a server presents, and whether it may serve other hosts without a token.
#[derive(Args, Clone)]
pub(super) struct ServerTlsArgs {
    /// PEM certificate chain to serve TLS with (needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub(super) tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub(super) tls_key: Option<PathBuf>,
    /// Listen on a non-loopback address without --auth-token: anyone who reaches it can
    /// register executors and run jobs (a warning is logged).
    #[arg(long)]
    pub(super) allow_unauthenticated: bool,
}

/// The options that choose and shape the cluster a command runs on: the embedded one
/// (`--executors`, `--slots`, `--memory-limit`) or a process cluster (`--scheduler`), and
/// settings for its jobs (`--conf`, `--bad-rows`, `--mode`, ...). Flatten it into a job's
/// options (`#[command(flatten)]`) and open the session with
/// [`JobContext::session`](super::JobContext::session).
#[derive(Args, Clone)]
pub struct ClusterArgs {
    /// Executors of the embedded cluster (default: number of cores).
    #[arg(long, value_name = "N")]
    pub executors: Option<usize>,
    /// Task slots per executor (default 1).
    #[arg(long, value_name = "N")]
    pub slots: Option<usize>,
    /// Any setting as KEY=VALUE (see `ember config`); repeatable.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
    /// Memory each executor of the embedded cluster may hold (such as 512M) before it
    /// spills; on a process cluster, plans for executors started with this limit (smaller
    /// broadcast sides and coalesced tasks).
    #[arg(long, value_name = "SIZE")]
    pub memory_limit: Option<String>,
    /// CSV and JSON rows that do not parse: fail (naming file and line), skip (counted),
    /// or quarantine=PATH (written there with file, line and reason, counted). With this
    /// option CSV and JSON inputs are read record by record.
    #[arg(long, value_name = "POLICY")]
    pub bad_rows: Option<String>,
    /// What writes (COPY ... TO, --out) do when the destination holds files: error (the
    /// default), overwrite (replace them once the new files are committed) or append.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// Copy map outputs to this object-store URL (such as s3://bucket/shuffle), where they
    /// outlive the executor that wrote them (`ember.shuffle.dir`).
    #[arg(long, value_name = "URL")]
    pub shuffle_dir: Option<String>,
    /// Append each job's scheduler events as JSON lines to DIR/JOB_ID.jsonl (a folder or
    /// an object-store URL), for `ember history` (`ember.eventlog.dir`). Embedded cluster
    /// only: a scheduler process logs with its own --event-log.
    #[arg(long, value_name = "DIR")]
    pub event_log: Option<String>,
    /// Run on the process cluster of this scheduler instead of an embedded one.
    #[arg(long, env = "EMBER_SCHEDULER", value_name = "URL")]
    pub scheduler: Option<String>,
    /// Serve the embedded cluster's web UI (jobs, stage graphs, tasks, executors) while the
    /// command runs, on 127.0.0.1:4040 (or the next free port) or on --ui=ADDR; its URL is
    /// printed on stderr. A process cluster's scheduler serves its own (`ember scheduler
    /// --ui-bind`).
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = "127.0.0.1:4040",
        require_equals = true
    )]
    pub ui: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub(super) security: SecurityArgs,
}

impl ClusterArgs {
    /// The settings these options make (`--conf` pairs first, then the named options).
    pub fn config(&self) -> crate::Result<EmberConfig> {
        let mut config = EmberConfig::default();
        for pair in &self.conf {
            config.set_pair(pair)?;
        }
        if let Some(n) = self.executors {
            config.set("ember.executors", &n.to_string())?;
        }
        if let Some(n) = self.slots {
            config.set("ember.executor.slots", &n.to_string())?;
        }
        if let Some(size) = &self.memory_limit {
            config.set("ember.executor.memory_limit", size)?;
        }
        if let Some(policy) = &self.bad_rows {
            config.set("ember.input.bad_rows", policy)?;
        }
        if let Some(mode) = &self.mode {
            config.set("ember.output.mode", mode)?;
        }
        if let Some(dir) = &self.shuffle_dir {
            config.set("ember.shuffle.dir", dir)?;
        }
        if let Some(dir) = &self.event_log {
            config.set("ember.eventlog.dir", dir)?;
        }
        Ok(config)
    }
}

/// A session on the embedded cluster, or on the process cluster of `--scheduler`, with a
/// progress bar when stderr is a terminal. Its jobs call the functions of `functions`, the
/// registry of the binary that runs the command.
pub(super) async fn new_session(
    cluster: &ClusterArgs,
    functions: &FunctionRegistry,
) -> anyhow::Result<(Session, Option<Arc<ProgressBar>>)> {
    let config = cluster.config()?;
    if cluster.ui.is_some() && cluster.scheduler.is_some() {
        anyhow::bail!(
            "invalid setting --ui: it serves the embedded cluster's web UI; a process \
             cluster's scheduler serves its own (ember scheduler --ui-bind ADDR)"
        );
    }
    let functions = functions.clone();
    let mut session = match &cluster.scheduler {
        Some(url) => {
            Session::connect_with_functions(url, cluster.security.client(), config, functions)
                .await?
        }
        None => Session::with_functions(config, functions)?,
    };
    if let (Some(address), Cluster::Local(local)) = (cluster.ui, session.cluster()) {
        let security = ServerSecurity {
            token: cluster.security.client().token,
            tls: None,
        };
        check_exposure_of("--ui", address, &security, false)?;
        let bind = UiBind {
            address,
            explicit: address != SocketAddr::from(([127, 0, 0, 1], DEFAULT_UI_PORT)),
        };
        if let Some(server) = bind_ui(bind, &security).await? {
            eprintln!(
                "ember web UI at {} (up while this command runs)",
                server.url()
            );
            let source = Arc::new(LiveSource::new(
                Arc::clone(local.scheduler().board()),
                Arc::clone(local.scheduler().pool()),
            ));
            tokio::spawn(async move {
                if let Err(e) = serve(server, source, std::future::pending()).await {
                    tracing::warn!("the web UI stopped: {e}");
                }
            });
        }
    }
    let bar = ProgressBar::for_terminal().map(Arc::new);
    if let Some(bar) = &bar {
        session.set_listener(Arc::clone(bar) as Arc<dyn ember_scheduler::JobListener>);
    }
    Ok((session, bar))
}

/// Writes a query's rows to stdout.
pub fn print_result(result: &QueryResult, format: OutputFormat) -> crate::Result<()> {
    write_result(
        &mut std::io::stdout().lock(),
        &result.schema,
        &result.batches,
        format,
    )
}

/// Says how many bad input rows were skipped or quarantined, under those policies.
pub fn report_bad_rows(session: &Session) {
    match &session.config().bad_rows {
        Some(crate::BadRows::Skip) => eprintln!("skipped {} bad rows", session.bad_rows()),
        Some(crate::BadRows::Quarantine(dir)) => eprintln!(
            "quarantined {} bad rows in {}",
            session.bad_rows(),
            dir.display()
        ),
        _ => {}
    }
}

/// Clears the progress bar, if one is drawn, before results or errors print.
pub fn finish_progress(bar: Option<&ProgressBar>) {
    if let Some(bar) = bar {
        bar.finish();
    }
}

/// Prints a line on stdout for whoever started the process; a closed stdout is no reason
/// for a server to stop.
pub(super) fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Resolves on Ctrl-C or SIGTERM.
pub(super) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
