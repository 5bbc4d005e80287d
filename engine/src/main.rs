//! The `ember` command; everything lives in [`ember::cli`], so a user's own binary can be
//! the same command carrying its own functions.

fn main() -> std::process::ExitCode {
    ember::cli::main_with(|registry| {
        // The stock command carries the example pipelines' functions, so that `ember run`
        // works on a cluster of stock executors too.
        ember::examples::register_matrix_functions(registry)?;
        ember::examples::forest::register_forest_functions(registry);
        Ok(())
    })
}
