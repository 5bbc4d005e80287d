//! Typed user functions: rows of Rust types that implement serde's `Serialize` and
//! `Deserialize`, converted to and from Arrow batches with serde_arrow, and registered by
//! name in a [`FunctionRegistry`] ([`TypedFunctions`]) so that the driver and every
//! executor find them.
//!
//! Each `register_*` method is the one line a job needs per function, run before the
//! function is used: on the session's registry ([`Session::functions`]) in the driver,
//! and in the registry that [`cli::main_with`](crate::cli::main_with) hands a user's own
//! binary, for its executors. Rows must be structs or tuples (they become columns; a
//! tuple's fields are the columns `0`, `1`, ...).
//!
//! [`Session::functions`]: crate::Session::functions

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, FieldRef, Float64Type, Int32Type, Int64Type, Schema, SchemaRef,
    UInt64Type,
};
use datafusion::error::{DataFusionError, Result as DfResult};
use ember_planner::{
    EachBatch, FunctionOutput, FunctionRegistry, PartitionFn, RowTypes, UserFunction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_arrow::schema::{SchemaLike, TracingOptions};

use crate::error::{EmberError, Result};

/// A type whose values can be rows of a typed dataset.
pub trait Row: Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Row for T {}

/// The Arrow fields of rows of type `T`: strings as `Utf8` and sequences as `List`, as
/// DataFusion's own functions make them.
pub(crate) fn fields_of<T: Row>() -> Result<Vec<FieldRef>> {
    let options = TracingOptions::default()
        .strings_as_large_utf8(false)
        .sequence_as_large_list(false)
        .bytes_as_large_binary(false)
        .enums_without_data_as_strings(true);
    Vec::<FieldRef>::from_type::<T>(options).map_err(|e| EmberError::InvalidArgument {
        operation: "typed rows",
        message: format!(
            "{} cannot be a row (rows are structs or tuples of serde types): {e}",
            std::any::type_name::<T>()
        ),
    })
}

/// The schema of rows of type `T`.
pub(crate) fn schema_of<T: Row>() -> Result<SchemaRef> {
    Ok(Arc::new(Schema::new(fields_of::<T>()?)))
}

/// Rows as a batch of `fields`.
pub(crate) fn to_batch<T: Serialize>(fields: &[FieldRef], rows: &[T]) -> DfResult<RecordBatch> {
    serde_arrow::to_record_batch(fields, &rows).map_err(|e| {
        DataFusionError::Execution(format!(
            "rows of {} to Arrow: {e}",
            std::any::type_name::<T>()
        ))
    })
}

/// A batch as rows.
pub(crate) fn from_batch<T: DeserializeOwned>(batch: &RecordBatch) -> DfResult<Vec<T>> {
    serde_arrow::from_record_batch::<Vec<T>>(batch).map_err(|e| {
        DataFusionError::Execution(format!(
            "columns {:?} as rows of {}: {e}",
            batch
                .schema()
                .fields()
                .iter()
                .map(|f| format!("{}: {}", f.name(), f.data_type()))
                .collect::<Vec<_>>(),
            std::any::type_name::<T>()
        ))
    })
}

/// Rows of type `U` computed from a batch (a typed function minus its conversion to
/// Arrow): what a following reducer fuses with.
type RowsOf<U> = Arc<dyn Fn(&RecordBatch) -> DfResult<Vec<U>> + Send + Sync>;

/// Registers in `functions` a function of rows `T -> U` that maps each batch with
/// `per_batch`.
fn register_rows<T: Row, U: Row>(
    functions: &FunctionRegistry,
    name: &str,
    per_batch: impl Fn(Vec<T>) -> Vec<U> + Send + Sync + 'static,
) -> Result<()> {
    let fields = fields_of::<U>()?;
    let schema = Arc::new(Schema::new(fields.clone()));
    let rows: RowsOf<U> =
        Arc::new(move |batch: &RecordBatch| Ok(per_batch(from_batch::<T>(batch)?)));
    let each = Arc::clone(&rows);
    let function = UserFunction::new(
        name,
        FunctionOutput::Fixed(schema),
        Some(RowTypes::of::<T, U>()),
        move |_| {
            let rows = Arc::clone(&each);
            let fields = fields.clone();
            Ok(Box::new(EachBatch(move |batch: RecordBatch| {
                to_batch(&fields, &rows(&batch)?)
            })) as Box<dyn PartitionFn>)
        },
    )
    .with_rows(Arc::new(rows));
    functions.register(function);
    Ok(())
}

/// A hash table of per-key states, filled batch by batch and written out at the end: the
/// map-side combine and the reduce of `reduce_by_key` and `aggregate_by_key`.
struct Combine<K, V, U> {
    rows: RowsOf<(K, V)>,
    states: HashMap<K, Option<U>, foldhash::fast::RandomState>,
    zero: Arc<dyn Fn(V) -> U + Send + Sync>,
    fold: Arc<dyn Fn(U, V) -> U + Send + Sync>,
    fields: Vec<FieldRef>,
}

impl<K: Row + Hash + Eq, V: Row, U: Row> PartitionFn for Combine<K, V, U> {
    fn push(&mut self, batch: RecordBatch) -> DfResult<Option<RecordBatch>> {
        for (key, value) in (self.rows)(&batch)? {
            match self.states.entry(key) {
                Entry::Occupied(mut slot) => {
                    let slot = slot.get_mut();
                    *slot = Some(match slot.take() {
                        Some(state) => (self.fold)(state, value),
                        None => (self.zero)(value),
                    });
                }
                Entry::Vacant(slot) => {
                    slot.insert(Some((self.zero)(value)));
                }
            }
        }
        Ok(None)
    }

    fn finish(&mut self) -> DfResult<Option<RecordBatch>> {
        let rows: Vec<(K, U)> = std::mem::take(&mut self.states)
            .into_iter()
            .filter_map(|(k, u)| u.map(|u| (k, u)))
            .collect();
        to_batch(&self.fields, &rows).map(Some)
    }
}

/// The steps of a combine `(K, V) -> (K, U)`: each key's state starts with `zero` of its
/// first value and folds in the next ones with `fold`.
struct CombineSteps<K, V, U> {
    zero: Arc<dyn Fn(V) -> U + Send + Sync>,
    fold: Arc<dyn Fn(U, V) -> U + Send + Sync>,
    fields: Vec<FieldRef>,
    _key: std::marker::PhantomData<fn() -> K>,
}

impl<K, V, U> Clone for CombineSteps<K, V, U> {
    fn clone(&self) -> Self {
        Self {
            zero: Arc::clone(&self.zero),
            fold: Arc::clone(&self.fold),
            fields: self.fields.clone(),
            _key: std::marker::PhantomData,
        }
    }
}

impl<K: Row + Hash + Eq, V: Row, U: Row> CombineSteps<K, V, U> {
    /// The combine as a function named `name` that reads its pairs with `rows`.
    fn function(&self, name: &str, rows: RowsOf<(K, V)>, types: RowTypes) -> UserFunction {
        let steps = self.clone();
        UserFunction::new(
            name,
            FunctionOutput::Fixed(Arc::new(Schema::new(self.fields.clone()))),
            Some(types),
            move |_| {
                Ok(Box::new(Combine {
                    rows: Arc::clone(&rows),
                    states: HashMap::default(),
                    zero: Arc::clone(&steps.zero),
                    fold: Arc::clone(&steps.fold),
                    fields: steps.fields.clone(),
                }) as Box<dyn PartitionFn>)
            },
        )
    }
}

/// Registers in `functions` a combine `(K, V) -> (K, U)` that starts each key's state with `zero` and
/// folds the key's next values in with `fold`. It fuses with a typed function that returns
/// `(K, V)` right before it (`map`, `flat_map`, `key_by`): the pairs then go straight into
/// the hash table instead of through Arrow.
fn register_combine<K, V, U>(
    functions: &FunctionRegistry,
    name: &str,
    zero: impl Fn(V) -> U + Send + Sync + 'static,
    fold: impl Fn(U, V) -> U + Send + Sync + 'static,
) -> Result<()>
where
    K: Row + Hash + Eq,
    V: Row,
    U: Row,
{
    let steps = CombineSteps::<K, V, U> {
        zero: Arc::new(zero),
        fold: Arc::new(fold),
        fields: fields_of::<(K, U)>()?,
        _key: std::marker::PhantomData,
    };
    let from_arrow: RowsOf<(K, V)> =
        Arc::new(|batch: &RecordBatch| match pairs_of_columns(batch) {
            Some(pairs) => Ok(pairs),
            None => from_batch::<(K, V)>(batch),
        });
    let fusing = steps.clone();
    let function = steps
        .function(name, from_arrow, RowTypes::of::<(K, V), (K, U)>())
        .with_fusion(move |before| {
            let rows = before.rows()?.downcast_ref::<RowsOf<(K, V)>>()?;
            let input = before.row_types()?;
            let types = RowTypes {
                output: std::any::TypeId::of::<(K, U)>(),
                output_name: std::any::type_name::<(K, U)>(),
                ..input
            };
            Some(fusing.function(before.name(), Arc::clone(rows), types))
        });
    functions.register(function);
    Ok(())
}

/// The values of a column without nulls as a `Vec<X>`, when `X` is one of the plain types
/// (integers, floats, strings) and the column holds it; `None` otherwise.
fn column_values<X: 'static>(column: &dyn Array) -> Option<Vec<X>> {
    fn boxed<X: 'static, Y: 'static>(values: Vec<Y>) -> Option<Vec<X>> {
        (Box::new(values) as Box<dyn Any>)
            .downcast::<Vec<X>>()
            .ok()
            .map(|values| *values)
    }
    /// The values of a primitive column of Arrow type `P` as `X`, when `X` is its native
    /// type.
    fn primitives<P: ArrowPrimitiveType, X: 'static>(column: &dyn Array) -> Option<Vec<X>> {
        if TypeId::of::<X>() != TypeId::of::<P::Native>() {
            return None;
        }
        boxed(column.as_primitive_opt::<P>()?.values().to_vec())
    }
    if column.null_count() > 0 {
        return None;
    }
    let wanted = TypeId::of::<X>();
    match column.data_type() {
        DataType::Int64 => primitives::<Int64Type, X>(column),
        DataType::Int32 => primitives::<Int32Type, X>(column),
        DataType::UInt64 => primitives::<UInt64Type, X>(column),
        DataType::Float64 => primitives::<Float64Type, X>(column),
        DataType::Utf8 if wanted == TypeId::of::<String>() => boxed(
            column
                .as_string_opt::<i32>()?
                .iter()
                .map(|s| s.unwrap_or_default().to_string())
                .collect::<Vec<String>>(),
        ),
        DataType::Utf8View if wanted == TypeId::of::<String>() => boxed(
            column
                .as_string_view_opt()?
                .iter()
                .map(|s| s.unwrap_or_default().to_string())
                .collect::<Vec<String>>(),
        ),
        _ => None,
    }
}

