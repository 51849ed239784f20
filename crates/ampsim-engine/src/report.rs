//! The acceptance report: DESIGN section 3's table and the source plan's testing checklist,
//! measured on generated data.
//!
//! A [`ReportBuilder`] is fed every user's latest state and every stored day record (in day
//! order); it never needs all events in memory. Rates use only observations whose outcome is
//! known by the last generated day (a session's or a new user's return window, a trial's
//! conversion window).
//! Targets and tolerances (each row's `status` is pass, fail, info or insufficient data):
//!
//! - **Unique users** are derived from the scenario and the span: the expected arrivals of
//!   each emitted day (the calendar's weight of every geography, growth, the scale; noise has
//!   mean 1), summed. The tolerance is 4 standard deviations of that sum (Poisson arrivals plus
//!   the day and week noise the scenario sets), and at least 1%.
//! - **The source plan's volumes** (sessions, returning sessions, forms, identified users,
//!   trials, paid subscriptions) are outcomes of the whole model, not parameters: they are
//!   checked on a whole year or more of the default scenario (its name aside), pro rata by the
//!   span's share of a year's expected arrivals, within the plan's relative tolerance or 4
//!   standard deviations of the count (3x overdispersed for sessions, which come in bunches per
//!   user), whichever is wider. On a shorter span (where seasons and the lag of returns move
//!   them off a year's average) or another scenario they are shown as information. The plan's
//!   41% of users with 2+ sessions is checked on any span of the default scenario (it is a
//!   rate over settled users) and shown as information for another scenario.
//! - **Rates** whose target is a scenario parameter (return probabilities, the form mix, the
//!   trial path split and conversion rates) are checked within a fixed slack or 4 standard
//!   errors of a proportion, whichever is wider.
//! - A row whose 4-sigma band is wider than it can judge (more than a quarter of a count's
//!   target, or three times a rate's slack), or that has no settled observation, shows
//!   "insufficient data" and does not fail the report.
//!
//! Only emitted days count: users first seen in the warm start (before
//! [`Engine::first_day`]) are not new users of the range, and their journeys' order is not
//! checked (their beginning was not emitted), but their sessions in the range are returning
//! sessions like any other.

use super::engine::Engine;
use super::scenario::TrialPath;
use super::state::{EventKind, PlanDay, UserDay, UserState};
use serde::Serialize;
// Looked up by device and counted, never iterated: its order cannot reach the report.
#[allow(clippy::disallowed_types)]
use std::collections::HashMap;

/// How a row came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    /// Within the tolerance.
    Pass,
    /// Outside it.
    Fail,
    /// Measured, with no target for this scenario.
    Info,
    /// Too few (settled) observations to judge.
    Insufficient,
}

impl RowStatus {
    /// The word the table and the protobuf message use.
    pub fn label(self) -> &'static str {
        match self {
            RowStatus::Pass => "pass",
            RowStatus::Fail => "fail",
            RowStatus::Info => "info",
            RowStatus::Insufficient => "insufficient data",
        }
    }

    /// The status of a protobuf message's label.
    pub fn from_label(s: &str) -> Option<RowStatus> {
        [
            RowStatus::Pass,
            RowStatus::Fail,
            RowStatus::Info,
            RowStatus::Insufficient,
        ]
        .into_iter()
        .find(|x| x.label() == s)
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportRow {
    /// Stable key, e.g. `return_rate_bounce`.
    pub key: String,
    /// Human-readable name.
    pub name: String,
    /// The target value.
    pub target: f64,
    /// Allowed absolute deviation from the target (already widened for sampling error).
    pub tolerance: f64,
    /// The measured value.
    pub measured: f64,
    /// How the value is expressed: `count`, `ratio`, `mean` or `violations`.
    pub unit: String,
    /// Whether the row passed (`status == Pass`).
    pub pass: bool,
    /// How the row came out.
    pub status: RowStatus,
    /// How many observations the measurement rests on.
    pub sample: u64,
}

impl ReportRow {
    /// The target, tolerance and measurement as the report prints them (percentages for
    /// ratios, `exact` for violations, a dash where a row has no target or sample).
    pub fn cells(&self) -> [String; 3] {
        let f = |v: f64| match self.unit.as_str() {
            "ratio" => format!("{:.2}%", v * 100.0),
            "mean" => format!("{v:.2}"),
            _ => format!("{v:.0}"),
        };
        let info = self.status == RowStatus::Info;
        let target = if info {
            "—".to_string()
        } else {
            f(self.target)
        };
        let tol = match self.unit.as_str() {
            _ if info || self.sample == 0 => "—".to_string(),
            "ratio" => format!("±{:.2}pp", self.tolerance * 100.0),
            "violations" => "exact".to_string(),
            _ => format!("±{:.0}", self.tolerance),
        };
        [target, tol, f(self.measured)]
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Days generated.
    pub days: u32,
    /// Population scale.
    pub population_scale: f64,
    /// The rows, in DESIGN section 3 order, then the checklist.
    pub rows: Vec<ReportRow>,
    /// The series of the report's charts.
    pub series: Series,
}

/// Weeks after its first one that the retention series follows a cohort.
pub const RETENTION_WEEKS: usize = 12;

/// Weekly retention of users by first-seen week: per week (counted from `origin`, the first
/// emitted day), how many users were first seen in it and how many of them had a session in
/// week 0, 1, ... after. What the report's retention series and QueryCohort's summary count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WeeklyRetention {
    /// The day week 0 starts on.
    pub origin: u32,
    /// Per first-seen week: (users, users active in week +k).
    pub weeks: std::collections::BTreeMap<u32, (u64, Vec<u64>)>,
}

impl WeeklyRetention {
    /// Empty, weeks counted from day `origin`.
    pub fn new(origin: u32) -> Self {
        WeeklyRetention {
            origin,
            weeks: Default::default(),
        }
    }

    /// Adds a user (one first seen before `origin` counts in week 0).
    pub fn add(&mut self, st: &UserState) {
        let week = st.first_day().saturating_sub(self.origin) / 7;
        let row = self.weeks.entry(week).or_insert_with(|| (0, Vec::new()));
        row.0 += 1;
        let mut last = u32::MAX;
        for s in st.sessions.iter().filter(|s| s.day >= self.origin) {
            let k = ((s.day - self.origin) / 7).saturating_sub(week);
            if k != last {
                if row.1.len() <= k as usize {
                    row.1.resize(k as usize + 1, 0);
                }
                row.1[k as usize] += 1;
                last = k;
            }
        }
    }

    /// Adds another partial count (of the same origin).
    pub fn merge(&mut self, o: WeeklyRetention) {
        for (w, (n, act)) in o.weeks {
            let row = self.weeks.entry(w).or_insert_with(|| (0, Vec::new()));
            row.0 += n;
            if row.1.len() < act.len() {
                row.1.resize(act.len(), 0);
            }
            for (i, a) in act.into_iter().enumerate() {
                row.1[i] += a;
            }
        }
    }

    /// Week `week`'s users and its first `weeks` counts of active users (0 where none).
    pub fn row(&self, week: u32, weeks: usize) -> (u64, Vec<u64>) {
        let (users, active) = self.weeks.get(&week).cloned().unwrap_or_default();
        let mut active: Vec<u64> = active.into_iter().take(weeks).collect();
        active.resize(weeks, 0);
        (users, active)
    }
}

/// The series a report's charts are drawn from (the HTML report, and GetReport's clients),
/// measured from the events (day records) and, for retention and trial outcomes, from the
/// users' states (whose sessions and trials are the events'); only users first seen in the
/// emitted days count, except in the daily sessions, which are all of the days' sessions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Series {
    /// The first emitted date, `YYYY-MM-DD`; the daily series start there.
    pub first_date: String,
    /// Sessions per day by channel (the medium of the session's source), customers' product
    /// sessions included.
    pub daily_sessions: Vec<NamedSeries>,
    /// The funnel of the users first seen in the range, from their events: visited,
    /// identified, started a trial, paid.
    pub funnel: Vec<Stage>,
    /// Weekly retention: per weekly cohort of new users (by first visit), the users with a
    /// session in each week since (week 0 is the cohort's own), while the week is complete.
    pub retention: Vec<Cohort>,
    /// Closed trials and their conversions, by path and by activation level.
    pub conversion: Vec<Conversion>,
    /// Recurring revenue by calendar month of the range, from the revenue events.
    pub mrr: Vec<MonthRevenue>,
}

