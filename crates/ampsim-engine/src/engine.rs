//! The day step: (scenario, seed, date, the users due that day) → that day's users, sessions,
//! events and updated states.
//!
//! Architecture Invariant: a user's output on a day depends only on the simulation definition,
//! the day, and that user's state; every random draw comes from a generator keyed by
//! (seed, day, device, purpose). So users are processed in parallel (rayon) and the output is
//! collected in device order, independent of the thread count.

use super::accounts::{Companies, Company, CompanyInfo};
use super::dist::{Delay, Draw, Lengths};
use super::ids::{device_num, is_second_device, person_of, Ids};
use super::rng::{hash_bytes, hash_words, KeyedRng, Purpose, Weighted};
use super::scenario::{Scenario, TrialPath};
use super::scenario::{MAX_DELAY_DAYS, SESSION_TIMEOUT_MINUTES};
use super::state::{
    Carry, EventKind, EventRec, PlanDay, SeatChange, SecondDay, SecondDevice, SessionRec,
    SessionSummary, Subscription, Touch, Trial, UserDay, UserState,
};
use chrono::{Datelike, NaiveDate};
use rayon::prelude::*;
use smallvec::SmallVec;

/// Version of the engine's output. Stored with every simulation: a database written by one
/// engine version is not extended by another, because the events would differ.
pub const ENGINE_VERSION: u32 = 10;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// The index of a catalogue page by path (validated to exist).
fn page_index(s: &Scenario, path: &str) -> usize {
    s.pages
        .catalogue
        .iter()
        .position(|p| p.path == path)
        .expect("validated: landing pages are catalogue paths")
}

/// The longest session: one that has lasted this long ends at its next event (a long draw of
/// events and gaps would otherwise not fit in a day).
pub const MAX_SESSION_MS: i64 = 6 * 3_600_000;

/// Amplitude's session timeout in ms: two sessions of a device are at least this far apart.
pub const SESSION_TIMEOUT_MS: i64 = SESSION_TIMEOUT_MINUTES as i64 * 60_000;

/// The definition of a simulation: the same definition always gives the same events.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The validated scenario.
    pub scenario: Scenario,
    /// The seed.
    pub seed: u64,
    /// The date of simulation day 0.
    pub start_date: NaiveDate,
    /// Multiplies arrivals only.
    pub population_scale: f64,
}

/// The largest population scale a simulation accepts (1000 times the default year).
pub const MAX_SCALE: f64 = 1000.0;

impl SimConfig {
    /// Checks a population scale: a finite number above 0 and at most [`MAX_SCALE`].
    ///
    /// # Errors
    /// What is wrong with it, e.g. `must be a number in (0, 1000], got -1`.
    pub fn check_scale(scale: f64) -> Result<f64, String> {
        if scale.is_finite() && scale > 0.0 && scale <= MAX_SCALE {
            Ok(scale)
        } else {
            Err(format!("must be a number in (0, {MAX_SCALE}], got {scale}"))
        }
    }
}

/// A compiled simulation: the definition plus precomputed tables.
pub struct Engine {
    cfg: SimConfig,
    tag: u64,
    ids: Ids,
    day0_ms: i64,
    /// The first emitted day: days before it are the warm start (`traffic.warm_start_days`).
    first_day: u32,
    /// Time zones, holidays and the hour curves.
    pub(crate) calendar: crate::calendar::Calendar,
    lengths: Lengths,
    gaps: Draw,
    /// Minutes from the end of a session to a same-day return.
    same_day_gap: Draw,
    new_sources: Weighted,
    /// Per audience of a returning session: see [`Engine::new`].
    returning_sources: Vec<Weighted>,
    /// Per source: its campaigns by audience (`None` for sources without campaigns).
    campaigns: Vec<Option<SourceCampaigns>>,
    /// Per source: its landing pages (indexes of the catalogue) when it sets them.
    source_landing: Vec<Option<(Weighted, Vec<usize>)>>,
    /// Per source, per campaign: the campaign's landing page (index of the catalogue).
    campaign_landing: Vec<Vec<Option<usize>>>,
    landing: Weighted,
    pages: Weighted,
    /// The catalogue's later-page weights of its high-intent pages only, and of the others
    /// only (`None` when the catalogue has none of that kind).
    hi_pages: Option<Weighted>,
    lo_pages: Option<Weighted>,
    high_intent: Vec<bool>,
    /// Per source: the mean intent of its first touches, then of each campaign's.
    intent_means: Vec<Vec<f64>>,
    terms: u32,
    buttons: u32,
    tier_delay: Vec<Delay>,
    tier_return: [f64; 5],
    tier_min: [f64; 5],
    submit: [f64; 5],
    forms: Weighted,
    forms_no_trial: Weighted,
    /// Whether any form other than the trial form has a positive share.
    has_non_trial_form: bool,
    trial_form: usize,
    trial_delay: Delay,
    products: [Weighted; 2],
    /// In-app events per product session.
    app_lengths: Lengths,
    /// The app's usage events.
    app_usage: Weighted,
    /// Per milestone: the log-odds of its `reach`.
    milestone_logits: Vec<f64>,
    /// The device catalogue: models and browser versions by date.
    pub(crate) clients: crate::clients::Clients,
    /// Geography and device tables, used when rendering events.
    pub(crate) geo: Weighted,
    pub(crate) devices: Weighted,
    /// The device kinds a second device is drawn from: mobile ones for a person whose first
    /// device is a computer (index 0), computers for one on a mobile device (index 1); `None`
    /// when the catalogue has no device of that class.
    second_kinds: [Option<Weighted>; 2],
    /// Whether each device kind is a mobile one (`second_devices.mobile_families`).
    mobile: Vec<bool>,
    /// The companies visitors work for.
    companies: Companies,
}

/// A cpc source's campaigns compiled by audience.
struct SourceCampaigns {
    /// The campaigns a first session may see (weights, and their campaign indexes).
    new_w: Weighted,
    new_idx: Vec<u8>,
    /// Per audience of a returning session (bit 0: started a trial, bit 1: viewed a
    /// high-intent page before): the campaigns it may see, by campaign index (zero weight for
    /// the others); `None` when none of them has weight.
    returning: Vec<Option<Weighted>>,
}

