//! [`ShuffleCompression`]: the codec of shuffle files.

use std::fmt;
use std::str::FromStr;

use arrow::ipc::CompressionType;

/// Compression of shuffle files (Arrow IPC buffer compression).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShuffleCompression {
    /// The default: LZ4 when the task's shuffle data may cross machines (its cluster's
    /// executors are on more than one host, or map outputs go to a shared shuffle
    /// directory) or the executor has a memory limit, none otherwise: when every reader is
    /// on this host, compressing costs CPU and saves nothing that matters (see
    /// [`ShuffleCompression::resolve`]).
    #[default]
    Auto,
    /// LZ4 frames: fast.
    Lz4,
    /// Zstandard: smaller files, more CPU.
    Zstd,
    /// No compression.
    None,
}

impl ShuffleCompression {
    /// The codec a task writes with: `Auto` becomes LZ4 when `compress` (its output may
    /// leave this host, or its executor has a memory limit) and none otherwise; the
    /// others stay as they are.
    pub fn resolve(self, compress: bool) -> ShuffleCompression {
        match self {
            ShuffleCompression::Auto if compress => ShuffleCompression::Lz4,
            ShuffleCompression::Auto => ShuffleCompression::None,
            chosen => chosen,
        }
    }

    /// The Arrow IPC compression type, if any (`Auto` unresolved: none).
    pub fn ipc(self) -> Option<CompressionType> {
        match self {
            ShuffleCompression::Lz4 => Some(CompressionType::LZ4_FRAME),
            ShuffleCompression::Zstd => Some(CompressionType::ZSTD),
            ShuffleCompression::None | ShuffleCompression::Auto => None,
        }
    }
}

/// Whether the executors at `addresses` (`host:port` or `scheme://host:port`) are on more
/// than one host. Names are compared as written: `localhost` and `127.0.0.1` count as two,
/// which errs towards compressing.
pub fn spans_hosts<'a>(addresses: impl IntoIterator<Item = &'a str>) -> bool {
    let mut first: Option<&str> = None;
    for address in addresses {
        let host = host_of(address);
        match first {
            None => first = Some(host),
            Some(seen) if seen != host => return true,
            Some(_) => {}
        }
    }
    false
}

/// The host part of `host:port`, `scheme://host:port` or `[v6]:port`.
pub(crate) fn host_of(address: &str) -> &str {
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    }
}

impl FromStr for ShuffleCompression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(ShuffleCompression::Auto),
            "lz4" => Ok(ShuffleCompression::Lz4),
            "zstd" => Ok(ShuffleCompression::Zstd),
            "none" => Ok(ShuffleCompression::None),
            other => Err(format!(
                "unknown compression '{other}' (expected auto, lz4, zstd or none)"
            )),
        }
    }
}

impl fmt::Display for ShuffleCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShuffleCompression::Auto => "auto",
            ShuffleCompression::Lz4 => "lz4",
            ShuffleCompression::Zstd => "zstd",
            ShuffleCompression::None => "none",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_compresses_only_what_may_cross_hosts() {
        assert!(!spans_hosts([]));
        assert!(!spans_hosts(["http://127.0.0.1:5001", "127.0.0.1:5002"]));
        assert!(spans_hosts([
            "http://10.0.0.1:5001",
            "http://10.0.0.2:5001"
        ]));
        assert!(spans_hosts(["localhost:1", "127.0.0.1:2"]));
        assert!(!spans_hosts(["https://[::1]:7000", "[::1]:7001"]));
        let auto = ShuffleCompression::Auto;
        assert_eq!(auto.resolve(false), ShuffleCompression::None);
        assert_eq!(auto.resolve(true), ShuffleCompression::Lz4);
        assert_eq!(
            ShuffleCompression::Zstd.resolve(false),
            ShuffleCompression::Zstd
        );
        assert_eq!("AUTO".parse(), Ok(ShuffleCompression::Auto));
        assert_eq!(ShuffleCompression::default().to_string(), "auto");
    }
}
