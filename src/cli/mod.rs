//! The `ampsim` command line: argument parsing, `serve`, and the client verbs. `main.rs` only
//! calls [`run`].

// The command line's output is its interface; the server itself logs through `tracing` only.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod bench;
pub mod bench_engine;
pub mod client;
pub mod export;
pub mod loadtest;
pub mod offline;
pub mod upload;

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// ampsim: a deterministic generator of Amplitude-format product-analytics events for a B2B
/// SaaS funnel, served over gRPC with SQLite persistence.
///
/// Start a server with `ampsim serve`, then drive it with the client verbs (create, generate,
/// events, export, journey, report, list, delete) or any gRPC client (package ampsim.v1).
#[derive(Debug, Parser)]
#[command(name = "ampsim", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the client verbs find the server.
#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// The server's URL.
    #[arg(
        long,
        env = "AMPSIM_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub server: String,
    /// Bearer token, when the server requires one.
    #[arg(long, env = "AMPSIM_AUTH_TOKEN", hide_env_values = true, global = true)]
    pub auth_token: Option<String>,
    /// PEM file of the CA certificate(s) to trust for an `https://` server (e.g. the server's
    /// self-signed certificate). Without it, the public web PKI roots are trusted.
    #[arg(long, env = "AMPSIM_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
}

/// Options of `ampsim serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Loopback by default; other addresses should use --auth-token.
    #[arg(long, env = "AMPSIM_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// SQLite database file (created if missing).
    #[arg(long, env = "AMPSIM_DB", default_value = "./ampsim.db")]
    pub db: PathBuf,
    /// Require `authorization: Bearer <token>` on every RPC but health.
    #[arg(long, env = "AMPSIM_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Refuse to grow the database past this many MiB: generation then stops with
    /// RESOURCE_EXHAUSTED, as on a full disk, and resumes once the limit is raised.
    #[arg(long, env = "AMPSIM_MAX_DB_MIB")]
    pub max_db_mib: Option<u64>,
    /// Most memory one simulated day's generation may need, in MiB. A day estimated above it
    /// (about 520 bytes per user in the day, plus 96 MiB) is refused with RESOURCE_EXHAUSTED
    /// before anything is allocated, and CreateSimulation refuses a population_scale whose
    /// first day is over it. The default, 8192, fits about scale 200 in steady state (scale 360
    /// on day 0).
    #[arg(long, env = "AMPSIM_MEMORY_BUDGET_MIB", default_value_t = 8192,
          value_parser = clap::value_parser!(u64).range(128..=1 << 24))]
    pub memory_budget_mib: u64,
    /// Streaming RPCs (GenerateDays, StreamEvents, GetUserJourney, QueryCohort) running at
    /// once, over all connections; one more gets RESOURCE_EXHAUSTED, and health says
    /// NOT_SERVING while all are taken.
    #[arg(long, env = "AMPSIM_MAX_STREAMS", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_streams: u32,
    /// MiB of messages one stream may hold for a client that has not read them yet. The default
    /// holds one time slice of a day's stream (about 32K events), so the next slice renders
    /// while the client reads; less costs StreamEvents throughput (8 MiB: about 15%).
    #[arg(long, env = "AMPSIM_STREAM_BUFFER_MIB", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub stream_buffer_mib: u32,
    /// Seconds a stream waits for a client that reads nothing before it ends the stream with
    /// ABORTED and frees its slot.
    #[arg(long, env = "AMPSIM_STREAM_SEND_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub stream_send_timeout_secs: u32,
    /// Serve TLS (rustls) with this PEM certificate chain (leaf first); needs --tls-key.
    /// Clients then use an `https://` URL.
    #[arg(long, env = "AMPSIM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "AMPSIM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl ServeArgs {
    /// Reads the TLS files, naming the flag of the one that cannot be read.
    fn tls_identity(&self) -> anyhow::Result<Option<crate::server::TlsIdentity>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read = |flag: &str, p: &PathBuf| {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("{flag} {}: {e}", p.display()))
        };
        Ok(Some(crate::server::TlsIdentity {
            cert_pem: read("--tls-cert", cert)?,
            key_pem: read("--tls-key", key)?,
        }))
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server (log level through RUST_LOG, e.g. RUST_LOG=ampsim=debug).
    Serve(ServeArgs),
    /// Create a simulation and print it.
    Create(client::CreateArgs),
    /// Generate more days of a simulation on the server, with a progress bar; or, with --out,
    /// one shard of a simulation straight to date-partitioned Parquet, without a server.
    Generate(client::GenerateArgs),
    /// Write a day range's events to stdout as JSON lines (Amplitude HTTP V2 field names).
    Events(client::EventsArgs),
    /// Write a day range's events to files: the Amplitude Export API layout (hourly gzipped
    /// JSON lines), HTTP V2 JSON lines per day, or Parquet per day; or the ground-truth labels of
    /// every user (`--format labels`).
    Export(export::ExportArgs),
    /// Print one user's journey (events as JSON lines, then the summary as JSON).
    Journey(client::JourneyArgs),
    /// Query a cohort: members as JSON lines (up to --max-members), then the summary as JSON.
    Cohort(client::CohortArgs),
    /// Print one simulation as JSON.
    Get(client::SimArgs),
    /// List the simulations.
    List(ClientOpts),
    /// Delete a simulation and all its data.
    Delete(client::SimArgs),
    /// Print the acceptance report (DESIGN section 3) measured on a simulation.
    Report(client::ReportArgs),
    /// Benchmark: generate and store a simulation (default: the full year), then measure
    /// StreamEvents over gRPC. Prints figures.
    Bench(bench::BenchArgs),
    /// Benchmark the engine alone (no storage) and optionally print the acceptance report.
    BenchEngine(bench_engine::BenchEngineArgs),
    /// Load-test a running server: concurrent clients, bounded in time and requests; prints
    /// requests/s, p50/p99 latency and errors (fails if any request failed).
    Loadtest(loadtest::LoadTestArgs),
    /// Send a day range's events to Amplitude (HTTP V2 or Batch API) with batching, gzip,
    /// retries and a checkpoint to resume from.
    Upload(upload::UploadArgs),
    /// Run a local stand-in for Amplitude's ingestion API (limits, 400/413/429, insert_id
    /// dedupe, injected 5xx), to try `ampsim upload --endpoint` without a real project.
    AmplitudeDouble(upload::DoubleArgs),
    /// Print the embedded default scenario TOML.
    Scenario,
}

