//! Acceptance tests of the simulation engine: determinism, resumability, thread-count
//! independence, journey invariants on rendered events, rates that follow the scenario,
//! scenario validation and the binary codec.
//!
//! Population scales are small (0.002–0.03; 0.1 for the rate tests, which only count) so the
//! whole module runs in about ten seconds in release mode.

use ampsim_engine::codec;
use ampsim_engine::memory::MemorySim;
use ampsim_engine::report::{Report, ReportBuilder, RowStatus};
use ampsim_engine::scenario::Targeting;
use ampsim_engine::state::{EventKind, UserDay, UserState};
use ampsim_engine::{Engine, EventDigest, Scenario, SimConfig};
use chrono::NaiveDate;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

/// The start date used throughout (a Monday).
fn start() -> NaiveDate {
    date(2025, 1, 6)
}

fn config(toml: &str, seed: u64, start_date: NaiveDate, scale: f64) -> SimConfig {
    SimConfig {
        scenario: Scenario::from_toml(toml).expect("valid scenario"),
        seed,
        start_date,
        population_scale: scale,
    }
}

/// Steps `days` days and feeds every rendered event, in stream order, into `digest`.
fn step_into(sim: &mut MemorySim, days: u32, digest: &mut EventDigest) {
    for _ in 0..days {
        let out = sim.step();
        for e in sim.engine.render_day(&out) {
            digest.add(&e);
        }
    }
}

/// SHA-256 digest and event count of the first `days` days of a simulation.
fn digest_of(cfg: &SimConfig, days: u32) -> (String, u64) {
    let mut sim = MemorySim::new(Engine::new(cfg.clone()));
    let mut d = EventDigest::new();
    step_into(&mut sim, days, &mut d);
    let n = d.count();
    (d.finish(), n)
}

/// Runs `days` days and builds the acceptance report (records fed day by day, then states).
fn report_of(toml: &str, seed: u64, scale: f64, days: u32) -> Report {
    report_judging(toml, toml, seed, scale, days)
}

/// The report of the scenario `judge` over events simulated with the scenario `simulated`.
fn report_judging(judge: &str, simulated: &str, seed: u64, scale: f64, days: u32) -> Report {
    // The builder borrows an engine for the scenario; the simulation owns its own.
    let engine = Engine::new(config(judge, seed, start(), scale));
    let mut sim = MemorySim::new(Engine::new(config(simulated, seed, start(), scale)));
    let mut b = ReportBuilder::new(&engine, engine.first_day() + days - 1);
    for _ in 0..days {
        let out = sim.step();
        for r in &out.records {
            b.add_user_day(r);
        }
    }
    for st in sim.states() {
        b.add_state(&st);
    }
    b.finish()
}

/// Asserts that the named report rows exist, have a sample and hold: they pass, or the sample is
/// too small for the report to judge (insufficient data) yet the measurement is still within
/// 4 standard deviations of the target.
fn assert_rows_pass(report: &Report, keys: &[&str]) {
    for key in keys {
        let row = report
            .row(key)
            .unwrap_or_else(|| panic!("report has no row {key}\n{}", report.to_table()));
        assert!(
            row.sample > 0,
            "row {key} has no sample\n{}",
            report.to_table()
        );
        let holds = match row.status {
            RowStatus::Pass => true,
            RowStatus::Insufficient => (row.measured - row.target).abs() <= row.tolerance,
            RowStatus::Fail | RowStatus::Info => false,
        };
        assert!(holds, "row {key} does not hold\n{}", report.to_table());
    }
}

fn measured(report: &Report, key: &str) -> f64 {
    report
        .row(key)
        .unwrap_or_else(|| panic!("report has no row {key}"))
        .measured
}

// ---------------------------------------------------------------------------------------------
// 1–4: determinism
// ---------------------------------------------------------------------------------------------

#[test]
fn same_inputs_give_the_same_digest_and_other_inputs_another() {
    let days = 10;
    let base = config("", 7, start(), 0.005);
    let (a, na) = digest_of(&base, days);
    let (b, nb) = digest_of(&base, days);
    assert!(na > 1_000, "too few events to mean anything: {na}");
    assert_eq!((&a, na), (&b, nb), "same inputs gave different output");

    let other_seed = SimConfig {
        seed: 8,
        ..base.clone()
    };
    let (c, _) = digest_of(&other_seed, days);
    assert_ne!(a, c, "a different seed gave the same digest");

    let other_start = SimConfig {
        start_date: date(2025, 1, 7),
        ..base.clone()
    };
    let (d, _) = digest_of(&other_start, days);
    assert_ne!(a, d, "a different start date gave the same digest");

    let other_scale = SimConfig {
        population_scale: 0.006,
        ..base
    };
    let (e, _) = digest_of(&other_scale, days);
    assert_ne!(a, e, "a different scale gave the same digest");
}

/// The digest of a fixed input (default scenario, seed 42, start 2025-01-06, scale 0.002,
/// 14 days).
///
/// This value must only change deliberately: any change to the engine's output (randomness,
/// rendering, ids, the default scenario) changes it. When a change is intended, bump
/// `ENGINE_VERSION` if stored simulations are affected, update the constants below, and say so
/// in the commit message.
const GOLDEN_DIGEST: &str = "0f9bdffde20f36aeef8fa2a5f760a3666ba5240970edc50d64a334fa9fb363b9";
const GOLDEN_EVENTS: u64 = 12199;

#[test]
fn golden_digest() {
    let cfg = config("", 42, start(), 0.002);
    let (digest, events) = digest_of(&cfg, 14);
    assert_eq!(
        (digest.as_str(), events),
        (GOLDEN_DIGEST, GOLDEN_EVENTS),
        "the engine's output changed; if this is deliberate, update GOLDEN_DIGEST and \
         GOLDEN_EVENTS and note it in the commit message"
    );
}

/// Shard k of N owns a fixed part of each day's devices and runs on its own; for every N the
/// shards' events, merged into stream order day by day, are the single process's, event for
/// event (digest and count), and each shard's users are only its own.
#[test]
fn the_shards_together_are_the_single_process_for_any_n() {
    use ampsim_engine::Shard;
    let cfg = config("", 23, start(), 0.01);
    let days = 30;
    let whole = digest_of(&cfg, days);
    assert!(whole.1 > 20_000, "a real run: {} events", whole.1);
    for n in [1u32, 2, 7, 16] {
        let mut shards: Vec<MemorySim> = (0..n)
            .map(|k| MemorySim::new_shard(Engine::new(cfg.clone()), Shard::new(k, n).unwrap()))
            .collect();
        let mut d = EventDigest::new();
        let mut per_shard = vec![0u64; n as usize];
        for _ in 0..days {
            let mut records = Vec::new();
            for (k, sim) in shards.iter_mut().enumerate() {
                let out = sim.step();
                assert!(out.records.iter().all(|r| sim.shard.owns(r.device)));
                per_shard[k] += out.events;
                records.extend(out.records);
            }
            for e in shards[0].engine.render_sorted(&records) {
                d.add(&e);
            }
        }
        let n_events = d.count();
        assert_eq!((d.finish(), n_events), whole, "{n} shards");
        if n > 1 {
            assert!(
                per_shard.iter().all(|&e| e > 0),
                "every shard has events: {per_shard:?}"
            );
        }
    }
    assert!(Shard::new(3, 3).is_err() && Shard::new(0, 0).is_err());
    assert_eq!("2/7".parse::<Shard>().unwrap(), Shard::new(2, 7).unwrap());
    assert!("2-7".parse::<Shard>().is_err() && "a/7".parse::<Shard>().is_err());
}

