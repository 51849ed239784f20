//! An in-memory driver: keeps the due queue in a `BTreeMap` and runs days back to back. The
//! store does the same with SQLite; this one serves engine tests and the engine benchmark.

use super::codec;
use super::engine::{DayOutput, Engine};
use super::state::UserState;
use std::collections::BTreeMap;

/// A simulation held in memory.
pub struct MemorySim {
    /// The compiled simulation.
    pub engine: Engine,
    next_day: u32,
    due: BTreeMap<u32, Vec<UserState>>,
    done: Vec<UserState>,
}

impl MemorySim {
    /// A simulation that has generated no day yet.
    pub fn new(engine: Engine) -> Self {
        MemorySim {
            engine,
            next_day: 0,
            due: BTreeMap::new(),
            done: Vec::new(),
        }
    }

    /// The next day to generate.
    pub fn next_day(&self) -> u32 {
        self.next_day
    }

    /// Generates the next day.
    pub fn step(&mut self) -> DayOutput {
        let day = self.next_day;
        let due = self.due.remove(&day).unwrap_or_default();
        let out = self.engine.step_day(day, due);
        for st in &out.states {
            match st.next_due() {
                Some(d) => self.due.entry(d).or_default().push(st.clone()),
                None => self.done.push(st.clone()),
            }
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

    /// Serialises all user state in the store's binary form.
    pub fn save(&self) -> Vec<u8> {
        codec::encode_states(&self.states())
    }

    /// Restores a simulation saved by [`MemorySim::save`] after `next_day` days.
    ///
    /// # Errors
    /// [`codec::CodecError`] if the blob does not decode.
    pub fn restore(engine: Engine, next_day: u32, blob: &[u8]) -> Result<Self, codec::CodecError> {
        let mut sim = MemorySim::new(engine);
        sim.next_day = next_day;
        codec::for_each_state(blob, |st| match st.next_due() {
            Some(d) => sim.due.entry(d).or_default().push(st),
            None => sim.done.push(st),
        })?;
        Ok(sim)
    }
}
