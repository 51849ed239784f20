//! User state and the compact per-user, per-day record of what a user did.
//!
//! `UserState` is what the engine needs to continue a user on a later day; `UserDay` is what a
//! user did on one day, in a compact form (indexes into the scenario's tables rather than
//! strings). Full Amplitude events are rendered from a `UserDay` on demand (`render.rs`), so the
//! store keeps a few bytes per event. Both types have a binary encoding in `codec.rs`, which is
//! the form the store persists.

use super::scenario::TrialPath;
use smallvec::SmallVec;

/// Attribution of a session: a source (index into `scenario.sources`) and, for cpc traffic, a
/// campaign (1 + index into that source's campaigns; 0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
pub struct Touch {
    /// Index into `scenario.sources`.
    pub source: u8,
    /// 0 for none, else 1 + index into the source's campaigns.
    pub campaign: u8,
}

/// A trial: its path, drawn when it starts; what the trialist did in the product; and its
/// outcome, decided on the first day of the conversion window from what was done before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trial {
    /// Self-service or sales-assisted.
    pub path: TrialPath,
    /// The day (simulation day index) the trial started.
    pub start_day: u32,
    /// Whether the outcome has been decided (on the window's first day).
    pub decided: bool,
    /// Whether the trial converts to paid (once decided).
    pub converts: bool,
    /// Until decided, the decision day; then the day of the terminal event (conversion day
    /// or expiry day).
    pub end_day: u32,
    /// The product bought on conversion (index into `scenario.products`).
    pub sku: u8,
    /// Whether the terminal event has been emitted.
    pub ended: bool,
    /// Activation milestones reached so far (they are reached in order).
    pub milestones: u8,
    /// Usage events in product sessions so far (saturating).
    pub usage: u16,
    /// What the outcome was decided on: the milestones and usage events before the decision
    /// day (ground truth for the report and labels; 0 until decided).
    pub decided_on: (u8, u16),
}

impl Trial {
    /// Whether the trial is running on `day` (started, terminal event still ahead).
    pub fn active_on(&self, day: u32) -> bool {
        !self.ended && self.start_day <= day && day < self.end_day
    }

    /// Whether the trialist is in the product on `day`: the trial started and has not ended,
    /// and on the conversion day too (the trialist pays in a product session); not on the
    /// day it expires.
    pub fn in_product_on(&self, day: u32) -> bool {
        !self.ended
            && self.start_day <= day
            && (day < self.end_day || (self.decided && self.converts && day == self.end_day))
    }
}

/// A paying customer's subscription, from the purchase on: it renews each billing period
/// (a server-side revenue event), may change its seats at a renewal, and ends when the
/// customer churns (at a renewal, the period it does not pay for). Renewals, changes and
/// churn are decided on the renewal day from the customer's product use in the period
/// ([`crate::Engine::churn_probability`] and its siblings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// The product (index into `scenario.products`).
    pub sku: u8,
    /// Paid seats (the revenue events' `quantity`).
    pub seats: u16,
    /// The purchase day; renewals fall on the same day of the month (or year) after it.
    pub start_day: u32,
    /// The purchase's time of day in ms (UTC): the billing anchor of every renewal.
    pub anchor_ms: u32,
    /// Periods paid after the first (renewals so far).
    pub renewals: u16,
    /// The next renewal day; once canceled, the day it ended.
    pub next_day: u32,
    /// Days with a product session in the current period.
    pub active_days: u16,
    /// The last day with a product session (0 before the first).
    pub last_active_day: u32,
    /// Whether the customer churned (the subscription ended on `next_day`).
    pub canceled: bool,
}

/// Where a user stands in the customer lifecycle (the `lifecycle_stage` user property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LifecycleStage {
    /// Has never paid.
    Prospect,
    /// Pays for a subscription.
    Customer,
    /// Paid, then churned.
    Churned,
}

impl LifecycleStage {
    /// All stages, in order.
    pub const ALL: [LifecycleStage; 3] = [
        LifecycleStage::Prospect,
        LifecycleStage::Customer,
        LifecycleStage::Churned,
    ];

