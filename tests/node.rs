//! `ember-node`: the `ember` command with the cluster tests' functions registered (and the
//! example pipelines', as the stock command has them), the way a user's own binary
//! carries their functions to its executors.

fn main() -> std::process::ExitCode {
    ember::cli::main_with(|registry| {
        ember_examples::register(registry)?;
        ember_tests::register_cluster_functions(registry);
        Ok(())
    })
}
