//! Generated days: committing a day atomically, loading the users due on a day, and reading
//! stored records back.
//!
//! Architecture Invariant: every user's latest state is in exactly one `user_states` row. A
//! day's transaction deletes the rows due that day (their users were just processed) and
//! writes the processed users' new states grouped by their next due day (-1 = none), together
//! with the day's event chunks, its `days` row and the `days_generated` marker. The marker is
//! checked in the same transaction, so two writers can never commit the same day twice.

use super::sims::SimRef;
use super::Conn;
use crate::error::{Error, Result};
use ampsim_engine::codec;
use ampsim_engine::{DayOutput, Engine, UserState};
use rayon::prelude::*;
use rusqlite::params;
use std::collections::BTreeMap;

/// The width of a new simulation's event chunks in device-number bits: one `event_chunks` row
/// per day holds the records of 16,384 consecutive device numbers (`device >> CHUNK_BITS`).
/// Wide enough that a day's sparse records (paying customers are about one device in a
/// thousand, each in the product every few days) share rows: at 10 bits, half of a day's rows
/// held one record each and the row count, not the bytes, set the commit time.
pub const CHUNK_BITS: u32 = 14;
/// The chunk width of simulations created before schema version 4, whose rows carry a bitmap
/// of their devices rather than a list.
const BITMAP_CHUNK_BITS: u32 = 10;
/// zstd level for stored blobs: fast, and about 2× smaller than the raw varints.
const ZSTD_LEVEL: i32 = 3;
/// `due_day` of users with nothing scheduled.
const NEVER: i64 = -1;

/// How a simulation's event chunks are cut: `bits` of the device number are the offset in the
/// chunk, the rest is the chunk. A row's `devices` blob names the devices it holds: a
/// `2^bits`-bit bitmap for 10-bit chunks (schema version 3 and before), else the sorted
/// offsets as little-endian u16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChunkLayout {
    bits: u32,
}

impl ChunkLayout {
    fn of(sim: &SimRef) -> Self {
        debug_assert!(sim.chunk_bits <= 16, "offsets are stored as u16");
        ChunkLayout {
            bits: sim.chunk_bits,
        }
    }

    /// The chunk of a device.
    fn chunk(self, device: u64) -> i64 {
        (device >> self.bits) as i64
    }

    /// The device's offset in its chunk.
    fn offset(self, device: u64) -> usize {
        (device & ((1u64 << self.bits) - 1)) as usize
    }

    /// The `devices` blob of a row holding `records` (in device order).
    fn devices(self, records: &[ampsim_engine::UserDay]) -> Vec<u8> {
        if self.bits == BITMAP_CHUNK_BITS {
            let mut bitmap = vec![0u8; (1usize << self.bits) / 8];
            for r in records {
                let i = self.offset(r.device);
                bitmap[i / 8] |= 1 << (i % 8);
            }
            bitmap
        } else {
            let mut list = Vec::with_capacity(records.len() * 2);
            for r in records {
                list.extend_from_slice(&(self.offset(r.device) as u16).to_le_bytes());
            }
            list
        }
    }

    /// Whether a row's `devices` blob names `device` (of the row's chunk).
    fn holds(self, devices: &[u8], device: u64) -> bool {
        let i = self.offset(device);
        if self.bits == BITMAP_CHUNK_BITS {
            return devices.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
        }
        let (mut lo, mut hi) = (0, devices.len() / 2);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let v = usize::from(u16::from_le_bytes([devices[2 * mid], devices[2 * mid + 1]]));
            match v.cmp(&i) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }
}

/// Compresses a blob as one zstd frame carrying a checksum of its content (xxHash-32, checked
/// by every decompression), so a damaged blob is an error, not wrong records. Blobs written
/// before the checksum decode as they did.
fn compress(raw: &[u8]) -> Vec<u8> {
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        let c = c.get_or_insert_with(|| {
            let mut c = zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("a zstd context");
            c.include_checksum(true)
                .expect("the checksum flag is valid");
            c
        });
        c.compress(raw)
            .expect("in-memory zstd compression cannot fail")
    })
}

fn decompress(blob: &[u8]) -> Result<Vec<u8>> {
    zstd::decode_all(blob).map_err(|e| Error::Corrupt(format!("zstd: {e}")))
}

