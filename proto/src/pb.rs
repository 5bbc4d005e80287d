//! The gRPC messages, clients and servers generated from `ember.proto` at build time.

#![allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]

tonic::include_proto!("ember");

/// The client of the part of etcd's v3 API in `etcd.proto` (keys and leases), for the
/// scheduler's state store and leader election.
pub mod etcd {
    #![allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]

    tonic::include_proto!("etcdserverpb");
}