/// One month's recurring revenue, from the revenue events (`purchase`,
/// `subscription_renewed`): each pays its billing period from its day, and contributes its
/// revenue divided by the period's months to the MRR of every month-end it covers. A
/// subscription paid before the first emitted day counts from its first payment in the
/// range.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MonthRevenue {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// MRR on the month's last day (or the range's last day, in its last month).
    pub mrr: f64,
    /// Subscriptions paid for on that day.
    pub paying: u64,
    /// Purchases in the month.
    pub new: u64,
    /// Cancellations (`subscription_canceled`) in the month.
    pub churned: u64,
}

/// A named series of daily values.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NamedSeries {
    /// The series' name (a channel).
    pub name: String,
    /// One value per emitted day.
    pub values: Vec<u64>,
}

/// A funnel stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stage {
    /// The stage's name.
    pub name: String,
    /// Users who reached it.
    pub users: u64,
}

/// A weekly cohort of new users.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cohort {
    /// The cohort week's first date, `YYYY-MM-DD` (weeks count from the first emitted day).
    pub week_start: String,
    /// Users first seen that week.
    pub users: u64,
    /// Of them, the users with a session in week 0, 1, ... since (up to
    /// [`RETENTION_WEEKS`], while the week is complete).
    pub active: Vec<u64>,
}

/// Closed trials of a group and how many converted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Conversion {
    /// The group, e.g. `self-service` or `4+ milestones`.
    pub name: String,
    /// Closed trials.
    pub trials: u64,
    /// Of them, converted.
    pub converted: u64,
}

impl Report {
    /// Whether no row fails (rows shown as information or with insufficient data do not).
    pub fn all_pass(&self) -> bool {
        self.rows.iter().all(|r| r.status != RowStatus::Fail)
    }

    /// One line under the table: whether rows fail, and how many could not be judged.
    pub fn verdict(&self) -> String {
        let n = |st: RowStatus| self.rows.iter().filter(|r| r.status == st).count();
        let (fail, short, info) = (
            n(RowStatus::Fail),
            n(RowStatus::Insufficient),
            n(RowStatus::Info),
        );
        let mut s = if fail > 0 {
            format!("SOME ROWS FAIL ({fail})")
        } else if short + info == 0 {
            "all rows pass".to_string()
        } else {
            "no row fails".to_string()
        };
        if short > 0 {
            s.push_str(&format!("; {short} with too few observations to judge"));
        }
        if info > 0 {
            s.push_str(&format!(
                "; {info} shown as information (the source plan's year figures are checked on a whole year of the default scenario; the lifecycle's totals have no target)"
            ));
        }
        s
    }

    /// A row by key.
    pub fn row(&self, key: &str) -> Option<&ReportRow> {
        self.rows.iter().find(|r| r.key == key)
    }

    /// The report as a text table.
    pub fn to_table(&self) -> String {
        let mut s = format!(
            "acceptance report: {} days at population scale {}\n",
            self.days, self.population_scale
        );
        let w = self
            .rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0)
            .max(46);
        s.push_str(&format!(
            "{:<w$} {:>14} {:>14} {:>14} {:>10}  {}\n",
            "figure", "target", "tolerance", "measured", "sample", "result"
        ));
        for r in &self.rows {
            let [target, tol, measured] = r.cells();
            s.push_str(&format!(
                "{:<w$} {:>14} {:>14} {:>14} {:>10}  {}\n",
                r.name,
                target,
                tol,
                measured,
                r.sample,
                match r.status {
                    RowStatus::Pass => "PASS",
                    RowStatus::Fail => "FAIL",
                    RowStatus::Info => "info",
                    RowStatus::Insufficient => "insufficient data",
                }
            ));
        }
        if !self.series.mrr.is_empty() {
            s.push_str(&format!(
                "\nrecurring revenue by month (revenue events)\n{:<8} {:>14} {:>8} {:>8} {:>8}\n",
                "month", "MRR", "paying", "new", "churned"
            ));
            for m in &self.series.mrr {
                s.push_str(&format!(
                    "{:<8} {:>14.0} {:>8} {:>8} {:>8}\n",
                    m.month, m.mrr, m.paying, m.new, m.churned
                ));
            }
        }
        s
    }
}

/// Where a user stands in the funnel while scanning its events in order.
#[derive(Default, Clone, Copy)]
struct Progress {
    identified: bool,
    trial_start: Option<u32>,
    ended: bool,
    converted: bool,
    /// Paid (a purchase), and not churned since.
    paying: bool,
    /// Days with in-app events since the current billing period began, and the day it
    /// began (0 before a purchase).
    active_days: u16,
    period_start: u32,
    last_active_day: u32,
}

/// Renewal decisions of one group: how many, how many churned, and the sum of their modelled
/// churn chances.
#[derive(Default, Clone, Copy)]
struct Decisions {
    n: u64,
    churned: u64,
    p: f64,
}

/// Revenue across renewal decisions of one billing period: the revenue of the periods
/// decided, what the customers pay after (0 for churn), its modelled expectation, and the
/// sum of squared deviations from it.
#[derive(Default, Clone, Copy)]
struct Retained {
    before: f64,
    after: f64,
    expected: f64,
    sq: f64,
}

