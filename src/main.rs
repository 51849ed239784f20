//! The `ampsim` binary: parse arguments, hand over to the library.

use clap::Parser;

// The event paths allocate many small strings; mimalloc is markedly faster at that than glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    ampsim::cli::run(ampsim::cli::Cli::parse())
}
