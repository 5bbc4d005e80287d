//! `ember-executors`: the task runtime. An [`Executor`] receives a [`TaskDefinition`] (a
//! serialized stage plan and a partition), runs it as a stream of Arrow record batches, and
//! writes its output as Arrow IPC shuffle files (compressed as [`ShuffleCompression`]
//! says) that the next stage reads.
//!
//! ```text
//!   TaskDefinition ──▶ decode_plan ──▶ ShuffleWriterExec ──▶ part-0.arrow, part-1.arrow, ...
//!                                          ▲
//!                         ShuffleReaderExec(s) ◀── files of the stages it reads
//! ```

mod error;
mod executor;
mod input_errors;
mod join_fallback;
pub mod memory;
pub mod metrics;
pub mod rpc;
mod runtime_filter;
pub mod shuffle;
pub mod storage;
mod sync;

pub use error::{ExecutorError, Result};
pub use executor::{Executor, ExecutorConfig};
pub use runtime_filter::RUNTIME_FILTERS_SETTING;
pub use shuffle::HOST_LOCAL_READS_SETTING;
pub use shuffle::{
    LocalShuffle, ResultClients, ShuffleCompression, read_job_output, read_locations,
};