    /// The stage's name: `prospect`, `customer` or `churned`.
    pub fn name(self) -> &'static str {
        match self {
            LifecycleStage::Prospect => "prospect",
            LifecycleStage::Customer => "customer",
            LifecycleStage::Churned => "churned",
        }
    }

    /// The stage named `s`.
    pub fn parse(s: &str) -> Option<LifecycleStage> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }

    /// A user's stage in its (latest) state.
    pub fn of(st: &UserState) -> LifecycleStage {
        match st.subscription {
            None => LifecycleStage::Prospect,
            Some(s) if s.canceled => LifecycleStage::Churned,
            Some(_) => LifecycleStage::Customer,
        }
    }
}

impl Subscription {
    /// Whether the subscription is paid for on `day`.
    pub fn active_on(&self, day: u32) -> bool {
        self.start_day <= day && (!self.canceled || day < self.next_day)
    }
}

/// How a renewal changed a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum SeatChange {
    /// More seats.
    Expansion = 0,
    /// Fewer seats.
    Contraction = 1,
}

impl SeatChange {
    /// The `change` event property.
    pub fn name(self) -> &'static str {
        match self {
            SeatChange::Expansion => "expansion",
            SeatChange::Contraction => "contraction",
        }
    }
}

/// A user-day's view of the subscription (for rendering): after the day's billing events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanDay {
    /// The product (index into `scenario.products`).
    pub sku: u8,
    /// Seats after today's change, if any.
    pub seats: u16,
    /// Seats before today's change (= `seats` without one).
    pub prev_seats: u16,
    /// The purchase day.
    pub start_day: u32,
    /// Renewals so far, today's included.
    pub renewals: u16,
    /// Active days in the period decided today (0 on other days).
    pub period_active_days: u16,
    /// Whether the subscription has ended (today or before).
    pub canceled: bool,
}

/// The attribution user properties a user holds, as Amplitude holds them after applying the
/// session starts so far: each session's first event sets `utm_source` and `utm_medium`, and
/// `utm_campaign` and `referrer` when the session has them; a key a session does not send
/// keeps its earlier value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldAttribution {
    /// The latest session's touch (`utm_source`, `utm_medium`).
    pub touch: Touch,
    /// The latest session's touch that had a campaign (`utm_campaign`).
    pub campaign: Option<Touch>,
    /// The latest session's source that had a referrer (`referrer`).
    pub referrer: Option<u8>,
}

impl UserState {
    /// The attribution the user holds now; `None` before its first session.
    pub fn held_attribution(&self) -> Option<HeldAttribution> {
        (self.event_count > 0).then_some(HeldAttribution {
            touch: self.last_touch,
            campaign: self.last_campaign,
            referrer: self.last_referrer,
        })
    }
}

/// One past session, kept for reports, retention and cohorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSummary {
    /// Simulation day of the session.
    pub day: u32,
    /// Engagement tier (0 = bounce .. 4 = very_high).
    pub tier: u8,
}

/// Everything the engine knows about one user (one device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserState {
    /// Device number: `(first_day << 32) | index`; the persistent cookie.
    pub device: u64,
    /// First-touch attribution (Amplitude's `initial_*`).
    pub first_touch: Touch,
    /// Last-touch attribution.
    pub last_touch: Touch,
    /// The touch of the latest session that had a campaign (its `utm_campaign` is the user's).
    pub last_campaign: Option<Touch>,
    /// The source of the latest session that had a referrer (its `referrer` is the user's).
    pub last_referrer: Option<u8>,
    /// Every session so far, in order; `session_count` and `last_session_date` derive from it.
    pub sessions: Vec<SessionSummary>,
    /// Sum of session engagement scores, in tenths of a point.
    pub engagement_total: u32,
    /// The day the user filled the identifying form (`is_identified` when set).
    pub identified_day: Option<u32>,
    /// The identifying form (index into `scenario.forms.types`).
    pub form_type: Option<u8>,
    /// How many forms the user has submitted in all.
    pub forms_submitted: u16,
    /// The user's trial, if any.
    pub trial: Option<Trial>,
    /// Whether a session of the user has shown a high-intent page (pricing): the audience
    /// of retargeting campaigns.
    pub viewed_high_intent: bool,
    /// Whether the trial converted (set on the conversion day).
    pub converted_to_paid: bool,
    /// The product bought (index into `scenario.products`).
    pub product_sku: Option<u8>,
    /// The scheduled return: the day of the next session.
    pub next_session_day: Option<u32>,
    /// How many events this device has sent (Amplitude's per-device `event_id` counter).
    pub event_count: u32,
    /// The rest of a session that crossed midnight: its events after midnight, emitted on
    /// the next day with the session's id.
    pub carry: Option<Box<Carry>>,
    /// No session starts before this: the end of the last session plus Amplitude's session
    /// timeout, kept only when that is past the session's day (closer sessions would be one).
    pub quiet_until: Option<i64>,
    /// Ground truth for the report: the sum, over the user's sessions while it was
    /// anonymous, of the probability that the session identified it (in units of
    /// 1/[`HAZARD_SCALE`]). Its mean over a group of users is the group's expected
    /// identification rate.
    pub identify_hazard: u32,
    /// The subscription, from the purchase on.
    pub subscription: Option<Subscription>,
    /// The person's second device, from its first session on
    /// ([`crate::scenario::SecondDevices`]).
    pub second: Option<SecondDevice>,
}

