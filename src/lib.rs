//! ampsim: a deterministic simulator of a B2B SaaS website's visitors that emits
//! Amplitude-format events, persists simulations in SQLite and serves them over gRPC.
//!
//! See ARCHITECTURE.md for the module map and invariants.

pub mod app;
pub mod cli;
pub mod client;
pub mod columnar;
pub mod error;
pub mod export;
pub mod offline;
pub mod pb;
pub mod query;
pub mod report_html;
pub mod rpc;
pub mod server;
pub mod store;
pub mod upload;
pub mod validate;
pub mod wire;
