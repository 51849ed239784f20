//! Ground truth: what the model knows about every user and an analyst can only estimate.
//!
//! A [`Label`] is a pure function of a user's state ([`Engine::label`]): the latent intent the
//! user arrived with and the mean its first touch draws it around (the touch's true effect), the
//! first touch, identification, and for a trial what its outcome was decided on and the exact
//! probability the outcome was drawn with (`p_convert`,
//! [`Engine::conversion_probability`]). Every output of labels (`ampsim export --format
//! labels`, the Python package's `Definition.labels`, the journey summary) is built from it, and
//! the columnar ones have one Arrow schema ([`schema`]), whose metadata holds the true effect
//! parameters as JSON ([`effects_json`]).
//!
//! A label is final once the user is never due again; a user still due (a scheduled return, a
//! running trial) is labelled as of the last generated day, so a label can change when more
//! days are generated (`trial_outcome` `active` becomes `converted` or `expired`).

use crate::engine::Engine;
use crate::render::campaign_name;
use crate::scenario::TrialPath;
use crate::state::{Touch, UserState};
use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use std::sync::Arc;

/// The schema metadata key of the true effect parameters ([`effects_json`]).
pub const EFFECTS_KEY: &str = "ampsim.effects";

/// What a trial's label says about it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrialLabel {
    /// Self-service or sales-assisted.
    pub path: TrialPath,
    /// The day the trial started.
    pub start_day: u32,
    /// Once decided: the decision day, the milestones and usage events before it, the
    /// probability the outcome was drawn with, and the outcome.
    pub decision: Option<Decision>,
    /// Whether the terminal event (trial_converted or trial_expired) has happened.
    pub ended: bool,
}

/// How a trial was decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// The decision day (the first day of the conversion window).
    pub day: u32,
    /// Activation milestones reached before the decision day.
    pub milestones: u8,
    /// Usage events before the decision day.
    pub usage: u16,
    /// The modelled probability of converting, as the outcome was drawn with.
    pub p_convert: f64,
    /// Whether the trial converts.
    pub converts: bool,
    /// The day of the terminal event: conversion day or expiry day.
    pub end_day: u32,
}

/// A user's ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// The device number.
    pub device: u64,
    /// The first day seen (before [`Engine::first_day`] for a user of the warm start).
    pub first_day: u32,
    /// The first touch.
    pub first_touch: Touch,
    /// The latent buying intent drawn at arrival.
    pub intent: f64,
    /// The mean of the first touch's intent distribution: the touch's true effect on intent.
    pub intent_mean: f64,
    /// Sessions so far.
    pub sessions: u32,
    /// The day the user was identified.
    pub identified_day: Option<u32>,
    /// The identifying form (index into `forms.types`).
    pub form_type: Option<u8>,
    /// The trial, if any.
    pub trial: Option<TrialLabel>,
    /// The product bought (index into `products`).
    pub product_sku: Option<u8>,
    /// The company the user works for (its true account), known for anonymous users too.
    pub company: crate::accounts::Company,
    /// The person's second device, once it has been used: the day of its first session and
    /// the day of its login (`None` while it is anonymous).
    pub second_device: Option<(u32, Option<u32>)>,
}

impl Label {
    /// `none`, `active`, `converted` or `expired`, as the journey summary names it.
    pub fn trial_outcome(&self) -> &'static str {
        match self.trial {
            None => "none",
            Some(TrialLabel {
                ended: true,
                decision: Some(d),
                ..
            }) => {
                if d.converts {
                    "converted"
                } else {
                    "expired"
                }
            }
            Some(_) => "active",
        }
    }
}

