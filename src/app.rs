//! The service's operations, independent of gRPC: validation, generation, and queries.
//!
//! Everything here is synchronous and may block (SQLite, CPU-bound generation); the `rpc`
//! layer runs it on blocking threads and streams results through bounded channels. One
//! [`App`] is shared by all requests.

use crate::error::{Error, Result};
use crate::store::days::{self, EncodedDay};
use crate::store::sims::{self, NewSim, SimRow};
use crate::store::Store;
use crate::wire::EventBatch;
use ampsim_engine::report::{Report, ReportBuilder};
use ampsim_engine::{codec, DayOutput, Engine, Scenario, SimConfig, UserDay, ENGINE_VERSION};
use chrono::NaiveDate;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Most days one GenerateDays call may ask for (100 years).
pub const MAX_DAYS_PER_CALL: u32 = 36_500;
/// Largest population scale accepted (1000× the default year).
pub const MAX_SCALE: f64 = 1000.0;
/// Default events per streamed batch.
pub const DEFAULT_BATCH: usize = 1000;
/// Largest events per streamed batch.
pub const MAX_BATCH: usize = 10_000;

/// Shared state of the service.
pub struct App {
    store: Store,
    engines: Mutex<BTreeMap<i64, Arc<Engine>>>,
    generating: Mutex<BTreeSet<String>>,
    shutdown: CancellationToken,
}

/// Marks a simulation as generating until dropped.
pub struct GeneratingGuard {
    app: Arc<App>,
    id: String,
}

impl Drop for GeneratingGuard {
    fn drop(&mut self) {
        self.app
            .generating
            .lock()
            .expect("generating lock")
            .remove(&self.id);
    }
}

/// One committed day, as reported to clients.
#[derive(Debug, Clone, PartialEq)]
pub struct DayInfo {
    /// The day's date.
    pub date: NaiveDate,
    /// The day's index.
    pub day_index: u32,
    /// Sessions.
    pub sessions: u64,
    /// Events.
    pub events: u64,
    /// New users.
    pub new_users: u64,
    /// Returning users.
    pub returning_users: u64,
    /// Committed days after this one.
    pub days_generated: u32,
    /// Days of the request still to come.
    pub days_remaining: u32,
}

/// A simulation to create, as the client gave it.
#[derive(Debug, Clone, Default)]
pub struct CreateParams {
    /// Id; generated when empty.
    pub simulation_id: String,
    /// Seed.
    pub seed: u64,
    /// `YYYY-MM-DD`; today when empty.
    pub start_date: String,
    /// 0 means 1.0.
    pub population_scale: f64,
    /// Scenario TOML; empty means the default.
    pub scenario_toml: String,
}

/// Filters of an event stream.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// `YYYY-MM-DD`, inclusive; empty = the start date.
    pub from_date: String,
    /// `YYYY-MM-DD`, inclusive; empty = the last generated day.
    pub to_date: String,
    /// Only these event types.
    pub event_types: Vec<String>,
    /// Only this user's identified events.
    pub user_id: String,
    /// Only this device's events.
    pub device_id: String,
    /// Generate missing days first.
    pub generate_missing: bool,
    /// Events per batch (0 = default).
    pub batch_size: u32,
}

