//! People with two devices (issue 17, item 3), checked from the rendered event stream: a
//! second device belongs to a person who has one (the latent trait), is of the other class
//! (a phone beside a computer, or the reverse), appears only after its person's
//! identification, and takes the scenario's shares of website and product sessions; a website
//! session on it logs in with `login_probability`, a product session always does, and from its
//! login on its events carry the person's user id (Amplitude's merge key).

use ampsim_engine::ids::person_of;
use ampsim_engine::memory::MemorySim;
use ampsim_engine::{Engine, Scenario, SimConfig};
use chrono::NaiveDate;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The shares under test, above the default's so that 120 days at scale 0.05 has power (and
/// identified people fill more forms, some on their second device).
const SCENARIO: &str = "[second_devices]
probability = 0.5
website_session_share = 0.4
product_session_share = 0.15
login_probability = 0.3
[forms]
reach_probability = 0.05
secondary_probability = 1.0
";

/// One session as the stream shows it.
struct Session {
    second: bool,
    start: i64,
    product: bool,
    /// Whether its first event carries the user id.
    logged_in: bool,
    /// Whether any of its events does (a form logs a device in mid-session).
    any_user_id: bool,
}

/// What the stream shows of one person.
#[derive(Default)]
struct Person {
    /// The time of its first event with a user id on its first device (the identifying form).
    identified_at: Option<i64>,
    user_id: Option<String>,
    sessions: Vec<Session>,
    /// Whether each device's events looked mobile (by `os_name`): [first, second].
    mobile: [HashSet<bool>; 2],
    /// The second device's user ids (at most the person's).
    second_user_ids: HashSet<String>,
}

/// Within `k` binomial standard deviations.
fn near(hits: u32, n: u32, p: f64, k: f64) -> bool {
    let (h, n) = (f64::from(hits), f64::from(n));
    (h - n * p).abs() <= k * (n * p * (1.0 - p)).sqrt() + 1.0
}

