//! An event's two JSON forms, written from the [schema](crate::schema) for any
//! [`EventRecord`]: one printer, two styles.
//!
//! - Canonical ([`write_canonical`]): fields in [`FIELDS`] order, property values typed as the
//!   engine rendered them. Digests are taken over this form, so it never changes by accident.
//! - HTTP V2 ([`write_http`]): keys sorted (as a JSON object from serde_json's `Map` prints
//!   them), absent optional fields left out, property maps sorted with the last of repeated
//!   keys kept, numbers as serde_json writes them. What `ampsim events` prints, the JSON-lines
//!   export holds and `ampsim upload` sends.

use crate::schema::{EventRecord, Kind, PropMap, PropValue, Value, BY_NAME, FIELDS};

/// Where JSON text goes: a byte buffer, a `String`, or an Arrow string column (the value
/// being built). Everything written is `&str`, so the output is UTF-8 without a check.
pub trait JsonOut {
    /// Appends text.
    fn put(&mut self, s: &str);
}

impl JsonOut for Vec<u8> {
    #[inline(always)]
    fn put(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }
}

impl JsonOut for String {
    #[inline(always)]
    fn put(&mut self, s: &str) {
        self.push_str(s);
    }
}

/// Writes into the value being built; `append_value("")` then ends it.
impl JsonOut for arrow_array::builder::StringBuilder {
    #[inline(always)]
    fn put(&mut self, s: &str) {
        use std::fmt::Write as _;
        self.write_str(s)
            .expect("writing into a string builder cannot fail");
    }
}

/// Appends the canonical JSON object of an event (no trailing newline).
pub fn write_canonical(e: &impl EventRecord, out: &mut impl JsonOut) {
    out.put("{");
    let mut first = true;
    for f in &FIELDS {
        let v = e.value(f.id);
        if matches!(v, Value::Absent)
            || (f.kind == Kind::OptProps && matches!(v, Value::Props(p) if p.is_empty()))
        {
            continue;
        }
        if !first {
            out.put(",");
        }
        first = false;
        key(out, f.name);
        match v {
            Value::Str(s) => str(out, s),
            Value::Int(i) => int(out, i),
            Value::Float(x) => out.put(&canonical_float(x)),
            Value::Props(p) => {
                out.put("{");
                let mut first = true;
                p.for_each(|k, v| {
                    if !first {
                        out.put(",");
                    }
                    first = false;
                    key(out, k);
                    match v {
                        PropValue::Str(s) => str(out, s),
                        PropValue::Int(i) => int(out, i),
                        PropValue::Float(x) => out.put(&canonical_float(x)),
                        PropValue::Bool(b) => out.put(if b { "true" } else { "false" }),
                    }
                });
                out.put("}");
            }
            Value::Absent => unreachable!("skipped above"),
        }
    }
    out.put("}");
}

/// Appends the HTTP V2 JSON object of an event (no trailing newline).
pub fn write_http(e: &impl EventRecord, out: &mut impl JsonOut) {
    out.put("{");
    let mut first = true;
    for id in BY_NAME {
        let f = id.field();
        let v = e.value(id);
        if matches!(v, Value::Absent)
            || (f.kind == Kind::OptStr && matches!(v, Value::Str("")))
            || (f.kind == Kind::OptProps && matches!(v, Value::Props(p) if p.is_empty()))
        {
            continue;
        }
        if !first {
            out.put(",");
        }
        first = false;
        key(out, f.name);
        match v {
            Value::Str(s) => str(out, s),
            Value::Int(i) => int(out, i),
            Value::Float(x) => serde_number(out, x),
            Value::Props(p) => write_sorted_props(p, out),
            Value::Absent => unreachable!("skipped above"),
        }
    }
    out.put("}");
}

