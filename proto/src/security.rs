//! Authentication and TLS for every gRPC and Flight call.
//!
//! With a shared-secret token configured, servers refuse (and log) any call whose
//! `authorization` header is not `Bearer TOKEN`; clients attach the header to every call.
//! With a certificate and key, servers speak TLS (rustls); clients trust the CA they are
//! given, or the system's roots when none is.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};
use tonic::{Request, Status};

use crate::error::{ProtoError, Result};

/// The environment variable that holds the shared-secret token.
pub const AUTH_TOKEN_ENV: &str = "EMBER_AUTH_TOKEN";

/// How long a client waits to open a connection before it calls the peer unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a client pings a connection that carries no data.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long a client waits for the answer to a ping before it drops the connection. The
/// servers answer pings from a runtime that task work cannot starve, but the caller's own
/// runtime may be busy on an oversubscribed machine: the margin is wide, since liveness
/// is decided by heartbeats, not by this.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP/2 flow-control window of one stream: shuffle pieces are megabytes, and the
/// default 64 KiB would make every fetch wait for window updates.
const STREAM_WINDOW: u32 = 8 << 20;

/// HTTP/2 flow-control window of a whole connection (several fetches share one).
const CONNECTION_WINDOW: u32 = 32 << 20;

/// The connections a listener accepts, with Nagle's algorithm off: gRPC answers are small
/// writes that must not wait for the peer's delayed acknowledgement.
pub fn accept(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|stream| {
        let stream = stream?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// What a server requires of its callers and how it presents itself.
#[derive(Debug, Clone, Default)]
pub struct ServerSecurity {
    /// The token every call must carry; `None` accepts every call.
    pub token: Option<String>,
    /// PEM certificate chain and private key to serve TLS with.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl ServerSecurity {
    /// The rustls configuration of the server, if TLS is on.
    pub fn tls_config(&self) -> Result<Option<ServerTlsConfig>> {
        install_crypto_provider();
        let Some((cert, key)) = &self.tls else {
            return Ok(None);
        };
        let identity =
            Identity::from_pem(read_pem(cert, "--tls-cert")?, read_pem(key, "--tls-key")?);
        Ok(Some(ServerTlsConfig::new().identity(identity)))
    }

    /// A server builder with TLS (when configured) and the flow-control windows of a bulk
    /// data server.
    pub fn server_builder(&self) -> Result<Server> {
        let mut builder = Server::builder()
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW);
        if let Some(tls) = self.tls_config()? {
            builder = builder.tls_config(tls).map_err(|e| ProtoError::Config {
                key: "--tls-cert".into(),
                message: error_chain(&e),
            })?;
        }
        Ok(builder)
    }

    /// The interceptor that checks the token of every incoming call.
    pub fn interceptor(&self, service: &'static str) -> TokenCheck {
        TokenCheck {
            expected: self.token.as_ref().map(|t| format!("Bearer {t}")),
            service,
        }
    }
}

/// Refuses to serve on an address other machines can reach without a token, unless
/// `allow_unauthenticated` says so (and then warns): anyone who can reach an open
/// scheduler can register a fake executor and receive tasks with their settings, or run
/// jobs. Loopback addresses are open to this machine's users only.
pub fn check_exposure(
    bind: std::net::SocketAddr,
    server: &ServerSecurity,
    allow_unauthenticated: bool,
) -> Result<()> {
    check_exposure_of("--bind", bind, server, allow_unauthenticated)
}

/// [`check_exposure`] of the address given with `option` (`--ui-bind`, `--metrics-bind`),
/// which its error names.
pub fn check_exposure_of(
    option: &str,
    bind: std::net::SocketAddr,
    server: &ServerSecurity,
    allow_unauthenticated: bool,
) -> Result<()> {
    if bind.ip().is_loopback() || server.token.is_some() {
        return Ok(());
    }
    if allow_unauthenticated {
        tracing::warn!(
            address = %bind,
            "serving on a non-loopback address without an auth token: anyone who can reach \
             it can run jobs and register executors"
        );
        return Ok(());
    }
    Err(ProtoError::Config {
        key: option.into(),
        message: format!(
            "refusing to listen on {bind} without an auth token: set --auth-token (or \
             {AUTH_TOKEN_ENV}) on every process of the cluster, bind a loopback address such \
             as 127.0.0.1, or pass --allow-unauthenticated"
        ),
    })
}

/// Checks the `authorization` header of incoming calls against the configured token.
#[derive(Debug, Clone)]
pub struct TokenCheck {
    expected: Option<String>,
    service: &'static str,
}

impl Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> std::result::Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let peer = request
            .remote_addr()
            .map_or_else(|| "an unknown peer".to_string(), |a| a.to_string());
        match given {
            Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(request),
            Some(_) => {
                tracing::warn!(service = self.service, %peer, "refused a call with a wrong auth token");
                Err(Status::unauthenticated("wrong auth token"))
            }
            None => {
                tracing::warn!(service = self.service, %peer, "refused a call without an auth token");
                Err(Status::unauthenticated("missing auth token"))
            }
        }
    }
}

