//! The `simulations` table: definitions and running totals.

use super::Conn;
use crate::error::{Error, Result};
use chrono::NaiveDate;
use rusqlite::{params, OptionalExtension, Row};

/// A stored simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct SimRow {
    /// Internal key, used by the other tables.
    pub key: i64,
    /// Public id.
    pub id: String,
    /// Seed.
    pub seed: u64,
    /// Day 0.
    pub start_date: NaiveDate,
    /// Population scale (never 0).
    pub population_scale: f64,
    /// Scenario TOML as given ('' = default).
    pub scenario_toml: String,
    /// Scenario name.
    pub scenario_name: String,
    /// Engine version that generates it.
    pub engine_version: u32,
    /// Committed days, the warm start's included: the next day to generate.
    pub days_generated: u32,
    /// The start date's day number (days before it are the warm start, never emitted).
    pub first_day: u32,
    /// Sessions in committed days.
    pub sessions: u64,
    /// Events in committed days.
    pub events: u64,
    /// Users in committed days.
    pub users: u64,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// The simulation's identity: random, never reused (unlike `key`, SQLite's rowid).
    pub uid: String,
    /// The width of its event chunks in device-number bits (see [`super::days::CHUNK_BITS`]).
    pub chunk_bits: u32,
}

impl SimRow {
    /// Emitted days generated (from the start date on).
    pub fn emitted_days(&self) -> u32 {
        self.days_generated.saturating_sub(self.first_day)
    }

    /// The handle that reads and commits of this simulation go through.
    pub fn handle(&self) -> SimRef {
        SimRef {
            key: self.key,
            uid: self.uid.clone(),
            id: self.id.clone(),
            chunk_bits: self.chunk_bits,
        }
    }
}

/// Names one simulation for the store's reads and commits: each checks, in its own
/// transaction, that the simulation still exists with this uid, so a simulation deleted (and
/// perhaps recreated under the same id or rowid) meanwhile is an error, never another
/// simulation's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRef {
    pub(super) key: i64,
    /// The uid.
    pub uid: String,
    /// The public id, for messages.
    pub id: String,
    /// The width of its event chunks in device-number bits.
    pub(super) chunk_bits: u32,
}

impl SimRef {
    /// Checks inside a transaction that the simulation still exists.
    pub(super) fn check(&self, conn: &rusqlite::Connection) -> Result<()> {
        let found: Option<i64> = conn
            .prepare_cached("SELECT sim FROM simulations WHERE sim = ?1 AND uid = ?2")?
            .query_row(params![self.key, self.uid], |r| r.get(0))
            .optional()?;
        match found {
            Some(_) => Ok(()),
            None => Err(self.gone()),
        }
    }

    /// The error for a simulation that was deleted under a reader or writer.
    pub(super) fn gone(&self) -> Error {
        Error::NotFound(format!(
            "simulation {:?} was deleted (by this or another server) while in use",
            self.id
        ))
    }
}

/// A simulation to create.
#[derive(Debug, Clone)]
pub struct NewSim<'a> {
    /// Public id (already validated).
    pub id: &'a str,
    /// Seed.
    pub seed: u64,
    /// Day 0.
    pub start_date: NaiveDate,
    /// Population scale.
    pub population_scale: f64,
    /// Scenario TOML as given.
    pub scenario_toml: &'a str,
    /// Scenario name.
    pub scenario_name: &'a str,
    /// Engine version.
    pub engine_version: u32,
    /// The start date's day number.
    pub first_day: u32,
}

const COLUMNS: &str = "sim, simulation_id, seed, start_date, population_scale, scenario_toml, \
     scenario_name, engine_version, days_generated, sessions, events, users, created_at, uid, \
     first_day, chunk_bits";

fn from_row(r: &Row<'_>) -> rusqlite::Result<SimRow> {
    let date: String = r.get(3)?;
    Ok(SimRow {
        key: r.get(0)?,
        id: r.get(1)?,
        seed: r.get::<_, i64>(2)? as u64,
        start_date: NaiveDate::parse_from_str(&date, "%Y-%m-%d").map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
        })?,
        population_scale: r.get(4)?,
        scenario_toml: r.get(5)?,
        scenario_name: r.get(6)?,
        engine_version: r.get(7)?,
        days_generated: r.get(8)?,
        sessions: r.get::<_, i64>(9)? as u64,
        events: r.get::<_, i64>(10)? as u64,
        users: r.get::<_, i64>(11)? as u64,
        created_at: r.get(12)?,
        uid: r.get(13)?,
        first_day: r.get(14)?,
        chunk_bits: r.get(15)?,
    })
}

/// Creates a simulation.
///
/// # Errors
/// [`Error::AlreadyExists`] if the id is taken.
pub fn create(conn: &Conn, s: &NewSim<'_>) -> Result<SimRow> {
    let res = conn.raw().execute(
        "INSERT INTO simulations (simulation_id, seed, start_date, population_scale, scenario_toml,
             scenario_name, engine_version, created_at, uid, first_day, chunk_bits)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, lower(hex(randomblob(16))), ?9, ?10)",
        params![
            s.id,
            s.seed as i64,
            s.start_date.format("%Y-%m-%d").to_string(),
            s.population_scale,
            s.scenario_toml,
            s.scenario_name,
            s.engine_version,
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            s.first_day,
            super::days::CHUNK_BITS,
        ],
    );
    match res {
        Ok(_) => get(conn, s.id),
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(Error::AlreadyExists(format!(
                "simulation {:?} already exists",
                s.id
            )))
        }
        Err(e) => Err(super::storage_error(e)),
    }
}

/// Finds a simulation by id.
///
/// # Errors
/// [`Error::NotFound`] if there is none.
pub fn get(conn: &Conn, id: &str) -> Result<SimRow> {
    let conn = conn.raw();
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM simulations WHERE simulation_id = ?1"
    ))?
    .query_row([id], from_row)
    .optional()?
    .ok_or_else(|| Error::NotFound(format!("simulation {id:?} not found")))
}

/// All simulations, oldest first.
///
/// # Errors
/// Storage errors.
pub fn list(conn: &Conn) -> Result<Vec<SimRow>> {
    let conn = conn.raw();
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM simulations ORDER BY sim"))?;
    let rows = stmt
        .query_map([], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Deletes a simulation and all its data in one transaction. Returns whether it existed.
///
/// # Errors
/// Storage errors.
pub fn delete(conn: &mut Conn, id: &str) -> Result<bool> {
    let conn = conn.raw_mut();
    // IMMEDIATE: the write lock is taken before the read, so a day another connection commits
    // meanwhile makes this wait (busy timeout), not fail: a deferred transaction that read
    // first cannot upgrade past a newer commit (SQLITE_BUSY_SNAPSHOT, which no timeout retries).
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(super::storage_error)?;
    let key: Option<i64> = tx
        .query_row(
            "SELECT sim FROM simulations WHERE simulation_id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(key) = key else {
        return Ok(false);
    };
    for table in ["event_chunks", "user_states", "days", "simulations"] {
        tx.execute(&format!("DELETE FROM {table} WHERE sim = ?1"), [key])?;
    }
    tx.commit().map_err(super::storage_error)?;
    Ok(true)
}