/// Appends a property map as a JSON object with sorted keys, keeping the last of repeated
/// keys (as a decoded protobuf map does); numbers as serde_json writes them.
pub fn write_sorted_props<'a>(p: impl PropMap<'a>, out: &mut impl JsonOut) {
    // Maps are small: sorted on the stack, without allocating.
    const SMALL: usize = 24;
    if p.len() > SMALL {
        out.put("{");
        write_entries(&sorted_entries(p), false, out);
        out.put("}");
        return;
    }
    let mut entries = [("", PropValue::Int(0)); SMALL];
    let mut n = 0;
    p.for_each(|k, v| {
        entries[n] = (k, v);
        n += 1;
    });
    let entries = &mut entries[..n];
    // Stable: of equal keys the later one stays later, and is the one kept.
    entries.sort_by_key(|e| e.0);
    out.put("{");
    let mut more = false;
    for (i, e) in entries.iter().enumerate() {
        if entries.get(i + 1).is_none_or(|next| next.0 != e.0) {
            write_entries(std::slice::from_ref(e), more, out);
            more = true;
        }
    }
    out.put("}");
}

/// A property map's entries sorted by key, of repeated keys the last one only (as a decoded
/// protobuf map keeps it).
pub fn sorted_entries<'a>(p: impl PropMap<'a>) -> Vec<(&'a str, PropValue<'a>)> {
    let mut entries: Vec<(&'a str, PropValue<'a>)> = Vec::with_capacity(p.len());
    p.for_each(|k, v| entries.push((k, v)));
    // Stable: of equal keys the later one stays later, and is the one kept.
    entries.sort_by_key(|e| e.0);
    let mut kept = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        if entries.get(i + 1).is_none_or(|next| next.0 != e.0) {
            kept.push(*e);
        }
    }
    kept
}

/// Appends `"key":value` pairs, comma-separated (with a leading comma when `more` is set, as
/// after earlier entries of the same object). Numbers as serde_json writes them.
pub fn write_entries(entries: &[(&str, PropValue<'_>)], more: bool, out: &mut impl JsonOut) {
    for (i, (k, v)) in entries.iter().enumerate() {
        if more || i > 0 {
            out.put(",");
        }
        key(out, k);
        write_value(out, *v);
    }
}

/// Appends a property value with its JSON type (numbers as serde_json writes them).
pub fn write_value(out: &mut impl JsonOut, v: PropValue<'_>) {
    match v {
        PropValue::Str(s) => str(out, s),
        PropValue::Int(i) => int(out, i),
        PropValue::Float(x) => serde_number(out, x),
        PropValue::Bool(b) => out.put(if b { "true" } else { "false" }),
    }
}

/// A property value as text: a string as it is, a number or boolean as JSON writes it.
pub fn prop_text(v: PropValue<'_>) -> String {
    match v {
        PropValue::Str(s) => s.to_string(),
        PropValue::Int(i) => i.to_string(),
        PropValue::Float(x) => canonical_float(x),
        PropValue::Bool(b) => b.to_string(),
    }
}

/// A float as the canonical form writes it: integral values with one decimal (`49.0`), others
/// in Rust's shortest round-trip form.
pub fn canonical_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Appends a string and a colon: an object's key.
pub fn key(out: &mut impl JsonOut, k: &str) {
    str(out, k);
    out.put(":");
}

/// Appends an integer.
pub fn int(out: &mut impl JsonOut, i: i64) {
    out.put(itoa::Buffer::new().format(i));
}

/// Appends a float as serde_json writes it (`null` if it is not finite).
pub fn serde_number(out: &mut impl JsonOut, x: f64) {
    out.put(&serde_json::to_string(&x).expect("a number serialises"));
}

/// Appends a string as serde_json writes it; strings with nothing to escape (nearly all) are
/// copied as they are.
pub fn str(out: &mut impl JsonOut, s: &str) {
    // A branch-free scan (the compiler vectorises it): most strings need no escape at all.
    let escape = s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !escape {
        out.put("\"");
        out.put(s);
        out.put("\"");
    } else {
        out.put(&serde_json::to_string(s).expect("a string serialises"));
    }
}
