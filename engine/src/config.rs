//! [`EmberConfig`]: the engine's settings as a registry of documented, dotted keys.
//!
//! Command-line flags map onto the same keys (`--executors` is `ember.executors`), and
//! `--conf KEY=VALUE` sets any of them. Keys starting with `datafusion.` are passed to
//! DataFusion unchanged.

use std::path::PathBuf;

use ember_executors::ShuffleCompression;
use ember_executors::storage::{S3_SETTING_PREFIX, StoreOptions, location_url};

use crate::config_err;
use crate::error::Result;
use ember_scheduler::{AdaptiveConfig, Policy};

/// One documented setting.
#[derive(Debug, Clone, Copy)]
pub struct ConfigEntry {
    /// The dotted key.
    pub key: &'static str,
    /// The type of the value, in words.
    pub kind: &'static str,
    /// The default, in words.
    pub default: &'static str,
    /// What it does.
    pub description: &'static str,
}

/// Every `ember.*` key, with type, default and description.
pub const CONFIG_ENTRIES: &[ConfigEntry] = &[
    ConfigEntry {
        key: "ember.executors",
        kind: "integer >= 1",
        default: "number of cores",
        description: "Executors of the embedded cluster.",
    },
    ConfigEntry {
        key: "ember.executor.slots",
        kind: "integer >= 1",
        default: "1",
        description: "Tasks each executor runs at once. Plans use executors x slots partitions.",
    },
    ConfigEntry {
        key: "ember.executor.memory_limit",
        kind: "size (512M, 4G, ...)",
        default: "none",
        description: "Memory the tasks of each executor may hold together; sorts, aggregations, sort-merge joins and the shuffle writer spill to the work dir beyond it; a task whose hash join cannot hold its build side runs again with sort-merge joins, which spill.",
    },
    ConfigEntry {
        key: "ember.input.bad_rows",
        kind: "fail | skip | quarantine=PATH",
        default: "none (DataFusion's reader)",
        description: "When set, CSV and JSON tables of `ember sql` and CSV inputs of `ember run` are read record by record: bad rows fail the job with file:line, or are skipped, or written with file, line and reason under PATH; the count is printed.",
    },
    ConfigEntry {
        key: "ember.output.mode",
        kind: "error | overwrite | append",
        default: "error",
        description: "What a write (DSL write_*, SQL COPY, --out of ember run) does when its destination holds files: refuse, replace them once the new files are committed, or add beside them.",
    },
    ConfigEntry {
        key: "ember.s3.KEY",
        kind: "text",
        default: "from AWS_* variables",
        description: "S3 options for s3:// inputs, outputs and shuffle dirs: endpoint, region, access_key_id, secret_access_key, session_token, allow_http, virtual_hosted_style_request (any key of object_store's AmazonS3ConfigKey). They travel with every task, so executors use the driver's.",
    },
    ConfigEntry {
        key: "ember.task.max_attempts",
        kind: "integer >= 1",
        default: "4",
        description: "Attempts of a task before its job fails with the task's error.",
    },
    ConfigEntry {
        key: "ember.scheduler.policy",
        kind: "fifo | fair",
        default: "fifo",
        description: "How concurrent jobs share task slots: the first submitted first, or the job with the fewest running tasks.",
    },
    ConfigEntry {
        key: "ember.shuffle.compression",
        kind: "auto | lz4 | zstd | none",
        default: "auto",
        description: "Codec of shuffle files (Arrow IPC buffer compression). auto: lz4 when the shuffle may cross machines (executors on more than one host, or ember.shuffle.dir set) or the executor has a memory limit, none otherwise. Applies to the embedded cluster; executor processes take `ember executor --compression`.",
    },
    ConfigEntry {
        key: "ember.shuffle.dir",
        kind: "URL (s3://bucket/prefix, file:///...)",
        default: "none (executors' work dirs)",
        description: "Where map outputs are copied once written: there they outlive the executor that wrote them, so losing it recomputes nothing. Each job's pieces are deleted when it ends.",
    },
    ConfigEntry {
        key: "ember.shuffle.host_local_reads",
        kind: "true | false",
        default: "true",
        description: "A task reads the map outputs of another executor on its own host (same address) from that executor's files, as Spark's spark.shuffle.readHostLocalDisk does, instead of fetching them over Flight; a file it cannot find at the recorded size is fetched. Off: every other executor's piece comes over Flight.",
    },
    ConfigEntry {
        key: "ember.shuffle.partitions",
        kind: "integer >= 1",
        default: "executors x slots",
        description: "Partitions of every shuffle (and of file scans): DataFusion's target_partitions. With adaptive coalescing on, a larger number costs little: small adjacent partitions are read by one task.",
    },
    ConfigEntry {
        key: "ember.optimizer.runtime_filters",
        kind: "true | false",
        default: "true",
        description: "Runtime filters. Across stages: a broadcast join whose build side is filtered (or a semi join) also drops, before they are shuffled, the probe side's rows whose key is not among the build side's keys (the probe side's map stages then wait for the build side's stage). Inside a task: the key range of a broadcast join's build side is given to the Parquet scans of its probe side, which skip the row groups and pages outside it.",
    },
    ConfigEntry {
        key: "ember.adaptive.enabled",
        kind: "true | false",
        default: "true",
        description: "Sets the four adaptive rules below at once. Each stage's tasks are cut when its inputs are done, from their real sizes; `ember explain analyze` shows what was decided.",
    },
    ConfigEntry {
        key: "ember.adaptive.coalesce",
        kind: "true | false",
        default: "true",
        description: "Read adjacent small reduce partitions in one task of about ember.adaptive.target_partition_bytes (keeping about executors x slots tasks for smaller inputs).",
    },
    ConfigEntry {
        key: "ember.adaptive.broadcast",
        kind: "true | false",
        default: "true",
        description: "A partitioned join whose one side wrote at most ember.adaptive.broadcast_threshold becomes a broadcast join: one task per map output of the other side, run where it lies, each with the whole small side.",
    },
    ConfigEntry {
        key: "ember.adaptive.skew_join",
        kind: "true | false",
        default: "true",
        description: "Split a join partition larger than skew_factor x the median and than skew_min_bytes into tasks that each read a slice of the skewed side's map outputs and the whole partition of the other side.",
    },
    ConfigEntry {
        key: "ember.adaptive.prune_empty",
        kind: "true | false",
        default: "true",
        description: "Do not run tasks that read no row of an input that leaves their output empty (an inner join's side).",
    },
    ConfigEntry {
        key: "ember.adaptive.broadcast_threshold",
        kind: "size",
        default: "10M",
        description: "Largest join side (shuffle bytes written) the broadcast switch broadcasts.",
    },
    ConfigEntry {
        key: "ember.adaptive.target_partition_bytes",
        kind: "size",
        default: "64M",
        description: "Shuffle bytes a coalesced task aims at.",
    },
    ConfigEntry {
        key: "ember.adaptive.min_partition_bytes",
        kind: "size",
        default: "1M",
        description: "Shuffle bytes a coalesced task reads at least, even when that leaves fewer tasks than slots.",
    },
    ConfigEntry {
        key: "ember.adaptive.skew_factor",
        kind: "number > 1",
        default: "5",
        description: "A partition is skewed above this many times the median partition of its input (and above skew_min_bytes).",
    },
    ConfigEntry {
        key: "ember.adaptive.skew_min_bytes",
        kind: "size",
        default: "64M",
        description: "A partition below this many shuffle bytes is never split.",
    },
    ConfigEntry {
        key: "ember.speculation.enabled",
        kind: "true | false",
        default: "false",
        description: "Launch a copy of a slow task on another executor; the first to finish wins, the other is cancelled, and its output, writes and accumulators count once.",
    },
    ConfigEntry {
        key: "ember.speculation.quantile",
        kind: "number in (0, 1]",
        default: "0.75",
        description: "Share of a stage's tasks that must be done before its slow tasks are copied.",
    },
    ConfigEntry {
        key: "ember.speculation.multiplier",
        kind: "number >= 1",
        default: "1.5",
        description: "A task is slow when it runs longer than this many times the median of its finished siblings.",
    },
    ConfigEntry {
        key: "ember.speculation.min_runtime",
        kind: "duration (500ms, 2s)",
        default: "500ms",
        description: "A task is never copied before it has run this long.",
    },
    ConfigEntry {
        key: "ember.catalog.dir",
        kind: "path",
        default: "none (tables last as long as the session)",
        description: "Folder of the catalog: table and view definitions kept as versioned JSON, seen by later sessions. A scheduler started with --catalog serves its catalog to every client.",
    },
    ConfigEntry {
        key: "ember.sql.warehouse",
        kind: "path or URL",
        default: "ember-warehouse",
        description: "Where CREATE TABLE ... AS writes a table that names no LOCATION: a folder named after the table under this one.",
    },
    ConfigEntry {
        key: "ember.eventlog.dir",
        kind: "path or URL",
        default: "none (no event log)",
        description: "Folder where each job's scheduler events are appended as JSON lines (JOB_ID.jsonl), read by `ember history`. Also --event-log DIR.",
    },
    ConfigEntry {
        key: "ember.work_dir",
        kind: "path",
        default: "a new folder in the system temp dir",
        description: "Root of the executors' shuffle files; each job's folder is removed when it ends.",
    },
];

