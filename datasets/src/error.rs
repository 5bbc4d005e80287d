//! The crate's error type, [`DatasetError`].

use std::path::PathBuf;

use arrow::error::ArrowError;
use datafusion::parquet::errors::ParquetError;

/// Everything that can go wrong while generating or checking a data set.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// An option passed by the caller is out of range.
    #[error("invalid option `{option}`: {message}")]
    InvalidOption {
        /// The option's name, e.g. `"scale_factor"`.
        option: &'static str,
        /// What is wrong with the value.
        message: String,
    },

    /// A file-system operation failed.
    #[error("I/O error on {}: {source}", .path.display())]
    Io {
        /// The file or folder the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The Parquet writer failed.
    #[error("Parquet error writing {}: {source}", .path.display())]
    Parquet {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: ParquetError,
    },

    /// Building an Arrow record batch failed.
    #[error("Arrow error building a batch of table `{table}`: {source}")]
    Arrow {
        /// The table whose batch was being built.
        table: &'static str,
        /// The underlying error.
        #[source]
        source: ArrowError,
    },

    /// A generator thread panicked.
    #[error("a generator thread panicked: {message}")]
    WorkerPanicked {
        /// The panic payload, when it was a string.
        message: String,
    },
}

impl DatasetError {
    /// Builds an [`DatasetError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