/// Runs the command line.
///
/// # Errors
/// Whatever the subcommand reports.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(a) => serve(a),
        Command::Bench(a) => bench::run(&a),
        Command::BenchEngine(a) => bench_engine::run(&a),
        Command::Loadtest(a) => loadtest::run(&a),
        Command::Export(a) => export::run(&a),
        Command::Generate(a) if a.offline.out.is_some() => {
            offline::run(&a.offline, a.days, a.quiet)
        }
        Command::Upload(a) => upload::run(&a),
        Command::AmplitudeDouble(a) => upload::run_double(&a),
        Command::Scenario => {
            print!("{}", ampsim_engine::scenario::DEFAULT_SCENARIO_TOML);
            Ok(())
        }
        other => client::run(other),
    }
}

/// Initialises logging to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(t) = &a.auth_token {
        if t.trim().is_empty() || t.trim() != t {
            anyhow::bail!(
                "--auth-token (or AMPSIM_AUTH_TOKEN) is {}: give a real token, or leave both unset to serve without auth",
                if t.trim().is_empty() { "empty" } else { "padded with whitespace, which HTTP headers drop" }
            );
        }
    }
    rt.block_on(async move {
        let tls = a.tls_identity()?;
        let store = crate::store::Store::open_with_limit(&a.db, a.max_db_mib.map(|m| m * 1024 * 1024))
            .map_err(|e| anyhow::anyhow!("--db: {e}"))?;
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .map_err(|e| anyhow::anyhow!("--listen {}: {e}", a.listen))?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            if a.auth_token.is_none() {
                tracing::warn!(%addr, "listening on a non-loopback address without --auth-token: anyone who can reach it can read and change simulations");
            } else if tls.is_none() {
                tracing::warn!(%addr, "listening on a non-loopback address without TLS: the bearer token and the events travel in clear (see --tls-cert)");
            }
        }
        tracing::info!(%addr, db = %a.db.display(), auth = a.auth_token.is_some(), tls = tls.is_some(), "ampsim listening");
        let shutdown = tokio_util::sync::CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signals.cancel();
        });
        crate::server::serve(
            store,
            listener,
            crate::server::ServeOptions {
                auth_token: a.auth_token,
                drain_timeout: None,
                tls,
                memory_budget: Some(a.memory_budget_mib << 20),
                stream_limits: crate::rpc::StreamLimits {
                    max_streams: a.max_streams as usize,
                    buffer_bytes: (a.stream_buffer_mib as usize) << 20,
                    send_timeout: std::time::Duration::from_secs(a.stream_send_timeout_secs.into()),
                },
            },
            shutdown,
        )
        .await?;
        tracing::info!("stopped");
        Ok(())
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