/// Accumulates the report.
pub struct ReportBuilder<'e> {
    engine: &'e Engine,
    /// The first emitted day.
    first_day: u32,
    last_day: u32,
    /// Per engagement tier, the longest return delay (days) the scenario allows.
    max_delays: [u32; 5],
    /// The longest of them: a user first seen this long ago has settled.
    settle_window: u32,
    // from states
    users: u64,
    /// Users whose first session is old enough that any return has happened.
    settled_users: u64,
    multi_session_users: u64,
    sessions_from_states: u64,
    returning_sessions: u64,
    tier_sessions: [u64; 5],
    tier_returned: [u64; 5],
    identified: u64,
    trials_closed: [u64; 2],
    converted_closed: [u64; 2],
    /// Closed, decided trials by activation level ([`ACTIVATION_LEVELS`]): how many, how
    /// many converted, and the sum of their modelled conversion probabilities.
    by_activation: [(u64, u64, f64); 3],
    /// Per first-touch source (index into `scenario.sources`), the users first seen in
    /// the range: the sum of their identification probabilities (ground truth).
    identify_p_by_source: Vec<f64>,
    // from records
    sessions: u64,
    /// Sessions that began before the first day and ran past its midnight.
    carried_in: u64,
    events: u64,
    forms: Vec<u64>,
    trial_signups: u64,
    trials_by_path: [u64; 2],
    purchases: u64,
    purchases_without_sku: u64,
    reengagement_on_new: u64,
    campaign_on_non_cpc: u64,
    out_of_order: u64,
    /// Per first-touch source: devices whose first session is in the range, and how many
    /// of them an event of the range identified.
    first_touch_users: Vec<(u64, u64)>,
    /// The channel (index into `channels`) of each source.
    channel_of: Vec<usize>,
    channels: Vec<String>,
    /// Sessions per channel per emitted day.
    daily_sessions: Vec<Vec<u64>>,
    /// Users first seen in the range who reached each funnel stage (from their events).
    funnel: [u64; 4],
    // lifecycle, from records
    /// Renewal decisions by billing period (monthly, annual) and the period's use (below,
    /// at or above the median).
    churn: [[Decisions; 2]; 2],
    /// Renewals (not churned): how many, expansions and their modelled chances, contractions
    /// and theirs.
    changes: (u64, u64, f64, u64, f64),
    /// Revenue across renewal decisions, by billing period.
    retained: [Retained; 2],
    /// Renewal decisions whose `period_active_days` differs from the days with in-app events
    /// in the period (periods that began in the range), and how many were checked.
    usage_mismatch: (u64, u64),
    /// The last day of each calendar month in the range (the range's last day last), with
    /// its MRR and paying subscriptions, and each month's purchases and cancellations.
    months: Vec<(u32, MonthRevenue)>,
    /// Per subscription bought in the range (by device): the MRR of the revenue event that
    /// pays for the last day, from the events and from the states.
    mrr_events: std::collections::BTreeMap<u64, f64>,
    mrr_states: std::collections::BTreeMap<u64, f64>,
    /// Per subscription paid for on the last day (by device): its company serial and seats.
    paying_last_day: Vec<(u64, u32, u16)>,
    /// Identified users with events in the last 28 days: (company serial, device).
    recently_active: Vec<(u32, u64)>,
    /// Per weekly cohort: users, and users active in each week since.
    retention: WeeklyRetention,
    #[allow(clippy::disallowed_types)]
    progress: HashMap<u64, Progress>,
}

/// Activation levels of the report's conversion rows: activation milestones reached before a
/// trial's decision day.
pub const ACTIVATION_LEVELS: [(&str, std::ops::RangeInclusive<u8>); 3] =
    [("0-1", 0..=1), ("2-3", 2..=3), ("4+", 4..=u8::MAX)];

/// The longest window in which the report counts a return (days after the session): delays
/// with a longer tail are judged on the share that falls within it.
pub const RETURN_WINDOW_DAYS: u32 = 60;

impl<'e> ReportBuilder<'e> {
    /// A builder for a simulation whose last generated day is `last_day` (a day number, at
    /// least [`Engine::first_day`]).
    pub fn new(engine: &'e Engine, last_day: u32) -> Self {
        let max_delays: [u32; 5] = std::array::from_fn(|t| Self::max_delay(engine, t));
        let days = (last_day + 1).saturating_sub(engine.first_day()) as usize;
        let mut channels: Vec<String> = Vec::new();
        let channel_of = engine
            .scenario()
            .sources
            .iter()
            .map(|src| match channels.iter().position(|c| *c == src.medium) {
                Some(i) => i,
                None => {
                    channels.push(src.medium.clone());
                    channels.len() - 1
                }
            })
            .collect();
        ReportBuilder {
            engine,
            first_day: engine.first_day(),
            last_day,
            max_delays,
            settle_window: max_delays.iter().copied().max().unwrap_or(0),
            users: 0,
            settled_users: 0,
            multi_session_users: 0,
            sessions_from_states: 0,
            returning_sessions: 0,
            tier_sessions: [0; 5],
            tier_returned: [0; 5],
            identified: 0,
            trials_closed: [0; 2],
            converted_closed: [0; 2],
            by_activation: [(0, 0, 0.0); 3],
            identify_p_by_source: vec![0.0; engine.scenario().sources.len()],
            sessions: 0,
            carried_in: 0,
            events: 0,
            forms: vec![0; engine.scenario().forms.types.len()],
            trial_signups: 0,
            trials_by_path: [0; 2],
            purchases: 0,
            purchases_without_sku: 0,
            reengagement_on_new: 0,
            campaign_on_non_cpc: 0,
            out_of_order: 0,
            first_touch_users: vec![(0, 0); engine.scenario().sources.len()],
            channel_of,
            daily_sessions: vec![vec![0; days]; channels.len()],
            channels,
            funnel: [0; 4],
            retention: WeeklyRetention::new(engine.first_day()),
            #[allow(clippy::disallowed_types)]
            progress: HashMap::new(),
            churn: Default::default(),
            changes: (0, 0, 0.0, 0, 0.0),
            retained: Default::default(),
            usage_mismatch: (0, 0),
            months: Self::month_ends(engine, last_day),
            mrr_events: Default::default(),
            mrr_states: Default::default(),
            paying_last_day: Vec::new(),
            recently_active: Vec::new(),
        }
    }

