//! One integration-test binary (faster to link than many); each module covers one area.
// Helpers panic on unexpected errors: a failed test's panic message is its report.
#![allow(clippy::unwrap_used)]

mod access;
mod accounts;
mod causes;
mod devices;
mod engine;
mod export;
mod fuzz;
mod html;
mod integrity;
mod labels;
mod layout;
mod lifecycle;
mod offline;
mod queries;
mod realism;
mod reliability;
mod server;
mod support;
mod trials;
mod upload;
mod user_properties;
mod wire;