/// DataFusion settings Ember needs, because the features they turn off assume that the
/// whole plan runs in one process. Dynamic filters are shared, mutable expressions that a
/// join's build side fills in for its probe side; the physical uncorrelated scalar
/// subquery shares its result with expressions anywhere below it (scalar subqueries become
/// joins instead); file-scan work stealing lets a partition read the files of its
/// siblings, so a task that runs one partition alone would read them all. Sort-preserving
/// repartitioning is not cut into stages yet.
pub const REQUIRED_DATAFUSION_SETTINGS: &[(&str, &str)] = &[
    (
        "datafusion.optimizer.enable_dynamic_filter_pushdown",
        "false",
    ),
    (
        "datafusion.optimizer.enable_join_dynamic_filter_pushdown",
        "false",
    ),
    (
        "datafusion.optimizer.enable_topk_dynamic_filter_pushdown",
        "false",
    ),
    (
        "datafusion.optimizer.enable_aggregate_dynamic_filter_pushdown",
        "false",
    ),
    (
        "datafusion.optimizer.enable_physical_uncorrelated_scalar_subquery",
        "false",
    ),
    (
        "datafusion.execution.enable_file_stream_work_stealing",
        "false",
    ),
    ("datafusion.optimizer.prefer_existing_sort", "false"),
];

