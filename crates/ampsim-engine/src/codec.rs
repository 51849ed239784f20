//! The binary form of user states and day records: the form the store persists.
//!
//! Both are lists sorted by device number, encoded with LEB128 varints and deltas (device
//! numbers, days and event times), so a typical event costs 3–4 bytes before compression.
//! Every blob starts with a format byte so that a later layout can still read old files.

use super::scenario::TrialPath;
use super::state::{
    Carry, EventKind, EventRec, HeldAttribution, PlanDay, SecondDay, SecondDevice, SessionRec,
    SessionSummary, Subscription, Touch, Trial, UserDay, UserState,
};
use smallvec::SmallVec;

/// Format 8 adds the second device (flags2 bits 4 and 5); format 7 blobs, which never set
/// them, decode the same.
const STATES_FORMAT: u8 = 8;
/// Format 5 adds the second device (record flag bit 0, session flag bit 2); format 4 blobs,
/// which never set them, decode the same.
const DAYS_FORMAT: u8 = 5;

/// A blob that does not decode: the database is corrupt or from an unknown layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt or unknown record blob: {0}")]
pub struct CodecError(pub &'static str);

/// Appends an unsigned LEB128 varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A cursor over a blob.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads from the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    fn u8(&mut self) -> Result<u8, CodecError> {
        let b = *self.buf.get(self.pos).ok_or(CodecError("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads an unsigned varint.
    #[inline]
    pub fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = self.u8()?;
            if shift >= 64 {
                return Err(CodecError("varint overflow"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    #[inline]
    fn u32(&mut self) -> Result<u32, CodecError> {
        u32::try_from(self.varint()?).map_err(|_| CodecError("value out of range"))
    }
}

fn put_touch(out: &mut Vec<u8>, t: Touch) {
    out.push(t.source);
    out.push(t.campaign);
}

fn get_touch(r: &mut Reader<'_>) -> Result<Touch, CodecError> {
    Ok(Touch {
        source: r.u8()?,
        campaign: r.u8()?,
    })
}

/// Appends a session; its start relative to `base_ms` (before it for a continued one).
fn put_session(out: &mut Vec<u8>, base_ms: i64, s: &SessionRec) {
    out.push(u8::from(s.first) | u8::from(s.continued) << 1 | u8::from(s.second) << 2);
    put_varint(out, zigzag(s.start_ms - base_ms));
    put_touch(out, s.touch);
    put_varint(out, u64::from(s.score10));
    out.push(s.tier);
}

fn get_session(r: &mut Reader<'_>, base_ms: i64) -> Result<SessionRec, CodecError> {
    let flags = r.u8()?;
    if flags > 7 {
        return Err(CodecError("session flags"));
    }
    let start_ms = base_ms
        .checked_add(unzigzag(r.varint()?))
        .ok_or(CodecError("session start"))?;
    Ok(SessionRec {
        first: flags & 1 != 0,
        continued: flags & 2 != 0,
        second: flags & 4 != 0,
        start_ms,
        touch: get_touch(r)?,
        score10: u16::try_from(r.varint()?).map_err(|_| CodecError("score"))?,
        tier: r.u8()?,
    })
}

/// Appends events in time order, times as deltas from `base_ms`.
fn put_events(out: &mut Vec<u8>, base_ms: i64, events: &[EventRec]) {
    put_varint(out, events.len() as u64);
    let mut t = base_ms;
    for e in events {
        out.push(e.kind as u8);
        out.push(e.aux);
        put_varint(out, zigzag(e.time_ms - t));
        t = e.time_ms;
    }
}

fn get_events(r: &mut Reader<'_>, base_ms: i64, limit: usize) -> Result<Vec<EventRec>, CodecError> {
    let ne = r.varint()? as usize;
    if ne > limit {
        return Err(CodecError("event count"));
    }
    let mut events = Vec::with_capacity(ne);
    let mut t = base_ms;
    for _ in 0..ne {
        let kind = EventKind::from_u8(r.u8()?).ok_or(CodecError("event kind"))?;
        let aux = r.u8()?;
        t = t
            .checked_add(unzigzag(r.varint()?))
            .ok_or(CodecError("event time"))?;
        events.push(EventRec {
            time_ms: t,
            kind,
            aux,
        });
    }
    Ok(events)
}

/// Encodes user states (sorted by device) into one blob.
pub fn encode_states<'a, I>(states: I) -> Vec<u8>
where
    I: IntoIterator<Item = &'a UserState>,
    I::IntoIter: ExactSizeIterator,
{
    let states = states.into_iter();
    let mut out = Vec::with_capacity(states.len() * 24 + 8);
    out.push(STATES_FORMAT);
    put_varint(&mut out, states.len() as u64);
    let mut prev = 0u64;
    for st in states {
        debug_assert!(st.device >= prev, "states must be sorted by device");
        put_varint(&mut out, st.device - prev);
        prev = st.device;
        let flags = u8::from(st.identified_day.is_some())
            | u8::from(st.form_type.is_some()) << 1
            | u8::from(st.trial.is_some()) << 2
            | u8::from(st.converted_to_paid) << 3
            | u8::from(st.product_sku.is_some()) << 4
            | u8::from(st.next_session_day.is_some()) << 5
            | u8::from(st.carry.is_some()) << 6
            | u8::from(st.quiet_until.is_some()) << 7;
        out.push(flags);
        out.push(
            u8::from(st.viewed_high_intent)
                | u8::from(st.subscription.is_some()) << 1
                | u8::from(st.last_campaign.is_some()) << 2
                | u8::from(st.last_referrer.is_some()) << 3
                | u8::from(st.second.is_some()) << 4
                | u8::from(st.second.is_some_and(|d| d.login_ms.is_some())) << 5,
        );
        put_touch(&mut out, st.first_touch);
        put_touch(&mut out, st.last_touch);
        if let Some(t) = st.last_campaign {
            put_touch(&mut out, t);
        }
        if let Some(src) = st.last_referrer {
            out.push(src);
        }
        put_varint(&mut out, st.sessions.len() as u64);
        let mut day = super::ids::first_day_of(st.device);
        for s in &st.sessions {
            put_varint(&mut out, u64::from(s.day - day));
            day = s.day;
            out.push(s.tier);
        }
        put_varint(&mut out, u64::from(st.engagement_total));
        if let Some(d) = st.identified_day {
            put_varint(&mut out, u64::from(d));
        }
        if let Some(f) = st.form_type {
            out.push(f);
        }
        put_varint(&mut out, u64::from(st.forms_submitted));
        if let Some(t) = st.trial {
            out.push(
                t.path as u8
                    | u8::from(t.converts) << 1
                    | u8::from(t.ended) << 2
                    | u8::from(t.decided) << 3,
            );
            put_varint(&mut out, u64::from(t.start_day));
            put_varint(&mut out, u64::from(t.end_day - t.start_day));
            out.push(t.sku);
            out.push(t.milestones);
            put_varint(&mut out, u64::from(t.usage));
            out.push(t.decided_on.0);
            put_varint(&mut out, u64::from(t.decided_on.1));
        }
        if let Some(p) = st.product_sku {
            out.push(p);
        }
        if let Some(d) = st.next_session_day {
            put_varint(&mut out, u64::from(d));
        }
        put_varint(&mut out, u64::from(st.event_count));
        if let Some(c) = &st.carry {
            put_varint(&mut out, u64::from(c.day));
            put_varint(&mut out, zigzag(c.session.start_ms));
            put_session(&mut out, c.session.start_ms, &c.session);
            put_events(&mut out, c.session.start_ms, &c.events);
        }
        if let Some(t) = st.quiet_until {
            put_varint(&mut out, zigzag(t));
        }
        put_varint(&mut out, u64::from(st.identify_hazard));
        if let Some(sub) = st.subscription {
            out.push(sub.sku);
            out.push(u8::from(sub.canceled));
            put_varint(&mut out, u64::from(sub.seats));
            put_varint(&mut out, u64::from(sub.start_day));
            put_varint(&mut out, u64::from(sub.anchor_ms));
            put_varint(&mut out, u64::from(sub.renewals));
            put_varint(&mut out, u64::from(sub.next_day - sub.start_day));
            put_varint(&mut out, u64::from(sub.active_days));
            put_varint(&mut out, u64::from(sub.last_active_day));
        }
        if let Some(d) = st.second {
            put_varint(&mut out, u64::from(d.first_day));
            put_varint(&mut out, u64::from(d.event_count));
            if let Some(t) = d.login_ms {
                put_varint(&mut out, zigzag(t));
            }
        }
    }
    out
}

fn u16_of(r: &mut Reader<'_>, what: &'static str) -> Result<u16, CodecError> {
    u16::try_from(r.varint()?).map_err(|_| CodecError(what))
}

/// Decodes a blob written by [`encode_states`], calling `f` for each state in device order.
///
/// # Errors
/// [`CodecError`] if the blob is truncated or of an unknown format.
pub fn for_each_state(blob: &[u8], mut f: impl FnMut(UserState)) -> Result<(), CodecError> {
    let mut r = Reader::new(blob);
    if !matches!(r.u8()?, 7 | STATES_FORMAT) {
        return Err(CodecError("unknown state format"));
    }
    let n = r.varint()?;
    let mut prev = 0u64;
    for _ in 0..n {
        let device = prev
            .checked_add(r.varint()?)
            .ok_or(CodecError("device overflow"))?;
        prev = device;
        let flags = r.u8()?;
        let flags2 = r.u8()?;
        if flags2 > 63 || flags2 & 0b11_0000 == 0b10_0000 {
            return Err(CodecError("state flags"));
        }
        let first_touch = get_touch(&mut r)?;
        let last_touch = get_touch(&mut r)?;
        let last_campaign = if flags2 & 4 != 0 {
            Some(get_touch(&mut r)?)
        } else {
            None
        };
        let last_referrer = if flags2 & 8 != 0 { Some(r.u8()?) } else { None };
        let ns = r.varint()? as usize;
        if ns > blob.len() {
            return Err(CodecError("session count"));
        }
        let mut sessions = Vec::with_capacity(ns);
        let mut day = super::ids::first_day_of(device);
        for _ in 0..ns {
            day = day
                .checked_add(r.u32()?)
                .ok_or(CodecError("day overflow"))?;
            sessions.push(SessionSummary { day, tier: r.u8()? });
        }
        let engagement_total = r.u32()?;
        let identified_day = if flags & 1 != 0 { Some(r.u32()?) } else { None };
        let form_type = if flags & 2 != 0 { Some(r.u8()?) } else { None };
        let forms_submitted =
            u16::try_from(r.varint()?).map_err(|_| CodecError("forms_submitted"))?;
        let trial = if flags & 4 != 0 {
            let b = r.u8()?;
            let start_day = r.u32()?;
            let end_day = start_day
                .checked_add(r.u32()?)
                .ok_or(CodecError("day overflow"))?;
            Some(Trial {
                path: TrialPath::from_u8(b & 1).ok_or(CodecError("trial path"))?,
                converts: b & 2 != 0,
                ended: b & 4 != 0,
                decided: b & 8 != 0,
                start_day,
                end_day,
                sku: r.u8()?,
                milestones: r.u8()?,
                usage: u16::try_from(r.varint()?).map_err(|_| CodecError("trial usage"))?,
                decided_on: (
                    r.u8()?,
                    u16::try_from(r.varint()?).map_err(|_| CodecError("trial usage"))?,
                ),
            })
        } else {
            None
        };
        let product_sku = if flags & 16 != 0 { Some(r.u8()?) } else { None };
        let next_session_day = if flags & 32 != 0 {
            Some(r.u32()?)
        } else {
            None
        };
        let event_count = r.u32()?;
        let carry = if flags & 64 != 0 {
            let day = r.u32()?;
            let base = unzigzag(r.varint()?);
            let session = get_session(&mut r, base)?;
            let events = get_events(&mut r, base, blob.len())?;
            Some(Box::new(Carry {
                day,
                session,
                events,
            }))
        } else {
            None
        };
        let quiet_until = if flags & 128 != 0 {
            Some(unzigzag(r.varint()?))
        } else {
            None
        };
        let identify_hazard = r.u32()?;
        let subscription = if flags2 & 2 != 0 {
            let sku = r.u8()?;
            let canceled = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(CodecError("subscription flags")),
            };
            let seats = u16_of(&mut r, "subscription seats")?;
            let start_day = r.u32()?;
            let anchor_ms = r.u32()?;
            let renewals = u16_of(&mut r, "subscription renewals")?;
            let next_day = start_day
                .checked_add(r.u32()?)
                .ok_or(CodecError("day overflow"))?;
            Some(Subscription {
                sku,
                seats,
                start_day,
                anchor_ms,
                renewals,
                next_day,
                active_days: u16_of(&mut r, "subscription active days")?,
                last_active_day: r.u32()?,
                canceled,
            })
        } else {
            None
        };
        let second = if flags2 & 16 != 0 {
            Some(SecondDevice {
                first_day: r.u32()?,
                event_count: r.u32()?,
                login_ms: if flags2 & 32 != 0 {
                    Some(unzigzag(r.varint()?))
                } else {
                    None
                },
            })
        } else {
            None
        };
        f(UserState {
            device,
            first_touch,
            last_touch,
            last_campaign,
            last_referrer,
            sessions,
            engagement_total,
            identified_day,
            form_type,
            forms_submitted,
            trial,
            viewed_high_intent: flags2 & 1 != 0,
            converted_to_paid: flags & 8 != 0,
            product_sku,
            next_session_day,
            event_count,
            carry,
            quiet_until,
            identify_hazard,
            subscription,
            second,
        });
    }
    Ok(())
}

/// Decodes a blob written by [`encode_states`].
///
/// # Errors
/// [`CodecError`] if the blob is truncated or of an unknown format.
pub fn decode_states(blob: &[u8]) -> Result<Vec<UserState>, CodecError> {
    let mut v = Vec::new();
    for_each_state(blob, |s| v.push(s))?;
    Ok(v)
}

/// Encodes the records of one day (sorted by device) into one blob. `day_start_ms` is the
/// day's midnight; times are stored relative to it.
pub fn encode_user_days(day_start_ms: i64, records: &[UserDay]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| 8 + r.events.len() * 4).sum());
    out.push(DAYS_FORMAT);
    put_varint(&mut out, records.len() as u64);
    let mut prev = 0u64;
    for r in records {
        debug_assert!(r.device >= prev, "records must be sorted by device");
        put_varint(&mut out, r.device - prev);
        prev = r.device;
        let flags = u8::from(r.trial.is_some()) << 2
            | u8::from(matches!(r.trial, Some((TrialPath::SalesAssisted, _)))) << 3
            | u8::from(r.plan.is_some()) << 4
            | u8::from(r.plan.is_some_and(|p| p.canceled)) << 5
            | u8::from(r.held.is_some()) << 6
            | u8::from(r.second.is_some());
        out.push(flags);
        put_varint(&mut out, u64::from(r.event_id_base));
        if let Some(sd) = r.second {
            put_varint(&mut out, u64::from(sd.event_id_base));
            // The login relative to midnight; 0 for none (a login is never exactly i64::MAX).
            put_varint(
                &mut out,
                if sd.login_ms == i64::MAX {
                    0
                } else {
                    1 + zigzag(sd.login_ms - day_start_ms)
                },
            );
        }
        put_touch(&mut out, r.first_touch);
        if let Some(h) = r.held {
            put_touch(&mut out, h.touch);
            // The campaign touch, or source 0 campaign 0 for none (a campaign is never 0).
            put_touch(&mut out, h.campaign.unwrap_or_default());
            out.push(h.referrer.map_or(0, |src| src + 1));
        }
        put_varint(&mut out, u64::from(r.user_id_from));
        if let Some((_, start)) = r.trial {
            put_varint(&mut out, u64::from(r.day - start));
        }
        if let Some(p) = r.plan {
            out.push(p.sku);
            put_varint(&mut out, u64::from(p.seats));
            put_varint(&mut out, u64::from(p.prev_seats));
            put_varint(&mut out, u64::from(r.day - p.start_day));
            put_varint(&mut out, u64::from(p.renewals));
            put_varint(&mut out, u64::from(p.period_active_days));
        }
        put_varint(&mut out, r.sessions.len() as u64);
        for s in &r.sessions {
            put_session(&mut out, day_start_ms, s);
        }
        put_events(&mut out, day_start_ms, &r.events);
    }
    out
}

/// Decodes a blob written by [`encode_user_days`] for simulation day `day`, calling `f` for
/// each record.
///
/// # Errors
/// [`CodecError`] if the blob is truncated or of an unknown format.
pub fn for_each_user_day(
    blob: &[u8],
    day: u32,
    day_start_ms: i64,
    mut f: impl FnMut(UserDay),
) -> Result<(), CodecError> {
    let mut r = Reader::new(blob);
    if !matches!(r.u8()?, 4 | DAYS_FORMAT) {
        return Err(CodecError("unknown day format"));
    }
    let n = r.varint()?;
    let mut prev = 0u64;
    for _ in 0..n {
        let device = prev
            .checked_add(r.varint()?)
            .ok_or(CodecError("device overflow"))?;
        prev = device;
        let flags = r.u8()?;
        if flags & 0b1000_0010 != 0 {
            return Err(CodecError("record flags"));
        }
        let event_id_base = r.u32()?;
        let second = if flags & 1 != 0 {
            let event_id_base = r.u32()?;
            let login_ms = match r.varint()? {
                0 => i64::MAX,
                v => day_start_ms
                    .checked_add(unzigzag(v - 1))
                    .ok_or(CodecError("login time"))?,
            };
            Some(SecondDay {
                event_id_base,
                login_ms,
            })
        } else {
            None
        };
        let first_touch = get_touch(&mut r)?;
        let held = if flags & 64 != 0 {
            let touch = get_touch(&mut r)?;
            let campaign = get_touch(&mut r)?;
            let referrer = r.u8()?;
            Some(HeldAttribution {
                touch,
                campaign: (campaign.campaign > 0).then_some(campaign),
                referrer: referrer.checked_sub(1),
            })
        } else {
            None
        };
        let user_id_from = u16::try_from(r.varint()?).map_err(|_| CodecError("user_id_from"))?;
        let trial = if flags & 4 != 0 {
            let back = r.u32()?;
            let path = if flags & 8 != 0 {
                TrialPath::SalesAssisted
            } else {
                TrialPath::SelfService
            };
            Some((
                path,
                day.checked_sub(back).ok_or(CodecError("trial start"))?,
            ))
        } else {
            None
        };
        let plan = if flags & 16 != 0 {
            let sku = r.u8()?;
            let seats = u16_of(&mut r, "plan seats")?;
            let prev_seats = u16_of(&mut r, "plan seats")?;
            let back = r.u32()?;
            Some(PlanDay {
                sku,
                seats,
                prev_seats,
                start_day: day.checked_sub(back).ok_or(CodecError("plan start"))?,
                renewals: u16_of(&mut r, "plan renewals")?,
                period_active_days: u16_of(&mut r, "plan active days")?,
                canceled: flags & 32 != 0,
            })
        } else {
            None
        };
        let ns = r.varint()? as usize;
        if ns > blob.len() {
            return Err(CodecError("session count"));
        }
        let mut sessions = SmallVec::with_capacity(ns);
        for _ in 0..ns {
            sessions.push(get_session(&mut r, day_start_ms)?);
        }
        let events = get_events(&mut r, day_start_ms, blob.len())?;
        f(UserDay {
            device,
            day,
            event_id_base,
            first_touch,
            held,
            user_id_from,
            trial,
            plan,
            sessions,
            events,
            second,
        });
    }
    Ok(())
}

/// Decodes a blob written by [`encode_user_days`].
///
/// # Errors
/// [`CodecError`] if the blob is truncated or of an unknown format.
pub fn decode_user_days(
    blob: &[u8],
    day: u32,
    day_start_ms: i64,
) -> Result<Vec<UserDay>, CodecError> {
    let mut v = Vec::new();
    for_each_user_day(blob, day, day_start_ms, |u| v.push(u))?;
    Ok(v)
}