    /// The last day of each calendar month from the first emitted day to `last_day` (which
    /// ends the last one), each with an empty [`MonthRevenue`].
    fn month_ends(engine: &Engine, last_day: u32) -> Vec<(u32, MonthRevenue)> {
        let first = engine.first_day();
        (first..=last_day.max(first))
            .filter(|&d| d == last_day || chrono::Datelike::day0(&engine.date_of(d + 1)) == 0)
            .map(|d| {
                let month = engine.date_of(d).format("%Y-%m").to_string();
                (
                    d,
                    MonthRevenue {
                        month,
                        ..Default::default()
                    },
                )
            })
            .collect()
    }

    /// A subscription's MRR: its price times its seats over the billing period's months.
    fn mrr_of(&self, sku: u8, seats: u16) -> f64 {
        let p = &self.engine.scenario().products[usize::from(sku)];
        p.price * f64::from(seats) / f64::from(p.period().months())
    }

    /// Counts one renewal decision (a renewal or a cancellation on `day`, from its record's
    /// plan): its churn, seat change and revenue against the model's chances.
    fn add_decision(&mut self, day: u32, plan: PlanDay, renewed: bool, change: Option<u8>) {
        let e = self.engine;
        let s = e.scenario();
        let k = if renewed {
            plan.renewals - 1
        } else {
            plan.renewals
        };
        let period_days = day - e.period_start_of(plan.sku, plan.start_day, k);
        let active = plan.period_active_days;
        let period = s.products[usize::from(plan.sku)].period();
        let (pc, pe, pk) = e.renewal_chances(plan.sku, plan.prev_seats, active, period_days);
        let high = Engine::period_use(active, period_days) >= s.lifecycle.active_days_per_week;
        let pi = usize::from(period == crate::scenario::BillingPeriod::Annual);
        let d = &mut self.churn[pi][usize::from(high)];
        d.n += 1;
        d.churned += u64::from(!renewed);
        d.p += pc;
        if renewed {
            let c = &mut self.changes;
            c.0 += 1;
            c.1 += u64::from(change == Some(0));
            c.2 += pe;
            c.3 += u64::from(change == Some(1));
            c.4 += pk;
        }
        let price = s.products[usize::from(plan.sku)].price;
        let after = if renewed {
            price * f64::from(plan.seats)
        } else {
            0.0
        };
        let expected =
            price * e.expected_seats_after(plan.sku, plan.prev_seats, active, period_days);
        let r = &mut self.retained[pi];
        r.before += price * f64::from(plan.prev_seats);
        r.after += after;
        r.expected += expected;
        r.sq += (after - expected).powi(2);
    }

    /// Counts a revenue event on `day` of a subscription (`plan`, after the day's change):
    /// the MRR of the month-ends its billing period covers.
    fn add_revenue(&mut self, device: u64, day: u32, plan: PlanDay, renewal: bool) {
        let k = if renewal { plan.renewals } else { 0 };
        let end = self.engine.period_start_of(plan.sku, plan.start_day, k + 1);
        let mrr = self.mrr_of(plan.sku, plan.seats);
        for (d, m) in &mut self.months {
            if day <= *d && *d < end {
                m.mrr += mrr;
                m.paying += 1;
            }
        }
        if day <= self.last_day && self.last_day < end {
            if plan.start_day >= self.first_day {
                self.mrr_events.insert(device, mrr);
            }
            let serial = self.engine.company_of(device).serial;
            self.paying_last_day.push((device, serial, plan.seats));
        }
    }

    /// The window in which a return after a session of `tier` is counted: the longest delay
    /// (of the tier or of an active trial), at most [`RETURN_WINDOW_DAYS`].
    fn max_delay(engine: &Engine, tier: usize) -> u32 {
        let longest = engine
            .return_delay(tier)
            .max_days()
            .max(engine.trial_return_delay().max_days());
        longest.min(RETURN_WINDOW_DAYS)
    }

    /// Adds a user's latest state.
    pub fn add_state(&mut self, st: &UserState) {
        let s = self.engine.scenario();
        let first = self.first_day;
        let new_here = st.first_day() >= first;
        // A paying customer's sessions after its purchase day are product use, not the
        // website's: the lifecycle rows count them, the website's rows do not.
        let website_until = st.subscription.map_or(u32::MAX, |sub| sub.start_day);
        let website = &st.sessions[..st.sessions.partition_point(|x| x.day <= website_until)];
        if let Some(sub) = st.subscription {
            if sub.start_day >= first && sub.active_on(self.last_day) {
                self.mrr_states
                    .insert(st.device, self.mrr_of(sub.sku, sub.seats));
            }
        }
        let n = st.sessions.len() as u64;
        let in_range = website.iter().filter(|x| x.day >= first).count() as u64;
        self.sessions_from_states += in_range;
        // Every session in the range but a user's very first is a returning one.
        self.returning_sessions += in_range - u64::from(new_here && n > 0);
        if new_here {
            self.users += 1;
            self.retention.add(st);
            if let Some(p) = self
                .identify_p_by_source
                .get_mut(st.first_touch.source as usize)
            {
                *p += st.identify_probability_sum();
            }
            if st.first_day() + self.settle_window <= self.last_day {
                self.settled_users += 1;
                if n >= 2 && st.sessions[1].day <= st.sessions[0].day + self.settle_window {
                    self.multi_session_users += 1;
                }
            }
        }
        for (i, sess) in website.iter().enumerate() {
            let tier = sess.tier as usize;
            if sess.day >= first && sess.day + self.max_delays[tier] <= self.last_day {
                self.tier_sessions[tier] += 1;
                if st
                    .sessions
                    .get(i + 1)
                    .is_some_and(|next| next.day <= sess.day + self.max_delays[tier])
                {
                    self.tier_returned[tier] += 1;
                }
            }
        }
        if st.identified_day.is_some_and(|d| d >= first) {
            self.identified += 1;
        }
        if let Some(t) = st.trial.filter(|t| t.start_day >= first) {
            let window = s.trials.conversion_window[1].max(s.trials.expiry_day) as u32;
            if t.start_day + window <= self.last_day {
                self.trials_closed[t.path as usize] += 1;
                if t.converts && t.ended {
                    self.converted_closed[t.path as usize] += 1;
                }
                if t.decided {
                    let (m, u) = t.decided_on;
                    let level = ACTIVATION_LEVELS
                        .iter()
                        .position(|l| l.1.contains(&m))
                        .unwrap_or(ACTIVATION_LEVELS.len() - 1);
                    let a = &mut self.by_activation[level];
                    a.0 += 1;
                    a.1 += u64::from(t.converts && t.ended);
                    a.2 += self.engine.conversion_probability(t.path, m, u);
                }
            }
        }
    }

