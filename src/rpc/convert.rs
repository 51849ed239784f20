//! Conversions from domain values to protobuf messages. (Events are not converted here: the
//! `wire` module writes their bytes straight from the schema.)

use crate::app::DayInfo;
use crate::pb;
use crate::store::sims::SimRow;
use ampsim_engine::report::Report;

/// A stored simulation as a message.
pub fn simulation(r: &SimRow, generating: bool) -> pb::Simulation {
    let last = if r.emitted_days() == 0 {
        String::new()
    } else {
        (r.start_date + chrono::Days::new(u64::from(r.emitted_days() - 1)))
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
        days_generated: r.emitted_days(),
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
                status: x.status.label().to_string(),
            })
            .collect(),
        series: Some(series(&r.series)),
    }
}

fn series(s: &ampsim_engine::report::Series) -> pb::ReportSeries {
    pb::ReportSeries {
        first_date: s.first_date.clone(),
        daily_sessions: s
            .daily_sessions
            .iter()
            .map(|x| pb::NamedSeries {
                name: x.name.clone(),
                values: x.values.clone(),
            })
            .collect(),
        funnel: funnel(
            &s.funnel
                .iter()
                .map(|x| (x.name.as_str(), x.users))
                .collect::<Vec<_>>(),
        ),
        retention: s
            .retention
            .iter()
            .map(|x| pb::RetentionCohort {
                week_start: x.week_start.clone(),
                users: x.users,
                active: x.active.clone(),
            })
            .collect(),
        conversion: s
            .conversion
            .iter()
            .map(|x| pb::TrialConversion {
                name: x.name.clone(),
                trials: x.trials,
                converted: x.converted,
            })
            .collect(),
        mrr: s
            .mrr
            .iter()
            .map(|x| pb::MonthRevenue {
                month: x.month.clone(),
                mrr: x.mrr,
                paying: x.paying,
                new: x.new,
                churned: x.churned,
            })
            .collect(),
    }
}

fn date(engine: &ampsim_engine::Engine, day: u32) -> String {
    engine.date_of(day).format("%Y-%m-%d").to_string()
}

/// A journey summary as a message.
pub fn journey_summary(
    engine: &ampsim_engine::Engine,
    j: &crate::query::JourneySummary,
) -> pb::JourneySummary {
    let company = engine.company_info(engine.company_of(j.device));
    pb::JourneySummary {
        company: if j.is_identified {
            company.domain.clone()
        } else {
            String::new()
        },
        device_id: engine.ids().device_id(j.device),
        user_id: if j.is_identified {
            engine.user_id(j.device)
        } else {
            String::new()
        },
        first_seen_date: date(engine, j.first_day),
        first_touch_source: j.first_touch.0.clone(),
        first_touch_medium: j.first_touch.1.clone(),
        first_touch_campaign: j.first_touch.2.clone(),
        session_count: j.session_count,
        total_engagement_score: j.total_engagement,
        is_identified: j.is_identified,
        form_type: j.form_type.clone(),
        trial_path: j.trial_path.clone(),
        trial_outcome: j.trial_outcome.clone(),
        product_sku: j.product_sku.clone(),
        revenue: j.revenue,
        event_count: j.event_count,
        stages: j.stages.clone(),
        ground_truth: j.label.as_ref().map(|l| {
            let d = l.trial.and_then(|t| t.decision);
            pb::GroundTruth {
                intent: l.intent,
                intent_mean: l.intent_mean,
                trial_decided: d.is_some(),
                trial_decision_date: d.map(|d| date(engine, d.day)).unwrap_or_default(),
                milestones_at_decision: d.map_or(0, |d| u32::from(d.milestones)),
                usage_at_decision: d.map_or(0, |d| u32::from(d.usage)),
                p_convert: d.map_or(0.0, |d| d.p_convert),
                trial_converts: d.is_some_and(|d| d.converts),
                company: company.domain.clone(),
                company_name: company.name.clone(),
                company_size_band: engine.scenario().accounts.size_bands[company.company.band]
                    .name
                    .clone(),
                second_device_id: l
                    .second_device
                    .map(|_| {
                        engine
                            .ids()
                            .device_id(ampsim_engine::ids::second_device_of(l.device))
                    })
                    .unwrap_or_default(),
                second_device_first_seen_date: l
                    .second_device
                    .map(|(first, _)| date(engine, first))
                    .unwrap_or_default(),
                second_device_login_date: l
                    .second_device
                    .and_then(|(_, login)| login)
                    .map(|d| date(engine, d))
                    .unwrap_or_default(),
            }
        }),
    }
}