/// DataFusion settings whose defaults Ember changes; `--conf` and `SET` may still change
/// them. A join whose smaller side is estimated under 32 MiB collects that side and sends it
/// to every task of the other (a broadcast join), as Spark does under its
/// `autoBroadcastJoinThreshold`; DataFusion's own limit (1 MiB) suits a process where
/// repartitioning the larger side costs a memory copy, not a shuffle through files.
///
/// A write task writes one file (DataFusion splits a single-partition write over 4 files by
/// default, to use 4 cores; Ember's tasks already run in parallel).
pub const DEFAULT_DATAFUSION_SETTINGS: &[(&str, &str)] = &[
    (
        "datafusion.optimizer.hash_join_single_partition_threshold",
        "33554432",
    ),
    ("datafusion.execution.minimum_parallel_output_files", "1"),
];

/// What a write does when its destination already holds files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Refuse to write (the default).
    #[default]
    Error,
    /// Replace what is there, once the new files are complete.
    Overwrite,
    /// Add the new files beside the old ones.
    Append,
}

impl std::str::FromStr for WriteMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(Self::Error),
            "overwrite" => Ok(Self::Overwrite),
            "append" => Ok(Self::Append),
            other => Err(format!(
                "unknown write mode '{other}' (expected error, overwrite or append)"
            )),
        }
    }
}

/// The settings of a session and its embedded cluster.
#[derive(Debug, Clone)]
pub struct EmberConfig {
    /// `ember.executors`.
    pub executors: usize,
    /// `ember.executor.slots`.
    pub slots: usize,
    /// `ember.task.max_attempts`.
    pub max_attempts: usize,
    /// `ember.scheduler.policy`.
    pub policy: Policy,
    /// `ember.shuffle.compression`.
    pub compression: ShuffleCompression,
    /// `ember.work_dir`; `None` for a fresh temporary folder.
    pub work_dir: Option<PathBuf>,
    /// `ember.executor.memory_limit` in bytes; `None` for no limit.
    pub memory_limit: Option<usize>,
    /// `ember.input.bad_rows`; `None` for DataFusion's CSV reader.
    pub bad_rows: Option<crate::bad_rows::BadRows>,
    /// `ember.output.mode`.
    pub output_mode: WriteMode,
    /// `ember.s3.*`.
    pub storage: StoreOptions,
    /// `ember.shuffle.dir`; `None` to keep map outputs on the executors only.
    pub shuffle_dir: Option<String>,
    /// `datafusion.*` settings, applied in order on top of Ember's defaults.
    pub datafusion: Vec<(String, String)>,
    /// `ember.catalog.dir`; `None` for no catalog beyond the session.
    pub catalog_dir: Option<PathBuf>,
    /// `ember.sql.warehouse`.
    pub warehouse: String,
    /// `ember.eventlog.dir`; `None` for no event log.
    pub event_log: Option<String>,
    /// `ember.shuffle.partitions`; `None` for executors x slots.
    pub shuffle_partitions: Option<usize>,
    /// `ember.adaptive.*` and `ember.speculation.*`.
    pub adaptive: AdaptiveConfig,
    /// `ember.optimizer.runtime_filters`.
    pub runtime_filters: bool,
    /// `ember.shuffle.host_local_reads`.
    pub host_local_reads: bool,
}

