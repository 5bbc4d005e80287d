//! [`ShuffleOutput`]: how a stage spreads its rows over the partitions that the next stage
//! reads.

use std::fmt;
use std::sync::Arc;

use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::equivalence::EquivalenceGroup;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};

/// How a map task assigns the rows it produces to output (reduce) partitions.
#[derive(Debug, Clone)]
pub enum ShuffleOutput {
    /// Rows go to `hash(exprs) % count`, as DataFusion's hash repartitioning does.
    Hash {
        /// The key expressions, bound to the stage's output schema.
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        /// Number of output partitions.
        count: usize,
    },
    /// Whole batches go to the output partitions in turn.
    RoundRobin {
        /// Number of output partitions.
        count: usize,
    },
    /// Every map task writes everything to output partition 0 (a merge into one partition,
    /// or a broadcast side that every reader wants whole).
    Single,
    /// Map task `i` writes everything to output partition `i`, keeping each partition's
    /// order (the input of a sort-preserving merge, or the final stage's result).
    Preserve {
        /// Number of map tasks, and so of output partitions.
        count: usize,
    },
}

impl ShuffleOutput {
    /// Number of partitions the readers of this output see.
    pub fn partition_count(&self) -> usize {
        match self {
            ShuffleOutput::Hash { count, .. }
            | ShuffleOutput::RoundRobin { count }
            | ShuffleOutput::Preserve { count } => *count,
            ShuffleOutput::Single => 1,
        }
    }

    /// The partitioning that readers of this output may assume.
    pub fn reader_partitioning(&self) -> Partitioning {
        match self {
            ShuffleOutput::Hash { exprs, count } => Partitioning::Hash(exprs.clone(), *count),
            other => Partitioning::UnknownPartitioning(other.partition_count()),
        }
    }

    /// The equalities and constants that readers of this output may assume, given the
    /// plan whose rows were written (`input`).
    ///
    /// They are facts about single rows (`a = b`, `year = 1999`), so a shuffle keeps them,
    /// as DataFusion's repartitioning does; the plan above the exchange may have been
    /// optimized on them (a sort that leaves out a constant column), and the executor
    /// rebuilds that plan from what the reader declares. Orderings are left out: a reader
    /// interleaves the pieces of several map tasks (the merge above a `Preserve` reader
    /// states its own). A constant that may differ from one input partition to the next
    /// stays a constant only where each output partition holds one input partition's rows.
    pub fn reader_equivalences(&self, input: &Arc<dyn ExecutionPlan>) -> EquivalenceGroup {
        let mut facts = input.equivalence_properties().eq_group().clone();
        let one_input_per_output = matches!(self, ShuffleOutput::Preserve { .. })
            || input.output_partitioning().partition_count() <= 1;
        if !one_input_per_output {
            facts.clear_per_partition_constants();
        }
        facts
    }

    /// A short name of the kind, for `explain` and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ShuffleOutput::Hash { .. } => "hash",
            ShuffleOutput::RoundRobin { .. } => "round-robin",
            ShuffleOutput::Single => "single",
            ShuffleOutput::Preserve { .. } => "preserve",
        }
    }
}

impl fmt::Display for ShuffleOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShuffleOutput::Hash { exprs, count } => {
                let keys: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
                write!(f, "hash([{}], {count})", keys.join(", "))
            }
            ShuffleOutput::RoundRobin { count } => write!(f, "round-robin({count})"),
            ShuffleOutput::Single => write!(f, "single"),
            ShuffleOutput::Preserve { count } => write!(f, "preserve({count})"),
        }
    }
}