/// A cohort member as a message.
pub fn member(engine: &ampsim_engine::Engine, m: &crate::query::Member) -> pb::CohortMember {
    let s = engine.scenario();
    pb::CohortMember {
        device_id: engine.ids().device_id(m.device),
        user_id: if m.identified {
            engine.user_id(m.device)
        } else {
            String::new()
        },
        first_seen_date: date(engine, ampsim_engine::ids::first_day_of(m.device)),
        session_count: m.sessions,
        form_type: m
            .form_type
            .map(|f| s.forms.types[f as usize].form_type.clone())
            .unwrap_or_default(),
        trial_path: m
            .trial_path
            .map(|p| p.name().to_string())
            .unwrap_or_default(),
        trial_outcome: m.outcome.name().to_string(),
        product_sku: m
            .sku
            .map(|i| s.products[i as usize].sku.clone())
            .unwrap_or_default(),
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Funnel steps (name, users) as messages, each with its conversion from the step before.
fn funnel(steps: &[(&str, u64)]) -> Vec<pb::FunnelStep> {
    steps
        .iter()
        .enumerate()
        .map(|(i, (name, n))| pb::FunnelStep {
            step: (*name).to_string(),
            users: *n,
            conversion_from_previous: if i == 0 {
                1.0
            } else {
                ratio(*n, steps[i - 1].1)
            },
        })
        .collect()
}

/// A cohort summary as a message.
pub fn cohort_summary(
    engine: &ampsim_engine::Engine,
    sim: &SimRow,
    a: &crate::query::CohortAgg,
) -> pb::CohortSummary {
    let last_week = sim.emitted_days().saturating_sub(1) / 7;
    let retention = a
        .retention
        .weeks
        .iter()
        .map(|(&week, (users, active))| {
            let weeks = (last_week.saturating_sub(week) + 1) as usize;
            pb::RetentionRow {
                week_start: date(engine, a.retention.origin + week * 7),
                users: *users,
                active_share: (0..weeks)
                    .map(|k| ratio(active.get(k).copied().unwrap_or(0), *users))
                    .collect(),
            }
        })
        .collect();
    let funnel = funnel(&[
        ("visited", a.users),
        ("identified", a.identified),
        ("trial", a.trials),
        ("paid", a.paid),
    ]);
    pb::CohortSummary {
        users: a.users,
        identified: a.identified,
        trials: a.trials,
        paid: a.paid,
        sessions: a.sessions,
        identification_rate: ratio(a.identified, a.users),
        trial_rate: ratio(a.trials, a.identified),
        trial_conversion_rate: ratio(a.paid, a.trials_closed),
        paid_rate: ratio(a.paid, a.users),
        retention,
        funnel,
    }
}

/// A day's Parquet file as `FileChunk` messages of at most `max` bytes; the last one (there is
/// always one, even for an empty file) carries `last`, the events and the size.
pub fn file_chunks(
    day: crate::app::stream::DayParquet,
    max: usize,
) -> impl Iterator<Item = pb::FileChunk> {
    let date = day.date.format("%Y-%m-%d").to_string();
    let size = day.bytes.len();
    let pieces = size.div_ceil(max.max(1)).max(1);
    let bytes = bytes::Bytes::from(day.bytes);
    (0..pieces).map(move |i| {
        let last = i + 1 == pieces;
        let end = if last { size } else { (i + 1) * max };
        pb::FileChunk {
            date: date.clone(),
            data: bytes.slice(i * max..end),
            last,
            events: if last { day.events } else { 0 },
            size: if last { size as u64 } else { 0 },
        }
    })
}
