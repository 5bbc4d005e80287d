//! [`Session`]: the entry point. It plans SQL with DataFusion, cuts the plan into stages,
//! runs them on its cluster and returns the result, collected ([`Session::sql`]) or as a
//! stream ([`Session::sql_stream`]).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::config::ConfigOptions;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{AggregateUDF, LogicalPlan, ScalarUDF, WindowUDF, WriteOp};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};
use ember_executors::storage::{SHUFFLE_DIR_SETTING, StoreRegistry};
use ember_planner::{
    CacheEntry, CacheLocation, CachedData, CachedPiece, EmberQueryPlanner, FunctionRegistry,
    StageGraph, WriteFormat, cut_stages_with,
};
use ember_proto::AccumulatorValue;
use ember_proto::security::{AUTH_TOKEN_ENV, ClientSecurity};
use futures::future::BoxFuture;

use crate::cluster::{Cluster, JobFiles, LocalCluster, RemoteCluster};
use crate::config::{DEFAULT_DATAFUSION_SETTINGS, EmberConfig, REQUIRED_DATAFUSION_SETTINGS};
use crate::error::{EmberError, Result};
use crate::result_stream::ResultStream;
use crate::sql::catalog::{CatalogDir, CatalogEntry, CatalogStore};
use crate::sql::script::{self, ScriptStatement};
use crate::sql::statement::{self, EmberStatement};
use crate::sync::lock;
use crate::tables::TableSpec;
use ember_proto::new_job_id;
use ember_scheduler::{JobListener, JobOutcome, JobSpec};

pub use crate::result_stream::QueryResult;

pub mod analyze;
mod checked;
mod delta;
mod kafka;
mod postgres;
mod read;
mod shared;
mod sql;
mod write;

tokio::task_local! {
    /// The text of the statement being run, which names the jobs it starts.
    static JOB_NAME: String;
}

/// A connection to an Ember cluster: tables, functions, settings, and the cluster itself.
pub struct Session {
    pub(crate) ctx: SessionContext,
    cluster: Cluster,
    /// The named user functions its jobs may call; the embedded cluster's executors share
    /// it.
    functions: FunctionRegistry,
    /// The settings; `SET ember.…` changes the ones a session may change.
    config: RwLock<EmberConfig>,
    /// Where table and view definitions outlive the session, when anywhere.
    pub(crate) catalog: Option<Arc<dyn CatalogStore>>,
    /// The catalog's version and entries this session has replayed.
    pub(crate) catalog_seen: tokio::sync::Mutex<Option<(u64, BTreeMap<String, CatalogEntry>)>>,
    listener: Option<Arc<dyn JobListener>>,
    /// What user functions added to each accumulator, over the session's jobs.
    accumulators: Mutex<HashMap<String, AccumulatorValue>>,
    /// Broadcast variables not yet shipped to the executors (sent before the next job).
    pending_broadcasts: Mutex<Vec<(String, Arc<[u8]>)>>,
}

static NEXT_CACHE: AtomicU64 = AtomicU64::new(0);

impl Session {
    /// A session on a new embedded cluster of `executors` executors.
    pub fn local(executors: usize) -> Result<Self> {
        let config = EmberConfig {
            executors,
            ..EmberConfig::default()
        };
        Self::new(config)
    }

    /// A session on a new embedded cluster set up by `config`, with a registry of its own
    /// that holds the built-in functions ([`crate::builtin_functions`]).
    pub fn new(config: EmberConfig) -> Result<Self> {
        Self::with_functions(config, FunctionRegistry::new())
    }

    /// A session on a new embedded cluster set up by `config`, whose jobs and executors
    /// find the functions they name in `functions` (given the built-ins too).
    pub fn with_functions(config: EmberConfig, functions: FunctionRegistry) -> Result<Self> {
        crate::bad_rows::register_bad_rows_function(&functions);
        let cluster = Cluster::Local(LocalCluster::start(&config, &functions)?);
        Self::on_cluster(cluster, config, functions)
    }

