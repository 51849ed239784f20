//! `ampsim.v1.EventBatch` on the wire: a batch kept as its protobuf bytes.
//!
//! StreamEvents is the one call that moves hundreds of thousands of events a second, so its
//! batch is not a prost-generated `Vec<pb::Event>` (build.rs maps the message here with
//! `extern_path`). The server writes each event's protobuf bytes straight from the rendered
//! [`Event`], on all cores, and never builds a `pb::Event`; a client receives the body without a
//! copy and reads it either through borrowed [`EventView`]s (no allocation per event) or, with
//! [`EventBatch::to_events`], as ordinary owned `pb::Event`s.
//!
//! The bytes are the standard encoding of `EventBatch` (field 1, one length-delimited `Event`
//! per entry), so any protobuf client (the Python example, grpcurl) decodes them as usual.
//! Invariant: prost decoding [`EventWriter`]'s bytes gives exactly `rpc::convert::event` of the
//! same event (a unit test holds it to that).

use crate::pb;
use ampsim_engine::{Event, Prop};
use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
use prost::{DecodeError, Message};
use std::borrow::Cow;
use std::fmt;

/// A batch or event that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Framing or a field's wire type is wrong.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A length runs past the end of the bytes.
    #[error("malformed event batch: a length runs past the end of the message")]
    Truncated,
    /// A string field is not UTF-8.
    #[error("malformed event batch: a string is not UTF-8")]
    NotUtf8,
}

/// A batch of events as the protobuf body of an `EventBatch` message.
#[derive(Clone, Default)]
pub struct EventBatch {
    body: Body,
    count: usize,
}

#[derive(Clone)]
enum Body {
    /// A received or finished body, shared without copying.
    Shared(Bytes),
    /// A body being built field by field (when the batch is nested in another message).
    Owned(Vec<u8>),
}

impl Default for Body {
    fn default() -> Self {
        Body::Shared(Bytes::new())
    }
}

impl Body {
    fn as_slice(&self) -> &[u8] {
        match self {
            Body::Shared(b) => b,
            Body::Owned(v) => v,
        }
    }
}

impl EventBatch {
    /// Encodes events, in the given order.
    pub fn encode<'a, 'e: 'a>(events: impl IntoIterator<Item = &'a Event<'e>>) -> Self {
        let (mut body, mut count, mut w) = (Vec::new(), 0, EventWriter::new());
        for e in events {
            w.next_user_day();
            w.write(e, &mut body);
            count += 1;
        }
        Self::from_entries(body, count)
    }

    /// A batch from `count` entries already written by [`EventWriter::write`], back to back.
    pub fn from_entries(body: Vec<u8>, count: usize) -> Self {
        EventBatch {
            body: Body::Shared(Bytes::from(body)),
            count,
        }
    }

    /// Encodes owned events (prost's encoding of each).
    pub fn from_events(events: &[pb::Event]) -> Self {
        let mut body = Vec::new();
        for e in events {
            prost::encoding::message::encode(1, e, &mut body);
        }
        Self::from_entries(body, events.len())
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the batch has no events.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The message body (the bytes of the `EventBatch` message without a length prefix).
    pub fn as_bytes(&self) -> &[u8] {
        self.body.as_slice()
    }

    /// Borrowed views of the events, in order, each checked (wire types, UTF-8) as it is read.
    pub fn iter(&self) -> Events<'_> {
        Events {
            rest: self.as_bytes(),
        }
    }

    /// The events as owned messages.
    ///
    /// # Errors
    /// A malformed event.
    pub fn to_events(&self) -> Result<Vec<pb::Event>, WireError> {
        let mut out = Vec::with_capacity(self.count);
        let mut rest = self.as_bytes();
        while let Some(bytes) = next_event(&mut rest)? {
            out.push(pb::Event::decode(bytes)?);
        }
        Ok(out)
    }
}

impl fmt::Debug for EventBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBatch")
            .field("events", &self.count)
            .field("bytes", &self.as_bytes().len())
            .finish()
    }
}

impl PartialEq for EventBatch {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.as_bytes() == other.as_bytes()
    }
}

