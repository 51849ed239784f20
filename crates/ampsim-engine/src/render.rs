//! Rendering compact day records into Amplitude HTTP V2 events, and the canonical JSON form
//! that digests, the CLI and exports share.

use super::engine::{DayOutput, Engine};

use super::schema::{EventRecord, FieldId, PropMap, PropValue, Value};
use super::state::{EventKind, SeatChange, SessionRec, UserDay};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// A property value.
#[derive(Debug, Clone, PartialEq)]
pub enum Prop<'a> {
    /// A string.
    Str(Cow<'a, str>),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl Prop<'_> {
    /// The value as text (a number in its canonical form, `true`/`false`).
    pub fn to_string_value(&self) -> String {
        self.as_str_value().into_owned()
    }

    /// The value as a string, borrowed when it is one.
    pub fn as_str_value(&self) -> Cow<'_, str> {
        match self {
            Prop::Str(s) => Cow::Borrowed(s),
            Prop::Int(i) => Cow::Owned(i.to_string()),
            Prop::Float(f) => Cow::Owned(crate::json::canonical_float(*f)),
            Prop::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        }
    }

    /// The value as the schema's [`PropValue`].
    pub fn value(&self) -> PropValue<'_> {
        match self {
            Prop::Str(s) => PropValue::Str(s),
            Prop::Int(i) => PropValue::Int(*i),
            Prop::Float(x) => PropValue::Float(*x),
            Prop::Bool(b) => PropValue::Bool(*b),
        }
    }
}

/// Revenue fields of a purchase, with Amplitude's names.
#[derive(Debug, Clone, PartialEq)]
pub struct Revenue<'a> {
    /// Unit price.
    pub price: f64,
    /// Quantity (always 1 here).
    pub quantity: i64,
    /// price × quantity.
    pub revenue: f64,
    /// Amplitude's camelCase `productId`: the SKU.
    pub product_id: &'a str,
    /// Amplitude's camelCase `revenueType`.
    pub revenue_type: &'a str,
    /// ISO 4217 currency of price and revenue.
    pub currency: &'a str,
}

/// One event in Amplitude's HTTP V2 shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// Event name.
    pub event_type: &'a str,
    /// Set from the identifying form on.
    pub user_id: Option<String>,
    /// The persistent device id.
    pub device_id: String,
    /// Event time, ms since the epoch.
    pub time: i64,
    /// Session start in ms, or -1 outside a session.
    pub session_id: i64,
    /// Stable dedupe key.
    pub insert_id: String,
    /// Per-device event counter.
    pub event_id: u32,
    /// `Web`.
    pub platform: &'a str,
    /// Browser name.
    pub os_name: &'a str,
    /// Browser version.
    pub os_version: &'a str,
    /// Device manufacturer as the user agent names it; empty when it names none.
    pub device_manufacturer: &'a str,
    /// Device model as the Browser SDK reports it.
    pub device_model: &'a str,
    /// Country.
    pub country: &'a str,
    /// Region.
    pub region: &'a str,
    /// City.
    pub city: &'a str,
    /// Language.
    pub language: &'a str,
    /// Event properties, in a fixed order.
    pub event_properties: Vec<(&'static str, Prop<'a>)>,
    /// User properties (attribution on a session's first event; plan on conversion).
    pub user_properties: Vec<(&'static str, Prop<'a>)>,
    /// Revenue fields, on purchases only.
    pub revenue: Option<Revenue<'a>>,
    /// Amplitude groups, `{"company": domain}`, on an identified user's events.
    pub groups: Vec<(&'static str, Prop<'a>)>,
    /// The company's group properties, on `$groupidentify` only.
    pub group_properties: Vec<(&'static str, Prop<'a>)>,
}

impl Default for Event<'_> {
    /// An empty event, to be filled by [`UserDayContext::set_shared`] and
    /// [`Engine::fill_event`].
    fn default() -> Self {
        Event {
            event_type: "",
            user_id: None,
            device_id: String::with_capacity(36),
            time: 0,
            session_id: -1,
            insert_id: String::with_capacity(36),
            event_id: 0,
            platform: "",
            os_name: "",
            os_version: "",
            device_manufacturer: "",
            device_model: "",
            country: "",
            region: "",
            city: "",
            language: "",
            event_properties: Vec::with_capacity(12),
            user_properties: Vec::with_capacity(10),
            revenue: None,
            groups: Vec::with_capacity(1),
            group_properties: Vec::new(),
        }
    }
}

