//! `amplitude-export`: the layout of Amplitude's Export API (and its S3 export), so tools that
//! ingest real exports can ingest a simulation.
//!
//! Files are `<project>_<yyyy-MM-dd>_<H>#<n>.json.gz`, H the UTC hour unpadded (0-23), n the
//! part from 0 (a new part when an hour exceeds the part size). Each line is one event with the
//! export field set (55 keys, sorted; absent values as explicit `null`):
//!
//! - renamed from HTTP V2: `ip` → `ip_address`, `app_version` → `version_name`, `carrier` →
//!   `device_carrier`, `insert_id` → `$insert_id`.
//! - timestamps `YYYY-MM-DD HH:MM:SS.ffffff` (UTC). Nothing was really uploaded, so
//!   `client_upload_time`, `server_received_time`, `server_upload_time` and `processed_time`
//!   equal the event time, and files are grouped by event hour (Amplitude groups by upload
//!   hour).
//! - `uuid`: SHA-256 of the insert_id, formatted as a version-8 UUID: unique per event and the
//!   same in every export. `amplitude_id`: the first 53 bits of SHA-256 of the device_id (each
//!   simulated device is one user), so it survives JSON readers that parse numbers as doubles.
//! - `app` = the project id, `library` = `http/2.0`, `data_type` = `event`, `data` =
//!   `{"path":"/2/httpapi","user_properties_updated":…,"group_first_event":{},"group_ids":{}}`
//!   plus `"first_event":true` on a device's first event (event_id 1).
//! - revenue fields go into `event_properties` as `$price`, `$quantity`, `$revenue`,
//!   `$productId`, `$revenueType`, `$currency` (the SDKs' event-property form; how Amplitude
//!   exports top-level revenue fields is not documented).
//! - `device_family` and `device_type`, which Amplitude derives on ingestion, are the
//!   scenario's names for the event's `device_manufacturer` and `device_model`
//!   ([`ampsim_engine::clients::ExportDeviceNames`]; e.g. `Apple` `Macintosh` → `Mac OS X`,
//!   `Mac`); `null` for a pair the scenario does not have.
//! - `user_properties` is the user's full property state at the event, as Amplitude's Export
//!   has it: the export streams its events with `USER_PROPERTIES_VIEW_STORED`, in which the
//!   server renders every property the user's events set so far (`initial_*`, the latest
//!   session's `utm_*`, the latest `utm_campaign` and `referrer` sent, `plan`, `product_sku`,
//!   `seats`, `lifecycle_stage`), on earlier days and before the exported range too
//!   ([`ampsim_engine::UserPropertiesView::Stored`]).
//! - `groups` lists each group type's values (`{"company":["bluewavelabs.de"]}`), and
//!   `group_properties` holds, per group type and value, the group's properties as the
//!   `$groupidentify` events written so far set them
//!   (`{"company":{"bluewavelabs.de":{"industry":"Software",…}}}`): Amplitude applies group
//!   properties to later events only. Both shapes are those of Amplitude's Accounts docs and
//!   third-party parsers, not confirmed against a real export; a group whose `$groupidentify`
//!   came before the exported range has no properties here.

use super::files::{io_err, FileInfo, Staged};
use super::{day_of, ExportOptions, FormatWriter, Result, DAY_MS};
use crate::wire::EventView;
use ampsim_engine::json;
use ampsim_engine::schema::{EventRecord, ExportAs, FieldId, PropValue, Value, FIELDS};
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

const HOUR_MS: i64 = 3_600_000;

/// The file name of part `part` of hour `hour` (0-23) of `day`.
pub fn file_name(project_id: u64, day: chrono::NaiveDate, hour: u32, part: u32) -> String {
    format!(
        "{project_id}_{}_{hour}#{part}.json.gz",
        day.format("%Y-%m-%d")
    )
}