impl Message for EventBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(self.as_bytes());
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if tag != 1 {
            return skip_field(wire_type, tag, buf, ctx);
        }
        let mut event = Vec::new();
        prost::encoding::bytes::merge(wire_type, &mut event, buf, ctx)?;
        let body = match &mut self.body {
            Body::Owned(v) => v,
            shared => {
                *shared = Body::Owned(shared.as_slice().to_vec());
                let Body::Owned(v) = shared else {
                    unreachable!("just set")
                };
                v
            }
        };
        body.push(0x0a);
        put_varint(body, event.len() as u64);
        body.extend_from_slice(&event);
        self.count += 1;
        Ok(())
    }

    /// A whole received message (the StreamEvents path): the body is kept without a copy and
    /// only its framing is checked here.
    fn merge(&mut self, mut buf: impl Buf) -> Result<(), DecodeError> {
        if !self.as_bytes().is_empty() {
            let ctx = DecodeContext::default();
            while buf.has_remaining() {
                let (tag, wire_type) = decode_key(&mut buf)?;
                self.merge_field(tag, wire_type, &mut buf, ctx.clone())?;
            }
            return Ok(());
        }
        let body = buf.copy_to_bytes(buf.remaining());
        let (mut walk, mut count) = (&body[..], 0);
        while !walk.is_empty() {
            let (tag, wire_type) = decode_key(&mut walk)?;
            if tag == 1 {
                prost::encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
                count += 1;
            }
            skip_field(wire_type, tag, &mut walk, DecodeContext::default())?;
        }
        self.count = count;
        self.body = Body::Shared(body);
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.as_bytes().len()
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Iterator over a batch's events as borrowed views.
pub struct Events<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<EventView<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        match next_event(&mut self.rest) {
            Ok(Some(b)) => Some(EventView::parse(b)),
            Ok(None) => None,
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// The next event's bytes in a batch body, skipping unknown fields.
fn next_event<'a>(rest: &mut &'a [u8]) -> Result<Option<&'a [u8]>, WireError> {
    while !rest.is_empty() {
        let (tag, wire_type) = field_key(rest)?;
        if tag == 1 {
            prost::encoding::check_wire_type(WireType::LengthDelimited, wire_type)?;
            return take_delimited(rest).map(Some);
        }
        skip_field(wire_type, tag, rest, DecodeContext::default())?;
    }
    Ok(None)
}

/// A varint, with a fast path for one byte (most lengths and keys).
#[inline]
fn varint(rest: &mut &[u8]) -> Result<u64, WireError> {
    match rest.split_first() {
        Some((&b, tail)) if b < 0x80 => {
            *rest = tail;
            Ok(u64::from(b))
        }
        _ => Ok(decode_varint(rest)?),
    }
}

/// A field key, with fast paths for one and two bytes (fields 1 to 2047).
#[inline]
fn field_key(rest: &mut &[u8]) -> Result<(u32, WireType), WireError> {
    let (k, used) = match **rest {
        [b, ..] if (8..0x80).contains(&b) => (u32::from(b), 1),
        [b0, b1, ..] if b0 >= 0x80 && b1 < 0x80 => (u32::from(b0 & 0x7f) | u32::from(b1) << 7, 2),
        _ => return Ok(decode_key(rest)?),
    };
    let wire_type = WireType::try_from(u64::from(k & 7))?;
    *rest = &rest[used..];
    Ok((k >> 3, wire_type))
}

#[inline]
fn take_delimited<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], WireError> {
    let len = varint(rest)?;
    if len > rest.len() as u64 {
        return Err(WireError::Truncated);
    }
    let (head, tail) = rest.split_at(len as usize);
    *rest = tail;
    Ok(head)
}

#[inline]
fn take_str<'a>(rest: &mut &'a [u8]) -> Result<&'a str, WireError> {
    std::str::from_utf8(take_delimited(rest)?).map_err(|_| WireError::NotUtf8)
}

fn take_f64(rest: &mut &[u8]) -> Result<f64, WireError> {
    if rest.len() < 8 {
        return Err(WireError::Truncated);
    }
    Ok(rest.get_f64_le())
}