impl Engine {
    /// The ground truth of a user, from its state after day `as_of` (the last generated day).
    /// What is dated after it is left out: a session that crosses midnight after the last
    /// day is in the state whole, but an identifying form, a trial start or a trial's end in
    /// its rest is not out before the next day is generated.
    pub fn label(&self, st: &UserState, as_of: u32) -> Label {
        let tr = &self.scenario().trials;
        let trial = st
            .trial
            .filter(|t| t.start_day <= as_of)
            .map(|t| TrialLabel {
                path: t.path,
                start_day: t.start_day,
                decision: t.decided.then(|| {
                    let (milestones, usage) = t.decided_on;
                    Decision {
                        day: t.start_day + tr.conversion_window[0] as u32,
                        milestones,
                        usage,
                        p_convert: self.conversion_probability(t.path, milestones, usage),
                        converts: t.converts,
                        end_day: t.end_day,
                    }
                }),
                ended: t.ended && t.end_day <= as_of,
            });
        Label {
            device: st.device,
            first_day: st.first_day(),
            first_touch: st.first_touch,
            intent: self.intent(st.device, st.first_touch),
            intent_mean: self.intent_mean(st.first_touch),
            sessions: st.session_count(),
            identified_day: st.identified_day.filter(|&d| d <= as_of),
            form_type: st
                .form_type
                .filter(|_| st.identified_day.is_some_and(|d| d <= as_of)),
            product_sku: st.product_sku.filter(|_| {
                trial.is_some_and(|t| t.ended && t.decision.is_some_and(|d| d.converts))
            }),
            trial,
            company: self.company_of(st.device),
            second_device: st.second.filter(|d| d.first_day <= as_of).map(|d| {
                (
                    d.first_day,
                    d.login_ms
                        .map(|t| self.day_at_ms(t))
                        .filter(|&day| day <= as_of),
                )
            }),
        }
    }
}

/// The columns of labels: (name, type, nullable, doc).
const COLUMNS: [(&str, DataType, bool, &str); 27] = [
    ("device_id", DataType::Utf8, false, "The device id, as in the events."),
    ("user_id", DataType::Utf8, true, "The user id once identified, as in the events."),
    ("company", DataType::Utf8, false, "The domain of the company the user works for (its true account): known for every user, the `company` group of its events once identified."),
    ("company_size_band", DataType::Utf8, false, "The company's size band (accounts.size_bands[].name)."),
    ("first_seen_date", DataType::Date32, false, "The first day seen (UTC); before the start date for users of the warm start."),
    ("first_touch_source", DataType::Utf8, false, "First-touch utm_source (initial_utm_source)."),
    ("first_touch_medium", DataType::Utf8, false, "First-touch utm_medium."),
    ("first_touch_campaign", DataType::Utf8, true, "First-touch utm_campaign, null for none."),
    ("intent", DataType::Float64, false, "Latent buying intent drawn at arrival: normal(intent_mean, behaviour.intent_sd)."),
    ("intent_mean", DataType::Float64, false, "The first touch's mean intent: its true effect on who arrives."),
    ("sessions", DataType::Int64, false, "Sessions up to the last generated day."),
    ("identified", DataType::Boolean, false, "Whether the user filled an identifying form."),
    ("identified_date", DataType::Date32, true, "The day of the identifying form."),
    ("form_type", DataType::Utf8, true, "The identifying form's type."),
    ("trial_path", DataType::Utf8, true, "self_service or sales_assisted; null without a trial."),
    ("trial_start_date", DataType::Date32, true, "The day the trial started."),
    ("trial_decision_date", DataType::Date32, true, "The day the outcome was decided (the conversion window's first day); null until then."),
    ("milestones_at_decision", DataType::Int64, true, "Activation milestones reached before the decision day."),
    ("usage_at_decision", DataType::Int64, true, "Usage events in product sessions before the decision day."),
    ("p_convert", DataType::Float64, true, "The modelled probability of converting that the outcome was drawn with (see the effects metadata)."),
    ("trial_converts", DataType::Boolean, true, "The decided outcome (known to the model before the conversion or expiry happens)."),
    ("trial_end_date", DataType::Date32, true, "The day of trial_converted or trial_expired, once decided."),
    ("trial_outcome", DataType::Utf8, false, "none, active, converted or expired, as of the last generated day."),
    ("product_sku", DataType::Utf8, true, "The product bought on conversion."),
    ("second_device_id", DataType::Utf8, true, "The device id of the person's second device (the other kind: a phone beside a computer, or the reverse), once it has been used; null for none. Its events belong to this person (its anonymous ones too, which Amplitude merges once it logs in)."),
    ("second_device_first_seen_date", DataType::Date32, true, "The day of the second device's first session."),
    ("second_device_login_date", DataType::Date32, true, "The day the second device logged in (its events carry the user id from then on); null while it is anonymous."),
];

