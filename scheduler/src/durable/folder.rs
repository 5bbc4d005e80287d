//! [`FolderStore`]: job state in a local folder (`ember scheduler --state DIR`).
//!
//! ```text
//! DIR/ember-state.json   {"format":1}: refused by a build that reads an older format
//! DIR/.lock              locked while a scheduler runs on the folder
//! DIR/jobs/JOB.spec      the job's JobSpec (protobuf), written whole and renamed into place
//! DIR/jobs/JOB.events    its events, JSON lines, appended
//! ```
//!
//! Appends are plain writes, not fsyncs: they survive the scheduler's process being
//! killed (the kernel holds them), not the machine losing power.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::store::{STATE_FORMAT, StateStore, StoredJob, file_stem};
use crate::error::{Result, SchedulerError};

const FORMAT_FILE: &str = "ember-state.json";
const LOCK_FILE: &str = ".lock";
const JOBS: &str = "jobs";

/// Job state in a local folder, locked for one scheduler at a time.
#[derive(Debug)]
pub struct FolderStore {
    dir: PathBuf,
    /// Held open, and locked, while the store lives.
    _lock: File,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct FormatFile {
    format: u32,
}

impl FolderStore {
    /// Opens (creating) the state folder `dir` and locks it. Refused when another
    /// scheduler runs on it, or when a newer build wrote it.
    pub fn open(dir: &Path) -> Result<Self> {
        let bad = |message: String| SchedulerError::Config {
            key: "--state".into(),
            message,
        };
        std::fs::create_dir_all(dir.join(JOBS)).map_err(|e| {
            bad(format!(
                "cannot create the state folder {}: {e}",
                dir.display()
            ))
        })?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| bad(format!("cannot open {}: {e}", lock_path.display())))?;
        if lock.try_lock().is_err() {
            return Err(bad(format!(
                "the state folder {} is in use by another scheduler (it holds {}); two \
                 schedulers on one folder would both run its jobs. Stop the other one, or \
                 run several with --ha etcd://HOST:PORT",
                dir.display(),
                lock_path.display()
            )));
        }
        let format_path = dir.join(FORMAT_FILE);
        match std::fs::read(&format_path) {
            Ok(bytes) => {
                let found: FormatFile = serde_json::from_slice(&bytes).map_err(|e| {
                    bad(format!(
                        "{} is not a state folder's format file: {e}",
                        format_path.display()
                    ))
                })?;
                if found.format > STATE_FORMAT {
                    return Err(bad(format!(
                        "the state folder {} was written by a newer Ember (state format {}; \
                         this build reads format {STATE_FORMAT}); run that version, or start \
                         on an empty folder",
                        dir.display(),
                        found.format
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let json = serde_json::to_vec(&FormatFile {
                    format: STATE_FORMAT,
                })
                .map_err(|e| bad(e.to_string()))?;
                std::fs::write(&format_path, json)
                    .map_err(|e| bad(format!("cannot write {}: {e}", format_path.display())))?;
            }
            Err(e) => return Err(bad(format!("cannot read {}: {e}", format_path.display()))),
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    fn spec_path(&self, job_id: &str) -> PathBuf {
        self.dir
            .join(JOBS)
            .join(format!("{}.spec", file_stem(job_id)))
    }

    fn events_path(&self, job_id: &str) -> PathBuf {
        self.dir
            .join(JOBS)
            .join(format!("{}.events", file_stem(job_id)))
    }

    fn error(&self, doing: &str, path: &Path, e: &std::io::Error) -> SchedulerError {
        SchedulerError::State {
            store: self.describe(),
            message: format!("{doing} {}: {e}", path.display()),
        }
    }
}

#[async_trait::async_trait]
impl StateStore for FolderStore {
    async fn load(&self) -> Result<Vec<StoredJob>> {
        let jobs = self.dir.join(JOBS);
        let entries = std::fs::read_dir(&jobs).map_err(|e| self.error("reading", &jobs, &e))?;
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("spec") {
                continue;
            }
            let spec = std::fs::read(&path).map_err(|e| self.error("reading", &path, &e))?;
            let events_path = path.with_extension("events");
            let events = match std::fs::read(&events_path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(self.error("reading", &events_path, &e)),
            };
            let job_id = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            found.push(StoredJob {
                job_id,
                spec,
                events,
            });
        }
        found.sort_by(|a, b| a.job_id.cmp(&b.job_id));
        Ok(found)
    }

    async fn put_job(&self, job_id: &str, spec: Vec<u8>) -> Result<()> {
        let path = self.spec_path(job_id);
        let events = self.events_path(job_id);
        let staged = path.with_extension("spec.new");
        std::fs::write(&staged, spec).map_err(|e| self.error("writing", &staged, &e))?;
        File::create(&events).map_err(|e| self.error("creating", &events, &e))?;
        std::fs::rename(&staged, &path).map_err(|e| self.error("renaming", &staged, &e))
    }

    async fn append(&self, job_id: &str, lines: Vec<u8>) -> Result<()> {
        let path = self.events_path(job_id);
        let path_for_error = path.clone();
        let written = tokio::task::spawn_blocking(move || {
            OpenOptions::new()
                .append(true)
                .open(&path)
                .and_then(|mut file| file.write_all(&lines))
        })
        .await
        .map_err(|e| SchedulerError::Internal {
            message: e.to_string(),
        })?;
        written.map_err(|e| self.error("appending to", &path_for_error, &e))
    }

    async fn remove_job(&self, job_id: &str) -> Result<()> {
        for path in [self.spec_path(job_id), self.events_path(job_id)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.error("removing", &path, &e)),
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("state folder {}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_folder_keeps_jobs_until_removed_and_refuses_a_second_scheduler() {
        let dir = std::env::temp_dir().join(format!("ember-state-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = FolderStore::open(&dir).expect("opens");
        store.put_job("job/1", vec![1, 2, 3]).await.expect("put");
        store
            .append("job/1", b"a\n".to_vec())
            .await
            .expect("append");
        store
            .append("job/1", b"b\n".to_vec())
            .await
            .expect("append");
        let second = FolderStore::open(&dir).expect_err("locked");
        assert!(
            second.to_string().contains("in use by another scheduler"),
            "{second}"
        );
        drop(store);

        let store = FolderStore::open(&dir).expect("opens again once free");
        let jobs = store.load().await.expect("loads");
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].spec, vec![1, 2, 3]);
        assert_eq!(jobs[0].events, b"a\nb\n".to_vec());
        store.remove_job("job/1").await.expect("removes");
        assert!(store.load().await.expect("loads").is_empty());
        drop(store);

        std::fs::write(dir.join(FORMAT_FILE), br#"{"format":99}"#).expect("writes");
        let newer = FolderStore::open(&dir).expect_err("newer");
        assert!(
            newer.to_string().contains("newer Ember (state format 99"),
            "{newer}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
