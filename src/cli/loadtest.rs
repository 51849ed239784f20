//! `ampsim loadtest`: many concurrent clients against a running server, bounded in time and in
//! requests, reporting requests/s, latency percentiles and errors. Meant for loopback.

use super::client::{connect, Client};
use super::ClientOpts;
use crate::pb;
use std::time::{Duration, Instant};

/// Options of `ampsim loadtest`.
#[derive(Debug, clap::Args)]
pub struct LoadTestArgs {
    /// A simulation with generated days to query.
    #[arg(long)]
    pub simulation: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 50)]
    pub clients: u32,
    /// How long to run.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Most requests per client.
    #[arg(long, default_value_t = 100_000)]
    pub max_requests: u64,
    /// Also hold this many StreamEvents streams (batches of 10,000 events, each on its own
    /// connection with HTTP/2's default 64 KiB window) that never read, for the whole run: the
    /// hostile clients the server's stream limits are for. Watch the server's memory meanwhile.
    #[arg(long, default_value_t = 0)]
    pub stalled: u32,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientOpts,
}

/// What a load test measured.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// Requests completed (successful or not).
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Wall seconds.
    pub seconds: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

/// One request of the mix; returns whether it succeeded.
async fn one(c: &mut Client, sim: &str, date: &str, users: &[String], i: u64) -> bool {
    let user = users
        .get(i as usize % users.len().max(1))
        .cloned()
        .unwrap_or_default();
    let res: Result<(), tonic::Status> = async {
        match i % 4 {
            0 => {
                c.get_simulation(pb::GetSimulationRequest {
                    simulation_id: sim.into(),
                })
                .await?;
            }
            1 => {
                let mut s = c
                    .get_user_journey(pb::GetUserJourneyRequest {
                        simulation_id: sim.into(),
                        user_id: user,
                        device_id: String::new(),
                        company: String::new(),
                    })
                    .await?
                    .into_inner();
                while s.message().await?.is_some() {}
            }
            2 => {
                let mut s = c
                    .stream_events(pb::StreamEventsRequest {
                        simulation_id: sim.into(),
                        from_date: date.into(),
                        to_date: date.into(),
                        user_id: user,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                while s.message().await?.is_some() {}
            }
            _ => {
                let mut s = c
                    .query_cohort(pb::QueryCohortRequest {
                        simulation_id: sim.into(),
                        trial_outcome: "converted".into(),
                        max_members: 10,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                while s.message().await?.is_some() {}
            }
        }
        Ok(())
    }
    .await;
    res.is_ok()
}

/// Runs the load test.
///
/// # Errors
/// The server is unreachable or the simulation has no data.
pub async fn load(a: &LoadTestArgs) -> anyhow::Result<LoadReport> {
    let mut c = connect(&a.client).await?;
    let sim = c
        .get_simulation(pb::GetSimulationRequest {
            simulation_id: a.simulation.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if sim.days_generated == 0 {
        anyhow::bail!("--simulation {} has no generated days", a.simulation);
    }
    let mut s = c
        .query_cohort(pb::QueryCohortRequest {
            simulation_id: a.simulation.clone(),
            identified: Some(true),
            max_members: 100,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut users = Vec::new();
    while let Some(item) = s.message().await? {
        if let Some(pb::cohort_item::Item::Members(m)) = item.item {
            users.extend(m.members.into_iter().map(|m| m.user_id));
        }
    }
    // Plain connections (HTTP/2's default windows): once a few batches are in flight the
    // server can send nothing more.
    let mut stalled = Vec::new();
    for _ in 0..a.stalled {
        let mut c = pb::simulation_service_client::SimulationServiceClient::connect(
            a.client.server.clone(),
        )
        .await?
        .max_decoding_message_size(64 << 20);
        match c
            .stream_events(pb::StreamEventsRequest {
                simulation_id: a.simulation.clone(),
                batch_size: 10_000,
                ..Default::default()
            })
            .await
        {
            Ok(s) => stalled.push((c, s.into_inner())),
            Err(s) => anyhow::bail!(
                "--stalled: stream {} refused: {}",
                stalled.len() + 1,
                s.message()
            ),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..a.clients {
        let mut c = connect(&a.client).await?;
        let (sim_id, date, users, max) = (
            a.simulation.clone(),
            sim.last_generated_date.clone(),
            users.clone(),
            a.max_requests,
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = u64::from(k);
            while Instant::now() < deadline && (lat.len() as u64) < max {
                let t = Instant::now();
                if !one(&mut c, &sim_id, &date, &users, i).await {
                    errors += 1;
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                i += 1;
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct = |p: usize| {
        lat.get((lat.len() * p / 100).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Ok(LoadReport {
        requests: lat.len() as u64,
        errors,
        seconds,
        p50_ms: pct(50),
        p99_ms: pct(99),
    })
}

/// Runs `ampsim loadtest` and prints its figures.
///
/// # Errors
/// As [`load`].
pub fn run(a: &LoadTestArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let r = rt.block_on(load(a))?;
    println!(
        "clients      {} (and {} stalled streams)",
        a.clients, a.stalled
    );
    println!(
        "requests     {} in {:.1} s: {:.0} requests/s",
        r.requests,
        r.seconds,
        r.requests as f64 / r.seconds
    );
    println!(
        "latency      p50 {:.2} ms, p99 {:.2} ms",
        r.p50_ms, r.p99_ms
    );
    println!("errors       {}", r.errors);
    if r.errors > 0 {
        anyhow::bail!("{} requests failed", r.errors);
    }
    Ok(())
}