/// One `event_chunks` row.
struct ChunkRow {
    chunk: i64,
    records: i64,
    events: i64,
    devices: Vec<u8>,
    data: Vec<u8>,
}

/// A day's encoded rows, ready to insert: built outside the transaction, on all cores.
pub struct EncodedDay {
    day: u32,
    sessions: u64,
    events: u64,
    new_users: u64,
    returning_users: u64,
    chunks: Vec<ChunkRow>,
    states: Vec<(i64, i64, Vec<u8>)>,
}

impl EncodedDay {
    /// Encodes and compresses a day's output, cut into the simulation's chunks.
    pub fn new(engine: &Engine, sim: &SimRef, out: &DayOutput) -> EncodedDay {
        let layout = ChunkLayout::of(sim);
        let day_start = engine.day_start_ms(out.day);
        let mut groups: Vec<&[ampsim_engine::UserDay]> = Vec::new();
        let mut rest = &out.records[..];
        while let Some(first) = rest.first() {
            let c = layout.chunk(first.device);
            let n = rest
                .iter()
                .take_while(|r| layout.chunk(r.device) == c)
                .count();
            groups.push(&rest[..n]);
            rest = &rest[n..];
        }
        let chunks = groups
            .par_iter()
            .map(|g| {
                let events: usize = g.iter().map(|r| r.events.len()).sum();
                ChunkRow {
                    chunk: layout.chunk(g[0].device),
                    records: g.len() as i64,
                    events: events as i64,
                    devices: layout.devices(g),
                    data: compress(&codec::encode_user_days(day_start, g)),
                }
            })
            .collect();
        let mut by_due: BTreeMap<i64, Vec<&UserState>> = BTreeMap::new();
        for st in &out.states {
            let due = st.next_due().map_or(NEVER, i64::from);
            by_due.entry(due).or_default().push(st);
        }
        let by_due: Vec<(i64, Vec<&UserState>)> = by_due.into_iter().collect();
        let states = by_due
            .par_iter()
            .map(|(due, sts)| {
                (
                    *due,
                    sts.len() as i64,
                    compress(&codec::encode_states(sts.iter().copied())),
                )
            })
            .collect();
        EncodedDay {
            day: out.day,
            sessions: u64::from(out.sessions),
            events: out.events,
            new_users: u64::from(out.new_users),
            returning_users: u64::from(out.returning_users),
            chunks,
            states,
        }
    }

    /// Stored bytes of this day (compressed blobs).
    pub fn bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.devices.len() + c.data.len())
            .sum::<usize>()
            + self.states.iter().map(|s| s.2.len()).sum::<usize>()
    }
}

/// Commits one generated day in one transaction: events, user states and the day marker.
///
/// # Errors
/// [`Error::Aborted`] if the day was committed already (another writer); storage errors,
/// with a full disk as [`Error::ResourceExhausted`]. On error nothing of the day is stored.
pub fn commit_day(conn: &mut Conn, sim: &SimRef, enc: &EncodedDay) -> Result<()> {
    let sim_key = sim.key;
    let conn = conn.raw_mut();
    let tx = conn.transaction().map_err(super::storage_error)?;
    let marked = tx
        .prepare_cached(
            "UPDATE simulations SET days_generated = ?1 + 1, sessions = sessions + ?2,
                 events = events + ?3, users = users + ?4
             WHERE sim = ?5 AND uid = ?6 AND days_generated = ?1",
        )?
        .execute(params![
            enc.day,
            enc.sessions as i64,
            enc.events as i64,
            enc.new_users as i64,
            sim_key,
            sim.uid
        ])
        .map_err(super::storage_error)?;
    if marked != 1 {
        // Say which: the simulation is gone, or another writer got there first.
        sim.check(&tx)?;
        return Err(Error::Aborted(format!(
            "day {} of simulation {:?} was already committed by another writer (another server on the same file?)",
            enc.day, sim.id
        )));
    }
    tx.prepare_cached("DELETE FROM user_states WHERE sim = ?1 AND due_day = ?2")?
        .execute(params![sim_key, enc.day])
        .map_err(super::storage_error)?;
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO user_states (sim, due_day, written_day, users, data) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (due, n, data) in &enc.states {
            ins.execute(params![sim_key, due, enc.day, n, data])
                .map_err(super::storage_error)?;
        }
        let mut ins = tx.prepare_cached(
            "INSERT INTO event_chunks (sim, day, chunk, records, events, devices, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for c in &enc.chunks {
            ins.execute(params![
                sim_key, enc.day, c.chunk, c.records, c.events, c.devices, c.data
            ])
            .map_err(super::storage_error)?;
        }
    }
    tx.prepare_cached(
        "INSERT INTO days (sim, day, sessions, events, new_users, returning_users) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        sim_key,
        enc.day,
        enc.sessions as i64,
        enc.events as i64,
        enc.new_users as i64,
        enc.returning_users as i64
    ])
    .map_err(super::storage_error)?;
    tx.commit().map_err(super::storage_error)?;
    Ok(())
}

