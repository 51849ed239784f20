//! The scenario: every number of the domain model, as a serde-typed TOML document.
//!
//! The default scenario (`default_scenario.toml`) is embedded in the binary. A user's TOML is
//! merged onto it key by key (tables merge recursively; arrays and scalars replace), then the
//! result is deserialised with unknown keys rejected and validated. Every error names the key
//! path, for example `forms.types[2].share`.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The embedded default scenario, readable by users (`ampsim scenario` prints it).
pub const DEFAULT_SCENARIO_TOML: &str = include_str!("default_scenario.toml");

/// The largest scenario TOML accepted, in bytes. Real scenarios are a few KiB.
pub const MAX_SCENARIO_BYTES: usize = 256 * 1024;

/// Deepest table/array nesting accepted in a user's scenario; the schema needs 4.
const MAX_NESTING: usize = 16;

/// An invalid scenario, naming the key path that is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ScenarioError {
    /// Dotted key path, e.g. `trials.conversion_rate.self_service`; empty for document-level errors.
    pub path: String,
    /// What is wrong with the value at that path.
    pub message: String,
}

impl ScenarioError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A complete, validated scenario.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A human-readable name, reported back by the server.
    pub name: String,
    /// How many visitors arrive, and when.
    pub traffic: Traffic,
    /// Traffic sources with their shares and campaigns.
    pub sources: Vec<Source>,
    /// Pages, session lengths and in-session actions.
    pub pages: Pages,
    /// The engagement score, its tiers and the return behaviour per tier.
    pub engagement: Engagement,
    /// Latent traits and how they and a user's history shape behaviour.
    pub behaviour: Behaviour,
    /// Form reach, submit probabilities and the form mix.
    pub forms: Forms,
    /// Trial paths, outcomes and timing.
    pub trials: Trials,
    /// Intent signals in trial users' sessions.
    pub signals: Signals,
    /// The product as trialists use it: product sessions, activation milestones and usage.
    pub app: App,
    /// The product catalogue bought by converting trials.
    pub products: Vec<Product>,
    /// The companies visitors work for: B2B accounts (Amplitude groups).
    pub accounts: Accounts,
    /// After the purchase: customers' product use, renewals, seat changes and churn.
    pub lifecycle: Lifecycle,
    /// People who also use a second device of the other kind (a phone or a computer).
    pub second_devices: SecondDevices,
    /// Where visitors are.
    pub geography: Vec<Geo>,
    /// Seasonal factors: public holidays and lulls.
    pub seasons: Seasons,
    /// Public holidays by country code (ISO 3166-1 alpha-2).
    pub holidays: BTreeMap<String, Vec<HolidayRule>>,
    /// Browsers and devices.
    pub devices: Vec<Device>,
}

/// Arrivals of brand-new visitors.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// New visitors per day at population scale 1.0, before the weekly curve.
    pub new_users_per_day: f64,
    /// Monday..Sunday multipliers, normalised to mean 1.
    pub weekly_curve: Vec<f64>,
    /// Relative weight of session starts per local hour 0..23 on a working day.
    pub weekday_hours: Vec<f64>,
    /// Relative weight of session starts per local hour on Saturdays, Sundays and holidays.
    pub weekend_hours: Vec<f64>,
    /// Fractional growth of arrivals per 365 days.
    #[serde(default)]
    pub annual_growth: f64,
    /// Relative standard deviation of day-to-day noise on arrivals.
    #[serde(default)]
    pub daily_noise: f64,
    /// Relative standard deviation of a swing that every day of a calendar week shares.
    #[serde(default)]
    pub weekly_noise: f64,
    /// Days simulated before the start date and not emitted, so that the first emitted day
    /// already has the returning visitors and open trials of a site that existed before it
    /// (0: the site opens on the start date).
    #[serde(default)]
    pub warm_start_days: u32,
}

/// Seasonal factors on every geography's traffic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Seasons {
    /// Traffic on a country's public holiday, relative to the same weekday otherwise.
    pub holiday_factor: f64,
    /// Periods of the year with less (or more) traffic everywhere.
    #[serde(default)]
    pub lulls: Vec<Lull>,
}

/// A period of the year when traffic is multiplied by `factor`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Lull {
    /// First day, `MM-DD`.
    pub from: String,
    /// Last day, `MM-DD` (before `from`: the period wraps over the new year).
    pub to: String,
    /// The factor, in (0, 2].
    pub factor: f64,
}

/// One public holiday's rule: exactly one of `date`, `nth` (with `month` and `weekday`),
/// `easter`, `on_or_before` or `on_or_after` (with `weekday`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HolidayRule {
    /// The holiday's name.
    pub name: String,
    /// `MM-DD` every year, or `YYYY-MM-DD` once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// The month of an `nth` rule, 1-12.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<u32>,
    /// `mon`..`sun`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekday: Option<String>,
    /// The n-th weekday of the month (1-5), or -1 for the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nth: Option<i32>,
    /// Days after Gregorian Easter Sunday (negative: before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub easter: Option<i32>,
    /// The weekday on or before this `MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_or_before: Option<String>,
    /// The weekday on or after this `MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_or_after: Option<String>,
}

/// A traffic source/medium pair.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// `utm_source`, e.g. `google`.
    pub source: String,
    /// `utm_medium`, e.g. `organic`, `cpc`, `email`, `none`.
    pub medium: String,
    /// The referrer URL; empty for direct and email traffic.
    #[serde(default)]
    pub referrer: String,
    /// Share of first sessions arriving through this source.
    pub new_share: f64,
    /// Share of returning sessions arriving through this source.
    pub returning_share: f64,
    /// Paid campaigns; only allowed (and required) when `medium = "cpc"`.
    #[serde(default)]
    pub campaigns: Vec<Campaign>,
    /// Landing pages of sessions from this source (paths of the catalogue with weights);
    /// empty: the catalogue's `landing_weight`. A campaign's `landing_page` wins over both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub landing_pages: Vec<LandingPage>,
    /// Mean latent buying intent of visitors who first arrive through this source (a campaign
    /// may set its own).
    #[serde(default)]
    pub intent_mean: f64,
    /// Only users whose address is known (identified) arrive through this source, e-mail
    /// above all: it brings no first sessions (`new_share` must be 0).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub identified_only: bool,
}

/// A landing page of a source and its weight.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LandingPage {
    /// A `path` of the page catalogue.
    pub path: String,
    /// Relative weight.
    pub weight: f64,
}

/// Who a campaign may be shown to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Targeting {
    /// Acquisition campaigns: first sessions only.
    NewUsers,
    /// Shown to anyone.
    AllUsers,
    /// Re-engagement campaigns: never on a first session.
    ReturningUsers,
    /// Returning users who have started a trial (re-engagement of trialists).
    Trialists,
    /// Returning users who viewed a high-intent page (`pages.catalogue[].high_intent`, the
    /// pricing pages) in an earlier session (retargeting).
    PricingViewers,
}

impl Targeting {
    /// Whether a campaign with this targeting may be shown on a user's first session.
    pub fn reaches_new_users(self) -> bool {
        matches!(self, Targeting::NewUsers | Targeting::AllUsers)
    }

    /// Whether a campaign with this targeting may be shown on a returning session of a user
    /// who has (or has not) started a trial and viewed a high-intent page before.
    pub fn reaches_returning(self, trialist: bool, pricing_viewer: bool) -> bool {
        match self {
            Targeting::NewUsers | Targeting::AllUsers | Targeting::ReturningUsers => true,
            Targeting::Trialists => trialist,
            Targeting::PricingViewers => pricing_viewer,
        }
    }
}

/// A paid campaign of a cpc source.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    /// `utm_campaign`.
    pub name: String,
    /// Who may see it.
    pub targeting: Targeting,
    /// Relative selection weight among the eligible campaigns of the source.
    pub weight: f64,
    /// The page the campaign's ads link to (a `path` of the page catalogue); none: the
    /// source's landing pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_page: Option<String>,
    /// Mean latent buying intent of visitors who first arrive through this campaign; none:
    /// the source's `intent_mean`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_mean: Option<f64>,
}

/// Latent traits and the behaviour they cause (`[behaviour]`).
///
/// Every visitor has a latent buying intent, drawn once at arrival: normal with the mean of
/// its first touch (`sources[].intent_mean`, or the campaign's) and `intent_sd`. A session's
/// propensity is the intent plus the user's habit:
///
/// ```text
/// x = intent + habit_per_log_session * ln(1 + sessions before)
///     + habit_identified * [identified] + habit_trial * [in an active trial]
/// ```
///
/// The propensity moves the session: events per
/// session times `exp(depth_per_propensity * x)`, high-intent pages (a later page is drawn from
/// the high-intent pages with probability `high_intent_tilt * x`, or from the others with
/// `-high_intent_tilt * x`, at most 0.5 either way) and form reach (times
/// `exp(reach_per_propensity * x)`, at most 1). Through the session's engagement tier the
/// propensity moves returns too, so the tiers' return rates stay averages that individual
/// users' probabilities scatter around.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    /// Standard deviation of intent around its first touch's mean.
    pub intent_sd: f64,
    /// Log-multiplier of events per session per unit of propensity.
    pub depth_per_propensity: f64,
    /// Shift of the chance that a later page is a high-intent one, per unit of propensity.
    pub high_intent_tilt: f64,
    /// Log-multiplier of form reach per unit of propensity.
    pub reach_per_propensity: f64,
    /// Propensity gained per unit of ln(1 + sessions so far).
    pub habit_per_log_session: f64,
    /// Propensity gained once identified.
    pub habit_identified: f64,
    /// Propensity gained while a trial runs.
    pub habit_trial: f64,
    /// Engagement points a session gains per unit of ln(1 + sessions before): a loyal user's
    /// visit ranks higher, so its chance of coming back rises with the visits so far.
    pub score_per_log_session: f64,
}

