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

/// Appends the canonical JSON object of an event (no trailing newline).
pub fn write_canonical(e: &impl EventRecord, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    for f in &FIELDS {
        let v = e.value(f.id);
        if matches!(v, Value::Absent) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        key(out, f.name);
        match v {
            Value::Str(s) => str(out, s),
            Value::Int(i) => int(out, i),
            Value::Float(x) => out.extend_from_slice(canonical_float(x).as_bytes()),
            Value::Props(p) => {
                out.push(b'{');
                let mut first = true;
                p.for_each(|k, v| {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    key(out, k);
                    match v {
                        PropValue::Str(s) => str(out, s),
                        PropValue::Int(i) => int(out, i),
                        PropValue::Float(x) => out.extend_from_slice(canonical_float(x).as_bytes()),
                    }
                });
                out.push(b'}');
            }
            Value::Absent => unreachable!("skipped above"),
        }
    }
    out.push(b'}');
}

/// Appends the HTTP V2 JSON object of an event (no trailing newline).
pub fn write_http(e: &impl EventRecord, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    for id in BY_NAME {
        let f = id.field();
        let v = e.value(id);
        if matches!(v, Value::Absent) || (f.kind == Kind::OptStr && matches!(v, Value::Str(""))) {
            continue;
        }
        if !first {
            out.push(b',');
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
    out.push(b'}');
}

/// Appends a property map as a JSON object with sorted keys, keeping the last of repeated
/// keys (as a decoded protobuf map does); numbers as serde_json writes them.
pub fn write_sorted_props<'a>(p: impl PropMap<'a>, out: &mut Vec<u8>) {
    out.push(b'{');
    write_entries(&sorted_entries(p), false, out);
    out.push(b'}');
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
pub fn write_entries(entries: &[(&str, PropValue<'_>)], more: bool, out: &mut Vec<u8>) {
    for (i, (k, v)) in entries.iter().enumerate() {
        if more || i > 0 {
            out.push(b',');
        }
        key(out, k);
        match *v {
            PropValue::Str(s) => str(out, s),
            PropValue::Int(i) => int(out, i),
            PropValue::Float(x) => serde_number(out, x),
        }
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
pub fn key(out: &mut Vec<u8>, k: &str) {
    str(out, k);
    out.push(b':');
}

/// Appends an integer.
pub fn int(out: &mut Vec<u8>, i: i64) {
    use std::io::Write as _;
    write!(out, "{i}").expect("writing into a Vec cannot fail");
}

/// Appends a float as serde_json writes it (`null` if it is not finite).
pub fn serde_number(out: &mut Vec<u8>, x: f64) {
    serde_json::to_writer(out, &x).expect("a number serialises into a Vec");
}

/// Appends a string as serde_json writes it; strings with nothing to escape (nearly all) are
/// copied as they are.
pub fn str(out: &mut Vec<u8>, s: &str) {
    // A branch-free scan (the compiler vectorises it): most strings need no escape at all.
    let escape = s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !escape {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(out, s).expect("a string serialises into a Vec");
    }
}
