//! Where data lives outside plain files: Delta Lake tables ([`delta`]) and PostgreSQL
//! tables ([`postgres`]).

pub mod delta;
pub mod error;
pub mod kafka;
pub mod postgres;

pub use error::{ConnectorError, Result};