/// A person's second device (device number [`crate::ids::second_device_of`] the person's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondDevice {
    /// The day of its first session.
    pub first_day: u32,
    /// The start of its first logged-in session (from then on its events carry the user id);
    /// `None` while it is anonymous.
    pub login_ms: Option<i64>,
    /// How many events it has sent (its own `event_id` counter).
    pub event_count: u32,
}

/// The fixed-point unit of [`UserState::identify_hazard`].
pub const HAZARD_SCALE: f64 = 65_536.0;

/// The part of a session after midnight, kept in the user's state until its day is
/// generated, so that every day's record holds exactly the events of that (UTC) day and a
/// session that crosses midnight keeps one `session_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carry {
    /// The day the events fall on (the session's start day + 1).
    pub day: u32,
    /// The session (`continued` set).
    pub session: SessionRec,
    /// The events after midnight, in time order.
    pub events: Vec<EventRec>,
}

impl UserState {
    /// A brand-new visitor whose first session is on `day`.
    pub fn new(device: u64, day: u32) -> Self {
        UserState {
            device,
            first_touch: Touch::default(),
            last_touch: Touch::default(),
            last_campaign: None,
            last_referrer: None,
            sessions: Vec::new(),
            engagement_total: 0,
            identified_day: None,
            form_type: None,
            forms_submitted: 0,
            trial: None,
            viewed_high_intent: false,
            converted_to_paid: false,
            product_sku: None,
            next_session_day: Some(day),
            event_count: 0,
            carry: None,
            quiet_until: None,
            identify_hazard: 0,
            subscription: None,
            second: None,
        }
    }

    /// The next day the engine must process this user: its scheduled return, its trial's
    /// terminal event, its subscription's renewal or the rest of a session that crossed
    /// midnight, whichever is first. `None` once nothing more is scheduled.
    pub fn next_due(&self) -> Option<u32> {
        let trial_end = self.trial.filter(|t| !t.ended).map(|t| t.end_day);
        let carry = self.carry.as_ref().map(|c| c.day);
        let renewal = self
            .subscription
            .filter(|s| !s.canceled)
            .map(|s| s.next_day);
        [self.next_session_day, trial_end, carry, renewal]
            .into_iter()
            .flatten()
            .min()
    }

    /// Brings the next session forward to `day` at the latest (a converting trial's
    /// trialist comes back by its conversion day).
    pub fn due_by(&mut self, day: u32) {
        self.next_session_day = Some(self.next_session_day.map_or(day, |d| d.min(day)));
    }

    /// The day the user first arrived (from its device number).
    pub fn first_day(&self) -> u32 {
        crate::ids::first_day_of(self.device)
    }

    /// Number of sessions so far.
    pub fn session_count(&self) -> u32 {
        self.sessions.len() as u32
    }

    /// [`UserState::identify_hazard`] as a probability sum.
    pub fn identify_probability_sum(&self) -> f64 {
        f64::from(self.identify_hazard) / HAZARD_SCALE
    }

