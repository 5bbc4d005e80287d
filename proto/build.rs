//! Generates the gRPC messages and services of `ember.proto` (and the client of the part
//! of etcd's API in `etcd.proto`) with the `protoc` that the
//! `protoc-bin-vendored` crate ships, so build machines need no `protoc` of their own.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &["ember.proto"], &["."])?;
    // etcd's key and lease calls, for the scheduler's state store and leader election.
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_with_config(config, &["etcd.proto"], &["."])?;
    Ok(())
}