    /// Adds one stored day record; records must come in day order.
    pub fn add_user_day(&mut self, ud: &UserDay) {
        let s = self.engine.scenario();
        self.events += ud.events.len() as u64;
        for sess in &ud.sessions {
            // A paying customer's product sessions are not the website's (see add_state): the
            // sessions rows leave them out (but for one carried over from the warm start's last
            // night, which the states never count); the daily series and the campaign checks
            // do not.
            let started = if sess.continued { ud.day - 1 } else { ud.day };
            let website = ud.plan.is_none_or(|p| started <= p.start_day);
            if sess.continued {
                // Counted on its first day; one that began before the range is counted here,
                // as a session with events in the range (the warm start's last night).
                if ud.day == self.first_day {
                    self.sessions += 1;
                    self.carried_in += 1;
                }
                continue;
            }
            self.sessions += u64::from(website);
            let day = (ud.day - self.first_day) as usize;
            if let Some(&c) = self.channel_of.get(sess.touch.source as usize) {
                if let Some(v) = self.daily_sessions[c].get_mut(day) {
                    *v += 1;
                }
            }
            let src = &s.sources[sess.touch.source as usize];
            if sess.touch.campaign > 0 {
                if src.medium != "cpc" {
                    self.campaign_on_non_cpc += 1;
                } else if sess.first
                    && !src.campaigns[sess.touch.campaign as usize - 1]
                        .targeting
                        .reaches_new_users()
                {
                    self.reengagement_on_new += 1;
                }
            }
        }
        let trial_form = s.trial_form_index() as u8;
        // A user first seen in the warm start: the order of its journey cannot be checked
        // from the emitted days, whose records it begins in the middle of.
        let checked = super::ids::first_day_of(ud.device) >= self.first_day;
        // A device's first session is where the report meets its first touch.
        if checked && ud.new_sessions().any(|s| s.first) {
            self.funnel[0] += 1;
            if let Some(ft) = self
                .first_touch_users
                .get_mut(ud.first_touch.source as usize)
            {
                ft.0 += 1;
            }
        }
        let mut p = self.progress.get(&ud.device).copied().unwrap_or_default();
        let tracked = p.identified || usize::from(ud.user_id_from) < ud.events.len();
        let out_of_order_before = self.out_of_order;
        let usage_before = self.usage_mismatch;
        // A renewal is decided before the day's sessions: the period's use on its event is
        // the days with in-app events before today, counted from the events (for periods
        // that began in the range); today's sessions count in the next period.
        if let Some(plan) = ud.plan.filter(|_| p.paying) {
            let decided = ud.events.iter().any(|e| {
                matches!(
                    e.kind,
                    EventKind::SubscriptionRenewed | EventKind::SubscriptionCanceled
                )
            });
            if decided {
                if p.period_start >= self.first_day {
                    self.usage_mismatch.1 += 1;
                    if p.active_days != plan.period_active_days {
                        self.usage_mismatch.0 += 1;
                    }
                }
                p.active_days = 0;
                p.period_start = ud.day;
            }
        }
        for (i, e) in ud.events.iter().enumerate() {
            let has_user_id = i >= usize::from(ud.user_id_from);
            // Identity never goes backwards, and only a form identifies.
            if has_user_id && !p.identified {
                if e.kind == EventKind::Form {
                    p.identified = true;
                    if checked {
                        self.funnel[1] += 1;
                        if let Some(ft) = self
                            .first_touch_users
                            .get_mut(ud.first_touch.source as usize)
                        {
                            ft.1 += 1;
                        }
                    }
                } else {
                    self.out_of_order += 1;
                }
            } else if !has_user_id && p.identified {
                self.out_of_order += 1;
            }
            match e.kind {
                EventKind::Form => {
                    self.forms[e.aux as usize] += 1;
                    if e.aux == trial_form {
                        self.trial_signups += 1;
                        if let Some((path, _)) = ud.trial {
                            self.trials_by_path[path as usize] += 1;
                        }
                        if !p.identified || p.trial_start.is_some() {
                            self.out_of_order += 1;
                        }
                        p.trial_start = Some(ud.day);
                        if checked {
                            self.funnel[2] += 1;
                        }
                    }
                }
                EventKind::UpgradeClicked | EventKind::ContactSalesClicked => {
                    let consistent = matches!(
                        (e.kind, ud.trial),
                        (EventKind::UpgradeClicked, Some((TrialPath::SelfService, _)))
                            | (
                                EventKind::ContactSalesClicked,
                                Some((TrialPath::SalesAssisted, _))
                            )
                    );
                    if p.trial_start.is_none() || p.ended || !consistent {
                        self.out_of_order += 1;
                    }
                }
                // In-app events belong to a running trial or a paying customer.
                EventKind::App if p.paying => {
                    // A session counts on the day it starts (the rest of yesterday's was
                    // counted yesterday).
                    let started_today =
                        ud.session_at(e.time_ms).is_some_and(|sess| !sess.continued);
                    if started_today && p.last_active_day != ud.day {
                        p.last_active_day = ud.day;
                        p.active_days += 1;
                    }
                }
                EventKind::App if p.trial_start.is_none() || p.ended => {
                    self.out_of_order += 1;
                }
                // Billing events belong to a paying customer.
                EventKind::SubscriptionChanged
                | EventKind::SubscriptionRenewed
                | EventKind::SubscriptionCanceled => {
                    if !p.paying
                        || ud.plan.is_none_or(|plan| {
                            plan.sku != e.aux && e.kind != EventKind::SubscriptionChanged
                        })
                    {
                        self.out_of_order += 1;
                    }
                    if e.kind == EventKind::SubscriptionCanceled {
                        p.paying = false;
                    }
                }
                EventKind::TrialConverted | EventKind::TrialExpired => {
                    let w = s.trials.conversion_window;
                    let ok_day = match (e.kind, p.trial_start) {
                        (EventKind::TrialConverted, Some(st)) => {
                            let d = i64::from(ud.day - st);
                            d >= w[0] && d <= w[1]
                        }
                        (EventKind::TrialExpired, Some(st)) => {
                            i64::from(ud.day - st) == s.trials.expiry_day
                        }
                        _ => false,
                    };
                    if !ok_day || p.ended {
                        self.out_of_order += 1;
                    }
                    p.ended = true;
                    p.converted = e.kind == EventKind::TrialConverted;
                }
                EventKind::Purchase => {
                    self.purchases += 1;
                    if usize::from(e.aux) >= s.products.len()
                        || s.products[e.aux as usize].sku.is_empty()
                    {
                        self.purchases_without_sku += 1;
                    }
                    if !p.converted || p.paying {
                        self.out_of_order += 1;
                    }
                    p.paying = true;
                    p.active_days = 0;
                    p.period_start = ud.day;
                    if checked {
                        self.funnel[3] += 1;
                    }
                }
                _ => {}
            }
        }
        if !checked {
            self.out_of_order = out_of_order_before;
            self.usage_mismatch = usage_before;
        } else if tracked {
            self.progress.insert(ud.device, p);
        }
        self.add_lifecycle(ud);
    }