impl Engine {
    /// Compiles a simulation definition.
    pub fn new(cfg: SimConfig) -> Engine {
        let s = &cfg.scenario;
        let campaigns = s
            .sources
            .iter()
            .map(|src| {
                if src.medium != "cpc" {
                    return None;
                }
                let new_idx: Vec<u8> = src
                    .campaigns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.targeting.reaches_new_users())
                    .map(|(i, _)| i as u8)
                    .collect();
                let new_w =
                    Weighted::new(new_idx.iter().map(|&i| src.campaigns[i as usize].weight));
                // Per audience of a returning session (bit 0: started a trial, bit 1: viewed
                // a high-intent page): the campaigns it may see, `None` if none has weight.
                let returning = (0..4)
                    .map(|a| {
                        let w: Vec<f64> = src
                            .campaigns
                            .iter()
                            .map(|c| {
                                if c.targeting.reaches_returning(a & 1 != 0, a & 2 != 0) {
                                    c.weight
                                } else {
                                    0.0
                                }
                            })
                            .collect();
                        (w.iter().sum::<f64>() > 0.0).then(|| Weighted::new(w))
                    })
                    .collect();
                Some(SourceCampaigns {
                    new_w,
                    new_idx,
                    returning,
                })
            })
            .collect::<Vec<_>>();
        // Per audience of a returning session (bit 0: identified, bit 1: started a trial,
        // bit 2: viewed a high-intent page): the sources that can bring it. A source reaches
        // identified users only if `identified_only`, and a cpc source only if one of its
        // campaigns reaches the audience.
        let returning_sources = (0..8usize)
            .map(|a| {
                Weighted::new(s.sources.iter().zip(&campaigns).map(|(src, c)| {
                    let reached = (!src.identified_only || a & 1 != 0)
                        && c.as_ref().is_none_or(|c| c.returning[a >> 1].is_some());
                    if reached {
                        src.returning_share
                    } else {
                        0.0
                    }
                }))
            })
            .collect();
        let tiers = s.engagement.tiers.all();
        let trial_form = s.trial_form_index();
        let tag = simulation_tag(&cfg);
        Engine {
            tag,
            ids: Ids::new(tag),
            day0_ms: cfg
                .start_date
                .and_hms_opt(0, 0, 0)
                .expect("midnight exists")
                .and_utc()
                .timestamp_millis(),
            first_day: s.traffic.warm_start_days,
            calendar: crate::calendar::Calendar::new(s, cfg.start_date.year()),
            lengths: Lengths::new(&s.pages.session_length),
            gaps: Draw::new(&s.pages.event_gap_seconds, 1.0),
            same_day_gap: Draw::new(&s.engagement.same_day_gap_minutes, SESSION_TIMEOUT_MINUTES),
            new_sources: Weighted::new(s.sources.iter().map(|x| x.new_share)),
            returning_sources,
            campaigns,
            source_landing: s
                .sources
                .iter()
                .map(|src| {
                    (!src.landing_pages.is_empty()).then(|| {
                        (
                            Weighted::new(src.landing_pages.iter().map(|l| l.weight)),
                            src.landing_pages
                                .iter()
                                .map(|l| page_index(s, &l.path))
                                .collect(),
                        )
                    })
                })
                .collect(),
            campaign_landing: s
                .sources
                .iter()
                .map(|src| {
                    src.campaigns
                        .iter()
                        .map(|c| c.landing_page.as_deref().map(|p| page_index(s, p)))
                        .collect()
                })
                .collect(),
            landing: Weighted::new(s.pages.catalogue.iter().map(|p| p.landing_weight)),
            pages: Weighted::new(s.pages.catalogue.iter().map(|p| p.weight)),
            hi_pages: s
                .pages
                .catalogue
                .iter()
                .any(|p| p.high_intent && p.weight > 0.0)
                .then(|| {
                    Weighted::new(s.pages.catalogue.iter().map(|p| {
                        if p.high_intent {
                            p.weight
                        } else {
                            0.0
                        }
                    }))
                }),
            lo_pages: s
                .pages
                .catalogue
                .iter()
                .any(|p| !p.high_intent && p.weight > 0.0)
                .then(|| {
                    Weighted::new(s.pages.catalogue.iter().map(|p| {
                        if p.high_intent {
                            0.0
                        } else {
                            p.weight
                        }
                    }))
                }),
            high_intent: s.pages.catalogue.iter().map(|p| p.high_intent).collect(),
            intent_means: s
                .sources
                .iter()
                .map(|src| {
                    std::iter::once(src.intent_mean)
                        .chain(
                            src.campaigns
                                .iter()
                                .map(|c| c.intent_mean.unwrap_or(src.intent_mean)),
                        )
                        .collect()
                })
                .collect(),
            terms: s.pages.search_terms.len() as u32,
            buttons: s.pages.buttons.len() as u32,
            tier_delay: tiers.iter().map(|t| Delay::new(&t.return_delay)).collect(),
            tier_return: tiers.map(|t| t.return_probability),
            tier_min: tiers.map(|t| t.min_score),
            submit: s.forms.submit_probability.all(),
            forms: Weighted::new(s.forms.types.iter().map(|f| f.share)),
            forms_no_trial: Weighted::new(s.forms.types.iter().enumerate().map(|(i, f)| {
                if i == trial_form {
                    0.0
                } else {
                    f.share
                }
            })),
            has_non_trial_form: s
                .forms
                .types
                .iter()
                .enumerate()
                .any(|(i, f)| i != trial_form && f.share > 0.0),
            trial_form,
            trial_delay: Delay::new(&s.trials.active_return_delay),
            products: [
                Weighted::new(s.products.iter().map(|p| p.weight.self_service)),
                Weighted::new(s.products.iter().map(|p| p.weight.sales_assisted)),
            ],
            app_lengths: Lengths::new(&s.app.session_events),
            app_usage: Weighted::new(s.app.usage.iter().map(|u| u.weight)),
            milestone_logits: s.app.milestones.iter().map(|m| logit(m.reach)).collect(),
            companies: Companies::new(s, cfg.population_scale, tag, cfg.seed),
            geo: Weighted::new(s.geography.iter().map(|g| g.weight)),
            devices: Weighted::new(s.devices.iter().map(|d| d.weight)),
            second_kinds: [true, false].map(|want_mobile| {
                let w: Vec<f64> = s
                    .devices
                    .iter()
                    .map(|d| {
                        if s.second_devices.is_mobile(d) == want_mobile {
                            d.weight
                        } else {
                            0.0
                        }
                    })
                    .collect();
                (w.iter().sum::<f64>() > 0.0).then(|| Weighted::new(w))
            }),
            mobile: s
                .devices
                .iter()
                .map(|d| s.second_devices.is_mobile(d))
                .collect(),
            // Every day a simulation may emit: the warm start, then up to 30 years.
            clients: crate::clients::Clients::new(
                s,
                cfg.start_date - chrono::Duration::days(i64::from(s.traffic.warm_start_days) + 366),
                cfg.start_date + chrono::Duration::days(366 * 30),
            ),
            cfg,
        }
    }

    /// The simulation definition.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.cfg.scenario
    }

    /// A stable 64-bit tag of the definition; keys ids so that two simulations' ids differ.
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// The id codec of this simulation.
    pub fn ids(&self) -> &Ids {
        &self.ids
    }

    /// The first emitted day: the start date's day number. Days are numbered from the start
    /// of the warm start (`traffic.warm_start_days` before the start date), which is simulated
    /// but never emitted, so day numbers (in states, records and the store) are the same for
    /// every output and the first emitted day is `first_day()`, not 0.
    pub fn first_day(&self) -> u32 {
        self.first_day
    }

    /// Days since the start date (negative in the warm start).
    fn offset(&self, day: u32) -> i64 {
        i64::from(day) - i64::from(self.first_day)
    }

    /// Midnight UTC of a simulation day, in ms since the epoch.
    pub fn day_start_ms(&self, day: u32) -> i64 {
        self.day0_ms + self.offset(day) * DAY_MS
    }

    /// The simulation day a time (ms since the epoch) falls on.
    pub fn day_at_ms(&self, ms: i64) -> u32 {
        let d = (ms - self.day0_ms).div_euclid(DAY_MS) + i64::from(self.first_day);
        d.clamp(0, i64::from(u32::MAX)) as u32
    }

    /// The calendar date of a simulation day.
    pub fn date_of(&self, day: u32) -> NaiveDate {
        self.cfg.start_date + chrono::Duration::days(self.offset(day))
    }

    /// The simulation day of a date, if it is on or after the start date (an emitted day).
    pub fn day_of(&self, date: NaiveDate) -> Option<u32> {
        let d = (date - self.cfg.start_date).num_days();
        u32::try_from(d + i64::from(self.first_day))
            .ok()
            .filter(|_| d >= 0)
    }

    /// How many candidate new users `day` has: the day's expected arrivals at the calendar's
    /// peak rate, with growth and noise. Each candidate arrives with its geography's share of
    /// that peak on the day ([`crate::calendar::DayShape::total`] over
    /// [`crate::calendar::Calendar::bound`]), so arrivals follow every geography's local week,
    /// holidays and hours; device numbers of candidates that do not arrive are never used.
    pub fn new_users_on(&self, day: u32) -> u32 {
        let t = &self.cfg.scenario.traffic;
        let growth = (1.0 + t.annual_growth).powf(self.offset(day) as f64 / 365.0);
        let mut mean =
            t.new_users_per_day * self.cfg.population_scale * growth * self.calendar.bound();
        let mut rng = KeyedRng::new(self.cfg.seed, day, u64::MAX, Purpose::Arrivals);
        // Log-normal noise with mean 1: a day's own, and one its calendar week shares.
        let lognormal =
            |sigma: f64, z: f64| (sigma * z.clamp(-4.0, 4.0) - sigma * sigma / 2.0).exp();
        if t.daily_noise > 0.0 {
            mean *= lognormal(t.daily_noise, rng.normal());
        }
        if t.weekly_noise > 0.0 {
            // Calendar weeks from Monday: every day of one draws the same number.
            let monday = self.date_of(day).num_days_from_ce()
                - self.date_of(day).weekday().num_days_from_monday() as i32;
            let mut week = KeyedRng::new(
                self.cfg.seed,
                monday as u32,
                u64::MAX - 1,
                Purpose::Arrivals,
            );
            mean *= lognormal(t.weekly_noise, week.normal());
        }
        // Stochastic rounding keeps the expected total exact at small scales.
        let n = (mean + rng.f64()).floor();
        n.clamp(0.0, f64::from(u32::MAX >> 1)) as u32
    }

    /// The expected number of new users on `day` (noise has mean 1): every geography's share of
    /// visitors times its weight on the day, growth and the scale. The report's target.
    pub fn expected_new_users(&self, day: u32) -> f64 {
        let t = &self.cfg.scenario.traffic;
        let shape = self.calendar.day_shape(self.day_start_ms(day));
        let total: f64 = self.cfg.scenario.geography.iter().map(|g| g.weight).sum();
        let mix: f64 = self
            .cfg
            .scenario
            .geography
            .iter()
            .zip(&shape.total)
            .map(|(g, t)| g.weight / total * t)
            .sum();
        t.new_users_per_day
            * self.cfg.population_scale
            * (1.0 + t.annual_growth).powf(self.offset(day) as f64 / 365.0)
            * mix
    }

    /// The user id (a work e-mail address) of `device`: a name of the country of its
    /// geography at its company's domain.
    pub fn user_id(&self, device: u64) -> String {
        let company = self.company_of(device);
        let domain = self.companies.domain(&self.cfg.scenario, company);
        self.user_id_at(device, company, &domain)
    }

    /// [`Engine::user_id`] when the company's domain is known.
    pub fn user_id_at(&self, device: u64, company: Company, domain: &str) -> String {
        let mut s = String::with_capacity(48);
        let cc = &self.cfg.scenario.geography[company.geo].country_code;
        self.ids
            .write_user_id(device, crate::names::locale(cc), domain, &mut s);
        s
    }

    /// The company a device's user works for (a latent trait: [`crate::accounts`]).
    pub fn company_of(&self, device: u64) -> Company {
        let (geo, _) = self.profile(device);
        self.companies.of(self.cfg.seed, device, geo)
    }

    /// The compiled companies.
    pub fn companies(&self) -> &Companies {
        &self.companies
    }

    /// Everything about a company (its group properties).
    pub fn company_info(&self, company: Company) -> CompanyInfo {
        self.companies.info(&self.cfg.scenario, company)
    }

    /// The device number of a user id, or `None` if it is not one of this simulation's ids.
    pub fn parse_user_id(&self, s: &str) -> Option<u64> {
        let device = self.ids.user_code_device(s)?;
        // The whole address must round-trip, so a guessed tag with another name fails.
        (self.user_id(device) == s).then_some(device)
    }

    /// The return delay after a session of `tier` (0 = bounce .. 4 = very high).
    pub fn return_delay(&self, tier: usize) -> &Delay {
        &self.tier_delay[tier]
    }

    /// The chance that a return after a session of `tier` comes within `days` days: the
    /// same-day share, then the delay's CDF for the rest. (A same-day return whose gap would
    /// end after midnight comes a day or more later, so the true value is a little lower.)
    pub fn return_within(&self, tier: usize, days: u32) -> f64 {
        let z = self.cfg.scenario.engagement.same_day_return_share;
        z + (1.0 - z) * self.tier_delay[tier].cdf(days)
    }

    /// The return delay after a session during an active trial.
    pub fn trial_return_delay(&self) -> &Delay {
        &self.trial_delay
    }

    /// A device's geography and browser/device (indexes into the scenario's tables): drawn
    /// once from the device number, the same in the day step and in rendering. A second
    /// device ([`crate::ids::second_device_of`]) is in its person's place, of its own kind
    /// ([`Engine::second_device_kind`]).
    pub fn profile(&self, device: u64) -> (usize, usize) {
        let person = person_of(device);
        let mut prof = KeyedRng::new(self.cfg.seed, 0, person, Purpose::Profile);
        let geo = self.geo.pick(&mut prof);
        let kind = self.devices.pick(&mut prof);
        if is_second_device(device) {
            if let Some(second) = self.second_device_kind(person) {
                return (geo, second);
            }
        }
        (geo, kind)
    }

    /// The device kind of a person's second device, or `None` if the person has none
    /// (`second_devices.probability`): a mobile device beside a computer, or a computer
    /// beside a mobile device, drawn once from the person.
    pub fn second_device_kind(&self, person: u64) -> Option<usize> {
        let person = person_of(person);
        let mut prof = KeyedRng::new(self.cfg.seed, 0, person, Purpose::Profile);
        let _geo = self.geo.pick(&mut prof);
        let first = self.devices.pick(&mut prof);
        let table = self.second_kinds[usize::from(self.mobile[first])].as_ref()?;
        let mut rng = KeyedRng::new(self.cfg.seed, 0, person, Purpose::SecondDevice);
        rng.chance(self.cfg.scenario.second_devices.probability)
            .then(|| table.pick(&mut rng))
    }

    /// A user's latent buying intent (ground truth): normal around the mean of its first
    /// touch (`sources[].intent_mean` or its campaign's) with `behaviour.intent_sd`, drawn
    /// once from the device number, so every output derives the same value from the device
    /// and its first touch.
    pub fn intent(&self, device: u64, first_touch: Touch) -> f64 {
        let mean = self.intent_mean(first_touch);
        let mut rng = KeyedRng::new(self.cfg.seed, 0, device, Purpose::Traits);
        mean + self.cfg.scenario.behaviour.intent_sd * rng.normal().clamp(-4.0, 4.0)
    }

    /// The mean intent of the users a first touch brings (`sources[].intent_mean`, or its
    /// campaign's): the touch's true effect on intent (ground truth).
    pub fn intent_mean(&self, first_touch: Touch) -> f64 {
        self.intent_means
            .get(usize::from(first_touch.source))
            .and_then(|m| m.get(usize::from(first_touch.campaign)))
            .copied()
            .unwrap_or(0.0)
    }

    /// The propensity of a session (`[behaviour]`): the user's intent plus its habit, from
    /// the sessions before this one, whether it is identified and whether a trial runs.
    pub fn propensity(
        &self,
        intent: f64,
        sessions_before: u32,
        identified: bool,
        in_trial: bool,
    ) -> f64 {
        let b = &self.cfg.scenario.behaviour;
        intent
            + b.habit_per_log_session * f64::from(sessions_before).ln_1p()
            + if identified { b.habit_identified } else { 0.0 }
            + if in_trial { b.habit_trial } else { 0.0 }
    }

    /// The modelled probability that a trial converts ([`crate::scenario::Outcome`]), from
    /// the activation milestones reached and the usage events before its decision day.
    pub fn conversion_probability(&self, path: TrialPath, milestones: u8, usage: u16) -> f64 {
        let tr = &self.cfg.scenario.trials;
        let o = &tr.outcome;
        let rate = tr.conversion_rate.get(path);
        if rate <= 0.0 || rate >= 1.0 {
            return rate.clamp(0.0, 1.0);
        }
        sigmoid(
            logit(rate)
                + o.calibration.get(path)
                + o.per_milestone * f64::from(milestones)
                + o.per_log_usage * f64::from(usage).ln_1p(),
        )
    }

    /// A return delay drawn from `delay`, kept with the return date's share of the calendar's
    /// peak for the user's geography (up to 8 tries, then the last draw): returns follow the
    /// local week and the holidays as arrivals do.
    fn return_day(&self, day: u32, geo: usize, delay: &Delay, rng: &mut KeyedRng) -> u32 {
        let mut next = day + delay.pick(rng);
        for _ in 0..8 {
            if rng.chance(self.calendar.return_acceptance(geo, self.date_of(next))) {
                break;
            }
            next = day + delay.pick(rng);
        }
        next
    }

    /// Generates one day.
    ///
    /// `due` holds the users whose [`UserState::next_due`] is `day`, in any order; users
    /// arriving for the first time are created here. The output lists every processed user's
    /// new state and day record in device order.
    pub fn step_day(&self, day: u32, due: Vec<UserState>) -> DayOutput {
        self.step_day_shard(day, due, Shard::WHOLE)
    }

    /// Generates one day of one shard: `due` holds the shard's users due on `day`, and of the
    /// day's new users only the shard's are created ([`Shard::owns`]). Users never interact
    /// and every draw is keyed by (seed, day, device, purpose), so the shards' outputs of a day
    /// together are exactly [`Engine::step_day`]'s, for any number of shards.
    pub fn step_day_shard(&self, day: u32, mut due: Vec<UserState>, shard: Shard) -> DayOutput {
        due.sort_unstable_by_key(|u| u.device);
        debug_assert!(due.iter().all(|u| u.next_due() == Some(day)));
        debug_assert!(due.iter().all(|u| shard.owns(u.device)));
        let arrivals = self.new_users_on(day);
        let returning = due.len();
        due.extend(
            shard
                .indexes(arrivals)
                .map(|i| UserState::new(device_num(day, i), day)),
        );

        let shape = self.calendar.day_shape(self.day_start_ms(day));
        let bound = self.calendar.bound();
        let processed: Vec<(UserState, Option<UserDay>)> = due
            .into_par_iter()
            .with_min_len(256)
            .filter_map(|st| {
                if st.sessions.is_empty() && st.first_day() == day {
                    // A candidate arrival: it arrives with its geography's share of the peak.
                    let (geo, _) = self.profile(st.device);
                    let mut rng = KeyedRng::new(self.cfg.seed, day, st.device, Purpose::Arrivals);
                    if !rng.chance(shape.total[geo] / bound) {
                        return None;
                    }
                }
                Some(self.process_user(day, st, &shape))
            })
            .collect();

        let new_users = processed
            .iter()
            .filter(|(st, _)| st.first_day() == day)
            .count() as u32;
        let mut out = DayOutput {
            day,
            new_users,
            returning_users: returning as u32,
            sessions: 0,
            events: 0,
            records: Vec::with_capacity(processed.len()),
            states: Vec::with_capacity(processed.len()),
        };
        for (st, rec) in processed {
            if let Some(rec) = rec {
                out.sessions += rec.new_sessions().count() as u32;
                out.events += rec.events.len() as u64;
                out.records.push(rec);
            }
            out.states.push(st);
        }
        out
    }

    fn process_user(
        &self,
        day: u32,
        mut st: UserState,
        shape: &crate::calendar::DayShape,
    ) -> (UserState, Option<UserDay>) {
        let mut rec = UserDay {
            device: st.device,
            day,
            event_id_base: st.event_count,
            first_touch: st.first_touch,
            held: st.held_attribution(),
            user_id_from: 0,
            trial: None,
            plan: None,
            sessions: SmallVec::new(),
            events: Vec::new(),
            second: None,
        };
        let identified_before = st.identified_day.is_some_and(|d| d < day);

        let (geo, _) = self.profile(st.device);
        // No session starts before this: the end of the last one plus the session timeout.
        let mut not_before = st.quiet_until.take().unwrap_or(i64::MIN);
        if let Some(c) = st.carry.take() {
            debug_assert_eq!(c.day, day);
            rec.sessions.push(c.session);
            rec.events.extend(c.events);
        }
        // A trial's outcome is decided on its decision day, before the day's sessions: a
        // conversion today needs a session today.
        if let Some(t) = st
            .trial
            .filter(|t| !t.ended && !t.decided && t.end_day == day)
        {
            self.decide_trial(day, &mut st, t);
        }
        // A subscription's renewal is decided before the day's sessions, from the period's
        // use: a customer who churns today does not come back.
        let mut billed = None;
        if let Some(sub) = st.subscription.filter(|s| !s.canceled && s.next_day == day) {
            billed = Some(self.renew(day, &mut st, sub, &mut rec));
        }
        if st.next_session_day == Some(day) {
            // One generator for the day's sessions, drawn from in order.
            let mut rng = KeyedRng::new(self.cfg.seed, day, st.device, Purpose::Session);
            // Which device each session is on: its own stream, so that the sessions and their
            // events are the same with or without second devices. Only identified people's
            // sessions are placed, so the trait and the stream are drawn for them alone.
            let mut dev_rng: Option<Option<KeyedRng>> = None;
            let mut at = None;
            while st.next_session_day == Some(day) {
                let identified = st.is_identified();
                let (end, next_at) =
                    self.session(day, &mut st, &mut rec, geo, shape, &mut rng, at, not_before);
                if identified {
                    let device = st.device;
                    let placing = dev_rng.get_or_insert_with(|| {
                        self.second_device_kind(device).map(|_| {
                            KeyedRng::new(self.cfg.seed, day, device, Purpose::SessionDevice)
                        })
                    });
                    if let Some(r) = placing {
                        self.place_session(day, &mut st, &mut rec, r);
                    }
                }
                not_before = end + SESSION_TIMEOUT_MS;
                at = next_at;
            }
        }
        if let Some(t) = st.trial.filter(|t| !t.ended && t.end_day == day) {
            // A converting trial converted in today's product session (its decision scheduled
            // one); an expiring one ends here, server-side.
            debug_assert!(t.decided && !t.converts, "a conversion without a session");
            self.trial_expires(day, &mut st, t, &mut rec, geo, shape);
        }
        if rec.events.is_empty() {
            return (st, None);
        }
        // Session and out-of-session events interleave by time; ties keep kind order.
        rec.events.sort_by_key(|e| (e.time_ms, e.kind));
        rec.first_touch = st.first_touch;
        // A trial whose form falls after midnight starts tomorrow.
        rec.trial = st
            .trial
            .filter(|t| t.start_day <= day)
            .map(|t| (t.path, t.start_day));
        rec.plan = st.subscription.map(|sub| {
            let (prev_seats, period_active_days) = billed.unwrap_or((sub.seats, 0));
            PlanDay {
                sku: sub.sku,
                seats: sub.seats,
                prev_seats,
                start_day: sub.start_day,
                renewals: sub.renewals,
                period_active_days,
                canceled: sub.canceled,
            }
        });
        // The day's events on the second device count on its own counter.
        let mut on_second = 0;
        if rec.sessions.iter().any(|s| s.second) {
            let sd = st
                .second
                .as_mut()
                .expect("a second-device session made the device");
            rec.second = Some(SecondDay {
                event_id_base: sd.event_count,
                login_ms: sd.login_ms.unwrap_or(i64::MAX),
            });
            on_second = (0..rec.events.len()).filter(|&i| rec.on_second(i)).count();
            sd.event_count += on_second as u32;
        }
        rec.user_id_from = if identified_before {
            0
        } else if st.identified_day == Some(day) {
            // The identifying form is the user's first form, so today's first.
            rec.events
                .iter()
                .position(|e| e.kind == EventKind::Form)
                .expect("identifying form is among the events") as u16
        } else {
            rec.events.len() as u16
        };
        st.event_count += (rec.events.len() - on_second) as u32;
        (st, Some(rec))
    }

    /// Puts the session just generated (the last of `rec.sessions`) on the person's first or
    /// second device (`second_devices`): a website session with `website_session_share`, a
    /// product session with `product_session_share`. On the second device it logs in at its
    /// start if it is a product session or with `login_probability`, else at its first form
    /// (a form identifies the device it is sent from); the device is created with its first
    /// session. Only identified people's sessions are placed (the caller
    /// checks), and the draws come from `rng` alone, so sessions and events are unchanged.
    fn place_session(&self, day: u32, st: &mut UserState, rec: &mut UserDay, rng: &mut KeyedRng) {
        let sd = &self.cfg.scenario.second_devices;
        let Some(sess) = rec.sessions.last_mut() else {
            return;
        };
        let product = rec
            .events
            .iter()
            .find(|e| e.time_ms == sess.start_ms && e.kind.in_session())
            .is_some_and(|e| e.kind == EventKind::App);
        let share = if product {
            sd.product_session_share
        } else {
            sd.website_session_share
        };
        if !rng.chance(share) {
            return;
        }
        sess.second = true;
        let device = st.second.get_or_insert(SecondDevice {
            first_day: day,
            login_ms: None,
            event_count: 0,
        });
        if device.login_ms.is_none() && (product || rng.chance(sd.login_probability)) {
            device.login_ms = Some(sess.start_ms);
        }
        // A form sent from the device identifies it (the site sets the user id from the
        // form's e-mail), as the first device's identifying form did.
        if device.login_ms.is_none() {
            let carried = st
                .carry
                .as_ref()
                .filter(|c| c.session.start_ms == sess.start_ms);
            device.login_ms = rec
                .events
                .iter()
                .chain(carried.iter().flat_map(|c| c.events.iter()))
                .filter(|e| e.kind == EventKind::Form && e.time_ms >= sess.start_ms)
                .map(|e| e.time_ms)
                .min();
        }
        // The rest of a session that crosses midnight is on the same device.
        if let Some(c) = st.carry.as_mut() {
            if c.session.start_ms == sess.start_ms {
                c.session.second = true;
            }
        }
    }

    /// Generates one session of the user on `day`, starting at `at` (a same-day return) or at
    /// a time drawn from the geography's hour curve, never before `not_before`. Events after
    /// midnight go to [`UserState::carry`]. Returns the time of the session's last event and
    /// the start of a same-day return, if the user comes back later today.
    #[allow(clippy::too_many_arguments)]
    fn session(
        &self,
        day: u32,
        st: &mut UserState,
        rec: &mut UserDay,
        geo: usize,
        shape: &crate::calendar::DayShape,
        rng: &mut KeyedRng,
        at: Option<i64>,
        not_before: i64,
    ) -> (i64, Option<i64>) {
        let s = &self.cfg.scenario;
        let first = st.sessions.is_empty();

        // Attribution: only cpc traffic has a campaign; first sessions never see campaigns
        // aimed at returning users, and a returning session comes only through sources and
        // campaigns that reach who the user is (identified, trialist, pricing viewer).
        let audience = usize::from(st.is_identified())
            | usize::from(st.trial.is_some()) << 1
            | usize::from(st.viewed_high_intent) << 2;
        let source = if first {
            self.new_sources.pick(rng)
        } else {
            self.returning_sources[audience].pick(rng)
        };
        let campaign = match &self.campaigns[source] {
            None => 0,
            Some(c) if first => c.new_idx[c.new_w.pick(rng)] + 1,
            Some(c) => {
                // The source was picked from the audience's table: it has a campaign for it.
                let w = c.returning[audience >> 1]
                    .as_ref()
                    .expect("the audience's sources have a campaign for it");
                w.pick(rng) as u8 + 1
            }
        };
        let touch = Touch {
            source: source as u8,
            campaign,
        };
        // The session's propensity: the user's intent (from its first touch) and its habit.
        let b = &s.behaviour;
        let x = self.propensity(
            self.intent(st.device, if first { touch } else { st.first_touch }),
            st.session_count(),
            st.is_identified(),
            st.trial.is_some_and(|t| t.active_on(day)),
        );
        let tilt = (b.high_intent_tilt * x).clamp(-0.5, 0.5);
        // While a trial runs, the trialist's sessions are in the product; so are a paying
        // customer's, from the day after the purchase until it churns.
        let product_trial = st.trial.filter(|t| t.in_product_on(day));
        let customer = st
            .subscription
            .is_some_and(|sub| !sub.canceled && sub.start_day < day);

        // Shape: length, then gaps, then the start time. A session that starts late runs on
        // past midnight with the same session id.
        let lengths = if product_trial.is_some() || customer {
            &self.app_lengths
        } else {
            &self.lengths
        };
        let mut n = lengths.pick_scaled(rng, (b.depth_per_propensity * x).exp());
        // n - 1 gaps between page events plus one reserve gap for a form or signal at the end.
        // A session ends early once it has lasted MAX_SESSION_MS.
        let mut offsets = Vec::with_capacity(n + 1);
        let mut t = 0i64;
        offsets.push(0);
        for i in 0..n {
            t += (self.gaps.sample(rng) * 1000.0) as i64 + 1;
            offsets.push(t);
            if t > MAX_SESSION_MS {
                n = i + 1;
                break;
            }
        }
        let duration = offsets[n - 1];
        let day_start = self.day_start_ms(day);
        let day_end = day_start + DAY_MS;
        let start = match at {
            Some(at) => at,
            None => {
                let hour = shape.hours[geo].pick(rng) as i64;
                day_start + hour * 3_600_000 + i64::from(rng.range(0, 3_599_999))
            }
        }
        .max(not_before)
        .min(day_end - 1);

        let mut hi_pages = 0u32;
        let mut searches = 0u32;
        let mut events = Vec::with_capacity(n + 4);
        // A product session: the next milestones in order while they are reached, then usage.
        if let Some(mut t) = product_trial {
            let app = &s.app;
            let boost = app.milestone_boost.get(t.path) + app.milestone_per_propensity * x;
            let mut reaching = true;
            for &off in &offsets[..n] {
                let k = usize::from(t.milestones);
                reaching = reaching
                    && k < self.milestone_logits.len()
                    && rng.chance(sigmoid(self.milestone_logits[k] + boost));
                let aux = if reaching {
                    t.milestones += 1;
                    k
                } else {
                    t.usage = t.usage.saturating_add(1);
                    self.milestone_logits.len() + self.app_usage.pick(rng)
                };
                events.push(EventRec {
                    time_ms: start + off,
                    kind: EventKind::App,
                    aux: aux as u8,
                });
            }
            st.trial = Some(t);
        } else if customer {
            // A customer's product session: usage events only (onboarding is behind it).
            let base = self.milestone_logits.len();
            for &off in &offsets[..n] {
                events.push(EventRec {
                    time_ms: start + off,
                    kind: EventKind::App,
                    aux: (base + self.app_usage.pick(rng)) as u8,
                });
            }
            if let Some(sub) = st.subscription.as_mut() {
                if sub.last_active_day != day {
                    sub.last_active_day = day;
                    sub.active_days = sub.active_days.saturating_add(1);
                }
            }
        }
        for (i, &off) in offsets[..n].iter().enumerate() {
            if product_trial.is_some() || customer {
                break;
            }
            let (kind, aux) = if i == 0 {
                (EventKind::Page, self.landing_page(touch, rng))
            } else {
                let u = rng.f64();
                if u < s.pages.search_probability {
                    searches += 1;
                    (EventKind::Search, rng.range(0, self.terms - 1) as usize)
                } else if u < s.pages.search_probability + s.pages.button_click_probability {
                    (
                        EventKind::ButtonClick,
                        rng.range(0, self.buttons - 1) as usize,
                    )
                } else {
                    // Intent tilts later pages toward (or away from) the high-intent ones.
                    let table = match (&self.hi_pages, &self.lo_pages) {
                        (Some(hi), _) if tilt > 0.0 && rng.chance(tilt) => hi,
                        (_, Some(lo)) if tilt < 0.0 && rng.chance(-tilt) => lo,
                        _ => &self.pages,
                    };
                    (EventKind::Page, table.pick(rng))
                }
            };
            if kind == EventKind::Page && self.high_intent[aux] {
                hi_pages += 1;
            }
            events.push(EventRec {
                time_ms: start + off,
                kind,
                aux: aux as u8,
            });
        }

        let e = &s.engagement;
        let score = e.per_event * n as f64
            + e.per_high_intent_page * f64::from(hi_pages)
            + e.per_search * f64::from(searches)
            + e.per_minute * duration as f64 / 60_000.0
            + b.score_per_log_session * f64::from(st.session_count()).ln_1p();
        let tier = self.tier_min.iter().rposition(|&m| score >= m).unwrap_or(0);
        st.viewed_high_intent |= hi_pages > 0;

        // A moment inside the session after event `k`, for a form or a signal.
        let moment = |k: usize, rng: &mut KeyedRng| -> i64 {
            let a = start + offsets[k];
            let b = start + offsets[k + 1];
            a + 1 + i64::from(rng.range(0, (b - a - 2).max(0) as u32))
        };

        // The day an event at `t` falls on: today, or tomorrow after midnight.
        let day_at = |t: i64| if t >= day_end { day + 1 } else { day };
        let mut trial_started_at = None;
        let reach = (s.forms.reach_probability * (b.reach_per_propensity * x).exp()).min(1.0);
        if !st.is_identified() {
            // An anonymous user's first form identifies it (it has no trial yet, so every
            // form is on offer): the chance that this session does.
            st.add_identify_probability(reach * self.submit[tier]);
        }
        // Customers work in the product; the website's forms are behind them.
        if !customer && rng.chance(reach) {
            let identified = st.is_identified();
            let submits = if identified {
                rng.chance(s.forms.secondary_probability)
            } else {
                rng.chance(self.submit[tier])
            };
            // A user has at most one trial: later forms come from the rest of the mix, and a
            // scenario whose only form is the trial form has nothing more to offer.
            let submits = submits && (st.trial.is_none() || self.has_non_trial_form);
            if submits {
                let form = if st.trial.is_some() {
                    self.forms_no_trial.pick(rng)
                } else {
                    self.forms.pick(rng)
                };
                let k = rng.range(0, n as u32 - 1) as usize;
                let at = moment(k, rng);
                events.push(EventRec {
                    time_ms: at,
                    kind: EventKind::Form,
                    aux: form as u8,
                });
                st.forms_submitted = st.forms_submitted.saturating_add(1);
                if !identified {
                    st.identified_day = Some(day_at(at));
                    st.form_type = Some(form as u8);
                    // The site tells Amplitude the user's company (from the form's e-mail
                    // domain): a `$groupidentify` at the form's time, after it.
                    events.push(EventRec {
                        time_ms: at,
                        kind: EventKind::GroupIdentify,
                        aux: 0,
                    });
                }
                if form == self.trial_form {
                    st.trial = Some(self.start_trial(day_at(at), st.device));
                    trial_started_at = Some((k, at));
                }
            }
        }

        // Intent signals while a trial runs, consistent with its path.
        if let Some(tr) = st.trial.filter(|t| t.active_on(day)) {
            let (p, kind) = match tr.path {
                TrialPath::SelfService => {
                    (s.signals.upgrade_button_clicked, EventKind::UpgradeClicked)
                }
                TrialPath::SalesAssisted => (
                    s.signals.contact_sales_clicked,
                    EventKind::ContactSalesClicked,
                ),
            };
            let p = (p * (s.signals.per_propensity * x).exp()).min(1.0);
            if rng.chance(p) {
                let (k0, after) = trial_started_at.unwrap_or((0, start));
                let k = rng.range(k0 as u32, n as u32 - 1) as usize;
                let at = moment(k, rng).max(after + 1);
                events.push(EventRec {
                    time_ms: at,
                    kind,
                    aux: 0,
                });
            }
        }

        // The day a converting trial converts, the trialist pays in its product session: the
        // upgrade (self-service; a sales-assisted deal was agreed with sales), the conversion
        // and the purchase, after the session's last in-app event and before midnight.
        if let Some(t) = st
            .trial
            .filter(|t| t.decided && t.converts && !t.ended && t.end_day == day)
        {
            debug_assert!(product_trial.is_some());
            let checkout = i64::from(rng.range(5_000, 60_000));
            let paid = (moment(n - 1, rng) + checkout).min(day_end - 1).max(start);
            let mut at = [paid - checkout, paid, paid + 1_000];
            let late = (at[2] - (day_end - 1)).max(0);
            for a in &mut at {
                *a = (*a - late).max(start + 1);
            }
            // The session ends with the purchase (one that ran on past midnight is cut short;
            // its first event stays).
            events.retain(|e| e.kind != EventKind::App || e.time_ms < at[0] || e.time_ms == start);
            if t.path == TrialPath::SelfService {
                events.push(EventRec {
                    time_ms: at[0],
                    kind: EventKind::UpgradeClicked,
                    aux: 0,
                });
            }
            events.push(EventRec {
                time_ms: at[1],
                kind: EventKind::TrialConverted,
                aux: t.sku,
            });
            events.push(EventRec {
                time_ms: at[2],
                kind: EventKind::Purchase,
                aux: t.sku,
            });
            st.converted_to_paid = true;
            st.product_sku = Some(t.sku);
            st.trial = Some(Trial { ended: true, ..t });
            st.subscription = Some(self.subscribe(day, st.device, t.sku, at[2]));
        }

        // When does the user come back? A paying customer (who bought today or before) comes
        // back to the product on a later day, at its own pace.
        let active_trial = st.trial.is_some_and(|t| t.active_on(day));
        let (p_return, delay) = if active_trial {
            (s.trials.active_return_probability, &self.trial_delay)
        } else {
            (self.tier_return[tier], &self.tier_delay[tier])
        };
        let end = events.iter().map(|e| e.time_ms).max().unwrap_or(start);
        let mut same_day = None;
        let paying = st.subscription.is_some_and(|sub| !sub.canceled);
        st.next_session_day = if paying {
            Some(self.customer_return_day(day, geo, st.device, rng))
        } else if rng.chance(p_return) {
            // Later today, if the gap ends before midnight; else on a later day.
            if rng.chance(e.same_day_return_share) {
                let gap = (self.same_day_gap.sample(rng) * 60_000.0) as i64;
                same_day = Some(end + gap).filter(|&t| t < day_end);
            }
            if same_day.is_some() {
                Some(day)
            } else {
                Some(self.return_day(day, geo, delay, rng))
            }
        } else {
            None
        };
        // A trial that will convert brings its trialist back by its conversion day.
        if let Some(t) = st.trial.filter(|t| t.decided && t.converts && !t.ended) {
            st.due_by(t.end_day);
        }

        let score10 = (score * 10.0).round().min(f64::from(u16::MAX)) as u16;
        if first {
            st.first_touch = touch;
        }
        st.last_touch = touch;
        if touch.campaign > 0 {
            st.last_campaign = Some(touch);
        }
        if !s.sources[usize::from(touch.source)].referrer.is_empty() {
            st.last_referrer = Some(touch.source);
        }
        st.engagement_total = st.engagement_total.saturating_add(u32::from(score10));
        st.sessions.push(SessionSummary {
            day,
            tier: tier as u8,
        });
        let session = SessionRec {
            continued: false,
            start_ms: start,
            touch,
            score10,
            tier: tier as u8,
            first,
            second: false,
        };
        rec.sessions.push(session);
        st.quiet_until = Some(end + SESSION_TIMEOUT_MS).filter(|&t| t >= day_end);
        // Events after midnight are the next day's: they wait in the state.
        if end >= day_end {
            let mut tail: Vec<EventRec> = Vec::new();
            events.retain(|e| {
                let keep = e.time_ms < day_end;
                if !keep {
                    tail.push(*e);
                }
                keep
            });
            tail.sort_by_key(|e| (e.time_ms, e.kind));
            st.carry = Some(Box::new(Carry {
                day: day + 1,
                session: SessionRec {
                    continued: true,
                    ..session
                },
                events: tail,
            }));
        }
        rec.events.extend(events);
        (end, same_day)
    }

    /// The landing page of a session with attribution `touch`: the campaign's page, else one
    /// of the source's landing pages, else the catalogue's landing weights.
    fn landing_page(&self, touch: Touch, rng: &mut KeyedRng) -> usize {
        let src = usize::from(touch.source);
        if touch.campaign > 0 {
            if let Some(page) = self.campaign_landing[src][usize::from(touch.campaign) - 1] {
                return page;
            }
        }
        match &self.source_landing[src] {
            Some((w, pages)) => pages[w.pick(rng)],
            None => self.landing.pick(rng),
        }
    }

    /// Starts a trial: its path and the product it would buy are drawn here; its outcome is
    /// decided on the first day of the conversion window ([`Engine::decide_trial`]).
    fn start_trial(&self, day: u32, device: u64) -> Trial {
        let tr = &self.cfg.scenario.trials;
        let mut rng = KeyedRng::new(self.cfg.seed, day, device, Purpose::TrialStart);
        let path = if rng.chance(tr.path_split.self_service) {
            TrialPath::SelfService
        } else {
            TrialPath::SalesAssisted
        };
        let sku = self.products[path as usize].pick(&mut rng) as u8;
        Trial {
            path,
            start_day: day,
            decided: false,
            converts: false,
            end_day: day + tr.conversion_window[0] as u32,
            sku,
            ended: false,
            milestones: 0,
            usage: 0,
            decided_on: (0, 0),
        }
    }

    /// Decides a trial's outcome from what the trialist did in the product so far
    /// ([`Engine::conversion_probability`]); a converting trial gets its conversion day in the
    /// window and a session on that day, a non-converting one its expiry day.
    fn decide_trial(&self, day: u32, st: &mut UserState, mut t: Trial) {
        let tr = &self.cfg.scenario.trials;
        let mut rng = KeyedRng::new(self.cfg.seed, day, st.device, Purpose::TrialDecision);
        t.decided = true;
        t.decided_on = (t.milestones, t.usage);
        t.converts = rng.chance(self.conversion_probability(t.path, t.milestones, t.usage));
        let offset = if t.converts {
            rng.range(
                tr.conversion_window[0] as u32,
                tr.conversion_window[1] as u32,
            )
        } else {
            tr.expiry_day as u32
        };
        t.end_day = t.start_day + offset;
        if t.converts {
            st.due_by(t.end_day);
        }
        st.trial = Some(t);
    }

    /// A new subscription: bought on `day` at `paid_ms` (the billing anchor), with the seats
    /// of the buyer's company's size band (log-uniform in the band's `seats`).
    fn subscribe(&self, day: u32, device: u64, sku: u8, paid_ms: i64) -> Subscription {
        let s = &self.cfg.scenario;
        let band = self.company_of(device).band;
        let [lo, hi] = s.accounts.size_bands[band].seats;
        let mut rng = KeyedRng::new(self.cfg.seed, day, device, Purpose::Seats);
        let (lo, hi) = (f64::from(lo), f64::from(hi) + 1.0);
        let seats = (lo * (hi / lo).powf(rng.f64())).floor().min(hi - 1.0) as u16;
        let start = self.day_start_ms(day);
        let mut sub = Subscription {
            sku,
            seats: seats.max(1),
            start_day: day,
            anchor_ms: (paid_ms - start).clamp(0, DAY_MS - 1) as u32,
            renewals: 0,
            next_day: day,
            active_days: 0,
            last_active_day: 0,
            canceled: false,
        };
        sub.next_day = self.period_start(&sub, 1);
        sub
    }

    /// The first day of period `k` of a subscription (0: the purchase day): the purchase's
    /// date `k` billing periods later (a month's end clamps to a shorter month's last day).
    pub fn period_start(&self, sub: &Subscription, k: u16) -> u32 {
        self.period_start_of(sub.sku, sub.start_day, k)
    }

    /// [`Engine::period_start`] of a subscription to product `sku` bought on `start_day`.
    pub fn period_start_of(&self, sku: u8, start_day: u32, k: u16) -> u32 {
        let months = self.cfg.scenario.products[usize::from(sku)]
            .period()
            .months()
            * u32::from(k);
        let bought = self.date_of(start_day);
        let date = bought
            .checked_add_months(chrono::Months::new(months))
            .expect("renewal dates stay in chrono's range");
        start_day + (date - bought).num_days() as u32
    }

    /// The expected seats after a renewal decision ([`Engine::renewal_chances`]; 0 for a
    /// customer who churns): the ground truth of net revenue retention per renewal.
    pub fn expected_seats_after(
        &self,
        sku: u8,
        seats: u16,
        active_days: u16,
        period_days: u32,
    ) -> f64 {
        let s = &self.cfg.scenario;
        let r = s.lifecycle.renewal(s.products[usize::from(sku)].period());
        let (churn, expansion, contraction) =
            self.renewal_chances(sku, seats, active_days, period_days);
        // The seat changes' means over the uniform share, by the midpoint rule (they round
        // and are at least one seat).
        const STEPS: u32 = 512;
        let mean = |[lo, hi]: [f64; 2], f: &dyn Fn(f64) -> f64| -> f64 {
            (0..STEPS)
                .map(|i| f(lo + (hi - lo) * (f64::from(i) + 0.5) / f64::from(STEPS)))
                .sum::<f64>()
                / f64::from(STEPS)
        };
        let n = f64::from(seats);
        let add = mean(r.expansion_share, &|x| (n * x).round().max(1.0));
        let cut = if seats > 1 {
            mean(r.contraction_share, &|x| {
                (n * x).round().max(1.0).min(n - 1.0)
            })
        } else {
            0.0
        };
        (1.0 - churn) * (n + expansion * add - contraction * cut)
    }

    /// A customer's typical active days per week: a latent trait of its device, lognormal
    /// around `lifecycle.active_days_per_week` (at most 7).
    pub fn customer_usage(&self, device: u64) -> f64 {
        let l = &self.cfg.scenario.lifecycle;
        let mut rng = KeyedRng::new(self.cfg.seed, 0, device, Purpose::Usage);
        (l.active_days_per_week * (l.usage_sigma * rng.normal().clamp(-4.0, 4.0)).exp()).min(7.0)
    }

    /// The next day a customer is in the product: each later day with chance `usage / 7`
    /// (a geometric gap), kept with the day's share of the calendar's peak for the
    /// customer's geography (up to 8 tries), so customers work on working days.
    fn customer_return_day(&self, day: u32, geo: usize, device: u64, rng: &mut KeyedRng) -> u32 {
        let q = (self.customer_usage(device) / 7.0).clamp(1e-3, 1.0);
        let gap = |rng: &mut KeyedRng| -> u32 {
            if q >= 1.0 {
                return 1;
            }
            let g = ((1.0 - rng.f64()).ln() / (1.0 - q).ln()).floor();
            1 + g.min(f64::from(MAX_DELAY_DAYS)) as u32
        };
        let mut next = day + gap(rng);
        for _ in 0..8 {
            if rng.chance(self.calendar.return_acceptance(geo, self.date_of(next))) {
                break;
            }
            next = day + gap(rng);
        }
        next
    }

    /// Measured use of a billing period: active days per week.
    pub fn period_use(active_days: u16, period_days: u32) -> f64 {
        f64::from(active_days) * 7.0 / f64::from(period_days.max(1))
    }

    /// The chances at a renewal of product `sku` with `seats` seats, after `active_days`
    /// active days in a period of `period_days` days: (churn, expansion, contraction), the
    /// last two for a customer who renews. Each is the period's base chance
    /// (`lifecycle.monthly` or `.annual`) moved on the log-odds scale by its
    /// `*_per_active_day` times the period's use above `lifecycle.active_days_per_week`;
    /// a single seat cannot contract. This is the ground truth of churn and expansion.
    pub fn renewal_chances(
        &self,
        sku: u8,
        seats: u16,
        active_days: u16,
        period_days: u32,
    ) -> (f64, f64, f64) {
        let s = &self.cfg.scenario;
        let l = &s.lifecycle;
        let r = l.renewal(s.products[usize::from(sku)].period());
        let d = Self::period_use(active_days, period_days) - l.active_days_per_week;
        let moved = |p: f64, slope: f64| {
            if p <= 0.0 || p >= 1.0 {
                p.clamp(0.0, 1.0)
            } else {
                sigmoid(logit(p) + slope * d)
            }
        };
        let churn = moved(r.churn, l.churn_per_active_day);
        let mut expansion = moved(r.expansion, l.expansion_per_active_day);
        let mut contraction = if seats > 1 {
            moved(r.contraction, l.contraction_per_active_day)
        } else {
            0.0
        };
        let total = expansion + contraction;
        if total > 1.0 {
            expansion /= total;
            contraction /= total;
        }
        (churn, expansion, contraction)
    }

    /// Decides a renewal (its day has come): the customer churns (`subscription_canceled`)
    /// or pays another period (`subscription_renewed`), changing its seats first
    /// (`subscription_changed`) if it expands or contracts; all server-side, at the billing
    /// anchor. Returns the seats before the decision and the period's active days.
    fn renew(
        &self,
        day: u32,
        st: &mut UserState,
        mut sub: Subscription,
        rec: &mut UserDay,
    ) -> (u16, u16) {
        let period_days = day - self.period_start(&sub, sub.renewals);
        let (churn, expansion, contraction) =
            self.renewal_chances(sub.sku, sub.seats, sub.active_days, period_days);
        let r = self
            .cfg
            .scenario
            .lifecycle
            .renewal(self.cfg.scenario.products[usize::from(sub.sku)].period());
        let mut rng = KeyedRng::new(self.cfg.seed, day, st.device, Purpose::Renewal);
        let at = self.day_start_ms(day) + i64::from(sub.anchor_ms);
        let before = (sub.seats, sub.active_days);
        if rng.chance(churn) {
            rec.events.push(EventRec {
                time_ms: at,
                kind: EventKind::SubscriptionCanceled,
                aux: sub.sku,
            });
            sub.canceled = true;
            st.next_session_day = None;
        } else {
            let u = rng.f64();
            let share = |[lo, hi]: [f64; 2], rng: &mut KeyedRng| lo + (hi - lo) * rng.f64();
            let change = if u < expansion {
                let add = (f64::from(sub.seats) * share(r.expansion_share, &mut rng)).round();
                sub.seats = sub.seats.saturating_add(add.max(1.0) as u16);
                Some(SeatChange::Expansion)
            } else if u < expansion + contraction {
                let cut = (f64::from(sub.seats) * share(r.contraction_share, &mut rng)).round();
                let cut = (cut.max(1.0) as u16).min(sub.seats - 1);
                sub.seats -= cut;
                Some(SeatChange::Contraction)
            } else {
                None
            };
            if let Some(c) = change {
                rec.events.push(EventRec {
                    time_ms: at,
                    kind: EventKind::SubscriptionChanged,
                    aux: c as u8,
                });
            }
            rec.events.push(EventRec {
                time_ms: at,
                kind: EventKind::SubscriptionRenewed,
                aux: sub.sku,
            });
            sub.renewals += 1;
            sub.active_days = 0;
            sub.next_day = self.period_start(&sub, sub.renewals + 1);
        }
        st.subscription = Some(sub);
        before
    }

    /// Emits `trial_expired`, a server-side event (the billing system ends the trial; no
    /// session), at a time of the user's local day.
    fn trial_expires(
        &self,
        day: u32,
        st: &mut UserState,
        tr: Trial,
        rec: &mut UserDay,
        geo: usize,
        shape: &crate::calendar::DayShape,
    ) {
        let mut rng = KeyedRng::new(self.cfg.seed, day, st.device, Purpose::TrialEnd);
        let hour = shape.hours[geo].pick(&mut rng) as i64;
        let day_start = self.day_start_ms(day);
        // After the in-app events of last night's product session, if one ran past midnight.
        let after = rec
            .events
            .iter()
            .filter(|e| e.kind == EventKind::App)
            .map(|e| e.time_ms + 1_000)
            .max()
            .unwrap_or(i64::MIN);
        let at = (day_start + hour * 3_600_000 + i64::from(rng.range(0, 3_599_999)))
            .max(after)
            .min(day_start + DAY_MS - 2_000);
        rec.events.push(EventRec {
            time_ms: at,
            kind: EventKind::TrialExpired,
            aux: 0,
        });
        st.trial = Some(Trial { ended: true, ..tr });
    }
}