/// The users due on `day` (their scheduled return or trial event), in device order.
///
/// # Errors
/// Storage errors; [`Error::Corrupt`] if a blob does not decode.
pub fn load_due(conn: &Conn, sim: &SimRef, day: u32) -> Result<Vec<UserState>> {
    let tx = conn.raw().unchecked_transaction()?;
    sim.check(&tx)?;
    let mut stmt =
        tx.prepare_cached("SELECT data FROM user_states WHERE sim = ?1 AND due_day = ?2")?;
    let mut rows = stmt.query(params![sim.key, day])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let raw = decompress(r.get_ref(0)?.as_blob()?)?;
        codec::for_each_state(&raw, |s| out.push(s))?;
    }
    drop(rows);
    drop(stmt);
    tx.commit()?;
    if let Some(bad) = out.iter().find(|s| s.next_due() != Some(day)) {
        return Err(Error::Corrupt(format!(
            "user state of device {} is filed under day {day} but due on {:?}",
            bad.device,
            bad.next_due()
        )));
    }
    out.sort_unstable_by_key(|s| s.device);
    Ok(out)
}

/// How many users are due on `day`, from the row counts (nothing is decoded): what
/// generating the day will hold in memory, with the day's new users.
///
/// # Errors
/// Storage errors; [`Error::NotFound`] if the simulation is gone.
pub fn due_users(conn: &Conn, sim: &SimRef, day: u32) -> Result<u64> {
    let tx = conn.raw().unchecked_transaction()?;
    sim.check(&tx)?;
    let n: i64 = tx
        .prepare_cached(
            "SELECT coalesce(sum(users), 0) FROM user_states WHERE sim = ?1 AND due_day = ?2",
        )?
        .query_row(params![sim.key, day], |r| r.get(0))?;
    tx.commit()?;
    Ok(n.max(0) as u64)
}

/// The latest state of one device, if it has one: it is in a blob written on or after
/// `since_day` (every processing of a user rewrites its state, so the latest was written on
/// the last day the user was processed, at or after its last record's day).
///
/// # Errors
/// Storage errors; [`Error::Corrupt`] if a blob does not decode.
pub fn state_of(
    conn: &Conn,
    sim: &SimRef,
    device: u64,
    since_day: u32,
) -> Result<Option<UserState>> {
    let tx = conn.raw().unchecked_transaction()?;
    sim.check(&tx)?;
    // Nearly always the state was written on `since_day` itself (a processed user has a record
    // that day): read that day's blobs first, and only then the later days', newest first.
    // (Scanning from the newest day decoded most of the simulation's states for a user last
    // seen long ago: about a second per journey at scale 1.)
    let mut found = None;
    for sql in [
        "SELECT data FROM user_states WHERE sim = ?1 AND written_day = ?2",
        "SELECT data FROM user_states WHERE sim = ?1 AND written_day > ?2 ORDER BY written_day DESC",
    ] {
        let mut stmt = tx.prepare_cached(sql)?;
        let mut rows = stmt.query(params![sim.key, since_day])?;
        while let Some(r) = rows.next()? {
            let raw = decompress(r.get_ref(0)?.as_blob()?)?;
            codec::for_each_state(&raw, |s| {
                if s.device == device {
                    found = Some(s);
                }
            })?;
            if found.is_some() {
                break;
            }
        }
        if found.is_some() {
            break;
        }
    }
    tx.commit()?;
    Ok(found)
}

