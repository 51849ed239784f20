//! `ampsim export`: a day range's events from StreamEvents into files (Amplitude Export API
//! layout, HTTP V2 JSON lines or Parquet), with a progress bar and a summary. The writing is
//! [`crate::export`]'s.

use super::client::connect;
use super::ClientOpts;
use crate::export::{ExportOptions, ExportSummary, Format};
use crate::pb;
use anyhow::{bail, Context};
use chrono::NaiveDate;
use std::path::PathBuf;

/// Options of `ampsim export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// The simulation's id.
    #[arg(long)]
    pub simulation: String,
    /// First day, YYYY-MM-DD (default: the simulation's start date).
    #[arg(long, value_parser = crate::validate::parse_ymd)]
    pub from: Option<NaiveDate>,
    /// Last day, YYYY-MM-DD, inclusive (default: the last generated day).
    #[arg(long, value_parser = crate::validate::parse_ymd)]
    pub to: Option<NaiveDate>,
    /// File format: amplitude-export (hourly gzipped JSON lines, Export API fields), jsonl (HTTP
    /// V2 events per day), parquet (typed columns per day) or labels (the ground truth of every
    /// user as of the last generated day, one Parquet file `<simulation>_labels.parquet`: latent
    /// intent, first touch, trial decisions and the probability each was drawn with).
    #[arg(long, value_parser = format_parser())]
    pub format: Format,
    /// Output directory (created if missing). Other files in it are left alone.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace the files of this format and range that an earlier export left in --out (they are
    /// deleted first); without it, such files stop the export before anything is written.
    #[arg(long)]
    pub overwrite: bool,
    /// Amplitude project id: `app` in each event and the file name prefix (amplitude-export).
    #[arg(long, default_value_t = 100_000)]
    pub project_id: u64,
    /// Most events per amplitude-export file, a busier hour gets parts #1, #2, ... [default:
    /// 100000]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub part_size: Option<u64>,
    /// Gzip level of amplitude-export files, 0 (none) to 9 (smallest) [default: 1]
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub gzip_level: Option<u32>,
    /// The user properties of jsonl events: sent (what each event sends, as an SDK sends it)
    /// or stored (what Amplitude holds for the user at the event). amplitude-export always
    /// has the stored ones, as Amplitude's Export does. [default: sent]
    #[arg(long, value_enum)]
    pub user_properties: Option<crate::cli::client::UserProperties>,
    /// Generate missing days up to --to first instead of failing.
    #[arg(long)]
    pub generate_missing: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientOpts,
}

/// Events per amplitude-export file unless --part-size says otherwise.
pub const DEFAULT_PART_SIZE: u64 = 100_000;

/// Gzip level of amplitude-export files unless --gzip-level says otherwise.
pub const DEFAULT_GZIP_LEVEL: u32 = 1;

/// `--from`/`--to` values.
/// The export formats by their names, listed in `--help` and in the error for another name.
fn format_parser() -> impl clap::builder::TypedValueParser<Value = Format> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Format::ALL.map(Format::name))
        .map(|s| s.parse::<Format>().expect("a listed name parses"))
}