/// One event of a batch, borrowed from the batch's bytes. Field names and meanings are those
/// of `pb::Event`; absent strings are empty.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EventView<'a> {
    /// Event name.
    pub event_type: &'a str,
    /// The user id, empty before identification.
    pub user_id: &'a str,
    /// The device id.
    pub device_id: &'a str,
    /// Event time, ms since the epoch.
    pub time: i64,
    /// Session start in ms, or -1 outside a session.
    pub session_id: i64,
    /// Stable dedupe key.
    pub insert_id: &'a str,
    /// Per-device event counter.
    pub event_id: u32,
    /// `Web`.
    pub platform: &'a str,
    /// Browser name.
    pub os_name: &'a str,
    /// Browser version.
    pub os_version: &'a str,
    /// Device family.
    pub device_family: &'a str,
    /// Device type or model.
    pub device_type: &'a str,
    /// Country.
    pub country: &'a str,
    /// Region.
    pub region: &'a str,
    /// City.
    pub city: &'a str,
    /// Language.
    pub language: &'a str,
    /// Event properties.
    pub event_properties: Props<'a>,
    /// User properties.
    pub user_properties: Props<'a>,
    /// Unit price, on purchases.
    pub price: Option<f64>,
    /// Quantity, on purchases.
    pub quantity: Option<i64>,
    /// Revenue, on purchases.
    pub revenue: Option<f64>,
    /// Product SKU, on purchases.
    pub product_id: &'a str,
    /// Revenue type, on purchases.
    pub revenue_type: &'a str,
}

/// A property map of an [`EventView`]: entries are read from the event's bytes on demand
/// (they were checked when the view was made). `event` is the stretch of the event's bytes
/// from the map's first entry to its last.
#[derive(Clone, Copy, Default, PartialEq)]
pub struct Props<'a> {
    event: &'a [u8],
    field: u32,
    len: usize,
}

impl fmt::Debug for Props<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> Props<'a> {
    /// Number of entries (a repeated key counts each time).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entries in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let (mut rest, field) = (self.event, self.field);
        std::iter::from_fn(move || loop {
            if rest.is_empty() {
                return None;
            }
            let (tag, wire_type) = field_key(&mut rest).ok()?;
            if tag == field && wire_type == WireType::LengthDelimited {
                return map_entry(take_delimited(&mut rest).ok()?).ok();
            }
            skip_field(wire_type, tag, &mut rest, DecodeContext::default()).ok()?;
        })
    }

    /// The value of `key` (the last one, as protobuf maps merge).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }
}

/// A map<string, string> entry's key and value.
fn map_entry(mut entry: &[u8]) -> Result<(&str, &str), WireError> {
    let (mut k, mut v) = ("", "");
    while !entry.is_empty() {
        match field_key(&mut entry)? {
            (1, WireType::LengthDelimited) => k = take_str(&mut entry)?,
            (2, WireType::LengthDelimited) => v = take_str(&mut entry)?,
            (tag, wire_type) => skip_field(wire_type, tag, &mut entry, DecodeContext::default())?,
        }
    }
    Ok((k, v))
}

impl<'a> EventView<'a> {
    /// Reads one `Event` message, checking every field it knows and skipping unknown ones.
    ///
    /// # Errors
    /// Malformed bytes, a wrong wire type, or a string that is not UTF-8.
    pub fn parse(event: &'a [u8]) -> Result<Self, WireError> {
        let mut v = EventView {
            event_properties: Props {
                event,
                field: 17,
                len: 0,
            },
            user_properties: Props {
                event,
                field: 18,
                len: 0,
            },
            ..EventView::default()
        };
        // Where each map's entries start and end (their keys included), so that reading a
        // map later scans only that stretch.
        let mut spans = [(usize::MAX, 0usize); 2];
        let mut rest = event;
        while !rest.is_empty() {
            let at = event.len() - rest.len();
            let (tag, wire_type) = field_key(&mut rest)?;
            let want = match tag {
                4 | 5 | 7 | 20 => WireType::Varint,
                19 | 21 => WireType::SixtyFourBit,
                1..=23 => WireType::LengthDelimited,
                _ => {
                    skip_field(wire_type, tag, &mut rest, DecodeContext::default())?;
                    continue;
                }
            };
            prost::encoding::check_wire_type(want, wire_type)?;
            match tag {
                1 => v.event_type = take_str(&mut rest)?,
                2 => v.user_id = take_str(&mut rest)?,
                3 => v.device_id = take_str(&mut rest)?,
                4 => v.time = varint(&mut rest)? as i64,
                5 => v.session_id = varint(&mut rest)? as i64,
                6 => v.insert_id = take_str(&mut rest)?,
                7 => v.event_id = varint(&mut rest)? as u32,
                8 => v.platform = take_str(&mut rest)?,
                9 => v.os_name = take_str(&mut rest)?,
                10 => v.os_version = take_str(&mut rest)?,
                11 => v.device_family = take_str(&mut rest)?,
                12 => v.device_type = take_str(&mut rest)?,
                13 => v.country = take_str(&mut rest)?,
                14 => v.region = take_str(&mut rest)?,
                15 => v.city = take_str(&mut rest)?,
                16 => v.language = take_str(&mut rest)?,
                17 | 18 => {
                    map_entry(take_delimited(&mut rest)?)?;
                    let (props, span) = if tag == 17 {
                        (&mut v.event_properties, &mut spans[0])
                    } else {
                        (&mut v.user_properties, &mut spans[1])
                    };
                    props.len += 1;
                    *span = (span.0.min(at), event.len() - rest.len());
                }
                19 => v.price = Some(take_f64(&mut rest)?),
                20 => v.quantity = Some(varint(&mut rest)? as i64),
                21 => v.revenue = Some(take_f64(&mut rest)?),
                22 => v.product_id = take_str(&mut rest)?,
                _ => v.revenue_type = take_str(&mut rest)?,
            }
        }
        for (props, (start, end)) in [
            (&mut v.event_properties, spans[0]),
            (&mut v.user_properties, spans[1]),
        ] {
            props.event = if start < end { &event[start..end] } else { &[] };
        }
        Ok(v)
    }

