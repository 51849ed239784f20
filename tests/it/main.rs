//! One integration-test binary (faster to link than many); each module covers one area.
mod engine;
mod queries;
mod server;
mod support;
