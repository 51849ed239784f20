//! `ampsim bench`: generate and persist a simulation, then measure the read side over gRPC.
//! Prints figures; asserts nothing.

use crate::app::{App, CreateParams};
use crate::pb;
use crate::store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Options of `ampsim bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Population scale (1.0 = the default year: ~27M sessions, ~140M events).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Days to generate.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Database file (default: a new file in the temp directory, removed afterwards).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Keep the database file afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Events per StreamEvents batch.
    #[arg(long, default_value_t = 1000)]
    pub batch: u32,
    /// Days to stream for the StreamEvents figure.
    #[arg(long, default_value_t = 30)]
    pub stream_days: u32,
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU seconds (user + system) used by this process so far, from /proc (Linux clock ticks of
/// 1/100 s).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// "N.N cores busy" over `secs` since `cpu0` CPU seconds, when /proc tells.
fn cores_busy(cpu0: Option<f64>, secs: f64) -> String {
    match (cpu0, cpu_seconds()) {
        (Some(a), Some(b)) => format!(", {:.1} cores busy", (b - a) / secs),
        _ => String::new(),
    }
}

fn file_bytes(p: &std::path::Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", p.display())).ok())
        .map(|m| m.len())
        .sum()
}

/// Runs the benchmark.
///
/// # Errors
/// Bad arguments, storage errors.
pub fn run(a: &BenchArgs) -> anyhow::Result<()> {
    let db = a.db.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("ampsim-bench-{}.db", std::process::id()))
    });
    if db.exists() {
        anyhow::bail!(
            "--db {} exists already; the benchmark needs a new file",
            db.display()
        );
    }
    let result = bench(a, &db);
    if !a.keep {
        for s in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{s}", db.display()));
        }
    }
    result
}

fn bench(a: &BenchArgs, db: &std::path::Path) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("machine        {cores} cores, {}", std::env::consts::ARCH);
    println!("database       {}", db.display());
    let store = Store::open(db)?;
    let shutdown = CancellationToken::new();
    let app = Arc::new(App::new(store.clone(), shutdown.clone()));
    app.create(&CreateParams {
        simulation_id: "bench".into(),
        seed: a.seed,
        start_date: "2025-01-01".into(),
        population_scale: a.scale,
        scenario_toml: String::new(),
    })?;

    let bar = indicatif::ProgressBar::new(u64::from(a.days));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} days {msg} [{elapsed_precise}]",
        )
        .expect("valid template"),
    );
    let started = Instant::now();
    let (mut events, mut sessions) = (0u64, 0u64);
    let (row, stats) = app.prepare_generate("bench", a.days)?.run_with_stats(|d| {
        events += d.events;
        sessions += d.sessions;
        bar.set_message(format!("{events} events"));
        bar.inc(1);
        true
    })?;
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    // Fold the WAL into the main file so the size is the steady-state size.
    store.checkpoint()?;
    let bytes = file_bytes(db);
    println!("scale          {}", a.scale);
    println!("days           {}", row.emitted_days());
    println!("users          {}", row.users);
    println!("sessions       {sessions}");
    println!("events         {events}");
    println!("generate+store {wall:.1} s wall");
    println!(
        "throughput     {:.0} events/s, {:.0} sessions/s",
        events as f64 / wall,
        sessions as f64 / wall
    );
    println!(
        "time split     load users {:.1} s, generate {:.1} s, encode+compress {:.1} s, sqlite commit {:.1} s",
        stats.load, stats.generate, stats.encode, stats.commit
    );
    if let Some(rss) = peak_rss_bytes() {
        println!("peak RSS       {:.0} MiB", rss as f64 / 1048576.0);
    }
    println!(
        "database       {:.1} MiB, {:.1} bytes/event (blobs {:.1} bytes/event)",
        bytes as f64 / 1048576.0,
        bytes as f64 / events.max(1) as f64,
        stats.bytes as f64 / events.max(1) as f64
    );

    // Resume cost: what a restarted server does before the next day starts.
    {
        let t = Instant::now();
        let store = Store::open(db)?;
        let app = Arc::new(App::new(store.clone(), CancellationToken::new()));
        let job = app.prepare_generate("bench", 1)?;
        let conn = store.connect()?;
        let due = crate::store::days::load_due(&conn, &row.handle(), row.days_generated)?;
        println!(
            "resume         {:.0} ms to reopen, claim the simulation and load the {} users due next",
            t.elapsed().as_secs_f64() * 1000.0,
            due.len()
        );
        drop(job);
    }

    // The days every StreamEvents figure reads: the first `--stream-days`.
    let stream_days = a.stream_days.min(row.emitted_days()).max(1);
    let to = (row.start_date + chrono::Days::new(u64::from(stream_days - 1)))
        .format("%Y-%m-%d")
        .to_string();

    // The read side's two halves, without the network: the server's work (read, decompress,
    // render, encode on all cores) and a client's (read every event through a view, one core).
    {
        let q = crate::app::EventQuery {
            to_date: to.clone(),
            batch_size: a.batch,
            ..Default::default()
        };
        let t = Instant::now();
        let mut kept = Vec::new();
        let mut n = 0u64;
        app.prepare_stream("bench", &q)?.run(|b| {
            n += b.len() as u64;
            if kept.len() < 200 {
                kept.push(b);
            }
            true
        })?;
        let server = n as f64 / t.elapsed().as_secs_f64();
        // Several passes over the kept batches, for a steadier figure.
        let t = Instant::now();
        let mut m = 0u64;
        while m == 0 || t.elapsed().as_secs_f64() < 0.5 {
            for b in &kept {
                for v in b.iter() {
                    let v = v?;
                    m += u64::from(!v.insert_id().is_empty());
                }
            }
        }
        let client = m as f64 / t.elapsed().as_secs_f64();
        println!(
            "stream halves  server {server:.0} events/s (read, render, encode; all cores), client {client:.0} events/s (views; one core)"
        );
    }

    // Read side, over real gRPC on loopback.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let server = tokio::spawn(crate::server::serve(
            store.clone(),
            listener,
            crate::server::ServeOptions::default(),
            stop.clone(),
        ));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .initial_stream_window_size(Some(crate::wire::WINDOW_BYTES))
            .initial_connection_window_size(Some(2 * crate::wire::WINDOW_BYTES))
            .max_frame_size(Some(crate::wire::MAX_FRAME_BYTES))
            .connect()
            .await?;
        let mut client = pb::simulation_service_client::SimulationServiceClient::new(channel)
            .max_decoding_message_size(64 * 1024 * 1024);
        let request = pb::StreamEventsRequest {
            simulation_id: "bench".into(),
            to_date: to,
            batch_size: a.batch,
            ..Default::default()
        };
        // The client reads every event through a borrowed view: each field is parsed and each
        // string (property maps included) checked for UTF-8, without allocating per event.
        let (t, cpu) = (Instant::now(), cpu_seconds());
        let mut s = client.stream_events(request.clone()).await?.into_inner();
        let (mut n, mut props, mut bytes) = (0u64, 0u64, 0u64);
        while let Some(b) = s.message().await? {
            bytes += b.as_bytes().len() as u64;
            for v in b.iter() {
                let v = v?;
                props += (v.event_properties().len() + v.user_properties().len()) as u64;
                n += 1;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "StreamEvents   {n} events ({stream_days} days, {:.0} MB, {props} properties) in {secs:.1} s: {:.0} events/s to a Rust client (borrowed views{})",
            bytes as f64 / 1e6,
            n as f64 / secs,
            cores_busy(cpu, secs)
        );
        // The same stream decoded into owned `pb::Event`s (a String per field, a BTreeMap per
        // property map), as a client that keeps the messages would.
        let (t, cpu) = (Instant::now(), cpu_seconds());
        let mut s = client.stream_events(request).await?.into_inner();
        let mut owned = 0u64;
        while let Some(b) = s.message().await? {
            owned += b.to_events()?.len() as u64;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "StreamEvents   {owned} events in {secs:.1} s: {:.0} events/s decoded into owned pb::Event{}",
            owned as f64 / secs,
            cores_busy(cpu, secs)
        );

        // A cohort over every user (summary only), then journeys of some of its members.
        let t = Instant::now();
        let mut s = client
            .query_cohort(pb::QueryCohortRequest {
                simulation_id: "bench".into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let mut users = 0;
        while let Some(item) = s.message().await? {
            if let Some(pb::cohort_item::Item::Summary(x)) = item.item {
                users = x.users;
            }
        }
        println!("QueryCohort    all {users} users in {:.0} ms", t.elapsed().as_secs_f64() * 1000.0);
        let mut s = client
            .query_cohort(pb::QueryCohortRequest {
                simulation_id: "bench".into(),
                identified: Some(true),
                max_members: 200,
                ..Default::default()
            })
            .await?
            .into_inner();
        let mut ids = Vec::new();
        while let Some(item) = s.message().await? {
            if let Some(pb::cohort_item::Item::Members(m)) = item.item {
                ids.extend(m.members.into_iter().map(|m| m.user_id));
            }
        }
        let t = Instant::now();
        for id in &ids {
            app.journey("bench", id, "")?;
        }
        println!(
            "journey lookup {:.2} ms per user in-process ({} users)",
            t.elapsed().as_secs_f64() * 1000.0 / ids.len().max(1) as f64,
            ids.len()
        );
        let t = Instant::now();
        for _ in 0..20 {
            client
                .get_simulation(pb::GetSimulationRequest { simulation_id: "bench".into() })
                .await?;
        }
        println!("GetSimulation  {:.2} ms per call", t.elapsed().as_secs_f64() * 1000.0 / 20.0);
        let mut lat = Vec::new();
        for id in &ids {
            let t = Instant::now();
            let mut s = client
                .get_user_journey(pb::GetUserJourneyRequest {
                    simulation_id: "bench".into(),
                    user_id: id.clone(),
                    device_id: String::new(),
                    company: String::new(),
                })
                .await?
                .into_inner();
            while s.message().await?.is_some() {}
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        lat.sort_by(f64::total_cmp);
        if !lat.is_empty() {
            println!(
                "GetUserJourney {} identified users: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                lat.len(),
                lat[lat.len() / 2],
                lat[lat.len() * 99 / 100],
                lat[lat.len() - 1]
            );
        }
        let t = Instant::now();
        let r = client
            .get_report(pb::GetReportRequest { simulation_id: "bench".into() })
            .await?
            .into_inner();
        println!(
            "GetReport      {:.1} s, {} of {} rows pass",
            t.elapsed().as_secs_f64(),
            r.rows.iter().filter(|x| x.pass).count(),
            r.rows.len()
        );
        stop.cancel();
        let _ = server.await;
        anyhow::Ok(())
    })?;
    shutdown.cancel();
    if let Some(rss) = peak_rss_bytes() {
        println!(
            "peak RSS       {:.0} MiB over the whole run (reads included)",
            rss as f64 / 1048576.0
        );
    }
    Ok(())
}
