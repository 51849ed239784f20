//! Journeys and cohorts: queries over the stored records and user states.
//!
//! A journey reads one device's event chunk across days (index `(sim, chunk, day)`) and
//! summarises the records. A cohort scans every user's latest state once (each is in exactly
//! one `user_states` blob), on all cores, folding partial aggregates that merge exactly.

use crate::error::{Error, Result};
use crate::store::days::Packed;
use ampsim_engine::ids::first_day_of;
use ampsim_engine::render::campaign_name;
use ampsim_engine::scenario::TrialPath;
use ampsim_engine::state::{EventKind, LifecycleStage};
use ampsim_engine::{codec, Engine, UserDay, UserState};
use std::collections::BinaryHeap;

/// What a user's journey amounts to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JourneySummary {
    /// Device number.
    pub device: u64,
    /// Whether the user ever got a user_id.
    pub is_identified: bool,
    /// First simulation day seen.
    pub first_day: u32,
    /// First-touch source, medium and campaign.
    pub first_touch: (String, String, String),
    /// Sessions.
    pub session_count: u32,
    /// Sum of session engagement scores.
    pub total_engagement: f64,
    /// The identifying form's type.
    pub form_type: String,
    /// Trial path name.
    pub trial_path: String,
    /// `none`, `active`, `converted` or `expired`.
    pub trial_outcome: String,
    /// Product bought.
    pub product_sku: String,
    /// Revenue: the purchase's and the renewals'.
    pub revenue: f64,
    /// Events.
    pub event_count: u64,
    /// Stages in order.
    pub stages: Vec<String>,
    /// The ground truth, from the user's latest state.
    pub label: Option<ampsim_engine::labels::Label>,
}

/// Summarises a device's records (in day order).
pub fn summarize_journey(engine: &Engine, device: u64, records: &[UserDay]) -> JourneySummary {
    let s = engine.scenario();
    let mut j = JourneySummary {
        device,
        first_day: first_day_of(device),
        trial_outcome: "none".into(),
        ..Default::default()
    };
    if let Some(first) = records.first() {
        let src = &s.sources[first.first_touch.source as usize];
        j.first_touch = (
            src.source.clone(),
            src.medium.clone(),
            campaign_name(s, first.first_touch)
                .unwrap_or_default()
                .to_string(),
        );
    }
    let mut anonymous_events = false;
    let mut last_session = i64::MIN;
    for r in records {
        j.event_count += r.events.len() as u64;
        // A session that crossed midnight is in two records; count it once (also when it
        // began before the first emitted day).
        for sess in &r.sessions {
            if sess.start_ms != last_session {
                last_session = sess.start_ms;
                j.session_count += 1;
                j.total_engagement += f64::from(sess.score10) / 10.0;
            }
        }
        if usize::from(r.user_id_from) > 0 {
            anonymous_events = true;
        }
        if usize::from(r.user_id_from) < r.events.len() {
            j.is_identified = true;
        }
        if let Some((path, _)) = r.trial {
            j.trial_path = path.name().into();
            if j.trial_outcome == "none" {
                j.trial_outcome = "active".into();
            }
        }
        for e in &r.events {
            match e.kind {
                EventKind::Form if j.form_type.is_empty() => {
                    j.form_type = s.forms.types[e.aux as usize].form_type.clone();
                }
                EventKind::TrialConverted => j.trial_outcome = "converted".into(),
                EventKind::TrialExpired => j.trial_outcome = "expired".into(),
                EventKind::Purchase | EventKind::SubscriptionRenewed => {
                    let p = &s.products[e.aux as usize];
                    j.product_sku = p.sku.clone();
                    let seats = r.plan.map_or(1, |plan| plan.seats);
                    j.revenue += p.price * f64::from(seats);
                }
                _ => {}
            }
        }
    }
    // Everyone arrives anonymous: a user first seen in the warm start (before the emitted days)
    // was anonymous there even when every emitted event already has the user id.
    if anonymous_events || !j.is_identified || j.first_day < engine.first_day() {
        j.stages.push("anonymous".into());
    }
    if j.is_identified {
        j.stages.push("identified".into());
    }
    if !j.trial_path.is_empty() {
        j.stages.push("trial".into());
    }
    match j.trial_outcome.as_str() {
        "converted" => j.stages.push("paid".into()),
        "expired" => j.stages.push("expired".into()),
        _ => {}
    }
    j
}

