//! An in-memory driver: keeps the due queue in a `BTreeMap` and runs days back to back. The
//! store does the same with SQLite; this one serves engine tests and the engine benchmark.

use super::codec;
use super::engine::{DayOutput, Engine, Shard};
use super::state::UserState;
use std::collections::BTreeMap;

/// A simulation held in memory.
pub struct MemorySim {
    /// The compiled simulation.
    pub engine: Engine,
    /// The part of the simulation this one runs.
    pub shard: Shard,
    next_day: u32,
    due: BTreeMap<u32, Vec<UserState>>,
    done: Vec<UserState>,
    /// Whether the states of users who will never be due again are kept (for
    /// [`MemorySim::states`] and labels) or dropped as they finish.
    keep_finished: bool,
}

impl MemorySim {
    /// A simulation ready for its first emitted day: the warm start is run here.
    pub fn new(engine: Engine) -> Self {
        Self::new_shard(engine, Shard::WHOLE)
    }

    /// One shard of a simulation, ready for its first emitted day: the warm start's days
    /// (before [`Engine::first_day`]) are run here and their outputs dropped.
    pub fn new_shard(engine: Engine, shard: Shard) -> Self {
        Self::warmed_up(engine, shard, true)
    }

    /// One shard, ready for its first emitted day, that keeps only what it needs to go on:
    /// the states of users who will never be due again are dropped as they finish (in the
    /// warm start too), so [`MemorySim::states`] and [`MemorySim::save`] hold the users still
    /// due. What a reader that wants events only runs (`generate --out`, the Python events
    /// reader); with [`MemorySim::step_events`] it never copies a state.
    pub fn events_only(engine: Engine, shard: Shard) -> Self {
        Self::warmed_up(engine, shard, false)
    }

    fn warmed_up(engine: Engine, shard: Shard, keep_finished: bool) -> Self {
        let mut sim = MemorySim {
            engine,
            shard,
            next_day: 0,
            due: BTreeMap::new(),
            done: Vec::new(),
            keep_finished,
        };
        while sim.next_day < sim.engine.first_day() {
            sim.advance(false);
        }
        sim
    }

    /// From now on, drop (`false`) or keep the states of users who will never be due again;
    /// dropping also forgets those kept so far.
    pub fn set_keep_finished(&mut self, keep: bool) {
        self.keep_finished = keep;
        if !keep {
            self.forget_finished();
        }
    }

    /// The next day to generate (a day number: see [`Engine::first_day`]).
    pub fn next_day(&self) -> u32 {
        self.next_day
    }

    /// Emitted days generated so far (the next day's offset from the start date).
    pub fn days_done(&self) -> u32 {
        self.next_day - self.engine.first_day()
    }

    /// Generates the next day.
    pub fn step(&mut self) -> DayOutput {
        self.advance(true)
    }

    /// Generates the next day without handing out its states: the output's `states` is
    /// empty (they move into the simulation instead of being copied), its records and counts
    /// are those of [`MemorySim::step`].
    pub fn step_events(&mut self) -> DayOutput {
        self.advance(false)
    }

    fn advance(&mut self, with_states: bool) -> DayOutput {
        let day = self.next_day;
        let due = self.due.remove(&day).unwrap_or_default();
        let mut out = self.engine.step_day_shard(day, due, self.shard);
        let mut file = |st: UserState| match st.next_due() {
            Some(d) => self.due.entry(d).or_default().push(st),
            None if self.keep_finished => self.done.push(st),
            None => {}
        };
        if with_states {
            out.states.iter().cloned().for_each(&mut file);
        } else {
            std::mem::take(&mut out.states).into_iter().for_each(file);
        }
        self.next_day += 1;
        out
    }

    /// Every user's latest state, in device order.
    pub fn states(&self) -> Vec<UserState> {
        let mut v: Vec<UserState> = self
            .due
            .values()
            .flatten()
            .chain(&self.done)
            .cloned()
            .collect();
        v.sort_by_key(|s| s.device);
        v
    }

    /// Drops the users who will never be due again (their states are not needed to go on):
    /// what a long run that only wants events keeps memory bounded with.
    pub fn forget_finished(&mut self) {
        self.done = Vec::new();
    }

    /// Takes the states of the users who will never be due again (their labels are final),
    /// leaving them out of [`MemorySim::states`] from then on.
    pub fn take_finished(&mut self) -> Vec<UserState> {
        std::mem::take(&mut self.done)
    }

    /// Serialises all user state in the store's binary form.
    pub fn save(&self) -> Vec<u8> {
        codec::encode_states(&self.states())
    }

    /// Restores a simulation saved by [`MemorySim::save`] before day `next_day`.
    ///
    /// # Errors
    /// [`codec::CodecError`] if the blob does not decode.
    pub fn restore(engine: Engine, next_day: u32, blob: &[u8]) -> Result<Self, codec::CodecError> {
        Self::restore_shard(engine, Shard::WHOLE, next_day, blob)
    }

    /// Restores one shard saved by [`MemorySim::save`] before day `next_day` (a day number,
    /// so at least [`Engine::first_day`]).
    ///
    /// # Errors
    /// [`codec::CodecError`] if the blob does not decode.
    pub fn restore_shard(
        engine: Engine,
        shard: Shard,
        next_day: u32,
        blob: &[u8],
    ) -> Result<Self, codec::CodecError> {
        let mut sim = MemorySim {
            engine,
            shard,
            next_day,
            due: BTreeMap::new(),
            done: Vec::new(),
            keep_finished: true,
        };
        codec::for_each_state(blob, |st| match st.next_due() {
            Some(d) => sim.due.entry(d).or_default().push(st),
            None => sim.done.push(st),
        })?;
        Ok(sim)
    }
}