/// Pages and in-session behaviour.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pages {
    /// Page-level events per session: weights of 1, 2, ..., N events (N ≤ 15), or a
    /// distribution (rounded up to a whole number of events, at least 1).
    pub session_length: Choice<f64>,
    /// Seconds between consecutive events of a session: a distribution (`log_uniform` when
    /// `distribution` is not given, between `min` and `max`).
    pub event_gap_seconds: Dist,
    /// Chance that a non-landing event slot is a search.
    pub search_probability: f64,
    /// Chance that a non-landing event slot is a button click.
    pub button_click_probability: f64,
    /// Search terms, reported in `search_term`.
    pub search_terms: Vec<String>,
    /// Button names, reported in `button`.
    pub buttons: Vec<String>,
    /// The page catalogue.
    pub catalogue: Vec<Page>,
}

/// One page of the website.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// URL path, reported in `page_path`.
    pub path: String,
    /// Page title, reported in `page_title`.
    pub title: String,
    /// `page_view`, `pricing_page_view` or `features_page_view`.
    pub event_type: String,
    /// High-intent pages add `engagement.per_high_intent_page` to the score.
    #[serde(default)]
    pub high_intent: bool,
    /// Weight as the first page of a session.
    pub landing_weight: f64,
    /// Weight as any later page.
    pub weight: f64,
}

/// The page event types a catalogue page may have.
pub const PAGE_EVENT_TYPES: [&str; 3] = ["page_view", "pricing_page_view", "features_page_view"];

/// Engagement scoring and tiers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Engagement {
    /// Points per page-level event.
    pub per_event: f64,
    /// Extra points per high-intent page.
    pub per_high_intent_page: f64,
    /// Extra points per search.
    pub per_search: f64,
    /// Points per minute of session duration.
    pub per_minute: f64,
    /// The share of returns that come later on the same day, as another session of the same
    /// device; the others come `return_delay` days later. A same-day return that would start
    /// after midnight comes on a later day instead.
    pub same_day_return_share: f64,
    /// Minutes from the end of a session to a same-day return (at least 30: Amplitude's
    /// session timeout, closer events would be the same session).
    pub same_day_gap_minutes: Dist,
    /// The five tiers.
    pub tiers: Tiers,
}

/// The five engagement tiers, lowest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tiers {
    /// Bounces: the lowest tier; its `min_score` must be 0.
    pub bounce: Tier,
    /// Low engagement.
    pub low: Tier,
    /// Medium engagement.
    pub medium: Tier,
    /// High engagement.
    pub high: Tier,
    /// Very high engagement.
    pub very_high: Tier,
}

impl Tiers {
    /// The tiers in ascending order.
    pub fn all(&self) -> [&Tier; 5] {
        [
            &self.bounce,
            &self.low,
            &self.medium,
            &self.high,
            &self.very_high,
        ]
    }
}

/// Names of the tiers, in the order of [`Tiers::all`].
pub const TIER_NAMES: [&str; 5] = ["bounce", "low", "medium", "high", "very_high"];

/// One engagement tier.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// The lowest score in this tier.
    pub min_score: f64,
    /// Chance the user comes back after a session in this tier.
    pub return_probability: f64,
    /// When the user comes back, in days after the session: weighted day ranges or a
    /// distribution (rounded up to whole days, at least 1).
    pub return_delay: Choice<DelayBucket>,
}

/// A weighted range of days.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DelayBucket {
    /// Inclusive `[first, last]` day offsets; the first must be at least 1.
    pub days: [i64; 2],
    /// Relative weight.
    pub weight: f64,
}

/// Either weighted choices (a list) or a distribution (a table with `distribution`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Choice<T> {
    /// Weighted choices, as a TOML array.
    Weighted(Vec<T>),
    /// A distribution, as a TOML table.
    Dist(Dist),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Choice<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = Choice<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of weighted choices or a distribution table")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                a: A,
            ) -> Result<Self::Value, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(a)).map(Choice::Weighted)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                a: A,
            ) -> Result<Self::Value, A::Error> {
                Dist::deserialize(MapAccessDeserializer::new(a)).map(Choice::Dist)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The family of a [`Dist`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DistKind {
    /// Uniform in the logarithm between `min` and `max`.
    #[default]
    LogUniform,
    /// Log-normal with `median` and `sigma` (the standard deviation of the logarithm).
    Lognormal,
    /// Weibull with `scale` and `shape`.
    Weibull,
}

/// A distribution of a positive quantity, cut at `max` (draws above it are drawn again) and
/// raised to `min`. A TOML table holding a `distribution` key is replaced whole when a user's
/// scenario sets it, never merged key by key with the default.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dist {
    /// `log_uniform` (the default), `lognormal` or `weibull`.
    #[serde(default)]
    pub distribution: DistKind,
    /// Lognormal: the median.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median: Option<f64>,
    /// Lognormal: the standard deviation of the natural logarithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma: Option<f64>,
    /// Weibull: the scale (the 63rd percentile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// Weibull: the shape (below 1: a heavy tail, many short values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<f64>,
    /// The smallest value (required for `log_uniform`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The largest value.
    pub max: f64,
}

/// Per-tier probabilities.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PerTier {
    /// Bounce tier.
    pub bounce: f64,
    /// Low tier.
    pub low: f64,
    /// Medium tier.
    pub medium: f64,
    /// High tier.
    pub high: f64,
    /// Very high tier.
    pub very_high: f64,
}

impl PerTier {
    /// The values in tier order.
    pub fn all(&self) -> [f64; 5] {
        [
            self.bounce,
            self.low,
            self.medium,
            self.high,
            self.very_high,
        ]
    }
}

/// Forms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Forms {
    /// Chance a session reaches a form.
    pub reach_probability: f64,
    /// Chance of submitting given reach, for anonymous users, per tier.
    pub submit_probability: PerTier,
    /// Chance of submitting given reach, for identified users.
    pub secondary_probability: f64,
    /// The form mix.
    pub types: Vec<FormType>,
}

/// One form type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FormType {
    /// Reported in `form_type`.
    pub form_type: String,
    /// The event emitted on submission.
    pub event_type: String,
    /// Share of submissions.
    pub share: f64,
    /// Whether submitting starts a trial.
    #[serde(default)]
    pub starts_trial: bool,
}

/// A value per trial path.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PerPath {
    /// Self-service trials.
    pub self_service: f64,
    /// Sales-assisted trials.
    pub sales_assisted: f64,
}

impl PerPath {
    /// The value for a path.
    pub fn get(&self, path: TrialPath) -> f64 {
        match path {
            TrialPath::SelfService => self.self_service,
            TrialPath::SalesAssisted => self.sales_assisted,
        }
    }
}

/// The two trial paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrialPath {
    /// Self-service trial.
    SelfService = 0,
    /// Sales-assisted trial.
    SalesAssisted = 1,
}

impl TrialPath {
    /// The name used in event properties.
    pub fn name(self) -> &'static str {
        match self {
            TrialPath::SelfService => "self_service",
            TrialPath::SalesAssisted => "sales_assisted",
        }
    }

    /// Parses a path name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "self_service" => Some(TrialPath::SelfService),
            "sales_assisted" => Some(TrialPath::SalesAssisted),
            _ => None,
        }
    }

    /// Decodes the stored byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(TrialPath::SelfService),
            1 => Some(TrialPath::SalesAssisted),
            _ => None,
        }
    }
}

/// Trials.
///
/// A trial's outcome is decided on day `conversion_window[0]` of the trial, from what the
/// trialist did in the product before that day ([`Outcome`]); a converting trial then converts
/// on a day of the window, inside a product session, and a non-converting one expires on
/// `expiry_day` (the trial's length), with `trial_expired` as a server-side event. The window
/// may reach past the trial's length by at most `grace_days`: a trial can still be bought
/// for a few days after it ends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Trials {
    /// Share of trials per path.
    pub path_split: PerPath,
    /// Conversion rate per path: the rate of a trial at the outcome model's reference, which
    /// `outcome.calibration` makes the path's average (the report's target).
    pub conversion_rate: PerPath,
    /// Inclusive window of conversion days since trial start; the outcome is decided on its
    /// first day.
    pub conversion_window: [i64; 2],
    /// The trial's length: the day a non-converting trial expires.
    pub expiry_day: i64,
    /// Days after the trial's end in which it can still be bought.
    pub grace_days: i64,
    /// How a trial's outcome depends on what the trialist did in the product.
    pub outcome: Outcome,
    /// Return probability after a session during an active trial.
    pub active_return_probability: f64,
    /// Return delay during an active trial (weighted day ranges or a distribution).
    pub active_return_delay: Choice<DelayBucket>,
}

/// The outcome model of a trial, a logistic function of what the trialist did in the product
/// before the decision day:
///
/// `P(convert) = 1 / (1 + exp(-(logit(conversion_rate[path]) + calibration[path]
///     + per_milestone * milestones + per_log_usage * ln(1 + usage_events))))`
///
/// where `milestones` counts the activation milestones reached and `usage_events` the
/// product's usage events. `calibration` shifts each path so that its average over the
/// trials the scenario produces is `conversion_rate` (set by simulating the default year).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// Log-odds per activation milestone reached.
    pub per_milestone: f64,
    /// Log-odds per unit of ln(1 + usage events).
    pub per_log_usage: f64,
    /// Log-odds added per path so that the path's average is its `conversion_rate`.
    pub calibration: PerPath,
}

/// Signal probabilities per session of a user in an active trial.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Signals {
    /// Self-service trials: chance of `upgrade_button_clicked`.
    pub upgrade_button_clicked: f64,
    /// Sales-assisted trials: chance of `contact_sales_clicked`.
    pub contact_sales_clicked: f64,
    /// Log-multiplier of a signal's chance per unit of the session's propensity (at most 1):
    /// users with intent click upgrade and contact sales.
    pub per_propensity: f64,
}