/// A trial outcome filter or value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// No trial.
    None,
    /// Trial running.
    Active,
    /// Converted to paid.
    Converted,
    /// Expired.
    Expired,
}

impl Outcome {
    /// Parses a filter value.
    pub fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "none" => Outcome::None,
            "active" => Outcome::Active,
            "converted" => Outcome::Converted,
            "expired" => Outcome::Expired,
            _ => return None,
        })
    }

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::None => "none",
            Outcome::Active => "active",
            Outcome::Converted => "converted",
            Outcome::Expired => "expired",
        }
    }

    /// A user's outcome.
    pub fn of(st: &UserState) -> Outcome {
        match st.trial {
            None => Outcome::None,
            Some(t) if t.ended && t.converts => Outcome::Converted,
            Some(t) if t.ended => Outcome::Expired,
            Some(_) => Outcome::Active,
        }
    }
}

/// Cohort filters, resolved against the scenario (names → indexes).
#[derive(Debug, Clone, Default)]
pub struct CohortFilter {
    /// First-seen day range, inclusive.
    pub first_days: Option<(u32, u32)>,
    /// Acquisition source indexes allowed (by source and/or medium name).
    pub sources: Option<Vec<u8>>,
    /// Acquisition campaign: (source index, 1 + campaign index) pairs allowed.
    pub campaigns: Option<Vec<(u8, u8)>>,
    /// Identified or not.
    pub identified: Option<bool>,
    /// Identifying form type index.
    pub form_type: Option<u8>,
    /// Trial path.
    pub trial_path: Option<TrialPath>,
    /// Trial outcome.
    pub outcome: Option<Outcome>,
    /// Product index.
    pub sku: Option<u8>,
    /// Session count range, inclusive.
    pub sessions: (u32, u32),
    /// The company (serial) the user works for.
    pub company: Option<u32>,
    /// The company's size band (index into `accounts.size_bands`).
    pub size_band: Option<usize>,
    /// The subscription's plan tier (`products[].tier`): the products of that tier.
    pub plan: Option<Vec<u8>>,
    /// The lifecycle stage.
    pub stage: Option<LifecycleStage>,
}

/// The raw filter fields of a cohort request.
#[derive(Debug, Clone, Default)]
pub struct CohortParams {
    /// `YYYY-MM-DD` or empty.
    pub first_seen_from: String,
    /// `YYYY-MM-DD` or empty.
    pub first_seen_to: String,
    /// Source name or empty.
    pub source: String,
    /// Medium name or empty.
    pub medium: String,
    /// Campaign name or empty.
    pub campaign: String,
    /// Identified filter.
    pub identified: Option<bool>,
    /// Form type name or empty.
    pub form_type: String,
    /// Trial path name or empty.
    pub trial_path: String,
    /// Outcome name or empty.
    pub trial_outcome: String,
    /// SKU or empty.
    pub product_sku: String,
    /// Minimum sessions.
    pub min_sessions: Option<u32>,
    /// Maximum sessions.
    pub max_sessions: Option<u32>,
    /// A company's domain or empty.
    pub company: String,
    /// A size band's name or empty.
    pub company_size_band: String,
    /// A plan tier or empty.
    pub plan: String,
    /// A lifecycle stage or empty.
    pub lifecycle_stage: String,
}

fn one_of(field: &str, value: &str, known: impl Iterator<Item = String>) -> Error {
    let known: Vec<String> = known.collect();
    Error::invalid(
        field,
        format!(
            "unknown value {value:?}; this scenario has: {}",
            known.join(", ")
        ),
    )
}

