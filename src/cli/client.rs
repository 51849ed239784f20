//! The client verbs: talk to a running server through the generated gRPC client.

use super::{ClientOpts, Command};
use crate::pb;
use anyhow::Context;
use clap::Args;
use std::io::Write;

/// `println!` that ends the program quietly when stdout is closed (e.g. piped into `head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

pub use crate::client::Client;

/// Connects to the server named by the flags; errors name the flag at fault.
///
/// # Errors
/// A bad URL, TLS setup or token, or an unreachable server.
pub async fn connect(opts: &ClientOpts) -> anyhow::Result<Client> {
    use crate::client::ConnectError as E;
    let c = crate::client::connect(&crate::client::ConnectOptions {
        server: opts.server.clone(),
        auth_token: opts.auth_token.clone(),
        tls_ca: opts.tls_ca.clone(),
    })
    .await;
    c.map_err(|e| match e {
        E::BadUrl { url } => anyhow::anyhow!("--server {url:?} is not a valid URL"),
        E::TlsCa { path, source } => anyhow::anyhow!("--tls-ca {}: {source}", path.display()),
        E::TlsCaWithoutHttps { url } => {
            anyhow::anyhow!("--tls-ca is set but --server {url:?} is not an https:// URL")
        }
        E::Tls(t) => anyhow::anyhow!("--server/--tls-ca: cannot set up TLS: {t}"),
        E::Unreachable { url, source } => anyhow::Error::new(source).context(format!(
            "cannot connect to the ampsim server at {url} (start one with `ampsim serve`)"
        )),
        E::BadToken => anyhow::anyhow!("--auth-token holds characters not allowed in a header"),
    })
}

/// Options of `ampsim create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Id of the new simulation (generated when omitted).
    #[arg(long = "id")]
    pub id: Option<String>,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Date of day 0, YYYY-MM-DD (default: today, UTC).
    #[arg(long)]
    pub start: Option<String>,
    /// Population scale (1.0 = the default year's ~16M visitors).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Scenario TOML file, merged onto the embedded default (`ampsim scenario` prints it).
    #[arg(long)]
    pub scenario: Option<std::path::PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientOpts,
}

/// Options of verbs that name one simulation.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// The simulation's id.
    #[arg(long)]
    pub simulation: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientOpts,
}

/// Options of `ampsim generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The simulation's id (on the server; without it, --out generates offline).
    #[arg(long, required_unless_present = "out")]
    pub simulation: Option<String>,
    /// How many more days to generate (on the server); with --out, the days from the start
    /// date that the output should have.
    #[arg(long)]
    pub days: u32,
    /// No progress bar; print one line per day instead (offline: no line per day).
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub offline: super::offline::OfflineArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientOpts,
}

/// Options of `ampsim events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The simulation's id.
    #[arg(long)]
    pub simulation: String,
    /// First day, YYYY-MM-DD (default: the start date).
    #[arg(long)]
    pub from: Option<String>,
    /// Last day, YYYY-MM-DD, inclusive (default: the last generated day).
    #[arg(long)]
    pub to: Option<String>,
    /// Only this event type (repeat for several).
    #[arg(long = "type")]
    pub event_types: Vec<String>,
    /// Only this user's identified events.
    #[arg(long)]
    pub user: Option<String>,
    /// Only this device's events.
    #[arg(long)]
    pub device: Option<String>,
    /// Generate missing days first instead of failing.
    #[arg(long)]
    pub generate_missing: bool,
    /// The user properties each event carries: sent (what the event sends, as an SDK sends it)
    /// or stored (what Amplitude holds for the user at the event: every property set so far,
    /// on earlier days too, as its Export shows it).
    #[arg(long, value_enum, default_value_t = UserProperties::Sent)]
    pub user_properties: UserProperties,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientOpts,
}

/// `--user-properties`: which user properties streamed events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UserProperties {
    /// What each event sends (HTTP V2, Batch).
    Sent,
    /// What Amplitude holds for the user at the event (its Export API).
    Stored,
}