/// The product as trialists use it. While a trial runs, the trialist's sessions are product
/// sessions: in-app events instead of website pages. Each product session first reaches the
/// next activation milestones in order (each with its `reach` chance moved by
/// `milestone_per_propensity` times the session's propensity and the path's
/// `milestone_boost` on the log-odds scale; the first miss ends the session's milestones),
/// and its other events are usage events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// In-app events per product session (weights of 1, 2, ... or a distribution), scaled
    /// by the propensity like website sessions.
    pub session_events: Choice<f64>,
    /// Activation milestones in the order they are reached, each at most once per trial.
    pub milestones: Vec<Milestone>,
    /// Log-odds of reaching a milestone per unit of the session's propensity.
    pub milestone_per_propensity: f64,
    /// Log-odds of reaching a milestone added per trial path (onboarding help).
    pub milestone_boost: PerPath,
    /// Repeated usage events, weighted.
    pub usage: Vec<AppEvent>,
}

/// An activation milestone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Milestone {
    /// The event type, e.g. `workspace_created`.
    pub event_type: String,
    /// Chance of reaching it in a product session once the previous ones are reached, at
    /// propensity 0.
    pub reach: f64,
}

/// A usage event of the product.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppEvent {
    /// The event type, e.g. `chart_viewed`.
    pub event_type: String,
    /// Relative weight.
    pub weight: f64,
}

/// The companies visitors work for. Every visitor works for one company, a latent trait of
/// its device (drawn once, like its geography): a size band by `size_bands[].share`, then one
/// of the band's companies in the visitor's geography, uniformly. Colleagues are visitors who
/// drew the same company; they find the site independently. Once a visitor is identified, its
/// events carry the company as an Amplitude group and its e-mail address has the company's
/// domain; the identifying form is followed by a `$groupidentify` event that sets the
/// company's group properties.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Accounts {
    /// Company size bands (employees), from the smallest.
    pub size_bands: Vec<SizeBand>,
    /// Industries, weighted (a company's industry is drawn from its number).
    pub industries: Vec<Industry>,
}

/// A company size band.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SizeBand {
    /// The band's name, the `size_band` group property, e.g. `51-200`.
    pub name: String,
    /// Employees of its companies, `[min, max]` (a company's count is log-uniform in it).
    pub employees: [u32; 2],
    /// Share of visitors who work for a company of this band.
    pub share: f64,
    /// Companies of the band at population scale 1, split over the geographies by their
    /// weights (at least one per geography) and multiplied by the population scale, so that
    /// visitors per company do not depend on the scale.
    pub companies: f64,
    /// Seats a company of the band buys, `[min, max]` (log-uniform).
    pub seats: [u32; 2],
}

/// The customer lifecycle: what paying customers do after the purchase.
///
/// A customer's product use is a latent trait: its typical active days per week,
/// lognormal around `active_days_per_week` with `usage_sigma`. Its sessions are product
/// sessions of usage events; a day is active when it has one. At each renewal the period's
/// measured use `u` (active days per week in the period) decides, on the log-odds scale,
/// whether the customer churns, and if not whether it expands or contracts its seats:
/// `logit p = logit(base) + per_active_day * (u - active_days_per_week)`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    /// Median active days per week of a customer (0 < x <= 7).
    pub active_days_per_week: f64,
    /// Lognormal sigma of customers' active days per week around the median.
    pub usage_sigma: f64,
    /// Renewal outcomes of monthly plans.
    pub monthly: Renewal,
    /// Renewal outcomes of annual plans.
    pub annual: Renewal,
    /// Change of the churn log-odds per active day per week above the median (negative:
    /// customers who use the product churn less).
    pub churn_per_active_day: f64,
    /// Change of the expansion log-odds per active day per week above the median.
    pub expansion_per_active_day: f64,
    /// Change of the contraction log-odds per active day per week above the median.
    pub contraction_per_active_day: f64,
}

/// What happens at one renewal of a billing period, for a customer of median use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Renewal {
    /// Probability that the customer churns instead of renewing.
    pub churn: f64,
    /// Probability that a renewing customer adds seats.
    pub expansion: f64,
    /// Probability that a renewing customer with more than one seat removes seats.
    pub contraction: f64,
    /// Seats added, as a share of the current seats `[min, max]` (uniform; at least one).
    pub expansion_share: [f64; 2],
    /// Seats removed, as a share of the current seats `[min, max]` (uniform; at least one,
    /// never the last).
    pub contraction_share: [f64; 2],
}

impl Lifecycle {
    /// The renewal outcomes of a billing period.
    pub fn renewal(&self, period: BillingPeriod) -> &Renewal {
        match period {
            BillingPeriod::Monthly => &self.monthly,
            BillingPeriod::Annual => &self.annual,
        }
    }
}

/// A product's billing period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BillingPeriod {
    /// Renews every calendar month on the purchase's day of the month.
    Monthly,
    /// Renews every year on the purchase's date.
    Annual,
}

impl BillingPeriod {
    /// Months per period.
    pub fn months(self) -> u32 {
        match self {
            BillingPeriod::Monthly => 1,
            BillingPeriod::Annual => 12,
        }
    }

    /// The period of a product's `billing_period` (`monthly` or `annual`).
    pub fn parse(s: &str) -> Option<BillingPeriod> {
        match s {
            "monthly" => Some(BillingPeriod::Monthly),
            "annual" => Some(BillingPeriod::Annual),
            _ => None,
        }
    }
}

/// People with two devices: an identified person may also use a second device of the other
/// kind than its first (a mobile device, by `device_family`, beside a computer, or the
/// reverse). The second device has its own device id and starts anonymous; some of the
/// person's later sessions are on it, and from its first logged-in session on its events carry
/// the person's user id, so Amplitude merges it (its earlier anonymous events included).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecondDevices {
    /// Share of people who have a second device (drawn once per person; it appears with the
    /// first session placed on it, after identification).
    pub probability: f64,
    /// The `devices[].device_family` values of mobile devices; the other devices are computers.
    pub mobile_families: Vec<String>,
    /// Share of a two-device person's website sessions (after identification) on the second
    /// device.
    pub website_session_share: f64,
    /// Share of a two-device person's product sessions (trial or customer) on the second
    /// device.
    pub product_session_share: f64,
    /// Chance that a website session on the not yet logged-in second device logs in (a
    /// product session always does).
    pub login_probability: f64,
}

impl SecondDevices {
    /// Whether a device kind is a mobile one (its family is one of `mobile_families`).
    pub fn is_mobile(&self, d: &Device) -> bool {
        self.mobile_families.contains(&d.device_family)
    }
}

/// An industry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Industry {
    /// The `industry` group property, e.g. `Software`.
    pub name: String,
    /// Relative weight among companies.
    pub weight: f64,
}

/// A product (SKU).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// The SKU, reported as `productId` and `product_sku`.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Plan tier, e.g. `growth`.
    pub tier: String,
    /// Price per purchase.
    pub price: f64,
    /// `monthly` or `annual`.
    pub billing_period: String,
    /// ISO 4217 code of the price's currency (`currency` on purchases), e.g. `USD`.
    pub currency: String,
    /// Selection weight per trial path.
    pub weight: PerPath,
}

impl Product {
    /// The billing period (validated: `monthly` or `annual`).
    pub fn period(&self) -> BillingPeriod {
        BillingPeriod::parse(&self.billing_period).unwrap_or(BillingPeriod::Monthly)
    }
}

/// A place.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Geo {
    /// Country name.
    pub country: String,
    /// ISO 3166-1 alpha-2 code: the key of the country's holidays.
    pub country_code: String,
    /// IANA time zone, e.g. `America/Los_Angeles`.
    pub time_zone: String,
    /// Region name.
    pub region: String,
    /// City name.
    pub city: String,
    /// Browser language.
    pub language: String,
    /// Share of visitors.
    pub weight: f64,
}

/// A browser/device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Amplitude platform, `Web` for a website.
    pub platform: String,
    /// Browser name (Amplitude's `os_name` for web).
    pub os_name: String,
    /// Browser version.
    pub os_version: String,
    /// `device_manufacturer` as the Browser SDK reads it from the user agent, e.g. `Apple`;
    /// empty (not sent) when the user agent names none, as on Windows PCs. A model's own
    /// manufacturer overrides it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device_manufacturer: String,
    /// `device_model` as the Browser SDK reports it (when `models` is empty): the user
    /// agent's model (`Macintosh`, `iPhone`), or the OS name (`Windows`) when it names none.
    pub device_model: String,
    /// How Amplitude's Export layout shows the device's family, e.g. `Mac OS X` (derived by
    /// Amplitude on ingestion; never sent).
    pub device_family: String,
    /// How the Export layout shows the device's type (when `models` is empty), e.g. `Mac`.
    pub device_type: String,
    /// Share of visitors.
    pub weight: f64,
    /// Models of this kind of device, each with a weight; a device keeps its model. Empty:
    /// every device is `device_model`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<Model>,
    /// Browser versions on a release cycle (`os_version` before the first release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_cycle: Option<VersionCycle>,
    /// Browser versions by release date, oldest first, when they follow no cycle
    /// (`os_version` before the first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<Release>,
    /// A device updates its browser up to this many days after a release (each device its own
    /// fixed lag, uniform in `0..=update_lag_days`), so versions overlap for a while.
    #[serde(default)]
    pub update_lag_days: u32,
}

/// A device model and its share among devices of its kind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// `device_manufacturer`, e.g. `Samsung`; empty: the device kind's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device_manufacturer: String,
    /// `device_model` as the user agent names it, e.g. `SM-S921B`.
    pub device_model: String,
    /// How the Export layout shows it (`device_type`), e.g. `Samsung Galaxy S24`.
    pub device_type: String,
    /// Relative weight.
    pub weight: f64,
}