/// The export `uuid` of an event: SHA-256 of its insert_id, as an RFC 9562 version-8 UUID.
pub fn event_uuid(insert_id: &str) -> String {
    let h = Sha256::new()
        .chain_update(b"ampsim/export/uuid\0")
        .chain_update(insert_id.as_bytes())
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8 (custom)
    b[8] = (b[8] & 0x3f) | 0x80; // RFC variant
    let n = u128::from_be_bytes(b);
    let mut s = String::with_capacity(36);
    ampsim_engine::ids::write_uuid(&mut s, (n >> 64) as u64, n as u64);
    s
}

/// The export `amplitude_id` of a device: the first 53 bits of SHA-256 of its device_id.
pub fn amplitude_id(device_id: &str) -> u64 {
    let h = Sha256::new()
        .chain_update(b"ampsim/export/amplitude_id\0")
        .chain_update(device_id.as_bytes())
        .finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    u64::from_be_bytes(b) >> 11
}

/// The open hour file.
struct HourFile {
    hour_start: i64,
    part: u32,
    staged: Staged,
    out: GzEncoder<BufWriter<File>>,
    events: u64,
}

/// A property value kept past its event.
#[derive(Debug, Clone, PartialEq)]
enum OwnedValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl OwnedValue {
    fn of(v: PropValue<'_>) -> Self {
        match v {
            PropValue::Str(s) => OwnedValue::Str(s.to_string()),
            PropValue::Int(i) => OwnedValue::Int(i),
            PropValue::Float(x) => OwnedValue::Float(x),
            PropValue::Bool(b) => OwnedValue::Bool(b),
        }
    }

    fn as_value(&self) -> PropValue<'_> {
        match self {
            OwnedValue::Str(s) => PropValue::Str(s),
            OwnedValue::Int(i) => PropValue::Int(*i),
            OwnedValue::Float(x) => PropValue::Float(*x),
            OwnedValue::Bool(b) => PropValue::Bool(*b),
        }
    }
}

/// Where the value of one key of an exported line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// An event field under its Export name; an empty string is `null`.
    Field(FieldId),
    /// `event_properties`, with the revenue fields in it.
    EventProperties,
    /// `user_properties`: the event's, which the stream has as Amplitude holds them.
    UserProperties,
    /// `device_family`, as Amplitude derives it from the manufacturer and model.
    DeviceFamily,
    /// `device_type`, likewise.
    DeviceType,
    /// A `YYYY-MM-DD HH:MM:SS.ffffff` timestamp of the event time.
    Time,
    /// The event's `uuid`.
    Uuid,
    /// The device's `amplitude_id`.
    AmplitudeId,
    /// The project id.
    App,
    /// The `data` object.
    Data,
    /// `groups`: each group type with its values as a list.
    Groups,
    /// `group_properties`: the properties of the event's groups as the `$groupidentify`
    /// events before it set them.
    GroupProperties,
    /// This JSON text, always.
    Raw(&'static str),
}

/// The Export layout's keys that no event field gives, and their values.
const LAYOUT_KEYS: &[(&str, Source)] = &[
    ("$insert_key", Source::Raw("null")),
    ("$schema", Source::Raw("null")),
    ("adid", Source::Raw("null")),
    ("amplitude_attribution_ids", Source::Raw("null")),
    ("amplitude_event_type", Source::Raw("null")),
    ("amplitude_id", Source::AmplitudeId),
    ("app", Source::App),
    ("data", Source::Data),
    ("data_type", Source::Raw("\"event\"")),
    ("device_brand", Source::Raw("null")),
    ("device_carrier", Source::Raw("null")),
    ("device_family", Source::DeviceFamily),
    ("device_type", Source::DeviceType),
    ("dma", Source::Raw("null")),
    ("global_user_properties", Source::Raw("null")),
    ("idfa", Source::Raw("null")),
    ("ip_address", Source::Raw("null")),
    ("is_attribution_event", Source::Raw("null")),
    ("library", Source::Raw("\"http/2.0\"")),
    ("location_lat", Source::Raw("null")),
    ("location_lng", Source::Raw("null")),
    ("partner_id", Source::Raw("null")),
    ("paying", Source::Raw("null")),
    ("plan", Source::Raw("{}")),
    ("sample_rate", Source::Raw("null")),
    ("source_id", Source::Raw("null")),
    ("start_version", Source::Raw("null")),
    ("user_creation_time", Source::Raw("null")),
    ("uuid", Source::Uuid),
    ("version_name", Source::Raw("null")),
];