/// The raw (compressed) state blobs of a simulation, for decoding on several cores.
///
/// # Errors
/// Storage errors.
pub fn state_blobs(conn: &Conn, sim: &SimRef) -> Result<Vec<Packed>> {
    let tx = conn.raw().unchecked_transaction()?;
    sim.check(&tx)?;
    let rows = tx
        .prepare_cached("SELECT data FROM user_states WHERE sim = ?1")?
        .query_map([sim.key], |r| r.get::<_, Vec<u8>>(0).map(Packed))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.commit()?;
    Ok(rows)
}

/// A stored blob as read, still compressed: the store's packing is its own, so readers (often
/// on several cores) unpack it with [`Packed::unpack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed(Vec<u8>);

impl Packed {
    /// The blob's contents, decompressed: a codec form of the engine's records or states.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if it does not decompress.
    pub fn unpack(&self) -> Result<Vec<u8>> {
        decompress(&self.0)
    }

    /// Its stored (compressed) size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty blob.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The compressed event chunks of one day, in chunk order.
///
/// # Errors
/// Storage errors.
pub fn day_chunk_blobs(conn: &Conn, sim: &SimRef, day: u32) -> Result<Vec<Packed>> {
    let tx = conn.raw().unchecked_transaction()?;
    sim.check(&tx)?;
    let rows = tx
        .prepare_cached("SELECT data FROM event_chunks WHERE sim = ?1 AND day = ?2 ORDER BY chunk")?
        .query_map(params![sim.key, day], |r| {
            r.get::<_, Vec<u8>>(0).map(Packed)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.commit()?;
    Ok(rows)
}

/// The compressed chunks holding one device's records over a day range: (day, blob). Rows
/// whose device list lacks the device are skipped without reading their blob.
///
/// # Errors
/// Storage errors.
pub fn device_chunk_blobs(
    conn: &Conn,
    sim: &SimRef,
    device: u64,
    from_day: u32,
    to_day: u32,
) -> Result<Vec<(u32, Packed)>> {
    let (tx, sim_key) = (conn.raw().unchecked_transaction()?, sim.key);
    sim.check(&tx)?;
    let mut stmt = tx.prepare_cached(
        "SELECT day, devices, data FROM event_chunks WHERE sim = ?1 AND chunk = ?2 AND day BETWEEN ?3 AND ?4 ORDER BY day",
    )?;
    let layout = ChunkLayout::of(sim);
    let mut rows = stmt.query(params![sim_key, layout.chunk(device), from_day, to_day])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        if layout.holds(r.get_ref(1)?.as_blob()?, device) {
            out.push((r.get::<_, u32>(0)?, Packed(r.get::<_, Vec<u8>>(2)?)));
        }
    }
    drop(rows);
    drop(stmt);
    tx.commit()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ampsim_engine::UserDay;

    fn record(device: u64) -> UserDay {
        UserDay {
            device,
            day: 0,
            event_id_base: 0,
            first_touch: Default::default(),
            held: None,
            user_id_from: 0,
            trial: None,
            plan: None,
            sessions: Default::default(),
            events: Vec::new(),
            second: None,
        }
    }

    /// Both row layouts name exactly the devices they hold: the bitmap of 10-bit chunks and
    /// the offset list of wider ones, at the chunk's edges too.
    #[test]
    fn a_rows_device_blob_names_exactly_its_devices() {
        for bits in [BITMAP_CHUNK_BITS, CHUNK_BITS] {
            let layout = ChunkLayout { bits };
            let base = (7u64 << 32) | (3 << bits);
            let width = 1u64 << bits;
            let held: Vec<u64> = (0..width)
                .filter(|i| i % 7 == 0 || *i == width - 1)
                .map(|i| base + i)
                .collect();
            let records: Vec<UserDay> = held.iter().map(|&d| record(d)).collect();
            let blob = layout.devices(&records);
            assert!(held.iter().all(|&d| layout.chunk(d) == layout.chunk(base)));
            for i in 0..width {
                let d = base + i;
                assert_eq!(
                    layout.holds(&blob, d),
                    held.contains(&d),
                    "{bits}-bit chunks, offset {i}"
                );
            }
            assert!(!layout.holds(&layout.devices(&[]), base));
        }
    }
}
