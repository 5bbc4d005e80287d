//! [`TypedDataset`]: the typed half of Ember's Rust DSL, rows of a Rust type `T` with
//! named row functions ([`map`](TypedDataset::map), [`flat_map`](TypedDataset::flat_map),
//! [`filter`](TypedDataset::filter), [`key_by`](TypedDataset::key_by)) and, on pairs
//! `(K, V)`, the key/value operations of MapReduce and Spark's pair RDDs.
//!
//! A typed dataset is a [`Dataset`] whose columns are the fields of `T`; each operation
//! adds plan nodes (a named function, an exchange, a DataFusion join or aggregate), so it
//! runs through the same stages, task serialization and shuffle files as SQL.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! use ember::{Session, TypedFunctions};
//!
//! let session = Session::local(2)?;
//! // In the session's registry here; in the binary's registry for executor processes.
//! session.functions().register_flat_map_fn("words", |(line,): (String,)| {
//!     line.split_whitespace().map(|w| (w.to_lowercase(), 1_i64)).collect::<Vec<_>>()
//! })?;
//! session.functions().register_reducer::<String, i64>("add", |a, b| a + b)?;
//!
//! let lines = vec![("the cat".to_string(),), ("The dog".to_string(),)];
//! let mut counts = session
//!     .parallelize(lines)?
//!     .flat_map::<(String, i64)>("words")?
//!     .reduce_by_key("add")? // combined in each map task, shuffled by word, reduced
//!     .collect_rows()
//!     .await?;
//! counts.sort();
//! assert_eq!(counts[2], ("the".to_string(), 2));
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```

use arrow::datatypes::DataType;
use datafusion::common::{Column, JoinType, ScalarValue};
use datafusion::functions::core::expr_fn::{coalesce, named_struct};
use datafusion::functions_aggregate::expr_fn::{array_agg, count};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::prelude::lit;
use ember_planner::{MapPartitions, fused_name};
use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;

use crate::dataset::Dataset;
use crate::error::{EmberError, Result};
use crate::rows::{Row, from_batch, merge_name, schema_of, to_batch};
use crate::session::Session;

/// The rows of [`TypedDataset::left_outer_join`]: each key, its value here, and the other
/// side's value when there is one.
pub type LeftJoined<K, V, W> = (K, (V, Option<W>));

/// The rows of [`TypedDataset::cogroup`]: each key with its values on both sides.
pub type Cogrouped<K, V, W> = (K, (Vec<V>, Vec<W>));

/// A distributed collection of rows of type `T`, computed lazily on a [`Session`]'s
/// cluster.
pub struct TypedDataset<'s, T> {
    rows: Dataset<'s>,
    _row: PhantomData<fn() -> T>,
}

impl<T> Clone for TypedDataset<'_, T> {
    fn clone(&self) -> Self {
        Self {
            rows: self.rows.clone(),
            _row: PhantomData,
        }
    }
}

impl Session {
    /// `rows` as a typed dataset, spread over as many partitions as the cluster has task
    /// slots (Spark's `parallelize`). The rows travel inside the task plans, so this suits
    /// small data.
    pub fn parallelize<T: Row>(&self, rows: Vec<T>) -> Result<TypedDataset<'_, T>> {
        let schema = schema_of::<T>()?;
        let parts = self
            .config()
            .target_partitions()
            .clamp(1, rows.len().max(1));
        let per_part = rows.len().div_ceil(parts).max(1);
        let mut batches = Vec::with_capacity(parts);
        for chunk in rows.chunks(per_part) {
            batches.push(to_batch(schema.fields(), chunk)?);
        }
        if batches.is_empty() {
            batches.push(to_batch::<T>(schema.fields(), &[])?);
        }
        Ok(TypedDataset::new(self.from_batches(batches)?))
    }
}

impl<'s> Dataset<'s> {
    /// This dataset's rows as values of `T`, matched to the columns by name for structs
    /// and by position for tuples. A mismatch fails when the rows are read, naming the
    /// columns and the type.
    pub fn typed<T: Row>(&self) -> TypedDataset<'s, T> {
        TypedDataset::new(self.clone())
    }
}

impl<'s, T: Row> TypedDataset<'s, T> {
    fn new(rows: Dataset<'s>) -> Self {
        Self {
            rows,
            _row: PhantomData,
        }
    }

    /// The columnar view of the same rows, for DataFusion expressions.
    pub fn dataset(&self) -> &Dataset<'s> {
        &self.rows
    }

    /// Runs the typed function `name`, checking that it reads `T` and returns `U`.
    fn apply<U: Row>(&self, operation: &'static str, name: &str) -> Result<TypedDataset<'s, U>> {
        let function = self.rows.session().functions().get(name)?;
        let expected = ember_planner::RowTypes::of::<T, U>();
        match function.row_types() {
            Some(types) if types == expected => {}
            Some(types) => {
                return Err(EmberError::InvalidArgument {
                    operation,
                    message: format!(
                        "function '{name}' maps {} to {}, but this needs {} to {}",
                        types.input_name,
                        types.output_name,
                        expected.input_name,
                        expected.output_name
                    ),
                });
            }
            None => {
                return Err(EmberError::InvalidArgument {
                    operation,
                    message: format!(
                        "function '{name}' is a batch function; use Dataset::map_batches"
                    ),
                });
            }
        }
        Ok(TypedDataset::new(self.rows.map_batches(name)?))
    }

    /// Like [`Self::apply`], but when this dataset ends in a typed function that can fuse
    /// with `name` (a reducer after `map`, `flat_map` or `key_by`), the two run as one
    /// function and the rows between them never become Arrow.
    fn apply_fused<U: Row>(
        &self,
        operation: &'static str,
        name: &str,
    ) -> Result<TypedDataset<'s, U>> {
        let unfused = self.apply::<U>(operation, name)?;
        if let LogicalPlan::Extension(extension) = self.rows.frame().logical_plan()
            && let Some(before) = extension.node.as_any().downcast_ref::<MapPartitions>()
            && before.args().is_empty()
        {
            let fused = fused_name(before.function().name(), name);
            let functions = self.rows.session().functions();
            if functions.get(&fused).is_ok() {
                let plan =
                    MapPartitions::new(before.input().clone(), functions, &fused)?.into_plan();
                return Ok(TypedDataset::new(self.rows.with_plan(plan)));
            }
        }
        Ok(unfused)
    }

    /// Each row mapped through the row function `name`
    /// ([`register_map_fn`](crate::TypedFunctions::register_map_fn)).
    pub fn map<U: Row>(&self, name: &str) -> Result<TypedDataset<'s, U>> {
        self.apply("map", name)
    }

    /// Each row mapped to any number of rows by `name`
    /// ([`register_flat_map_fn`](crate::TypedFunctions::register_flat_map_fn)).
    pub fn flat_map<U: Row>(&self, name: &str) -> Result<TypedDataset<'s, U>> {
        self.apply("flat_map", name)
    }

    /// The rows for which the predicate `name` is true
    /// ([`register_filter_fn`](crate::TypedFunctions::register_filter_fn)).
    pub fn filter(&self, name: &str) -> Result<Self> {
        self.apply("filter", name)
    }

    /// Each row `t` as the pair `(key(t), t)`, with the key function `name`
    /// ([`register_key_fn`](crate::TypedFunctions::register_key_fn)).
    pub fn key_by<K: Row>(&self, name: &str) -> Result<TypedDataset<'s, (K, T)>> {
        self.apply("key_by", name)
    }

    /// The rows of both datasets.
    pub fn union(&self, other: &TypedDataset<'_, T>) -> Result<Self> {
        Ok(Self::new(self.rows.union(&other.rows)?))
    }

    /// The rows spread evenly over `partitions` partitions (a shuffle).
    pub fn repartition(&self, partitions: usize) -> Result<Self> {
        Ok(Self::new(self.rows.repartition(partitions)?))
    }

    /// A seeded random sample ([`Dataset::sample`]).
    pub fn sample(&self, fraction: f64, with_replacement: bool, seed: u64) -> Result<Self> {
        Ok(Self::new(self.rows.sample(
            fraction,
            with_replacement,
            seed,
        )?))
    }

    /// Keeps the rows on the executors after the first action ([`Dataset::cache`]).
    pub fn cache(&self) -> Self {
        Self::new(self.rows.cache())
    }

    /// Writes the rows to `path` and continues from there ([`Dataset::checkpoint`]).
    pub async fn checkpoint(&self, path: &str) -> Result<TypedDataset<'s, T>> {
        Ok(TypedDataset::new(self.rows.checkpoint(path).await?))
    }

    /// Runs the plan and returns every row.
    pub async fn collect_rows(&self) -> Result<Vec<T>> {
        let result = self.rows.collect().await?;
        let mut rows = Vec::with_capacity(result.num_rows());
        for batch in &result.batches {
            rows.extend(from_batch::<T>(batch)?);
        }
        Ok(rows)
    }

    /// Number of rows, counted on the cluster.
    pub async fn count(&self) -> Result<u64> {
        self.rows.count().await
    }
}

/// The unqualified name of column `index`.
fn column_name(dataset: &Dataset<'_>, index: usize, operation: &'static str) -> Result<String> {
    let fields = dataset.schema().fields();
    fields
        .get(index)
        .map(|f| f.name().clone())
        .ok_or_else(|| EmberError::InvalidArgument {
            operation,
            message: format!(
                "pairs need two columns (key, value); the dataset has {}",
                fields.len()
            ),
        })
}

fn qualified(relation: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(relation), name))
}

fn plain(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

impl<'s, K: Row, V: Row> TypedDataset<'s, (K, V)> {
    /// The key and value columns, by position.
    fn key_value(&self, operation: &'static str) -> Result<(String, String)> {
        Ok((
            column_name(&self.rows, 0, operation)?,
            column_name(&self.rows, 1, operation)?,
        ))
    }

    /// The pairs hash-partitioned by key over the cluster's task slots.
    fn shuffle_by_key(&self, operation: &'static str) -> Result<Self> {
        let (key, _) = self.key_value(operation)?;
        let partitions = self.rows.session().config().target_partitions();
        Ok(Self::new(
            self.rows.repartition_by(vec![plain(&key)], partitions)?,
        ))
    }

    /// One pair per key, its values merged by the reducer `name`
    /// ([`register_reducer`](crate::TypedFunctions::register_reducer)): merged within each map task
    /// (map-side combine), shuffled by key, and merged again.
    pub fn reduce_by_key(&self, name: &str) -> Result<Self> {
        let combined: Self = self.apply_fused("reduce_by_key", name)?;
        combined
            .shuffle_by_key("reduce_by_key")?
            .apply("reduce_by_key", name)
    }

    /// One pair per key, its values folded by the aggregator `name`
    /// ([`register_aggregator`](crate::TypedFunctions::register_aggregator)): folded within each map task,
    /// shuffled by key, and the partial results merged.
    pub fn aggregate_by_key<U: Row>(&self, name: &str) -> Result<TypedDataset<'s, (K, U)>> {
        let partial: TypedDataset<'s, (K, U)> = self.apply_fused("aggregate_by_key", name)?;
        partial
            .shuffle_by_key("aggregate_by_key")?
            .apply("aggregate_by_key", &merge_name(name))
    }

    /// One pair per key with all its values (shuffled by key; no map-side combine, as in
    /// Spark). Prefer [`Self::reduce_by_key`] when the values can be merged.
    pub fn group_by_key(&self) -> Result<TypedDataset<'s, (K, Vec<V>)>> {
        let (key, value) = self.key_value("group_by_key")?;
        let grouped = self
            .rows
            .group_by(vec![plain(&key).alias("0")])
            .agg(vec![array_agg(plain(&value)).alias("1")])?;
        Ok(TypedDataset::new(grouped))
    }

    /// Pairs `(k, (v, w))` for every `(k, v)` here and `(k, w)` in `other` with equal keys
    /// (an inner join, shuffled or broadcast as the planner decides).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// use ember::Session;
    ///
    /// let session = Session::local(2)?;
    /// let orders = session.parallelize(vec![(1_i64, 9.5_f64), (1, 3.0), (2, 4.0), (7, 1.0)])?;
    /// let names = session.parallelize(vec![(1_i64, "ann".to_string()), (2, "bo".to_string())])?;
    ///
    /// let mut joined = orders.join(&names)?.collect_rows().await?;
    /// joined.sort_by(|a, b| a.partial_cmp(b).unwrap());
    /// assert_eq!(joined[0], (1, (3.0, "ann".to_string())));
    /// assert_eq!(joined.len(), 3); // key 7 has no name
    ///
    /// let grouped = orders.group_by_key()?.sort_by_key(true)?.collect_rows().await?;
    /// assert_eq!(grouped.len(), 3);
    /// let both = orders.cogroup(&names)?.sort_by_key(false)?.collect_rows().await?;
    /// assert_eq!(both[0], (7, (vec![1.0], vec![])));
    /// assert_eq!(orders.count_by_key().await?[&1], 2);
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// # })
    /// # }
    /// ```
    pub fn join<W: Row>(
        &self,
        other: &TypedDataset<'_, (K, W)>,
    ) -> Result<TypedDataset<'s, (K, (V, W))>> {
        self.join_pairs(other, JoinType::Inner)
    }

    /// Like [`Self::join`], keeping the pairs here without a match, with `None`.
    pub fn left_outer_join<W: Row>(
        &self,
        other: &TypedDataset<'_, (K, W)>,
    ) -> Result<TypedDataset<'s, LeftJoined<K, V, W>>> {
        self.join_pairs(other, JoinType::Left)
    }

    fn join_pairs<W: Row, O: Row>(
        &self,
        other: &TypedDataset<'_, (K, W)>,
        join_type: JoinType,
    ) -> Result<TypedDataset<'s, O>> {
        let (lk, lv) = self.key_value("join")?;
        let (rk, rv) = other.key_value("join")?;
        let left = self.rows.alias("l")?;
        let right = other.rows.alias("r")?;
        let joined = left.join_on(
            &right,
            join_type,
            vec![qualified("l", &lk).eq(qualified("r", &rk))],
        )?;
        let pairs = joined.select(vec![
            qualified("l", &lk).alias("0"),
            named_struct(vec![
                lit("0"),
                qualified("l", &lv),
                lit("1"),
                qualified("r", &rv),
            ])
            .alias("1"),
        ])?;
        Ok(TypedDataset::new(pairs))
    }

    /// For every key in either dataset, its values here and its values in `other`
    /// (Spark's `cogroup`): both sides grouped by key, then fully outer-joined.
    pub fn cogroup<W: Row>(
        &self,
        other: &TypedDataset<'_, (K, W)>,
    ) -> Result<TypedDataset<'s, Cogrouped<K, V, W>>> {
        let left = self.group_by_key()?.rows.alias("l")?;
        let right = other.group_by_key()?.rows.alias("r")?;
        let joined = left.join_on(
            &right,
            JoinType::Full,
            vec![qualified("l", "0").eq(qualified("r", "0"))],
        )?;
        let values_or_empty = |side: &Dataset<'_>, relation: &str| -> Result<Expr> {
            let field = side.schema().field(1);
            let DataType::List(item) = field.data_type() else {
                return Err(EmberError::Internal {
                    message: format!("grouped values are {}, not a list", field.data_type()),
                });
            };
            let empty = ScalarValue::List(ScalarValue::new_list_nullable(&[], item.data_type()));
            Ok(coalesce(vec![qualified(relation, "1"), lit(empty)]))
        };
        let pairs = joined.select(vec![
            coalesce(vec![qualified("l", "0"), qualified("r", "0")]).alias("0"),
            named_struct(vec![
                lit("0"),
                values_or_empty(&left, "l")?,
                lit("1"),
                values_or_empty(&right, "r")?,
            ])
            .alias("1"),
        ])?;
        Ok(TypedDataset::new(pairs))
    }

    /// The pairs ordered by key.
    pub fn sort_by_key(&self, ascending: bool) -> Result<Self> {
        let (key, _) = self.key_value("sort_by_key")?;
        Ok(Self::new(
            self.rows.sort(vec![plain(&key).sort(ascending, false)])?,
        ))
    }

    /// The keys alone.
    pub fn keys(&self) -> Result<TypedDataset<'s, (K,)>> {
        let (key, _) = self.key_value("keys")?;
        Ok(TypedDataset::new(
            self.rows.select(vec![plain(&key).alias("0")])?,
        ))
    }

    /// Number of pairs per key, counted on the cluster and returned to the driver.
    pub async fn count_by_key(&self) -> Result<HashMap<K, u64>>
    where
        K: Hash + Eq,
    {
        let (key, _) = self.key_value("count_by_key")?;
        let counted = self
            .rows
            .group_by(vec![plain(&key).alias("0")])
            .agg(vec![count(lit(1)).alias("1")])?;
        let pairs = TypedDataset::<'s, (K, i64)>::new(counted)
            .collect_rows()
            .await?;
        Ok(pairs
            .into_iter()
            .map(|(k, n)| (k, u64::try_from(n).unwrap_or(0)))
            .collect())
    }
}
