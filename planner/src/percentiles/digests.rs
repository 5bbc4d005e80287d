//! The accumulators of `approx_percentiles`: [`GroupDigests`] keeps one t-digest and a
//! buffer of not-yet-merged values per group; [`SingleDigest`] is the ungrouped case, which
//! merges each batch at once (a batch is already a large sorted run).

use std::mem::size_of;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Float64Builder, ListArray, ListBuilder,
    UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::{filter, is_not_null};
use arrow::datatypes::{DataType, Field, Float64Type, UInt64Type};
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result;
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};
use datafusion_functions_aggregate_common::tdigest::{Centroid, TDigest};

use super::spec::{APPROX_PERCENTILES, Quantiles};

/// Values a group collects before they are sorted and merged into its digest: enough that
/// the merge (linear in the digest's centroids, 100 by default) is paid once per several
/// hundred values, few enough that a group's buffer stays at 4 KiB.
pub(super) const FLUSH_AT: usize = 512;

/// One digest and one buffer of values per group.
#[derive(Debug)]
pub(super) struct GroupDigests {
    spec: Quantiles,
    digests: Vec<TDigest>,
    pending: Vec<Vec<f64>>,
    /// Centroids held by all the digests, for [`GroupsAccumulator::size`].
    centroids: usize,
    /// Capacity of all the buffers, in values.
    buffered: usize,
}

impl GroupDigests {
    pub(super) fn new(spec: Quantiles) -> Self {
        Self {
            spec,
            digests: Vec::new(),
            pending: Vec::new(),
            centroids: 0,
            buffered: 0,
        }
    }

    fn resize(&mut self, groups: usize) {
        if self.digests.len() < groups {
            self.digests
                .resize(groups, TDigest::new(self.spec.max_size));
            self.pending.resize_with(groups, Vec::new);
        }
    }

    fn push(&mut self, group: usize, value: f64) {
        let buffer = &mut self.pending[group];
        let capacity = buffer.capacity();
        buffer.push(value);
        self.buffered += buffer.capacity() - capacity;
        if buffer.len() >= FLUSH_AT {
            self.flush(group);
        }
    }

    /// Merges a group's buffered values into its digest.
    fn flush(&mut self, group: usize) {
        let buffer = &mut self.pending[group];
        if buffer.is_empty() {
            return;
        }
        buffer.sort_unstable_by(f64::total_cmp);
        let digest = &mut self.digests[group];
        let merged = digest.merge_sorted_f64(buffer);
        self.centroids = self.centroids + merged.centroids().len() - digest.centroids().len();
        *digest = merged;
        buffer.clear();
    }

    /// The digests of the groups `emit_to` names, complete and removed from `self`.
    fn take(&mut self, emit_to: EmitTo) -> Vec<TDigest> {
        let emitted = match emit_to {
            EmitTo::All => self.digests.len(),
            EmitTo::First(n) => n.min(self.digests.len()),
        };
        for group in 0..emitted {
            self.flush(group);
        }
        let digests = emit_to.take_needed(&mut self.digests);
        let buffers = emit_to.take_needed(&mut self.pending);
        self.centroids -= digests.iter().map(|d| d.centroids().len()).sum::<usize>();
        self.buffered -= buffers.iter().map(Vec::capacity).sum::<usize>();
        digests
    }
}

impl GroupsAccumulator for GroupDigests {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let values = doubles(values)?;
        let rows = group_indices.iter().copied().enumerate();
        match (values.nulls(), opt_filter) {
            (None, None) => {
                for (group, value) in group_indices.iter().zip(values.values()) {
                    self.push(*group, *value);
                }
            }
            _ => {
                for (row, group) in rows {
                    let wanted = opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
                    if wanted && values.is_valid(row) {
                        self.push(group, values.value(row));
                    }
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let digests = self.take(emit_to);
        let mut lists = ListBuilder::with_capacity(
            Float64Builder::with_capacity(digests.len() * self.spec.quantiles.len()),
            digests.len(),
        );
        for digest in &digests {
            match answers(digest, &self.spec) {
                Some(values) => lists.append_value(values.into_iter().map(Some)),
                None => lists.append_null(),
            }
        }
        Ok(Arc::new(lists.finish()))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(state_arrays(&self.take(emit_to)))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        let states = StateArrays::new(values)?;
        for (row, group) in group_indices.iter().copied().enumerate() {
            if let Some(incoming) = states.digest(row, self.spec.max_size)? {
                let digest = &mut self.digests[group];
                let merged = TDigest::merge_digests([&*digest, &incoming]);
                self.centroids =
                    self.centroids + merged.centroids().len() - digest.centroids().len();
                *digest = merged;
            }
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let values = doubles(values)?;
        let digests: Vec<TDigest> = (0..values.len())
            .map(|row| {
                let wanted = opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row));
                if wanted && values.is_valid(row) {
                    let value = Centroid::new(values.value(row), 1.0);
                    TDigest::new_with_centroid(self.spec.max_size, value)
                } else {
                    TDigest::new(self.spec.max_size)
                }
            })
            .collect();
        Ok(state_arrays(&digests))
    }

    fn size(&self) -> usize {
        size_of::<Self>()
            + self.digests.capacity() * size_of::<TDigest>()
            + self.pending.capacity() * size_of::<Vec<f64>>()
            + self.centroids * size_of::<Centroid>()
            + self.buffered * size_of::<f64>()
    }
}

/// The ungrouped case: one digest, each batch sorted and merged as it comes.
#[derive(Debug)]
pub(super) struct SingleDigest {
    spec: Quantiles,
    digest: TDigest,
}

impl SingleDigest {
    pub(super) fn new(spec: Quantiles) -> Self {
        let digest = TDigest::new(spec.max_size);
        Self { spec, digest }
    }
}

impl Accumulator for SingleDigest {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let values = doubles(values)?;
        let mut sorted = if values.null_count() > 0 {
            let kept = filter(values, &is_not_null(values)?)?;
            kept.as_primitive::<Float64Type>().values().to_vec()
        } else {
            values.values().to_vec()
        };
        sorted.sort_unstable_by(f64::total_cmp);
        self.digest = self.digest.merge_sorted_f64(&sorted);
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let item = Arc::new(Field::new_list_field(DataType::Float64, true));
        let list = match answers(&self.digest, &self.spec) {
            Some(values) => {
                let values = Arc::new(Float64Array::from(values)) as ArrayRef;
                let offsets = OffsetBuffer::from_lengths([values.len()]);
                ListArray::try_new(item, offsets, values, None)?
            }
            None => ListArray::new_null(item, 1),
        };
        Ok(ScalarValue::List(Arc::new(list)))
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(self.digest.to_scalar_state())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let states = StateArrays::new(states)?;
        let mut incoming = vec![self.digest.clone()];
        for row in 0..states.len() {
            incoming.extend(states.digest(row, self.spec.max_size)?);
        }
        if incoming.len() > 1 {
            self.digest = TDigest::merge_digests(&incoming);
        }
        Ok(())
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.digest.size() - size_of::<TDigest>()
            + self.spec.quantiles.capacity() * size_of::<f64>()
    }
}

