//! The network side of an executor: the gRPC messages of `proto/ember.proto` and their
//! conversions ([`proto`], [`convert`]), authentication and TLS for every call
//! ([`security`]), the Flight service that serves shuffle data ([`flight_server`]) and the
//! client that fetches it ([`flight_client`]), and the executor process: its gRPC service,
//! registration and heartbeats ([`server`]).

pub mod convert;
pub mod flight_client;
pub mod flight_server;
pub mod security;
pub mod server;

/// The largest gRPC message accepted or sent (task plans with many inputs, broadcasts,
/// shuffle pieces sent one record batch per message), by servers and clients alike.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// The generated gRPC messages, clients and servers of `proto/ember.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod proto {
    tonic::include_proto!("ember");
}
