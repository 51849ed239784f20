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
use ampsim_engine::schema::{
    visit_fields, At, EventRecord, FieldId, FieldVisitor, Kind, PropMap, PropValue, Value, FIELDS,
    FIELD_COUNT, MAX_TAG,
};
use ampsim_engine::Event;
use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
use prost::{DecodeError, Message};
use std::fmt;

/// HTTP/2 flow-control window per stream (and twice that per connection), on the server and
/// its clients: event batches are megabytes, and default 64 KiB windows would stall every
/// stream on window updates.
pub const WINDOW_BYTES: u32 = 16 * 1024 * 1024;
/// Largest HTTP/2 frame the clients accept (the protocol's default is 16 KiB): an event batch
/// then crosses in a few frames instead of dozens.
pub const MAX_FRAME_BYTES: u32 = 1024 * 1024;

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

    /// The last event, read without parsing the others.
    pub fn last(&self) -> Option<Result<EventView<'_>, WireError>> {
        let mut rest = self.as_bytes();
        let mut last = None;
        loop {
            match next_event(&mut rest) {
                Ok(Some(b)) => last = Some(b),
                Ok(None) => return last.map(EventView::parse),
                Err(e) => return Some(Err(e)),
            }
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

/// One event of a batch, borrowed from the batch's bytes: each field's value is read by
/// [`FieldId`] ([`EventRecord::value`]), as the [schema](ampsim_engine::schema) describes it;
/// the fields that code relies on by meaning have accessors. Absent strings read as empty.
#[derive(Clone, Copy, PartialEq)]
pub struct EventView<'a> {
    bytes: &'a [u8],
    slots: [Slot<'a>; FIELD_COUNT],
}

/// Where a field's value sits in the event's bytes (checked when the view was made).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum Slot<'a> {
    /// Not in the bytes.
    #[default]
    Absent,
    /// A string field.
    Str(&'a str),
    /// A varint field.
    Varint(u64),
    /// A double field.
    F64(f64),
    /// A map: its entries lie between these offsets of the event's bytes.
    Map { start: u32, end: u32, len: u32 },
}

/// How the view reads a field number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Not an event field: skipped.
    Skip,
    /// A length-delimited UTF-8 string.
    Str,
    /// A varint.
    Varint,
    /// A little-endian double.
    F64,
    /// A map entry.
    Map,
}

/// For each field number: its slot and how it is read (from the schema, at compile time).
const READ_OF_TAG: [(u8, Read); MAX_TAG as usize + 1] = read_of_tag();

const fn read_of_tag() -> [(u8, Read); MAX_TAG as usize + 1] {
    let mut t = [(0u8, Read::Skip); MAX_TAG as usize + 1];
    let mut i = 0;
    while i < FIELD_COUNT {
        let f = &FIELDS[i];
        t[f.tag as usize] = (
            i as u8,
            match f.kind {
                Kind::Str | Kind::OptStr => Read::Str,
                Kind::Int | Kind::TimeMs | Kind::OptInt => Read::Varint,
                Kind::OptFloat => Read::F64,
                Kind::Props | Kind::OptProps => Read::Map,
            },
        );
        i += 1;
    }
    t
}

/// prost's error for a field of the wrong wire type.
fn wrong_wire_type(want: WireType, got: WireType) -> WireError {
    match prost::encoding::check_wire_type(want, got) {
        Err(e) => e.into(),
        Ok(()) => WireError::Truncated,
    }
}

impl fmt::Debug for EventView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for field in &FIELDS {
            match self.value(field.id) {
                Value::Absent => {}
                Value::Str(s) => {
                    m.entry(&field.name, &s);
                }
                Value::Int(i) => {
                    m.entry(&field.name, &i);
                }
                Value::Float(x) => {
                    m.entry(&field.name, &x);
                }
                Value::Props(p) => {
                    m.entry(&field.name, &p);
                }
            }
        }
        m.finish()
    }
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
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, PropValue<'a>)> + 'a {
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
    pub fn get(&self, key: &str) -> Option<PropValue<'a>> {
        self.iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }
}

