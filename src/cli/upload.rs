//! `ampsim upload` and `ampsim amplitude-double`.

use super::ClientOpts;
use crate::upload::{self, double, Api, UploadOptions};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Options of `ampsim upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// Where the ampsim server is.
    #[command(flatten)]
    pub client: ClientOpts,
    /// The simulation to upload.
    #[arg(long)]
    pub simulation: String,
    /// First day, YYYY-MM-DD (default: the simulation's start).
    #[arg(long, value_parser = crate::validate::parse_ymd)]
    pub from: Option<chrono::NaiveDate>,
    /// Last day, YYYY-MM-DD (default: the last generated day).
    #[arg(long, value_parser = crate::validate::parse_ymd)]
    pub to: Option<chrono::NaiveDate>,
    /// The Amplitude project's API key.
    #[arg(long, env = "AMPLITUDE_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// Base URL replacing Amplitude's (a proxy, or `ampsim amplitude-double`); the API path
    /// (/2/httpapi or /batch) is appended.
    #[arg(long, conflicts_with = "eu")]
    pub endpoint: Option<String>,
    /// Use Amplitude's EU data center (api.eu.amplitude.com).
    #[arg(long)]
    pub eu: bool,
    /// Use the Batch API (/batch: 20 MB requests, 1,000 events/s per id) instead of HTTP V2.
    #[arg(long)]
    pub batch_api: bool,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Events per request (at most 2,000; halved on each 413).
    #[arg(long, default_value_t = upload::MAX_EVENTS_PER_REQUEST)]
    pub batch_events: usize,
    /// Seconds a throttled device or user waits after a 429.
    #[arg(long, default_value_t = 30.0)]
    pub throttle_pause_secs: f64,
    /// Attempts per request on 5xx and network errors before giving up (the checkpoint keeps
    /// the progress).
    #[arg(long, default_value_t = 8)]
    pub max_attempts: u32,
    /// First retry delay in seconds; it doubles per attempt, up to 30 s.
    #[arg(long, default_value_t = 1.0)]
    pub backoff_secs: f64,
    /// Checkpoint file (default: ampsim-upload-<simulation>.json in the current directory).
    /// Run the same command again to resume an interrupted upload.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Start over, ignoring the checkpoint.
    #[arg(long)]
    pub restart: bool,
    /// Where dropped events are listed as JSON lines (default: the checkpoint's name with
    /// `.rejected.jsonl`).
    #[arg(long)]
    pub rejected: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn secs(flag: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| anyhow::anyhow!("{flag} {v}: want a non-negative number of seconds"))
}

impl UploadArgs {
    /// The library options these flags mean.
    ///
    /// # Errors
    /// A flag out of range, named.
    pub fn options(&self) -> anyhow::Result<UploadOptions> {
        let base_url = match (&self.endpoint, self.eu) {
            (Some(e), _) => e.clone(),
            (None, true) => upload::EU_BASE_URL.to_owned(),
            (None, false) => upload::US_BASE_URL.to_owned(),
        };
        let checkpoint = self
            .checkpoint
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("ampsim-upload-{}.json", self.simulation)));
        let rejected = self
            .rejected
            .clone()
            .unwrap_or_else(|| checkpoint.with_extension("rejected.jsonl"));
        Ok(UploadOptions {
            simulation: self.simulation.clone(),
            from: self.from,
            to: self.to,
            api_key: self.api_key.clone(),
            base_url,
            api: if self.batch_api {
                Api::Batch
            } else {
                Api::HttpV2
            },
            concurrency: self.concurrency,
            batch_events: self.batch_events,
            throttle_pause: secs("--throttle-pause-secs", self.throttle_pause_secs)?,
            max_attempts: self.max_attempts,
            backoff: secs("--backoff-secs", self.backoff_secs)?,
            checkpoint,
            restart: self.restart,
            rejected,
            progress: !self.quiet,
        })
    }
}

/// Runs `ampsim upload`.
///
/// # Errors
/// Whatever [`upload::upload`] reports.
pub fn run(a: &UploadArgs) -> anyhow::Result<()> {
    let opts = a.options()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        let client = super::client::connect(&a.client).await?;
        upload::upload(&client, &opts).await
    })?;
    print_report(&report, &opts);
    Ok(())
}

fn print_report(r: &upload::UploadReport, opts: &UploadOptions) {
    if r.already_complete {
        println!(
            "{} {}..{} to {}: already complete according to {} (--restart to send again)",
            opts.simulation,
            r.from,
            r.to,
            r.url,
            opts.checkpoint.display()
        );
        return;
    }
    println!(
        "uploaded {} {}..{} to {}",
        opts.simulation, r.from, r.to, r.url
    );
    if let Some((day, index)) = &r.resumed_at {
        println!("  resumed at        {day}, event {index}");
    }
    println!("  events read       {}", r.events_read);
    println!(
        "  acknowledged      {} (server's events_ingested: {})",
        r.acknowledged, r.server_ingested
    );
    println!(
        "  dropped invalid   {}{}",
        r.dropped,
        if r.dropped > 0 {
            format!(" (listed in {})", opts.rejected.display())
        } else {
            String::new()
        }
    );
    println!(
        "  requests          {} (429: {}, 413: {}, 5xx/network: {}); final batch size {}",
        r.requests, r.throttled, r.too_large, r.server_errors, r.batch_events
    );
    println!(
        "  elapsed           {:.2} s, {:.0} events/s",
        r.seconds,
        r.acknowledged as f64 / r.seconds.max(1e-9)
    );
    println!("  checkpoint        {}", opts.checkpoint.display());
}

/// Options of `ampsim amplitude-double`.
#[derive(Debug, Args)]
pub struct DoubleArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Accept only this API key (default: any non-empty key).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Events per second allowed per device or user on /2/httpapi.
    #[arg(long, default_value_t = 30)]
    pub eps: u32,
    /// Events per second allowed per device or user on /batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_eps: u32,
    /// Seconds the rate is averaged over.
    #[arg(long, default_value_t = 30.0)]
    pub eps_window_secs: f64,
    /// Minimum length of user_id and device_id.
    #[arg(long, default_value_t = 5)]
    pub min_id_length: usize,
    /// Largest uncompressed body on /2/httpapi, bytes.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_bytes: usize,
    /// Answer every N-th request with --fail-status (0: never).
    #[arg(long, default_value_t = 0)]
    pub fail_every: u64,
    /// The injected status.
    #[arg(long, default_value_t = 500)]
    pub fail_status: u16,
}

/// Runs `ampsim amplitude-double` until Ctrl-C, then prints its counters.
///
/// # Errors
/// The address cannot be bound.
pub fn run_double(a: &DoubleArgs) -> anyhow::Result<()> {
    super::init_tracing();
    let cfg = double::DoubleConfig {
        api_key: a.api_key.clone(),
        min_id_length: a.min_id_length,
        eps_http: a.eps,
        eps_batch: a.batch_eps,
        eps_window: secs("--eps-window-secs", a.eps_window_secs)?,
        max_bytes_http: a.max_bytes,
        fail_every: a.fail_every,
        fail_status: a.fail_status,
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let d = double::AmplitudeDouble::start(a.listen, cfg)
            .await
            .map_err(|e| anyhow::anyhow!("--listen {}: {e}", a.listen))?;
        tracing::info!(url = %d.base_url(), "Amplitude ingestion double listening (POST /2/httpapi, /batch; GET /stats, /ingested); Ctrl-C stops");
        tokio::signal::ctrl_c().await?;
        println!("{}", serde_json::to_string_pretty(&d.stats())?);
        d.stop().await;
        Ok(())
    })
}