/// Runs `ampsim export` and prints the summary to stderr.
///
/// # Errors
/// Bad options, connection failures, error statuses from the server, file errors.
pub fn run(a: &ExportArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    let s = rt.block_on(export(a))?;
    let what = if a.format == Format::Labels {
        "users' labels"
    } else {
        "events"
    };
    eprintln!(
        "exported {} {what} to {} files ({}) in {} in {:.1}s",
        s.events,
        s.files.len(),
        human_bytes(s.bytes),
        a.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Exports: resolves the range against the simulation, streams its events and writes the
/// files. Returns what was written.
///
/// # Errors
/// Bad options, connection failures, error statuses from the server, file errors.
pub async fn export(a: &ExportArgs) -> anyhow::Result<ExportSummary> {
    if a.format != Format::AmplitudeExport {
        if a.part_size.is_some() {
            bail!("--part-size applies to --format amplitude-export only");
        }
        if a.gzip_level.is_some() {
            bail!("--gzip-level applies to --format amplitude-export only");
        }
    }
    if a.user_properties.is_some() && a.format != Format::Jsonl {
        bail!(
            "--user-properties applies to --format jsonl only (amplitude-export has the stored user properties, as Amplitude's Export does)"
        );
    }
    if a.format == Format::Labels {
        if a.from.is_some() || a.to.is_some() {
            bail!("--from/--to do not apply to --format labels (labels are as of the last generated day)");
        }
        if a.generate_missing {
            bail!("--generate-missing does not apply to --format labels");
        }
    }
    let mut c = connect(&a.client).await?;
    let sim = c
        .get_simulation(pb::GetSimulationRequest {
            simulation_id: a.simulation.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("--simulation {}: {}", a.simulation, s.message()))?
        .into_inner();
    let start = crate::validate::parse_ymd(&sim.start_date)
        .map_err(|e| anyhow::anyhow!("the server sent start date {:?}: {e}", sim.start_date))?;
    let last = crate::validate::parse_ymd(&sim.last_generated_date).ok(); // empty before the first day
    let from = a.from.unwrap_or(start);
    if from < start {
        bail!("--from {from} is before the simulation's start date {start}");
    }
    let to = match (a.to, last) {
        (Some(t), _) => t,
        (None, Some(l)) => l,
        (None, None) => bail!(
            "simulation {} has no generated days yet; run `ampsim generate` or give --to with --generate-missing",
            a.simulation
        ),
    };
    if to < from {
        bail!("--to {to} is before --from {from}");
    }
    if !a.generate_missing && last.is_none_or(|l| to > l) {
        bail!(
            "--to {to} is not generated yet (simulation {} is generated through {}); generate more days or pass --generate-missing",
            a.simulation,
            last.map_or("no day".to_string(), |l| l.to_string())
        );
    }
    let opts = ExportOptions {
        format: a.format,
        out_dir: a.out.clone(),
        simulation_id: a.simulation.clone(),
        from,
        to,
        project_id: a.project_id,
        part_size: a.part_size.unwrap_or(DEFAULT_PART_SIZE),
        gzip_level: a.gzip_level.unwrap_or(DEFAULT_GZIP_LEVEL),
        overwrite: a.overwrite,
        device_names: {
            let scenario = if sim.scenario_toml.is_empty() {
                ampsim_engine::Scenario::from_toml(ampsim_engine::scenario::DEFAULT_SCENARIO_TOML)
            } else {
                ampsim_engine::Scenario::from_toml(&sim.scenario_toml)
            }
            .map_err(|e| anyhow::anyhow!("the server sent a scenario that does not load: {e}"))?;
            ampsim_engine::clients::ExportDeviceNames::new(&scenario)
        },
    };
    // Fail on the directory before asking the server for anything heavy.
    crate::export::prepare_out_dir(&opts).map_err(|e| anyhow::anyhow!("--out: {e}"))?;
    let status = |s: tonic::Status| anyhow::anyhow!("{:?}: {}", s.code(), s.message());
    let days = (to - from).num_days() as u64 + 1;
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(days)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} days  {msg}  [{elapsed_precise}, eta {eta}]",
        )
        .expect("valid template"),
    );
    let started = std::time::Instant::now();
    let rate = |events: u64| events as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let summary = if a.format == Format::Labels {
        let stream = c
            .export_labels(pb::ExportLabelsRequest {
                simulation_id: a.simulation.clone(),
            })
            .await
            .map_err(status)?
            .into_inner();
        bar.set_length(1);
        crate::export::labels::save_labels(stream, &opts, |bytes| {
            bar.set_message(format!("labels: {}", human_bytes(bytes)));
        })
        .await
    } else if a.format == Format::Parquet {
        // The server writes the Parquet files from its records; this side saves them.
        let stream = c
            .export_parquet(pb::ExportParquetRequest {
                simulation_id: a.simulation.clone(),
                from_date: from.to_string(),
                to_date: to.to_string(),
                generate_missing: a.generate_missing,
            })
            .await
            .map_err(status)?
            .into_inner();
        let mut events = 0;
        crate::export::parquet::save_server_files(stream, &opts, |file, day| {
            events += file.events;
            bar.set_position((day - from).num_days() as u64 + 1);
            bar.set_message(format!("{events} events · {:.0} events/s", rate(events)));
        })
        .await
    } else {
        let stream = c
            .stream_events(pb::StreamEventsRequest {
                simulation_id: a.simulation.clone(),
                from_date: from.to_string(),
                to_date: to.to_string(),
                generate_missing: a.generate_missing,
                batch_size: 5000,
                user_properties: if a.format == Format::AmplitudeExport {
                    crate::cli::client::UserProperties::Stored
                } else {
                    a.user_properties
                        .unwrap_or(crate::cli::client::UserProperties::Sent)
                }
                .view(),
                ..Default::default()
            })
            .await
            .map_err(status)?
            .into_inner();
        let from_ms = from
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis();
        crate::export::export_stream(stream, &opts, |p| {
            let day = (p.last_time_ms - from_ms).max(0) as u64 / 86_400_000;
            bar.set_position(day);
            bar.set_message(format!(
                "{} events · {:.0} events/s",
                p.events,
                rate(p.events)
            ));
        })
        .await
    };
    bar.finish_and_clear();
    summary.with_context(|| format!("export to {}", a.out.display()))
}

/// `12.3 MiB`.
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
