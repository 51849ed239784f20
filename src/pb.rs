//! Code generated from `proto/ampsim/v1/simulator.proto` (by `build.rs`, with protox).
#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("ampsim.v1");

/// The encoded file descriptor set, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ampsim_descriptor.bin"));