/// Major versions released on a fixed cycle: `version` on `released`, then one more every
/// `every_days` days (and one less every `every_days` days before).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VersionCycle {
    /// A major version number.
    pub version: u32,
    /// Its release date, `YYYY-MM-DD`.
    pub released: String,
    /// Days between major versions.
    pub every_days: u32,
}

/// A browser release: the version from this date on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// The release date, `YYYY-MM-DD`.
    pub date: String,
    /// The version string.
    pub version: String,
}

/// Parses a scenario date (`YYYY-MM-DD`).
pub fn parse_date(s: &str) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

impl Scenario {
    /// The embedded default scenario.
    pub fn default_scenario() -> Scenario {
        Scenario::from_toml("").expect("the embedded default scenario is valid")
    }

    /// Parses a user's scenario TOML, merged onto the default, and validates it.
    /// An empty (or all-whitespace) text means the default scenario.
    ///
    /// # Errors
    /// A [`ScenarioError`] naming the key path for TOML syntax errors, unknown keys, wrong
    /// types and out-of-range values.
    pub fn from_toml(user_toml: &str) -> Result<Scenario, ScenarioError> {
        if user_toml.len() > MAX_SCENARIO_BYTES {
            return Err(ScenarioError::new(
                "",
                format!(
                    "scenario TOML is {} bytes; the limit is {MAX_SCENARIO_BYTES}",
                    user_toml.len()
                ),
            ));
        }
        let mut base: toml::Table =
            toml::from_str(DEFAULT_SCENARIO_TOML).expect("embedded default scenario parses");
        if !user_toml.trim().is_empty() {
            check_nesting(user_toml)?;
            let user: toml::Table = toml::from_str(user_toml).map_err(|e| {
                let msg = e.message().trim().to_string();
                match e.span() {
                    Some(span) => {
                        let line = user_toml[..span.start.min(user_toml.len())]
                            .matches('\n')
                            .count()
                            + 1;
                        ScenarioError::new("", format!("not valid TOML (line {line}): {msg}"))
                    }
                    None => ScenarioError::new("", format!("not valid TOML: {msg}")),
                }
            })?;
            merge(&mut base, user);
        }
        let value = toml::Value::Table(base);
        let scenario: Scenario = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            ScenarioError::new(path, e.into_inner().message().to_string())
        })?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Serialises the scenario back to TOML (all keys, merged).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("scenario serialises")
    }

    /// Checks every value range and cross-field rule.
    ///
    /// # Errors
    /// The first problem found, naming its key path.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let mut v = Validator::default();
        v.validate(self);
        match v.errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Index of the form type that starts a trial.
    pub fn trial_form_index(&self) -> usize {
        self.forms
            .types
            .iter()
            .position(|f| f.starts_trial)
            .expect("validated: one form starts a trial")
    }
}

/// Rejects documents nested deeper than the schema could ever need, before the TOML parser
/// recurses into them.
fn check_nesting(text: &str) -> Result<(), ScenarioError> {
    let mut depth = 0usize;
    let mut max = 0usize;
    let mut in_str: Option<char> = None;
    let mut prev = '\0';
    let mut in_comment = false;
    for c in text.chars() {
        if in_comment {
            if c == '\n' {
                in_comment = false;
            }
            continue;
        }
        match in_str {
            Some(q) => {
                if c == q && prev != '\\' {
                    in_str = None;
                }
            }
            None => match c {
                '"' | '\'' => in_str = Some(c),
                '#' => in_comment = true,
                '[' | '{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                '\n' => {}
                _ => {}
            },
        }
        prev = if prev == '\\' && c == '\\' { '\0' } else { c };
    }
    if max > MAX_NESTING {
        return Err(ScenarioError::new(
            "",
            format!("scenario TOML nests {max} levels deep; the limit is {MAX_NESTING}"),
        ));
    }
    Ok(())
}

