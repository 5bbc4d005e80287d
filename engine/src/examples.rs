//! The example pipelines of the workspace's `examples/` folder, compiled into the `ember`
//! crate so that `ember run NAME` (and every executor built from this crate) carries them.

#[path = "../../examples/distributed_sum.rs"]
pub mod distributed_sum;
#[path = "../../examples/matrix_multiply.rs"]
pub mod matrix_multiply;
#[path = "../../examples/word_count.rs"]
pub mod word_count;

pub use distributed_sum::distributed_sum;
pub use matrix_multiply::{MatrixProduct, matrix_multiply, register_matrix_functions};
pub use word_count::{WORD_SEPARATORS, word_count};
#[path = "../../examples/forest/mod.rs"]
pub mod forest;
#[path = "../../examples/price_report.rs"]
pub mod price_report;
#[path = "../../examples/price_summary.rs"]
pub mod price_summary;
#[path = "../../examples/product_prices.rs"]
pub mod product_prices;
