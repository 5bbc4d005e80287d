//! The catalog that outlives a query: table and view definitions kept as one versioned
//! JSON document (`catalog.json` in a folder), so that a table created in one session is
//! there in the next, and in every client of a scheduler that serves it.
//!
//! Each entry is the SQL that defines it (`CREATE EXTERNAL TABLE ...` with an absolute
//! location, `CREATE VIEW ...`); a session replays the entries it has not seen. The
//! document's `version` goes up by one on every change; writers take a lock beside it,
//! read the newest document, apply their change and replace the file atomically (write a
//! temporary file, then rename), so concurrent writers neither lose each other's changes
//! nor leave a torn file. [`CatalogDocument::apply`] decides; [`CatalogDir`] does the I/O.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::error::{EmberError, Result};

/// The document format this build reads and writes.
pub const CATALOG_FORMAT: u32 = 1;

/// What an entry defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A table over files.
    Table,
    /// A view.
    View,
}

impl EntryKind {
    /// `table` or `view`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::View => "view",
        }
    }
}

/// One table or view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// What it defines.
    pub kind: EntryKind,
    /// The SQL that (re)creates it.
    pub sql: String,
}

/// The whole catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogDocument {
    /// [`CATALOG_FORMAT`] of the writer.
    pub format: u32,
    /// Goes up by one on every change; 0 for an empty catalog never written.
    pub version: u64,
    /// Entries by lower-case name.
    pub entries: BTreeMap<String, CatalogEntry>,
}

impl Default for CatalogDocument {
    fn default() -> Self {
        Self {
            format: CATALOG_FORMAT,
            version: 0,
            entries: BTreeMap::new(),
        }
    }
}

/// One change to the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogChange {
    /// Adds (or replaces) `name`.
    Put {
        /// The name.
        name: String,
        /// Its definition.
        entry: CatalogEntry,
    },
    /// Removes `name` (nothing when it is not there).
    Drop {
        /// The name.
        name: String,
    },
}

impl CatalogDocument {
    /// Parses a document, refusing one written by a newer format.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let doc: Self = serde_json::from_str(text).map_err(|e| EmberError::Catalog {
            message: format!("{origin}: not a catalog document: {e}"),
        })?;
        if doc.format > CATALOG_FORMAT {
            return Err(EmberError::Catalog {
                message: format!(
                    "{origin}: written in catalog format {} by a newer Ember (this one reads {CATALOG_FORMAT})",
                    doc.format
                ),
            });
        }
        Ok(doc)
    }

    /// The document as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Applies `change` and moves to the next version.
    pub fn apply(&mut self, change: &CatalogChange) {
        match change {
            CatalogChange::Put { name, entry } => {
                self.entries
                    .insert(name.to_ascii_lowercase(), entry.clone());
            }
            CatalogChange::Drop { name } => {
                self.entries.remove(&name.to_ascii_lowercase());
            }
        }
        self.version += 1;
    }
}

/// Where a session's catalog lives: a folder here, or the scheduler that serves one.
pub trait CatalogStore: Send + Sync {
    /// The current document, or `None` when its version is still `known`.
    fn load(&self, known: Option<u64>) -> BoxFuture<'_, Result<Option<CatalogDocument>>>;
    /// Applies `change` to the newest document; the new version.
    fn update(&self, change: CatalogChange) -> BoxFuture<'_, Result<u64>>;
}

/// A catalog in a folder: `DIR/catalog.json`, with `DIR/catalog.lock` held by writers.
#[derive(Debug, Clone)]
pub struct CatalogDir {
    dir: PathBuf,
}

