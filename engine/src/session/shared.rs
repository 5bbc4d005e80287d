//! Broadcast variables and accumulators seen from the driver: [`Session::broadcast`],
//! the accumulators' constructors, and the totals they read from the session.

use crate::error::{EmberError, Result};
use crate::shared::{Broadcast, DoubleAccumulator, LongAccumulator, add};
use ember_proto::AccumulatorValue;
use serde::Serialize;
use std::sync::Arc;

use super::Session;

impl Session {
    /// Ships `value` to every executor (before the next job runs) as the broadcast variable `name` (replacing an
    /// earlier one of that name); user functions read it with [`Broadcast::value`]. A small
    /// dataset is broadcast as the `Vec` of its rows (`typed.collect_rows()`).
    pub fn broadcast<T: Serialize>(&self, name: &str, value: &T) -> Result<Broadcast<T>> {
        let bytes: Arc<[u8]> = serde_json::to_vec(value)
            .map_err(|e| EmberError::InvalidArgument {
                operation: "broadcast",
                message: format!("'{name}' cannot be serialized: {e}"),
            })?
            .into();
        self.queue_broadcast(name, bytes);
        Ok(Broadcast::named(name))
    }

    /// An integer accumulator named `name`, set to 0.
    pub fn long_accumulator(&self, name: &str) -> LongAccumulator {
        self.reset_accumulator(name, AccumulatorValue::Long(0));
        LongAccumulator::named(name)
    }

    /// A floating-point accumulator named `name`, set to 0.
    pub fn double_accumulator(&self, name: &str) -> DoubleAccumulator {
        self.reset_accumulator(name, AccumulatorValue::Double(0.0));
        DoubleAccumulator::named(name)
    }
}

impl LongAccumulator {
    /// The accumulator `name` (created with [`Session::long_accumulator`]).
    pub fn named(name: &str) -> Self {
        Self { name: name.into() }
    }

    /// Adds `n`, inside a user function; ignored elsewhere.
    pub fn add(&self, n: i64) {
        add(&self.name, AccumulatorValue::Long(n));
    }

    /// The total over the session's finished jobs.
    pub fn value(&self, session: &Session) -> i64 {
        session
            .accumulator_value(&self.name)
            .map_or(0, AccumulatorValue::as_i64)
    }
}

impl DoubleAccumulator {
    /// The accumulator `name` (created with [`Session::double_accumulator`]).
    pub fn named(name: &str) -> Self {
        Self { name: name.into() }
    }

    /// Adds `x`, inside a user function; ignored elsewhere.
    pub fn add(&self, x: f64) {
        add(&self.name, AccumulatorValue::Double(x));
    }

    /// The total over the session's finished jobs.
    pub fn value(&self, session: &Session) -> f64 {
        session
            .accumulator_value(&self.name)
            .map_or(0.0, AccumulatorValue::as_f64)
    }
}
