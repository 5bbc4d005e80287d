//! An executor's memory limit: sizes as users write them, the runtime (a fair spilling
//! memory pool shared by the executor's tasks, and a disk manager that spills into the
//! executor's work directory), and what a task spilled.

use std::path::Path;
use std::sync::Arc;

use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::physical_plan::ExecutionPlan;

use crate::error::{ExecutorError, Result};

/// Bytes in `text`, written as DataFusion's `datafusion.runtime.memory_limit` is: a number
/// with a unit `K`, `M` or `G` (powers of 1024), such as `512M` or `1.5G`; at least one
/// byte.
pub fn parse_size(text: &str) -> std::result::Result<usize, String> {
    let bytes = datafusion::execution::context::SessionContext::parse_capacity_limit(
        "the memory limit",
        text.trim(),
    )
    .map_err(|e| format!("'{text}': {}", e.message()))?;
    if bytes == 0 {
        return Err(format!("'{text}' is not a size of at least one byte"));
    }
    Ok(bytes)
}

/// `bytes` for people: `64.0 MB`.
pub fn format_size(bytes: usize) -> String {
    datafusion::common::human_readable_size(bytes)
}

/// The runtime of an executor's tasks: with a limit, a pool of that many bytes shared
/// fairly by the spilling operators of every task, and spill files under
/// `work_dir/spill`; without one, DataFusion's unbounded default.
pub fn runtime_env(work_dir: &Path, memory_limit: Option<usize>) -> Result<Arc<RuntimeEnv>> {
    // No cached listings: a task may read a folder that an earlier job rewrote.
    let mut builder = RuntimeEnvBuilder::new()
        .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
        .with_object_store_registry(Arc::new(crate::storage::StoreRegistry::default()));
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
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size(" 512K "), Ok(512 << 10));
        for bad in ["", "M", "12Q", "-1G", "0", "12"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(format_size(64 << 20), "64.0 MB");
    }
}