/// Merges `over` onto `base`: tables merge recursively, everything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            // A distribution is one value: the user's replaces the default's whole.
            (Some(toml::Value::Table(b)), toml::Value::Table(o))
                if !b.contains_key("distribution") && !o.contains_key("distribution") =>
            {
                merge(b, o)
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[derive(Default)]
struct Validator {
    errors: Vec<ScenarioError>,
}

impl Validator {
    fn err(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(ScenarioError::new(path, msg));
    }

    fn finite(&mut self, path: &str, x: f64) -> bool {
        if !x.is_finite() {
            self.err(path, format!("must be a finite number, got {x}"));
            return false;
        }
        true
    }

    fn prob(&mut self, path: &str, x: f64) {
        if self.finite(path, x) && !(0.0..=1.0).contains(&x) {
            self.err(path, format!("probability must be in [0, 1], got {x}"));
        }
    }

    fn non_negative(&mut self, path: &str, x: f64) {
        if self.finite(path, x) && x < 0.0 {
            self.err(path, format!("must not be negative, got {x}"));
        }
    }

    /// Weights: each finite and ≥ 0, and at least one positive.
    fn weights(&mut self, path: &str, items: impl IntoIterator<Item = (String, f64)>) {
        let mut total = 0.0;
        let mut n = 0;
        for (p, w) in items {
            n += 1;
            self.non_negative(&p, w);
            if w.is_finite() {
                total += w;
            }
        }
        if n == 0 {
            self.err(path, "must not be empty");
        } else if total <= 0.0 {
            self.err(path, "weights must not all be zero");
        }
    }

    /// Shares: probabilities that sum to 1 within 1e-6.
    fn shares(&mut self, path: &str, items: impl IntoIterator<Item = (String, f64)>) {
        let mut total = 0.0;
        let mut n = 0;
        for (p, w) in items {
            n += 1;
            self.prob(&p, w);
            if w.is_finite() {
                total += w;
            }
        }
        if n == 0 {
            self.err(path, "must not be empty");
        } else if (total - 1.0).abs() > 1e-6 {
            self.err(path, format!("shares must sum to 1, got {total}"));
        }
    }

    fn non_empty_str(&mut self, path: &str, s: &str) {
        if s.trim().is_empty() {
            self.err(path, "must not be empty");
        } else if s.len() > 200 {
            self.err(path, "must be at most 200 characters");
        }
    }

    /// A distribution whose values must lie in `[lo, hi]`: its parameters are those of its
    /// family, finite and positive, and `min <= max` within the bounds.
    fn dist(&mut self, path: &str, d: &Dist, lo: f64, hi: f64) {
        type Params<'a> = &'a [(&'a str, Option<f64>)];
        let (need, other): (Params<'_>, Params<'_>) = match d.distribution {
            DistKind::LogUniform => (
                &[("min", d.min)],
                &[
                    ("median", d.median),
                    ("sigma", d.sigma),
                    ("scale", d.scale),
                    ("shape", d.shape),
                ],
            ),
            DistKind::Lognormal => (
                &[("median", d.median), ("sigma", d.sigma)],
                &[("scale", d.scale), ("shape", d.shape)],
            ),
            DistKind::Weibull => (
                &[("scale", d.scale), ("shape", d.shape)],
                &[("median", d.median), ("sigma", d.sigma)],
            ),
        };
        let kind = match d.distribution {
            DistKind::LogUniform => "log_uniform",
            DistKind::Lognormal => "lognormal",
            DistKind::Weibull => "weibull",
        };
        for (k, v) in need {
            match v {
                None => self.err(format!("{path}.{k}"), format!("{kind} needs {k}")),
                Some(x) => {
                    if self.finite(&format!("{path}.{k}"), *x) && *x <= 0.0 {
                        self.err(format!("{path}.{k}"), format!("must be positive, got {x}"));
                    }
                }
            }
        }
        for (k, v) in other {
            if v.is_some() {
                self.err(
                    format!("{path}.{k}"),
                    format!("is not a parameter of {kind}"),
                );
            }
        }
        let min = d.min.unwrap_or(lo);
        if self.finite(&format!("{path}.min"), min) && self.finite(&format!("{path}.max"), d.max) {
            if min < lo {
                self.err(
                    format!("{path}.min"),
                    format!("must be at least {lo}, got {min}"),
                );
            } else if d.max < min {
                self.err(format!("{path}.max"), "must not be less than min");
            } else if d.max > hi {
                self.err(
                    format!("{path}.max"),
                    format!("must be at most {hi}, got {}", d.max),
                );
            }
        }
        // Most of the mass must lie below max, or cutting the tail would reshape it.
        if let (DistKind::Lognormal, Some(m)) = (d.distribution, d.median) {
            if m.is_finite() && d.max.is_finite() && m >= d.max {
                self.err(format!("{path}.median"), "must be below max");
            }
        }
        if let (DistKind::Weibull, Some(sc)) = (d.distribution, d.scale) {
            if sc.is_finite() && d.max.is_finite() && sc >= d.max {
                self.err(format!("{path}.scale"), "must be below max");
            }
        }
    }

    /// Events per session: 1 to 15 weights (of 1..15 events) or a distribution.
    fn session_lengths(&mut self, path: &str, lengths: &Choice<f64>) {
        match lengths {
            Choice::Weighted(w) => {
                if w.is_empty() || w.len() > 15 {
                    self.err(
                        path,
                        format!(
                            "needs 1 to 15 weights (sessions of 1..15 events), got {}",
                            w.len()
                        ),
                    );
                }
                self.weights(
                    path,
                    w.iter()
                        .enumerate()
                        .map(|(i, w)| (format!("{path}[{i}]"), *w)),
                );
            }
            Choice::Dist(d) => self.dist(path, d, 1.0, MAX_SESSION_EVENTS),
        }
    }

    fn delays(&mut self, path: &str, delays: &Choice<DelayBucket>) {
        let buckets = match delays {
            Choice::Weighted(b) => b,
            Choice::Dist(d) => {
                return self.dist(path, d, 1.0, f64::from(MAX_DELAY_DAYS));
            }
        };
        self.weights(
            path,
            buckets
                .iter()
                .enumerate()
                .map(|(i, b)| (format!("{path}[{i}].weight"), b.weight)),
        );
        for (i, b) in buckets.iter().enumerate() {
            let p = format!("{path}[{i}].days");
            if b.days[0] < 1 {
                self.err(
                    &p,
                    format!("return delays start at 1 day, got {}", b.days[0]),
                );
            } else if b.days[1] < b.days[0] {
                self.err(
                    &p,
                    format!(
                        "range ends ({}) before it starts ({})",
                        b.days[1], b.days[0]
                    ),
                );
            } else if b.days[1] > MAX_DELAY_DAYS as i64 {
                self.err(
                    &p,
                    format!(
                        "return delays are at most {MAX_DELAY_DAYS} days, got {}",
                        b.days[1]
                    ),
                );
            }
        }
    }

    fn validate(&mut self, s: &Scenario) {
        self.non_empty_str("name", &s.name);

        // traffic
        let t = &s.traffic;
        self.non_negative("traffic.new_users_per_day", t.new_users_per_day);
        if t.new_users_per_day.is_finite() && t.new_users_per_day > 10_000_000.0 {
            self.err(
                "traffic.new_users_per_day",
                "must be at most 10,000,000 (use population_scale for load tests)",
            );
        }
        if t.weekly_curve.len() != 7 {
            self.err(
                "traffic.weekly_curve",
                format!(
                    "needs 7 values (Monday..Sunday), got {}",
                    t.weekly_curve.len()
                ),
            );
        }
        self.weights(
            "traffic.weekly_curve",
            t.weekly_curve
                .iter()
                .enumerate()
                .map(|(i, w)| (format!("traffic.weekly_curve[{i}]"), *w)),
        );
        for (key, curve) in [
            ("traffic.weekday_hours", &t.weekday_hours),
            ("traffic.weekend_hours", &t.weekend_hours),
        ] {
            if curve.len() != 24 {
                self.err(
                    key,
                    format!("needs 24 values (local hours 0..23), got {}", curve.len()),
                );
            }
            self.weights(
                key,
                curve
                    .iter()
                    .enumerate()
                    .map(|(i, w)| (format!("{key}[{i}]"), *w)),
            );
        }
        if self.finite("traffic.annual_growth", t.annual_growth)
            && !(-0.99..=100.0).contains(&t.annual_growth)
        {
            self.err("traffic.annual_growth", "must be in [-0.99, 100]");
        }
        if self.finite("traffic.daily_noise", t.daily_noise)
            && !(0.0..=0.5).contains(&t.daily_noise)
        {
            self.err("traffic.daily_noise", "must be in [0, 0.5]");
        }
        if t.warm_start_days > MAX_WARM_START_DAYS {
            self.err(
                "traffic.warm_start_days",
                format!(
                    "must be at most {MAX_WARM_START_DAYS}, got {}",
                    t.warm_start_days
                ),
            );
        }
        if self.finite("traffic.weekly_noise", t.weekly_noise)
            && !(0.0..=0.5).contains(&t.weekly_noise)
        {
            self.err("traffic.weekly_noise", "must be in [0, 0.5]");
        }

        // seasons and holidays
        self.prob("seasons.holiday_factor", s.seasons.holiday_factor);
        if s.seasons.lulls.len() > 50 {
            self.err("seasons.lulls", "at most 50 lulls");
        }
        for (i, l) in s.seasons.lulls.iter().enumerate() {
            for (k, v) in [("from", &l.from), ("to", &l.to)] {
                if crate::calendar::parse_month_day(v).is_none() {
                    self.err(
                        format!("seasons.lulls[{i}].{k}"),
                        format!("{v:?}: want MM-DD, a day that exists"),
                    );
                }
            }
            let path = format!("seasons.lulls[{i}].factor");
            if self.finite(&path, l.factor) && !(l.factor > 0.0 && l.factor <= 2.0) {
                self.err(path, format!("must be in (0, 2], got {}", l.factor));
            }
        }
        if s.holidays.len() > 250 {
            self.err("holidays", "at most 250 countries");
        }
        for (country, rules) in &s.holidays {
            if rules.len() > 100 {
                self.err(
                    format!("holidays.{country}"),
                    "at most 100 holidays a country",
                );
            }
            for (i, h) in rules.iter().enumerate() {
                if let Err(e) = crate::calendar::resolve_rule(h) {
                    self.err(format!("holidays.{country}[{i}]"), e);
                }
            }
        }

        // sources and campaigns
        if s.sources.len() > 250 {
            self.err("sources", "at most 250 sources");
        }
        self.shares(
            "sources",
            s.sources
                .iter()
                .enumerate()
                .map(|(i, x)| (format!("sources[{i}].new_share"), x.new_share)),
        );
        self.shares(
            "sources",
            s.sources
                .iter()
                .enumerate()
                .map(|(i, x)| (format!("sources[{i}].returning_share"), x.returning_share)),
        );
        // Anonymous returning visitors need a way back: a source open to everyone.
        let open_returning: f64 = s
            .sources
            .iter()
            .filter(|x| !x.identified_only && x.returning_share.is_finite())
            .map(|x| x.returning_share.max(0.0))
            .sum();
        if open_returning <= 0.0 {
            self.err(
                "sources",
                "returning_share > 0 is needed on a source that is not identified_only",
            );
        }
        let mut seen = BTreeSet::new();
        for (i, src) in s.sources.iter().enumerate() {
            let p = format!("sources[{i}]");
            if src.identified_only && src.new_share != 0.0 {
                self.err(
                    format!("{p}.new_share"),
                    format!(
                        "an identified_only source brings no first sessions (a first visit is anonymous): must be 0, got {}",
                        src.new_share
                    ),
                );
            }
            self.non_empty_str(&format!("{p}.source"), &src.source);
            self.non_empty_str(&format!("{p}.medium"), &src.medium);
            if !seen.insert((src.source.clone(), src.medium.clone())) {
                self.err(
                    &p,
                    format!("duplicate source/medium {}/{}", src.source, src.medium),
                );
            }
            if src.medium == "cpc" {
                if src.campaigns.is_empty() {
                    self.err(
                        format!("{p}.campaigns"),
                        "cpc sources need at least one campaign",
                    );
                }
                if src.campaigns.len() > 250 {
                    self.err(format!("{p}.campaigns"), "at most 250 campaigns per source");
                }
                self.weights(
                    &format!("{p}.campaigns"),
                    src.campaigns
                        .iter()
                        .enumerate()
                        .map(|(j, c)| (format!("{p}.campaigns[{j}].weight"), c.weight)),
                );
                let new_weight: f64 = src
                    .campaigns
                    .iter()
                    .filter(|c| c.targeting.reaches_new_users())
                    .map(|c| c.weight)
                    .filter(|w| w.is_finite())
                    .sum();
                if src.new_share > 0.0 && new_weight <= 0.0 {
                    self.err(
                        format!("{p}.campaigns"),
                        "a cpc source with new_share > 0 needs a campaign targeting new_users or all_users with weight > 0",
                    );
                }
                let open_weight: f64 = src
                    .campaigns
                    .iter()
                    .filter(|c| c.targeting.reaches_returning(false, false))
                    .map(|c| c.weight)
                    .filter(|w| w.is_finite())
                    .sum();
                if src.returning_share > 0.0 && open_weight <= 0.0 {
                    self.err(
                        format!("{p}.campaigns"),
                        "a cpc source with returning_share > 0 needs a campaign that any returning user may see (new_users, all_users or returning_users) with weight > 0",
                    );
                }
                for (j, c) in src.campaigns.iter().enumerate() {
                    self.non_empty_str(&format!("{p}.campaigns[{j}].name"), &c.name);
                }
            } else if !src.campaigns.is_empty() {
                self.err(
                    format!("{p}.campaigns"),
                    format!(
                        "only cpc traffic has campaigns; this source's medium is {:?}",
                        src.medium
                    ),
                );
            }
        }

        // landing pages: paths of the catalogue
        let paths: BTreeSet<&str> = s.pages.catalogue.iter().map(|p| p.path.as_str()).collect();
        for (i, src) in s.sources.iter().enumerate() {
            let p = format!("sources[{i}]");
            if !src.landing_pages.is_empty() {
                self.weights(
                    &format!("{p}.landing_pages"),
                    src.landing_pages
                        .iter()
                        .enumerate()
                        .map(|(j, l)| (format!("{p}.landing_pages[{j}].weight"), l.weight)),
                );
            }
            for (j, l) in src.landing_pages.iter().enumerate() {
                if !paths.contains(l.path.as_str()) {
                    self.err(
                        format!("{p}.landing_pages[{j}].path"),
                        format!("{:?} is not a path of pages.catalogue", l.path),
                    );
                }
            }
            for (j, c) in src.campaigns.iter().enumerate() {
                if let Some(path) = &c.landing_page {
                    if !paths.contains(path.as_str()) {
                        self.err(
                            format!("{p}.campaigns[{j}].landing_page"),
                            format!("{path:?} is not a path of pages.catalogue"),
                        );
                    }
                }
            }
        }

        // pages
        let pg = &s.pages;
        self.session_lengths("pages.session_length", &pg.session_length);
        self.dist(
            "pages.event_gap_seconds",
            &pg.event_gap_seconds,
            1.0,
            3600.0,
        );
        self.prob("pages.search_probability", pg.search_probability);
        self.prob(
            "pages.button_click_probability",
            pg.button_click_probability,
        );
        if pg.search_probability + pg.button_click_probability > 1.0 {
            self.err(
                "pages.button_click_probability",
                "search_probability + button_click_probability must not exceed 1",
            );
        }
        if pg.search_terms.is_empty() || pg.search_terms.len() > 256 {
            self.err("pages.search_terms", "needs 1 to 256 terms");
        }
        if pg.buttons.is_empty() || pg.buttons.len() > 256 {
            self.err("pages.buttons", "needs 1 to 256 buttons");
        }
        if pg.catalogue.len() > 256 {
            self.err("pages.catalogue", "at most 256 pages");
        }
        self.weights(
            "pages.catalogue",
            pg.catalogue.iter().enumerate().map(|(i, p)| {
                (
                    format!("pages.catalogue[{i}].landing_weight"),
                    p.landing_weight,
                )
            }),
        );
        self.weights(
            "pages.catalogue",
            pg.catalogue
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("pages.catalogue[{i}].weight"), p.weight)),
        );
        for (i, p) in pg.catalogue.iter().enumerate() {
            self.non_empty_str(&format!("pages.catalogue[{i}].path"), &p.path);
            if !PAGE_EVENT_TYPES.contains(&p.event_type.as_str()) {
                self.err(
                    format!("pages.catalogue[{i}].event_type"),
                    format!(
                        "must be one of {}, got {:?}",
                        PAGE_EVENT_TYPES.join(", "),
                        p.event_type
                    ),
                );
            }
        }

        // behaviour
        let b = &s.behaviour;
        let within = |v: &mut Self, path: &str, x: f64, lim: f64| {
            if v.finite(path, x) && x.abs() > lim {
                v.err(path, format!("must be between -{lim} and {lim}, got {x}"));
            }
        };
        within(self, "behaviour.intent_sd", b.intent_sd, 3.0);
        self.non_negative("behaviour.intent_sd", b.intent_sd);
        for (k, x) in [
            ("depth_per_propensity", b.depth_per_propensity),
            ("high_intent_tilt", b.high_intent_tilt),
            ("reach_per_propensity", b.reach_per_propensity),
            ("habit_per_log_session", b.habit_per_log_session),
            ("habit_identified", b.habit_identified),
            ("habit_trial", b.habit_trial),
        ] {
            within(self, &format!("behaviour.{k}"), x, 2.0);
        }
        within(
            self,
            "behaviour.score_per_log_session",
            b.score_per_log_session,
            50.0,
        );
        for (i, src) in s.sources.iter().enumerate() {
            within(
                self,
                &format!("sources[{i}].intent_mean"),
                src.intent_mean,
                3.0,
            );
            for (j, c) in src.campaigns.iter().enumerate() {
                if let Some(m) = c.intent_mean {
                    within(
                        self,
                        &format!("sources[{i}].campaigns[{j}].intent_mean"),
                        m,
                        3.0,
                    );
                }
            }
        }

        // engagement
        let e = &s.engagement;
        self.non_negative("engagement.per_event", e.per_event);
        self.non_negative("engagement.per_high_intent_page", e.per_high_intent_page);
        self.non_negative("engagement.per_search", e.per_search);
        self.non_negative("engagement.per_minute", e.per_minute);
        self.prob("engagement.same_day_return_share", e.same_day_return_share);
        self.dist(
            "engagement.same_day_gap_minutes",
            &e.same_day_gap_minutes,
            SESSION_TIMEOUT_MINUTES,
            24.0 * 60.0,
        );
        let mut prev = f64::NEG_INFINITY;
        for (name, tier) in TIER_NAMES.iter().zip(e.tiers.all()) {
            let p = format!("engagement.tiers.{name}");
            self.non_negative(&format!("{p}.min_score"), tier.min_score);
            if tier.min_score <= prev {
                self.err(
                    format!("{p}.min_score"),
                    "tier thresholds must increase from bounce to very_high",
                );
            }
            prev = tier.min_score;
            self.prob(&format!("{p}.return_probability"), tier.return_probability);
            self.delays(&format!("{p}.return_delay"), &tier.return_delay);
        }
        if e.tiers.bounce.min_score != 0.0 {
            self.err(
                "engagement.tiers.bounce.min_score",
                "the bounce tier starts at 0",
            );
        }

        // forms
        let f = &s.forms;
        self.prob("forms.reach_probability", f.reach_probability);
        for (name, v) in TIER_NAMES.iter().zip(f.submit_probability.all()) {
            self.prob(&format!("forms.submit_probability.{name}"), v);
        }
        self.prob("forms.secondary_probability", f.secondary_probability);
        if f.types.len() > 64 {
            self.err("forms.types", "at most 64 form types");
        }
        self.shares(
            "forms.types",
            f.types
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("forms.types[{i}].share"), t.share)),
        );
        for (i, t) in f.types.iter().enumerate() {
            self.non_empty_str(&format!("forms.types[{i}].form_type"), &t.form_type);
            self.non_empty_str(&format!("forms.types[{i}].event_type"), &t.event_type);
        }
        let trial_forms = f.types.iter().filter(|t| t.starts_trial).count();
        if !f.types.is_empty() && trial_forms != 1 {
            self.err(
                "forms.types",
                format!("exactly one form type must have starts_trial = true, found {trial_forms}"),
            );
        }

        // trials
        let tr = &s.trials;
        self.shares(
            "trials.path_split",
            [
                (
                    "trials.path_split.self_service".to_string(),
                    tr.path_split.self_service,
                ),
                (
                    "trials.path_split.sales_assisted".to_string(),
                    tr.path_split.sales_assisted,
                ),
            ],
        );
        self.prob(
            "trials.conversion_rate.self_service",
            tr.conversion_rate.self_service,
        );
        self.prob(
            "trials.conversion_rate.sales_assisted",
            tr.conversion_rate.sales_assisted,
        );
        let [w0, w1] = tr.conversion_window;
        if w0 < 1 {
            self.err(
                "trials.conversion_window",
                format!("must start at day 1 or later, got {w0}"),
            );
        } else if w1 < w0 {
            self.err(
                "trials.conversion_window",
                format!("the window ends (day {w1}) before it starts (day {w0})"),
            );
        } else if w1 > MAX_DELAY_DAYS as i64 {
            self.err(
                "trials.conversion_window",
                format!("must end by day {MAX_DELAY_DAYS}, got {w1}"),
            );
        }
        if tr.expiry_day < 1 || tr.expiry_day > MAX_DELAY_DAYS as i64 {
            self.err(
                "trials.expiry_day",
                format!("must be in [1, {MAX_DELAY_DAYS}], got {}", tr.expiry_day),
            );
        } else if !(0..=MAX_GRACE_DAYS).contains(&tr.grace_days) {
            self.err(
                "trials.grace_days",
                format!("must be in [0, {MAX_GRACE_DAYS}], got {}", tr.grace_days),
            );
        } else if w0 >= 1 && w0 <= w1 && w0 > tr.expiry_day {
            self.err(
                "trials.conversion_window",
                format!(
                    "the outcome is decided on the window's first day ({w0}), which must not \
                     be after the trial ends (expiry_day {})",
                    tr.expiry_day
                ),
            );
        } else if w1 > tr.expiry_day + tr.grace_days {
            self.err(
                "trials.conversion_window",
                format!(
                    "ends on day {w1}, after the trial's length plus its grace period \
                     (expiry_day {} + grace_days {})",
                    tr.expiry_day, tr.grace_days
                ),
            );
        }
        let o = &tr.outcome;
        for (k, x) in [
            ("per_milestone", o.per_milestone),
            ("per_log_usage", o.per_log_usage),
            ("calibration.self_service", o.calibration.self_service),
            ("calibration.sales_assisted", o.calibration.sales_assisted),
        ] {
            within(self, &format!("trials.outcome.{k}"), x, 10.0);
        }
        for (k, rate) in [
            ("self_service", tr.conversion_rate.self_service),
            ("sales_assisted", tr.conversion_rate.sales_assisted),
        ] {
            if rate > 0.0 && rate < 1.0 {
                continue;
            }
            if o.per_milestone != 0.0 || o.per_log_usage != 0.0 {
                self.err(
                    format!("trials.conversion_rate.{k}"),
                    format!(
                        "a rate of {rate} leaves nothing to the outcome model: it must be \
                         strictly between 0 and 1 (or set trials.outcome.per_milestone and \
                         per_log_usage to 0)"
                    ),
                );
            }
        }
        self.prob(
            "trials.active_return_probability",
            tr.active_return_probability,
        );
        self.delays("trials.active_return_delay", &tr.active_return_delay);

        // signals
        self.prob(
            "signals.upgrade_button_clicked",
            s.signals.upgrade_button_clicked,
        );
        self.prob(
            "signals.contact_sales_clicked",
            s.signals.contact_sales_clicked,
        );
        within(
            self,
            "signals.per_propensity",
            s.signals.per_propensity,
            2.0,
        );

        // app
        let app = &s.app;
        self.session_lengths("app.session_events", &app.session_events);
        if app.milestones.len() > 16 {
            self.err("app.milestones", "at most 16 milestones");
        }
        if app.usage.is_empty() {
            self.err("app.usage", "needs at least one usage event");
        }
        if app.milestones.len() + app.usage.len() > 200 {
            self.err("app", "at most 200 milestones and usage events together");
        }
        for (i, m) in app.milestones.iter().enumerate() {
            self.prob(&format!("app.milestones[{i}].reach"), m.reach);
        }
        self.weights(
            "app.usage",
            app.usage
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("app.usage[{i}].weight"), u.weight)),
        );
        within(
            self,
            "app.milestone_per_propensity",
            app.milestone_per_propensity,
            5.0,
        );
        within(
            self,
            "app.milestone_boost.self_service",
            app.milestone_boost.self_service,
            5.0,
        );
        within(
            self,
            "app.milestone_boost.sales_assisted",
            app.milestone_boost.sales_assisted,
            5.0,
        );
        // App event types are event types of their own: no clash with each other or with the
        // website's.
        let mut taken: std::collections::BTreeSet<&str> = s
            .pages
            .catalogue
            .iter()
            .map(|p| p.event_type.as_str())
            .chain(s.forms.types.iter().map(|f| f.event_type.as_str()))
            .chain(FIXED_EVENT_TYPES)
            .collect();
        let names = app
            .milestones
            .iter()
            .map(|m| ("milestones", &m.event_type))
            .chain(app.usage.iter().map(|u| ("usage", &u.event_type)));
        let mut seen = [0usize; 2];
        for (list, name) in names {
            let i = if list == "milestones" { 0 } else { 1 };
            let path = format!("app.{list}[{}].event_type", seen[i]);
            seen[i] += 1;
            self.non_empty_str(&path, name);
            if !taken.insert(name.as_str()) {
                self.err(&path, format!("event type {name:?} is already in use"));
            }
        }

        // products
        if s.products.len() > 250 {
            self.err("products", "at most 250 products");
        }
        self.weights(
            "products",
            s.products.iter().enumerate().map(|(i, p)| {
                (
                    format!("products[{i}].weight.self_service"),
                    p.weight.self_service,
                )
            }),
        );
        self.weights(
            "products",
            s.products.iter().enumerate().map(|(i, p)| {
                (
                    format!("products[{i}].weight.sales_assisted"),
                    p.weight.sales_assisted,
                )
            }),
        );
        let mut skus = BTreeSet::new();
        for (i, p) in s.products.iter().enumerate() {
            self.non_empty_str(&format!("products[{i}].sku"), &p.sku);
            if !skus.insert(p.sku.clone()) {
                self.err(
                    format!("products[{i}].sku"),
                    format!("duplicate SKU {:?}", p.sku),
                );
            }
            self.non_negative(&format!("products[{i}].price"), p.price);
            if BillingPeriod::parse(&p.billing_period).is_none() {
                self.err(
                    format!("products[{i}].billing_period"),
                    format!("{:?}: want \"monthly\" or \"annual\"", p.billing_period),
                );
            }
            if p.currency.len() != 3 || !p.currency.bytes().all(|b| b.is_ascii_uppercase()) {
                self.err(
                    format!("products[{i}].currency"),
                    format!(
                        "{:?}: want a 3-letter uppercase ISO 4217 code, e.g. USD",
                        p.currency
                    ),
                );
            }
        }

        // accounts
        let a = &s.accounts;
        if a.size_bands.len() > 16 {
            self.err("accounts.size_bands", "at most 16 size bands");
        }
        self.shares(
            "accounts.size_bands",
            a.size_bands
                .iter()
                .enumerate()
                .map(|(i, b)| (format!("accounts.size_bands[{i}].share"), b.share)),
        );
        let mut band_names = BTreeSet::new();
        for (i, b) in a.size_bands.iter().enumerate() {
            let path = format!("accounts.size_bands[{i}]");
            self.non_empty_str(&format!("{path}.name"), &b.name);
            if !band_names.insert(b.name.as_str()) {
                self.err(
                    format!("{path}.name"),
                    format!("duplicate band {:?}", b.name),
                );
            }
            let [lo, hi] = b.employees;
            if lo == 0 || lo > hi {
                self.err(
                    format!("{path}.employees"),
                    format!("want [min, max] with 1 <= min <= max, got [{lo}, {hi}]"),
                );
            }
            if self.finite(&format!("{path}.companies"), b.companies)
                && !(1.0..=10_000_000.0).contains(&b.companies)
            {
                self.err(
                    format!("{path}.companies"),
                    format!("must be in [1, 10000000], got {}", b.companies),
                );
            }
            let [lo, hi] = b.seats;
            if lo == 0 || lo > hi || hi > 10_000 {
                self.err(
                    format!("{path}.seats"),
                    format!("want [min, max] with 1 <= min <= max <= 10000, got [{lo}, {hi}]"),
                );
            }
        }
        if a.industries.len() > 250 {
            self.err("accounts.industries", "at most 250 industries");
        }
        self.weights(
            "accounts.industries",
            a.industries
                .iter()
                .enumerate()
                .map(|(i, x)| (format!("accounts.industries[{i}].weight"), x.weight)),
        );
        for (i, x) in a.industries.iter().enumerate() {
            self.non_empty_str(&format!("accounts.industries[{i}].name"), &x.name);
        }

        // lifecycle
        let l = &s.lifecycle;
        if self.finite("lifecycle.active_days_per_week", l.active_days_per_week)
            && !(l.active_days_per_week > 0.0 && l.active_days_per_week <= 7.0)
        {
            self.err(
                "lifecycle.active_days_per_week",
                format!("must be in (0, 7], got {}", l.active_days_per_week),
            );
        }
        if self.finite("lifecycle.usage_sigma", l.usage_sigma)
            && !(0.0..=3.0).contains(&l.usage_sigma)
        {
            self.err(
                "lifecycle.usage_sigma",
                format!("must be in [0, 3], got {}", l.usage_sigma),
            );
        }
        for (name, x) in [
            ("churn_per_active_day", l.churn_per_active_day),
            ("expansion_per_active_day", l.expansion_per_active_day),
            ("contraction_per_active_day", l.contraction_per_active_day),
        ] {
            let path = format!("lifecycle.{name}");
            if self.finite(&path, x) && x.abs() > 5.0 {
                self.err(path, format!("must be in [-5, 5], got {x}"));
            }
        }
        for (name, r) in [("monthly", &l.monthly), ("annual", &l.annual)] {
            let path = format!("lifecycle.{name}");
            self.prob(&format!("{path}.churn"), r.churn);
            self.prob(&format!("{path}.expansion"), r.expansion);
            self.prob(&format!("{path}.contraction"), r.contraction);
            if r.expansion + r.contraction > 1.0 {
                self.err(
                    format!("{path}.contraction"),
                    "expansion + contraction must be at most 1",
                );
            }
            for (key, [lo, hi]) in [
                ("expansion_share", r.expansion_share),
                ("contraction_share", r.contraction_share),
            ] {
                let p = format!("{path}.{key}");
                let limit = if key == "expansion_share" { 10.0 } else { 1.0 };
                if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi && hi <= limit) {
                    self.err(
                        p,
                        format!(
                            "want [min, max] with 0 <= min <= max <= {limit}, got [{lo}, {hi}]"
                        ),
                    );
                }
            }
        }

        // second devices
        let sd = &s.second_devices;
        self.prob("second_devices.probability", sd.probability);
        self.prob(
            "second_devices.website_session_share",
            sd.website_session_share,
        );
        self.prob(
            "second_devices.product_session_share",
            sd.product_session_share,
        );
        self.prob("second_devices.login_probability", sd.login_probability);
        if sd.mobile_families.len() > 64 {
            self.err("second_devices.mobile_families", "at most 64 families");
        }
        for (i, f) in sd.mobile_families.iter().enumerate() {
            self.non_empty_str(&format!("second_devices.mobile_families[{i}]"), f);
        }

        // geography and devices
        for (i, g) in s.geography.iter().enumerate() {
            if g.time_zone.parse::<chrono_tz::Tz>().is_err() {
                self.err(
                    format!("geography[{i}].time_zone"),
                    format!(
                        "{:?} is not an IANA time zone (e.g. America/New_York)",
                        g.time_zone
                    ),
                );
            }
            if g.country_code.len() != 2 || !g.country_code.bytes().all(|b| b.is_ascii_uppercase())
            {
                self.err(
                    format!("geography[{i}].country_code"),
                    format!(
                        "{:?}: want an ISO 3166-1 alpha-2 code, e.g. US",
                        g.country_code
                    ),
                );
            }
        }
        if s.geography.len() > 250 {
            self.err("geography", "at most 250 places");
        }
        self.weights(
            "geography",
            s.geography
                .iter()
                .enumerate()
                .map(|(i, g)| (format!("geography[{i}].weight"), g.weight)),
        );
        if s.devices.len() > 250 {
            self.err("devices", "at most 250 devices");
        }
        // The Export layout derives device_family and device_type from an event's
        // manufacturer and model, so a pair must have one family and type wherever it occurs.
        let mut shown: BTreeMap<(&str, &str), (&str, &str, String)> = BTreeMap::new();
        for (i, d) in s.devices.iter().enumerate() {
            let models: Vec<(&str, &str, &str, String)> = if d.models.is_empty() {
                vec![(
                    d.device_manufacturer.as_str(),
                    d.device_model.as_str(),
                    d.device_type.as_str(),
                    format!("devices[{i}]"),
                )]
            } else {
                d.models
                    .iter()
                    .enumerate()
                    .map(|(j, m)| {
                        let maker = if m.device_manufacturer.is_empty() {
                            &d.device_manufacturer
                        } else {
                            &m.device_manufacturer
                        };
                        (
                            maker.as_str(),
                            m.device_model.as_str(),
                            m.device_type.as_str(),
                            format!("devices[{i}].models[{j}]"),
                        )
                    })
                    .collect()
            };
            for (maker, model, ty, path) in models {
                match shown.get(&(maker, model)) {
                    Some((family, t, first)) if (*family, *t) != (d.device_family.as_str(), ty) => {
                        self.err(
                            format!("{path}.device_type"),
                            format!(
                                "manufacturer {maker:?} and model {model:?} are shown as {family:?}/{t:?} at {first} but as {:?}/{ty:?} here: the Export layout derives device_family and device_type from the pair, so they must agree",
                                d.device_family
                            ),
                        );
                    }
                    Some(_) => {}
                    None => {
                        shown.insert((maker, model), (d.device_family.as_str(), ty, path));
                    }
                }
            }
        }
        for (i, d) in s.devices.iter().enumerate() {
            let p = format!("devices[{i}]");
            if !d.models.is_empty() {
                if d.models.len() > 250 {
                    self.err(format!("{p}.models"), "at most 250 models");
                }
                self.weights(
                    &format!("{p}.models"),
                    d.models
                        .iter()
                        .enumerate()
                        .map(|(j, m)| (format!("{p}.models[{j}].weight"), m.weight)),
                );
                for (j, m) in d.models.iter().enumerate() {
                    self.non_empty_str(&format!("{p}.models[{j}].device_model"), &m.device_model);
                    self.non_empty_str(&format!("{p}.models[{j}].device_type"), &m.device_type);
                }
            } else {
                self.non_empty_str(&format!("{p}.device_model"), &d.device_model);
                self.non_empty_str(&format!("{p}.device_type"), &d.device_type);
            }
            self.non_empty_str(&format!("{p}.device_family"), &d.device_family);
            if let Some(c) = &d.version_cycle {
                if parse_date(&c.released).is_none() {
                    self.err(
                        format!("{p}.version_cycle.released"),
                        format!("{:?} is not a date (YYYY-MM-DD)", c.released),
                    );
                }
                if !(1..=3650).contains(&c.every_days) {
                    self.err(
                        format!("{p}.version_cycle.every_days"),
                        format!("must be in [1, 3650], got {}", c.every_days),
                    );
                }
                if !d.releases.is_empty() {
                    self.err(
                        format!("{p}.releases"),
                        "give either version_cycle or releases, not both",
                    );
                }
            }
            if d.releases.len() > 1000 {
                self.err(format!("{p}.releases"), "at most 1000 releases");
            }
            let mut prev = None;
            for (j, r) in d.releases.iter().enumerate() {
                match parse_date(&r.date) {
                    None => self.err(
                        format!("{p}.releases[{j}].date"),
                        format!("{:?} is not a date (YYYY-MM-DD)", r.date),
                    ),
                    Some(date) => {
                        if prev.is_some_and(|p| date <= p) {
                            self.err(
                                format!("{p}.releases[{j}].date"),
                                "releases must be in date order",
                            );
                        }
                        prev = Some(date);
                    }
                }
                self.non_empty_str(&format!("{p}.releases[{j}].version"), &r.version);
            }
            if d.update_lag_days > 365 {
                self.err(
                    format!("{p}.update_lag_days"),
                    format!("must be at most 365, got {}", d.update_lag_days),
                );
            }
        }
        self.weights(
            "devices",
            s.devices
                .iter()
                .enumerate()
                .map(|(i, d)| (format!("devices[{i}].weight"), d.weight)),
        );
    }
}