    /// Counts a user-day's billing events and, near the end, its account's activity.
    fn add_lifecycle(&mut self, ud: &UserDay) {
        let Some(plan) = ud.plan else {
            if ud.day + 28 > self.last_day && usize::from(ud.user_id_from) < ud.events.len() {
                let serial = self.engine.company_of(ud.device).serial;
                self.recently_active.push((serial, ud.device));
            }
            return;
        };
        if ud.day + 28 > self.last_day {
            let serial = self.engine.company_of(ud.device).serial;
            self.recently_active.push((serial, ud.device));
        }
        let month = self.months.partition_point(|(d, _)| *d < ud.day);
        let mut change = None;
        for e in &ud.events {
            match e.kind {
                EventKind::Purchase => {
                    if let Some((_, m)) = self.months.get_mut(month) {
                        m.new += 1;
                    }
                    self.add_revenue(ud.device, ud.day, plan, false);
                }
                EventKind::SubscriptionChanged => change = Some(e.aux),
                EventKind::SubscriptionRenewed => {
                    self.add_decision(ud.day, plan, true, change);
                    self.add_revenue(ud.device, ud.day, plan, true);
                }
                EventKind::SubscriptionCanceled => {
                    if let Some((_, m)) = self.months.get_mut(month) {
                        m.churned += 1;
                    }
                    self.add_decision(ud.day, plan, false, None);
                }
                _ => {}
            }
        }
    }