impl CohortFilter {
    /// Resolves and checks the filters: unknown names and contradictions are
    /// [`Error::InvalidArgument`] naming the field.
    ///
    /// # Errors
    /// As above.
    pub fn resolve(engine: &Engine, p: &CohortParams) -> Result<CohortFilter> {
        let s = engine.scenario();
        let mut f = CohortFilter {
            identified: p.identified,
            sessions: (
                p.min_sessions.unwrap_or(0),
                p.max_sessions.unwrap_or(u32::MAX),
            ),
            ..Default::default()
        };
        if f.sessions.0 > f.sessions.1 {
            return Err(Error::invalid(
                "min_sessions",
                "is greater than max_sessions",
            ));
        }
        // Cohorts are of the users the simulation emits: those first seen in the warm start
        // (before the start date) are left out.
        f.first_days = Some((engine.first_day(), u32::MAX));
        if !p.first_seen_from.is_empty() || !p.first_seen_to.is_empty() {
            let from = if p.first_seen_from.is_empty() {
                engine.first_day()
            } else {
                let d = crate::validate::parse_date("first_seen_from", &p.first_seen_from)?;
                engine.day_of(d).unwrap_or(engine.first_day())
            };
            let to = if p.first_seen_to.is_empty() {
                u32::MAX
            } else {
                let d = crate::validate::parse_date("first_seen_to", &p.first_seen_to)?;
                match engine.day_of(d) {
                    Some(x) => x,
                    None => {
                        return Err(Error::invalid(
                            "first_seen_to",
                            "is before the simulation's start date",
                        ))
                    }
                }
            };
            if from > to {
                return Err(Error::invalid("first_seen_from", "is after first_seen_to"));
            }
            f.first_days = Some((from, to));
        }
        if !p.source.is_empty() || !p.medium.is_empty() {
            let idx: Vec<u8> = s
                .sources
                .iter()
                .enumerate()
                .filter(|(_, x)| {
                    (p.source.is_empty() || x.source == p.source)
                        && (p.medium.is_empty() || x.medium == p.medium)
                })
                .map(|(i, _)| i as u8)
                .collect();
            if idx.is_empty() {
                let field =
                    if !p.source.is_empty() && !s.sources.iter().any(|x| x.source == p.source) {
                        "source"
                    } else {
                        "medium"
                    };
                let value = if field == "source" {
                    &p.source
                } else {
                    &p.medium
                };
                return Err(one_of(
                    field,
                    value,
                    s.sources
                        .iter()
                        .map(|x| format!("{}/{}", x.source, x.medium)),
                ));
            }
            f.sources = Some(idx);
        }
        if !p.campaign.is_empty() {
            let mut pairs = Vec::new();
            for (i, src) in s.sources.iter().enumerate() {
                for (j, c) in src.campaigns.iter().enumerate() {
                    if c.name == p.campaign {
                        pairs.push((i as u8, j as u8 + 1));
                    }
                }
            }
            if pairs.is_empty() {
                return Err(one_of(
                    "campaign",
                    &p.campaign,
                    s.sources
                        .iter()
                        .flat_map(|x| x.campaigns.iter().map(|c| c.name.clone())),
                ));
            }
            f.campaigns = Some(pairs);
        }
        if !p.form_type.is_empty() {
            let i = s
                .forms
                .types
                .iter()
                .position(|t| t.form_type == p.form_type)
                .ok_or_else(|| {
                    one_of(
                        "form_type",
                        &p.form_type,
                        s.forms.types.iter().map(|t| t.form_type.clone()),
                    )
                })?;
            f.form_type = Some(i as u8);
        }
        if !p.trial_path.is_empty() {
            f.trial_path = Some(TrialPath::parse(&p.trial_path).ok_or_else(|| {
                one_of(
                    "trial_path",
                    &p.trial_path,
                    ["self_service", "sales_assisted"]
                        .map(String::from)
                        .into_iter(),
                )
            })?);
        }
        if !p.trial_outcome.is_empty() {
            f.outcome = Some(Outcome::parse(&p.trial_outcome).ok_or_else(|| {
                one_of(
                    "trial_outcome",
                    &p.trial_outcome,
                    ["none", "active", "converted", "expired"]
                        .map(String::from)
                        .into_iter(),
                )
            })?);
        }
        if !p.product_sku.is_empty() {
            let i = s
                .products
                .iter()
                .position(|x| x.sku == p.product_sku)
                .ok_or_else(|| {
                    one_of(
                        "product_sku",
                        &p.product_sku,
                        s.products.iter().map(|x| x.sku.clone()),
                    )
                })?;
            f.sku = Some(i as u8);
        }
        if !p.company.is_empty() {
            let c = engine
                .companies()
                .parse_domain(s, &p.company)
                .ok_or_else(|| {
                    Error::invalid(
                        "company",
                        format!(
                            "no company of this simulation has the domain {:?} (the domain of a user id, or of the `company` group)",
                            p.company
                        ),
                    )
                })?;
            f.company = Some(c.serial);
            f.size_band = Some(c.band);
        }
        if !p.company_size_band.is_empty() {
            let b = s
                .accounts
                .size_bands
                .iter()
                .position(|b| b.name == p.company_size_band)
                .ok_or_else(|| {
                    one_of(
                        "company_size_band",
                        &p.company_size_band,
                        s.accounts.size_bands.iter().map(|b| b.name.clone()),
                    )
                })?;
            if f.size_band.is_some_and(|x| x != b) {
                return Err(Error::invalid(
                    "company_size_band",
                    format!(
                        "{:?} contradicts the company filter: {} is in band {:?}",
                        p.company_size_band,
                        p.company,
                        s.accounts.size_bands[f.size_band.unwrap_or(0)].name
                    ),
                ));
            }
            f.size_band = Some(b);
        }
        if !p.plan.is_empty() {
            let skus: Vec<u8> = (0..s.products.len() as u8)
                .filter(|&i| s.products[usize::from(i)].tier == p.plan)
                .collect();
            if skus.is_empty() {
                let mut tiers: Vec<String> = s.products.iter().map(|x| x.tier.clone()).collect();
                tiers.dedup();
                return Err(one_of("plan", &p.plan, tiers.into_iter()));
            }
            f.plan = Some(skus);
        }
        if !p.lifecycle_stage.is_empty() {
            f.stage = Some(LifecycleStage::parse(&p.lifecycle_stage).ok_or_else(|| {
                one_of(
                    "lifecycle_stage",
                    &p.lifecycle_stage,
                    LifecycleStage::ALL.iter().map(|x| x.name().to_string()),
                )
            })?);
        }
        // Contradictions: filters that no user can satisfy together.
        let needs_identity = f.form_type.is_some()
            || f.trial_path.is_some()
            || f.sku.is_some()
            || matches!(f.outcome, Some(o) if o != Outcome::None);
        if f.identified == Some(false) && needs_identity {
            return Err(Error::invalid(
                "identified",
                "identified = false contradicts form_type, trial_path, trial_outcome or product_sku: only identified users have those",
            ));
        }
        if f.outcome == Some(Outcome::None) && f.trial_path.is_some() {
            return Err(Error::invalid(
                "trial_outcome",
                "'none' contradicts a trial_path filter",
            ));
        }
        if f.sku.is_some() && matches!(f.outcome, Some(o) if o != Outcome::Converted) {
            return Err(Error::invalid(
                "trial_outcome",
                "only converted trials have a product_sku",
            ));
        }
        if f.sessions.1 == 0 {
            return Err(Error::invalid(
                "max_sessions",
                "every user has at least one session",
            ));
        }
        Ok(f)
    }

