//! Shuffle I/O on an executor: [`LocalShuffle`] implements the planner's
//! [`ShuffleRuntime`](ember_planner::ShuffleRuntime) with Arrow IPC files (compressed or
//! not, see [`ShuffleCompression`]) in the executor's work directory.
//!
//! ```text
//! WORK_DIR/JOB_ID/stage-S/map-M-attempt-A/part-P.arrow
//! ```
//! Map task `M` of stage `S` writes one file per reduce partition `P` that received rows;
//! reduce task `P` streams the files of every map task of `S`, in map order. Each file ends
//! with a trailer of per-message checksums ([`ipc`]).

mod compact;
mod compression;
mod fetch;
pub(crate) mod ipc;
mod reader;
mod result;
mod runtime;
mod writer;

pub use compression::{ShuffleCompression, spans_hosts};
pub(crate) use fetch::fetch_failure;
pub use fetch::{HOST_LOCAL_READS_SETTING, RemoteInputs};
pub use reader::read_locations;
pub use result::{ResultClients, read_job_output};
pub use runtime::LocalShuffle;