    /// Appends the event as one JSON object with Amplitude HTTP V2 field names, keys sorted,
    /// absent optional fields left out: the line `ampsim events` prints, byte for byte the
    /// serde_json form of `cli::client::event_json` of the same event, without building it.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        enum V<'x> {
            S(&'x str),
            I(i64),
            F(f64),
            M(Props<'x>),
        }
        let opt_s = |s: &'a str| (!s.is_empty()).then_some(V::S(s));
        // In byte order of the keys, as serde_json's (BTreeMap) object prints them.
        let fields: [(&str, Option<V<'a>>); 23] = [
            ("city", Some(V::S(self.city))),
            ("country", Some(V::S(self.country))),
            ("device_family", Some(V::S(self.device_family))),
            ("device_id", Some(V::S(self.device_id))),
            ("device_type", Some(V::S(self.device_type))),
            ("event_id", Some(V::I(i64::from(self.event_id)))),
            ("event_properties", Some(V::M(self.event_properties))),
            ("event_type", Some(V::S(self.event_type))),
            ("insert_id", Some(V::S(self.insert_id))),
            ("language", Some(V::S(self.language))),
            ("os_name", Some(V::S(self.os_name))),
            ("os_version", Some(V::S(self.os_version))),
            ("platform", Some(V::S(self.platform))),
            ("price", self.price.map(V::F)),
            ("productId", opt_s(self.product_id)),
            ("quantity", self.quantity.map(V::I)),
            ("region", Some(V::S(self.region))),
            ("revenue", self.revenue.map(V::F)),
            ("revenueType", opt_s(self.revenue_type)),
            ("session_id", Some(V::I(self.session_id))),
            ("time", Some(V::I(self.time))),
            ("user_id", opt_s(self.user_id)),
            ("user_properties", Some(V::M(self.user_properties))),
        ];
        out.push(b'{');
        let mut first = true;
        for (k, v) in fields {
            let Some(v) = v else { continue };
            if !first {
                out.push(b',');
            }
            first = false;
            json_str(out, k);
            out.push(b':');
            match v {
                V::S(s) => json_str(out, s),
                V::I(i) => json(out, &i),
                V::F(f) => json(out, &f),
                V::M(p) => {
                    // Sorted by key; of repeated keys the last wins, as in a decoded map.
                    let mut entries: Vec<(&str, &str)> = p.iter().collect();
                    entries.sort_by_key(|e| e.0);
                    out.push(b'{');
                    let mut first = true;
                    for (i, (k, v)) in entries.iter().enumerate() {
                        if entries.get(i + 1).is_some_and(|next| next.0 == *k) {
                            continue;
                        }
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        json_str(out, k);
                        out.push(b':');
                        json_str(out, v);
                    }
                    out.push(b'}');
                }
            }
        }
        out.push(b'}');
    }

    /// The event as an owned message.
    pub fn to_owned_event(&self) -> pb::Event {
        let map = |p: &Props<'_>| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        pb::Event {
            event_type: self.event_type.to_string(),
            user_id: self.user_id.to_string(),
            device_id: self.device_id.to_string(),
            time: self.time,
            session_id: self.session_id,
            insert_id: self.insert_id.to_string(),
            event_id: self.event_id,
            platform: self.platform.to_string(),
            os_name: self.os_name.to_string(),
            os_version: self.os_version.to_string(),
            device_family: self.device_family.to_string(),
            device_type: self.device_type.to_string(),
            country: self.country.to_string(),
            region: self.region.to_string(),
            city: self.city.to_string(),
            language: self.language.to_string(),
            event_properties: map(&self.event_properties),
            user_properties: map(&self.user_properties),
            price: self.price,
            quantity: self.quantity,
            revenue: self.revenue,
            product_id: self.product_id.to_string(),
            revenue_type: self.revenue_type.to_string(),
        }
    }
}