/// What every event of one user-day shares, resolved once per user-day
/// ([`Engine::user_day_context`]).
pub struct UserDayContext<'a> {
    geo: &'a super::scenario::Geo,
    /// The person's first device.
    first: DeviceContext<'a>,
    /// On a day with sessions on the person's second device: that device, and every event's
    /// `event_id` (each device counts its own).
    second: Option<(DeviceContext<'a>, Vec<u32>)>,
    /// The user id, when the user is identified by the end of the day.
    user_id: Option<String>,
    /// The user's company and its domain, when the user is identified by the end of the day.
    company: Option<(crate::accounts::Company, String)>,
    first_src: &'a super::scenario::Source,
    first_campaign: Option<&'a str>,
    /// Which user properties the events carry.
    view: UserPropertiesView,
}

/// One device's fields, resolved once per user-day.
struct DeviceContext<'a> {
    dev: &'a super::scenario::Device,
    /// The browser version on the day and the device's model.
    os_version: &'a str,
    model: crate::clients::ModelNames<'a>,
    device_id: String,
}

impl<'a> DeviceContext<'a> {
    fn set(&self, ev: &mut Event<'a>) {
        ev.device_id.clear();
        ev.device_id.push_str(&self.device_id);
        ev.platform = &self.dev.platform;
        ev.os_name = &self.dev.os_name;
        ev.os_version = self.os_version;
        ev.device_manufacturer = self.model.manufacturer;
        ev.device_model = self.model.model;
    }
}

/// Which user properties rendered events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum UserPropertiesView {
    /// What each event sends, as an SDK sends it (HTTP V2, Batch; the digests): the
    /// properties that change at the event.
    #[default]
    Sent,
    /// What Amplitude holds for the user at the event, as its Export API and charts show it:
    /// every property the user's events have set so far, the latest value of each, sorted by
    /// key.
    Stored,
}

impl UserPropertiesView {
    /// The view's name: `sent` or `stored`.
    pub fn name(self) -> &'static str {
        match self {
            UserPropertiesView::Sent => "sent",
            UserPropertiesView::Stored => "stored",
        }
    }
}

impl<'a> UserDayContext<'a> {
    /// Sets the fields every event of the user-day shares (device id, browser, device, place).
    /// On a day with second-device sessions [`Engine::fill_event`] sets the device fields of
    /// each event (its device's).
    pub fn set_shared(&self, ev: &mut Event<'a>) {
        self.first.set(ev);
        ev.country = &self.geo.country;
        ev.region = &self.geo.region;
        ev.city = &self.geo.city;
        ev.language = &self.geo.language;
    }
}

/// Whether an event sends user properties (Amplitude's `data.user_properties_updated`), from
/// what every view of it shows: a session's first event (at its start, `time == session_id`)
/// sends its attribution, `$groupidentify` aside; the conversion and the billing events set
/// the plan. What [`Engine::fill_event`]'s sent view puts on an event is non-empty exactly
/// then (a unit test holds the two together).
pub fn sends_user_properties(event_type: &str, session_id: i64, time_ms: i64) -> bool {
    match event_type {
        "trial_converted"
        | "subscription_renewed"
        | "subscription_changed"
        | "subscription_canceled" => true,
        "$groupidentify" => false,
        _ => session_id != -1 && time_ms == session_id,
    }
}

/// Amplitude's placeholder for an attribution value that is not set.
const EMPTY: &str = "EMPTY";

impl Engine {
    /// The event type name of a compact event.
    pub fn event_type_name(&self, kind: EventKind, aux: u8) -> &str {
        let s = self.scenario();
        match kind {
            EventKind::Page => &s.pages.catalogue[aux as usize].event_type,
            EventKind::Search => "search",
            EventKind::ButtonClick => "button_click",
            EventKind::Form => &s.forms.types[aux as usize].event_type,
            EventKind::UpgradeClicked => "upgrade_button_clicked",
            EventKind::ContactSalesClicked => "contact_sales_clicked",
            EventKind::TrialConverted => "trial_converted",
            EventKind::TrialExpired => "trial_expired",
            EventKind::Purchase => "purchase",
            EventKind::App => self.app_event_type(aux),
            EventKind::GroupIdentify => "$groupidentify",
            EventKind::SubscriptionChanged => "subscription_changed",
            EventKind::SubscriptionRenewed => "subscription_renewed",
            EventKind::SubscriptionCanceled => "subscription_canceled",
        }
    }

