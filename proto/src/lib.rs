//! `ember-proto`: the wire between Ember's processes.
//!
//! - [`pb`]: the gRPC messages and services generated from `ember.proto` (the scheduler's
//!   and the executors' control calls; shuffle data goes over Arrow Flight with a
//!   [`pb::ShuffleTicket`]).
//! - [`ids`]: typed ids ([`JobId`], [`StageId`], [`PartitionId`], [`TaskId`],
//!   [`ExecutorId`]).
//! - [`task`]: what travels between scheduler and executor ([`TaskDefinition`] in,
//!   [`TaskOutput`] out, and the [`ShuffleLocation`]s that connect stages), and
//!   [`convert`] between those and their messages.
//! - [`http`]: the HTTP server of the web UI and `/metrics`, with the same token and TLS.
//! - [`security`]: the token check of every call and TLS; [`ticket`]: the layout of
//!   shuffle pieces and the check a Flight ticket passes.
//!
//! It holds no engine: no DataFusion, no executor, no scheduler, so each of those can
//! depend on it without depending on one another.

pub mod convert;
mod error;
pub mod http;
pub mod ids;
pub mod pb;
pub mod security;
pub mod task;
pub mod ticket;

pub use error::{ProtoError, Result};
pub use ids::{ExecutorId, JobId, PartitionId, StageId, TaskId, new_job_id};
pub use task::{AccumulatorValue, ShuffleLocation, TaskDefinition, TaskOutput, TaskPhases};
pub use ticket::is_plain_name;

/// The largest gRPC message accepted or sent (task plans with many inputs, broadcasts,
/// shuffle pieces sent one record batch per message), by servers and clients alike.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;
