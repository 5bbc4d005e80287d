//! The stock `ember` command: [`ember::cli::main_with`] with the example pipelines' jobs
//! (`ember run NAME`) and functions, so that `ember run` works on the embedded cluster
//! and on a cluster of stock executors alike. A binary of one's own is the same line with
//! its own `register`.

mod allocator;

fn main() -> std::process::ExitCode {
    allocator::configure();
    ember::cli::main_with(ember_examples::register)
}