    /// The event type of in-app event `aux`: the milestones in order, then the usage events.
    pub fn app_event_type(&self, aux: u8) -> &str {
        let app = &self.scenario().app;
        let m = app.milestones.len();
        match usize::from(aux) {
            i if i < m => &app.milestones[i].event_type,
            i => &app.usage[i - m].event_type,
        }
    }

    /// The event types of the product's in-app events.
    pub fn app_event_types(&self) -> impl Iterator<Item = &str> {
        let app = &self.scenario().app;
        app.milestones
            .iter()
            .map(|m| m.event_type.as_str())
            .chain(app.usage.iter().map(|u| u.event_type.as_str()))
    }

    /// Every event type name this scenario can emit, sorted.
    pub fn event_type_names(&self) -> std::collections::BTreeSet<&str> {
        let s = self.scenario();
        let mut names: std::collections::BTreeSet<&str> =
            crate::scenario::FIXED_EVENT_TYPES.into_iter().collect();
        names.extend(s.pages.catalogue.iter().map(|p| p.event_type.as_str()));
        names.extend(s.forms.types.iter().map(|f| f.event_type.as_str()));
        names.extend(self.app_event_types());
        names
    }

    /// Renders one user's day into Amplitude events (appended to `out`, in time order).
    pub fn render_user_day<'a>(&'a self, ud: &UserDay, out: &mut Vec<Event<'a>>) {
        self.render_user_day_where(ud, |_, _| true, out);
    }

    /// Renders the events of one user's day for which `keep(index, event)` holds.
    pub fn render_user_day_where<'a>(
        &'a self,
        ud: &UserDay,
        keep: impl Fn(usize, &super::state::EventRec) -> bool,
        out: &mut Vec<Event<'a>>,
    ) {
        self.for_each_event(ud, keep, |_, e| out.push(e.clone()));
    }

    /// Renders the events of one user's day for which `keep(index, event)` holds and hands
    /// each to `f` with its index, in time order. One [`Event`] is reused from call to call (its strings and
    /// property lists keep their allocations), so rendering allocates nothing per event.
    pub fn for_each_event<'a>(
        &'a self,
        ud: &UserDay,
        keep: impl Fn(usize, &super::state::EventRec) -> bool,
        f: impl FnMut(usize, &Event<'a>),
    ) {
        self.for_each_event_as(ud, UserPropertiesView::Sent, keep, f);
    }

    /// [`Engine::for_each_event`], the events carrying the user properties of `view`.
    pub fn for_each_event_as<'a>(
        &'a self,
        ud: &UserDay,
        view: UserPropertiesView,
        keep: impl Fn(usize, &super::state::EventRec) -> bool,
        mut f: impl FnMut(usize, &Event<'a>),
    ) {
        if !ud.events.iter().enumerate().any(|(i, e)| keep(i, e)) {
            return;
        }
        let ctx = self.user_day_context_as(ud, view);
        let mut ev = Event::default();
        ctx.set_shared(&mut ev);
        for (i, e) in ud.events.iter().enumerate() {
            if keep(i, e) {
                self.fill_event(ud, &ctx, i, &mut ev);
                f(i, &ev);
            }
        }
    }

    /// What every event of one user-day shares (browser, device, place, ids, attribution),
    /// resolved once: [`Engine::fill_event`] then renders any of the day's events on its own,
    /// with the user properties each event sends.
    pub fn user_day_context(&self, ud: &UserDay) -> UserDayContext<'_> {
        self.user_day_context_as(ud, UserPropertiesView::Sent)
    }

    /// [`Engine::user_day_context`], its events carrying the user properties of `view`.
    pub fn user_day_context_as(
        &self,
        ud: &UserDay,
        view: UserPropertiesView,
    ) -> UserDayContext<'_> {
        let s = self.scenario();
        let (geo, _) = self.profile(ud.device);
        let geo = &s.geography[geo];
        let first_src = &s.sources[ud.first_touch.source as usize];
        let company = (usize::from(ud.user_id_from) < ud.events.len()).then(|| {
            let c = self.company_of(ud.device);
            (c, self.companies().domain(s, c))
        });
        UserDayContext {
            geo,
            first: self.device_context(ud.device, ud.day),
            second: ud.second.map(|_| {
                (
                    self.device_context(crate::ids::second_device_of(ud.device), ud.day),
                    ud.event_ids(),
                )
            }),
            user_id: company
                .as_ref()
                .map(|(c, domain)| self.user_id_at(ud.device, *c, domain)),
            company,
            first_src,
            first_campaign: campaign_name(s, ud.first_touch),
            view,
        }
    }

    /// A device's fields on `day`: its kind, model and browser version, and its id.
    fn device_context(&self, device: u64, day: u32) -> DeviceContext<'_> {
        let s = self.scenario();
        let (_, kind) = self.profile(device);
        let client = self.clients.client(self.config().seed, device, kind);
        DeviceContext {
            dev: &s.devices[kind],
            os_version: self.clients.version(s, kind, client, self.date_of(day)),
            model: crate::clients::Clients::model(s, kind, client),
            device_id: self.ids().device_id(device),
        }
    }

    /// Appends the user properties event `i` of a user-day sends (what an SDK puts on it):
    /// the conversion and the billing events set `plan`, `seats` and `lifecycle_stage` when
    /// they change; a customer's product session sets them again on its first event (the
    /// product identifies its user on load); a session's first event sets its attribution:
    /// `initial_*` (first touch; Amplitude keeps the first value) and the session's `utm_*`
    /// and `referrer`. `session` is the event's session (`None` outside one).
    fn sent_user_properties<'a>(
        &'a self,
        ud: &UserDay,
        ctx: &UserDayContext<'a>,
        i: usize,
        session: Option<&SessionRec>,
        out: &mut Vec<(&'static str, Prop<'a>)>,
    ) {
        let s = self.scenario();
        let e = &ud.events[i];
        let text = |v: &'a str| Prop::Str(Cow::Borrowed(v));
        match (e.kind, ud.plan) {
            (EventKind::TrialConverted, plan) if ud.trial.is_some() => {
                let p = &s.products[usize::from(e.aux)];
                out.push(("plan", text(&p.tier)));
                out.push(("product_sku", text(&p.sku)));
                if let Some(plan) = plan {
                    out.push(("seats", Prop::Int(i64::from(plan.seats))));
                }
                out.push(("lifecycle_stage", text("customer")));
            }
            (EventKind::SubscriptionRenewed, Some(plan)) => {
                out.push(("plan", text(&s.products[usize::from(e.aux)].tier)));
                out.push(("seats", Prop::Int(i64::from(plan.seats))));
                out.push(("lifecycle_stage", text("customer")));
            }
            (EventKind::SubscriptionChanged, Some(plan)) => {
                out.push(("seats", Prop::Int(i64::from(plan.seats))));
            }
            (EventKind::SubscriptionCanceled, Some(_)) => {
                out.push(("lifecycle_stage", text("churned")));
            }
            _ => {}
        }
        let Some(sess) = session.filter(|s| !s.continued && e.time_ms == s.start_ms) else {
            return;
        };
        if let Some(plan) = ud.plan.filter(|p| ud.day > p.start_day) {
            out.push(("plan", text(&s.products[usize::from(plan.sku)].tier)));
            out.push(("seats", Prop::Int(i64::from(plan.seats))));
            out.push(("lifecycle_stage", text("customer")));
        }
        // Web attribution: the session's first event (its landing page, at its start) sets
        // the user's attribution; `$groupidentify` carries only the group's properties.
        if e.kind == EventKind::GroupIdentify {
            return;
        }
        let first_src = ctx.first_src;
        out.push(("initial_utm_source", text(&first_src.source)));
        out.push(("initial_utm_medium", text(&first_src.medium)));
        out.push((
            "initial_utm_campaign",
            text(ctx.first_campaign.unwrap_or(EMPTY)),
        ));
        out.push((
            "initial_referrer",
            text(if first_src.referrer.is_empty() {
                EMPTY
            } else {
                &first_src.referrer
            }),
        ));
        let src = &s.sources[usize::from(sess.touch.source)];
        out.push(("utm_source", text(&src.source)));
        out.push(("utm_medium", text(&src.medium)));
        if let Some(c) = campaign_name(s, sess.touch) {
            out.push(("utm_campaign", text(c)));
        }
        if !src.referrer.is_empty() {
            out.push(("referrer", text(&src.referrer)));
        }
    }

    /// Appends the user properties Amplitude holds for the user at event `i` of a user-day
    /// ([`UserPropertiesView::Stored`]): what the user held at the start of the day (its
    /// attribution, [`UserDay::held`], and its plan before today's billing events), updated by
    /// what today's events up to `i` sent, sorted by key.
    fn stored_user_properties<'a>(
        &'a self,
        ud: &UserDay,
        ctx: &UserDayContext<'a>,
        i: usize,
        out: &mut Vec<(&'static str, Prop<'a>)>,
    ) {
        let s = self.scenario();
        let text = |v: &'a str| Prop::Str(Cow::Borrowed(v));
        if let Some(h) = ud.held {
            let first_src = ctx.first_src;
            out.push(("initial_utm_source", text(&first_src.source)));
            out.push(("initial_utm_medium", text(&first_src.medium)));
            out.push((
                "initial_utm_campaign",
                text(ctx.first_campaign.unwrap_or(EMPTY)),
            ));
            out.push((
                "initial_referrer",
                text(if first_src.referrer.is_empty() {
                    EMPTY
                } else {
                    &first_src.referrer
                }),
            ));
            let src = &s.sources[usize::from(h.touch.source)];
            out.push(("utm_source", text(&src.source)));
            out.push(("utm_medium", text(&src.medium)));
            if let Some(c) = h.campaign.and_then(|t| campaign_name(s, t)) {
                out.push(("utm_campaign", text(c)));
            }
            if let Some(r) = h.referrer {
                let r = &s.sources[usize::from(r)].referrer;
                if !r.is_empty() {
                    out.push(("referrer", text(r)));
                }
            }
        }
        if let Some(plan) = ud.plan.filter(|p| ud.day > p.start_day) {
            let p = &s.products[usize::from(plan.sku)];
            out.push(("plan", text(&p.tier)));
            out.push(("product_sku", text(&p.sku)));
            out.push(("seats", Prop::Int(i64::from(plan.prev_seats))));
            out.push(("lifecycle_stage", text("customer")));
        }
        let mut sent = Vec::new();
        for (j, e) in ud.events[..=i].iter().enumerate() {
            let session = if e.kind.in_session() {
                ud.session_at(e.time_ms)
            } else {
                None
            };
            self.sent_user_properties(ud, ctx, j, session, &mut sent);
            for (k, v) in sent.drain(..) {
                match out.iter_mut().find(|(key, _)| *key == k) {
                    Some(slot) => slot.1 = v,
                    None => out.push((k, v)),
                }
            }
        }
        out.sort_unstable_by_key(|(k, _)| *k);
    }

    /// Renders event `i` of a user-day into `ev`, whose shared fields
    /// ([`UserDayContext::set_shared`]) are the user-day's already. Every per-event field is
    /// overwritten and the strings and lists keep their allocations, so one [`Event`] serves
    /// any sequence of events.
    pub fn fill_event<'a>(
        &'a self,
        ud: &UserDay,
        ctx: &UserDayContext<'a>,
        i: usize,
        ev: &mut Event<'a>,
    ) {
        let s = self.scenario();
        let ids = self.ids();
        let e = &ud.events[i];
        // A day with second-device sessions: each event on its own device.
        let (device, event_id) = match &ctx.second {
            None => (ud.device, ud.event_id_base + i as u32 + 1),
            Some((second, ids)) if ud.on_second(i) => {
                second.set(ev);
                (crate::ids::second_device_of(ud.device), ids[i])
            }
            Some((_, ids)) => {
                ctx.first.set(ev);
                (ud.device, ids[i])
            }
        };
        // Identification only goes one way: the user id is on every event from the
        // identifying one on (on a second device, from its login on).
        match ctx.user_id.as_deref() {
            Some(uid) if ud.has_user_id(i) => {
                let s = ev.user_id.get_or_insert_with(String::new);
                s.clear();
                s.push_str(uid);
            }
            _ => ev.user_id = None,
        }
        // The company group is on every event that has the user id.
        match (&ctx.company, ev.user_id.is_some()) {
            (Some((_, domain)), true) => {
                let same = matches!(ev.groups.first(), Some((_, Prop::Str(d))) if d == domain);
                if !same {
                    ev.groups.clear();
                    ev.groups.push((
                        crate::accounts::GROUP_TYPE,
                        Prop::Str(Cow::Owned(domain.clone())),
                    ));
                }
            }
            _ => ev.groups.clear(),
        }
        ev.group_properties.clear();
        ev.insert_id.clear();
        ids.write_insert_id(device, event_id, &mut ev.insert_id);
        let props = &mut ev.event_properties;
        let uprops = &mut ev.user_properties;
        props.clear();
        uprops.clear();
        let mut revenue = None;
        let session = if e.kind.in_session() {
            ud.session_at(e.time_ms)
        } else {
            None
        };
        let aux = e.aux as usize;
        match e.kind {
            EventKind::Page => {
                let p = &s.pages.catalogue[aux];
                props.push(("page_path", Prop::Str(Cow::Borrowed(&p.path))));
                props.push(("page_title", Prop::Str(Cow::Borrowed(&p.title))));
            }
            EventKind::Search => {
                props.push((
                    "search_term",
                    Prop::Str(Cow::Borrowed(&s.pages.search_terms[aux])),
                ));
            }
            EventKind::ButtonClick => {
                props.push(("button", Prop::Str(Cow::Borrowed(&s.pages.buttons[aux]))));
            }
            EventKind::Form => {
                let f = &s.forms.types[aux];
                props.push(("form_type", Prop::Str(Cow::Borrowed(&f.form_type))));
                if f.starts_trial {
                    if let Some((path, _)) = ud.trial {
                        props.push(("trial_path", Prop::Str(Cow::Borrowed(path.name()))));
                        let tr = &s.trials;
                        props.push(("trial_length_days", Prop::Int(tr.expiry_day)));
                        props.push(("grace_days", Prop::Int(tr.grace_days)));
                    }
                }
            }
            EventKind::UpgradeClicked | EventKind::ContactSalesClicked => {
                if let Some((path, _)) = ud.trial {
                    props.push(("trial_path", Prop::Str(Cow::Borrowed(path.name()))));
                }
            }
            EventKind::TrialConverted | EventKind::TrialExpired => {
                if let Some((path, start)) = ud.trial {
                    props.push(("trial_path", Prop::Str(Cow::Borrowed(path.name()))));
                    let days = i64::from(ud.day) - i64::from(start);
                    if e.kind == EventKind::TrialConverted {
                        let p = &s.products[aux];
                        props.push(("product_sku", Prop::Str(Cow::Borrowed(&p.sku))));
                        props.push(("conversion_day", Prop::Int(days)));
                        props.push(("trial_length_days", Prop::Int(s.trials.expiry_day)));
                    } else {
                        props.push(("trial_length_days", Prop::Int(days)));
                    }
                }
            }
            EventKind::App => {}
            EventKind::GroupIdentify => {
                if let Some((company, _)) = &ctx.company {
                    // Rare (once per identified user): the company's details on demand.
                    let c = self.company_info(*company);
                    let a = &s.accounts;
                    let gp = &mut ev.group_properties;
                    gp.push(("name", Prop::Str(Cow::Owned(c.name))));
                    gp.push(("domain", Prop::Str(Cow::Owned(c.domain))));
                    gp.push((
                        "industry",
                        Prop::Str(Cow::Borrowed(&a.industries[c.industry].name)),
                    ));
                    gp.push((
                        "size_band",
                        Prop::Str(Cow::Borrowed(&a.size_bands[c.company.band].name)),
                    ));
                    gp.push(("employees", Prop::Int(i64::from(c.employees))));
                    gp.push((
                        "country",
                        Prop::Str(Cow::Borrowed(&s.geography[c.company.geo].country)),
                    ));
                }
            }
            EventKind::Purchase | EventKind::SubscriptionRenewed => {
                let p = &s.products[aux];
                let seats = ud.plan.map_or(1, |plan| plan.seats);
                props.push(("product_sku", Prop::Str(Cow::Borrowed(&p.sku))));
                props.push(("product_name", Prop::Str(Cow::Borrowed(&p.name))));
                props.push(("plan_tier", Prop::Str(Cow::Borrowed(&p.tier))));
                props.push((
                    "billing_period",
                    Prop::Str(Cow::Borrowed(&p.billing_period)),
                ));
                props.push(("seats", Prop::Int(i64::from(seats))));
                let renewal = e.kind == EventKind::SubscriptionRenewed;
                if let (true, Some(plan)) = (renewal, ud.plan) {
                    props.push(("renewal_number", Prop::Int(i64::from(plan.renewals))));
                    props.push((
                        "period_active_days",
                        Prop::Int(i64::from(plan.period_active_days)),
                    ));
                }
                revenue = Some(Revenue {
                    price: p.price,
                    quantity: i64::from(seats),
                    revenue: p.price * f64::from(seats),
                    product_id: &p.sku,
                    revenue_type: if renewal { "renewal" } else { "purchase" },
                    currency: &p.currency,
                });
            }
            EventKind::SubscriptionChanged | EventKind::SubscriptionCanceled => {
                if let Some(plan) = ud.plan {
                    let p = &s.products[usize::from(plan.sku)];
                    props.push(("product_sku", Prop::Str(Cow::Borrowed(&p.sku))));
                    props.push(("plan_tier", Prop::Str(Cow::Borrowed(&p.tier))));
                    props.push((
                        "billing_period",
                        Prop::Str(Cow::Borrowed(&p.billing_period)),
                    ));
                    if e.kind == EventKind::SubscriptionChanged {
                        let change = if aux == SeatChange::Expansion as usize {
                            SeatChange::Expansion
                        } else {
                            SeatChange::Contraction
                        };
                        props.push(("change", Prop::Str(Cow::Borrowed(change.name()))));
                        props.push(("previous_seats", Prop::Int(i64::from(plan.prev_seats))));
                        props.push(("seats", Prop::Int(i64::from(plan.seats))));
                    } else {
                        props.push(("seats", Prop::Int(i64::from(plan.seats))));
                        props.push(("renewals", Prop::Int(i64::from(plan.renewals))));
                        props.push(("tenure_days", Prop::Int(i64::from(ud.day - plan.start_day))));
                        props.push((
                            "period_active_days",
                            Prop::Int(i64::from(plan.period_active_days)),
                        ));
                    }
                }
            }
        }
        // `$groupidentify` carries only the group's properties.
        if let Some(sess) = session.filter(|_| e.kind != EventKind::GroupIdentify) {
            let src = &s.sources[sess.touch.source as usize];
            props.push(("utm_source", Prop::Str(Cow::Borrowed(&src.source))));
            props.push(("utm_medium", Prop::Str(Cow::Borrowed(&src.medium))));
            if let Some(c) = campaign_name(s, sess.touch) {
                props.push(("utm_campaign", Prop::Str(Cow::Borrowed(c))));
            }
            if !src.referrer.is_empty() {
                props.push(("referrer", Prop::Str(Cow::Borrowed(&src.referrer))));
            }
        }
        match ctx.view {
            UserPropertiesView::Sent => self.sent_user_properties(ud, ctx, i, session, uprops),
            UserPropertiesView::Stored => self.stored_user_properties(ud, ctx, i, uprops),
        }
        ev.revenue = revenue;
        ev.event_type = self.event_type_name(e.kind, e.aux);
        ev.time = e.time_ms;
        ev.session_id = session.map_or(-1, |s| s.start_ms);
        ev.event_id = event_id;
    }

    /// Renders a whole day's events in stream order: by time, then device, then event id.
    pub fn render_day<'a>(&'a self, out: &DayOutput) -> Vec<Event<'a>> {
        self.render_sorted(&out.records)
    }

    /// Renders user-day records into events in stream order (time, device, event id), whatever
    /// the order of the records.
    pub fn render_sorted<'a>(&'a self, records: &[UserDay]) -> Vec<Event<'a>> {
        self.render_sorted_where(records, |_, _, _| true)
    }

    /// Renders the events for which `keep(record, index, event)` holds, in stream order.
    pub fn render_sorted_where<'a>(
        &'a self,
        records: &[UserDay],
        keep: impl Fn(&UserDay, usize, &super::state::EventRec) -> bool,
    ) -> Vec<Event<'a>> {
        let total: usize = records.iter().map(|r| r.events.len()).sum();
        let mut keys: Vec<(i64, u64, u32, u32)> = Vec::with_capacity(total);
        let mut events = Vec::with_capacity(total);
        for r in records {
            for ((i, e), (time, device, id)) in r.events.iter().enumerate().zip(r.stream_keys()) {
                if keep(r, i, e) {
                    keys.push((time, device, id, keys.len() as u32));
                }
            }
            self.render_user_day_where(r, |i, e| keep(r, i, e), &mut events);
        }
        keys.sort_unstable();
        let mut slots: Vec<Option<Event<'a>>> = events.into_iter().map(Some).collect();
        keys.iter()
            .map(|k| {
                slots[k.3 as usize]
                    .take()
                    .expect("each event is taken once")
            })
            .collect()
    }
}

