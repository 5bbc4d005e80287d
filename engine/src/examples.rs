//! The example pipelines of the workspace's `examples/` folder, compiled into the `ember`
//! crate so that `ember run NAME` (and every executor built from this crate) carries them.

#[path = "../../examples/distributed_sum.rs"]
pub mod distributed_sum;
#[path = "../../examples/word_count.rs"]
pub mod word_count;

pub use distributed_sum::distributed_sum;
pub use word_count::word_count;