impl UserProperties {
    /// The request's value.
    pub fn view(self) -> i32 {
        match self {
            UserProperties::Sent => pb::UserPropertiesView::Sent as i32,
            UserProperties::Stored => pb::UserPropertiesView::Stored as i32,
        }
    }
}

/// Options of `ampsim journey`.
#[derive(Debug, Args)]
pub struct JourneyArgs {
    /// The simulation's id.
    #[arg(long)]
    pub simulation: String,
    /// The user's user_id.
    #[arg(long, required_unless_present_any = ["device", "company"])]
    pub user: Option<String>,
    /// The user's device_id.
    #[arg(long)]
    pub device: Option<String>,
    /// Instead of one user, an account by its company domain: the events of all its
    /// identified users in time order, then a summary per user.
    #[arg(long, conflicts_with_all = ["user", "device"])]
    pub company: Option<String>,
    /// Only print the summary.
    #[arg(long)]
    pub summary_only: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientOpts,
}

/// Options of `ampsim cohort`.
#[derive(Debug, Args)]
pub struct CohortArgs {
    /// The simulation's id.
    #[arg(long)]
    pub simulation: String,
    /// First seen on or after, YYYY-MM-DD.
    #[arg(long)]
    pub first_seen_from: Option<String>,
    /// First seen on or before, YYYY-MM-DD.
    #[arg(long)]
    pub first_seen_to: Option<String>,
    /// Acquisition source.
    #[arg(long)]
    pub source: Option<String>,
    /// Acquisition medium.
    #[arg(long)]
    pub medium: Option<String>,
    /// Acquisition campaign.
    #[arg(long)]
    pub campaign: Option<String>,
    /// Only identified (true) or anonymous (false) users.
    #[arg(long)]
    pub identified: Option<bool>,
    /// Identifying form type.
    #[arg(long)]
    pub form_type: Option<String>,
    /// Trial path: self_service or sales_assisted.
    #[arg(long)]
    pub trial_path: Option<String>,
    /// Trial outcome: none, active, converted or expired.
    #[arg(long)]
    pub trial_outcome: Option<String>,
    /// Product SKU bought.
    #[arg(long)]
    pub product_sku: Option<String>,
    /// Users of the company with this domain (its true account: anonymous colleagues too).
    #[arg(long)]
    pub company: Option<String>,
    /// Users whose company is of this size band, e.g. 5000+.
    #[arg(long)]
    pub company_size_band: Option<String>,
    /// Users whose subscription is of this plan tier, e.g. growth (the last one once churned).
    #[arg(long)]
    pub plan: Option<String>,
    /// Users at this lifecycle stage: prospect, customer or churned.
    #[arg(long)]
    pub lifecycle_stage: Option<String>,
    /// At least this many sessions.
    #[arg(long)]
    pub min_sessions: Option<u32>,
    /// At most this many sessions.
    #[arg(long)]
    pub max_sessions: Option<u32>,
    /// Members to print (the summary covers the whole cohort).
    #[arg(long, default_value_t = 0)]
    pub max_members: u32,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientOpts,
}

/// Options of `ampsim report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The simulation's id.
    #[arg(long)]
    pub simulation: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as one self-contained HTML page with charts (daily sessions by
    /// channel, the funnel, weekly retention, trial conversion) to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientOpts,
}