    /// A session on the process cluster whose scheduler listens at `url`
    /// (`http://host:50050`, or `https://` with TLS). The token comes from
    /// `EMBER_AUTH_TOKEN` and the CA that signed the cluster's certificates from
    /// `EMBER_TLS_CA`, when set. Plans are cut into as many partitions as the cluster has
    /// task slots now.
    pub async fn connect(url: &str) -> Result<Self> {
        let security = ClientSecurity {
            token: std::env::var(AUTH_TOKEN_ENV).ok().filter(|t| !t.is_empty()),
            ca: std::env::var_os("EMBER_TLS_CA").map(std::path::PathBuf::from),
        };
        Self::connect_with(url, security, EmberConfig::default()).await
    }

    /// [`Session::connect`] with an explicit token and CA, and settings.
    pub async fn connect_with(
        url: &str,
        security: ClientSecurity,
        config: EmberConfig,
    ) -> Result<Self> {
        Self::connect_with_functions(url, security, config, FunctionRegistry::new()).await
    }

    /// [`Session::connect_with`], planning with the functions of `functions` (given the
    /// built-ins too). The cluster's executors must carry the same ones: run them from a
    /// binary that registers them ([`crate::cli::main_with`]).
    pub async fn connect_with_functions(
        url: &str,
        security: ClientSecurity,
        mut config: EmberConfig,
        functions: FunctionRegistry,
    ) -> Result<Self> {
        crate::bad_rows::register_bad_rows_function(&functions);
        let remote = RemoteCluster::connect(url, security).await?;
        let executors = remote.executors().await?;
        let slots: usize = executors.iter().map(|e| e.slots).sum();
        config.executors = executors.len().max(1);
        config.slots = slots.div_ceil(config.executors).max(1);
        let served = remote.served_catalog().await?;
        let mut session = Self::on_cluster(Cluster::Remote(Box::new(remote)), config, functions)?;
        if session.catalog.is_none() {
            session.catalog = served;
        }
        Ok(session)
    }

