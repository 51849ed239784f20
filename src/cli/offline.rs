//! `ampsim generate --out DIR`: a shard of a simulation straight to Parquet, without a server
//! ([`crate::offline`]).

use crate::offline::{self, OfflineOptions};
use ampsim_engine::{Scenario, Shard, SimConfig};
use std::path::PathBuf;

/// The offline options of `ampsim generate` (all need `--out`).
#[derive(Debug, Clone, clap::Args)]
pub struct OfflineArgs {
    /// Generate without a server, into this directory: date-partitioned Parquet
    /// (`date=YYYY-MM-DD/part-K-of-N.parquet`), a manifest per shard under `_manifests/`, and
    /// checkpoints under `_state/`. A rerun resumes from the last complete day, or extends to
    /// more --days.
    #[arg(long, conflicts_with = "simulation")]
    pub out: Option<PathBuf>,
    /// Which shard to generate, K/N: shard K of N owns the devices whose index within their
    /// first day is K modulo N. The N shards together are the whole simulation, event for
    /// event.
    #[arg(long, default_value = "0/1", requires = "out")]
    pub shard: Shard,
    /// Seed (offline).
    #[arg(long, default_value_t = 1, requires = "out")]
    pub seed: u64,
    /// Date of day 0, YYYY-MM-DD (offline; required there, so that every shard agrees).
    #[arg(long, value_parser = crate::validate::parse_ymd, requires = "out")]
    pub start: Option<chrono::NaiveDate>,
    /// Population scale (offline; 1.0 = the default year's ~16M visitors).
    #[arg(long, default_value_t = 1.0, requires = "out")]
    pub scale: f64,
    /// Scenario TOML file merged onto the embedded default (offline).
    #[arg(long, requires = "out")]
    pub scenario: Option<PathBuf>,
    /// Days between checkpoints of the shard's state (offline).
    #[arg(long, default_value_t = 30, requires = "out")]
    pub checkpoint_days: u32,
    /// Worker threads (offline; default: all cores).
    #[arg(long, requires = "out")]
    pub threads: Option<usize>,
    /// The Parquet files' zstd level, 1-22 (offline; 1 writes fastest, higher is smaller).
    #[arg(long, default_value_t = crate::columnar::ZSTD_LEVEL, requires = "out",
          value_parser = clap::value_parser!(i32).range(1..=22))]
    pub zstd_level: i32,
}

/// Runs `ampsim generate --out`.
///
/// # Errors
/// Bad flags, an invalid scenario, an output of another definition, I/O and Parquet errors.
pub fn run(a: &OfflineArgs, days: u32, quiet: bool) -> anyhow::Result<()> {
    let out = a
        .out
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--out is required"))?;
    let start = a.start.ok_or_else(|| {
        anyhow::anyhow!("--start is required with --out (every shard must use the same start date)")
    })?;
    crate::validate::validate_scale(a.scale).map_err(|e| anyhow::anyhow!("--scale: {e}"))?;
    if a.scale == 0.0 {
        anyhow::bail!("--scale: must be a positive number");
    }
    let toml = match &a.scenario {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("--scenario {}: {e}", p.display()))?,
        None => String::new(),
    };
    let scenario = Scenario::from_toml(&toml).map_err(|e| anyhow::anyhow!("--scenario: {e}"))?;
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        anyhow::bail!("--threads: must be at least 1");
    }
    if a.checkpoint_days == 0 {
        anyhow::bail!("--checkpoint-days: must be at least 1");
    }
    let opts = OfflineOptions {
        config: SimConfig {
            scenario,
            seed: a.seed,
            start_date: start,
            population_scale: a.scale,
        },
        shard: a.shard,
        days,
        out,
        checkpoint_days: a.checkpoint_days,
        threads,
        zstd_level: a.zstd_level,
    };
    let started = std::time::Instant::now();
    let mut total = 0u64;
    let summary = offline::generate(&opts, |date, events| {
        total += events;
        if !quiet {
            let rate = total as f64 / started.elapsed().as_secs_f64().max(1e-9);
            eprintln!("{date}  {events} events  ({total} in all, {rate:.0} events/s)");
        }
    })?;
    let m = &summary.manifest;
    eprintln!(
        "shard {}: wrote {} days, {} events in {:.1}s ({:.0} events/s); replayed {} days; {} days complete",
        m.shard,
        summary.days_written,
        summary.events_written,
        summary.seconds,
        summary.events_written as f64 / summary.seconds.max(1e-9),
        summary.days_replayed,
        m.days_complete
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "shard": m.shard,
            "days_complete": m.days_complete,
            "events": m.events,
            "days_written": summary.days_written,
            "events_written": summary.events_written,
            "days_replayed": summary.days_replayed,
            "seconds": (summary.seconds * 100.0).round() / 100.0,
            "definition_tag": m.definition_tag,
        }))?
    );
    Ok(())
}
