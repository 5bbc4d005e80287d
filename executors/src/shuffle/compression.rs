//! [`ShuffleCompression`]: the codec of shuffle files.

use std::fmt;
use std::str::FromStr;

use arrow::ipc::CompressionType;

/// Compression of shuffle files (Arrow IPC buffer compression).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShuffleCompression {
    /// LZ4 frames: fast, the default.
    #[default]
    Lz4,
    /// Zstandard: smaller files, more CPU.
    Zstd,
    /// No compression.
    None,
}

impl ShuffleCompression {
    /// The Arrow IPC compression type, if any.
    pub fn ipc(self) -> Option<CompressionType> {
        match self {
            ShuffleCompression::Lz4 => Some(CompressionType::LZ4_FRAME),
            ShuffleCompression::Zstd => Some(CompressionType::ZSTD),
            ShuffleCompression::None => None,
        }
    }
}

impl FromStr for ShuffleCompression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "lz4" => Ok(ShuffleCompression::Lz4),
            "zstd" => Ok(ShuffleCompression::Zstd),
            "none" => Ok(ShuffleCompression::None),
            other => Err(format!(
                "unknown compression '{other}' (expected lz4, zstd or none)"
            )),
        }
    }
}

impl fmt::Display for ShuffleCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShuffleCompression::Lz4 => "lz4",
            ShuffleCompression::Zstd => "zstd",
            ShuffleCompression::None => "none",
        })
    }
}
