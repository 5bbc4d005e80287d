//! `ember-planner`: turns a DataFusion physical plan into Ember's stage graph and moves stage
//! plans across process boundaries.
//!
//! ```text
//!  SQL / DSL ──▶ LogicalPlan ──▶ DataFusion optimizer ──▶ physical plan (target partitions N)
//!                                                               │
//!                                                   cut_stages  │  at every exchange
//!                                                               ▼
//!   Stage 0: ShuffleWriterExec(hash) ◀─ scan ◀─ ...        Stage 1: ShuffleWriterExec(hash) ◀─ ...
//!              │ shuffle files                                       │
//!              ▼                                                     ▼
//!   Stage 2 (final): ShuffleWriterExec(preserve) ◀─ join ◀─ ShuffleReaderExec(0), ShuffleReaderExec(1)
//! ```
//!
//! A stage runs as one task per partition. Its plan is rooted at a [`ShuffleWriterExec`]
//! and its leaves are table scans or [`ShuffleReaderExec`]s of earlier stages. Plans travel
//! to executors as bytes ([`encode_plan`] / [`decode_plan`], datafusion-proto with
//! [`EmberCodec`]). The planner never touches files or the network: the executor that runs
//! a task supplies the shuffle I/O through a [`ShuffleRuntime`]. [`draw`] pictures a stage
//! graph ([`stage_graph_svg`], [`stage_graph_dot`]) for `ember explain` and the web UI.

mod adaptive;
mod cache;
mod codec;
mod columns;
mod cut;
pub mod draw;
mod env;
mod error;
mod exchange;
mod functions;
mod joins;
mod percentiles;
mod rewrite;
mod sample;
mod scans;
mod semi_filters;
pub mod shuffle;
mod sink;
mod stage;

pub use adaptive::{StageFacts, stage_facts};
pub use cache::{CacheEntry, CacheLocation, CacheScanExec, CachedData, CachedPiece};
pub use codec::{EmberCodec, PLAN_WIRE_VERSION, decode_plan, encode_plan};
pub use columns::{column_sources, push_into_children};
pub use cut::{CutOptions, cut_stages, cut_stages_with};
pub use draw::{
    Picture, StageState, StageStatus, describe as describe_stages, picture_svg, stage_graph_dot,
    stage_graph_svg,
};
pub use env::{BroadcastStore, TaskEnv, current_task_env, with_task_env};
pub use error::{PlannerError, Result};
pub use exchange::{EmberExtensionPlanner, EmberQueryPlanner, Exchange, ExchangeExec};
pub use functions::{
    BatchFn, EachBatch, FunctionCall, FunctionOutput, FunctionRegistry, FuseFn, MapPartitions,
    MapPartitionsExec, OutputFromArgs, PartitionFactory, PartitionFn, RowTypes, UserFunction,
    fused_name,
};
pub use percentiles::{
    APPROX_PERCENTILES, ApproxPercentiles, FuseApproxPercentiles, approx_percentiles_udaf,
};
pub use sample::{SAMPLE_FUNCTION, SampleSpec};
pub use shuffle::{
    ShuffleOutput, ShuffleRead, ShuffleReaderExec, ShuffleRuntime, ShuffleRuntimeHandle,
    ShuffleWrite, ShuffleWriterExec,
};
pub use sink::{StagedWriteExec, WriteFormat, staged_write_schema};
pub use stage::{Stage, StageGraph, StageId};
