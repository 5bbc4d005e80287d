//! The built-in `ember.sample` function behind `Dataset::sample`: a seeded random sample of
//! each partition, without replacement (each row kept with probability `fraction`) or with
//! replacement (each row repeated a Poisson(`fraction`) number of times, as Spark does);
//! and `FunctionRegistry::new`, which starts every registry with it.
//!
//! Each partition draws from its own generator, seeded from the sample's seed and the
//! partition number, so a sample is the same on every run over the same partitions, on
//! whichever executor each task runs.

use arrow::array::{BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{filter_record_batch, take_record_batch};
use datafusion::error::{DataFusionError, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Poisson};

use crate::functions::{FunctionCall, FunctionOutput, FunctionRegistry, PartitionFn, UserFunction};

/// The sampler is the planner's one built-in function, so every registry starts here.
impl FunctionRegistry {
    /// A registry holding the planner's built-in functions (the sampler of
    /// [`SAMPLE_FUNCTION`]).
    pub fn new() -> Self {
        let registry = Self::empty();
        registry.register(sample_function());
        registry
    }
}

/// The registered name of the sampling function.
pub const SAMPLE_FUNCTION: &str = "ember.sample";

/// What a sample keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleSpec {
    /// Expected share of rows (without replacement, at most 1), or expected copies of each
    /// row (with replacement).
    pub fraction: f64,
    /// Whether a row may be drawn more than once.
    pub with_replacement: bool,
    /// The seed.
    pub seed: u64,
}

impl SampleSpec {
    /// Checks the fraction: finite, not negative, and at most 1 without replacement.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !self.fraction.is_finite() || self.fraction < 0.0 {
            return Err(format!(
                "fraction must be a number of at least 0, not {}",
                self.fraction
            ));
        }
        if !self.with_replacement && self.fraction > 1.0 {
            return Err(format!(
                "fraction must be at most 1 without replacement, not {}",
                self.fraction
            ));
        }
        Ok(())
    }

    /// The arguments written into the plan.
    pub fn to_args(&self) -> String {
        format!("{} {} {}", self.fraction, self.with_replacement, self.seed)
    }

    /// Parses [`Self::to_args`].
    pub fn from_args(args: &str) -> Result<Self> {
        let bad = || DataFusionError::Plan(format!("malformed sample arguments '{args}'"));
        let mut parts = args.split(' ');
        let fraction = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let with_replacement = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let seed = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let spec = Self {
            fraction,
            with_replacement,
            seed,
        };
        spec.validate().map_err(DataFusionError::Plan)?;
        Ok(spec)
    }
}

/// One partition's sampler.
struct Sampler {
    rng: StdRng,
    fraction: f64,
    /// Set with replacement (and a fraction above 0).
    poisson: Option<Poisson<f64>>,
}

impl PartitionFn for Sampler {
    fn push(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let rows = batch.num_rows();
        let sampled = match &self.poisson {
            None => {
                let keep: BooleanArray = (0..rows)
                    .map(|_| Some(self.rng.random::<f64>() < self.fraction))
                    .collect();
                filter_record_batch(&batch, &keep)?
            }
            Some(poisson) => {
                let mut indices = Vec::new();
                for row in 0..rows {
                    let copies = poisson.sample(&mut self.rng) as usize;
                    let row = u32::try_from(row).map_err(|_| {
                        DataFusionError::Execution("a batch of more than 2^32 rows".into())
                    })?;
                    indices.extend(std::iter::repeat_n(row, copies));
                }
                take_record_batch(&batch, &UInt32Array::from(indices))?
            }
        };
        Ok(Some(sampled))
    }
}

/// The registry entry of [`SAMPLE_FUNCTION`].
pub(crate) fn sample_function() -> UserFunction {
    UserFunction::new(
        SAMPLE_FUNCTION,
        FunctionOutput::SameAsInput,
        None,
        |call: FunctionCall<'_>| {
            let spec = SampleSpec::from_args(call.args)?;
            // SplitMix-style mixing so that neighbouring partitions get unrelated streams.
            let seed = spec
                .seed
                .wrapping_add((call.partition as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let poisson = if spec.with_replacement && spec.fraction > 0.0 {
                Some(
                    Poisson::new(spec.fraction)
                        .map_err(|e| DataFusionError::Plan(format!("sample: {e}")))?,
                )
            } else {
                None
            };
            Ok(Box::new(Sampler {
                rng: StdRng::seed_from_u64(seed),
                fraction: if spec.with_replacement {
                    0.0
                } else {
                    spec.fraction
                },
                poisson,
            }) as Box<dyn PartitionFn>)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .expect("valid batch")
    }

    fn sample(spec: SampleSpec, partition: usize) -> RecordBatch {
        let function = sample_function();
        let args = spec.to_args();
        let mut state = function
            .start(FunctionCall {
                partition,
                args: &args,
            })
            .expect("starts");
        state
            .push(batch(100_000))
            .expect("samples")
            .expect("a batch")
    }

    #[test]
    fn samples_are_near_the_fraction_and_repeat_with_the_seed() {
        let spec = SampleSpec {
            fraction: 0.1,
            with_replacement: false,
            seed: 7,
        };
        let first = sample(spec, 0);
        assert!(
            (9_000..11_000).contains(&first.num_rows()),
            "{}",
            first.num_rows()
        );
        assert_eq!(first, sample(spec, 0));
        assert_ne!(first, sample(spec, 1));

        let with = SampleSpec {
            fraction: 2.0,
            with_replacement: true,
            seed: 7,
        };
        let drawn = sample(with, 0);
        assert!(
            (190_000..210_000).contains(&drawn.num_rows()),
            "{}",
            drawn.num_rows()
        );
        assert!(drawn.column(0).len() == drawn.num_rows());
    }

    #[test]
    fn bad_fractions_are_refused() {
        for (fraction, with_replacement) in [(-0.5, false), (1.5, false), (f64::NAN, true)] {
            let spec = SampleSpec {
                fraction,
                with_replacement,
                seed: 1,
            };
            assert!(spec.validate().is_err(), "{fraction} {with_replacement}");
            assert!(SampleSpec::from_args(&spec.to_args()).is_err());
        }
    }
}
