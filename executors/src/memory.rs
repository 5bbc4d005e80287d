//! An executor's memory limit: sizes as users write them, the runtime (a fair spilling
//! memory pool shared by the executor's tasks, and a disk manager that spills into the
//! executor's work directory), and what a task spilled.

use std::path::Path;
use std::sync::Arc;

use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::physical_plan::ExecutionPlan;

use crate::error::{ExecutorError, Result};

/// Bytes in `text`: a number with an optional unit, `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB`,
/// `G`/`GB`/`GiB` or `T`/`TB`/`TiB` (all powers of 1024, any case), such as `512M` or
/// `1.5GiB`.
pub fn parse_size(text: &str) -> std::result::Result<usize, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("expected a size such as 512M or 2GiB, not '{text}'"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0_f64.powi(4),
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}' (use B, K, M, G or T)"
            ));
        }
    };
    let bytes = number * scale;
    if !(1.0..=usize::MAX as f64).contains(&bytes) {
        return Err(format!("'{text}' is not a size of at least one byte"));
    }
    Ok(bytes as usize)
}

/// `bytes` for people: `64.0 MiB`.
pub fn format_size(bytes: usize) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", units[unit])
}

/// The runtime of an executor's tasks: with a limit, a pool of that many bytes shared
/// fairly by the spilling operators of every task, and spill files under
/// `work_dir/spill`; without one, DataFusion's unbounded default.
pub fn runtime_env(work_dir: &Path, memory_limit: Option<usize>) -> Result<Arc<RuntimeEnv>> {
    let mut builder = RuntimeEnvBuilder::new();
    if let Some(limit) = memory_limit {
        let spill = work_dir.join("spill");
        std::fs::create_dir_all(&spill).map_err(|source| ExecutorError::Io {
            action: "creating the spill directory",
            path: spill.clone(),
            source,
        })?;
        builder = builder
            .with_memory_pool(Arc::new(FairSpillPool::new(limit)))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![spill])),
            );
    }
    builder.build_arc().map_err(|e| ExecutorError::Config {
        key: "--memory-limit".into(),
        message: e.to_string(),
    })
}

/// Bytes spilled to disk, and spill files written, by the operators of `plan` (after it
/// ran).
pub fn spilled(plan: &Arc<dyn ExecutionPlan>) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    if let Some(metrics) = plan.metrics() {
        bytes += metrics.spilled_bytes().unwrap_or(0) as u64;
        files += metrics.spill_count().unwrap_or(0) as u64;
    }
    for child in plan.children() {
        let (b, f) = spilled(child);
        bytes += b;
        files += f;
    }
    (bytes, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_users_write_them() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64mib"), Ok(64 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size(" 2 g "), Ok(2 << 30));
        for bad in ["", "M", "12Q", "-1G", "0"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(format_size(64 << 20), "64.0 MiB");
    }
}
