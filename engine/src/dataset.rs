//! [`Dataset`]: the columnar half of Ember's Rust DSL.
//!
//! A dataset is a lazy DataFusion logical plan bound to a [`Session`]. Operations build the
//! plan; actions ([`Dataset::collect`], [`Dataset::count`], [`Dataset::show`],
//! [`Dataset::write_parquet`], ...) plan it physically and run it on the session's cluster
//! exactly as SQL runs: cut into stages, every task plan serialized, every exchange a
//! shuffle through files.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! use std::sync::Arc;
//!
//! use ember::Session;
//! use ember::datafusion::arrow::array::{Float64Array, RecordBatch, StringArray};
//! use ember::datafusion::arrow::datatypes::{DataType, Field, Schema};
//! use ember::datafusion::functions_aggregate::expr_fn::{avg, count};
//! use ember::datafusion::prelude::{col, lit};
//!
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("product", DataType::Utf8, false),
//!     Field::new("price", DataType::Float64, false),
//! ]));
//! let sales = RecordBatch::try_new(
//!     schema,
//!     vec![
//!         Arc::new(StringArray::from(vec!["tea", "tea", "jam", "tea"])),
//!         Arc::new(Float64Array::from(vec![2.0, 4.0, 3.0, -1.0])),
//!     ],
//! )?;
//!
//! let session = Session::local(2)?; // or session.read_parquet("data/sales").await?
//! let per_product = session
//!     .from_batches(vec![sales])?
//!     .filter(col("price").gt(lit(0.0)))?
//!     .group_by(vec![col("product")])
//!     .agg(vec![count(lit(1)).alias("n"), avg(col("price")).alias("mean")])?
//!     .sort(vec![col("product").sort(true, false)])?;
//! assert_eq!(per_product.count().await?, 2);
//! per_product.show().await?; // jam 1 3.0, tea 2 3.0
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```

use std::sync::Arc;

use arrow::datatypes::{Int64Type, SchemaRef};
use datafusion::common::{DFSchema, JoinType};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{Expr, LogicalPlan, Partitioning, SortExpr};
use datafusion::prelude::{DataFrame, lit};

use ember_planner::{
    CacheEntry, CachedData, Exchange, MapPartitions, SAMPLE_FUNCTION, SampleSpec, WriteFormat,
};

use crate::commit::WriteMode;
use crate::error::{EmberError, Result};
use crate::result_stream::QueryResult;
use crate::session::Session;

/// The field separator of text read as CSV: the ASCII unit separator, which text files do
/// not contain in practice (a line that does fails with the CSV reader's field-count error).
pub(crate) const TEXT_SEPARATOR: u8 = 0x1f;
/// The quote byte of text read as CSV: NUL, so that quotes in text are plain characters.
pub(crate) const TEXT_QUOTE: u8 = 0x00;

/// A distributed collection of rows with a schema, computed lazily on a [`Session`]'s
/// cluster.
#[derive(Clone)]
pub struct Dataset<'s> {
    session: &'s Session,
    frame: DataFrame,
}

/// A dataset grouped by key expressions, waiting for its aggregates
/// ([`Dataset::group_by`]).
pub struct GroupedDataset<'s> {
    dataset: Dataset<'s>,
    keys: Vec<Expr>,
}

impl<'s> Dataset<'s> {
    /// Wraps a DataFusion DataFrame planned in `session`'s context.
    pub fn new(session: &'s Session, frame: DataFrame) -> Self {
        Self { session, frame }
    }

    fn with(&self, frame: DataFrame) -> Self {
        Self::new(self.session, frame)
    }

    /// A dataset of `plan`, planned in the same session state.
    pub(crate) fn with_plan(&self, plan: LogicalPlan) -> Self {
        let (state, _) = self.frame.clone().into_parts();
        self.with(DataFrame::new(state, plan))
    }

    /// The logical schema.
    pub fn schema(&self) -> &DFSchema {
        self.frame.schema()
    }

    /// The underlying DataFusion DataFrame (its plan, not its data).
    pub fn frame(&self) -> &DataFrame {
        &self.frame
    }

    /// One row per element of the list column `column`, the other columns repeated
    /// (Spark's `explode`); rows whose list is empty or null disappear.
    pub fn explode(&self, column: &str) -> Result<Self> {
        Ok(self.with(self.frame.clone().unnest_columns(&[column])?))
    }

    /// Every batch mapped through the batch function registered as `name`
    /// in the session's registry ([`FunctionRegistry::register_batch_fn`]), in the
    /// executors, partition by partition. Fails here, naming it, when no function has that
    /// name.
    ///
    /// [`FunctionRegistry::register_batch_fn`]: crate::FunctionRegistry::register_batch_fn
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// use std::sync::Arc;
    ///
    /// use ember::datafusion::arrow::array::{AsArray, Int64Array, RecordBatch};
    /// use ember::datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    /// use ember::Session;
    ///
    /// let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    /// let out = Arc::clone(&schema);
    /// let session = Session::local(2)?;
    /// // In the session's registry here; in the binary's registry for executor processes.
    /// session.functions().register_batch_fn("double", Arc::clone(&schema), move |batch| {
    ///     let doubled: Int64Array = batch.column(0).as_primitive::<Int64Type>().unary(|n| n * 2);
    ///     Ok(RecordBatch::try_new(Arc::clone(&out), vec![Arc::new(doubled)])?)
    /// });
    ///
    /// let numbers = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))])?;
    /// let doubled = session.from_batches(vec![numbers])?.map_batches("double")?;
    /// let result = doubled.collect().await?;
    /// assert_eq!(result.batches[0].column(0).as_primitive::<Int64Type>().values(), &[2, 4, 6]);
    /// assert!(session.from_batches(result.batches)?.map_batches("triple").is_err());
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })
    /// # }
    /// ```
    pub fn map_batches(&self, name: &str) -> Result<Self> {
        self.call_function(name, String::new())
    }

    /// Every partition run through the function registered as `name`, which receives
    /// `args` (text the plan carries to the executors, such as a fitted model's JSON).
    pub fn map_partitions(&self, name: &str, args: &str) -> Result<Self> {
        self.call_function(name, args.to_string())
    }

    fn call_function(&self, name: &str, args: String) -> Result<Self> {
        let (state, plan) = self.frame.clone().into_parts();
        let plan =
            MapPartitions::with_args(plan, self.session.functions(), name, args)?.into_plan();
        Ok(self.with(DataFrame::new(state, plan)))
    }

    /// A seeded random sample: without replacement each row is kept with probability
    /// `fraction` (0 to 1); with replacement each row appears a Poisson(`fraction`) number
    /// of times. Each partition draws from its own generator seeded by `seed` and the
    /// partition, so the same seed over the same input gives the same sample.
    pub fn sample(&self, fraction: f64, with_replacement: bool, seed: u64) -> Result<Self> {
        let spec = SampleSpec {
            fraction,
            with_replacement,
            seed,
        };
        spec.validate()
            .map_err(|message| EmberError::InvalidArgument {
                operation: "sample",
                message,
            })?;
        self.call_function(SAMPLE_FUNCTION, spec.to_args())
    }

    /// The same rows, kept on the executors once the first action computes them, so that
    /// later actions in the session read them instead of recomputing (Spark's `cache`).
    /// Partitions that an executor no longer holds are recomputed from the lineage.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// use ember::Session;
    ///
    /// let session = Session::local(2)?;
    /// let numbers = session.parallelize((0..1000_i64).map(|i| (i, i % 7)).collect())?;
    /// let sample = numbers.sample(0.1, false, 42)?.cache(); // same seed, same rows
    /// let first = sample.count().await?; // computes and keeps the partitions
    /// assert_eq!(sample.count().await?, first); // reads them back
    /// assert_eq!(sample.dataset().cache_entry().unwrap().materializations(), 1);
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("sample");
    /// let saved = sample.checkpoint(path.to_str().unwrap()).await?; // Parquet, new lineage
    /// assert_eq!(saved.count().await?, first);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })
    /// # }
    /// ```
    pub fn cache(&self) -> Self {
        let entry = self
            .session
            .new_cache_entry(self.frame.logical_plan().clone());
        let (state, _) = self.frame.clone().into_parts();
        self.with(DataFrame::new(state, CachedData::new(entry).into_plan()))
    }

    /// The cache behind a dataset returned by [`Self::cache`].
    pub fn cache_entry(&self) -> Option<Arc<CacheEntry>> {
        match self.frame.logical_plan() {
            LogicalPlan::Extension(extension) => extension
                .node
                .as_any()
                .downcast_ref::<CachedData>()
                .map(|cached| Arc::clone(cached.entry())),
            _ => None,
        }
    }

    /// Drops the kept partitions of a cached dataset from the executors.
    pub async fn unpersist(&self) {
        if let Some(entry) = self.cache_entry() {
            self.session.drop_cache(&entry).await;
        }
    }

    /// Writes the rows as Parquet under `path` and returns a dataset that reads them back:
    /// later operations start from the files, not from this dataset's lineage.
    pub async fn checkpoint(&self, path: &str) -> Result<Dataset<'s>> {
        self.write_parquet(path).await?;
        self.session.read_parquet(path).await
    }

    /// The same rows under the table name `alias`, to qualify columns in joins.
    pub fn alias(&self, alias: &str) -> Result<Self> {
        Ok(self.with(self.frame.clone().alias(alias)?))
    }

    /// The session the dataset runs on.
    pub fn session(&self) -> &'s Session {
        self.session
    }

    /// Rows for which `predicate` is true.
    pub fn filter(&self, predicate: Expr) -> Result<Self> {
        Ok(self.with(self.frame.clone().filter(predicate)?))
    }

    /// The given expressions as columns.
    pub fn select(&self, exprs: Vec<Expr>) -> Result<Self> {
        Ok(self.with(self.frame.clone().select(exprs)?))
    }

    /// Only the named columns.
    pub fn select_columns(&self, columns: &[&str]) -> Result<Self> {
        Ok(self.with(self.frame.clone().select_columns(columns)?))
    }

    /// Adds (or replaces) column `name` computed by `expr`.
    pub fn with_column(&self, name: &str, expr: Expr) -> Result<Self> {
        Ok(self.with(self.frame.clone().with_column(name, expr)?))
    }

    /// Groups rows by `keys`; [`GroupedDataset::agg`] names the aggregates.
    pub fn group_by(&self, keys: Vec<Expr>) -> GroupedDataset<'s> {
        GroupedDataset {
            dataset: self.clone(),
            keys,
        }
    }

    /// Joins with `right` where `left_columns` equal `right_columns`, pairwise.
    pub fn join(
        &self,
        right: &Dataset<'_>,
        join_type: JoinType,
        left_columns: &[&str],
        right_columns: &[&str],
    ) -> Result<Self> {
        let joined = self.frame.clone().join(
            right.frame.clone(),
            join_type,
            left_columns,
            right_columns,
            None,
        )?;
        Ok(self.with(joined))
    }

    /// Joins with `right` on arbitrary boolean expressions.
    pub fn join_on(&self, right: &Dataset<'_>, join_type: JoinType, on: Vec<Expr>) -> Result<Self> {
        Ok(self.with(
            self.frame
                .clone()
                .join_on(right.frame.clone(), join_type, on)?,
        ))
    }

    /// Rows ordered by `order` (`col("x").sort(ascending, nulls_first)`).
    pub fn sort(&self, order: Vec<SortExpr>) -> Result<Self> {
        Ok(self.with(self.frame.clone().sort(order)?))
    }

    /// Skips `skip` rows, then keeps at most `fetch` (all with `None`).
    pub fn limit(&self, skip: usize, fetch: Option<usize>) -> Result<Self> {
        Ok(self.with(self.frame.clone().limit(skip, fetch)?))
    }

    /// Distinct rows.
    pub fn distinct(&self) -> Result<Self> {
        Ok(self.with(self.frame.clone().distinct()?))
    }

    /// The rows of both datasets (duplicates kept), matched by column position.
    pub fn union(&self, other: &Dataset<'_>) -> Result<Self> {
        Ok(self.with(self.frame.clone().union(other.frame.clone())?))
    }

    /// The rows spread evenly (round robin) over `partitions` partitions: a shuffle.
    pub fn repartition(&self, partitions: usize) -> Result<Self> {
        let partitions = positive("repartition", partitions)?;
        self.exchange(Partitioning::RoundRobinBatch(partitions))
    }

    /// The rows hash-partitioned by `keys` into `partitions` partitions: a shuffle that
    /// puts equal keys in the same partition.
    pub fn repartition_by(&self, keys: Vec<Expr>, partitions: usize) -> Result<Self> {
        let partitions = positive("repartition_by", partitions)?;
        self.exchange(Partitioning::Hash(keys, partitions))
    }

    /// A shuffle that DataFusion's optimizer keeps (it drops repartitions it does not need).
    fn exchange(&self, partitioning: Partitioning) -> Result<Self> {
        let (state, plan) = self.frame.clone().into_parts();
        let plan = Exchange::new(plan, partitioning)?.into_plan();
        Ok(self.with(DataFrame::new(state, plan)))
    }

    /// Runs the plan on the cluster and returns every row with the job's metrics.
    pub async fn collect(&self) -> Result<QueryResult> {
        self.session
            .prepare_caches(self.frame.logical_plan())
            .await?;
        let plan = self.frame.clone().create_physical_plan().await?;
        self.session.run_physical(plan).await
    }

    /// The result's schema (physical, as the batches of [`Self::collect`] have it).
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::clone(self.frame.schema().inner())
    }

    /// Number of rows, counted on the cluster.
    pub async fn count(&self) -> Result<u64> {
        let counted = self
            .frame
            .clone()
            .aggregate(vec![], vec![count(lit(1)).alias("count")])?;
        let result = self.with(counted).collect().await?;
        let value = result.first_value::<Int64Type>().unwrap_or(0);
        Ok(u64::try_from(value).unwrap_or(0))
    }

    /// Prints the rows as a table on stdout.
    pub async fn show(&self) -> Result<()> {
        let result = self.collect().await?;
        let table = arrow::util::pretty::pretty_format_batches(&result.batches)
            .map_err(datafusion::error::DataFusionError::from)?;
        println!("{table}");
        Ok(())
    }

    /// Writes the rows as Parquet files under the folder `path` (a path or an `s3://`,
    /// `memory://` or `file://` URL), committed atomically; an existing destination is
    /// handled as `ember.output.mode` says (by default, refused).
    pub async fn write_parquet(&self, path: &str) -> Result<QueryResult> {
        self.write(
            path,
            WriteFormat::Parquet,
            self.session.config().output_mode,
        )
        .await
    }

    /// Writes the rows as CSV files (with a header) under the folder `path`, as
    /// [`Self::write_parquet`] does.
    pub async fn write_csv(&self, path: &str) -> Result<QueryResult> {
        self.write(path, WriteFormat::Csv, self.session.config().output_mode)
            .await
    }

    /// Writes the rows as newline-delimited JSON files under the folder `path`, as
    /// [`Self::write_parquet`] does.
    pub async fn write_json(&self, path: &str) -> Result<QueryResult> {
        self.write(path, WriteFormat::Json, self.session.config().output_mode)
            .await
    }

    /// Writes the rows as `format` files under the folder `path`: each task writes its
    /// partition into a staging folder, and the files appear at `path` (with a `_SUCCESS`
    /// marker, written last) only when the job succeeds. `mode` says what happens to files
    /// already there. Returns one row, `count`, the rows written.
    pub async fn write(
        &self,
        path: &str,
        format: WriteFormat,
        mode: WriteMode,
    ) -> Result<QueryResult> {
        self.session
            .prepare_caches(self.frame.logical_plan())
            .await?;
        let plan = self.frame.clone().create_physical_plan().await?;
        self.session.write_plan(plan, path, format, mode).await
    }

    /// Writes the rows into the Delta table at `location` (a path or an `s3://` URL) as
    /// one new version, committed by the driver once every task succeeded: a new table
    /// is created; an existing one is refused, appended to or overwritten as `mode` says.
    /// Returns one row, `count`, the rows written.
    pub async fn write_delta(&self, location: &str, mode: WriteMode) -> Result<QueryResult> {
        self.session
            .prepare_caches(self.frame.logical_plan())
            .await?;
        let plan = self.frame.clone().create_physical_plan().await?;
        self.session.write_delta_plan(plan, location, mode).await
    }

    /// Writes the rows into the PostgreSQL table `table` on the server of `url`: each
    /// task copies its rows into a staging table, and the driver moves the winners' rows
    /// into the table in one transaction once every task succeeded (a missing table is
    /// created; `mode` decides about an existing one). Returns one row, `count`.
    pub async fn write_postgres(
        &self,
        url: &str,
        table: &str,
        mode: WriteMode,
    ) -> Result<QueryResult> {
        self.session
            .prepare_caches(self.frame.logical_plan())
            .await?;
        let plan = self.frame.clone().create_physical_plan().await?;
        self.session
            .write_postgres_plan(plan, url, table, mode)
            .await
    }

    /// Produces the rows to the Kafka topic of `options` (`KafkaOptions::from_url
    /// ("kafka://HOST:PORT/TOPIC")`): the `value` column (text or bytes) as each
    /// message's value, or each row as a JSON object when there is none; `key` as its
    /// key; `partition`, if present, as its partition. At least once: a task run again
    /// produces its rows again. Returns one row, `count`.
    pub async fn write_kafka(
        &self,
        options: &ember_connectors::kafka::KafkaOptions,
    ) -> Result<QueryResult> {
        self.session
            .prepare_caches(self.frame.logical_plan())
            .await?;
        let plan = self.frame.clone().create_physical_plan().await?;
        self.session.write_kafka_plan(plan, options).await
    }
}

impl<'s> GroupedDataset<'s> {
    /// One row per distinct key with the values of `aggregates`
    /// (`datafusion::functions_aggregate::expr_fn::{sum, avg, count, ...}`).
    pub fn agg(self, aggregates: Vec<Expr>) -> Result<Dataset<'s>> {
        let frame = self
            .dataset
            .frame
            .clone()
            .aggregate(self.keys, aggregates)?;
        Ok(self.dataset.with(frame))
    }
}

fn positive(operation: &'static str, n: usize) -> Result<usize> {
    if n == 0 {
        return Err(EmberError::InvalidArgument {
            operation,
            message: "the number of partitions must be at least 1".into(),
        });
    }
    Ok(n)
}