impl Default for EmberConfig {
    fn default() -> Self {
        Self {
            executors: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            slots: 1,
            max_attempts: 4,
            policy: Policy::default(),
            compression: ShuffleCompression::default(),
            work_dir: None,
            memory_limit: None,
            bad_rows: None,
            output_mode: WriteMode::default(),
            storage: StoreOptions::default(),
            shuffle_dir: None,
            datafusion: Vec::new(),
            catalog_dir: None,
            warehouse: "ember-warehouse".into(),
            event_log: None,
            shuffle_partitions: None,
            adaptive: AdaptiveConfig::default(),
            runtime_filters: true,
            host_local_reads: true,
        }
    }
}

impl EmberConfig {
    /// Sets `key` to `value`, checking both.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "ember.executors" => self.executors = parse_positive(key, value)?,
            "ember.executor.slots" => self.slots = parse_positive(key, value)?,
            "ember.task.max_attempts" => self.max_attempts = parse_positive(key, value)?,
            "ember.scheduler.policy" => {
                self.policy = match value.parse() {
                    Ok(p) => p,
                    Err(message) => config_err!(key, "{message}"),
                }
            }
            "ember.shuffle.compression" => {
                self.compression = match value.parse() {
                    Ok(c) => c,
                    Err(message) => config_err!(key, "{message}"),
                }
            }
            "ember.shuffle.partitions" => {
                self.shuffle_partitions = Some(parse_positive(key, value)?);
            }
            "ember.optimizer.runtime_filters" => self.runtime_filters = parse_flag(key, value)?,
            "ember.shuffle.host_local_reads" => self.host_local_reads = parse_flag(key, value)?,
            k if k.starts_with("ember.adaptive.") || k.starts_with("ember.speculation.") => {
                set_adaptive(&mut self.adaptive, k, value)?;
            }
            "ember.work_dir" => self.work_dir = Some(PathBuf::from(value)),
            "ember.catalog.dir" => self.catalog_dir = Some(PathBuf::from(value)),
            "ember.sql.warehouse" => {
                if value.trim().is_empty() {
                    config_err!(key, "expected a folder or URL");
                }
                self.warehouse = value.to_string();
            }
            "ember.eventlog.dir" => {
                if value.trim().is_empty() {
                    config_err!(key, "expected a folder or URL");
                }
                if let Err(e) = location_url(value) {
                    config_err!(key, "{e}");
                }
                self.event_log = Some(value.to_string());
            }
            "ember.shuffle.dir" => {
                if !value.contains("://") {
                    config_err!(
                        key,
                        "expected a URL such as s3://bucket/prefix, got '{value}'"
                    );
                }
                if let Err(e) = location_url(value) {
                    config_err!(key, "{e}");
                }
                self.shuffle_dir = Some(value.trim_end_matches('/').to_string());
            }
            "ember.input.bad_rows" => {
                self.bad_rows = match value.parse() {
                    Ok(policy) => Some(policy),
                    Err(message) => config_err!(key, "{message}"),
                }
            }
            "ember.output.mode" => {
                self.output_mode = match value.parse() {
                    Ok(mode) => mode,
                    Err(message) => config_err!(key, "{message}"),
                }
            }
            k if k.starts_with(S3_SETTING_PREFIX) => {
                if let Err(message) = self.storage.set_s3(&k[S3_SETTING_PREFIX.len()..], value) {
                    config_err!(key, "{message}");
                }
            }
            "ember.executor.memory_limit" => {
                self.memory_limit = match ember_executors::memory::parse_size(value) {
                    Ok(bytes) => Some(bytes),
                    Err(message) => config_err!(key, "{message}"),
                }
            }
            k if REQUIRED_DATAFUSION_SETTINGS.iter().any(|(r, _)| *r == k) => {
                let required = REQUIRED_DATAFUSION_SETTINGS
                    .iter()
                    .find(|(r, _)| *r == k)
                    .map(|(_, v)| *v)
                    .unwrap_or_default();
                if !value.trim().eq_ignore_ascii_case(required) {
                    config_err!(
                        key,
                        "Ember runs each partition as its own task and needs this to be {required}"
                    );
                }
            }
            k if k.starts_with("datafusion.") => {
                let mut probe = datafusion::prelude::SessionConfig::new();
                if let Err(e) = probe.options_mut().set(k, value) {
                    config_err!(key, "{e}");
                }
                self.datafusion.push((k.to_string(), value.to_string()));
            }
            _ => {
                let known: Vec<&str> = CONFIG_ENTRIES.iter().map(|e| e.key).collect();
                config_err!(
                    key,
                    "unknown key (known: {}, or any datafusion.* key)",
                    known.join(", ")
                );
            }
        }
        Ok(())
    }

    /// The value of `key` as `SHOW` prints it; `None` for an unknown key. S3 secrets are
    /// shown as `***`.
    pub fn get(&self, key: &str) -> Option<String> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        Some(match key {
            "ember.executors" => self.executors.to_string(),
            "ember.executor.slots" => self.slots.to_string(),
            "ember.task.max_attempts" => self.max_attempts.to_string(),
            "ember.scheduler.policy" => self.policy.to_string(),
            "ember.shuffle.compression" => self.compression.to_string(),
            "ember.work_dir" => path(&self.work_dir).unwrap_or_default(),
            "ember.catalog.dir" => path(&self.catalog_dir).unwrap_or_default(),
            "ember.sql.warehouse" => self.warehouse.clone(),
            "ember.shuffle.dir" => self.shuffle_dir.clone().unwrap_or_default(),
            "ember.eventlog.dir" => self.event_log.clone().unwrap_or_default(),
            "ember.executor.memory_limit" => {
                self.memory_limit.map(|b| b.to_string()).unwrap_or_default()
            }
            "ember.shuffle.partitions" => self.target_partitions().to_string(),
            "ember.optimizer.runtime_filters" => self.runtime_filters.to_string(),
            "ember.shuffle.host_local_reads" => self.host_local_reads.to_string(),
            k if k.starts_with("ember.adaptive.") || k.starts_with("ember.speculation.") => {
                get_adaptive(&self.adaptive, k)?
            }
            "ember.input.bad_rows" => match &self.bad_rows {
                None => String::new(),
                Some(crate::bad_rows::BadRows::Fail) => "fail".into(),
                Some(crate::bad_rows::BadRows::Skip) => "skip".into(),
                Some(crate::bad_rows::BadRows::Quarantine(dir)) => {
                    format!("quarantine={}", dir.display())
                }
            },
            "ember.output.mode" => match self.output_mode {
                WriteMode::Error => "error".into(),
                WriteMode::Overwrite => "overwrite".into(),
                WriteMode::Append => "append".into(),
            },
            "ember.s3.KEY" => self
                .storage
                .settings()
                .into_iter()
                .map(|(k, v)| {
                    let secret = ember_executors::storage::is_secret(
                        k.strip_prefix(S3_SETTING_PREFIX).unwrap_or(&k),
                    );
                    let shown = if secret { "***" } else { &v };
                    format!("{k}={shown}")
                })
                .collect::<Vec<_>>()
                .join(", "),
            k if k.starts_with(S3_SETTING_PREFIX) => {
                let value = self
                    .storage
                    .settings()
                    .into_iter()
                    .find(|(s, _)| s == k)
                    .map(|(_, v)| v)?;
                if ember_executors::storage::is_secret(&k[S3_SETTING_PREFIX.len()..]) {
                    "***".into()
                } else {
                    value
                }
            }
            _ => return None,
        })
    }

    /// Applies a `KEY=VALUE` pair, as given to `--conf`.
    pub fn set_pair(&mut self, pair: &str) -> Result<()> {
        match pair.split_once('=') {
            Some((key, value)) => self.set(key.trim(), value.trim()),
            None => config_err!("--conf", "expected KEY=VALUE, got '{pair}'"),
        }
    }

    /// Partitions that plans are cut into: `ember.shuffle.partitions`, or executors x
    /// slots.
    pub fn target_partitions(&self) -> usize {
        self.shuffle_partitions
            .unwrap_or_else(|| self.executors.saturating_mul(self.slots))
            .max(1)
    }

    /// The adaptive settings a job runs with: the configured ones, with the cluster's
    /// task slots as the parallelism coalescing keeps.
    ///
    /// Under a memory limit, coalesced tasks aim at an eighth of it at most (and at least a
    /// sixteenth), and a side broadcast by the switch a thirty-second at most: shuffle
    /// bytes are compressed there, and a task's sorts and joins hold several times what
    /// it reads.
    pub fn adaptive(&self) -> AdaptiveConfig {
        let mut adaptive = AdaptiveConfig {
            parallelism: self.executors.saturating_mul(self.slots).max(1),
            ..self.adaptive.clone()
        };
        if let Some(limit) = self.memory_limit {
            let limit = limit as u64;
            adaptive.target_partition_bytes = adaptive.target_partition_bytes.min(limit / 8).max(1);
            adaptive.min_partition_bytes = adaptive.min_partition_bytes.min(limit / 16);
            // A broadcast side is held whole (and sorted, in a sort-merge join) by every
            // task, and its shuffle bytes are compressed: a thirty-second of the limit.
            adaptive.broadcast_threshold = adaptive.broadcast_threshold.min(limit / 32);
        }
        adaptive
    }

    /// The DataFusion settings a plan is optimized and run with: the target partitions,
    /// [`DEFAULT_DATAFUSION_SETTINGS`], the user's `datafusion.*` settings, then
    /// [`REQUIRED_DATAFUSION_SETTINGS`].
    pub fn datafusion_settings(&self) -> Vec<(String, String)> {
        let mut settings = vec![(
            "datafusion.execution.target_partitions".to_string(),
            self.target_partitions().to_string(),
        )];
        settings.extend(
            DEFAULT_DATAFUSION_SETTINGS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        if let Some(limit) = self.memory_limit {
            // Hash joins stay under a memory limit: a task whose hash table does not fit
            // runs again with its partitioned hash joins as sort-merge joins, which spill
            // through their sorts (the executor's `join_fallback`).
            // Broadcast (collected, unspillable) join sides of at most an eighth of it.
            settings.push((
                "datafusion.optimizer.hash_join_single_partition_threshold".to_string(),
                (limit / 8).min(32 << 20).to_string(),
            ));
            settings.push((
                "datafusion.optimizer.hash_join_single_partition_threshold_rows".to_string(),
                (limit / 8 / 64).min(128 << 10).to_string(),
            ));
            // What a sort sets aside to merge its spill files: DataFusion's 10 MiB, or a
            // sixteenth of a smaller limit (a stage may hold several sorts).
            settings.push((
                "datafusion.execution.sort_spill_reservation_bytes".to_string(),
                (limit / 16).min(10 << 20).to_string(),
            ));
        }
        settings.extend(self.datafusion.iter().cloned());
        settings.extend(
            REQUIRED_DATAFUSION_SETTINGS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        settings
    }

    /// A markdown table of every `ember.*` key, then the DataFusion settings Ember sets.
    pub fn markdown_table() -> String {
        let mut out = String::from("| key | type | default | description |\n|---|---|---|---|\n");
        for e in CONFIG_ENTRIES {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                e.key, e.kind, e.default, e.description
            ));
        }
        out.push_str("\nDataFusion settings with Ember's own default (changeable):\n\n");
        for (key, value) in DEFAULT_DATAFUSION_SETTINGS {
            out.push_str(&format!("- `{key}` = {value}\n"));
        }
        out.push_str("\nDataFusion settings Ember requires (not changeable):\n\n");
        for (key, value) in REQUIRED_DATAFUSION_SETTINGS {
            out.push_str(&format!("- `{key}` = {value}\n"));
        }
        out
    }
}

