//! Where data lives: the object stores behind `s3://bucket/prefix` (S3 and S3-compatible
//! servers), `memory://name/...` (one process, for tests), `file:///...` and plain paths,
//! built on first use from the environment (`AWS_*`) and Ember's `ember.s3.*` options, and
//! [`StoreRegistry`], through which DataFusion finds them for tables and outputs.
//!
//! The options travel with every task (as settings named `ember.s3.KEY`), so an executor
//! reads and writes S3 with the same endpoint and credentials as the driver that planned
//! the job; an executor's own `AWS_*` environment fills in what they leave out.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreRegistry;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::sync::lock;

/// The prefix of the settings that carry S3 options: `ember.s3.endpoint`,
/// `ember.s3.region`, `ember.s3.access_key_id`, `ember.s3.secret_access_key`,
/// `ember.s3.allow_http`, ... (any key of object_store's `AmazonS3ConfigKey`).
pub const S3_SETTING_PREFIX: &str = "ember.s3.";

/// The setting that carries the job's shuffle directory (`s3://bucket/prefix`, ...): map
/// outputs are copied there, so they outlive the executor that wrote them.
pub const SHUFFLE_DIR_SETTING: &str = "ember.shuffle.dir";

/// Whether a setting (`ember.s3.secret_access_key`, or the key without its prefix) holds a
/// secret: shown as `***`, and sent only to executors reached over TLS or loopback.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("secret") || key.contains("token") || key.contains("password")
}

/// S3 options (keys without the `ember.s3.` prefix), on top of the `AWS_*` environment.
/// Its `Debug` form hides secrets.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreOptions {
    s3: BTreeMap<String, String>,
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.s3.iter().map(|(key, value)| {
            (
                key,
                if is_secret(key) {
                    "***"
                } else {
                    value.as_str()
                },
            )
        });
        f.debug_map().entries(shown).finish()
    }
}

impl StoreOptions {
    /// Sets S3 option `key` (`endpoint`, `region`, `allow_http`, ...), checking that
    /// object_store knows it.
    pub fn set_s3(&mut self, key: &str, value: &str) -> Result<(), String> {
        AmazonS3ConfigKey::from_str(key).map_err(|_| {
            format!(
                "unknown S3 option '{key}' (known: endpoint, region, access_key_id, \
                 secret_access_key, session_token, allow_http, virtual_hosted_style_request, \
                 ...)"
            )
        })?;
        self.s3.insert(key.to_string(), value.to_string());
        Ok(())
    }

    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        self.s3.is_empty()
    }

    /// The options as task settings (`ember.s3.KEY`, value).
    pub fn settings(&self) -> Vec<(String, String)> {
        self.s3
            .iter()
            .map(|(k, v)| (format!("{S3_SETTING_PREFIX}{k}"), v.clone()))
            .collect()
    }

    /// Splits task settings into the store options they carry and the others.
    pub fn from_settings(
        settings: &[(String, String)],
    ) -> Result<(Self, Vec<(String, String)>), String> {
        let mut options = Self::default();
        let mut rest = Vec::with_capacity(settings.len());
        for (key, value) in settings {
            match key.strip_prefix(S3_SETTING_PREFIX) {
                Some(s3_key) => options.set_s3(s3_key, value)?,
                None => rest.push((key.clone(), value.clone())),
            }
        }
        Ok((options, rest))
    }
}

/// The stores built so far in this process, by URL key (`scheme://host`) and options:
/// clients are reused, and every `memory://NAME` of the process is the same store.
type StoreCache = HashMap<(String, StoreOptions), Arc<dyn ObjectStore>>;

fn cache() -> &'static Mutex<StoreCache> {
    static CACHE: OnceLock<Mutex<StoreCache>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// The part of `url` that names its store: `s3://bucket`, `memory://name`, `file://`.
fn store_key(url: &Url) -> String {
    format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default())
}

/// The object store that holds `url`, built on first use.
pub fn store_for(url: &Url, options: &StoreOptions) -> DfResult<Arc<dyn ObjectStore>> {
    let key = store_key(url);
    let mut stores = lock(cache());
    // Memory stores are named by their host only: the driver and the executors of an
    // embedded cluster must see one store whatever options they carry.
    let cache_key = match url.scheme() {
        "s3" | "s3a" => (key, options.clone()),
        _ => (key, StoreOptions::default()),
    };
    if let Some(store) = stores.get(&cache_key) {
        return Ok(Arc::clone(store));
    }
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "file" => Arc::new(LocalFileSystem::new()),
        "memory" => Arc::new(InMemory::new()),
        "s3" | "s3a" => {
            let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
                DataFusionError::Configuration(format!("{url}: an S3 URL names a bucket"))
            })?;
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            for (k, v) in &options.s3 {
                let key = AmazonS3ConfigKey::from_str(k).map_err(|e| {
                    DataFusionError::Configuration(format!("{S3_SETTING_PREFIX}{k}: {e}"))
                })?;
                builder = builder.with_config(key, v);
            }
            Arc::new(builder.build().map_err(|e| {
                DataFusionError::Configuration(format!(
                    "S3 store for {url}: {e} (set the endpoint, region and credentials with \
                     AWS_* variables or --conf ember.s3.KEY=VALUE)"
                ))
            })?)
        }
        other => {
            return Err(DataFusionError::Configuration(format!(
                "{url}: no object store for '{other}://' URLs (known: s3://, memory://, \
                 file:// and plain paths)"
            )));
        }
    };
    stores.insert(cache_key, Arc::clone(&store));
    Ok(store)
}

