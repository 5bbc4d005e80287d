//! The `ember` command; everything lives in [`ember::cli`], so a user's own binary can be
//! the same command carrying its own functions.

fn main() -> std::process::ExitCode {
    ember::cli::main()
}