/// The Arrow schema of labels, with each column's doc as `doc` metadata (without the effects:
/// [`LabelsBuilder::schema`] adds them for a simulation).
pub fn schema() -> Schema {
    Schema::new(
        COLUMNS
            .iter()
            .map(|(name, ty, nullable, doc)| {
                Field::new(*name, ty.clone(), *nullable)
                    .with_metadata([("doc".to_string(), doc.to_string())].into_iter().collect())
            })
            .collect::<Vec<_>>(),
    )
}

/// The true effect parameters of a simulation as JSON: the intent mean of every first touch,
/// the `[behaviour]`, `[trials]` (with the outcome model), `[signals]` and `[app]` sections as
/// the engine runs them, and the formula of `p_convert`.
pub fn effects_json(engine: &Engine) -> String {
    let s = engine.scenario();
    let mut touches = Vec::new();
    for (i, src) in s.sources.iter().enumerate() {
        for c in 0..=src.campaigns.len() {
            let touch = Touch {
                source: i as u8,
                campaign: c as u8,
            };
            touches.push(serde_json::json!({
                "source": src.source,
                "medium": src.medium,
                "campaign": campaign_name(s, touch),
                "intent_mean": engine.intent_mean(touch),
            }));
        }
    }
    serde_json::json!({
        "engine_version": crate::ENGINE_VERSION,
        "intent": {
            "sd": s.behaviour.intent_sd,
            "by_first_touch": touches,
        },
        "behaviour": s.behaviour,
        "trials": s.trials,
        "signals": s.signals,
        "app": s.app,
        "p_convert": "sigmoid(logit(trials.conversion_rate[path]) + trials.outcome.calibration[path] + trials.outcome.per_milestone * milestones_at_decision + trials.outcome.per_log_usage * ln(1 + usage_at_decision))",
    })
    .to_string()
}

/// Days since 1970-01-01 (Arrow's Date32).
fn date32(engine: &Engine, day: u32) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
    (engine.date_of(day) - epoch).num_days() as i32
}

/// Builds record batches of labels.
pub struct LabelsBuilder<'e> {
    engine: &'e Engine,
    as_of: u32,
    schema: SchemaRef,
    rows: usize,
    strs: [StringBuilder; 12],
    dates: [Date32Builder; 7],
    floats: [Float64Builder; 3],
    ints: [Int64Builder; 3],
    bools: [BooleanBuilder; 2],
    buf: String,
}

impl<'e> LabelsBuilder<'e> {
    /// A builder for `engine`'s labels as of day `as_of` ([`Engine::label`]); its schema
    /// carries the effects ([`EFFECTS_KEY`]).
    pub fn new(engine: &'e Engine, as_of: u32) -> Self {
        let schema = schema().with_metadata(
            [(EFFECTS_KEY.to_string(), effects_json(engine))]
                .into_iter()
                .collect(),
        );
        LabelsBuilder {
            engine,
            as_of,
            schema: Arc::new(schema),
            rows: 0,
            strs: std::array::from_fn(|_| StringBuilder::new()),
            dates: std::array::from_fn(|_| Date32Builder::new()),
            floats: std::array::from_fn(|_| Float64Builder::new()),
            ints: std::array::from_fn(|_| Int64Builder::new()),
            bools: std::array::from_fn(|_| BooleanBuilder::new()),
            buf: String::new(),
        }
    }