    /// Whether a user matches.
    pub fn matches(&self, engine: &Engine, st: &UserState) -> bool {
        let n = st.session_count();
        if n < self.sessions.0 || n > self.sessions.1 {
            return false;
        }
        if let Some((a, b)) = self.first_days {
            let d = first_day_of(st.device);
            if d < a || d > b {
                return false;
            }
        }
        if let Some(src) = &self.sources {
            if !src.contains(&st.first_touch.source) {
                return false;
            }
        }
        if let Some(c) = &self.campaigns {
            if !c.contains(&(st.first_touch.source, st.first_touch.campaign)) {
                return false;
            }
        }
        if self.identified.is_some_and(|i| i != st.is_identified()) {
            return false;
        }
        if self.form_type.is_some() && self.form_type != st.form_type {
            return false;
        }
        if self.trial_path.is_some() && self.trial_path != st.trial.map(|t| t.path) {
            return false;
        }
        if self.outcome.is_some_and(|o| o != Outcome::of(st)) {
            return false;
        }
        if self.sku.is_some() && self.sku != st.product_sku {
            return false;
        }
        if self.stage.is_some_and(|x| x != LifecycleStage::of(st)) {
            return false;
        }
        if let Some(skus) = &self.plan {
            // The current subscription's tier (the last one's, once churned).
            if !st.subscription.is_some_and(|sub| skus.contains(&sub.sku)) {
                return false;
            }
        }
        if self.company.is_some() || self.size_band.is_some() {
            // The true account, a trait of the device: anonymous users have one too.
            let c = engine.company_of(st.device);
            if self.company.is_some_and(|x| x != c.serial)
                || self.size_band.is_some_and(|b| b != c.band)
            {
                return false;
            }
        }
        true
    }
}

