//! ampsim's simulation engine: pure and deterministic.
//!
//! Architecture Invariant: nothing in this crate touches SQLite, tokio, gRPC, the wall clock, the
//! file system, or the iteration order of a hash map (its manifest names none of those crates,
//! and its `clippy.toml` bans the std items). Given the same [`SimConfig`] and the same due
//! users, [`Engine::step_day`] returns the same output on any machine and thread count.
//!
//! - `scenario`: the TOML scenario, its merge onto the default, and validation.
//! - `calendar`: time zones, holidays and the hour curves: when each geography is online.
//! - `rng`: keyed randomness (seed, day, user, purpose) → PCG.
//! - `state`: user state and the compact per-user day record.
//! - `engine`: the day step.
//! - `render`: compact records → Amplitude HTTP V2 events, canonical JSON, digests.
//! - `schema`: the one description of an event's fields, from which every output is written.
//! - `json`: the canonical and HTTP V2 JSON forms of an event, from the schema.
//! - `labels`: ground truth per user (latent intent, first touch, the outcome model's
//!   probability) and its Arrow schema.
//! - `codec`: the binary form of states and records (what the store persists).
//! - `ids`: reversible device ids and user ids, and insert ids.
//! - `memory`: an in-memory driver (due queue in a map), for tests and the engine benchmark.

pub mod accounts;
pub mod calendar;
pub mod check;
pub mod clients;
pub mod codec;
pub mod columns;
pub mod dist;
pub mod engine;
pub mod ids;
pub mod json;
pub mod labels;
pub mod memory;
pub mod names;
pub mod render;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod schema;
pub mod state;

pub use engine::{DayOutput, Engine, Shard, SimConfig, ENGINE_VERSION};
pub use render::{Event, EventDigest, Prop, UserPropertiesView};
pub use scenario::{Scenario, ScenarioError};
pub use state::{EventKind, UserDay, UserState};
