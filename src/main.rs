//! The `ampsim` binary: parse arguments, hand over to the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    ampsim::cli::run(ampsim::cli::Cli::parse())
}