    /// Finishes the report.
    pub fn finish(self) -> Report {
        let s = self.engine.scenario();
        let scale = self.engine.config().population_scale;
        let engine = self.engine;
        let (first, last) = (self.first_day, self.last_day.max(self.first_day));
        let days = (self.last_day + 1).saturating_sub(first);
        // Expected arrivals per emitted day, and of a year from the start date: the span's
        // share of a year apportions the plan's year figures.
        let expected: Vec<f64> = (first..=last)
            .map(|d| engine.expected_new_users(d))
            .collect();
        let span: f64 = expected.iter().sum();
        let year: f64 = span
            + (last + 1..first + 365)
                .map(|d| engine.expected_new_users(d))
                .sum::<f64>();
        let share = if year > 0.0 { span / year } else { 0.0 };
        let default_model = {
            let mut mine = s.clone();
            mine.name = super::scenario::Scenario::default_scenario().name;
            mine == super::scenario::Scenario::default_scenario()
        };
        let mut rows = Vec::new();

        // Counts: Pass/Fail within the tolerance, insufficient when 4 sigma is over a quarter
        // of the target.
        let judge_count = |target: f64, tolerance: f64, measured: u64| {
            if tolerance > 0.25 * target {
                RowStatus::Insufficient
            } else if (measured as f64 - target).abs() <= tolerance {
                RowStatus::Pass
            } else {
                RowStatus::Fail
            }
        };
        let row =
            |key: &str, name: &str, target, tolerance, measured, unit: &str, status, sample| {
                ReportRow {
                    key: key.into(),
                    name: name.into(),
                    target,
                    tolerance,
                    measured,
                    unit: unit.into(),
                    pass: status == RowStatus::Pass,
                    status,
                    sample,
                }
            };

        // Unique users: derived from the scenario and the span.
        {
            let t = &s.traffic;
            let poisson: f64 = span;
            let day_var: f64 = expected.iter().map(|m| (m * t.daily_noise).powi(2)).sum();
            let week_var: f64 = expected
                .chunks(7)
                .map(|w| (w.iter().sum::<f64>() * t.weekly_noise).powi(2))
                .sum();
            let sigma = (poisson + day_var + week_var).sqrt();
            let tolerance = (0.01 * span).max(4.0 * sigma);
            rows.push(row(
                "unique_users",
                "unique users (device ids)",
                span,
                tolerance,
                self.users as f64,
                "count",
                judge_count(span, tolerance, self.users),
                self.users,
            ));
        }

        // The source plan's volumes: outcomes of the whole model, checked for the default one.
        let mut plan =
            |key: &str, name: &str, target_year: f64, rel_tol: f64, k: f64, measured: u64| {
                let target = target_year * scale * share;
                let tolerance = (target * rel_tol).max(4.0 * (k * target).sqrt());
                let status = if default_model && days >= 365 {
                    judge_count(target, tolerance, measured)
                } else {
                    RowStatus::Info
                };
                rows.push(row(
                    key,
                    name,
                    target,
                    tolerance,
                    measured as f64,
                    "count",
                    status,
                    measured,
                ));
            };
        plan(
            "sessions",
            "sessions",
            27_400_000.0,
            0.05,
            3.0,
            self.sessions,
        );
        plan(
            "returning_sessions",
            "sessions of returning users",
            11_200_000.0,
            0.07,
            3.0,
            self.returning_sessions,
        );
        let forms: u64 = self.forms.iter().sum();
        plan(
            "form_submissions",
            "form submissions",
            82_000.0,
            0.10,
            1.0,
            forms,
        );
        plan(
            "identified_users",
            "identified users",
            82_000.0,
            0.10,
            1.0,
            self.identified,
        );
        plan(
            "trial_signups",
            "trial signups",
            29_000.0,
            0.07,
            1.0,
            self.trial_signups,
        );
        plan(
            "paid_subscriptions",
            "paid subscriptions",
            10_000.0,
            0.10,
            1.0,
            self.purchases,
        );
        // Move the unique users row after sessions, where the plan's table has it.
        let users_row = rows.remove(0);
        rows.insert(1, users_row);

        // Rates: within the slack or 4 standard errors; insufficient with no observation or a
        // band over three times the slack.
        let mut rate =
            |key: &str, name: &str, target: f64, tol: f64, num: u64, den: u64, checked: bool| {
                rows.push(rate_row(key, name, target, tol, num, den, checked));
            };
        rate(
            "multi_session_users",
            "users with 2+ sessions",
            0.41,
            0.02,
            self.multi_session_users,
            self.settled_users,
            default_model,
        );
        let tiers = s.engagement.tiers.all();
        // A return counts within the tier's window; the target is the return probability
        // times the chance that the return falls within the window (same-day returns do; 1
        // for delays that never exceed it).
        let within = |tier: usize, what: &str| {
            let w = self.max_delays[tier];
            let delay = self.engine.return_delay(tier);
            let target = tiers[tier].return_probability * self.engine.return_within(tier, w);
            if delay.max_days() > w {
                (target, format!("{what} (within {w} days)"))
            } else {
                (target, what.to_string())
            }
        };
        let (bounce_target, bounce_name) = within(0, "return rate after a bounce session");
        let (high_target, high_name) = within(3, "return rate after a high-engagement session");
        rate(
            "return_rate_bounce",
            &bounce_name,
            bounce_target,
            0.01,
            self.tier_returned[0],
            self.tier_sessions[0],
            true,
        );
        rate(
            "return_rate_high",
            &high_name,
            high_target,
            0.02,
            self.tier_returned[3],
            self.tier_sessions[3],
            true,
        );
        rate(
            "trial_share_of_forms",
            "trial signups / form submissions",
            s.forms.types[s.trial_form_index()].share,
            0.02,
            self.trial_signups,
            forms,
            true,
        );
        for (i, f) in s.forms.types.iter().enumerate() {
            rate(
                &format!("form_mix_{}", f.form_type),
                &format!("form mix: {}", f.event_type),
                f.share,
                0.015,
                self.forms[i],
                forms,
                true,
            );
        }
        rate(
            "trial_path_self_service",
            "trial path split: self-service",
            s.trials.path_split.self_service,
            0.02,
            self.trials_by_path[0],
            self.trials_by_path[0] + self.trials_by_path[1],
            true,
        );
        rate(
            "conversion_self_service",
            "trial → paid, self-service",
            s.trials.conversion_rate.self_service,
            0.02,
            self.converted_closed[0],
            self.trials_closed[0],
            true,
        );
        rate(
            "conversion_sales_assisted",
            "trial → paid, sales-assisted",
            s.trials.conversion_rate.sales_assisted,
            0.02,
            self.converted_closed[1],
            self.trials_closed[1],
            true,
        );

        // Conversion by activation level: the target is the outcome model's mean probability
        // over the level's trials (ground truth), the measurement their conversions.
        for (i, (label, _)) in ACTIVATION_LEVELS.iter().enumerate() {
            let (n, converted, p_sum) = self.by_activation[i];
            rate(
                &format!("conversion_activation_{i}"),
                &format!(
                    "trial → paid, {label} milestones by day {}",
                    s.trials.conversion_window[0]
                ),
                if n > 0 { p_sum / n as f64 } else { 0.0 },
                0.02,
                converted,
                n,
                true,
            );
        }

        // Identification by first touch: the target is the mean, over the users first seen
        // through the source, of the sum of their sessions' chances to identify them while
        // anonymous (ground truth: by optional stopping its mean is the expected rate); the
        // measurement is the share of them whose events identify them.
        for (i, src) in s.sources.iter().enumerate() {
            let (n, identified) = self.first_touch_users[i];
            if n == 0 && src.new_share <= 0.0 {
                continue; // a source that brings no first visits
            }
            let twin = s.sources[..i]
                .iter()
                .any(|o| o.source == src.source && o.medium == src.medium);
            let key = if twin {
                format!("identified_first_touch_{}_{}_{i}", src.source, src.medium)
            } else {
                format!("identified_first_touch_{}_{}", src.source, src.medium)
            };
            let target = if n > 0 {
                self.identify_p_by_source[i] / n as f64
            } else {
                0.0
            };
            // Rates well under 1%: the slack is a tenth of the rate, so that a channel off by
            // more than that fails once the sample can tell.
            rate(
                &key,
                &format!("identified, first touch {} / {}", src.source, src.medium),
                target,
                (0.1 * target).max(1e-4),
                identified,
                n,
                true,
            );
        }

        let mut exact = |key: &str, name: &str, measured: u64, sample: u64| {
            let status = if measured == 0 {
                RowStatus::Pass
            } else {
                RowStatus::Fail
            };
            rows.push(row(
                key,
                name,
                0.0,
                0.0,
                measured as f64,
                "violations",
                status,
                sample,
            ));
        };
        exact(
            "reengagement_on_new_users",
            "re-engagement campaigns on a new user's session",
            self.reengagement_on_new,
            self.sessions,
        );
        exact(
            "campaign_on_non_cpc",
            "campaigns on non-cpc traffic",
            self.campaign_on_non_cpc,
            self.sessions,
        );
        exact(
            "purchases_without_sku",
            "purchases without a product SKU",
            self.purchases_without_sku,
            self.purchases,
        );
        exact(
            "journeys_out_of_order",
            "journeys out of order",
            self.out_of_order,
            self.progress.len() as u64,
        );
        exact(
            "session_count_mismatch",
            "sessions in events ≠ sessions in user state",
            (self.sessions - self.carried_in).abs_diff(self.sessions_from_states),
            self.sessions,
        );
        // The MRR of each subscription bought in the range, from its last revenue event and
        // from its state, must agree.
        let mut mrr_mismatch = 0u64;
        for (device, m) in &self.mrr_states {
            if self
                .mrr_events
                .get(device)
                .is_none_or(|x| (x - m).abs() > 1e-6)
            {
                mrr_mismatch += 1;
            }
        }
        mrr_mismatch += self
            .mrr_events
            .keys()
            .filter(|d| !self.mrr_states.contains_key(d))
            .count() as u64;
        exact(
            "mrr_mismatch",
            "subscriptions whose MRR ≠ their last revenue event's",
            mrr_mismatch,
            self.mrr_states.len() as u64,
        );
        exact(
            "period_use_mismatch",
            "renewals whose period_active_days ≠ days with in-app events",
            self.usage_mismatch.0,
            self.usage_mismatch.1,
        );

        // The lifecycle: churn, seat changes and revenue retention per renewal against the
        // model's chances for each decision (its period's use, from the renewal events).
        let lifecycle_rows = lifecycle_rows(
            &self.churn,
            self.changes,
            &self.retained,
            s.lifecycle.active_days_per_week,
        );
        rows.extend(lifecycle_rows);
        let last_mrr = self.months.last().map_or(0.0, |(_, m)| m.mrr);
        let paying = self.paying_last_day.len() as u64;
        rows.push(row(
            "mrr_last_day",
            "MRR on the last day (revenue events)",
            0.0,
            0.0,
            last_mrr,
            "count",
            RowStatus::Info,
            paying,
        ));
        // Logo churn per month: the cancellations of each whole month over the subscriptions
        // paid for on the month before's last day.
        let (mut churned, mut base) = (0u64, 0u64);
        for w in self.months.windows(2) {
            churned += w[1].1.churned;
            base += w[0].1.paying;
        }
        rows.push(row(
            "logo_churn_monthly",
            "logo churn per month, all plans",
            0.0,
            0.0,
            if base == 0 {
                0.0
            } else {
                churned as f64 / base as f64
            },
            "ratio",
            RowStatus::Info,
            base,
        ));
        let mut accounts: Vec<(u32, u16)> = self
            .paying_last_day
            .iter()
            .map(|&(_, c, n)| (c, n))
            .collect();
        accounts.sort_unstable();
        let seats: u64 = accounts.iter().map(|&(_, n)| u64::from(n)).sum();
        accounts.dedup_by_key(|a| a.0);
        let n_accounts = accounts.len() as u64;
        let mut active = self.recently_active.clone();
        active.sort_unstable();
        active.dedup();
        let active_in_paying = active
            .iter()
            .filter(|(c, _)| accounts.binary_search_by_key(c, |a| a.0).is_ok())
            .count() as u64;
        let per = |x: u64| {
            if n_accounts == 0 {
                0.0
            } else {
                x as f64 / n_accounts as f64
            }
        };
        rows.push(row(
            "seats_per_account",
            "seats per paying account, last day",
            0.0,
            0.0,
            per(seats),
            "mean",
            RowStatus::Info,
            n_accounts,
        ));
        rows.push(row(
            "active_users_per_account",
            "active users per paying account, last 28 days",
            0.0,
            0.0,
            per(active_in_paying),
            "mean",
            RowStatus::Info,
            n_accounts,
        ));

        let date = |d: u32| engine.date_of(d).format("%Y-%m-%d").to_string();
        let mut conversion: Vec<Conversion> = ["self-service", "sales-assisted"]
            .iter()
            .enumerate()
            .map(|(i, name)| Conversion {
                name: (*name).to_string(),
                trials: self.trials_closed[i],
                converted: self.converted_closed[i],
            })
            .collect();
        conversion.extend(ACTIVATION_LEVELS.iter().zip(self.by_activation).map(
            |((label, _), (n, converted, _))| Conversion {
                name: format!("{label} milestones"),
                trials: n,
                converted,
            },
        ));
        let series = Series {
            first_date: date(first),
            daily_sessions: self
                .channels
                .iter()
                .zip(self.daily_sessions)
                .map(|(name, values)| NamedSeries {
                    name: name.clone(),
                    values,
                })
                .collect(),
            funnel: ["visited", "identified", "started a trial", "paid"]
                .iter()
                .zip(self.funnel)
                .map(|(name, users)| Stage {
                    name: (*name).to_string(),
                    users,
                })
                .collect(),
            // A week counts once it is complete (the cohort's own week always), up to
            // RETENTION_WEEKS after.
            retention: (0..days.div_ceil(7))
                .map(|w| {
                    let complete = (last + 1 - first) / 7;
                    let weeks = (complete.saturating_sub(w) as usize).clamp(1, RETENTION_WEEKS + 1);
                    let (users, active) = self.retention.row(w, weeks);
                    Cohort {
                        week_start: date(first + 7 * w),
                        users,
                        active,
                    }
                })
                .collect(),
            conversion,
            mrr: self.months.into_iter().map(|(_, m)| m).collect(),
        };
        Report {
            days,
            population_scale: scale,
            rows,
            series,
        }
    }
}