#[test]
fn stepping_can_be_split_with_save_and_restore() {
    let cfg = config("", 11, start(), 0.004);
    let days = 40;

    let mut whole = MemorySim::new(Engine::new(cfg.clone()));
    let mut d_whole = EventDigest::new();
    step_into(&mut whole, days, &mut d_whole);
    let blob_whole = whole.save();
    let n_whole = d_whole.count();
    let digest_whole = d_whole.finish();
    assert!(n_whole > 1_000, "too few events: {n_whole}");

    // k = 0 restores the warm start's end; 17 falls inside many trials; 39 leaves one day.
    for k in [0, 1, 17, 39] {
        let mut first = MemorySim::new(Engine::new(cfg.clone()));
        let mut d = EventDigest::new();
        step_into(&mut first, k, &mut d);
        let blob = first.save();
        drop(first);

        // Day numbers count from the warm start: day k of the emitted days is first + k.
        let engine = Engine::new(cfg.clone());
        let day = engine.first_day() + k;
        let mut resumed = MemorySim::restore(engine, day, &blob).expect("blob restores");
        assert_eq!((resumed.next_day(), resumed.days_done()), (day, k));
        step_into(&mut resumed, days - k, &mut d);
        assert_eq!(
            d.count(),
            n_whole,
            "event count differs when split at day {k}"
        );
        assert_eq!(
            d.finish(),
            digest_whole,
            "events differ when split at day {k}"
        );
        assert!(
            resumed.save() == blob_whole,
            "final state differs when split at day {k}"
        );
    }
}

#[test]
fn output_does_not_depend_on_the_thread_count() {
    // Large enough that a day has several thousand users, so rayon really splits the work.
    let cfg = config("", 5, start(), 0.03);
    let days = 12;
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool")
            .install(|| digest_of(&cfg, days))
    };
    let one = run(1);
    let four = run(4);
    assert!(one.1 > 10_000, "too few events: {}", one.1);
    assert_eq!(one, four, "1 thread and 4 threads gave different output");
}

#[test]
fn due_users_may_come_in_any_order() {
    let cfg = config("", 3, start(), 0.01);
    let mut sim = MemorySim::new(Engine::new(cfg.clone()));
    for _ in 0..12 {
        sim.step();
    }
    let day = sim.next_day();
    let due: Vec<UserState> = sim
        .states()
        .into_iter()
        .filter(|s| s.next_due() == Some(day))
        .collect();
    assert!(due.len() > 20, "too few due users: {}", due.len());
    let engine = Engine::new(cfg);
    let sorted = engine.step_day(day, due.clone());
    let mut reversed = due;
    reversed.reverse();
    let other = engine.step_day(day, reversed);
    assert_eq!(sorted, other);
    assert_eq!(sorted, sim.step(), "step_day differs from MemorySim::step");
}

