//! Checks of decoded records against the scenario, so that stored bytes that decode but are
//! wrong (a flipped bit, a file from another scenario) are an error instead of an index out
//! of range later: everything the engine, the renderer and the report index by a stored
//! number is checked here.

use crate::codec::CodecError;
use crate::engine::Engine;
use crate::state::{EventKind, EventRec, SessionRec, Touch, UserDay, UserState};

/// Engagement tiers (bounce .. very_high).
const TIERS: u8 = 5;

impl Engine {
    fn check_touch(&self, t: Touch) -> Result<(), CodecError> {
        let s = self.scenario();
        let src = s
            .sources
            .get(usize::from(t.source))
            .ok_or(CodecError("touch source out of range"))?;
        if usize::from(t.campaign) > src.campaigns.len() {
            return Err(CodecError("touch campaign out of range"));
        }
        Ok(())
    }

    /// Checks a decoded day record: every index it holds is one of this scenario's, its event
    /// ids do not overflow and its events fall inside its day.
    ///
    /// # Errors
    /// [`CodecError`] naming the first thing out of range.
    pub fn check_user_day(&self, ud: &UserDay) -> Result<(), CodecError> {
        self.check_touch(ud.first_touch)?;
        let day_start = self.day_start_ms(ud.day);
        let mut prev = i64::MIN;
        for (i, sess) in ud.sessions.iter().enumerate() {
            self.check_session(sess)?;
            // Only the first may be the rest of yesterday's; the others start today, in order.
            let starts_today =
                (day_start..day_start + crate::engine::DAY_MS).contains(&sess.start_ms);
            if sess.continued == starts_today || (sess.continued && i > 0) || sess.start_ms <= prev
            {
                return Err(CodecError("session start outside its day or out of order"));
            }
            prev = sess.start_ms;
        }
        if let Some((_, start)) = ud.trial {
            if start > ud.day {
                return Err(CodecError("trial starts after the day"));
            }
        }
        if let Some(p) = ud.plan {
            if usize::from(p.sku) >= self.scenario().products.len() {
                return Err(CodecError("product out of range"));
            }
        }
        u32::try_from(ud.events.len())
            .ok()
            .and_then(|n| ud.event_id_base.checked_add(n))
            .ok_or(CodecError("event id overflow"))?;
        // Sessions on a second device need the day's view of it, and a person who has one.
        if crate::ids::is_second_device(ud.device)
            || ud.sessions.iter().any(|s| s.second) != ud.second.is_some()
            || (ud.second.is_some() && self.second_device_kind(ud.device).is_none())
        {
            return Err(CodecError("second-device session without its device"));
        }
        if let Some(sd) = ud.second {
            u32::try_from(ud.events.len())
                .ok()
                .and_then(|n| sd.event_id_base.checked_add(n))
                .ok_or(CodecError("event id overflow"))?;
        }
        for e in &ud.events {
            if !(day_start..day_start + crate::engine::DAY_MS).contains(&e.time_ms) {
                return Err(CodecError("event time outside its day"));
            }
            self.check_event(e)?;
            if e.kind.in_session() && ud.session_at(e.time_ms).is_none() {
                return Err(CodecError(
                    "in-session event before the day's first session",
                ));
            }
        }
        Ok(())
    }

    fn check_event(&self, e: &EventRec) -> Result<(), CodecError> {
        let s = self.scenario();
        let aux = usize::from(e.aux);
        let n = match e.kind {
            EventKind::Page => s.pages.catalogue.len(),
            EventKind::Search => s.pages.search_terms.len(),
            EventKind::ButtonClick => s.pages.buttons.len(),
            EventKind::Form => s.forms.types.len(),
            EventKind::TrialConverted
            | EventKind::Purchase
            | EventKind::SubscriptionRenewed
            | EventKind::SubscriptionCanceled => s.products.len(),
            EventKind::SubscriptionChanged => 2,
            EventKind::App => s.app.milestones.len() + s.app.usage.len(),
            EventKind::UpgradeClicked
            | EventKind::ContactSalesClicked
            | EventKind::TrialExpired
            | EventKind::GroupIdentify => usize::MAX,
        };
        if aux >= n {
            return Err(CodecError("event index out of range"));
        }
        Ok(())
    }

    fn check_session(&self, s: &SessionRec) -> Result<(), CodecError> {
        self.check_touch(s.touch)?;
        if s.tier >= TIERS {
            return Err(CodecError("session tier out of range"));
        }
        Ok(())
    }

    /// Checks a decoded user state: every index it holds is one of this scenario's.
    ///
    /// # Errors
    /// [`CodecError`] naming the first thing out of range.
    pub fn check_state(&self, st: &UserState) -> Result<(), CodecError> {
        let s = self.scenario();
        self.check_touch(st.first_touch)?;
        self.check_touch(st.last_touch)?;
        if st.sessions.iter().any(|x| x.tier >= TIERS) {
            return Err(CodecError("session tier out of range"));
        }
        if crate::ids::is_second_device(st.device)
            || (st.second.is_some() && self.second_device_kind(st.device).is_none())
        {
            return Err(CodecError("second device of a person without one"));
        }
        if let Some(c) = &st.carry {
            self.check_session(&c.session)?;
            if c.session.second && st.second.is_none() {
                return Err(CodecError(
                    "carried second-device session without its device",
                ));
            }
            let day_start = self.day_start_ms(c.day);
            if !c.session.continued
                || c.session.start_ms >= day_start
                || c.events.iter().any(|e| {
                    !(day_start..day_start + crate::engine::DAY_MS).contains(&e.time_ms)
                        || !e.kind.in_session()
                })
            {
                return Err(CodecError("carried session out of range"));
            }
            for e in &c.events {
                self.check_event(e)?;
            }
        }
        if st
            .form_type
            .is_some_and(|f| usize::from(f) >= s.forms.types.len())
        {
            return Err(CodecError("form type out of range"));
        }
        let products = s.products.len();
        if st.trial.is_some_and(|t| usize::from(t.sku) >= products)
            || st.product_sku.is_some_and(|p| usize::from(p) >= products)
            || st
                .subscription
                .is_some_and(|p| usize::from(p.sku) >= products)
        {
            return Err(CodecError("product out of range"));
        }
        Ok(())
    }
}
