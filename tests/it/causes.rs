//! A world with causes (issue 16), checked from the rendered event stream alone: visitors'
//! first-touch channels differ in how deep they browse and how often they become identified,
//! and loyalty builds (later visits go deeper and come back more often).

use ampsim_engine::memory::MemorySim;
use ampsim_engine::{Engine, Scenario, SimConfig};
use chrono::NaiveDate;
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

/// What the stream shows of one device.
#[derive(Default)]
struct Device {
    /// First touch: `utm_source/utm_medium/utm_campaign` of its first session.
    first_touch: String,
    /// Page-level events per session, in session order.
    sessions: Vec<u32>,
    /// Session ids seen, in order.
    ids: Vec<i64>,
    /// Whether any event carried a user id.
    identified: bool,
    /// Per session: whether one of its events carried a user id.
    session_identified: Vec<bool>,
}

fn prop<'a>(e: &'a ampsim_engine::render::Event<'_>, key: &str) -> &'a str {
    e.event_properties
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| match v {
            ampsim_engine::render::Prop::Str(s) => Some(s.as_ref()),
            _ => None,
        })
        .unwrap_or("")
}

fn page_level(event_type: &str) -> bool {
    matches!(
        event_type,
        "page_view" | "pricing_page_view" | "features_page_view" | "search" | "button_click"
    )
}

/// Devices first seen in the emitted days of 240 days at scale 0.02 (seed 16).
fn devices() -> &'static BTreeMap<String, Device> {
    static DEVICES: OnceLock<BTreeMap<String, Device>> = OnceLock::new();
    DEVICES.get_or_init(|| {
        let cfg = SimConfig {
            scenario: Scenario::from_toml("").unwrap(),
            seed: 16,
            start_date: NaiveDate::from_ymd_opt(2025, 3, 3).unwrap(),
            population_scale: 0.02,
        };
        let mut sim = MemorySim::new(Engine::new(cfg));
        let mut devices: BTreeMap<String, Device> = BTreeMap::new();
        // Devices seen with a session before the emitted days: not first seen here.
        let mut skip: HashMap<String, ()> = HashMap::new();
        for _ in 0..240 {
            let out = sim.step();
            for e in sim.engine.render_day(&out) {
                if skip.contains_key(&e.device_id) {
                    continue;
                }
                if !devices.contains_key(&e.device_id) && e.event_id > 1 {
                    // Its first event was in the warm start.
                    skip.insert(e.device_id.clone(), ());
                    continue;
                }
                let d = devices.entry(e.device_id.clone()).or_default();
                d.identified |= e.user_id.is_some();
                if e.session_id < 0 {
                    continue;
                }
                if d.ids.last() != Some(&e.session_id) {
                    if d.ids.is_empty() {
                        d.first_touch = format!(
                            "{}/{}/{}",
                            prop(&e, "utm_source"),
                            prop(&e, "utm_medium"),
                            prop(&e, "utm_campaign")
                        );
                    }
                    d.ids.push(e.session_id);
                    d.sessions.push(0);
                    d.session_identified.push(false);
                }
                *d.session_identified.last_mut().unwrap() |= e.user_id.is_some();
                if page_level(e.event_type) {
                    *d.sessions.last_mut().unwrap() += 1;
                }
            }
        }
        devices
    })
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

#[test]
fn first_touch_channels_differ_in_depth_and_identification() {
    let devs = devices();
    // Per first touch: (devices, identified, page-level events of first sessions).
    let mut by: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for d in devs.values().filter(|d| !d.sessions.is_empty()) {
        let x = by.entry(d.first_touch.as_str()).or_default();
        x.0 += 1;
        x.1 += u64::from(d.identified);
        x.2 += u64::from(d.sessions[0]);
    }
    let rate = |k: &str| {
        let (n, id, _) = by[k];
        (id as f64 / n as f64, n)
    };
    let depth = |k: &str| {
        let (n, _, ev) = by[k];
        ev as f64 / n as f64
    };
    let brand = "google/cpc/brand_search";
    let lookalike = "facebook/cpc/lookalike_saas";
    let generic = "google/cpc/analytics_platform_generic";
    let (rb, nb) = rate(brand);
    let (rl, nl) = rate(lookalike);
    let (rg, _) = rate(generic);
    eprintln!(
        "identified: brand {rb:.4} of {nb}, generic {rg:.4}, lookalike {rl:.4} of {nl}; first-session events: brand {:.2}, generic {:.2}, lookalike {:.2}",
        depth(brand),
        depth(generic),
        depth(lookalike)
    );
    // Brand searchers know what they want: several times the identification rate of
    // lookalike audiences, and deeper first visits. A difference this size is far outside
    // sampling error (hundreds of identified brand visitors).
    assert!(rb > 2.5 * rl, "brand {rb} vs lookalike {rl}");
    assert!(rb > 1.5 * rg, "brand {rb} vs generic {rg}");
    assert!(depth(brand) > 1.3 * depth(lookalike));
    // Every channel with enough visitors has a rate of its own: the spread across
    // first-touch channels is wide (without causes they were all the same, within noise).
    let rates: Vec<f64> = by
        .iter()
        .filter(|(_, (n, _, _))| *n >= 2000)
        .map(|(_, (n, id, _))| *id as f64 / *n as f64)
        .collect();
    let (lo, hi) = rates
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    eprintln!(
        "identification rate across {} channels: {lo:.4} .. {hi:.4}",
        rates.len()
    );
    assert!(rates.len() >= 8);
    assert!(hi > 3.0 * lo, "spread {lo} .. {hi}");
}