impl CatalogDir {
    /// The catalog in `dir`, made (empty) if the folder does not exist.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| EmberError::Io {
            action: "creating the catalog folder",
            path: dir.to_path_buf(),
            source,
        })?;
        let catalog = Self {
            dir: dir.to_path_buf(),
        };
        // A broken document is reported now, not at the first query.
        catalog.read()?;
        Ok(catalog)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn document_path(&self) -> PathBuf {
        self.dir.join("catalog.json")
    }

    /// The document on disk (empty when none was written yet).
    pub fn read(&self) -> Result<CatalogDocument> {
        let path = self.document_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => CatalogDocument::from_json(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CatalogDocument::default()),
            Err(source) => Err(EmberError::Io {
                action: "reading the catalog",
                path,
                source,
            }),
        }
    }

    /// Applies `change` under the writers' lock and replaces the document atomically.
    pub fn write(&self, change: &CatalogChange) -> Result<CatalogDocument> {
        let lock_path = self.dir.join("catalog.lock");
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| EmberError::Io {
                action,
                path,
                source,
            }
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("opening the catalog lock", &lock_path))?;
        lock.lock().map_err(io("locking the catalog", &lock_path))?;
        let mut doc = self.read()?;
        let read_version = doc.version;
        doc.apply(change);
        let path = self.document_path();
        let temp = self
            .dir
            .join(format!(".catalog.json.{}.tmp", std::process::id()));
        let mut file = std::fs::File::create(&temp).map_err(io("writing the catalog", &temp))?;
        file.write_all(doc.to_json().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io("writing the catalog", &temp))?;
        // The version check: nobody may have replaced the document while this writer held
        // the lock (a writer that ignores the lock would otherwise be overwritten).
        let now = self.read()?.version;
        if now != read_version {
            let _ = std::fs::remove_file(&temp);
            return Err(EmberError::Catalog {
                message: format!(
                    "{} changed from version {read_version} to {now} during this write; try again",
                    path.display()
                ),
            });
        }
        std::fs::rename(&temp, &path).map_err(io("replacing the catalog", &path))?;
        Ok(doc)
    }
}

impl CatalogStore for CatalogDir {
    fn load(&self, known: Option<u64>) -> BoxFuture<'_, Result<Option<CatalogDocument>>> {
        Box::pin(async move {
            let doc = self.read()?;
            Ok((Some(doc.version) != known).then_some(doc))
        })
    }

    fn update(&self, change: CatalogChange) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let catalog = self.clone();
            tokio::task::spawn_blocking(move || catalog.write(&change))
                .await
                .map_err(|e| EmberError::Internal {
                    message: format!("catalog writer: {e}"),
                })?
                .map(|doc| doc.version)
        })
    }
}

/// A scheduler process serves the catalog folder to its clients.
impl ember_scheduler::ServedCatalog for CatalogDir {
    fn read(&self) -> std::result::Result<(u64, String), String> {
        let doc = CatalogDir::read(self).map_err(|e| e.to_string())?;
        Ok((doc.version, doc.to_json()))
    }

    fn apply(
        &self,
        change_json: &str,
    ) -> std::result::Result<u64, ember_scheduler::CatalogUpdateError> {
        use ember_scheduler::CatalogUpdateError;
        let change: CatalogChange = serde_json::from_str(change_json)
            .map_err(|e| CatalogUpdateError::Bad(format!("not a catalog change: {e}")))?;
        self.write(&change)
            .map(|doc| doc.version)
            .map_err(|e| CatalogUpdateError::Failed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(sql: &str) -> CatalogEntry {
        CatalogEntry {
            kind: EntryKind::Table,
            sql: sql.into(),
        }
    }

    #[test]
    fn changes_move_the_version_and_names_ignore_case() {
        let mut doc = CatalogDocument::default();
        doc.apply(&CatalogChange::Put {
            name: "Sales".into(),
            entry: table("CREATE EXTERNAL TABLE sales ..."),
        });
        assert_eq!(doc.version, 1);
        assert!(doc.entries.contains_key("sales"));
        doc.apply(&CatalogChange::Drop {
            name: "SALES".into(),
        });
        assert_eq!(doc.version, 2);
        assert!(doc.entries.is_empty());
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let catalog = CatalogDir::open(dir.path()).expect("opens");
        std::thread::scope(|scope| {
            for t in 0..4 {
                let catalog = catalog.clone();
                scope.spawn(move || {
                    for i in 0..10 {
                        catalog
                            .write(&CatalogChange::Put {
                                name: format!("t{t}_{i}"),
                                entry: table("x"),
                            })
                            .expect("writes");
                    }
                });
            }
        });
        let doc = catalog.read().expect("reads");
        assert_eq!((doc.version, doc.entries.len()), (40, 40));
    }

    #[test]
    fn a_broken_or_newer_document_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("catalog.json"), "{not json").expect("write");
        let e = CatalogDir::open(dir.path()).expect_err("refused");
        assert!(e.to_string().contains("catalog.json"), "{e}");
        std::fs::write(
            dir.path().join("catalog.json"),
            r#"{"format": 99, "version": 1, "entries": {}}"#,
        )
        .expect("write");
        let e = CatalogDir::open(dir.path()).expect_err("refused");
        assert!(e.to_string().contains("format 99"), "{e}");
    }
}
