//! The connectors' one error type: each names the table, topic or database it is about.

use datafusion::error::DataFusionError;

/// What went wrong in a connector.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A Delta table that is missing, unreadable or refuses a write.
    #[error("Delta table {location}: {message}")]
    Delta {
        /// The table's location as the user gave it.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A PostgreSQL server, table or query that failed.
    #[error("PostgreSQL {target}: {message}")]
    Postgres {
        /// The server and table (`HOST:PORT/DB table`), never the password.
        target: String,
        /// What is wrong.
        message: String,
    },
    /// A Kafka broker, topic or partition that failed.
    #[error("Kafka {target}: {message}")]
    Kafka {
        /// `topic T` or `topic T partition P`.
        target: String,
        /// What is wrong.
        message: String,
    },
    /// An option of a connector that is missing or malformed.
    #[error("invalid option {key}: {message}")]
    Option {
        /// The option's name.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// DataFusion failed underneath.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

/// The connectors' result.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

impl From<ConnectorError> for DataFusionError {
    fn from(e: ConnectorError) -> Self {
        match e {
            ConnectorError::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}
