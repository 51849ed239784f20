//! `ampsim bench-engine`: the engine alone, without storage: events generated per second per
//! core, and optionally the acceptance report of the generated data.

use ampsim_engine::memory::MemorySim;
use ampsim_engine::report::ReportBuilder;
use ampsim_engine::{Engine, Scenario, SimConfig};
use std::time::Instant;

/// Options of `ampsim bench-engine`.
#[derive(Debug, clap::Args)]
pub struct BenchEngineArgs {
    /// Days to generate.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Population scale (1.0 = the default year's volumes).
    #[arg(long, default_value_t = 0.1)]
    pub scale: f64,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Scenario TOML file merged onto the default.
    #[arg(long)]
    pub scenario: Option<std::path::PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also render every event into Amplitude JSON (measures the full event path).
    #[arg(long)]
    pub render: bool,
    /// Print the acceptance report of the generated data.
    #[arg(long)]
    pub report: bool,
}

/// Runs the engine benchmark and prints its figures.
///
/// # Errors
/// Bad arguments or an invalid scenario.
pub fn run(args: &BenchEngineArgs) -> anyhow::Result<()> {
    let toml = match &args.scenario {
        Some(p) => std::fs::read_to_string(p)?,
        None => String::new(),
    };
    let scenario = Scenario::from_toml(&toml).map_err(|e| anyhow::anyhow!("--scenario: {e}"))?;
    if !(args.scale > 0.0 && args.scale.is_finite()) {
        anyhow::bail!("--scale must be a positive number");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let engine = Engine::new(SimConfig {
        scenario,
        seed: args.seed,
        start_date: chrono::NaiveDate::from_ymd_opt(2025, 1, 1).expect("valid date"),
        population_scale: args.scale,
    });
    let mut sim = MemorySim::new(engine);
    let (mut sessions, mut events, mut rendered_bytes) = (0u64, 0u64, 0u64);
    let mut records = Vec::new();
    let started = Instant::now();
    let mut gen_secs = 0.0;
    pool.install(|| {
        for _ in 0..args.days {
            let t = Instant::now();
            let out = sim.step_events();
            gen_secs += t.elapsed().as_secs_f64();
            sessions += u64::from(out.sessions);
            events += out.events;
            if args.render {
                let mut buf = Vec::new();
                for e in sim.engine.render_day(&out) {
                    buf.clear();
                    e.write_json(&mut buf);
                    rendered_bytes += buf.len() as u64;
                }
            }
            if args.report {
                records.push(out.records);
            }
        }
    });
    let wall = started.elapsed().as_secs_f64();
    println!("days          {}", args.days);
    println!("scale         {}", args.scale);
    println!("threads       {threads}");
    println!("sessions      {sessions}");
    println!("events        {events}");
    println!("wall seconds  {wall:.2}");
    println!(
        "generate      {:.0} events/s ({:.0} events/s per core)",
        events as f64 / gen_secs,
        events as f64 / gen_secs / threads as f64
    );
    if args.render {
        println!(
            "with render   {:.0} events/s end to end, {:.0} bytes of JSON per event",
            events as f64 / wall,
            rendered_bytes as f64 / events.max(1) as f64
        );
    }
    if args.report {
        let last = sim.next_day().saturating_sub(1).max(sim.engine.first_day());
        let mut b = ReportBuilder::new(&sim.engine, last);
        for st in sim.states() {
            b.add_state(&st);
        }
        for day in &records {
            for r in day {
                b.add_user_day(r);
            }
        }
        let report = b.finish();
        print!("{}", report.to_table());
        println!("{}", report.verdict());
    }
    Ok(())
}