/// One member, as streamed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    /// Device number (the sort key).
    pub device: u64,
    /// Whether identified.
    pub identified: bool,
    /// Sessions.
    pub sessions: u32,
    /// Form type index.
    pub form_type: Option<u8>,
    /// Trial path.
    pub trial_path: Option<TrialPath>,
    /// Outcome.
    pub outcome: Outcome,
    /// Product index.
    pub sku: Option<u8>,
}

/// Cohort aggregates; partial aggregates from different blobs merge exactly.
#[derive(Debug, Clone, Default)]
pub struct CohortAgg {
    /// Users.
    pub users: u64,
    /// Identified users.
    pub identified: u64,
    /// Users with a trial.
    pub trials: u64,
    /// Trials whose outcome is known.
    pub trials_closed: u64,
    /// Paid users.
    pub paid: u64,
    /// Sessions.
    pub sessions: u64,
    /// Retention by first-seen week, counted from the first emitted day.
    pub retention: ampsim_engine::report::WeeklyRetention,
    /// The first members by device number.
    members: BinaryHeap<Member>,
    max_members: usize,
}

impl CohortAgg {
    /// An empty aggregate keeping at most `max_members` members, its weeks counted from day
    /// `origin` (the simulation's first emitted day).
    pub fn new(max_members: usize, origin: u32) -> Self {
        CohortAgg {
            max_members,
            retention: ampsim_engine::report::WeeklyRetention::new(origin),
            ..Default::default()
        }
    }

    /// Adds a matching user.
    pub fn add(&mut self, st: &UserState) {
        self.users += 1;
        self.sessions += u64::from(st.session_count());
        let outcome = Outcome::of(st);
        if st.is_identified() {
            self.identified += 1;
        }
        if st.trial.is_some() {
            self.trials += 1;
        }
        if matches!(outcome, Outcome::Converted | Outcome::Expired) {
            self.trials_closed += 1;
        }
        if outcome == Outcome::Converted {
            self.paid += 1;
        }
        self.retention.add(st);
        if self.max_members > 0 {
            let m = Member {
                device: st.device,
                identified: st.is_identified(),
                sessions: st.session_count(),
                form_type: st.form_type,
                trial_path: st.trial.map(|t| t.path),
                outcome,
                sku: st.product_sku,
            };
            if self.members.len() < self.max_members {
                self.members.push(m);
            } else if self.members.peek().is_some_and(|top| m.device < top.device) {
                self.members.pop();
                self.members.push(m);
            }
        }
    }

    /// Merges another partial aggregate.
    pub fn merge(&mut self, o: CohortAgg) {
        self.users += o.users;
        self.identified += o.identified;
        self.trials += o.trials;
        self.trials_closed += o.trials_closed;
        self.paid += o.paid;
        self.sessions += o.sessions;
        self.retention.merge(o.retention);
        for m in o.members {
            if self.members.len() < self.max_members {
                self.members.push(m);
            } else if self.members.peek().is_some_and(|top| m.device < top.device) {
                self.members.pop();
                self.members.push(m);
            }
        }
    }

    /// The kept members in device order.
    pub fn into_members(self) -> (Vec<Member>, CohortAgg) {
        let mut agg = self;
        let members = std::mem::take(&mut agg.members).into_sorted_vec();
        (members, agg)
    }
}

/// Scans state blobs on all cores into one aggregate.
///
/// # Errors
/// [`Error::Corrupt`] if a blob does not decode or holds a state this scenario cannot have.
pub fn scan_cohort(
    engine: &Engine,
    blobs: &[Packed],
    filter: &CohortFilter,
    max_members: usize,
) -> Result<CohortAgg> {
    use rayon::prelude::*;
    blobs
        .par_iter()
        .map(|b| {
            let raw = b.unpack()?;
            let mut agg = CohortAgg::new(max_members, engine.first_day());
            let mut bad = Ok(());
            codec::for_each_state(&raw, |st| {
                if let Err(e) = engine.check_state(&st) {
                    bad = Err(e);
                } else if filter.matches(engine, &st) {
                    agg.add(&st);
                }
            })
            .and(bad)
            .map_err(|e| Error::Corrupt(format!("user states: {e}")))?;
            Ok(agg)
        })
        .try_reduce(
            || CohortAgg::new(max_members, engine.first_day()),
            |mut a, b| {
                a.merge(b);
                Ok(a)
            },
        )
}