/// A map<string, string> entry's key and value.
fn map_entry(mut entry: &[u8]) -> Result<(&str, PropValue<'_>), WireError> {
    let (mut k, mut v) = ("", PropValue::Str(""));
    while !entry.is_empty() {
        match field_key(&mut entry)? {
            (1, WireType::LengthDelimited) => k = take_str(&mut entry)?,
            (2, WireType::LengthDelimited) => v = property_value(take_delimited(&mut entry)?)?,
            (tag, wire_type) => skip_field(wire_type, tag, &mut entry, DecodeContext::default())?,
        }
    }
    Ok((k, v))
}

/// A `PropertyValue` message; one without a value reads as an empty string.
fn property_value(mut m: &[u8]) -> Result<PropValue<'_>, WireError> {
    let mut v = PropValue::Str("");
    while !m.is_empty() {
        v = match field_key(&mut m)? {
            (1, WireType::LengthDelimited) => PropValue::Str(take_str(&mut m)?),
            (2, WireType::Varint) => PropValue::Int(varint(&mut m)? as i64),
            (3, WireType::SixtyFourBit) => PropValue::Float(take_f64(&mut m)?),
            (4, WireType::Varint) => PropValue::Bool(varint(&mut m)? != 0),
            (tag @ 1..=4, wire_type) => {
                let want = match tag {
                    1 => WireType::LengthDelimited,
                    3 => WireType::SixtyFourBit,
                    _ => WireType::Varint,
                };
                return Err(wrong_wire_type(want, wire_type));
            }
            (tag, wire_type) => {
                skip_field(wire_type, tag, &mut m, DecodeContext::default())?;
                continue;
            }
        };
    }
    Ok(v)
}

impl<'a> EventView<'a> {
    /// Reads one `Event` message, checking every field the schema knows (wire type, UTF-8,
    /// map entries) and skipping unknown ones.
    ///
    /// # Errors
    /// Malformed bytes, a wrong wire type, or a string that is not UTF-8.
    pub fn parse(event: &'a [u8]) -> Result<Self, WireError> {
        let mut v = EventView {
            bytes: event,
            slots: [Slot::Absent; FIELD_COUNT],
        };
        let mut rest = event;
        while !rest.is_empty() {
            let at = event.len() - rest.len();
            let (tag, wire_type) = field_key(&mut rest)?;
            let (index, read) = READ_OF_TAG
                .get(tag as usize)
                .copied()
                .unwrap_or((0, Read::Skip));
            let slot = &mut v.slots[usize::from(index)];
            *slot = match (read, wire_type) {
                (Read::Str, WireType::LengthDelimited) => Slot::Str(take_str(&mut rest)?),
                (Read::Varint, WireType::Varint) => Slot::Varint(varint(&mut rest)?),
                (Read::F64, WireType::SixtyFourBit) => Slot::F64(take_f64(&mut rest)?),
                (Read::Map, WireType::LengthDelimited) => {
                    map_entry(take_delimited(&mut rest)?)?;
                    let end = (event.len() - rest.len()) as u32;
                    match *slot {
                        Slot::Map { start, len, .. } => Slot::Map {
                            start,
                            end,
                            len: len + 1,
                        },
                        _ => Slot::Map {
                            start: at as u32,
                            end,
                            len: 1,
                        },
                    }
                }
                (Read::Skip, _) => {
                    skip_field(wire_type, tag, &mut rest, DecodeContext::default())?;
                    continue;
                }
                (Read::Str | Read::Map, _) => {
                    return Err(wrong_wire_type(WireType::LengthDelimited, wire_type))
                }
                (Read::Varint, _) => return Err(wrong_wire_type(WireType::Varint, wire_type)),
                (Read::F64, _) => return Err(wrong_wire_type(WireType::SixtyFourBit, wire_type)),
            };
        }
        Ok(v)
    }