/// The timestamp keys of the layout. Nothing was really uploaded, so all equal the event time.
const TIME_KEYS: [&str; 6] = [
    "client_event_time",
    "client_upload_time",
    "event_time",
    "processed_time",
    "server_received_time",
    "server_upload_time",
];

/// The keys of an exported line in order (sorted), each with its source: the event fields
/// placed by their [`ExportAs`], and the layout's own keys.
fn layout() -> Vec<(&'static str, Source)> {
    let mut keys: Vec<(&'static str, Source)> = LAYOUT_KEYS.to_vec();
    for f in &FIELDS {
        match f.export {
            ExportAs::Same => keys.push((
                f.name,
                match f.id {
                    FieldId::EventProperties => Source::EventProperties,
                    FieldId::UserProperties => Source::UserProperties,
                    id => Source::Field(id),
                },
            )),
            ExportAs::Renamed(name) => keys.push((name, Source::Field(f.id))),
            ExportAs::Timestamps => keys.extend(TIME_KEYS.iter().map(|k| (*k, Source::Time))),
            ExportAs::EventProperty(_) => {}
            ExportAs::Groups => keys.push((
                f.name,
                if f.id == FieldId::Groups {
                    Source::Groups
                } else {
                    Source::GroupProperties
                },
            )),
        }
    }
    keys.sort_by_key(|k| k.0);
    keys
}

/// The fields exported inside `event_properties`, by key (sorted, so before the event's own
/// properties as `$` sorts first).
fn revenue_keys() -> Vec<(&'static str, FieldId)> {
    let mut keys: Vec<(&'static str, FieldId)> = FIELDS
        .iter()
        .filter_map(|f| match f.export {
            ExportAs::EventProperty(k) => Some((k, f.id)),
            _ => None,
        })
        .collect();
    keys.sort_by_key(|k| k.0);
    keys
}

/// Writes `amplitude-export` hour files.
pub(super) struct AmplitudeWriter {
    dir: PathBuf,
    project_id: u64,
    part_size: u64,
    level: flate2::Compression,
    open: Option<HourFile>,
    /// `YYYY-MM-DD HH:` of `prefix_hour`, the start of timestamps in that hour.
    prefix: String,
    prefix_hour: i64,
    /// Each group's properties as the `$groupidentify` events so far set them: group type →
    /// group value → properties.
    groups: BTreeMap<String, BTreeMap<String, BTreeMap<String, OwnedValue>>>,
    /// The keys of a line and where each value comes from.
    layout: Vec<(&'static str, Source)>,
    /// The fields exported inside `event_properties`.
    revenue: Vec<(&'static str, FieldId)>,
    /// How the Export shows each device of the scenario.
    devices: ampsim_engine::clients::ExportDeviceNames,
    line: Vec<u8>,
    done: Vec<FileInfo>,
}

impl AmplitudeWriter {
    pub(super) fn new(opts: &ExportOptions) -> Self {
        AmplitudeWriter {
            dir: opts.out_dir.clone(),
            project_id: opts.project_id,
            part_size: opts.part_size.max(1),
            level: flate2::Compression::new(opts.gzip_level.min(9)),
            open: None,
            prefix: String::new(),
            prefix_hour: i64::MIN,
            groups: BTreeMap::new(),
            layout: layout(),
            revenue: revenue_keys(),
            devices: opts.device_names.clone(),
            line: Vec::with_capacity(4096),
            done: Vec::new(),
        }
    }

    fn close(&mut self) -> Result<()> {
        if let Some(f) = self.open.take() {
            let out = f.out.finish().map_err(io_err(f.staged.path()))?;
            self.done.push(f.staged.commit(out, f.events)?);
        }
        Ok(())
    }

    /// `YYYY-MM-DD HH:MM:SS.ffffff` of a time in ms.
    fn timestamp(&mut self, time_ms: i64) -> String {
        let hour = time_ms.div_euclid(HOUR_MS) * HOUR_MS;
        if hour != self.prefix_hour {
            self.prefix = chrono::DateTime::from_timestamp_millis(hour)
                .expect("in chrono's range")
                .format("%Y-%m-%d %H:")
                .to_string();
            self.prefix_hour = hour;
        }
        let ms = time_ms - hour;
        format!(
            "{}{:02}:{:02}.{:03}000",
            self.prefix,
            ms / 60_000,
            ms / 1000 % 60,
            ms % 1000
        )
    }
}

impl FormatWriter for AmplitudeWriter {
    fn write(&mut self, e: &EventView<'_>) -> Result<()> {
        let hour_start = e.time().div_euclid(HOUR_MS) * HOUR_MS;
        let mut part = 0;
        if let Some(f) = &self.open {
            if f.hour_start == hour_start && f.events >= self.part_size {
                part = f.part + 1;
                self.close()?;
            } else if f.hour_start != hour_start {
                self.close()?;
            }
        }
        if self.open.is_none() {
            let hour = u32::try_from((hour_start - e.time().div_euclid(DAY_MS) * DAY_MS) / HOUR_MS)
                .expect("0..24");
            let name = file_name(self.project_id, day_of(e.time()), hour, part);
            let (staged, out) = Staged::create(&self.dir, &name)?;
            self.open = Some(HourFile {
                hour_start,
                part,
                staged,
                out: GzEncoder::new(out, self.level),
                events: 0,
            });
        }

        let time = self.timestamp(e.time());
        self.line.clear();
        self.write_line(e, &time);
        self.line.push(b'\n');
        let f = self.open.as_mut().expect("opened above");
        f.out
            .write_all(&self.line)
            .map_err(io_err(f.staged.path()))?;
        f.events += 1;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<FileInfo>> {
        self.close()?;
        Ok(self.done)
    }
}

impl AmplitudeWriter {
    /// Writes one event's line into `self.line`, key by key in the layout's order.
    fn write_line(&mut self, e: &EventView<'_>, time: &str) {
        if !e.group_properties().is_empty() {
            // A `$groupidentify`: its properties are the groups' from now on.
            for (ty, value) in e.groups().iter() {
                let value = json::prop_text(value);
                let props = self
                    .groups
                    .entry(ty.to_string())
                    .or_default()
                    .entry(value)
                    .or_default();
                for (k, v) in e.group_properties().iter() {
                    props.insert(k.to_string(), OwnedValue::of(v));
                }
            }
        }
        let out = &mut self.line;
        out.push(b'{');
        for (i, (k, source)) in self.layout.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json::key(out, k);
            match *source {
                Source::Field(id) => match e.value(id) {
                    Value::Str("") | Value::Absent => out.extend_from_slice(b"null"),
                    Value::Str(s) => json::str(out, s),
                    Value::Int(n) => json::int(out, n),
                    Value::Float(x) => json::serde_number(out, x),
                    Value::Props(p) => json::write_sorted_props(p, out),
                },
                Source::EventProperties => {
                    out.push(b'{');
                    let mut more = false;
                    for &(k, id) in &self.revenue {
                        let v = match e.value(id) {
                            Value::Str(s) if !s.is_empty() => PropValue::Str(s),
                            Value::Int(n) => PropValue::Int(n),
                            Value::Float(x) => PropValue::Float(x),
                            Value::Str(_) | Value::Absent | Value::Props(_) => continue,
                        };
                        json::write_entries(&[(k, v)], more, out);
                        more = true;
                    }
                    let own = json::sorted_entries(e.event_properties());
                    json::write_entries(&own, more, out);
                    out.push(b'}');
                }
                Source::UserProperties => json::write_sorted_props(e.user_properties(), out),
                Source::DeviceFamily | Source::DeviceType => {
                    let name = |id| match e.value(id) {
                        Value::Str(s) => s,
                        _ => "",
                    };
                    let names = self.devices.get(
                        name(FieldId::DeviceManufacturer),
                        name(FieldId::DeviceModel),
                    );
                    match (names, *source) {
                        (Some((family, _)), Source::DeviceFamily) => json::str(out, family),
                        (Some((_, ty)), _) => json::str(out, ty),
                        (None, _) => out.extend_from_slice(b"null"),
                    }
                }
                Source::Groups => {
                    out.push(b'{');
                    for (i, (ty, value)) in json::sorted_entries(e.groups()).iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        json::key(out, ty);
                        out.push(b'[');
                        json::write_value(out, *value);
                        out.push(b']');
                    }
                    out.push(b'}');
                }
                Source::GroupProperties => {
                    out.push(b'{');
                    let mut more = false;
                    for (ty, value) in json::sorted_entries(e.groups()).iter() {
                        let value = json::prop_text(*value);
                        let Some(props) = self.groups.get(*ty).and_then(|g| g.get(&value)) else {
                            continue;
                        };
                        if more {
                            out.push(b',');
                        }
                        more = true;
                        json::key(out, ty);
                        out.push(b'{');
                        json::key(out, &value);
                        out.push(b'{');
                        for (i, (k, v)) in props.iter().enumerate() {
                            json::write_entries(&[(k.as_str(), v.as_value())], i > 0, out);
                        }
                        out.extend_from_slice(b"}}");
                    }
                    out.push(b'}');
                }
                Source::Time => json::str(out, time),
                Source::Uuid => json::str(out, &event_uuid(e.insert_id())),
                Source::AmplitudeId => json::int(out, amplitude_id(e.device_id()) as i64),
                Source::App => json::int(out, self.project_id as i64),
                Source::Data => {
                    out.extend_from_slice(b"{\"path\":\"/2/httpapi\",\"user_properties_updated\":");
                    let updated = ampsim_engine::render::sends_user_properties(
                        e.event_type(),
                        e.session_id(),
                        e.time(),
                    );
                    out.extend_from_slice(if updated { b"true" } else { b"false" });
                    out.extend_from_slice(b",\"group_first_event\":{},\"group_ids\":{}");
                    if e.event_id() == 1 {
                        out.extend_from_slice(b",\"first_event\":true");
                    }
                    out.push(b'}');
                }
                Source::Raw(text) => out.extend_from_slice(text.as_bytes()),
            }
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    /// The layout has the 55 keys of Amplitude's Export API, once each, sorted.
    #[test]
    fn the_layout_has_the_export_keys() {
        let keys: Vec<&str> = super::layout().iter().map(|k| k.0).collect();
        assert_eq!(keys.len(), 55, "{keys:?}");
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        for k in [
            "$insert_id",
            "event_time",
            "user_id",
            "device_family",
            "uuid",
            "groups",
        ] {
            assert!(keys.contains(&k), "{k}");
        }
        assert!(!keys.contains(&"time") && !keys.contains(&"price"));
    }

    #[test]
    fn event_uuid_is_the_published_one() {
        // The pair shown in the README's export example.
        assert_eq!(
            super::event_uuid("050daf21-eaeb-43c6-a9da-9458560bb114"),
            "7bb73b94-79b2-8a4e-9fda-fe6d2b102145"
        );
    }
}