/// The lifecycle's rows: churn per renewal by billing period and by the period's use, seat
/// expansion and contraction per renewal, and net revenue retention per renewal by billing
/// period, each against the mean of the model's chances over the decisions
/// ([`Engine::renewal_chances`], [`Engine::expected_seats_after`]) within 4 standard errors
/// and a slack (1 point for monthly plans' rates, 2 for annual plans' and for retention);
/// insufficient data when 4 standard errors exceed three slacks (10 points for retention).
fn lifecycle_rows(
    churn: &[[Decisions; 2]; 2],
    changes: (u64, u64, f64, u64, f64),
    retained: &[Retained; 2],
    median_use: f64,
) -> Vec<ReportRow> {
    let mut rows = Vec::new();
    let mut rate = |key: String, name: String, num: u64, den: u64, p_sum: f64, slack: f64| {
        let target = if den == 0 { 0.0 } else { p_sum / den as f64 };
        rows.push(rate_row(&key, &name, target, slack, num, den, true));
    };
    for (pi, period) in ["monthly", "annual"].iter().enumerate() {
        let [lo, hi] = churn[pi];
        // Annual plans renew once a year: fewer decisions, a wider slack.
        let slack = if pi == 0 { 0.01 } else { 0.02 };
        rate(
            format!("churn_{period}"),
            format!("churn per renewal, {period} plans"),
            lo.churned + hi.churned,
            lo.n + hi.n,
            lo.p + hi.p,
            slack,
        );
        for (d, which, cmp) in [(lo, "low", "<"), (hi, "high", "≥")] {
            rate(
                format!("churn_{period}_{which}_use"),
                format!("churn per renewal, {period}, use {cmp} {median_use} days/week"),
                d.churned,
                d.n,
                d.p,
                slack,
            );
        }
    }
    let (n, exp, p_exp, con, p_con) = changes;
    rate(
        "expansion".into(),
        "seat expansion per renewal".into(),
        exp,
        n,
        p_exp,
        0.01,
    );
    rate(
        "contraction".into(),
        "seat contraction per renewal".into(),
        con,
        n,
        p_con,
        0.01,
    );
    for (pi, period) in ["monthly", "annual"].iter().enumerate() {
        let r = retained[pi];
        let (target, measured) = if r.before > 0.0 {
            (r.expected / r.before, r.after / r.before)
        } else {
            (0.0, 0.0)
        };
        let sigma = if r.before > 0.0 {
            r.sq.sqrt() / r.before
        } else {
            1.0
        };
        let tolerance = 0.02f64.max(4.0 * sigma);
        let status = if r.before == 0.0 || 4.0 * sigma > 0.10 {
            RowStatus::Insufficient
        } else if (measured - target).abs() <= tolerance {
            RowStatus::Pass
        } else {
            RowStatus::Fail
        };
        rows.push(ReportRow {
            key: format!("nrr_{period}"),
            name: format!("net revenue retention per renewal, {period} plans"),
            target,
            tolerance,
            measured,
            unit: "ratio".into(),
            pass: status == RowStatus::Pass,
            status,
            sample: churn[pi][0].n + churn[pi][1].n,
        });
    }
    rows
}

/// A rate row: `num / den` against `target`, within the slack `tol` or 4 standard errors of a
/// proportion, whichever is wider; insufficient data with no observation or a 4-sigma band
/// over three times the slack; information when not `checked`.
fn rate_row(
    key: &str,
    name: &str,
    target: f64,
    tol: f64,
    num: u64,
    den: u64,
    checked: bool,
) -> ReportRow {
    let measured = if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    };
    let sigma = if den == 0 {
        1.0
    } else {
        (target * (1.0 - target) / den as f64).sqrt()
    };
    let tolerance = tol.max(4.0 * sigma);
    let status = if den == 0 || 4.0 * sigma > 3.0 * tol {
        RowStatus::Insufficient
    } else if !checked {
        RowStatus::Info
    } else if (measured - target).abs() <= tolerance {
        RowStatus::Pass
    } else {
        RowStatus::Fail
    };
    ReportRow {
        key: key.into(),
        name: name.into(),
        target,
        tolerance,
        measured,
        unit: "ratio".into(),
        pass: status == RowStatus::Pass,
        status,
        sample: den,
    }
}