    /// The event's protobuf bytes (one `Event` message, without its length prefix).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    fn str_of(&self, f: FieldId) -> &'a str {
        match self.slots[f as usize] {
            Slot::Str(s) => s,
            _ => "",
        }
    }

    fn int_of(&self, f: FieldId) -> i64 {
        match self.slots[f as usize] {
            Slot::Varint(x) => x as i64,
            _ => 0,
        }
    }

    fn props_of(&self, f: FieldId) -> Props<'a> {
        let field = f.field().tag;
        match self.slots[f as usize] {
            Slot::Map { start, end, len } => Props {
                event: &self.bytes[start as usize..end as usize],
                field,
                len: len as usize,
            },
            _ => Props {
                event: &[],
                field,
                len: 0,
            },
        }
    }

    /// Event name.
    pub fn event_type(&self) -> &'a str {
        self.str_of(FieldId::EventType)
    }

    /// The user id, empty before identification.
    pub fn user_id(&self) -> &'a str {
        self.str_of(FieldId::UserId)
    }

    /// The device id.
    pub fn device_id(&self) -> &'a str {
        self.str_of(FieldId::DeviceId)
    }

    /// Event time, ms since the epoch.
    pub fn time(&self) -> i64 {
        self.int_of(FieldId::Time)
    }

    /// Session start in ms, or -1 outside a session.
    pub fn session_id(&self) -> i64 {
        self.int_of(FieldId::SessionId)
    }

    /// Stable dedupe key.
    pub fn insert_id(&self) -> &'a str {
        self.str_of(FieldId::InsertId)
    }

    /// Per-device event counter.
    pub fn event_id(&self) -> u32 {
        self.int_of(FieldId::EventId) as u32
    }

    /// Event properties.
    pub fn event_properties(&self) -> Props<'a> {
        self.props_of(FieldId::EventProperties)
    }

    /// User properties.
    pub fn user_properties(&self) -> Props<'a> {
        self.props_of(FieldId::UserProperties)
    }

    /// Amplitude groups (empty for an anonymous user's events).
    pub fn groups(&self) -> Props<'a> {
        self.props_of(FieldId::Groups)
    }

    /// Group properties (on `$groupidentify` only).
    pub fn group_properties(&self) -> Props<'a> {
        self.props_of(FieldId::GroupProperties)
    }

    /// Appends the event as its HTTP V2 JSON object ([`ampsim_engine::json::write_http`]):
    /// the line `ampsim events` prints, the JSON-lines export holds and `ampsim upload` sends.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        ampsim_engine::json::write_http(self, out);
    }

    /// The event as an owned message (prost's decoding of its bytes).
    ///
    /// # Errors
    /// Bytes prost refuses (a view is only made from bytes that parse, so none in practice).
    pub fn to_owned_event(&self) -> Result<pb::Event, WireError> {
        Ok(pb::Event::decode(self.bytes)?)
    }
}

impl EventRecord for EventView<'_> {
    type Props<'p>
        = Props<'p>
    where
        Self: 'p;

    fn value(&self, f: FieldId) -> Value<'_, Props<'_>> {
        let slot = self.slots[f as usize];
        match (f.field().kind, slot) {
            (Kind::Str | Kind::OptStr, Slot::Str(s)) => Value::Str(s),
            (Kind::Str, _) => Value::Str(""),
            (Kind::Int | Kind::TimeMs | Kind::OptInt, Slot::Varint(x)) => Value::Int(x as i64),
            (Kind::Int | Kind::TimeMs, _) => Value::Int(0),
            (Kind::OptFloat, Slot::F64(x)) => Value::Float(x),
            (Kind::Props, _) => Value::Props(self.props_of(f)),
            (Kind::OptProps, Slot::Map { .. }) => Value::Props(self.props_of(f)),
            (Kind::OptStr | Kind::OptInt | Kind::OptFloat | Kind::OptProps, _) => Value::Absent,
        }
    }
}