/// The events-only driver (what `generate --out` and the Python reader run) gives the records
/// of the full one day by day, hands out no states, and keeps only the users still due.
#[test]
fn an_events_only_simulation_has_the_same_days_and_keeps_only_users_still_due() {
    let cfg = config("", 4, start(), 0.01);
    let mut full = MemorySim::new(Engine::new(cfg.clone()));
    let mut lean = MemorySim::events_only(Engine::new(cfg), ampsim_engine::Shard::WHOLE);
    for _ in 0..25 {
        let a = full.step();
        let b = lean.step_events();
        assert!(!a.states.is_empty());
        assert!(b.states.is_empty(), "step_events handed out states");
        assert_eq!(a.records, b.records, "day {}", a.day);
        assert_eq!((a.sessions, a.events), (b.sessions, b.events));
    }
    let still_due: Vec<UserState> = full
        .states()
        .into_iter()
        .filter(|s| s.next_due().is_some())
        .collect();
    assert!(still_due.len() < full.states().len(), "nobody finished");
    assert_eq!(lean.states(), still_due);
    assert!(lean.take_finished().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 5: journey invariants on the rendered events of a 120-day run
// ---------------------------------------------------------------------------------------------

/// One rendered event of a person, owned so that it outlives the engine.
#[derive(Debug)]
struct Ev {
    /// Whether it is on the person's second device (its own device id and event ids).
    second: bool,
    event_type: String,
    user_id: Option<String>,
    time: i64,
    session_id: i64,
    event_id: u32,
    props: Vec<(&'static str, String)>,
    /// (price, quantity, revenue, productId, revenueType) on purchases.
    revenue: Option<(f64, i64, f64, String, String)>,
    /// The canonical JSON of purchases.
    json: Option<serde_json::Value>,
}

impl Ev {
    fn prop(&self, key: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

struct Run {
    scenario: Scenario,
    start_date: NaiveDate,
    days: u32,
    /// Events by person (its first device's id; a second device's events are its person's),
    /// each person's in stream order.
    devices: BTreeMap<String, Vec<Ev>>,
    /// Every insert id, in stream order.
    insert_ids: Vec<String>,
    /// How many events were rendered.
    events: usize,
}

impl Run {
    /// The simulation day of an event time (its UTC date minus the start date).
    fn day_of(&self, time_ms: i64) -> i64 {
        let d = chrono::DateTime::from_timestamp_millis(time_ms)
            .expect("valid time")
            .date_naive();
        (d - self.start_date).num_days()
    }
}

const INVARIANT_DAYS: u32 = 120;
const INVARIANT_SCALE: f64 = 0.01;

/// The identifying forms' event types.
const FORM_EVENTS: [&str; 6] = [
    "trial_started",
    "demo_requested",
    "pricing_form_submit",
    "contact_form_submit",
    "whitepaper_download",
    "newsletter_subscribe",
];

/// Server-side events (the billing system's): no session.
const OUT_OF_SESSION: [&str; 4] = [
    "trial_expired",
    "subscription_changed",
    "subscription_renewed",
    "subscription_canceled",
];

/// One shared 120-day run (generated once, checked by several tests). Only devices first seen
/// in the emitted days are kept: the journeys of the warm start's users begin before day 1,
/// so whole-journey invariants cannot be checked on them (the report's checks skip them too).
fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let cfg = config("", 2025, start(), INVARIANT_SCALE);
        let mut sim = MemorySim::new(Engine::new(cfg.clone()));
        let mut devices: BTreeMap<String, Vec<Ev>> = BTreeMap::new();
        let mut insert_ids = Vec::new();
        let mut events = 0;
        let mut last_time = i64::MIN;
        for _ in 0..INVARIANT_DAYS {
            let out = sim.step();
            for e in sim.engine.render_day(&out) {
                assert!(e.time >= last_time, "stream is not in time order");
                last_time = e.time;
                let device = sim.engine.ids().parse_device_id(&e.device_id).unwrap();
                let person = ampsim_engine::ids::person_of(device);
                if ampsim_engine::ids::first_day_of(person) < sim.engine.first_day() {
                    continue;
                }
                events += 1;
                insert_ids.push(e.insert_id.clone());
                let json = (e.event_type == "purchase")
                    .then(|| serde_json::from_str(&e.to_json()).expect("canonical JSON parses"));
                let ev = Ev {
                    second: person != device,
                    event_type: e.event_type.to_string(),
                    user_id: e.user_id.clone(),
                    time: e.time,
                    session_id: e.session_id,
                    event_id: e.event_id,
                    props: e
                        .event_properties
                        .iter()
                        .map(|(k, v)| (*k, v.to_string_value()))
                        .collect(),
                    revenue: e.revenue.as_ref().map(|r| {
                        (
                            r.price,
                            r.quantity,
                            r.revenue,
                            r.product_id.to_string(),
                            r.revenue_type.to_string(),
                        )
                    }),
                    json,
                };
                let person = sim.engine.ids().device_id(person);
                devices.entry(person).or_default().push(ev);
            }
        }
        Run {
            scenario: cfg.scenario,
            start_date: cfg.start_date,
            days: INVARIANT_DAYS,
            devices,
            insert_ids,
            events,
        }
    })
}

#[test]
fn form_event_types_are_the_scenarios() {
    let s = Scenario::default_scenario();
    let types: Vec<&str> = s
        .forms
        .types
        .iter()
        .map(|f| f.event_type.as_str())
        .collect();
    assert_eq!(types, FORM_EVENTS);
}

#[test]
fn invariant_user_id_from_the_identifying_form_on() {
    let r = run();
    let mut identified = 0;
    for (device, evs) in &r.devices {
        let first_form = evs
            .iter()
            .position(|e| FORM_EVENTS.contains(&e.event_type.as_str()));
        let from = first_form.unwrap_or(evs.len());
        // A second device is used only after identification, starts anonymous and carries
        // the person's user id from its login on.
        let second: Vec<(usize, &Ev)> = evs.iter().enumerate().filter(|(_, e)| e.second).collect();
        if let Some(&(i, _)) = second.first() {
            assert!(
                i > from,
                "device {device}: a second device before identification"
            );
        }
        let login = second.iter().position(|(_, e)| e.user_id.is_some());
        for (k, (i, e)) in second.iter().enumerate() {
            if login.is_some_and(|l| k >= l) {
                assert_eq!(
                    e.user_id, evs[from].user_id,
                    "device {device}: the second device's event {i} after its login"
                );
            } else {
                assert!(e.user_id.is_none(), "device {device}: {i} before the login");
            }
        }
        for (i, e) in evs.iter().enumerate() {
            if e.second {
                continue;
            }
            if i < from {
                assert!(
                    e.user_id.is_none(),
                    "device {device}: event {i} ({}) carries a user_id before the identifying form",
                    e.event_type
                );
            } else {
                assert!(
                    e.user_id.is_some(),
                    "device {device}: event {i} ({}) lacks the user_id after the identifying form",
                    e.event_type
                );
                assert_eq!(
                    e.user_id, evs[from].user_id,
                    "device {device}: user_id changes"
                );
            }
        }
        if first_form.is_some() {
            identified += 1;
        }
    }
    assert!(
        identified > 50,
        "too few identified users to test: {identified}"
    );
    // A user id belongs to one person.
    let mut owners: HashMap<&str, &str> = HashMap::new();
    for (device, evs) in &r.devices {
        if let Some(u) = evs.iter().find_map(|e| e.user_id.as_deref()) {
            let prev = owners.insert(u, device);
            assert!(prev.is_none(), "user_id {u} on two people");
        }
    }
}

#[test]
fn invariant_no_trial_without_identifying_form() {
    let r = run();
    let mut trials = 0;
    for (device, evs) in &r.devices {
        let first_form = evs
            .iter()
            .position(|e| FORM_EVENTS.contains(&e.event_type.as_str()));
        let starts: Vec<usize> = (0..evs.len())
            .filter(|&i| evs[i].event_type == "trial_started")
            .collect();
        assert!(
            starts.len() <= 1,
            "device {device}: {} trials",
            starts.len()
        );
        for &i in &starts {
            trials += 1;
            assert!(
                first_form.is_some_and(|f| f <= i),
                "device {device}: trial without an identifying form at or before it"
            );
            assert!(evs[i].user_id.is_some(), "device {device}: anonymous trial");
            assert!(
                matches!(
                    evs[i].prop("trial_path"),
                    Some("self_service" | "sales_assisted")
                ),
                "device {device}: trial_started without trial_path: {:?}",
                evs[i].props
            );
        }
        // No trial-only events without a trial.
        if starts.is_empty() {
            for e in evs {
                assert!(
                    !matches!(
                        e.event_type.as_str(),
                        "trial_converted"
                            | "trial_expired"
                            | "purchase"
                            | "upgrade_button_clicked"
                            | "contact_sales_clicked"
                    ),
                    "device {device}: {} without a trial",
                    e.event_type
                );
            }
        }
    }
    assert!(trials > 20, "too few trials to test: {trials}");
}

#[test]
fn invariant_every_closed_trial_has_exactly_one_terminal_event() {
    let r = run();
    let w = r.scenario.trials.conversion_window;
    let expiry = r.scenario.trials.expiry_day;
    assert_eq!(
        (w, expiry),
        ([10, 16], 14),
        "the default scenario's trial timing"
    );
    let last_day = i64::from(r.days - 1);
    let (mut closed, mut converted, mut expired, mut open) = (0, 0, 0, 0);
    for (device, evs) in &r.devices {
        let Some(ts) = evs.iter().position(|e| e.event_type == "trial_started") else {
            continue;
        };
        let start_day = r.day_of(evs[ts].time);
        let terminals: Vec<usize> = (0..evs.len())
            .filter(|&i| {
                matches!(
                    evs[i].event_type.as_str(),
                    "trial_converted" | "trial_expired"
                )
            })
            .collect();
        if start_day + w[1].max(expiry) <= last_day {
            closed += 1;
            assert_eq!(
                terminals.len(),
                1,
                "device {device}: a closed trial (started day {start_day}) has {} terminal events",
                terminals.len()
            );
        } else {
            open += 1;
            assert!(
                terminals.len() <= 1,
                "device {device}: an open trial has {} terminal events",
                terminals.len()
            );
        }
        for &i in &terminals {
            let e = &evs[i];
            assert!(
                i > ts,
                "device {device}: terminal event before the trial started"
            );
            let after = r.day_of(e.time) - start_day;
            if e.event_type == "trial_converted" {
                converted += 1;
                assert!(
                    (w[0]..=w[1]).contains(&after),
                    "device {device}: trial_converted on day {after} of the trial"
                );
                assert_eq!(e.prop("conversion_day"), Some(after.to_string().as_str()));
            } else {
                expired += 1;
                assert_eq!(
                    after, expiry,
                    "device {device}: trial_expired on day {after}"
                );
                assert_eq!(
                    e.prop("trial_length_days"),
                    Some(after.to_string().as_str())
                );
            }
            assert_eq!(
                e.prop("trial_path"),
                evs[ts].prop("trial_path"),
                "device {device}: the trial path changed"
            );
        }
    }
    assert!(closed > 20, "too few closed trials: {closed}");
    assert!(
        converted > 5 && expired > 5,
        "converted {converted}, expired {expired}"
    );
    assert!(open > 0, "no trial is still open at the end");
}

#[test]
fn invariant_purchases_carry_sku_and_revenue_and_follow_a_conversion() {
    let r = run();
    let skus: HashSet<&str> = r.scenario.products.iter().map(|p| p.sku.as_str()).collect();
    let mut purchases = 0;
    for (device, evs) in &r.devices {
        for (i, e) in evs.iter().enumerate() {
            // Renewals are revenue events too (tests/it/lifecycle.rs checks them).
            if e.event_type == "subscription_renewed" {
                assert!(
                    e.revenue.is_some(),
                    "device {device}: renewal without revenue"
                );
                continue;
            }
            if e.event_type != "purchase" {
                assert!(
                    e.revenue.is_none(),
                    "device {device}: revenue on {}",
                    e.event_type
                );
                continue;
            }
            purchases += 1;
            let sku = e
                .prop("product_sku")
                .unwrap_or_else(|| panic!("device {device}: purchase without product_sku"));
            assert!(skus.contains(sku), "device {device}: unknown SKU {sku}");
            let (price, quantity, revenue, product_id, revenue_type) =
                e.revenue.as_ref().expect("purchase has revenue fields");
            assert!(*price > 0.0 && *quantity >= 1);
            assert_eq!(
                *revenue,
                price * *quantity as f64,
                "device {device}: revenue"
            );
            assert_eq!(
                product_id, sku,
                "device {device}: productId differs from product_sku"
            );
            assert!(!revenue_type.is_empty());
            let json = e.json.as_ref().expect("purchase JSON");
            for key in ["price", "quantity", "revenue", "productId", "revenueType"] {
                assert!(
                    json.get(key).is_some(),
                    "device {device}: JSON lacks {key}: {json}"
                );
            }
            assert_eq!(
                json["revenue"].as_f64().expect("revenue is a number"),
                json["price"].as_f64().expect("price is a number")
                    * json["quantity"].as_f64().expect("quantity is a number")
            );
            assert_eq!(json["event_properties"]["product_sku"], sku);
            let conversion = evs[..i]
                .iter()
                .rposition(|c| c.event_type == "trial_converted")
                .unwrap_or_else(|| {
                    panic!("device {device}: purchase without an earlier trial_converted")
                });
            assert_eq!(
                evs[conversion].prop("product_sku"),
                Some(sku),
                "device {device}: the purchase's SKU differs from the conversion's"
            );
            assert_eq!(
                evs[..i]
                    .iter()
                    .filter(|c| c.event_type == "purchase")
                    .count(),
                0,
                "device {device}: two purchases"
            );
        }
        // Every conversion is followed by its purchase.
        let conv = evs
            .iter()
            .filter(|e| e.event_type == "trial_converted")
            .count();
        let purch = evs.iter().filter(|e| e.event_type == "purchase").count();
        assert_eq!(
            conv, purch,
            "device {device}: {conv} conversions, {purch} purchases"
        );
    }
    assert!(purchases > 5, "too few purchases to test: {purchases}");
}

#[test]
fn invariant_campaigns_respect_targeting_and_medium() {
    let r = run();
    let targeting: HashMap<(&str, &str), Targeting> = r
        .scenario
        .sources
        .iter()
        .filter(|s| s.medium == "cpc")
        .flat_map(|s| {
            s.campaigns
                .iter()
                .map(move |c| ((s.source.as_str(), c.name.as_str()), c.targeting))
        })
        .collect();
    let (mut first_with_campaign, mut returning_campaign_later) = (0, 0);
    for (device, evs) in &r.devices {
        let first_session = evs[0].session_id;
        assert_ne!(
            first_session, -1,
            "device {device}: first event outside a session"
        );
        for e in evs {
            let medium = e.prop("utm_medium");
            let Some(campaign) = e.prop("utm_campaign") else {
                continue;
            };
            assert_eq!(
                medium,
                Some("cpc"),
                "device {device}: utm_campaign {campaign} on non-cpc traffic"
            );
            let source = e.prop("utm_source").expect("utm_source with a campaign");
            let t = *targeting
                .get(&(source, campaign))
                .unwrap_or_else(|| panic!("unknown campaign {source}/{campaign}"));
            if e.session_id == first_session {
                first_with_campaign += 1;
                assert_ne!(
                    t,
                    Targeting::ReturningUsers,
                    "device {device}: campaign {campaign} for returning users on a first session"
                );
            } else if t == Targeting::ReturningUsers {
                returning_campaign_later += 1;
            }
        }
    }
    assert!(
        first_with_campaign > 100,
        "few first sessions with a campaign"
    );
    assert!(
        returning_campaign_later > 10,
        "re-engagement campaigns never seen on later sessions"
    );
}

#[test]
fn invariant_sessions_times_and_event_ids() {
    let r = run();
    let mut sessions = 0;
    for (device, evs) in &r.devices {
        let mut last_time: HashMap<i64, i64> = HashMap::new();
        let mut counts = [0u32; 2];
        for (i, e) in evs.iter().enumerate() {
            // Event ids count each device's events across days.
            counts[usize::from(e.second)] += 1;
            assert_eq!(
                e.event_id,
                counts[usize::from(e.second)],
                "device {device}: event_id {} at position {i}",
                e.event_id
            );
            if i > 0 {
                assert!(
                    e.time >= evs[i - 1].time,
                    "device {device}: time goes backwards"
                );
            }
            let out_of_session = OUT_OF_SESSION.contains(&e.event_type.as_str());
            if out_of_session {
                assert_eq!(
                    e.session_id, -1,
                    "device {device}: {} in a session",
                    e.event_type
                );
                continue;
            }
            assert_ne!(
                e.session_id, -1,
                "device {device}: {} outside a session",
                e.event_type
            );
            match last_time.get(&e.session_id) {
                None => {
                    sessions += 1;
                    assert_eq!(
                        e.session_id, e.time,
                        "device {device}: session_id is not its first event's time"
                    );
                }
                Some(&t) => assert!(
                    e.time >= t,
                    "device {device}: session {} goes back in time",
                    e.session_id
                ),
            }
            last_time.insert(e.session_id, e.time);
        }
    }
    assert!(sessions > 10_000, "too few sessions: {sessions}");
}

#[test]
fn invariant_insert_ids_are_unique() {
    let r = run();
    assert_eq!(r.insert_ids.len(), r.events);
    let mut seen = HashSet::with_capacity(r.insert_ids.len());
    for id in &r.insert_ids {
        assert_eq!(id.len(), 36, "insert id {id} is not UUID-shaped");
        assert!(seen.insert(id.as_str()), "insert id {id} is not unique");
    }
    assert!(r.events > 100_000, "too few events: {}", r.events);
}

// ---------------------------------------------------------------------------------------------
// 6–7: rates follow the scenario; scale multiplies arrivals only
// ---------------------------------------------------------------------------------------------

const RATE_DAYS: u32 = 200;
const RATE_SCALE: f64 = 0.1;

const FORM_MIX_ROWS: [&str; 6] = [
    "form_mix_trial_signup",
    "form_mix_demo_request",
    "form_mix_pricing_inquiry",
    "form_mix_contact",
    "form_mix_whitepaper",
    "form_mix_newsletter",
];

#[test]
fn rates_follow_the_default_scenario() {
    let report = report_of("", 1, RATE_SCALE, RATE_DAYS);
    let mut keys = vec![
        "return_rate_bounce",
        "return_rate_high",
        "trial_path_self_service",
        "conversion_self_service",
        "conversion_sales_assisted",
    ];
    keys.extend(FORM_MIX_ROWS);
    assert_rows_pass(&report, &keys);
    // The journey checks of the report hold too.
    assert_rows_pass(
        &report,
        &[
            "reengagement_on_new_users",
            "campaign_on_non_cpc",
            "purchases_without_sku",
            "journeys_out_of_order",
            "session_count_mismatch",
        ],
    );
    // Conversion by activation level: each level converts at the outcome model's mean for its
    // trials, and the model's means climb with activation (the signal is there to find).
    let levels = [
        "conversion_activation_0",
        "conversion_activation_1",
        "conversion_activation_2",
    ];
    assert_rows_pass(&report, &levels);
    let target = |k: &str| report.row(k).unwrap().target;
    let measured = |k: &str| report.row(k).unwrap().measured;
    assert!(
        target(levels[0]) + 0.2 < target(levels[2]),
        "{}",
        report.to_table()
    );
    assert!(
        measured(levels[0]) + 0.2 < measured(levels[2]),
        "{}",
        report.to_table()
    );
    // Identification by first touch: a row per source that brings first visits, each at the
    // mean of its users' identification chances, and the channels differ (brand search and
    // review sites bring buyers, social and lookalike audiences browsers).
    let channels: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.key.starts_with("identified_first_touch_"))
        .collect();
    let sources = ampsim_engine::Scenario::default_scenario().sources;
    assert_eq!(
        channels.len(),
        sources.iter().filter(|s| s.new_share > 0.0).count(),
        "{}",
        report.to_table()
    );
    let keys: Vec<&str> = channels.iter().map(|r| r.key.as_str()).collect();
    assert_rows_pass(&report, &keys);
    let (lo, hi) = channels.iter().fold((1.0f64, 0.0f64), |(lo, hi), r| {
        (lo.min(r.measured), hi.max(r.measured))
    });
    assert!(lo > 0.0 && hi > 2.0 * lo, "{}", report.to_table());
}

#[test]
fn rates_follow_a_changed_conversion_rate() {
    // Without the outcome model's dependence on usage (its coefficients at 0), every trial of a
    // path converts at the path's rate. (With it, `trials.outcome.calibration` is what makes
    // the rate the path's average: see the default scenario.)
    let report = report_of(
        "[trials.conversion_rate]\nself_service = 0.6\n\
         [trials.outcome]\nper_milestone = 0.0\nper_log_usage = 0.0\n\
         calibration = { self_service = 0.0, sales_assisted = 0.0 }\n",
        1,
        RATE_SCALE,
        RATE_DAYS,
    );
    let row = report.row("conversion_self_service").expect("row");
    assert_eq!(row.target, 0.6);
    assert_rows_pass(
        &report,
        &["conversion_self_service", "conversion_sales_assisted"],
    );
    // It moved: far from the default 0.28.
    assert!(
        (row.measured - 0.28).abs() > 0.15,
        "conversion stayed near the default: {}",
        row.measured
    );
}

#[test]
fn rates_follow_a_changed_form_mix() {
    let toml = r#"
[[forms.types]]
form_type = "trial_signup"
event_type = "trial_started"
share = 0.03
starts_trial = true

[[forms.types]]
form_type = "demo_request"
event_type = "demo_requested"
share = 0.07

[[forms.types]]
form_type = "pricing_inquiry"
event_type = "pricing_form_submit"
share = 0.15

[[forms.types]]
form_type = "contact"
event_type = "contact_form_submit"
share = 0.15

[[forms.types]]
form_type = "whitepaper"
event_type = "whitepaper_download"
share = 0.25

[[forms.types]]
form_type = "newsletter"
event_type = "newsletter_subscribe"
share = 0.35
"#;
    let report = report_of(toml, 1, RATE_SCALE, RATE_DAYS);
    assert_rows_pass(&report, &FORM_MIX_ROWS);
    let shares = [0.03, 0.07, 0.15, 0.15, 0.25, 0.35];
    for (key, share) in FORM_MIX_ROWS.iter().zip(shares) {
        assert_eq!(report.row(key).expect("row").target, share, "{key}");
    }
    // The ends of the mix swapped places.
    assert!(measured(&report, "form_mix_newsletter") > 0.25);
    assert!(measured(&report, "form_mix_trial_signup") < 0.1);
}

#[test]
fn rates_follow_a_changed_bounce_return_probability() {
    let report = report_of(
        "[engagement.tiers.bounce]\nreturn_probability = 0.30\n",
        1,
        RATE_SCALE,
        RATE_DAYS,
    );
    let row = report.row("return_rate_bounce").expect("row");
    // The target is the new probability times the share of delays within the report's window.
    let engine = Engine::new(config("", 1, start(), RATE_SCALE));
    let within = engine.return_within(0, ampsim_engine::report::RETURN_WINDOW_DAYS);
    assert!(within > 0.95 && within < 1.0, "{within}");
    assert!((row.target - 0.30 * within).abs() < 1e-12, "{}", row.target);
    assert_rows_pass(&report, &["return_rate_bounce", "return_rate_high"]);
    assert!(
        (row.measured - 0.30).abs() < 0.03,
        "measured {}",
        row.measured
    );
}

/// New users, and the share of users with two or more sessions, over `days` days.
fn arrivals(scale: f64, days: u32) -> (u64, f64) {
    let mut sim = MemorySim::new(Engine::new(config("", 9, start(), scale)));
    let mut new_users = 0u64;
    for _ in 0..days {
        new_users += u64::from(sim.step().new_users);
    }
    // The users of the emitted days (the warm start's have states too).
    let first = sim.engine.first_day();
    let states: Vec<_> = sim
        .states()
        .into_iter()
        .filter(|s| s.first_day() >= first)
        .collect();
    assert_eq!(states.len() as u64, new_users, "every arrival has a state");
    let multi = states.iter().filter(|s| s.session_count() >= 2).count();
    (new_users, multi as f64 / states.len() as f64)
}

#[test]
fn scale_multiplies_arrivals_only() {
    let (n1, multi1) = arrivals(0.01, 30);
    let (n2, multi2) = arrivals(0.02, 30);
    let ratio = n2 as f64 / n1 as f64;
    assert!(n1 > 5_000, "too few users: {n1}");
    assert!(
        (ratio - 2.0).abs() <= 0.2,
        "new users {n1} → {n2}: ratio {ratio}"
    );
    assert!(
        (multi1 - multi2).abs() <= 0.03,
        "users with 2+ sessions: {multi1} vs {multi2}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8: validation errors name the key path
// ---------------------------------------------------------------------------------------------

#[test]
fn validation_errors_name_the_key_path() {
    let cases: &[(&str, &str, &str)] = &[
        // probability outside [0, 1]
        (
            "[trials.conversion_rate]\nself_service = 1.5\n",
            "trials.conversion_rate.self_service",
            "[0, 1]",
        ),
        (
            "[forms]\nreach_probability = -0.1\n",
            "forms.reach_probability",
            "[0, 1]",
        ),
        (
            "[engagement.tiers.high]\nreturn_probability = 2\n",
            "engagement.tiers.high.return_probability",
            "[0, 1]",
        ),
        // shares not summing to 1
        (
            "[trials.path_split]\nself_service = 0.7\nsales_assisted = 0.4\n",
            "trials.path_split",
            "sum to 1",
        ),
        (
            "[[forms.types]]\nform_type = \"trial_signup\"\nevent_type = \"trial_started\"\n\
             share = 0.5\nstarts_trial = true\n",
            "forms.types",
            "sum to 1",
        ),
        // negative count
        (
            "[traffic]\nnew_users_per_day = -5\n",
            "traffic.new_users_per_day",
            "negative",
        ),
        // empty products
        ("products = []\n", "products", "empty"),
        // second devices
        (
            "[second_devices]\nwebsite_session_share = 1.2\n",
            "second_devices.website_session_share",
            "[0, 1]",
        ),
        (
            "[second_devices]\nmobile_families = [\"\"]\n",
            "second_devices.mobile_families[0]",
            "",
        ),
        // inverted conversion window
        (
            "[trials]\nconversion_window = [16, 10]\n",
            "trials.conversion_window",
            "before it starts",
        ),
        // unknown keys
        (
            "[traffic]\nbogus_key = 3\n",
            "traffic.bogus_key",
            "bogus_key",
        ),
        ("bogus = 1\n", "bogus", "bogus"),
        (
            "[engagement.tiers.low]\nreturn_chance = 0.3\n",
            "engagement.tiers.low.return_chance",
            "return_chance",
        ),
        // NaN
        (
            "[forms]\nreach_probability = nan\n",
            "forms.reach_probability",
            "finite",
        ),
        (
            "[traffic]\nnew_users_per_day = nan\n",
            "traffic.new_users_per_day",
            "finite",
        ),
        // inside arrays
        (
            "[engagement.tiers.bounce]\nreturn_delay = [{ days = [0, 3], weight = 1.0 }]\n",
            "engagement.tiers.bounce.return_delay[0].days",
            "",
        ),
        // distributions
        (
            "[pages]\nevent_gap_seconds = { distribution = \"weibull\", scale = 45 }\n",
            "pages.event_gap_seconds",
            "max",
        ),
        (
            "[pages]\nevent_gap_seconds = { distribution = \"weibull\", scale = 45, max = 600 }\n",
            "pages.event_gap_seconds.shape",
            "weibull needs shape",
        ),
        (
            "[pages]\nevent_gap_seconds = { distribution = \"weibull\", scale = 45, shape = 0.7, sigma = 1, max = 600 }\n",
            "pages.event_gap_seconds.sigma",
            "not a parameter of weibull",
        ),
        (
            "[pages]\nevent_gap_seconds = { distribution = \"weibull\", scale = 45, shape = -1, max = 600 }\n",
            "pages.event_gap_seconds.shape",
            "positive",
        ),
        (
            "[pages]\nsession_length = { distribution = \"gamma\", max = 10 }\n",
            "pages.session_length.distribution",
            "gamma",
        ),
        (
            "[pages]\nsession_length = { distribution = \"lognormal\", median = 2, sigma = 1, max = 5000 }\n",
            "pages.session_length.max",
            "at most 500",
        ),
        (
            "[pages]\nsession_length = \"long\"\n",
            "pages.session_length",
            "array of weighted choices or a distribution table",
        ),
        (
            "[engagement.tiers.bounce]\nreturn_delay = { distribution = \"lognormal\", median = 5, sigma = 1.3, max = 400 }\n",
            "engagement.tiers.bounce.return_delay.max",
            "at most 365",
        ),
        (
            "[engagement.tiers.bounce]\nreturn_delay = { distribution = \"lognormal\", median = 500, sigma = 1.3, max = 365 }\n",
            "engagement.tiers.bounce.return_delay.median",
            "below max",
        ),
        (
            "[pages]\nsession_length_weights = [1, 2]\n",
            "pages.session_length_weights",
            "session_length_weights",
        ),
        // catalogues
        (
            "[[devices]]\nplatform = \"Web\"\nos_name = \"Chrome\"\nos_version = \"1\"\ndevice_model = \"m\"\ndevice_family = \"Mac\"\ndevice_type = \"Mac\"\nweight = 1\nversion_cycle = { version = 131, released = \"Nov 12\", every_days = 28 }\n",
            "devices[0].version_cycle.released",
            "not a date",
        ),
        (
            "[[devices]]\nplatform = \"Web\"\nos_name = \"Safari\"\nos_version = \"1\"\ndevice_model = \"m\"\ndevice_family = \"Mac\"\ndevice_type = \"Mac\"\nweight = 1\nreleases = [{ date = \"2025-05-01\", version = \"2\" }, { date = \"2025-01-01\", version = \"3\" }]\n",
            "devices[0].releases[1].date",
            "date order",
        ),
        (
            "[[devices]]\nplatform = \"Web\"\nos_name = \"Chrome Mobile\"\nos_version = \"1\"\ndevice_model = \"m\"\ndevice_family = \"Android\"\ndevice_type = \"Android\"\nweight = 1\nmodels = [{ device_model = \"X1\", device_type = \"\", weight = 1 }]\n",
            "devices[0].models[0].device_type",
            "",
        ),
        (
            "[[devices]]\nplatform = \"Web\"\nos_name = \"Chrome Mobile\"\nos_version = \"1\"\ndevice_model = \"m\"\ndevice_family = \"Android\"\ndevice_type = \"Android\"\nweight = 1\nmodels = [{ device_model = \"\", device_type = \"Phone\", weight = 1 }]\n",
            "devices[0].models[0].device_model",
            "must not be empty",
        ),
        (
            "[[devices]]\nplatform = \"Web\"\nos_name = \"Chrome\"\nos_version = \"1\"\ndevice_manufacturer = \"Apple\"\ndevice_model = \"Macintosh\"\ndevice_family = \"Mac OS X\"\ndevice_type = \"Mac\"\nweight = 1\n[[devices]]\nplatform = \"Web\"\nos_name = \"Safari\"\nos_version = \"1\"\ndevice_manufacturer = \"Apple\"\ndevice_model = \"Macintosh\"\ndevice_family = \"macOS\"\ndevice_type = \"Mac\"\nweight = 1\n",
            "devices[1].device_type",
            "must agree",
        ),
        (
            "[[products]]\nsku = \"A\"\nname = \"A\"\ntier = \"a\"\nprice = 1.0\ncurrency = \"usd\"\nbilling_period = \"monthly\"\nweight = { self_service = 1, sales_assisted = 1 }\n",
            "products[0].currency",
            "ISO 4217",
        ),
        (
            "[[sources]]\nsource = \"direct\"\nmedium = \"none\"\nnew_share = 1\nreturning_share = 1\nlanding_pages = [{ path = \"/nowhere\", weight = 1 }]\n",
            "sources[0].landing_pages[0].path",
            "not a path of pages.catalogue",
        ),
        (
            "[[sources]]\nsource = \"google\"\nmedium = \"cpc\"\nnew_share = 1\nreturning_share = 1\ncampaigns = [{ name = \"x\", targeting = \"all_users\", weight = 1, landing_page = \"/nowhere\" }]\n",
            "sources[0].campaigns[0].landing_page",
            "not a path of pages.catalogue",
        ),
        // wrong type
        (
            "[engagement.tiers.high]\nreturn_probability = \"lots\"\n",
            "engagement.tiers.high.return_probability",
            "",
        ),
    ];
    for (toml, path, message) in cases {
        let e = Scenario::from_toml(toml).expect_err(&format!("should be rejected:\n{toml}"));
        assert_eq!(e.path, *path, "wrong path for:\n{toml}\nerror: {e}");
        assert!(
            e.message.contains(message),
            "message {:?} lacks {message:?} for:\n{toml}",
            e.message
        );
        // The display form names the path too.
        assert!(e.to_string().starts_with(path), "{e}");
    }
    // A valid override still passes.
    assert!(Scenario::from_toml("[forms]\nreach_probability = 0.5\n").is_ok());
}

// ---------------------------------------------------------------------------------------------
// 9: the codec round-trips and rejects truncated blobs
// ---------------------------------------------------------------------------------------------

fn assert_truncations_fail<T: std::fmt::Debug>(
    blob: &[u8],
    what: &str,
    decode: impl Fn(&[u8]) -> Result<T, codec::CodecError>,
) {
    // Every strict prefix; past the first few thousand bytes, a sample of them.
    let step = (blob.len() / 4000).max(1);
    let mut cut = 0;
    while cut < blob.len() {
        let r = decode(&blob[..cut]);
        assert!(
            r.is_err(),
            "{what} truncated to {cut} of {} bytes decoded",
            blob.len()
        );
        cut += if cut < 4000 { 1 } else { step };
    }
    let last = decode(&blob[..blob.len() - 1]);
    assert!(last.is_err(), "{what} missing its last byte decoded");
}

#[test]
fn codec_round_trips_states_and_day_records() {
    // Everyone identified has a second device, which logs in only in a product session: the
    // records hold anonymous and logged-in second devices.
    let second = "[second_devices]\nprobability = 1.0\nwebsite_session_share = 0.5\n\
                  login_probability = 0.0\n";
    let cfg = config(second, 13, start(), 0.005);
    let mut sim = MemorySim::new(Engine::new(cfg));
    let mut days: Vec<(u32, Vec<UserDay>)> = Vec::new();
    for _ in 0..30 {
        let out = sim.step();
        days.push((out.day, out.records));
    }
    let engine = &sim.engine;

    // Day records.
    let mut with_trial = 0;
    for (day, records) in &days {
        let blob = codec::encode_user_days(engine.day_start_ms(*day), records);
        let back = codec::decode_user_days(&blob, *day, engine.day_start_ms(*day))
            .expect("day records decode");
        assert_eq!(
            &back, records,
            "day {day} records differ after a round trip"
        );
        with_trial += records.iter().filter(|r| r.trial.is_some()).count();
        if *day % 10 == 3 {
            assert_truncations_fail(&blob, "day records", |b| {
                codec::decode_user_days(b, *day, engine.day_start_ms(*day))
            });
        }
    }
    assert!(with_trial > 0, "no record with a trial was exercised");
    assert!(
        days.iter()
            .flat_map(|(_, r)| r)
            .any(|r| r.plan.is_some_and(|p| p.renewals > 0)),
        "no record with a renewed subscription was exercised"
    );
    let all = || days.iter().flat_map(|(_, r)| r);
    assert!(
        all().any(|r| r.sessions.len() >= 2),
        "no record with several sessions was exercised"
    );
    assert!(
        all().any(|r| r.sessions.first().is_some_and(|s| s.continued)),
        "no record with the rest of a session across midnight was exercised"
    );
    assert!(
        all().any(|r| r.second.is_some_and(|d| d.login_ms < i64::MAX)),
        "no record with a logged-in second device was exercised"
    );
    assert!(
        all().any(|r| r.second.is_some_and(|d| d.login_ms == i64::MAX)),
        "no record with an anonymous second device was exercised"
    );

    // States.
    let states = sim.states();
    assert!(states.iter().any(|s| s.trial.is_some_and(|t| t.ended)));
    assert!(states.iter().any(|s| s.product_sku.is_some()));
    assert!(states.iter().any(|s| s.identify_hazard > 0));
    assert!(states.iter().any(|s| s.subscription.is_some()));
    assert!(states
        .iter()
        .any(|s| s.second.is_some_and(|d| d.login_ms.is_some())));
    assert!(states
        .iter()
        .any(|s| s.second.is_some_and(|d| d.login_ms.is_none())));
    // A session running past the last day's midnight waits in its state.
    let mut states = states;
    if !states.iter().any(|s| s.carry.is_some()) {
        for _ in 0..20 {
            sim.step();
            if sim.states().iter().any(|s| s.carry.is_some()) {
                break;
            }
        }
        states = sim.states();
    }
    assert!(
        states.iter().any(|s| s.carry.is_some()),
        "no carried session"
    );
    let blob = codec::encode_states(&states);
    assert_eq!(blob, sim.save());
    let back = codec::decode_states(&blob).expect("states decode");
    assert_eq!(back, states, "states differ after a round trip");
    assert_truncations_fail(&blob, "states", codec::decode_states);

    // Unknown formats are errors too.
    let mut bad = blob.clone();
    bad[0] = 0xff;
    assert!(codec::decode_states(&bad).is_err());
    assert!(codec::decode_user_days(&bad, 0, 0).is_err());
    assert!(MemorySim::restore(
        Engine::new(sim.engine.config().clone()),
        30,
        &blob[..blob.len() / 2]
    )
    .is_err());
}

/// A scenario whose only form starts a trial: a user already in a trial never starts another
/// (a regression test: the non-trial form mix is empty there).
#[test]
fn a_trial_only_form_mix_never_starts_a_second_trial() {
    let toml = r#"
[forms]
reach_probability = 1.0
secondary_probability = 1.0
submit_probability = { bounce = 1.0, low = 1.0, medium = 1.0, high = 1.0, very_high = 1.0 }
[[forms.types]]
form_type = "trial_signup"
event_type = "trial_started"
share = 1.0
starts_trial = true
"#;
    let report = report_of(toml, 3, 0.002, 60);
    let row = report.row("journeys_out_of_order").unwrap();
    assert_eq!(row.measured, 0.0, "{}", report.to_table());
    assert!(row.sample > 1000, "enough identified users: {}", row.sample);
    let trials = report.row("trial_signups").unwrap().measured;
    let identified = report.row("identified_users").unwrap().measured;
    assert!(
        trials <= identified,
        "{trials} trials for {identified} users"
    );
}

// ---------------------------------------------------------------------------------------------
// The report's verdicts: pass, fail, information, insufficient data
// ---------------------------------------------------------------------------------------------

/// The source plan's year volumes.
const PLAN_ROWS: [&str; 6] = [
    "sessions",
    "returning_sessions",
    "form_submissions",
    "identified_users",
    "trial_signups",
    "paid_subscriptions",
];

fn status(report: &Report, key: &str) -> RowStatus {
    report
        .row(key)
        .unwrap_or_else(|| panic!("report has no row {key}"))
        .status
}

#[test]
fn a_short_small_report_judges_what_it_can_and_fails_nothing() {
    // A new user's first runs: a correct simulation at scale 0.02 for a month, then two.
    let month = report_of("", 5, 0.02, 30);
    assert!(month.all_pass(), "{}", month.to_table());
    // No return has settled yet (the return window is 30 days): nothing to judge, and the
    // table says so rather than showing a rate of 0 failing with a band of +-400 pp.
    assert_eq!(
        status(&month, "return_rate_bounce"),
        RowStatus::Insufficient
    );
    assert_eq!(month.row("return_rate_bounce").expect("row").sample, 0);
    // Returns are counted within 60 days: after 90 days, the first month's have settled.
    let report = report_of("", 5, 0.02, 90);
    assert!(report.all_pass(), "{}", report.to_table());
    assert!(
        report.verdict().starts_with("no row fails"),
        "{}",
        report.verdict()
    );
    // The year's volumes are shown, not judged, on a month.
    for key in PLAN_ROWS {
        assert_eq!(status(&report, key), RowStatus::Info, "{key}");
    }
    // Unique users are derived from the scenario and the span, so they are judged.
    assert_eq!(status(&report, "unique_users"), RowStatus::Pass);
    // A few dozen trials cannot judge a conversion rate: no pass with a band of +-20 pp.
    for key in ["conversion_self_service", "conversion_sales_assisted"] {
        assert_eq!(status(&report, key), RowStatus::Insufficient, "{key}");
    }
    // The first month's bounce sessions have settled: that rate is judged.
    assert_eq!(
        status(&report, "return_rate_bounce"),
        RowStatus::Pass,
        "{}",
        report.to_table()
    );
    assert!(report.to_table().contains("insufficient data"));
}

#[test]
fn the_plan_volumes_are_judged_on_a_year_of_the_default_scenario_only() {
    let other_toml = "[trials.conversion_rate]\nself_service = 0.6\n";
    let default = report_of("", 3, 0.01, 365);
    let other = report_of(other_toml, 3, 0.01, 365);
    for key in PLAN_ROWS {
        assert_ne!(status(&default, key), RowStatus::Info, "{key}");
        assert_eq!(status(&other, key), RowStatus::Info, "{key}");
    }
    assert_rows_pass(&default, &PLAN_ROWS);
    assert_eq!(status(&default, "sessions"), RowStatus::Pass);
    // Correct data of another scenario: more payers than the plan's figure, and no failure.
    assert!(
        measured(&other, "paid_subscriptions") > 1.3 * measured(&default, "paid_subscriptions")
    );
    assert!(other.all_pass(), "{}", other.to_table());
}

#[test]
fn a_rate_off_its_target_fails_the_report() {
    // Events where a bounce returns 30% of the time, judged against the default 8%.
    let report = report_judging(
        "",
        "[engagement.tiers.bounce]\nreturn_probability = 0.30\n",
        4,
        0.02,
        90,
    );
    assert_eq!(status(&report, "return_rate_bounce"), RowStatus::Fail);
    assert!(!report.all_pass());
    assert!(report.verdict().starts_with("SOME ROWS FAIL"));
    assert!(!report.row("return_rate_bounce").expect("row").pass);
}

#[test]
fn a_distribution_in_a_users_scenario_replaces_the_default_whole() {
    use ampsim_engine::scenario::{Choice, DistKind};
    // The form of engine version 2: a log-uniform gap and day-range delays.
    let s = Scenario::from_toml(
        "[pages]\nevent_gap_seconds = { min = 4, max = 240 }\nsession_length = [3, 2, 1]\n\
         [engagement.tiers.bounce]\nreturn_delay = [{ days = [1, 30], weight = 1.0 }]\n",
    )
    .unwrap();
    let g = s.pages.event_gap_seconds;
    assert_eq!(g.distribution, DistKind::LogUniform);
    // Not merged with the default Weibull's parameters.
    assert_eq!(
        (g.scale, g.shape, g.min, g.max),
        (None, None, Some(4.0), 240.0)
    );
    assert_eq!(
        s.pages.session_length,
        Choice::Weighted(vec![3.0, 2.0, 1.0])
    );
    assert!(matches!(
        s.engagement.tiers.bounce.return_delay,
        Choice::Weighted(_)
    ));
    // And it simulates: sessions of at most 3 events, gaps within [4 s, 240 s].
    let cfg = SimConfig {
        scenario: s,
        seed: 3,
        start_date: start(),
        population_scale: 0.002,
    };
    let mut sim = MemorySim::new(Engine::new(cfg));
    let out = sim.step();
    let mut sessions = 0;
    for r in &out.records {
        for sess in r.new_sessions() {
            sessions += 1;
            let pages: Vec<i64> = r
                .events
                .iter()
                .filter(|e| {
                    matches!(
                        e.kind,
                        EventKind::Page | EventKind::Search | EventKind::ButtonClick
                    ) && r.session_at(e.time_ms) == Some(sess)
                })
                .map(|e| e.time_ms)
                .collect();
            if r.events
                .iter()
                .any(|e| e.kind == EventKind::App && r.session_at(e.time_ms) == Some(sess))
            {
                // A trialist's product session: in-app events, no pages.
                assert!(pages.is_empty());
                continue;
            }
            assert!((1..=3).contains(&pages.len()), "{} events", pages.len());
            for w in pages.windows(2) {
                assert!(
                    (4_000..=240_001).contains(&(w[1] - w[0])),
                    "gap {}",
                    w[1] - w[0]
                );
            }
        }
    }
    assert!(sessions > 20, "{sessions} sessions");
}

#[test]
fn user_ids_round_trip_and_foreign_ones_are_refused() {
    let engine = Engine::new(config("", 8, start(), 0.01));
    let other = Engine::new(config("", 9, start(), 0.01));
    for dev in [
        ampsim_engine::ids::device_num(0, 7),
        ampsim_engine::ids::device_num(300, 12),
    ] {
        let u = engine.user_id(dev);
        assert_eq!(engine.parse_user_id(&u), Some(dev), "{u}");
        assert_eq!(other.parse_user_id(&u), None, "{u}");
    }
    assert_eq!(engine.parse_user_id("someone@example.com"), None);
    // Another name or domain with the same code is not this user.
    let u = engine.user_id(ampsim_engine::ids::device_num(0, 7));
    let (local, _) = u.split_once('@').unwrap();
    assert_eq!(engine.parse_user_id(&format!("{local}@example.com")), None);
}

/// The report's chart series agree with the event stream and with the report's own rows.
#[test]
fn report_series_agree_with_the_events_and_the_rows() {
    let (seed, scale, days) = (6, 0.02, 70);
    let engine = Engine::new(config("", seed, start(), scale));
    let mut sim = MemorySim::new(Engine::new(config("", seed, start(), scale)));
    let first = engine.first_day();
    let mut b = ReportBuilder::new(&engine, first + days - 1);
    // Sessions by the date of their start (session_id), from the rendered events.
    let mut by_day: BTreeMap<i64, HashSet<(String, i64)>> = BTreeMap::new();
    let day0 = engine.day_start_ms(first);
    for _ in 0..days {
        let out = sim.step();
        for e in sim.engine.render_day(&out) {
            if e.session_id >= day0 {
                by_day
                    .entry((e.session_id - day0).div_euclid(86_400_000))
                    .or_default()
                    .insert((e.device_id.clone(), e.session_id));
            }
        }
        for r in &out.records {
            b.add_user_day(r);
        }
    }
    for st in sim.states() {
        b.add_state(&st);
    }
    let report = b.finish();
    let s = &report.series;
    assert_eq!(s.first_date, "2025-01-06");

    // Daily sessions: one series per medium of the scenario, adding up to the events' sessions.
    let mediums: Vec<String> =
        Scenario::default_scenario()
            .sources
            .iter()
            .fold(Vec::new(), |mut v, src| {
                if !v.contains(&src.medium) {
                    v.push(src.medium.clone());
                }
                v
            });
    let names: Vec<&str> = s.daily_sessions.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(
        names,
        mediums.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for d in 0..days as usize {
        let total: u64 = s.daily_sessions.iter().map(|x| x.values[d]).sum();
        let events = by_day.get(&(d as i64)).map_or(0, |x| x.len()) as u64;
        assert_eq!(total, events, "sessions of day {d}");
    }
    assert!(s
        .daily_sessions
        .iter()
        .all(|x| x.values.iter().sum::<u64>() > 0));

    // Funnel: visited is the report's unique users; every stage is reached and narrows.
    let users: Vec<u64> = s.funnel.iter().map(|x| x.users).collect();
    assert_eq!(users.len(), 4);
    assert_eq!(
        users[0] as f64,
        report.row("unique_users").unwrap().measured
    );
    assert!(
        users.windows(2).all(|w| w[0] > w[1]) && users[3] > 0,
        "{users:?}"
    );

    // Retention: a cohort a week, everyone active in its own week, later weeks fewer.
    assert_eq!(s.retention.len(), (days as usize).div_ceil(7));
    assert_eq!(s.retention.iter().map(|c| c.users).sum::<u64>(), users[0]);
    for (w, c) in s.retention.iter().enumerate() {
        assert_eq!(c.active[0], c.users, "cohort {w}");
        assert!(c.active.iter().skip(1).all(|a| *a < c.users));
        let complete = days as usize / 7;
        assert_eq!(
            c.active.len(),
            complete.saturating_sub(w).clamp(1, 13),
            "cohort {w}"
        );
    }
    assert!(s.retention[0].active[1] > 0);

    // Trial outcomes by path are the conversion rows' samples and measurements.
    for (i, key) in ["conversion_self_service", "conversion_sales_assisted"]
        .iter()
        .enumerate()
    {
        let row = report.row(key).unwrap();
        let c = &s.conversion[i];
        assert_eq!(c.trials, row.sample, "{key}");
        assert!((c.converted as f64 / c.trials as f64 - row.measured).abs() < 1e-12);
    }
    let levels: u64 = s.conversion[2..].iter().map(|c| c.trials).sum();
    assert!(levels > 0 && levels <= s.conversion[..2].iter().map(|c| c.trials).sum::<u64>());
}
