//! The gRPC messages, clients and servers generated from `ember.proto` at build time.

#![allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]

tonic::include_proto!("ember");
