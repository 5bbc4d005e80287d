//! Approximate percentiles: Ember's `approx_percentiles(value, [q, ...] [, size])`
//! aggregate, which answers several quantiles of one value from one t-digest per group, and
//! [`FuseApproxPercentiles`], the optimizer rule that turns a query's
//! `approx_percentile_cont` calls over one value into a single call of it.
//!
//! DataFusion's `approx_percentile_cont` keeps one digest per call and, in a grouped
//! aggregation, one boxed accumulator per group that it hands a slice of each batch: a
//! report asking five quantiles per brand merged every batch's dozen rows of a brand into
//! five digests of up to 100 centroids each. Here each group collects its values and merges
//! them into its one digest [`digests::FLUSH_AT`] at a time, so the merge is paid once per
//! few hundred values rather than once per batch, and once for all the quantiles.
//!
//! The digest is DataFusion's own ([`TDigest`], the same sizes and the same state layout),
//! so the answers are those of `approx_percentile_cont` up to the order in which values
//! reach the digest.
//!
//! [`TDigest`]: datafusion_functions_aggregate_common::tdigest::TDigest

mod digests;
mod fuse;
mod spec;
mod udaf;

pub use fuse::FuseApproxPercentiles;
pub use spec::APPROX_PERCENTILES;
pub use udaf::{ApproxPercentiles, approx_percentiles_udaf};

#[cfg(test)]
mod tests;
