//! Generates the host link's gRPC code from `proto/link.proto` (needs `protoc`, which
//! `ci/deps.sh` installs for containerd-client already).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/link.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/link.proto"], &["proto"])?;
    Ok(())
}