/// The pairs of a two-column batch of plain types read column by column, skipping serde:
/// the common shape of a reducer's input (`(String, i64)`, `(i64, f64)`, ...). `None` when
/// the batch has another shape; serde_arrow then reads it.
fn pairs_of_columns<K: 'static, V: 'static>(batch: &RecordBatch) -> Option<Vec<(K, V)>> {
    if batch.num_columns() != 2 {
        return None;
    }
    let keys = column_values::<K>(batch.column(0).as_ref())?;
    let values = column_values::<V>(batch.column(1).as_ref())?;
    Some(keys.into_iter().zip(values).collect())
}

/// The registered name of an aggregator's merge step.
pub(crate) fn merge_name(aggregator: &str) -> String {
    format!("{aggregator}#merge")
}

/// Registers typed row functions in a [`FunctionRegistry`]: a session's
/// ([`Session::functions`](crate::Session::functions)) or the one
/// [`cli::main_with`](crate::cli::main_with) hands a binary. A later registration of the
/// same name replaces the earlier one.
///
/// ```
/// # fn main() -> ember::Result<()> {
/// use ember::{FunctionRegistry, TypedFunctions};
///
/// let functions = ember::builtin_functions();
/// functions.register_map_fn("double", |x: (i64,)| (x.0 * 2,))?;
/// functions.register_reducer::<String, i64>("add", |a, b| a + b)?;
/// assert!(functions.names().contains(&"double".to_string()));
/// # Ok(())
/// # }
/// ```
pub trait TypedFunctions {
    /// Registers `f` as the row function `name` for
    /// [`TypedDataset::map`](crate::TypedDataset::map).
    fn register_map_fn<T: Row, U: Row>(
        &self,
        name: &str,
        f: impl Fn(T) -> U + Send + Sync + 'static,
    ) -> Result<()>;