#[test]
fn second_devices_are_the_persons_and_take_the_scenarios_shares() {
    let scenario = Scenario::from_toml(SCENARIO).expect("the test scenario");
    let sd = scenario.second_devices.clone();
    // os_name -> mobile, from the device catalogue (each browser name is of one class).
    let mut mobile_os: HashMap<String, bool> = HashMap::new();
    for d in &scenario.devices {
        let m = sd.is_mobile(d);
        assert_eq!(*mobile_os.entry(d.os_name.clone()).or_insert(m), m);
    }
    let cfg = SimConfig {
        scenario,
        seed: 29,
        start_date: NaiveDate::from_ymd_opt(2025, 2, 3).unwrap(),
        population_scale: 0.05,
    };
    let mut sim = MemorySim::new(Engine::new(cfg));
    let app: HashSet<String> = sim.engine.app_event_types().map(str::to_string).collect();
    let forms: HashSet<String> = (sim.engine.scenario().forms.types.iter())
        .map(|f| f.event_type.clone())
        .collect();
    let mut second_forms = 0u32;
    let mut people: BTreeMap<u64, Person> = BTreeMap::new();
    for _ in 0..120 {
        let out = sim.step();
        let engine = &sim.engine;
        for e in engine.render_day(&out) {
            let device = engine.ids().parse_device_id(&e.device_id).unwrap();
            let person = person_of(device);
            // Only people first seen in the emitted days: their whole history is here.
            if ampsim_engine::ids::first_day_of(person) < engine.first_day() {
                continue;
            }
            let second = device != person;
            let p = people.entry(person).or_default();
            p.mobile[usize::from(second)].insert(mobile_os[e.os_name]);
            if let Some(u) = &e.user_id {
                if second {
                    p.second_user_ids.insert(u.clone());
                } else if p.identified_at.is_none() {
                    p.identified_at = Some(e.time);
                    p.user_id = Some(u.clone());
                }
            }
            if second && forms.contains(e.event_type) {
                // A form identifies the device it is sent from.
                second_forms += 1;
                assert!(
                    e.user_id.is_some(),
                    "{}: a form without the user id",
                    e.device_id
                );
            }
            if e.session_id >= 0 && e.time == e.session_id {
                p.sessions.push(Session {
                    second,
                    start: e.session_id,
                    product: app.contains(e.event_type),
                    logged_in: e.user_id.is_some(),
                    any_user_id: e.user_id.is_some(),
                });
            } else if e.user_id.is_some() {
                // A later event of the device's latest session.
                if let Some(s) = p.sessions.iter_mut().rev().find(|s| s.second == second) {
                    s.any_user_id = true;
                }
            }
        }
    }
    let engine = &sim.engine;
    // Sessions after identification of people with a second device, by kind: (on it, all).
    let (mut website, mut product) = ((0u32, 0u32), (0u32, 0u32));
    // Website sessions on a second device before its login: (logged in, all).
    let mut logins = (0u32, 0u32);
    let (mut identified, mut with_trait, mut seen_second) = (0u32, 0u32, 0u32);
    for (&person, p) in &people {
        let has_trait = engine.second_device_kind(person).is_some();
        let firsts = p.sessions.iter().filter(|s| !s.second).count();
        let seconds: Vec<&Session> = p.sessions.iter().filter(|s| s.second).collect();
        let id = engine.ids().device_id(person);
        if seconds.is_empty() {
            assert!(
                p.second_user_ids.is_empty() && p.mobile[1].is_empty(),
                "{id}"
            );
        } else {
            seen_second += 1;
            assert!(has_trait, "{id}: a second device without the trait");
            // It comes after identification, of the other class, with the person's user id.
            let at = p
                .identified_at
                .expect("identified before its second device");
            assert!(
                seconds[0].start > at,
                "{id}: second device before identification"
            );
            assert_eq!(p.mobile[0].len(), 1, "{id}: one first device");
            assert_eq!(p.mobile[1].len(), 1, "{id}: one second device");
            assert_ne!(p.mobile[0], p.mobile[1], "{id}: the other class");
            assert!(
                p.second_user_ids
                    .iter()
                    .all(|u| Some(u) == p.user_id.as_ref()),
                "{id}: {:?}",
                p.second_user_ids
            );
            let mut logged_in = false;
            for s in &seconds {
                if logged_in {
                    assert!(s.logged_in, "{id}: a session after the login without it");
                    continue;
                }
                if s.product {
                    assert!(s.logged_in, "{id}: a product session without a login");
                } else {
                    logins.1 += 1;
                    logins.0 += u32::from(s.logged_in);
                }
                logged_in = s.any_user_id;
            }
        }
        assert!(firsts > 0, "{id}: the first device has sessions");
        let Some(at) = p.identified_at else {
            continue;
        };
        identified += 1;
        if !has_trait {
            continue;
        }
        with_trait += 1;
        for s in p.sessions.iter().filter(|s| s.start > at) {
            let c = if s.product {
                &mut product
            } else {
                &mut website
            };
            c.0 += u32::from(s.second);
            c.1 += 1;
        }
    }
    eprintln!(
        "{identified} identified people, {with_trait} with the trait, {seen_second} with second-device \
         events; sessions on it: website {website:?}, product {product:?}; logins {logins:?}; \
         {second_forms} forms on it"
    );
    assert!(website.1 >= 150 && product.1 >= 1000 && logins.1 >= 40 && second_forms >= 5);
    assert!(near(website.0, website.1, sd.website_session_share, 4.0));
    assert!(near(product.0, product.1, sd.product_session_share, 4.0));
    assert!(near(logins.0, logins.1, sd.login_probability, 4.0));
    // The trait: `probability` of people (drawn per person, whatever they do).
    assert!(near(with_trait, identified, sd.probability, 4.0));
}