/// Upper bound on any scheduled delay (returns, trial windows), in days. It bounds how far
/// ahead the due queue reaches and keeps stored day offsets small.
pub const MAX_DELAY_DAYS: u32 = 365;

/// The longest grace period after a trial's end in which it can still be bought, in days.
pub const MAX_GRACE_DAYS: i64 = 30;

/// The event types of the engine's own events (not named by the scenario).
pub const FIXED_EVENT_TYPES: [&str; 11] = [
    "search",
    "button_click",
    "upgrade_button_clicked",
    "contact_sales_clicked",
    "trial_converted",
    "trial_expired",
    "purchase",
    "$groupidentify",
    "subscription_changed",
    "subscription_renewed",
    "subscription_canceled",
];

/// The most page-level events a session may have (a distribution's `max`).
pub const MAX_SESSION_EVENTS: f64 = 500.0;

/// Amplitude's session timeout (the Browser SDK's default `sessionTimeout`, 30 minutes): two
/// sessions of one device are at least this far apart, or they would be one session.
pub const SESSION_TIMEOUT_MINUTES: f64 = 30.0;

/// The longest warm start: two years before the start date.
pub const MAX_WARM_START_DAYS: u32 = 730;

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(toml: &str) -> ScenarioError {
        Scenario::from_toml(toml).expect_err("should be rejected")
    }

    #[test]
    fn default_is_valid_and_round_trips() {
        let s = Scenario::default_scenario();
        assert_eq!(s.name, "b2b-saas-default");
        let again = Scenario::from_toml(&s.to_toml()).unwrap();
        assert_eq!(s, again);
    }

    #[test]
    fn user_toml_overrides_only_what_it_names() {
        let s = Scenario::from_toml("[trials.conversion_rate]\nself_service = 0.6\n").unwrap();
        assert_eq!(s.trials.conversion_rate.self_service, 0.6);
        assert_eq!(s.trials.conversion_rate.sales_assisted, 0.45);
        assert_eq!(s.forms.types.len(), 6);
    }

    #[test]
    fn errors_name_the_key_path() {
        let e = err_of("[trials.conversion_rate]\nself_service = 1.5\n");
        assert_eq!(e.path, "trials.conversion_rate.self_service");
        assert!(e.message.contains("[0, 1]"), "{e}");

        let e = err_of("[traffic]\nbogus_key = 3\n");
        assert_eq!(e.path, "traffic.bogus_key");
        assert!(e.message.contains("bogus_key"), "{e}");

        let e = err_of("[trials]\nconversion_window = [16, 10]\n");
        assert_eq!(e.path, "trials.conversion_window");
        assert!(e.message.contains("before it starts"), "{e}");

        let e = err_of("[traffic]\nnew_users_per_day = -5\n");
        assert_eq!(e.path, "traffic.new_users_per_day");

        let e = err_of("products = []\n");
        assert_eq!(e.path, "products");
        assert!(e.message.contains("empty"), "{e}");

        let e = err_of("[trials.path_split]\nself_service = 0.7\nsales_assisted = 0.4\n");
        assert_eq!(e.path, "trials.path_split");
        assert!(e.message.contains("sum to 1"), "{e}");

        let e = err_of("[forms]\nreach_probability = nan\n");
        assert_eq!(e.path, "forms.reach_probability");

        let e = err_of("[engagement.tiers.high]\nreturn_probability = \"lots\"\n");
        assert_eq!(e.path, "engagement.tiers.high.return_probability");

        let e = err_of("this is not toml");
        assert_eq!(e.path, "");
        assert!(e.message.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn campaigns_only_on_cpc() {
        let toml = r#"
[[sources]]
source = "google"
medium = "organic"
new_share = 1.0
returning_share = 1.0
[[sources.campaigns]]
name = "x"
targeting = "all_users"
weight = 1.0
"#;
        let e = err_of(toml);
        assert_eq!(e.path, "sources[0].campaigns");
    }

    #[test]
    fn trial_timing_outcome_and_app_are_checked() {
        // The window may reach past the trial's length by the grace period, no further.
        let e = err_of("[trials]\ngrace_days = 1\n");
        assert_eq!(e.path, "trials.conversion_window");
        assert!(e.message.contains("grace_days 1"), "{e}");
        Scenario::from_toml("[trials]\ngrace_days = 0\nconversion_window = [10, 14]\n").unwrap();
        let e = err_of("[trials]\nexpiry_day = 9\nconversion_window = [10, 11]\n");
        assert_eq!(e.path, "trials.conversion_window");
        assert!(e.message.contains("decided"), "{e}");
        let e = err_of("[trials]\ngrace_days = -1\n");
        assert_eq!(e.path, "trials.grace_days");
        let e = err_of("[trials.outcome]\nper_milestone = 40.0\n");
        assert_eq!(e.path, "trials.outcome.per_milestone");
        let e = err_of("[trials.conversion_rate]\nself_service = 1.0\n");
        assert_eq!(e.path, "trials.conversion_rate.self_service");
        assert!(e.message.contains("outcome model"), "{e}");
        // App event types are their own.
        let e = err_of("[app]\nusage = [{ event_type = \"page_view\", weight = 1.0 }]\n");
        assert_eq!(e.path, "app.usage[0].event_type");
        assert!(e.message.contains("already in use"), "{e}");
        let e = err_of(
            "[app]\nmilestones = [{ event_type = \"a\", reach = 0.5 }, \
             { event_type = \"a\", reach = 1.5 }]\n",
        );
        assert!(
            e.path == "app.milestones[1].reach" || e.path == "app.milestones[1].event_type",
            "{e}"
        );
        let e = err_of("[app]\nusage = []\n");
        assert_eq!(e.path, "app.usage");
    }

    #[test]
    fn audiences_are_checked() {
        // E-mail reaches only identified users, so it cannot bring a first visit.
        let two = |email_new: f64, email_returning: f64, open_returning: f64| {
            format!(
                r#"
[[sources]]
source = "google"
medium = "organic"
new_share = {}
returning_share = {open_returning}
[[sources]]
source = "newsletter"
medium = "email"
identified_only = true
new_share = {email_new}
returning_share = {email_returning}
"#,
                1.0 - email_new
            )
        };
        let e = err_of(&two(0.1, 0.5, 0.5));
        assert_eq!(e.path, "sources[1].new_share");
        assert!(e.message.contains("identified_only"), "{e}");
        // Anonymous returning visitors need a source open to them.
        let e = err_of(&two(0.0, 1.0, 0.0));
        assert_eq!(e.path, "sources");
        assert!(e.message.contains("not identified_only"), "{e}");
        assert!(Scenario::from_toml(&two(0.0, 0.5, 0.5)).is_ok());
        // A cpc source needs a campaign every returning user may see.
        let e = err_of(
            r#"
[[sources]]
source = "google"
medium = "organic"
new_share = 1.0
returning_share = 0.5
[[sources]]
source = "google"
medium = "cpc"
new_share = 0.0
returning_share = 0.5
[[sources.campaigns]]
name = "retarget"
targeting = "pricing_viewers"
weight = 1.0
"#,
        );
        assert_eq!(e.path, "sources[1].campaigns");
        assert!(e.message.contains("any returning user"), "{e}");
    }

    #[test]
    fn deep_nesting_and_huge_input_are_rejected() {
        let deep = format!("a = {}1{}", "[".repeat(5000), "]".repeat(5000));
        assert!(err_of(&deep).message.contains("nests"));
        let huge = "#".repeat(MAX_SCENARIO_BYTES + 1);
        assert!(err_of(&huge).message.contains("limit"));
    }
}