/// Runs a client verb.
///
/// # Errors
/// Connection failures and error statuses from the server.
pub fn run(cmd: Command) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cmd {
            Command::Create(a) => create(a).await,
            Command::Generate(a) => generate(a).await,
            Command::Events(a) => events(a).await,
            Command::Get(a) => {
                let mut c = connect(&a.client).await?;
                let s = c
                    .get_simulation(pb::GetSimulationRequest {
                        simulation_id: a.simulation,
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                outln!("{}", serde_json::to_string_pretty(&sim_json(&s))?);
                Ok(())
            }
            Command::List(o) => {
                let mut c = connect(&o).await?;
                let list = c
                    .list_simulations(pb::ListSimulationsRequest {})
                    .await
                    .map_err(status)?
                    .into_inner();
                outln!(
                    "{:<24} {:>6} {:>11} {:>7} {:>6} {:>12} {:>14}  STATUS",
                    "ID",
                    "SEED",
                    "START",
                    "SCALE",
                    "DAYS",
                    "SESSIONS",
                    "EVENTS"
                );
                for s in list.simulations {
                    outln!(
                        "{:<24} {:>6} {:>11} {:>7} {:>6} {:>12} {:>14}  {}",
                        s.simulation_id,
                        s.seed,
                        s.start_date,
                        s.population_scale,
                        s.days_generated,
                        s.sessions,
                        s.events,
                        if s.generating { "generating" } else { "idle" }
                    );
                }
                Ok(())
            }
            Command::Delete(a) => {
                let mut c = connect(&a.client).await?;
                c.delete_simulation(pb::DeleteSimulationRequest {
                    simulation_id: a.simulation.clone(),
                })
                .await
                .map_err(status)?;
                eprintln!("deleted {}", a.simulation);
                Ok(())
            }
            Command::Report(a) => report(a).await,
            Command::Journey(a) => journey(a).await,
            Command::Cohort(a) => cohort(a).await,
            _ => unreachable!("not a client verb"),
        }
    })
}

/// Turns an error status into a readable message.
fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

fn sim_json(s: &pb::Simulation) -> serde_json::Value {
    serde_json::json!({
        "simulation_id": s.simulation_id,
        "seed": s.seed,
        "start_date": s.start_date,
        "population_scale": s.population_scale,
        "scenario_name": s.scenario_name,
        "engine_version": s.engine_version,
        "days_generated": s.days_generated,
        "last_generated_date": s.last_generated_date,
        "sessions": s.sessions,
        "events": s.events,
        "users": s.users,
        "generating": s.generating,
        "created_at": s.created_at,
    })
}

async fn create(a: CreateArgs) -> anyhow::Result<()> {
    let scenario_toml = match &a.scenario {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("--scenario {}", p.display()))?
        }
        None => String::new(),
    };
    let mut c = connect(&a.client).await?;
    let s = c
        .create_simulation(pb::CreateSimulationRequest {
            simulation_id: a.id.unwrap_or_default(),
            seed: a.seed,
            start_date: a.start.unwrap_or_default(),
            population_scale: a.scale,
            scenario_toml,
        })
        .await
        .map_err(status)?
        .into_inner();
    outln!("{}", serde_json::to_string_pretty(&sim_json(&s))?);
    Ok(())
}