/// A part of a simulation that runs on its own: shard `index` of `count` owns the devices
/// whose index within their first day is `index` modulo `count` (a device number is
/// `first_day << 32 | index`), and with them everything those devices do. Shard 0 of 1 is the
/// whole simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    /// Which shard, from 0.
    pub index: u32,
    /// How many shards.
    pub count: u32,
}

impl Shard {
    /// The whole simulation: shard 0 of 1.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`.
    ///
    /// # Errors
    /// A message when `count` is 0 or `index` is not below it.
    pub fn new(index: u32, count: u32) -> Result<Shard, String> {
        if count == 0 || index >= count {
            return Err(format!(
                "shard {index}/{count}: want K/N with N at least 1 and K from 0 to N-1"
            ));
        }
        Ok(Shard { index, count })
    }

    /// Whether this shard owns a device.
    pub fn owns(self, device: u64) -> bool {
        (device & 0xffff_ffff) % u64::from(self.count) == u64::from(self.index)
    }

    /// This shard's device indexes among a day's `arrivals` new devices.
    pub fn indexes(self, arrivals: u32) -> impl Iterator<Item = u32> {
        (self.index..arrivals).step_by(self.count as usize)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// Parses `K/N`.
    fn from_str(s: &str) -> Result<Shard, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("shard {s:?}: want K/N, e.g. 0/4"))?;
        let num = |x: &str| {
            x.trim()
                .parse::<u32>()
                .map_err(|_| format!("shard {s:?}: want K/N with whole numbers, e.g. 0/4"))
        };
        Shard::new(num(k)?, num(n)?)
    }
}

/// The output of one day.
#[derive(Debug, Clone, PartialEq)]
pub struct DayOutput {
    /// The simulation day.
    pub day: u32,
    /// Users who arrived for the first time.
    pub new_users: u32,
    /// Users processed because they were due (returning sessions and trial events).
    pub returning_users: u32,
    /// Sessions of the day.
    pub sessions: u32,
    /// Events of the day.
    pub events: u64,
    /// What each active user did, in device order.
    pub records: Vec<UserDay>,
    /// The updated state of every processed user, in device order.
    pub states: Vec<UserState>,
}

/// A stable tag of a simulation definition.
pub fn simulation_tag(cfg: &SimConfig) -> u64 {
    hash_words(&[
        hash_bytes(cfg.scenario.to_toml().as_bytes()),
        cfg.seed,
        cfg.start_date.num_days_from_ce() as u64,
        cfg.population_scale.to_bits(),
        u64::from(ENGINE_VERSION),
    ])
}

/// The log-odds of a probability.
fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

/// The logistic function.
fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}