/// DataFusion's view of the stores: every URL resolves through [`store_for`] with one
/// set of options (a session's, or a task's).
#[derive(Debug, Default)]
pub struct StoreRegistry {
    options: StoreOptions,
    /// Stores registered by hand (DataFusion's API), which win over built ones.
    registered: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl StoreRegistry {
    /// A registry that builds stores with `options`.
    pub fn new(options: StoreOptions) -> Self {
        Self {
            options,
            registered: Mutex::default(),
        }
    }

    /// The options it builds stores with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }
}

impl ObjectStoreRegistry for StoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        lock(&self.registered).insert(store_key(url), store)
    }

    fn get_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        if let Some(store) = lock(&self.registered).get(&store_key(url)) {
            return Ok(Arc::clone(store));
        }
        store_for(url, &self.options)
    }
}

/// A location given as text (a URL or a plain path), as a URL: plain paths become
/// absolute `file://` URLs. A folder ends with `/`.
pub fn location_url(location: &str) -> DfResult<Url> {
    let folder = |mut url: Url| {
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        url
    };
    if location.contains("://") {
        return Url::parse(location).map(folder).map_err(|e| {
            DataFusionError::Configuration(format!("'{location}' is not a URL: {e}"))
        });
    }
    let path = std::path::absolute(location)
        .map_err(|e| DataFusionError::Configuration(format!("{location}: {e}")))?;
    Url::from_directory_path(&path)
        .map_err(|()| DataFusionError::Configuration(format!("{location}: not a usable path")))
}

/// The object store holding `url` and the key of `url` in it.
pub fn resolve(url: &str, options: &StoreOptions) -> DfResult<(Arc<dyn ObjectStore>, StorePath)> {
    let parsed = Url::parse(url)
        .map_err(|e| DataFusionError::Configuration(format!("'{url}' is not a URL: {e}")))?;
    let store = store_for(&parsed, options)?;
    let path = StorePath::from_url_path(parsed.path())
        .map_err(|e| DataFusionError::Configuration(format!("{url}: {e}")))?;
    Ok((store, path))
}

/// Copies the local file `local` to `url`, streaming it in parts.
pub async fn upload(local: &std::path::Path, url: &str, options: &StoreOptions) -> DfResult<()> {
    let (store, path) = resolve(url, options)?;
    let mut file = tokio::fs::File::open(local)
        .await
        .map_err(|e| DataFusionError::Execution(format!("{}: {e}", local.display())))?;
    let mut writer = BufWriter::new(store, path);
    let failed = |e: std::io::Error| {
        DataFusionError::Execution(format!("copying {} to {url}: {e}", local.display()))
    };
    if let Err(e) = tokio::io::copy(&mut file, &mut writer).await {
        // No truncated object is left behind.
        let _ = writer.abort().await;
        return Err(failed(e));
    }
    writer.shutdown().await.map_err(failed)
}

/// The bytes of the object at `url`.
pub async fn download(url: &str, options: &StoreOptions) -> DfResult<bytes::Bytes> {
    let (store, path) = resolve(url, options)?;
    let got = store
        .get(&path)
        .await
        .map_err(|e| DataFusionError::Execution(format!("reading {url}: {e}")))?;
    got.bytes()
        .await
        .map_err(|e| DataFusionError::Execution(format!("reading {url}: {e}")))
}

/// Deletes every object under the folder URL `url`.
pub async fn remove_prefix(url: &str, options: &StoreOptions) -> DfResult<usize> {
    let (store, prefix) = resolve(url, options)?;
    let listed: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| DataFusionError::Execution(format!("listing {url}: {e}")))?;
    for meta in &listed {
        match store.delete(&meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(DataFusionError::Execution(format!(
                    "deleting {}: {e}",
                    meta.location
                )));
            }
        }
    }
    Ok(listed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_travel_as_settings_and_unknown_keys_are_refused() {
        let mut options = StoreOptions::default();
        options
            .set_s3("endpoint", "http://127.0.0.1:9")
            .expect("known");
        options.set_s3("allow_http", "true").expect("known");
        let err = options.set_s3("endpiont", "x").expect_err("typo");
        assert!(err.contains("endpiont"), "{err}");
        options.set_s3("secret_access_key", "hush").expect("known");
        assert!(!format!("{options:?}").contains("hush"), "{options:?}");
        let mut settings = options.settings();
        settings.push(("datafusion.execution.batch_size".into(), "10".into()));
        let (back, rest) = StoreOptions::from_settings(&settings).expect("valid");
        assert_eq!(back, options);
        assert_eq!(rest.len(), 1);
    }

    #[test]
    fn urls_resolve_to_stores_and_memory_stores_are_shared() {
        let a = StoreRegistry::new(StoreOptions::default());
        let mut options = StoreOptions::default();
        options.set_s3("region", "x").expect("known");
        let b = StoreRegistry::new(options);
        let url = Url::parse("memory://shared-test/x/").expect("url");
        let one = a.get_store(&url).expect("memory");
        let two = b.get_store(&url).expect("memory");
        assert!(Arc::ptr_eq(&one, &two));
        let err = a
            .get_store(&Url::parse("gopher://h/x").expect("url"))
            .expect_err("unknown scheme");
        assert!(err.to_string().contains("gopher"), "{err}");
        assert!(
            location_url("some/dir")
                .expect("path")
                .as_str()
                .ends_with("/some/dir/")
        );
        assert_eq!(location_url("s3://b/p").expect("url").as_str(), "s3://b/p/");
    }
}
