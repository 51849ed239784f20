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
//!   `$productId`, `$revenueType` (the SDKs' event-property form; how Amplitude exports
//!   top-level revenue fields is not documented).
//! - `user_properties` is the user's property state at the event as far as the session shows
//!   it: the simulator sends attribution (`initial_*`, `utm_*`, `referrer`) on a session's first
//!   event only, and a device has at most one session per day, inside that UTC day; so the
//!   properties sent earlier in the same session (device_id + session_id) are carried onto its
//!   later events. State is kept for the sessions of the day being written only. Properties set
//!   on earlier days (e.g. `plan` from a conversion) are not carried: that would need every
//!   user's state for the whole range.

use super::files::{io_err, FileInfo, Staged};
use super::{day_of, ExportOptions, FormatWriter, Result, DAY_MS};
use crate::pb;
use flate2::write::GzEncoder;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
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

/// User properties of the day's sessions, by device (a device has at most one session a day).
#[derive(Default)]
struct SessionProps {
    /// The day (since the epoch) the map is for.
    day: i64,
    /// device_id → (session_id, properties sent so far in that session).
    sessions: HashMap<String, (i64, BTreeMap<String, String>)>,
}

impl SessionProps {
    /// The user properties to export with `e`: for a session event, everything sent earlier in
    /// its session plus its own; otherwise its own.
    fn props<'a>(&'a mut self, e: &'a pb::Event) -> &'a BTreeMap<String, String> {
        let day = e.time.div_euclid(DAY_MS);
        if day != self.day {
            self.sessions.clear();
            self.day = day;
        }
        if e.session_id == -1 {
            return &e.user_properties;
        }
        if !self.sessions.contains_key(e.device_id.as_str()) {
            self.sessions
                .insert(e.device_id.clone(), (e.session_id, BTreeMap::new()));
        }
        let s = self
            .sessions
            .get_mut(e.device_id.as_str())
            .expect("inserted above");
        if s.0 != e.session_id {
            *s = (e.session_id, BTreeMap::new());
        }
        for (k, v) in &e.user_properties {
            s.1.insert(k.clone(), v.clone());
        }
        &s.1
    }
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
    sessions: SessionProps,
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
            sessions: SessionProps::default(),
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
    fn write(&mut self, e: pb::Event) -> Result<()> {
        let e = &e;
        let hour_start = e.time.div_euclid(HOUR_MS) * HOUR_MS;
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
            let hour = u32::try_from((hour_start - e.time.div_euclid(DAY_MS) * DAY_MS) / HOUR_MS)
                .expect("0..24");
            let name = file_name(self.project_id, day_of(e.time), hour, part);
            let (staged, out) = Staged::create(&self.dir, &name)?;
            self.open = Some(HourFile {
                hour_start,
                part,
                staged,
                out: GzEncoder::new(out, self.level),
                events: 0,
            });
        }

        let time = self.timestamp(e.time);
        let uuid = event_uuid(&e.insert_id);
        let line = Line {
            insert_id: &e.insert_id,
            insert_key: (),
            schema: (),
            adid: (),
            amplitude_attribution_ids: (),
            amplitude_event_type: (),
            amplitude_id: amplitude_id(&e.device_id),
            app: self.project_id,
            city: non_empty(&e.city),
            client_event_time: &time,
            client_upload_time: &time,
            country: non_empty(&e.country),
            data: Data {
                path: "/2/httpapi",
                user_properties_updated: !e.user_properties.is_empty(),
                group_first_event: Empty,
                group_ids: Empty,
                first_event: (e.event_id == 1).then_some(true),
            },
            data_type: "event",
            device_brand: (),
            device_carrier: (),
            device_family: non_empty(&e.device_family),
            device_id: &e.device_id,
            device_manufacturer: (),
            device_model: (),
            device_type: non_empty(&e.device_type),
            dma: (),
            event_id: e.event_id,
            event_properties: EventProps(e),
            event_time: &time,
            event_type: &e.event_type,
            global_user_properties: (),
            group_properties: Empty,
            groups: Empty,
            idfa: (),
            ip_address: (),
            is_attribution_event: (),
            language: non_empty(&e.language),
            library: "http/2.0",
            location_lat: (),
            location_lng: (),
            os_name: non_empty(&e.os_name),
            os_version: non_empty(&e.os_version),
            partner_id: (),
            paying: (),
            plan: Empty,
            platform: non_empty(&e.platform),
            processed_time: &time,
            region: non_empty(&e.region),
            sample_rate: (),
            server_received_time: &time,
            server_upload_time: &time,
            session_id: e.session_id,
            source_id: (),
            start_version: (),
            user_creation_time: (),
            user_id: non_empty(&e.user_id),
            user_properties: self.sessions.props(e),
            uuid: &uuid,
            version_name: (),
        };
        self.line.clear();
        serde_json::to_writer(&mut self.line, &line).expect("serialising to memory");
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

/// `None` (exported as `null`) for an empty string.
fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// `{}`.
struct Empty;

impl Serialize for Empty {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_map(Some(0))?.end()
    }
}

