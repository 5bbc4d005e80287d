//! The HTTP side of Ember's processes (the scheduler's web UI and REST API, the history
//! server, `/metrics` of schedulers and executors): [`HttpServer`] serves an axum
//! [`Router`] with the same token and TLS as the process's gRPC services.
//!
//! With a token set, every request must carry it: `Authorization: Bearer TOKEN` (scripts,
//! Prometheus), or the `ember_token` cookie that the login form (`POST /login`) sets,
//! HttpOnly and SameSite=Strict, for people in a browser. A request without it gets 401: a
//! page asking for the token where a browser asked for HTML, a one-line text otherwise.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{ProtoError, Result};
use crate::security::ServerSecurity;

/// The cookie the login form sets.
pub const TOKEN_COOKIE: &str = "ember_token";

/// How long a client may take over its TLS handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound HTTP listener, ready to serve a router.
pub struct HttpServer {
    listener: TcpListener,
    address: SocketAddr,
    tls: Option<TlsAcceptor>,
    token: Option<Arc<str>>,
}

impl HttpServer {
    /// Binds `bind` with `security`'s token and TLS; `option` names the command-line option
    /// in errors (`--ui-bind`).
    pub async fn bind(
        bind: SocketAddr,
        security: &ServerSecurity,
        option: &'static str,
    ) -> Result<Self> {
        Self::bind_first_free([bind], security, option)
            .await?
            .ok_or_else(|| ProtoError::Config {
                key: option.into(),
                message: format!("cannot listen on {bind}: the address is in use"),
            })
    }

    /// Binds the first of `addresses` that no other process holds; `None` when all are
    /// taken. A bad certificate or any other failure is an error at once.
    pub async fn bind_first_free(
        addresses: impl IntoIterator<Item = SocketAddr>,
        security: &ServerSecurity,
        option: &'static str,
    ) -> Result<Option<Self>> {
        let tls = match &security.tls {
            Some((cert, key)) => Some(tls_acceptor(cert, key)?),
            None => None,
        };
        for bind in addresses {
            let listener = match TcpListener::bind(bind).await {
                Ok(listener) => listener,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => {
                    return Err(ProtoError::Config {
                        key: option.into(),
                        message: format!("cannot listen on {bind}: {e}"),
                    });
                }
            };
            let address = listener.local_addr().map_err(|e| ProtoError::Config {
                key: option.into(),
                message: e.to_string(),
            })?;
            return Ok(Some(Self {
                listener,
                address,
                tls,
                token: security.token.as_deref().map(Arc::from),
            }));
        }
        Ok(None)
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its base URL: `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }

    /// Serves `router` (with the token check and `/login` added) until `shutdown`.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let secure = self.tls.is_some();
        let router = match self.token.clone() {
            Some(token) => router
                .layer(axum::middleware::from_fn_with_state(
                    Arc::clone(&token),
                    require_token,
                ))
                .route(
                    "/login",
                    axum::routing::post(move |form| login(token, secure, form)),
                ),
            None => router,
        };
        match self.tls {
            None => {
                axum::serve(self.listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            Some(acceptor) => {
                let address = self.address;
                let (ready, handshaken) = tokio::sync::mpsc::channel(64);
                let accepting = tokio::spawn(accept_tls(self.listener, acceptor, ready));
                let listener = TlsListener {
                    handshaken,
                    address,
                };
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await;
                accepting.abort();
                served
            }
        }
    }
}

/// The rustls acceptor of the PEM certificate chain `cert` and private key `key`.
fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor> {
    let read = |path: &std::path::Path, option: &str| {
        std::fs::read(path).map_err(|e| ProtoError::Config {
            key: option.into(),
            message: format!("{}: {e}", path.display()),
        })
    };
    let cert_pem = read(cert, "--tls-cert")?;
    let key_pem = read(key, "--tls-key")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| ProtoError::Config {
            key: "--tls-cert".into(),
            message: format!("{}: {e}", cert.display()),
        })?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| ProtoError::Config {
        key: "--tls-key".into(),
        message: format!("{}: {e}", key.display()),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|builder| {
        builder
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
    })
    .map_err(|e| ProtoError::Config {
        key: "--tls-cert".into(),
        message: format!("{}: {e}", cert.display()),
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// Accepts TCP connections and shakes hands with each in a task of its own (a client
/// that connects and says nothing holds up no other), passing on those that finish.
async fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: tokio::sync::mpsc::Sender<(TlsStream, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accepting an HTTP connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// The connections whose TLS handshake is done, as axum's listener.
struct TlsListener {
    handshaken: tokio::sync::mpsc::Receiver<(TlsStream, SocketAddr)>,
    address: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            // The accepting task is gone only when the server stops.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.address)
    }
}

/// Whether `headers` carry `token`, as a bearer header or the login cookie.
pub fn carries_token(headers: &HeaderMap, token: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| same(given, token));
    bearer
        || headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == TOKEN_COOKIE && same(value, token))
}

/// Compares without stopping at the first difference.
fn same(given: &str, token: &str) -> bool {
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    if carries_token(request.headers(), &token) {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    tracing::debug!(path = %request.uri().path(), %peer, "refused an HTTP request without the auth token");
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if wants_html {
        (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            LOGIN_PAGE,
        )
            .into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "401 Unauthorized: this server needs the cluster's auth token (Authorization: Bearer TOKEN)\n",
        )
            .into_response()
    }
}

/// The login form's fields.
#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(token: Arc<str>, secure: bool, form: axum::Form<LoginForm>) -> Response {
    if !same(&form.token, &token) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            LOGIN_PAGE.replace("<!--error-->", "<p class=\"error\">Wrong token.</p>"),
        )
            .into_response();
    }
    let cookie = format!(
        "{TOKEN_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/{}",
        form.token,
        if secure { "; Secure" } else { "" }
    );
    let mut response = Redirect::to("/").into_response();
    match HeaderValue::from_str(&cookie) {
        Ok(value) => {
            response.headers_mut().insert(header::SET_COOKIE, value);
            response
        }
        Err(_) => (
            StatusCode::BAD_REQUEST,
            "the token must be printable ASCII\n",
        )
            .into_response(),
    }
}

/// The page a browser gets without the token: a form that posts it to `/login`.
const LOGIN_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Ember: sign in</title>
<style>body{font:15px system-ui,sans-serif;margin:4em auto;max-width:28em;color:#222}
input{font:inherit;padding:.4em;width:100%;box-sizing:border-box;margin:.5em 0}
button{font:inherit;padding:.4em 1.2em}.error{color:#c0392b}</style></head>
<body><h1>Ember</h1><p>This cluster needs its auth token.</p><!--error-->
<form method="post" action="/login"><label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus>
<button type="submit">Sign in</button></form></body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_taken_from_a_bearer_header_or_the_cookie() {
        let mut headers = HeaderMap::new();
        assert!(!carries_token(&headers, "s3cret"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert!(!carries_token(&headers, "s3cret"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ember_token=s3cret"),
        );
        assert!(carries_token(&headers, "s3cret"));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(carries_token(&headers, "s3cret"));
        assert!(!carries_token(&headers, "s3cre"));
    }
}