impl<'a> PropMap<'a> for Props<'a> {
    fn len(&self) -> usize {
        self.len
    }

    fn for_each(&self, mut f: impl FnMut(&'a str, PropValue<'a>)) {
        for (k, v) in self.iter() {
            f(k, v);
        }
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

/// A property map as `map<string, PropertyValue>` entries (the value's oneof always set, so
/// an empty string or a zero still says its type).
fn put_props<'p>(out: &mut Vec<u8>, field: u32, props: impl PropMap<'p>) {
    props.for_each(|k, v| {
        // Like prost, an empty key is left out of the entry.
        let key_len = if k.is_empty() {
            0
        } else {
            1 + varint_len(k.len() as u64) + k.len()
        };
        let value_len = match v {
            PropValue::Str(s) => 1 + varint_len(s.len() as u64) + s.len(),
            PropValue::Int(i) => 1 + varint_len(i as u64),
            PropValue::Float(_) => 9,
            PropValue::Bool(_) => 2,
        };
        put_key(out, key(field, 2));
        put_varint(
            out,
            (key_len + 1 + varint_len(value_len as u64) + value_len) as u64,
        );
        put_str(out, 1, k);
        out.push(0x12); // field 2, the value message
        put_varint(out, value_len as u64);
        match v {
            PropValue::Str(s) => {
                out.push(0x0a); // string_value
                put_varint(out, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
            PropValue::Int(i) => {
                out.push(0x10); // int_value
                put_varint(out, i as u64);
            }
            PropValue::Float(x) => {
                out.push(0x19); // double_value
                out.extend_from_slice(&x.to_le_bytes());
            }
            PropValue::Bool(b) => {
                out.push(0x20); // bool_value
                out.push(u8::from(b));
            }
        }
    });
}

/// Writes events as `EventBatch` entries, field by field from the
/// [schema](ampsim_engine::schema); the fields that every event of a user-day shares (browser,
/// device and place) are encoded once per user-day.
#[derive(Debug)]
pub struct EventWriter {
    /// The shared fields' bytes, in field order.
    profile: Vec<u8>,
    /// Where each field's bytes start in `profile` (non-shared fields: where they would), and
    /// its end last.
    offsets: [u32; FIELD_COUNT + 1],
    have_profile: bool,
}

impl Default for EventWriter {
    fn default() -> Self {
        EventWriter {
            profile: Vec::new(),
            offsets: [0; FIELD_COUNT + 1],
            have_profile: false,
        }
    }
}

/// For each field, the index after the run of shared fields it belongs to (the shared fields
/// are runs of consecutive field numbers: one copy of the profile's bytes per run).
const RUN_END: [usize; FIELD_COUNT] = run_end();

const fn run_end() -> [usize; FIELD_COUNT] {
    let mut ends = [0; FIELD_COUNT];
    let mut i = FIELD_COUNT;
    let mut end = FIELD_COUNT;
    while i > 0 {
        i -= 1;
        if !FIELDS[i].per_user_day {
            end = i;
        }
        ends[i] = end;
    }
    ends
}

/// Writes one event's fields (each a compile-time constant, see [`visit_fields`]): the
/// shared ones only when `profile` is `None` (then only they are written, and where each
/// field starts is noted in `offsets`), the others with `profile`'s bytes in place of the
/// shared ones.
struct Put<'x, E> {
    e: &'x E,
    out: &'x mut Vec<u8>,
    profile: Option<&'x [u8]>,
    offsets: &'x mut [u32; FIELD_COUNT + 1],
}

impl<E: EventRecord> FieldVisitor for Put<'_, E> {
    #[inline(always)]
    fn field<const I: usize>(&mut self) {
        let f = At::<I>::FIELD;
        match self.profile {
            None => {
                self.offsets[I] = self.out.len() as u32;
                if !f.per_user_day {
                    return;
                }
            }
            Some(p) if f.per_user_day => {
                // The first field of a run copies the run's bytes; the others are in them.
                if I == 0 || !FIELDS[I - 1].per_user_day {
                    let (from, to) = (self.offsets[I], self.offsets[RUN_END[I]]);
                    self.out.extend_from_slice(&p[from as usize..to as usize]);
                }
                return;
            }
            Some(_) => {}
        }
        let out = &mut *self.out;
        match self.e.value(f.id) {
            Value::Absent => {}
            Value::Str(s) => put_str(out, f.tag, s),
            Value::Int(i) if f.kind.is_optional() => {
                put_key(out, key(f.tag, 0));
                put_varint(out, i as u64);
            }
            Value::Int(i) => put_int(out, f.tag, i as u64),
            Value::Float(x) => {
                put_key(out, key(f.tag, 1));
                out.extend_from_slice(&x.to_le_bytes());
            }
            Value::Props(p) => put_props(out, f.tag, p),
        }
    }
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
    /// since the last [`EventWriter::next_user_day`] must share their per-user-day fields.
    pub fn write(&mut self, e: &Event<'_>, out: &mut Vec<u8>) {
        if !self.have_profile {
            self.profile.clear();
            visit_fields(&mut Put {
                e,
                out: &mut self.profile,
                profile: None,
                offsets: &mut self.offsets,
            });
            self.offsets[FIELD_COUNT] = self.profile.len() as u32;
            self.have_profile = true;
        }
        // Two bytes are kept for the length, which fits them for events of 128 bytes to
        // 16 KiB (all real ones); other lengths move the body once.
        out.push(0x0a);
        let at = out.len();
        out.extend_from_slice(&[0, 0]);
        let body = out.len();
        visit_fields(&mut Put {
            e,
            out: &mut *out,
            profile: Some(&self.profile),
            offsets: &mut self.offsets,
        });
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
    use ampsim_engine::memory::MemorySim;
    use ampsim_engine::Prop;
    use ampsim_engine::{Engine, Scenario, SimConfig};
    use std::borrow::Cow;

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
        assert!(has("$groupidentify") && events.iter().any(|e| !e.groups.is_empty()));
        assert!(events.iter().any(|e| e.user_id.is_none()));
        f(&events);
    }

    /// The message an event must decode to, field by field: written by hand, independently of
    /// the schema-driven writer it checks.
    fn expected(e: Event<'_>) -> pb::Event {
        use pb::property_value::Kind as K;
        let props = |ps: Vec<(&'static str, ampsim_engine::Prop<'_>)>| {
            ps.into_iter()
                .map(|(k, v)| {
                    let kind = match v {
                        Prop::Str(s) => K::StringValue(s.into_owned()),
                        Prop::Int(i) => K::IntValue(i),
                        Prop::Float(x) => K::DoubleValue(x),
                        Prop::Bool(b) => K::BoolValue(b),
                    };
                    (k.to_string(), pb::PropertyValue { kind: Some(kind) })
                })
                .collect()
        };
        let (price, quantity, revenue, product_id, revenue_type, currency) = match &e.revenue {
            Some(r) => (
                Some(r.price),
                Some(r.quantity),
                Some(r.revenue),
                r.product_id.to_string(),
                r.revenue_type.to_string(),
                r.currency.to_string(),
            ),
            None => (
                None,
                None,
                None,
                String::new(),
                String::new(),
                String::new(),
            ),
        };
        pb::Event {
            event_type: e.event_type.to_string(),
            user_id: e.user_id.unwrap_or_default(),
            device_id: e.device_id,
            time: e.time,
            session_id: e.session_id,
            insert_id: e.insert_id,
            event_id: e.event_id,
            platform: e.platform.to_string(),
            os_name: e.os_name.to_string(),
            os_version: e.os_version.to_string(),
            country: e.country.to_string(),
            region: e.region.to_string(),
            city: e.city.to_string(),
            language: e.language.to_string(),
            price,
            quantity,
            revenue,
            product_id,
            revenue_type,
            device_manufacturer: e.device_manufacturer.to_string(),
            device_model: e.device_model.to_string(),
            event_properties: props(e.event_properties),
            user_properties: props(e.user_properties),
            currency,
            groups: props(e.groups),
            group_properties: props(e.group_properties),
        }
    }

    /// `ampsim.v1.Event` in the compiled `.proto` has exactly the schema's fields: names,
    /// numbers and types.
    #[test]
    fn the_proto_event_is_the_schema() {
        use prost_types::field_descriptor_proto::{Label, Type};
        let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("decodes");
        let file = set
            .file
            .iter()
            .find(|f| f.package() == "ampsim.v1")
            .expect("ampsim.v1");
        let event = file
            .message_type
            .iter()
            .find(|m| m.name() == "Event")
            .expect("Event");
        assert_eq!(event.field.len(), FIELDS.len(), "fields of ampsim.v1.Event");
        for f in &FIELDS {
            let d = event
                .field
                .iter()
                .find(|d| d.name() == f.name)
                .unwrap_or_else(|| panic!("{} is not in ampsim.v1.Event", f.name));
            assert_eq!(d.number() as u32, f.tag, "{}", f.name);
            let optional = d.proto3_optional();
            let ok = match f.kind {
                Kind::Str => d.r#type() == Type::String && !optional,
                // Empty means absent, as proto3 strings carry no presence.
                Kind::OptStr => d.r#type() == Type::String && !optional,
                Kind::Int | Kind::TimeMs => {
                    matches!(d.r#type(), Type::Int64 | Type::Uint32) && !optional
                }
                Kind::OptInt => d.r#type() == Type::Int64 && optional,
                Kind::OptFloat => d.r#type() == Type::Double && optional,
                Kind::Props | Kind::OptProps => {
                    d.r#type() == Type::Message && d.label() == Label::Repeated
                }
            };
            assert!(
                ok,
                "{}: {:?} in the .proto, {:?} in the schema",
                f.name, d, f.kind
            );
        }
    }

    #[test]
    fn prost_reads_the_hand_written_bytes_as_the_converted_event() {
        with_events(|events| {
            let batch = EventBatch::encode(events);
            assert_eq!(batch.len(), events.len());
            let decoded = batch.to_events().expect("decodes");
            assert_eq!(decoded.len(), events.len());
            for (e, d) in events.iter().zip(&decoded) {
                assert_eq!(d, &expected(e.clone()));
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
                assert_eq!(&v.to_owned_event().expect("decodes"), o);
                assert_eq!(v.event_properties().len(), o.event_properties.len());
                for (k, val) in &o.event_properties {
                    let want = match val.kind.as_ref().expect("every value has a type") {
                        pb::property_value::Kind::StringValue(s) => PropValue::Str(s),
                        pb::property_value::Kind::IntValue(i) => PropValue::Int(*i),
                        pb::property_value::Kind::DoubleValue(x) => PropValue::Float(*x),
                        pb::property_value::Kind::BoolValue(b) => PropValue::Bool(*b),
                    };
                    assert_eq!(v.event_properties().get(k), Some(want));
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
            (short.os_name, short.os_version, short.device_model) = ("", "", "");
            (short.device_manufacturer, short.country, short.region) = ("", "", "");
            (short.city, short.language) = ("", "");
            short.event_properties.clear();
            short.user_properties.clear();
            let mut long = events[0].clone();
            let big = "x".repeat(20_000);
            long.event_properties
                .push(("big", Prop::Str(Cow::Owned(big.clone()))));
            // Every type of value, zero and empty ones too, keeps its type on the wire.
            long.event_properties.extend([
                ("flag", Prop::Bool(true)),
                ("off", Prop::Bool(false)),
                ("ratio", Prop::Float(0.25)),
                ("zero", Prop::Int(0)),
                ("negative", Prop::Int(-3)),
                ("empty", Prop::Str(Cow::Borrowed(""))),
            ]);
            let batch = EventBatch::encode([&short, &events[1], &long]);
            let bytes = batch.as_bytes();
            assert!(bytes[1] < 0x80, "a short event has a one-byte length");
            let decoded = batch.to_events().expect("decodes");
            assert_eq!(decoded[0], expected(short));
            assert_eq!(decoded[1], expected(events[1].clone()));
            assert_eq!(
                decoded[2].event_properties["big"].kind,
                Some(pb::property_value::Kind::StringValue(big))
            );
            assert_eq!(decoded[2], expected(long.clone()));
            let view = batch.iter().nth(2).expect("three").expect("parses");
            let mut json = Vec::new();
            view.write_json(&mut json);
            let json: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
            let props = &json["event_properties"];
            assert_eq!(props["flag"], serde_json::json!(true));
            assert_eq!(props["off"], serde_json::json!(false));
            assert_eq!(props["ratio"], serde_json::json!(0.25));
            assert_eq!(props["zero"], serde_json::json!(0));
            assert_eq!(props["negative"], serde_json::json!(-3));
            assert_eq!(props["empty"], serde_json::json!(""));
        });
    }

    #[test]
    fn unknown_fields_are_skipped() {
        with_events(|events| {
            let mut bytes = vec![0x10, 0x05]; // field 2, varint: not in this version
            bytes.extend(EventBatch::encode(&events[..2]).encode_to_vec());
            let batch = EventBatch::decode(bytes.as_slice()).expect("decodes");
            assert_eq!(batch.len(), 2);
            let views: Vec<_> = batch.iter().collect::<Result<_, _>>().expect("parses");
            assert_eq!(views[1].insert_id(), events[1].insert_id);
        });
    }
}
