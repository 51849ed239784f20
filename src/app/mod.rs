//! The service's operations, independent of gRPC: the [`App`] facade (create, list, delete,
//! journeys, cohorts, the report, the engine cache). Generation is in [`generate`], the event
//! stream's pipeline in [`stream`]; request validation helpers are in [`crate::validate`].
//!
//! Everything here is synchronous and may block (SQLite, CPU-bound generation); the `rpc`
//! layer runs it on blocking threads and streams results through bounded channels. One
//! [`App`] is shared by all requests.

pub mod generate;
pub mod labels;
pub mod stream;

pub use generate::{GenStats, GenerateJob};
pub use stream::{decode_chunks, EventStream};

use crate::error::{Error, Result};
use crate::store::days;
use crate::store::sims::{self, NewSim, SimRow};
use crate::store::{Conn, Store};
use crate::validate::{parse_date, truncate, validate_id, validate_scale};
use ampsim_engine::report::{Report, ReportBuilder};
use ampsim_engine::{codec, Engine, Scenario, SimConfig, UserDay, ENGINE_VERSION};
use chrono::NaiveDate;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Most days one GenerateDays call may ask for (100 years).
pub const MAX_DAYS_PER_CALL: u32 = 36_500;
/// Default events per streamed batch.
pub const DEFAULT_BATCH: usize = 1000;
/// Largest events per streamed batch.
pub const MAX_BATCH: usize = 10_000;

/// Default memory budget of a server: what one day's generation may take (8 GiB, a third of
/// this project's 24 GB machine).
pub const DEFAULT_MEMORY_BUDGET: u64 = 8 << 30;
/// Memory a day's generation takes besides its users (runtime, buffers, SQLite's cache).
pub const DAY_BASE_BYTES: u64 = 96 << 20;
/// Memory per user processed in a day (state, day record, encoding), measured with
/// `ampsim bench --scale 100 --days 2`: 2,488 MiB peak for about 5M users in the second day,
/// i.e. about 500 bytes each; 520 keeps the estimate on the safe side.
pub const DAY_BYTES_PER_USER: u64 = 520;

/// What generating a day with `users` users (due and new) needs, by the measured figures.
pub fn day_bytes(users: u64) -> u64 {
    DAY_BASE_BYTES + users.saturating_mul(DAY_BYTES_PER_USER)
}

/// Shared state of the service.
pub struct App {
    store: Store,
    /// Compiled engines by simulation uid (never reused, unlike the rowid).
    engines: Mutex<BTreeMap<String, Arc<Engine>>>,
    generating: Mutex<BTreeSet<String>>,
    shutdown: CancellationToken,
    /// Most memory one day's generation may need ([`day_bytes`]); days over it are refused
    /// before anything is allocated.
    memory_budget: u64,
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
    /// The user properties the events carry: what each sends, or what Amplitude holds.
    pub user_properties: ampsim_engine::UserPropertiesView,
}

impl App {
    /// The service over a store. `shutdown` stops generation after the day in progress.
    pub fn new(store: Store, shutdown: CancellationToken) -> App {
        App {
            store,
            engines: Mutex::new(BTreeMap::new()),
            generating: Mutex::new(BTreeSet::new()),
            shutdown,
            memory_budget: DEFAULT_MEMORY_BUDGET,
        }
    }

    /// The service with another memory budget (bytes a day's generation may need).
    pub fn with_memory_budget(mut self, bytes: u64) -> App {
        self.memory_budget = bytes;
        self
    }

