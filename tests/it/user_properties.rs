//! User properties as Amplitude holds them (issue 17, item 5): the stored view of every event
//! is everything the user's events sent before it and at it, on earlier days too; the sent
//! view puts properties exactly on the events `sends_user_properties` names (the Export's
//! `data.user_properties_updated`).

use ampsim_engine::memory::MemorySim;
use ampsim_engine::render::sends_user_properties;
use ampsim_engine::{Engine, Scenario, SimConfig, UserPropertiesView};
use chrono::NaiveDate;
use std::collections::{BTreeMap, HashMap};

type Props = BTreeMap<&'static str, String>;

fn props(ev: &ampsim_engine::Event<'_>) -> Vec<(&'static str, String)> {
    ev.user_properties
        .iter()
        .map(|(k, v)| (*k, v.to_string_value()))
        .collect()
}

/// 75 days at scale 0.02 (customers from the warm start renew, churn and use the product): for
/// every device first seen in the range, each event's stored user properties equal the fold
/// of the sent ones up to it, in event order over all its days; the sent ones are non-empty
/// exactly where `sends_user_properties` says; and properties set on earlier days reach later
/// days' events (`product_sku`, sent only at the conversion; a campaign kept through a later
/// session without one).
#[test]
fn stored_user_properties_are_everything_the_users_events_sent() {
    let cfg = SimConfig {
        scenario: Scenario::from_toml("").expect("the default scenario"),
        seed: 5,
        start_date: NaiveDate::from_ymd_opt(2025, 2, 3).expect("a date"),
        population_scale: 0.02,
    };
    let mut sim = MemorySim::new(Engine::new(cfg));
    let mut held: HashMap<u64, Props> = HashMap::new();
    let (mut checked, mut sent_events, mut later_day_sku, mut kept_campaign) = (0u64, 0u64, 0, 0);
    let mut customers_with_sku = 0u64;
    for _ in 0..75 {
        let out = sim.step();
        let engine = &sim.engine;
        for r in &out.records {
            let mut sent = Vec::new();
            engine.for_each_event_as(
                r,
                UserPropertiesView::Sent,
                |_, _| true,
                |_, e| {
                    sent.push((e.event_id, props(e)));
                    assert_eq!(
                        !e.user_properties.is_empty(),
                        sends_user_properties(e.event_type, e.session_id, e.time),
                        "{} {} at {}",
                        e.event_type,
                        e.session_id,
                        e.time
                    );
                },
            );
            let mut stored = Vec::new();
            engine.for_each_event_as(
                r,
                UserPropertiesView::Stored,
                |_, _| true,
                |_, e| {
                    stored.push((e.event_id, props(e)));
                    let keys: Vec<&str> = e.user_properties.iter().map(|(k, _)| *k).collect();
                    assert!(
                        keys.windows(2).all(|w| w[0] < w[1]),
                        "sorted, once each: {keys:?}"
                    );
                    if keys.contains(&"lifecycle_stage") {
                        customers_with_sku += 1;
                        assert!(keys.contains(&"product_sku") && keys.contains(&"plan"));
                    }
                },
            );
            assert_eq!(sent.len(), stored.len());
            // New today: the person's first device has sent nothing before (the record is the
            // person's, its second device's events included, which count on their own ids).
            let first_here = r.event_id_base == 0;
            if !first_here && !held.contains_key(&r.device) {
                continue; // first seen before the range: its earlier properties are not here
            }
            let acc = held.entry(r.device).or_default();
            let new_today = first_here;
            for ((id, s), (id2, st)) in sent.into_iter().zip(stored) {
                // Both views render the same events in the same order.
                assert_eq!(id, id2);
                let before_sku = acc.contains_key("product_sku");
                let before_campaign = acc.get("utm_campaign").cloned();
                sent_events += u64::from(!s.is_empty());
                let session_without_campaign = s.iter().any(|(k, _)| *k == "utm_source")
                    && !s.iter().any(|(k, _)| *k == "utm_campaign");
                acc.extend(s);
                let want: Vec<(&'static str, String)> =
                    acc.iter().map(|(k, v)| (*k, v.clone())).collect();
                assert_eq!(st, want, "device {} event {id}", r.device);
                checked += 1;
                later_day_sku += u32::from(before_sku && !new_today);
                kept_campaign += u32::from(session_without_campaign && before_campaign.is_some());
            }
        }
    }
    assert!(checked > 100_000, "{checked} events checked");
    assert!(sent_events > 10_000, "{sent_events} events sent properties");
    assert!(
        later_day_sku > 1_000,
        "{later_day_sku} events carry an earlier day's product_sku"
    );
    assert!(
        kept_campaign > 20,
        "{kept_campaign} sessions kept an earlier campaign"
    );
    assert!(
        customers_with_sku > 1_000,
        "{customers_with_sku} customer events"
    );
}
