//! StreamEvents' pipeline: [`App::prepare_stream`] resolves a query against a simulation;
//! [`EventStream::run`] reads each day's chunks, renders and encodes its events in time slices
//! on all cores, and cuts them into batches in stream order (time, device, event id).

use super::{parse_ids, App, EventQuery, GenerateJob, DEFAULT_BATCH, MAX_BATCH, MAX_DAYS_PER_CALL};
use crate::error::{Error, Result};
use crate::store::days;
use crate::store::days::Packed;
use crate::store::sims::{self, SimRef, SimRow};
use crate::store::Conn;
use crate::validate::{parse_date, truncate, validate_id};
use crate::wire::EventBatch;
use ampsim_engine::ids::person_of;
use ampsim_engine::{codec, Engine, UserDay, UserPropertiesView};
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

impl App {
    /// Resolves a query's day range against a simulation.
    fn day_range(&self, sim: &SimRow, engine: &Engine, q: &EventQuery) -> Result<(u32, u32)> {
        let from = if q.from_date.is_empty() {
            sim.start_date
        } else {
            parse_date("from_date", &q.from_date)?
        };
        let to = if q.to_date.is_empty() {
            if sim.emitted_days() == 0 {
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
                    sim.emitted_days(),
                    if sim.emitted_days() == 0 { "none".to_string() } else { engine.date_of(sim.days_generated - 1).to_string() },
                    engine.date_of(to_day)
                )));
            }
            let missing = to_day + 1 - sim.days_generated.max(engine.first_day());
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
            sim: sim.handle(),
            engine,
            from_day,
            to_day,
            person: device.map(person_of).or(user),
            device,
            user_only: user.is_some(),
            types: q.event_types.iter().cloned().collect(),
            batch,
            view: q.user_properties,
            generate,
        })
    }
}

/// A resolved event query, ready to run on a blocking thread.
pub struct EventStream {
    app: Arc<App>,
    conn: Conn,
    sim: SimRef,
    engine: Arc<Engine>,
    from_day: u32,
    to_day: u32,
    /// The person whose events are asked for (by device id or user id).
    person: Option<u64>,
    /// Only this device's events (the person's first or second device), when asked by
    /// device id.
    device: Option<u64>,
    /// Only events that carry the user id, when asked by user id.
    user_only: bool,
    types: BTreeSet<String>,
    batch: usize,
    view: UserPropertiesView,
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
#[allow(clippy::too_many_arguments)]
fn stream_day(
    engine: &Engine,
    view: UserPropertiesView,
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
            .map(|(p, rs)| encode_part(engine, view, p as u32, rs, &in_slice, pool.take()))
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
        let (only, device, user_only, types) =
            (self.person, self.device, self.user_only, &self.types);
        let keep = |r: &UserDay, i: usize, e: &ampsim_engine::state::EventRec| {
            (only.is_none() || only == Some(r.device))
                && device.is_none_or(|d| r.device_of(i) == d)
                && (!user_only || r.has_user_id(i))
                && (types.is_empty() || types.contains(engine.event_type_name(e.kind, e.aux)))
        };
        for day in self.from_day..=self.to_day {
            if self.app.shutdown.is_cancelled() {
                return Err(Error::Unavailable("server is shutting down".into()));
            }
            let blobs = match only {
                Some(dev) => days::device_chunk_blobs(&self.conn, &self.sim, dev, day, day)?
                    .into_iter()
                    .map(|(_, b)| b)
                    .collect(),
                None => days::day_chunk_blobs(&self.conn, &self.sim, day)?,
            };
            let records = decode_chunks(engine, day, &blobs)?;
            let day_start = engine.day_start_ms(day);
            if !stream_day(
                engine,
                self.view,
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

/// One day's events as a complete Parquet file.
pub struct DayParquet {
    /// The day.
    pub date: chrono::NaiveDate,
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Events in it.
    pub events: u64,
}

impl EventStream {
    /// Writes each day of the range as one Parquet file ([`crate::columnar`], the writer of
    /// `ampsim generate --out`, with the same batches and so the same bytes) and hands the
    /// files to `sink` in day order until it returns false. A day is read, rendered straight
    /// into Arrow columns and encoded on all cores while the previous one is sent. The query's
    /// filters and batch size do not apply: a file holds the whole day.
    ///
    /// # Errors
    /// Storage and decoding errors; generation errors when missing days are generated first.
    pub fn run_parquet(
        self,
        simulation_id: &str,
        mut sink: impl FnMut(DayParquet) -> bool,
    ) -> Result<()> {
        if let Some(job) = self.generate {
            job.run(|_| true)?;
        }
        let engine = &*self.engine;
        for day in self.from_day..=self.to_day {
            if self.app.shutdown.is_cancelled() {
                return Err(Error::Unavailable("server is shutting down".into()));
            }
            let blobs = days::day_chunk_blobs(&self.conn, &self.sim, day)?;
            let records = decode_chunks(engine, day, &blobs)?;
            let date = engine.date_of(day);
            let bug = |e: ::parquet::errors::ParquetError| {
                Error::Bug(format!("writing the Parquet file of {date}: {e}"))
            };
            let mut file = crate::columnar::ParquetSink::new(
                Vec::new(),
                crate::columnar::export_metadata(simulation_id, date),
                crate::columnar::ZSTD_LEVEL,
            )
            .map_err(bug)?;
            for batch in engine.day_batches(&records, crate::columnar::RENDER_ROWS) {
                file.write(batch).map_err(bug)?;
            }
            let (bytes, events) = file.finish().map_err(bug)?;
            if !sink(DayParquet {
                date,
                bytes,
                events,
            }) {
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
    view: UserPropertiesView,
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
        engine.for_each_event_as(
            r,
            view,
            |i, e| keep(r, i, e),
            |i, e| {
                // A day with second-device events changes device within the user-day: the
                // shared fields are encoded afresh for each event.
                if r.second.is_some() {
                    writer.next_user_day();
                }
                let start = out.bytes.len();
                writer.write(e, &mut out.bytes);
                out.slots.push(Slot {
                    key: (e.time, r.device_of(i), e.event_id),
                    part,
                    start: start as u32,
                    end: out.bytes.len() as u32,
                });
            },
        );
    }
    out
}

/// The error for a stored record of `day` that fails to decode or check.
pub fn corrupt_day(engine: &Engine, day: u32, e: codec::CodecError) -> Error {
    Error::Corrupt(format!("events of {}: {e}", engine.date_of(day)))
}

/// Decompresses, decodes and checks a day's chunks (on all cores), in chunk order.
///
/// # Errors
/// [`Error::Corrupt`] if a blob does not decompress or decode, or holds a record that this
/// scenario cannot render.
pub fn decode_chunks(engine: &Engine, day: u32, blobs: &[Packed]) -> Result<Vec<UserDay>> {
    let start = engine.day_start_ms(day);
    let parts: Vec<Result<Vec<UserDay>>> = blobs
        .par_iter()
        .map(|b| {
            let records = codec::decode_user_days(&b.unpack()?, day, start)
                .map_err(|e| corrupt_day(engine, day, e))?;
            for r in &records {
                engine
                    .check_user_day(r)
                    .map_err(|e| corrupt_day(engine, day, e))?;
            }
            Ok(records)
        })
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
    use ampsim_engine::{Scenario, SimConfig};
    use chrono::NaiveDate;

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
                UserPropertiesView::Sent,
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
            UserPropertiesView::Sent,
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
}