/// An event's properties with its revenue fields as `$price`, `$productId`, `$quantity`,
/// `$revenue`, `$revenueType` (sorted before the other keys, as `$` sorts first).
struct EventProps<'a>(&'a pb::Event);

impl Serialize for EventProps<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let e = self.0;
        let mut m = s.serialize_map(None)?;
        if let Some(p) = e.price {
            m.serialize_entry("$price", &p)?;
        }
        if !e.product_id.is_empty() {
            m.serialize_entry("$productId", &e.product_id)?;
        }
        if let Some(q) = e.quantity {
            m.serialize_entry("$quantity", &q)?;
        }
        if let Some(r) = e.revenue {
            m.serialize_entry("$revenue", &r)?;
        }
        if !e.revenue_type.is_empty() {
            m.serialize_entry("$revenueType", &e.revenue_type)?;
        }
        for (k, v) in &e.event_properties {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// The `data` object.
#[derive(Serialize)]
struct Data {
    path: &'static str,
    user_properties_updated: bool,
    group_first_event: Empty,
    group_ids: Empty,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_event: Option<bool>,
}

/// One exported line; fields in key order. `()` is `null`.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(rename = "$insert_id")]
    insert_id: &'a str,
    #[serde(rename = "$insert_key")]
    insert_key: (),
    #[serde(rename = "$schema")]
    schema: (),
    adid: (),
    amplitude_attribution_ids: (),
    amplitude_event_type: (),
    amplitude_id: u64,
    app: u64,
    city: Option<&'a str>,
    client_event_time: &'a str,
    client_upload_time: &'a str,
    country: Option<&'a str>,
    data: Data,
    data_type: &'static str,
    device_brand: (),
    device_carrier: (),
    device_family: Option<&'a str>,
    device_id: &'a str,
    device_manufacturer: (),
    device_model: (),
    device_type: Option<&'a str>,
    dma: (),
    event_id: u32,
    event_properties: EventProps<'a>,
    event_time: &'a str,
    event_type: &'a str,
    global_user_properties: (),
    group_properties: Empty,
    groups: Empty,
    idfa: (),
    ip_address: (),
    is_attribution_event: (),
    language: Option<&'a str>,
    library: &'static str,
    location_lat: (),
    location_lng: (),
    os_name: Option<&'a str>,
    os_version: Option<&'a str>,
    partner_id: (),
    paying: (),
    plan: Empty,
    platform: Option<&'a str>,
    processed_time: &'a str,
    region: Option<&'a str>,
    sample_rate: (),
    server_received_time: &'a str,
    server_upload_time: &'a str,
    session_id: i64,
    source_id: (),
    start_version: (),
    user_creation_time: (),
    user_id: Option<&'a str>,
    user_properties: &'a BTreeMap<String, String>,
    uuid: &'a str,
    version_name: (),
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_uuid_is_the_published_one() {
        // The pair shown in the README's export example.
        assert_eq!(
            super::event_uuid("f1ad04fa-4259-aa50-faee-e880d98a9bec"),
            "5702f214-1f52-8e11-a990-349cda18e8fd"
        );
    }
}