async fn generate(a: GenerateArgs) -> anyhow::Result<()> {
    let simulation = a
        .simulation
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--simulation (or --out) is required"))?;
    let mut c = connect(&a.client).await?;
    let mut stream = c
        .generate_days(pb::GenerateDaysRequest {
            simulation_id: simulation,
            days: a.days,
        })
        .await
        .map_err(status)?
        .into_inner();
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(u64::from(a.days))
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} days  {msg}  [{elapsed_precise}, eta {eta}]",
        )
        .expect("valid template"),
    );
    let started = std::time::Instant::now();
    let (mut events, mut sessions) = (0u64, 0u64);
    while let Some(d) = stream.message().await.map_err(status)? {
        events += d.events;
        sessions += d.sessions;
        let rate = events as f64 / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("{} · {events} events · {rate:.0} events/s", d.date));
        bar.inc(1);
        if a.quiet {
            outln!(
                "{} day {} sessions {} events {} new_users {}",
                d.date,
                d.day_index,
                d.sessions,
                d.events,
                d.new_users
            );
        }
    }
    bar.finish();
    eprintln!(
        "generated {} days: {sessions} sessions, {events} events in {:.1}s",
        bar.position(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn events(a: EventsArgs) -> anyhow::Result<()> {
    let mut c = connect(&a.client).await?;
    let mut stream = c
        .stream_events(pb::StreamEventsRequest {
            simulation_id: a.simulation,
            from_date: a.from.unwrap_or_default(),
            to_date: a.to.unwrap_or_default(),
            event_types: a.event_types,
            user_id: a.user.unwrap_or_default(),
            device_id: a.device.unwrap_or_default(),
            generate_missing: a.generate_missing,
            batch_size: 0,
            user_properties: a.user_properties.view(),
        })
        .await
        .map_err(status)?
        .into_inner();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut line = Vec::with_capacity(1024);
    while let Some(batch) = stream.message().await.map_err(status)? {
        // Straight from the received bytes: the same lines as `event_json`, without building
        // messages or JSON values.
        for e in batch.iter() {
            line.clear();
            e?.write_json(&mut line);
            line.push(b'\n');
            if out.write_all(&line).is_err() {
                return Ok(()); // stdout closed (e.g. piped into `head`)
            }
        }
    }
    let _ = out.flush();
    Ok(())
}

async fn report(a: ReportArgs) -> anyhow::Result<()> {
    let mut c = connect(&a.client).await?;
    let r = c
        .get_report(pb::GetReportRequest {
            simulation_id: a.simulation.clone(),
        })
        .await
        .map_err(status)?
        .into_inner();
    let report = ampsim_engine::report::Report {
        days: r.days,
        population_scale: r.population_scale,
        rows: r
            .rows
            .into_iter()
            .map(|x| ampsim_engine::report::ReportRow {
                key: x.key,
                name: x.name,
                target: x.target,
                tolerance: x.tolerance,
                measured: x.measured,
                unit: x.unit,
                pass: x.pass,
                status: ampsim_engine::report::RowStatus::from_label(&x.status).unwrap_or(
                    if x.pass {
                        ampsim_engine::report::RowStatus::Pass
                    } else {
                        ampsim_engine::report::RowStatus::Fail
                    },
                ),
                sample: x.sample,
            })
            .collect(),
        series: r.series.map(series).unwrap_or_default(),
    };
    if let Some(path) = &a.html {
        let page = crate::report_html::render(&report, &a.simulation)?;
        std::fs::write(path, page)
            .with_context(|| format!("--html: cannot write {}", path.display()))?;
        eprintln!("wrote the HTML report to {}", path.display());
    }
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_table());
        outln!("{}", report.verdict());
    }
    Ok(())
}

/// The report's series from their message.
fn series(s: pb::ReportSeries) -> ampsim_engine::report::Series {
    use ampsim_engine::report as r;
    r::Series {
        first_date: s.first_date,
        daily_sessions: s
            .daily_sessions
            .into_iter()
            .map(|x| r::NamedSeries {
                name: x.name,
                values: x.values,
            })
            .collect(),
        funnel: s
            .funnel
            .into_iter()
            .map(|x| r::Stage {
                name: x.step,
                users: x.users,
            })
            .collect(),
        retention: s
            .retention
            .into_iter()
            .map(|x| r::Cohort {
                week_start: x.week_start,
                users: x.users,
                active: x.active,
            })
            .collect(),
        conversion: s
            .conversion
            .into_iter()
            .map(|x| r::Conversion {
                name: x.name,
                trials: x.trials,
                converted: x.converted,
            })
            .collect(),
        mrr: s
            .mrr
            .into_iter()
            .map(|x| r::MonthRevenue {
                month: x.month,
                mrr: x.mrr,
                paying: x.paying,
                new: x.new,
                churned: x.churned,
            })
            .collect(),
    }
}

