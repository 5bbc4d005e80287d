//! [`LocalCluster`]: the embedded cluster, a scheduler and N executors in this process.
//!
//! Tasks still travel as serialized plans and shuffle data still goes through files in each
//! executor's own work directory, exactly as on a cluster of machines.

use std::path::PathBuf;
use std::sync::Arc;

use ember_executors::{Executor, ExecutorConfig};
use tempfile::TempDir;

use crate::config::EmberConfig;
use crate::error::{EmberError, Result};
use crate::scheduler::{ExecutorClient, Scheduler};

/// A scheduler and its executors, all in this process.
pub struct LocalCluster {
    executors: Vec<Arc<Executor>>,
    scheduler: Scheduler,
    /// The temporary root of the work directories, removed with the cluster.
    _temp_root: Option<TempDir>,
}

impl LocalCluster {
    /// Starts `config.executors` executors with `config.slots` slots each.
    pub fn start(config: &EmberConfig) -> Result<Self> {
        if config.executors == 0 {
            return Err(EmberError::NoExecutors);
        }
        let (root, temp_root) = match &config.work_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("ember-")
                    .tempdir()
                    .map_err(|source| EmberError::Io {
                        action: "creating a work directory in",
                        path: std::env::temp_dir(),
                        source,
                    })?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let executors = (0..config.executors)
            .map(|i| {
                Executor::try_new(ExecutorConfig {
                    id: format!("executor-{i}"),
                    work_dir: executor_dir(&root, i),
                    slots: config.slots,
                    compression: config.compression,
                })
                .map(Arc::new)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let clients = executors
            .iter()
            .map(|e| Arc::new(Arc::clone(e)) as Arc<dyn ExecutorClient>)
            .collect();
        let scheduler = Scheduler::new(clients, config.max_attempts)?;
        Ok(Self {
            executors,
            scheduler,
            _temp_root: temp_root,
        })
    }

    /// The executors.
    pub fn executors(&self) -> &[Arc<Executor>] {
        &self.executors
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }
}

fn executor_dir(root: &std::path::Path, index: usize) -> PathBuf {
    root.join(format!("executor-{index}"))
}