    /// Adds the identification probability `p` of one anonymous session.
    pub fn add_identify_probability(&mut self, p: f64) {
        let units = (p.clamp(0.0, 1.0) * HAZARD_SCALE).round() as u32;
        self.identify_hazard = self.identify_hazard.saturating_add(units);
    }

    /// Whether the user has filled a form.
    pub fn is_identified(&self) -> bool {
        self.identified_day.is_some()
    }

    /// The day of the last session.
    pub fn last_session_day(&self) -> Option<u32> {
        self.sessions.last().map(|s| s.day)
    }
}

/// The kind of a compact event; `aux` in [`EventRec`] qualifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum EventKind {
    /// A page from the catalogue (`aux` = page index); its event type comes from the page.
    Page = 0,
    /// `search` (`aux` = search term index).
    Search = 1,
    /// `button_click` (`aux` = button index).
    ButtonClick = 2,
    /// A form submission (`aux` = form type index).
    Form = 3,
    /// `upgrade_button_clicked`.
    UpgradeClicked = 4,
    /// `contact_sales_clicked`.
    ContactSalesClicked = 5,
    /// `trial_converted` (`aux` = product index), in the product session where the
    /// trialist pays.
    TrialConverted = 6,
    /// `trial_expired`: a server-side event, outside any session.
    TrialExpired = 7,
    /// `purchase` (`aux` = product index), after `trial_converted` in its session.
    Purchase = 8,
    /// An in-app event of a product session (`aux` = index into the app's milestones, then
    /// its usage events).
    App = 9,
    /// `$groupidentify`: right after the identifying form, it sets the group properties of
    /// the user's company (Amplitude's Accounts), in the session.
    GroupIdentify = 10,
    /// `subscription_changed` (`aux` = [`SeatChange`]): a renewal with more or fewer seats,
    /// server-side, right before its `subscription_renewed`.
    SubscriptionChanged = 11,
    /// `subscription_renewed` (`aux` = product index): the billing system charges a period,
    /// server-side (a revenue event, quantity = seats).
    SubscriptionRenewed = 12,
    /// `subscription_canceled` (`aux` = product index): the customer churned; the period it
    /// does not pay for starts, server-side.
    SubscriptionCanceled = 13,
}

impl EventKind {
    /// Decodes the stored byte.
    pub fn from_u8(v: u8) -> Option<Self> {
        use EventKind::*;
        Some(match v {
            0 => Page,
            1 => Search,
            2 => ButtonClick,
            3 => Form,
            4 => UpgradeClicked,
            5 => ContactSalesClicked,
            6 => TrialConverted,
            7 => TrialExpired,
            8 => Purchase,
            9 => App,
            10 => GroupIdentify,
            11 => SubscriptionChanged,
            12 => SubscriptionRenewed,
            13 => SubscriptionCanceled,
            _ => return None,
        })
    }

    /// Whether events of this kind belong to the day's session (others have `session_id` -1):
    /// the billing system's events (trial expiry, renewals, changes, churn) are server-side.
    pub fn in_session(self) -> bool {
        !matches!(
            self,
            EventKind::TrialExpired
                | EventKind::SubscriptionChanged
                | EventKind::SubscriptionRenewed
                | EventKind::SubscriptionCanceled
        )
    }
}

/// One compact event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRec {
    /// Event time in ms since the epoch.
    pub time_ms: i64,
    /// What happened.
    pub kind: EventKind,
    /// Index qualifying the kind (page, term, button, form, product).
    pub aux: u8,
}

/// A session on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRec {
    /// The session started the day before and crossed midnight: the day's first events are
    /// its rest. It was counted on its first day (reports and journeys count it once).
    pub continued: bool,
    /// Session start in ms since the epoch; Amplitude's `session_id`.
    pub start_ms: i64,
    /// The session's attribution (last touch).
    pub touch: Touch,
    /// Engagement score in tenths of a point.
    pub score10: u16,
    /// Engagement tier (0 = bounce .. 4 = very_high).
    pub tier: u8,
    /// Whether this was the user's first session.
    pub first: bool,
    /// Whether the session is on the person's second device.
    pub second: bool,
}