    /// The schema of the batches, with the effects.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Rows added since the last [`LabelsBuilder::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no row was added since the last [`LabelsBuilder::finish`].
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Adds a user's label.
    pub fn push_state(&mut self, st: &UserState) {
        let l = self.engine.label(st, self.as_of);
        self.push(&l);
    }

    /// Adds a label.
    pub fn push(&mut self, l: &Label) {
        let e = self.engine;
        let s = e.scenario();
        let [device_id, user_id, company, band, source, medium, campaign, form, path, outcome, sku, second_id] =
            &mut self.strs;
        let [first_seen, identified_date, start, decision, end, second_seen, second_login] =
            &mut self.dates;
        let [intent, intent_mean, p] = &mut self.floats;
        let [sessions, milestones, usage] = &mut self.ints;
        let [identified, converts] = &mut self.bools;
        self.buf.clear();
        e.ids().write_device_id(l.device, &mut self.buf);
        device_id.append_value(&self.buf);
        let domain = e.companies().domain(s, l.company);
        match l.identified_day {
            Some(_) => user_id.append_value(e.user_id_at(l.device, l.company, &domain)),
            None => user_id.append_null(),
        }
        company.append_value(&domain);
        band.append_value(&s.accounts.size_bands[l.company.band].name);
        first_seen.append_value(date32(e, l.first_day));
        let src = &s.sources[usize::from(l.first_touch.source)];
        source.append_value(&src.source);
        medium.append_value(&src.medium);
        campaign.append_option(campaign_name(s, l.first_touch));
        intent.append_value(l.intent);
        intent_mean.append_value(l.intent_mean);
        sessions.append_value(i64::from(l.sessions));
        identified.append_value(l.identified_day.is_some());
        identified_date.append_option(l.identified_day.map(|d| date32(e, d)));
        form.append_option(
            l.form_type
                .map(|f| s.forms.types[usize::from(f)].form_type.as_str()),
        );
        path.append_option(l.trial.map(|t| t.path.name()));
        start.append_option(l.trial.map(|t| date32(e, t.start_day)));
        let d = l.trial.and_then(|t| t.decision);
        decision.append_option(d.map(|d| date32(e, d.day)));
        milestones.append_option(d.map(|d| i64::from(d.milestones)));
        usage.append_option(d.map(|d| i64::from(d.usage)));
        p.append_option(d.map(|d| d.p_convert));
        converts.append_option(d.map(|d| d.converts));
        end.append_option(d.map(|d| date32(e, d.end_day)));
        outcome.append_value(l.trial_outcome());
        sku.append_option(
            l.product_sku
                .map(|k| s.products[usize::from(k)].sku.as_str()),
        );
        match l.second_device {
            Some((first, login)) => {
                self.buf.clear();
                e.ids()
                    .write_device_id(crate::ids::second_device_of(l.device), &mut self.buf);
                second_id.append_value(&self.buf);
                second_seen.append_value(date32(e, first));
                second_login.append_option(login.map(|d| date32(e, d)));
            }
            None => {
                second_id.append_null();
                second_seen.append_null();
                second_login.append_null();
            }
        }
        self.rows += 1;
    }