    /// Registers `f` as the row function `name` for
    /// [`TypedDataset::flat_map`](crate::TypedDataset::flat_map): each row becomes any
    /// number of rows.
    fn register_flat_map_fn<T: Row, U: Row, I: IntoIterator<Item = U>>(
        &self,
        name: &str,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Result<()>;

    /// Registers `f` as the key function `name` for
    /// [`TypedDataset::key_by`](crate::TypedDataset::key_by): each row `t` becomes
    /// `(f(&t), t)`.
    fn register_key_fn<T: Row, K: Row>(
        &self,
        name: &str,
        f: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> Result<()>;

    /// Registers `f` as the predicate `name` for
    /// [`TypedDataset::filter`](crate::TypedDataset::filter). The rows kept are the
    /// input's own columns, untouched.
    fn register_filter_fn<T: Row>(
        &self,
        name: &str,
        f: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> Result<()>;

    /// Registers `merge` as the reducer `name` for
    /// [`TypedDataset::reduce_by_key`](crate::TypedDataset::reduce_by_key): the values of
    /// each key are merged pairwise, first within each map task, then after the shuffle.
    fn register_reducer<K: Row + Hash + Eq, V: Row>(
        &self,
        name: &str,
        merge: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> Result<()>;

    /// Registers the aggregator `name` for
    /// [`TypedDataset::aggregate_by_key`](crate::TypedDataset::aggregate_by_key): each
    /// key's values are folded into `zero()` with `seq` within each map task, and the
    /// partial results are merged with `comb` after the shuffle.
    fn register_aggregator<K: Row + Hash + Eq, V: Row, U: Row>(
        &self,
        name: &str,
        zero: impl Fn() -> U + Send + Sync + 'static,
        seq: impl Fn(U, V) -> U + Send + Sync + 'static,
        comb: impl Fn(U, U) -> U + Send + Sync + 'static,
    ) -> Result<()>;
}

impl TypedFunctions for FunctionRegistry {
    fn register_map_fn<T: Row, U: Row>(
        &self,
        name: &str,
        f: impl Fn(T) -> U + Send + Sync + 'static,
    ) -> Result<()> {
        register_rows::<T, U>(self, name, move |rows| rows.into_iter().map(&f).collect())
    }

    fn register_flat_map_fn<T: Row, U: Row, I: IntoIterator<Item = U>>(
        &self,
        name: &str,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Result<()> {
        register_rows::<T, U>(self, name, move |rows| {
            rows.into_iter().flat_map(&f).collect()
        })
    }

    fn register_key_fn<T: Row, K: Row>(
        &self,
        name: &str,
        f: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> Result<()> {
        register_rows::<T, (K, T)>(self, name, move |rows| {
            rows.into_iter().map(|row| (f(&row), row)).collect()
        })
    }

    fn register_filter_fn<T: Row>(
        &self,
        name: &str,
        f: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> Result<()> {
        let f = Arc::new(f);
        self.register(UserFunction::new(
            name,
            FunctionOutput::SameAsInput,
            Some(RowTypes::of::<T, T>()),
            move |_| {
                let f = Arc::clone(&f);
                Ok(Box::new(EachBatch(move |batch: RecordBatch| {
                    let keep: BooleanArray = from_batch::<T>(&batch)?
                        .iter()
                        .map(|row| Some(f(row)))
                        .collect();
                    Ok(filter_record_batch(&batch, &keep)?)
                })) as Box<dyn PartitionFn>)
            },
        ));
        Ok(())
    }

    fn register_reducer<K: Row + Hash + Eq, V: Row>(
        &self,
        name: &str,
        merge: impl Fn(V, V) -> V + Send + Sync + 'static,
    ) -> Result<()> {
        register_combine::<K, V, V>(self, name, |v| v, merge)
    }

    fn register_aggregator<K: Row + Hash + Eq, V: Row, U: Row>(
        &self,
        name: &str,
        zero: impl Fn() -> U + Send + Sync + 'static,
        seq: impl Fn(U, V) -> U + Send + Sync + 'static,
        comb: impl Fn(U, U) -> U + Send + Sync + 'static,
    ) -> Result<()> {
        let seq = Arc::new(seq);
        let first = Arc::clone(&seq);
        register_combine::<K, V, U>(self, name, move |v| first(zero(), v), move |u, v| seq(u, v))?;
        register_combine::<K, U, U>(self, &merge_name(name), |u| u, comb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Sale {
        product: String,
        price: f64,
        tags: Vec<String>,
        note: Option<String>,
    }

    #[test]
    fn rows_round_trip_through_arrow_with_datafusion_types() {
        let rows = vec![
            Sale {
                product: "tea".into(),
                price: 2.5,
                tags: vec!["hot".into()],
                note: None,
            },
            Sale {
                product: "jam".into(),
                price: 3.0,
                tags: vec![],
                note: Some("sweet".into()),
            },
        ];
        let fields = fields_of::<Sale>().expect("a struct is a row");
        let batch = to_batch(&fields, &rows).expect("serializes");
        let types: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().to_string())
            .collect();
        assert_eq!(types[0], "Utf8");
        assert!(types[2].starts_with("List("), "{types:?}");
        assert_eq!(from_batch::<Sale>(&batch).expect("deserializes"), rows);

        let pairs = vec![("a".to_string(), 1_i64), ("b".to_string(), 2)];
        let fields = fields_of::<(String, i64)>().expect("a tuple is a row");
        let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["0", "1"]);
        let batch = to_batch(&fields, &pairs).expect("serializes");
        assert_eq!(
            from_batch::<(String, i64)>(&batch).expect("deserializes"),
            pairs
        );
    }

    #[test]
    fn plain_pairs_are_read_by_column_and_others_fall_back_to_serde() {
        let pairs = vec![("a".to_string(), 1.5_f64), ("b".to_string(), -2.0)];
        let fields = fields_of::<(String, f64)>().expect("a row");
        let batch = to_batch(&fields, &pairs).expect("serializes");
        assert_eq!(pairs_of_columns::<String, f64>(&batch), Some(pairs.clone()));
        // A type the column does not hold, or nulls: no fast path.
        assert_eq!(pairs_of_columns::<String, i64>(&batch), None);
        let optional = vec![(1_i64, Some(2_i64)), (3, None)];
        let fields = fields_of::<(i64, Option<i64>)>().expect("a row");
        let batch = to_batch(&fields, &optional).expect("serializes");
        assert_eq!(pairs_of_columns::<i64, i64>(&batch), None);
    }

    #[test]
    fn a_scalar_is_not_a_row() {
        let err = fields_of::<i64>().expect_err("not a record");
        assert!(err.to_string().contains("i64"), "{err}");
    }
}
