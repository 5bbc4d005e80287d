//! A mergeable approximate quantile sketch with a guaranteed rank error.
//!
//! The sketch is a sorted list of sample values, each carrying the number of input values
//! it stands for (the values above the sample kept before it, up to itself). Values are
//! buffered, and every full buffer is sorted and thinned to one sample per
//! `ε/4 · buffer` values; at the end of a partition the samples are thinned once more to
//! one per `ε/4 · n`. Each thinning moves a value's rank estimate by less than its step,
//! so a partition's sketch is off by less than `ε/4 · n` ranks from its buffers plus
//! `ε/4 · n` from the last thinning (and a sample's own weight). Merging sketches of
//! several partitions is a merge of their sorted samples, which adds the errors without
//! thinning again: the merged sketch of `n` values stays inside the promised `ε · n`
//! (Spark's `approxQuantile` contract: the value returned for
//! quantile `q` has a rank between `(q - ε) · n` and `(q + ε) · n`).

use serde::{Deserialize, Serialize};

/// Values sorted and thinned at a time.
const BUFFER: usize = 1 << 16;

/// An approximate quantile sketch over `f64` values (NaN is ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileSketch {
    /// The rank error promised, as a fraction of the values summarized.
    relative_error: f64,
    /// Values summarized (samples and buffer).
    count: u64,
    /// Sorted sample values.
    samples: Vec<f64>,
    /// How many input values each sample stands for.
    weights: Vec<u64>,
    /// Values not yet thinned into the samples.
    #[serde(skip)]
    buffer: Vec<f64>,
}

impl QuantileSketch {
    /// An empty sketch with rank error at most `relative_error` (0 < ε < 1).
    pub fn new(relative_error: f64) -> Self {
        Self {
            relative_error: relative_error.clamp(1e-6, 0.5),
            count: 0,
            samples: Vec::new(),
            weights: Vec::new(),
            buffer: Vec::new(),
        }
    }

    /// Adds one value; NaN is ignored.
    pub fn insert(&mut self, value: f64) {
        if value.is_nan() {
            return;
        }
        self.count += 1;
        self.buffer.push(value);
        if self.buffer.len() >= BUFFER {
            self.flush();
        }
    }

    /// The number of values summarized.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The rank error promised.
    pub fn relative_error(&self) -> f64 {
        self.relative_error
    }

    /// Sorts the buffer and merges it into the samples, thinned to one sample per
    /// `ε/4 · buffer` values.
    fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let mut values = std::mem::take(&mut self.buffer);
        values.sort_unstable_by(f64::total_cmp);
        let step = (self.relative_error / 4.0 * values.len() as f64).floor() as u64;
        let ones = vec![1; values.len()];
        let (samples, weights) = thin(&values, &ones, step);
        self.merge_samples(&samples, &weights);
    }

    fn merge_samples(&mut self, samples: &[f64], weights: &[u64]) {
        let mut merged = Vec::with_capacity(self.samples.len() + samples.len());
        let mut merged_weights = Vec::with_capacity(merged.capacity());
        let (mut i, mut j) = (0, 0);
        while i < self.samples.len() || j < samples.len() {
            let take_ours = j >= samples.len()
                || (i < self.samples.len() && self.samples[i].total_cmp(&samples[j]).is_le());
            if take_ours {
                merged.push(self.samples[i]);
                merged_weights.push(self.weights[i]);
                i += 1;
            } else {
                merged.push(samples[j]);
                merged_weights.push(weights[j]);
                j += 1;
            }
        }
        self.samples = merged;
        self.weights = merged_weights;
    }

    /// Ends a partition's sketch: the buffer is merged and the samples are thinned to one
    /// per `ε/4 · n` values, so the sketch is small enough to ship.
    pub fn finish(&mut self) {
        self.flush();
        let step = (self.relative_error / 4.0 * self.count as f64).floor() as u64;
        let (samples, weights) = thin(&self.samples, &self.weights, step);
        self.samples = samples;
        self.weights = weights;
    }

    /// Adds the values `other` summarized (its samples merged in as they are; no thinning).
    pub fn merge(&mut self, other: &QuantileSketch) {
        self.flush();
        let mut other = other.clone();
        other.flush();
        self.merge_samples(&other.samples, &other.weights);
        self.count += other.count;
    }

    /// The value at quantile `q` (0 to 1): one whose rank is within `ε · n` of `q · n`;
    /// `None` for an empty sketch.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let mut sketch = self.clone();
        sketch.flush();
        sketch.query(q)
    }

    /// The values at each of `qs`.
    pub fn quantiles(&self, qs: &[f64]) -> Vec<Option<f64>> {
        let mut sketch = self.clone();
        sketch.flush();
        qs.iter().map(|q| sketch.query(*q)).collect()
    }

    fn query(&self, q: f64) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let total: u64 = self.weights.iter().sum();
        let target = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (value, weight) in self.samples.iter().zip(&self.weights) {
            seen += weight;
            if seen >= target {
                return Some(*value);
            }
        }
        self.samples.last().copied()
    }

    /// Samples kept (for tests and sizes).
    pub fn samples(&self) -> usize {
        self.samples.len() + self.buffer.len()
    }
}