    /// The rows added since the last call, as a batch of [`LabelsBuilder::schema`].
    pub fn finish(&mut self) -> RecordBatch {
        let [device_id, user_id, company, band, source, medium, campaign, form, path, outcome, sku, second_id] =
            &mut self.strs;
        let [first_seen, identified_date, start, decision, end, second_seen, second_login] =
            &mut self.dates;
        let [intent, intent_mean, p] = &mut self.floats;
        let [sessions, milestones, usage] = &mut self.ints;
        let [identified, converts] = &mut self.bools;
        // In the order of COLUMNS.
        let cols: Vec<ArrayRef> = vec![
            Arc::new(device_id.finish()),
            Arc::new(user_id.finish()),
            Arc::new(company.finish()),
            Arc::new(band.finish()),
            Arc::new(first_seen.finish()),
            Arc::new(source.finish()),
            Arc::new(medium.finish()),
            Arc::new(campaign.finish()),
            Arc::new(intent.finish()),
            Arc::new(intent_mean.finish()),
            Arc::new(sessions.finish()),
            Arc::new(identified.finish()),
            Arc::new(identified_date.finish()),
            Arc::new(form.finish()),
            Arc::new(path.finish()),
            Arc::new(start.finish()),
            Arc::new(decision.finish()),
            Arc::new(milestones.finish()),
            Arc::new(usage.finish()),
            Arc::new(p.finish()),
            Arc::new(converts.finish()),
            Arc::new(end.finish()),
            Arc::new(outcome.finish()),
            Arc::new(sku.finish()),
            Arc::new(second_id.finish()),
            Arc::new(second_seen.finish()),
            Arc::new(second_login.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), cols).expect("columns follow the schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemorySim;
    use crate::SimConfig;
    use arrow_array::{Array, Float64Array, StringArray};

    fn sim(days: u32) -> MemorySim {
        let cfg = SimConfig {
            scenario: crate::Scenario::default_scenario(),
            seed: 7,
            start_date: NaiveDate::from_ymd_opt(2025, 3, 1).unwrap(),
            population_scale: 0.01,
        };
        let mut sim = MemorySim::new(Engine::new(cfg));
        for _ in 0..days {
            sim.step();
        }
        sim
    }

    #[test]
    fn labels_follow_the_state_and_the_outcome_model() {
        let sim = sim(40);
        let e = &sim.engine;
        let states = sim.states();
        let as_of = sim.next_day() - 1;
        let mut b = LabelsBuilder::new(e, as_of);
        for st in &states {
            b.push_state(st);
        }
        assert_eq!(b.len(), states.len());
        let batch = b.finish();
        assert!(b.is_empty());
        assert_eq!(batch.num_rows(), states.len());
        assert_eq!(batch.schema().fields().len(), COLUMNS.len());
        let col = |n: &str| batch.column_by_name(n).unwrap().clone();
        let outcome = col("trial_outcome");
        let outcome = outcome.as_any().downcast_ref::<StringArray>().unwrap();
        let p = col("p_convert");
        let p = p.as_any().downcast_ref::<Float64Array>().unwrap();
        let (mut decided, mut converted, mut expired) = (0, 0, 0);
        for (i, st) in states.iter().enumerate() {
            let l = e.label(st, as_of);
            assert_eq!(outcome.value(i), l.trial_outcome());
            match st.trial {
                Some(t) if t.decided => {
                    decided += 1;
                    let want = e.conversion_probability(t.path, t.decided_on.0, t.decided_on.1);
                    assert_eq!(p.value(i), want);
                    assert!(p.value(i) > 0.0 && p.value(i) < 1.0);
                    match l.trial_outcome() {
                        "converted" => {
                            converted += 1;
                            assert!(st.converted_to_paid && st.product_sku.is_some());
                        }
                        "expired" => expired += 1,
                        o => assert_eq!(o, "active", "{t:?}"),
                    }
                }
                _ => assert!(p.is_null(i)),
            }
            assert_eq!(l.intent, e.intent(st.device, st.first_touch));
        }
        assert!(
            decided > 20 && converted > 0 && expired > 0,
            "{decided} {converted} {expired}"
        );
        let meta = batch.schema().metadata()[EFFECTS_KEY].clone();
        let v: serde_json::Value = serde_json::from_str(&meta).unwrap();
        assert_eq!(
            v["trials"]["outcome"]["per_milestone"].as_f64(),
            Some(e.scenario().trials.outcome.per_milestone)
        );
        let touches = v["intent"]["by_first_touch"].as_array().unwrap();
        let n: usize = e
            .scenario()
            .sources
            .iter()
            .map(|s| 1 + s.campaigns.len())
            .sum();
        assert_eq!(touches.len(), n);
    }
}