/// Appends one value as serde_json writes it (its string escaping and number formats).
fn json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    serde_json::to_writer(out, v).expect("strings and numbers serialise into a Vec");
}

/// Appends a string as serde_json writes it; strings with nothing to escape (nearly all) are
/// copied as they are.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        json(out, s);
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    prost::encoding::encoded_len_varint(v)
}

/// A key (field number and wire type) as its varint bytes, at compile time.
const fn key(field: u32, wire_type: u32) -> ([u8; 2], usize) {
    let k = (field << 3) | wire_type;
    if k < 0x80 {
        ([k as u8, 0], 1)
    } else {
        ([(k as u8) | 0x80, (k >> 7) as u8], 2)
    }
}

#[inline]
fn put_key(out: &mut Vec<u8>, k: ([u8; 2], usize)) {
    out.push(k.0[0]);
    if k.1 == 2 {
        out.push(k.0[1]);
    }
}

/// A string field; proto3 leaves empty strings out.
fn put_str(out: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        put_key(out, key(field, 2));
        put_varint(out, s.len() as u64);
        // Short strings: a loop the compiler inlines beats a call to memcpy.
        out.extend(s.as_bytes().iter().copied());
    }
}

/// An int64/uint32 field as a varint; proto3 leaves zero out.
fn put_int(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_key(out, key(field, 0));
        put_varint(out, v);
    }
}

fn put_props(out: &mut Vec<u8>, field: u32, props: &[(&'static str, Prop<'_>)]) {
    for (k, v) in props {
        let v: Cow<'_, str> = v.as_str_value();
        // Like prost, an empty key or value is left out of the entry.
        let part = |s: &str| {
            if s.is_empty() {
                0
            } else {
                1 + varint_len(s.len() as u64) + s.len()
            }
        };
        put_key(out, key(field, 2));
        put_varint(out, (part(k) + part(&v)) as u64);
        put_str(out, 1, k);
        put_str(out, 2, &v);
    }
}

/// Writes events as `EventBatch` entries, encoding the fields that every event of a user-day
/// shares (browser, device and place: fields 8 to 16) once per user-day.
#[derive(Debug, Default)]
pub struct EventWriter {
    profile: Vec<u8>,
    have_profile: bool,
}

impl EventWriter {
    /// A writer; the first event starts a user-day.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next event belongs to another user-day (its shared fields are encoded afresh).
    pub fn next_user_day(&mut self) {
        self.have_profile = false;
    }

