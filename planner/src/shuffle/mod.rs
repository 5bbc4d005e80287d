//! Shuffle boundaries in a plan: the node that ends a stage ([`ShuffleWriterExec`]), the node
//! that starts one ([`ShuffleReaderExec`]), how rows are spread over output partitions
//! ([`ShuffleOutput`]), and the hook through which an executor does the actual I/O
//! ([`ShuffleRuntime`]).
//!
//! The planner only describes shuffles; reading and writing files (or fetching them over the
//! network) belongs to `ember-executors`, which installs a [`ShuffleRuntimeHandle`] in the
//! task's session config before it executes a stage plan.

mod output;
mod reader;
mod runtime;
mod writer;

pub use output::ShuffleOutput;
pub use reader::ShuffleReaderExec;
pub(crate) use runtime::shuffle_runtime;
pub use runtime::{
    CachedPiece, ShuffleRead, ShuffleRuntime, ShuffleRuntimeHandle, ShuffleWrite,
    write_summary_schema,
};
pub use writer::ShuffleWriterExec;