    /// The error for a day over the memory budget, or none.
    fn check_budget(&self, what: &str, users: u64, field: Option<&str>) -> Result<()> {
        let need = day_bytes(users);
        if need <= self.memory_budget {
            return Ok(());
        }
        let m = format!(
            "{what} would need about {} MiB for {users} users, over the server's memory budget of {} MiB (serve --memory-budget-mib); use a smaller population_scale or raise the budget",
            need >> 20,
            self.memory_budget >> 20
        );
        Err(match field {
            Some(f) => Error::invalid(f, m),
            None => Error::ResourceExhausted(m),
        })
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
        if let Some(e) = self.engines.lock().expect("engines lock").get(&sim.uid) {
            return Ok(e.clone());
        }
        if sim.engine_version != ENGINE_VERSION {
            // Another engine's records and scenario mean other events: never render them
            // with this one.
            return Err(Error::FailedPrecondition(format!(
                "simulation {:?} was generated by engine version {}, this server runs version {ENGINE_VERSION}: its events cannot be read or extended here; delete it and create it again (or use a server of version {})",
                sim.id, sim.engine_version, sim.engine_version
            )));
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
            .insert(sim.uid.clone(), engine.clone());
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
        let engine = Engine::new(SimConfig {
            scenario: scenario.clone(),
            seed: p.seed,
            start_date,
            population_scale: scale,
        });
        self.check_budget(
            "its first day",
            u64::from(engine.new_users_on(engine.first_day())),
            Some("population_scale"),
        )?;
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
                first_day: engine.first_day(),
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
        self.engines.lock().expect("engines lock").remove(&sim.uid);
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
        let (records, summary) =
            self.device_journey(&conn, &sim, &engine, id, user_id, device_id)?;
        Ok((engine, records, summary))
    }

    /// An account's journey: the records of every identified user of the company with domain
    /// `company` first seen in the emitted days (those a cohort by `company` and
    /// `identified` lists), in day order, and each user's summary, by device.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a domain no company of the simulation has;
    /// [`Error::NotFound`] for an unknown simulation or an account without identified users.
    #[allow(clippy::type_complexity)]
    pub fn account_journey(
        &self,
        id: &str,
        company: &str,
    ) -> Result<(Arc<Engine>, Vec<UserDay>, Vec<crate::query::JourneySummary>)> {
        let params = crate::query::CohortParams {
            company: company.to_string(),
            identified: Some(true),
            ..Default::default()
        };
        let (engine, sim, agg) = self.cohort(id, &params, 1_000_000)?;
        let (members, _) = agg.into_members();
        if members.is_empty() {
            return Err(Error::NotFound(format!(
                "the account {:?} has no identified users in simulation {id:?}",
                truncate(company)
            )));
        }
        let conn = self.store.connect()?;
        let mut records = Vec::new();
        let mut summaries = Vec::with_capacity(members.len());
        for m in &members {
            let device_id = engine.ids().device_id(m.device);
            let (r, s) = self.device_journey(&conn, &sim, &engine, id, "", &device_id)?;
            records.extend(r);
            summaries.push(s);
        }
        records.sort_by_key(|r| (r.day, r.device));
        Ok((engine, records, summaries))
    }

    /// One user's records and summary (see [`App::journey`]).
    fn device_journey(
        &self,
        conn: &Conn,
        sim: &SimRow,
        engine: &Arc<Engine>,
        id: &str,
        user_id: &str,
        device_id: &str,
    ) -> Result<(Vec<UserDay>, crate::query::JourneySummary)> {
        let engine = engine.clone();
        let not_found = |what: &str, v: &str| {
            Error::NotFound(format!(
                "{what} {:?} not found in simulation {id:?}",
                truncate(v)
            ))
        };
        let (by_device, by_user) = parse_ids(&engine, user_id, device_id, not_found)?;
        // Either device id names the person: the journey shows both devices.
        let device = by_device
            .map(ampsim_engine::ids::person_of)
            .or(by_user)
            .expect("one id given");
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
        if sim.emitted_days() == 0 {
            return Err(unknown_user());
        }
        let mut records = Vec::new();
        for (day, blob) in days::device_chunk_blobs(
            conn,
            &sim.handle(),
            device,
            sim.first_day,
            sim.days_generated - 1,
        )? {
            let raw = blob.unpack()?;
            codec::for_each_user_day(&raw, day, engine.day_start_ms(day), |r| {
                if r.device == device {
                    records.push(r);
                }
            })
            .map_err(|e| stream::corrupt_day(&engine, day, e))?;
        }
        for r in &records {
            engine
                .check_user_day(r)
                .map_err(|e| stream::corrupt_day(&engine, r.day, e))?;
        }
        let identified = records
            .iter()
            .any(|r| usize::from(r.user_id_from) < r.events.len());
        if records.is_empty() || (by_device.is_none() && !identified) {
            return Err(unknown_user());
        }
        let mut summary = crate::query::summarize_journey(&engine, device, &records);
        let last = sim.days_generated - 1;
        let since = records.last().map_or(sim.first_day, |r| r.day);
        if let Some(st) = days::state_of(conn, &sim.handle(), device, since)? {
            engine
                .check_state(&st)
                .map_err(|e| Error::Corrupt(format!("user state of the journey: {e}")))?;
            summary.label = Some(engine.label(&st, last));
        }
        // A second device that has not been used yet has sent nothing.
        let unused_second = by_device.is_some_and(ampsim_engine::ids::is_second_device)
            && summary
                .label
                .as_ref()
                .is_none_or(|l| l.second_device.is_none());
        if unused_second {
            return Err(unknown_user());
        }
        Ok((records, summary))
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
        let blobs = days::state_blobs(&conn, &sim.handle())?;
        let agg = crate::query::scan_cohort(&engine, &blobs, &filter, max_members as usize)?;
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
        if sim.emitted_days() == 0 {
            return Err(Error::FailedPrecondition(format!(
                "simulation {id:?} has no generated days yet"
            )));
        }
        let engine = self.engine(&sim)?;
        let last = sim.days_generated - 1;
        let mut b = ReportBuilder::new(&engine, last);
        let handle = sim.handle();
        for blob in days::state_blobs(&conn, &sim.handle())? {
            let mut bad = Ok(());
            codec::for_each_state(&blob.unpack()?, |s| match engine.check_state(&s) {
                Ok(()) => b.add_state(&s),
                Err(e) => bad = Err(e),
            })
            .and(bad)
            .map_err(|e| Error::Corrupt(format!("user states: {e}")))?;
        }
        for day in sim.first_day..=last {
            let blobs = days::day_chunk_blobs(&conn, &handle, day)?;
            for r in decode_chunks(&engine, day, &blobs)? {
                b.add_user_day(&r);
            }
        }
        Ok(b.finish())
    }
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
        // A second device's id names it only if its person has one.
        let d = engine.ids().parse_device_id(device_id).filter(|&d| {
            !ampsim_engine::ids::is_second_device(d) || engine.second_device_kind(d).is_some()
        });
        Some(d.ok_or_else(|| unknown("device_id", device_id))?)
    };
    let user = if user_id.is_empty() {
        None
    } else {
        let u = engine.parse_user_id(user_id);
        Some(u.ok_or_else(|| unknown("user_id", user_id))?)
    };
    if let (Some(d), Some(u)) = (device, user) {
        if ampsim_engine::ids::person_of(d) != u {
            return Err(Error::invalid(
                "user_id",
                "user_id and device_id name different users",
            ));
        }
    }
    Ok((device, user))
}