#[test]
fn loyalty_builds_later_visits_go_deeper_and_identified_users_return_more() {
    let devs = devices();
    // By session number k (1..=5): mean page-level events.
    let mut events: Vec<Vec<f64>> = vec![Vec::new(); 5];
    // Sessions of anonymous and of identified users: (sessions, followed by another).
    let mut next = [(0u64, 0u64); 2];
    for d in devs.values() {
        for (k, &n) in d.sessions.iter().enumerate() {
            if k < 5 {
                events[k].push(f64::from(n));
            }
            let x = &mut next[usize::from(d.session_identified[k])];
            x.0 += 1;
            x.1 += u64::from(d.sessions.len() > k + 1);
        }
    }
    let depth: Vec<f64> = events.iter().map(|v| mean(v)).collect();
    let again = next.map(|(n, r)| r as f64 / n.max(1) as f64);
    eprintln!(
        "events per session 1..5: {depth:.2?}; share followed by another: anonymous {:.3} of {}, identified {:.3} of {}",
        again[0], next[0].0, again[1], next[1].0
    );
    // Without habit these were flat (8.7 points at every visit). The source plan's year
    // (41% with 2+ sessions, 2.24M returning sessions) leaves room for a mild habit only, so
    // the rise is about a tenth by the fifth visit; a flat profile (within 2% noise) fails.
    assert!(depth[4] > 1.07 * depth[0], "{depth:?}");
    assert!(depth[2] > 1.03 * depth[0], "{depth:?}");
    // Identified users (a form, a trial) come back more than anonymous visitors.
    assert!(again[1] > again[0] + 0.10, "{again:?}");
}

/// Campaigns reach who they name, and e-mail only who gave an address: checked session by
/// session against what the device did before, from the stream alone.
#[test]
fn campaigns_and_email_reach_only_their_audience() {
    let cfg = SimConfig {
        scenario: Scenario::from_toml("").unwrap(),
        seed: 17,
        start_date: NaiveDate::from_ymd_opt(2025, 3, 3).unwrap(),
        population_scale: 0.02,
    };
    let mut sim = MemorySim::new(Engine::new(cfg));
    #[derive(Default)]
    struct Seen {
        session: i64,
        trial: bool,
        pricing: bool,
        identified: bool,
    }
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut warm: HashMap<String, ()> = HashMap::new();
    // (sessions, sessions outside the audience) per rule.
    let mut trialists = (0u32, 0u32);
    let mut pricing = (0u32, 0u32);
    let mut email = (0u32, 0u32);
    for _ in 0..200 {
        let out = sim.step();
        for e in sim.engine.render_day(&out) {
            // A person's two devices are one person (and one audience).
            let person = crate::support::person_device_id(&sim.engine, &e.device_id);
            if warm.contains_key(&person) {
                continue;
            }
            if !seen.contains_key(&person) && (e.device_id != person || e.event_id > 1) {
                // First seen in the warm start: its history is not in the stream.
                warm.insert(person, ());
                continue;
            }
            let d = seen.entry(person).or_default();
            d.identified |= e.user_id.is_some();
            if e.session_id >= 0 && e.session_id != d.session {
                d.session = e.session_id;
                match prop(&e, "utm_campaign") {
                    "reengage_trialists" => {
                        trialists.0 += 1;
                        trialists.1 += u32::from(!d.trial);
                    }
                    "retargeting_pricing" => {
                        pricing.0 += 1;
                        pricing.1 += u32::from(!d.pricing);
                    }
                    _ => {}
                }
                // E-mail reaches identified people (on a second device that has not logged
                // in yet, its events do not carry the user id).
                if prop(&e, "utm_medium") == "email" {
                    email.0 += 1;
                    email.1 += u32::from(!d.identified);
                }
            }
            d.trial |= e.event_type == "trial_started";
            d.pricing |= e.event_type == "pricing_page_view";
        }
    }
    eprintln!(
        "sessions (outside the audience): reengage_trialists {trialists:?}, retargeting_pricing {pricing:?}, email {email:?}"
    );
    // Each audience is reached (so the check has something to check) and never missed.
    assert!(trialists.0 >= 5 && pricing.0 >= 100 && email.0 >= 100);
    assert_eq!((trialists.1, pricing.1, email.1), (0, 0, 0));
}