/// Thins sorted weighted samples to one per `step` of weight: a sample is kept when the
/// weight gathered since the last kept one reaches `step`; the first and last are always
/// kept. A kept sample carries the weight of those dropped before it.
fn thin(values: &[f64], weights: &[u64], step: u64) -> (Vec<f64>, Vec<u64>) {
    if step <= 1 {
        return (values.to_vec(), weights.to_vec());
    }
    let mut kept = Vec::new();
    let mut kept_weights = Vec::new();
    let mut gathered = 0;
    for (i, (value, weight)) in values.iter().zip(weights).enumerate() {
        gathered += weight;
        if i == 0 || i + 1 == values.len() || gathered >= step {
            kept.push(*value);
            kept_weights.push(gathered);
            gathered = 0;
        }
    }
    (kept, kept_weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Fractions of values below and at or below `value` in `sorted`.
    fn rank_range(sorted: &[f64], value: f64) -> (f64, f64) {
        let n = sorted.len() as f64;
        (
            sorted.partition_point(|v| *v < value) as f64 / n,
            sorted.partition_point(|v| *v <= value) as f64 / n,
        )
    }

    #[test]
    fn merged_partition_sketches_keep_the_rank_error_against_a_sort() {
        let mut rng = StdRng::seed_from_u64(3);
        let epsilon = 0.001;
        // Skewed values with many ties, split unevenly over 5 partitions.
        let values: Vec<f64> = (0..400_000)
            .map(|_| {
                let x: f64 = rng.random::<f64>();
                (x.powi(4) * 10_000.0).round() / 10.0
            })
            .collect();
        let mut merged = QuantileSketch::new(epsilon);
        let mut start = 0;
        for size in [10_000, 190_000, 50_000, 130_000, 20_000] {
            let mut part = QuantileSketch::new(epsilon);
            for v in &values[start..start + size] {
                part.insert(*v);
            }
            part.finish();
            // One sample per floor(ε/4 · n) values at most (and the first and last).
            let step = (epsilon / 4.0 * size as f64).floor() as usize;
            assert!(part.samples() <= size / step + 2, "{}", part.samples());
            // It travels as JSON between executors and the driver.
            let text = serde_json::to_string(&part).expect("serializes");
            let part: QuantileSketch = serde_json::from_str(&text).expect("deserializes");
            merged.merge(&part);
            start += size;
        }
        assert_eq!(merged.count(), values.len() as u64);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for i in 0..=1000 {
            let q = i as f64 / 1000.0;
            let value = merged.quantile(q).expect("not empty");
            let (low, high) = rank_range(&sorted, value);
            assert!(
                low <= q + epsilon && high >= q - epsilon,
                "q {q}: {value} has rank {low}..{high}"
            );
        }
        assert_eq!(merged.quantile(0.0), Some(sorted[0]));
        assert_eq!(merged.quantile(1.0), sorted.last().copied());
    }

    #[test]
    fn empty_and_nan_only_sketches_have_no_quantiles() {
        let mut sketch = QuantileSketch::new(0.01);
        assert_eq!(sketch.quantile(0.5), None);
        sketch.insert(f64::NAN);
        assert_eq!(sketch.count(), 0);
        assert_eq!(sketch.quantile(0.5), None);
        sketch.insert(2.0);
        assert_eq!(sketch.quantiles(&[0.0, 0.5, 1.0]), vec![Some(2.0); 3]);
    }
}