    /// Appends one event as an `EventBatch` entry (field 1, length-delimited). Events written
    /// since the last [`EventWriter::next_user_day`] must share fields 8 to 16.
    pub fn write(&mut self, e: &Event<'_>, out: &mut Vec<u8>) {
        if !self.have_profile {
            let p = &mut self.profile;
            p.clear();
            put_str(p, 8, e.platform);
            put_str(p, 9, e.os_name);
            put_str(p, 10, e.os_version);
            put_str(p, 11, e.device_family);
            put_str(p, 12, e.device_type);
            put_str(p, 13, e.country);
            put_str(p, 14, e.region);
            put_str(p, 15, e.city);
            put_str(p, 16, e.language);
            self.have_profile = true;
        }
        // Two bytes are kept for the length, which fits them for events of 128 bytes to
        // 16 KiB (all real ones); other lengths move the body once.
        out.push(0x0a);
        let at = out.len();
        out.extend_from_slice(&[0, 0]);
        let body = out.len();
        let b = &mut *out;
        put_str(b, 1, e.event_type);
        put_str(b, 2, e.user_id.as_deref().unwrap_or(""));
        put_str(b, 3, &e.device_id);
        put_int(b, 4, e.time as u64);
        put_int(b, 5, e.session_id as u64);
        put_str(b, 6, &e.insert_id);
        put_int(b, 7, u64::from(e.event_id));
        b.extend_from_slice(&self.profile);
        put_props(b, 17, &e.event_properties);
        put_props(b, 18, &e.user_properties);
        if let Some(r) = &e.revenue {
            put_key(b, key(19, 1));
            b.extend_from_slice(&r.price.to_le_bytes());
            put_key(b, key(20, 0));
            put_varint(b, r.quantity as u64);
            put_key(b, key(21, 1));
            b.extend_from_slice(&r.revenue.to_le_bytes());
            put_str(b, 22, r.product_id);
            put_str(b, 23, r.revenue_type);
        }
        let len = out.len() - body;
        if (128..16384).contains(&len) {
            out[at] = (len as u8) | 0x80;
            out[at + 1] = (len >> 7) as u8;
        } else {
            let mut prefix = Vec::with_capacity(10);
            put_varint(&mut prefix, len as u64);
            out.splice(at..body, prefix);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::convert;
    use ampsim_engine::memory::MemorySim;
    use ampsim_engine::{Engine, Scenario, SimConfig};

    /// A few days of the default scenario, every kind of event included (purchases, trial
    /// outcomes with integer properties, anonymous and identified events).
    fn with_events(f: impl FnOnce(&[Event<'_>])) {
        let mut sim = MemorySim::new(Engine::new(SimConfig {
            scenario: Scenario::from_toml(ampsim_engine::scenario::DEFAULT_SCENARIO_TOML)
                .expect("default scenario"),
            seed: 3,
            start_date: chrono::NaiveDate::from_ymd_opt(2025, 1, 6).expect("date"),
            population_scale: 0.01,
        }));
        let mut records = Vec::new();
        for _ in 0..40 {
            records.extend(sim.step().records);
        }
        let events = sim.engine.render_sorted(&records);
        let has = |t: &str| events.iter().any(|e| e.event_type == t);
        assert!(has("purchase") && has("trial_converted") && has("trial_expired"));
        assert!(events.iter().any(|e| e.user_id.is_none()));
        f(&events);
    }

    #[test]
    fn prost_reads_the_hand_written_bytes_as_the_converted_event() {
        with_events(|events| {
            let batch = EventBatch::encode(events);
            assert_eq!(batch.len(), events.len());
            let decoded = batch.to_events().expect("decodes");
            assert_eq!(decoded.len(), events.len());
            for (e, d) in events.iter().zip(&decoded) {
                assert_eq!(d, &convert::event(e.clone()));
            }
            // And through prost's own decoder of the message, as any other client would.
            let whole = EventBatch::decode(batch.encode_to_vec().as_slice()).expect("decodes");
            assert_eq!(whole, batch);
        });
    }

    #[test]
    fn views_match_the_owned_events() {
        with_events(|events| {
            let batch = EventBatch::encode(events);
            let owned = batch.to_events().expect("decodes");
            let mut n = 0;
            for (v, o) in batch.iter().zip(&owned) {
                let v = v.expect("view parses");
                assert_eq!(&v.to_owned_event(), o);
                assert_eq!(v.event_properties.len(), o.event_properties.len());
                if let Some((k, val)) = o.event_properties.iter().next() {
                    assert_eq!(v.event_properties.get(k), Some(val.as_str()));
                }
                n += 1;
            }
            assert_eq!(n, events.len());
        });
    }

    #[test]
    fn a_batch_nested_in_a_journey_item_round_trips() {
        with_events(|events| {
            let batch = EventBatch::encode(&events[..50]);
            let item = pb::JourneyItem {
                item: Some(pb::journey_item::Item::Events(batch.clone())),
            };
            let back = pb::JourneyItem::decode(item.encode_to_vec().as_slice()).expect("decodes");
            let Some(pb::journey_item::Item::Events(b)) = back.item else {
                panic!("events item expected")
            };
            assert_eq!(b.len(), 50);
            assert_eq!(
                b.to_events().expect("decodes"),
                batch.to_events().expect("decodes")
            );
            // Owned events encode to a batch that reads back the same.
            let again = EventBatch::from_events(&b.to_events().expect("decodes"));
            assert_eq!(
                again.to_events().expect("decodes"),
                b.to_events().expect("decodes")
            );
        });
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        with_events(|events| {
            let bytes = EventBatch::encode(&events[..3]).encode_to_vec();
            // Truncated anywhere inside the last event: framing fails on receipt.
            for cut in [bytes.len() - 1, bytes.len() - 10] {
                assert!(EventBatch::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            // A string that is not UTF-8 is caught by the view and by the owned decode.
            let mut bad = bytes.clone();
            let at = bad
                .windows(3)
                .position(|w| w == b"Web")
                .expect("platform is in the bytes");
            bad[at] = 0xff;
            let batch = EventBatch::decode(bad.as_slice()).expect("framing is intact");
            assert_eq!(batch.len(), 3);
            assert!(batch.iter().any(|v| v.is_err()));
            assert!(batch.to_events().is_err());
            // Field 1 with the wrong wire type.
            assert!(EventBatch::decode(&[0x08, 0x01][..]).is_err());
        });
    }

    #[test]
    fn short_and_long_events_get_their_exact_length_prefix() {
        with_events(|events| {
            let mut short = events[0].clone();
            short.user_id = None;
            short.device_id = "d".into();
            short.insert_id = String::new();
            (short.os_name, short.os_version, short.device_family) = ("", "", "");
            (short.device_type, short.country, short.region) = ("", "", "");
            (short.city, short.language) = ("", "");
            short.event_properties.clear();
            short.user_properties.clear();
            let mut long = events[0].clone();
            let big = "x".repeat(20_000);
            long.event_properties
                .push(("big", Prop::Str(Cow::Owned(big.clone()))));
            let batch = EventBatch::encode([&short, &events[1], &long]);
            let bytes = batch.as_bytes();
            assert!(bytes[1] < 0x80, "a short event has a one-byte length");
            let decoded = batch.to_events().expect("decodes");
            assert_eq!(decoded[0], convert::event(short));
            assert_eq!(decoded[1], convert::event(events[1].clone()));
            assert_eq!(decoded[2].event_properties["big"], big);
        });
    }

    #[test]
    fn view_json_is_the_cli_json() {
        let line = |e: &pb::Event| {
            serde_json::to_string(&crate::cli::client::event_json(e)).expect("serialises")
        };
        with_events(|events| {
            let batch = EventBatch::encode(events);
            let owned = batch.to_events().expect("decodes");
            let mut buf = Vec::new();
            for (v, o) in batch.iter().zip(&owned) {
                buf.clear();
                v.expect("view parses").write_json(&mut buf);
                assert_eq!(std::str::from_utf8(&buf).expect("utf-8"), line(o));
            }
        });
        // Escapes, non-ASCII, an empty map, a repeated key and every optional field.
        let mut odd = pb::Event {
            event_type: "q\"uote\\back\nline\u{1}".into(),
            user_id: "jürgen@例え.jp".into(),
            time: -5,
            session_id: -1,
            price: Some(0.1 + 0.2),
            quantity: Some(3),
            revenue: Some(1e21),
            product_id: "sku</script>".into(),
            revenue_type: "purchase".into(),
            ..pb::Event::default()
        };
        odd.user_properties.insert("b".into(), "2".into());
        odd.user_properties.insert("a".into(), "tab\t".into());
        // The same key twice in one event (two messages' bytes back to back merge, and a
        // map keeps the last value).
        let mut twice = pb::Event::default();
        twice.user_properties.insert("a".into(), "last".into());
        let mut event = odd.encode_to_vec();
        event.extend(twice.encode_to_vec());
        let mut bytes = vec![0x0a];
        put_varint(&mut bytes, event.len() as u64);
        bytes.extend(event);
        let batch = EventBatch::decode(bytes.as_slice()).expect("decodes");
        let o = &batch.to_events().expect("decodes")[0];
        assert_eq!(o.user_properties["a"], "last");
        let mut buf = Vec::new();
        batch
            .iter()
            .next()
            .expect("one")
            .expect("parses")
            .write_json(&mut buf);
        assert_eq!(std::str::from_utf8(&buf).expect("utf-8"), line(o));
    }

    #[test]
    fn unknown_fields_are_skipped() {
        with_events(|events| {
            let mut bytes = vec![0x10, 0x05]; // field 2, varint: not in this version
            bytes.extend(EventBatch::encode(&events[..2]).encode_to_vec());
            let batch = EventBatch::decode(bytes.as_slice()).expect("decodes");
            assert_eq!(batch.len(), 2);
            let views: Vec<_> = batch.iter().collect::<Result<_, _>>().expect("parses");
            assert_eq!(views[1].insert_id, events[1].insert_id);
        });
    }
}
