//! The one JSON printer (`EventView::write_json`, written from the event schema) against the
//! tests' own serde_json form of the same events.

use crate::support::event_json;
use ampsim::pb;
use ampsim::pb::property_value::Kind;
use ampsim::wire::EventBatch;
use ampsim_engine::memory::MemorySim;
use ampsim_engine::{Engine, Scenario, SimConfig};
use prost::Message;

fn line(e: &pb::Event) -> String {
    serde_json::to_string(&event_json(e)).unwrap()
}

fn text(s: &str) -> pb::PropertyValue {
    typed(Kind::StringValue(s.into()))
}

fn typed(kind: Kind) -> pb::PropertyValue {
    pb::PropertyValue { kind: Some(kind) }
}

fn printed(batch: &EventBatch) -> Vec<String> {
    batch
        .iter()
        .map(|v| {
            let mut buf = Vec::new();
            v.expect("view parses").write_json(&mut buf);
            String::from_utf8(buf).expect("utf-8")
        })
        .collect()
}

#[test]
fn the_printer_writes_the_serde_json_form_of_every_event() {
    let mut sim = MemorySim::new(Engine::new(SimConfig {
        scenario: Scenario::from_toml("").unwrap(),
        seed: 3,
        start_date: chrono::NaiveDate::from_ymd_opt(2025, 1, 6).unwrap(),
        population_scale: 0.01,
    }));
    let mut records = Vec::new();
    for _ in 0..40 {
        records.extend(sim.step().records);
    }
    let events = sim.engine.render_sorted(&records);
    let has = |t: &str| events.iter().any(|e| e.event_type == t);
    assert!(has("purchase") && has("trial_converted") && has("trial_expired"));
    let batch = EventBatch::encode(&events);
    let owned = batch.to_events().unwrap();
    let want: Vec<String> = owned.iter().map(line).collect();
    assert_eq!(printed(&batch), want);
}

#[test]
fn escapes_repeated_keys_and_optional_fields_print_as_serde_json_does() {
    // Escapes, non-ASCII, an empty map and every optional field.
    let mut odd = pb::Event {
        event_type: "q\"uote\\back\nline\u{1}".into(),
        user_id: "jürgen@例え.jp".into(),
        time: -5,
        session_id: -1,
        price: Some(0.1 + 0.2),
        quantity: Some(3),
        revenue: Some(1e21),
        product_id: "sku</script>".into(),
        revenue_type: "purchase".into(),
        ..pb::Event::default()
    };
    odd.user_properties.insert("b".into(), text("2"));
    odd.user_properties.insert("a".into(), text("tab\t"));
    odd.user_properties
        .insert("n".into(), typed(Kind::IntValue(-7)));
    odd.user_properties
        .insert("x".into(), typed(Kind::DoubleValue(1e21)));
    odd.user_properties
        .insert("t".into(), typed(Kind::BoolValue(true)));
    // A value without a type (another writer's): the printer shows an empty string.
    odd.event_properties
        .insert("none".into(), pb::PropertyValue { kind: None });
    // The same key twice in one event (two messages' bytes back to back merge, and a map
    // keeps the last value).
    let mut twice = pb::Event::default();
    twice.user_properties.insert("a".into(), text("last"));
    let mut event = odd.encode_to_vec();
    event.extend(twice.encode_to_vec());
    let mut bytes = vec![0x0a];
    prost::encoding::encode_varint(event.len() as u64, &mut bytes);
    bytes.extend(event);
    let batch = EventBatch::decode(bytes.as_slice()).unwrap();
    let o = &batch.to_events().unwrap()[0];
    assert_eq!(o.user_properties["a"], text("last"));
    let mut want = event_json(o);
    want["event_properties"]["none"] = "".into();
    assert_eq!(printed(&batch), vec![serde_json::to_string(&want).unwrap()]);
}
