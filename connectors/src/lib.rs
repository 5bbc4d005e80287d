//! Where data lives outside plain files: Delta Lake tables ([`delta`]), Kafka topics
//! ([`kafka`]) and PostgreSQL tables ([`postgres`]), and what their task plan nodes share
//! ([`task`]).

pub mod delta;
pub mod error;
pub mod kafka;
pub mod postgres;
pub mod task;

pub use error::{ConnectorError, Result};
