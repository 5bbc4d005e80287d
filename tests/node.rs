//! `ember-node`: the `ember` command with the cluster tests' functions registered, the way
//! a user's own binary carries their functions to its executors.

fn main() -> std::process::ExitCode {
    ember_tests::register_cluster_functions();
    ember::cli::main()
}
