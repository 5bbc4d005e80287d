//! The network side of an executor: the Flight service that serves shuffle data
//! ([`flight_server`]) and the client that fetches it ([`flight_client`]), a task's result
//! on the wire ([`task_result`]), and the executor process: its gRPC service, registration
//! and heartbeats ([`server`]). The messages themselves, their conversions and the token
//! and TLS checks are `ember-proto`'s.

pub mod flight_client;
pub mod flight_server;
pub mod server;
pub mod task_result;