/// What one user did on one day, compactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDay {
    /// The device number.
    pub device: u64,
    /// The simulation day.
    pub day: u32,
    /// The device's event counter before this day; the first event today has `event_id`
    /// `event_id_base + 1`.
    pub event_id_base: u32,
    /// First-touch attribution, for `initial_*` user properties.
    pub first_touch: Touch,
    /// The attribution the user held at the start of the day (`None` for a user new today):
    /// with today's session starts, the user properties Amplitude holds at each event.
    pub held: Option<HeldAttribution>,
    /// Index of the first event that carries `user_id`: 0 if the user was identified before
    /// today, the identifying form's index if identified today, `events.len()` if anonymous.
    pub user_id_from: u16,
    /// The user's trial, if any (for `trial_path` and `conversion_day` properties).
    pub trial: Option<(TrialPath, u32)>,
    /// The subscription, once the user has paid (after today's billing events).
    pub plan: Option<PlanDay>,
    /// Today's sessions in time order: the rest of yesterday's session if it crossed
    /// midnight (`continued`), then the sessions that start today. They never overlap; an
    /// in-session event belongs to the last session that started at or before it.
    pub sessions: SmallVec<[SessionRec; 1]>,
    /// Today's events in time order.
    pub events: Vec<EventRec>,
    /// The second device, when some of today's sessions are on it.
    pub second: Option<SecondDay>,
}

/// A user-day's view of the person's second device, on a day some sessions are on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondDay {
    /// The second device's event counter before this day.
    pub event_id_base: u32,
    /// From this time on (ms) its events carry the user id (its login, today or before);
    /// `i64::MAX` while it is still anonymous at the end of the day.
    pub login_ms: i64,
}

impl UserDay {
    /// The session an event at `time_ms` belongs to if it is an in-session event: the last
    /// one that started at or before it.
    #[inline]
    pub fn session_at(&self, time_ms: i64) -> Option<&SessionRec> {
        self.sessions.iter().rev().find(|s| s.start_ms <= time_ms)
    }

    /// The sessions that start today (not the rest of yesterday's).
    pub fn new_sessions(&self) -> impl Iterator<Item = &SessionRec> {
        self.sessions.iter().filter(|s| !s.continued)
    }

    /// Whether event `i` is on the person's second device: an in-session event of a session
    /// on it (out-of-session events, the billing system's, are the person's first device's).
    #[inline]
    pub fn on_second(&self, i: usize) -> bool {
        self.second.is_some() && {
            let e = &self.events[i];
            e.kind.in_session() && self.session_at(e.time_ms).is_some_and(|s| s.second)
        }
    }

    /// The device number of event `i`: the person's, or its second device's.
    #[inline]
    pub fn device_of(&self, i: usize) -> u64 {
        if self.on_second(i) {
            crate::ids::second_device_of(self.device)
        } else {
            self.device
        }
    }

    /// Whether event `i` carries the user id: on the first device from the identifying form
    /// on ([`UserDay::user_id_from`]), on the second from its login.
    #[inline]
    pub fn has_user_id(&self, i: usize) -> bool {
        match self.second {
            Some(sd) if self.on_second(i) => self.events[i].time_ms >= sd.login_ms,
            _ => i >= usize::from(self.user_id_from),
        }
    }

    /// The stream-order key of every event today, in record order: (time, device number,
    /// event id), the device being the event's own ([`UserDay::device_of`]).
    pub fn stream_keys(&self) -> impl Iterator<Item = (i64, u64, u32)> + '_ {
        let ids = self.second.map(|_| self.event_ids());
        self.events
            .iter()
            .enumerate()
            .map(move |(i, e)| match &ids {
                None => (e.time_ms, self.device, self.event_id_base + i as u32 + 1),
                Some(ids) => (e.time_ms, self.device_of(i), ids[i]),
            })
    }

    /// The `event_id` of every event today, on its own device's counter (primary events count
    /// from [`UserDay::event_id_base`], the second device's from its own base).
    pub fn event_ids(&self) -> Vec<u32> {
        let (mut first, mut second) = (
            self.event_id_base,
            self.second.map_or(0, |s| s.event_id_base),
        );
        (0..self.events.len())
            .map(|i| {
                let c = if self.on_second(i) {
                    &mut second
                } else {
                    &mut first
                };
                *c += 1;
                *c
            })
            .collect()
    }
}