async fn journey(a: JourneyArgs) -> anyhow::Result<()> {
    let mut c = connect(&a.client).await?;
    let mut s = c
        .get_user_journey(pb::GetUserJourneyRequest {
            simulation_id: a.simulation,
            user_id: a.user.unwrap_or_default(),
            device_id: a.device.unwrap_or_default(),
            company: a.company.unwrap_or_default(),
        })
        .await
        .map_err(status)?
        .into_inner();
    while let Some(item) = s.message().await.map_err(status)? {
        match item.item {
            Some(pb::journey_item::Item::Events(b)) if !a.summary_only => {
                // The same lines as `ampsim events`, written straight from the bytes.
                let mut line = Vec::new();
                for e in b.iter() {
                    line.clear();
                    e?.write_json(&mut line);
                    outln!("{}", String::from_utf8_lossy(&line));
                }
            }
            Some(pb::journey_item::Item::Summary(j)) => {
                let v = serde_json::json!({
                    "device_id": j.device_id, "user_id": j.user_id,
                    "first_seen_date": j.first_seen_date,
                    "first_touch": {"source": j.first_touch_source, "medium": j.first_touch_medium, "campaign": j.first_touch_campaign},
                    "session_count": j.session_count, "total_engagement_score": j.total_engagement_score,
                    "is_identified": j.is_identified, "form_type": j.form_type,
                    "trial_path": j.trial_path, "trial_outcome": j.trial_outcome,
                    "product_sku": j.product_sku, "revenue": j.revenue,
                    "event_count": j.event_count, "stages": j.stages,
                    "company": j.company,
                    "ground_truth": j.ground_truth.as_ref().map(|g| {
                        let mut v = serde_json::json!({
                            "intent": g.intent, "intent_mean": g.intent_mean,
                            "company": {"domain": g.company, "name": g.company_name, "size_band": g.company_size_band},
                        });
                        if !g.second_device_id.is_empty() {
                            v["second_device"] = serde_json::json!({
                                "device_id": g.second_device_id,
                                "first_seen_date": g.second_device_first_seen_date,
                                "login_date": g.second_device_login_date,
                            });
                        }
                        if g.trial_decided {
                            v["trial_decision"] = serde_json::json!({
                                "date": g.trial_decision_date,
                                "milestones": g.milestones_at_decision,
                                "usage": g.usage_at_decision,
                                "p_convert": g.p_convert,
                                "converts": g.trial_converts,
                            });
                        }
                        v
                    }),
                });
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "summary": v }))?
                );
            }
            _ => {}
        }
    }
    Ok(())
}

async fn cohort(a: CohortArgs) -> anyhow::Result<()> {
    let mut c = connect(&a.client).await?;
    let mut s = c
        .query_cohort(pb::QueryCohortRequest {
            simulation_id: a.simulation,
            first_seen_from: a.first_seen_from.unwrap_or_default(),
            first_seen_to: a.first_seen_to.unwrap_or_default(),
            source: a.source.unwrap_or_default(),
            medium: a.medium.unwrap_or_default(),
            campaign: a.campaign.unwrap_or_default(),
            identified: a.identified,
            form_type: a.form_type.unwrap_or_default(),
            trial_path: a.trial_path.unwrap_or_default(),
            trial_outcome: a.trial_outcome.unwrap_or_default(),
            product_sku: a.product_sku.unwrap_or_default(),
            company: a.company.unwrap_or_default(),
            company_size_band: a.company_size_band.unwrap_or_default(),
            plan: a.plan.unwrap_or_default(),
            lifecycle_stage: a.lifecycle_stage.unwrap_or_default(),
            min_sessions: a.min_sessions,
            max_sessions: a.max_sessions,
            max_members: a.max_members,
        })
        .await
        .map_err(status)?
        .into_inner();
    while let Some(item) = s.message().await.map_err(status)? {
        match item.item {
            Some(pb::cohort_item::Item::Members(m)) => {
                for m in m.members {
                    outln!(
                        "{}",
                        serde_json::json!({
                            "device_id": m.device_id, "user_id": m.user_id,
                            "first_seen_date": m.first_seen_date, "session_count": m.session_count,
                            "form_type": m.form_type, "trial_path": m.trial_path,
                            "trial_outcome": m.trial_outcome, "product_sku": m.product_sku,
                        })
                    );
                }
            }
            Some(pb::cohort_item::Item::Summary(x)) => {
                let v = serde_json::json!({
                    "users": x.users, "identified": x.identified, "trials": x.trials, "paid": x.paid,
                    "sessions": x.sessions, "identification_rate": x.identification_rate,
                    "trial_rate": x.trial_rate, "trial_conversion_rate": x.trial_conversion_rate,
                    "paid_rate": x.paid_rate,
                    "funnel": x.funnel.iter().map(|f| serde_json::json!({"step": f.step, "users": f.users, "conversion_from_previous": f.conversion_from_previous})).collect::<Vec<_>>(),
                    "retention": x.retention.iter().map(|r| serde_json::json!({"week_start": r.week_start, "users": r.users, "active_share": r.active_share})).collect::<Vec<_>>(),
                });
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "summary": v }))?
                );
            }
            None => {}
        }
    }
    Ok(())
}
