//! Accounts (issue 17, item 1), checked from the rendered event stream: every identified user's
//! events carry its company as the Amplitude group `company`, its e-mail address has the
//! company's domain, one `$groupidentify` after the identifying form sets the company's group
//! properties, colleagues share a company, and the size bands' shares are the scenario's.

use ampsim_engine::memory::MemorySim;
use ampsim_engine::render::{Event, Prop};
use ampsim_engine::{Engine, Scenario, SimConfig};
use chrono::NaiveDate;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

fn text(props: &[(&str, Prop<'_>)], key: &str) -> Option<String> {
    props
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string_value())
}

/// What the stream shows of one identified person (its devices' events together).
#[derive(Default)]
struct Person {
    user_id: String,
    /// The `company` group of each of its events with a user id.
    groups: BTreeSet<String>,
    /// Its `$groupidentify` events: (time, group properties as text).
    group_identifies: Vec<(i64, BTreeMap<String, String>)>,
    /// The time of its first event with a user id (the identifying form).
    identified_at: i64,
    /// Event types that carried a user id but no group (must stay empty).
    ungrouped: Vec<String>,
}

struct Run {
    engine: Engine,
    people: BTreeMap<String, Person>,
    /// Events without a user id that carried a group (must stay 0).
    anonymous_grouped: usize,
    /// The labels' company of each identified device id.
    label_company: BTreeMap<String, String>,
}

/// 120 days at scale 0.03 (seed 17).
fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let cfg = SimConfig {
            scenario: Scenario::from_toml("").unwrap(),
            seed: 17,
            start_date: NaiveDate::from_ymd_opt(2025, 2, 3).unwrap(),
            population_scale: 0.03,
        };
        let mut sim = MemorySim::new(Engine::new(cfg));
        let mut people: BTreeMap<String, Person> = BTreeMap::new();
        let mut anonymous_grouped = 0;
        let mut states = BTreeMap::new();
        for _ in 0..120 {
            let out = sim.step();
            for e in sim.engine.render_day(&out) {
                // A person's second device is the same person.
                let person = crate::support::person_device_id(&sim.engine, &e.device_id);
                observe(&e, &person, &mut people, &mut anonymous_grouped);
            }
            for st in out.states {
                states.insert(st.device, st);
            }
        }
        let engine = sim.engine;
        let mut label_company = BTreeMap::new();
        for st in states.values().filter(|st| st.is_identified()) {
            let l = engine.label(st, u32::MAX);
            label_company.insert(
                engine.ids().device_id(st.device),
                engine.companies().domain(engine.scenario(), l.company),
            );
        }
        Run {
            engine,
            people,
            anonymous_grouped,
            label_company,
        }
    })
}

fn observe(
    e: &Event<'_>,
    person: &str,
    people: &mut BTreeMap<String, Person>,
    anonymous_grouped: &mut usize,
) {
    let company = text(&e.groups, "company");
    let Some(uid) = &e.user_id else {
        *anonymous_grouped += usize::from(company.is_some());
        return;
    };
    let p = people.entry(person.to_string()).or_default();
    if p.user_id.is_empty() {
        p.user_id = uid.clone();
        p.identified_at = e.time;
    }
    match company {
        Some(c) => {
            p.groups.insert(c);
        }
        None => p.ungrouped.push(e.event_type.to_string()),
    }
    if e.event_type == "$groupidentify" {
        let props = e
            .group_properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string_value()))
            .collect();
        p.group_identifies.push((e.time, props));
        assert!(e.event_properties.is_empty() && e.user_properties.is_empty());
    }
}

#[test]
fn every_identified_users_events_carry_its_company() {
    let r = run();
    assert!(r.people.len() > 500, "{} identified users", r.people.len());
    assert_eq!(r.anonymous_grouped, 0, "an anonymous event carried a group");
    for (device, p) in &r.people {
        assert!(
            p.ungrouped.is_empty(),
            "{device}: {:?} without a group",
            p.ungrouped
        );
        assert_eq!(
            p.groups.len(),
            1,
            "{device}: one company, got {:?}",
            p.groups
        );
        let company = p.groups.iter().next().unwrap();
        let domain = p.user_id.split_once('@').unwrap().1;
        assert_eq!(
            domain, company,
            "{}: the e-mail has the company's domain",
            p.user_id
        );
        // The engine resolves the domain back to the device's company, and the labels' true
        // account is the same company.
        let parsed = r
            .engine
            .companies()
            .parse_domain(r.engine.scenario(), company)
            .unwrap_or_else(|| panic!("{company} is a company of the simulation"));
        let dev = r.engine.ids().parse_device_id(device).unwrap();
        assert_eq!(parsed, r.engine.company_of(dev));
        if let Some(l) = r.label_company.get(device) {
            assert_eq!(l, company, "{device}: the labels' company");
        }
    }
}

