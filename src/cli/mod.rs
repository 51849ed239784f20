//! The `ampsim` command line: argument parsing and the client verbs. `main.rs` only calls
//! [`run`].

pub mod bench_engine;

use clap::{Parser, Subcommand};

/// ampsim: a deterministic generator of Amplitude-format product-analytics events for a B2B
/// SaaS funnel, served over gRPC with SQLite persistence.
#[derive(Debug, Parser)]
#[command(name = "ampsim", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Benchmark the engine alone (no storage) and optionally print the acceptance report.
    BenchEngine(bench_engine::BenchEngineArgs),
    /// Print the embedded default scenario TOML.
    Scenario,
}

/// Runs the command line.
///
/// # Errors
/// Whatever the subcommand reports.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::BenchEngine(a) => bench_engine::run(&a),
        Command::Scenario => {
            print!("{}", crate::sim::scenario::DEFAULT_SCENARIO_TOML);
            Ok(())
        }
    }
}