impl Event<'_> {
    /// Appends the event as one canonical JSON object ([`crate::json::write_canonical`]: HTTP
    /// V2 field names in schema order, no trailing newline). Digests are taken over this form.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        crate::json::write_canonical(self, out);
    }

    /// The canonical JSON object as a string.
    pub fn to_json(&self) -> String {
        let mut s = Vec::with_capacity(512);
        self.write_json(&mut s);
        String::from_utf8(s).expect("JSON of UTF-8 strings is UTF-8")
    }
}

/// A property list of a rendered event, in the order the engine set it.
impl<'a> PropMap<'a> for &'a [(&'static str, Prop<'a>)] {
    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn for_each(&self, mut f: impl FnMut(&'a str, PropValue<'a>)) {
        for (k, v) in self.iter() {
            f(k, v.value());
        }
    }
}

/// The rendered event's fields, as the [schema](crate::schema) names them.
impl EventRecord for Event<'_> {
    type Props<'p>
        = &'p [(&'static str, Prop<'p>)]
    where
        Self: 'p;

    #[inline(always)]
    fn value(&self, f: FieldId) -> Value<'_, Self::Props<'_>> {
        let rev = self.revenue.as_ref();
        match f {
            FieldId::EventType => Value::Str(self.event_type),
            FieldId::UserId => self.user_id.as_deref().map_or(Value::Absent, Value::Str),
            FieldId::DeviceId => Value::Str(&self.device_id),
            FieldId::Time => Value::Int(self.time),
            FieldId::SessionId => Value::Int(self.session_id),
            FieldId::InsertId => Value::Str(&self.insert_id),
            FieldId::EventId => Value::Int(i64::from(self.event_id)),
            FieldId::Platform => Value::Str(self.platform),
            FieldId::OsName => Value::Str(self.os_name),
            FieldId::OsVersion => Value::Str(self.os_version),
            FieldId::Country => Value::Str(self.country),
            FieldId::Region => Value::Str(self.region),
            FieldId::City => Value::Str(self.city),
            FieldId::Language => Value::Str(self.language),
            FieldId::EventProperties => Value::Props(&self.event_properties),
            FieldId::UserProperties => Value::Props(&self.user_properties),
            FieldId::Price => rev.map_or(Value::Absent, |r| Value::Float(r.price)),
            FieldId::Quantity => rev.map_or(Value::Absent, |r| Value::Int(r.quantity)),
            FieldId::Revenue => rev.map_or(Value::Absent, |r| Value::Float(r.revenue)),
            FieldId::ProductId => rev.map_or(Value::Absent, |r| Value::Str(r.product_id)),
            FieldId::RevenueType => rev.map_or(Value::Absent, |r| Value::Str(r.revenue_type)),
            FieldId::DeviceManufacturer => match self.device_manufacturer {
                "" => Value::Absent,
                m => Value::Str(m),
            },
            FieldId::DeviceModel => Value::Str(self.device_model),
            FieldId::Currency => rev.map_or(Value::Absent, |r| Value::Str(r.currency)),
            FieldId::Groups if self.groups.is_empty() => Value::Absent,
            FieldId::Groups => Value::Props(&self.groups),
            FieldId::GroupProperties if self.group_properties.is_empty() => Value::Absent,
            FieldId::GroupProperties => Value::Props(&self.group_properties),
        }
    }
}

/// A running SHA-256 digest over events in stream order (one canonical JSON line each).
#[derive(Default, Clone)]
pub struct EventDigest {
    hasher: Sha256,
    count: u64,
    buf: Vec<u8>,
}

impl EventDigest {
    /// An empty digest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one event.
    pub fn add(&mut self, e: &Event<'_>) {
        self.buf.clear();
        e.write_json(&mut self.buf);
        self.buf.push(b'\n');
        self.hasher.update(&self.buf);
        self.count += 1;
    }

    /// Adds a canonical JSON line that is already rendered (without its newline).
    pub fn add_json(&mut self, json: &str) {
        self.hasher.update(json.as_bytes());
        self.hasher.update(b"\n");
        self.count += 1;
    }

    /// Events added so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The hex digest.
    pub fn finish(self) -> String {
        let d = self.hasher.finalize();
        d.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The campaign name of a touch, if it has one.
pub fn campaign_name(s: &super::scenario::Scenario, t: super::state::Touch) -> Option<&str> {
    (t.campaign > 0).then(|| {
        s.sources[t.source as usize].campaigns[t.campaign as usize - 1]
            .name
            .as_str()
    })
}