/// Compares two secrets in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How a client authenticates and which servers it trusts.
#[derive(Debug, Clone, Default)]
pub struct ClientSecurity {
    /// The token to send with every call.
    pub token: Option<String>,
    /// PEM file of the CA that signed the servers' certificates (for `https://` URLs).
    pub ca: Option<PathBuf>,
}

impl ClientSecurity {
    /// The interceptor that adds the token to every outgoing call.
    pub fn interceptor(&self) -> Result<AddToken> {
        let header = match &self.token {
            Some(token) => Some(MetadataValue::try_from(format!("Bearer {token}")).map_err(
                |_| ProtoError::Config {
                    key: "--auth-token".into(),
                    message: "the token must be printable ASCII".into(),
                },
            )?),
            None => None,
        };
        Ok(AddToken { header })
    }

    /// The `authorization` header value, for clients that set headers themselves (Flight).
    pub fn header(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    /// An endpoint for `url` (`http://host:port` or `https://host:port`), with TLS set up
    /// for `https`.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint> {
        install_crypto_provider();
        let bad_url = |message: String| ProtoError::Config {
            key: "url".into(),
            message: format!("{url}: {message}"),
        };
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| bad_url(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            // A peer that stops answering (hung, or cut off) breaks the connection, and
            // the calls on it fail instead of waiting forever.
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW);
        if url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            tls = match &self.ca {
                Some(ca) => tls.ca_certificate(Certificate::from_pem(read_pem(ca, "--tls-ca")?)),
                None => tls.with_enabled_roots(),
            };
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| bad_url(e.to_string()))?;
        } else if !url.starts_with("http://") {
            return Err(bad_url("expected an http:// or https:// URL".into()));
        }
        Ok(endpoint)
    }

    /// Opens a connection to `url`.
    pub async fn connect(&self, url: &str) -> Result<Channel> {
        self.endpoint(url)?
            .connect()
            .await
            .map_err(|e| ProtoError::Unreachable {
                address: url.to_string(),
                message: error_chain(&e),
            })
    }
}

/// Adds the `authorization` header to outgoing calls.
#[derive(Debug, Clone)]
pub struct AddToken {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Interceptor for AddToken {
    fn call(&mut self, mut request: Request<()>) -> std::result::Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

fn read_pem(path: &Path, option: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| ProtoError::Config {
        key: option.to_string(),
        message: format!("cannot read {}: {e}", path.display()),
    })
}

/// Whether `error` or one of its sources is an [`std::io::Error`] of kind
/// `ConnectionRefused`: nothing listens at the peer's address any more.
pub fn is_connection_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// An error with its sources, on one line (transport errors hide the useful part there).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

/// Makes ring rustls's process-wide crypto provider, once. tonic's TLS configs take the
/// process default, and with both of rustls's providers compiled in (the Delta Lake
/// connector's HTTP stack brings aws-lc-rs) rustls will not choose one by itself.
pub fn install_crypto_provider() {
    // An error only says a provider is installed already.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(check: &mut TokenCheck, header: Option<&str>) -> std::result::Result<(), tonic::Code> {
        let mut request = Request::new(());
        if let Some(h) = header {
            request
                .metadata_mut()
                .insert("authorization", MetadataValue::try_from(h).expect("ascii"));
        }
        check.call(request).map(|_| ()).map_err(|s| s.code())
    }

    #[test]
    fn the_token_check_refuses_missing_and_wrong_tokens() {
        let security = ServerSecurity {
            token: Some("s3cret".into()),
            tls: None,
        };
        let mut check = security.interceptor("test");
        assert_eq!(call(&mut check, Some("Bearer s3cret")), Ok(()));
        assert_eq!(
            call(&mut check, Some("Bearer s3cre")),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(call(&mut check, None), Err(tonic::Code::Unauthenticated));
        let mut open = ServerSecurity::default().interceptor("test");
        assert_eq!(call(&mut open, None), Ok(()));
    }
}
