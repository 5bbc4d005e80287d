//! The stock `ember` command: [`ember::cli::main_with`] with the example pipelines' jobs
//! (`ember run NAME`) and functions, so that `ember run` works on the embedded cluster
//! and on a cluster of stock executors alike. A binary of one's own is the same line with
//! its own `register`.

/// mimalloc, as datafusion-cli: Arrow's buffers come and go by the megabyte, and the
/// system allocator hands large ones back to the kernel, which zeroes fresh pages for the
/// next (`clear_page_erms` was a tenth of a shuffle reader's time).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ember::cli::main_with(ember_examples::register)
}