#[test]
fn the_identifying_form_is_followed_by_one_group_identify() {
    let r = run();
    let s = r.engine.scenario();
    let bands: BTreeMap<&str, [u32; 2]> = s
        .accounts
        .size_bands
        .iter()
        .map(|b| (b.name.as_str(), b.employees))
        .collect();
    let industries: BTreeSet<&str> = s
        .accounts
        .industries
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    // The same company is described the same way by every colleague's $groupidentify.
    let mut described: BTreeMap<&str, &BTreeMap<String, String>> = BTreeMap::new();
    let mut first_seen_in_run = 0;
    for (device, p) in &r.people {
        let company = p.groups.iter().next().unwrap();
        // A user identified before the run's first day has no $groupidentify in it.
        if p.group_identifies.is_empty() {
            continue;
        }
        first_seen_in_run += 1;
        assert_eq!(p.group_identifies.len(), 1, "{device}: one $groupidentify");
        let (at, props) = &p.group_identifies[0];
        assert_eq!(
            *at, p.identified_at,
            "{device}: at the identifying form's time"
        );
        assert_eq!(&props["domain"], company);
        assert!(!props["name"].is_empty());
        assert!(industries.contains(props["industry"].as_str()), "{props:?}");
        let [lo, hi] = bands[props["size_band"].as_str()];
        let employees: u32 = props["employees"].parse().unwrap();
        assert!((lo..=hi).contains(&employees), "{props:?}");
        let geo_countries: BTreeSet<&str> =
            s.geography.iter().map(|g| g.country.as_str()).collect();
        assert!(geo_countries.contains(props["country"].as_str()));
        let seen = described.entry(company).or_insert(props);
        assert_eq!(*seen, props, "{company} is described one way");
    }
    assert!(first_seen_in_run > 500, "{first_seen_in_run}");
}

#[test]
fn colleagues_share_companies_and_bands_have_the_scenarios_shares() {
    let r = run();
    let s = r.engine.scenario();
    let mut per_company: BTreeMap<&str, usize> = BTreeMap::new();
    let mut band_of: BTreeMap<&str, String> = BTreeMap::new();
    for p in r.people.values() {
        let company = p.groups.iter().next().unwrap();
        *per_company.entry(company).or_default() += 1;
        if let Some((_, props)) = p.group_identifies.first() {
            band_of.insert(company, props["size_band"].clone());
        }
    }
    let shared = per_company.values().filter(|&&n| n >= 2).count();
    let largest = per_company.values().max().copied().unwrap_or(0);
    assert!(shared >= 20, "{shared} companies with colleagues");
    assert!(
        largest >= 5,
        "the largest company has {largest} identified people"
    );
    // Identified people per band, against the band's share (binomial, 4 standard errors).
    let mut by_band: BTreeMap<&str, usize> = BTreeMap::new();
    let mut n = 0usize;
    for p in r.people.values() {
        let company = p.groups.iter().next().unwrap().as_str();
        if let Some(b) = band_of.get(company) {
            *by_band.entry(b.as_str()).or_default() += 1;
            n += 1;
        }
    }
    for b in &s.accounts.size_bands {
        let got = *by_band.get(b.name.as_str()).unwrap_or(&0) as f64 / n as f64;
        let se = (b.share * (1.0 - b.share) / n as f64).sqrt();
        assert!(
            (got - b.share).abs() < 4.0 * se + 0.01,
            "band {}: {got:.3} of {n} identified people, want {}",
            b.name,
            b.share
        );
    }
    // Larger bands have more identified people per company.
    let per_band_company = |name: &str| {
        let companies: Vec<usize> = per_company
            .iter()
            .filter(|(c, _)| band_of.get(*c).map(String::as_str) == Some(name))
            .map(|(_, &n)| n)
            .collect();
        companies.iter().sum::<usize>() as f64 / companies.len().max(1) as f64
    };
    let small = per_band_company("1-19");
    let large = per_band_company("5000+");
    assert!(
        large > 3.0 * small,
        "5000+: {large:.1} per company, 1-19: {small:.1}"
    );
}

#[test]
fn accounts_scenario_errors_name_the_key() {
    let cases = [
        (
            "[accounts]\nsize_bands = [{ name = \"a\", employees = [1, 9], share = 0.5, companies = 10.0, seats = [1, 3] }]\n",
            "accounts.size_bands",
        ),
        (
            "[accounts]\nsize_bands = [{ name = \"a\", employees = [0, 9], share = 1.0, companies = 10.0, seats = [1, 3] }]\n",
            "accounts.size_bands[0].employees",
        ),
        (
            "[accounts]\nsize_bands = [{ name = \"a\", employees = [1, 9], share = 1.0, companies = 0.5, seats = [1, 3] }]\n",
            "accounts.size_bands[0].companies",
        ),
        (
            "[accounts]\nindustries = [{ name = \"\", weight = 1.0 }]\n",
            "accounts.industries[0].name",
        ),
        (
            "[accounts]\nindustries = [{ name = \"x\", weight = 0.0 }]\n",
            "accounts.industries",
        ),
    ];
    for (toml, path) in cases {
        let e = Scenario::from_toml(toml).expect_err(toml);
        assert_eq!(e.path, path, "{toml}: {e}");
    }
    // One company per band and geography: everyone in a geography and band is a colleague.
    let one = "[accounts]\nsize_bands = [{ name = \"all\", employees = [10, 10], share = 1.0, companies = 1.0, seats = [1, 3] }]\n";
    let engine = Engine::new(SimConfig {
        scenario: Scenario::from_toml(one).unwrap(),
        seed: 1,
        start_date: NaiveDate::from_ymd_opt(2025, 2, 3).unwrap(),
        population_scale: 0.01,
    });
    assert_eq!(
        engine.companies().count() as usize,
        engine.scenario().geography.len()
    );
    for device in 0..200u64 {
        let c = engine.company_of(device);
        assert_eq!(c.serial as usize, c.geo, "one company per geography");
        assert_eq!(engine.company_info(c).employees, 10);
    }
}