/// The first argument, which the aggregate's coercion made a double.
fn doubles(values: &[ArrayRef]) -> Result<&Float64Array> {
    match values.first().map(|v| v.as_primitive_opt::<Float64Type>()) {
        Some(Some(values)) => Ok(values),
        _ => exec_err!("{APPROX_PERCENTILES} expects its value as a double"),
    }
}

/// The asked quantiles of `digest`, or none when it has seen no value.
fn answers(digest: &TDigest, spec: &Quantiles) -> Option<Vec<f64>> {
    (digest.count() > 0.0).then(|| {
        spec.quantiles
            .iter()
            .map(|q| digest.estimate_quantile(*q))
            .collect()
    })
}

/// `digests` as the arrays of the aggregate's state (`ApproxPercentiles::state_fields`).
fn state_arrays(digests: &[TDigest]) -> Vec<ArrayRef> {
    let column = |part: fn(&TDigest) -> f64| -> ArrayRef {
        Arc::new(digests.iter().map(part).collect::<Float64Array>())
    };
    let sizes: UInt64Array = digests.iter().map(|d| d.max_size() as u64).collect();
    let mut centroids = ListBuilder::new(Float64Builder::new())
        .with_field(Arc::new(Field::new_list_field(DataType::Float64, true)));
    for digest in digests {
        let values = centroids.values();
        for centroid in digest.centroids() {
            values.append_value(centroid.mean());
            values.append_value(centroid.weight());
        }
        centroids.append(true);
    }
    vec![
        Arc::new(sizes),
        column(TDigest::sum),
        column(TDigest::count),
        column(TDigest::max),
        column(TDigest::min),
        Arc::new(centroids.finish()),
    ]
}

/// Digests read back from the arrays of [`state_arrays`], row by row.
struct StateArrays<'a> {
    sizes: &'a UInt64Array,
    sums: &'a Float64Array,
    counts: &'a Float64Array,
    maxima: &'a Float64Array,
    minima: &'a Float64Array,
    centroids: &'a ListArray,
}

impl<'a> StateArrays<'a> {
    fn new(states: &'a [ArrayRef]) -> Result<Self> {
        let double = |i: usize| {
            states
                .get(i)
                .and_then(|a| a.as_primitive_opt::<Float64Type>())
        };
        match (
            states
                .first()
                .and_then(|a| a.as_primitive_opt::<UInt64Type>()),
            double(1),
            double(2),
            double(3),
            double(4),
            states.get(5).and_then(|a| a.as_list_opt::<i32>()),
        ) {
            (
                Some(sizes),
                Some(sums),
                Some(counts),
                Some(maxima),
                Some(minima),
                Some(centroids),
            ) => Ok(Self {
                sizes,
                sums,
                counts,
                maxima,
                minima,
                centroids,
            }),
            _ => exec_err!("{APPROX_PERCENTILES}: a partial state of the wrong shape"),
        }
    }

    fn len(&self) -> usize {
        self.sizes.len()
    }

    /// The digest in `row`, or none when it has seen no value. Its size must be
    /// `max_size`, the size every partial aggregation of the same call uses (a merge
    /// allocates room for that many centroids).
    fn digest(&self, row: usize, max_size: usize) -> Result<Option<TDigest>> {
        let size = self.sizes.value(row);
        if usize::try_from(size).ok() != Some(max_size) {
            return exec_err!(
                "{APPROX_PERCENTILES}: a partial state of a digest of {size} centroids, \
                 expected {max_size}"
            );
        }
        let pairs = self.centroids.value(row);
        let Some(pairs) = pairs.as_primitive_opt::<Float64Type>() else {
            return exec_err!("{APPROX_PERCENTILES}: centroids that are not doubles");
        };
        if pairs.is_empty() {
            return Ok(None);
        }
        let centroids = pairs
            .values()
            .chunks_exact(2)
            .map(|pair| Centroid::new(pair[0], pair[1]))
            .collect();
        TDigest::try_from_parts(
            max_size,
            self.sums.value(row),
            self.counts.value(row),
            self.maxima.value(row),
            self.minima.value(row),
            centroids,
        )
        .map(Some)
    }
}
