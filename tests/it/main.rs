//! One integration-test binary (faster to link than many); each module covers one area.
mod access;
mod engine;
mod export;
mod fuzz;
mod queries;
mod reliability;
mod server;
mod support;
mod upload;