/// Validates a simulation id: 1–64 characters of `[A-Za-z0-9_.-]`.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `simulation_id`.
pub fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid("simulation_id", "must not be empty"));
    }
    if id.len() > 64 {
        return Err(Error::invalid(
            "simulation_id",
            format!("must be at most 64 characters, got {}", id.len()),
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(Error::invalid(
            "simulation_id",
            "may contain only letters, digits, '_', '-' and '.'",
        ));
    }
    Ok(())
}

/// Parses a `YYYY-MM-DD` date between 1970-01-01 and 9999-12-31.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `field`.
pub fn parse_date(field: &str, s: &str) -> Result<NaiveDate> {
    if s.len() != 10 {
        return Err(Error::invalid(
            field,
            format!("expected YYYY-MM-DD, got {:?}", truncate(s)),
        ));
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| Error::invalid(field, format!("expected YYYY-MM-DD, got {s:?} ({e})")))?;
    let min = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
    let max = NaiveDate::from_ymd_opt(9999, 12, 31).expect("valid");
    if d < min || d > max {
        return Err(Error::invalid(
            field,
            format!("must be between 1970-01-01 and 9999-12-31, got {s}"),
        ));
    }
    Ok(d)
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Validates a population scale; 0 means 1.0 (proto3's default).
///
/// # Errors
/// [`Error::InvalidArgument`] naming `population_scale`.
pub fn validate_scale(scale: f64) -> Result<f64> {
    if scale == 0.0 {
        return Ok(1.0);
    }
    if !scale.is_finite() || !(0.0..=MAX_SCALE).contains(&scale) {
        return Err(Error::invalid(
            "population_scale",
            format!("must be a number in (0, {MAX_SCALE}] (0 means 1.0), got {scale}"),
        ));
    }
    Ok(scale)
}

impl App {
    /// The service over a store. `shutdown` stops generation after the day in progress.
    pub fn new(store: Store, shutdown: CancellationToken) -> App {
        App {
            store,
            engines: Mutex::new(BTreeMap::new()),
            generating: Mutex::new(BTreeSet::new()),
            shutdown,
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The compiled engine of a stored simulation (cached).
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the stored scenario no longer validates.
    pub fn engine(&self, sim: &SimRow) -> Result<Arc<Engine>> {
        if let Some(e) = self.engines.lock().expect("engines lock").get(&sim.key) {
            return Ok(e.clone());
        }
        let scenario = Scenario::from_toml(&sim.scenario_toml)
            .map_err(|e| Error::Corrupt(format!("stored scenario of {:?}: {e}", sim.id)))?;
        let engine = Arc::new(Engine::new(SimConfig {
            scenario,
            seed: sim.seed,
            start_date: sim.start_date,
            population_scale: sim.population_scale,
        }));
        self.engines
            .lock()
            .expect("engines lock")
            .insert(sim.key, engine.clone());
        Ok(engine)
    }

    /// Whether a simulation is generating right now.
    pub fn is_generating(&self, id: &str) -> bool {
        self.generating
            .lock()
            .expect("generating lock")
            .contains(id)
    }

    fn begin_generating(self: &Arc<Self>, id: &str) -> Result<GeneratingGuard> {
        let mut g = self.generating.lock().expect("generating lock");
        if !g.insert(id.to_string()) {
            return Err(Error::Aborted(format!(
                "simulation {id:?} is already generating; wait for that call to finish"
            )));
        }
        Ok(GeneratingGuard {
            app: self.clone(),
            id: id.to_string(),
        })
    }

    /// Creates a simulation.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the field (scenario errors name the key path as
    /// `scenario_toml.<path>`); [`Error::AlreadyExists`].
    pub fn create(&self, p: &CreateParams) -> Result<SimRow> {
        let id = if p.simulation_id.is_empty() {
            format!(
                "sim-{:012x}",
                ampsim_engine::rng::hash_words(&[
                    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64,
                    u64::from(std::process::id()),
                ]) & 0xffff_ffff_ffff
            )
        } else {
            p.simulation_id.clone()
        };
        validate_id(&id)?;
        let start_date = if p.start_date.is_empty() {
            chrono::Utc::now().date_naive()
        } else {
            parse_date("start_date", &p.start_date)?
        };
        let scale = validate_scale(p.population_scale)?;
        let scenario = Scenario::from_toml(&p.scenario_toml).map_err(|e| {
            let field = if e.path.is_empty() {
                "scenario_toml".to_string()
            } else {
                format!("scenario_toml.{}", e.path)
            };
            Error::invalid(field, e.message)
        })?;
        let conn = self.store.connect()?;
        sims::create(
            &conn,
            &NewSim {
                id: &id,
                seed: p.seed,
                start_date,
                population_scale: scale,
                scenario_toml: &p.scenario_toml,
                scenario_name: &scenario.name,
                engine_version: ENGINE_VERSION,
            },
        )
    }

    /// Finds a simulation.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a malformed id, [`Error::NotFound`].
    pub fn get(&self, id: &str) -> Result<SimRow> {
        validate_id(id)?;
        sims::get(&self.store.connect()?, id)
    }

    /// All simulations.
    ///
    /// # Errors
    /// Storage errors.
    pub fn list(&self) -> Result<Vec<SimRow>> {
        sims::list(&self.store.connect()?)
    }

    /// Deletes a simulation; refused while it generates.
    ///
    /// # Errors
    /// [`Error::Aborted`] while generating, [`Error::NotFound`].
    pub fn delete(self: &Arc<Self>, id: &str) -> Result<()> {
        validate_id(id)?;
        // Holding the generating slot keeps a generator from starting during the delete.
        let _guard = self.begin_generating(id).map_err(|_| {
            Error::Aborted(format!(
                "simulation {id:?} is generating; cancel that call before deleting it"
            ))
        })?;
        let mut conn = self.store.connect()?;
        let sim = sims::get(&conn, id)?;
        sims::delete(&mut conn, id)?;
        self.engines.lock().expect("engines lock").remove(&sim.key);
        Ok(())
    }

    /// Generates `days` more days: [`App::prepare_generate`] then [`GenerateJob::run`].
    ///
    /// # Errors
    /// As those two.
    pub fn generate(
        self: &Arc<Self>,
        id: &str,
        n_days: u32,
        progress: impl FnMut(DayInfo) -> bool,
    ) -> Result<SimRow> {
        self.prepare_generate(id, n_days)?.run(progress)
    }

    /// Checks a generate request and claims the simulation, so that errors (bad input,
    /// unknown simulation, already generating) are known before anything streams.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad day count; [`Error::NotFound`];
    /// [`Error::Aborted`] if the simulation is already generating;
    /// [`Error::FailedPrecondition`] for a simulation of another engine version.
    pub fn prepare_generate(self: &Arc<Self>, id: &str, n_days: u32) -> Result<GenerateJob> {
        validate_id(id)?;
        if n_days == 0 || n_days > MAX_DAYS_PER_CALL {
            return Err(Error::invalid(
                "days",
                format!("must be between 1 and {MAX_DAYS_PER_CALL}, got {n_days}"),
            ));
        }
        let conn = self.store.connect()?;
        let sim = sims::get(&conn, id)?;
        if sim.engine_version != ENGINE_VERSION {
            return Err(Error::FailedPrecondition(format!(
                "simulation {id:?} was generated by engine version {}, this server runs version {ENGINE_VERSION}; its days cannot be extended",
                sim.engine_version
            )));
        }
        let guard = self.begin_generating(id)?;
        // Re-read under the guard: another call may have committed days meanwhile.
        let sim = sims::get(&conn, id)?;
        let last =
            sim.start_date + chrono::Days::new(u64::from(sim.days_generated) + u64::from(n_days));
        if last > NaiveDate::from_ymd_opt(9999, 12, 31).expect("valid") {
            return Err(Error::invalid("days", "would run past 9999-12-31"));
        }
        let engine = self.engine(&sim)?;
        Ok(GenerateJob {
            app: self.clone(),
            conn,
            sim,
            engine,
            n_days,
            _guard: guard,
        })
    }

    /// Resolves a query's day range against a simulation.
    fn day_range(&self, sim: &SimRow, engine: &Engine, q: &EventQuery) -> Result<(u32, u32)> {
        let from = if q.from_date.is_empty() {
            sim.start_date
        } else {
            parse_date("from_date", &q.from_date)?
        };
        let to = if q.to_date.is_empty() {
            if sim.days_generated == 0 {
                return Err(Error::FailedPrecondition(format!(
                    "simulation {:?} has no generated days yet",
                    sim.id
                )));
            }
            engine.date_of(sim.days_generated - 1)
        } else {
            parse_date("to_date", &q.to_date)?
        };
        if from > to {
            return Err(Error::invalid(
                "from_date",
                format!("from_date {from} is after to_date {to}"),
            ));
        }
        let from_day = engine.day_of(from).ok_or_else(|| {
            Error::invalid(
                "from_date",
                format!(
                    "{from} is before the simulation's start date {}",
                    sim.start_date
                ),
            )
        })?;
        let to_day = engine.day_of(to).ok_or_else(|| {
            Error::invalid(
                "to_date",
                format!(
                    "{to} is before the simulation's start date {}",
                    sim.start_date
                ),
            )
        })?;
        Ok((from_day, to_day))
    }

    /// Checks an event query and resolves it against the simulation, so that errors are known
    /// before anything streams.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for bad dates, ids or batch size; [`Error::NotFound`];
    /// [`Error::FailedPrecondition`] for days not generated (unless `generate_missing`);
    /// [`Error::Aborted`] if missing days must be generated while another call generates.
    pub fn prepare_stream(self: &Arc<Self>, id: &str, q: &EventQuery) -> Result<EventStream> {
        validate_id(id)?;
        let batch = match q.batch_size as usize {
            0 => DEFAULT_BATCH,
            n if n > MAX_BATCH => {
                return Err(Error::invalid(
                    "batch_size",
                    format!("must be at most {MAX_BATCH}, got {n}"),
                ))
            }
            n => n,
        };
        if q.event_types.len() > 100 {
            return Err(Error::invalid("event_types", "at most 100 event types"));
        }
        let conn = self.store.connect()?;
        let sim = sims::get(&conn, id)?;
        let engine = self.engine(&sim)?;
        let known = engine.event_type_names();
        if let Some(bad) = q.event_types.iter().find(|t| !known.contains(t.as_str())) {
            return Err(Error::invalid(
                "event_types",
                format!(
                    "{:?} is not an event type of this simulation's scenario (known: {})",
                    truncate(bad),
                    known.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let (from_day, to_day) = self.day_range(&sim, &engine, q)?;
        let mut generate = None;
        if to_day >= sim.days_generated {
            if !q.generate_missing {
                return Err(Error::FailedPrecondition(format!(
                    "simulation {id:?} has {} generated days (through {}); {} is not generated yet. Generate more days or set generate_missing",
                    sim.days_generated,
                    if sim.days_generated == 0 { "none".to_string() } else { engine.date_of(sim.days_generated - 1).to_string() },
                    engine.date_of(to_day)
                )));
            }
            let missing = to_day + 1 - sim.days_generated;
            if missing > MAX_DAYS_PER_CALL {
                return Err(Error::invalid(
                    "to_date",
                    "too many days to generate in one call",
                ));
            }
            generate = Some(self.prepare_generate(id, missing)?);
        }
        let (device, user) = parse_ids(&engine, &q.user_id, &q.device_id, |field, v| {
            Error::invalid(
                field,
                format!("{:?} is not a {field} of this simulation", truncate(v)),
            )
        })?;
        Ok(EventStream {
            app: self.clone(),
            conn,
            sim_key: sim.key,
            engine,
            from_day,
            to_day,
            device: device.or(user),
            user_only: user.is_some(),
            types: q.event_types.iter().cloned().collect(),
            batch,
            generate,
        })
    }

    /// A user's whole journey: the compiled engine (to render with) and the user's records in
    /// day order, plus the summary.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] without an id or for a malformed one; [`Error::NotFound`]
    /// for an unknown simulation or user.
    pub fn journey(
        &self,
        id: &str,
        user_id: &str,
        device_id: &str,
    ) -> Result<(Arc<Engine>, Vec<UserDay>, crate::query::JourneySummary)> {
        validate_id(id)?;
        if user_id.is_empty() && device_id.is_empty() {
            return Err(Error::invalid("user_id", "give user_id or device_id"));
        }
        let conn = self.store.connect()?;
        let sim = sims::get(&conn, id)?;
        let engine = self.engine(&sim)?;
        let not_found = |what: &str, v: &str| {
            Error::NotFound(format!(
                "{what} {:?} not found in simulation {id:?}",
                truncate(v)
            ))
        };
        let (by_device, by_user) = parse_ids(&engine, user_id, device_id, not_found)?;
        let device = by_device.or(by_user).expect("one id given");
        let unknown_user = || {
            not_found(
                "user",
                if user_id.is_empty() {
                    device_id
                } else {
                    user_id
                },
            )
        };
        if sim.days_generated == 0 {
            return Err(unknown_user());
        }
        let mut records = Vec::new();
        for (day, blob) in
            days::device_chunk_blobs(&conn, sim.key, device, 0, sim.days_generated - 1)?
        {
            let raw = days::unpack(&blob)?;
            codec::for_each_user_day(&raw, day, engine.day_start_ms(day), |r| {
                if r.device == device {
                    records.push(r);
                }
            })?;
        }
        let identified = records
            .iter()
            .any(|r| usize::from(r.user_id_from) < r.events.len());
        if records.is_empty() || (by_device.is_none() && !identified) {
            return Err(unknown_user());
        }
        let summary = crate::query::summarize_journey(&engine, device, &records);
        Ok((engine, records, summary))
    }

    /// Scans a cohort: the filters' aggregate over every user, with the first `max_members`
    /// members by device.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for unknown names or contradictory filters;
    /// [`Error::NotFound`].
    pub fn cohort(
        &self,
        id: &str,
        params: &crate::query::CohortParams,
        max_members: u32,
    ) -> Result<(Arc<Engine>, SimRow, crate::query::CohortAgg)> {
        validate_id(id)?;
        if max_members > 1_000_000 {
            return Err(Error::invalid("max_members", "must be at most 1000000"));
        }
        let conn = self.store.connect()?;
        let sim = sims::get(&conn, id)?;
        let engine = self.engine(&sim)?;
        let filter = crate::query::CohortFilter::resolve(&engine, params)?;
        let blobs = days::state_blobs(&conn, sim.key)?;
        let agg = crate::query::scan_cohort(&blobs, &filter, max_members as usize)?;
        Ok((engine, sim, agg))
    }

    /// Measures the acceptance report on a simulation's committed days.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::FailedPrecondition`] with no generated days.
    pub fn report(&self, id: &str) -> Result<Report> {
        validate_id(id)?;
        let conn = self.store.connect()?;
        let sim = sims::get(&conn, id)?;
        if sim.days_generated == 0 {
            return Err(Error::FailedPrecondition(format!(
                "simulation {id:?} has no generated days yet"
            )));
        }
        let engine = self.engine(&sim)?;
        let last = sim.days_generated - 1;
        let mut b = ReportBuilder::new(&engine, last);
        for blob in days::state_blobs(&conn, sim.key)? {
            codec::for_each_state(&days::unpack(&blob)?, |s| b.add_state(&s))?;
        }
        for day in 0..=last {
            let blobs = days::day_chunk_blobs(&conn, sim.key, day)?;
            for r in decode_chunks(&engine, day, &blobs)? {
                b.add_user_day(&r);
            }
        }
        Ok(b.finish())
    }
}

/// A claimed generate request, ready to run on a blocking thread.
pub struct GenerateJob {
    app: Arc<App>,
    conn: rusqlite::Connection,
    sim: SimRow,
    engine: Arc<Engine>,
    n_days: u32,
    _guard: GeneratingGuard,
}

/// Where a generate job's time went, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GenStats {
    /// Reading and decoding the due users.
    pub load: f64,
    /// The engine's day step.
    pub generate: f64,
    /// Encoding and compressing the day's blobs.
    pub encode: f64,
    /// The SQLite transaction.
    pub commit: f64,
    /// Stored bytes written (compressed blobs).
    pub bytes: u64,
}

impl GenerateJob {
    /// Generates the days, one committed transaction each, calling `progress` after every
    /// commit. Stops early, after a committed day, when `progress` returns false (the client
    /// went away) or the server is shutting down.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when shut down before all days were made; storage errors (the
    /// day in progress is rolled back; a full disk is [`Error::ResourceExhausted`]).
    pub fn run(self, progress: impl FnMut(DayInfo) -> bool) -> Result<SimRow> {
        self.run_with_stats(progress).map(|(row, _)| row)
    }

    /// [`GenerateJob::run`], also reporting where the time went.
    ///
    /// # Errors
    /// As [`GenerateJob::run`].
    pub fn run_with_stats(
        mut self,
        mut progress: impl FnMut(DayInfo) -> bool,
    ) -> Result<(SimRow, GenStats)> {
        let mut stats = GenStats::default();
        let clock = std::time::Instant::now;
        let (id, key, first, n_days) = (
            self.sim.id.clone(),
            self.sim.key,
            self.sim.days_generated,
            self.n_days,
        );
        let engine = self.engine.clone();
        for i in 0..n_days {
            if self.app.shutdown.is_cancelled() {
                return Err(Error::Unavailable(format!(
                    "server is shutting down; {i} of {n_days} days were generated"
                )));
            }
            let day = first + i;
            let t = clock();
            let due = days::load_due(&self.conn, key, day)?;
            let t1 = clock();
            let out: DayOutput = engine.step_day(day, due);
            let t2 = clock();
            let enc = EncodedDay::new(&engine, &out);
            let t3 = clock();
            days::commit_day(&mut self.conn, key, &enc)?;
            let t4 = clock();
            stats.load += (t1 - t).as_secs_f64();
            stats.generate += (t2 - t1).as_secs_f64();
            stats.encode += (t3 - t2).as_secs_f64();
            stats.commit += (t4 - t3).as_secs_f64();
            stats.bytes += enc.bytes() as u64;
            tracing::debug!(simulation = %id, day, events = out.events, sessions = out.sessions, "day committed");
            let go_on = progress(DayInfo {
                date: engine.date_of(day),
                day_index: day,
                sessions: u64::from(out.sessions),
                events: out.events,
                new_users: u64::from(out.new_users),
                returning_users: u64::from(out.returning_users),
                days_generated: day + 1,
                days_remaining: n_days - i - 1,
            });
            if !go_on {
                tracing::info!(simulation = %id, day, "client went away; stopping after the committed day");
                break;
            }
        }
        Ok((sims::get(&self.conn, &id)?, stats))
    }
}

/// A resolved event query, ready to run on a blocking thread.
pub struct EventStream {
    app: Arc<App>,
    conn: rusqlite::Connection,
    sim_key: i64,
    engine: Arc<Engine>,
    from_day: u32,
    to_day: u32,
    device: Option<u64>,
    user_only: bool,
    types: BTreeSet<String>,
    batch: usize,
    generate: Option<GenerateJob>,
}

/// Where one encoded event sits: its stream-order key and its bytes in a part's buffer.
#[derive(Clone, Copy)]
struct Slot {
    key: (i64, u64, u32),
    part: u32,
    start: u32,
    end: u32,
}

/// A run of records rendered and encoded by one worker.
#[derive(Default)]
struct Part {
    bytes: Vec<u8>,
    slots: Vec<Slot>,
}

/// Part buffers kept from slice to slice, so that each slice writes into memory that is
/// already mapped and warm instead of fresh pages.
#[derive(Default)]
struct PartPool(Mutex<Vec<Part>>);

impl PartPool {
    fn take(&self) -> Part {
        let mut p = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        p.bytes.clear();
        p.slots.clear();
        p
    }

    fn give(&self, parts: Vec<Part>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(parts);
    }
}

/// Events per time slice of a streamed day (about what the stream's buffer holds).
const SLICE_EVENTS: usize = 32_768;

/// Streams one day's records: the kept events in stream order, in batches of `batch` (the
/// last may be short), handed to `sink` until it returns false (then this returns false).
///
/// The day goes out in time slices of about `slice` events: while the client reads one, the
/// next is rendered, so neither side waits for a whole day. Each slice is rendered and
/// encoded on all cores in parts, sorted by (time, device, event id) and cut into batches.
fn stream_day(
    engine: &Engine,
    records: &[UserDay],
    day_start: i64,
    keep: &(impl Fn(&UserDay, usize, &ampsim_engine::state::EventRec) -> bool + Sync),
    batch: usize,
    slice: usize,
    sink: &mut impl FnMut(EventBatch) -> bool,
) -> bool {
    let mut batcher = Batcher::new(batch);
    let pool = PartPool::default();
    for (t0, t1) in time_slices(records, day_start, slice) {
        let recs: Vec<&UserDay> = records
            .iter()
            .filter(|r| match (r.events.first(), r.events.last()) {
                (Some(a), Some(z)) => z.time_ms >= t0 && a.time_ms < t1,
                _ => false,
            })
            .collect();
        let per_part = recs
            .len()
            .div_ceil(4 * rayon::current_num_threads())
            .clamp(16, 4096); // a part's offsets stay far below u32::MAX
        let in_slice = |r: &UserDay, i: usize, e: &ampsim_engine::state::EventRec| {
            (t0..t1).contains(&e.time_ms) && keep(r, i, e)
        };
        let parts: Vec<Part> = recs
            .par_chunks(per_part)
            .enumerate()
            .map(|(p, rs)| encode_part(engine, p as u32, rs, &in_slice, pool.take()))
            .collect();
        let mut order: Vec<Slot> = parts.iter().flat_map(|p| &p.slots).copied().collect();
        order.par_sort_unstable_by_key(|s| s.key);
        let batches = batcher.cut(&parts, &order);
        pool.give(parts);
        for b in batches {
            if !sink(b) {
                return false;
            }
        }
    }
    batcher.finish().is_none_or(sink)
}

/// Splits a day into time ranges `[t0, t1)` of about `target` events each, at whole minutes;
/// the first starts at `i64::MIN` and the last ends at `i64::MAX`, so every event is in one.
fn time_slices(records: &[UserDay], day_start: i64, target: usize) -> Vec<(i64, i64)> {
    const MINUTE: i64 = 60_000;
    const MINUTES: usize = 24 * 60;
    let mut per_minute = vec![0usize; MINUTES];
    for e in records.iter().flat_map(|r| &r.events) {
        let m = ((e.time_ms - day_start) / MINUTE).clamp(0, MINUTES as i64 - 1);
        per_minute[m as usize] += 1;
    }
    let mut cuts = vec![i64::MIN];
    let mut run = 0;
    for (m, n) in per_minute.iter().enumerate().take(MINUTES - 1) {
        run += n;
        if run >= target {
            cuts.push(day_start + (m as i64 + 1) * MINUTE);
            run = 0;
        }
    }
    cuts.push(i64::MAX);
    cuts.windows(2).map(|w| (w[0], w[1])).collect()
}

/// Cuts a day's sorted slices into batches of `size` events, carrying a short last batch of
/// a slice over to the next, so that batches are full except the day's last.
struct Batcher {
    size: usize,
    carry: Vec<u8>,
    carried: usize,
}

impl Batcher {
    fn new(size: usize) -> Self {
        Batcher {
            size,
            carry: Vec::new(),
            carried: 0,
        }
    }

    /// The full batches of the carried events followed by `order` (built on all cores);
    /// the remainder is carried.
    fn cut(&mut self, parts: &[Part], order: &[Slot]) -> Vec<EventBatch> {
        let write = |body: &mut Vec<u8>, slots: &[Slot]| {
            let size: usize = slots.iter().map(|s| (s.end - s.start) as usize).sum();
            body.reserve(size);
            for s in slots {
                let part = &parts[s.part as usize].bytes;
                body.extend_from_slice(&part[s.start as usize..s.end as usize]);
            }
        };
        let (head, tail) = order.split_at((self.size - self.carried).min(order.len()));
        if self.carried + head.len() < self.size {
            write(&mut self.carry, head);
            self.carried += head.len();
            return Vec::new();
        }
        // The carry and `head` make the first batch; `tail` gives whole batches and a rest.
        let first = {
            let mut body = std::mem::take(&mut self.carry);
            write(&mut body, head);
            EventBatch::from_entries(body, self.carried + head.len())
        };
        let rest = &tail[tail.len() - tail.len() % self.size..];
        let mut batches = vec![first];
        batches.par_extend(tail.par_chunks_exact(self.size).map(|slots| {
            let mut body = Vec::new();
            write(&mut body, slots);
            EventBatch::from_entries(body, slots.len())
        }));
        write(&mut self.carry, rest);
        self.carried = rest.len();
        batches
    }

    /// The day's last, short batch, if any.
    fn finish(&mut self) -> Option<EventBatch> {
        (self.carried > 0).then(|| {
            let n = std::mem::take(&mut self.carried);
            EventBatch::from_entries(std::mem::take(&mut self.carry), n)
        })
    }
}

impl EventStream {
    /// Streams the events in time order as encoded batches handed to `sink` in order. Each day
    /// is rendered and encoded on all cores: records are split into parts, each part's events
    /// are written straight to protobuf bytes, and batches are cut from the bytes in stream
    /// order. Stops when `sink` returns false or the server shuts down.
    ///
    /// # Errors
    /// Storage and decoding errors; generation errors when missing days are generated first.
    pub fn run(self, mut sink: impl FnMut(EventBatch) -> bool) -> Result<()> {
        if let Some(job) = self.generate {
            job.run(|_| true)?;
        }
        let engine = &*self.engine;
        let (only, user_only, types) = (self.device, self.user_only, &self.types);
        let keep = |r: &UserDay, i: usize, e: &ampsim_engine::state::EventRec| {
            (only.is_none() || only == Some(r.device))
                && (!user_only || i >= usize::from(r.user_id_from))
                && (types.is_empty() || types.contains(engine.event_type_name(e.kind, e.aux)))
        };
        for day in self.from_day..=self.to_day {
            if self.app.shutdown.is_cancelled() {
                return Err(Error::Unavailable("server is shutting down".into()));
            }
            let blobs = match only {
                Some(dev) => days::device_chunk_blobs(&self.conn, self.sim_key, dev, day, day)?
                    .into_iter()
                    .map(|(_, b)| b)
                    .collect(),
                None => days::day_chunk_blobs(&self.conn, self.sim_key, day)?,
            };
            let records = decode_chunks(engine, day, &blobs)?;
            let day_start = engine.day_start_ms(day);
            if !stream_day(
                engine,
                &records,
                day_start,
                &keep,
                self.batch,
                SLICE_EVENTS,
                &mut sink,
            ) {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// Renders the kept events of `records` and writes each as an `EventBatch` entry, noting its
/// stream-order key (time, device, event id).
fn encode_part(
    engine: &Engine,
    part: u32,
    records: &[&UserDay],
    keep: &(impl Fn(&UserDay, usize, &ampsim_engine::state::EventRec) -> bool + Sync),
    mut out: Part,
) -> Part {
    let events: usize = records.iter().map(|r| r.events.len()).sum();
    out.bytes.reserve(events * 400);
    out.slots.reserve(events);
    let mut writer = crate::wire::EventWriter::new();
    for r in records {
        writer.next_user_day();
        engine.for_each_event(
            r,
            |i, e| keep(r, i, e),
            |e| {
                let start = out.bytes.len();
                writer.write(e, &mut out.bytes);
                out.slots.push(Slot {
                    key: (e.time, r.device, e.event_id),
                    part,
                    start: start as u32,
                    end: out.bytes.len() as u32,
                });
            },
        );
    }
    out
}

/// Parses a request's optional user_id and device_id into device numbers: (device, user).
/// `unknown(field, value)` is the error for an id that is not one of this simulation's.
///
/// # Errors
/// That error, or [`Error::InvalidArgument`] when both are given and name different users.
fn parse_ids(
    engine: &Engine,
    user_id: &str,
    device_id: &str,
    unknown: impl Fn(&str, &str) -> Error,
) -> Result<(Option<u64>, Option<u64>)> {
    let device = if device_id.is_empty() {
        None
    } else {
        let d = engine.ids().parse_device_id(device_id);
        Some(d.ok_or_else(|| unknown("device_id", device_id))?)
    };
    let user = if user_id.is_empty() {
        None
    } else {
        let u = engine.ids().parse_user_id(user_id);
        Some(u.ok_or_else(|| unknown("user_id", user_id))?)
    };
    if let (Some(d), Some(u)) = (device, user) {
        if d != u {
            return Err(Error::invalid(
                "user_id",
                "user_id and device_id name different users",
            ));
        }
    }
    Ok((device, user))
}

/// Decompresses and decodes a day's chunks (on all cores), in chunk order.
///
/// # Errors
/// [`Error::Corrupt`] if a blob does not decode.
pub fn decode_chunks(engine: &Engine, day: u32, blobs: &[Vec<u8>]) -> Result<Vec<UserDay>> {
    let start = engine.day_start_ms(day);
    let parts: Vec<Result<Vec<UserDay>>> = blobs
        .par_iter()
        .map(|b| Ok(codec::decode_user_days(&days::unpack(b)?, day, start)?))
        .collect();
    let mut out = Vec::new();
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A day's stream cut in many small slices is the day's events in stream order, in batches
    /// that are full except the last, with or without a filter.
    #[test]
    fn a_day_streams_in_slices_as_one_sorted_run() {
        let mut sim = ampsim_engine::memory::MemorySim::new(Engine::new(SimConfig {
            scenario: Scenario::from_toml(ampsim_engine::scenario::DEFAULT_SCENARIO_TOML)
                .expect("default scenario"),
            seed: 5,
            start_date: NaiveDate::from_ymd_opt(2025, 1, 6).expect("date"),
            population_scale: 0.01,
        }));
        let mut out = sim.step();
        for _ in 0..9 {
            out = sim.step();
        }
        let engine = &sim.engine;
        let day_start = engine.day_start_ms(out.day);
        let every_other =
            |_: &UserDay, i: usize, _: &ampsim_engine::state::EventRec| i.is_multiple_of(2);
        let all = |_: &UserDay, _: usize, _: &ampsim_engine::state::EventRec| true;
        let check = |keep: &(dyn Fn(&UserDay, usize, &ampsim_engine::state::EventRec) -> bool
                           + Sync),
                     slice: usize| {
            // The day's kept events encoded in one piece: what the sliced stream must equal.
            let want: Vec<crate::pb::Event> =
                EventBatch::encode(&engine.render_sorted_where(&out.records, keep))
                    .to_events()
                    .expect("decodes");
            assert!(want.len() > 1000, "{} events", want.len());
            assert!(time_slices(&out.records, day_start, slice).len() > 5);
            let mut batches = Vec::new();
            assert!(stream_day(
                engine,
                &out.records,
                day_start,
                &keep,
                100,
                slice,
                &mut |b| {
                    batches.push(b);
                    true
                }
            ));
            let (last, full) = batches.split_last().expect("batches");
            assert!(full.iter().all(|b| b.len() == 100));
            assert!((1..=100).contains(&last.len()));
            let got: Vec<crate::pb::Event> = batches
                .iter()
                .flat_map(|b| b.to_events().expect("decodes"))
                .collect();
            assert_eq!(got.len(), want.len());
            assert!(got == want, "stream order or content differs");
        };
        check(&all, 300);
        check(&every_other, 250);
        // A sink that stops early stops the day.
        let mut n = 0;
        assert!(!stream_day(
            engine,
            &out.records,
            day_start,
            &all,
            100,
            300,
            &mut |_| {
                n += 1;
                n < 3
            }
        ));
        assert_eq!(n, 3);
    }

    #[test]
    fn ids_and_dates_are_validated() {
        assert!(validate_id("sim-1.a_b").is_ok());
        for bad in ["", "a b", "x;drop", &"x".repeat(65), "ünï"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
        assert!(parse_date("d", "2025-02-29").is_err());
        assert!(parse_date("d", "1969-12-31").is_err());
        assert!(parse_date("d", "2025-1-1").is_err());
        assert_eq!(
            parse_date("d", "2024-02-29").unwrap(),
            NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
        );
        assert_eq!(validate_scale(0.0).unwrap(), 1.0);
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e9] {
            assert!(validate_scale(bad).is_err(), "{bad}");
        }
    }
}
