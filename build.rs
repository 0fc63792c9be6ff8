//! Compiles the gRPC API (`proto/asterism/v1/asterism.proto`) into Rust with tonic-prost-build,
//! and writes the file descriptor set the server offers through gRPC reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=proto/asterism/v1/asterism.proto");
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("asterism_descriptor.bin"))
        .compile_protos(&["proto/asterism/v1/asterism.proto"], &["proto"])?;
    Ok(())
}
