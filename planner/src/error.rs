//! The planner's error type: what went wrong while cutting a plan into stages or moving a
//! plan across the wire.

use datafusion::error::DataFusionError;

/// Result type of the planner.
pub type Result<T, E = PlannerError> = std::result::Result<T, E>;

/// Everything that can go wrong in `ember-planner`.
#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    /// The physical plan uses an operator or mode that Ember cannot split into stages.
    #[error("cannot plan stages: {message}")]
    Unsupported {
        /// What was found and why it cannot be cut.
        message: String,
    },
    /// A plan failed to serialize or deserialize.
    #[error("plan codec error while {action}: {source}")]
    Codec {
        /// What the codec was doing (for example "decoding ShuffleReaderExec").
        action: &'static str,
        /// The underlying failure.
        #[source]
        source: DataFusionError,
    },
    /// DataFusion reported an error while the planner rewrote the plan.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

impl PlannerError {
    /// Wraps this error for a DataFusion API boundary, so it can be downcast back later.
    pub fn into_datafusion(self) -> DataFusionError {
        match self {
            PlannerError::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

/// Returns early with [`PlannerError::Unsupported`] and a formatted message.
#[macro_export]
macro_rules! unsupported {
    ($($arg:tt)*) => {
        return Err($crate::PlannerError::Unsupported { message: format!($($arg)*) })
    };
}
