//! The wire's error type: a setting that cannot be used (a token, a certificate, a URL)
//! or a peer that cannot be reached.

/// Result type of `ember-proto`.
pub type Result<T, E = ProtoError> = std::result::Result<T, E>;

/// What can go wrong while setting up a connection or a server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// An option (`--auth-token`, `--tls-cert`, a URL, ...) cannot be used.
    #[error("invalid setting {key}: {message}")]
    Config {
        /// The option or setting.
        key: String,
        /// Why it was refused.
        message: String,
    },
    /// A server could not be reached.
    #[error("cannot reach {address}: {message}")]
    Unreachable {
        /// Its URL.
        address: String,
        /// Why.
        message: String,
    },
}