/// A true/false setting (also on/off, 1/0).
fn parse_flag(key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => Ok(true),
        "false" | "off" | "0" => Ok(false),
        _ => config_err!(key, "expected true or false, got '{value}'"),
    }
}

/// Sets one `ember.adaptive.*` or `ember.speculation.*` key.
fn set_adaptive(adaptive: &mut AdaptiveConfig, key: &str, value: &str) -> Result<()> {
    let flag = || parse_flag(key, value);
    let size = || match ember_executors::memory::parse_size(value) {
        Ok(bytes) => Ok(bytes as u64),
        Err(message) => config_err!(key, "{message}"),
    };
    let number = |low: f64, high: f64, words: &str| match value.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n >= low && n <= high => Ok(n),
        _ => config_err!(key, "expected a number {words}, got '{value}'"),
    };
    match key {
        "ember.adaptive.enabled" => {
            let on = flag()?;
            adaptive.coalesce = on;
            adaptive.broadcast = on;
            adaptive.skew_join = on;
            adaptive.prune_empty = on;
        }
        "ember.adaptive.coalesce" => adaptive.coalesce = flag()?,
        "ember.adaptive.broadcast" => adaptive.broadcast = flag()?,
        "ember.adaptive.skew_join" => adaptive.skew_join = flag()?,
        "ember.adaptive.prune_empty" => adaptive.prune_empty = flag()?,
        "ember.adaptive.broadcast_threshold" => adaptive.broadcast_threshold = size()?,
        "ember.adaptive.target_partition_bytes" => {
            adaptive.target_partition_bytes = size()?.max(1);
        }
        "ember.adaptive.min_partition_bytes" => adaptive.min_partition_bytes = size()?,
        "ember.adaptive.skew_factor" => {
            adaptive.skew_factor = number(1.0, f64::MAX, "of at least 1")?;
        }
        "ember.adaptive.skew_min_bytes" => adaptive.skew_min_bytes = size()?,
        "ember.speculation.enabled" => adaptive.speculation.enabled = flag()?,
        "ember.speculation.quantile" => {
            let q = number(0.0, 1.0, "in (0, 1]")?;
            if q <= 0.0 {
                config_err!(key, "expected a number in (0, 1], got '{value}'");
            }
            adaptive.speculation.quantile = q;
        }
        "ember.speculation.multiplier" => {
            adaptive.speculation.multiplier = number(1.0, f64::MAX, "of at least 1")?;
        }
        "ember.speculation.min_runtime" => {
            adaptive.speculation.min_runtime = match parse_duration(value) {
                Some(d) => d,
                None => config_err!(
                    key,
                    "expected a duration such as 500ms or 2s, got '{value}'"
                ),
            };
        }
        _ => {
            let known: Vec<&str> = CONFIG_ENTRIES
                .iter()
                .map(|e| e.key)
                .filter(|k| k.starts_with("ember.adaptive.") || k.starts_with("ember.speculation."))
                .collect();
            config_err!(key, "unknown key (known: {})", known.join(", "));
        }
    }
    Ok(())
}

