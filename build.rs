//! Compiles `proto/` with protox (pure Rust; no system protoc) and writes the descriptor set
//! that the reflection service serves.

use prost::Message;

fn main() -> anyhow::Result<()> {
    let proto = "proto/ampsim/v1/simulator.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("ampsim_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // BTreeMap: cheaper than a SipHash HashMap for a handful of properties, and ordered.
        .btree_map(".")
        // StreamEvents batches are written and read as bytes (src/wire.rs).
        .extern_path(".ampsim.v1.EventBatch", "crate::wire::EventBatch")
        // ExportParquet's file pieces are slices of one buffer (no copy per chunk).
        .bytes(".ampsim.v1.FileChunk.data")
        .compile_fds(fds)?;
    Ok(())
}