    fn on_cluster(
        cluster: Cluster,
        config: EmberConfig,
        functions: FunctionRegistry,
    ) -> Result<Self> {
        let catalog = match &config.catalog_dir {
            Some(dir) => Some(Arc::new(CatalogDir::open(dir)?) as Arc<dyn CatalogStore>),
            None => None,
        };
        // `SHOW TABLES`, `SHOW COLUMNS` and `information_schema` need it.
        let mut df_config = SessionConfig::new().with_information_schema(true);
        for (key, value) in config.datafusion_settings() {
            df_config
                .options_mut()
                .set(&key, &value)
                .map_err(|e| EmberError::Config {
                    key: key.clone(),
                    message: e.to_string(),
                })?;
        }
        // No cached listings: a job may read a folder that an earlier one rewrote.
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
            .with_object_store_registry(Arc::new(StoreRegistry::new(config.storage.clone())))
            .build_arc()?;
        let state = SessionStateBuilder::new()
            .with_config(df_config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_table_factory(
                "DELTA".into(),
                Arc::new(ember_connectors::delta::DeltaTableFactory),
            )
            .with_table_factory(
                "KAFKA".into(),
                Arc::new(ember_connectors::kafka::KafkaTableFactory),
            )
            .with_table_factory(
                "POSTGRES".into(),
                Arc::new(ember_connectors::postgres::PostgresTableFactory),
            )
            .with_query_planner(Arc::new(EmberQueryPlanner))
            .build();
        let ctx = SessionContext::new_with_state(state);
        // `approx_percentiles` for SQL, and the rule that fuses `approx_percentile_cont`
        // calls over one value into it (one digest per group for all their quantiles).
        ctx.register_udaf(ember_planner::approx_percentiles_udaf().as_ref().clone());
        ctx.add_optimizer_rule(Arc::new(ember_planner::FuseApproxPercentiles));
        Ok(Self {
            ctx: crate::sql::files::with_tables_by_path(ctx),
            cluster,
            functions,
            config: RwLock::new(config),
            catalog,
            catalog_seen: tokio::sync::Mutex::new(None),
            listener: None,
            accumulators: Mutex::new(HashMap::new()),
            pending_broadcasts: Mutex::new(Vec::new()),
        })
    }

    /// The settings (a copy: `SET ember.…` may change them later).
    pub fn config(&self) -> EmberConfig {
        match self.config.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// What cutting this session's plans into stages may rewrite.
    fn cut_options(&self) -> ember_planner::CutOptions {
        ember_planner::CutOptions {
            runtime_filters: self.config().runtime_filters,
        }
    }

    /// Changes a setting for this session's next statements (`SET ember.KEY = VALUE`).
    /// Only the settings of a statement or job can change (the adaptive rules and
    /// speculation among them); the cluster's are fixed when the session starts.
    pub fn set(&self, key: &str, value: &str) -> Result<()> {
        const SETTABLE: &[&str] = &[
            "ember.output.mode",
            "ember.input.bad_rows",
            "ember.sql.warehouse",
            "ember.optimizer.runtime_filters",
            "ember.shuffle.host_local_reads",
        ];
        let per_job = key.starts_with("ember.adaptive.") || key.starts_with("ember.speculation.");
        if !SETTABLE.contains(&key) && !per_job && !key.starts_with("datafusion.") {
            return Err(EmberError::Config {
                key: key.to_string(),
                message: format!(
                    "fixed when the session starts (give it with --conf {key}=VALUE); SET \
                     changes only {}, ember.adaptive.*, ember.speculation.* and datafusion.*",
                    SETTABLE.join(", ")
                ),
            });
        }
        let mut config = self.config();
        config.set(key, value)?;
        match self.config.write() {
            Ok(mut current) => *current = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }

    /// Where this session keeps table and view definitions, if anywhere.
    pub fn catalog(&self) -> Option<&Arc<dyn CatalogStore>> {
        self.catalog.as_ref()
    }

    /// The DataFusion context that holds tables and plans queries.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Cancels job `job_id` (the id a listener's `JobStarted` gives): its running attempts
    /// are stopped on their executors, their files removed, and the job's caller gets
    /// [`EmberError::Cancelled`]. `false` when no job of that id runs.
    pub async fn cancel_job(&self, job_id: &str, reason: &str) -> Result<bool> {
        self.cluster.cancel_job(job_id, reason).await
    }

    /// The named user functions this session's jobs may call: register a job's functions
    /// here ([`FunctionRegistry::register_batch_fn`], [`crate::TypedFunctions`]) before
    /// its datasets name them. Another session's registry is its own.
    pub fn functions(&self) -> &FunctionRegistry {
        &self.functions
    }

    /// Queues a broadcast variable for the executors; it is shipped before the next job.
    pub(crate) fn queue_broadcast(&self, name: &str, bytes: Arc<[u8]>) {
        let mut pending = lock(&self.pending_broadcasts);
        pending.retain(|(n, _)| n != name);
        pending.push((name.to_string(), bytes));
    }

    /// Sends the events of every later job to `listener`.
    pub fn set_listener(&mut self, listener: Arc<dyn JobListener>) {
        self.listener = Some(listener);
    }

    /// Registers a table over files.
    pub async fn register_table(&self, spec: &TableSpec) -> Result<()> {
        spec.register(&self.ctx).await
    }

    /// Registers a scalar function for planning and on every executor.
    pub fn register_udf(&self, udf: ScalarUDF) {
        for executor in self.cluster.local_executors() {
            executor.register_udf(udf.clone());
        }
        self.ctx.register_udf(udf);
    }

    /// Registers an aggregate function for planning and on every executor.
    pub fn register_udaf(&self, udaf: AggregateUDF) {
        for executor in self.cluster.local_executors() {
            executor.register_udaf(udaf.clone());
        }
        self.ctx.register_udaf(udaf);
    }

    /// Registers a window function for planning and on every executor.
    pub fn register_udwf(&self, udwf: WindowUDF) {
        for executor in self.cluster.local_executors() {
            executor.register_udwf(udwf.clone());
        }
        self.ctx.register_udwf(udwf);
    }

    /// Runs every statement of `sql` in order and returns the last one's result.
    pub async fn sql(&self, sql: &str) -> Result<QueryResult> {
        self.sql_stream(sql).await?.collect().await
    }

    /// Runs every statement of `sql` in order, each planned after the one before it ran
    /// (so a `CREATE` is seen by the statements after it), and streams the last one's
    /// result: its rows are read from the executors batch by batch as the stream is
    /// polled, so a large result never sits in memory whole. See [`ResultStream`]. In a
    /// text of several statements, an error names the statement and its line.
    pub async fn sql_stream(&self, sql: &str) -> Result<ResultStream> {
        let statements = script::split(sql);
        let Some((last, earlier)) = statements.split_last() else {
            return Err(EmberError::Config {
                key: "query".into(),
                message: "the SQL text holds no statement".into(),
            });
        };
        let named = !earlier.is_empty();
        for statement in earlier {
            self.run_statement(statement, named).await?;
        }
        self.execute_statement(last, named).await
    }

    /// Runs one statement of a script and drops its rows.
    async fn run_statement(&self, statement: &ScriptStatement, named: bool) -> Result<()> {
        let mut rows = self.execute_statement(statement, named).await?;
        while let Some(batch) = futures::StreamExt::next(&mut rows).await {
            batch.map_err(|e| crate::sql::run::in_statement(e.into(), statement, named))?;
        }
        Ok(())
    }

    /// [`Session::execute`], with an error that names the statement and its line when
    /// `named`.
    pub async fn execute_statement(
        &self,
        statement: &ScriptStatement,
        named: bool,
    ) -> Result<ResultStream> {
        self.execute(&statement.text)
            .await
            .map_err(|e| crate::sql::run::in_statement(e, statement, named))
    }

    /// Runs one statement and streams its result. Ember's own statements (`SET ember.…`,
    /// `SHOW ember.…`, `CREATE TABLE … AS`) are handled here; the rest is planned by
    /// DataFusion: catalog statements run in this process, queries, `INSERT INTO` and
    /// `COPY` on the cluster. With a catalog, definitions made elsewhere are loaded first
    /// and the ones made here are recorded.
    pub async fn execute(&self, text: &str) -> Result<ResultStream> {
        // The statement names the jobs it runs, in the event log and `ember history`.
        JOB_NAME
            .scope(text.trim().to_string(), self.execute_named(text))
            .await
    }

    async fn execute_named(&self, text: &str) -> Result<ResultStream> {
        self.sync_catalog().await?;
        // Tables at the versions asked for (`VERSION AS OF`), registered while the
        // statement is planned.
        let pinned = self.pin_versions(text).await?;
        self.execute_parsed(pinned.text()).await
    }

    async fn execute_parsed(&self, text: &str) -> Result<ResultStream> {
        match statement::parse(text)? {
            EmberStatement::SetEmber { key, value } => {
                self.set(&key, &value)?;
                Ok(ResultStream::from_result(QueryResult::empty()))
            }
            EmberStatement::ShowEmber { key } => {
                let config = self.config();
                let rows: Vec<(String, String)> = if key == "ember" {
                    crate::config::CONFIG_ENTRIES
                        .iter()
                        .filter_map(|e| config.get(e.key).map(|v| (e.key.to_string(), v)))
                        .collect()
                } else {
                    let value = config.get(&key).ok_or_else(|| EmberError::Config {
                        key: key.clone(),
                        message: "unknown key (SHOW ember lists them)".into(),
                    })?;
                    vec![(key, value)]
                };
                Ok(ResultStream::from_result(QueryResult::settings(rows)?))
            }
            EmberStatement::CreateTableAs(ctas) => self.create_table_as(ctas).await,
            EmberStatement::DataFusion(parsed) => {
                let change = self.catalog_change(&parsed, text)?;
                let plan = self.ctx.state().statement_to_plan(*parsed).await?;
                let rows = self.stream_logical(plan).await?;
                if let Some(change) = change {
                    self.record(change).await?;
                }
                Ok(rows)
            }
        }
    }

    /// The stage graph of the last statement of `sql` (earlier ones are run, so that a
    /// `CREATE VIEW` before a query takes effect).
    pub async fn explain(&self, sql: &str) -> Result<StageGraph> {
        let statements = script::split(sql);
        let Some((last, earlier)) = statements.split_last() else {
            return Err(EmberError::Config {
                key: "query".into(),
                message: "the SQL text holds no statement".into(),
            });
        };
        for statement in earlier {
            self.run_statement(statement, true).await?;
        }
        self.sync_catalog().await?;
        let pinned = self.pin_versions(&last.text).await?;
        let plan = self.ctx.state().create_logical_plan(pinned.text()).await?;
        let physical = self.physical_plan(plan).await?;
        Ok(cut_stages_with(physical, self.cut_options())?)
    }

    pub(crate) async fn physical_plan(&self, plan: LogicalPlan) -> Result<Arc<dyn ExecutionPlan>> {
        self.prepare_caches(&plan).await?;
        let df = self.ctx.execute_logical_plan(plan).await?;
        Ok(df.create_physical_plan().await?)
    }

    /// Runs one logical plan: catalog statements here, everything else on the cluster.
    pub async fn run_logical(&self, plan: LogicalPlan) -> Result<QueryResult> {
        self.stream_logical(plan).await?.collect().await
    }

    /// [`Session::run_logical`], with the rows of a query streamed.
    pub async fn stream_logical(&self, plan: LogicalPlan) -> Result<ResultStream> {
        if let LogicalPlan::Dml(dml) = &plan
            && let WriteOp::Insert(op) = dml.op
            && let Some(rows) = self.insert_into(dml, op).await?
        {
            return Ok(rows);
        }
        if matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Statement(_))
            || crate::sql::files::reads_only_the_catalog(&plan)
        {
            let df = self.ctx.execute_logical_plan(plan).await?;
            let physical = df.create_physical_plan().await?;
            let schema = physical.schema();
            let batches = collect(physical, self.ctx.task_ctx()).await?;
            self.keep_required_settings()?;
            return Ok(ResultStream::from_result(QueryResult {
                schema,
                batches,
                metrics: None,
            }));
        }
        if let LogicalPlan::Copy(copy) = &plan {
            // `COPY ... TO` goes through the commit protocol like every write.
            let ext = copy.file_type.get_ext();
            let format = WriteFormat::from_extension(&ext).ok_or_else(|| EmberError::Config {
                key: "COPY".into(),
                message: format!("cannot write '{ext}' files (parquet, csv or json)"),
            })?;
            if !copy.partition_by.is_empty() || !copy.options.is_empty() {
                return Err(EmberError::Config {
                    key: "COPY".into(),
                    message: "PARTITIONED BY and OPTIONS (...) are not supported yet".into(),
                });
            }
            let input = self.physical_plan(copy.input.as_ref().clone()).await?;
            let (location, mode) = (copy.output_url.clone(), self.config().output_mode);
            let written = if crate::commit::names_a_file(&location, format) {
                self.write_plan_as_file(input, &location, format, mode)
                    .await
            } else {
                self.write_plan(input, &location, format, mode).await
            };
            return written.map(ResultStream::from_result);
        }
        let physical = self.physical_plan(plan).await?;
        self.stream_physical(physical).await
    }

    /// The DataFusion settings tasks run with: the session's settings, then every option
    /// that differs from DataFusion's default or that Ember sets a default for (so a `SET`
    /// back to DataFusion's value counts), then Ember's required ones.
    fn task_settings(&self) -> Vec<(String, String)> {
        let defaults: HashMap<String, Option<String>> = ConfigOptions::default()
            .entries()
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect();
        let config = self.config();
        let mut settings = config.datafusion_settings();
        let state = self.ctx.state();
        settings.extend(
            state
                .config_options()
                .entries()
                .into_iter()
                .filter(|e| {
                    defaults.get(&e.key) != Some(&e.value)
                        || DEFAULT_DATAFUSION_SETTINGS.iter().any(|(k, _)| *k == e.key)
                })
                .filter_map(|e| e.value.map(|v| (e.key, v))),
        );
        settings.extend(
            REQUIRED_DATAFUSION_SETTINGS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        // The S3 options, so that executors reach the driver's stores, and the shuffle
        // directory.
        settings.extend(config.storage.settings());
        if let Some(dir) = &config.shuffle_dir {
            settings.push((SHUFFLE_DIR_SETTING.to_string(), dir.clone()));
        }
        if !config.runtime_filters {
            settings.push((
                ember_executors::RUNTIME_FILTERS_SETTING.to_string(),
                "false".to_string(),
            ));
        }
        if !config.host_local_reads {
            settings.push((
                ember_executors::HOST_LOCAL_READS_SETTING.to_string(),
                "false".to_string(),
            ));
        }
        settings
    }

    /// Refuses (and undoes) a `SET` of a setting that Ember needs to keep.
    fn keep_required_settings(&self) -> Result<()> {
        let entries = self.ctx.state().config_options().entries();
        for (key, required) in REQUIRED_DATAFUSION_SETTINGS {
            let current = entries
                .iter()
                .find(|e| e.key == *key)
                .and_then(|e| e.value.clone());
            if current.as_deref() != Some(*required) {
                let state = self.ctx.state_ref();
                let mut state = state.write();
                state.config_mut().options_mut().set(key, required)?;
                return Err(EmberError::Config {
                    key: key.to_string(),
                    message: format!(
                        "Ember runs each partition as its own task and needs this to be {required}"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Cuts a physical plan into stages, runs them, and collects the final stage's output.
    pub async fn run_physical(&self, plan: Arc<dyn ExecutionPlan>) -> Result<QueryResult> {
        self.stream_physical(plan).await?.collect().await
    }

    /// Cuts a physical plan into stages, runs them, and streams the final stage's output,
    /// partition by partition in order. The job's files are removed when the stream ends
    /// or is dropped (at once when the job fails).
    pub async fn stream_physical(&self, plan: Arc<dyn ExecutionPlan>) -> Result<ResultStream> {
        let schema = plan.schema();
        let job_id = new_job_id("job");
        let mut files = self.job_files(&job_id);
        let mut finished = match self.run_job(plan, &job_id, false).await {
            Ok(finished) => finished,
            Err(e) => {
                files.remove().await;
                return Err(e);
            }
        };
        files.lease = finished.outcome.lease.take().map(Arc::new);
        let mut pieces = finished.outcome.final_output;
        pieces.sort_by_key(|l| (l.output_partition, l.map_partition));
        let batches = self.cluster.read_output(
            schema,
            &job_id,
            &pieces,
            finished.outcome.addresses,
            &self.config().storage,
        );
        Ok(ResultStream::new(batches, finished.outcome.metrics, files))
    }

    /// Runs `plan` as job `job_id` and adds what its tasks added to the session's
    /// accumulators. The job's files stay on the executors.
    /// With `retain_output`, the final output stays until the job is removed, even on a
    /// process cluster whose scheduler would remove it once the result is read.
    async fn run_job(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        job_id: &str,
        retain_output: bool,
    ) -> Result<FinishedJob> {
        let graph = cut_stages_with(plan, self.cut_options())?;
        let final_stage = graph.final_stage().id();
        let final_partitions = graph.final_stage().output().partition_count();
        let mut job = JobSpec::from_graph(job_id, &graph, self.task_settings())?;
        job.name = JOB_NAME.try_with(Clone::clone).ok();
        job.retain_output = retain_output;
        job.adaptive = self.config().adaptive();
        let pending = std::mem::take(&mut *lock(&self.pending_broadcasts));
        for (name, bytes) in pending {
            self.cluster.put_broadcast(&name, bytes).await?;
        }
        let outcome = self.cluster.run_job(&job, self.listener.as_deref()).await?;
        let mut totals = lock(&self.accumulators);
        for (name, value) in &outcome.metrics.accumulators {
            totals
                .entry(name.clone())
                .and_modify(|v| v.merge(*value))
                .or_insert(*value);
        }
        Ok(FinishedJob {
            outcome,
            final_stage,
            final_partitions,
        })
    }

    /// The files job `job_id` leaves on this session's cluster.
    fn job_files(&self, job_id: &str) -> JobFiles {
        JobFiles {
            job_id: job_id.to_string(),
            remover: self.cluster.job_remover(),
            shuffle_dir: self.config().shuffle_dir,
            stores: self.config().storage,
            lease: None,
        }
    }

    async fn remove_job_files(&self, job_id: &str) {
        self.job_files(job_id).remove().await;
    }

    /// The value of accumulator `name`: what user functions added to it in the jobs of
    /// this session since it was last reset (`None` when nothing was ever added).
    pub fn accumulator_value(&self, name: &str) -> Option<AccumulatorValue> {
        lock(&self.accumulators).get(name).copied()
    }

    /// Sets accumulator `name` back to `start`.
    pub(crate) fn reset_accumulator(&self, name: &str, start: AccumulatorValue) {
        lock(&self.accumulators).insert(name.to_string(), start);
    }

    /// A new cache entry for the dataset computed by `lineage`.
    pub(crate) fn new_cache_entry(&self, lineage: LogicalPlan) -> Arc<CacheEntry> {
        let id = NEXT_CACHE.fetch_add(1, Ordering::Relaxed);
        Arc::new(CacheEntry::new(id, lineage))
    }

    /// Materializes every cache that `plan` reads and that is not (or no longer) on the
    /// executors, so that the plan can be planned physically.
    pub(crate) async fn prepare_caches(&self, plan: &LogicalPlan) -> Result<()> {
        let mut entries: Vec<Arc<CacheEntry>> = Vec::new();
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::Extension(extension) = node
                && let Some(cached) = extension.node.as_any().downcast_ref::<CachedData>()
                && !entries.iter().any(|e| e.id() == cached.entry().id())
            {
                entries.push(Arc::clone(cached.entry()));
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        for entry in entries {
            self.materialize(entry).await?;
        }
        Ok(())
    }

    /// Runs a cache's lineage unless all its files are still held; keeps the final
    /// stage's output on the executors and drops the rest.
    fn materialize(&self, entry: Arc<CacheEntry>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if let Some(location) = entry.location() {
                let mut all_held = true;
                for piece in location.pieces.iter() {
                    // A piece in the shuffle directory is held by the store.
                    if piece.path.to_string_lossy().contains("://") {
                        continue;
                    }
                    all_held &= self.cluster.holds(&piece.executor_id, &piece.path).await;
                }
                if all_held {
                    return Ok(());
                }
                tracing::warn!(
                    cache = entry.id(),
                    "cached partitions are gone from the executors; recomputing them from \
                     the dataset's lineage"
                );
                entry.clear_location();
                self.remove_job_files(&location.job_id).await;
            }
            self.prepare_caches(entry.lineage()).await?;
            let physical = self.physical_plan(entry.lineage().clone()).await?;
            let job_id = new_job_id(&format!("cache-{}", entry.id()));
            let finished = match self.run_job(physical, &job_id, true).await {
                Ok(finished) => finished,
                Err(e) => {
                    self.remove_job_files(&job_id).await;
                    return Err(e);
                }
            };
            for stage in 0..finished.final_stage {
                if let Err(e) = self.cluster.remove_stage(&job_id, stage).await {
                    tracing::warn!(job = %job_id, stage, "removing a cache's shuffle files failed: {e}");
                }
            }
            let mut pieces: Vec<CachedPiece> = finished
                .outcome
                .final_output
                .into_iter()
                .map(|l| CachedPiece {
                    partition: l.output_partition,
                    executor_id: l.executor_id.to_string(),
                    path: l.path,
                    job_id: job_id.clone(),
                    stage_id: l.stage_id.index(),
                    map_partition: l.map_partition,
                    attempt: l.attempt,
                })
                .collect();
            pieces.sort_by(|a, b| (a.partition, &a.path).cmp(&(b.partition, &b.path)));
            entry.set_location(CacheLocation {
                job_id,
                partitions: finished.final_partitions,
                pieces: Arc::new(pieces),
            });
            Ok(())
        })
    }

    /// Drops a cache's files from the executors; a later action recomputes it.
    pub(crate) async fn drop_cache(&self, entry: &CacheEntry) {
        if let Some(location) = entry.clear_location() {
            self.remove_job_files(&location.job_id).await;
        }
    }
}

/// A job that ran, with the shape of its final stage.
struct FinishedJob {
    outcome: JobOutcome,
    final_stage: usize,
    final_partitions: usize,
}