/// The value of one `ember.adaptive.*` or `ember.speculation.*` key; `None` for an
/// unknown one.
fn get_adaptive(adaptive: &AdaptiveConfig, key: &str) -> Option<String> {
    Some(match key {
        "ember.adaptive.enabled" => {
            (adaptive.coalesce && adaptive.broadcast && adaptive.skew_join && adaptive.prune_empty)
                .to_string()
        }
        "ember.adaptive.coalesce" => adaptive.coalesce.to_string(),
        "ember.adaptive.broadcast" => adaptive.broadcast.to_string(),
        "ember.adaptive.skew_join" => adaptive.skew_join.to_string(),
        "ember.adaptive.prune_empty" => adaptive.prune_empty.to_string(),
        "ember.adaptive.broadcast_threshold" => adaptive.broadcast_threshold.to_string(),
        "ember.adaptive.target_partition_bytes" => adaptive.target_partition_bytes.to_string(),
        "ember.adaptive.min_partition_bytes" => adaptive.min_partition_bytes.to_string(),
        "ember.adaptive.skew_factor" => adaptive.skew_factor.to_string(),
        "ember.adaptive.skew_min_bytes" => adaptive.skew_min_bytes.to_string(),
        "ember.speculation.enabled" => adaptive.speculation.enabled.to_string(),
        "ember.speculation.quantile" => adaptive.speculation.quantile.to_string(),
        "ember.speculation.multiplier" => adaptive.speculation.multiplier.to_string(),
        "ember.speculation.min_runtime" => {
            format!("{}ms", adaptive.speculation.min_runtime.as_millis())
        }
        _ => return None,
    })
}

