//! Generates LiveKit's egress types and the gateway's own event service (and, with the `grpc`
//! feature, their tonic clients and servers) from `proto/` with `protox`, so a bare machine
//! without `protoc` can build the workspace.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", proto_dir.display());

    let fds = protox::compile(
        ["livekit_egress.proto", "egress_gateway/v1/events.proto"],
        [&proto_dir],
    )?;

    // Reflection serves this set, so it carries the whole import closure (including the
    // Google well-known types) for clients that resolve every dependency.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("descriptors.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    // The service code only with the `grpc` feature (see Cargo.toml); the messages always.
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        .compile_fds(fds)?;
    Ok(())
}
