//! Shared variables of the DSL: [`Broadcast`] values shipped once to every executor and
//! read by user functions, and accumulators ([`LongAccumulator`], [`DoubleAccumulator`])
//! that user functions add to and the driver reads after an action.
//!
//! Both are found by name, so a registered function (in the session's registry, and in the
//! registry of an executor built from the user's binary) can use them without capturing anything that
//! cannot travel. An accumulator counts the additions of each task's successful attempt
//! only: a task that fails after adding and is tried again adds once.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! use std::collections::HashMap;
//!
//! use ember::{Broadcast, LongAccumulator, Session, TypedFunctions};
//!
//! let session = Session::local(2)?;
//! // A function that reads a broadcast table and counts misses.
//! session.functions().register_map_fn("price_in_euro", |(item, dollars): (String, f64)| {
//!     let rates = Broadcast::<HashMap<String, f64>>::named("rates").value().unwrap_or_default();
//!     let rate = rates.get("EUR").copied().unwrap_or_else(|| {
//!         LongAccumulator::named("missing_rates").add(1);
//!         1.0
//!     });
//!     (item, dollars * rate)
//! })?;
//!
//! session.broadcast("rates", &HashMap::from([("EUR".to_string(), 0.5)]))?;
//! let misses = session.long_accumulator("missing_rates");
//! let prices = session
//!     .parallelize(vec![("tea".to_string(), 4.0), ("jam".to_string(), 3.0)])?
//!     .map::<(String, f64)>("price_in_euro")?
//!     .collect_rows()
//!     .await?;
//! assert_eq!(prices, vec![("tea".to_string(), 2.0), ("jam".to_string(), 1.5)]);
//! assert_eq!(misses.value(&session), 0);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```

use std::marker::PhantomData;
use std::sync::Arc;

use datafusion::error::DataFusionError;
use ember_planner::current_task_env;
use ember_proto::AccumulatorValue;
use serde::de::DeserializeOwned;

use crate::error::{EmberError, Result};

/// A read-only value shipped once to each executor, read by name inside user functions.
pub struct Broadcast<T> {
    name: String,
    _value: PhantomData<fn() -> T>,
}

impl<T> Clone for Broadcast<T> {
    fn clone(&self) -> Self {
        Self::named(&self.name)
    }
}

impl<T> std::fmt::Debug for Broadcast<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcast")
            .field("name", &self.name)
            .finish()
    }
}

impl<T> Broadcast<T> {
    /// The broadcast variable `name` (shipped with [`Session::broadcast`]).
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            _value: PhantomData,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> Broadcast<T> {
    /// The value, inside a user function running in a task. It is decoded once per
    /// executor and shared by the tasks that read it. Fails outside a task, or when the
    /// executor holds no variable of that name or it is not a `T`.
    pub fn value(&self) -> Result<Arc<T>> {
        let Some(env) = current_task_env() else {
            return Err(EmberError::InvalidArgument {
                operation: "Broadcast::value",
                message: format!(
                    "broadcast variable '{}' can only be read inside a user function",
                    self.name
                ),
            });
        };
        let value = env.broadcasts().value(&self.name, |bytes| {
            serde_json::from_slice::<T>(bytes).map_err(|e| {
                DataFusionError::Execution(format!(
                    "broadcast variable '{}' is not a {}: {e}",
                    self.name,
                    std::any::type_name::<T>()
                ))
            })
        })?;
        Ok(value)
    }
}

/// Adds to the current task's accumulator; outside a task there is nothing to add to.
pub(crate) fn add(name: &str, value: AccumulatorValue) {
    match current_task_env() {
        Some(env) => env.add(name, value),
        None => tracing::debug!(
            accumulator = name,
            "an accumulator was added to outside a task; ignored"
        ),
    }
}

/// A counter that user functions add integers to; the driver reads the total.
#[derive(Debug, Clone)]
pub struct LongAccumulator {
    pub(crate) name: Arc<str>,
}

/// A sum that user functions add floats to; the driver reads the total.
#[derive(Debug, Clone)]
pub struct DoubleAccumulator {
    pub(crate) name: Arc<str>,
}