/// `500ms`, `2s`, `1.5s` or a bare number of milliseconds.
fn parse_duration(value: &str) -> Option<std::time::Duration> {
    let value = value.trim();
    let (number, unit) = if let Some(ms) = value.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = value.strip_suffix('s') {
        (s, 1.0)
    } else {
        (value, 1e-3)
    };
    let seconds = number.trim().parse::<f64>().ok()? * unit;
    (seconds.is_finite() && seconds >= 0.0).then(|| std::time::Duration::from_secs_f64(seconds))
}

fn parse_positive(key: &str, value: &str) -> Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => config_err!(key, "expected an integer >= 1, got '{value}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_parse_and_bad_values_name_the_key() {
        let mut config = EmberConfig::default();
        config.set("ember.executors", "3").expect("valid");
        config.set("ember.executor.slots", "2").expect("valid");
        assert_eq!(config.target_partitions(), 6);
        config
            .set("ember.shuffle.compression", "zstd")
            .expect("valid");
        assert_eq!(config.compression, ShuffleCompression::Zstd);

        let err = config.set("ember.executors", "0").expect_err("zero");
        assert!(err.to_string().contains("ember.executors"), "{err}");
        let err = config.set("ember.nope", "1").expect_err("unknown");
        assert!(err.to_string().contains("ember.nope"), "{err}");
        let err = config
            .set("datafusion.execution.batch_size", "many")
            .expect_err("bad df value");
        assert!(err.to_string().contains("batch_size"), "{err}");
        let err = config
            .set(
                "datafusion.execution.enable_file_stream_work_stealing",
                "true",
            )
            .expect_err("unsafe in Ember");
        assert!(err.to_string().contains("work_stealing"), "{err}");
        let err = config.set_pair("no-equals").expect_err("no =");
        assert!(err.to_string().contains("--conf"), "{err}");
    }

    #[test]
    fn adaptive_keys_parse_shrink_under_a_memory_limit_and_bad_values_name_the_key() {
        let mut config = EmberConfig {
            executors: 2,
            ..EmberConfig::default()
        };
        config
            .set("ember.adaptive.enabled", "false")
            .expect("valid");
        assert_eq!(
            config.adaptive(),
            AdaptiveConfig {
                parallelism: 2,
                ..AdaptiveConfig::off()
            }
        );
        config.set("ember.adaptive.skew_join", "on").expect("valid");
        config
            .set("ember.adaptive.broadcast_threshold", "4M")
            .expect("valid");
        config
            .set("ember.speculation.min_runtime", "1.5s")
            .expect("valid");
        config.set("ember.shuffle.partitions", "8").expect("valid");
        let adaptive = config.adaptive();
        assert!(adaptive.skew_join && !adaptive.coalesce);
        assert_eq!(adaptive.broadcast_threshold, 4 << 20);
        assert_eq!(adaptive.speculation.min_runtime.as_millis(), 1500);
        assert_eq!(config.target_partitions(), 8);
        assert_eq!(
            config.get("ember.speculation.min_runtime").as_deref(),
            Some("1500ms")
        );
        // Under a 4 MiB limit: coalesced tasks of 512 KiB, broadcasts of 128 KiB at most.
        config
            .set("ember.executor.memory_limit", "4M")
            .expect("valid");
        let adaptive = config.adaptive();
        assert_eq!(adaptive.target_partition_bytes, 512 << 10);
        assert_eq!(adaptive.broadcast_threshold, 128 << 10);

        for (key, value, says) in [
            ("ember.adaptive.skew_factor", "0.5", "at least 1"),
            ("ember.speculation.quantile", "0", "(0, 1]"),
            ("ember.speculation.multiplier", "fast", "at least 1"),
            ("ember.speculation.min_runtime", "soon", "500ms"),
            ("ember.adaptive.coalesce", "maybe", "true or false"),
            ("ember.adaptive.target_partition_bytes", "big", ""),
            ("ember.adaptive.nope", "1", "unknown key"),
        ] {
            let err = config.set(key, value).expect_err(key);
            let text = err.to_string();
            assert!(text.contains(key) && text.contains(says), "{key}: {text}");
        }
    }

    #[test]
    fn the_broadcast_threshold_defaults_to_32_mib_and_a_user_setting_wins() {
        let key = "datafusion.optimizer.hash_join_single_partition_threshold";
        let value_of = |config: &EmberConfig| {
            let mut options = datafusion::prelude::SessionConfig::new();
            for (k, v) in config.datafusion_settings() {
                options.options_mut().set(&k, &v).expect("valid setting");
            }
            options
                .options()
                .optimizer
                .hash_join_single_partition_threshold
        };
        let mut config = EmberConfig::default();
        assert_eq!(value_of(&config), 32 * 1024 * 1024);
        config.set(key, "1048576").expect("valid");
        assert_eq!(value_of(&config), 1024 * 1024);
        assert!(EmberConfig::markdown_table().contains(key));
    }
}
