//! Conversions from domain values to protobuf messages.

use crate::app::DayInfo;
use crate::pb;
use crate::sim::report::Report;
use crate::sim::Event;
use crate::store::sims::SimRow;

/// A stored simulation as a message.
pub fn simulation(r: &SimRow, generating: bool) -> pb::Simulation {
    let last = if r.days_generated == 0 {
        String::new()
    } else {
        (r.start_date + chrono::Days::new(u64::from(r.days_generated - 1)))
            .format("%Y-%m-%d")
            .to_string()
    };
    pb::Simulation {
        simulation_id: r.id.clone(),
        seed: r.seed,
        start_date: r.start_date.format("%Y-%m-%d").to_string(),
        population_scale: r.population_scale,
        scenario_toml: r.scenario_toml.clone(),
        scenario_name: r.scenario_name.clone(),
        engine_version: r.engine_version,
        days_generated: r.days_generated,
        last_generated_date: last,
        sessions: r.sessions,
        events: r.events,
        users: r.users,
        generating,
        created_at: r.created_at.clone(),
    }
}

/// A committed day as a progress message.
pub fn day(d: &DayInfo) -> pb::DayProgress {
    pb::DayProgress {
        date: d.date.format("%Y-%m-%d").to_string(),
        day_index: d.day_index,
        sessions: d.sessions,
        events: d.events,
        new_users: d.new_users,
        returning_users: d.returning_users,
        days_generated: d.days_generated,
        days_remaining: d.days_remaining,
    }
}

/// An event as a message.
pub fn event(e: Event<'_>) -> pb::Event {
    let props = |ps: Vec<(&'static str, crate::sim::Prop<'_>)>| {
        ps.into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string_value()))
            .collect()
    };
    let (price, quantity, revenue, product_id, revenue_type) = match &e.revenue {
        Some(r) => (
            Some(r.price),
            Some(r.quantity),
            Some(r.revenue),
            r.product_id.to_string(),
            r.revenue_type.to_string(),
        ),
        None => (None, None, None, String::new(), String::new()),
    };
    pb::Event {
        event_type: e.event_type.to_string(),
        user_id: e.user_id.unwrap_or_default(),
        device_id: e.device_id,
        time: e.time,
        session_id: e.session_id,
        insert_id: e.insert_id,
        event_id: e.event_id,
        platform: e.platform.to_string(),
        os_name: e.os_name.to_string(),
        os_version: e.os_version.to_string(),
        device_family: e.device_family.to_string(),
        device_type: e.device_type.to_string(),
        country: e.country.to_string(),
        region: e.region.to_string(),
        city: e.city.to_string(),
        language: e.language.to_string(),
        event_properties: props(e.event_properties),
        user_properties: props(e.user_properties),
        price,
        quantity,
        revenue,
        product_id,
        revenue_type,
    }
}

/// The report as a message.
pub fn report(r: &Report) -> pb::Report {
    pb::Report {
        days: r.days,
        population_scale: r.population_scale,
        all_pass: r.all_pass(),
        rows: r
            .rows
            .iter()
            .map(|x| pb::ReportRow {
                key: x.key.clone(),
                name: x.name.clone(),
                target: x.target,
                tolerance: x.tolerance,
                measured: x.measured,
                unit: x.unit.clone(),
                pass: x.pass,
                sample: x.sample,
            })
            .collect(),
    }
}
